//! AbortSignals, both ways.
//!
//! In: a caller's `signal` cancels a wait. We listen for its `abort` event
//! with a function that flips a `Cancel` the waiting Rust future selects on,
//! and remove the listener when the call settles.
//!
//! Out: `lock.signal` aborts (and `onLost` is called) with a `LockLostError`
//! when the manager finds the lock lost. The AbortController is only made
//! when someone asks for the signal or passes `onLost`, so a lock nobody
//! watches costs nothing here. Watched locks live in a per-thread table;
//! the manager's loss notices arrive through one threadsafe function per
//! manager (weak: it never keeps Node running).

use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::Arc;

use mongodb::bson::oid::ObjectId;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{UnknownRef, ValueType};

use crate::errors::{LockError, LockResult};
use crate::js::errors::lock_lost_error;
use crate::engine::held::LockState;
use crate::engine::wait::Cancel;
use crate::js::values::{describe, ignoring_failure};

// ---------------------------------------------------------------- in

// JS references held across calls are `ManuallyDrop`: they are released
// explicitly on the JS thread, and one still held when the process exits
// is simply left to the exiting runtime.
type Held = ManuallyDrop<UnknownRef>;

/// The caller's signal and our listener on it, until the call settles.
pub struct SignalHook {
  signal: Held,
  listener: FunctionRef<FnArgs<(String, Function<'static>)>, Unknown<'static>>,
}

/// What `options.signal` asks for.
pub enum Incoming<'env> {
  /// Already aborted: reject at once with this reason.
  Aborted(Unknown<'env>),
  /// Live: wait with this `Cancel`; release the hook when done.
  Live(Arc<Cancel>, SignalHook),
}

/// Reads `options.signal` (checked to be an AbortSignal) and hooks it.
pub fn hook<'env>(env: &'env Env, signal: &Unknown) -> LockResult<Incoming<'env>> {
  let bad = || {
    LockError::invalid(format!(
      "mongo-locks-native: options.signal must be an AbortSignal, got {}",
      describe(signal)
    ))
  };
  if signal.get_type().ok() != Some(ValueType::Object) {
    return Err(bad());
  }
  let obj: Object = unsafe { signal.cast() }.map_err(|_| bad())?;
  let aborted: Unknown = obj.get_named_property("aborted").map_err(|_| bad())?;
  let add: Unknown = obj.get_named_property("addEventListener").map_err(|_| bad())?;
  // Checked now, before anything is written: we remove our listener when
  // the call settles, and a signal we cannot unhook must not fail a call
  // whose lock was already taken.
  let remove: Unknown = obj.get_named_property("removeEventListener").map_err(|_| bad())?;
  let is_fn = |v: &Unknown| v.get_type().ok() == Some(ValueType::Function);
  if aborted.get_type().ok() != Some(ValueType::Boolean) || !is_fn(&add) || !is_fn(&remove) {
    return Err(bad());
  }
  if unsafe { aborted.cast::<bool>() }.unwrap_or(false) {
    let reason: Unknown = obj.get_named_property("reason").map_err(|_| bad())?;
    return Ok(Incoming::Aborted(unsafe { Unknown::from_raw_unchecked(env.raw(), reason.raw()) }));
  }
  (|| -> Result<Incoming<'env>> {
    let cancel = Arc::new(Cancel::default());
    let fire = cancel.clone();
    let listener = env.create_function_from_closure::<Unknown, Null, _>("onAbort", move |_| {
      fire.fire();
      Ok(Null)
    })?;
    let add: Function<FnArgs<(String, Function<Unknown, Null>)>, Unknown> = unsafe { add.cast()? };
    add.apply(obj, FnArgs::from(("abort".to_string(), listener)))?;
    let listener: Function<FnArgs<(String, Function<'static>)>, Unknown<'static>> = unsafe { listener.to_unknown().cast()? };
    Ok(Incoming::Live(cancel, SignalHook { signal: ManuallyDrop::new(signal.create_ref()?), listener: listener.create_ref()? }))
  })()
  .map_err(|e| LockError::invalid(format!("mongo-locks-native: could not listen on options.signal: {}", e.reason)))
}

impl SignalHook {
  /// Removes our listener; returns the signal's reason if it aborted.
  /// Never fails: by now the call may hold a lock, and a signal object that
  /// misbehaves (a throwing `removeEventListener`, a getter that throws)
  /// must not turn that into an error with the lock orphaned.
  pub fn release<'env>(self, env: &'env Env) -> Option<Unknown<'env>> {
    let reason = (|| -> Result<Option<Unknown<'env>>> {
      let signal = self.signal.get_value(env)?;
      let obj: Object = signal.coerce_to_object()?;
      let remove = obj.get_named_property::<Function<FnArgs<(String, Unknown)>, Unknown>>("removeEventListener");
      if let Some(remove) = ignoring_failure(env, remove) {
        let listener = self.listener.borrow_back(env)?;
        ignoring_failure(env, remove.apply(obj, FnArgs::from(("abort".to_string(), listener.to_unknown()))));
      }
      let aborted = ignoring_failure(env, obj.get_named_property::<bool>("aborted")).unwrap_or(false);
      let reason: Option<Unknown> = if aborted { ignoring_failure(env, obj.get_named_property("reason")) } else { None };
      Ok(reason.map(|r| unsafe { Unknown::from_raw_unchecked(env.raw(), r.raw()) }))
    })();
    let _ = ManuallyDrop::into_inner(self.signal).unref(env);
    reason.ok().flatten()
  }
}

// ---------------------------------------------------------------- out

/// A lock someone watches: its controller (made for `lock.signal`) and
/// its `onLost` callback.
#[derive(Default)]
struct Watch {
  controller: Option<Held>,
  on_lost: Option<FunctionRef<Unknown<'static>, Unknown<'static>>>,
}

thread_local! {
  static WATCHES: RefCell<HashMap<ObjectId, Watch>> = RefCell::new(HashMap::new());
}

/// Checks `options.onLost` is a function.
pub fn check_on_lost(value: &Unknown) -> LockResult<()> {
  if value.get_type().ok() != Some(ValueType::Function) {
    return Err(LockError::invalid(format!(
      "mongo-locks-native: options.onLost must be a function, got {}",
      describe(value)
    )));
  }
  Ok(())
}

/// Remembers `on_lost` for `state`'s lock; calls it at once if the lock
/// was lost already (its loss notice may have been delivered before the
/// call settled, and would not come again).
pub fn watch_on_lost(env: &Env, state: &LockState, on_lost: &Unknown) -> Result<()> {
  let f: Function<Unknown<'static>, Unknown<'static>> = unsafe { on_lost.cast()? };
  if state.is_lost() {
    let error = lock_lost_error(env, lost_message(state, state.lost_why().unwrap_or("it was lost")))?;
    ignoring_failure(env, f.call(error)); // a throwing callback is ignored, as in deliver_lost
    return Ok(());
  }
  let reference = f.create_ref()?;
  WATCHES.with(|w| w.borrow_mut().entry(state.id).or_default().on_lost = Some(reference));
  Ok(())
}

/// `lock.signal`: one AbortSignal per lock, made on first use.
pub fn signal_for<'env>(env: &'env Env, state: &LockState) -> Result<Unknown<'env>> {
  let existing = WATCHES.with(|w| {
    w.borrow()
      .get(&state.id)
      .and_then(|watch| watch.controller.as_ref().map(|c| c.get_value(env)))
  });
  let controller = match existing {
    Some(controller) => controller?,
    None => {
      let ctor: Function<(), Unknown> = env.get_global()?.get_named_property("AbortController")?;
      let controller = ctor.new_instance(())?;
      if state.is_lost() {
        abort(env, &controller, lost_message(state, state.lost_why().unwrap_or("it was lost")))?;
      } else if state.is_flagged() {
        let reference = ManuallyDrop::new(controller.create_ref()?);
        WATCHES.with(|w| w.borrow_mut().entry(state.id).or_default().controller = Some(reference));
      }
      // A lock freed normally gets a signal that never aborts.
      controller
    }
  };
  controller.coerce_to_object()?.get_named_property("signal")
}

/// The lock was freed or closed: nobody needs to hear about it any more.
pub fn forget(env: &Env, id: &ObjectId) {
  if let Some(watch) = WATCHES.with(|w| w.borrow_mut().remove(id)) {
    if let Some(controller) = watch.controller {
      let _ = ManuallyDrop::into_inner(controller).unref(env);
    }
  }
}

/// On the JS thread: tell the watchers of lock `id` that it is lost.
fn deliver_lost(env: &Env, id: &str, message: String) -> Result<()> {
  let Ok(id) = ObjectId::parse_str(id) else { return Ok(()) };
  let Some(watch) = WATCHES.with(|w| w.borrow_mut().remove(&id)) else { return Ok(()) };
  let error = lock_lost_error(env, message)?;
  if let Some(controller) = watch.controller {
    let value = controller.get_value(env)?;
    ignoring_failure(env, abort_with(&value, error));
    ManuallyDrop::into_inner(controller).unref(env)?;
  }
  if let Some(on_lost) = watch.on_lost {
    // A throwing callback must not become an uncaught exception.
    ignoring_failure(env, on_lost.borrow_back(env).and_then(|f| f.call(error)));
  }
  Ok(())
}

fn abort(env: &Env, controller: &Unknown, message: String) -> Result<()> {
  abort_with(controller, lock_lost_error(env, message)?)
}

fn abort_with(controller: &Unknown, error: Unknown) -> Result<()> {
  let obj: Object = controller.coerce_to_object()?;
  let abort: Function<Unknown, Unknown> = obj.get_named_property("abort")?;
  abort.apply(obj, error)?;
  Ok(())
}

/// The message of the `LockLostError` for `state`.
pub fn lost_message(state: &LockState, why: &str) -> String {
  format!("mongo-locks-native: lost the lock on {:?}: {why}", state.action.text())
}

/// (lock id hex, message), from the manager's threads to the JS thread.
pub type LostSink = ThreadsafeFunction<(String, String), Unknown<'static>, FnArgs<(String, String)>, Status, false, true>;

/// One per manager: how loss notices reach the JS thread.
pub fn lost_sink(env: &Env) -> Result<Arc<LostSink>> {
  let deliver = env.create_function_from_closure::<Unknown, Null, _>("deliverLost", |ctx| {
    let id: String = ctx.get(0)?;
    let message: String = ctx.get(1)?;
    // Nothing may throw from here: it would be an uncaught exception.
    let _ = deliver_lost(&ctx.env, &id, message);
    Ok(Null)
  })?;
  let deliver: Function<FnArgs<(String, String)>, Unknown> = unsafe { deliver.to_unknown().cast()? };
  let tsfn = deliver
    .build_threadsafe_function::<(String, String)>()
    .weak::<true>()
    .callee_handled::<false>()
    .build_callback(|ctx| Ok(FnArgs::from(ctx.value)))?;
  Ok(Arc::new(tsfn))
}

/// From any thread: queue the loss notice for lock `state`.
pub fn notify_lost(sink: &LostSink, state: &LockState, why: &str) {
  sink.call((state.id.to_hex(), lost_message(state, why)), ThreadsafeFunctionCallMode::NonBlocking);
}

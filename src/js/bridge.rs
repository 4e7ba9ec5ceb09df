//! From a Tokio task back to a JS promise, through one threadsafe function
//! per JS thread.
//!
//! napi-rs's `spawn_future_with_callback` makes a threadsafe function for
//! every promise (a libuv async handle and two environment cleanup hooks)
//! and closes it once the promise settles, so a lock+free opened and closed
//! two libuv handles, each close costing the event loop another pass. Here
//! a JS thread has one threadsafe function, made on first use and kept: a
//! finished task sends (promise id, result) through it, and the JS thread
//! looks the promise up and settles it. It keeps Node running only while
//! some promise is pending (ref/unref, counted on the JS thread), as the
//! per-promise functions did.
//!
//! A task that ends without a result (a panic, or the runtime dropping it)
//! rejects its promise instead of leaving it pending forever.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::future::Future;
use std::marker::PhantomData;
use std::ptr;
use std::sync::{Arc, RwLock};

use napi::bindgen_prelude::*;
use napi::{check_status, sys};

/// Turns a task's result into the promise's value, on the JS thread.
type Settle = Box<dyn FnOnce(&Env, Box<dyn Any + Send>) -> Result<sys::napi_value>>;

/// A promise waiting for its task.
struct Pending {
  deferred: sys::napi_deferred,
  settle: Settle,
}

/// The threadsafe function as the Tokio side sees it. `None` once the
/// environment tears down: Node frees the function then, and a task that
/// finishes later must not call into it.
struct Channel {
  tsfn: RwLock<Option<Tsfn>>,
}

#[derive(Clone, Copy)]
struct Tsfn(sys::napi_threadsafe_function);
// Node documents napi_call_threadsafe_function as callable from any thread.
unsafe impl Send for Tsfn {}
unsafe impl Sync for Tsfn {}

/// The JS thread's side: its channel and its pending promises.
struct Local {
  channel: Arc<Channel>,
  tsfn: Tsfn,
  pending: HashMap<u64, Pending>,
  next_id: u64,
}

thread_local! {
  static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// What a finished task sends to the JS thread.
struct Message {
  id: u64,
  out: Box<dyn Any + Send>,
}

/// Runs `fut` on the Tokio runtime and settles the returned promise on the
/// JS thread with `callback(env, value)`, or rejects it with the error.
/// The same contract as napi-rs's `Env::spawn_future_with_callback`.
pub fn spawn<'env, T, V, F, R>(env: &'env Env, fut: F, callback: R) -> Result<PromiseRaw<'env, V>>
where
  T: 'static + Send,
  V: ToNapiValue,
  F: 'static + Send + Future<Output = Result<T>>,
  R: 'static + FnOnce(&'env Env, T) -> Result<V>,
{
  let mut deferred = ptr::null_mut();
  let mut promise = ptr::null_mut();
  check_status!(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) })?;
  let settle: Settle = Box::new(move |env, out| {
    let out = *out.downcast::<Result<T>>().map_err(|_| Error::from_reason("mongo-locks-native: internal error: a result of the wrong type"))?;
    // As napi-rs does: the values made here live in the callback's scope,
    // which is what 'env stands for by the time the task has finished.
    let env = unsafe { std::mem::transmute::<&Env, &'env Env>(env) };
    let value = callback(env, out?)?;
    unsafe { V::to_napi_value(env.raw(), value) }
  });
  let (id, channel) = LOCAL.with(|local| -> Result<_> {
    let mut local = local.borrow_mut();
    if local.is_none() {
      *local = Some(open(env)?);
    }
    let local = local.as_mut().unwrap();
    if local.pending.is_empty() {
      // Something is pending now: keep Node running until it settles.
      check_status!(unsafe { sys::napi_ref_threadsafe_function(env.raw(), local.tsfn.0) })?;
    }
    let id = local.next_id;
    local.next_id += 1;
    local.pending.insert(id, Pending { deferred, settle });
    Ok((id, local.channel.clone()))
  })?;
  napi::bindgen_prelude::spawn(async move {
    let mut reply = Reply::<T> { id, channel, sent: false, _result: PhantomData };
    let out = fut.await;
    reply.send(Box::new(out));
  });
  Ok(PromiseRaw::new(env.raw(), promise))
}

/// Makes this JS thread's threadsafe function (unref'd: nothing pending yet).
fn open(env: &Env) -> Result<Local> {
  let name = env.create_string("mongoLocksSettle")?;
  let mut tsfn = ptr::null_mut();
  check_status!(unsafe {
    sys::napi_create_threadsafe_function(
      env.raw(),
      ptr::null_mut(),
      ptr::null_mut(),
      name.raw(),
      0, // no queue limit: a finished task never waits
      1,
      ptr::null_mut(),
      None,
      ptr::null_mut(),
      Some(on_js_thread),
      &mut tsfn,
    )
  })?;
  check_status!(unsafe { sys::napi_unref_threadsafe_function(env.raw(), tsfn) })?;
  let channel = Arc::new(Channel { tsfn: RwLock::new(Some(Tsfn(tsfn))) });
  // Registered after Node's own teardown of the function, so it runs
  // before it (hooks run in reverse order): no task calls into a freed one.
  let hook = Arc::into_raw(channel.clone()) as *mut c_void;
  check_status!(unsafe { sys::napi_add_env_cleanup_hook(env.raw(), Some(tear_down), hook) })?;
  Ok(Local { channel, tsfn: Tsfn(tsfn), pending: HashMap::new(), next_id: 0 })
}

unsafe extern "C" fn tear_down(hook: *mut c_void) {
  let channel = unsafe { Arc::from_raw(hook as *const Channel) };
  channel.tsfn.write().unwrap_or_else(|e| e.into_inner()).take();
  // The promises die with the environment; forget them unsettled.
  let _ = LOCAL.try_with(|local| local.try_borrow_mut().map(|mut l| l.take()));
}

/// On the JS thread: settles the promise a message is for.
unsafe extern "C" fn on_js_thread(env: sys::napi_env, _js_cb: sys::napi_value, _context: *mut c_void, data: *mut c_void) {
  let message = unsafe { Box::from_raw(data as *mut Message) };
  if env.is_null() {
    return; // the environment is going away
  }
  let pending = LOCAL.with(|local| {
    let mut local = local.borrow_mut();
    let local = local.as_mut()?;
    let pending = local.pending.remove(&message.id)?;
    if local.pending.is_empty() {
      unsafe { sys::napi_unref_threadsafe_function(env, local.tsfn.0) };
    }
    Some(pending)
  });
  // Settled outside the borrow: making the value may make more promises.
  let Some(Pending { deferred, settle }) = pending else { return };
  match settle(&Env::from_raw(env), message.out) {
    Ok(value) => unsafe {
      sys::napi_resolve_deferred(env, deferred, value);
    },
    Err(error) => unsafe {
      // The error's own JS value when it has one (a signal's reason may be
      // any value), else a new Error: as napi-rs rejects.
      let reason = match ToNapiValue::to_napi_value(env, error) {
        Ok(reason) => reason,
        Err(_) => {
          let mut text = ptr::null_mut();
          let mut reason = ptr::null_mut();
          let message = "mongo-locks-native: internal error: the rejection could not be made";
          sys::napi_create_string_utf8(env, message.as_ptr().cast(), message.len() as isize, &mut text);
          sys::napi_create_error(env, ptr::null_mut(), text, &mut reason);
          reason
        }
      };
      sys::napi_reject_deferred(env, deferred, reason);
    },
  }
}

/// The task's way back. Dropped without sending (a panic in the task, or
/// the runtime shutting down), it rejects the promise.
struct Reply<T: 'static + Send> {
  id: u64,
  channel: Arc<Channel>,
  sent: bool,
  _result: PhantomData<fn() -> T>,
}

impl<T: 'static + Send> Reply<T> {
  fn send(&mut self, out: Box<dyn Any + Send>) {
    self.sent = true;
    let tsfn = self.channel.tsfn.read().unwrap_or_else(|e| e.into_inner());
    let Some(tsfn) = *tsfn else { return };
    let data = Box::into_raw(Box::new(Message { id: self.id, out }));
    let status = unsafe { sys::napi_call_threadsafe_function(tsfn.0, data.cast(), sys::ThreadsafeFunctionCallMode::nonblocking) };
    if status != sys::Status::napi_ok {
      drop(unsafe { Box::from_raw(data) });
    }
  }
}

impl<T: 'static + Send> Drop for Reply<T> {
  fn drop(&mut self) {
    if !self.sent {
      let lost: Result<T> = Err(Error::from_reason("mongo-locks-native: internal error: the operation ended without a result"));
      self.send(Box::new(lost));
    }
  }
}

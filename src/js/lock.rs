//! A held lock, as JavaScript sees it.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::engine::core::Core;
use crate::engine::held::LockState;
use crate::errors::LockError;
use crate::js::errors::to_napi;
use crate::js::key::action_to_js;
use crate::js::signals;
use crate::store::config::Holder;

/// A lock held by this process. Free it with `free()` in a `finally`, or
/// with `await using`, which calls `free()` through `Symbol.asyncDispose`.
/// Exported as `NativeLock`, and as `Lock` for `instanceof` (index.js): in
/// the types, `Lock` is the shape `mongo-locks` declares, and this class
/// is that shape with more.
#[napi]
pub struct NativeLock {
  state: Arc<LockState>,
  core: Arc<Core>,
  /// Counted until the GC finalizes this object (see `trim`).
  _alive: crate::engine::trim::Op,
}

impl NativeLock {
  pub fn new(state: Arc<LockState>, core: Arc<Core>) -> Self {
    NativeLock { state, core, _alive: crate::engine::trim::Op::enter() }
  }

  /// The lock's state, for the engine calls that end a once-record's run.
  pub(crate) fn state(&self) -> &Arc<LockState> {
    &self.state
  }
}

#[napi]
impl NativeLock {
  /// True while this process holds the lock: false after `free()`, after
  /// `close()`, or once the lock is lost (its document gone, or its expiry
  /// passed without a successful refresh). Turns false when `signal` aborts.
  ///
  /// Exact when read: a lock whose deadline has passed reads `false` at
  /// once (and its `signal` aborts), even if the process was paused and no
  /// background work has run since.
  #[napi(getter)]
  pub fn locked(&self) -> bool {
    self.core.check(&self.state)
  }

  /// Setting `false` stops refreshing this lock, as in `mongo-locks`: it
  /// then expires one ttl after its last refresh, and `free()` resolves
  /// `false` without deleting it; its `signal` does not abort and `onLost`
  /// is not called. Setting `true` on a held lock does nothing; on a lock
  /// no longer held it throws a `TypeError` (a lock cannot be taken back by
  /// assignment).
  #[napi(setter, ts_args_type = "value: boolean")]
  pub fn set_locked(&self, env: &Env, value: Unknown) -> Result<()> {
    let truthy: Function<Unknown, bool> = env.get_global()?.get_named_property("Boolean")?;
    if truthy.call(value)? {
      if self.core.check(&self.state) {
        return Ok(());
      }
      let message = "mongo-locks-native: lock.locked = true cannot take back a lock that is no longer held; call lock() again";
      return Err(to_napi(env, &LockError::invalid(message)));
    }
    self.core.abandon(&self.state);
    signals::forget(env, &self.state.id);
    Ok(())
  }

  /// Aborts with a `LockLostError` when the lock is lost: a refresh found
  /// its document gone or owned by someone else, or its expiry passed
  /// without a successful refresh (server unreachable, or `maxHoldMs`
  /// reached). Never aborts for a lock that was freed normally.
  #[napi(getter, ts_return_type = "AbortSignal")]
  pub fn signal<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
    self.core.check(&self.state);
    signals::signal_for(env, &self.state)
  }

  /// The fencing token, when the lock was taken with `{ fencing: true }`:
  /// strictly increasing per key across every holder in every process.
  /// Pass it to the storage you write to and have it refuse older tokens.
  #[napi(getter)]
  pub fn fencing_token(&self) -> Option<BigInt> {
    self.state.fencing_token().map(BigInt::from)
  }

  /// The stored key: the key given to `lock()`, with arrays wrapped as
  /// `{ _key_array: key }` exactly as `mongo-locks` stores them.
  #[napi(getter, ts_return_type = "unknown")]
  pub fn action<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
    action_to_js(env, &self.state.action.to_bson())
  }

  /// Who holds it: this process (host, pid, application, manager id), as
  /// recorded in the lock document.
  #[napi(getter)]
  pub fn holder(&self) -> Holder {
    self.core.config.holder.clone()
  }

  /// The hex string of the lock document's `_id`.
  #[napi(getter)]
  pub fn id(&self) -> String {
    self.state.id.to_hex()
  }

  /// Releases the lock. Resolves `true` if this call deleted the lock
  /// document; `false` if the lock was already freed or lost (a lost lock's
  /// `free()` deletes only our own document, never a new holder's).
  #[napi(ts_return_type = "Promise<boolean>")]
  pub fn free<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, bool>> {
    signals::forget(env, &self.state.id);
    let (core, state) = (self.core.clone(), self.state.clone());
    let fut = async move { Ok(core.traced(Box::pin(core.release(&state))).await) };
    #[cfg(feature = "alloc-stats")]
    crate::js::alloc_stats::note_size("free", &fut);
    crate::js::bridge::spawn(env, fut, |env, res| {
      res.map_err(|e| to_napi(env, &e))
    })
  }

  /// Pushes the lock's expiry one ttl forward now (the manager also does
  /// this in the background). Resolves `false` if the lock is no longer held.
  #[napi(ts_return_type = "Promise<boolean>")]
  pub fn refresh<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, bool>> {
    let (core, state) = (self.core.clone(), self.state.clone());
    crate::js::bridge::spawn(env, async move { Ok(core.traced(core.refresh_one(&state)).await) }, |env, res| {
      res.map_err(|e| to_napi(env, &e))
    })
  }
}

#[cfg(feature = "alloc-stats")]
/// Hidden (`alloc-stats` builds only): `size_of` of what each held lock
/// keeps, to tell apart the allocations counted per lock.
#[napi(object)]
pub struct LockSizes {
  /// `ArcInner<LockState>`: the shared state (two counters + the struct).
  pub lock_state_arc: u32,
  /// One `(ObjectId, Arc<LockState>)` entry of the held map (plus one control byte).
  pub held_entry: u32,
  /// The Rust value a JS `Lock` wraps (napi-rs boxes it).
  pub native_lock: u32,
  pub bson: u32,
}

#[cfg(feature = "alloc-stats")]
#[napi(js_name = "__lockSizes", skip_typescript)]
pub fn lock_sizes() -> LockSizes {
  use std::mem::size_of;
  use std::sync::Arc;
  LockSizes {
    lock_state_arc: (size_of::<LockState>() + 2 * size_of::<usize>()) as u32,
    held_entry: size_of::<(mongodb::bson::oid::ObjectId, Arc<LockState>)>() as u32,
    native_lock: size_of::<NativeLock>() as u32,
    bson: size_of::<mongodb::bson::Bson>() as u32,
  }
}

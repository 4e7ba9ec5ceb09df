//! A held lock, as JavaScript sees it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mongodb::bson::{oid::ObjectId, Bson};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::errors::to_napi;
use crate::key::action_to_js;
use crate::manager::Core;

/// What the manager and the JS object share about one lock. The background
/// refresh flips `locked` to false when the document is found gone; it is
/// never set back to true.
pub struct LockState {
  pub id: ObjectId,
  pub action: Bson,
  locked: AtomicBool,
}

impl LockState {
  pub fn new(id: ObjectId, action: Bson) -> Self {
    LockState { id, action, locked: AtomicBool::new(true) }
  }

  pub fn is_locked(&self) -> bool {
    self.locked.load(Ordering::Acquire)
  }

  /// Marks the lock released; `true` if it was held until now.
  pub fn unlock(&self) -> bool {
    self.locked.swap(false, Ordering::AcqRel)
  }
}

/// A lock held by this process. Free it with `free()` in a `finally`, or
/// with `await using`, which calls `free()` through `Symbol.asyncDispose`.
#[napi]
pub struct Lock {
  state: Arc<LockState>,
  core: Arc<Core>,
}

impl Lock {
  pub fn new(state: Arc<LockState>, core: Arc<Core>) -> Self {
    Lock { state, core }
  }
}

#[napi]
impl Lock {
  /// True while this process holds the lock: false after `free()`, or once a
  /// refresh finds the lock document gone.
  #[napi(getter)]
  pub fn locked(&self) -> bool {
    self.state.is_locked()
  }

  /// The stored key: the key given to `lock()`, with arrays wrapped as
  /// `{ _key_array: key }` exactly as `mongo-locks` stores them.
  #[napi(getter, ts_return_type = "unknown")]
  pub fn action<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
    action_to_js(env, &self.state.action)
  }

  /// The hex string of the lock document's `_id`.
  #[napi(getter)]
  pub fn id(&self) -> String {
    self.state.id.to_hex()
  }

  /// Releases the lock. Resolves `true` if this call deleted the lock
  /// document, `false` if the lock was already freed or lost.
  #[napi(ts_return_type = "Promise<boolean>")]
  pub fn free<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, bool>> {
    let (core, state) = (self.core.clone(), self.state.clone());
    env.spawn_future_with_callback(async move { Ok(core.traced(core.release(&state)).await) }, |env, res| {
      res.map_err(|e| to_napi(env, &e))
    })
  }

  /// Pushes the lock's expiry one ttl forward now (the manager also does
  /// this in the background). Resolves `false` if the lock is no longer held.
  #[napi(ts_return_type = "Promise<boolean>")]
  pub fn refresh<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, bool>> {
    let (core, state) = (self.core.clone(), self.state.clone());
    env.spawn_future_with_callback(async move { Ok(core.traced(core.refresh_one(&state)).await) }, |env, res| {
      res.map_err(|e| to_napi(env, &e))
    })
  }
}

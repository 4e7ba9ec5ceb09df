//! A held lock, as JavaScript sees it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mongodb::bson::{oid::ObjectId, Bson};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use tokio::time::Instant;

use crate::core::Core;
use crate::errors::to_napi;
use crate::key::action_to_js;
use crate::signals;

/// What the manager and the JS object share about one lock. `locked` goes
/// from true to false once (free, close or loss) and never back.
pub struct LockState {
  pub id: ObjectId,
  pub action: Bson,
  /// `action` as a string, to match local waiters on the same key.
  pub key: String,
  pub fencing_token: Option<i64>,
  /// With `maxHoldMs`: after this, the lock is no longer refreshed.
  hold_until: Option<Instant>,
  /// When this process stops believing it holds the lock: the expiry it
  /// last wrote, on the monotonic clock, less a safety margin.
  deadline: Mutex<Instant>,
  locked: AtomicBool,
  lost: AtomicBool,
}

impl LockState {
  pub fn new(
    id: ObjectId,
    action: Bson,
    key: String,
    fencing_token: Option<i64>,
    deadline: Instant,
    hold_until: Option<Instant>,
  ) -> Self {
    LockState {
      id,
      action,
      key,
      fencing_token,
      hold_until,
      deadline: Mutex::new(deadline),
      locked: AtomicBool::new(true),
      lost: AtomicBool::new(false),
    }
  }

  pub fn is_locked(&self) -> bool {
    self.locked.load(Ordering::Acquire)
  }

  pub fn is_lost(&self) -> bool {
    self.lost.load(Ordering::Acquire)
  }

  /// Marks the lock released; `true` if it was held until now.
  pub fn unlock(&self) -> bool {
    self.locked.swap(false, Ordering::AcqRel)
  }

  /// Marks the lock lost; `true` if it was held until now.
  pub fn lose(&self) -> bool {
    let was_held = self.unlock();
    if was_held {
      self.lost.store(true, Ordering::Release);
    }
    was_held
  }

  pub fn deadline(&self) -> Instant {
    *self.deadline.lock().unwrap()
  }

  /// A refresh written at local instant `sent` moved the expiry.
  pub fn extend(&self, deadline: Instant) {
    let mut current = self.deadline.lock().unwrap();
    if deadline > *current {
      *current = deadline;
    }
  }

  /// Whether the background refresh should still keep this lock alive.
  pub fn wants_refresh(&self, now: Instant) -> bool {
    self.hold_until.map_or(true, |until| now < until)
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
  /// True while this process holds the lock: false after `free()`, after
  /// `close()`, or once the lock is lost (its document gone, or its expiry
  /// passed without a successful refresh). Turns false when `signal` aborts.
  #[napi(getter)]
  pub fn locked(&self) -> bool {
    self.state.is_locked()
  }

  /// Aborts with a `LockLostError` when the lock is lost: a refresh found
  /// its document gone or owned by someone else, or its expiry passed
  /// without a successful refresh (server unreachable, or `maxHoldMs`
  /// reached). Never aborts for a lock that was freed normally.
  #[napi(getter, ts_return_type = "AbortSignal")]
  pub fn signal<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
    signals::signal_for(env, &self.state)
  }

  /// The fencing token, when the lock was taken with `{ fencing: true }`:
  /// strictly increasing per key across every holder in every process.
  /// Pass it to the storage you write to and have it refuse older tokens.
  #[napi(getter)]
  pub fn fencing_token(&self) -> Option<BigInt> {
    self.state.fencing_token.map(BigInt::from)
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
  /// document; `false` if the lock was already freed or lost (a lost lock's
  /// `free()` deletes only our own document, never a new holder's).
  #[napi(ts_return_type = "Promise<boolean>")]
  pub fn free<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, bool>> {
    signals::forget(env, &self.state.id);
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

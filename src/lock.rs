//! A held lock, as JavaScript sees it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use mongodb::bson::{oid::ObjectId, Bson};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::clock::Mono;
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
  hold_until: Option<Mono>,
  /// When this process stops believing it holds the lock (see
  /// `ServerNow::holder_deadline`), as `Mono` nanoseconds. Only moves later.
  deadline: AtomicU64,
  locked: AtomicBool,
  lost: AtomicBool,
  /// Why it was lost, for a signal first read after the loss.
  lost_why: OnceLock<&'static str>,
  /// A delete of our document went through (or a refresh found it gone):
  /// there is nothing left to free on the server.
  doc_gone: AtomicBool,
}

impl LockState {
  pub fn new(
    id: ObjectId,
    action: Bson,
    key: String,
    fencing_token: Option<i64>,
    deadline: Mono,
    hold_until: Option<Mono>,
  ) -> Self {
    LockState {
      id,
      action,
      key,
      fencing_token,
      hold_until,
      deadline: AtomicU64::new(deadline.as_nanos()),
      locked: AtomicBool::new(true),
      lost: AtomicBool::new(false),
      lost_why: OnceLock::new(),
      doc_gone: AtomicBool::new(false),
    }
  }

  /// The flag alone: false once freed, closed or marked lost. A lock whose
  /// deadline passed but that nobody has marked lost yet still reads true
  /// here; `Core::check` is the exact reading.
  pub fn is_flagged(&self) -> bool {
    self.locked.load(Ordering::Acquire)
  }

  pub fn is_lost(&self) -> bool {
    self.lost.load(Ordering::Acquire)
  }

  /// Marks the lock released; `true` if it was held until now.
  pub fn unlock(&self) -> bool {
    self.locked.swap(false, Ordering::AcqRel)
  }

  /// Marks the lock lost for reason `why`; `true` if it was held until now.
  pub fn lose(&self, why: &'static str) -> bool {
    let was_held = self.unlock();
    if was_held {
      let _ = self.lost_why.set(why);
      self.lost.store(true, Ordering::Release);
    }
    was_held
  }

  /// Why the lock was lost, if it was.
  pub fn lost_why(&self) -> Option<&'static str> {
    self.lost_why.get().copied()
  }

  pub fn deadline(&self) -> Mono {
    Mono::from_nanos(self.deadline.load(Ordering::Acquire))
  }

  /// Whether the deadline has passed at `now`.
  pub fn overdue(&self, now: Mono) -> bool {
    now >= self.deadline()
  }

  /// A refresh that matched our document moved the expiry: believe it
  /// until `deadline`. Never moves the deadline earlier.
  pub fn extend(&self, deadline: Mono) {
    self.deadline.fetch_max(deadline.as_nanos(), Ordering::AcqRel);
  }

  /// Whether the background refresh should still keep this lock alive.
  pub fn wants_refresh(&self, now: Mono) -> bool {
    self.hold_until.is_none_or(|until| now < until)
  }

  pub fn doc_gone(&self) -> bool {
    self.doc_gone.load(Ordering::Acquire)
  }

  pub fn set_doc_gone(&self) {
    self.doc_gone.store(true, Ordering::Release);
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
  ///
  /// Exact when read: a lock whose deadline has passed reads `false` at
  /// once (and its `signal` aborts), even if the process was paused and no
  /// background work has run since.
  #[napi(getter)]
  pub fn locked(&self) -> bool {
    self.core.check(&self.state)
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

//! A held lock, as JavaScript sees it.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use mongodb::bson::{oid::ObjectId, Bson, DateTime};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::clock::Mono;
use crate::core::Core;
use crate::errors::{to_napi, LockError};
use crate::key::{action_to_js, HeldAction};
use crate::signals;

/// What the manager and the JS object share about one lock. `locked` goes
/// from true to false once (free, close or loss) and never back.
pub struct LockState {
  pub id: ObjectId,
  pub action: HeldAction,
  /// What local waiters on the same key are matched on, when it is not
  /// `action` as shown (a plain lock's is, see `Claim::wake_key`; a
  /// permit's or a reader's slot document has its primitive's key here):
  /// see `key()`.
  other_key: Option<Box<str>>,
  pub fencing_token: Option<i64>,
  /// When it was acquired (for the hold-time histogram).
  pub acquired_at: Mono,
  /// With `maxHoldMs`: after this, the lock is no longer refreshed.
  hold_until: Option<Mono>,
  /// With `minHoldMs`: the server time until which the key stays taken,
  /// even if freed sooner.
  pub min_hold_until: Option<DateTime>,
  /// When this process stops believing it holds the lock (see
  /// `ServerNow::holder_deadline`), as `Mono` nanoseconds. Only moves later.
  deadline: AtomicU64,
  locked: AtomicBool,
  lost: AtomicBool,
  /// Why it was lost, for a signal first read after the loss.
  lost_why: OnceLock<&'static str>,
  /// Nothing is left for `free()` to delete: a delete of our document went
  /// through, a refresh found it gone, or the lock was abandoned
  /// (`lock.locked = false`, which leaves the document to expire, as in
  /// `mongo-locks`).
  nothing_to_delete: AtomicBool,
}

impl LockState {
  pub fn new(
    id: ObjectId,
    action: &Bson,
    key: &str,
    fencing_token: Option<i64>,
    deadline: Mono,
    hold_until: Option<Mono>,
    min_hold_until: Option<DateTime>,
  ) -> Self {
    let other_key = if action.to_string() == key { None } else { Some(key.into()) };
    let action = HeldAction::new(action);
    LockState {
      id,
      action,
      other_key,
      fencing_token,
      acquired_at: Mono::now(),
      hold_until,
      min_hold_until,
      deadline: AtomicU64::new(deadline.as_nanos()),
      locked: AtomicBool::new(true),
      lost: AtomicBool::new(false),
      lost_why: OnceLock::new(),
      nothing_to_delete: AtomicBool::new(false),
    }
  }

  /// The key local waiters are matched on (see `Waiters`). A plain
  /// lock's is made again when asked for (at its free) rather than kept
  /// for as long as the lock is held.
  pub fn key(&self) -> Cow<'_, str> {
    match &self.other_key {
      Some(key) => Cow::Borrowed(key),
      None => Cow::Owned(self.action.to_bson().to_string()),
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

  pub fn nothing_to_delete(&self) -> bool {
    self.nothing_to_delete.load(Ordering::Acquire)
  }

  pub fn set_nothing_to_delete(&self) {
    self.nothing_to_delete.store(true, Ordering::Release);
  }
}

/// Who holds a lock: recorded in every lock document this package writes
/// (as `holder`, beside the fields `mongo-locks` reads), so that "who holds
/// this key?" has an answer. Documents of `mongo-locks` clients have none.
#[napi(object)]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holder {
  /// The machine's host name.
  pub host: String,
  /// The process id.
  pub pid: u32,
  /// The application: the manager's `appName` option, else the connection's
  /// `appName`, else the name in the application's package.json.
  pub app: String,
  /// The id of the `LockManager` (hex), unique per manager.
  pub manager: String,
}

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
  _alive: crate::trim::Op,
}

impl NativeLock {
  pub fn new(state: Arc<LockState>, core: Arc<Core>) -> Self {
    NativeLock { state, core, _alive: crate::trim::Op::enter() }
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
    self.state.fencing_token.map(BigInt::from)
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
    crate::alloc_stats::note_size("free", &fut);
    crate::bridge::spawn(env, fut, |env, res| {
      res.map_err(|e| to_napi(env, &e))
    })
  }

  /// Pushes the lock's expiry one ttl forward now (the manager also does
  /// this in the background). Resolves `false` if the lock is no longer held.
  #[napi(ts_return_type = "Promise<boolean>")]
  pub fn refresh<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, bool>> {
    let (core, state) = (self.core.clone(), self.state.clone());
    crate::bridge::spawn(env, async move { Ok(core.traced(core.refresh_one(&state)).await) }, |env, res| {
      res.map_err(|e| to_napi(env, &e))
    })
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use mongodb::bson::doc;

  fn state(action: Bson, key: &str) -> LockState {
    LockState::new(ObjectId::new(), &action, key, None, Mono::now(), None, None)
  }

  #[test]
  fn local_waiters_are_matched_on_the_key_given_whatever_the_stored_action() {
    // A plain lock waits on its action as shown (`Claim::wake_key`): not
    // kept a second time.
    let action = Bson::String("bank-details-42".into());
    let plain = state(action.clone(), &action.to_string());
    assert_eq!(plain.key(), action.to_string());
    assert!(plain.other_key.is_none());
    let numbered = state(Bson::Int32(42), &Bson::Int32(42).to_string());
    assert_eq!(numbered.key(), "42");
    assert!(numbered.other_key.is_none());
    // A permit's slot document: waiters wait on the semaphore's key.
    let permit = state(Bson::Document(doc! { "semaphore": "pool", "slot": 1 }), "pool");
    assert_eq!(permit.key(), "pool");
    // A string action that is not the waiters' key is not mistaken for it.
    let renamed = state(Bson::String("reader:catalogue".into()), "catalogue");
    assert_eq!(renamed.key(), "catalogue");
  }
}

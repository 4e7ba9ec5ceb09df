//! A held lock's state, shared by the engine and the lock's JS object:
//! held, then freed or lost (and why) once, its deadline, and what `free()`
//! must still delete.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use mongodb::bson::{oid::ObjectId, Bson, DateTime};

use crate::clock::Mono;
use crate::engine::key::HeldAction;

/// What the manager and the JS object share about one lock. Its status goes
/// from held to freed or lost once and never back.
///
/// One of these lives as long as the lock is held (and as long as its JS
/// object after that), so it is kept small: plain integers with a
/// sentinel rather than `Option`s of 16 bytes, and one atomic byte for the
/// status and why it was lost (104 bytes with the `Arc`'s counts, where
/// `Option`s, `Duration`s and a `OnceLock` took 160: see "Where native
/// memory goes" in the README).
pub struct LockState {
  pub id: ObjectId,
  /// `HELD`, `FREED` or a `LOST_*` value: see `unlock` and `lose`.
  status: AtomicU8,
  /// Nothing is left for `free()` to delete: a delete of our document went
  /// through, a refresh found it gone, or the lock was abandoned
  /// (`lock.locked = false`, which leaves the document to expire, as in
  /// `mongo-locks`).
  nothing_to_delete: AtomicBool,
  pub action: HeldAction,
  /// What local waiters on the same key are matched on, when it is not
  /// `action` as shown (a plain lock's is, see `Claim::wake_key`; a
  /// permit's or a reader's slot document has its primitive's key here):
  /// see `key()`.
  other_key: Option<Box<str>>,
  /// The fencing token, or `NO_TOKEN`. Tokens come from a counter that
  /// starts at 1 and only grows, so the sentinel is never a real one.
  fencing_token: i64,
  /// When it was acquired (for the hold-time histogram), as `Mono` nanoseconds.
  acquired_at: u64,
  /// With `maxHoldMs`: after this (`Mono` nanoseconds), the lock is no
  /// longer refreshed; `u64::MAX` without it.
  hold_until: u64,
  /// With `minHoldMs`: the server time (ms since the epoch) until which
  /// the key stays taken, even if freed sooner; `NO_MIN_HOLD` without it.
  min_hold_until: i64,
  /// When this process stops believing it holds the lock (see
  /// `ServerNow::holder_deadline`), as `Mono` nanoseconds. Only moves later.
  deadline: AtomicU64,
}

const HELD: u8 = 0;

const FREED: u8 = 1;

const LOST_GONE: u8 = 2;

const LOST_EXPIRED: u8 = 3;

const NO_TOKEN: i64 = i64::MIN;

const NO_MIN_HOLD: i64 = i64::MIN;

/// Why a held lock stopped being ours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
  /// A refresh found the document gone (deleted, or taken over after it expired).
  Gone,
  /// Its deadline passed without a successful refresh.
  Expired,
}

impl Loss {
  /// The reason, as lost-lock errors and logs word it.
  pub fn reason(self) -> &'static str {
    match self {
      Loss::Gone => "its document is gone (deleted, or taken over after it expired)",
      Loss::Expired => "its expiry passed without a successful refresh",
    }
  }

  fn status(self) -> u8 {
    match self {
      Loss::Gone => LOST_GONE,
      Loss::Expired => LOST_EXPIRED,
    }
  }
}

impl LockState {
  /// `other_key`: the key its local waiters wait on when that is not
  /// `action` as shown (a permit's or a reader's slot; `None` for a plain
  /// lock, whose waiters wait on its action: see `Claim::wake_key`).
  pub fn new(
    id: ObjectId,
    action: &Bson,
    other_key: Option<&str>,
    fencing_token: Option<i64>,
    deadline: Mono,
    hold_until: Option<Mono>,
    min_hold_until: Option<DateTime>,
  ) -> Self {
    LockState {
      id,
      status: AtomicU8::new(HELD),
      nothing_to_delete: AtomicBool::new(false),
      action: HeldAction::new(action),
      other_key: other_key.map(Into::into),
      fencing_token: fencing_token.unwrap_or(NO_TOKEN),
      acquired_at: Mono::now().as_nanos(),
      hold_until: hold_until.map_or(u64::MAX, Mono::as_nanos),
      min_hold_until: min_hold_until.map_or(NO_MIN_HOLD, |t| t.timestamp_millis()),
      deadline: AtomicU64::new(deadline.as_nanos()),
    }
  }

  /// The key local waiters are matched on (see `Waiters`). A plain
  /// lock's is made again when asked for (at its free) rather than kept
  /// for as long as the lock is held.
  pub fn key(&self) -> Cow<'_, str> {
    match &self.other_key {
      Some(key) => Cow::Borrowed(key),
      None => Cow::Owned(self.action.shown()),
    }
  }

  pub fn fencing_token(&self) -> Option<i64> {
    (self.fencing_token != NO_TOKEN).then_some(self.fencing_token)
  }

  pub fn acquired_at(&self) -> Mono {
    Mono::from_nanos(self.acquired_at)
  }

  pub fn min_hold_until(&self) -> Option<DateTime> {
    (self.min_hold_until != NO_MIN_HOLD).then(|| DateTime::from_millis(self.min_hold_until))
  }

  /// The flag alone: false once freed, closed or marked lost. A lock whose
  /// deadline passed but that nobody has marked lost yet still reads true
  /// here; `Core::check` is the exact reading.
  pub fn is_flagged(&self) -> bool {
    self.status.load(Ordering::Acquire) == HELD
  }

  pub fn is_lost(&self) -> bool {
    self.status.load(Ordering::Acquire) >= LOST_GONE
  }

  /// Marks the lock released; `true` if it was held until now.
  pub fn unlock(&self) -> bool {
    self.leave(FREED)
  }

  /// Marks the lock lost; `true` if it was held until now (a lock freed or
  /// lost already stays as it was).
  pub fn lose(&self, why: Loss) -> bool {
    self.leave(why.status())
  }

  fn leave(&self, to: u8) -> bool {
    self.status.compare_exchange(HELD, to, Ordering::AcqRel, Ordering::Acquire).is_ok()
  }

  /// Why the lock was lost, if it was.
  pub fn lost_why(&self) -> Option<&'static str> {
    match self.status.load(Ordering::Acquire) {
      LOST_GONE => Some(Loss::Gone.reason()),
      LOST_EXPIRED => Some(Loss::Expired.reason()),
      _ => None,
    }
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
    self.hold_until == u64::MAX || now.as_nanos() < self.hold_until
  }

  pub fn nothing_to_delete(&self) -> bool {
    self.nothing_to_delete.load(Ordering::Acquire)
  }

  pub fn set_nothing_to_delete(&self) {
    self.nothing_to_delete.store(true, Ordering::Release);
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use mongodb::bson::doc;

  fn state(action: Bson, other_key: Option<&str>) -> LockState {
    LockState::new(ObjectId::new(), &action, other_key, None, Mono::now(), None, None)
  }

  #[test]
  fn local_waiters_are_matched_on_the_key_given_whatever_the_stored_action() {
    // A plain lock waits on its action as shown (`Claim::wake_key`): not
    // kept a second time.
    let action = Bson::String("bank-details-42".into());
    let plain = state(action.clone(), None);
    assert_eq!(plain.key(), action.to_string());
    assert!(plain.other_key.is_none());
    let numbered = state(Bson::Int32(42), None);
    assert_eq!(numbered.key(), "42");
    assert!(numbered.other_key.is_none());
    // A permit's slot document: waiters wait on the semaphore's key.
    let permit = state(Bson::Document(doc! { "semaphore": "pool", "slot": 1 }), Some("pool"));
    assert_eq!(permit.key(), "pool");
    // A string action that is not the waiters' key is not mistaken for it.
    let renamed = state(Bson::String("reader:catalogue".into()), Some("catalogue"));
    assert_eq!(renamed.key(), "catalogue");
  }

  #[test]
  fn a_held_lock_stays_small() {
    // Kept for as long as the lock is held: the README counts its bytes.
    assert!(std::mem::size_of::<LockState>() <= 88, "{}", std::mem::size_of::<LockState>());
  }

  #[test]
  fn optional_fields_read_back_as_given() {
    let now = Mono::now();
    let until = DateTime::from_millis(1_700_000_000_123);
    let with = LockState::new(ObjectId::new(), &Bson::Int32(1), None, Some(7), now, Some(now), Some(until));
    assert_eq!(with.fencing_token(), Some(7));
    assert_eq!(with.min_hold_until(), Some(until));
    assert!(!with.wants_refresh(now));
    let without = state(Bson::Int32(1), None);
    assert_eq!(without.fencing_token(), None);
    assert_eq!(without.min_hold_until(), None);
    assert!(without.wants_refresh(Mono::now().plus(std::time::Duration::from_secs(1 << 40))));
  }

  #[test]
  fn a_lock_leaves_held_once_and_remembers_why_it_was_lost() {
    let freed = state(Bson::Int32(1), None);
    assert!(freed.is_flagged());
    assert!(freed.unlock());
    assert!(!freed.lose(Loss::Gone), "a freed lock is not lost after");
    assert!(!freed.is_lost());
    assert_eq!(freed.lost_why(), None);
    let lost = state(Bson::Int32(1), None);
    assert!(lost.lose(Loss::Expired));
    assert!(!lost.unlock() && !lost.lose(Loss::Gone));
    assert!(lost.is_lost() && !lost.is_flagged());
    assert_eq!(lost.lost_why(), Some(Loss::Expired.reason()));
  }

  #[test]
  fn a_lock_counts_as_lost_from_its_deadline_on() {
    let deadline = Mono::now().plus(std::time::Duration::from_secs(10));
    let held = LockState::new(ObjectId::new(), &Bson::Int32(1), None, None, deadline, None, None);
    assert!(!held.overdue(deadline.minus(std::time::Duration::from_nanos(1))));
    assert!(held.overdue(deadline));
    assert!(held.overdue(deadline.plus(std::time::Duration::from_secs(1))));
  }

  #[test]
  fn a_refresh_moves_the_deadline_later_never_earlier() {
    let deadline = Mono::now().plus(std::time::Duration::from_secs(10));
    let held = LockState::new(ObjectId::new(), &Bson::Int32(1), None, None, deadline, None, None);
    held.extend(deadline.minus(std::time::Duration::from_secs(5)));
    assert_eq!(held.deadline(), deadline, "a round that landed late does not shorten it");
    let later = deadline.plus(std::time::Duration::from_secs(10));
    held.extend(later);
    assert_eq!(held.deadline(), later);
  }

  #[test]
  fn max_hold_ends_the_refreshing_at_its_instant() {
    let now = Mono::now();
    let until = now.plus(std::time::Duration::from_secs(30));
    let held = LockState::new(ObjectId::new(), &Bson::Int32(1), None, None, now, Some(until), None);
    assert!(held.wants_refresh(until.minus(std::time::Duration::from_nanos(1))));
    assert!(!held.wants_refresh(until));
  }
}

//! Waiting for a held key: jittered exponential backoff between attempts
//! (so waiters in other processes do not hammer the server), and an
//! in-process wake-up when a local holder frees the key (so a waiter in
//! the same process does not sleep out a backoff step for nothing).
//!
//! The waiters of one mutex key in one process share the asking (the
//! primitives' waiters each ask on their own: see `Claim::shares_polling`,
//! passed to `Waiters::enter`): one of them,
//! the poller, retries on a timer, at `n` times the rate one waiter would
//! (capped at `1 / FIRST_BACKOFF`), where `n` is how many wait; the others
//! try only when a local free wakes them, or when they take over polling.
//! So a process asks the server about a key no more often than its
//! waiters did when each polled on its own, and a key freed in another
//! process is seen `n` times sooner than by any one of them (the
//! cross-process hand-over the benchmark measures). Waiters that each asked on their own also
//! asked in bursts, all at their first few short pauses at once.
//!
//! An attempt that finds the key held also asks whether the holder expired
//! (a conditional delete, a second command). A waiting key asks that at
//! most every `TAKEOVER_CHECK_EVERY` per process: a holder that died is
//! taken over up to that much later than its expiry, and a held key costs
//! one command per attempt instead of two.
//!
//! A caller's `Cancel` (its AbortSignal, hooked by `js::signals`) ends a
//! wait between attempts, never during one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::{Acquire, Relaxed, Release}};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// First pause between attempts.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_millis(250);
/// How often a process asks whether the holder of a key it waits for
/// expired (see the module's doc).
pub const TAKEOVER_CHECK_EVERY: Duration = Duration::from_millis(100);

/// The pause before attempt `attempt + 1`: 5 ms doubling up to 250 ms,
/// scaled by a random factor in [0.5, 1) so waiters spread out.
pub fn backoff(attempt: u32, random: f64) -> Duration {
  let base = FIRST_BACKOFF.saturating_mul(1u32 << attempt.min(16)).min(MAX_BACKOFF);
  base.mul_f64(0.5 + random.clamp(0.0, 1.0) / 2.0)
}

/// Per-key wake-ups and polling for the waiters of this process.
#[derive(Default)]
pub struct Waiters {
  keys: Mutex<HashMap<String, KeyWaiters>>,
}

struct KeyWaiters {
  notify: Arc<Notify>,
  /// How many wait on the key.
  count: usize,
  /// Whether one of them polls (see the module's doc).
  polled: bool,
  /// When this process last asked whether the key's holder expired.
  takeover_checked: Option<Instant>,
}

/// Held while waiting on a key; leaving unregisters the waiter.
pub struct WaitTicket<'a> {
  waiters: &'a Waiters,
  key: String,
  pub notify: Arc<Notify>,
  /// Whether this waiter shares the polling of its key (else it polls on
  /// its own, at its own backoff).
  shares: bool,
  polls: AtomicBool,
}

impl Waiters {
  /// Registers a waiter on `key`, to be woken by a local free; with
  /// `shares`, it also takes part in the key's shared polling.
  pub fn enter(&self, key: String, shares: bool) -> WaitTicket<'_> {
    let mut keys = self.keys.lock().unwrap();
    let entry = keys.entry(key.clone()).or_insert_with(|| KeyWaiters {
      notify: Arc::new(Notify::new()),
      count: 0,
      polled: false,
      takeover_checked: None,
    });
    entry.count += 1;
    WaitTicket { waiters: self, key, notify: entry.notify.clone(), shares, polls: AtomicBool::new(false) }
  }

  /// A local holder freed `key`: wake one local waiter, if any.
  pub fn wake(&self, key: &str) {
    if let Some(entry) = self.keys.lock().unwrap().get(key) {
      entry.notify.notify_one();
    }
  }

  /// Whether an attempt on `key` that finds it held should also ask if the
  /// holder expired: always when nobody here waits on it (a single
  /// attempt), else at most every `TAKEOVER_CHECK_EVERY`.
  pub fn takeover_check_due(&self, key: &str) -> bool {
    let mut keys = self.keys.lock().unwrap();
    let Some(entry) = keys.get_mut(key) else { return true };
    let now = Instant::now();
    if entry.takeover_checked.is_some_and(|at| now.duration_since(at) < TAKEOVER_CHECK_EVERY) {
      return false;
    }
    entry.takeover_checked = Some(now);
    true
  }
}

/// What a waiter does when its pause ends.
pub enum Turn {
  /// Poll: try again, then pause this long.
  Poll(Duration),
  /// Another waiter polls: sleep this long (or until woken), then ask again.
  Sleep(Duration),
}

impl WaitTicket<'_> {
  /// This waiter's turn after `attempt` pauses: the poller (it becomes
  /// one if nobody polls) pauses `backoff / n`, never less than the first
  /// backoff; the others sleep a full backoff step. A waiter that does not
  /// share the polling polls at its own backoff.
  pub fn turn(&self, attempt: u32, random: f64) -> Turn {
    if !self.shares {
      return Turn::Poll(backoff(attempt, random));
    }
    let mut keys = self.waiters.keys.lock().unwrap();
    let Some(entry) = keys.get_mut(&self.key) else { return Turn::Poll(backoff(attempt, random)) };
    if !self.polls.load(Relaxed) && !entry.polled {
      entry.polled = true;
      self.polls.store(true, Relaxed);
    }
    let pause = backoff(attempt, random);
    if self.polls.load(Relaxed) {
      let floor = backoff(0, random);
      Turn::Poll((pause / entry.count.max(1) as u32).max(floor))
    } else {
      Turn::Sleep(pause)
    }
  }
}

impl Drop for WaitTicket<'_> {
  fn drop(&mut self) {
    let mut keys = self.waiters.keys.lock().unwrap();
    if let Some(entry) = keys.get_mut(&self.key) {
      entry.count -= 1;
      if self.polls.load(Relaxed) {
        // The next waiter whose pause ends polls.
        entry.polled = false;
      }
      if entry.count == 0 {
        keys.remove(&self.key);
      }
    }
  }
}

/// Set once when the caller's signal aborts.
#[derive(Default)]
pub struct Cancel {
  fired: AtomicBool,
  notify: Notify,
}

impl Cancel {
  /// Called when the caller's signal aborts (see `js::signals`).
  pub fn fire(&self) {
    self.fired.store(true, Release);
    self.notify.notify_waiters();
  }

  pub fn is_fired(&self) -> bool {
    self.fired.load(Acquire)
  }

  /// Resolves once fired (at once if it already was).
  pub async fn cancelled(&self) {
    loop {
      let notified = self.notify.notified();
      if self.is_fired() {
        return;
      }
      notified.await;
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn backoff_doubles_from_a_few_ms_and_is_capped() {
    assert_eq!(backoff(0, 1.0), Duration::from_millis(5));
    assert_eq!(backoff(1, 1.0), Duration::from_millis(10));
    assert_eq!(backoff(3, 1.0), Duration::from_millis(40));
    assert_eq!(backoff(20, 1.0), MAX_BACKOFF);
    assert_eq!(backoff(0, 0.0), Duration::from_micros(2500));
  }

  #[test]
  fn jitter_keeps_a_pause_between_half_and_all_of_its_step() {
    for attempt in [0, 1, 4, 6, 30] {
      let step = FIRST_BACKOFF.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
      for random in [0.0, 0.25, 0.5, 0.999] {
        let pause = backoff(attempt, random);
        assert!(pause >= step / 2 && pause < step, "attempt {attempt}, random {random}: {pause:?} of {step:?}");
      }
    }
  }

  #[test]
  fn a_random_factor_out_of_range_is_clamped() {
    assert_eq!(backoff(2, -3.0), backoff(2, 0.0));
    assert_eq!(backoff(2, 7.0), backoff(2, 1.0));
  }

  #[test]
  fn backoff_grows_until_its_cap_and_stays_there() {
    let pauses: Vec<Duration> = (0..12).map(|a| backoff(a, 1.0)).collect();
    assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{pauses:?}");
    assert_eq!(pauses[6], MAX_BACKOFF, "5 ms doubled six times passes 250 ms");
    assert_eq!(backoff(u32::MAX, 1.0), MAX_BACKOFF);
  }

  #[test]
  fn waiters_are_counted_and_forgotten() {
    let w = Waiters::default();
    let a = w.enter("k".into(), true);
    let b = w.enter("k".into(), true);
    assert_eq!(w.keys.lock().unwrap()["k"].count, 2);
    drop(a);
    drop(b);
    assert!(w.keys.lock().unwrap().is_empty());
  }

  #[test]
  fn one_waiter_of_a_key_polls_for_all_of_them() {
    let w = Waiters::default();
    let tickets: Vec<_> = (0..8).map(|_| w.enter("k".into(), true)).collect();
    let polls = |t: &WaitTicket| matches!(t.turn(10, 1.0), Turn::Poll(_));
    // The first to pause polls, at 8 times one waiter's rate; the rest sleep a full step.
    assert!(matches!(tickets[0].turn(10, 1.0), Turn::Poll(p) if p == MAX_BACKOFF / 8));
    assert!(matches!(tickets[1].turn(10, 1.0), Turn::Sleep(p) if p == MAX_BACKOFF));
    assert_eq!(tickets.iter().filter(|t| polls(t)).count(), 1);
    // When the poller leaves, the next waiter whose pause ends polls.
    let mut tickets = tickets.into_iter();
    drop(tickets.next());
    let rest: Vec<_> = tickets.collect();
    assert!(polls(&rest[3]));
    assert_eq!(rest.iter().filter(|t| polls(t)).count(), 1);
    // Never faster than the first backoff step, however many wait.
    let many: Vec<_> = (0..200).map(|_| w.enter("m".into(), true)).collect();
    assert!(matches!(many[0].turn(10, 1.0), Turn::Poll(p) if p == FIRST_BACKOFF));
  }

  #[test]
  fn a_waiter_that_does_not_share_polls_on_its_own() {
    let w = Waiters::default();
    let shared = w.enter("k".into(), true);
    assert!(matches!(shared.turn(10, 1.0), Turn::Poll(_)));
    let own: Vec<_> = (0..3).map(|_| w.enter("k".into(), false)).collect();
    assert!(own.iter().all(|t| matches!(t.turn(3, 1.0), Turn::Poll(p) if p == backoff(3, 1.0))));
  }

  #[test]
  fn a_waited_for_key_asks_about_expiry_at_most_every_interval() {
    let w = Waiters::default();
    assert!(w.takeover_check_due("k") && w.takeover_check_due("k"), "nobody waits: every attempt asks");
    let _t = w.enter("k".into(), true);
    assert!(w.takeover_check_due("k"));
    assert!(!w.takeover_check_due("k"));
    std::thread::sleep(TAKEOVER_CHECK_EVERY);
    assert!(w.takeover_check_due("k"));
  }
}

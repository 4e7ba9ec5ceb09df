//! The background work of a manager: one task, not one timer per lock.
//!
//! Every `refreshMs` it refreshes all held locks with one small `updateMany`
//! however many they are (see `Store::refresh_held`); if fewer documents
//! matched than we hold, a `find` tells which are gone, and those locks are
//! lost. Each round runs as its own task, so a server that hangs cannot hold
//! up the other duty: waking at each held lock's deadline and declaring it
//! lost if no refresh got through in time. Rounds go every refresh period,
//! but no closer together than half the last answered round's time, so a
//! slow server has about two at once: one lands while the next is on its
//! way, and they do not pile up (each updates every held document, and
//! rounds at once on the same documents wait on each other's row locks).
//! A round still waiting never holds up the next: a hung command (a
//! connection that passes nothing) costs no lock that a later round can
//! still reach in time. As many wait at once as rounds fit in a ttl, and a
//! round is given up once none of its locks can use it any more (each past
//! its deadline as other rounds leave it). Measured on FerretDB with
//! PostgreSQL under a 3 s round trip on a 10 s ttl: 10,000 held locks (a
//! round: 3 s of network, 2 s at the server) kept, where one round at a
//! time lost them. Every 10 s it also re-reads the server's
//! clock, in a task of its own, so that a slow reading never delays a
//! refresh.
//!
//! Timers here only decide when to look: every decision (is a lock past its
//! deadline?) reads the monotonic clock of `clock::Mono` at that moment, so
//! a late wake-up (a paused process, a suspended machine) is never a wrong
//! answer, only a late signal; `lock.locked` is exact whenever it is read.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{interval_at, sleep, Instant, MissedTickBehavior};
use tracing::Instrument;

use crate::clock::Mono;

const CLOCK_SYNC_EVERY: Duration = Duration::from_secs(10);

/// The refresh rounds in flight, numbered in the order they started, so
/// that a caller can wait for those that began before a point (see
/// `Core::leave_refreshes`): a round updates the documents it read as held
/// when it began, and on a server that writes an update back as a whole
/// document (FerretDB 1.x), one that lands after another update of the same
/// document undoes it.
#[derive(Default)]
pub struct RoundsInFlight {
  live: std::sync::Mutex<(u64, std::collections::BTreeSet<u64>)>,
  done: tokio::sync::Notify,
}

impl RoundsInFlight {
  /// A round starts; it counts as in flight until the guard drops. Call
  /// before reading which locks are held.
  pub fn enter(&self) -> RoundGuard<'_> {
    let mut live = self.live.lock().unwrap();
    let id = live.0;
    live.0 += 1;
    live.1.insert(id);
    RoundGuard { rounds: self, id }
  }

  /// A mark: the rounds that started before it.
  pub fn mark(&self) -> u64 {
    self.live.lock().unwrap().0
  }

  /// Resolves once every round that started before `mark` has ended.
  pub async fn ended_before(&self, mark: u64) {
    loop {
      let notified = self.done.notified();
      tokio::pin!(notified);
      notified.as_mut().enable();
      if self.live.lock().unwrap().1.first().is_none_or(|first| *first >= mark) {
        return;
      }
      notified.await;
    }
  }
}

/// A round in flight (see `RoundsInFlight::enter`).
pub struct RoundGuard<'a> {
  rounds: &'a RoundsInFlight,
  id: u64,
}

impl Drop for RoundGuard<'_> {
  fn drop(&mut self) {
    self.rounds.live.lock().unwrap().1.remove(&self.id);
    self.rounds.done.notify_waiters();
  }
}

/// What the background task needs of its manager, handed down by the
/// `Core` that spawns it (which implements it), so that this module does
/// not import the core and the two are no circle.
pub trait Duties: Send + Sync + 'static {
  /// The earliest moment a held lock must be given up.
  fn next_deadline(&self) -> Option<Mono>;

  /// How long the last refresh round that got its answer took.
  fn last_round_trip(&self) -> Duration;

  /// One refresh round of every held lock; a failure is counted and logged.
  fn refresh_round(self: Arc<Self>) -> impl Future<Output = ()> + Send;

  /// Re-reads the server clock; a failure is counted and logged.
  fn sync_clock_round(self: Arc<Self>) -> impl Future<Output = ()> + Send;

  /// Gives up every held lock whose deadline has passed.
  fn expire_overdue(&self);

  /// The span the manager's work runs in.
  fn span(&self) -> tracing::Span;
}

/// Refresh rounds waiting for their answer at once, at most: those that fit
/// in a ttl (6 with the default refreshMs), within these bounds (a round
/// holds a pooled connection while it waits).
fn rounds_in_flight(ttl: Duration, period: Duration) -> usize {
  (ttl.as_millis() / period.as_millis().max(1)).clamp(2, 8) as usize
}

/// Whether a new round goes now, beside `in_flight` rounds (the newest
/// sent `newest_age` ago): when none is waiting, or there is room for one
/// more and the newest was sent at least half the last answered round's
/// time ago (`last`): about two at once on a slow server.
fn round_is_due(in_flight: usize, newest_age: Option<Duration>, most: usize, last: Duration) -> bool {
  let Some(newest_age) = newest_age else { return true };
  in_flight < most && newest_age >= last / 2
}

/// How long the task may sleep before it must look at the held locks'
/// deadlines again: until the earliest, or an hour when none is held.
fn until_deadline(next_deadline: Option<Mono>) -> Duration {
  next_deadline.map_or(Duration::from_secs(3600), |d| d.remaining())
}

/// Runs until `stop` changes or the manager is dropped. Holds only a weak
/// reference between ticks, so a manager JS has let go of is not kept alive.
/// A round goes every `period`, with at most as many in flight as fit in
/// `ttl` (see `rounds_in_flight`).
pub fn spawn<D: Duties>(core: Weak<D>, period: Duration, ttl: Duration, mut stop: watch::Receiver<bool>, span: tracing::Span) {
  let most = rounds_in_flight(ttl, period);
  napi::bindgen_prelude::spawn(
    async move {
      let mut ticker = interval_at(Instant::now() + period, period);
      ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
      let mut rounds: Vec<(JoinHandle<()>, Instant)> = Vec::new();
      let mut syncing: Option<JoinHandle<()>> = None;
      let mut last_sync = Instant::now();
      loop {
        let next_deadline = match core.upgrade() {
          Some(core) => core.next_deadline(),
          None => break,
        };
        tokio::select! {
          _ = ticker.tick() => {
            let Some(core) = core.upgrade() else { break };
            rounds.retain(|(h, _)| !h.is_finished());
            let newest_age = rounds.last().map(|(_, sent)| sent.elapsed());
            if round_is_due(rounds.len(), newest_age, most, core.last_round_trip()) {
              let handle = napi::bindgen_prelude::spawn(core.clone().refresh_round().instrument(core.span()));
              rounds.push((handle, Instant::now()));
            }
            if last_sync.elapsed() >= CLOCK_SYNC_EVERY && syncing.as_ref().is_none_or(|h| h.is_finished()) {
              last_sync = Instant::now();
              syncing = Some(napi::bindgen_prelude::spawn(core.clone().sync_clock_round().instrument(core.span())));
            }
          }
          _ = sleep(until_deadline(next_deadline)) => {}
          _ = stop.changed() => break,
        }
        match core.upgrade() {
          Some(core) => core.expire_overdue(),
          None => break,
        }
      }
    }
    .instrument(span),
  );
}

#[cfg(test)]
mod tests {
  use super::*;

  const MS: Duration = Duration::from_millis(1);

  #[test]
  fn as_many_rounds_fly_as_fit_in_a_ttl_within_two_and_eight() {
    // The defaults: a 60 s ttl, refreshed every 10 s.
    assert_eq!(rounds_in_flight(60_000 * MS, 10_000 * MS), 6);
    assert_eq!(rounds_in_flight(10_000 * MS, 6_000 * MS), 2, "never fewer than two");
    assert_eq!(rounds_in_flight(60_000 * MS, 1_000 * MS), 8, "never more than eight");
    assert_eq!(rounds_in_flight(60_000 * MS, Duration::ZERO), 8, "a zero period does not divide by zero");
  }

  #[test]
  fn a_round_goes_at_once_when_none_is_in_flight() {
    assert!(round_is_due(0, None, 6, 5_000 * MS));
  }

  #[test]
  fn a_round_waits_for_half_the_last_round_trip_since_the_newest() {
    let last = 3_000 * MS;
    assert!(!round_is_due(1, Some(1_499 * MS), 6, last));
    assert!(round_is_due(1, Some(1_500 * MS), 6, last));
    // A fast server: the next tick always sends.
    assert!(round_is_due(1, Some(MS), 6, Duration::ZERO));
  }

  #[test]
  fn no_round_goes_beyond_the_most_in_flight() {
    assert!(round_is_due(5, Some(10_000 * MS), 6, MS));
    assert!(!round_is_due(6, Some(10_000 * MS), 6, MS));
  }

  #[test]
  fn the_task_wakes_at_the_earliest_deadline_or_within_the_hour() {
    assert_eq!(until_deadline(None), Duration::from_secs(3600));
    assert_eq!(until_deadline(Some(Mono::now())), Duration::ZERO, "a deadline now or past: look at once");
    let ahead = until_deadline(Some(Mono::now().plus(Duration::from_secs(5))));
    assert!(ahead > 4_900 * MS && ahead <= 5_000 * MS, "{ahead:?}");
  }
}

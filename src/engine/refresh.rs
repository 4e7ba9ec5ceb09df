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

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{interval_at, sleep, Instant, MissedTickBehavior};
use tracing::Instrument;

use crate::engine::core::Core;

const CLOCK_SYNC_EVERY: Duration = Duration::from_secs(10);

/// Refresh rounds waiting for their answer at once, at most: those that fit
/// in a ttl (6 with the default refreshMs), within these bounds (a round
/// holds a pooled connection while it waits).
fn rounds_in_flight(ttl: Duration, period: Duration) -> usize {
  (ttl.as_millis() / period.as_millis().max(1)).clamp(2, 8) as usize
}

/// Whether a new round goes now, beside `rounds` (each with when it was
/// sent, oldest first): when none is waiting, or there is room for one
/// more and the newest was sent at least half the last answered round's
/// time ago (`last`): about two at once on a slow server.
fn round_is_due(rounds: &[(JoinHandle<()>, Instant)], most: usize, last: Duration) -> bool {
  let Some((_, newest)) = rounds.last() else { return true };
  rounds.len() < most && newest.elapsed() >= last / 2
}

/// Runs until `stop` changes or the manager is dropped. Holds only a weak
/// reference between ticks, so a manager JS has let go of is not kept alive.
pub fn spawn(core: Weak<Core>, mut stop: watch::Receiver<bool>, span: tracing::Span) {
  let Some((period, ttl)) = core.upgrade().map(|c| (c.refresh_period(), c.config.ttl)) else { return };
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
        let until_deadline = next_deadline.map_or(Duration::from_secs(3600), |d| d.remaining());
        tokio::select! {
          _ = ticker.tick() => {
            let Some(core) = core.upgrade() else { break };
            rounds.retain(|(h, _)| !h.is_finished());
            if round_is_due(&rounds, most, core.last_round_trip()) {
              let round = core.clone();
              // traced() logs and counts a failure; the next tick tries again.
              let handle = napi::bindgen_prelude::spawn(
                async move { let _ = round.traced(round.refresh_all()).await; }.instrument(core.span()),
              );
              rounds.push((handle, Instant::now()));
            }
            if last_sync.elapsed() >= CLOCK_SYNC_EVERY && syncing.as_ref().is_none_or(|h| h.is_finished()) {
              last_sync = Instant::now();
              let sync = core.clone();
              syncing = Some(napi::bindgen_prelude::spawn(
                async move { let _ = sync.traced(sync.sync_clock()).await; }.instrument(core.span()),
              ));
            }
          }
          _ = sleep(until_deadline) => {}
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

//! The background work of a manager: one task, not one timer per lock.
//!
//! Every `refreshMs` it refreshes all held locks with one `updateMany` per
//! batch of up to 1,000 ids; if fewer documents matched than we hold, one
//! `find` tells which are gone, and those locks are lost. The refresh runs
//! as its own task, so a server that hangs cannot hold up the other duty:
//! waking at each held lock's deadline and declaring it lost if no refresh
//! got through in time. Every 10 s it also re-reads the server's clock.
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

use crate::core::Core;

const CLOCK_SYNC_EVERY: Duration = Duration::from_secs(10);

/// Runs until `stop` changes or the manager is dropped. Holds only a weak
/// reference between ticks, so a manager JS has let go of is not kept alive.
pub fn spawn(core: Weak<Core>, mut stop: watch::Receiver<bool>, span: tracing::Span) {
  let Some(period) = core.upgrade().map(|c| c.refresh_period()) else { return };
  napi::bindgen_prelude::spawn(
    async move {
      let mut ticker = interval_at(Instant::now() + period, period);
      ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
      let mut inflight: Option<JoinHandle<()>> = None;
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
            if inflight.as_ref().map_or(true, |h| h.is_finished()) {
              let sync = last_sync.elapsed() >= CLOCK_SYNC_EVERY;
              if sync {
                last_sync = Instant::now();
              }
              let span = core.span();
              inflight = Some(napi::bindgen_prelude::spawn(
                async move {
                  // traced() logs and counts a failure; the next tick tries again.
                  let _ = core.traced(core.refresh_all()).await;
                  if sync {
                    let _ = core.traced(core.sync_clock()).await;
                  }
                }
                .instrument(span),
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

//! The background refresh: one timer per manager, not one per lock.
//!
//! Each tick refreshes every lock the manager holds with one `updateMany`
//! per batch of ids; if fewer documents matched than we hold, one `find`
//! tells which are gone, and those locks turn `locked = false`.

use std::sync::Weak;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tracing::Instrument;

use crate::manager::Core;

/// Runs until `stop` changes or the manager is dropped. Holds only a weak
/// reference, so a manager that JS has let go of is not kept alive by it.
pub fn spawn(core: Weak<Core>, period: Duration, mut stop: watch::Receiver<bool>, span: tracing::Span) {
  napi::bindgen_prelude::spawn(async move {
    let mut ticker = interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
      tokio::select! {
        _ = ticker.tick() => {}
        _ = stop.changed() => break,
      }
      let Some(core) = core.upgrade() else { break };
      // traced() logs and counts a failure; the next tick tries again.
      let _ = core.traced(core.refresh_all()).await;
    }
  }.instrument(span));
}

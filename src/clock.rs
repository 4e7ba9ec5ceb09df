//! Time as the server sees it.
//!
//! Lock documents carry expiry instants, and every process compares them
//! with "now". If each process used its own clock (as `mongo-locks` does), a
//! process whose clock runs ahead would take over live locks early. So we
//! estimate the offset between this machine's clock and the server's from
//! the `localTime` of a `hello` reply, corrected by half the round trip
//! (the NTP idea), refresh the estimate periodically, and write and compare
//! expiries in server time.
//!
//! Holders judge their own expiry on the monotonic clock instead (see
//! `Deadline`): a lock written at local instant `t` with a ttl expires `ttl`
//! later in any clock, whatever the wall clocks say.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mongodb::bson::DateTime;

/// The smallest safety margin a holder keeps between the expiry it wrote
/// and the moment it gives the lock up as lost.
const MIN_MARGIN_MS: i64 = 50;

#[derive(Default)]
pub struct ServerClock {
  /// server time minus local time, in ms.
  offset_ms: AtomicI64,
  /// The uncertainty of that estimate: the last round trip, in ms.
  rtt_ms: AtomicI64,
}

impl ServerClock {
  /// The server's time now, by our estimate.
  pub fn now(&self) -> DateTime {
    DateTime::from_millis(local_ms() + self.offset_ms.load(Relaxed))
  }

  /// Folds in one `hello`: sent at local `sent_ms`, answered at local
  /// `received_ms`, carrying the server's `localTime`.
  pub fn record(&self, sent_ms: i64, received_ms: i64, server: DateTime) {
    let (offset, rtt) = estimate(sent_ms, received_ms, server.timestamp_millis());
    self.offset_ms.store(offset, Relaxed);
    self.rtt_ms.store(rtt, Relaxed);
  }

  pub fn offset_ms(&self) -> i64 {
    self.offset_ms.load(Relaxed)
  }

  /// How much earlier than the written expiry a holder gives up a lock:
  /// the estimate's error is at most half a round trip each way, and two
  /// processes each carry one.
  pub fn margin(&self) -> Duration {
    Duration::from_millis(self.rtt_ms.load(Relaxed).max(MIN_MARGIN_MS) as u64)
  }
}

/// (offset, round trip) from one exchange: the server read its clock
/// somewhere within the round trip; the midpoint bounds the error by rtt/2.
pub fn estimate(sent_ms: i64, received_ms: i64, server_ms: i64) -> (i64, i64) {
  let rtt = (received_ms - sent_ms).max(0);
  let midpoint = sent_ms + rtt / 2;
  (server_ms - midpoint, rtt)
}

/// This machine's wall clock, in ms since the epoch.
pub fn local_ms() -> i64 {
  SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `at + ttl`, at millisecond precision like every BSON date.
pub fn after(at: DateTime, ttl: Duration) -> DateTime {
  DateTime::from_millis(at.timestamp_millis().saturating_add(ttl.as_millis() as i64))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn after_adds_milliseconds() {
    let t = DateTime::from_millis(1_000);
    assert_eq!(after(t, Duration::from_millis(60_000)).timestamp_millis(), 61_000);
  }

  #[test]
  fn offset_is_measured_from_the_midpoint_of_the_round_trip() {
    // Sent at 1000, answered at 1100 (rtt 100); the server said 31050:
    // its clock is 30 s ahead of ours.
    assert_eq!(estimate(1000, 1100, 31_050), (30_000, 100));
    // A server 5 s behind.
    assert_eq!(estimate(1000, 1010, -3_995), (-5_000, 10));
  }

  #[test]
  fn now_applies_the_offset() {
    let clock = ServerClock::default();
    let sent = local_ms();
    clock.record(sent, sent, DateTime::from_millis(sent + 42_000));
    let diff = clock.now().timestamp_millis() - local_ms();
    assert!((41_900..=42_000).contains(&diff), "{diff}");
  }

  #[test]
  fn margin_has_a_floor_and_follows_the_round_trip() {
    let clock = ServerClock::default();
    assert_eq!(clock.margin(), Duration::from_millis(50));
    clock.record(0, 300, DateTime::from_millis(150));
    assert_eq!(clock.margin(), Duration::from_millis(300));
  }
}

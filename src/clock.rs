//! Time as the lock documents record it.
//!
//! Expiry instants are written by the client (as `mongo-locks` does), so the
//! same arithmetic serves insert, refresh and the takeover test.

use std::time::Duration;

use mongodb::bson::DateTime;

/// Now, by this machine's clock.
pub fn now() -> DateTime {
  DateTime::now()
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
}

//! Time: this machine's monotonic clock, and the server's clock as we know it.
//!
//! Lock documents carry expiry instants, and every process compares them
//! with "now". If each process used its own wall clock (as `mongo-locks`
//! does), a process whose clock runs ahead, or steps (NTP, a VM resumed, a
//! manual `date`), would take over live locks early. So expiries are
//! written and compared in *server* time, and the wall clock of this machine
//! never enters a decision:
//!
//! - We sample the server's clock (the `localTime` of a `hello`) on a warm
//!   connection, several times, keep the sample with the shortest round
//!   trip, and anchor it to the monotonic clock: server now = server time at
//!   the sample + monotonic time elapsed since. Its uncertainty is half that
//!   round trip (the server read its clock somewhere inside it), growing
//!   slowly with the time since the sample (the two clocks' rates differ).
//! - Every decision takes the uncertainty on the safe side: a taker treats a
//!   lock as expiring later by it (`ServerNow::earliest`), a holder gives a
//!   lock up earlier by it, twice over (its own share and, by symmetry, the
//!   taker's), plus a fixed margin.
//!
//! The monotonic clock is `CLOCK_BOOTTIME` on Linux, which keeps counting
//! while the machine is suspended: after a resume, a holder knows that its
//! lock's time ran out during the sleep. Elsewhere it is `std::time::Instant`.

use std::sync::Mutex;
use std::time::Duration;

use mongodb::bson::DateTime;

/// The smallest safety margin a holder keeps between the expiry it wrote
/// and the moment it gives the lock up as lost.
pub const MIN_MARGIN: Duration = Duration::from_millis(50);

/// How fast a sample's uncertainty grows with its age: 1 ms per second
/// (1,000 ppm), well above the rate difference of two healthy clocks, NTP
/// slewing (at most 500 ppm) included.
const DRIFT_PER_SEC_MS: f64 = 1.0;

/// A point on this machine's monotonic clock, as time since an arbitrary
/// origin. Never stepped; on Linux it counts suspended time too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mono(Duration);

impl Mono {
  pub fn now() -> Mono {
    Mono(monotonic_now())
  }

  /// How long after `earlier` this is (zero if it is not after).
  pub fn since(self, earlier: Mono) -> Duration {
    self.0.saturating_sub(earlier.0)
  }

  /// How long until this point, from now (zero if it passed).
  pub fn remaining(self) -> Duration {
    self.since(Mono::now())
  }

  pub fn plus(self, d: Duration) -> Mono {
    Mono(self.0.saturating_add(d))
  }

  pub fn minus(self, d: Duration) -> Mono {
    Mono(self.0.saturating_sub(d))
  }

  /// As nanoseconds since the origin, for atomics.
  pub fn as_nanos(self) -> u64 {
    self.0.as_nanos().min(u64::MAX as u128) as u64
  }

  pub fn from_nanos(n: u64) -> Mono {
    Mono(Duration::from_nanos(n))
  }
}

#[cfg(target_os = "linux")]
fn monotonic_now() -> Duration {
  let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
  // SAFETY: clock_gettime writes one timespec; CLOCK_BOOTTIME exists on
  // every Linux since 2.6.39.
  let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
  assert_eq!(rc, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
  Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn monotonic_now() -> Duration {
  static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
  ORIGIN.get_or_init(std::time::Instant::now).elapsed()
}

/// One reading of the server's clock, anchored to ours.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
  /// The server's time (ms since the epoch) at `at`.
  pub server_ms: i64,
  /// The local monotonic instant that server time belongs to: the midpoint
  /// of the round trip.
  pub at: Mono,
  /// Half the round trip: how far the true server time at `at` can be
  /// from `server_ms`, either way.
  pub half_rtt: Duration,
}

impl Sample {
  /// A `hello` sent at `sent` and answered at `received`, carrying the
  /// server's `localTime`.
  pub fn from_exchange(sent: Mono, received: Mono, server: DateTime) -> Sample {
    let rtt = received.since(sent);
    Sample { server_ms: server.timestamp_millis(), at: sent.plus(rtt / 2), half_rtt: rtt / 2 }
  }

  /// The uncertainty of this sample read at `now`: half its round trip,
  /// rounded up to whole ms, plus the drift allowance for its age.
  fn uncertainty_at(&self, now: Mono) -> Duration {
    let drift = now.since(self.at).as_secs_f64() * DRIFT_PER_SEC_MS;
    let ms = self.half_rtt.as_secs_f64() * 1000.0 + drift;
    Duration::from_millis(ms.ceil() as u64)
  }

  fn read(&self, now: Mono) -> ServerNow {
    let elapsed_ms = now.since(self.at).as_millis() as i64;
    ServerNow { estimate_ms: self.server_ms.saturating_add(elapsed_ms), uncertainty: self.uncertainty_at(now), at: now }
  }
}

/// The server's time at one local instant, with its uncertainty.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerNow {
  /// Our best estimate, in ms since the epoch.
  pub estimate_ms: i64,
  /// The true server time is within this of the estimate.
  pub uncertainty: Duration,
  /// The local instant this reading belongs to.
  pub at: Mono,
}

impl ServerNow {
  /// The estimate, as a BSON date (for the times we write).
  pub fn estimate(&self) -> DateTime {
    DateTime::from_millis(self.estimate_ms)
  }

  /// The earliest the server's time can be: a taker removes only locks that
  /// expired before this, so it never takes a live one early.
  pub fn earliest(&self) -> DateTime {
    DateTime::from_millis(self.estimate_ms.saturating_sub(self.uncertainty.as_millis() as i64))
  }

  /// The latest the server's time can be: `minHoldMs` counts from here, so
  /// the key stays taken at least that long in the server's time.
  pub fn latest(&self) -> DateTime {
    DateTime::from_millis(self.estimate_ms.saturating_add(self.uncertainty.as_millis() as i64))
  }

  /// When a holder that wrote `estimate + ttl` at this instant must stop
  /// believing it holds the lock: a ttl later, less its own uncertainty,
  /// the taker's share (taken to be as large), and the fixed margin.
  pub fn holder_deadline(&self, ttl: Duration) -> Mono {
    let margin = self.uncertainty.saturating_mul(2).saturating_add(MIN_MARGIN);
    self.at.plus(ttl.saturating_sub(margin))
  }
}

/// The server's clock, as last sampled.
#[derive(Default)]
pub struct ServerClock {
  sample: Mutex<Option<Sample>>,
}

impl ServerClock {
  /// The server's time now, by our best sample; `None` before the first.
  pub fn now(&self) -> Option<ServerNow> {
    let now = Mono::now();
    self.sample.lock().unwrap().map(|s| s.read(now))
  }

  /// Keeps `fresh` if it is at least as precise now as the sample we have
  /// (whose uncertainty has grown with its age). Returns whether it was kept.
  pub fn offer(&self, fresh: Sample) -> bool {
    let mut current = self.sample.lock().unwrap();
    let now = Mono::now();
    let better = match *current {
      Some(old) => fresh.uncertainty_at(now) <= old.uncertainty_at(now),
      None => true,
    };
    if better {
      *current = Some(fresh);
    }
    better
  }

  /// Server time minus this machine's wall-clock time, in ms, now: for
  /// display only (no decision reads the wall clock).
  pub fn offset_ms(&self) -> Option<i64> {
    self.now().map(|n| n.estimate_ms - wall_ms())
  }

  /// The current uncertainty, in ms (for display).
  pub fn uncertainty_ms(&self) -> Option<f64> {
    self.now().map(|n| n.uncertainty.as_secs_f64() * 1000.0)
  }
}

/// This machine's wall clock, in ms since the epoch. Used for display and
/// jitter seeds only, never for an expiry decision.
pub fn wall_ms() -> i64 {
  use std::time::{SystemTime, UNIX_EPOCH};
  SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `at + ttl`, at millisecond precision like every BSON date.
pub fn after(at: DateTime, ttl: Duration) -> DateTime {
  DateTime::from_millis(at.timestamp_millis().saturating_add(ttl.as_millis() as i64))
}

#[cfg(test)]
mod tests {
  use super::*;

  fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
  }

  #[test]
  fn after_adds_milliseconds() {
    let t = DateTime::from_millis(1_000);
    assert_eq!(after(t, ms(60_000)).timestamp_millis(), 61_000);
  }

  #[test]
  fn a_sample_is_anchored_at_the_midpoint_of_its_round_trip() {
    let sent = Mono::from_nanos(1_000_000_000);
    let s = Sample::from_exchange(sent, sent.plus(ms(100)), DateTime::from_millis(31_050));
    assert_eq!(s.at, sent.plus(ms(50)));
    assert_eq!(s.half_rtt, ms(50));
    // Read 1 s after the midpoint: one second later in server time, and the
    // uncertainty is half the round trip plus 1 ms of drift allowance.
    let now = s.read(s.at.plus(ms(1000)));
    assert_eq!(now.estimate_ms, 32_050);
    assert_eq!(now.uncertainty, ms(51));
    assert_eq!(now.earliest().timestamp_millis(), 32_050 - 51);
  }

  #[test]
  fn server_now_follows_the_monotonic_clock_not_the_wall_clock() {
    let clock = ServerClock::default();
    let sent = Mono::now();
    clock.offer(Sample::from_exchange(sent, sent, DateTime::from_millis(5_000)));
    std::thread::sleep(ms(30));
    let now = clock.now().unwrap();
    assert!((5_030..5_100).contains(&now.estimate_ms), "{now:?}");
  }

  #[test]
  fn a_holder_gives_up_early_by_twice_the_uncertainty_and_the_margin() {
    let at = Mono::from_nanos(0);
    let now = ServerNow { estimate_ms: 0, uncertainty: ms(20), at };
    assert_eq!(now.holder_deadline(ms(3000)), at.plus(ms(3000 - 40 - 50)));
    // Never before the instant itself.
    assert_eq!(now.holder_deadline(ms(10)), at);
  }

  #[test]
  fn a_fresher_sample_replaces_one_only_if_it_is_as_precise_now() {
    let clock = ServerClock::default();
    let t = Mono::now();
    let tight = Sample { server_ms: 0, at: t, half_rtt: ms(1) };
    let loose = Sample { server_ms: 0, at: t, half_rtt: ms(200) };
    assert!(clock.offer(tight));
    assert!(!clock.offer(loose));
    assert!(clock.offer(Sample { server_ms: 7, at: t, half_rtt: ms(1) }));
    assert_eq!(clock.now().unwrap().estimate_ms >= 7, true);
  }

  #[test]
  fn the_monotonic_clock_moves_forward() {
    let a = Mono::now();
    std::thread::sleep(ms(5));
    let b = Mono::now();
    assert!(b.since(a) >= ms(5));
    assert_eq!(a.since(b), Duration::ZERO);
  }
}

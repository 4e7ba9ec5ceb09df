//! Counters and histograms an operator wants, cheap to bump and to read:
//! atomics only, no lock on any path a lock call takes. `locker.stats()`
//! reads the counters; `locker.metrics()` (lib/metrics.js renders the Prometheus
//! text) reads everything through `MetricsSnapshot`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use napi_derive::napi;

/// Bucket bounds (seconds) for round trips and acquisitions: 1 ms to 30 s.
const LATENCY_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Bucket bounds (seconds) for how long locks are held: 10 ms to an hour.
const HOLD_BOUNDS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

pub struct Stats {
  pub acquired: AtomicU64,
  pub contended: AtomicU64,
  pub taken_over: AtomicU64,
  pub lost: AtomicU64,
  pub refreshes: AtomicU64,
  pub refresh_commands: AtomicU64,
  pub errors: AtomicU64,
  pub once_runs: AtomicU64,
  pub once_replays: AtomicU64,
  pub once_mismatches: AtomicU64,
  pub once_takeovers: AtomicU64,
  /// Callers waiting (between attempts) for a key right now.
  pub waiting: AtomicI64,
  /// From a `lock()` call to the lock, for calls that got one.
  pub acquire: Histogram,
  /// Time spent waiting for a held key, for calls that had to wait.
  pub wait: Histogram,
  /// From acquiring a lock to freeing or losing it.
  pub hold: Histogram,
  /// Round trip of one refresh command.
  pub refresh: Histogram,
}

impl Default for Stats {
  fn default() -> Self {
    Stats {
      acquired: AtomicU64::new(0),
      contended: AtomicU64::new(0),
      taken_over: AtomicU64::new(0),
      lost: AtomicU64::new(0),
      refreshes: AtomicU64::new(0),
      refresh_commands: AtomicU64::new(0),
      errors: AtomicU64::new(0),
      once_runs: AtomicU64::new(0),
      once_replays: AtomicU64::new(0),
      once_mismatches: AtomicU64::new(0),
      once_takeovers: AtomicU64::new(0),
      waiting: AtomicI64::new(0),
      acquire: Histogram::new(LATENCY_BOUNDS),
      wait: Histogram::new(LATENCY_BOUNDS),
      hold: Histogram::new(HOLD_BOUNDS),
      refresh: Histogram::new(LATENCY_BOUNDS),
    }
  }
}

/// A histogram with fixed bounds: one atomic count per bucket (the last is
/// +Inf) and the sum in microseconds.
pub struct Histogram {
  bounds: &'static [f64],
  counts: Vec<AtomicU64>,
  sum_micros: AtomicU64,
}

impl Histogram {
  fn new(bounds: &'static [f64]) -> Self {
    Histogram { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum_micros: AtomicU64::new(0) }
  }

  pub fn observe(&self, d: Duration) {
    let secs = d.as_secs_f64();
    let bucket = self.bounds.iter().position(|b| secs <= *b).unwrap_or(self.bounds.len());
    self.counts[bucket].fetch_add(1, Relaxed);
    self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
  }

  fn snapshot(&self) -> HistogramSnapshot {
    let mut running = 0u64;
    let cumulative: Vec<f64> = self
      .counts
      .iter()
      .map(|c| {
        running += c.load(Relaxed);
        running as f64
      })
      .collect();
    HistogramSnapshot {
      bounds: self.bounds.to_vec(),
      count: running as f64,
      cumulative,
      sum: self.sum_micros.load(Relaxed) as f64 / 1e6,
    }
  }
}

/// While alive, one more caller counts as waiting.
pub struct Waiting<'a>(&'a AtomicI64);

impl<'a> Waiting<'a> {
  pub fn enter(gauge: &'a AtomicI64) -> Self {
    gauge.fetch_add(1, Relaxed);
    Waiting(gauge)
  }
}

impl Drop for Waiting<'_> {
  fn drop(&mut self) {
    self.0.fetch_sub(1, Relaxed);
  }
}

impl Stats {
  pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
  }

  pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
  }

  /// Everything, for `locker.metrics()`.
  pub fn metrics(&self, held: usize) -> MetricsSnapshot {
    MetricsSnapshot {
      counters: self.snapshot(held),
      waiting: self.waiting.load(Relaxed).max(0) as u32,
      acquire_seconds: self.acquire.snapshot(),
      wait_seconds: self.wait.snapshot(),
      hold_seconds: self.hold.snapshot(),
      refresh_seconds: self.refresh.snapshot(),
    }
  }

  pub fn snapshot(&self, held: usize) -> LockStats {
    let read = |c: &AtomicU64| c.load(Relaxed) as f64;
    LockStats {
      held: held as u32,
      acquired: read(&self.acquired),
      contended: read(&self.contended),
      taken_over: read(&self.taken_over),
      lost: read(&self.lost),
      refreshes: read(&self.refreshes),
      refresh_commands: read(&self.refresh_commands),
      errors: read(&self.errors),
      once_runs: read(&self.once_runs),
      once_replays: read(&self.once_replays),
      once_mismatches: read(&self.once_mismatches),
      once_takeovers: read(&self.once_takeovers),
    }
  }
}

/// A snapshot of a manager's counters since it was created.
#[napi(object)]
pub struct LockStats {
  /// Locks this manager holds now.
  pub held: u32,
  /// `lock()` calls that returned a lock.
  pub acquired: f64,
  /// `lock()` calls that resolved `null` because someone else held the key.
  pub contended: f64,
  /// Acquisitions that first removed an expired lock (a crashed or stalled holder's).
  pub taken_over: f64,
  /// Locks found gone (deleted, taken over) while this manager believed it held them.
  pub lost: f64,
  /// Lock refreshes written, counting each lock once per refresh.
  pub refreshes: f64,
  /// Update commands completed by the background refresh: one per round, however many locks it refreshes.
  pub refresh_commands: f64,
  /// Operations that failed with a server or driver error.
  pub errors: f64,
  /// `once()` calls that ran their function (first runs and takeovers).
  pub once_runs: f64,
  /// `once()` calls answered by a finished record, without a run.
  pub once_replays: f64,
  /// `once()` calls refused: the key's record was stored for another payload.
  pub once_mismatches: f64,
  /// `once()` runs that first removed an expired record (a run whose holder crashed or stalled).
  pub once_takeovers: f64,
}

/// One histogram as read: bucket upper bounds in seconds, the cumulative
/// count at each bound and at +Inf (one more entry than `bounds`), the total
/// count and the sum in seconds.
#[napi(object)]
pub struct HistogramSnapshot {
  pub bounds: Vec<f64>,
  pub cumulative: Vec<f64>,
  pub count: f64,
  pub sum: f64,
}

/// What `locker.metrics()` renders: the counters of `stats()`, the number of
/// callers waiting now, and four histograms.
#[napi(object)]
pub struct MetricsSnapshot {
  pub counters: LockStats,
  pub waiting: u32,
  /// From a `lock()` call to the lock, for calls that got one (waiting included).
  pub acquire_seconds: HistogramSnapshot,
  /// Time spent waiting for a held key, for calls that had to wait (any outcome).
  pub wait_seconds: HistogramSnapshot,
  /// From acquiring a lock to freeing or losing it.
  pub hold_seconds: HistogramSnapshot,
  /// Round trip of one refresh command.
  pub refresh_seconds: HistogramSnapshot,
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_histogram_counts_cumulatively_with_an_infinite_bucket() {
    let h = Histogram::new(&[0.01, 0.1]);
    h.observe(Duration::from_millis(5));
    h.observe(Duration::from_millis(50));
    h.observe(Duration::from_millis(50));
    h.observe(Duration::from_secs(2));
    let s = h.snapshot();
    assert_eq!(s.cumulative, vec![1.0, 3.0, 4.0]);
    assert_eq!(s.count, 4.0);
    assert!((s.sum - 2.105).abs() < 1e-9);
  }
}

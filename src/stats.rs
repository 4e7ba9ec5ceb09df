//! Counters an operator wants, cheap to bump and to read.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use napi_derive::napi;

#[derive(Default)]
pub struct Stats {
  pub acquired: AtomicU64,
  pub contended: AtomicU64,
  pub taken_over: AtomicU64,
  pub lost: AtomicU64,
  pub refreshes: AtomicU64,
  pub refresh_commands: AtomicU64,
  pub errors: AtomicU64,
}

impl Stats {
  pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
  }

  pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
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
  /// Update commands completed by the background refresh (one per batch of up to 1,000 locks).
  pub refresh_commands: f64,
  /// Operations that failed with a server or driver error.
  pub errors: f64,
}

//! Waiting for a held key: jittered exponential backoff between attempts
//! (so waiters in other processes do not hammer the server), and an
//! in-process wake-up when a local holder frees the key (so a waiter in
//! the same process does not sleep out a backoff step for nothing).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// First pause between attempts.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// The pause before attempt `attempt + 1`: 5 ms doubling up to 250 ms,
/// scaled by a random factor in [0.5, 1) so waiters spread out.
pub fn backoff(attempt: u32, random: f64) -> Duration {
  let base = FIRST_BACKOFF.saturating_mul(1u32 << attempt.min(16)).min(MAX_BACKOFF);
  base.mul_f64(0.5 + random.clamp(0.0, 1.0) / 2.0)
}

/// A cheap random number in [0, 1) for jitter (xorshift; not for secrets).
pub fn jitter() -> f64 {
  static STATE: AtomicU64 = AtomicU64::new(0);
  let mut x = STATE.load(Relaxed);
  if x == 0 {
    x = crate::clock::wall_ms() as u64 ^ 0x9E37_79B9_7F4A_7C15 ^ (std::process::id() as u64) << 32;
  }
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  STATE.store(x, Relaxed);
  (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Per-key wake-ups for the waiters of this process.
#[derive(Default)]
pub struct Waiters {
  keys: Mutex<HashMap<String, (Arc<Notify>, usize)>>,
}

/// Held while waiting on a key; leaving unregisters the waiter.
pub struct WaitTicket<'a> {
  waiters: &'a Waiters,
  key: String,
  pub notify: Arc<Notify>,
}

impl Waiters {
  pub fn enter(&self, key: String) -> WaitTicket<'_> {
    let mut keys = self.keys.lock().unwrap();
    let entry = keys.entry(key.clone()).or_insert_with(|| (Arc::new(Notify::new()), 0));
    entry.1 += 1;
    WaitTicket { waiters: self, key, notify: entry.0.clone() }
  }

  /// A local holder freed `key`: wake one local waiter, if any.
  pub fn wake(&self, key: &str) {
    if let Some((notify, _)) = self.keys.lock().unwrap().get(key) {
      notify.notify_one();
    }
  }
}

impl Drop for WaitTicket<'_> {
  fn drop(&mut self) {
    let mut keys = self.waiters.keys.lock().unwrap();
    if let Some(entry) = keys.get_mut(&self.key) {
      entry.1 -= 1;
      if entry.1 == 0 {
        keys.remove(&self.key);
      }
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
  fn jitter_stays_in_range_and_varies() {
    let samples: Vec<f64> = (0..100).map(|_| jitter()).collect();
    assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
    assert!(samples.windows(2).any(|w| w[0] != w[1]));
  }

  #[test]
  fn waiters_are_counted_and_forgotten() {
    let w = Waiters::default();
    let a = w.enter("k".into());
    let b = w.enter("k".into());
    assert_eq!(w.keys.lock().unwrap()["k"].1, 2);
    drop(a);
    drop(b);
    assert!(w.keys.lock().unwrap().is_empty());
  }
}

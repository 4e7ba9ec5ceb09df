//! A cheap random number, for jitter (waiters' backoff, a semaphore's
//! permit order) and unique names: a shared bottom module, as `store`
//! needs it as much as `engine`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn jitter_stays_in_range_and_varies() {
    let samples: Vec<f64> = (0..100).map(|_| jitter()).collect();
    assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
    assert!(samples.windows(2).any(|w| w[0] != w[1]));
  }
}

//! Giving memory back to the system after a burst (glibc Linux only).
//!
//! A burst of concurrent calls (thousands of `lock()` at once) allocates
//! per call while it waits and runs; when they are done, glibc's malloc
//! keeps the freed memory in its arenas (the Tokio worker's arena above
//! all), fragmented, so RSS stays where the burst took it. Measured with
//! the `alloc-stats` build (README, issue 14): after a burst of 10,000
//! lock()+free() the Rust side had freed all but 4 MB, malloc held
//! 299 MB free, and `malloc_trim(0)` brought RSS from +300 MB to +23 MB.
//!
//! So: every call from JavaScript counts as in flight while it runs (see
//! `Core::traced`). When the count falls to zero after having reached
//! `BURST` since the last trim, a trim is scheduled `QUIET` later, and runs
//! then if nothing is in flight (else the next fall to zero schedules it
//! again). Ordinary traffic, below `BURST` concurrent calls, never trims;
//! a burst costs one `malloc_trim(0)` (milliseconds) after it.

/// A call from JavaScript in flight; dropping it ends it.
pub struct Op(());

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
  use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
  use std::time::Duration;

  /// Concurrent calls that make a burst worth trimming after.
  const BURST: usize = 256;
  /// How long nothing must be in flight before the trim.
  const QUIET: Duration = Duration::from_secs(1);

  static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
  /// The most calls in flight at once since the last trim.
  static HIGH: AtomicUsize = AtomicUsize::new(0);
  static PENDING: AtomicBool = AtomicBool::new(false);
  /// Trims done (read by the `alloc-stats` build).
  pub static TRIMS: AtomicUsize = AtomicUsize::new(0);

  pub fn enter() {
    let now = IN_FLIGHT.fetch_add(1, Ordering::AcqRel) + 1;
    HIGH.fetch_max(now, Ordering::AcqRel);
  }

  pub fn leave() {
    if IN_FLIGHT.fetch_sub(1, Ordering::AcqRel) != 1 || HIGH.load(Ordering::Acquire) < BURST {
      return;
    }
    // Calls end inside the runtime's tasks; outside one (the runtime
    // shutting down) there is nothing to schedule on and nothing to gain.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    if PENDING.swap(true, Ordering::AcqRel) {
      return;
    }
    runtime.spawn(async {
      tokio::time::sleep(QUIET).await;
      PENDING.store(false, Ordering::Release);
      if IN_FLIGHT.load(Ordering::Acquire) == 0 {
        HIGH.store(0, Ordering::Release);
        // Returns free memory of every arena to the system (the top of
        // each heap, and whole free pages inside them).
        unsafe { libc::malloc_trim(0) };
        TRIMS.fetch_add(1, Ordering::Relaxed);
      }
    });
  }
}

impl Op {
  pub fn enter() -> Op {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::enter();
    Op(())
  }
}

impl Drop for Op {
  fn drop(&mut self) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    glibc::leave();
  }
}

/// How many trims have run (0 where there is no glibc).
#[cfg(feature = "alloc-stats")]
pub fn trims() -> usize {
  #[cfg(all(target_os = "linux", target_env = "gnu"))]
  return glibc::TRIMS.load(std::sync::atomic::Ordering::Relaxed);
  #[allow(unreachable_code)]
  0
}

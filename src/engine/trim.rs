//! Giving memory back to the system after a burst (glibc Linux only).
//!
//! A burst of concurrent calls (thousands of `lock()` at once) allocates
//! per call while it waits and runs; when they are done, glibc's malloc
//! keeps the freed memory in its arenas (the Tokio worker's arena above
//! all), fragmented, so RSS stays where the burst took it. Measured with
//! the `alloc-stats` build (benchmark/README.md): after a burst of 10,000
//! lock()+free() the Rust side had freed all but 4 MB, malloc held
//! 299 MB free, and `malloc_trim(0)` brought RSS from +300 MB to +23 MB.
//!
//! What a burst leaves is freed in two waves: the calls' own memory when
//! they finish, and each lock's when the JS garbage collector finalizes
//! its `Lock` object, seconds later. A trim after the first wave only
//! returned the pages free by then; the locks freed after it sat in
//! between, and RSS stayed up by the difference (+28 MB after 10,000 on
//! FerretDB/PostgreSQL; a `malloc_trim(0)` after the GC: +0.4 MB).
//!
//! So: every call from JavaScript in flight (see `Core::traced`) and
//! every `Lock` object alive counts. When the count falls to an eighth of
//! its high mark since the last trim, and that mark was a burst (`BURST`
//! or more), a trim is scheduled `QUIET` later, and runs then if the count
//! is still that low (else the next fall schedules it again). Ordinary
//! traffic never trims; a burst costs a `malloc_trim(0)` (milliseconds)
//! after its calls end and another after its locks are collected.

/// A call from JavaScript in flight, or a `Lock` object alive; dropping
/// it ends it.
pub struct Op(());

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
  use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
  use std::sync::OnceLock;
  use std::time::Duration;

  use tokio::runtime::Handle;

  /// A count that makes a burst worth trimming after.
  const BURST: usize = 256;
  /// How long the count must stay low before the trim.
  const QUIET: Duration = Duration::from_secs(1);

  static LIVE: AtomicUsize = AtomicUsize::new(0);
  /// The highest count since the last trim.
  static HIGH: AtomicUsize = AtomicUsize::new(0);
  static PENDING: AtomicBool = AtomicBool::new(false);
  /// Trims done (read by the `alloc-stats` build).
  pub static TRIMS: AtomicUsize = AtomicUsize::new(0);

  fn low(live: usize) -> bool {
    let high = HIGH.load(Ordering::Acquire);
    high >= BURST && live <= high / 8
  }

  /// The runtime, as first seen from one of its threads: a lock is
  /// finalized on the JS thread, which has none current.
  static RUNTIME: OnceLock<Handle> = OnceLock::new();

  pub fn enter() {
    if RUNTIME.get().is_none() {
      if let Ok(handle) = Handle::try_current() {
        let _ = RUNTIME.set(handle);
      }
    }
    let now = LIVE.fetch_add(1, Ordering::AcqRel) + 1;
    HIGH.fetch_max(now, Ordering::AcqRel);
  }

  pub fn leave() {
    let now = LIVE.fetch_sub(1, Ordering::AcqRel) - 1;
    // A spawn on a runtime that shut down (Node exiting, finalizing the
    // last locks) drops the task; it never panics.
    let Some(runtime) = RUNTIME.get() else { return };
    if !low(now) || PENDING.swap(true, Ordering::AcqRel) {
      return;
    }
    runtime.spawn(async {
      tokio::time::sleep(QUIET).await;
      PENDING.store(false, Ordering::Release);
      let live = LIVE.load(Ordering::Acquire);
      if low(live) {
        HIGH.store(live, Ordering::Release);
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

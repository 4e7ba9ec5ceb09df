//! Allocation counts of the native side, for measuring memory per held lock.
//! Only with the cargo feature `alloc-stats`, off by default:
//! the shipped build has no counting allocator and no `__allocStats`.
//!
//! Counts what Rust allocates in this addon (ours, the driver's, Tokio's,
//! napi-rs's boxes), not what V8 or Node allocate for the JS side (objects,
//! `napi_ref`s): those show in `process.memoryUsage()` instead.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use napi_derive::napi;

struct Counting;

static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE_BLOCKS: AtomicU64 = AtomicU64::new(0);
static TOTAL_BLOCKS: AtomicU64 = AtomicU64::new(0);
static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);

fn grew(size: usize) {
  let live = LIVE_BYTES.fetch_add(size as u64, Relaxed) + size as u64;
  PEAK_BYTES.fetch_max(live, Relaxed);
}

/// Counts a new block of `size` at `p` (if the allocation succeeded).
fn new_block(p: *mut u8, size: usize) -> *mut u8 {
  if !p.is_null() {
    grew(size);
    LIVE_BLOCKS.fetch_add(1, Relaxed);
    TOTAL_BLOCKS.fetch_add(1, Relaxed);
  }
  p
}

unsafe impl GlobalAlloc for Counting {
  unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
    new_block(System.alloc(layout), layout.size())
  }

  unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
    new_block(System.alloc_zeroed(layout), layout.size())
  }

  unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
    System.dealloc(ptr, layout);
    LIVE_BYTES.fetch_sub(layout.size() as u64, Relaxed);
    LIVE_BLOCKS.fetch_sub(1, Relaxed);
  }

  unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    let p = System.realloc(ptr, layout, new_size);
    if !p.is_null() {
      LIVE_BYTES.fetch_sub(layout.size() as u64, Relaxed);
      grew(new_size);
      TOTAL_BLOCKS.fetch_add(1, Relaxed);
    }
    p
  }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What the counting allocator has seen, and (glibc) what malloc holds.
#[napi(object)]
pub struct AllocStats {
  /// Bytes Rust has allocated and not freed (requested sizes, without
  /// malloc's per-block overhead).
  pub live_bytes: f64,
  /// Blocks allocated and not freed.
  pub live_blocks: f64,
  /// Allocations (and reallocations) since the addon loaded.
  pub total_blocks: f64,
  pub peak_bytes: f64,
  /// glibc `mallinfo2()` of the whole process (every arena): bytes in use
  /// (`uordblks`), free but kept (`fordblks`), mmapped (`hblkhd`), and the
  /// releasable top (`keepcost`). `null` elsewhere.
  pub malloc_in_use: Option<f64>,
  pub malloc_free_kept: Option<f64>,
  pub malloc_mmapped: Option<f64>,
  pub malloc_arena: Option<f64>,
  /// How many times the core trimmed after a burst (see `trim`).
  pub trims: u32,
  /// Size of the last lock() call's future, as spawned (bytes).
  pub lock_future_bytes: u32,
}

/// Set by `LockManager::run_call` in this build.
pub static LOCK_FUTURE_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Hidden (`alloc-stats` builds only): the counters above.
#[napi(js_name = "__allocStats", skip_typescript)]
pub fn alloc_stats() -> AllocStats {
  #[cfg(all(target_os = "linux", target_env = "gnu"))]
  let m = {
    let m = unsafe { libc::mallinfo2() };
    (Some(m.uordblks as f64), Some(m.fordblks as f64), Some(m.hblkhd as f64), Some(m.arena as f64))
  };
  #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
  let m = (None, None, None, None);
  AllocStats {
    live_bytes: LIVE_BYTES.load(Relaxed) as f64,
    live_blocks: LIVE_BLOCKS.load(Relaxed) as f64,
    total_blocks: TOTAL_BLOCKS.load(Relaxed) as f64,
    peak_bytes: PEAK_BYTES.load(Relaxed) as f64,
    malloc_in_use: m.0,
    malloc_free_kept: m.1,
    malloc_mmapped: m.2,
    malloc_arena: m.3,
    trims: crate::engine::trim::trims() as u32,
    lock_future_bytes: LOCK_FUTURE_BYTES.load(Relaxed) as u32,
  }
}

/// Hidden (`alloc-stats` builds only): glibc `malloc_trim(0)` now, on the
/// calling (JS) thread; `true` if it released memory. For experiments.
#[napi(js_name = "__mallocTrim", skip_typescript)]
pub fn malloc_trim_now() -> bool {
  #[cfg(all(target_os = "linux", target_env = "gnu"))]
  {
    unsafe { libc::malloc_trim(0) == 1 }
  }
  #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
  {
    false
  }
}

/// Sizes of named futures, noted where they are made (`note_size`).
static FUTURE_SIZES: std::sync::Mutex<std::collections::BTreeMap<&'static str, u32>> =
  std::sync::Mutex::new(std::collections::BTreeMap::new());

pub fn note_size<T>(name: &'static str, value: &T) {
  FUTURE_SIZES.lock().unwrap().insert(name, std::mem::size_of_val(value) as u32);
}

/// Hidden (`alloc-stats` builds only): the futures' sizes noted so far.
#[napi(js_name = "__futureSizes", skip_typescript)]
pub fn future_sizes() -> std::collections::HashMap<String, u32> {
  FUTURE_SIZES.lock().unwrap().iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

//! mongo-locks-native: distributed locks stored in MongoDB, with the
//! MongoDB work in Rust and a `mongo-locks`-compatible JavaScript surface.
//!
//! Three layers; imports point down only (js -> engine -> store -> the
//! shared bottom modules), and no module is in a circle (`layers` checks
//! both in `cargo test`).
//!
//! - `js/`: the JavaScript surface, everything napi exports or calls
//!   - `manager`: the `LockManager` class: arguments in, locks and errors out
//!   - `lock`: the `NativeLock` class (`Lock` in the types)
//!   - `once`: the native calls behind `locker.once()` (claim a record, store an outcome)
//!   - `helpers`: `acquireLock` / `requireLock`
//!   - `options`: reading a manager's and a call's options from JS objects
//!   - `key`: lock keys from a JS value to the stored `action`, and back
//!   - `signals`: AbortSignals in (cancel a wait) and out (`lock.signal`, `onLost`)
//!   - `logging`: `tracing` events to the JS `logger` of their manager
//!   - `errors`: the JS errors each failure becomes
//!   - `bridge`: from a Tokio task back to a JS promise
//!   - `values`: reading and describing JS values
//!   - `aws`: MONGODB-AWS credentials, asked of JavaScript at each login
//!   - `alloc_stats`: allocation counts (cargo feature `alloc-stats` only)
//! - `engine/`: the locks this process holds; no JS values
//!   - `core`: `Core`: acquire (and wait for any `Claim`), takeover, release, refresh, loss, close
//!   - `connect`: the connection a manager's calls share, one attempt at a time
//!   - `flights`: work in flight, which `close()` lets finish
//!   - `held`: `LockState`, a held lock's state, and `Loss`, why it was lost
//!   - `refresh`: the one background task per manager (refresh rounds, loss deadlines)
//!   - `wait`: backoff, in-process wake-ups for waiters, a caller's `Cancel`
//!   - `semaphore`: a semaphore's permits as slot documents, and its claim
//!   - `rwlock`: a read/write lock's read and write claims
//!   - `once`: `locker.once()`'s record, a lock until its run is done, then its stored outcome
//!   - `key`: the stored `action` of a key, and its checks
//!   - `stats`: the counters of `locker.stats()` and `locker.metrics()`
//!   - `trim`: giving memory back to the system after a burst
//! - `store/`: MongoDB; knows nothing of JavaScript
//!   - `commands`: every MongoDB operation (connect, indexes, insert, takeover…)
//!   - `bound`: the bound on each server operation, and what to say when it ends one
//!   - `written`: the documents a manager wrote that may still be live
//!   - `config`: settings, defaults and their checks; `Holder`
//!   - `connection`: the application's client settings laid over the URL's
//!   - `monitor`: what the driver's server monitoring saw: why no server could be used
//!   - `aws`: the MONGODB-AWS credential provider given to the driver
//! - shared bottom modules, used by every layer:
//!   - `errors`: what can go wrong (`LockError`), in words a user can act on
//!   - `clock`: the monotonic clock, and the server's clock estimated from `hello`
//!   - `random`: a cheap random number for jitter

mod clock;
mod engine;
mod errors;
mod js;
mod random;
#[cfg(test)]
mod layers;
mod store;

pub use engine::core::{Attempt, Claim, Core};
pub use engine::held::{LockState, Loss};
pub use errors::{LockError, LockResult};
pub use js::helpers::{acquire_lock, require_lock};
pub use js::lock::NativeLock;
pub use js::manager::LockManager;
pub use store::commands::Store;
pub use store::config::{Config, Holder};

/// The addon's Tokio runtime, given to napi-rs before it builds its default
/// (one worker per core). One worker: every task of ours and of the driver
/// (its pool worker, monitors, each operation) runs on one thread, so the
/// hand-offs between them are polls on that thread instead of wake-ups of
/// another; only the JS thread and this worker wake each other. Measured on
/// 2 cores, sequential lock+free against FerretDB: context switches per pair
/// 14 -> 9, process CPU per pair about 570 -> 485 us (see the README's
/// Benchmark). Nothing of ours blocks a worker (logging and lost-lock
/// signals are non-blocking calls into JS), which one worker requires.
/// If building it fails (no threads left), napi-rs builds its default.
#[napi_derive::module_init]
fn init_runtime() {
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(1)
    .thread_name("mongo-locks-native")
    .enable_all()
    .build();
  if let Ok(runtime) = runtime {
    napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
  }
}

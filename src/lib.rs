//! mongo-locks-native: distributed locks stored in MongoDB, with the
//! MongoDB work in Rust and a `mongo-locks`-compatible JavaScript surface.
//!
//! - `manager`: the `LockManager` class: arguments in, locks and errors out
//! - `core`: the engine: acquire (and wait), release, refresh, loss, close
//! - `lock`: the `Lock` class
//! - `store`: every MongoDB operation (connect, indexes, insert, takeover…)
//! - `refresh`: the one background task per manager (refresh, loss deadlines)
//! - `signals`: AbortSignals in (cancel a wait) and out (`lock.signal`, `onLost`)
//! - `wait`: backoff and in-process wake-ups for waiters
//! - `key`: lock keys, from JS to the stored `action` and back
//! - `config`: options, defaults and their checks
//! - `connection`: the application's client settings laid over the URL's
//! - `monitor`: what the driver's server monitoring saw: why no server could be used
//! - `aws`: MONGODB-AWS credentials, asked of JavaScript at each login
//! - `clock`: the server's clock, estimated from `hello`
//! - `helpers`: `acquireLock` / `requireLock`
//! - `errors`: failures and the JS errors they become
//! - `logging`: `tracing` events to the JS `logger` of their manager
//! - `stats`: the counters of `locker.stats()`
//! - `values`: reading and describing JS values

mod clock;
mod engine;
mod errors;
mod js;
mod random;
#[cfg(test)]
mod layers;
mod store;

pub use js::helpers::{acquire_lock, require_lock};
pub use js::lock::NativeLock;
pub use js::manager::LockManager;

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

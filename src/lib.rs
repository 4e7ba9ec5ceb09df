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
//! - `clock`: the server's clock, estimated from `hello`
//! - `helpers`: `acquireLock` / `requireLock`
//! - `errors`: failures and the JS errors they become
//! - `logging`: `tracing` events to the JS `logger` of their manager
//! - `stats`: the counters of `locker.stats()`
//! - `values`: reading and describing JS values

mod clock;
mod config;
mod connection;
mod core;
mod errors;
mod helpers;
mod key;
mod lock;
mod logging;
mod manager;
mod refresh;
mod rwlock;
mod semaphore;
mod signals;
mod stats;
mod store;
mod values;
mod wait;

pub use helpers::{acquire_lock, require_lock};
pub use lock::NativeLock;
pub use manager::LockManager;

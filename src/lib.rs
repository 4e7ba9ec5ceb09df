//! mongo-locks-native: distributed locks stored in MongoDB, with the
//! MongoDB work in Rust and a `mongo-locks`-compatible JavaScript surface.
//!
//! - `manager`: the `LockManager` class and its shared core
//! - `lock`: the `Lock` class
//! - `store`: every MongoDB operation (connect, indexes, insert, takeover…)
//! - `refresh`: the one background timer per manager
//! - `key`: lock keys, from JS to the stored `action` and back
//! - `config`: options, defaults and their checks
//! - `clock`: expiry arithmetic
//! - `helpers`: `acquireLock` / `requireLock`
//! - `errors`: failures and the JS errors they become
//! - `logging`: `tracing` events to the JS `logger` of their manager
//! - `stats`: the counters of `locker.stats()`
//! - `values`: reading and describing JS values

mod clock;
mod config;
mod errors;
mod helpers;
mod key;
mod lock;
mod logging;
mod manager;
mod refresh;
mod stats;
mod store;
mod values;

pub use helpers::{acquire_lock, require_lock};
pub use lock::Lock;
pub use manager::LockManager;

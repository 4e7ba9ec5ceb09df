//! The JavaScript surface: the classes and functions napi exports, and
//! everything that reads, makes or calls JS values (options, keys,
//! AbortSignals, loggers, promises, the AWS credential lookup, JS errors).
//! May call `engine`, `store` and the shared bottom modules. Nothing below
//! imports this layer: the engine reaches JS only through what it is handed
//! (`engine::core::Outlet` for logs and lost locks, `store::aws::AwsLookup`).

#[cfg(feature = "alloc-stats")]
pub mod alloc_stats;
pub mod aws;
pub mod bridge;
pub mod errors;
pub mod helpers;
pub mod key;
pub mod lock;
pub mod logging;
pub mod manager;
pub mod once;
pub mod options;
pub mod signals;
pub mod values;

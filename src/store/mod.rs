//! MongoDB: the manager's settings (`config`), the connection (the
//! application's client settings laid over the URL's), the driver's server
//! monitoring, the MONGODB-AWS credential provider, every command a lock
//! needs (`commands`), the bound on each (`bound`), and the registry of the
//! documents a manager wrote (`written`). Knows nothing of JavaScript and makes no napi call (its only
//! napi is the `#[napi(object)]` derive on settings JS reads as they are).
//! May call only the shared bottom modules (`errors`, `clock`, `random`).

pub mod aws;
pub mod bound;
pub mod commands;
pub mod config;
pub mod connection;
pub mod monitor;
pub mod written;

//! MongoDB: the manager's settings, the connection (the application's
//! client settings laid over the URL's), the driver's server monitoring,
//! and every command a lock needs. Knows nothing of JavaScript or napi
//! calls; may call only the shared bottom modules (`errors`, `clock`).

pub mod aws;
pub mod commands;
pub mod config;
pub mod connection;
pub mod monitor;

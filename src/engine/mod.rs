//! The engine: the locks this process holds (`held`), the claim core every
//! primitive is made of (`core`: `Claim`/`Attempt`, one acquire, refresh and
//! takeover for all), waiting and backoff, the background refresh and loss
//! deadlines, stats, the stored form of keys, and memory trimming.
//! No JavaScript values: it tells the layer above what happened through the
//! `Outlet` it is given. May call `store` and the shared bottom modules
//! (`errors`, `clock`, `random`), never `js`.

pub mod connect;
pub mod core;
pub mod flights;
pub mod held;
pub mod key;
pub mod once;
pub mod refresh;
pub mod rwlock;
pub mod semaphore;
pub mod stats;
pub mod trim;
pub mod wait;

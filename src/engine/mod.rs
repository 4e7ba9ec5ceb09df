//! The engine: the locks this process holds and the claim core every
//! primitive is made of (`Claim`/`Attempt`), waiting and backoff, the
//! background refresh and loss deadlines, stats, keys and memory trimming.
//! No JavaScript values here. May call `store` and the shared bottom
//! modules (`errors`, `clock`), never `js`.

pub mod core;
pub mod held;
pub mod key;
pub mod refresh;
pub mod rwlock;
pub mod semaphore;
pub mod stats;
pub mod trim;
pub mod wait;

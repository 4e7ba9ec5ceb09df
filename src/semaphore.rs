//! A counting semaphore made of ordinary lock documents: permit `i` of
//! semaphore `key` is the lock on `{ _semaphore: key, permit: i }`, so the
//! unique index on `action` is what bounds the holders, and every permit is
//! refreshed, taken over, fenced off and lost exactly like a mutex (it is
//! one, taken by `Core::try_once`). Plain locks and `mongo-locks` share the
//! collection: a permit is just a lock with an object key.
//!
//! Processes that disagree on `limit` each take only slots below their own
//! limit, so at most the largest limit in use hold the semaphore at once,
//! and a process never sees more than its own limit taken by anyone.

use std::sync::Arc;

use mongodb::bson::{doc, Bson};

use crate::core::{Attempt, Core};
use crate::config::LockRequest;
use crate::errors::LockResult;
use crate::store::Store;
use crate::wait::jitter;

/// The largest `limit` (and `maxReaders`): each attempt reads every slot
/// with one `$in` query.
pub const MAX_LIMIT: u32 = 1000;

pub struct Semaphore {
  /// The slot documents' `action`s, permit 0 first.
  pub slots: Vec<Bson>,
  /// Local waiters wait on this (see `Claim::wake_key`).
  pub wake: String,
}

impl Semaphore {
  /// The semaphore `key` with `limit` permits.
  pub fn new(key: &Bson, limit: u32) -> Semaphore {
    Semaphore::with_slots(key, limit, "_semaphore", "permit", format!("semaphore {key}"))
  }

  /// Slots `{ <tag>: key, <field>: i }` for `i` below `count`: the
  /// semaphore's own, or a read/write lock's reader slots.
  pub fn with_slots(key: &Bson, count: u32, tag: &str, field: &str, wake: String) -> Semaphore {
    let slots = (0..count).map(|i| Bson::Document(doc! { tag: key.clone(), field: i as i32 })).collect();
    Semaphore { slots, wake }
  }

  /// One attempt: read which slots are taken (one query), then try the free
  /// ones in random order (so processes do not all race for permit 0), and
  /// last the ones whose holder certainly expired (`try_once` takes those
  /// over). `Held` when every slot is live or another process won each race.
  pub async fn attempt(&self, core: &Arc<Core>, store: &Store, key: &str, req: &LockRequest) -> LockResult<Attempt> {
    let taken = store.occupied(&self.slots).await?;
    let earliest = core.server_now()?.earliest();
    let mut free = Vec::new();
    let mut expired = Vec::new();
    for slot in &self.slots {
      match taken.iter().find(|(action, _)| action == slot) {
        None => free.push(slot),
        Some((_, Some(expires))) if *expires < earliest => expired.push(slot),
        Some(_) => {}
      }
    }
    shuffle(&mut free);
    for slot in free.into_iter().chain(expired) {
      match core.try_once(store, slot, Some(key), req, || true).await? {
        Attempt::Held => continue,
        other => return Ok(other),
      }
    }
    Ok(Attempt::Held)
  }

  /// Whether any slot has a holder that may still believe it holds it.
  pub async fn any_live(&self, core: &Core, store: &Store) -> LockResult<bool> {
    let taken = store.occupied(&self.slots).await?;
    let earliest = core.server_now()?.earliest();
    Ok(taken.iter().any(|(_, expires)| expires.is_none_or(|e| e >= earliest)))
  }
}

/// Fisher–Yates with the backoff's cheap random numbers.
fn shuffle<T>(items: &mut [T]) {
  for i in (1..items.len()).rev() {
    let j = ((jitter() * (i + 1) as f64) as usize).min(i);
    items.swap(i, j);
  }
}

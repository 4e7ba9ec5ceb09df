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

//!
//! Waiting is fair across processes: a free permit is taken at once by a
//! waiter in the process that freed it (a local wake-up), so a process
//! whose waiters only poll could be passed over for as long as others
//! keep the permits busy. A waiter that has waited `QUEUE_AFTER` takes a
//! place in the semaphore's queue (one of `QUEUE` more slot documents,
//! `{ _semaphore: key, queue: i }`), and everyone else leaves it a free
//! permit: a caller not in the queue takes one only while more are free
//! than there are queued waiters, and a queued waiter only while more are
//! free than those queued before it. A queue place expires like a lock
//! (refreshed while its waiter waits), so a waiter that died holds up
//! nobody for longer than the ttl.

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime};

use crate::clock::Mono;
use crate::store::config::LockRequest;
use crate::engine::core::{Attempt, Claim, Core};
use crate::errors::LockResult;
use crate::store::commands::{Occupied, Store};
use crate::random::jitter;

/// The largest `limit` (and `maxReaders`): each attempt reads every slot
/// with one `$in` query.
pub const MAX_LIMIT: u32 = 1000;

/// How many waiters can queue for a semaphore at once (across processes);
/// later ones wait as before until a place is free.
const QUEUE: u32 = 16;

/// How long a waiter waits before it queues: a few backoff steps, well
/// under any hold a semaphore is worth having for.
const QUEUE_AFTER: Duration = Duration::from_millis(500);

pub struct Semaphore {
  /// The slot documents' `action`s, permit 0 first.
  pub slots: Vec<Bson>,
  /// Local waiters wait on this (see `Claim::wake_key`).
  pub wake: String,
  /// The queue's slot documents (empty: no queue, as for a read/write
  /// lock's reader slots, which a writer already keeps in order).
  queue: Vec<Bson>,
  /// This waiter's place in the queue, once it has one.
  place: Option<Place>,
  /// When this call first tried.
  since: Option<Mono>,
}

struct Place {
  id: ObjectId,
  created: DateTime,
  refreshed: Mono,
}

impl Semaphore {
  /// The semaphore `key` with `limit` permits.
  pub fn new(key: &Bson, limit: u32) -> Semaphore {
    let mut semaphore = Semaphore::with_slots(key, limit, "_semaphore", "permit", format!("semaphore {key}"));
    semaphore.queue = (0..QUEUE).map(|i| Bson::Document(doc! { "_semaphore": key.clone(), "queue": i as i32 })).collect();
    semaphore
  }

  /// Slots `{ <tag>: key, <field>: i }` for `i` below `count`: the
  /// semaphore's own, or a read/write lock's reader slots.
  pub fn with_slots(key: &Bson, count: u32, tag: &str, field: &str, wake: String) -> Semaphore {
    let slots = (0..count).map(|i| Bson::Document(doc! { tag: key.clone(), field: i as i32 })).collect();
    Semaphore { slots, wake, queue: Vec::new(), place: None, since: None }
  }

  /// One attempt: read which slots (and queue places) are taken (one
  /// query), then, if enough are free for the queue ahead of us, try the
  /// free ones in random order (so processes do not all race for permit 0),
  /// and last the ones whose holder certainly expired (`try_once` takes
  /// those over). `Held` when every slot is live, left for the queue, or
  /// another process won each race. A caller that waits long enough takes
  /// a place in the queue.
  pub async fn try_permit(&mut self, core: &Arc<Core>, store: &Store, key: &str, req: &LockRequest) -> LockResult<Attempt> {
    let since = *self.since.get_or_insert_with(Mono::now);
    let found = store.occupied(&[self.slots.as_slice(), self.queue.as_slice()].concat()).await?;
    let earliest = core.server_now()?.earliest();
    let (free, expired) = self.free_slots(&found, earliest);
    let ahead = self.queued_ahead(&found, earliest);
    if free.len() + expired.len() > ahead {
      let mut free = free;
      shuffle(&mut free);
      for slot in free.into_iter().chain(expired) {
        match core.try_once(store, slot, Some(key), req, || true).await? {
          Attempt::Held => continue,
          other => return Ok(other),
        }
      }
    }
    if req.wait.is_some() && !self.queue.is_empty() {
      self.keep_place(core, store, &found, earliest, since).await?;
    }
    Ok(Attempt::Held)
  }

  /// The free slots, and those whose holder certainly expired.
  fn free_slots(&self, found: &[Occupied], earliest: DateTime) -> (Vec<&Bson>, Vec<&Bson>) {
    let mut free = Vec::new();
    let mut expired = Vec::new();
    for slot in &self.slots {
      match found.iter().find(|o| &o.action == slot) {
        None => free.push(slot),
        Some(o) if !o.live(earliest) => expired.push(slot),
        Some(_) => {}
      }
    }
    (free, expired)
  }

  /// How many live queue places are ahead of this caller: all of them if
  /// it has none, else those taken before its own.
  fn queued_ahead(&self, found: &[Occupied], earliest: DateTime) -> usize {
    let mine = self.place.as_ref().map(|p| (p.created, p.id));
    found
      .iter()
      .filter(|o| self.queue.contains(&o.action) && o.live(earliest))
      .filter(|o| match mine {
        None => true,
        Some(mine) => o.id != mine.1 && (o.created.unwrap_or(mine.0), o.id) < mine,
      })
      .count()
  }

  /// Takes a queue place once this call has waited `QUEUE_AFTER` (a free
  /// one, or one whose waiter certainly expired), and keeps it from
  /// expiring while the call waits. A place found gone is given up.
  async fn keep_place(&mut self, core: &Arc<Core>, store: &Store, found: &[Occupied], earliest: DateTime, since: Mono) -> LockResult<()> {
    let ttl = core.config.ttl;
    if let Some(place) = &mut self.place {
      if Mono::now().since(place.refreshed) >= ttl / 3 {
        let now = core.server_now()?;
        if store.refresh(&[place.id], &now, ttl).await? == 0 {
          self.place = None;
        } else {
          place.refreshed = now.at;
        }
      }
      return Ok(());
    }
    if Mono::now().since(since) < QUEUE_AFTER {
      return Ok(());
    }
    for slot in &self.queue {
      match found.iter().find(|o| &o.action == slot) {
        Some(o) if o.live(earliest) => continue,
        Some(_) if store.delete_expired(slot, earliest).await?.is_none() => continue,
        _ => {}
      }
      let now = core.server_now()?;
      let (id, inserted) = store.insert(slot, &now, ttl).await;
      if inserted? {
        self.place = Some(Place { id, created: now.estimate(), refreshed: now.at });
        return Ok(());
      }
    }
    Ok(())
  }

  /// Whether any slot has a holder that may still believe it holds it.
  pub async fn any_live(&self, core: &Core, store: &Store) -> LockResult<bool> {
    let taken = store.occupied(&self.slots).await?;
    let earliest = core.server_now()?.earliest();
    Ok(taken.iter().any(|o| o.live(earliest)))
  }
}

/// A permit of a semaphore: `semaphore(key, { limit }).acquire()`.
impl Claim for Semaphore {
  fn wake_key(&self) -> String {
    self.wake.clone()
  }

  /// A waiter with a place in the queue polls often: the others leave it a
  /// free permit.
  fn urgent(&self) -> bool {
    self.place.is_some()
  }

  async fn attempt(&mut self, core: &Arc<Core>, store: &Store, key: &str, req: &LockRequest) -> LockResult<Attempt> {
    self.try_permit(core, store, key, req).await
  }

  /// Leaves the queue: the call got its permit, or stopped waiting.
  async fn end(&mut self, core: &Arc<Core>, _acquired: bool) {
    if let Some(place) = self.place.take() {
      core.clean_up(place.id);
    }
  }
}

/// Fisher–Yates with the backoff's cheap random numbers.
fn shuffle<T>(items: &mut [T]) {
  for i in (1..items.len()).rev() {
    let j = ((jitter() * (i + 1) as f64) as usize).min(i);
    items.swap(i, j);
  }
}

//! A read/write lock made of ordinary lock documents: the writer document
//! `{ _rwlock: key, writer: true }` and reader slots
//! `{ _rwlock: key, reader: i }` (a semaphore of `maxReaders` permits).
//!
//! The two sides check each other in the same order, Dekker-style: a reader
//! takes its slot, then looks for the writer document; a writer takes the
//! writer document, then looks for readers. Whichever wrote second sees the
//! other and steps back (a reader frees its slot; a writer keeps its
//! document and waits for the readers to leave), so a writer is never with
//! anyone. Readers do not enter while the writer document exists, even
//! while its writer is still waiting: a stream of readers cannot starve a
//! writer. Reads go to the primary after the write is acknowledged (see
//! `store`), which is what makes "whichever wrote second sees the other"
//! hold.

use std::sync::Arc;

use mongodb::bson::{doc, Bson};

use crate::store::config::LockRequest;
use crate::engine::core::{Attempt, Claim, Core};
use crate::errors::LockResult;
use crate::engine::held::LockState;
use crate::engine::semaphore::Semaphore;
use crate::store::commands::Store;

pub struct RwLock {
  writer: Bson,
  readers: Semaphore,
}

impl RwLock {
  pub fn new(key: &Bson, max_readers: u32) -> RwLock {
    RwLock {
      writer: Bson::Document(doc! { "_rwlock": key.clone(), "writer": true }),
      readers: Semaphore::with_slots(key, max_readers, "_rwlock", "reader", format!("rwlock {key}")),
    }
  }

  /// One `read()` attempt.
  async fn read_attempt(&mut self, core: &Arc<Core>, store: &Store, key: &str, req: &LockRequest) -> LockResult<Attempt> {
    if self.writer_present(core, store).await? {
      return Ok(Attempt::Held); // a writer holds or waits: it goes first
    }
    let reader = match self.readers.try_permit(core, store, key, req).await? {
      Attempt::Acquired(reader) => reader,
      other => return Ok(other),
    };
    // A writer may have come in between our first look and our slot, and
    // looked for readers before our slot was there: it goes first.
    if self.writer_present(core, store).await? {
      core.withdraw(&reader).await?;
      return Ok(Attempt::Held);
    }
    Ok(Attempt::Acquired(reader))
  }

  /// One `write()` attempt. The writer document taken by an earlier attempt
  /// of the same call is kept in `staged` (refreshed like any held lock)
  /// until the readers are gone.
  async fn write_attempt(
    &self,
    core: &Arc<Core>,
    store: &Store,
    key: &str,
    req: &LockRequest,
    staged: &mut Option<Arc<LockState>>,
  ) -> LockResult<Attempt> {
    let writer = match staged.take().filter(|w| core.check(w)) {
      Some(writer) => writer,
      None => match core.try_once(store, &self.writer, Some(key), req, || true).await? {
        Attempt::Acquired(writer) => writer,
        other => return Ok(other),
      },
    };
    let readers = self.readers.any_live(core, store).await;
    *staged = Some(writer.clone()); // given back by `Write::end` on an error too
    if readers? {
      return Ok(Attempt::Held);
    }
    *staged = None;
    Ok(Attempt::Acquired(writer))
  }

  /// Whether a writer holds or waits: its document exists and may be live.
  async fn writer_present(&self, core: &Core, store: &Store) -> LockResult<bool> {
    let Some(found) = store.find_lock(&self.writer).await? else { return Ok(false) };
    let earliest = core.server_now()?.earliest();
    Ok(found.get_datetime("expiresAt").map_or(true, |e| *e >= earliest))
  }
}

/// `read()` of a read/write lock.
pub struct Read(pub RwLock);

impl Claim for Read {
  fn wake_key(&self) -> String {
    self.0.readers.wake.clone()
  }

  async fn attempt(&mut self, core: &Arc<Core>, store: &Store, key: &str, req: &LockRequest) -> LockResult<Attempt> {
    self.0.read_attempt(core, store, key, req).await
  }
}

/// `write()` of a read/write lock; `staged` is its writer document while
/// it waits for the readers to leave.
pub struct Write {
  lock: RwLock,
  staged: Option<Arc<LockState>>,
}

impl Write {
  pub fn new(lock: RwLock) -> Write {
    Write { lock, staged: None }
  }
}

impl Claim for Write {
  fn wake_key(&self) -> String {
    self.lock.readers.wake.clone()
  }

  async fn attempt(&mut self, core: &Arc<Core>, store: &Store, key: &str, req: &LockRequest) -> LockResult<Attempt> {
    self.lock.write_attempt(core, store, key, req, &mut self.staged).await
  }

  /// A writer that did not get the lock gives back its staged document.
  async fn end(&mut self, core: &Arc<Core>, acquired: bool) {
    if let (false, Some(writer)) = (acquired, &self.staged) {
      let _ = core.withdraw(writer).await;
    }
  }
}

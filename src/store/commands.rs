//! The MongoDB work: connecting, the two indexes, and each storage
//! operation a lock needs. Nothing here knows about JavaScript, and the
//! caller supplies "now" (server time, see `clock`).
//!
//! The documents and index specifications are exactly those of
//! `mongo-locks` 3.x, so both libraries can share one collection.

use std::collections::HashSet;
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use tokio::sync::oneshot;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document, RawBson, RawDocumentBuf};
use mongodb::error::ErrorKind;
use mongodb::options::{
  Acknowledgment, ClientOptions, CollectionOptions, IndexOptions, ReadConcern, ReadPreference, ReturnDocument,
  SelectionCriteria, WriteConcern,
};
use mongodb::{Client, Collection, IndexModel};

use crate::clock::{self, Mono, Sample, ServerClock, ServerNow};
use crate::store::connection::{self, EffectiveSettings, TlsFiles};
use crate::store::config::{redact, Config, WriteConcernChoice};
use crate::errors::{describe_driver_error, is_duplicate_key, server_code, LockError, LockResult};
use crate::store::bound::Bound;
use crate::store::monitor::Monitor;
use crate::store::written::{IdPrefix, Written};

/// Refresh and existence checks go to the server in batches of this many ids.
pub const BATCH: usize = 1000;

/// How many `hello`s one reading of the server's clock takes; the one with
/// the shortest round trip is kept.
const CLOCK_SAMPLES: usize = 3;

/// The pool's bounds unless the application's client set its own: a lock
/// workload needs few connections (see the README's Connections), and a
/// connection idle this long is closed.
const DEFAULT_MAX_POOL: u32 = 10;
const DEFAULT_MAX_IDLE: Duration = Duration::from_secs(30);

pub struct Store {
  client: Client,
  /// One permit per pooled connection: an operation starts (and the
  /// driver allocates its future, several KB) only once it has one. A burst
  /// of thousands of lock() calls then waits here in small futures instead
  /// of in the driver's checkout queue, and the memory it takes is bounded
  /// by the pool, not by the burst (the driver could not run more at once
  /// anyway: one connection per operation).
  gate: tokio::sync::Semaphore,
  /// The bound on every operation (see `Config::operation_timeout`), and
  /// what to say when it ends one.
  bound: Bound,
  /// The longest half round trip a clock sample may have to be used.
  max_half_rtt: Duration,
  locks: Collection<Document>,
  /// `locks`, for inserts of documents already in BSON bytes.
  raw_locks: Collection<RawDocumentBuf>,
  /// Per-key counters behind fencing tokens: `<collection>.fencing`.
  fencing: Collection<Document>,
  /// Whether writes use `w: "majority"`.
  pub majority: bool,
  /// The connection as made, without secrets (`locker.settings`).
  pub settings: EffectiveSettings,
  /// CA and client-key files rustls reads; removed on shutdown.
  files: std::sync::Mutex<Option<TlsFiles>>,
  /// `holder` of every lock document we write (see `config::Holder`), in
  /// BSON bytes made once: each insert copies them instead of cloning a
  /// `Document` (a map and eight strings) per lock.
  holder: RawDocumentBuf,
  /// Frees waiting for a connection, sent together (see `free`).
  frees: std::sync::Mutex<FreeQueue>,
  /// `holder.manager` of our documents: what one refresh command finds
  /// them by (see `refresh_held`).
  manager: String,
  /// The first bytes of the `_id` of every document we write (see
  /// `written::new_prefix`).
  id_prefix: IdPrefix,
  /// Every document we wrote that may still be live (see `Written`).
  written: std::sync::Mutex<Written>,
}

/// Frees that found every connection busy, and how many callers are
/// sending them.
#[derive(Default)]
struct FreeQueue {
  waiting: Vec<(ObjectId, oneshot::Sender<LockResult<Freed>>)>,
  senders: usize,
}

/// At most this many ids in one `delete` (a `$in` the server reads whole).
const FREE_BATCH: usize = 500;
/// At most this many callers send queued frees at once; the others wait.
const FREE_SENDERS: usize = 4;

/// What `free` knows of a lock's document after deleting it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Freed {
  /// This call deleted it.
  Deleted,
  /// It was gone already.
  Gone,
  /// Sent in a batch that found some of its documents gone, not which:
  /// this one may or may not have been there.
  Unknown,
}

/// What a `hello` told us besides the time.
pub struct Hello {
  /// Replica set member or mongos: majority writes make sense.
  pub replicated: bool,
}

impl Store {
  /// Builds a client, reads the server's clock and topology, and makes sure
  /// the indexes exist.
  /// The whole of it (the address resolved, the server found, its clock
  /// read, the indexes made) within one `operationTimeoutMs`; what the
  /// driver's monitors saw goes to `monitor`, and says why when that bound
  /// ends it.
  pub async fn connect(
    config: &Config,
    clock: &ServerClock,
    tried: &std::sync::Mutex<Option<EffectiveSettings>>,
    monitor: &Arc<Monitor>,
  ) -> LockResult<Store> {
    let opened = tokio::time::timeout(config.operation_timeout, Self::open(config, clock, tried, monitor)).await;
    let settings = tried.lock().unwrap().clone();
    opened
      .unwrap_or_else(|_| Err(Bound::new(config, monitor, settings.as_ref()).expired("connecting", config.operation_timeout)))
      .map_err(|e| Self::explain(config, settings.as_ref(), e))
  }

  /// A failure to connect, said in the application's terms: who tried to
  /// log in, what its secureContext hides from us, where MONGODB-AWS
  /// credentials were looked for.
  pub fn explain(config: &Config, settings: Option<&EffectiveSettings>, err: LockError) -> LockError {
    let err = name_credentials(err, settings);
    crate::store::aws::explain(connection::explain(err, config.client.as_ref()), config.aws.as_ref())
  }

  async fn open(
    config: &Config,
    clock: &ServerClock,
    tried: &std::sync::Mutex<Option<EffectiveSettings>>,
    monitor: &Arc<Monitor>,
  ) -> LockResult<Store> {
    let mut options = ClientOptions::parse(&config.uri).await.map_err(|e| match e.kind.as_ref() {
      ErrorKind::InvalidArgument { message, .. } => LockError::invalid(format!(
        "mongo-locks-native: malformed MongoDB connection string {:?}: {message}",
        redact(&config.uri)
      )),
      _ => LockError::server("resolving the connection string", &e),
    })?;
    let files = Self::configure(config, &mut options, TlsFiles::default())?;
    options.sdam_event_handler = Some(monitor.handler());
    // 0 is "no limit" to the driver.
    let in_flight = match options.max_pool_size {
      Some(0) | None => tokio::sync::Semaphore::MAX_PERMITS,
      Some(n) => n as usize,
    };
    let settings = connection::describe(&options, config.client.as_ref().and_then(|c| c.ca_source.as_deref()));
    *tried.lock().unwrap() = Some(settings.clone());
    let bound = Bound::new(config, monitor, Some(&settings));
    let client = Client::with_options(options).map_err(|e| LockError::server("creating the client", &e))?;
    let timeout = config.operation_timeout;
    let max_half_rtt = (config.ttl / 8).min(Duration::from_millis(2500));
    // Bounded by connect() as a whole.
    let hello = sample_clock(&client, clock, max_half_rtt, "connecting").await?;
    let majority = match config.write_concern {
      WriteConcernChoice::Auto => hello.replicated,
      WriteConcernChoice::Majority => true,
      WriteConcernChoice::Default => false,
    };
    let db = client.database(&config.database);
    // Every read here decides something (is a lock still ours? did our
    // insert land?), so it goes to the primary whatever the connection
    // string prefers; on a replica set it reads majority-committed data and
    // writes wait for a majority, for at most the operation timeout.
    let with = |name: &str| {
      let mut options = CollectionOptions::builder()
        .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
        .build();
      if majority {
        options.read_concern = Some(ReadConcern::majority());
        options.write_concern =
          Some(WriteConcern::builder().w(Acknowledgment::Majority).w_timeout(timeout).build());
      }
      db.collection_with_options::<Document>(name, options)
    };
    let locks = with(&config.collection);
    let holder = doc! {
      "host": &config.holder.host,
      "pid": config.holder.pid as i64,
      "app": &config.holder.app,
      "manager": &config.holder.manager,
    };
    let store = Store {
      gate: tokio::sync::Semaphore::new(in_flight),
      raw_locks: locks.clone_with_type(),
      locks,
      fencing: with(&format!("{}.fencing", config.collection)),
      client,
      bound,
      max_half_rtt,
      majority,
      settings,
      files: std::sync::Mutex::new(Some(files)),
      holder: RawDocumentBuf::from_document(&holder)
        .map_err(|e| LockError::invalid(format!("mongo-locks-native: the holder cannot be stored: {e}")))?,
      frees: Default::default(),
      manager: config.holder.manager.clone(),
      id_prefix: crate::store::written::new_prefix(),
      written: Default::default(),
    };
    store.ensure_indexes().await?;
    tracing::debug!(
      target: "mongo_locks_native",
      uri = %redact(&config.uri),
      majority,
      clock_offset_ms = clock.offset_ms().unwrap_or(0),
      clock_uncertainty_ms = clock.uncertainty_ms().unwrap_or(0.0),
      "connected"
    );
    Ok(store)
  }

  /// Lays the application's client settings and ours over `options`
  /// (parsed from the URL); TLS files go to `files`.
  fn configure(config: &Config, options: &mut ClientOptions, mut files: TlsFiles) -> LockResult<TlsFiles> {
    if let Some(settings) = &config.client {
      files = connection::apply(settings, options, files)?;
    }
    crate::store::aws::provide(options, config.aws.as_ref());
    if let Some(timeout) = config.server_selection_timeout {
      options.server_selection_timeout = Some(timeout);
    }
    options.max_pool_size.get_or_insert(DEFAULT_MAX_POOL);
    options.max_idle_time.get_or_insert(DEFAULT_MAX_IDLE);
    options.app_name.get_or_insert_with(|| "mongo-locks-native".to_string());
    Ok(files)
  }

  /// The settings a connection will use, known at construction, before
  /// any attempt (`locker.settings`): the URL parsed without I/O, with the
  /// same settings laid over it and no file written. An SRV name shows as
  /// written: it is resolved when connecting. `None` if the URL cannot be
  /// read so (connecting then says why).
  pub fn plan(config: &Config) -> Option<EffectiveSettings> {
    use futures_util::FutureExt;
    const SRV: &str = "mongodb+srv://";
    let srv = config.uri.get(..SRV.len()).is_some_and(|p| p.eq_ignore_ascii_case(SRV));
    let uri = if srv { format!("mongodb://{}", &config.uri[SRV.len()..]) } else { config.uri.clone() };
    // Without an SRV name to resolve, parsing completes at its first poll.
    let mut options = ClientOptions::parse(&uri).into_future().now_or_never()?.ok()?;
    if srv && options.tls.is_none() {
      options.tls = Some(mongodb::options::Tls::Enabled(Default::default()));
    }
    Self::configure(config, &mut options, TlsFiles::dry()).ok()?;
    let mut settings = connection::describe(&options, config.client.as_ref().and_then(|c| c.ca_source.as_deref()));
    if srv {
      settings.hosts = settings.hosts.iter().map(|h| format!("{} (SRV, resolved when connecting)", h.trim_end_matches(":27017"))).collect();
    }
    Some(settings)
  }

  /// Runs one server operation within the operation timeout.
  async fn bounded<T, Fut>(&self, doing: &str, op: impl FnOnce() -> Fut) -> LockResult<T>
  where
    Fut: Future<Output = mongodb::error::Result<T>>,
  {
    let res = self.bound.run(doing, self.gated(op)).await?.map_err(|e| LockError::server(doing, &e));
    if res.is_ok() {
      self.bound.answered();
    }
    res
  }

  /// The operation `op()` makes, started only once a permit of `gate` is
  /// held (see `gate`). The wait for a permit counts against the operation
  /// timeout, as the wait for a connection did.
  ///
  /// The operation's future is made and boxed only then: a driver
  /// operation's future is large (kilobytes: every state of the driver's
  /// execute path, inline), and held inline it would make every waiting
  /// call that large from the moment it is spawned. A burst of 10,000
  /// lock() calls queued here held about 29 KB each (288 MB at the peak,
  /// counted with the `alloc-stats` build); boxed after the permit, a
  /// queued call keeps only its small future and a closure of references.
  async fn gated<T, Fut>(&self, op: impl FnOnce() -> Fut) -> T
  where
    Fut: Future<Output = T>,
  {
    // The semaphore is never closed, so acquire() cannot fail.
    let _permit = self.gate.acquire().await.ok();
    Box::pin(op()).await
  }

  /// `{ action: 1 }` unique is what makes a lock exclusive: it must exist.
  /// `{ expiresAt: 1 }` with `expireAfterSeconds: 0` only tidies up crashed
  /// holders (takeover does not depend on it), so a server that refuses TTL
  /// indexes gets a warning and we carry on.
  async fn ensure_indexes(&self) -> LockResult<()> {
    let unique = IndexModel::builder()
      .keys(doc! { "action": 1 })
      .options(IndexOptions::builder().unique(true).build())
      .build();
    self.bounded("creating the unique index on action", || self.locks.create_index(unique).into_future()).await?;

    let ttl = IndexModel::builder()
      .keys(doc! { "expiresAt": 1 })
      .options(IndexOptions::builder().expire_after(Duration::from_secs(0)).build())
      .build();
    let doing = "creating the TTL index on expiresAt";
    if let Err(e) = self.bound.run(doing, self.locks.create_index(ttl).into_future()).await? {
      if refuses_ttl(&e) {
        // Expected on servers without a TTL monitor, and handled: said once
        // per collection per process, for whoever wonders why the index
        // is missing, not at every manager's start.
        if first_ttl_refusal(&self.locks.namespace().to_string()) {
          tracing::info!(
            target: "mongo_locks_native",
            error = %describe_driver_error(&e),
            "this server has no TTL indexes, so expired lock documents are not deleted by the server: \
             the next lock() on their key takes them over, and the documents of keys never locked again stay \
             (harmless; the command-line tool lists them)"
          );
        }
      } else {
        return Err(LockError::server(doing, &e));
      }
    }
    Ok(())
  }

  /// Whether a round trip of `rtt` is too long for a clock sample to be
  /// kept (see `sample_clock`).
  pub fn too_slow_for_the_clock(&self, rtt: Duration) -> bool {
    rtt > self.max_half_rtt * 2
  }

  /// Re-reads the server's clock (see `clock`).
  pub async fn sync_clock(&self, clock: &ServerClock) -> LockResult<()> {
    let doing = "reading the server's clock";
    self
      .bound
      .run(doing, sample_clock(&self.client, clock, self.max_half_rtt, doing))
      .await?
      .map(|_| ())
  }

  /// Inserts a new lock document written at server time `now`, with a new
  /// `_id`; `false` when the key is already held. On an error the write may
  /// still have applied: the caller removes document `id`.
  pub async fn insert(&self, action: &Bson, now: &ServerNow, ttl: Duration) -> (ObjectId, LockResult<bool>) {
    let at = now.estimate();
    let expires = clock::after(at, ttl);
    // Known before it is sent: a write whose answer is lost may still land.
    let id = self.written.lock().unwrap().next_id(self.id_prefix, expires);
    (id, self.insert_as(id, action, at, expires).await)
  }

  async fn insert_as(&self, id: ObjectId, action: &Bson, at: DateTime, expires: DateTime) -> LockResult<bool> {
    // The same fields, in the same order, as mongo-locks writes (plus
    // `holder`), appended straight to BSON bytes.
    let mut lock = RawDocumentBuf::new();
    lock.append("_id", id);
    match action {
      Bson::String(text) => lock.append_ref("action", text.as_str()),
      other => lock.append(
        "action",
        RawBson::try_from(other.clone())
          .map_err(|e| LockError::invalid(format!("mongo-locks-native: the key cannot be stored: {e}")))?,
      ),
    }
    lock.append("createdAt", at);
    lock.append("refreshedAt", at);
    lock.append("expiresAt", expires);
    lock.append_ref("holder", &self.holder);
    // `Some(inserted)` when the answer is certain; a retry after a broken
    // connection leaves it open whether the first insert lands later.
    let attempt = || async {
      match self.raw_locks.insert_one(&lock).await {
        Err(e) if is_transient(&e) => {
          // The first insert may have reached the server before the
          // connection broke: then the retry meets our own document as a
          // duplicate, and a read of our `_id` (on the primary) tells.
          match self.raw_locks.insert_one(&lock).await {
            Err(e) if is_duplicate_key(&e) => self.locks.find_one(doc! { "_id": id }).await.map(|found| (found.is_some(), false)),
            other => other.map(|_| (true, true)),
          }
        }
        Err(e) if is_duplicate_key(&e) => Ok((false, true)),
        other => other.map(|_| (true, true)),
      }
    };
    let (inserted, certain) = match self.bound.run("inserting the lock document", self.gated(attempt)).await? {
      Ok(answer) => answer,
      Err(e) => return Err(LockError::server("inserting the lock document", &e)),
    };
    self.bound.answered();
    {
      let mut written = self.written.lock().unwrap();
      match (inserted, certain) {
        (true, _) => written.docs.get_mut(&id).into_iter().for_each(|d| d.settled = true),
        (false, true) => drop(written.docs.remove(&id)), // refused: never written
        (false, false) => {}                              // may land yet: kept until it expires
      }
    }
    Ok(inserted)
  }

  /// Deletes the lock on `action` only if it expired before `earliest` (the
  /// earliest the server's time can be now): the atomic half of a takeover.
  /// `true` when we removed it.
  /// `Some(expected)` if it deleted one: `expected` when its holder had
  /// freed it and it was only kept for its `minHoldMs` (see `expire_at`).
  pub async fn delete_expired(&self, action: &Bson, earliest: DateTime) -> LockResult<Option<bool>> {
    let filter = doc! { "action": action.clone(), "expiresAt": { "$lt": earliest } };
    // (No projection: FerretDB 1.24 has none for findAndModify, and the
    // document is small.)
    let delete = || self.locks.find_one_and_delete(filter.clone());
    let found = self.bounded("removing an expired lock", || retry_once(delete)).await?;
    Ok(found.map(|doc| doc.get_bool("freed").unwrap_or(false)))
  }

  /// Pushes the expiry of each of `ids` to at least `now + ttl` (`$max`: a
  /// slower refresh sent earlier never moves an expiry back); returns how
  /// many matched.
  pub async fn refresh(&self, ids: &[ObjectId], now: &ServerNow, ttl: Duration) -> LockResult<u64> {
    let at = now.estimate();
    let expires = clock::after(at, ttl);
    self.written.lock().unwrap().expiring(ids, expires);
    let update = doc! { "$set": { "refreshedAt": at }, "$max": { "expiresAt": expires } };
    let res = self
      .bounded("refreshing locks", || retry_once(|| self.locks.update_many(by_ids(ids), update.clone())))
      .await?;
    Ok(res.matched_count)
  }

  /// Refreshes the held documents `held` with one small command, whatever
  /// their number: every document of this manager that is live, written
  /// before now, and not one the round must leave alone (see `Written`).
  /// Returns how many matched: as many as `held` means each of them did.
  /// Given up when `too_late` resolves (the caller's: its locks' deadlines
  /// have passed, and a refresh that lands after them is no use), not at
  /// the operation timeout: a server that takes longer than that to update
  /// every held document (FerretDB's SQLite backend: 25 s for 2,500) may
  /// still be in time for a long ttl, and cut at it, no round would ever
  /// land.
  pub async fn refresh_held(
    &self,
    held: &[ObjectId],
    now: &ServerNow,
    ttl: Duration,
    too_late: impl Future<Output = ()>,
  ) -> LockResult<u64> {
    let at = now.estimate();
    let expires = clock::after(at, ttl);
    let earliest = now.earliest();
    let (upto, leave) = {
      let mut written = self.written.lock().unwrap();
      written.docs.retain(|_, d| d.expires >= earliest);
      written.expiring(held, expires);
      let held: HashSet<&ObjectId> = held.iter().collect();
      let leave: Vec<ObjectId> = written.docs.keys().filter(|id| !held.contains(id)).copied().collect();
      (Written::id_at(self.id_prefix, written.seq), leave)
    };
    let mut ours = doc! { "$gte": Written::id_at(self.id_prefix, 0), "$lte": upto };
    if !leave.is_empty() {
      ours.insert("$nin", leave);
    }
    let filter = doc! { "_id": ours, "holder.manager": &self.manager, "expiresAt": { "$gte": earliest } };
    let update = doc! { "$set": { "refreshedAt": at }, "$max": { "expiresAt": expires } };
    let doing = "refreshing locks";
    let op = self.gated(|| retry_once(|| self.locks.update_many(filter.clone(), update.clone())));
    let res = tokio::select! {
      res = op => res.map_err(|e| LockError::server(doing, &e))?,
      _ = too_late => return Err(self.bound.expired(doing, Duration::ZERO)),
    };
    self.bound.answered();
    Ok(res.matched_count)
  }

  /// The lock document of `action`, if any (read on the primary).
  pub async fn find_lock(&self, action: &Bson) -> LockResult<Option<Document>> {
    let read = || retry_once(|| self.locks.find_one(doc! { "action": action.clone() }));
    self.bounded("reading a lock", read).await
  }

  /// Ends the run of a once-record (see `engine::once`): on document `id`,
  /// only while this manager still holds it, sets `fields` (its outcome and
  /// new expiry) and renames `holder` to `ranBy`, so that no refresh round
  /// matches it again (they match on `holder.manager`). `false` when the
  /// document is gone or no longer ours: taken over after it expired.
  pub async fn complete(&self, id: ObjectId, fields: Document) -> LockResult<bool> {
    let filter = doc! { "_id": id, "holder.manager": &self.manager };
    let update = doc! { "$set": fields, "$rename": { "holder": "ranBy" } };
    let doing = "storing a once-record's outcome";
    let res = self.bounded(doing, || retry_once(|| self.locks.update_one(filter.clone(), update.clone()))).await?;
    if res.matched_count == 1 {
      return Ok(true);
    }
    // A retry after a broken connection finds its own first try applied.
    let read = || retry_once(|| self.locks.find_one(doc! { "_id": id, "ranBy.manager": &self.manager, "state": { "$exists": true } }));
    Ok(self.bounded(doing, read).await?.is_some())
  }

  /// Deletes the once-records (finished or not) that expired before
  /// `earliest`, on servers without a TTL index too; returns how many.
  pub async fn sweep_records(&self, earliest: DateTime) -> LockResult<u64> {
    let filter = doc! { "action._once": { "$exists": true }, "expiresAt": { "$lt": earliest } };
    let res = self.bounded("removing expired once-records", || retry_once(|| self.locks.delete_many(filter.clone()))).await?;
    Ok(res.deleted_count)
  }

  /// The lock documents among `actions` (read on the primary): each one's
  /// `action` and `expiresAt`. What a semaphore reads to see its free slots.
  pub async fn occupied(&self, actions: &[Bson]) -> LockResult<Vec<Occupied>> {
    let filter = doc! { "action": { "$in": actions.to_vec() } };
    let read = || async move {
      let projection = doc! { "action": 1, "expiresAt": 1, "createdAt": 1 };
      let cursor = retry_once(|| self.locks.find(filter.clone()).projection(projection.clone())).await?;
      cursor.try_collect::<Vec<Document>>().await
    };
    let docs = self.bounded("reading a semaphore's permits", read).await?;
    Ok(docs
      .into_iter()
      .filter_map(|mut d| {
        Some(Occupied {
          id: d.get_object_id("_id").ok()?,
          expires: d.get_datetime("expiresAt").ok().copied(),
          created: d.get_datetime("createdAt").ok().copied(),
          action: d.remove("action")?,
        })
      })
      .collect())
  }

  /// Sets the expiry of lock `id` to `at` and leaves it there (`minHoldMs`:
  /// the key stays taken until then); `false` if the document is gone.
  pub async fn expire_at(&self, id: ObjectId, at: DateTime) -> LockResult<bool> {
    // `freed`: its holder is done with it, so the takeover that ends it is
    // expected, not a sign of a holder that died.
    self.written.lock().unwrap().expiring(&[id], at);
    let update = doc! { "$set": { "expiresAt": at, "freed": true } };
    let res = self
      .bounded("keeping a lock until its minHoldMs", || retry_once(|| self.locks.update_one(doc! { "_id": id }, update.clone())))
      .await?;
    Ok(res.matched_count == 1)
  }

  /// Which of `ids` still have a document (read on the primary).
  pub async fn existing(&self, ids: &[ObjectId]) -> LockResult<HashSet<ObjectId>> {
    let read = || async move {
      let cursor = retry_once(|| self.locks.find(by_ids(ids)).projection(doc! { "_id": 1 })).await?;
      cursor.try_collect::<Vec<Document>>().await
    };
    let docs = self.bounded("checking held locks", read).await?;
    Ok(docs.iter().filter_map(|d| d.get_object_id("_id").ok()).collect())
  }

  /// Deletes lock documents by id; returns how many were deleted.
  pub async fn delete(&self, ids: &[ObjectId]) -> LockResult<u64> {
    let res = self.bounded("freeing locks", || retry_once(|| self.locks.delete_many(by_ids(ids)))).await?;
    self.written.lock().unwrap().deleted(ids);
    Ok(res.deleted_count)
  }

  /// Deletes lock document `id`. Alone when a connection is free (the
  /// usual case: the answer is exact); when every connection is busy (a
  /// burst of frees), it joins a queue that a few of the waiting callers
  /// send as `delete`s of up to `FREE_BATCH` ids each. Ten thousand frees
  /// at once then cost tens of commands, not ten thousand, and none waits
  /// for a connection past its operation timeout (7,274 of
  /// 10,000 did on FerretDB/PostgreSQL).
  pub async fn free(&self, id: ObjectId) -> LockResult<Freed> {
    let queued = {
      let mut queue = self.frees.lock().unwrap();
      if queue.waiting.is_empty() && self.gate.available_permits() > 0 {
        None
      } else {
        let (tx, rx) = oneshot::channel();
        queue.waiting.push((id, tx));
        let sends = queue.senders < FREE_SENDERS;
        if sends {
          queue.senders += 1;
        }
        Some((rx, sends))
      }
    };
    let Some((reply, sends)) = queued else {
      let deleted = self.delete(&[id]).await?;
      return Ok(if deleted == 1 { Freed::Deleted } else { Freed::Gone });
    };
    if sends {
      self.send_frees().await;
    }
    reply.await.unwrap_or_else(|_| Err(LockError::Closed))
  }

  /// Sends queued frees until the queue is empty.
  async fn send_frees(&self) {
    // Counted out even if this future is dropped half-way (a runtime
    // shutting down), so later frees are never left without a sender.
    struct Sending<'a>(&'a std::sync::Mutex<FreeQueue>, bool);
    impl Drop for Sending<'_> {
      fn drop(&mut self) {
        if !self.1 {
          self.0.lock().unwrap_or_else(|e| e.into_inner()).senders -= 1;
        }
      }
    }
    let mut sending = Sending(&self.frees, false);
    loop {
      let batch: Vec<_> = {
        let mut queue = self.frees.lock().unwrap();
        if queue.waiting.is_empty() {
          // Under the lock that a new free takes to see whether it sends.
          queue.senders -= 1;
          sending.1 = true;
          return;
        }
        let n = queue.waiting.len().min(FREE_BATCH);
        queue.waiting.drain(..n).collect()
      };
      let ids: Vec<ObjectId> = batch.iter().map(|(id, _)| *id).collect();
      let res = self.delete(&ids).await.map(|deleted| match deleted as usize {
        n if n == ids.len() => Freed::Deleted,
        0 => Freed::Gone,
        _ => Freed::Unknown,
      });
      for (_, reply) in batch {
        let _ = reply.send(res.clone());
      }
    }
  }

  /// The next fencing token for `action`: a per-key counter, incremented
  /// atomically (created at 1 on first use).
  pub async fn next_fencing_token(&self, action: &Bson) -> LockResult<i64> {
    // A retry after a broken connection may skip a number: tokens only
    // need to increase.
    let increment = || retry_once(|| {
      self
        .fencing
        .find_one_and_update(doc! { "_id": action.clone() }, doc! { "$inc": { "token": 1_i64 } })
        .upsert(true)
        .return_document(ReturnDocument::After)
    });
    let counter = self.bounded("taking a fencing token", increment).await?;
    let token = counter.as_ref().and_then(|d| match d.get("token") {
      Some(Bson::Int64(n)) => Some(*n),
      Some(Bson::Int32(n)) => Some(*n as i64),
      Some(Bson::Double(n)) => Some(*n as i64),
      _ => None,
    });
    token.ok_or_else(|| LockError::Server {
      message: "mongo-locks-native: taking a fencing token failed: the counter document has no numeric token".into(),
      code: None,
    })
  }

  /// Records `token` on our lock document; `false` if the document is gone
  /// (we lost the lock before the token was ours).
  pub async fn record_fencing_token(&self, id: ObjectId, token: i64) -> LockResult<bool> {
    let record = || retry_once(|| self.locks.update_one(doc! { "_id": id }, doc! { "$set": { "fencingToken": token } }));
    let res = self.bounded("recording a fencing token", record).await?;
    Ok(res.matched_count == 1)
  }

  /// One `ping` round trip.
  pub async fn ping(&self) -> LockResult<()> {
    self.bounded("ping", || async move { self.client.database("admin").run_command(doc! { "ping": 1 }).await }).await?;
    Ok(())
  }

  /// Closes the connection pool. The driver's shutdown talks to the server
  /// (it ends its sessions there), so a server that no longer answers gets
  /// `limit` (what is left of close()'s bound), after which the pool is
  /// simply dropped.
  pub async fn shutdown(&self, limit: Duration) {
    let _ = tokio::time::timeout(limit, self.client.clone().shutdown().immediate(true).into_future()).await;
    self.files.lock().unwrap().take(); // removes the TLS files
  }
}

/// Reads the server's clock: a `ping` first, so that server selection and
/// connection set-up happen outside the timed exchanges, then
/// `CLOCK_SAMPLES` timed `hello`s on the warm connection, of which the one
/// with the shortest round trip is offered to `clock`. A sample whose half
/// round trip is over `max_half_rtt` means too little: refused, and an
/// error if the clock has no sample yet.
async fn sample_clock(client: &Client, clock: &ServerClock, max_half_rtt: Duration, doing: &str) -> LockResult<Hello> {
  let admin = client.database("admin");
  let primary = SelectionCriteria::ReadPreference(ReadPreference::Primary);
  admin
    .run_command(doc! { "ping": 1 })
    .selection_criteria(primary.clone())
    .await
    .map_err(|e| LockError::server(doing, &e))?;
  let mut best: Option<Sample> = None;
  let mut replicated = false;
  for _ in 0..CLOCK_SAMPLES {
    let sent = Mono::now();
    let reply = admin
      .run_command(doc! { "hello": 1 })
      .selection_criteria(primary.clone())
      .await
      .map_err(|e| LockError::server(doing, &e))?;
    let received = Mono::now();
    replicated = reply.get_str("setName").is_ok() || reply.get_str("msg").is_ok_and(|m| m == "isdbgrid");
    let Ok(server_time) = reply.get_datetime("localTime") else {
      tracing::warn!(target: "mongo_locks_native", "the server's hello has no localTime; expiry uses this machine's clock");
      let now = Mono::now();
      clock.offer(Sample { server_ms: clock::wall_ms(), at: now, half_rtt: Duration::ZERO });
      return Ok(Hello { replicated });
    };
    let sample = Sample::from_exchange(sent, received, *server_time);
    if best.is_none_or(|b| sample.half_rtt < b.half_rtt) {
      best = Some(sample);
    }
  }
  let best = best.expect("CLOCK_SAMPLES > 0");
  if best.half_rtt > max_half_rtt {
    let message = format!(
      "mongo-locks-native: reading the server's clock failed: the shortest of {CLOCK_SAMPLES} round trips took {} ms, \
       too long to date lock expiries (at most {} ms with this ttlMs)",
      (best.half_rtt * 2).as_millis(),
      (max_half_rtt * 2).as_millis()
    );
    if clock.now().is_none() {
      return Err(LockError::Server { message, code: None });
    }
    // We have an older sample: keep it (its uncertainty keeps growing) and say so.
    tracing::warn!(target: "mongo_locks_native", "{message}; keeping the previous reading");
    return Ok(Hello { replicated });
  }
  clock.offer(best);
  Ok(Hello { replicated })
}

/// A refused login, with who tried to log in (never the password).
fn name_credentials(err: LockError, settings: Option<&EffectiveSettings>) -> LockError {
  match (err, settings) {
    (LockError::Server { message, code }, Some(s)) if message.contains(crate::errors::AUTH_FAILED) => {
      let who = format!(
        "user {}, authSource {}, mechanism {}",
        s.username.as_deref().map_or_else(|| "(none)".to_string(), |u| format!("{u:?}")),
        s.auth_source.as_deref().map_or_else(|| "(default)".to_string(), |a| format!("{a:?}")),
        s.auth_mechanism.as_deref().unwrap_or("(negotiated)"),
      );
      LockError::Server { message: message.replacen(crate::errors::AUTH_FAILED, &format!("{} ({who})", crate::errors::AUTH_FAILED), 1), code }
    }
    (err, _) => err,
  }
}

/// A connection that broke under an operation (typically: the server
/// restarted and the pool still held connections to the old process).
fn is_transient(e: &mongodb::error::Error) -> bool {
  matches!(e.kind.as_ref(), ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. })
    || e.contains_label("RetryableWriteError")
}

/// A lock document found by `occupied`.
pub struct Occupied {
  pub id: ObjectId,
  pub action: Bson,
  pub expires: Option<DateTime>,
  pub created: Option<DateTime>,
}

impl Occupied {
  /// Whether its holder may still believe it holds it.
  pub fn live(&self, earliest: DateTime) -> bool {
    self.expires.is_none_or(|e| e >= earliest)
  }
}

/// Whether this is the first refusal of a TTL index for `namespace` in
/// this process.
fn first_ttl_refusal(namespace: &str) -> bool {
  static SEEN: std::sync::Mutex<Option<std::collections::HashSet<String>>> = std::sync::Mutex::new(None);
  SEEN.lock().unwrap().get_or_insert_with(Default::default).insert(namespace.to_string())
}

/// Runs an idempotent operation, and once more if the connection broke
/// under it. (The driver's retryable writes only exist on replica sets.)
async fn retry_once<T, F, Fut>(op: F) -> mongodb::error::Result<T>
where
  F: Fn() -> Fut,
  Fut: IntoFuture<Output = mongodb::error::Result<T>>,
{
  match op().await {
    Err(e) if is_transient(&e) => op().await,
    other => other,
  }
}

fn by_ids(ids: &[ObjectId]) -> Document {
  match ids {
    [one] => doc! { "_id": *one },
    _ => doc! { "_id": { "$in": ids.to_vec() } },
  }
}

/// FerretDB answers `createIndexes` with a TTL option by "not implemented"
/// (code 238); other servers may say "not supported".
fn refuses_ttl(e: &mongodb::error::Error) -> bool {
  if matches!(server_code(e), Some(238) | Some(115)) {
    return true;
  }
  let text = e.to_string().to_lowercase();
  text.contains("not implemented") || text.contains("not supported")
}

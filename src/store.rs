//! The MongoDB work: connecting, the two indexes, and each storage
//! operation a lock needs. Nothing here knows about JavaScript, and the
//! caller supplies "now" (server time, see `clock`).
//!
//! The documents and index specifications are exactly those of
//! `mongo-locks` 3.x, so both libraries can share one collection.

use std::collections::HashSet;
use std::time::Duration;

use std::future::IntoFuture;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, CollectionOptions, IndexOptions, ReturnDocument, WriteConcern};
use mongodb::{Client, Collection, IndexModel};

use crate::clock::{self, ServerClock};
use crate::config::{redact, Config, WriteConcernChoice};
use crate::errors::{describe_driver_error, is_duplicate_key, server_code, LockError, LockResult};

/// Refresh and existence checks go to the server in batches of this many ids.
pub const BATCH: usize = 1000;

pub struct Store {
  client: Client,
  locks: Collection<Document>,
  /// Per-key counters behind fencing tokens: `<collection>.fencing`.
  fencing: Collection<Document>,
  /// Whether writes use `w: "majority"`.
  pub majority: bool,
}

/// What a `hello` told us besides the time.
pub struct Hello {
  /// Replica set member or mongos: majority writes make sense.
  pub replicated: bool,
}

impl Store {
  /// Builds a client, reads the server's clock and topology, and makes sure
  /// the indexes exist.
  pub async fn connect(config: &Config, clock: &ServerClock) -> LockResult<Store> {
    let mut options = ClientOptions::parse(&config.uri).await.map_err(|e| match e.kind.as_ref() {
      ErrorKind::InvalidArgument { message, .. } => LockError::invalid(format!(
        "mongo-locks-native: malformed MongoDB connection string {:?}: {message}",
        redact(&config.uri)
      )),
      _ => LockError::server("resolving the connection string", &e),
    })?;
    if let Some(timeout) = config.server_selection_timeout {
      options.server_selection_timeout = Some(timeout);
    }
    // The Node driver's default pool is 100 connections, the Rust driver's
    // 10: with many concurrent lock calls, 10 queue up. Match Node unless
    // the connection string says otherwise.
    if options.max_pool_size.is_none() {
      options.max_pool_size = Some(100);
    }
    if options.app_name.is_none() {
      options.app_name = Some("mongo-locks-native".to_string());
    }
    let client = Client::with_options(options).map_err(|e| LockError::server("creating the client", &e))?;
    let hello = sync_clock(&client, clock).await?;
    let majority = match config.write_concern {
      WriteConcernChoice::Auto => hello.replicated,
      WriteConcernChoice::Majority => true,
      WriteConcernChoice::Default => false,
    };
    let db = client.database(&config.database);
    let with = |name: &str| {
      let options = if majority {
        CollectionOptions::builder().write_concern(WriteConcern::majority()).build()
      } else {
        CollectionOptions::default()
      };
      db.collection_with_options::<Document>(name, options)
    };
    let store = Store {
      locks: with(&config.collection),
      fencing: with(&format!("{}.fencing", config.collection)),
      client,
      majority,
    };
    store.ensure_indexes().await?;
    tracing::debug!(
      target: "mongo_locks_native",
      uri = %redact(&config.uri),
      majority,
      clock_offset_ms = clock.offset_ms(),
      "connected"
    );
    Ok(store)
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
    self
      .locks
      .create_index(unique)
      .await
      .map_err(|e| LockError::server("creating the unique index on action", &e))?;

    let ttl = IndexModel::builder()
      .keys(doc! { "expiresAt": 1 })
      .options(IndexOptions::builder().expire_after(Duration::from_secs(0)).build())
      .build();
    if let Err(e) = self.locks.create_index(ttl).await {
      // Each manager connects once, so this warns once per manager.
      if refuses_ttl(&e) {
        tracing::warn!(
          target: "mongo_locks_native",
          error = %describe_driver_error(&e),
          "the server refused the TTL index on expiresAt; expired locks are still taken over by lock(), \
           but abandoned lock documents stay in the collection"
        );
      } else {
        return Err(LockError::server("creating the TTL index on expiresAt", &e));
      }
    }
    Ok(())
  }

  /// Re-reads the server's clock (see `clock`).
  pub async fn sync_clock(&self, clock: &ServerClock) -> LockResult<()> {
    sync_clock(&self.client, clock).await.map(|_| ())
  }

  /// Inserts a new lock document; `false` when the key is already held.
  pub async fn insert(&self, id: ObjectId, action: &Bson, now: DateTime, ttl: Duration) -> LockResult<bool> {
    let lock = doc! {
      "_id": id,
      "action": action.clone(),
      "createdAt": now,
      "refreshedAt": now,
      "expiresAt": clock::after(now, ttl),
    };
    let first = self.locks.insert_one(lock.clone()).await;
    let outcome = match first {
      Err(e) if is_transient(&e) => {
        // The first insert may have reached the server before the connection
        // broke: then the retry meets our own document as a duplicate.
        match self.locks.insert_one(lock).await {
          Err(e) if is_duplicate_key(&e) => match self.locks.find_one(doc! { "_id": id }).await {
            Ok(found) => return Ok(found.is_some()),
            Err(e) => Err(e),
          },
          other => other.map(|_| ()),
        }
      }
      other => other.map(|_| ()),
    };
    match outcome {
      Ok(()) => Ok(true),
      Err(e) if is_duplicate_key(&e) => Ok(false),
      Err(e) => Err(LockError::server("inserting the lock document", &e)),
    }
  }

  /// Deletes the lock on `action` only if it expired before `now`: the
  /// atomic half of a takeover. `true` when we removed it.
  pub async fn delete_expired(&self, action: &Bson, now: DateTime) -> LockResult<bool> {
    let filter = doc! { "action": action.clone(), "expiresAt": { "$lt": now } };
    let res = retry_once(|| self.locks.delete_one(filter.clone()))
      .await
      .map_err(|e| LockError::server("removing an expired lock", &e))?;
    Ok(res.deleted_count == 1)
  }

  /// Pushes the expiry of each of `ids` to `now + ttl`; returns how many matched.
  pub async fn refresh(&self, ids: &[ObjectId], now: DateTime, ttl: Duration) -> LockResult<u64> {
    let update = doc! { "$set": { "refreshedAt": now, "expiresAt": clock::after(now, ttl) } };
    let res = retry_once(|| self.locks.update_many(by_ids(ids), update.clone()))
      .await
      .map_err(|e| LockError::server("refreshing locks", &e))?;
    Ok(res.matched_count)
  }

  /// Which of `ids` still have a document.
  pub async fn existing(&self, ids: &[ObjectId]) -> LockResult<HashSet<ObjectId>> {
    let cursor = retry_once(|| self.locks.find(by_ids(ids)).projection(doc! { "_id": 1 }))
      .await
      .map_err(|e| LockError::server("checking held locks", &e))?;
    let docs: Vec<Document> = cursor
      .try_collect()
      .await
      .map_err(|e| LockError::server("checking held locks", &e))?;
    Ok(docs.iter().filter_map(|d| d.get_object_id("_id").ok()).collect())
  }

  /// Deletes lock documents by id; returns how many were deleted.
  pub async fn delete(&self, ids: &[ObjectId]) -> LockResult<u64> {
    let res = retry_once(|| self.locks.delete_many(by_ids(ids)))
      .await
      .map_err(|e| LockError::server("freeing locks", &e))?;
    Ok(res.deleted_count)
  }

  /// The next fencing token for `action`: a per-key counter, incremented
  /// atomically (created at 1 on first use).
  pub async fn next_fencing_token(&self, action: &Bson) -> LockResult<i64> {
    // A retry after a broken connection may skip a number: tokens only
    // need to increase.
    let counter = retry_once(|| {
      self
        .fencing
        .find_one_and_update(doc! { "_id": action.clone() }, doc! { "$inc": { "token": 1_i64 } })
        .upsert(true)
        .return_document(ReturnDocument::After)
    })
    .await
    .map_err(|e| LockError::server("taking a fencing token", &e))?;
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
    let res = retry_once(|| self.locks.update_one(doc! { "_id": id }, doc! { "$set": { "fencingToken": token } }))
      .await
      .map_err(|e| LockError::server("recording a fencing token", &e))?;
    Ok(res.matched_count == 1)
  }

  /// One `ping` round trip.
  pub async fn ping(&self) -> LockResult<()> {
    self
      .client
      .database("admin")
      .run_command(doc! { "ping": 1 })
      .await
      .map_err(|e| LockError::server("ping", &e))?;
    Ok(())
  }

  /// Closes the connection pool.
  pub async fn shutdown(&self) {
    self.client.clone().shutdown().immediate(true).await;
  }
}

/// `hello`: the server's `localTime`, timed, folded into `clock`.
async fn sync_clock(client: &Client, clock: &ServerClock) -> LockResult<Hello> {
  let sent = clock::local_ms();
  let reply = client
    .database("admin")
    .run_command(doc! { "hello": 1 })
    .await
    .map_err(|e| LockError::server("reading the server's clock (hello)", &e))?;
  let received = clock::local_ms();
  let replicated = reply.get_str("setName").is_ok() || reply.get_str("msg").map(|m| m == "isdbgrid").unwrap_or(false);
  match reply.get_datetime("localTime") {
    Ok(server_time) => {
      clock.record(sent, received, *server_time);
      Ok(Hello { replicated })
    }
    Err(_) => {
      tracing::warn!(target: "mongo_locks_native", "the server's hello has no localTime; expiry uses this machine's clock");
      Ok(Hello { replicated })
    }
  }
}

/// A connection that broke under an operation (typically: the server
/// restarted and the pool still held connections to the old process).
fn is_transient(e: &mongodb::error::Error) -> bool {
  matches!(e.kind.as_ref(), ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. })
    || e.contains_label("RetryableWriteError")
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

//! The MongoDB work: connecting, the two indexes, and each storage
//! operation a lock needs. Nothing here knows about JavaScript.
//!
//! The documents and index specifications are exactly those of
//! `mongo-locks` 3.x, so both libraries can share one collection.

use std::collections::HashSet;
use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, IndexModel};
use futures_util::TryStreamExt;

use crate::clock;
use crate::config::{redact, Config};
use crate::errors::{is_duplicate_key, server_code, LockError, LockResult};

/// Refresh and existence checks go to the server in batches of this many ids.
pub const BATCH: usize = 1000;

pub struct Store {
  client: Client,
  locks: Collection<Document>,
}

impl Store {
  /// Builds a client and makes sure the indexes exist.
  pub async fn connect(config: &Config) -> LockResult<Store> {
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
    if options.app_name.is_none() {
      options.app_name = Some("mongo-locks-native".to_string());
    }
    let client = Client::with_options(options).map_err(|e| LockError::server("creating the client", &e))?;
    let locks = client.database(&config.database).collection::<Document>(&config.collection);
    let store = Store { client, locks };
    store.ensure_indexes().await?;
    tracing::debug!(target: "mongo_locks_native", uri = %redact(&config.uri), "connected");
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
          error = %crate::errors::describe_driver_error(&e),
          "the server refused the TTL index on expiresAt; expired locks are still taken over by lock(), \
           but abandoned lock documents stay in the collection"
        );
      } else {
        return Err(LockError::server("creating the TTL index on expiresAt", &e));
      }
    }
    Ok(())
  }

  /// Inserts a new lock document; `false` when the key is already held.
  pub async fn insert(&self, id: ObjectId, action: &Bson, ttl: Duration) -> LockResult<bool> {
    let now = clock::now();
    let lock = doc! {
      "_id": id,
      "action": action.clone(),
      "createdAt": now,
      "refreshedAt": now,
      "expiresAt": clock::after(now, ttl),
    };
    match self.locks.insert_one(lock).await {
      Ok(_) => Ok(true),
      Err(e) if is_duplicate_key(&e) => Ok(false),
      Err(e) => Err(LockError::server("inserting the lock document", &e)),
    }
  }

  /// Deletes the lock on `action` only if it expired before `now`: the
  /// atomic half of a takeover. `true` when we removed it.
  pub async fn delete_expired(&self, action: &Bson, now: DateTime) -> LockResult<bool> {
    let res = self
      .locks
      .delete_one(doc! { "action": action.clone(), "expiresAt": { "$lt": now } })
      .await
      .map_err(|e| LockError::server("removing an expired lock", &e))?;
    Ok(res.deleted_count == 1)
  }

  /// Pushes the expiry of each of `ids` forward; returns how many matched.
  pub async fn refresh(&self, ids: &[ObjectId], ttl: Duration) -> LockResult<u64> {
    let now = clock::now();
    let filter = match ids {
      [one] => doc! { "_id": *one },
      _ => doc! { "_id": { "$in": ids.to_vec() } },
    };
    let update = doc! { "$set": { "refreshedAt": now, "expiresAt": clock::after(now, ttl) } };
    let res = self
      .locks
      .update_many(filter, update)
      .await
      .map_err(|e| LockError::server("refreshing locks", &e))?;
    Ok(res.matched_count)
  }

  /// Which of `ids` still have a document.
  pub async fn existing(&self, ids: &[ObjectId]) -> LockResult<HashSet<ObjectId>> {
    let cursor = self
      .locks
      .find(doc! { "_id": { "$in": ids.to_vec() } })
      .projection(doc! { "_id": 1 })
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
    let filter = match ids {
      [one] => doc! { "_id": *one },
      _ => doc! { "_id": { "$in": ids.to_vec() } },
    };
    let res = self
      .locks
      .delete_many(filter)
      .await
      .map_err(|e| LockError::server("freeing locks", &e))?;
    Ok(res.deleted_count)
  }

  /// One `ping` round trip.
  pub async fn ping(&self) -> LockResult<()> {
    self
      .client
      .database(self.locks.namespace().db.as_str())
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

/// FerretDB answers `createIndexes` with a TTL option by "not implemented"
/// (code 238); other servers may say "not supported".
fn refuses_ttl(e: &mongodb::error::Error) -> bool {
  if matches!(server_code(e), Some(238) | Some(115)) {
    return true;
  }
  let text = e.to_string().to_lowercase();
  text.contains("not implemented") || text.contains("not supported")
}

//! The lock manager: one per collection, holding the connection, the
//! registry of locks this process holds, and the background refresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mongodb::bson::{oid::ObjectId, Bson};
use napi::bindgen_prelude::*;
use napi::ValueType;
use napi_derive::napi;
use tokio::sync::{watch, OnceCell};
use tracing::Instrument;

use crate::clock;
use crate::config::{read_options, Config, RawOptions, CONNECT_OPTIONS, CONSTRUCTOR_OPTIONS, DEFAULT_COLLECTION};
use crate::errors::{rejected, to_napi, LockError, LockResult};
use crate::key::action_from_js;
use crate::lock::{Lock, LockState};
use crate::logging::{sink_from_js, LogRoute};
use crate::refresh;
use crate::stats::{LockStats, Stats};
use crate::store::{Store, BATCH};
use crate::values::describe;

/// The shared core of a manager; every `Lock` keeps it alive.
pub struct Core {
  config: Config,
  store: OnceCell<Store>,
  held: Mutex<HashMap<ObjectId, Arc<LockState>>>,
  closed: AtomicBool,
  stop: watch::Sender<bool>,
  pub stats: Stats,
  route: LogRoute,
}

impl Core {
  fn start(config: Config, route: LogRoute) -> Arc<Core> {
    let (stop, stopped) = watch::channel(false);
    let period = config.refresh;
    let span = route.span();
    let core = Arc::new(Core {
      config,
      store: OnceCell::new(),
      held: Mutex::new(HashMap::new()),
      closed: AtomicBool::new(false),
      stop,
      stats: Stats::default(),
      route,
    });
    refresh::spawn(Arc::downgrade(&core), period, stopped, span);
    core
  }

  /// Runs `fut` in this manager's span (so its log events reach its logger)
  /// and counts a server failure.
  pub async fn traced<T>(&self, fut: impl std::future::Future<Output = LockResult<T>>) -> LockResult<T> {
    let res = fut.instrument(self.route.span()).await;
    if let Err(LockError::Server { message, .. }) = &res {
      Stats::bump(&self.stats.errors);
      let _enter = self.route.span().entered();
      tracing::error!(target: "mongo_locks_native", "{message}");
    }
    res
  }

  /// The connection, made on first use; a failed attempt is retried by the
  /// next call rather than remembered, so a server that comes up late works.
  async fn store(&self) -> LockResult<&Store> {
    if self.closed.load(Ordering::Acquire) {
      return Err(LockError::Closed);
    }
    self.store.get_or_try_init(|| Store::connect(&self.config)).await
  }

  /// One attempt to take `action`: insert; if held, take it over only if it
  /// expired (conditional delete, then insert again); else `None`.
  pub async fn acquire(self: &Arc<Self>, action: Bson) -> LockResult<Option<Arc<LockState>>> {
    let store = self.store().await?;
    let id = ObjectId::new();
    let ttl = self.config.ttl;
    let mut acquired = store.insert(id, &action, ttl).await?;
    if !acquired && store.delete_expired(&action, clock::now()).await? {
      tracing::warn!(target: "mongo_locks_native", action = %action, "took over an expired lock");
      Stats::bump(&self.stats.taken_over);
      acquired = store.insert(id, &action, ttl).await?;
    }
    if !acquired {
      Stats::bump(&self.stats.contended);
      return Ok(None);
    }
    Stats::bump(&self.stats.acquired);
    let state = Arc::new(LockState::new(id, action));
    self.held.lock().unwrap().insert(id, state.clone());
    if self.closed.load(Ordering::Acquire) {
      // close() ran while we inserted: do not leave a lock behind it.
      self.held.lock().unwrap().remove(&id);
      state.unlock();
      store.delete(&[id]).await?;
      return Err(LockError::Closed);
    }
    tracing::debug!(target: "mongo_locks_native", action = %state.action, id = %id, "acquired");
    Ok(Some(state))
  }

  pub async fn release(&self, state: &Arc<LockState>) -> LockResult<bool> {
    if !state.unlock() {
      return Ok(false);
    }
    self.held.lock().unwrap().remove(&state.id);
    let deleted = self.store().await?.delete(&[state.id]).await?;
    tracing::debug!(target: "mongo_locks_native", action = %state.action, "freed");
    Ok(deleted == 1)
  }

  pub async fn refresh_one(&self, state: &Arc<LockState>) -> LockResult<bool> {
    if !state.is_locked() {
      return Ok(false);
    }
    let matched = self.store().await?.refresh(&[state.id], self.config.ttl).await?;
    Stats::add(&self.stats.refreshes, matched);
    if matched == 0 {
      self.mark_lost(state);
    }
    Ok(matched == 1 && state.is_locked())
  }

  /// One background tick: refresh all held locks, batch by batch.
  pub async fn refresh_all(&self) -> LockResult<()> {
    let held: Vec<Arc<LockState>> = self.held.lock().unwrap().values().cloned().collect();
    if held.is_empty() {
      return Ok(());
    }
    let Some(store) = self.store.get() else { return Ok(()) };
    for batch in held.chunks(BATCH) {
      let ids: Vec<ObjectId> = batch.iter().map(|s| s.id).collect();
      let matched = store.refresh(&ids, self.config.ttl).await?;
      Stats::bump(&self.stats.refresh_commands);
      Stats::add(&self.stats.refreshes, matched);
      if (matched as usize) < ids.len() {
        let alive = store.existing(&ids).await?;
        for state in batch.iter().filter(|s| !alive.contains(&s.id)) {
          self.mark_lost(state);
        }
      }
    }
    Ok(())
  }

  fn mark_lost(&self, state: &Arc<LockState>) {
    self.held.lock().unwrap().remove(&state.id);
    if state.unlock() {
      Stats::bump(&self.stats.lost);
      tracing::error!(target: "mongo_locks_native", action = %state.action, "lock lost: its document is gone");
    }
  }

  /// Stops the refresh, frees every held lock, closes the connection.
  pub async fn close(&self) -> LockResult<()> {
    if self.closed.swap(true, Ordering::AcqRel) {
      return Ok(());
    }
    let _ = self.stop.send(true);
    let held: Vec<Arc<LockState>> = self.held.lock().unwrap().drain().map(|(_, s)| s).collect();
    held.iter().for_each(|s| {
      s.unlock();
    });
    let Some(store) = self.store.get() else { return Ok(()) };
    let mut freed = Ok(());
    for batch in held.chunks(BATCH) {
      let ids: Vec<ObjectId> = batch.iter().map(|s| s.id).collect();
      if let Err(e) = store.delete(&ids).await {
        freed = Err(e);
        break;
      }
    }
    store.shutdown().await;
    freed
  }
}

/// Hands out locks stored in one MongoDB collection, and keeps them fresh.
///
/// A drop-in for `mongo-locks`' `LockManager`: same constructor, same
/// documents, same indexes; the MongoDB work runs in Rust.
#[napi]
pub struct LockManager {
  core: Arc<Core>,
}

#[napi]
impl LockManager {
  /// Takes a Node `mongodb` driver Collection (driver 4 to 7): the database
  /// and collection names come from it, the connection string from its
  /// client (`options.uri` overrides it). Returns at once; connecting and
  /// creating the indexes happen in the background and `lock()` waits for them.
  #[napi(constructor, ts_args_type = "collection: MongoCollectionLike, options?: LockManagerOptions")]
  pub fn new(env: Env, collection: Unknown, options: Option<Unknown>) -> Result<Self> {
    let setup = (|| {
      let raw = read_options(options.as_ref(), CONSTRUCTOR_OPTIONS)?;
      let route = log_route(&env, options.as_ref())?;
      let (found_uri, database, name) = from_collection(&collection)?;
      let uri = match (raw.uri.clone(), found_uri) {
        (Some(uri), _) | (None, Some(uri)) => uri,
        (None, None) => {
          return Err(LockError::invalid(
            "mongo-locks-native: could not read the connection string from collection.client; pass it as options.uri",
          ))
        }
      };
      Ok((Config::build(uri, database, name, &raw)?, route))
    })()
    .map_err(|e| to_napi(&env, &e))?;
    let core = Core::start(setup.0, setup.1);
    let warmup = core.clone();
    napi::bindgen_prelude::spawn(async move {
      let span = warmup.route.span();
      if let Err(e) = warmup.store().instrument(span.clone()).await {
        let _enter = span.entered();
        tracing::warn!(target: "mongo_locks_native", error = %e.message(), "connecting in the background failed; lock() will retry");
      }
    });
    Ok(LockManager { core })
  }

  /// Connects to `uri` and resolves to a ready manager once the indexes exist.
  #[napi(ts_args_type = "uri: string, options: ConnectOptions", ts_return_type = "Promise<LockManager>")]
  pub fn connect<'env>(env: &'env Env, uri: Unknown, options: Option<Unknown>) -> Result<PromiseRaw<'env, LockManager>> {
    let config = (|| {
      if uri.get_type().ok() != Some(ValueType::String) {
        return Err(LockError::invalid(format!(
          "mongo-locks-native: LockManager.connect(uri, options) needs a connection string, got {}",
          describe(&uri)
        )));
      }
      let uri: String = unsafe { uri.cast() }.map_err(|e| LockError::invalid(e.reason))?;
      let raw: RawOptions = read_options(options.as_ref(), CONNECT_OPTIONS)?;
      let database = raw.database.clone().ok_or_else(|| {
        LockError::invalid("mongo-locks-native: LockManager.connect needs options.database (the database name)")
      })?;
      let collection = raw.collection.clone().unwrap_or_else(|| DEFAULT_COLLECTION.to_string());
      let route = log_route(env, options.as_ref())?;
      Ok((Config::build(uri, database, collection, &raw)?, route))
    })();
    let (config, route) = match config {
      Ok(c) => c,
      Err(e) => return rejected(env, &e),
    };
    let core = Core::start(config, route);
    env.spawn_future_with_callback(
      async move {
        let ready = core.traced(async { core.store().await.map(|_| ()) }).await;
        if ready.is_err() {
          let _ = core.close().await;
        }
        Ok(ready.map(|_| core))
      },
      |env, res| match res {
        Ok(core) => Ok(LockManager { core }),
        Err(e) => Err(to_napi(env, &e)),
      },
    )
  }

  /// Tries once to take the lock on `key`. Resolves to a `Lock`, or `null`
  /// when someone else holds it; rejects with a `MongoLocksError` when the
  /// server fails, and with a `TypeError` (writing nothing) on a bad key.
  #[napi(ts_args_type = "key: LockKey", ts_return_type = "Promise<Lock | null>")]
  pub fn lock<'env>(&self, env: &'env Env, key: Unknown) -> Result<PromiseRaw<'env, Option<Lock>>> {
    let action = match action_from_js(&key) {
      Ok(a) => a,
      Err(e) => return rejected(env, &e),
    };
    let core = self.core.clone();
    env.spawn_future_with_callback(
      async move {
        let res = core.traced(core.acquire(action)).await;
        Ok((res, core))
      },
      |env, (res, core)| match res {
        Ok(Some(state)) => Ok(Some(Lock::new(state, core))),
        Ok(None) => Ok(None),
        Err(e) => Err(to_napi(env, &e)),
      },
    )
  }

  /// Stops the background refresh, frees the locks this manager still
  /// holds and closes its connections. Later `lock()` calls reject.
  #[napi(ts_return_type = "Promise<void>")]
  pub fn close<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
    let core = self.core.clone();
    env.spawn_future_with_callback(async move { Ok(core.traced(core.close()).await) }, |env, res| {
      res.map_err(|e| to_napi(env, &e))
    })
  }

  /// Counters since this manager was created: held now, acquired,
  /// contended, taken over, lost, refreshes, errors. Reads atomics only.
  #[napi]
  pub fn stats(&self) -> LockStats {
    self.core.stats.snapshot(self.core.held.lock().unwrap().len())
  }

  /// One `ping` round trip to the server on this manager's own connection
  /// pool; resolves to the round-trip time in milliseconds. Useful for a
  /// readiness check.
  #[napi(ts_return_type = "Promise<number>")]
  pub fn ping<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, f64>> {
    let core = self.core.clone();
    env.spawn_future_with_callback(
      async move {
        let res = core
          .traced(async {
            let store = core.store().await?;
            let started = std::time::Instant::now();
            store.ping().await?;
            Ok(started.elapsed().as_secs_f64() * 1000.0)
          })
          .await;
        Ok(res)
      },
      |env, res| res.map_err(|e| to_napi(env, &e)),
    )
  }

  /// How many locks this manager holds right now.
  #[napi(getter)]
  pub fn held(&self) -> u32 {
    self.core.held.lock().unwrap().len() as u32
  }
}

/// The manager's log routing, with `options.logger` when one is given.
fn log_route(env: &Env, options: Option<&Unknown>) -> LockResult<LogRoute> {
  let logger = options
    .filter(|o| o.get_type().ok() == Some(ValueType::Object))
    .and_then(|o| o.coerce_to_object().ok())
    .and_then(|o| o.get_named_property::<Unknown>("logger").ok())
    .filter(|l| !matches!(l.get_type(), Ok(ValueType::Undefined) | Ok(ValueType::Null)));
  let sink = match logger {
    Some(l) => Some(sink_from_js(env, &l)?),
    None => None,
  };
  Ok(LogRoute::new(sink))
}

/// Reads `(connection string, database, collection)` from a Node driver
/// Collection. The URL lives at `collection.client.s.url` (driver 5+) or
/// `collection.s.db.s.client.s.url` (driver 4).
fn from_collection(collection: &Unknown) -> LockResult<(Option<String>, String, String)> {
  let bad = || {
    LockError::invalid(format!(
      "mongo-locks-native: new LockManager(collection) needs a MongoDB driver Collection \
       (from db.collection(name)), got {}",
      describe(collection)
    ))
  };
  if collection.get_type().ok() != Some(ValueType::Object) {
    return Err(bad());
  }
  let obj: Object = unsafe { collection.cast() }.map_err(|_| bad())?;
  let name = string_at(&obj, &["collectionName"]).ok_or_else(bad)?;
  let database = string_at(&obj, &["dbName"]).ok_or_else(bad)?;
  let uri = string_at(&obj, &["client", "s", "url"]).or_else(|| string_at(&obj, &["s", "db", "s", "client", "s", "url"]));
  Ok((uri, database, name))
}

fn string_at(obj: &Object, path: &[&str]) -> Option<String> {
  let (last, parents) = path.split_last()?;
  let mut current: Object = *obj;
  for step in parents {
    let next: Unknown = current.get_named_property(step).ok()?;
    if next.get_type().ok()? != ValueType::Object {
      return None;
    }
    current = unsafe { next.cast() }.ok()?;
  }
  let value: Unknown = current.get_named_property(last).ok()?;
  if value.get_type().ok()? != ValueType::String {
    return None;
  }
  unsafe { value.cast() }.ok()
}

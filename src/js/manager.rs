//! `LockManager`, the class JavaScript uses: it reads and checks arguments
//! on the JS thread, hands the work to the `Core`, and turns results into
//! `Lock` objects or the right JS errors.

use std::future::Future;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::ValueType;
use napi_derive::napi;
use tracing::Instrument;

use crate::js::options::{
  options_object, read_lock_options, read_options, CONNECT_OPTIONS, CONSTRUCTOR_OPTIONS,
};
use crate::store::config::{Config, LockRequest, RawOptions, DEFAULT_COLLECTION};
use crate::store::connection::{ClientSettings, EffectiveSettings};
use crate::engine::core::{Core, Outlet};
use crate::engine::wait::Cancel;
use crate::engine::rwlock::{Read, RwLock, Write};
use crate::engine::semaphore::{Semaphore, MAX_LIMIT};
use crate::errors::{LockError, LockResult};
use crate::js::errors::{rejected, to_napi};
use crate::js::key::action_from_js;
use crate::engine::held::LockState;
use crate::js::lock::NativeLock;
use crate::store::config::Holder;
use crate::engine::stats::MetricsSnapshot;
use crate::js::logging::{sink_from_js, LogRoute};
use crate::js::signals::{self, Incoming, LostSink, SignalHook};
use crate::engine::stats::LockStats;
use crate::js::values::describe;

/// Hands out locks stored in one MongoDB collection, and keeps them fresh.
///
/// A drop-in for `mongo-locks`' `LockManager`: same constructor, same
/// documents, same indexes; the MongoDB work runs in Rust.
#[napi]
pub struct LockManager {
  pub(crate) core: Arc<Core>,
}

/// The result of a lock call: a value, or (for an aborted wait) a promise
/// already rejected with the signal's reason.
pub(crate) type Settled<'env, T> = Either<T, Unknown<'env>>;

#[napi]
impl LockManager {
  /// Takes a Node `mongodb` driver Collection (driver 4 to 7): the database
  /// and collection names come from it, the connection string from its
  /// client (`options.uri` overrides it). Returns at once; connecting and
  /// creating the indexes happen in the background and `lock()` waits for them.
  ///
  /// (`client`, not in the types, is what lib/manager.js read of the application's
  /// Node client: see `connection`. With `connecting`, also not in the
  /// types, `collection` is the connection string of `connect()`, which
  /// lib/manager.js makes through this constructor, so that a manager is made
  /// one way whichever way it is asked for. `aws`, also hidden, finds
  /// MONGODB-AWS credentials: see `aws`.)
  #[napi(constructor, ts_args_type = "collection: MongoCollectionLike, options?: LockManagerOptions")]
  pub fn new(
    env: Env,
    collection: Unknown,
    options: Option<Unknown>,
    client: Option<ClientSettings>,
    identity: Option<Identity>,
    connecting: Option<bool>,
    aws: Option<Unknown>,
  ) -> Result<Self> {
    let hidden = Hidden { client, identity, aws };
    if connecting == Some(true) {
      // connect() waits for the connection itself: no warm-up.
      let core = for_connect(&env, &collection, options.as_ref(), hidden).map_err(|e| to_napi(&env, &e))?;
      return Ok(LockManager { core });
    }
    let setup = (|| {
      let raw = read_options(options.as_ref(), CONSTRUCTOR_OPTIONS)?;
      let (found_uri, database, name) = from_collection(&collection)?;
      let uri = match (raw.uri.clone(), found_uri) {
        (Some(uri), _) | (None, Some(uri)) => uri,
        (None, None) => {
          return Err(LockError::invalid(
            "mongo-locks-native: could not read the connection string from collection.client; pass it as options.uri",
          ))
        }
      };
      let config = Config::build(uri, database, name, &raw)?;
      start(&env, config, options.as_ref(), hidden)
    })();
    let core = setup.map_err(|e| to_napi(&env, &e))?;
    let warmup = core.clone();
    napi::bindgen_prelude::spawn(async move {
      // Its failure is logged once by `connect`, shared with the calls
      // that waited on it.
      let span = warmup.span();
      let _ = warmup.connect(true).instrument(span).await;
    });
    Ok(LockManager { core })
  }

  /// Takes the lock on `key`. Resolves to a `Lock`, or `null` when someone
  /// else holds it (after `options.waitMs`, if given). Rejects with a
  /// `MongoLocksError` when the server fails, with the signal's reason when
  /// `options.signal` aborts the wait, and with a `TypeError` (writing
  /// nothing) on a bad key or option.
  ///
  ///
  /// Its TypeScript is in types-header.d.ts: two overloads, ours and
  /// `mongo-locks`' own `lock(key: unknown): Promise<Lock | null>`.
  #[napi(skip_typescript)]
  pub fn lock<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    options: Option<Unknown>,
  ) -> Result<PromiseRaw<'env, Settled<'env, Option<NativeLock>>>> {
    self.run_call(
      env,
      action_from_js(&key),
      options.as_ref(),
      |core, action, req, cancel| async move { core.acquire(action, req, cancel).await },
      |state, make_lock| state.map(make_lock).transpose(),
    )
  }

  /// Takes a permit of the semaphore `key`: at most `limit` holders of it
  /// across every process. Resolves to a `Lock` (the permit), or `null`
  /// when all permits are held (after `options.waitMs`). Used by
  /// `locker.semaphore(key, { limit }).acquire(options)`.
  #[napi(skip_typescript)]
  pub fn acquire_permit<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    limit: f64,
    options: Option<Unknown>,
  ) -> Result<PromiseRaw<'env, Settled<'env, Option<NativeLock>>>> {
    let input = count("limit", limit).and_then(|limit| Ok((action_from_js(&key)?, limit)));
    self.run_call(
      env,
      input,
      options.as_ref(),
      |core, (action, limit), req, cancel| async move {
        shared("a semaphore permit", &req)?;
        core.acquire_claim(Semaphore::new(&action, limit), req, cancel).await
      },
      |state, make_lock| state.map(make_lock).transpose(),
    )
  }

  /// Takes the read side (`write: false`: one of many readers, while no
  /// writer holds or waits) or the write side (`write: true`: alone) of the
  /// read/write lock `key`. Used by `locker.readWriteLock(key)`.
  #[napi(skip_typescript)]
  pub fn acquire_rw<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    max_readers: f64,
    write: bool,
    options: Option<Unknown>,
  ) -> Result<PromiseRaw<'env, Settled<'env, Option<NativeLock>>>> {
    let input = count("maxReaders", max_readers).and_then(|max| Ok((action_from_js(&key)?, max)));
    self.run_call(
      env,
      input,
      options.as_ref(),
      move |core, (action, max_readers), req, cancel| async move {
        let lock = RwLock::new(&action, max_readers);
        if write {
          core.acquire_claim(Write::new(lock), req, cancel).await
        } else {
          shared("a read lock", &req)?;
          core.acquire_claim(Read(lock), req, cancel).await
        }
      },
      |state, make_lock| state.map(make_lock).transpose(),
    )
  }

  /// Takes the locks on all `keys`, all or nothing: in one fixed order
  /// (sorted, so two callers never deadlock), and if one cannot be had
  /// (within `options.waitMs`, one budget for the set) frees those taken
  /// and resolves `null`. Resolves to the locks in the order of `keys`.
  #[napi(ts_args_type = "keys: readonly LockKey[], options?: LockOptions", ts_return_type = "Promise<NativeLock[] | null>")]
  pub fn lock_all<'env>(
    &self,
    env: &'env Env,
    keys: Unknown,
    options: Option<Unknown>,
  ) -> Result<PromiseRaw<'env, Settled<'env, Option<Vec<NativeLock>>>>> {
    let order = sorted_actions(&keys);
    let positions: Vec<usize> = order.iter().flatten().map(|(i, _)| *i).collect();
    self.run_call(
      env,
      order.map(|order| order.into_iter().map(|(_, a)| a).collect()),
      options.as_ref(),
      |core, actions, req, cancel| async move { core.acquire_all(actions, req, cancel).await },
      move |states, make_lock| {
        let Some(states) = states else { return Ok(None) };
        let mut slots: Vec<Option<NativeLock>> = (0..states.len()).map(|_| None).collect();
        for (state, position) in states.into_iter().zip(positions) {
          slots[position] = Some(make_lock(state)?);
        }
        Ok(Some(slots.into_iter().flatten().collect()))
      },
    )
  }

  /// Stops the background refresh, frees the locks this manager still
  /// holds and closes its connections. Later `lock()` calls reject.
  #[napi(ts_return_type = "Promise<void>")]
  pub fn close<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
    let core = self.core.clone();
    // At once, so that a lock() called right after close() is refused.
    core.begin_close();
    crate::js::bridge::spawn(env, async move { Ok(core.traced(core.close()).await) }, |env, res| match res {
      Ok(ids) => {
        ids.iter().for_each(|id| signals::forget(env, id));
        Ok(())
      }
      Err(e) => Err(to_napi(env, &e)),
    })
  }

  /// Counters since this manager was created: held now, acquired,
  /// contended, taken over, lost, refreshes, errors. Reads atomics only.
  #[napi]
  pub fn stats(&self) -> LockStats {
    self.core.stats.snapshot(self.core.held_count())
  }

  /// One `ping` round trip to the server on this manager's own connection
  /// pool; resolves to the round-trip time in milliseconds. Useful for a
  /// readiness check.
  #[napi(ts_return_type = "Promise<number>")]
  pub fn ping<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, f64>> {
    let core = self.core.clone();
    crate::js::bridge::spawn(env, 
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

  /// The connection as this manager's own client makes it, without secrets
  /// (hosts, credentials' user and mechanism, TLS and where its CAs come
  /// from, retryWrites, pool bounds, timeouts…). Planned at construction
  /// from the connection string and the client's options (an SRV name shows
  /// as written until connecting resolves it); after an attempt, what it
  /// used. `null` only for a connection string that cannot be read without
  /// connecting. Lock operations always read from the primary.
  #[napi(getter)]
  pub fn settings(&self) -> Option<EffectiveSettings> {
    self.core.connected().map(|s| s.settings.clone()).or_else(|| self.core.tried_settings())
  }

  /// Who holds the lock on `key` now, as its document says: the holder
  /// (`null` for a `mongo-locks` client's lock), its age, its expiry and the
  /// server's time (estimated, see `serverClockUncertaintyMs`), its fencing
  /// token. Resolves `null` when nobody holds `key`. lib/manager.js adds the dates.
  /// (Typed in types-header.d.ts, with the Dates lib/manager.js adds.)
  #[napi(skip_typescript)]
  pub fn inspect<'env>(&self, env: &'env Env, key: Unknown) -> Result<PromiseRaw<'env, Option<LockInspection>>> {
    let action = match action_from_js(&key) {
      Ok(action) => action,
      Err(e) => return rejected(env, &e),
    };
    let core = self.core.clone();
    crate::js::bridge::spawn(env, 
      async move {
        let found = core.traced(core.inspect(&action)).await;
        Ok(found.map(|found| found.map(|(doc, now)| LockInspection::of(&doc, &now, &core.config.holder))))
      },
      |env, res| res.map_err(|e| to_napi(env, &e)),
    )
  }

  /// Everything `locker.metrics()` renders (lib/metrics.js): the counters of
  /// `stats()`, callers waiting now, and the acquire, wait, hold and refresh
  /// histograms. Reads atomics only.
  #[napi]
  pub fn metrics_snapshot(&self) -> MetricsSnapshot {
    self.core.stats.metrics(self.core.held_count())
  }

  /// How many locks this manager holds right now.
  #[napi(getter)]
  pub fn held(&self) -> u32 {
    self.core.held_count() as u32
  }

  /// For tests: the next hand-over of acquired locks to JavaScript fails,
  /// as a JS error between the insert and the caller would.
  #[napi(js_name = "__failNextHandOver", skip_typescript)]
  pub fn fail_next_hand_over(&self) {
    self.core.fail_next_hand_over.store(true, std::sync::atomic::Ordering::Release);
  }

  /// The write concern lock writes use once connected: `"majority"` (a
  /// replica set or sharded cluster, or `writeConcern: "majority"`) or
  /// `"default"` (the server's or the connection string's); `null` before
  /// the first connection.
  #[napi(getter, ts_return_type = "'majority' | 'default' | null")]
  pub fn write_concern(&self) -> Option<String> {
    self.core.connected().map(|s| if s.majority { "majority" } else { "default" }.to_string())
  }

  /// The estimated offset of the server's clock from this machine's wall
  /// clock, in ms (server minus local), now; `null` before the first
  /// reading. For display: expiry decisions use the server's time anchored
  /// to the monotonic clock, never this machine's wall clock.
  #[napi(getter)]
  pub fn server_clock_offset_ms(&self) -> Option<f64> {
    self.core.clock.offset_ms().map(|ms| ms as f64)
  }

  /// How far the server's true time can be from our estimate of it, in
  /// ms, now: half the round trip of the best `hello` sample plus a drift
  /// allowance for its age; `null` before the first reading. Takers and
  /// holders allow for it on the safe side.
  #[napi(getter)]
  pub fn server_clock_uncertainty_ms(&self) -> Option<f64> {
    self.core.clock.uncertainty_ms()
  }
}

impl LockManager {
  /// The shape of `lock()` and `lockAll()`: check the input, then the
  /// options (so a bad key never hooks the signal), on the JS thread,
  /// rejecting at once on bad input or an already-aborted signal; run
  /// `work` on the core; then settle on the JS thread, where
  /// `finish(result, make_lock)` turns states into `Lock`s (registering
  /// `onLost` for each).
  pub(crate) fn run_call<'env, I, T, V, Fut>(
    &self,
    env: &'env Env,
    input: LockResult<I>,
    options: Option<&Unknown>,
    work: impl FnOnce(Arc<Core>, I, LockRequest, Option<Arc<Cancel>>) -> Fut,
    finish: impl FnOnce(T, &dyn Fn(Arc<LockState>) -> Result<NativeLock>) -> Result<V> + 'static,
  ) -> Result<PromiseRaw<'env, Settled<'env, V>>>
  where
    Fut: Future<Output = LockResult<T>> + Send + 'static,
    T: Acquired + Send + 'static,
    V: ToNapiValue,
  {
    let prepared = input.and_then(|input| Ok((input, prepare(env, options)?)));
    let (input, call) = match prepared {
      Ok((_, Prepared::Aborted(reason))) => return PromiseRaw::reject(env, reason),
      Ok((input, Prepared::Ready(call))) => (input, call),
      Err(e) => return rejected(env, &e),
    };
    let core = self.core.clone();
    let work = work(core.clone(), input, call.req, call.cancel.clone());
    #[cfg(feature = "alloc-stats")]
    crate::js::alloc_stats::note_size("work", &work);
    // Boxed: the call's own future is several KB, and passed by value
    // through `traced` and into the spawned task it would be laid out
    // more than once in the task (measured with `alloc-stats`).
    let work = Box::pin(work);
    let fut = async move {
      let res = core.traced(work).await;
      Ok((res, core))
    };
    #[cfg(feature = "alloc-stats")]
    crate::js::alloc_stats::LOCK_FUTURE_BYTES.store(std::mem::size_of_val(&fut), std::sync::atomic::Ordering::Relaxed);
    crate::js::bridge::spawn(env, 
      fut,
      move |env, (res, core)| {
        // No acquisition leaves a document without a handle: whatever fails
        // between the insert and the caller holding its `Lock`s (a JS
        // error, a manager closed meanwhile), what was acquired is given
        // back here, for every kind of claim.
        let acquired = res.as_ref().map(Acquired::states).unwrap_or_default();
        let settled = call.settle(env, res, |value, watch| {
          finish(value, &|state| {
            if core.is_closed() {
              return Err(to_napi(env, &LockError::Closed));
            }
            if core.fail_next_hand_over.swap(false, std::sync::atomic::Ordering::AcqRel) {
              return Err(Error::from_reason("mongo-locks-native: the hand-over failed (test hook)"));
            }
            core.check(&state); // a lock that arrived past its deadline is lost now
            watch(&state)?;
            Ok(NativeLock::new(state, core.clone()))
          })
        });
        if settled.is_err() {
          core.give_back(acquired);
        }
        settled
      },
    )
  }
}

/// The locks a call's result holds.
pub(crate) trait Acquired {
  fn states(&self) -> Vec<Arc<LockState>>;
}

impl Acquired for Option<Arc<LockState>> {
  fn states(&self) -> Vec<Arc<LockState>> {
    self.iter().cloned().collect()
  }
}

impl Acquired for Option<Vec<Arc<LockState>>> {
  fn states(&self) -> Vec<Arc<LockState>> {
    self.iter().flatten().cloned().collect()
  }
}

/// A number of holders: a whole number from 1 to `MAX_LIMIT`.
fn count(name: &str, n: f64) -> LockResult<u32> {
  if n.is_finite() && n.fract() == 0.0 && (1.0..=MAX_LIMIT as f64).contains(&n) {
    Ok(n as u32)
  } else {
    Err(LockError::invalid(format!(
      "mongo-locks-native: {name} must be a whole number from 1 to {MAX_LIMIT}, got {n}"
    )))
  }
}

/// Fencing orders the holders of an exclusive lock; a lock shared by
/// several holders at once has no such order, so it is refused.
fn shared(what: &str, req: &LockRequest) -> LockResult<()> {
  if req.fencing {
    return Err(LockError::invalid(format!(
      "mongo-locks-native: options.fencing is for exclusive locks (lock(), write()); {what} is shared, so tokens would not order its holders"
    )));
  }
  Ok(())
}

/// What lib/manager.js knows of this process for `holder` (the manager id is ours).
#[napi(object)]
pub struct Identity {
  pub host: String,
  pub pid: u32,
  /// The application's name, when the manager's `appName` option is not set.
  pub app: Option<String>,
}

/// What lib/manager.js passes besides the public arguments: the application's
/// client settings, this process's identity, the AWS credential lookup.
struct Hidden<'env> {
  client: Option<ClientSettings>,
  identity: Option<Identity>,
  aws: Option<Unknown<'env>>,
}

fn identify(config: &mut Config, identity: Option<Identity>) {
  let Some(identity) = identity else { return };
  config.holder.host = identity.host;
  config.holder.pid = identity.pid;
  if config.holder.app == "unknown" {
    if let Some(app) = identity.app {
      config.holder.app = app;
    }
  }
}

/// What `locker.inspect(key)` tells of a held key. Times are ms; lib/manager.js
/// adds `createdAt`, `refreshedAt` and `expiresAt` as Dates.
#[napi(object)]
pub struct LockInspection {
  /// Hex of the lock document's `_id`.
  pub id: String,
  /// Who holds it; `null` for a lock written by `mongo-locks` (or an older version of this package).
  pub holder: Option<Holder>,
  /// Whether this manager is the holder.
  pub held_by_this_manager: bool,
  pub created_at_ms: Option<f64>,
  pub refreshed_at_ms: Option<f64>,
  pub expires_at_ms: Option<f64>,
  /// The server's time now, by this manager's estimate.
  pub server_time_ms: f64,
  /// Server time now minus `createdAt`.
  pub age_ms: Option<f64>,
  /// `expiresAt` minus server time now: negative once expired (a crashed holder's lock awaiting takeover).
  pub expires_in_ms: Option<f64>,
  pub fencing_token: Option<i64>,
}

impl LockInspection {
  fn of(doc: &mongodb::bson::Document, now: &crate::clock::ServerNow, ours: &Holder) -> Self {
    let date = |name: &str| doc.get_datetime(name).ok().map(|d| d.timestamp_millis() as f64);
    let holder = doc.get_document("holder").ok().map(Holder::read);
    let server = now.estimate_ms as f64;
    let (created, expires) = (date("createdAt"), date("expiresAt"));
    LockInspection {
      id: doc.get_object_id("_id").map(|id| id.to_hex()).unwrap_or_default(),
      held_by_this_manager: holder.as_ref().is_some_and(|h| h.manager == ours.manager),
      holder,
      created_at_ms: created,
      refreshed_at_ms: date("refreshedAt"),
      expires_at_ms: expires,
      server_time_ms: server,
      age_ms: created.map(|c| server - c),
      expires_in_ms: expires.map(|e| e - server),
      fencing_token: crate::store::config::whole_number(doc, "fencingToken"),
    }
  }
}

/// The core of a manager made by `LockManager.connect(uri, options)`.
fn for_connect(
  env: &Env,
  uri: &Unknown,
  options: Option<&Unknown>,
  hidden: Hidden,
) -> LockResult<Arc<Core>> {
  if uri.get_type().ok() != Some(ValueType::String) {
    return Err(LockError::invalid(format!(
      "mongo-locks-native: LockManager.connect(uri, options) needs a connection string, got {}",
      describe(uri)
    )));
  }
  let uri: String = unsafe { uri.cast() }.map_err(|e| LockError::invalid(e.reason))?;
  let raw: RawOptions = read_options(options, CONNECT_OPTIONS)?;
  let database = raw
    .database
    .clone()
    .ok_or_else(|| LockError::invalid("mongo-locks-native: LockManager.connect needs options.database (the database name)"))?;
  let collection = raw.collection.clone().unwrap_or_else(|| DEFAULT_COLLECTION.to_string());
  let config = Config::build(uri, database, collection, &raw)?;
  start(env, config, options, hidden)
}

/// A manager's core, with what lib/manager.js passed, its logger and its
/// lost-lock channel.
fn start(env: &Env, mut config: Config, options: Option<&Unknown>, hidden: Hidden) -> LockResult<Arc<Core>> {
  config.client = hidden.client;
  identify(&mut config, hidden.identity);
  config.aws = hidden.aws.filter(|f| f.get_type().ok() != Some(ValueType::Undefined)).map(|f| crate::js::aws::from_js(&f)).transpose()?;
  let logger = options_object(options)?
    .and_then(|o| o.get_named_property::<Unknown>("logger").ok())
    .filter(|l| !matches!(l.get_type(), Ok(ValueType::Undefined) | Ok(ValueType::Null)));
  let sink = match logger {
    Some(l) => Some(sink_from_js(env, &l)?),
    None => None,
  };
  let lost = signals::lost_sink(env)
    .map_err(|e| LockError::invalid(format!("mongo-locks-native: could not set up lost-lock signals: {}", e.reason)))?;
  Ok(Core::start(config, Box::new(JsOutlet { route: LogRoute::new(sink), lost })))
}

/// What a manager's core tells JavaScript (see `engine::core::Outlet`):
/// its log events go to its logger, its lost locks to their watchers.
struct JsOutlet {
  route: LogRoute,
  lost: Arc<LostSink>,
}

impl Outlet for JsOutlet {
  fn span(&self) -> tracing::Span {
    self.route.span()
  }

  fn lost(&self, state: &LockState, reason: &'static str) {
    signals::notify_lost(&self.lost, state, reason);
  }
}

/// The options of one lock call, read on the JS thread.
struct Call {
  req: LockRequest,
  cancel: Option<Arc<Cancel>>,
  hook: Option<SignalHook>,
  on_lost: Option<FunctionRef<Unknown<'static>, Unknown<'static>>>,
}

enum Prepared<'env> {
  Ready(Call),
  /// `options.signal` had already aborted: reject with its reason.
  Aborted(Unknown<'env>),
}

fn prepare<'env>(env: &'env Env, options: Option<&Unknown>) -> LockResult<Prepared<'env>> {
  let req = read_lock_options(options)?;
  let obj = options_object(options)?;
  let read = |name: &str| {
    obj
      .as_ref()
      .and_then(|o| o.get_named_property::<Unknown>(name).ok())
      .filter(|v| v.get_type().ok() != Some(ValueType::Undefined))
  };
  let on_lost = match read("onLost") {
    Some(f) => {
      signals::check_on_lost(&f)?;
      let f: Function<Unknown<'static>, Unknown<'static>> = unsafe { f.cast() }.map_err(|e| LockError::invalid(e.reason))?;
      Some(f.create_ref().map_err(|e| LockError::invalid(e.reason))?)
    }
    None => None,
  };
  let (cancel, hook) = match read("signal") {
    Some(signal) => match signals::hook(env, &signal)? {
      Incoming::Aborted(reason) => return Ok(Prepared::Aborted(reason)),
      Incoming::Live(cancel, hook) => (Some(cancel), Some(hook)),
    },
    None => (None, None),
  };
  Ok(Prepared::Ready(Call { req, cancel, hook, on_lost }))
}

impl Call {
  /// On the JS thread once the work is done: release the signal listener,
  /// then resolve with `ok(value, watch)`, reject with the signal's reason
  /// if the wait was aborted, or reject with the JS form of the error.
  /// `watch(id)` registers `onLost` for an acquired lock.
  fn settle<'env, T, V>(
    self,
    env: &'env Env,
    res: LockResult<T>,
    ok: impl FnOnce(T, &dyn Fn(&Arc<LockState>) -> Result<()>) -> Result<V>,
  ) -> Result<Settled<'env, V>> {
    let reason = self.hook.and_then(|hook| hook.release(env));
    let on_lost = match &self.on_lost {
      Some(f) => Some(f.borrow_back(env)?),
      None => None,
    };
    let watch = |state: &Arc<LockState>| match &on_lost {
      Some(f) => signals::watch_on_lost(env, state, &f.to_unknown()),
      None => Ok(()),
    };
    match res {
      Ok(value) => Ok(Either::A(ok(value, &watch)?)),
      Err(LockError::Aborted) => {
        let reason = match reason {
          Some(r) => r,
          None => crate::js::errors::js_error(env, &LockError::Aborted)?,
        };
        let promise: PromiseRaw<Unknown> = PromiseRaw::reject(env, reason)?;
        Ok(Either::B(unsafe { Unknown::from_raw_unchecked(env.raw(), promise.raw()) }))
      }
      Err(e) => Err(to_napi(env, &e)),
    }
  }
}

/// `keys` for `lockAll`: each checked, no repeats, paired with its position
/// and sorted by its stored form.
fn sorted_actions(keys: &Unknown) -> LockResult<Vec<(usize, mongodb::bson::Bson)>> {
  let bad = || {
    LockError::invalid(format!(
      "mongo-locks-native: lockAll(keys) needs a non-empty array of keys, got {}",
      describe(keys)
    ))
  };
  if !keys.is_array().unwrap_or(false) {
    return Err(bad());
  }
  let arr: Object = unsafe { keys.cast() }.map_err(|_| bad())?;
  let len = arr.get_array_length().map_err(|_| bad())?;
  if len == 0 {
    return Err(bad());
  }
  let mut out = Vec::with_capacity(len as usize);
  for i in 0..len {
    let key: Unknown = arr.get_element(i).map_err(|_| bad())?;
    out.push((i as usize, action_from_js(&key)?));
  }
  out.sort_by_cached_key(|(_, a)| a.to_string());
  if let Some(pair) = out.windows(2).find(|w| w[0].1 == w[1].1) {
    return Err(LockError::invalid(format!(
      "mongo-locks-native: lockAll(keys) got the key {} twice; each key can be locked once",
      pair[0].1
    )));
  }
  Ok(out)
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

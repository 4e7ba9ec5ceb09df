//! The connection a manager's calls share, beside its held locks (`core`):
//! made on first use, one attempt at a time, the calls that waited on an
//! attempt sharing its outcome; what the last attempt tried
//! (`locker.settings`); and server failures logged once per cause.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::clock::ServerClock;
use crate::engine::flights::Flights;
use crate::engine::stats::Waiting;
use crate::errors::{LockError, LockResult};
use crate::store::bound::Bound;
use crate::store::commands::Store;
use crate::store::config::Config;
use crate::store::connection::EffectiveSettings;
use crate::store::monitor::Monitor;

/// The connection of one manager, and what its attempts saw.
pub struct Connector {
  store: OnceCell<Store>,
  /// What the last connection attempt tried (`locker.settings` while it
  /// cannot connect: the first thing to look at then); planned at
  /// construction, before any attempt.
  tried: Mutex<Option<EffectiveSettings>>,
  /// One connection attempt at a time; see `connect`.
  connecting: tokio::sync::Mutex<Connecting>,
  /// What the driver's monitors saw of the servers, for every client this
  /// manager makes: why a call our bound ended found no server to use.
  monitor: Arc<Monitor>,
  /// The cause of the last server failure logged, and how many commands
  /// the server had answered then: the same cause is logged once, until
  /// the server answers again (see `report`).
  logged_failure: Mutex<Option<(String, u64)>>,
  /// Calls waiting for a connection attempt in progress.
  waiting_to_connect: AtomicI64,
}

/// What an attempt needs of the manager that owns the connection, lent by
/// `Core` for one call.
pub struct Owner<'a> {
  pub config: &'a Config,
  pub clock: &'a ServerClock,
  /// Set once `close()` has begun: no attempt starts after it.
  pub closed: &'a AtomicBool,
  pub flights: &'a Flights,
  /// The manager's span, made only when a line is logged.
  pub span: &'a (dyn Fn() -> tracing::Span + Sync),
}

impl Owner<'_> {
  fn is_closed(&self) -> bool {
    self.closed.load(Ordering::Acquire)
  }
}

/// The outcome of the connection attempts so far, for callers that waited
/// on one: they share its failure instead of starting another, so a call
/// fails within one server selection timeout, not two.
#[derive(Default)]
struct Connecting {
  /// How many attempts have failed.
  failures: u64,
  last: Option<LockError>,
}

impl Connector {
  /// `planned`: the settings a first attempt would use (see `tried`).
  pub fn new(planned: Option<EffectiveSettings>) -> Connector {
    Connector {
      store: OnceCell::new(),
      tried: Mutex::new(planned),
      connecting: tokio::sync::Mutex::new(Connecting::default()),
      monitor: Arc::default(),
      logged_failure: Mutex::new(None),
      waiting_to_connect: AtomicI64::new(0),
    }
  }

  /// Logs a server failure, once per cause: a server that stays down (or a
  /// misconfiguration) fails every call and every refresh the same way, and
  /// one line says it; the next differs only in what it was doing. Logged
  /// again when the cause changes, or after the server has answered since.
  /// `warn`: a failure no call waits on (the warm-up), else an error.
  pub fn report(&self, span: impl FnOnce() -> tracing::Span, message: &str, warn: bool) {
    let cause = message.split_once(" failed: ").map_or(message, |(_, cause)| cause).to_string();
    let answers = self.monitor.answers();
    {
      let mut logged = self.logged_failure.lock().unwrap();
      if logged.as_ref().is_some_and(|(c, n)| *c == cause && *n == answers) {
        return;
      }
      *logged = Some((cause, answers));
    }
    let _enter = span().entered();
    if warn {
      tracing::warn!(target: "mongo_locks_native", "{message}; lock() will try again");
    } else {
      tracing::error!(target: "mongo_locks_native", "{message}");
    }
  }

  /// After a logged failure, says once that the server answers again.
  pub fn recovered(&self, span: impl FnOnce() -> tracing::Span) {
    let mut logged = self.logged_failure.lock().unwrap();
    if logged.as_ref().is_some_and(|(_, n)| *n != self.monitor.answers()) {
      *logged = None;
      drop(logged);
      let _enter = span().entered();
      tracing::info!(target: "mongo_locks_native", "the server answers again");
    }
  }

  /// The connection, made now if it is not yet. A failed attempt is not
  /// remembered for later calls, so a server that comes up late works; but
  /// the calls that waited on an attempt share its outcome, so none of them
  /// starts a second one. A call waits at most `operationTimeoutMs` in all
  /// (an attempt takes at most that, and a call that joins one late, or
  /// tries again after it, still ends within its own bound).
  /// `background`: the constructor's warm-up, which no call waits on.
  pub async fn connect(&self, owner: &Owner<'_>, background: bool) -> LockResult<&Store> {
    if let Some(store) = self.store.get() {
      return Ok(store);
    }
    if background {
      return self.connect_shared(owner, true).await;
    }
    let limit = owner.config.operation_timeout;
    match tokio::time::timeout(limit, self.connect_shared(owner, false)).await {
      Ok(res) => res,
      Err(_) => Err(Store::explain(owner.config, self.tried_settings().as_ref(), self.bound(owner.config).expired("connecting", limit))),
    }
  }

  /// The bound on this manager's operations, with what the monitors saw.
  pub fn bound(&self, config: &Config) -> Bound {
    Bound::new(config, &self.monitor, self.tried_settings().as_ref())
  }

  async fn connect_shared(&self, owner: &Owner<'_>, background: bool) -> LockResult<&Store> {
    if owner.is_closed() {
      return Err(LockError::Closed);
    }
    let _flight = owner.flights.enter();
    let entered = Instant::now();
    let seen = self.connecting.try_lock().map(|c| c.failures).ok();
    let mut connecting = {
      let _waiting = Waiting::enter(&self.waiting_to_connect);
      self.connecting.lock().await
    };
    if let Some(store) = self.store.get() {
      return Ok(store);
    }
    // An attempt ended while we waited for our turn: its failure is ours,
    // unless it had started well before this call (a warm-up since a
    // server that came up late) and we have waited less than half of our
    // own server selection timeout: then we try once more ourselves.
    if seen.is_none_or(|seen| connecting.failures != seen) {
      if let Some(last) = &connecting.last {
        if entered.elapsed() >= selection_timeout(owner.config) / 2 {
          return Err(last.clone());
        }
      }
    }
    if owner.is_closed() {
      return Err(LockError::Closed);
    }
    // Boxed, and made only when it runs: connecting's future (parsing the
    // URL, DNS, the indexes, the clock) is about 20 KB, and inline it
    // would be part of every call that awaits `store()`, held for as long
    // as the call waits (21.7 KB per queued lock() call, measured).
    match Box::pin(Store::connect(owner.config, owner.clock, &self.tried, &self.monitor)).await {
      Ok(store) => {
        connecting.last = None;
        self.monitor.answered();
        self.recovered(owner.span);
        Ok(self.store.get_or_init(|| async { store }).await)
      }
      Err(e) => {
        connecting.failures += 1;
        connecting.last = Some(e.clone());
        // Logged here, once for every call that shares this attempt: a
        // warning if none waited on it (the warm-up: lock() tries again),
        // else an error, as a call's server failure is.
        if let LockError::Server { message, .. } = &e {
          self.report(owner.span, message, background && self.waiting_to_connect.load(Ordering::Acquire) == 0);
        }
        Err(e)
      }
    }
  }

  /// The settings of the last connection attempt, or those planned at
  /// construction before any.
  pub fn tried_settings(&self) -> Option<EffectiveSettings> {
    self.tried.lock().unwrap().clone()
  }

  pub fn connected(&self) -> Option<&Store> {
    self.store.get()
  }
}

/// How long connecting waits for a server: the manager's option, else
/// the application's client's, else the driver's default.
fn selection_timeout(config: &Config) -> Duration {
  let client = config.client.as_ref().and_then(|c| c.server_selection_timeout_ms);
  config.server_selection_timeout.unwrap_or_else(|| Duration::from_millis(client.map_or(30_000, u64::from)))
}

//! The engine behind a `LockManager`: the registry of locks this process
//! holds, the claim core every primitive waits through, loss detection and
//! close, beside the connection calls share (`connect`). Nothing here
//! touches JavaScript values; results go back through `js::manager`, and
//! logs and losses through the `Outlet` it was given.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::bson::{oid::ObjectId, Bson};
use tokio::sync::{watch, OnceCell};
use tokio::time::{sleep, Instant};
use tracing::Instrument;

use crate::clock::{Mono, ServerClock, ServerNow};
use crate::engine::connect::{Connector, Owner};
use crate::engine::flights::Flights;
use crate::engine::held::{LockState, Loss};
use crate::engine::key::key_text;
use crate::engine::refresh::{self, Duties};
use crate::engine::stats::{Stats, Waiting};
use crate::engine::wait::{Cancel, Turn, Waiters};
use crate::errors::{LockError, LockResult};
use crate::random::jitter;
use crate::store::bound::Bound;
use crate::store::commands::{Freed, Store, BATCH};
use crate::store::config::{Config, LockRequest};
use crate::store::connection::EffectiveSettings;

/// What one attempt at a key came to.
pub enum Attempt {
  Acquired(Arc<LockState>),
  /// Someone else holds it.
  Held,
  /// We got the document, but so late (a slow server) that its time was
  /// already up: it was removed again, and this is why.
  TooLate(LockError),
}

/// What one `acquire` is after. Every primitive is made of the same lock
/// documents, taken by `Core::try_once`: a plain lock is one document
/// (`Plain`, here), a semaphore permit one of its slot documents, a
/// read/write lock a writer document and reader slots (their claims are in
/// `semaphore` and `rwlock`). The core waits for any of them the same way.
pub trait Claim: Send {
  /// The key local waiters of this claim wait on, woken when a local
  /// holder of the same key frees it.
  fn wake_key(&self) -> String;

  /// Whether the waiters of this claim's key in one process may share the
  /// polling (see `wait`): only for a plain lock, where one waiter's failed
  /// attempt is every waiter's. The waiters of a read/write lock (readers
  /// and writers on one key) or of a semaphore each poll on their own: a
  /// reader polling in vain behind a waiting writer must not leave that
  /// writer asleep.
  fn shares_polling(&self) -> bool {
    false
  }

  /// Whether this waiter should poll at once rather than back off (a
  /// semaphore waiter with a place in the queue: the others leave it a
  /// free permit).
  fn urgent(&self) -> bool {
    false
  }

  /// One attempt; `key` is `wake_key()`.
  fn attempt(
    &mut self,
    core: &Arc<Core>,
    store: &Store,
    key: &str,
    req: &LockRequest,
  ) -> impl Future<Output = LockResult<Attempt>> + Send;

  /// Whether the last attempt found an answer other than the lock (a
  /// once-record already finished): the wait ends there, without the lock.
  fn settled(&self) -> bool {
    false
  }

  /// After the wait, whatever it came to (`acquired` or not): give back
  /// what the claim held between attempts.
  fn end(&mut self, _core: &Arc<Core>, _acquired: bool) -> impl Future<Output = ()> + Send {
    async {}
  }
}

/// `lock(key)`: the document of `action`.
pub struct Plain(pub Bson);

impl Claim for Plain {
  fn wake_key(&self) -> String {
    self.0.to_string()
  }

  fn shares_polling(&self) -> bool {
    true
  }

  async fn attempt(&mut self, core: &Arc<Core>, store: &Store, key: &str, req: &LockRequest) -> LockResult<Attempt> {
    core.try_once(store, &self.0, None, req, || core.waiters.takeover_check_due(key)).await
  }
}

/// How often a queued semaphore waiter polls (see `Claim::urgent`).
const URGENT_POLL: Duration = Duration::from_millis(10);

/// What an attempt does once its insert is answered, given what it found
/// (`try_once` does the commands around this).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Decision {
  /// Our insert went in: the lock is ours (if still in time).
  Take,
  /// Someone else holds the key and is alive, or no expiry check was due.
  Wait,
  /// The holder's document had expired and was removed: insert again.
  TakeOver { kept_for_min_hold: bool },
}

/// `inserted`: our insert went in. `expired`: what the conditional delete
/// of an expired holder found, when the key was held and a check was due:
/// `None` nothing expired (or no check), `Some(true)` a document kept for
/// its `minHoldMs`, `Some(false)` one whose holder stopped refreshing.
fn decide(inserted: bool, expired: Option<bool>) -> Decision {
  match (inserted, expired) {
    (true, _) => Decision::Take,
    (false, Some(kept_for_min_hold)) => Decision::TakeOver { kept_for_min_hold },
    (false, None) => Decision::Wait,
  }
}

/// A waiter's pause before its next attempt: its turn's (see `wait`), at
/// most `URGENT_POLL` for an urgent claim, never past the deadline (`left`);
/// and whether it tries after it even if no local free woke it (a poller
/// does, a sleeper waits to be woken).
fn pause(turn: Turn, urgent: bool, left: Duration) -> (Duration, bool) {
  let (pause, polls) = match turn {
    Turn::Poll(pause) => (pause, true),
    Turn::Sleep(pause) => (pause, false),
  };
  let pause = if urgent { pause.min(URGENT_POLL) } else { pause };
  (pause.min(left), polls)
}

/// How often a refresh round in flight looks again at its locks' deadlines
/// (another round that landed may have moved them on).
const DEADLINE_POLL: Duration = Duration::from_millis(250);

/// What the engine tells the layer that made it, which holds the
/// manager's logger and its lost-lock watchers (`js` implements it): the
/// engine calls up through this, never by importing `js`.
pub trait Outlet: Send + Sync {
  /// The span every operation of this manager runs in (the same one each
  /// time): its log events reach the manager's logger.
  fn span(&self) -> tracing::Span;

  /// `state` was just marked lost, for `reason`: tell whoever watches it
  /// (its `signal`, its `onLost`). Called from any thread; must not block.
  fn lost(&self, state: &LockState, reason: &'static str);
}

pub struct Core {
  pub config: Config,
  held: Mutex<HashMap<ObjectId, Arc<LockState>>>,
  closed: AtomicBool,
  /// The outcome of `close()`, shared by every caller of it.
  closing: OnceCell<LockResult<Vec<ObjectId>>>,
  stop: watch::Sender<bool>,
  /// Work that writes to the server on its own behalf (connecting, lock
  /// attempts, clean-ups): `close()` lets it finish before it shuts the client.
  flights: Flights,
  pub stats: Stats,
  pub clock: ServerClock,
  waiters: Waiters,
  outlet: Box<dyn Outlet>,
  /// The connection calls share, and what its attempts saw.
  link: Connector,
  /// Set by `__failNextHandOver()` (tests): the next hand-over of acquired
  /// locks to JavaScript fails, as a JS error after the insert would.
  pub(crate) fail_next_hand_over: AtomicBool,
  /// The last refresh round took over a third of the ttl (said once).
  slow_refresh: AtomicBool,
  /// How long the last refresh round that got its answer took, in ms.
  last_round_ms: std::sync::atomic::AtomicU64,
  /// When expired once-records were last swept (see `once`).
  pub(crate) last_sweep: Mutex<Option<Mono>>,
  /// The refresh rounds in flight (see `leave_refreshes`).
  rounds: refresh::RoundsInFlight,
}

impl Core {
  pub fn start(config: Config, outlet: Box<dyn Outlet>) -> Arc<Core> {
    let (stop, stopped) = watch::channel(false);
    let span = outlet.span();
    let (period, ttl) = (config.refresh, config.ttl);
    let planned = Store::plan(&config);
    let core = Arc::new(Core {
      config,
      held: Mutex::new(HashMap::new()),
      closed: AtomicBool::new(false),
      closing: OnceCell::new(),
      stop,
      flights: Flights::default(),
      stats: Stats::default(),
      clock: ServerClock::default(),
      waiters: Waiters::default(),
      outlet,
      link: Connector::new(planned),
      fail_next_hand_over: AtomicBool::new(false),
      slow_refresh: AtomicBool::new(false),
      last_round_ms: std::sync::atomic::AtomicU64::new(0),
      last_sweep: Mutex::new(None),
      rounds: refresh::RoundsInFlight::default(),
    });
    refresh::spawn(Arc::downgrade(&core), period, ttl, stopped, span);
    core
  }

  /// Runs `fut` in this manager's span (so its log events reach its logger)
  /// and counts and logs a server failure.
  /// While it runs, the call counts as in flight (see `trim`).
  pub async fn traced<T>(&self, fut: impl Future<Output = LockResult<T>>) -> LockResult<T> {
    let _op = crate::engine::trim::Op::enter();
    let res = fut.instrument(self.outlet.span()).await;
    match &res {
      Err(LockError::Server { message, .. }) => {
        Stats::bump(&self.stats.errors);
        self.link.report(|| self.outlet.span(), message, false);
      }
      Ok(_) => self.link.recovered(|| self.outlet.span()),
      Err(_) => {}
    }
    res
  }

  pub fn span(&self) -> tracing::Span {
    self.outlet.span()
  }

  /// The connection, made on first use (see `connect`).
  pub async fn store(&self) -> LockResult<&Store> {
    self.connect(false).await
  }

  /// The connection, made now if it is not yet (see `Connector::connect`).
  /// `background`: the constructor's warm-up, which no call waits on.
  pub async fn connect(&self, background: bool) -> LockResult<&Store> {
    let span = || self.outlet.span();
    let owner = Owner { config: &self.config, clock: &self.clock, closed: &self.closed, flights: &self.flights, span: &span };
    self.link.connect(&owner, background).await
  }

  /// The bound on this manager's operations, with what the monitors saw.
  fn bound(&self) -> Bound {
    self.link.bound(&self.config)
  }

  /// The settings of the last connection attempt, or those planned at
  /// construction before any.
  pub fn tried_settings(&self) -> Option<EffectiveSettings> {
    self.link.tried_settings()
  }

  pub fn connected(&self) -> Option<&Store> {
    self.link.connected()
  }

  pub fn is_closed(&self) -> bool {
    self.closed.load(Ordering::Acquire)
  }

  pub fn held_count(&self) -> usize {
    self.held.lock().unwrap().len()
  }

  fn held_now(&self) -> Vec<Arc<LockState>> {
    self.held.lock().unwrap().values().cloned().collect()
  }

  /// The server's time now, with its uncertainty.
  pub(crate) fn server_now(&self) -> LockResult<ServerNow> {
    self.clock.now().ok_or_else(|| LockError::Server {
      message: "mongo-locks-native: the server's clock has not been read yet".into(),
      code: None,
    })
  }

  /// Takes `action`, waiting up to `req.wait` (jittered backoff between
  /// attempts, woken early when a local holder frees the key), unless
  /// `cancel` fires or the manager closes first.
  pub async fn acquire(
    self: &Arc<Self>,
    action: Bson,
    req: LockRequest,
    cancel: Option<Arc<Cancel>>,
  ) -> LockResult<Option<Arc<LockState>>> {
    self.acquire_claim(Plain(action), req, cancel).await
  }

  /// Waits for `claim` like `acquire` waits for a key. A claim that held
  /// something between attempts (a writer waiting for readers) gives it
  /// back when the wait ends without the lock.
  pub async fn acquire_claim(
    self: &Arc<Self>,
    mut claim: impl Claim,
    req: LockRequest,
    cancel: Option<Arc<Cancel>>,
  ) -> LockResult<Option<Arc<LockState>>> {
    self.claim(&mut claim, req, cancel).await
  }

  /// `acquire_claim` for a claim the caller reads afterwards (what a
  /// once-record's claim found).
  pub async fn claim(
    self: &Arc<Self>,
    claim: &mut impl Claim,
    req: LockRequest,
    cancel: Option<Arc<Cancel>>,
  ) -> LockResult<Option<Arc<LockState>>> {
    let res = self.wait_for(claim, req, cancel).await;
    claim.end(self, matches!(res, Ok(Some(_)))).await;
    res
  }

  async fn wait_for(
    self: &Arc<Self>,
    claim: &mut impl Claim,
    req: LockRequest,
    cancel: Option<Arc<Cancel>>,
  ) -> LockResult<Option<Arc<LockState>>> {
    let cancelled = || async {
      match &cancel {
        Some(c) => c.cancelled().await,
        None => std::future::pending().await,
      }
    };
    let mut stopped = self.stop.subscribe();
    let store = tokio::select! {
      store = self.store() => store?,
      _ = cancelled() => return Err(LockError::Aborted),
    };
    let key = claim.wake_key();
    let started = Mono::now();
    let deadline = req.wait.filter(|w| !w.is_zero()).map(|w| Instant::now() + w);
    let ticket = deadline.map(|_| self.waiters.enter(key.clone(), claim.shares_polling()));
    let mut waited = WaitTimer { stats: &self.stats, since: None };
    let mut attempt = 0;
    let mut late = None;
    let mut try_now = true;
    loop {
      // An attempt is never interrupted: a cancelled insert could leave a
      // lock behind that nobody frees. Cancellation acts between attempts.
      if cancel.as_ref().is_some_and(|c| c.is_fired()) {
        return Err(LockError::Aborted);
      }
      if self.is_closed() {
        return Err(LockError::Closed); // close() ran while we waited
      }
      if try_now {
        late = match claim.attempt(self, store, &key, &req).await? {
          Attempt::Acquired(state) => {
            self.stats.acquire.observe(Mono::now().since(started));
            return Ok(Some(state));
          }
          Attempt::Held if claim.settled() => return Ok(None),
          Attempt::Held => None,
          Attempt::TooLate(why) => Some(why),
        };
      }
      // Out of time: `null` if the key was held, the reason if the server
      // was too slow to grant it in time.
      let out_of_time = || late.clone().map_or(Ok(None), Err);
      let (Some(deadline), Some(ticket)) = (deadline, &ticket) else { return out_of_time() };
      let now = Instant::now();
      if now >= deadline {
        return out_of_time();
      }
      // For a mutex, one waiter of the key in this process polls and the
      // others try when a local free wakes them (see `wait`). Everyone
      // tries at the deadline.
      let (pause, polls) = pause(ticket.turn(attempt, jitter()), claim.urgent(), deadline - now);
      waited.start();
      try_now = tokio::select! {
        _ = sleep(pause) => polls || Instant::now() >= deadline,
        _ = ticket.notify.notified() => true,
        _ = cancelled() => return Err(LockError::Aborted),
        _ = stopped.changed() => return Err(LockError::Closed),
      };
      attempt = attempt.saturating_add(1);
    }
  }

  /// One attempt: insert; if held, take it over only if it certainly
  /// expired (conditional delete, then insert again; asked only when
  /// `check_expired()` says so); with fencing, take a token. The lock is
  /// handed out only if its deadline is still ahead. `other_key`: what its
  /// local waiters wait on, when not `action` as shown (see `LockState::new`).
  pub(crate) async fn try_once(
    self: &Arc<Self>,
    store: &Store,
    action: &Bson,
    other_key: Option<&str>,
    req: &LockRequest,
    check_expired: impl FnOnce() -> bool,
  ) -> LockResult<Attempt> {
    let _flight = self.flights.enter();
    let mut now = self.server_now()?;
    let (mut id, mut acquired) = self.insert(store, action, &now).await?;
    let expired =
      if !acquired && check_expired() { store.delete_expired(action, self.server_now()?.earliest()).await? } else { None };
    if let Decision::TakeOver { kept_for_min_hold } = decide(acquired, expired) {
      // A document kept for its `minHoldMs` (a scheduled job's) is meant to
      // be taken over; any other expired one was left by a holder that
      // stopped refreshing: a crash, a stall, a lost connection.
      if kept_for_min_hold {
        tracing::debug!(target: "mongo_locks_native", action = %key_text(action), "took over a lock kept for its minHoldMs");
      } else {
        tracing::warn!(target: "mongo_locks_native", action = %key_text(action), "took over an expired lock");
      }
      Stats::bump(&self.stats.taken_over);
      now = self.server_now()?;
      (id, acquired) = self.insert(store, action, &now).await?;
    }
    if !acquired {
      Stats::bump(&self.stats.contended);
      return Ok(Attempt::Held);
    }
    let deadline = now.holder_deadline(self.config.ttl);
    let fencing_token = if req.fencing {
      match self.fence(store, id, action).await {
        Ok(Some(token)) => Some(token),
        // Our document vanished before the token was recorded: it was
        // taken over (we were that slow) or deleted by hand.
        Ok(None) => return Ok(Attempt::TooLate(self.too_late(action, &now, "its document was gone"))),
        Err(e) => {
          self.clean_up(id);
          return Err(e);
        }
      }
    } else {
      None
    };
    if Mono::now() >= deadline {
      self.clean_up(id);
      return Ok(Attempt::TooLate(self.too_late(action, &now, "its time was already up")));
    }
    let state = Arc::new(LockState::new(
      id,
      action,
      other_key,
      fencing_token,
      deadline,
      req.max_hold.map(|m| now.at.plus(m)),
      req.min_hold.map(|m| crate::clock::after(now.latest(), m)),
    ));
    self.held.lock().unwrap().insert(id, state.clone());
    if self.is_closed() {
      // close() ran while we inserted: do not leave a lock behind it (close
      // waits for this attempt before it shuts the client).
      self.held.lock().unwrap().remove(&id);
      state.unlock();
      store.delete(&[id]).await?;
      return Err(LockError::Closed);
    }
    Stats::bump(&self.stats.acquired);
    tracing::debug!(target: "mongo_locks_native", action = %state.action.text(), id = %id, "acquired");
    Ok(Attempt::Acquired(state))
  }

  /// Inserts a lock document (with a new `_id`, returned); on a failure the
  /// write may still have applied, so that document is removed in the
  /// background.
  async fn insert(self: &Arc<Self>, store: &Store, action: &Bson, now: &ServerNow) -> LockResult<(ObjectId, bool)> {
    let (id, res) = store.insert(action, now, self.config.ttl).await;
    match res {
      Ok(inserted) => Ok((id, inserted)),
      Err(e) => {
        self.clean_up(id);
        Err(e)
      }
    }
  }

  /// Removes document `id`, which we may have written but will not hold,
  /// in the background (close() waits for it). Only ever our own `_id`.
  pub(crate) fn clean_up(self: &Arc<Self>, id: ObjectId) {
    self.in_background(move |core| async move {
      match core.connected() {
        Some(store) => store.delete(&[id]).await.map(|_| ()),
        None => Ok(()),
      }
    });
  }

  /// Runs `work` in the background, in this manager's span, a failure
  /// logged and counted (close() waits for it).
  pub(crate) fn in_background<Fut>(self: &Arc<Self>, work: impl FnOnce(Arc<Core>) -> Fut)
  where
    Fut: Future<Output = LockResult<()>> + Send + 'static,
  {
    let flight = self.flights.enter();
    let work = work(self.clone());
    let core = self.clone();
    napi::bindgen_prelude::spawn(async move {
      let _flight = flight;
      let _ = core.traced(work).await;
    });
  }

  fn too_late(&self, action: &Bson, sent: &ServerNow, why: &str) -> LockError {
    let waited = Mono::now().since(sent.at);
    LockError::Server {
      message: format!(
        "mongo-locks-native: the server took {} ms to grant the lock on {:?}, and {why} (ttlMs {}); it was not handed out",
        waited.as_millis(),
        key_text(action),
        self.config.ttl.as_millis()
      ),
      code: None,
    }
  }

  /// Takes the next token for `action` while holding lock `id`, then checks
  /// the lock document is still ours. The token was taken while we held the
  /// lock, and holding periods do not overlap, so tokens follow the order
  /// of holders.
  async fn fence(&self, store: &Store, id: ObjectId, action: &Bson) -> LockResult<Option<i64>> {
    let token = store.next_fencing_token(action).await?;
    Ok(store.record_fencing_token(id, token).await?.then_some(token))
  }

  /// Takes all `actions`, in the given order (the caller sorts), all or
  /// nothing. `wait` is one budget for the whole set.
  pub async fn acquire_all(
    self: &Arc<Self>,
    actions: Vec<Bson>,
    req: LockRequest,
    cancel: Option<Arc<Cancel>>,
  ) -> LockResult<Option<Vec<Arc<LockState>>>> {
    let deadline = req.wait.map(|w| Instant::now() + w);
    let mut taken: Vec<Arc<LockState>> = Vec::with_capacity(actions.len());
    for action in actions {
      let wait = deadline.map(|d| d.saturating_duration_since(Instant::now()));
      let res = self.acquire(action, LockRequest { wait, ..req }, cancel.clone()).await;
      match res {
        Ok(Some(state)) => taken.push(state),
        other => {
          for state in taken.iter().rev() {
            let _ = self.release(state).await;
          }
          return other.map(|_| None);
        }
      }
    }
    Ok(Some(taken))
  }

  /// Whether `state` is held right now: its flag, and its deadline read on
  /// the monotonic clock at this instant. A lock found past its deadline is
  /// marked lost here and then (its signal aborts), whatever the background
  /// task has had a chance to do.
  pub fn check(&self, state: &Arc<LockState>) -> bool {
    if !state.is_flagged() {
      return false;
    }
    if state.overdue(Mono::now()) {
      self.mark_lost(state, Loss::Expired);
      return false;
    }
    true
  }

  /// Frees `state`: `true` if this call deleted its document. A lost lock's
  /// document, if still there, is ours (ids are never reused): removing it
  /// only frees the key sooner, and the answer stays `false`. A delete that
  /// failed is tried again by the next `free()`.
  pub async fn release(&self, state: &Arc<LockState>) -> LockResult<bool> {
    self.check(state);
    let was_held = state.unlock();
    if was_held {
      self.stats.hold.observe(Mono::now().since(state.acquired_at()));
    }
    self.held.lock().unwrap().remove(&state.id);
    if state.nothing_to_delete() || self.is_closed() {
      return Ok(false);
    }
    if let Some(until) = self.min_hold_left(state) {
      // `minHoldMs`: freed early, the key stays taken until `until` (the
      // document expires then, and takers remove it only after that).
      let kept = self.store().await?.expire_at(state.id, until).await?;
      state.set_nothing_to_delete();
      tracing::debug!(target: "mongo_locks_native", action = %state.action.text(), "freed, kept until its minHoldMs");
      return Ok(kept && was_held && !state.is_lost());
    }
    let freed = self.delete_document(state).await?;
    if was_held {
      tracing::debug!(target: "mongo_locks_native", action = %state.action.text(), "freed");
    }
    // In a batch that found some documents gone, not which: a lock not
    // known to be lost is taken to have been there (a document deleted
    // behind our back is otherwise noticed at the next refresh).
    Ok(freed != Freed::Gone && !state.is_lost())
  }

  /// Gives back a lock that was never handed out (a reader stepping back
  /// for a writer, a writer that gave up waiting for readers): deleted at
  /// once, whatever its `minHoldMs`, which is for locks a caller held.
  pub async fn withdraw(&self, state: &Arc<LockState>) -> LockResult<()> {
    state.unlock();
    self.held.lock().unwrap().remove(&state.id);
    if state.nothing_to_delete() || self.is_closed() {
      return Ok(());
    }
    self.delete_document(state).await.map(|_| ())
  }

  /// Gives back locks acquired for a caller that will never hold them (see
  /// `manager::run_call`): no longer held or counted at once, their
  /// documents deleted in the background (close() waits for that).
  pub fn give_back(self: &Arc<Self>, states: Vec<Arc<LockState>>) {
    // A closing manager frees every lock it still has, these included.
    if states.is_empty() || self.is_closed() {
      return;
    }
    for state in &states {
      state.unlock();
      self.held.lock().unwrap().remove(&state.id);
    }
    let flight = self.flights.enter();
    let core = self.clone();
    napi::bindgen_prelude::spawn(async move {
      let _flight = flight;
      for state in &states {
        let _ = core.traced(core.withdraw(state)).await;
      }
    });
  }

  /// Deletes `state`'s document, and wakes this process's waiters for its
  /// key unless it was gone already (then someone else's free or takeover
  /// woke them, or will). The tail of `release` and `withdraw`.
  async fn delete_document(&self, state: &LockState) -> LockResult<Freed> {
    let freed = self.store().await?.free(state.id).await?;
    state.set_nothing_to_delete();
    if freed != Freed::Gone {
      self.waiters.wake(&state.key());
    }
    Ok(freed)
  }

  /// The end of `state`'s `minHoldMs`, if it is still ahead in the
  /// server's time.
  fn min_hold_left(&self, state: &LockState) -> Option<mongodb::bson::DateTime> {
    let until = state.min_hold_until()?;
    let now = self.clock.now()?;
    (now.earliest() < until).then_some(until)
  }

  /// `lock.locked = false`: stops refreshing `state` and forgets it, leaving
  /// its document to expire (as `mongo-locks` does). Not a loss: no signal.
  pub fn abandon(&self, state: &Arc<LockState>) {
    self.held.lock().unwrap().remove(&state.id);
    if state.unlock() {
      state.set_nothing_to_delete();
      self.stats.hold.observe(Mono::now().since(state.acquired_at()));
      tracing::debug!(target: "mongo_locks_native", action = %state.action.text(), "abandoned (locked = false)");
    }
  }

  /// Takes `state` out of the refresh rounds before its document is
  /// changed by another update (a once-record's completion): later rounds
  /// leave it alone (it is no longer held), and this waits for the rounds
  /// that may still carry it. On a server that writes an update back as a
  /// whole document (FerretDB 1.x), a round landing after the other update
  /// would undo it. Not refreshed meanwhile, the lock keeps its deadline,
  /// and the wait ends there: `false` (the lock is lost) when the deadline
  /// came first. The other update must not be sent then: its document may
  /// have expired, and on such a server a takeover's conditional delete,
  /// which read it as expired, would remove it after the update landed.
  pub(crate) async fn leave_refreshes(&self, state: &Arc<LockState>) -> bool {
    self.held.lock().unwrap().remove(&state.id);
    let mark = self.rounds.mark();
    tokio::select! {
      _ = self.rounds.ended_before(mark) => {}
      _ = sleep(state.deadline().remaining()) => {}
    }
    self.check(state)
  }

  /// The end of a once-record's run (see `once::complete`): `stored`, the
  /// record is finished and no longer a lock (forgotten here, left in the
  /// collection, its local waiters woken to read it); else it was taken
  /// over or deleted, and the run's lock is lost.
  pub(crate) fn end_run(&self, state: &Arc<LockState>, stored: bool) {
    state.set_nothing_to_delete();
    if !stored {
      self.mark_lost(state, Loss::Gone);
      return;
    }
    self.held.lock().unwrap().remove(&state.id);
    if state.unlock() {
      self.stats.hold.observe(Mono::now().since(state.acquired_at()));
    }
    self.waiters.wake(&state.key());
  }

  /// `lock.refresh()`: pushes the expiry one ttl forward now.
  pub async fn refresh_one(&self, state: &Arc<LockState>) -> LockResult<bool> {
    if !self.check(state) {
      return Ok(false);
    }
    let store = self.store().await?;
    let now = self.server_now()?;
    let matched = store.refresh(&[state.id], &now, self.config.ttl).await?;
    self.stats.refresh.observe(Mono::now().since(now.at));
    Stats::add(&self.stats.refreshes, matched);
    if matched == 0 {
      state.set_nothing_to_delete();
      self.mark_lost(state, Loss::Gone);
    } else {
      state.extend(now.holder_deadline(self.config.ttl));
    }
    Ok(matched == 1 && self.check(state))
  }

  /// One background round: refresh the held locks (those under their
  /// `maxHoldMs`) with one command, however many they are (see
  /// `Store::refresh_held`); if fewer matched than are held, find out which
  /// are gone. The command is given up only once none of its locks can use
  /// it (each past its deadline as other rounds leave it, or no longer
  /// held), not at the operation timeout.
  pub async fn refresh_all(&self) -> LockResult<()> {
    // Counted in flight from before it reads which locks are held.
    let _round = self.rounds.enter();
    let now = Mono::now();
    let held: Vec<Arc<LockState>> =
      self.held_now().into_iter().filter(|s| s.wants_refresh(now) && self.check(s)).collect();
    if held.is_empty() {
      return Ok(());
    }
    let Some(store) = self.connected() else { return Ok(()) };
    let ids: Vec<ObjectId> = held.iter().map(|s| s.id).collect();
    let now = self.server_now()?;
    // Given up once no lock it carries can still use it: each is past its
    // deadline as it stands then (another round that landed meanwhile
    // moves the deadlines on), or no longer held.
    let too_late = async {
      while let Some(latest) = held.iter().filter(|s| s.is_flagged()).map(|s| s.deadline()).max() {
        if latest.remaining().is_zero() {
          break;
        }
        sleep(latest.remaining().min(DEADLINE_POLL)).await;
      }
    };
    let matched = match store.refresh_held(&ids, &now, self.config.ttl, too_late).await {
      Ok(matched) => matched,
      // Every lock it carried was freed while it waited (a burst of frees
      // on a busy server): it had nothing left to keep, so no failure to
      // report. A lock that passed its deadline instead keeps the error,
      // which says why no refresh got through.
      Err(_) if held.iter().all(|s| !s.is_flagged() && !s.is_lost()) => return Ok(()),
      Err(error) => return Err(error),
    };
    let took = Mono::now().since(now.at);
    self.stats.refresh.observe(took);
    Stats::bump(&self.stats.refresh_commands);
    Stats::add(&self.stats.refreshes, matched);
    self.note_round_trip(took);
    self.last_round_ms.store(took.as_millis() as u64, Ordering::Relaxed);
    if (matched as usize) == ids.len() {
      let deadline = now.holder_deadline(self.config.ttl);
      held.iter().for_each(|s| s.extend(deadline));
      return Ok(());
    }
    // Some are gone; a read on the primary tells which. The others are
    // not extended this round: a deadline moves only on an update known
    // to have matched each, and the next round will match them all.
    for batch in held.chunks(BATCH) {
      let ids: Vec<ObjectId> = batch.iter().map(|s| s.id).collect();
      let alive = store.existing(&ids).await?;
      for state in batch.iter().filter(|s| !alive.contains(&s.id)) {
        state.set_nothing_to_delete();
        self.mark_lost(state, Loss::Gone);
      }
    }
    Ok(())
  }

  /// How long the last refresh round that got its answer took.
  pub fn last_round_trip(&self) -> Duration {
    Duration::from_millis(self.last_round_ms.load(Ordering::Relaxed))
  }

  /// Says once (until it recovers) that refreshing takes more than a
  /// third of the ttl: held locks then survive only while each round
  /// lands before their deadline, with little room for one that hangs.
  fn note_round_trip(&self, took: Duration) {
    let slow = took * 3 > self.config.ttl;
    if self.slow_refresh.swap(slow, Ordering::AcqRel) != slow && slow {
      tracing::warn!(
        target: "mongo_locks_native",
        round_trip_ms = took.as_millis() as u64,
        ttl_ms = self.config.ttl.as_millis() as u64,
        "refreshing the held locks took {} ms, over a third of ttlMs ({} ms): they are kept only while refreshes land \
         within the ttl; a longer ttlMs gives a slow server more room",
        took.as_millis(),
        self.config.ttl.as_millis()
      );
    }
  }

  /// The lock document of `action` and the server's time now: what
  /// `locker.inspect(key)` reports.
  pub async fn inspect(&self, action: &Bson) -> LockResult<Option<(mongodb::bson::Document, ServerNow)>> {
    let store = self.store().await?;
    let found = store.find_lock(action).await?;
    Ok(found.map(|doc| (doc, self.clock.now().expect("read when connecting"))))
  }

  /// The earliest moment a held lock must be given up.
  pub fn next_deadline(&self) -> Option<Mono> {
    self.held.lock().unwrap().values().map(|s| s.deadline()).min()
  }

  /// Gives up every held lock whose deadline has passed.
  pub fn expire_overdue(&self) {
    for state in self.held_now() {
      self.check(&state);
    }
  }

  fn mark_lost(&self, state: &Arc<LockState>, why: Loss) {
    self.held.lock().unwrap().remove(&state.id);
    let reason = why.reason();
    if !state.lose(why) {
      return; // freed or already lost
    }
    Stats::bump(&self.stats.lost);
    self.stats.hold.observe(Mono::now().since(state.acquired_at()));
    let _enter = self.outlet.span().entered();
    tracing::error!(target: "mongo_locks_native", action = %state.action.text(), reason, "lock lost");
    self.outlet.lost(state, reason);
  }

  /// The synchronous half of `close()`: from now on no new work starts and
  /// waiting callers are woken to be told so.
  pub fn begin_close(&self) {
    if !self.closed.swap(true, Ordering::AcqRel) {
      let _ = self.stop.send(true);
    }
  }

  /// Stops the refresh, lets work in flight finish, frees every held lock,
  /// closes the connection. Every call resolves when the one close is done.
  /// Returns the ids it freed (their JS watchers are dropped by the caller).
  pub async fn close(&self) -> LockResult<Vec<ObjectId>> {
    self.begin_close();
    self.closing.get_or_init(|| self.shut_down()).await.clone()
  }

  async fn shut_down(&self) -> LockResult<Vec<ObjectId>> {
    // Attempts in flight remove what they inserted once they see `closed`;
    // each operation is bounded, so this wait is too.
    self.flights.idle(self.config.operation_timeout * 3).await;
    let held: Vec<Arc<LockState>> = self.held.lock().unwrap().drain().map(|(_, s)| s).collect();
    for state in &held {
      if state.unlock() {
        self.stats.hold.observe(Mono::now().since(state.acquired_at()));
      }
    }
    let ids: Vec<ObjectId> = held.iter().map(|s| s.id).collect();
    let Some(store) = self.link.connected() else { return Ok(ids) };
    // Freeing and closing the connections share one operation timeout: a
    // server that no longer answers costs close() one bound, not two.
    let limit = self.config.operation_timeout;
    let started = Instant::now();
    let delete_all = async {
      for batch in held.chunks(BATCH) {
        let batch_ids: Vec<ObjectId> = batch.iter().map(|s| s.id).collect();
        store.delete(&batch_ids).await?;
        batch.iter().for_each(|s| s.set_nothing_to_delete());
      }
      Ok(())
    };
    let freed = tokio::time::timeout(limit, delete_all).await.unwrap_or_else(|_| Err(self.bound().expired("freeing locks", limit)));
    store.shutdown(limit.saturating_sub(started.elapsed())).await;
    freed.map(|_| ids)
  }

  /// Re-reads the server clock, if connected.
  /// Not while round trips are too long for a sample to be kept (see
  /// `Store::sync_clock`): the reading would be refused anyway, and it takes
  /// four round trips, so past the operation timeout it would only cost a
  /// connection (closed with the reading abandoned) that the next refresh
  /// round must then open again. The clock's uncertainty grows meanwhile,
  /// on the safe side.
  pub async fn sync_clock(&self) -> LockResult<()> {
    match self.connected() {
      Some(store) if !store.too_slow_for_the_clock(self.last_round_trip()) => store.sync_clock(&self.clock).await,
      _ => Ok(()),
    }
  }
}

/// The background task's view of its manager (see `refresh`).
impl Duties for Core {
  fn next_deadline(&self) -> Option<Mono> {
    Core::next_deadline(self)
  }

  fn last_round_trip(&self) -> Duration {
    Core::last_round_trip(self)
  }

  // traced() logs and counts a failure; the next tick tries again.
  async fn refresh_round(self: Arc<Self>) {
    let _ = self.traced(self.refresh_all()).await;
  }

  async fn sync_clock_round(self: Arc<Self>) {
    let _ = self.traced(self.sync_clock()).await;
  }

  fn expire_overdue(&self) {
    Core::expire_overdue(self)
  }

  fn span(&self) -> tracing::Span {
    Core::span(self)
  }
}

/// Times the waiting of one `lock()` call, from its first pause to its end,
/// and counts the caller as waiting meanwhile.
struct WaitTimer<'a> {
  stats: &'a Stats,
  since: Option<(Mono, Waiting<'a>)>,
}

impl WaitTimer<'_> {
  fn start(&mut self) {
    if self.since.is_none() {
      self.since = Some((Mono::now(), Waiting::enter(&self.stats.waiting)));
    }
  }
}

impl Drop for WaitTimer<'_> {
  fn drop(&mut self) {
    if let Some((since, _)) = &self.since {
      self.stats.wait.observe(Mono::now().since(*since));
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  const MS: Duration = Duration::from_millis(1);

  #[test]
  fn an_insert_that_went_in_takes_the_lock() {
    assert_eq!(decide(true, None), Decision::Take);
  }

  #[test]
  fn a_live_holder_is_waited_for() {
    assert_eq!(decide(false, None), Decision::Wait);
  }

  #[test]
  fn an_expired_holder_is_taken_over_and_says_why_it_was_there() {
    assert_eq!(decide(false, Some(false)), Decision::TakeOver { kept_for_min_hold: false });
    assert_eq!(decide(false, Some(true)), Decision::TakeOver { kept_for_min_hold: true });
  }

  #[test]
  fn a_poller_tries_after_its_pause_and_a_sleeper_waits_to_be_woken() {
    assert_eq!(pause(Turn::Poll(40 * MS), false, 1_000 * MS), (40 * MS, true));
    assert_eq!(pause(Turn::Sleep(40 * MS), false, 1_000 * MS), (40 * MS, false));
  }

  #[test]
  fn an_urgent_claim_polls_often_and_no_pause_outlasts_the_wait() {
    assert_eq!(pause(Turn::Sleep(200 * MS), true, 1_000 * MS), (URGENT_POLL, false));
    assert_eq!(pause(Turn::Poll(5 * MS), true, 1_000 * MS), (5 * MS, true), "a shorter pause stays");
    assert_eq!(pause(Turn::Poll(200 * MS), false, 30 * MS), (30 * MS, true));
    assert_eq!(pause(Turn::Poll(200 * MS), true, 3 * MS), (3 * MS, true));
  }
}

//! The engine behind a `LockManager`: the connection, the registry of locks
//! this process holds, waiting, loss detection and close. Nothing here
//! touches JavaScript values; results go back through `manager.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::bson::{oid::ObjectId, Bson};
use tokio::sync::{watch, OnceCell};
use tokio::time::{sleep, Instant};
use tracing::Instrument;

use crate::clock::ServerClock;
use crate::config::{Config, LockRequest};
use crate::errors::{LockError, LockResult};
use crate::key::key_text;
use crate::lock::LockState;
use crate::logging::LogRoute;
use crate::refresh;
use crate::signals::{notify_lost, Cancel, LostSink};
use crate::stats::Stats;
use crate::store::{Store, BATCH};
use crate::wait::{backoff, jitter, Waiters};

/// Why a held lock stopped being ours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
  /// A refresh found the document gone (deleted, or taken over after it expired).
  Gone,
  /// Its expiry passed without a successful refresh.
  Expired,
}

pub struct Core {
  pub config: Config,
  store: OnceCell<Store>,
  held: Mutex<HashMap<ObjectId, Arc<LockState>>>,
  closed: AtomicBool,
  stop: watch::Sender<bool>,
  pub stats: Stats,
  pub clock: ServerClock,
  waiters: Waiters,
  lost: Option<Arc<LostSink>>,
  route: LogRoute,
}

impl Core {
  pub fn start(config: Config, route: LogRoute, lost: Option<Arc<LostSink>>) -> Arc<Core> {
    let (stop, stopped) = watch::channel(false);
    let span = route.span();
    let core = Arc::new(Core {
      config,
      store: OnceCell::new(),
      held: Mutex::new(HashMap::new()),
      closed: AtomicBool::new(false),
      stop,
      stats: Stats::default(),
      clock: ServerClock::default(),
      waiters: Waiters::default(),
      lost,
      route,
    });
    refresh::spawn(Arc::downgrade(&core), stopped, span);
    core
  }

  /// Runs `fut` in this manager's span (so its log events reach its logger)
  /// and counts and logs a server failure.
  pub async fn traced<T>(&self, fut: impl Future<Output = LockResult<T>>) -> LockResult<T> {
    let res = fut.instrument(self.route.span()).await;
    if let Err(LockError::Server { message, .. }) = &res {
      Stats::bump(&self.stats.errors);
      let _enter = self.route.span().entered();
      tracing::error!(target: "mongo_locks_native", "{message}");
    }
    res
  }

  pub fn span(&self) -> tracing::Span {
    self.route.span()
  }

  /// The connection, made on first use; a failed attempt is retried by the
  /// next call rather than remembered, so a server that comes up late works.
  pub async fn store(&self) -> LockResult<&Store> {
    if self.closed.load(Ordering::Acquire) {
      return Err(LockError::Closed);
    }
    self.store.get_or_try_init(|| Store::connect(&self.config, &self.clock)).await
  }

  pub fn connected(&self) -> Option<&Store> {
    self.store.get()
  }

  pub fn held_count(&self) -> usize {
    self.held.lock().unwrap().len()
  }

  fn held_now(&self) -> Vec<Arc<LockState>> {
    self.held.lock().unwrap().values().cloned().collect()
  }

  /// Takes `action`, waiting up to `req.wait` (jittered backoff between
  /// attempts, woken early when a local holder frees the key), unless
  /// `cancel` fires first.
  pub async fn acquire(
    self: &Arc<Self>,
    action: Bson,
    req: LockRequest,
    cancel: Option<Arc<Cancel>>,
  ) -> LockResult<Option<Arc<LockState>>> {
    let cancelled = || async {
      match &cancel {
        Some(c) => c.cancelled().await,
        None => std::future::pending().await,
      }
    };
    let store = tokio::select! {
      store = self.store() => store?,
      _ = cancelled() => return Err(LockError::Aborted),
    };
    let key = action.to_string();
    let deadline = req.wait.filter(|w| !w.is_zero()).map(|w| Instant::now() + w);
    let ticket = deadline.map(|_| self.waiters.enter(key.clone()));
    let mut attempt = 0;
    loop {
      // An attempt is never interrupted: a cancelled insert could leave a
      // lock behind that nobody frees. Cancellation acts between attempts.
      if cancel.as_ref().is_some_and(|c| c.is_fired()) {
        return Err(LockError::Aborted);
      }
      if self.closed.load(Ordering::Acquire) {
        return Err(LockError::Closed); // close() ran while we waited
      }
      if let Some(state) = self.try_once(store, &action, &key, &req).await? {
        return Ok(Some(state));
      }
      let (Some(deadline), Some(ticket)) = (deadline, &ticket) else { return Ok(None) };
      let now = Instant::now();
      if now >= deadline {
        return Ok(None);
      }
      let pause = backoff(attempt, jitter()).min(deadline - now);
      tokio::select! {
        _ = sleep(pause) => {}
        _ = ticket.notify.notified() => {}
        _ = cancelled() => return Err(LockError::Aborted),
      }
      attempt = attempt.saturating_add(1);
    }
  }

  /// One attempt: insert; if held, take it over only if it expired
  /// (conditional delete, then insert again); with fencing, take a token.
  async fn try_once(
    self: &Arc<Self>,
    store: &Store,
    action: &Bson,
    key: &str,
    req: &LockRequest,
  ) -> LockResult<Option<Arc<LockState>>> {
    let id = ObjectId::new();
    let ttl = self.config.ttl;
    let mut sent = Instant::now();
    let mut acquired = store.insert(id, action, self.clock.now(), ttl).await?;
    if !acquired && store.delete_expired(action, self.clock.now()).await? {
      tracing::warn!(target: "mongo_locks_native", action = %key_text(action), "took over an expired lock");
      Stats::bump(&self.stats.taken_over);
      sent = Instant::now();
      acquired = store.insert(id, action, self.clock.now(), ttl).await?;
    }
    if !acquired {
      Stats::bump(&self.stats.contended);
      return Ok(None);
    }
    let fencing_token = if req.fencing {
      match self.fence(store, id, action).await {
        Ok(Some(token)) => Some(token),
        Ok(None) => return Ok(None), // lost before the token was ours
        Err(e) => {
          let _ = store.delete(&[id]).await;
          return Err(e);
        }
      }
    } else {
      None
    };
    let state = Arc::new(LockState::new(
      id,
      action.clone(),
      key.to_string(),
      fencing_token,
      self.deadline_after(sent),
      req.max_hold.map(|m| sent + m),
    ));
    self.held.lock().unwrap().insert(id, state.clone());
    if self.closed.load(Ordering::Acquire) {
      // close() ran while we inserted: do not leave a lock behind it.
      self.held.lock().unwrap().remove(&id);
      state.unlock();
      store.delete(&[id]).await?;
      return Err(LockError::Closed);
    }
    Stats::bump(&self.stats.acquired);
    tracing::debug!(target: "mongo_locks_native", action = %key_text(&state.action), id = %id, "acquired");
    Ok(Some(state))
  }

  /// Takes the next token for `action` while holding lock `id`, then checks
  /// the lock document is still ours. The token was taken while we held the
  /// lock, and holding periods do not overlap, so tokens follow the order
  /// of holders.
  async fn fence(&self, store: &Store, id: ObjectId, action: &Bson) -> LockResult<Option<i64>> {
    let token = store.next_fencing_token(action).await?;
    Ok(store.record_fencing_token(id, token).await?.then_some(token))
  }

  /// When a lock whose expiry was written at local instant `sent` must be
  /// given up: a ttl later, less the clock estimate's error margin.
  fn deadline_after(&self, sent: Instant) -> Instant {
    sent + self.config.ttl.saturating_sub(self.clock.margin())
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

  pub async fn release(&self, state: &Arc<LockState>) -> LockResult<bool> {
    let lost = state.is_lost();
    if !state.unlock() && !lost {
      return Ok(false); // freed before
    }
    self.held.lock().unwrap().remove(&state.id);
    // A lost lock's document, if still there, is ours (ids are never
    // reused): removing it only frees the key sooner.
    let deleted = self.store().await?.delete(&[state.id]).await?;
    if lost {
      return Ok(false);
    }
    self.waiters.wake(&state.key);
    tracing::debug!(target: "mongo_locks_native", action = %key_text(&state.action), "freed");
    Ok(deleted == 1)
  }

  pub async fn refresh_one(&self, state: &Arc<LockState>) -> LockResult<bool> {
    if !state.is_locked() {
      return Ok(false);
    }
    let sent = Instant::now();
    let matched = self.store().await?.refresh(&[state.id], self.clock.now(), self.config.ttl).await?;
    Stats::add(&self.stats.refreshes, matched);
    if matched == 0 {
      self.mark_lost(state, Loss::Gone);
    } else {
      state.extend(self.deadline_after(sent));
    }
    Ok(matched == 1 && state.is_locked())
  }

  /// One background tick: refresh the held locks (those under their
  /// `maxHoldMs`), batch by batch; find out which are gone.
  pub async fn refresh_all(&self) -> LockResult<()> {
    let now = Instant::now();
    let held: Vec<Arc<LockState>> = self.held_now().into_iter().filter(|s| s.wants_refresh(now)).collect();
    if held.is_empty() {
      return Ok(());
    }
    let Some(store) = self.connected() else { return Ok(()) };
    for batch in held.chunks(BATCH) {
      let ids: Vec<ObjectId> = batch.iter().map(|s| s.id).collect();
      let sent = Instant::now();
      let matched = store.refresh(&ids, self.clock.now(), self.config.ttl).await?;
      Stats::bump(&self.stats.refresh_commands);
      Stats::add(&self.stats.refreshes, matched);
      let deadline = self.deadline_after(sent);
      if (matched as usize) == ids.len() {
        batch.iter().for_each(|s| s.extend(deadline));
        continue;
      }
      let alive = store.existing(&ids).await?;
      for state in batch {
        if alive.contains(&state.id) {
          state.extend(deadline);
        } else {
          self.mark_lost(state, Loss::Gone);
        }
      }
    }
    Ok(())
  }

  /// The earliest moment a held lock must be given up.
  pub fn next_deadline(&self) -> Option<Instant> {
    self.held.lock().unwrap().values().map(|s| s.deadline()).min()
  }

  /// Gives up every held lock whose deadline has passed.
  pub fn expire_overdue(&self) {
    let now = Instant::now();
    let overdue: Vec<Arc<LockState>> = self.held_now().into_iter().filter(|s| s.deadline() <= now).collect();
    for state in overdue {
      self.mark_lost(&state, Loss::Expired);
    }
  }

  fn mark_lost(&self, state: &Arc<LockState>, why: Loss) {
    self.held.lock().unwrap().remove(&state.id);
    if !state.lose() {
      return; // freed or already lost
    }
    Stats::bump(&self.stats.lost);
    let reason = match why {
      Loss::Gone => "its document is gone (deleted, or taken over after it expired)",
      Loss::Expired => "its expiry passed without a successful refresh",
    };
    let _enter = self.route.span().entered();
    tracing::error!(target: "mongo_locks_native", action = %key_text(&state.action), reason, "lock lost");
    if let Some(sink) = &self.lost {
      notify_lost(sink, state, reason);
    }
  }

  /// Stops the refresh, frees every held lock, closes the connection.
  /// Returns the ids it freed (their JS watchers are dropped by the caller).
  pub async fn close(&self) -> LockResult<Vec<ObjectId>> {
    if self.closed.swap(true, Ordering::AcqRel) {
      return Ok(Vec::new());
    }
    let _ = self.stop.send(true);
    let held: Vec<Arc<LockState>> = self.held.lock().unwrap().drain().map(|(_, s)| s).collect();
    held.iter().for_each(|s| {
      s.unlock();
    });
    let ids: Vec<ObjectId> = held.iter().map(|s| s.id).collect();
    let Some(store) = self.store.get() else { return Ok(ids) };
    let mut freed = Ok(());
    for batch in ids.chunks(BATCH) {
      if let Err(e) = store.delete(batch).await {
        freed = Err(e);
        break;
      }
    }
    store.shutdown().await;
    freed.map(|_| ids)
  }

  /// Re-reads the server clock, if connected.
  pub async fn sync_clock(&self) -> LockResult<()> {
    match self.connected() {
      Some(store) => store.sync_clock(&self.clock).await,
      None => Ok(()),
    }
  }

  pub fn refresh_period(&self) -> Duration {
    self.config.refresh
  }
}

//! Do it once (`locker.once(key, fn)`): the record of key `k` is the lock
//! document on `{ _once: k }`. While `fn` runs, the record is a held lock
//! like any other, taken by `Core::try_once` (refreshed by the same rounds,
//! taken over one ttl after a holder that died, fenced: each run gets a
//! higher token). When `fn` returns, one conditional update turns the lock
//! into a finished record (`state`, the stored outcome, a new `expiresAt`)
//! and renames its `holder` to `ranBy`, so no refresh round matches it
//! again; it then lives until that expiry, and every call that meets it
//! gets its outcome instead of a run. A run that fails is freed (deleted)
//! by the JavaScript side, so the next call runs again.
//!
//! Why this holds: a run starts only on an insert of the record, which the
//! unique index on `action` refuses while any record of the key exists; a
//! record is removed only once it certainly expired (`delete_expired`,
//! `sweep_records`) or by its own holder. So a run after a completion needs
//! the completed record to have expired, and a second run during a first
//! needs the first's record to have been taken over: its holder was lost
//! (and learns so through its signal), and the new run has a higher
//! fencing token. A completion is sent only while the run still holds its
//! record (before its deadline), and lands only on the holder's own `_id`
//! while it still carries `holder`: never on a record another run took over.

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{spec::BinarySubtype, Binary, Bson, DateTime, Document};

use crate::clock::{self, Mono};
use crate::engine::core::{Attempt, Claim, Core};
use crate::engine::held::LockState;
use crate::engine::stats::Stats;
use crate::engine::wait::Cancel;
use crate::errors::LockResult;
use crate::store::commands::Store;
use crate::store::config::LockRequest;

/// How often a manager that runs `once()` removes the expired records of
/// every key (servers without TTL indexes keep them otherwise).
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// The record's `action` for key `key` (already a stored key).
pub fn record_action(key: Bson) -> Bson {
  let mut action = Document::new();
  action.insert("_once", key);
  Bson::Document(action)
}

/// What `begin` came to.
pub enum Began {
  /// This call runs: it holds the record (with a fencing token).
  Run(Arc<LockState>),
  /// The key ran before and its record lives: the record, and whether its
  /// payload fingerprint matches this call's.
  Done { record: Document, matches: bool },
  /// Another run holds the record, still after the call's `waitMs`.
  Running,
}

/// One call's claim on a record: a run if the record is free (or certainly
/// expired), the finished record if there is one.
struct Once {
  action: Bson,
  /// The finished record met, which ends the wait.
  found: Option<Document>,
  /// The last attempt took over the record of a run whose holder died.
  took_over: bool,
}

/// A finished record (a run completed or a failure remembered)?
fn finished(record: &Document) -> bool {
  record.get_str("state").is_ok()
}

/// Whether `record` may still be live at server time `earliest`: only one
/// certainly past its expiry is taken over.
fn live(record: &Document, earliest: DateTime) -> bool {
  record.get_datetime("expiresAt").map_or(true, |e| *e >= earliest)
}

impl Claim for Once {
  fn wake_key(&self) -> String {
    self.action.to_string()
  }

  /// A replay costs one read: the record is read first, and only a free or
  /// expired key is tried with an insert. A live running record is waited
  /// for without asking whether it expired (the read says so).
  async fn attempt(&mut self, core: &Arc<Core>, store: &Store, _key: &str, req: &LockRequest) -> LockResult<Attempt> {
    let earliest = core.server_now()?.earliest();
    let seen = store.find_lock(&self.action).await?;
    let (expired, run_died) = match &seen {
      Some(record) if live(record, earliest) => {
        if finished(record) {
          self.found = seen;
        }
        return Ok(Attempt::Held);
      }
      // An expired running record is a run whose holder died; an expired
      // finished one is only a record past its ttlMs.
      Some(record) => (true, !finished(record)),
      None => (false, false),
    };
    let attempt = core.try_once(store, &self.action, None, req, || expired).await?;
    match &attempt {
      Attempt::Acquired(_) => self.took_over = run_died,
      // Someone inserted between our read and our insert: if their run
      // already finished, that is our answer.
      Attempt::Held => {
        let earliest = core.server_now()?.earliest();
        self.found = store.find_lock(&self.action).await?.filter(|r| finished(r) && live(r, earliest));
      }
      Attempt::TooLate(_) => {}
    }
    Ok(attempt)
  }

  fn settled(&self) -> bool {
    self.found.is_some()
  }
}

/// Claims the record of `action` (see `record_action`) for a call whose
/// payload fingerprint is `hash`: a run, the finished record, or `Running`
/// once `req.wait` is over.
pub async fn begin(core: &Arc<Core>, action: Bson, hash: Option<String>, req: LockRequest, cancel: Option<Arc<Cancel>>) -> LockResult<Began> {
  sweep_if_due(core);
  let mut claim = Once { action, found: None, took_over: false };
  let req = LockRequest { fencing: true, max_hold: None, min_hold: None, ..req };
  let acquired = core.claim(&mut claim, req, cancel).await?;
  let stats = &core.stats;
  Ok(match (acquired, claim.found) {
    (Some(state), _) => {
      Stats::bump(&stats.once_runs);
      if claim.took_over {
        Stats::bump(&stats.once_takeovers);
      }
      Began::Run(state)
    }
    (None, Some(record)) => {
      // A call without a payload, or a record stored without one, is not compared.
      let matches = match (record.get_str("payloadHash").ok(), hash.as_deref()) {
        (Some(stored), Some(ours)) => stored == ours,
        _ => true,
      };
      Stats::bump(if matches { &stats.once_replays } else { &stats.once_mismatches });
      Began::Done { record, matches }
    }
    (None, None) => Began::Running,
  })
}

/// How a run ended, as stored on its record.
pub struct Outcome {
  /// `fn` threw, and the caller asked to remember it.
  pub failed: bool,
  /// `{ value }` (omitted for `undefined`) or the failure's `{ name, message, code }`;
  /// stored as its BSON bytes.
  pub stored: Document,
  pub payload_hash: Option<String>,
  /// The size of `stored` as BSON, as lib/once.js measured it against
  /// `maxResultBytes` (shown by the CLI and `inspectOnce`).
  pub bytes: i64,
  /// How long the finished record lives.
  pub keep: Duration,
}

/// Ends the run that holds `state`: stores `outcome` on its record if the
/// record is still this run's. `false` (and the run's lock is lost) when it
/// is not: it was taken over after it expired, or deleted, or the run's
/// deadline passed before the outcome could be sent.
pub async fn complete(core: &Arc<Core>, state: &Arc<LockState>, outcome: Outcome) -> LockResult<bool> {
  let store = core.store().await?;
  // No refresh round may write the record back over the completion, and
  // a completion is sent only while the run still holds its record.
  if !core.leave_refreshes(state).await {
    state.set_nothing_to_delete();
    return Ok(false);
  }
  let now = core.server_now()?;
  let at = now.estimate();
  let mut fields = Document::new();
  fields.insert("state", if outcome.failed { "failed" } else { "completed" });
  // As BSON bytes, not as a subdocument: any value a result holds (nested
  // arrays, field names with dots) is kept exactly on any server (FerretDB
  // refuses nested arrays in documents).
  let bytes = mongodb::bson::to_vec(&outcome.stored)
    .map_err(|e| crate::errors::LockError::invalid(format!("mongo-locks-native: a once() outcome could not be stored: {e}")))?;
  let stored = Binary { subtype: BinarySubtype::Generic, bytes };
  fields.insert(if outcome.failed { "error" } else { "result" }, stored);
  if let Some(hash) = outcome.payload_hash {
    fields.insert("payloadHash", hash);
  }
  fields.insert("resultBytes", outcome.bytes);
  fields.insert("completedAt", at);
  fields.insert("expiresAt", clock::after(at, outcome.keep));
  // It lands only on our own record still carrying our holder: if another
  // call took it over meanwhile, nothing is stored.
  let stored = core.traced(store.complete(state.id, fields)).await?;
  core.end_run(state, stored);
  Ok(stored)
}

/// Removes the expired records of every key, in the background, at most
/// once per `SWEEP_EVERY` per manager.
fn sweep_if_due(core: &Arc<Core>) {
  let now = Mono::now();
  {
    let mut last = core.last_sweep.lock().unwrap();
    if last.is_some_and(|at| now.since(at) < SWEEP_EVERY) {
      return;
    }
    *last = Some(now);
  }
  core.in_background(|core| async move {
    let store = core.store().await?;
    let removed = store.sweep_records(core.server_now()?.earliest()).await?;
    if removed > 0 {
      tracing::debug!(target: "mongo_locks_native", removed, "removed expired once-records");
    }
    Ok(())
  });
}

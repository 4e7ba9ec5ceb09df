//! The native half of `locker.once(key, fn)`: claim a key's record, store a
//! run's outcome, read a record. The run itself (calling `fn`, storing its
//! result as BSON, the typed errors) is JavaScript, shared by the real
//! manager and the test locker (lib/once.js); the record's rules are in
//! `engine::once`.

use std::sync::Arc;
use std::time::Duration;

use mongodb::bson::{Bson, Document};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::engine::held::LockState;
use crate::engine::once::{self, Began, Outcome};
use crate::errors::{LockError, LockResult};
use crate::js::errors::{rejected, to_napi};
use crate::js::key::action_from_js;
use crate::js::lock::NativeLock;
use crate::js::manager::{Acquired, LockManager, Settled};
use crate::store::config::{whole_number, Holder};

impl Acquired for Began {
  fn states(&self) -> Vec<Arc<LockState>> {
    match self {
      Began::Run(state) => vec![state.clone()],
      _ => Vec::new(),
    }
  }
}

#[napi]
impl LockManager {
  /// Claims the once-record of `key` for a call whose payload fingerprint
  /// is `payloadHash`: a `Lock` on the record when this call runs (with a
  /// fencing token), the finished record when the key ran before, `null`
  /// when another run still holds it after `options.waitMs`. Used by
  /// `locker.once()` (lib/once.js).
  #[napi(js_name = "beginOnce", skip_typescript)]
  pub fn begin_once<'env>(
    &self,
    env: &'env Env,
    key: Unknown,
    payload_hash: Option<String>,
    options: Option<Unknown>,
  ) -> Result<PromiseRaw<'env, Settled<'env, Option<Either<NativeLock, OnceRecord>>>>> {
    let server_now = self.core.clone();
    self.run_call(
      env,
      action_from_js(&key).map(once::record_action),
      options.as_ref(),
      |core, action, req, cancel| async move { once::begin(&core, action, payload_hash, req, cancel).await },
      move |began, make_lock| match began {
        Began::Run(state) => Ok(Some(Either::A(make_lock(state)?))),
        Began::Done { record, matches } => Ok(Some(Either::B(OnceRecord::of(&record, matches, &server_now)))),
        Began::Running => Ok(None),
      },
    )
  }

  /// Stores how the run holding `lock` ended: `stored` is the canonical
  /// extended JSON of `{ value }` (or, `failed`, of `{ name, message,
  /// code }`), `bytes` its size as BSON, kept `keepMs`. Resolves `false`
  /// when the record was no longer this run's (taken over after it
  /// expired): nothing was stored, and the lock is lost.
  #[napi(js_name = "completeOnce", skip_typescript)]
  pub fn complete_once<'env>(
    &self,
    env: &'env Env,
    lock: &NativeLock,
    failed: bool,
    stored: String,
    payload_hash: Option<String>,
    bytes: f64,
    keep_ms: f64,
  ) -> Result<PromiseRaw<'env, bool>> {
    let stored = match stored_document(&stored) {
      Ok(doc) => doc,
      Err(e) => return rejected(env, &e),
    };
    let outcome =
      Outcome { failed, stored, payload_hash, bytes: bytes as i64, keep: Duration::from_millis(keep_ms.max(1.0) as u64) };
    let (core, state) = (self.core.clone(), lock.state().clone());
    crate::js::bridge::spawn(env, async move { Ok(once::complete(&core, &state, outcome).await) }, |env, res| {
      res.map_err(|e| to_napi(env, &e))
    })
  }

  /// The once-record of `key` as stored now, or `null`. Used by
  /// `locker.inspectOnce()`.
  #[napi(js_name = "inspectOnce", skip_typescript)]
  pub fn inspect_once<'env>(&self, env: &'env Env, key: Unknown) -> Result<PromiseRaw<'env, Option<OnceRecord>>> {
    let action = match action_from_js(&key) {
      Ok(action) => once::record_action(action),
      Err(e) => return rejected(env, &e),
    };
    let core = self.core.clone();
    crate::js::bridge::spawn(
      env,
      async move {
        let found = core.traced(core.inspect(&action)).await;
        Ok(found.map(|found| found.map(|(doc, _)| OnceRecord::of(&doc, true, &core))))
      },
      |env, res| res.map_err(|e| to_napi(env, &e)),
    )
  }
}

/// `{ value }` or a failure, as lib/once.js wrote it (canonical extended
/// JSON), as the BSON document stored.
fn stored_document(json: &str) -> LockResult<Document> {
  let bad = |why: String| LockError::invalid(format!("mongo-locks-native: a once() outcome could not be stored: {why}"));
  let value: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
  match Bson::try_from(value).map_err(|e| bad(e.to_string()))? {
    Bson::Document(doc) => Ok(doc),
    other => Err(bad(format!("expected a document, got {other}"))),
  }
}

/// A once-record as JavaScript reads it (lib/once.js turns it into the
/// result, the error, or what `inspectOnce` shows). Times are ms.
#[napi(object)]
pub struct OnceRecord {
  /// `running` (a run holds it), `completed` or `failed` (a failure remembered).
  pub state: String,
  /// The stored outcome as canonical extended JSON: `{ value }` (no `value`
  /// for `undefined`) or `{ name, message, code }`.
  pub stored: Option<String>,
  /// Whether its payload fingerprint matches the call's (`true` when either has none).
  pub matches: bool,
  pub payload_hash: Option<String>,
  /// The stored outcome's size as BSON.
  pub result_bytes: Option<f64>,
  pub fencing_token: Option<i64>,
  /// Who runs it, or who ran it.
  pub holder: Option<Holder>,
  pub created_at_ms: Option<f64>,
  pub completed_at_ms: Option<f64>,
  pub expires_at_ms: Option<f64>,
  /// The server's time now, by this manager's estimate.
  pub server_time_ms: Option<f64>,
}

impl OnceRecord {
  fn of(doc: &Document, matches: bool, core: &crate::engine::core::Core) -> Self {
    let date = |name: &str| doc.get_datetime(name).ok().map(|d| d.timestamp_millis() as f64);
    let who = doc.get_document("holder").or_else(|_| doc.get_document("ranBy")).ok();
    let stored = doc.get_binary_generic("result").or_else(|_| doc.get_binary_generic("error")).ok();
    let stored = stored.and_then(|bytes| mongodb::bson::from_slice::<Document>(bytes).ok());
    OnceRecord {
      state: doc.get_str("state").unwrap_or("running").to_string(),
      stored: stored.map(|d| Bson::Document(d).into_canonical_extjson().to_string()),
      matches,
      payload_hash: doc.get_str("payloadHash").ok().map(str::to_string),
      result_bytes: whole_number(doc, "resultBytes").map(|n| n as f64),
      fencing_token: whole_number(doc, "fencingToken"),
      holder: who.map(Holder::read),
      created_at_ms: date("createdAt"),
      completed_at_ms: date("completedAt"),
      expires_at_ms: date("expiresAt"),
      server_time_ms: core.clock.now().map(|now| now.estimate_ms as f64),
    }
  }
}

//! Manager settings: defaults, reading them from a JS options object, and
//! checking them, with errors that name the bad value and what was expected.

use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::ValueType;

use crate::store::connection::ClientSettings;
use crate::js::lock::Holder;
use crate::errors::{LockError, LockResult};
use crate::js::values::describe;

/// `mongo-locks` keeps a lock 60 s past its last refresh…
pub const DEFAULT_TTL_MS: u64 = 60_000;
/// …and refreshes it every 10 s.
pub const DEFAULT_REFRESH_MS: u64 = 10_000;
/// The longest one server operation may take, from sending it to its reply
/// (server selection included), unless `operationTimeoutMs` says otherwise.
pub const DEFAULT_OPERATION_TIMEOUT_MS: u64 = 10_000;
/// The collection `mongo-locks` users pass, by convention.
pub const DEFAULT_COLLECTION: &str = "mongo-locks";

/// Everything a manager needs to know, checked.
#[derive(Debug, Clone)]
pub struct Config {
  pub uri: String,
  pub database: String,
  pub collection: String,
  pub ttl: Duration,
  pub refresh: Duration,
  /// How long an operation waits for a reachable server; `None` keeps the
  /// URI's `serverSelectionTimeoutMS` or the driver's 30 s.
  pub server_selection_timeout: Option<Duration>,
  /// The bound on every server operation (and the `wtimeout` of majority
  /// writes): a server that accepts connections but never answers cannot
  /// leave a call pending.
  pub operation_timeout: Duration,
  pub write_concern: WriteConcernChoice,
  /// The application's client settings, laid over the URL's (see `connection`).
  pub client: Option<ClientSettings>,
  /// Where MONGODB-AWS credentials come from (JavaScript; see `aws`).
  pub aws: Option<crate::js::aws::FromJs>,
  /// Who this manager is, as recorded in its lock documents.
  pub holder: Holder,
}

/// Which write concern lock writes use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WriteConcernChoice {
  /// `majority` on replica sets and sharded clusters, the server's default
  /// on a standalone server (where majority means the one server anyway).
  Auto,
  /// Always `w: "majority"`.
  Majority,
  /// Whatever the connection string or the server default says.
  Default,
}

/// Options as read from JS, before defaults.
#[derive(Debug, Default, Clone)]
pub struct RawOptions {
  pub uri: Option<String>,
  pub database: Option<String>,
  pub collection: Option<String>,
  pub ttl_ms: Option<u64>,
  pub refresh_ms: Option<u64>,
  pub server_selection_timeout_ms: Option<u64>,
  pub operation_timeout_ms: Option<u64>,
  pub write_concern: Option<WriteConcernChoice>,
  pub app_name: Option<String>,
}

/// The options `new LockManager(collection, options)` takes.
pub const CONSTRUCTOR_OPTIONS: &[&str] =
  &["uri", "ttlMs", "refreshMs", "serverSelectionTimeoutMs", "operationTimeoutMs", "writeConcern", "appName", "logger"];
/// The options `LockManager.connect(uri, options)` takes.
pub const CONNECT_OPTIONS: &[&str] = &[
  "database",
  "collection",
  "ttlMs",
  "refreshMs",
  "serverSelectionTimeoutMs",
  "operationTimeoutMs",
  "writeConcern",
  "appName",
  "logger",
];

/// Reads an options object, refusing unknown names and wrong types.
pub fn read_options(value: Option<&Unknown>, allowed: &[&str]) -> LockResult<RawOptions> {
  let mut out = RawOptions::default();
  each_option(value, allowed, "option", |name, item| {
    match name {
      "uri" => out.uri = Some(string_option(name, item)?),
      "database" => out.database = Some(string_option(name, item)?),
      "collection" => out.collection = Some(string_option(name, item)?),
      "ttlMs" => out.ttl_ms = Some(ms_option(name, item, 1)?),
      "refreshMs" => out.refresh_ms = Some(ms_option(name, item, 1)?),
      "serverSelectionTimeoutMs" => out.server_selection_timeout_ms = Some(ms_option(name, item, 1)?),
      "operationTimeoutMs" => out.operation_timeout_ms = Some(ms_option(name, item, 1)?),
      "writeConcern" => out.write_concern = Some(write_concern_option(item)?),
      "appName" => out.app_name = Some(string_option(name, item)?),
      "logger" => {} // a JS object, read by the manager (see logging.rs)
      _ => unreachable!("checked against the allowed list"),
    }
    Ok(())
  })?;
  Ok(out)
}

/// Calls `read(name, value)` for each option set in `value` (undefined
/// counts as unset), after refusing names not in `allowed`.
fn each_option(
  value: Option<&Unknown>,
  allowed: &[&str],
  kind: &str,
  mut read: impl FnMut(&str, &Unknown) -> LockResult<()>,
) -> LockResult<()> {
  let Some(obj) = options_object(value)? else { return Ok(()) };
  for name in Object::keys(&obj).map_err(|e| LockError::invalid(e.reason))? {
    if !allowed.contains(&name.as_str()) {
      return Err(LockError::invalid(format!(
        "mongo-locks-native: unknown {kind} {name:?}; expected one of {}",
        allowed.join(", ")
      )));
    }
    let item: Unknown = obj.get_named_property(&name).map_err(|e| LockError::invalid(e.reason))?;
    if !matches!(item.get_type(), Ok(ValueType::Undefined)) {
      read(&name, &item)?;
    }
  }
  Ok(())
}

fn write_concern_option(value: &Unknown) -> LockResult<WriteConcernChoice> {
  let s = if value.get_type().ok() == Some(ValueType::String) { unsafe { value.cast::<String>() }.ok() } else { None };
  match s.as_deref() {
    Some("auto") => Ok(WriteConcernChoice::Auto),
    Some("majority") => Ok(WriteConcernChoice::Majority),
    Some("default") => Ok(WriteConcernChoice::Default),
    _ => Err(LockError::invalid(format!(
      "mongo-locks-native: options.writeConcern must be \"auto\", \"majority\" or \"default\", got {}",
      describe(value)
    ))),
  }
}

fn string_option(name: &str, value: &Unknown) -> LockResult<String> {
  let bad = || {
    LockError::invalid(format!(
      "mongo-locks-native: options.{name} must be a non-empty string, got {}",
      describe(value)
    ))
  };
  if value.get_type().map_err(|_| bad())? != ValueType::String {
    return Err(bad());
  }
  let s: String = unsafe { value.cast() }.map_err(|_| bad())?;
  if s.is_empty() {
    return Err(bad());
  }
  Ok(s)
}

/// A whole number of milliseconds from `min` (0 or 1) to 2147483647.
fn ms_option(name: &str, value: &Unknown, min: u64) -> LockResult<u64> {
  let bad = || {
    LockError::invalid(format!(
      "mongo-locks-native: options.{name} must be a whole number of milliseconds from {min} to 2147483647, got {}",
      describe(value)
    ))
  };
  if value.get_type().map_err(|_| bad())? != ValueType::Number {
    return Err(bad());
  }
  let n: f64 = unsafe { value.cast() }.map_err(|_| bad())?;
  if n == 0.0 && min == 0 {
    return Ok(0);
  }
  checked_ms(n).ok_or_else(bad)
}

/// What one `lock()` call asks for, besides the key.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct LockRequest {
  /// Keep trying this long; `None`: one attempt.
  pub wait: Option<Duration>,
  /// Stop refreshing after this long, letting the lock expire.
  pub max_hold: Option<Duration>,
  /// Hand out a fencing token with the lock.
  pub fencing: bool,
  /// Keep the key taken at least this long after acquisition, even if
  /// freed sooner (ShedLock's "lock at least for").
  pub min_hold: Option<Duration>,
}

/// The options `lock(key, options)` takes; `signal` and `onLost` are JS
/// objects, read by the manager.
pub const LOCK_OPTIONS: &[&str] = &["waitMs", "signal", "onLost", "maxHoldMs", "fencing", "minHoldMs"];

/// Reads the plain-value options of `lock(key, options)`.
pub fn read_lock_options(value: Option<&Unknown>) -> LockResult<LockRequest> {
  let mut out = LockRequest::default();
  each_option(value, LOCK_OPTIONS, "lock option", |name, item| {
    match name {
      // 0 is allowed for waitMs: one attempt, like no waitMs.
      "waitMs" => out.wait = Some(Duration::from_millis(ms_option(name, item, 0)?)),
      "maxHoldMs" => out.max_hold = Some(Duration::from_millis(ms_option(name, item, 1)?)),
      "minHoldMs" => out.min_hold = Some(Duration::from_millis(ms_option(name, item, 1)?)),
      "fencing" => {
        if item.get_type().ok() != Some(ValueType::Boolean) {
          return Err(LockError::invalid(format!(
            "mongo-locks-native: options.fencing must be true or false, got {}",
            describe(item)
          )));
        }
        out.fencing = unsafe { item.cast::<bool>() }.unwrap_or(false);
      }
      _ => {} // signal, onLost: checked by the manager
    }
    Ok(())
  })?;
  Ok(out)
}

/// `value` as an options object: `None` for undefined/null, a TypeError
/// for anything but a plain object.
pub fn options_object<'env>(value: Option<&Unknown<'env>>) -> LockResult<Option<Object<'env>>> {
  let Some(value) = value else { return Ok(None) };
  match value.get_type() {
    Ok(ValueType::Undefined) | Ok(ValueType::Null) => Ok(None),
    Ok(ValueType::Object) if !value.is_array().unwrap_or(false) => {
      Ok(Some(unsafe { value.cast() }.map_err(|e| LockError::invalid(e.reason))?))
    }
    _ => Err(LockError::invalid(format!(
      "mongo-locks-native: options must be an object, got {}",
      describe(value)
    ))),
  }
}

/// A whole, positive number of milliseconds that fits a JS timer.
pub fn checked_ms(n: f64) -> Option<u64> {
  if n.is_finite() && n.fract() == 0.0 && n >= 1.0 && n <= i32::MAX as f64 {
    Some(n as u64)
  } else {
    None
  }
}

/// A cheap syntax check of a connection string, so that a typo fails at
/// once and synchronously; the driver's full parse happens when connecting.
pub fn check_uri(uri: &str) -> LockResult<()> {
  let rest = uri
    .strip_prefix("mongodb://")
    .or_else(|| uri.strip_prefix("mongodb+srv://"));
  let host_part = rest.map(|r| r.split(['/', '?']).next().unwrap_or(""));
  let host = host_part.map(|h| h.rsplit('@').next().unwrap_or(""));
  match host {
    Some(h) if !h.is_empty() => Ok(()),
    _ => Err(LockError::invalid(format!(
      "mongo-locks-native: malformed MongoDB connection string {:?}; expected mongodb://host[:port]/… or mongodb+srv://host/…",
      crate::js::values::truncate(redact(uri), 120)
    ))),
  }
}

/// The connection string without its password, for messages and logs.
pub fn redact(uri: &str) -> String {
  let Some(scheme_end) = uri.find("://") else { return uri.to_string() };
  let (scheme, rest) = uri.split_at(scheme_end + 3);
  let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
  let (authority, tail) = rest.split_at(authority_end);
  match authority.rfind('@') {
    Some(at) => {
      let userinfo = &authority[..at];
      let user = userinfo.split(':').next().unwrap_or("");
      format!("{scheme}{user}:****@{}{tail}", &authority[at + 1..])
    }
    None => uri.to_string(),
  }
}

impl Config {
  /// Applies defaults and checks that the settings make sense together.
  pub fn build(uri: String, database: String, collection: String, raw: &RawOptions) -> LockResult<Config> {
    check_uri(&uri)?;
    let ttl_ms = raw.ttl_ms.unwrap_or(DEFAULT_TTL_MS);
    let refresh_ms = raw.refresh_ms.unwrap_or(if raw.ttl_ms.is_some() {
      (ttl_ms / 6).max(1).min(DEFAULT_REFRESH_MS)
    } else {
      DEFAULT_REFRESH_MS
    });
    if refresh_ms >= ttl_ms {
      return Err(LockError::invalid(format!(
        "mongo-locks-native: options.refreshMs ({refresh_ms}) must be less than options.ttlMs ({ttl_ms}), \
         or locks would expire between refreshes"
      )));
    }
    Ok(Config {
      uri,
      database,
      collection,
      ttl: Duration::from_millis(ttl_ms),
      refresh: Duration::from_millis(refresh_ms),
      server_selection_timeout: raw.server_selection_timeout_ms.map(Duration::from_millis),
      operation_timeout: Duration::from_millis(raw.operation_timeout_ms.unwrap_or(DEFAULT_OPERATION_TIMEOUT_MS)),
      write_concern: raw.write_concern.unwrap_or(WriteConcernChoice::Auto),
      client: None,
      aws: None,
      holder: Holder {
        host: "unknown".to_string(),
        pid: std::process::id(),
        app: raw.app_name.clone().unwrap_or_else(|| "unknown".to_string()),
        manager: mongodb::bson::oid::ObjectId::new().to_hex(),
      },
    })
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn raw() -> RawOptions {
    RawOptions::default()
  }

  #[test]
  fn defaults_match_mongo_locks() {
    let c = Config::build("mongodb://h".into(), "db".into(), "c".into(), &raw()).unwrap();
    assert_eq!(c.ttl, Duration::from_secs(60));
    assert_eq!(c.refresh, Duration::from_secs(10));
  }

  #[test]
  fn a_short_ttl_gets_a_proportionate_refresh() {
    let r = RawOptions { ttl_ms: Some(1200), ..raw() };
    let c = Config::build("mongodb://h".into(), "db".into(), "c".into(), &r).unwrap();
    assert_eq!(c.refresh, Duration::from_millis(200));
  }

  #[test]
  fn refresh_must_be_below_ttl() {
    let r = RawOptions { ttl_ms: Some(1000), refresh_ms: Some(1000), ..raw() };
    let err = Config::build("mongodb://h".into(), "db".into(), "c".into(), &r).unwrap_err();
    assert!(err.message().contains("refreshMs (1000)"));
  }

  #[test]
  fn milliseconds_must_be_whole_and_positive() {
    assert_eq!(checked_ms(5.0), Some(5));
    assert_eq!(checked_ms(0.0), None);
    assert_eq!(checked_ms(1.5), None);
    assert_eq!(checked_ms(-3.0), None);
    assert_eq!(checked_ms(f64::NAN), None);
  }

  #[test]
  fn uri_syntax() {
    assert!(check_uri("mongodb://localhost:27017/db").is_ok());
    assert!(check_uri("mongodb+srv://cluster.example.net").is_ok());
    assert!(check_uri("mongodb://user:pw@h1,h2/?replicaSet=rs").is_ok());
    assert!(check_uri("http://localhost").is_err());
    assert!(check_uri("mongodb://").is_err());
    assert!(check_uri("mongodb://user:pw@/db").is_err());
  }

  #[test]
  fn redact_hides_the_password_only() {
    assert_eq!(redact("mongodb://u:secret@h:1/db?x=1"), "mongodb://u:****@h:1/db?x=1");
    assert_eq!(redact("mongodb://h:1/db"), "mongodb://h:1/db");
    let err = check_uri("mongodb://u:secret@").unwrap_err().message();
    assert!(!err.contains("secret"), "{err}");
  }
}

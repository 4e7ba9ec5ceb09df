//! Manager settings: defaults, and checking them, with errors that name the
//! bad value and what was expected (reading them from a JS options object
//! is `js::options`).

use std::time::Duration;

use napi_derive::napi;

use crate::store::connection::ClientSettings;
use crate::errors::{LockError, LockResult};

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
  pub aws: Option<crate::store::aws::AwsLookup>,
  /// Who this manager is, as recorded in its lock documents.
  pub holder: Holder,
}

/// Who holds a lock: recorded in every lock document this package writes
/// (as `holder`, beside the fields `mongo-locks` reads), so that "who holds
/// this key?" has an answer. Documents of `mongo-locks` clients have none.
#[napi(object)]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Holder {
  /// The machine's host name.
  pub host: String,
  /// The process id.
  pub pid: u32,
  /// The application: the manager's `appName` option, else the connection's
  /// `appName`, else the name in the application's package.json.
  pub app: String,
  /// The id of the `LockManager` (hex), unique per manager.
  pub manager: String,
}

impl Holder {
  /// A stored `holder` (or a once-record's `ranBy`), with `unknown` for
  /// what it lacks.
  pub fn read(h: &mongodb::bson::Document) -> Holder {
    Holder {
      host: h.get_str("host").unwrap_or("unknown").to_string(),
      pid: whole_number(h, "pid").unwrap_or(0) as u32,
      app: h.get_str("app").unwrap_or("unknown").to_string(),
      manager: h.get_str("manager").unwrap_or("").to_string(),
    }
  }
}

/// A stored whole number, whichever BSON number type holds it.
pub fn whole_number(d: &mongodb::bson::Document, name: &str) -> Option<i64> {
  use mongodb::bson::Bson;
  match d.get(name) {
    Some(Bson::Int32(n)) => Some(*n as i64),
    Some(Bson::Int64(n)) => Some(*n),
    Some(Bson::Double(n)) => Some(*n as i64),
    _ => None,
  }
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
      crate::errors::truncate(redact(uri), 120)
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

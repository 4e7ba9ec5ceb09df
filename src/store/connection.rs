//! Connecting where the application's Node client connects.
//!
//! The connection string alone does not say how a backend reaches its
//! server: credentials, TLS files and CAs, `retryWrites: false`, a server API
//! version… are often client options. lib/manager.js reads the parsed options of
//! the Node driver's client (with `lib/client-settings.js`) and hands them here as
//! `ClientSettings`; we lay them over the options parsed from the URL (which
//! still gives the hosts, SRV and the rest). Whatever the application's read
//! preference, lock operations read from the primary (see `store`).
//!
//! rustls reads CAs and client keys from files only, so the CA bundle and the
//! client certificate are written to a private temporary folder (mode 0700,
//! files 0600), removed when the store is closed or dropped.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use mongodb::bson::Document;
use mongodb::options::{
  AuthMechanism, ClientOptions, Compressor, Credential, ServerAddress, ServerApi, ServerApiVersion, Tls, TlsOptions,
};
use napi_derive::napi;

use crate::errors::{LockError, LockResult, CERTIFICATE_REQUIRED, UNKNOWN_ISSUER};

/// The settings of the application's Node client that the connection string
/// may not carry. Every field is optional: absent means "as the URL says".
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
  pub hosts: Option<Vec<String>>,
  pub replica_set: Option<String>,
  pub direct_connection: Option<bool>,
  pub load_balanced: Option<bool>,
  pub username: Option<String>,
  pub password: Option<String>,
  pub auth_source: Option<String>,
  /// `SCRAM-SHA-1`, `SCRAM-SHA-256`, `MONGODB-X509`, `PLAIN`, `MONGODB-AWS`; absent: negotiated.
  pub auth_mechanism: Option<String>,
  pub auth_mechanism_properties: Option<std::collections::HashMap<String, String>>,
  pub tls: Option<bool>,
  /// The CAs to trust, PEM: what the Node client would trust (given CAs, or
  /// Node's default set with NODE_EXTRA_CA_CERTS and TRUSTSTORE_* added).
  pub ca_pem: Option<String>,
  /// Where `ca_pem` came from, for messages and `settings` (no secrets).
  pub ca_source: Option<String>,
  /// Client certificate and key, PEM, concatenated (`tlsCertificateKeyFile`'s form).
  pub cert_key_pem: Option<String>,
  pub cert_key_password: Option<String>,
  /// Skips every check of the server's certificate, the hostname included
  /// (rustls has no hostname-only switch: lib/client-settings.js refuses
  /// `tlsAllowInvalidHostnames` on its own).
  pub tls_allow_invalid_certificates: Option<bool>,
  /// The client has a `secureContext`, which cannot be read: its CAs were
  /// derived (see `ca_source`), and a client certificate in it is unseen.
  pub secure_context: Option<bool>,
  pub retry_writes: Option<bool>,
  pub retry_reads: Option<bool>,
  pub compressors: Option<Vec<String>>,
  pub app_name: Option<String>,
  pub server_api_version: Option<String>,
  pub server_api_strict: Option<bool>,
  pub server_api_deprecation_errors: Option<bool>,
  pub max_pool_size: Option<u32>,
  pub min_pool_size: Option<u32>,
  pub max_idle_time_ms: Option<u32>,
  pub connect_timeout_ms: Option<u32>,
  pub server_selection_timeout_ms: Option<u32>,
  pub heartbeat_frequency_ms: Option<u32>,
  pub local_threshold_ms: Option<u32>,
}

/// The connection as the manager's client will make it, without secrets:
/// `locker.settings`.
#[napi(object)]
#[derive(Debug, Clone, Default)]
pub struct EffectiveSettings {
  pub hosts: Vec<String>,
  pub replica_set: Option<String>,
  pub direct_connection: Option<bool>,
  pub load_balanced: Option<bool>,
  pub username: Option<String>,
  pub auth_source: Option<String>,
  pub auth_mechanism: Option<String>,
  pub tls: bool,
  /// Where the trusted CAs come from, and how many: e.g. "the client's ca option (1 certificate)".
  pub tls_ca: Option<String>,
  pub tls_client_certificate: bool,
  pub tls_allow_invalid_certificates: Option<bool>,
  pub retry_writes: Option<bool>,
  pub retry_reads: Option<bool>,
  pub compressors: Vec<String>,
  pub app_name: Option<String>,
  pub server_api_version: Option<String>,
  pub max_pool_size: Option<u32>,
  pub min_pool_size: Option<u32>,
  pub max_idle_time_ms: Option<f64>,
  pub connect_timeout_ms: Option<f64>,
  pub server_selection_timeout_ms: Option<f64>,
  /// Always `primary`: lock operations decide on what they read.
  pub read_preference: String,
}

/// Files written for rustls; removed on drop.
#[derive(Default)]
pub struct TlsFiles {
  dir: Option<PathBuf>,
  /// Writes nothing: the paths only say that there would be a file.
  dry: bool,
}

impl Drop for TlsFiles {
  fn drop(&mut self) {
    if let Some(dir) = self.dir.take() {
      let _ = std::fs::remove_dir_all(dir);
    }
  }
}

impl TlsFiles {
  /// For planning: `write` writes nothing.
  pub fn dry() -> TlsFiles {
    TlsFiles { dir: None, dry: true }
  }

  /// Writes `contents` as `name` in our private folder (made on first use).
  fn write(&mut self, name: &str, contents: &str) -> LockResult<PathBuf> {
    if self.dry {
      return Ok(PathBuf::from(name));
    }
    let dir = match &self.dir {
      Some(dir) => dir.clone(),
      None => {
        let dir = private_dir()?;
        self.dir = Some(dir.clone());
        dir
      }
    };
    let path = dir.join(name);
    write_private(&path, contents).map_err(|e| io_error("writing a TLS file", &path, &e))?;
    Ok(path)
  }
}

fn private_dir() -> LockResult<PathBuf> {
  let base = std::env::temp_dir();
  for attempt in 0..16u32 {
    let name = format!("mongo-locks-native-{}-{:x}", std::process::id(), crate::random::jitter().to_bits() ^ attempt as u64);
    let dir = base.join(name);
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(&dir) {
      Ok(()) => return Ok(dir),
      Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
      Err(e) => return Err(io_error("creating a private folder for TLS files", &dir, &e)),
    }
  }
  Err(LockError::invalid("mongo-locks-native: could not create a private folder for TLS files"))
}

fn write_private(path: &PathBuf, contents: &str) -> std::io::Result<()> {
  use std::io::Write;
  let mut options = std::fs::OpenOptions::new();
  options.write(true).create_new(true);
  #[cfg(unix)]
  std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
  options.open(path)?.write_all(contents.as_bytes())
}

fn io_error(doing: &str, path: &std::path::Path, e: &std::io::Error) -> LockError {
  LockError::Server { message: format!("mongo-locks-native: {doing} ({}) failed: {e}", path.display()), code: None }
}

/// Lays `settings` over `options` (parsed from the URL). Returns the files
/// written for TLS, to keep until the client is closed.
pub fn apply(settings: &ClientSettings, options: &mut ClientOptions, mut files: TlsFiles) -> LockResult<TlsFiles> {
  let s = settings;
  if let Some(hosts) = &s.hosts {
    let parsed: Result<Vec<ServerAddress>, _> = hosts.iter().map(|h| ServerAddress::parse(h)).collect();
    options.hosts = parsed.map_err(|e| LockError::invalid(format!("mongo-locks-native: a host of the client is not valid: {e}")))?;
  }
  set(&mut options.repl_set_name, &s.replica_set);
  set(&mut options.direct_connection, &s.direct_connection);
  set(&mut options.load_balanced, &s.load_balanced);
  if s.username.is_some() || s.auth_mechanism.is_some() {
    let mechanism = match s.auth_mechanism.as_deref() {
      None | Some("DEFAULT") => None,
      Some(name) => Some(AuthMechanism::from_str(name).map_err(|e| {
        LockError::invalid(format!("mongo-locks-native: the client's authMechanism {name:?} cannot be used here: {e}"))
      })?),
    };
    let properties = s.auth_mechanism_properties.as_ref().filter(|p| !p.is_empty()).map(|p| {
      p.iter().map(|(k, v)| (k.clone(), mongodb::bson::Bson::String(v.clone()))).collect::<Document>()
    });
    let mut credential = Credential::default();
    credential.username = s.username.clone();
    credential.password = s.password.clone();
    credential.source = s.auth_source.clone();
    credential.mechanism = mechanism;
    credential.mechanism_properties = properties;
    options.credential = Some(credential);
  }
  let tls_wanted = s.tls.unwrap_or(matches!(options.tls, Some(Tls::Enabled(_))));
  if tls_wanted {
    let mut tls = match options.tls.take() {
      Some(Tls::Enabled(existing)) => existing,
      _ => TlsOptions::default(),
    };
    if let Some(ca) = &s.ca_pem {
      tls.ca_file_path = Some(files.write("ca.pem", ca)?);
    }
    if let Some(pem) = &s.cert_key_pem {
      tls.cert_key_file_path = Some(files.write("client.pem", pem)?);
    }
    if let Some(password) = &s.cert_key_password {
      tls.tls_certificate_key_file_password = Some(password.clone().into_bytes());
    }
    set(&mut tls.allow_invalid_certificates, &s.tls_allow_invalid_certificates);
    options.tls = Some(Tls::Enabled(tls));
  } else if s.tls == Some(false) {
    options.tls = Some(Tls::Disabled);
  }
  set(&mut options.retry_writes, &s.retry_writes);
  set(&mut options.retry_reads, &s.retry_reads);
  if let Some(names) = &s.compressors {
    let usable: Vec<Compressor> = names.iter().filter_map(|n| compressor(n)).collect();
    options.compressors = if usable.is_empty() { None } else { Some(usable) };
  }
  set(&mut options.app_name, &s.app_name);
  if let Some(version) = &s.server_api_version {
    let version = match version.as_str() {
      "1" => ServerApiVersion::V1,
      other => return Err(LockError::invalid(format!("mongo-locks-native: the client's serverApi version {other:?} is not known; expected \"1\""))),
    };
    let mut api = ServerApi::builder().version(version).build();
    api.strict = s.server_api_strict;
    api.deprecation_errors = s.server_api_deprecation_errors;
    options.server_api = Some(api);
  }
  set(&mut options.max_pool_size, &s.max_pool_size);
  set(&mut options.min_pool_size, &s.min_pool_size);
  set_ms(&mut options.max_idle_time, s.max_idle_time_ms);
  set_ms(&mut options.connect_timeout, s.connect_timeout_ms);
  set_ms(&mut options.server_selection_timeout, s.server_selection_timeout_ms);
  set_ms(&mut options.heartbeat_freq, s.heartbeat_frequency_ms);
  set_ms(&mut options.local_threshold, s.local_threshold_ms);
  Ok(files)
}

fn set<T: Clone>(target: &mut Option<T>, value: &Option<T>) {
  if let Some(v) = value {
    *target = Some(v.clone());
  }
}

fn set_ms(target: &mut Option<Duration>, value: Option<u32>) {
  // 0 means "no limit" in the Node driver's options; keep the driver's default then.
  if let Some(ms) = value.filter(|ms| *ms > 0) {
    *target = Some(Duration::from_millis(ms as u64));
  }
}

/// The compressors this build has (zlib and snappy, both pure Rust);
/// others named by the client are skipped: compression is negotiated, and
/// without a common one the connection is simply not compressed.
fn compressor(name: &str) -> Option<Compressor> {
  match name {
    "zlib" => Some(Compressor::Zlib { level: None }),
    "snappy" => Some(Compressor::Snappy),
    _ => None,
  }
}

/// What `options` will do, without secrets.
pub fn describe(options: &ClientOptions, ca_source: Option<&str>) -> EffectiveSettings {
  let tls = match &options.tls {
    Some(Tls::Enabled(t)) => Some(t),
    _ => None,
  };
  let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as f64);
  EffectiveSettings {
    hosts: options.hosts.iter().map(|h| h.to_string()).collect(),
    replica_set: options.repl_set_name.clone(),
    direct_connection: options.direct_connection,
    load_balanced: options.load_balanced,
    username: options.credential.as_ref().and_then(|c| c.username.clone()),
    auth_source: options.credential.as_ref().and_then(|c| c.source.clone()),
    auth_mechanism: options.credential.as_ref().and_then(|c| c.mechanism.as_ref().map(|m| m.as_str().to_string())),
    tls: tls.is_some(),
    tls_ca: tls.map(|t| match (&t.ca_file_path, ca_source) {
      (Some(_), Some(source)) => source.to_string(),
      (Some(path), None) => format!("the file {}", path.display()),
      (None, _) => "the bundled Mozilla roots".to_string(),
    }),
    tls_client_certificate: tls.is_some_and(|t| t.cert_key_file_path.is_some()),
    tls_allow_invalid_certificates: tls.and_then(|t| t.allow_invalid_certificates),
    retry_writes: options.retry_writes,
    retry_reads: options.retry_reads,
    compressors: options
      .compressors
      .iter()
      .flatten()
      .map(|c| match c {
        Compressor::Zlib { .. } => "zlib".to_string(),
        Compressor::Snappy => "snappy".to_string(),
        #[allow(unreachable_patterns)]
        _ => "other".to_string(),
      })
      .collect(),
    app_name: options.app_name.clone(),
    server_api_version: options.server_api.as_ref().map(|_| "1".to_string()),
    max_pool_size: options.max_pool_size,
    min_pool_size: options.min_pool_size,
    max_idle_time_ms: ms(options.max_idle_time),
    connect_timeout_ms: ms(options.connect_timeout),
    server_selection_timeout_ms: ms(options.server_selection_timeout),
    read_preference: "primary".to_string(),
  }
}

/// A failed connection, said in the application's terms where its client
/// has a `secureContext`: we trusted CAs derived from where the platform's
/// come from, and could not see a client certificate inside it.
pub fn explain(err: LockError, client: Option<&ClientSettings>) -> LockError {
  let Some(client) = client.filter(|c| c.secure_context == Some(true)) else { return err };
  let derived = client.ca_source.as_deref().is_some_and(|s| s.starts_with("derived"));
  let cert_given = client.cert_key_pem.is_some();
  match err {
    LockError::Server { mut message, code } => {
      if derived {
        message = message.replace(
          UNKNOWN_ISSUER,
          ": the server's certificate was signed by a CA this client does not trust; the application's client has a \
           secureContext whose CAs cannot be read: pass the same CA as new LockManager(collection, { tls: { ca } }) \
           (trusted now: Node's default CAs, NODE_EXTRA_CA_CERTS, TRUSTSTORE_* and tls.extraCa)",
        );
      }
      if !cert_given {
        message = message.replace(
          CERTIFICATE_REQUIRED,
          ": the server asks for a client certificate (mutual TLS); the application's client has a secureContext, \
           whose certificate cannot be read: pass the same certificate and key as new LockManager(collection, { tls: { cert, key } })",
        );
      }
      LockError::Server { message, code }
    }
    other => other,
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  /// The driver's words for an untrusted or unsent certificate, as
  /// `describe_driver_error` puts them after its explanation.
  fn failure(explanation: &str, driver: &str) -> LockError {
    LockError::Server {
      message: format!("mongo-locks-native: connecting failed: could not reach a MongoDB server{explanation} ({driver})"),
      code: None,
    }
  }

  fn with_secure_context(ca_source: &str, cert: bool) -> ClientSettings {
    ClientSettings {
      secure_context: Some(true),
      ca_source: Some(ca_source.to_string()),
      cert_key_pem: cert.then(|| "PEM".to_string()),
      ..Default::default()
    }
  }

  #[test]
  fn an_untrusted_issuer_with_derived_cas_says_the_context_cannot_be_read() {
    let client = with_secure_context("derived for the client's secureContext, whose CAs cannot be read: Node's default CAs (146)", false);
    let said = explain(failure(UNKNOWN_ISSUER, "UnknownIssuer"), Some(&client)).message();
    assert!(said.contains("secureContext whose CAs cannot be read: pass the same CA as new LockManager(collection, { tls: { ca } })"), "{said}");
    assert!(said.ends_with("(UnknownIssuer)"), "the driver's own words stay: {said}");
  }

  #[test]
  fn an_untrusted_issuer_with_the_ca_given_keeps_the_plain_explanation() {
    let client = with_secure_context("options.tls.ca (1)", false);
    let said = explain(failure(UNKNOWN_ISSUER, "UnknownIssuer"), Some(&client)).message();
    assert!(said.contains(UNKNOWN_ISSUER), "{said}");
  }

  #[test]
  fn a_required_certificate_unseen_in_the_context_says_to_pass_cert_and_key() {
    let client = with_secure_context("options.tls.ca (1)", false);
    let said = explain(failure(CERTIFICATE_REQUIRED, "CertificateRequired"), Some(&client)).message();
    assert!(said.contains("whose certificate cannot be read: pass the same certificate and key"), "{said}");
    let given = with_secure_context("options.tls.ca (1)", true);
    assert!(explain(failure(CERTIFICATE_REQUIRED, "x"), Some(&given)).message().contains(CERTIFICATE_REQUIRED));
  }

  #[test]
  fn without_a_secure_context_nothing_changes() {
    let err = failure(UNKNOWN_ISSUER, "UnknownIssuer");
    assert_eq!(explain(err.clone(), None), err);
    assert_eq!(explain(err.clone(), Some(&ClientSettings::default())), err);
  }
}

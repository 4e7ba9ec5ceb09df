//! What can go wrong, in words a user can act on: a shared bottom module
//! every layer uses (`LockError`, and reading the driver's failures). The
//! JS errors each failure becomes are `js::errors`.

use mongodb::error::{ErrorKind, WriteFailure};

/// A failure, before it becomes a JS error.
#[derive(Debug, Clone, PartialEq)]
pub enum LockError {
  /// The caller passed something we cannot use: a JS `TypeError`.
  Invalid(String),
  /// The server or the driver failed: a `MongoLocksError`.
  Server { message: String, code: Option<i32> },
  /// The manager was closed before or during the call.
  Closed,
  /// The caller's AbortSignal fired while waiting: rejects with its reason.
  Aborted,
}

pub type LockResult<T> = std::result::Result<T, LockError>;

impl LockError {
  pub fn invalid(message: impl Into<String>) -> Self {
    LockError::Invalid(message.into())
  }

  /// Wraps a driver error with what we were doing when it happened.
  pub fn server(doing: &str, err: &mongodb::error::Error) -> Self {
    LockError::Server {
      message: format!("mongo-locks-native: {doing} failed: {}", describe_driver_error(err)),
      code: server_code(err),
    }
  }

  pub fn message(&self) -> String {
    match self {
      LockError::Invalid(m) => m.clone(),
      LockError::Server { message, .. } => message.clone(),
      LockError::Closed => "mongo-locks-native: this LockManager is closed".to_string(),
      LockError::Aborted => "mongo-locks-native: the wait was aborted".to_string(),
    }
  }
}

/// The server's numeric error code, where the server sent one.
pub fn server_code(err: &mongodb::error::Error) -> Option<i32> {
  match err.kind.as_ref() {
    ErrorKind::Command(c) => Some(c.code),
    ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
    ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
    _ => None,
  }
}

/// E11000: the unique index on `action` refused a second holder.
pub fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
  server_code(err) == Some(11000)
}

/// Server-selection failures read as a wall of topology detail; say plainly
/// that the server could not be reached.
pub fn describe_driver_error(err: &mongodb::error::Error) -> String {
  match err.kind.as_ref() {
    ErrorKind::ServerSelection { message, .. } => {
      format!("could not reach a MongoDB server{} ({message})", why_unreachable(message))
    }
    ErrorKind::Authentication { message, .. } => format!("could not log in{AUTH_FAILED} ({message})"),
    ErrorKind::Command(c) if c.code == 18 => format!("could not log in{AUTH_FAILED} ({} (code 18))", c.message),
    ErrorKind::Command(c) => format!("{} (code {} {})", c.message, c.code, c.code_name),
    ErrorKind::Write(WriteFailure::WriteError(w)) => format!("{} (code {})", w.message, w.code),
    ErrorKind::Write(WriteFailure::WriteConcernError(w)) => format!("{} (code {} {})", w.message, w.code, w.code_name),
    // The kind alone: the error's labels (a set, in no fixed order) and
    // empty source fields say nothing to a reader, and a cause logged once
    // must read the same each time.
    kind => {
      let text = kind.to_string();
      match why_unreachable(&text) {
        "" => text,
        why => format!("{}{why} ({text})", lead(kind)),
      }
    }
  }
}

/// What a failure whose cause `why_unreachable` names was doing.
fn lead(kind: &ErrorKind) -> &'static str {
  match kind {
    ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => "could not reach a MongoDB server",
    _ => "the server could not be used",
  }
}

/// Said first when the server's certificate is not trusted.
pub const UNKNOWN_ISSUER: &str = ": the server's TLS certificate is signed by a CA this client does not trust (unknown issuer). \
  The manager trusts what the Node client is given (its ca or tlsCAFile, else Node's CAs with \
  NODE_EXTRA_CA_CERTS and TRUSTSTORE_*); or pass new LockManager(collection, { tls: { ca } })";

/// Said first when the server refused the login; connecting adds who tried.
pub const AUTH_FAILED: &str = ": authentication failed: check the user, password, authSource and mechanism";

/// Said first when the server wants a client certificate we did not send.
pub const CERTIFICATE_REQUIRED: &str = ": the server asks for a client certificate (mutual TLS) and this client sent none; \
  give the client tlsCertificateKeyFile (or cert and key), or pass new LockManager(collection, { tls: { cert, key } })";

/// What a server-selection failure most likely means, said first, since the
/// driver's own message is a wall of topology detail.
pub fn why_unreachable(message: &str) -> &'static str {
  // BadSignature: a trusted CA has the issuer's name but did not sign it
  // (another CA of the same name): to the user, the same untrusted issuer.
  let peer = message.contains("invalid peer certificate");
  if message.contains("UnknownIssuer") || peer && (message.contains("Issuer") || message.contains("BadSignature")) {
    UNKNOWN_ISSUER
  } else if message.contains("CertificateRequired") || message.contains("certificate required") {
    CERTIFICATE_REQUIRED
  } else if message.contains("NotValidForName") || message.contains("not valid for name") {
    ": the server's TLS certificate does not name the host connected to"
  } else if message.contains("Authentication failed") || message.contains("AuthenticationFailed") || message.contains("SCRAM failure") {
    AUTH_FAILED
  } else if message.contains("failed to lookup address") || message.contains("Name or service not known") || message.contains("nodename nor servname") {
    ": the host name does not resolve (check the host in the connection string, and DNS)"
  } else if message.contains("Connection refused") {
    ": nothing accepts connections at that address (connection refused)"
  } else if message.contains("tls handshake eof") || message.contains("InvalidContentType") || message.contains("corrupt message") {
    ": the TLS handshake failed (does the server speak TLS, and the client? check tls in the connection settings)"
  } else {
    ""
  }
}

/// Cuts a description to `max` characters (on a char boundary), marking the cut.
pub fn truncate(text: String, max: usize) -> String {
  if text.chars().count() <= max {
    return text;
  }
  let mut cut: String = text.chars().take(max).collect();
  cut.push('…');
  cut
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn closed_has_a_message_that_names_the_manager() {
    assert!(LockError::Closed.message().contains("LockManager is closed"));
  }

  #[test]
  fn invalid_keeps_its_message() {
    assert_eq!(LockError::invalid("bad key").message(), "bad key");
  }

  #[test]
  fn certificate_failures_are_said_first() {
    let unknown = "Kind: I/O error: invalid peer certificate: UnknownIssuer, labels: {}";
    // A trusted CA of the same name that did not sign the certificate.
    let same_name = "Kind: I/O error: invalid peer certificate: BadSignature, labels: {}";
    let unsent = "Kind: I/O error: received fatal alert: CertificateRequired, labels: {}";
    assert_eq!(why_unreachable(unknown), UNKNOWN_ISSUER);
    assert_eq!(why_unreachable(same_name), UNKNOWN_ISSUER);
    assert_eq!(why_unreachable(unsent), CERTIFICATE_REQUIRED);
    assert_eq!(why_unreachable("Kind: I/O error: Connection refused (os error 111)"), ": nothing accepts connections at that address (connection refused)");
  }
}

//! The bound on each server operation (`operationTimeoutMs`), and what to
//! say when it ends one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::errors::{LockError, LockResult};
use crate::store::config::Config;
use crate::store::connection::EffectiveSettings;
use crate::store::monitor::{self, Monitor};

/// The bound on each server operation, and what to say when it ends one:
/// why the monitors found no server to use, or that the server did not
/// reply (see `monitor`).
#[derive(Clone)]
pub struct Bound {
  pub limit: Duration,
  monitor: Arc<Monitor>,
  /// The driver's own wait for a server, which ours may end first.
  selection: Option<Duration>,
  replica_set: Option<String>,
}

impl Bound {
  pub fn new(config: &Config, monitor: &Arc<Monitor>, settings: Option<&EffectiveSettings>) -> Bound {
    Bound {
      limit: config.operation_timeout,
      monitor: monitor.clone(),
      selection: settings.and_then(|s| s.server_selection_timeout_ms).map(|ms| Duration::from_millis(ms as u64)),
      replica_set: settings.and_then(|s| s.replica_set.clone()),
    }
  }

  /// `op` within the limit: `Err` when the server did not answer in time
  /// (the operation is abandoned; a write may still have applied).
  pub async fn run<T>(&self, doing: &str, op: impl Future<Output = T>) -> LockResult<T> {
    tokio::time::timeout(self.limit, op).await.map_err(|_| self.expired(doing, self.limit))
  }

  /// The server answered a command (see `Monitor::answered`).
  pub fn answered(&self) {
    self.monitor.answered();
  }

  /// The error of `doing`, ended by our bound after `limit`.
  pub fn expired(&self, doing: &str, limit: Duration) -> LockError {
    LockError::Server {
      message: monitor::timed_out(Some(&self.monitor), doing, limit, limit < self.limit, self.selection, self.replica_set.as_deref()),
      code: None,
    }
  }
}

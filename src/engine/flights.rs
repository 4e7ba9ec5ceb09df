//! Work in flight that writes to the server on a manager's behalf
//! (connecting, lock attempts, clean-ups), counted so that `close()` can
//! let it finish before it shuts the client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// A count of work in flight, and a way to wait until there is none.
#[derive(Default)]
pub struct Flights(Arc<(AtomicUsize, Notify)>);

/// One unit of work in flight; dropping it ends it.
pub struct Flight(Arc<(AtomicUsize, Notify)>);

impl Flights {
  pub fn enter(&self) -> Flight {
    self.0 .0.fetch_add(1, Ordering::AcqRel);
    Flight(self.0.clone())
  }

  /// Resolves when nothing is in flight, or after `limit`.
  pub async fn idle(&self, limit: Duration) {
    let wait = async {
      loop {
        let notified = self.0 .1.notified();
        if self.0 .0.load(Ordering::Acquire) == 0 {
          return;
        }
        notified.await;
      }
    };
    let _ = tokio::time::timeout(limit, wait).await;
  }
}

impl Drop for Flight {
  fn drop(&mut self) {
    if self.0 .0.fetch_sub(1, Ordering::AcqRel) == 1 {
      self.0 .1.notify_waiters();
    }
  }
}

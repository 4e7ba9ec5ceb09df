//! What the driver's own server monitoring last saw of each server, so that
//! a call our operation timeout ends says why the server could not be used.
//!
//! With the defaults, our bound on a call (`operationTimeoutMs`, 10 s) ends
//! before the driver's server selection gives up (`serverSelectionTimeoutMS`,
//! 30 s), so the driver's own error, which names the cause, never arrives.
//! Its monitors have seen the cause all along: each check of a server
//! raises an SDAM event (a heartbeat that failed, with its error; a server
//! described anew). This module keeps the last of those per server, and
//! turns them into the reason a timed-out call gives: connection refused,
//! an untrusted certificate, no answer at all, no primary. Only when a
//! server answered its last check does a timeout read "no reply from the
//! server": then it accepted the command and did not answer.
//!
//! It knows nothing of JavaScript; `store` attaches it to each client.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::event::sdam::SdamEvent;
use mongodb::event::EventHandler;
use mongodb::ServerType;

use crate::errors::why_unreachable;

/// The last of what the monitors saw, per server address.
#[derive(Default)]
pub struct Monitor {
  servers: Mutex<BTreeMap<String, Seen>>,
  /// How many of our commands a server has answered (see `answered`).
  answers: AtomicU64,
}

#[derive(Default, Clone)]
struct Seen {
  /// Its last check answered (and no operation failed on it since).
  answered: bool,
  /// Why it is not usable: the last check's failure, or the error an
  /// operation marked it unknown for. `None` once a check answers.
  failure: Option<String>,
  /// A check of it has begun and not answered yet.
  checking: bool,
  /// What the driver last took it for.
  kind: ServerType,
  /// The replica set it says it belongs to.
  set_name: Option<String>,
}

impl Seen {
  fn failed(&mut self, error: &mongodb::error::Error) {
    if cancelled(error) {
      // A check cancelled because its client was dropped (an attempt that
      // ran out of time) says nothing of the server.
    } else if no_answer(error) {
      // A check that timed out is a server that does not answer: said as
      // one still waiting is (the same cause reads the same each time).
      self.answered = false;
      self.failure = None;
      self.checking = true;
    } else {
      self.answered = false;
      self.failure = Some(error.kind.to_string());
      self.checking = false;
    }
  }
}

impl Monitor {
  /// The driver's SDAM event handler that feeds this monitor.
  pub fn handler(self: &Arc<Self>) -> EventHandler<SdamEvent> {
    let monitor = Arc::downgrade(self);
    EventHandler::callback(move |event| {
      if let Some(monitor) = monitor.upgrade() {
        monitor.see(event);
      }
    })
  }

  /// A command of ours got its answer: a failure logged before is news
  /// again when it comes back after this.
  pub fn answered(&self) {
    self.answers.fetch_add(1, Ordering::Relaxed);
  }

  pub fn answers(&self) -> u64 {
    self.answers.load(Ordering::Relaxed)
  }

  fn see(&self, event: SdamEvent) {
    let mut servers = self.servers.lock().unwrap();
    match event {
      SdamEvent::ServerHeartbeatStarted(e) if !e.awaited => {
        let seen = servers.entry(e.server_address.to_string()).or_default();
        seen.checking = true;
      }
      SdamEvent::ServerHeartbeatSucceeded(e) => {
        let seen = servers.entry(e.server_address.to_string()).or_default();
        // From the reply itself: the driver drops a server of another
        // replica set without describing it anew.
        seen.set_name = e.reply.get_str("setName").ok().map(str::to_string);
        seen.answered = true;
        seen.failure = None;
        seen.checking = false;
      }
      SdamEvent::ServerHeartbeatFailed(e) => {
        servers.entry(e.server_address.to_string()).or_default().failed(&e.failure);
      }
      SdamEvent::ServerDescriptionChanged(e) => {
        let seen = servers.entry(e.address.to_string()).or_default();
        seen.kind = e.new_description.server_type();
        seen.set_name = e.new_description.replica_set_name().map(str::to_string);
        if let Some(error) = e.new_description.error() {
          seen.failed(error);
        }
      }
      _ => {}
    }
  }

  /// Why a call found no server to use, as the monitors saw it: `None`
  /// when a usable server answered its last check (the call's own command
  /// went unanswered). `replica_set`: the set name the connection asks for.
  pub fn why_unusable(&self, replica_set: Option<&str>) -> Option<String> {
    let servers = self.servers.lock().unwrap();
    // A server of another replica set (or none, where one is asked for)
    // answers, but the driver drops it from the deployment.
    let of_ours = |s: &Seen| replica_set.is_none() || s.set_name.as_deref() == replica_set;
    let (live, foreign): (Vec<(&String, &Seen)>, Vec<_>) = servers.iter().partition(|(_, s)| !s.answered || of_ours(s));
    if live.iter().any(|(_, s)| s.answered && writable(s.kind)) {
      return None;
    }
    // A server that refused us says the most: its error names the cause.
    if let Some((address, seen)) = live.iter().find(|(_, s)| s.failure.is_some()) {
      let failure = seen.failure.as_deref().unwrap_or_default();
      return Some(format!("could not reach a MongoDB server{} ({address}: {failure})", why_unreachable(failure)));
    }
    let silent: Vec<&str> =
      live.iter().filter(|(_, s)| !s.answered && s.checking).map(|(a, _)| a.as_str()).collect();
    if !silent.is_empty() {
      return Some(format!(
        "could not reach a MongoDB server: no answer from {}: nothing answers at that address (a firewall that drops \
         packets, a wrong host or port, or a server that accepts connections and never replies)",
        silent.join(", ")
      ));
    }
    let answering: Vec<String> = live.iter().filter(|(_, s)| s.answered).map(|(a, s)| format!("{a} is {}", kind_name(s.kind))).collect();
    if !answering.is_empty() {
      return Some(format!(
        "no server that can take writes: {}; lock operations need the primary (is the replica set electing one?)",
        answering.join(", ")
      ));
    }
    let foreign: Vec<String> = foreign
      .iter()
      .map(|(a, s)| match &s.set_name {
        Some(name) => format!("{a} is a member of replica set {name:?}"),
        None => format!("{a} is not a replica set member"),
      })
      .collect();
    if let (false, Some(wanted)) = (foreign.is_empty(), replica_set) {
      return Some(format!(
        "no server of replica set {wanted:?}: {} (check replicaSet in the connection string)",
        foreign.join(", ")
      ));
    }
    Some("could not reach a MongoDB server: no server has been checked yet (resolving the address?)".to_string())
  }
}

/// The driver's word for a check it cancelled itself (its client closed).
fn cancelled(error: &mongodb::error::Error) -> bool {
  matches!(error.kind.as_ref(), mongodb::error::ErrorKind::Internal { message, .. } if message == "server closed")
}

/// A check that got no answer within the connect timeout.
fn no_answer(error: &mongodb::error::Error) -> bool {
  matches!(error.kind.as_ref(), mongodb::error::ErrorKind::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
}

/// A server lock writes can go to.
fn writable(kind: ServerType) -> bool {
  matches!(kind, ServerType::Standalone | ServerType::RsPrimary | ServerType::Mongos | ServerType::LoadBalancer)
}

fn kind_name(kind: ServerType) -> &'static str {
  match kind {
    ServerType::RsSecondary => "a secondary",
    ServerType::RsArbiter => "an arbiter",
    ServerType::RsOther => "a replica set member that is hidden, starting or recovering",
    ServerType::RsGhost => "a member of no configured replica set (RSGhost)",
    ServerType::Unknown => "of a kind not known yet",
    _ => "a server",
  }
}

/// The message of a call our own bound ended: the monitors' reason when no
/// server was usable, else that the server did not reply. Names the bound,
/// and the driver's server selection timeout when that had not yet passed.
/// `deadline`: the bound was what a refresh round's locks had left, not
/// the operation timeout (said without its varying length, so that the
/// same cause reads the same each time).
pub fn timed_out(
  monitor: Option<&Monitor>,
  doing: &str,
  limit: Duration,
  deadline: bool,
  selection: Option<Duration>,
  replica_set: Option<&str>,
) -> String {
  let bound = if deadline {
    "the time its locks had left (the next round tries again)".to_string()
  } else {
    format!("{} ms (operationTimeoutMs)", limit.as_millis())
  };
  match monitor.and_then(|m| m.why_unusable(replica_set)) {
    Some(why) => {
      let selection = selection.unwrap_or(Duration::from_secs(30));
      let before = if selection > limit {
        format!(", before the driver's serverSelectionTimeoutMS ({} ms)", selection.as_millis())
      } else {
        String::new()
      };
      format!("mongo-locks-native: {doing} failed: {why}; said after {bound}{before}")
    }
    None => format!("mongo-locks-native: {doing} failed: no reply from the server within {bound}"),
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn seen(monitor: &Monitor, address: &str, f: impl FnOnce(&mut Seen)) {
    f(monitor.servers.lock().unwrap().entry(address.to_string()).or_default());
  }

  #[test]
  fn a_server_that_answered_means_the_command_went_unanswered() {
    let m = Monitor::default();
    seen(&m, "a:1", |s| {
      s.answered = true;
      s.kind = ServerType::Standalone;
    });
    assert_eq!(m.why_unusable(None), None);
    assert_eq!(
      timed_out(Some(&m), "inserting the lock document", Duration::from_secs(10), false, None, None),
      "mongo-locks-native: inserting the lock document failed: no reply from the server within 10000 ms (operationTimeoutMs)"
    );
  }

  #[test]
  fn a_refused_connection_is_named_with_its_server() {
    let m = Monitor::default();
    seen(&m, "127.0.0.1:9", |s| s.failure = Some("Kind: I/O error: Connection refused (os error 111), labels: {}".into()));
    let message = timed_out(Some(&m), "connecting", Duration::from_secs(10), false, None, None);
    assert!(message.contains("nothing accepts connections at that address (connection refused)"), "{message}");
    assert!(message.contains("127.0.0.1:9: Kind: I/O error: Connection refused"), "{message}");
    assert!(message.contains("said after 10000 ms (operationTimeoutMs), before the driver's serverSelectionTimeoutMS (30000 ms)"), "{message}");
  }

  #[test]
  fn a_check_still_unanswered_reads_as_no_answer_at_that_address() {
    let m = Monitor::default();
    seen(&m, "10.0.0.1:27017", |s| s.checking = true);
    let why = m.why_unusable(None).unwrap();
    assert!(why.starts_with("could not reach a MongoDB server: no answer from 10.0.0.1:27017: nothing answers"), "{why}");
  }

  #[test]
  fn answering_secondaries_alone_say_there_is_no_primary() {
    let m = Monitor::default();
    seen(&m, "a:1", |s| {
      s.answered = true;
      s.kind = ServerType::RsSecondary;
      s.set_name = Some("rs0".into());
    });
    assert!(m.why_unusable(Some("rs0")).unwrap().starts_with("no server that can take writes: a:1 is a secondary"));
  }

  #[test]
  fn a_server_dropped_for_its_set_name_is_said_so() {
    let m = Monitor::default();
    seen(&m, "a:1", |s| {
      s.answered = true;
      s.kind = ServerType::RsPrimary;
      s.set_name = Some("other".into());
    });
    assert_eq!(
      m.why_unusable(Some("rs0")).unwrap(),
      "no server of replica set \"rs0\": a:1 is a member of replica set \"other\" (check replicaSet in the connection string)"
    );
  }

  #[test]
  fn the_selection_timeout_is_named_only_while_it_has_not_passed() {
    let m = Monitor::default();
    seen(&m, "a:1", |s| s.failure = Some("Connection refused".into()));
    let message = timed_out(Some(&m), "connecting", Duration::from_secs(10), false, Some(Duration::from_secs(5)), None);
    assert!(message.ends_with("said after 10000 ms (operationTimeoutMs)"), "{message}");
  }
}

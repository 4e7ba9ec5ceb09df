//! The registry of the lock documents a manager wrote that may still be
//! live: what its one refresh command per round must leave alone.

use std::collections::HashMap;

use mongodb::bson::{oid::ObjectId, DateTime};

/// The lock documents this manager wrote that may still be live, each with
/// the latest expiry we may have given it; every document carries the
/// sequence number it was written with (its `seq` field). The one refresh command of a round
/// (`refresh_held`) updates every document of ours that is live, written
/// before the round (`seq`), and not excluded; what it must leave alone is
/// exactly what this knows and the round does not hold: freed documents
/// kept for their `minHoldMs`, locks past their `maxHoldMs` or lost, a
/// semaphore's queue places, inserts whose outcome we never learnt. So it
/// matches only held documents, and when it matched as many as are held,
/// each held one was matched.
///
/// An entry goes when its document is deleted (a delete acknowledged, and
/// no insert of it may still land), or once the expiry recorded has passed
/// in the server's time (the round's filter then leaves the document
/// alone: only live ones are refreshed).
/// The first 7 bytes of every `_id` a manager writes: the time it
/// connected, in seconds (as an ObjectId's first 4 bytes are), and 3 bytes
/// that differ between managers (an ObjectId counter's, which starts at
/// random in each process and steps for each new ObjectId). Two managers'
/// documents must never share an `_id`: a server that does not say which
/// index refused an insert (FerretDB) makes a clash read as "the key is
/// held". With one byte there, two managers connecting in the same second
/// clashed once in 256; with three, once in 16.7 million.
pub type IdPrefix = [u8; 7];

/// A prefix for a manager connecting now.
pub fn new_prefix() -> IdPrefix {
  let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32);
  let mut prefix = [0u8; 7];
  prefix[..4].copy_from_slice(&seconds.to_be_bytes());
  prefix[4..].copy_from_slice(&ObjectId::new().bytes()[9..]);
  prefix
}

#[derive(Default)]
pub struct Written {
  pub docs: HashMap<ObjectId, WrittenDoc>,
  /// The sequence number of the last `_id` handed out.
  pub seq: u64,
}

pub struct WrittenDoc {
  /// The latest `expiresAt` we may have written to it.
  pub expires: DateTime,
  /// Its insert was answered (inserted): once deleted, it cannot return.
  pub settled: bool,
}

impl Written {
  /// The `_id` of a document about to be written, known from now on. Our
  /// `_id`s are `prefix` (see `new_prefix`) and a 5-byte sequence number (a
  /// trillion documents per manager),
  /// big-endian: in the order they are handed out, so a range of `_id` is
  /// "ours, written up to then" (see `refresh_held`).
  pub fn next_id(&mut self, prefix: IdPrefix, expires: DateTime) -> ObjectId {
    self.seq += 1;
    let id = Self::id_at(prefix, self.seq);
    self.docs.insert(id, WrittenDoc { expires, settled: false });
    id
  }

  pub fn id_at(prefix: IdPrefix, seq: u64) -> ObjectId {
    let mut bytes = [0u8; 12];
    bytes[..7].copy_from_slice(&prefix);
    bytes[7..].copy_from_slice(&seq.to_be_bytes()[3..]);
    ObjectId::from_bytes(bytes)
  }

  pub fn expiring(&mut self, ids: &[ObjectId], at: DateTime) {
    for id in ids {
      if let Some(doc) = self.docs.get_mut(id) {
        doc.expires = doc.expires.max(at);
      }
    }
  }

  /// Deleted: gone for good, unless an insert of it may still land.
  pub fn deleted(&mut self, ids: &[ObjectId]) {
    for id in ids {
      if self.docs.get(id).is_some_and(|d| d.settled) {
        self.docs.remove(id);
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  const PREFIX: IdPrefix = [1, 2, 3, 4, 5, 6, 7];

  #[test]
  fn ids_follow_the_order_they_are_handed_out_in() {
    let mut written = Written::default();
    let at = DateTime::from_millis(0);
    let (a, b) = (written.next_id(PREFIX, at), written.next_id(PREFIX, at));
    assert!(Written::id_at(PREFIX, 0) < a && a < b && b <= Written::id_at(PREFIX, written.seq));
    assert_eq!(&a.bytes()[..7], &PREFIX);
  }

  #[test]
  fn managers_made_in_one_second_get_prefixes_of_their_own() {
    let prefixes: Vec<IdPrefix> = (0..1000).map(|_| new_prefix()).collect();
    let distinct: std::collections::HashSet<&[u8]> = prefixes.iter().map(|p| &p[4..]).collect();
    assert_eq!(distinct.len(), prefixes.len(), "the 3 bytes after the time differ between managers");
  }

  #[test]
  fn a_deleted_document_is_forgotten_only_once_its_insert_was_answered() {
    let mut written = Written::default();
    let id = written.next_id(PREFIX, DateTime::from_millis(0));
    written.deleted(&[id]);
    assert!(written.docs.contains_key(&id), "its insert may still land");
    written.docs.get_mut(&id).unwrap().settled = true;
    written.deleted(&[id]);
    assert!(!written.docs.contains_key(&id));
  }

  #[test]
  fn the_expiry_recorded_only_moves_later() {
    let mut written = Written::default();
    let id = written.next_id(PREFIX, DateTime::from_millis(5_000));
    written.expiring(&[id], DateTime::from_millis(3_000));
    assert_eq!(written.docs[&id].expires, DateTime::from_millis(5_000));
    written.expiring(&[id], DateTime::from_millis(9_000));
    assert_eq!(written.docs[&id].expires, DateTime::from_millis(9_000));
  }
}

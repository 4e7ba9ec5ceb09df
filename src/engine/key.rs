//! Lock keys: the `action` stored in the lock document, and its checks
//! (reading a key from a JS value, and back, is `js::key`).
//!
//! `mongo-locks` stores whatever key it is given; arrays are wrapped as
//! `{ _key_array: key }` because a unique index treats each array element as
//! its own entry. We store exactly the same documents, so both libraries see
//! the same key as the same lock. We accept what a lock key sensibly is
//! (strings, finite numbers, arrays, plain objects) and reject up front, with
//! a TypeError naming the value, what the server would mangle or refuse.

use mongodb::bson::{self, doc, Bson, Document};

/// The largest key we accept, measured as the BSON encoding of
/// `{ action: key }`. MongoDB before 4.2 refused index keys over 1024 bytes;
/// staying under that keeps the collection portable and the index small.
pub const MAX_KEY_BYTES: usize = 1024;

/// The key as people read it in logs and messages: a string key as is,
/// anything else in MongoDB's relaxed JSON-like form.
pub fn key_text(action: &Bson) -> String {
  match action {
    Bson::String(s) => s.clone(),
    other => other.to_string(),
  }
}

/// A held lock's `action`, kept small because every held lock keeps one:
/// a string key (the usual kind) as its text alone, 16 B and one block,
/// instead of a 112 B `Bson` and the string's block; any other key as its
/// `Bson`, boxed.
#[derive(Debug)]
pub enum HeldAction {
  Text(Box<str>),
  Other(Box<Bson>),
}

impl HeldAction {
  pub fn new(action: &Bson) -> Self {
    match action {
      Bson::String(text) => HeldAction::Text(text.as_str().into()),
      other => HeldAction::Other(Box::new(other.clone())),
    }
  }

  /// The stored value again, for `lock.action`.
  pub fn to_bson(&self) -> Bson {
    match self {
      HeldAction::Text(text) => Bson::String(text.to_string()),
      HeldAction::Other(action) => (**action).clone(),
    }
  }

  /// The stored value as `Bson`'s `Display` shows it (the key a plain
  /// lock's local waiters wait on), without copying it into a `Bson` first.
  pub fn shown(&self) -> String {
    match self {
      HeldAction::Text(text) => format!("\"{text}\""),
      HeldAction::Other(action) => action.to_string(),
    }
  }

  /// As `key_text` reads it.
  pub fn text(&self) -> String {
    match self {
      HeldAction::Text(text) => text.to_string(),
      HeldAction::Other(action) => key_text(action),
    }
  }
}

/// `mongo-locks`' `makeKey`: arrays go inside `{ _key_array: … }`.
pub fn wrap_array(array: Bson) -> Document {
  doc! { "_key_array": array }
}

/// Numbers are stored as the Node driver stores them: int32 when the value
/// is an integer in range, a double otherwise.
pub fn number(n: f64) -> std::result::Result<Bson, String> {
  if !n.is_finite() {
    return Err(format!("{n} is not a finite number"));
  }
  if n.fract() == 0.0 && n >= i32::MIN as f64 && n <= i32::MAX as f64 && !(n == 0.0 && n.is_sign_negative()) {
    Ok(Bson::Int32(n as i32))
  } else {
    Ok(Bson::Double(n))
  }
}

/// Field names the server would refuse or read as an operator.
pub fn check_field_name(name: &str) -> std::result::Result<(), String> {
  if name.starts_with('$') {
    return Err(format!("field name {name:?} starts with '$', which MongoDB reads as an operator"));
  }
  if name.contains('\0') {
    return Err(format!("field name {name:?} contains a NUL character"));
  }
  Ok(())
}

/// Checks the final stored value: nested field names and the size bound.
pub fn check_stored(action: &Bson) -> std::result::Result<(), String> {
  if let Bson::String(s) = action {
    if s.contains('\0') {
      return Err("a key string cannot contain a NUL character".into());
    }
  }
  let size = bson::to_vec(&doc! { "action": action.clone() }).map_err(|e| e.to_string())?.len();
  if size > MAX_KEY_BYTES {
    return Err(format!("it takes {size} bytes as BSON, over the {MAX_KEY_BYTES}-byte bound"));
  }
  Ok(())
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn integers_in_int32_range_are_int32_like_the_node_driver() {
    assert_eq!(number(42.0).unwrap(), Bson::Int32(42));
    assert_eq!(number(-7.0).unwrap(), Bson::Int32(-7));
    assert_eq!(number(1.5).unwrap(), Bson::Double(1.5));
    assert_eq!(number(3e9).unwrap(), Bson::Double(3e9));
  }

  #[test]
  fn non_finite_numbers_are_refused() {
    assert!(number(f64::NAN).is_err());
    assert!(number(f64::INFINITY).is_err());
  }

  #[test]
  fn dollar_field_names_are_refused() {
    assert!(check_field_name("$where").is_err());
    assert!(check_field_name("a$b").is_ok());
  }

  #[test]
  fn a_held_action_gives_back_the_stored_value_and_its_text() {
    let text = HeldAction::new(&Bson::String("bank-details-42".into()));
    assert_eq!(text.to_bson(), Bson::String("bank-details-42".into()));
    assert_eq!(text.text(), "bank-details-42");
    let slot = Bson::Document(doc! { "semaphore": "pool", "slot": 2 });
    let other = HeldAction::new(&slot);
    assert_eq!(other.to_bson(), slot);
    assert_eq!(other.text(), key_text(&slot));
  }

  #[test]
  fn shown_is_the_bson_display() {
    let awkward = [
      Bson::String("bank-details-42".into()),
      Bson::String("with \"quotes\" and \\ and \n".into()),
      Bson::String("ключ 🔒".into()),
      Bson::Int32(42),
      Bson::Double(0.5),
      Bson::Boolean(true),
      Bson::Null,
      Bson::Document(wrap_array(Bson::Array(vec![Bson::Int32(1), Bson::String("a\"b".into())]))),
      Bson::Document(doc! { "semaphore": "pool", "slot": 2 }),
    ];
    for action in awkward {
      assert_eq!(HeldAction::new(&action).shown(), action.to_string(), "{action:?}");
    }
  }

  #[test]
  fn arrays_are_wrapped_like_mongo_locks() {
    let wrapped = wrap_array(Bson::Array(vec![Bson::Int32(1), Bson::String("a".into())]));
    assert_eq!(wrapped, doc! { "_key_array": [1, "a"] });
  }

  #[test]
  fn size_bound_is_enforced() {
    assert!(check_stored(&Bson::String("x".repeat(900))).is_ok());
    let err = check_stored(&Bson::String("x".repeat(2000))).unwrap_err();
    assert!(err.contains("1024-byte bound"), "{err}");
  }
}

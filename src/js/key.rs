//! Lock keys as JavaScript gives and reads them: a JS value checked and
//! converted to the stored `action` (see `engine::key` for what is stored
//! and why), and the stored `action` back as a JS value.

use mongodb::bson::{Bson, Document};
use napi::bindgen_prelude::*;
use napi::ValueType;

use crate::engine::key::{check_field_name, check_stored, number, wrap_array};
use crate::errors::{LockError, LockResult};
use crate::js::values::{describe, is_plain_object};

/// Arrays and objects nested deeper than this are refused (this also stops a
/// cyclic object from recursing forever).
const MAX_DEPTH: usize = 16;

const EXPECTED: &str = "a non-empty string, a finite number, an array or a plain object";

/// Converts a JS key into the stored `action` value, validating it.
pub fn action_from_js(value: &Unknown) -> LockResult<Bson> {
  let fail = |why: &str| {
    LockError::invalid(format!(
      "mongo-locks-native: invalid lock key {}: {why}; expected {EXPECTED}",
      describe(value)
    ))
  };
  let ty = value.get_type().map_err(|e| fail(&e.reason))?;
  let top = match ty {
    ValueType::String | ValueType::Number => scalar(value).map_err(|e| fail(&e))?,
    ValueType::Object if value.is_array().unwrap_or(false) => {
      Bson::Document(wrap_array(convert(value, 1).map_err(|e| fail(&e))?))
    }
    ValueType::Object => {
      if !is_plain_object(value).unwrap_or(false) {
        return Err(fail("objects other than plain { … } objects are not accepted"));
      }
      convert(value, 1).map_err(|e| fail(&e))?
    }
    ValueType::Undefined | ValueType::Null => return Err(fail("a lock needs a key")),
    ValueType::Function => return Err(fail("functions are not keys")),
    ValueType::Symbol => return Err(fail("symbols cannot be stored")),
    _ => return Err(fail("this type cannot be stored as a key")),
  };
  check_stored(&top).map_err(|e| fail(&e))?;
  Ok(top)
}

fn scalar(value: &Unknown) -> std::result::Result<Bson, String> {
  match value.get_type().map_err(|e| e.reason.clone())? {
    ValueType::String => {
      let s: String = unsafe { value.cast() }.map_err(|e| e.reason.clone())?;
      if s.is_empty() {
        return Err("the empty string is not a key".into());
      }
      Ok(Bson::String(s))
    }
    ValueType::Number => {
      let n: f64 = unsafe { value.cast() }.map_err(|e| e.reason.clone())?;
      number(n)
    }
    ValueType::Boolean => Ok(Bson::Boolean(unsafe { value.cast() }.map_err(|e| e.reason.clone())?)),
    ValueType::Null => Ok(Bson::Null),
    other => Err(format!("a nested {} cannot be stored", type_name(other))),
  }
}

fn convert(value: &Unknown, depth: usize) -> std::result::Result<Bson, String> {
  if depth > MAX_DEPTH {
    return Err(format!("nested deeper than {MAX_DEPTH} levels (or cyclic)"));
  }
  let ty = value.get_type().map_err(|e| e.reason.clone())?;
  if ty != ValueType::Object {
    return scalar(value);
  }
  let obj: Object = unsafe { value.cast() }.map_err(|e| e.reason.clone())?;
  if value.is_array().unwrap_or(false) {
    let len = obj.get_array_length().map_err(|e| e.reason.clone())?;
    let mut items = Vec::with_capacity(len as usize);
    for i in 0..len {
      let item: Unknown = obj.get_element(i).map_err(|e| e.reason.clone())?;
      items.push(convert(&item, depth + 1)?);
    }
    return Ok(Bson::Array(items));
  }
  if !is_plain_object(value).unwrap_or(false) {
    return Err(format!("nested {} is not a plain object", describe(value)));
  }
  let mut out = Document::new();
  for name in Object::keys(&obj).map_err(|e| e.reason.clone())? {
    check_field_name(&name)?;
    let item: Unknown = obj.get_named_property(&name).map_err(|e| e.reason.clone())?;
    if item.get_type().map_err(|e| e.reason.clone())? == ValueType::Undefined {
      continue; // as the Node driver does (ignoreUndefined off still drops them in objects)
    }
    out.insert(name, convert(&item, depth + 1)?);
  }
  Ok(Bson::Document(out))
}

fn type_name(ty: ValueType) -> &'static str {
  match ty {
    ValueType::Undefined => "undefined",
    ValueType::Function => "function",
    ValueType::Symbol => "symbol",
    ValueType::BigInt => "bigint",
    ValueType::External => "external",
    _ => "value",
  }
}

/// The stored `action` back as a JS value (for `lock.action`).
pub fn action_to_js<'env>(env: &'env Env, action: &Bson) -> Result<Unknown<'env>> {
  Ok(match action {
    Bson::String(s) => env.create_string(s)?.to_unknown(),
    Bson::Int32(n) => env.create_int32(*n)?.to_unknown(),
    Bson::Int64(n) => env.create_int64(*n)?.to_unknown(),
    Bson::Double(n) => env.create_double(*n)?.to_unknown(),
    Bson::Boolean(b) => (*b).into_unknown(env)?,
    Bson::Array(items) => {
      let mut arr = env.create_array(items.len() as u32)?;
      for (i, item) in items.iter().enumerate() {
        arr.set(i as u32, action_to_js(env, item)?)?;
      }
      arr.to_unknown()
    }
    Bson::Document(d) => {
      let mut obj = Object::new(env)?;
      for (k, v) in d {
        obj.set_named_property(k, action_to_js(env, v)?)?;
      }
      obj.to_unknown()
    }
    _ => Null.into_unknown(env)?,
  })
}

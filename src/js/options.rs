//! Reading a manager's and a call's options from JS objects, refusing
//! unknown names and wrong types with errors that name the bad value and
//! what was expected. The settings they fill, their defaults and checks,
//! are `store::config`.

use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::ValueType;

use crate::errors::{LockError, LockResult};
use crate::js::values::describe;
use crate::store::config::{checked_ms, LockRequest, RawOptions, WriteConcernChoice};

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

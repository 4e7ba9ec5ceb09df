//! Reading JavaScript values on the JS thread: type checks and short
//! descriptions of a bad value for error messages.

use napi::bindgen_prelude::*;
use napi::ValueType;

use crate::errors::truncate;

/// A short, readable rendering of a JS value for an error message:
/// `undefined`, `null`, `"text"`, `42`, `[function lock]`, `Symbol(x)`,
/// `[object Date]`, `{"a":1}`.
pub fn describe(value: &Unknown) -> String {
  let ty = match value.get_type() {
    Ok(ty) => ty,
    Err(_) => return "<unreadable value>".to_string(),
  };
  let text = match ty {
    ValueType::Undefined => "undefined".to_string(),
    ValueType::Null => "null".to_string(),
    ValueType::String => match unsafe { value.cast::<String>() } {
      Ok(s) => quote(&s),
      Err(_) => "<string>".to_string(),
    },
    ValueType::Function => {
      let name = value
        .coerce_to_object()
        .and_then(|o| o.get_named_property::<String>("name"))
        .unwrap_or_default();
      if name.is_empty() {
        "[function]".to_string()
      } else {
        format!("[function {name}]")
      }
    }
    ValueType::Symbol => "a Symbol".to_string(),
    ValueType::Object => describe_object(value),
    ValueType::BigInt => "a BigInt".to_string(),
    _ => coerce(value),
  };
  truncate(text, 80)
}

fn describe_object(value: &Unknown) -> String {
  // JSON when it has one (plain objects, arrays), else its tag.
  let json = (|| -> Result<Option<String>> {
    let env = Env::from_raw(value.value().env);
    let json: Object = env.get_global()?.get_named_property("JSON")?;
    let stringify: Function<Unknown, Unknown> = json.get_named_property("stringify")?;
    let out = stringify.call(*value)?;
    if out.get_type()? == ValueType::String {
      Ok(Some(unsafe { out.cast::<String>()? }))
    } else {
      Ok(None)
    }
  })();
  let tag = coerce(value);
  match json {
    Ok(Some(s)) if tag == "[object Object]" || value.is_array().unwrap_or(false) => s,
    _ => tag,
  }
}

fn coerce(value: &Unknown) -> String {
  value
    .coerce_to_string()
    .and_then(|s| s.into_utf8())
    .and_then(|s| s.into_owned())
    .unwrap_or_else(|_| "<value>".to_string())
}

fn quote(s: &str) -> String {
  format!("{s:?}")
}

/// True when `value` is an object whose prototype is `Object.prototype` or
/// `null`: what `{ … }` and `Object.create(null)` make.
pub fn is_plain_object(value: &Unknown) -> Result<bool> {
  if value.get_type()? != ValueType::Object || value.is_array()? {
    return Ok(false);
  }
  let obj: Object = unsafe { value.cast()? };
  let proto = obj.get_prototype()?;
  match proto.get_type()? {
    ValueType::Null => Ok(true),
    ValueType::Object => {
      let env = Env::from_raw(value.value().env);
      let object_ctor: Unknown = env.get_global()?.get_named_property("Object")?;
      let object_proto: Unknown = object_ctor.coerce_to_object()?.get_named_property("prototype")?;
      env.strict_equals(proto, object_proto)
    }
    _ => Ok(false),
  }
}

/// The value of a JS call whose failure we choose to ignore (a user's
/// callback or signal that throws); `None` if it failed. A JS exception
/// thrown there stays pending in the environment and would make every later
/// N-API call on this thread fail, so it is cleared here.
pub fn ignoring_failure<T>(env: &Env, res: Result<T>) -> Option<T> {
  match res {
    Ok(value) => Some(value),
    Err(_) => {
      let mut pending = false;
      // SAFETY: plain N-API calls on the JS thread with a live env.
      unsafe {
        napi::sys::napi_is_exception_pending(env.raw(), &mut pending);
        if pending {
          let mut exception = std::ptr::null_mut();
          napi::sys::napi_get_and_clear_last_exception(env.raw(), &mut exception);
        }
      }
      None
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn truncate_keeps_short_text_and_marks_a_cut() {
    assert_eq!(truncate("abc".into(), 5), "abc");
    assert_eq!(truncate("abcdef".into(), 3), "abc…");
    assert_eq!(truncate("ééééé".into(), 2), "éé…");
  }
}

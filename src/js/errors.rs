//! How each failure reaches JavaScript.
//!
//! Bad input becomes a plain JS `TypeError`; anything the server or the
//! driver does becomes a `MongoLocksError` (the class `lib/errors.js` defines and
//! registers here at load time), carrying the server's numeric error code
//! when there is one. Errors are built on the JS thread, so a rejected
//! promise carries a real instance of the right class, not a wrapper.

use std::cell::RefCell;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::errors::LockError;

type ErrorClass = FunctionRef<FnArgs<(String, Option<i32>)>, Unknown<'static>>;

thread_local! {
  // One registration per JS thread (main thread or worker), made by lib/manager.js.
  static MONGO_LOCKS_ERROR: RefCell<Option<ErrorClass>> = const { RefCell::new(None) };
  static LOCK_LOST_ERROR: RefCell<Option<ErrorClass>> = const { RefCell::new(None) };
}

/// Registers the JS classes for server failures and lost locks. Called
/// once by lib/manager.js.
#[napi(skip_typescript)]
#[cfg_attr(test, allow(dead_code))]
pub fn register_error_classes(
  mongo_locks_error: Function<FnArgs<(String, Option<i32>)>, Unknown<'static>>,
  lock_lost_error: Function<FnArgs<(String, Option<i32>)>, Unknown<'static>>,
) -> Result<()> {
  let (a, b) = (mongo_locks_error.create_ref()?, lock_lost_error.create_ref()?);
  MONGO_LOCKS_ERROR.with(|slot| *slot.borrow_mut() = Some(a));
  LOCK_LOST_ERROR.with(|slot| *slot.borrow_mut() = Some(b));
  Ok(())
}

/// An instance of a registered class, or a plain Error if lib/manager.js did not
/// register one (the bare binding loaded on its own).
fn instance<'env>(
  env: &'env Env,
  class: &'static std::thread::LocalKey<RefCell<Option<ErrorClass>>>,
  message: String,
  code: Option<i32>,
) -> Result<Unknown<'env>> {
  let registered = class.with(|slot| {
    slot
      .borrow()
      .as_ref()
      .map(|r| r.borrow_back(env).and_then(|f| f.new_instance(FnArgs::from((message.clone(), code)))))
  });
  match registered {
    Some(instance) => instance,
    None => {
      let ctor: Function<String, Unknown> = env.get_global()?.get_named_property("Error")?;
      ctor.new_instance(message)
    }
  }
}

/// A `LockLostError` carrying `message`.
pub fn lock_lost_error<'env>(env: &'env Env, message: String) -> Result<Unknown<'env>> {
  instance(env, &LOCK_LOST_ERROR, message, None)
}

/// Builds the JS error object for `err` (on the JS thread).
pub fn js_error<'env>(env: &'env Env, err: &LockError) -> Result<Unknown<'env>> {
  match err {
    LockError::Invalid(message) => {
      let ctor: Function<String, Unknown> = env.get_global()?.get_named_property("TypeError")?;
      ctor.new_instance(message.clone())
    }
    LockError::Server { code, .. } => instance(env, &MONGO_LOCKS_ERROR, err.message(), *code),
    LockError::Closed => {
      // `closed: true` is what callers test (Election stops campaigning on
      // it), so that no one has to match the message's words.
      let mut error = instance(env, &MONGO_LOCKS_ERROR, err.message(), None)?.coerce_to_object()?;
      error.set_named_property("closed", true)?;
      Ok(error.to_unknown())
    }
    LockError::Aborted => instance(env, &MONGO_LOCKS_ERROR, err.message(), None),
  }
}

/// `err` as a napi error that rethrows (or rejects with) the exact JS object.
pub fn to_napi(env: &Env, err: &LockError) -> Error {
  match js_error(env, err) {
    Ok(value) => Error::from(value),
    Err(e) => e,
  }
}

/// A promise already rejected with `err`: for input checks in promise-returning
/// methods, so that bad input rejects rather than throws.
pub fn rejected<'env, T: ToNapiValue>(env: &'env Env, err: &LockError) -> Result<PromiseRaw<'env, T>> {
  let value = js_error(env, err)?;
  PromiseRaw::reject(env, value)
}

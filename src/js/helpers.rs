//! `acquireLock` and `requireLock`: the two helpers the seed backends keep
//! in `src/common/helpers/mongo-lock.js`, with exactly their behaviour.
//!
//! They take any object whose `lock(resource)` returns a lock, `null` or a
//! promise of either: our `LockManager`, stock `mongo-locks`, or a vitest
//! mock `{ lock: vi.fn() }`. Like the seed's `async` functions they always
//! return a promise, and anything thrown becomes a rejection.

use napi::bindgen_prelude::*;
use napi::ValueType;
use napi_derive::napi;

use crate::errors::LockError;
use crate::js::errors::to_napi;
use crate::js::values::describe;

/// Calls `locker.lock(resource)`. Resolves to the lock, or to `null` after
/// logging `Failed to acquire lock for ${resource}` with `logger.error`
/// (only when a logger is given).
#[napi(
  ts_args_type = "locker: Locker, resource: LockKey, logger?: LockLogger | null",
  ts_return_type = "Promise<NativeLock | null>"
)]
pub fn acquire_lock<'env>(
  env: &'env Env,
  locker: Unknown<'env>,
  resource: Unknown<'env>,
  logger: Option<Unknown<'env>>,
) -> Result<PromiseRaw<'env, Either<Unknown<'static>, Null>>> {
  let logger = match logger {
    Some(l) if l.coerce_to_bool()? => Some(l),
    _ => None,
  };
  with_lock_result(env, locker, resource, logger, |env, lock, message, logger| {
    if lock {
      return Ok(true);
    }
    if let Some(logger) = logger {
      let target: Object = logger.coerce_to_object()?;
      let error: Unknown = target.get_named_property("error")?;
      if error.get_type()? != ValueType::Function {
        return Err(type_error(env, &format!("logger.error is not a function (logger is {})", describe(&logger))));
      }
      let error: Function<String, Unknown> = unsafe { error.cast()? };
      error.apply(target, message)?;
    }
    Ok(false)
  })
}

/// Calls `locker.lock(resource)`. Resolves to the lock, or rejects with an
/// `Error` whose message is `Failed to acquire lock for ${resource}`.
#[napi(ts_args_type = "locker: Locker, resource: LockKey", ts_return_type = "Promise<NativeLock>")]
pub fn require_lock<'env>(
  env: &'env Env,
  locker: Unknown<'env>,
  resource: Unknown<'env>,
) -> Result<PromiseRaw<'env, Either<Unknown<'static>, Null>>> {
  with_lock_result(env, locker, resource, None, |env, lock, message, _| {
    if lock {
      return Ok(true);
    }
    let ctor: Function<String, Unknown> = env.get_global()?.get_named_property("Error")?;
    Err(Error::from(ctor.new_instance(message)?))
  })
}

/// `await locker.lock(resource)`, then `decide(got_a_lock, message, logger)`
/// on the JS thread: `Ok(true)` resolves to the lock, `Ok(false)` to `null`.
/// Every failure, synchronous or not, ends up as a rejection.
///
/// The logger travels through the promise chain (`Promise.all([lock,
/// logger])`) rather than a Rust-held reference, so nothing needs releasing
/// if the lock call rejects.
fn with_lock_result<'env, F>(
  env: &'env Env,
  locker: Unknown<'env>,
  resource: Unknown<'env>,
  logger: Option<Unknown<'env>>,
  decide: F,
) -> Result<PromiseRaw<'env, Either<Unknown<'static>, Null>>>
where
  F: 'static + FnOnce(&Env, bool, String, Option<Unknown>) -> Result<bool>,
{
  let message = format!("Failed to acquire lock for {}", template_string(&resource));
  let called = (|| -> Result<Unknown<'env>> {
    let lock_fn: Option<Unknown> = match locker.get_type()? {
      ValueType::Object | ValueType::Function => {
        let obj: Object = locker.coerce_to_object()?;
        Some(obj.get_named_property("lock")?)
      }
      _ => None,
    };
    match lock_fn {
      Some(f) if f.get_type()? == ValueType::Function => {
        let f: Function<Unknown, Unknown> = unsafe { f.cast()? };
        f.bind(locker)?.call(resource)
      }
      _ => Err(type_error(
        env,
        &format!("locker must be an object with a lock(resource) method, got {}", describe(&locker)),
      )),
    }
  })();
  let value = match called {
    Ok(v) => v,
    Err(e) => {
      let error = env.create_error(e)?;
      return PromiseRaw::reject(env, error);
    }
  };
  // Promise.all treats the lock result as `await` does (plain values and
  // thenables alike) and carries the logger alongside it.
  let mut pair = env.create_array(2)?;
  pair.set(0, value)?;
  if let Some(logger) = logger {
    pair.set(1, logger)?;
  }
  let promise_ctor: Unknown = env.get_global()?.get_named_property("Promise")?;
  let promise_ctor = promise_ctor.coerce_to_object()?;
  let all: Function<Array, Unknown> = promise_ctor.get_named_property("all")?;
  let promise = all.apply(promise_ctor, pair)?;
  let promise: PromiseRaw<Object<'static>> = PromiseRaw::new(env.raw(), promise.raw());
  promise.then(move |ctx| {
    let lock: Unknown<'static> = ctx.value.get_element(0)?;
    let logger: Unknown = ctx.value.get_element(1)?;
    let logger = (logger.get_type()? != ValueType::Undefined).then_some(logger);
    match decide(&ctx.env, lock.coerce_to_bool()?, message, logger) {
      Ok(true) => Ok(Either::A(lock)),
      Ok(false) => Ok(Either::B(Null)),
      // A JS exception thrown in there (by logger.error) is still pending:
      // returning the error lets it reject the chain as it is.
      Err(e) if e.status == Status::PendingException => Err(e),
      // Our own errors: napi would rebuild them as a generic Error with a
      // `code`; resolving with a rejected promise keeps the exact object.
      Err(e) => {
        let error = ctx.env.create_error(e)?;
        let rejected: PromiseRaw<Unknown> = PromiseRaw::reject(&ctx.env, error)?;
        Ok(Either::A(unsafe { Unknown::from_raw_unchecked(ctx.env.raw(), rejected.raw()) }))
      }
    }
  })
}

/// A JS TypeError as a napi error, so it is rethrown (or rejected) as is.
fn type_error(env: &Env, message: &str) -> Error {
  to_napi(env, &LockError::invalid(message))
}

/// What `${resource}` gives in a JS template literal.
fn template_string(resource: &Unknown) -> String {
  if resource.get_type().ok() == Some(ValueType::Symbol) {
    return describe(resource);
  }
  resource
    .coerce_to_string()
    .and_then(|s| s.into_utf8())
    .and_then(|s| s.into_owned())
    .unwrap_or_else(|_| describe(resource))
}

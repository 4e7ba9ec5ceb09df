//! MONGODB-AWS credentials, found in JavaScript.
//!
//! The mongodb crate signs the MONGODB-AWS login (SigV4) itself; where the
//! credentials come from is the application's business. Its Node driver
//! asks, in order: the key in the URL, the client's
//! `AWS_CREDENTIAL_PROVIDER`, the AWS SDK's chain when
//! `@aws-sdk/credential-providers` is installed, and otherwise the
//! environment and the task's endpoints. `aws-credentials.js` asks the same
//! way, and every login here calls it through a threadsafe function (weak:
//! it never keeps Node running). Its answer is cached there, not here, so a
//! pool's logins share one lookup until the credentials near their expiry.
//!
//! Nothing in Rust looks for credentials, so the crate graph has no AWS SDK:
//! see `crates/aws-config`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::ThreadsafeFunction;
use napi_derive::napi;

use crate::errors::LockError;
use crate::js::values::describe;
use crate::store::aws::AwsLookup;

/// What `aws-credentials.js` resolves to.
#[napi(object, object_to_js = false)]
pub struct AwsCredentials {
  pub access_key_id: String,
  pub secret_access_key: String,
  pub session_token: Option<String>,
  /// When they expire, in ms since the epoch.
  pub expiration_ms: Option<f64>,
}

type Tsfn = ThreadsafeFunction<(), Promise<AwsCredentials>, (), Status, false, true>;

/// The JS function that finds credentials, callable from any thread.
struct FromJs {
  tsfn: Arc<Tsfn>,
  /// Why the last lookup failed: the mongodb crate reports only "an error
  /// occurred while loading credentials", and the reason is what a user needs.
  failure: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for FromJs {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.write_str("FromJs")
  }
}

/// Wraps lib/manager.js's credential lookup (an async function of no arguments)
/// as the provider the store gives the mongodb crate at each login.
pub fn from_js(value: &Unknown) -> crate::errors::LockResult<AwsLookup> {
  let bad = || LockError::invalid(format!("mongo-locks-native: the AWS credential lookup must be a function, got {}", describe(value)));
  if value.get_type().ok() != Some(napi::ValueType::Function) {
    return Err(bad());
  }
  let function: Function<(), Promise<AwsCredentials>> = unsafe { value.cast() }.map_err(|_| bad())?;
  let tsfn = function
    .build_threadsafe_function::<()>()
    .weak::<true>()
    .callee_handled::<false>()
    .build()
    .map_err(|e| LockError::invalid(format!("mongo-locks-native: could not set up the AWS credential lookup: {}", e.reason)))?;
  let failure = Arc::new(Mutex::new(None));
  let from_js = FromJs { tsfn: Arc::new(tsfn), failure: failure.clone() };
  Ok(AwsLookup { provider: SharedCredentialsProvider::new(from_js), failure })
}

impl FromJs {
  async fn lookup(&self) -> std::result::Result<Credentials, CredentialsError> {
    let found = async {
      let promise = self.tsfn.call_async_catch(()).await?;
      promise.await
    };
    match found.await {
      Ok(c) => {
        *self.failure.lock().unwrap() = None;
        let expiry = c.expiration_ms.filter(|ms| ms.is_finite() && *ms > 0.0).map(|ms| UNIX_EPOCH + Duration::from_millis(ms as u64));
        Ok(Credentials::new(c.access_key_id, c.secret_access_key, c.session_token, expiry, "mongo-locks-native"))
      }
      Err(e) => {
        *self.failure.lock().unwrap() = Some(e.reason.clone());
        Err(CredentialsError::provider_error(e.reason))
      }
    }
  }
}

impl ProvideCredentials for FromJs {
  fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
  where
    Self: 'a,
  {
    future::ProvideCredentials::new(self.lookup())
  }
}


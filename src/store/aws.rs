//! MONGODB-AWS credentials at login: the mongodb crate signs the login
//! itself, and asks the `AwsLookup` it was given for credentials (the JS
//! lookup of `js::aws`, handed down as a plain credential provider, so this
//! layer calls no JavaScript). A failed lookup's reason replaces the
//! crate's generic words in the connection error.

use std::sync::{Arc, Mutex};

use aws_credential_types::provider::SharedCredentialsProvider;
use mongodb::options::{AuthMechanism, ClientOptions};

use crate::errors::LockError;

/// Where MONGODB-AWS credentials come from: a provider, and why its last
/// lookup failed (the mongodb crate reports only "an error occurred while
/// loading credentials", and the reason is what a user needs).
#[derive(Clone)]
pub struct AwsLookup {
  pub provider: SharedCredentialsProvider,
  pub failure: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for AwsLookup {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.write_str("AwsLookup")
  }
}

/// Sets the lookup as the provider of a MONGODB-AWS credential that has no
/// key of its own (a key in the URL or the client options is used as is,
/// as the Node driver does).
pub fn provide(options: &mut ClientOptions, lookup: Option<&AwsLookup>) {
  let (Some(credential), Some(lookup)) = (options.credential.as_mut(), lookup) else { return };
  if credential.mechanism == Some(AuthMechanism::MongoDbAws) && credential.username.is_none() {
    credential.aws_credential_provider = Some(lookup.provider.clone());
  }
}

/// The mongodb crate's words for a failed lookup, as its error shows them.
const LOOKUP_FAILED: &str = "an error occurred while loading credentials";

/// A failed connection, with the reason the lookup gave instead of the
/// crate's generic words.
pub fn explain(err: LockError, lookup: Option<&AwsLookup>) -> LockError {
  let Some(reason) = lookup.and_then(|f| f.failure.lock().unwrap().clone()) else { return err };
  match err {
    LockError::Server { message, code } if message.contains(LOOKUP_FAILED) => {
      LockError::Server { message: message.replace(LOOKUP_FAILED, &format!("no AWS credentials: {reason}")), code }
    }
    other => other,
  }
}

//! The part of `aws-config` that the mongodb crate's MONGODB-AWS login
//! calls, without the AWS SDK's credential chain.
//!
//! The mongodb crate signs the MONGODB-AWS login itself (`aws-sigv4`). For
//! the credentials it asks, in order: the provider set on the `Credential`,
//! then the key id and secret of the URL, then `aws_config::load_defaults`.
//! mongo-locks-native always sets the provider (`src/aws.rs`: the
//! credentials are found in JavaScript, the way the application's Node
//! driver finds them), so the last step is never reached.
//!
//! The real aws-config brings the SDK's chain with its own HTTPS client
//! (hyper, h2, rustls on aws-lc, whose C library is compiled for every
//! target) and aws-sdk-sts: 55 crates, about half of the addon's build time
//! and 7 MB of each binary, for code this package does not run.

use aws_credential_types::provider::SharedCredentialsProvider;

/// Which defaults to load: only the latest exists here.
#[derive(Debug, Clone, Copy)]
pub struct BehaviorVersion(());

impl BehaviorVersion {
  /// The latest behaviour.
  pub fn latest() -> Self {
    BehaviorVersion(())
  }
}

/// The configuration `load_defaults` returns: no credential provider.
#[derive(Debug, Clone, Default)]
pub struct SdkConfig {
  credentials_provider: Option<SharedCredentialsProvider>,
}

impl SdkConfig {
  /// Always `None`: the mongodb crate then fails the login with "no
  /// credential provider configured", which cannot happen in
  /// mongo-locks-native (the provider is set on every MONGODB-AWS
  /// credential without a key in the URL).
  pub fn credentials_provider(&self) -> Option<SharedCredentialsProvider> {
    self.credentials_provider.clone()
  }
}

/// The defaults: nothing is loaded.
pub async fn load_defaults(_version: BehaviorVersion) -> SdkConfig {
  SdkConfig::default()
}

//! Credentials held in memory: for tests and for tools that swap them (rotation drills).

use std::sync::RwLock;

use async_trait::async_trait;

use crate::ports::{SecretError, SecretSource, TwilioCredentials};

/// A secret source whose value can be replaced at any time.
#[derive(Debug)]
pub struct MemorySecretSource(RwLock<TwilioCredentials>);

impl MemorySecretSource {
    /// A source holding `creds`.
    pub fn new(creds: TwilioCredentials) -> Self {
        Self(RwLock::new(creds))
    }

    /// Replaces the credentials.
    pub fn set(&self, creds: TwilioCredentials) {
        *self.0.write().expect("secret lock") = creds;
    }
}

#[async_trait]
impl SecretSource for MemorySecretSource {
    async fn current(&self) -> Result<TwilioCredentials, SecretError> {
        Ok(self.0.read().expect("secret lock").clone())
    }
}

//! Credentials held in memory: for tests and for tools that swap them (rotation drills).

use std::sync::RwLock;

use async_trait::async_trait;

use crate::ports::{SecretError, SecretSource, TwilioCredentials};

/// A secret source whose value can be replaced at any time, or withdrawn (then every read is
/// refused, as Secrets Manager refuses a role that may not read the secret).
#[derive(Debug)]
pub struct MemorySecretSource(RwLock<Option<TwilioCredentials>>);

impl MemorySecretSource {
    /// A source holding `creds`.
    pub fn new(creds: TwilioCredentials) -> Self {
        Self(RwLock::new(Some(creds)))
    }

    /// Replaces the credentials.
    pub fn set(&self, creds: TwilioCredentials) {
        *self.0.write().expect("secret lock") = Some(creds);
    }

    /// Refuses every read from now on, until [`MemorySecretSource::set`].
    pub fn withdraw(&self) {
        *self.0.write().expect("secret lock") = None;
    }
}

#[async_trait]
impl SecretSource for MemorySecretSource {
    async fn current(&self) -> Result<TwilioCredentials, SecretError> {
        self.0
            .read()
            .expect("secret lock")
            .clone()
            .ok_or_else(|| SecretError::Invalid("refused: AccessDeniedException".into()))
    }
}

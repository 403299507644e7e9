//! A short-lived cache of the Twilio credentials, refreshed on expiry or on demand (after a 401
//! or a signature mismatch), so a rotation is picked up without a restart.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::ports::{Clock, SecretError, SecretSource, TwilioCredentials};

/// Caches [`SecretSource::current`] for `ttl_ms`.
pub struct CredentialCache {
    source: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    ttl_ms: i64,
    cached: Mutex<Option<(i64, Arc<TwilioCredentials>)>>,
}

impl CredentialCache {
    /// A cache over `source`, entries kept `ttl_ms`.
    pub fn new(source: Arc<dyn SecretSource>, clock: Arc<dyn Clock>, ttl_ms: i64) -> Self {
        Self {
            source,
            clock,
            ttl_ms,
            cached: Mutex::new(None),
        }
    }

    /// The credentials, read from the source when the cache is empty or stale.
    pub async fn get(&self) -> Result<Arc<TwilioCredentials>, SecretError> {
        let mut cached = self.cached.lock().await;
        let now = self.clock.now_ms();
        if let Some((at, creds)) = cached.as_ref()
            && now - at < self.ttl_ms
        {
            return Ok(creds.clone());
        }
        let fresh = Arc::new(self.source.current().await?);
        *cached = Some((now, fresh.clone()));
        Ok(fresh)
    }

    /// Forgets the cached value: the next [`get`](Self::get) reads the source.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

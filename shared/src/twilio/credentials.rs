//! A short-lived cache of the Twilio credentials, refreshed on expiry or on demand (after a 401
//! or a signature mismatch), so a rotation is picked up without a restart. Refreshes on demand
//! are rate-limited: a flood of forged webhooks cannot turn into a flood of secret reads.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::Secret;
use crate::ports::{Clock, SecretError, SecretSource, TwilioCredentials};

/// The least time between two refreshes on demand, by default.
pub const DEFAULT_MIN_REFRESH_MS: i64 = 5_000;

/// Caches [`SecretSource::current`] for `ttl_ms`.
pub struct CredentialCache {
    source: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    ttl_ms: i64,
    min_refresh_ms: i64,
    cached: Mutex<Option<(i64, Arc<TwilioCredentials>)>>,
    last_forced_ms: std::sync::atomic::AtomicI64,
}

impl CredentialCache {
    /// A cache over `source`, entries kept `ttl_ms`; refreshes on demand at most once every
    /// [`DEFAULT_MIN_REFRESH_MS`].
    pub fn new(source: Arc<dyn SecretSource>, clock: Arc<dyn Clock>, ttl_ms: i64) -> Self {
        Self {
            source,
            clock,
            ttl_ms,
            min_refresh_ms: DEFAULT_MIN_REFRESH_MS,
            cached: Mutex::new(None),
            last_forced_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }

    /// The same cache, refreshing on demand at most once every `ms`.
    pub fn with_min_refresh_ms(mut self, ms: i64) -> Self {
        self.min_refresh_ms = ms;
        self
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

    /// Asks for a fresh read (after a 20003/401 or a signature mismatch): the next
    /// [`get`](Self::get) reads the source, unless a refresh on demand already happened within
    /// the last `min_refresh_ms` (then the cached value stays). Returns whether it will refresh.
    pub async fn invalidate(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = self.clock.now_ms();
        let last = self.last_forced_ms.load(Ordering::SeqCst);
        if now.saturating_sub(last) < self.min_refresh_ms
            || self
                .last_forced_ms
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return false;
        }
        *self.cached.lock().await = None;
        true
    }

    /// Forgets the cached value whatever the rate limit (tools and tests).
    pub async fn clear(&self) {
        *self.cached.lock().await = None;
    }
}

impl TwilioCredentials {
    /// The auth tokens a webhook may be signed with at `now_ms`: the primary, then the previous
    /// one while its grace window lasts.
    pub fn signing_tokens(&self, now_ms: i64) -> Vec<&Secret<String>> {
        let mut tokens = vec![&self.auth_token];
        if let (Some(prev), Some(until)) = (&self.previous_auth_token, self.previous_valid_until_ms)
            && now_ms < until
        {
            tokens.push(prev);
        }
        tokens
    }
}

/// Parses the credentials document. Errors name the problem, never the secret's text.
pub fn parse_credentials(text: &str) -> Result<TwilioCredentials, SecretError> {
    serde_json::from_str(text).map_err(|e| {
        SecretError::Invalid(format!(
            "the secret is not a credentials document ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::embedded::MemorySecretSource;
    use crate::ports::ManualClock;

    fn creds(key: &str) -> TwilioCredentials {
        TwilioCredentials {
            account_sid: "AC1".into(),
            api_key_sid: key.into(),
            api_key_secret: Secret::new("s".into()),
            auth_token: Secret::new("t".into()),
            previous_auth_token: None,
            previous_valid_until_ms: None,
        }
    }

    #[tokio::test]
    async fn refreshes_on_demand_at_most_once_per_window() {
        let source = Arc::new(MemorySecretSource::new(creds("SK1")));
        let clock = Arc::new(ManualClock::new(1_000_000));
        let cache =
            CredentialCache::new(source.clone(), clock.clone(), 300_000).with_min_refresh_ms(5_000);
        assert_eq!(cache.get().await.unwrap().api_key_sid, "SK1");
        source.set(creds("SK2"));
        assert_eq!(cache.get().await.unwrap().api_key_sid, "SK1", "cached");
        assert!(
            cache.invalidate().await,
            "the first refresh on demand happens"
        );
        assert_eq!(cache.get().await.unwrap().api_key_sid, "SK2");
        source.set(creds("SK3"));
        assert!(
            !cache.invalidate().await,
            "a second one within the window does not"
        );
        assert_eq!(cache.get().await.unwrap().api_key_sid, "SK2");
        clock.advance(5_000);
        assert!(cache.invalidate().await);
        assert_eq!(cache.get().await.unwrap().api_key_sid, "SK3");
        source.set(creds("SK4"));
        cache.clear().await;
        assert_eq!(cache.get().await.unwrap().api_key_sid, "SK4");
    }

    #[test]
    fn the_previous_token_signs_only_within_its_window() {
        let mut c = creds("SK1");
        assert_eq!(c.signing_tokens(0).len(), 1);
        c.previous_auth_token = Some(Secret::new("old".into()));
        c.previous_valid_until_ms = Some(10_000);
        let t: Vec<&str> = c
            .signing_tokens(9_999)
            .iter()
            .map(|s| s.expose().as_str())
            .collect();
        assert_eq!(t, ["t", "old"]);
        assert_eq!(c.signing_tokens(10_000).len(), 1);
        c.previous_valid_until_ms = None;
        assert_eq!(c.signing_tokens(0).len(), 1, "no window, no previous token");
    }

    #[test]
    fn old_documents_parse_and_new_fields_are_left_out_when_empty() {
        let text =
            r#"{"account_sid":"AC1","api_key_sid":"SK1","api_key_secret":"s","auth_token":"t"}"#;
        let c = parse_credentials(text).unwrap();
        assert_eq!(c.previous_auth_token, None);
        assert_eq!(serde_json::to_string(&c).unwrap(), text);
        let mut c2 = c.clone();
        c2.previous_auth_token = Some(Secret::new("old-token".into()));
        c2.previous_valid_until_ms = Some(5);
        assert!(!format!("{c2:?}").contains("old-token"));
        assert_eq!(
            parse_credentials(&serde_json::to_string(&c2).unwrap()).unwrap(),
            c2
        );
    }
}

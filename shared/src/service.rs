//! The services every handler shares, built once per process (per Lambda cold start, or once for
//! the local runner) and passed to the handlers by reference.

use std::sync::Arc;

use crate::config::Config;
use crate::crypto::Vault;
use crate::ports::{
    CallStore, Clock, EventStore, KeyService, Keyring, MessageStore, OptOutStore, Queue,
    SecretSource, SidOwners,
};
use crate::templates::Templates;
use crate::twilio::{Client, CredentialCache, TwilioError};

/// The adapters a deployment provides (AWS or embedded).
#[derive(Clone)]
pub struct Adapters {
    /// Messages.
    pub messages: Arc<dyn MessageStore>,
    /// Voice calls.
    pub calls: Arc<dyn CallStore>,
    /// Events and webhook dedupe.
    pub events: Arc<dyn EventStore>,
    /// Opt-outs (STOP / START) by lookup token.
    pub opt_outs: Arc<dyn OptOutStore>,
    /// Where the lookup-token key is kept.
    pub keyring: Arc<dyn Keyring>,
    /// Data keys.
    pub keys: Arc<dyn KeyService>,
    /// Twilio credentials.
    pub secrets: Arc<dyn SecretSource>,
    /// One job per message of a batch.
    pub send_queue: Arc<dyn Queue>,
    /// The next attempts, delayed.
    pub retry_queue: Arc<dyn Queue>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Rate limits, idempotency keys, verifications and queries by caller.
    pub protection: Arc<dyn crate::ports::ProtectionStore>,
    /// Which record owns each Twilio SID.
    pub sid_owners: Arc<dyn SidOwners>,
}

/// Failure injection for the local runner's soak test: the probability that a sender "dies"
/// after claiming an attempt (before Twilio is called), or after Twilio accepted the message
/// (before the result is recorded); and, for tests, a point where a send request dies. Always
/// zero (and `None`) on AWS.
#[derive(Debug, Default)]
pub struct Chaos {
    /// Crash after the claim, before Twilio.
    pub crash_after_claim: f64,
    /// Crash after Twilio accepted, before recording.
    pub crash_after_send: f64,
    /// Where a `POST` that sends dies, deterministically (tests): nothing after that point
    /// happens, not even keeping its answer under its `Idempotency-Key`, and the invocation
    /// fails, as a Lambda timeout or a killed process leaves it.
    pub crash_at: Option<CrashPoint>,
    /// The soak's control run only (`herald soak --control-legacy-match`): resolve an unknown
    /// outcome by the rule Herald had before SID ownership, adopting the first resource at
    /// Twilio with the record's To and text whoever sent it. The soak must fail with it: that
    /// is what shows its checks can see a lost alert reported as delivered.
    pub legacy_match: bool,
}

/// A point where a send request dies ([`Chaos::crash_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Once the request has recorded this many new messages, calls or verifications (a single
    /// send: `1`, before Twilio is called; a batch: before any of its jobs is enqueued; a
    /// verification: `1` once the verification is recorded, `2` once its SMS is too, before
    /// Twilio is called).
    Recorded(usize),
    /// Once a batch has put the jobs of this many messages on the send queue (jobs go in
    /// chunks of ten: the chunk that reaches it is sent).
    Enqueued(usize),
    /// After the request's work, before its answer is kept under its `Idempotency-Key`.
    Answered,
}

impl Chaos {
    /// Whether to crash now, with probability `p`.
    pub fn strike(p: f64) -> bool {
        p > 0.0 && rand::random::<f64>() < p
    }

    /// Whether a send request dies at `point` ([`Chaos::crash_at`]).
    pub fn crashes_at(&self, point: CrashPoint) -> bool {
        self.crash_at == Some(point)
    }

    /// What a request that died at a [`CrashPoint`] leaves: a response marked as a death, which
    /// no one keeps and the handler turns into a failed invocation ([`Chaos::is_death`]).
    pub fn death() -> http::Response<String> {
        let mut resp = http::Response::new(String::new());
        *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        resp.extensions_mut().insert(crate::delivery::Crashed);
        resp
    }

    /// Whether `resp` is a request's death ([`Chaos::death`]).
    pub fn is_death<B>(resp: &http::Response<B>) -> bool {
        resp.extensions()
            .get::<crate::delivery::Crashed>()
            .is_some()
    }
}

/// Everything a handler needs. Cheap to share: build once, pass `&Services`.
pub struct Services {
    /// Validated configuration.
    pub config: Config,
    /// Messages.
    pub messages: Arc<dyn MessageStore>,
    /// Voice calls.
    pub calls: Arc<dyn CallStore>,
    /// Events and webhook dedupe.
    pub events: Arc<dyn EventStore>,
    /// Opt-outs (STOP / START) by lookup token.
    pub opt_outs: Arc<dyn OptOutStore>,
    /// Seals personal data and makes lookup tokens.
    pub vault: Vault,
    /// The pooled Twilio client.
    pub twilio: Client,
    /// The cached Twilio credentials.
    pub credentials: CredentialCache,
    /// Message templates, compiled once.
    pub templates: Templates,
    /// One job per message of a batch.
    pub send_queue: Arc<dyn Queue>,
    /// The next attempts, delayed.
    pub retry_queue: Arc<dyn Queue>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Failure injection (local soak only).
    pub chaos: Chaos,
    /// Rate-limit windows.
    pub rate_limits: Arc<dyn crate::ports::RateLimiter>,
    /// Idempotency keys.
    pub idempotency: Arc<dyn crate::ports::IdempotencyStore>,
    /// One-time-code verifications.
    pub verifications: Arc<dyn crate::ports::VerificationStore>,
    /// Messages by caller.
    pub queries: Arc<dyn crate::ports::MessageQueries>,
    /// Which record owns each Twilio SID: an adoption or a create registers it here first.
    pub sid_owners: Arc<dyn SidOwners>,
    /// Where the sweeper's walk through each backlog stands (in memory: a cold start walks from
    /// the oldest).
    pub sweep_cursors: crate::sweep_pages::SweepCursors,
}

/// Which features are switched on (`SMS_ENABLED`, `VOICE_ENABLED`), as `/health` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Features {
    /// `SMS_ENABLED`.
    pub sms_enabled: bool,
    /// `VOICE_ENABLED`.
    pub voice_enabled: bool,
}

impl Services {
    /// Runs a Twilio request with the cached credentials and, when Twilio answers that they are
    /// no longer good (20003/401: the key may have just been rotated), once more with the
    /// credentials read again. Every request that creates something at Twilio goes through here.
    pub async fn with_twilio<T, F, Fut>(&self, request: F) -> Result<T, TwilioError>
    where
        F: Fn(Arc<crate::ports::TwilioCredentials>) -> Fut,
        Fut: std::future::Future<Output = Result<T, TwilioError>>,
    {
        match request(self.credentials.get().await?).await {
            Err(e) if e.retry_class() == crate::twilio::RetryClass::RefreshCredentials => {
                self.credentials.invalidate().await;
                request(self.credentials.get().await?).await
            }
            other => other,
        }
    }

    /// Whether a send may be accepted now: `Some(problem)` (503) while the Twilio credentials
    /// cannot be read (the secret unset, or refused to this function's role), so that nothing
    /// is recorded that could not be sent; the caller retries. Asked before any rate-limit unit
    /// is taken ([`crate::protect::limits::admit_send`]). The credentials are cached, so this
    /// costs a Secrets Manager call only when the send would make it anyway.
    pub async fn refuse_unless_credentials(&self) -> Option<crate::problem::Problem> {
        let e = self.credentials.get().await.err()?;
        tracing::error!(error = %e, "Twilio credentials unavailable: request refused, nothing recorded");
        Some(
            crate::problem::Problem::new(crate::problem::ProblemKind::Unavailable).detail(
                "Twilio credentials cannot be read now; nothing was recorded, please retry",
            ),
        )
    }

    /// Builds the services over `adapters`. Nothing here does I/O: keys and credentials are
    /// fetched on first use.
    pub fn new(config: Config, adapters: Adapters) -> Result<Self, TwilioError> {
        let twilio = Client::new(&config.client_options())?;
        let ttl_ms = i64::try_from(config.credentials_ttl.as_millis()).unwrap_or(i64::MAX);
        Ok(Self {
            vault: Vault::new(adapters.keys, adapters.keyring, adapters.clock.clone()),
            credentials: CredentialCache::new(adapters.secrets, adapters.clock.clone(), ttl_ms),
            messages: adapters.messages,
            calls: adapters.calls,
            events: adapters.events,
            opt_outs: adapters.opt_outs,
            twilio,
            templates: Templates::builtin(),
            send_queue: adapters.send_queue,
            retry_queue: adapters.retry_queue,
            clock: adapters.clock,
            chaos: Chaos::default(),
            rate_limits: adapters.protection.clone(),
            idempotency: adapters.protection.clone(),
            verifications: adapters.protection.clone(),
            queries: adapters.protection,
            sid_owners: adapters.sid_owners,
            sweep_cursors: Default::default(),
            config,
        })
    }

    /// The feature toggles, for `/health`.
    pub fn features(&self) -> Features {
        Features {
            sms_enabled: self.config.sms_enabled,
            voice_enabled: self.config.voice_enabled,
        }
    }

    /// The status-callback URL Twilio is given for a call's attempt.
    pub fn call_status_callback(&self, id: &crate::domain::CallId, attempt: u32) -> String {
        format!(
            "{}/webhooks/twilio/call-status?cid={id}&a={attempt}",
            self.config.webhook_base_url
        )
    }

    /// The `<Gather action>` URL of a call's attempt (`repeat`: the prompt was said again).
    pub fn voice_gather_url(
        &self,
        id: &crate::domain::CallId,
        attempt: u32,
        repeat: bool,
    ) -> String {
        format!(
            "{}/webhooks/twilio/voice-gather?cid={id}&a={attempt}{}",
            self.config.webhook_base_url,
            if repeat { "&r=1" } else { "" }
        )
    }

    /// The status-callback URL Twilio is given for a message's attempt.
    pub fn message_status_callback(&self, id: &crate::domain::MessageId, attempt: u32) -> String {
        format!(
            "{}/webhooks/twilio/message-status?mid={id}&a={attempt}",
            self.config.webhook_base_url
        )
    }
}

//! The `credential-rotation` handler: Secrets Manager's four rotation steps for the Twilio
//! secret, each idempotent and safe to run twice.
//!
//! - **API key** ([`RotationMode::ApiKey`], the default): `createSecret` creates a Twilio API key
//!   (named after the rotation token) with the account's auth token and stores it `AWSPENDING`
//!   under the token; a key created before a crash is found again by its name and revoked,
//!   never leaked. `setSecret` has nothing to do (a new key works at once). `testSecret` proves
//!   the pending key against Twilio. `finishSecret` moves `AWSCURRENT` to the token (the old
//!   version becomes `AWSPREVIOUS`, its key still valid for functions that cached it) and
//!   revokes every key of the secret's versions that is no longer current or previous.
//! - **Auth token** ([`RotationMode::AuthToken`]): `createSecret` creates Twilio's secondary
//!   auth token and stores it `AWSPENDING` (a secondary created before a crash is simply
//!   replaced by the next one: Twilio keeps one). `finishSecret` stores the final document as
//!   `AWSCURRENT` (new primary, the old token as `previous_auth_token` valid for the grace
//!   window) and then promotes the secondary at Twilio, so the webhook receiver knows the new
//!   token before Twilio signs with it and accepts the old one for the grace window after.
//!   Versions are immutable, so the final document is a version of its own,
//!   [`promoted_version_id`] of the token; the token's version loses `AWSPENDING`.
//!
//! Every step first checks that rotation is enabled and that the token is the pending version
//! (or already done): otherwise it fails with a clear error and changes nothing.

use std::sync::Arc;

use aws_lambda_events::secretsmanager::SecretsManagerSecretRotationEvent;
use herald::ports::{
    AWSCURRENT, AWSPENDING, AWSPREVIOUS, Clock, SecretError, SecretMetadata, SecretVersions,
    TwilioCredentials,
};
use herald::twilio::credentials::parse_credentials;
use herald::twilio::{AccountAuth, Client, ClientOptions, TwilioError};

/// Twilio's Accounts API, where auth tokens are rotated.
pub const DEFAULT_ACCOUNTS_BASE_URL: &str = "https://accounts.twilio.com";

/// How long the previous auth token is accepted on webhooks after a promotion, by default.
pub const DEFAULT_AUTH_TOKEN_GRACE_SECS: u64 = 300;

/// A rotation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `createSecret`.
    Create,
    /// `setSecret`.
    Set,
    /// `testSecret`.
    Test,
    /// `finishSecret`.
    Finish,
}

impl Step {
    /// All four, in order.
    pub const ALL: [Step; 4] = [Step::Create, Step::Set, Step::Test, Step::Finish];

    /// The step's name in the event.
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "createSecret",
            Self::Set => "setSecret",
            Self::Test => "testSecret",
            Self::Finish => "finishSecret",
        }
    }

    /// The step named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What a rotation replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RotationMode {
    /// A new API key (the default).
    #[default]
    ApiKey,
    /// A new auth token (secondary, then promoted).
    AuthToken,
}

impl RotationMode {
    /// `api-key` or `auth-token`, as `ROTATION_MODE` names it.
    pub fn name(self) -> &'static str {
        match self {
            Self::ApiKey => "api-key",
            Self::AuthToken => "auth-token",
        }
    }

    /// `api-key` or `auth-token`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "" | "api-key" => Some(Self::ApiKey),
            "auth-token" => Some(Self::AuthToken),
            _ => None,
        }
    }
}

/// Why a step failed. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The event names a step that does not exist (which it named is not quoted: it is the
    /// event's text).
    #[error("the event names no rotation step (createSecret, setSecret, testSecret, finishSecret)")]
    UnknownStep,
    /// Rotation is not enabled for the secret.
    #[error("rotation is not enabled for the secret")]
    RotationDisabled,
    /// The token is not a version of the secret.
    #[error("the token {0} is not a version of the secret")]
    UnknownVersion(String),
    /// The token is a version, but neither pending nor current.
    #[error("the version {0} is not staged AWSPENDING for rotation")]
    NotPending(String),
    /// A step found the secret in a state it cannot go on from.
    #[error("{0}")]
    State(String),
    /// The secret store failed.
    #[error("secret store: {0}")]
    Secret(#[from] SecretError),
    /// Twilio refused or failed.
    #[error("Twilio: {0}")]
    Twilio(#[from] TwilioError),
}

/// The configuration of the rotation function.
#[derive(Debug, Clone)]
pub struct RotationConfig {
    /// `TWILIO_API_BASE_URL`.
    pub api_base_url: String,
    /// `TWILIO_ACCOUNTS_BASE_URL`.
    pub accounts_base_url: String,
    /// `ROTATION_MODE`: `api-key` (default) or `auth-token`.
    pub mode: RotationMode,
    /// `AUTH_TOKEN_GRACE_SECS`, in milliseconds.
    pub grace_ms: i64,
    /// `TWILIO_REQUEST_TIMEOUT_SECS`.
    pub request_timeout: std::time::Duration,
}

impl RotationConfig {
    /// Reads the configuration through `get` (the environment, or a map in tests); a malformed
    /// variable is an error naming it.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let secs = |k: &str, default: u64| -> Result<u64, String> {
            var(k).map_or(Ok(default), |v| {
                v.parse::<u64>()
                    .map_err(|_| format!("{k}: not a whole number of seconds"))
            })
        };
        let mode = match var("ROTATION_MODE") {
            None => RotationMode::ApiKey,
            Some(m) => RotationMode::parse(&m)
                .ok_or_else(|| "ROTATION_MODE: api-key or auth-token".to_owned())?,
        };
        let grace = secs("AUTH_TOKEN_GRACE_SECS", DEFAULT_AUTH_TOKEN_GRACE_SECS)?;
        Ok(Self {
            api_base_url: var("TWILIO_API_BASE_URL")
                .unwrap_or_else(|| "https://api.twilio.com".to_owned()),
            accounts_base_url: var("TWILIO_ACCOUNTS_BASE_URL")
                .unwrap_or_else(|| DEFAULT_ACCOUNTS_BASE_URL.to_owned()),
            mode,
            grace_ms: i64::try_from(grace.saturating_mul(1000)).unwrap_or(i64::MAX),
            request_timeout: std::time::Duration::from_secs(secs(
                "TWILIO_REQUEST_TIMEOUT_SECS",
                10,
            )?),
        })
    }
}

/// What the rotation needs: the Twilio client, where the Accounts API is, time, the mode and
/// the grace window. Build once per process.
#[derive(Clone)]
pub struct Rotator {
    /// The Twilio REST client.
    pub twilio: Client,
    /// Where `/v1/AuthTokens/…` are.
    pub accounts_base_url: String,
    /// Time (the grace window's start).
    pub clock: Arc<dyn Clock>,
    /// What to rotate.
    pub mode: RotationMode,
    /// How long the previous auth token stays valid after a promotion.
    pub grace_ms: i64,
}

impl std::fmt::Debug for Rotator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotator")
            .field("accounts_base_url", &self.accounts_base_url)
            .field("mode", &self.mode)
            .field("grace_ms", &self.grace_ms)
            .finish_non_exhaustive()
    }
}

impl Rotator {
    /// A rotator from `config`.
    pub fn new(config: &RotationConfig, clock: Arc<dyn Clock>) -> Result<Self, TwilioError> {
        Ok(Self {
            twilio: Client::new(&ClientOptions {
                base_url: config.api_base_url.clone(),
                connect_timeout: std::time::Duration::from_secs(3),
                request_timeout: config.request_timeout,
            })?,
            accounts_base_url: config.accounts_base_url.clone(),
            clock,
            mode: config.mode,
            grace_ms: config.grace_ms,
        })
    }

    /// The same rotator, rotating `mode`.
    pub fn with_mode(&self, mode: RotationMode) -> Self {
        Self {
            mode,
            ..self.clone()
        }
    }
}

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The step changed something (at Twilio or in the secret).
    Changed,
    /// Nothing to do: done before, or nothing to do in this mode.
    Unchanged,
}

/// The version an auth-token rotation's final document is stored under.
pub fn promoted_version_id(token: &str) -> String {
    format!("{token}-promoted")
}

/// The `FriendlyName` of the API key a rotation creates: names the token, at most 64
/// characters.
pub fn key_name(token: &str) -> String {
    const PREFIX: &str = "herald-rotation ";
    if PREFIX.len() + token.len() <= 64 {
        format!("{PREFIX}{token}")
    } else {
        use sha2::Digest;
        format!(
            "{PREFIX}{}",
            &hex::encode(sha2::Sha256::digest(token.as_bytes()))[..40]
        )
    }
}

/// Handles one rotation event for `secret`.
pub async fn handle(
    r: &Rotator,
    secret: &dyn SecretVersions,
    event: &SecretsManagerSecretRotationEvent,
) -> Result<Outcome, RotationError> {
    let step = Step::parse(&event.step).ok_or_else(|| RotationError::UnknownStep)?;
    let result = run_step(r, secret, step, &event.client_request_token).await;
    match &result {
        // A rotation is done when its finishSecret changes the current version.
        Ok(Outcome::Changed) if step == Step::Finish => {
            herald::telemetry::metric("Rotations", 1.0, "Count", &[("Mode", r.mode.name())]);
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(step = step.name(), error = %e, "rotation step failed");
            herald::telemetry::metric("RotationFailures", 1.0, "Count", &[("Step", step.name())]);
        }
    }
    result
}

/// Runs `step` of the rotation `token`.
pub async fn run_step(
    r: &Rotator,
    secret: &dyn SecretVersions,
    step: Step,
    token: &str,
) -> Result<Outcome, RotationError> {
    let outcome = match preamble(secret, token).await? {
        Preamble::Done if step == Step::Finish => finish(r, secret, token).await?,
        Preamble::Done => Outcome::Unchanged,
        Preamble::Pending => match step {
            Step::Create => create(r, secret, token).await?,
            Step::Set => {
                pending(secret, token).await?;
                Outcome::Unchanged
            }
            Step::Test => test(r, secret, token).await?,
            Step::Finish => finish(r, secret, token).await?,
        },
    };
    tracing::info!(step = step.name(), version = token, mode = ?r.mode, ?outcome, "rotation step");
    Ok(outcome)
}

enum Preamble {
    /// The token (or its promoted version) is current.
    Done,
    /// The token is staged AWSPENDING.
    Pending,
}

async fn preamble(secret: &dyn SecretVersions, token: &str) -> Result<Preamble, RotationError> {
    let meta: SecretMetadata = secret.describe().await?;
    if !meta.rotation_enabled {
        return Err(RotationError::RotationDisabled);
    }
    if meta.has_stage(token, AWSCURRENT) || meta.has_stage(&promoted_version_id(token), AWSCURRENT)
    {
        return Ok(Preamble::Done);
    }
    match meta.versions.get(token) {
        None => Err(RotationError::UnknownVersion(token.to_owned())),
        Some(stages) if stages.iter().any(|s| s == AWSPENDING) => Ok(Preamble::Pending),
        Some(_) => Err(RotationError::NotPending(token.to_owned())),
    }
}

async fn doc_of(
    secret: &dyn SecretVersions,
    stage: &str,
) -> Result<Option<TwilioCredentials>, RotationError> {
    Ok(match secret.get_by_stage(stage).await? {
        Some(v) => Some(parse_credentials(v.text.expose())?),
        None => None,
    })
}

async fn current(secret: &dyn SecretVersions) -> Result<TwilioCredentials, RotationError> {
    doc_of(secret, AWSCURRENT)
        .await?
        .ok_or_else(|| RotationError::State("the secret has no current value".into()))
}

async fn pending(
    secret: &dyn SecretVersions,
    token: &str,
) -> Result<TwilioCredentials, RotationError> {
    match secret.get_version(token).await? {
        Some(v) => Ok(parse_credentials(v.text.expose())?),
        None => Err(RotationError::State(format!(
            "createSecret has not stored version {token} yet"
        ))),
    }
}

fn to_text(c: &TwilioCredentials) -> String {
    serde_json::to_string(c).expect("credentials serialise")
}

async fn create(
    r: &Rotator,
    secret: &dyn SecretVersions,
    token: &str,
) -> Result<Outcome, RotationError> {
    if secret.get_version(token).await?.is_some() {
        return Ok(Outcome::Unchanged);
    }
    let cur = current(secret).await?;
    let auth = AccountAuth::of(&cur);
    let mut next = cur.clone();
    let now = r.clock.now_ms();
    if next
        .previous_valid_until_ms
        .is_none_or(|until| now >= until)
    {
        next.previous_auth_token = None;
        next.previous_valid_until_ms = None;
    }
    match r.mode {
        RotationMode::ApiKey => {
            // A key made for this token before a crash has a secret nobody kept: revoke it.
            let name = key_name(token);
            for k in r.twilio.list_keys(auth).await? {
                if k.friendly_name.as_deref() == Some(name.as_str()) {
                    r.twilio.delete_key(auth, &k.sid).await?;
                    tracing::warn!(key = %k.sid, "revoked a key an interrupted createSecret made");
                }
            }
            let key = r.twilio.create_key(auth, &name).await?;
            next.api_key_sid = key.sid.clone();
            next.api_key_secret = key.secret;
            if let Err(e) = secret
                .put_version(token, &to_text(&next), &[AWSPENDING])
                .await
            {
                // Not stored: the key must not outlive this attempt.
                if let Err(revoke) = r.twilio.delete_key(auth, &key.sid).await {
                    tracing::error!(key = %key.sid, error = %revoke, "could not revoke an unstored key; the next createSecret will");
                }
                return Err(e.into());
            }
        }
        RotationMode::AuthToken => {
            // Twilio keeps one secondary token: one made before a crash is replaced here.
            next.auth_token = r
                .twilio
                .create_secondary_auth_token(&r.accounts_base_url, auth)
                .await?;
            next.previous_auth_token = None;
            next.previous_valid_until_ms = None;
            secret
                .put_version(token, &to_text(&next), &[AWSPENDING])
                .await?;
        }
    }
    Ok(Outcome::Changed)
}

async fn test(
    r: &Rotator,
    secret: &dyn SecretVersions,
    token: &str,
) -> Result<Outcome, RotationError> {
    // A rotation schedule created or changed with `RotateImmediatelyOnUpdate: false` (the
    // template's) makes Secrets Manager test the configuration: it stages an empty AWSPENDING
    // version and calls testSecret alone, before any createSecret. Refusing it would fail the
    // stack's TwilioSecretRotation. In a real rotation createSecret has always stored the value
    // first (Secrets Manager stops at a failed step), so an empty version is only ever that test.
    if secret
        .get_version(token)
        .await?
        .is_none_or(|v| v.text.expose().trim().is_empty())
    {
        tracing::info!(
            version = token,
            "rotation configuration test: the function is reachable"
        );
        return Ok(Outcome::Unchanged);
    }
    let next = pending(secret, token).await?;
    r.twilio.probe_key(&next).await?;
    if r.mode == RotationMode::AuthToken {
        // The secondary token works only once promoted; the primary must still work until then.
        let cur = current(secret).await?;
        r.twilio.fetch_account(AccountAuth::of(&cur)).await?;
    }
    Ok(Outcome::Unchanged)
}

async fn finish(
    r: &Rotator,
    secret: &dyn SecretVersions,
    token: &str,
) -> Result<Outcome, RotationError> {
    let mut outcome = Outcome::Unchanged;
    let meta = secret.describe().await?;
    match r.mode {
        RotationMode::ApiKey => {
            if !meta.has_stage(token, AWSCURRENT) {
                pending(secret, token).await?;
                secret.move_stage(AWSCURRENT, token).await?;
                outcome = Outcome::Changed;
            }
        }
        RotationMode::AuthToken => {
            let promoted = promoted_version_id(token);
            if !meta.has_stage(&promoted, AWSCURRENT) {
                let next = pending(secret, token).await?;
                let cur = current(secret).await?;
                let fin = TwilioCredentials {
                    previous_auth_token: Some(cur.auth_token.clone()),
                    previous_valid_until_ms: Some(r.clock.now_ms().saturating_add(r.grace_ms)),
                    ..next
                };
                secret
                    .put_version(&promoted, &to_text(&fin), &[AWSCURRENT])
                    .await?;
                outcome = Outcome::Changed;
            }
            let fin = current(secret).await?;
            if promote(r, &fin).await? {
                outcome = Outcome::Changed;
            }
        }
    }
    if meta.has_stage(token, AWSPENDING) {
        secret.remove_stage(AWSPENDING, token).await?;
        outcome = Outcome::Changed;
    }
    if revoke_stale_keys(r, secret).await? > 0 {
        outcome = Outcome::Changed;
    }
    Ok(outcome)
}

/// Makes `fin.auth_token` Twilio's primary; `false` when it was already.
async fn promote(r: &Rotator, fin: &TwilioCredentials) -> Result<bool, RotationError> {
    let new_auth = AccountAuth::of(fin);
    let old = fin
        .previous_auth_token
        .as_ref()
        .ok_or_else(|| RotationError::State("the final document has no previous token".into()))?;
    let old_auth = AccountAuth {
        account_sid: &fin.account_sid,
        auth_token: old,
    };
    match r
        .twilio
        .promote_auth_token(&r.accounts_base_url, old_auth)
        .await
    {
        Ok(t) if t.expose() == fin.auth_token.expose() => Ok(true),
        Ok(_) => Err(RotationError::State(
            "Twilio promoted a secondary token this rotation did not create".into(),
        )),
        Err(TwilioError::Api {
            status: 400 | 401 | 404,
            ..
        }) => {
            // Promoted before (the old token is refused, or no secondary is left): prove it.
            r.twilio.fetch_account(new_auth).await?;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Revokes every key named in a version of the secret, or created by a rotation, that is no
/// longer the current or previous version's key (nor a pending one's). Returns how many.
async fn revoke_stale_keys(
    r: &Rotator,
    secret: &dyn SecretVersions,
) -> Result<usize, RotationError> {
    let cur = current(secret).await?;
    let mut keep = vec![cur.api_key_sid.clone()];
    if let Some(prev) = doc_of(secret, AWSPREVIOUS).await? {
        keep.push(prev.api_key_sid);
    }
    if let Some(p) = doc_of(secret, AWSPENDING).await? {
        keep.push(p.api_key_sid);
    }
    let mut known = Vec::new();
    for version in secret.describe().await?.versions.keys() {
        if let Some(v) = secret.get_version(version).await?
            && let Ok(doc) = parse_credentials(v.text.expose())
        {
            known.push(doc.api_key_sid);
        }
    }
    let auth = AccountAuth::of(&cur);
    let mut revoked = 0;
    for k in r.twilio.list_keys(auth).await? {
        let ours = known.contains(&k.sid)
            || k.friendly_name
                .as_deref()
                .is_some_and(|n| n.starts_with("herald-rotation "));
        if ours && !keep.contains(&k.sid) && r.twilio.delete_key(auth, &k.sid).await? {
            tracing::info!(key = %k.sid, "revoked an API key no longer current or previous");
            revoked += 1;
        }
    }
    Ok(revoked)
}

/// A fresh rotation token (what `RotateSecret` generates): a random UUID-shaped string.
pub fn new_token() -> String {
    let h = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

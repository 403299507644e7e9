//! `herald rotate` and `herald rotation-drill`: credential rotation on the local stack.
//!
//! A rotation runs the `credential-rotation` handler's four steps against the stack's versioned
//! secret (SQLite) and the Twilio simulator, as Secrets Manager would: rotation enabled, a fresh
//! token staged `AWSPENDING`, then `createSecret`, `setSecret`, `testSecret`, `finishSecret`.
//! The drill sends a steady stream of messages (whose status callbacks the simulator posts to
//! the local webhook receiver) while it rotates the API key and then the auth token, and checks
//! that nothing failed and that the old credentials are refused afterwards.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use credential_rotation::{RotationMode, Step, run_step};
use herald::ports::{Clock, SecretSource, SystemClock, TwilioCredentials};
use herald::twilio::{AccountAuth, TwilioError, signature};
use serde::Serialize;

use crate::stack::{LocalStack, StackOptions};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct Rotated {
    /// `api-key` or `auth-token`.
    pub mode: &'static str,
    /// The version current afterwards: the rotation token (an auth-token rotation's final
    /// document is `{token}-promoted`).
    pub version: String,
    /// The API key current afterwards.
    pub api_key_sid: String,
}

/// Runs one whole rotation of the stack's secret in `mode`.
pub async fn rotate(stack: &LocalStack, mode: RotationMode) -> Result<Rotated, BoxError> {
    stack.secrets.set_rotation_enabled(true).await?;
    let token = credential_rotation::new_token();
    stack.secrets.start_rotation(&token).await?;
    let rotator = stack.rotator.with_mode(mode);
    for step in Step::ALL {
        run_step(&rotator, &stack.secrets, step, &token).await?;
    }
    Ok(Rotated {
        mode: match mode {
            RotationMode::ApiKey => "api-key",
            RotationMode::AuthToken => "auth-token",
        },
        version: herald::ports::SecretVersions::describe(&stack.secrets)
            .await?
            .version_with(herald::ports::AWSCURRENT)
            .unwrap_or(&token)
            .to_owned(),
        api_key_sid: stack.secrets.current().await?.api_key_sid,
    })
}

/// How to drill.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// Time between two sends.
    pub send_every: Duration,
    /// Sending before, between and after the rotations (longer than the credentials cache).
    pub phase: Duration,
    /// The grace window of the previous auth token.
    pub grace: Duration,
    /// How long the services cache the secret, in seconds.
    pub cache_secs: u64,
    /// The simulator's delay before each callback.
    pub callback_latency_ms: u64,
    /// The simulator's time between signing a callback and posting it: callbacks signed just
    /// before the promotion arrive after it, signed with the old token.
    pub callback_in_flight_ms: u64,
}

impl Default for DrillOptions {
    fn default() -> Self {
        Self {
            send_every: Duration::from_millis(25),
            phase: Duration::from_millis(1500),
            grace: Duration::from_secs(2),
            cache_secs: 1,
            callback_latency_ms: 100,
            callback_in_flight_ms: 300,
        }
    }
}

/// What the drill found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DrillReport {
    /// Rotations run (API key, then auth token).
    pub rotations: u32,
    /// Messages Herald accepted (`201`).
    pub sent: usize,
    /// Sends Herald did not accept.
    pub failed_sends: usize,
    /// Genuine status callbacks (the simulator's) Herald answered 403.
    pub rejected_genuine_callbacks: usize,
    /// Twilio refuses the API key that was current before the drill.
    pub old_key_revoked: bool,
    /// After the grace window, Herald refuses a callback signed with the old auth token (and
    /// accepts the same one signed with the new token), and Twilio refuses the old token.
    pub old_token_rejected_after_grace: bool,
}

impl DrillReport {
    /// Whether the rotation had zero downtime and the old credentials are dead.
    pub fn ok(&self) -> bool {
        self.sent > 0
            && self.failed_sends == 0
            && self.rejected_genuine_callbacks == 0
            && self.old_key_revoked
            && self.old_token_rejected_after_grace
    }
}

/// Runs the drill on a local stack of its own in `dir`.
pub async fn drill(dir: &Path, opts: &DrillOptions) -> Result<DrillReport, BoxError> {
    let mut so = StackOptions::new(dir);
    so.env
        .push(("CREDENTIALS_CACHE_SECS".into(), opts.cache_secs.to_string()));
    // A steady stream from one caller to one number: lift the abuse limits for the drill.
    for (k, v) in [
        ("CALLER_RATE_LIMIT_PER_MINUTE", "1000000"),
        ("RECIPIENT_LIMIT_PER_HOUR", "1000000"),
        ("RECIPIENT_LIMIT_PER_DAY", "1000000"),
        ("COUNTRY_LIMIT_PER_HOUR", "1000000"),
    ] {
        so.env.push((k.into(), v.into()));
    }
    so.callback_latency_ms = opts.callback_latency_ms;
    so.callback_in_flight_ms = opts.callback_in_flight_ms;
    so.auth_token_grace = opts.grace;
    let stack = LocalStack::start(&so).await?;
    let result = drill_on(&stack, opts).await;
    stack.shutdown().await;
    result
}

async fn drill_on(stack: &LocalStack, opts: &DrillOptions) -> Result<DrillReport, BoxError> {
    let old: TwilioCredentials = stack.secrets.current().await?;
    let http = reqwest::Client::new();

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let sender = {
        let (stop, sent, failed, http) = (stop.clone(), sent.clone(), failed.clone(), http.clone());
        let (url, every) = (format!("{}/v1/messages", stack.api_url), opts.send_every);
        let key = stack.api_key.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let body = serde_json::json!({"to": "+14155552671", "body": format!("drill {n}")});
                match http.post(&url).bearer_auth(&key).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 201 => sent.fetch_add(1, Ordering::SeqCst),
                    Ok(r) => {
                        tracing::warn!(status = r.status().as_u16(), "drill send failed");
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "drill send failed");
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
                tokio::time::sleep(every).await;
            }
        })
    };

    // Load the workload, rotate the key, let every cache expire, rotate the token.
    tokio::time::sleep(opts.phase).await;
    rotate(stack, RotationMode::ApiKey).await?;
    tokio::time::sleep(opts.phase).await;
    rotate(stack, RotationMode::AuthToken).await?;
    tokio::time::sleep(opts.phase).await;
    stop.store(true, Ordering::SeqCst);
    sender.await?;
    stack.sim.wait_idle().await;

    let rejected_genuine_callbacks = stack
        .sim
        .callbacks()
        .iter()
        .filter(|c| c.delivery.response_status == Some(403))
        .count();

    let old_key_revoked = matches!(
        stack.rotator.twilio.probe_key(&old).await,
        Err(TwilioError::Api { status: 401, .. })
    );

    // Wait out the grace window, then replay a genuine callback signed with each token.
    let now: TwilioCredentials = stack.secrets.current().await?;
    let until = now.previous_valid_until_ms.unwrap_or(0);
    let wait_ms = until.saturating_sub(SystemClock.now_ms()).max(0) + 50;
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0))).await;
    let Some(genuine) = stack.sim.callbacks().into_iter().last() else {
        return Err("the simulator made no callbacks".into());
    };
    let post = |token: &str| {
        let sig = signature::compute(
            token,
            &genuine.delivery.signed_url,
            genuine
                .delivery
                .params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        http.post(&genuine.delivery.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", sig)
            .body(genuine.body.clone())
            .send()
    };
    let with_old = post(old.auth_token.expose()).await?.status().as_u16();
    let with_new = post(now.auth_token.expose()).await?.status().as_u16();
    let twilio_refuses_old = stack
        .rotator
        .twilio
        .fetch_account(AccountAuth::of(&old))
        .await
        .is_err();
    let old_token_rejected_after_grace = with_old == 403
        && with_new == 200
        && twilio_refuses_old
        && old.auth_token != now.auth_token;

    Ok(DrillReport {
        rotations: 2,
        sent: sent.load(Ordering::SeqCst),
        failed_sends: failed.load(Ordering::SeqCst),
        rejected_genuine_callbacks,
        old_key_revoked,
        old_token_rejected_after_grace,
    })
}

//! Caller rate limits and recipient rules (SMS pumping): per caller and endpoint per minute;
//! per number per hour and per day (counted by lookup token, never by number); a country
//! allow-list; a velocity cap per country per hour. Each refusal is problem+json with its own
//! `type`, a `Retry-After` where waiting helps, and a `ProtectionRefusals` metric.

use crate::crypto::LookupToken;
use crate::phone::PhoneNumber;
use crate::ports::{Acquired, StoreError};
use crate::problem::{Problem, ProblemKind};
use crate::protect::Endpoint;
use crate::service::Services;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Counts a refusal by rule (CloudWatch metric `ProtectionRefusals`, dimension `Rule`).
pub fn count_refusal(kind: ProblemKind) {
    crate::telemetry::metric("ProtectionRefusals", 1.0, "Count", &[("Rule", kind.slug())]);
    tracing::warn!(
        rule = kind.slug(),
        "request refused by the API's protection"
    );
}

fn store_failed(e: &StoreError) -> Problem {
    tracing::error!(error = %e, "rate limiter unavailable");
    Problem::new(ProblemKind::Unavailable).detail("please retry")
}

/// A refusal of `kind` that may be retried in `retry_after_ms`.
fn limited(kind: ProblemKind, retry_after_ms: i64, detail: String) -> Problem {
    count_refusal(kind);
    let mut p = Problem::new(kind).detail(detail);
    let secs = u32::try_from((retry_after_ms + 999) / 1000).unwrap_or(u32::MAX);
    p.retry_after_secs = std::num::NonZeroU32::new(secs.max(1));
    p
}

/// Admits a `POST` that sends at once through Twilio (`POST /v1/messages`, `/v1/calls`,
/// `/v1/verifications`): `503` while the Twilio credentials cannot be read
/// ([`Services::refuse_unless_credentials`]), before any rate-limit unit is taken, so that a
/// request refused for them uses up none of the caller's, the number's or the country's
/// budget; then [`check_caller`]. The credentials are cached: checking them first costs no AWS
/// call a send would not make anyway.
pub async fn admit_send(svc: &Services, caller: &str, endpoint: Endpoint) -> Result<(), Problem> {
    if let Some(p) = svc.refuse_unless_credentials().await {
        return Err(p);
    }
    check_caller(svc, caller, endpoint).await
}

/// Takes one request of `caller` on `endpoint` from its per-minute budget; `429`
/// `caller-rate-limit` with `Retry-After` when it is spent.
pub async fn check_caller(svc: &Services, caller: &str, endpoint: Endpoint) -> Result<(), Problem> {
    let limit = svc.config.protection.caller_limit(endpoint);
    let key = format!("caller#{}#{caller}", endpoint.as_str());
    match svc
        .rate_limits
        .acquire(&key, limit, MINUTE_MS, svc.clock.now_ms())
        .await
    {
        Ok(Acquired::Allowed { .. }) => Ok(()),
        Ok(Acquired::Limited { retry_after_ms }) => Err(limited(
            ProblemKind::CallerRateLimited,
            retry_after_ms,
            format!("at most {limit} requests per minute to this endpoint"),
        )),
        Err(e) => Err(store_failed(&e)),
    }
}

/// The channel a recipient is reached on (its counters are kept apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// SMS.
    Sms,
    /// Voice calls.
    Voice,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Voice => "voice",
        }
    }
}

/// Whether Herald may reach `to` (lookup token `token`) now: its country is allowed, and the
/// number and its country are under their limits. Each check takes one unit, hourly first,
/// so a message refused for the hour does not use the day's budget. Refusals:
/// `422 country-not-allowed`, `429 recipient-hourly-limit`, `429 recipient-daily-limit`,
/// `429 country-velocity-limit`; the field is `to`.
pub async fn check_recipient(
    svc: &Services,
    channel: Channel,
    to: &PhoneNumber,
    token: &LookupToken,
) -> Result<(), Problem> {
    let cfg = &svc.config.protection;
    if !cfg.country_allowed(to.country()) {
        count_refusal(ProblemKind::CountryNotAllowed);
        return Err(Problem::new(ProblemKind::CountryNotAllowed)
            .field("to")
            .detail(format!(
                "Herald does not send to {} numbers",
                to.country().unwrap_or("non-geographic")
            )));
    }
    let now = svc.clock.now_ms();
    let ch = channel.as_str();
    let country = to.country().unwrap_or("XX");
    let rules = [
        (
            format!("recipient-hour#{ch}#{}", token.0),
            cfg.recipient_limit_per_hour,
            HOUR_MS,
            ProblemKind::RecipientHourlyLimit,
            format!(
                "at most {} per number per hour",
                cfg.recipient_limit_per_hour
            ),
        ),
        (
            format!("recipient-day#{ch}#{}", token.0),
            cfg.recipient_limit_per_day,
            DAY_MS,
            ProblemKind::RecipientDailyLimit,
            format!("at most {} per number per day", cfg.recipient_limit_per_day),
        ),
        (
            format!("country-hour#{ch}#{country}"),
            cfg.country_limit_per_hour,
            HOUR_MS,
            ProblemKind::CountryVelocityLimit,
            format!(
                "at most {} per hour to {country} numbers",
                cfg.country_limit_per_hour
            ),
        ),
    ];
    for (key, limit, window, kind, detail) in rules {
        match svc.rate_limits.acquire(&key, limit, window, now).await {
            Ok(Acquired::Allowed { .. }) => {}
            Ok(Acquired::Limited { retry_after_ms }) => {
                return Err(limited(kind, retry_after_ms, detail).field("to"));
            }
            Err(e) => return Err(store_failed(&e)),
        }
    }
    Ok(())
}

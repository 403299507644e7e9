//! One-time codes: `POST /v1/verifications {to}` sends a code by SMS (the `otp` template);
//! `POST /v1/verifications/{id}/check {code}` checks it; `GET /v1/verifications/{id}` shows
//! where it is.
//!
//! The code comes from the thread CSPRNG (`rand::rng()`, seeded from the OS), has
//! `OTP_LENGTH` digits, and is stored only as a keyed hash (HMAC under the keyring's lookup
//! key, bound to the verification id); the SMS that carries it is stored sealed like every
//! body. Codes never appear in logs, records or answers. A code is valid `OTP_TTL_SECS`; at
//! most `OTP_MAX_SENDS` codes go to one number per `OTP_SEND_WINDOW_SECS`; after
//! `OTP_MAX_CHECKS` wrong codes the verification locks (`429`); expired or approved: `410`.

use std::sync::Mutex;

use herald::delivery::{self, Delivery};
use herald::domain::verification::CheckOutcome;
use herald::domain::{Verification, VerificationId, VerificationStatus};
use herald::ports::{Acquired, StoreError, VerificationApplied};
use herald::problem::{self, Problem, ProblemKind};
use herald::protect::limits;
use herald::service::Services;
use herald::templates;
use lambda_http::Request;
use rand::Rng;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{Validated, invalid, rfc3339, unavailable};

/// The id of `POST /v1/verifications/{id}/check`, if `path` is that route.
pub fn check_route(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/verifications/")?
        .strip_suffix("/check")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// A fresh code of `len` digits from the thread CSPRNG.
fn fresh_code(len: u32) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

async fn code_hash(svc: &Services, id: &VerificationId, code: &str) -> Result<String, Problem> {
    svc.vault
        .keyed_hash("otp", format!("{id}:{code}").as_bytes())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "keyed hash unavailable");
            Problem::new(ProblemKind::Unavailable).detail("please retry")
        })
}

/// What the API shows of a verification (never the code or its hash).
#[derive(Debug, Serialize)]
struct View {
    id: VerificationId,
    to: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    checks_left: u32,
    created_at: String,
    expires_at: String,
}

fn view(svc: &Services, v: &Verification) -> View {
    let max = svc.config.protection.otp_max_checks;
    let status = match v.status {
        VerificationStatus::Pending if v.is_expired(svc.clock.now_ms()) => "expired",
        s => s.as_str(),
    };
    View {
        id: v.id.clone(),
        to: v.to_masked.clone(),
        status,
        message_id: v.message_id.as_ref().map(ToString::to_string),
        checks_left: max.saturating_sub(v.failed_checks),
        created_at: rfc3339(v.created_at_ms),
        expires_at: rfc3339(v.expires_at_ms),
    }
}

/// `POST /v1/verifications`.
pub async fn start(svc: &Services, req: &Request, caller: &str) -> http::Response<String> {
    if !svc.config.sms_enabled {
        return Problem::new(ProblemKind::FeatureDisabled)
            .detail("SMS sending is disabled")
            .into_response();
    }
    let obj = match serde_json::from_slice::<Value>(req.body().as_ref()) {
        Ok(Value::Object(o)) => o,
        _ => {
            return Problem::new(ProblemKind::MalformedRequest)
                .detail("the body must be a JSON object")
                .into_response();
        }
    };
    if let Some(unknown) = obj
        .keys()
        .find(|k| !["to", "service"].contains(&k.as_str()))
    {
        return invalid(ProblemKind::InvalidField, unknown, "unknown field").into_response();
    }
    let to = match obj.get("to") {
        Some(Value::String(s)) => s,
        _ => return invalid(ProblemKind::InvalidField, "to", "to is required").into_response(),
    };
    let service = match obj.get("service") {
        None | Some(Value::Null) => "Herald",
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 30 => s.as_str(),
        Some(_) => {
            return invalid(ProblemKind::InvalidField, "service", "1 to 30 characters")
                .into_response();
        }
    };
    let to = match herald::phone::parse(to) {
        Ok(t) => t,
        Err(e) => {
            return invalid(ProblemKind::InvalidPhoneNumber, "to", e.to_string()).into_response();
        }
    };
    let cfg = &svc.config.protection;
    let token = match crate::reachable(svc, &to).await {
        Ok(t) => t,
        Err(p) => return p.into_response(),
    };
    let now = svc.clock.now_ms();
    let window = i64::try_from(cfg.otp_send_window.as_millis()).unwrap_or(i64::MAX);
    match svc
        .rate_limits
        .acquire(&format!("otp#{}", token.0), cfg.otp_max_sends, window, now)
        .await
    {
        Ok(Acquired::Allowed { .. }) => {}
        Ok(Acquired::Limited { retry_after_ms }) => {
            limits::count_refusal(ProblemKind::VerificationSendLimit);
            let mut p = Problem::new(ProblemKind::VerificationSendLimit)
                .field("to")
                .detail(format!(
                    "at most {} codes per number per {} minutes",
                    cfg.otp_max_sends,
                    window / 60_000
                ));
            let secs = u32::try_from((retry_after_ms + 999) / 1000).unwrap_or(u32::MAX);
            p.retry_after_secs = std::num::NonZeroU32::new(secs.max(1));
            return p.into_response();
        }
        Err(e) => return unavailable(&e),
    }

    let id = VerificationId::generate(u64::try_from(now).unwrap_or_default());
    let code = fresh_code(cfg.otp_length);
    let hash = match code_hash(svc, &id, &code).await {
        Ok(h) => h,
        Err(p) => return p.into_response(),
    };
    let ttl = i64::try_from(cfg.otp_ttl.as_millis()).unwrap_or(i64::MAX);
    let mut vars = Map::new();
    vars.insert("service".into(), json!(service));
    vars.insert("code".into(), json!(code));
    vars.insert("minutes".into(), json!((ttl + 59_999) / 60_000));
    let body = match svc.templates.render("otp", &vars) {
        Ok(b) => b,
        Err(_) => {
            return invalid(
                ProblemKind::InvalidField,
                "service",
                "cannot render the code SMS",
            )
            .into_response();
        }
    };
    drop(code);
    let info = templates::analyse(&body);
    let mut verification = Verification {
        id: id.clone(),
        caller: caller.to_owned(),
        to_token: token,
        to_masked: to.masked().to_string(),
        code_hash: hash,
        status: VerificationStatus::Pending,
        failed_checks: 0,
        message_id: None,
        created_at_ms: now,
        updated_at_ms: now,
        expires_at_ms: now.saturating_add(ttl),
    };
    if let Err(e) = svc.verifications.insert_verification(&verification).await {
        return unavailable(&e);
    }
    let v = Validated {
        to,
        body,
        template: Some("otp".to_owned()),
        encoding: info.encoding,
        segments: info.segments,
    };
    let message = match crate::record_new(svc, &v, caller, true, None).await {
        Ok(crate::Recorded::New(m)) => *m,
        // A fresh id is never taken.
        Ok(crate::Recorded::Exists) => return unavailable(&StoreError::Conflict),
        Err(e) => return unavailable(&*e),
    };
    drop(v);
    let mid = message.id.clone();
    let linked = mid.clone();
    match svc
        .verifications
        .update_verification(&id, &move |cur: &Verification| {
            let mut next = cur.clone();
            next.message_id = Some(linked.clone());
            Some(next)
        })
        .await
    {
        Ok(VerificationApplied::Applied(v)) => verification = v,
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, verification_id = %id, "could not link the message"),
    }
    tracing::info!(verification_id = %id, message_id = %mid, "verification code sent");
    match delivery::attempt_send(svc, &message).await {
        Delivery::Failed(code) => {
            let mut p = Problem::new(ProblemKind::TwilioRejected)
                .detail(code.map_or("Twilio refused the message", herald::twilio::describe_code))
                .field("to");
            p.message_id = Some(mid.to_string());
            p.twilio_code = code;
            p.into_response()
        }
        _ => problem::json(201, &view(svc, &verification)),
    }
}

/// `POST /v1/verifications/{id}/check`.
pub async fn check(
    svc: &Services,
    req: &Request,
    caller: &str,
    raw_id: &str,
) -> http::Response<String> {
    let not_found = || {
        Problem::new(ProblemKind::NotFound)
            .detail("no verification with that id")
            .into_response()
    };
    let Ok(id) = raw_id.parse::<VerificationId>() else {
        return not_found();
    };
    let code = match serde_json::from_slice::<Value>(req.body().as_ref()) {
        Ok(Value::Object(o)) => match o.get("code") {
            Some(Value::String(c))
                if (4..=10).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_digit()) =>
            {
                c.clone()
            }
            _ => {
                return invalid(ProblemKind::InvalidField, "code", "4 to 10 digits")
                    .into_response();
            }
        },
        _ => {
            return Problem::new(ProblemKind::MalformedRequest)
                .detail("the body must be a JSON object")
                .into_response();
        }
    };
    match svc.verifications.get_verification(&id).await {
        Ok(Some(v)) if v.caller == caller => {}
        Ok(_) => return not_found(),
        Err(e) => return unavailable(&e),
    }
    let given = match code_hash(svc, &id, &code).await {
        Ok(h) => h,
        Err(p) => return p.into_response(),
    };
    drop(code);
    let now = svc.clock.now_ms();
    let max = svc.config.protection.otp_max_checks;
    let outcome = Mutex::new(None);
    let decide = |cur: &Verification| {
        let (next, out) = cur.checked(&given, now, max);
        *outcome.lock().expect("outcome lock") = Some(out);
        next
    };
    let record = match svc.verifications.update_verification(&id, &decide).await {
        Ok(VerificationApplied::Applied(v) | VerificationApplied::Ignored(v)) => v,
        Ok(VerificationApplied::NotFound) => return not_found(),
        Err(e) => return unavailable(&e),
    };
    let outcome = outcome.lock().expect("outcome lock").take();
    match outcome {
        Some(CheckOutcome::Approved) => {
            tracing::info!(verification_id = %id, "verification approved");
            problem::json(200, &view(svc, &record))
        }
        Some(CheckOutcome::Wrong { .. }) => {
            tracing::info!(verification_id = %id, "wrong verification code");
            problem::json(200, &view(svc, &record))
        }
        Some(CheckOutcome::LockedNow | CheckOutcome::Locked) => {
            limits::count_refusal(ProblemKind::VerificationLocked);
            Problem::new(ProblemKind::VerificationLocked)
                .detail("too many wrong codes; start a new verification")
                .into_response()
        }
        Some(CheckOutcome::Gone) | None => Problem::new(ProblemKind::VerificationGone)
            .detail("the code expired or was already approved; start a new verification")
            .into_response(),
    }
}

/// `GET /v1/verifications/{id}`.
pub async fn get(svc: &Services, caller: &str, raw_id: &str) -> http::Response<String> {
    let not_found = || {
        Problem::new(ProblemKind::NotFound)
            .detail("no verification with that id")
            .into_response()
    };
    let Ok(id) = raw_id.parse::<VerificationId>() else {
        return not_found();
    };
    match svc.verifications.get_verification(&id).await {
        Ok(Some(v)) if v.caller == caller => problem::json(200, &view(svc, &v)),
        Ok(_) => not_found(),
        Err(e) => unavailable(&e),
    }
}

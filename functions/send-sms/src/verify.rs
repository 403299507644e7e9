//! One-time codes: `POST /v1/verifications {to}` sends a code by SMS (the `otp` template);
//! `POST /v1/verifications/{id}/check {code}` checks it; `GET /v1/verifications/{id}` shows
//! where it is.
//!
//! The code comes from the thread CSPRNG (`rand::rng()`, seeded from the OS), or, under an
//! `Idempotency-Key`, from a keyed hash of the verification's derived id (so that a retry after
//! a crash rebuilds the same SMS and sends nothing twice: [`start`]); it has `OTP_LENGTH`
//! digits, and is stored only as a keyed hash (HMAC under the keyring's lookup key, bound to
//! the verification id); the SMS that carries it is stored sealed like every body. Codes never appear in logs, records or answers. A code is valid `OTP_TTL_SECS`; at
//! most `OTP_MAX_SENDS` codes go to one number per `OTP_SEND_WINDOW_SECS`; after
//! `OTP_MAX_CHECKS` wrong codes the verification locks (`429`); expired or approved: `410`.

use std::sync::Mutex;

use herald::crypto::LookupToken;
use herald::delivery::{self, Delivery};
use herald::domain::verification::CheckOutcome;
use herald::domain::{Verification, VerificationId, VerificationStatus};
use herald::ports::{Acquired, StoreError, VerificationApplied};
use herald::problem::{self, Problem, ProblemKind};
use herald::protect::idempotency::Keyed;
use herald::protect::limits;
use herald::service::{Chaos, CrashPoint, Services};
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

/// A parsed `POST /v1/verifications` body.
struct Start<'a> {
    to: herald::phone::PhoneNumber,
    service: &'a str,
}

/// Parses a `POST /v1/verifications` body (nothing is looked up or recorded).
fn parse(obj: &Map<String, Value>) -> Result<Start<'_>, Problem> {
    if let Some(unknown) = obj
        .keys()
        .find(|k| !["to", "service"].contains(&k.as_str()))
    {
        return Err(invalid(ProblemKind::InvalidField, unknown, "unknown field"));
    }
    let to = match obj.get("to") {
        Some(Value::String(s)) => s,
        _ => return Err(invalid(ProblemKind::InvalidField, "to", "to is required")),
    };
    let service = match obj.get("service") {
        None | Some(Value::Null) => "Herald",
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 30 => s.as_str(),
        Some(_) => {
            return Err(invalid(
                ProblemKind::InvalidField,
                "service",
                "1 to 30 characters",
            ));
        }
    };
    let to = herald::phone::parse(to)
        .map_err(|e| invalid(ProblemKind::InvalidPhoneNumber, "to", e.to_string()))?;
    Ok(Start { to, service })
}

/// The code of verification `id` started under an `Idempotency-Key`: derived, not drawn, so
/// that a retry of the request rebuilds the very SMS the first try recorded or sent. A keyed
/// hash (HMAC-SHA256 under the vault's lookup key) of the id, its first 64 bits reduced to
/// `len` digits as HOTP does (RFC 4226; the bias of the reduction is below 10^-9). It is as
/// secret as the stored code hash already is: whoever holds that key can try every code
/// against the hash, and no one else can compute either.
async fn keyed_code(svc: &Services, id: &VerificationId, len: u32) -> Result<String, Problem> {
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "keyed hash unavailable");
        Problem::new(ProblemKind::Unavailable).detail("please retry")
    };
    let hash = svc
        .vault
        .keyed_hash("otp-code-v1", id.as_str().as_bytes())
        .await
        .map_err(|e| unavailable(&e))?;
    let top = hash
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| unavailable(&"keyed hash malformed"))?;
    let digits = top % 10u64.pow(len);
    Ok(format!("{digits:0width$}", width = len as usize))
}

/// `POST /v1/verifications`: records a pending verification (the code's keyed hash only) and
/// the SMS that carries the code, then sends it. Under an `Idempotency-Key` the verification
/// and its SMS take ids derived from the key's use ([`Keyed`]) and the code is derived from the
/// verification's id ([`keyed_code`]), so a retry of a request that died half-way, or whose
/// write the store committed though it answered an error, finds what the first try recorded
/// and goes on with it: one verification, one SMS, sent at most once (the claim decides),
/// answered with the first try's verification id.
pub async fn start(
    svc: &Services,
    req: &Request,
    caller: &str,
    keyed: Option<Keyed>,
) -> http::Response<String> {
    if !svc.config.sms_enabled {
        return herald::api::feature_disabled("SMS sending is disabled");
    }
    let obj = match serde_json::from_slice::<Value>(req.body().as_ref()) {
        Ok(Value::Object(o)) => o,
        _ => {
            return Problem::new(ProblemKind::MalformedRequest)
                .detail("the body must be a JSON object")
                .into_response();
        }
    };
    let Start { to, service } = match parse(&obj) {
        Ok(s) => s,
        Err(p) => return p.into_response(),
    };
    let cfg = &svc.config.protection;
    let now = svc.clock.now_ms();
    let (id, message_id) = match &keyed {
        Some(k) => match (k.verification_id(svc).await, k.message_id(svc, 0).await) {
            (Ok(v), Ok(m)) => (v, Some(m)),
            (Err(e), _) | (_, Err(e)) => return unavailable(&e),
        },
        None => (
            VerificationId::generate(u64::try_from(now).unwrap_or_default()),
            None,
        ),
    };
    // A retry of a request that died after recording its verification goes on with it (its
    // checks and limits were passed then), never starts another.
    let mut verification = None;
    if keyed.as_ref().is_some_and(Keyed::is_retry) {
        match earlier(svc, &id, caller).await {
            Ok(found) => verification = found,
            Err(resp) => return resp,
        }
    }

    let code = match keyed {
        Some(_) => match keyed_code(svc, &id, cfg.otp_length).await {
            Ok(c) => c,
            Err(p) => return p.into_response(),
        },
        None => fresh_code(cfg.otp_length),
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
    let mut recorded = 0;
    let resumed = verification.is_some();
    let mut verification = match verification {
        Some(v) => v,
        None => {
            let hash = match code_hash(svc, &id, &code).await {
                Ok(h) => h,
                Err(p) => return p.into_response(),
            };
            let token = match reachable_for_code(svc, &to, now).await {
                Ok(t) => t,
                Err(resp) => return resp,
            };
            let v = Verification {
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
            match svc.verifications.insert_verification(&v).await {
                Ok(()) => {
                    recorded += 1;
                    if svc.chaos.crashes_at(CrashPoint::Recorded(recorded)) {
                        return Chaos::death();
                    }
                    v
                }
                // Its id is the request's own (derived from its key): an earlier try of this
                // request recorded it (the store committed it and answered an error).
                Err(StoreError::Conflict) if keyed.is_some() => {
                    match earlier(svc, &id, caller).await {
                        Ok(Some(found)) => found,
                        Ok(None) => return unavailable(&StoreError::Conflict),
                        Err(resp) => return resp,
                    }
                }
                Err(e) => return unavailable(&e),
            }
        }
    };
    drop(code);

    // The SMS: found when an earlier try recorded it, else recorded now (only if absent).
    let found = match (&message_id, resumed) {
        (Some(mid), true) => match svc.messages.get_record(mid).await {
            Ok(m) => m,
            Err(e) => return unavailable(&e),
        },
        _ => None,
    };
    let (message, delivery) = match found {
        Some(m) => match crate::go_on(svc, m).await {
            Ok(done) => done,
            Err(e) => return unavailable(&e),
        },
        None => {
            let info = templates::analyse(&body);
            let v = Validated {
                to,
                body,
                template: Some("otp".to_owned()),
                encoding: info.encoding,
                segments: info.segments,
            };
            let recorded_now = crate::record_new(svc, &v, caller, true, message_id.clone()).await;
            drop(v);
            match recorded_now {
                Ok(crate::Recorded::New(m)) => {
                    recorded += 1;
                    if svc.chaos.crashes_at(CrashPoint::Recorded(recorded)) {
                        return Chaos::death();
                    }
                    tracing::info!(verification_id = %id, message_id = %m.id, "verification code sent");
                    let delivery = delivery::attempt_send(svc, &m).await;
                    (*m, delivery)
                }
                // Recorded by an earlier try of this request (its id is derived from the key).
                Ok(crate::Recorded::Exists) => {
                    let found = match &message_id {
                        Some(mid) => svc.messages.get_record(mid).await,
                        None => Ok(None),
                    };
                    match found {
                        Ok(Some(m)) => match crate::go_on(svc, m).await {
                            Ok(done) => done,
                            Err(e) => return unavailable(&e),
                        },
                        Ok(None) => return unavailable(&StoreError::Conflict),
                        Err(e) => return unavailable(&e),
                    }
                }
                Err(e) => return unavailable(&*e),
            }
        }
    };
    if resumed {
        tracing::info!(verification_id = %id, message_id = %message.id, "verification resumed");
    }
    let mid = message.id.clone();
    if verification.message_id.is_none() {
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
            Err(e) => {
                tracing::error!(error = %e, verification_id = %id, "could not link the message");
            }
        }
    }
    match delivery {
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

/// The verification `id` of `caller` an earlier try of this request recorded, if any.
async fn earlier(
    svc: &Services,
    id: &VerificationId,
    caller: &str,
) -> Result<Option<Verification>, http::Response<String>> {
    match svc.verifications.get_verification(id).await {
        Ok(Some(v)) if v.caller == caller => Ok(Some(v)),
        // Derived from this caller's key: another caller's cannot have the id.
        Ok(Some(_)) => Err(unavailable(&StoreError::Conflict)),
        Ok(None) => Ok(None),
        Err(e) => Err(unavailable(&e)),
    }
}

/// Whether a code may go to `to` now: the number is reachable ([`crate::reachable`]: not
/// opted out, the recipient rules), and under its budget of codes (`OTP_MAX_SENDS` per
/// `OTP_SEND_WINDOW_SECS`). Returns its lookup token.
async fn reachable_for_code(
    svc: &Services,
    to: &herald::phone::PhoneNumber,
    now: i64,
) -> Result<LookupToken, http::Response<String>> {
    let cfg = &svc.config.protection;
    let token = crate::reachable(svc, to)
        .await
        .map_err(Problem::into_response)?;
    let window = i64::try_from(cfg.otp_send_window.as_millis()).unwrap_or(i64::MAX);
    match svc
        .rate_limits
        .acquire(&format!("otp#{}", token.0), cfg.otp_max_sends, window, now)
        .await
    {
        Ok(Acquired::Allowed { .. }) => Ok(token),
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
            Err(p.into_response())
        }
        Err(e) => Err(unavailable(&e)),
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

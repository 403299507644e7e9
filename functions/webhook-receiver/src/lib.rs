//! `webhook-receiver`: Twilio's signed callbacks. It rebuilds the public URL Twilio signed,
//! verifies `X-Twilio-Signature`, applies the status transition (never backwards), keeps a
//! sanitized, de-duplicated event, and answers at once.

use herald::delivery;
use herald::domain::event::EVENT_RETENTION_MS;
use herald::domain::{
    Event, EventKind, MessageId, MessageStatus, RetryChange, StatusChange, Subject,
};
use herald::ports::Applied;
use herald::problem::{Problem, ProblemKind};
use herald::service::Services;
use herald::twilio::{class_of_code, describe_code, signature};
use lambda_http::{Body, Request, RequestExt, Response};

pub mod calls;
pub use calls::{CALL_STATUS_PATH, VOICE_GATHER_PATH};

/// The webhook routes, relative to `TWILIO_WEBHOOK_BASE_URL`.
pub const MESSAGE_STATUS_PATH: &str = "/webhooks/twilio/message-status";

/// Handles one API Gateway request from Twilio.
pub async fn handle(svc: &Services, req: Request) -> Result<Response<Body>, lambda_http::Error> {
    let path = webhook_path(req.raw_http_path());
    let resp = match (req.method().as_str(), path) {
        ("POST", Some(MESSAGE_STATUS_PATH)) => message_status(svc, &req).await,
        ("POST", Some(CALL_STATUS_PATH)) => calls::call_status(svc, &req).await,
        ("POST", Some(VOICE_GATHER_PATH)) => calls::voice_gather(svc, &req).await,
        (_, Some(CALL_STATUS_PATH | VOICE_GATHER_PATH)) => {
            Problem::new(ProblemKind::MethodNotAllowed).into_response()
        }
        (_, Some(MESSAGE_STATUS_PATH)) => {
            Problem::new(ProblemKind::MethodNotAllowed).into_response()
        }
        _ => Problem::new(ProblemKind::NotFound)
            .detail("no such webhook")
            .into_response(),
    };
    Ok(resp.map(Body::from))
}

/// The webhook path without any stage prefix.
fn webhook_path(raw: &str) -> Option<&str> {
    raw.find("/webhooks/").map(|i| &raw[i..])
}

/// The URL Twilio requested: the configured public base, the route, and the query string as
/// it arrived.
pub fn public_url(svc: &Services, route: &str, query: Option<&str>) -> String {
    match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{}{route}?{q}", svc.config.webhook_base_url),
        None => format!("{}{route}", svc.config.webhook_base_url),
    }
}

/// The form parameters of a request body, in order.
pub fn form_params(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn forbidden(detail: &str) -> http::Response<String> {
    herald::telemetry::metric("WebhookRejected", 1.0, "Count", &[("Reason", detail)]);
    Problem::new(ProblemKind::InvalidSignature)
        .detail(detail)
        .into_response()
}

/// Verifies the request's signature against the current auth token, reading the secret again
/// once on a mismatch (the token may have just been rotated).
async fn verify(
    svc: &Services,
    url: &str,
    params: &[(String, String)],
    sig: &str,
) -> Result<(), &'static str> {
    if sig.is_empty() {
        return Err("missing signature");
    }
    for attempt in 0..2 {
        let creds = svc.credentials.get().await.map_err(|e| {
            tracing::error!(error = %e, "credentials unavailable");
            "credentials unavailable"
        })?;
        if signature::validate_form(creds.auth_token.expose(), url, params, sig).is_ok() {
            return Ok(());
        }
        if attempt == 0 {
            svc.credentials.invalidate().await;
        }
    }
    Err("signature does not match")
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A callback reporting a failure Twilio may get past on another try (30001, 30003 …) moves the
/// message to its next attempt while attempts remain, and queues that attempt; `None` when the
/// report is final.
async fn retry_after_callback(
    svc: &Services,
    id: &MessageId,
    status: MessageStatus,
    error_code: Option<u32>,
    attempt: u32,
) -> Option<Result<Applied, herald::ports::StoreError>> {
    let code = error_code?;
    let class = class_of_code(code);
    if !matches!(status, MessageStatus::Failed | MessageStatus::Undelivered)
        || !class.is_retryable()
        || attempt >= delivery::attempts_allowed(svc, class)
    {
        return None;
    }
    let now = svc.clock.now_ms();
    let wait = delivery::backoff(
        attempt,
        class,
        None,
        svc.config.retry_base_delay,
        svc.config.retry_max_delay,
    );
    let change = RetryChange {
        attempt,
        error_code: Some(code),
        error_reason: Some(format!("Twilio error {code} ({})", describe_code(code))),
        ambiguous_since_ms: None,
        next_attempt_at_ms: now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX),
        at_ms: now,
    };
    let result = svc.messages.schedule_retry(id, &change).await;
    if let Ok(Applied::Applied(next)) = &result {
        tracing::info!(message_id = %id, attempt, twilio_code = code, "retrying after a failure callback");
        if let Err(e) = delivery::enqueue_attempt(svc, next).await {
            tracing::error!(message_id = %id, error = %e, "could not enqueue the next attempt; the sweeper will");
        }
    }
    Some(result)
}

fn ok() -> http::Response<String> {
    herald::problem::respond(
        200,
        "text/xml",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".into(),
    )
}

async fn message_status(svc: &Services, req: &Request) -> http::Response<String> {
    let query = req.uri().query();
    let url = public_url(svc, MESSAGE_STATUS_PATH, query);
    let params = form_params(req.body().as_ref());
    let sig = req
        .headers()
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Err(why) = verify(svc, &url, &params, sig).await {
        tracing::warn!(
            route = MESSAGE_STATUS_PATH,
            reason = why,
            "webhook rejected"
        );
        return forbidden(why);
    }

    let sid = param(&params, "MessageSid")
        .or_else(|| param(&params, "SmsSid"))
        .unwrap_or("");
    let reported = param(&params, "MessageStatus")
        .or_else(|| param(&params, "SmsStatus"))
        .unwrap_or("");
    let status = MessageStatus::from_twilio(reported);
    let error_code = param(&params, "ErrorCode").and_then(|c| c.parse::<u32>().ok());
    let attempt = query_param(query, "a")
        .and_then(|a| a.parse::<u32>().ok())
        .unwrap_or(1);
    let id = query_param(query, "mid").and_then(|m| m.parse::<MessageId>().ok());
    let now = svc.clock.now_ms();
    // Only values of known shape go into the event: nothing from the request is stored raw.
    let safe_sid = herald::twilio::is_sid(sid, "SM")
        .then(|| sid.to_owned())
        .or_else(|| herald::twilio::is_sid(sid, "MM").then(|| sid.to_owned()));
    let mut event = Event {
        key: format!(
            "ms:{}:{}",
            safe_sid.as_deref().unwrap_or("unknown"),
            status.map_or("unknown", MessageStatus::as_str)
        ),
        subject: Subject::orphan(),
        kind: EventKind::OrphanCallback,
        status: status.map(|s| s.as_str().to_owned()),
        twilio_sid: safe_sid,
        error_code,
        attempt,
        applied: false,
        at_ms: now,
        expires_at_ms: now + EVENT_RETENTION_MS,
    };

    if let (Some(id), Some(status)) = (id.as_ref(), status) {
        let change = StatusChange {
            attempt,
            status,
            twilio_sid: event.twilio_sid.clone(),
            error_code,
            error_reason: error_code.map(|c| format!("Twilio error {c} ({})", describe_code(c))),
            at_ms: now,
        };
        let retry = retry_after_callback(svc, id, status, error_code, attempt).await;
        let result = match retry {
            Some(r) => r,
            None => svc.messages.apply_message_status(id, &change).await,
        };
        match result {
            Ok(Applied::Applied(m)) => {
                event.subject = Subject::from(id);
                event.kind = EventKind::StatusCallback;
                event.applied = true;
                tracing::info!(message_id = %id, status = m.status.as_str(), twilio_code = ?error_code, "status applied");
            }
            Ok(Applied::Ignored(m)) => {
                event.subject = Subject::from(id);
                event.kind = EventKind::StatusCallback;
                tracing::info!(message_id = %id, reported = status.as_str(), current = m.status.as_str(), "status kept as event only");
            }
            Ok(Applied::NotFound) => {
                tracing::warn!(message_id = %id, "callback for an unknown message");
            }
            Err(e) => {
                // Twilio retries on a 5xx: the update is idempotent, so a retry is safe.
                tracing::error!(message_id = %id, error = %e, "store unavailable");
                return Problem::new(ProblemKind::Unavailable).into_response();
            }
        }
    } else {
        tracing::warn!(
            has_id = id.is_some(),
            known_status = status.is_some(),
            "callback without a usable id or status"
        );
    }
    match svc.events.record_event(&event).await {
        Ok(true) => {}
        Ok(false) => tracing::info!(event_key_kind = event.kind.as_str(), "duplicate callback"),
        Err(e) => tracing::error!(error = %e, "could not record the event"),
    }
    ok()
}

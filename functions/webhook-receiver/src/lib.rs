//! `webhook-receiver`: Twilio's signed callbacks. It rebuilds the public URL Twilio signed,
//! verifies `X-Twilio-Signature`, applies the status transition (never backwards), keeps a
//! sanitized, de-duplicated event, and answers at once.
//!
//! Routes: `message-status` (form or JSON callbacks) here, `inbound-sms` in [`inbound`]. The
//! Lambda reads the raw API Gateway event itself ([`request`]), so REST API (v1) query strings
//! are rebuilt in the order Twilio signed them; the local runner and tests may also hand a
//! `lambda_http` request (HTTP API, v2) to [`handle`].

pub mod inbound;
pub mod request;

use herald::delivery;
use herald::domain::event::EVENT_RETENTION_MS;
use herald::domain::{Event, EventKind, MessageId, MessageStatus, Subject};
use herald::ports::Applied;
use herald::problem::{Problem, ProblemKind};
use herald::service::Services;
use herald::twilio::signature;
use lambda_http::{Body, Request, RequestExt, Response};

pub use inbound::INBOUND_SMS_PATH;
use request::Signed;
pub mod calls;
pub use calls::{CALL_STATUS_PATH, VOICE_GATHER_PATH};

/// The webhook routes, relative to `TWILIO_WEBHOOK_BASE_URL`.
pub const MESSAGE_STATUS_PATH: &str = "/webhooks/twilio/message-status";

/// Handles one API Gateway request from Twilio.
pub async fn handle(svc: &Services, req: Request) -> Result<Response<Body>, lambda_http::Error> {
    let start = std::time::Instant::now();
    let resp = route(svc, req).await;
    herald::telemetry::metric(
        "WebhookLatency",
        herald::telemetry::elapsed_ms(start),
        "Milliseconds",
        &[],
    );
    Ok(resp.map(Body::from))
}

async fn route(svc: &Services, req: Request) -> http::Response<String> {
    let path = webhook_path(req.raw_http_path());
    match (req.method().as_str(), path) {
        ("POST", Some(MESSAGE_STATUS_PATH)) => message_status(svc, &req).await,
        ("POST", Some(INBOUND_SMS_PATH)) => match verify_request(svc, INBOUND_SMS_PATH, &req).await
        {
            Ok(signed) => inbound::inbound_sms(svc, &req, &signed.params()).await,
            Err(rejected) => rejected,
        },
        ("POST", Some(CALL_STATUS_PATH)) => calls::call_status(svc, &req).await,
        ("POST", Some(VOICE_GATHER_PATH)) => calls::voice_gather(svc, &req).await,
        (_, Some(CALL_STATUS_PATH | VOICE_GATHER_PATH)) => {
            herald::problem::method_not_allowed("POST")
        }
        (_, Some(MESSAGE_STATUS_PATH | INBOUND_SMS_PATH)) => {
            herald::problem::method_not_allowed("POST")
        }
        _ => Problem::new(ProblemKind::NotFound)
            .detail("no such webhook")
            .into_response(),
    }
}

/// One invocation as the Lambda gets it: an event that is not an API Gateway event is answered
/// `400` naming `event`, and a handler that panics `500 internal-error`, in the event's own
/// response shape; neither answer holds anything of the request.
pub async fn invoke(svc: &Services, payload: serde_json::Value) -> serde_json::Value {
    let Ok(event) = herald::lambda::decode::<request::ApiEvent>(payload, "an API Gateway event")
    else {
        return herald::apigw::unreadable_event_answer();
    };
    let kind = event.kind();
    match herald::panics::catch(handle_event(svc, event)).await {
        Ok(answer) => answer,
        Err(_) => request::encode_response(kind, herald::panics::response().map(Body::from)),
    }
}

/// Handles one raw API Gateway event (REST v1 or HTTP v2), as the Lambda receives it, and
/// answers in the same API's response shape. An event that is not a readable request is
/// answered `400` problem+json.
pub async fn handle_event(svc: &Services, event: request::ApiEvent) -> serde_json::Value {
    let kind = event.kind();
    match request::decode_event(event) {
        Ok((req, kind)) => match handle(svc, req).await {
            Ok(resp) => request::encode_response(kind, resp),
            Err(e) => {
                tracing::error!(error = %e, "handler failed");
                request::encode_response(
                    kind,
                    Problem::new(ProblemKind::Unavailable)
                        .into_response()
                        .map(Body::from),
                )
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "unreadable event");
            request::encode_response(
                kind,
                Problem::new(ProblemKind::MalformedRequest)
                    .detail("unreadable request")
                    .field(e.field())
                    .into_response()
                    .map(Body::from),
            )
        }
    }
}

/// The webhook path without any stage prefix.
fn webhook_path(raw: &str) -> Option<&str> {
    raw.find("/webhooks/").map(|i| &raw[i..])
}

/// The URL Twilio requested: the configured public base, the route, and the query string as
/// it arrived.
pub fn public_url(svc: &Services, route: &str, query: Option<&str>) -> String {
    request::public_url(&svc.config.webhook_base_url, route, query)
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

/// Verifies a form request's signature against the current auth token, reading the secret
/// again once on a mismatch (the token may have just been rotated). See [`verify_request`] for
/// requests of either kind.
pub async fn verify(
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
        let now = svc.clock.now_ms();
        if creds
            .signing_tokens(now)
            .into_iter()
            .any(|t| signature::validate_form(t.expose(), url, params, sig).is_ok())
        {
            return Ok(());
        }
        if attempt == 0 && !svc.credentials.invalidate().await {
            break;
        }
    }
    Err("signature does not match")
}

/// Verifies a request to `route` of either kind (form, or JSON with `bodySHA256`) against the
/// current auth token (or, within its grace window, the previous one), reading the secret again once on a mismatch (the token may have just
/// been rotated). Returns what was signed, or the `403` to answer; nothing is written on a
/// rejection.
pub async fn verify_request(
    svc: &Services,
    route: &str,
    req: &Request,
) -> Result<Signed, http::Response<String>> {
    let signed = Signed::of(&svc.config.webhook_base_url, route, req);
    let reject = |why: &'static str| {
        tracing::warn!(route, reason = why, "webhook rejected");
        forbidden(why)
    };
    if signed.signature.is_empty() {
        return Err(reject("missing signature"));
    }
    let mut why = "signature does not match";
    for attempt in 0..2 {
        let creds = match svc.credentials.get().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "credentials unavailable");
                return Err(reject("credentials unavailable"));
            }
        };
        // The primary token, then the previous one while its grace window lasts (a callback
        // Twilio signed just before an auth-token promotion may arrive after it).
        for token in creds.signing_tokens(svc.clock.now_ms()) {
            match signed.check(token.expose()) {
                Ok(_) => return Ok(signed),
                Err(signature::SignatureError::BodyHash) => {
                    why = "bodySHA256 does not match the body"
                }
                Err(_) => {}
            }
        }
        // Read the secret again once (rate-limited: forged callbacks cannot flood it).
        if attempt == 0 && !svc.credentials.invalidate().await {
            break;
        }
    }
    Err(reject(why))
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

fn ok() -> http::Response<String> {
    herald::problem::respond(
        200,
        "text/xml",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".into(),
    )
}

async fn message_status(svc: &Services, req: &Request) -> http::Response<String> {
    let query = req.uri().query();
    let params = match verify_request(svc, MESSAGE_STATUS_PATH, req).await {
        Ok(signed) => signed.params(),
        Err(rejected) => return rejected,
    };

    let sid = param(&params, "MessageSid")
        .or_else(|| param(&params, "SmsSid"))
        .unwrap_or("");
    let reported = param(&params, "MessageStatus")
        .or_else(|| param(&params, "SmsStatus"))
        .unwrap_or("");
    let status = MessageStatus::from_twilio(reported);
    let error_code = param(&params, "ErrorCode").and_then(|c| c.parse::<u32>().ok());
    let attempt = attempt_of(query);
    let id = query_param(query, "mid").and_then(|m| m.parse::<MessageId>().ok());
    if let Some(id) = &id {
        herald::telemetry::record_message_id(id);
    }
    let now = svc.clock.now_ms();
    // Only values of known shape go into the event: nothing from the request is stored raw.
    let safe_sid = herald::twilio::is_sid(sid, "SM")
        .then(|| sid.to_owned())
        .or_else(|| herald::twilio::is_sid(sid, "MM").then(|| sid.to_owned()));
    let key = format!(
        "ms:{}:{}",
        safe_sid.as_deref().unwrap_or("unknown"),
        status.map_or("unknown", MessageStatus::as_str)
    );
    let event = callback_event(
        key,
        status.map(MessageStatus::as_str),
        safe_sid,
        error_code,
        attempt,
        &params,
        now,
    );
    let report = status.map(|status| delivery::Report {
        attempt,
        status,
        twilio_sid: event.twilio_sid.clone(),
        error_code,
        at_ms: now,
    });
    match settle_callback::<delivery::Sms>(svc, id.as_ref(), report, event).await {
        Ok(()) => ok(),
        Err(answer) => answer,
    }
}

/// The attempt a callback URL names (`a`; 1 for a URL made before it was added).
pub(crate) fn attempt_of(query: Option<&str>) -> u32 {
    query_param(query, "a")
        .and_then(|a| a.parse::<u32>().ok())
        .unwrap_or(1)
}

/// The event a status callback leaves under `key`: an orphan until it is applied to its record.
/// Only values of known shape go in (the status, a SID of the right shape, the code), and of the
/// number `To` only its country: nothing from the request is stored raw.
pub(crate) fn callback_event(
    key: String,
    status: Option<&str>,
    twilio_sid: Option<String>,
    error_code: Option<u32>,
    attempt: u32,
    params: &[(String, String)],
    now: i64,
) -> Event {
    Event {
        key,
        subject: Subject::orphan(),
        kind: EventKind::OrphanCallback,
        status: status.map(str::to_owned),
        twilio_sid,
        error_code,
        attempt,
        applied: false,
        at_ms: now,
        expires_at_ms: now + EVENT_RETENTION_MS,
        country: param(params, "To")
            .and_then(|to| herald::phone::parse(to).ok())
            .and_then(|p| p.country().map(str::to_owned)),
        sealed: None,
    }
}

/// Applies a status callback's `report` to record `id` ([`apply_status`]) when it names both,
/// and keeps its `event`. `Err`: the answer when the store failed (a 5xx, so that Twilio sends
/// the callback again).
pub(crate) async fn settle_callback<K: herald::engine::Channel>(
    svc: &Services,
    id: Option<&<K::Record as herald::domain::Attempted>::Id>,
    report: Option<K::Report>,
    mut event: Event,
) -> Result<(), http::Response<String>> {
    if let (Some(id), Some(report)) = (id, report.as_ref()) {
        apply_status::<K>(svc, id, report, &mut event).await?;
    } else {
        tracing::warn!(
            channel = K::NAME,
            has_id = id.is_some(),
            known_status = report.is_some(),
            "callback without a usable id or status"
        );
    }
    match svc.events.record_event(&event).await {
        Ok(true) => {}
        Ok(false) => tracing::info!(
            channel = K::NAME,
            event_key_kind = event.kind.as_str(),
            "duplicate callback"
        ),
        Err(e) => tracing::error!(error = %e, "could not record the event"),
    }
    Ok(())
}

/// Applies the status callback `report` to record `id` ([`herald::engine::apply_callback`]) and
/// says in `event` what it was about. `Err`: the answer when the store failed (a 5xx, so that
/// Twilio sends the callback again).
pub(crate) async fn apply_status<K: herald::engine::Channel>(
    svc: &Services,
    id: &<K::Record as herald::domain::Attempted>::Id,
    report: &K::Report,
    event: &mut Event,
) -> Result<(), http::Response<String>> {
    let applied = herald::engine::apply_callback::<K>(
        svc,
        id,
        event.twilio_sid.as_deref(),
        report,
        event.at_ms,
    )
    .await;
    match applied {
        Ok(Applied::NotFound) => {}
        Ok(applied) => {
            event.subject = Subject::from(id);
            event.kind = EventKind::StatusCallback;
            event.applied = matches!(applied, Applied::Applied(_));
        }
        Err(e) => {
            tracing::error!(record_id = %id, channel = K::NAME, error = %e, "store or queue unavailable");
            return Err(Problem::new(ProblemKind::Unavailable).into_response());
        }
    }
    Ok(())
}

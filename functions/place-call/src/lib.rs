//! `place-call`: the HTTP API for voice alerts. `POST /v1/calls` validates, records and places
//! one call through Twilio (TwiML from a voice template or a message, `<Say>` with voice,
//! language and loop, an optional `<Gather>` asking the callee to press 1); `GET /v1/calls/{id}`
//! shows where it is, its attempts, duration, acknowledgement and timeline. The deployment
//! (`infra/template.yaml`) gives it no queue trigger: a call's later attempts are jobs on the
//! retry queue, which `retry-processor` consumes. [`handle_sqs`] takes a batch of such jobs
//! only when one is handed to it directly (a local run, `cargo lambda invoke`).
//!
//! The handler knows nothing of where it runs: it gets [`Services`] built over AWS adapters in
//! `main.rs`, or over the embedded ones by the local runner and the tests.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use herald::api::{self, unavailable};
use herald::calls::{self, Placement, Voice};
use herald::domain::rfc3339;
use herald::domain::{Attempts, Call, CallFields, CallId, CallStatus, Recipient, Speech};
use herald::engine::{self, Submitted};
use herald::problem::{self, Problem, ProblemKind};
use herald::protect::Endpoint;
use herald::protect::idempotency::Keyed;
use herald::protect::limits::{self, Channel};
use herald::request::{invalid, json_object, only_fields, recipient, str_field, text_or_template};
use herald::service::{Chaos, Services};
use herald::twilio::{MAX_TWIML_CHARS, describe_code, twiml};
use herald::views::{self, RecordView};
use herald::voice;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::Value;

/// The fields `POST /v1/calls` accepts.
pub const FIELDS: [&str; 8] = [
    "to",
    "message",
    "template",
    "variables",
    "voice",
    "language",
    "loop",
    "require_ack",
];

/// Handles one API Gateway request for the voice API. Every route needs a caller identity
/// (`401` without one) and takes a unit of the caller's per-minute budget (`429`);
/// `POST /v1/calls` is refused first (`503`, no unit taken) while the Twilio credentials cannot
/// be read, and honours `Idempotency-Key` and the recipient rules.
pub async fn handle(svc: &Services, req: Request) -> Result<Response<Body>, lambda_http::Error> {
    let path = api::path(req.raw_http_path());
    let Some(caller) = herald::protect::caller(&req) else {
        return Ok(herald::protect::unauthorized().map(Body::from));
    };
    let caller = caller.as_str();
    let resp = match (req.method().as_str(), path.as_str()) {
        ("POST", "/v1/calls") => match limits::admit_send(svc, caller, Endpoint::Calls).await {
            Err(p) => p.into_response(),
            Ok(()) => {
                herald::protect::idempotency::once(svc, &req, caller, &path, |keyed| {
                    place(svc, &req, caller, keyed)
                })
                .await
            }
        },
        ("GET", p) if p.starts_with("/v1/calls/") => {
            match limits::check_caller(svc, caller, Endpoint::Reads).await {
                Err(p) => p.into_response(),
                Ok(()) => get(svc, caller, &p["/v1/calls/".len()..]).await,
            }
        }
        (_, "/v1/calls") => problem::method_not_allowed("POST"),
        _ => Problem::new(ProblemKind::NotFound)
            .detail("no such route")
            .into_response(),
    };
    api::into_lambda(resp)
}

/// Handles a batch of call jobs given directly to this function (no queue triggers it on AWS:
/// call jobs go to the retry queue, consumed by `retry-processor`); only the jobs that must come
/// back are reported.
pub async fn handle_sqs(
    svc: &Services,
    event: SqsEvent,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    Ok(herald::delivery::handle_sqs_batch(svc, event).await?)
}

/// A validated call request.
struct Validated {
    to: herald::phone::PhoneNumber,
    text: String,
    template: Option<String>,
    speech: Speech,
    require_ack: bool,
}

/// Validates a `POST /v1/calls` body for call `id`. Nothing is recorded on any error.
fn validate(svc: &Services, id: &CallId, raw: &[u8]) -> Result<Validated, Problem> {
    let obj = json_object(raw)?;
    only_fields(&obj, &FIELDS)?;
    let to = recipient(&obj)?;
    let (text, template) = text_or_template(&obj, "message", voice::templates())?;
    if text.trim().is_empty() {
        return Err(invalid(
            ProblemKind::InvalidField,
            "message",
            "the message is empty",
        ));
    }
    let voice_name = str_field(&obj, "voice")?.unwrap_or(voice::DEFAULT_VOICE);
    let language = str_field(&obj, "language")?.unwrap_or(voice::DEFAULT_LANGUAGE);
    voice::check_voice(voice_name, language)
        .map_err(|e| invalid(ProblemKind::InvalidField, e.field, e.reason))?;
    let loop_count = match obj.get("loop") {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .ok_or_else(|| voice::check_loop(0).unwrap_err())
            .and_then(voice::check_loop)
            .map_err(|e| invalid(ProblemKind::InvalidField, e.field, e.reason))?,
    };
    let require_ack = match obj.get("require_ack") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(invalid(
                ProblemKind::InvalidField,
                "require_ack",
                "require_ack must be true or false",
            ));
        }
    };
    let speech = Speech {
        voice: voice_name.to_owned(),
        language: language.to_owned(),
        loop_count,
    };
    // The longest TwiML any attempt will send: the gather URL of the last attempt.
    let action = require_ack.then(|| svc.voice_gather_url(id, calls::max_attempts(svc), false));
    let chars = twiml::alert(&speech, &text, action.as_deref())
        .chars()
        .count();
    if chars > MAX_TWIML_CHARS {
        return Err(invalid(
            ProblemKind::InvalidField,
            if template.is_some() {
                "variables"
            } else {
                "message"
            },
            format!(
                "the call's TwiML would be {chars} characters; Twilio takes at most {MAX_TWIML_CHARS}"
            ),
        ));
    }
    Ok(Validated {
        to,
        text,
        template,
        speech,
        require_ack,
    })
}

/// The answer to `POST /v1/calls`.
#[derive(Debug, Serialize)]
struct PlaceAnswer<'a> {
    id: &'a CallId,
    status: CallStatus,
}

/// Seals and records a validated call, `accepted`, with its first attempt claimed by this
/// request (the API places it at once), only if no call has its id (`None`: one has, recorded
/// by an earlier try of the request; nothing changed).
async fn record_new(
    svc: &Services,
    id: CallId,
    v: &Validated,
    caller: String,
) -> Result<Option<Call>, Box<dyn std::error::Error + Send + Sync>> {
    let now = svc.clock.now_ms();
    let aad = id.as_str();
    let call = Call {
        caller,
        to: Recipient::seal(&svc.vault, aad, &v.to).await?,
        template: v.template.clone(),
        status: CallStatus::Accepted,
        attempts: Attempts::claimed(now, engine::lease_ms(svc)),
        twilio_sid: None,
        error_code: None,
        error_reason: None,
        own: CallFields {
            message: svc.vault.seal(aad, v.text.as_bytes()).await?,
            speech: v.speech.clone(),
            require_ack: v.require_ack,
            duration_seconds: None,
            acknowledged_at_ms: None,
        },
        id,
    };
    if !api::record_new::<Voice>(svc, &call).await? {
        return Ok(None);
    }
    tracing::info!(call_id = %call.id, require_ack = call.own.require_ack, "call accepted");
    Ok(Some(call))
}

async fn place(
    svc: &Services,
    req: &Request,
    caller: &str,
    keyed: Option<Keyed>,
) -> http::Response<String> {
    if !svc.config.voice_enabled {
        return api::feature_disabled("voice calls are disabled");
    }
    let now = svc.clock.now_ms();
    // Under an Idempotency-Key the call's id is derived from it: a retry of a request that
    // died after recording the call goes on with that call (its checks and limits were passed
    // then), never records and places another.
    let id = match &keyed {
        Some(k) => match k.call_id(svc).await {
            Ok(id) => id,
            Err(e) => return unavailable(&e),
        },
        None => CallId::generate(u64::try_from(now).unwrap_or_default()),
    };
    herald::telemetry::record_call_id(&id);
    if keyed.as_ref().is_some_and(Keyed::is_retry) {
        match svc.calls.get_record(&id).await {
            Ok(Some(c)) => return resume(svc, c).await,
            Ok(None) => {}
            Err(e) => return unavailable(&e),
        }
    }
    let v = match validate(svc, &id, req.body().as_ref()) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let token = match svc.vault.lookup_token(v.to.e164()).await {
        Ok(t) => t,
        Err(e) => return unavailable(&e),
    };
    if let Err(p) = limits::check_recipient(svc, Channel::Voice, &v.to, &token).await {
        return p.into_response();
    }
    let recorded = match record_new(svc, id.clone(), &v, caller.to_owned()).await {
        Ok(c) => c,
        Err(e) => return unavailable(&*e),
    };
    match engine::submit::<Voice>(svc, Some(&id), recorded).await {
        Ok(Submitted::Attempted(call, placement)) => answer_place(&call, placement),
        Ok(Submitted::Died) => Chaos::death(),
        Err(e) => unavailable(&e),
    }
}

/// Goes on with a call an earlier try of this request recorded before it died: its first
/// attempt is made now unless someone made it already (the claim decides, so the callee is
/// never called twice for it; a claim its holder left is taken over as ambiguous, so Twilio is
/// asked first); otherwise the answer says where it is.
async fn resume(svc: &Services, c: Call) -> http::Response<String> {
    match engine::resume::<Voice>(svc, c).await {
        Ok((now, placement)) => answer_place(&now, placement),
        Err(e) => unavailable(&e),
    }
}

/// The answer to placing `call` whose attempt came to `placement`.
fn answer_place(call: &Call, placement: Placement) -> http::Response<String> {
    let answer = |status| PlaceAnswer {
        id: &call.id,
        status,
    };
    match api::answered(placement) {
        Ok((http_status, status)) => problem::json(http_status, &answer(status)),
        Err(code) => {
            let mut p = Problem::new(ProblemKind::TwilioRejected)
                .detail(code.map_or("Twilio refused the call", describe_code))
                .field("to");
            p.twilio_code = code;
            // The problem document, plus the id of the call that was recorded `failed`.
            let mut doc = serde_json::to_value(&p).unwrap_or_default();
            doc["call_id"] = Value::String(call.id.to_string());
            problem::respond(p.status, problem::CONTENT_TYPE, doc.to_string())
        }
    }
}

/// The acknowledgement of a call.
#[derive(Debug, Serialize)]
struct Acknowledgement {
    required: bool,
    acknowledged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<String>,
}

/// `GET /v1/calls/{id}`.
#[derive(Debug, Serialize)]
struct CallView {
    #[serde(flatten)]
    record: RecordView<CallId, CallStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_seconds: Option<u32>,
    acknowledgement: Acknowledgement,
    voice: String,
    language: String,
    #[serde(rename = "loop")]
    loop_count: u32,
}

async fn get(svc: &Services, caller: &str, raw_id: &str) -> http::Response<String> {
    views::show::<Voice, _>(svc, caller, raw_id, "call", |record, c| CallView {
        record,
        duration_seconds: c.own.duration_seconds,
        acknowledgement: Acknowledgement {
            required: c.own.require_ack,
            acknowledged: c.own.acknowledged_at_ms.is_some(),
            at: c.own.acknowledged_at_ms.map(rfc3339),
        },
        voice: c.own.speech.voice.clone(),
        language: c.own.speech.language.clone(),
        loop_count: c.own.speech.loop_count,
    })
    .await
}

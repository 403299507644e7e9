//! `send-sms`: the HTTP API for SMS. `POST /v1/messages` validates, records and sends one
//! message through Twilio; `GET /v1/messages/{id}` shows where it is and its timeline;
//! `GET /v1/messages` and `GET /v1/reports/delivery` list and count the caller's messages
//! ([`query`]); `/v1/verifications` sends and checks one-time codes ([`verify`]); `GET /health`
//! says `ok` or `degraded` to anyone, `GET /v1/health` what each check found ([`health`]).
//!
//! The handler knows nothing of where it runs: it gets [`Services`] built over AWS adapters in
//! `main.rs`, or over the embedded ones by the local runner and the tests.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use herald::api::{self, unavailable};
use herald::delivery::{self, Delivery, Job, Sms};
use herald::domain::rfc3339;
use herald::domain::{Attempts, Message, MessageFields, MessageId, MessageStatus, Recipient};
use herald::engine::{self, Submitted};
use herald::ports::StoreError;
use herald::problem::{self, Problem, ProblemKind};
use herald::protect::Endpoint;
use herald::protect::idempotency::Keyed;
use herald::protect::limits::{self, Channel};
use herald::request::{invalid, json_object, only_fields, recipient, text_or_template};
use herald::service::{Chaos, CrashPoint, Services};
use herald::templates::{self, Encoding, MAX_BODY_CHARS};
use herald::twilio::describe_code;
use herald::views::{self, RecordView};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::Value;

pub mod health;
pub mod query;
pub mod verify;

/// Handles one API Gateway request for the SMS API (and `GET /health`). Every route but
/// `/health` needs a caller identity (`401` without one), and takes a unit of the caller's
/// per-minute budget of its endpoint (`429`); the POSTs that send honour `Idempotency-Key`.
/// `/health` is that path exactly, once its stage is off ([`api::unstaged_path`]): no other
/// path that ends in `/health` reaches it.
pub async fn handle(svc: &Services, req: Request) -> Result<Response<Body>, lambda_http::Error> {
    let method = req.method().as_str();
    if api::unstaged_path(&req) == "/health" {
        return Ok(health(svc, method).await.map(Body::from));
    }
    let path = api::path(req.raw_http_path());
    let Some(caller) = herald::protect::caller(&req) else {
        return Ok(herald::protect::unauthorized().map(Body::from));
    };
    let caller = caller.as_str();
    let resp = match (method, path.as_str()) {
        ("POST", "/v1/messages") => {
            guarded(svc, &req, caller, Endpoint::Messages, &path, |keyed| {
                send(svc, &req, caller, keyed)
            })
            .await
        }
        ("POST", "/v1/messages/batch") => {
            guarded(svc, &req, caller, Endpoint::Batch, &path, |keyed| {
                send_batch(svc, &req, caller, keyed)
            })
            .await
        }
        ("POST", "/v1/verifications") => {
            guarded(svc, &req, caller, Endpoint::Verifications, &path, |keyed| {
                verify::start(svc, &req, caller, keyed)
            })
            .await
        }
        ("POST", p) if verify::check_route(p).is_some() => {
            match limits::check_caller(svc, caller, Endpoint::VerificationChecks).await {
                Ok(()) => {
                    verify::check(svc, &req, caller, verify::check_route(p).unwrap_or("")).await
                }
                Err(p) => p.into_response(),
            }
        }
        ("GET", p) => match limits::check_caller(svc, caller, Endpoint::Reads).await {
            Err(problem) => problem.into_response(),
            Ok(()) => match p {
                "/v1/messages" => query::list(svc, &req, caller).await,
                "/v1/reports/delivery" => query::report(svc, &req, caller).await,
                "/v1/health" => health::details(svc).await,
                p if p.starts_with("/v1/verifications/") => {
                    verify::get(svc, caller, &p["/v1/verifications/".len()..]).await
                }
                "/v1/messages/batch" | "/v1/verifications" => problem::method_not_allowed("POST"),
                p if p.starts_with("/v1/messages/") => {
                    get(svc, caller, &p["/v1/messages/".len()..]).await
                }
                _ => Problem::new(ProblemKind::NotFound)
                    .detail("no such route")
                    .into_response(),
            },
        },
        (_, "/v1/messages") => problem::method_not_allowed("GET, POST"),
        (_, "/v1/messages/batch" | "/v1/verifications") => problem::method_not_allowed("POST"),
        (_, "/v1/reports/delivery" | "/v1/health") => problem::method_not_allowed("GET"),
        _ => Problem::new(ProblemKind::NotFound)
            .detail("no such route")
            .into_response(),
    };
    api::into_lambda(resp)
}

/// A POST that sends: readable Twilio credentials where it sends at once (checked before any
/// rate-limit unit is taken: [`limits::admit_send`]), the caller's rate limit of `endpoint`,
/// then `work` at most once per `Idempotency-Key` (given the key's [`Keyed`] use, when there is
/// one). A batch only records and queues: its jobs wait for the credentials.
async fn guarded<F, Fut>(
    svc: &Services,
    req: &Request,
    caller: &str,
    endpoint: Endpoint,
    path: &str,
    work: F,
) -> http::Response<String>
where
    F: FnOnce(Option<Keyed>) -> Fut,
    Fut: std::future::Future<Output = http::Response<String>>,
{
    let admitted = match endpoint {
        Endpoint::Batch => limits::check_caller(svc, caller, endpoint).await,
        _ => limits::admit_send(svc, caller, endpoint).await,
    };
    if let Err(p) = admitted {
        return p.into_response();
    }
    herald::protect::idempotency::once(svc, req, caller, path, work).await
}

/// `GET /health`: `ok` or `degraded`, no more (no identity needed).
async fn health(svc: &Services, method: &str) -> http::Response<String> {
    if method != "GET" {
        return problem::method_not_allowed("GET");
    }
    health::health(svc).await
}

/// A validated send request: everything needed to record and send.
struct Validated {
    to: herald::phone::PhoneNumber,
    body: String,
    template: Option<String>,
    encoding: Encoding,
    segments: u32,
}

/// Validates a `POST /v1/messages` body. Nothing is recorded on any error.
fn validate(svc: &Services, raw: &[u8]) -> Result<Validated, Problem> {
    let obj = json_object(raw)?;
    only_fields(&obj, &["to", "body", "template", "variables"])?;
    let to = recipient(&obj)?;
    let (body, template) = text_or_template(&obj, "body", &svc.templates)?;
    if body.trim().is_empty() {
        return Err(invalid(
            ProblemKind::InvalidField,
            "body",
            "the message is empty",
        ));
    }
    let info = templates::analyse(&body);
    if info.characters > MAX_BODY_CHARS {
        return Err(invalid(
            ProblemKind::BodyTooLong,
            if template.is_some() {
                "variables"
            } else {
                "body"
            },
            format!("{} characters; at most {MAX_BODY_CHARS}", info.characters),
        ));
    }
    Ok(Validated {
        to,
        body,
        template,
        encoding: info.encoding,
        segments: info.segments,
    })
}

/// Validates a send request, then refuses a recipient who opted out (texted STOP): `422`
/// `recipient-opted-out`, or whom the recipient rules protect (country allow-list, per-number
/// and per-country limits), before anything is recorded or sent.
async fn checked(svc: &Services, raw: &[u8]) -> Result<Validated, Problem> {
    let v = validate(svc, raw)?;
    reachable(svc, &v.to).await?;
    Ok(v)
}

/// Whether Herald may text `to` now: not opted out, and allowed by the recipient rules.
pub(crate) async fn reachable(
    svc: &Services,
    to: &herald::phone::PhoneNumber,
) -> Result<herald::crypto::LookupToken, Problem> {
    let token = svc.vault.lookup_token(to.e164()).await.map_err(|e| {
        tracing::error!(error = %e, "lookup token unavailable");
        Problem::new(ProblemKind::Unavailable).detail("please retry")
    })?;
    match svc.opt_outs.is_opted_out(&token).await {
        Ok(false) => {}
        Ok(true) => {
            return Err(invalid(
                ProblemKind::RecipientOptedOut,
                "to",
                "the recipient replied STOP; they must reply START before Herald sends again",
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "opt-out store unavailable");
            return Err(Problem::new(ProblemKind::Unavailable).detail("please retry"));
        }
    }
    limits::check_recipient(svc, Channel::Sms, to, &token).await?;
    Ok(token)
}

/// The answer to a send.
#[derive(Debug, Serialize)]
struct SendAnswer<'a> {
    id: &'a MessageId,
    status: MessageStatus,
    segments: u32,
    encoding: Encoding,
}

/// What [`record_new`] came to.
enum Recorded {
    /// The message, recorded now.
    New(Box<Message>),
    /// A message with that id was recorded already (by an earlier try of the request); nothing
    /// changed.
    Exists,
}

/// Seals and records a validated message, `accepted`, under `id` (derived from an
/// `Idempotency-Key`; a fresh id when `None`), only if no message has that id; `claim` makes
/// the caller hold its first attempt (the API path sends at once), otherwise a send job will
/// claim it.
async fn record_new(
    svc: &Services,
    v: &Validated,
    caller: &str,
    claim: bool,
    id: Option<MessageId>,
) -> Result<Recorded, Box<dyn std::error::Error + Send + Sync>> {
    let now = svc.clock.now_ms();
    let id = id.unwrap_or_else(|| MessageId::generate(u64::try_from(now).unwrap_or_default()));
    if claim {
        // A request about this one message (a batch has many: each job's lines carry its id).
        herald::telemetry::record_message_id(&id);
    }
    let mut message = seal_message(svc, &id, v, caller.to_owned(), now).await?;
    if claim {
        message.attempts = Attempts::claimed(now, engine::lease_ms(svc));
    }
    if !api::record_new::<Sms>(svc, &message).await? {
        return Ok(Recorded::Exists);
    }
    tracing::info!(message_id = %id, segments = v.segments, encoding = v.encoding.as_str(), "message accepted");
    Ok(Recorded::New(Box::new(message)))
}

async fn seal_message(
    svc: &Services,
    id: &MessageId,
    v: &Validated,
    caller: String,
    now: i64,
) -> Result<Message, Box<dyn std::error::Error + Send + Sync>> {
    let aad = id.as_str();
    Ok(Message {
        id: id.clone(),
        caller,
        to: Recipient::seal(&svc.vault, aad, &v.to).await?,
        template: v.template.clone(),
        status: MessageStatus::Accepted,
        attempts: Attempts::new(now),
        twilio_sid: None,
        error_code: None,
        error_reason: None,
        own: MessageFields {
            body: svc.vault.seal(aad, v.body.as_bytes()).await?,
            encoding: v.encoding,
            segments: v.segments,
            match_token: Some(svc.vault.match_token(v.to.e164(), &v.body).await?),
        },
    })
}

/// The id a request's message at `index` takes: derived from the `Idempotency-Key`'s use when
/// there is one (a retry of a request that died half-way finds what it recorded), else `None`
/// (a fresh one).
async fn keyed_id(
    svc: &Services,
    keyed: Option<&Keyed>,
    index: usize,
) -> Result<Option<MessageId>, herald::crypto::CryptoError> {
    match keyed {
        Some(k) => k.message_id(svc, index).await.map(Some),
        None => Ok(None),
    }
}

/// The message with the id of a keyed request, recorded by an earlier try of it, if any: looked
/// up only by a retry of a request that died (`lookup`), or when recording found the id taken.
async fn earlier(
    svc: &Services,
    lookup: bool,
    id: Option<&MessageId>,
) -> Result<Option<Message>, StoreError> {
    match id {
        Some(id) if lookup => svc.messages.get_record(id).await,
        _ => Ok(None),
    }
}

async fn send(
    svc: &Services,
    req: &Request,
    caller: &str,
    keyed: Option<Keyed>,
) -> http::Response<String> {
    if !svc.config.sms_enabled {
        return api::feature_disabled("SMS sending is disabled");
    }
    let id = match keyed_id(svc, keyed.as_ref(), 0).await {
        Ok(id) => id,
        Err(e) => return unavailable(&e),
    };
    // A retry of a request that died after recording its message goes on with that message
    // (its checks and limits were passed then), never records and sends another.
    let retry = keyed.as_ref().is_some_and(Keyed::is_retry);
    match earlier(svc, retry, id.as_ref()).await {
        Ok(Some(m)) => return resume(svc, m).await,
        Ok(None) => {}
        Err(e) => return unavailable(&e),
    }
    let v = match checked(svc, req.body().as_ref()).await {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    let recorded = match record_new(svc, &v, caller, true, id.clone()).await {
        Ok(Recorded::New(m)) => Some(*m),
        Ok(Recorded::Exists) => None,
        Err(e) => return unavailable(&*e),
    };
    match engine::submit::<Sms>(svc, id.as_ref(), recorded).await {
        Ok(Submitted::Attempted(m, delivery)) => answer_send(&m, delivery),
        Ok(Submitted::Died) => Chaos::death(),
        Err(e) => unavailable(&e),
    }
}

/// Goes on with a message an earlier try of this request recorded before it died: its first
/// attempt is made now unless someone made it already (it waits for it, and no live claim
/// holds it: the claim decides, so nothing is sent twice; a claim that its holder left is taken
/// over as ambiguous, so Twilio is asked first); otherwise the answer says where it is.
async fn resume(svc: &Services, m: Message) -> http::Response<String> {
    match go_on(svc, m).await {
        Ok((m, delivery)) => answer_send(&m, delivery),
        Err(e) => unavailable(&e),
    }
}

/// Goes on with message `m` that an earlier try of a request recorded ([`resume`]; the SMS of a
/// verification too): its first attempt is made now if it still waits for it and no live claim
/// holds it. Returns the message as it is afterwards and what its attempt came to (or, when
/// none was made now, where it is).
pub(crate) async fn go_on(svc: &Services, m: Message) -> Result<(Message, Delivery), StoreError> {
    herald::telemetry::record_message_id(&m.id);
    engine::resume::<Sms>(svc, m).await
}

/// The answer to a send of `m` whose attempt came to `delivery`.
fn answer_send(m: &Message, delivery: Delivery) -> http::Response<String> {
    let id = &m.id;
    let answer = |status| SendAnswer {
        id,
        status,
        segments: m.own.segments,
        encoding: m.own.encoding,
    };
    match api::answered(delivery) {
        Ok((http_status, status)) => problem::json(http_status, &answer(status)),
        Err(code) => {
            let mut p = Problem::new(ProblemKind::TwilioRejected)
                .detail(code.map_or("Twilio refused the message", describe_code))
                .field("to");
            p.message_id = Some(id.to_string());
            p.twilio_code = code;
            p.into_response()
        }
    }
}

/// Most messages one batch request may carry.
pub const MAX_BATCH: usize = 1000;

/// One accepted item of a batch.
#[derive(Debug, Serialize)]
struct BatchAccepted {
    index: usize,
    id: MessageId,
    status: MessageStatus,
    segments: u32,
    encoding: Encoding,
}

/// One refused item of a batch.
#[derive(Debug, Serialize)]
struct BatchRefused {
    index: usize,
    #[serde(flatten)]
    problem: Problem,
}

/// `POST /v1/messages/batch`: validates every item, records the valid ones `accepted`, puts one
/// send job per message on the send queue, answers `202` with the ids and the per-item errors.
/// Under an `Idempotency-Key` the key covers the batch whole: item `i`'s id is derived from the
/// key's use and `i`, so a retry of a batch that died half-way answers with the same ids and
/// records, queues and sends only what the first try did not.
async fn send_batch(
    svc: &Services,
    req: &Request,
    caller: &str,
    keyed: Option<Keyed>,
) -> http::Response<String> {
    if !svc.config.sms_enabled {
        return api::feature_disabled("SMS sending is disabled");
    }
    let items = match serde_json::from_slice::<Value>(req.body().as_ref()) {
        Ok(Value::Object(mut o)) => match o.remove("messages") {
            Some(Value::Array(items)) => items,
            _ => {
                return invalid(
                    ProblemKind::InvalidField,
                    "messages",
                    "messages must be an array",
                )
                .into_response();
            }
        },
        _ => {
            return Problem::new(ProblemKind::MalformedRequest)
                .detail("the body must be a JSON object")
                .into_response();
        }
    };
    if items.is_empty() || items.len() > MAX_BATCH {
        return invalid(
            ProblemKind::InvalidField,
            "messages",
            format!("1 to {MAX_BATCH} messages"),
        )
        .into_response();
    }
    let mut accepted = Vec::new();
    let mut errors = Vec::new();
    let mut jobs = Vec::new();
    let unavailable_item = |index, e: &dyn std::error::Error| {
        tracing::error!(error = %e, "store unavailable");
        BatchRefused {
            index,
            problem: Problem::new(ProblemKind::Unavailable).detail("please retry"),
        }
    };
    let mut recorded = 0;
    let retry = keyed.as_ref().is_some_and(Keyed::is_retry);
    // Under a key, an item whose record is in doubt (the store failed while recording it or
    // looking it up, and may have committed all the same) is not refused on its own: the caller
    // would send it again under another key, and the sweeper the one recorded. The batch stops
    // there and answers 503 instead, which is not kept: its retry with the key derives the
    // same ids and finds what was recorded. Without a key, the item is refused as before.
    let mut in_doubt = false;
    let doubt = |index, e: &dyn std::error::Error, errors: &mut Vec<BatchRefused>| {
        if keyed.is_some() {
            tracing::error!(error = %e, index, "store failed recording a batch item: the batch stops, and its retry with the key goes on");
            true
        } else {
            errors.push(unavailable_item(index, e));
            false
        }
    };
    for (index, item) in items.iter().enumerate() {
        let id = match keyed_id(svc, keyed.as_ref(), index).await {
            Ok(id) => id,
            Err(e) => {
                in_doubt = doubt(index, &e, &mut errors);
                if in_doubt {
                    break;
                }
                continue;
            }
        };
        // Recorded by an earlier try of this request (it died half-way, or answered an error
        // though the store had committed): kept as it is (its checks and limits were passed
        // then), answered with its id as then.
        match earlier(svc, retry, id.as_ref()).await {
            Ok(Some(m)) => {
                accept_found(index, m, &mut accepted, &mut jobs);
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                in_doubt = doubt(index, &e, &mut errors);
                if in_doubt {
                    break;
                }
                continue;
            }
        }
        let raw = serde_json::to_vec(item).unwrap_or_default();
        let v = match checked(svc, &raw).await {
            Ok(v) => v,
            Err(mut problem) => {
                problem.field = problem.field.map(|f| format!("messages[{index}].{f}"));
                errors.push(BatchRefused { index, problem });
                continue;
            }
        };
        let failure: Box<dyn std::error::Error + Send + Sync> =
            match record_new(svc, &v, caller, false, id.clone()).await {
                Ok(Recorded::New(m)) => {
                    accept_found(index, *m, &mut accepted, &mut jobs);
                    recorded += 1;
                    if svc.chaos.crashes_at(CrashPoint::Recorded(recorded)) {
                        return Chaos::death();
                    }
                    continue;
                }
                // The id is this request's own: an earlier try of it recorded the item.
                Ok(Recorded::Exists) => match earlier(svc, true, id.as_ref()).await {
                    Ok(Some(m)) => {
                        accept_found(index, m, &mut accepted, &mut jobs);
                        continue;
                    }
                    Ok(None) => Box::new(StoreError::Conflict),
                    Err(e) => Box::new(e),
                },
                Err(e) => e,
            };
        in_doubt = doubt(index, &*failure, &mut errors);
        if in_doubt {
            break;
        }
    }
    let mut enqueued = 0;
    for chunk in jobs.chunks(10) {
        let batch: Vec<(String, u32)> = chunk.iter().map(|b| (b.clone(), 0)).collect();
        let failed = match svc.send_queue.send_batch(&batch).await {
            Ok(results) => results.iter().filter(|r| r.is_err()).count(),
            Err(_) => batch.len(),
        };
        if failed > 0 {
            // Recorded `accepted`: the sweeper enqueues them once they are overdue.
            tracing::error!(failed, "could not enqueue send jobs; the sweeper will");
        }
        enqueued += batch.len();
        if matches!(svc.chaos.crash_at, Some(CrashPoint::Enqueued(n)) if enqueued >= n) {
            return Chaos::death();
        }
    }
    if in_doubt {
        return Problem::new(ProblemKind::Unavailable)
            .detail(
                "the store failed while recording the batch; retry it with the same \
                 Idempotency-Key: what was recorded is kept and sent once",
            )
            .into_response();
    }
    problem::json(
        202,
        &serde_json::json!({ "messages": accepted, "errors": errors }),
    )
}

/// Answers a batch item with its recorded message `m` (`accepted`, as every item of a batch),
/// and queues the job of its first attempt while it still waits for that attempt (a message
/// an earlier try recorded may have been sent since: its job is not queued again; a duplicate
/// job of one still waiting is harmless, the claim decides).
fn accept_found(
    index: usize,
    m: Message,
    accepted: &mut Vec<BatchAccepted>,
    jobs: &mut Vec<String>,
) {
    if m.status == MessageStatus::Accepted {
        jobs.push(
            Job::Message {
                id: m.id.clone(),
                attempt: m.attempts.attempt,
                not_before_ms: None,
            }
            .to_body(),
        );
    }
    accepted.push(BatchAccepted {
        index,
        id: m.id,
        status: MessageStatus::Accepted,
        segments: m.own.segments,
        encoding: m.own.encoding,
    });
}

/// Handles a batch of send jobs from the send queue (the SQS trigger of this function); only
/// the jobs that must come back are reported.
pub async fn handle_sqs(
    svc: &Services,
    event: SqsEvent,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    Ok(delivery::handle_sqs_batch(svc, event).await?)
}

/// `GET /v1/messages/{id}`.
#[derive(Debug, Serialize)]
struct MessageView {
    #[serde(flatten)]
    record: RecordView<MessageId, MessageStatus>,
    segments: u32,
    encoding: Encoding,
}

async fn get(svc: &Services, caller: &str, raw_id: &str) -> http::Response<String> {
    views::show::<Sms, _>(svc, caller, raw_id, "message", |record, m| MessageView {
        record,
        segments: m.own.segments,
        encoding: m.own.encoding,
    })
    .await
}

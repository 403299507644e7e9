//! HTTP routes: Twilio's REST API (Messages, Calls, Keys, Account; Accounts v1 auth tokens)
//! and the `/_sim` inspection API.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use rand::Rng as _;
use serde::Deserialize;
use serde_json::{Value, json};
use time::{Date, OffsetDateTime};

use crate::callbacks::CallbackJob;
use crate::calls::{CALL_EVENTS, CallJob, CallStatus, SimCall};
use crate::config::{CallOutcome, Faults, Outcome};
use crate::credentials::{Principal, SimKey, account_json, iso8601};
use crate::inbound::InboundSms;
use crate::model::{
    API_VERSION, MessageStatus, RequestRecord, Resource, ResourceMeta, SimMessage, TwilioError,
    by_sid,
};
use crate::segments::num_segments;
use crate::sim::{Inner, Job};

type Shared = State<Arc<Inner>>;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/_sim/messages", inspect(|s| &s.messages))
        .route("/_sim/requests", inspect(|s| &s.requests))
        .route("/_sim/callbacks", inspect(|s| &s.callbacks))
        .route("/_sim/outcomes", post(sim_outcome))
        .route("/_sim/calls", inspect(|s| &s.calls))
        .route("/_sim/call-callbacks", inspect(|s| &s.call_callbacks))
        .route("/_sim/voice-requests", inspect(|s| &s.voice_requests))
        .route("/_sim/call-outcomes", post(sim_call_outcome))
        .route("/_sim/inbound", inspect(|s| &s.inbound).post(sim_inbound))
        .route("/_sim/keys", inspect(|s| &s.creds.keys))
        .route("/_sim/auth-token", get(sim_auth_token))
        .route("/_sim/json-callbacks", post(sim_json_callbacks))
        .route("/_sim/faults", get(sim_get_faults).post(sim_set_faults))
        .route("/_sim/flush", post(sim_flush))
        .route("/_sim/idle", post(sim_idle))
        .fallback(api)
        .with_state(inner)
}

// ---------------------------------------------------------------------------------------------
// Inspection API

/// A `GET /_sim/…` route answering, as JSON, what `pick` chooses of the simulator's state
/// (the messages, calls, their callbacks, requests…).
fn inspect<T: serde::Serialize + ?Sized + 'static>(
    pick: fn(&crate::sim::State) -> &T,
) -> axum::routing::MethodRouter<Arc<Inner>> {
    get(move |State(inner): Shared| async move { Json(json!(pick(&inner.lock()))) })
}

/// The body of an outcome POST: the number, the outcome's name, and what some outcomes take
/// (a message's `error_code`, the `digits` a callee presses); what an outcome does not take is
/// ignored.
#[derive(Deserialize)]
struct OutcomeRequest {
    to: String,
    outcome: String,
    error_code: Option<u32>,
    digits: Option<String>,
}

async fn sim_outcome(State(inner): Shared, Json(req): Json<OutcomeRequest>) -> Response {
    let outcome = match (req.outcome.as_str(), req.error_code) {
        ("deliver" | "delivered", _) => Ok(Outcome::Deliver),
        ("undelivered", code) => Ok(Outcome::Undelivered(code.unwrap_or(30003))),
        ("failed", code) => Ok(Outcome::Failed(code.unwrap_or(30008))),
        ("stays-sent", _) => Ok(Outcome::StaysSent),
        (other, _) => Err(format!(
            "unknown outcome {other:?}: deliver, undelivered, failed or stays-sent"
        )),
    };
    store_outcome(&inner, req.to, outcome, |state| &mut state.outcomes)
}

/// Answers an outcome POST (`/_sim/outcomes`, `/_sim/call-outcomes`): stores the outcome for
/// `to` in the map `pick` chooses and echoes `{to, outcome}`, or answers 400 `{error}` when
/// the outcome was not understood.
fn store_outcome<O: serde::Serialize + Clone>(
    inner: &Inner,
    to: String,
    outcome: Result<O, String>,
    pick: impl FnOnce(&mut crate::sim::State) -> &mut std::collections::HashMap<String, O>,
) -> Response {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response();
        }
    };
    pick(&mut inner.lock()).insert(to.clone(), outcome.clone());
    Json(json!({"to": to, "outcome": outcome})).into_response()
}

async fn sim_call_outcome(State(inner): Shared, Json(req): Json<OutcomeRequest>) -> Response {
    let outcome = match (req.outcome.as_str(), req.digits) {
        ("answer-and-press", Some(d)) => Ok(CallOutcome::AnswerAndPress(d)),
        ("answer-no-input", _) => Ok(CallOutcome::AnswerNoInput),
        ("busy", _) => Ok(CallOutcome::Busy),
        ("no-answer", _) => Ok(CallOutcome::NoAnswer),
        ("failed", _) => Ok(CallOutcome::Failed),
        ("rings-forever", _) => Ok(CallOutcome::RingsForever),
        (other, _) => Err(format!(
            "unknown outcome {other:?}: answer-and-press (with digits), answer-no-input, busy, no-answer, failed or rings-forever"
        )),
    };
    store_outcome(&inner, req.to, outcome, |state| &mut state.call_outcomes)
}

async fn sim_inbound(State(inner): Shared, Json(sms): Json<InboundSms>) -> Json<Value> {
    let record = crate::inbound::deliver(&inner, sms).await;
    Json(json!(record))
}

async fn sim_auth_token(State(inner): Shared) -> Json<Value> {
    let state = inner.lock();
    Json(json!({
        "primary": state.creds.primary,
        "secondary": state.creds.secondary.as_ref().map(|(t, _)| t),
    }))
}

#[derive(Deserialize)]
struct JsonCallbacksRequest {
    enabled: bool,
}

async fn sim_json_callbacks(
    State(inner): Shared,
    Json(req): Json<JsonCallbacksRequest>,
) -> Json<Value> {
    inner.lock().json_callbacks = req.enabled;
    Json(json!({"enabled": req.enabled}))
}

async fn sim_get_faults(State(inner): Shared) -> Json<Faults> {
    Json(inner.lock().faults.clone())
}

async fn sim_set_faults(State(inner): Shared, Json(faults): Json<Faults>) -> Json<Faults> {
    inner.lock().faults = faults.clone();
    Json(faults)
}

async fn sim_flush(State(inner): Shared) -> Json<Value> {
    let mut flushed = 0;
    loop {
        let guard = crate::sim::BusyGuard::new(&inner);
        let Some(job) = inner.lock().held.pop_front() else {
            drop(guard);
            break;
        };
        crate::sim::run_job(&inner, job, 0).await;
        drop(guard);
        flushed += 1;
    }
    Json(json!({"flushed": flushed}))
}

async fn sim_idle(State(inner): Shared) -> Json<Value> {
    let mut rx = inner.busy.subscribe();
    let _ = rx.wait_for(|n| *n == 0).await;
    Json(json!({"idle": true}))
}

// ---------------------------------------------------------------------------------------------
// Twilio REST API

fn error_response(err: &TwilioError) -> Response {
    let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(err.to_json())).into_response()
}

enum Route {
    Messages,
    Message(String),
    Calls,
    Call(String),
    Keys,
    Key(String),
    Account,
    SecondaryAuthToken,
    AuthTokenPromotion,
}

impl Route {
    /// Keys, the Account and auth tokens need the account's auth token: a standard API key
    /// cannot manage credentials.
    fn needs_auth_token(&self) -> bool {
        matches!(
            self,
            Self::Keys
                | Self::Key(_)
                | Self::Account
                | Self::SecondaryAuthToken
                | Self::AuthTokenPromotion
        )
    }

    /// Injected faults apply to messaging and voice, not to credential management.
    fn faultable(&self) -> bool {
        matches!(
            self,
            Self::Messages | Self::Message(_) | Self::Calls | Self::Call(_)
        )
    }
}

/// What a request resolved to before it is recorded.
struct Answer {
    response: Response,
    error_code: Option<u32>,
    created_sid: Option<String>,
}

impl Answer {
    fn error(err: TwilioError) -> Self {
        Self {
            response: error_response(&err),
            error_code: Some(err.code),
            created_sid: None,
        }
    }

    fn empty(status: StatusCode) -> Self {
        Self {
            response: status.into_response(),
            error_code: None,
            created_sid: None,
        }
    }

    fn json(status: StatusCode, body: Value) -> Self {
        Self {
            response: (status, Json(body)).into_response(),
            error_code: None,
            created_sid: None,
        }
    }

    /// A create's answer: 201 with the resource's JSON, recording the SID it made.
    fn created(made: Result<(String, Value), TwilioError>) -> Self {
        match made {
            Ok((sid, body)) => Self {
                created_sid: Some(sid),
                ..Self::json(StatusCode::CREATED, body)
            },
            Err(e) => Self::error(e),
        }
    }

    /// 200 with a JSON body (a page, a fetched resource), or the error.
    fn ok(body: Result<Value, TwilioError>) -> Self {
        match body {
            Ok(body) => Self::json(StatusCode::OK, body),
            Err(e) => Self::error(e),
        }
    }

    /// A fetch's answer: 200 with the JSON of the resource of `items` with SID `sid`, or 404
    /// for `path` when there is none.
    fn fetched<R: Resource>(items: &[R], sid: &str, path: &str) -> Self {
        let found = by_sid(items, sid).map(R::twilio_json);
        Self::ok(found.ok_or_else(|| not_found(path)))
    }
}

enum Fault {
    TooMany,
    ServerError,
    Timeout,
}

fn not_found(path: &str) -> TwilioError {
    TwilioError::new(
        404,
        20404,
        format!("The requested resource {path} was not found"),
    )
}

/// Checks HTTP Basic credentials.
fn authenticate(inner: &Inner, headers: &HeaderMap) -> Option<Principal> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    inner.lock().creds.check(&inner.account_sid, user, pass)
}

fn unauthorized(message: &str) -> Answer {
    let mut answer = Answer::error(TwilioError::new(401, 20003, message));
    answer.response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Twilio API\""),
    );
    answer
}

async fn api(
    State(inner): Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().map(str::to_string);
    let authenticated = authenticate(&inner, &headers);
    let principal = authenticated.as_ref().map(|p| p.name().to_string());
    let record = |inner: &Inner, fault: Option<&str>, answer: &Answer| {
        inner.lock().requests.push(RequestRecord {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            principal: principal.clone(),
            status: answer.response.status().as_u16(),
            error_code: answer.error_code,
            fault: fault.map(str::to_string),
            created_sid: answer.created_sid.clone(),
        });
    };

    let Some(authenticated) = authenticated else {
        let no_creds = !headers.contains_key(header::AUTHORIZATION);
        let answer = unauthorized(if no_creds {
            "Authentication Error - No credentials provided"
        } else {
            "Authentication Error - invalid username"
        });
        record(&inner, None, &answer);
        return answer.response;
    };

    let route = match parse_route(&path) {
        Some((account, route)) if account.is_none_or(|a| a == inner.account_sid) => route,
        _ => {
            let answer = Answer::error(not_found(&path));
            record(&inner, None, &answer);
            return answer.response;
        }
    };

    if route.needs_auth_token() && !matches!(authenticated, Principal::Account(_)) {
        let answer = unauthorized(
            "Authentication Error - API keys cannot access this resource: use the account's auth token",
        );
        record(&inner, None, &answer);
        return answer.response;
    }

    let gate = inner.lock().gate.clone();
    if let Some(gate) = gate {
        tokio::select! {
            _ = gate.wait() => {}
            () = inner.stopped() => {}
        }
    }

    let (fault, faults) = {
        let mut state = inner.lock();
        let faults = state.faults.clone();
        let total = faults.rate_429 + faults.rate_500 + faults.rate_timeout;
        let fault = if total > 0.0 && route.faultable() {
            let r: f64 = state.fault_rng.random();
            if r < faults.rate_429 {
                Some(Fault::TooMany)
            } else if r < faults.rate_429 + faults.rate_500 {
                Some(Fault::ServerError)
            } else if r < total {
                Some(Fault::Timeout)
            } else {
                None
            }
        } else {
            None
        };
        (fault, faults)
    };

    match fault {
        Some(Fault::TooMany) => {
            let mut answer = Answer::error(TwilioError::new(429, 20429, "Too Many Requests"));
            answer.response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(faults.retry_after_secs),
            );
            record(&inner, Some("429"), &answer);
            answer.response
        }
        Some(Fault::ServerError) => {
            let answer = Answer::error(TwilioError::new(500, 20500, "Internal Server Error"));
            record(&inner, Some("500"), &answer);
            answer.response
        }
        Some(Fault::Timeout) => {
            let is_create =
                matches!(route, Route::Messages | Route::Calls) && method == Method::POST;
            let answer = if is_create && !faults.timeout_after_accept {
                Answer::error(TwilioError::new(503, 20503, "Service Unavailable"))
            } else {
                handle(
                    &inner,
                    &method,
                    &path,
                    query.as_deref(),
                    route,
                    &body,
                    &principal,
                )
            };
            record(&inner, Some("timeout"), &answer);
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(faults.timeout_ms)) => {}
                () = inner.stopped() => {}
            }
            answer.response
        }
        None => {
            let answer = handle(
                &inner,
                &method,
                &path,
                query.as_deref(),
                route,
                &body,
                &principal,
            );
            record(&inner, None, &answer);
            answer.response
        }
    }
}

/// The resource a path names, and the account SID in it (`None` for Accounts v1 paths).
fn parse_route(path: &str) -> Option<(Option<&str>, Route)> {
    match path {
        "/v1/AuthTokens/Secondary" => return Some((None, Route::SecondaryAuthToken)),
        "/v1/AuthTokens/Promote" => return Some((None, Route::AuthTokenPromotion)),
        _ => {}
    }
    let rest = path.strip_prefix(&format!("/{API_VERSION}/Accounts/"))?;
    let Some((account, rest)) = rest.split_once('/') else {
        let account = rest.strip_suffix(".json")?;
        return Some((Some(account), Route::Account));
    };
    let route = match rest {
        "Messages.json" => Route::Messages,
        "Calls.json" => Route::Calls,
        "Keys.json" => Route::Keys,
        _ => {
            let (collection, sid) = rest.strip_suffix(".json")?.split_once('/')?;
            if sid.is_empty() || sid.contains('/') {
                return None;
            }
            let sid = sid.to_string();
            match collection {
                "Messages" => Route::Message(sid),
                "Calls" => Route::Call(sid),
                "Keys" => Route::Key(sid),
                _ => return None,
            }
        }
    };
    Some((Some(account), route))
}

fn handle(
    inner: &Arc<Inner>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    route: Route,
    body: &[u8],
    principal: &Option<String>,
) -> Answer {
    match (route, method) {
        (Route::Messages, &Method::POST) => {
            Answer::created(create(inner, body, principal).map(|m| item(&m)))
        }
        (Route::Messages, &Method::GET) => Answer::ok(list(inner, path, query)),
        (Route::Message(sid), &Method::GET) => Answer::fetched(&inner.lock().messages, &sid, path),
        (Route::Calls, &Method::POST) => {
            Answer::created(create_call(inner, body, principal).map(|c| item(&c)))
        }
        (Route::Calls, &Method::GET) => Answer::ok(list_calls(inner, path, query)),
        (Route::Call(sid), &Method::GET) => Answer::fetched(&inner.lock().calls, &sid, path),
        (Route::Keys, &Method::POST) => {
            Answer::created(create_key(inner, body).map(|k| (k.sid.clone(), k.to_new_key_json())))
        }
        (Route::Keys, &Method::GET) => Answer::ok(list_keys(inner, path, query)),
        (Route::Key(sid), &Method::GET) => Answer::fetched(&inner.lock().creds.keys, &sid, path),
        (Route::Key(sid), &Method::POST) => match update_key(inner, &sid, body) {
            Ok(Some(k)) => Answer::json(StatusCode::OK, k.to_twilio_json()),
            Ok(None) => Answer::error(not_found(path)),
            Err(e) => Answer::error(e),
        },
        (Route::Key(sid), &Method::DELETE) => {
            let mut state = inner.lock();
            let before = state.creds.keys.len();
            state.creds.keys.retain(|k| k.sid != sid);
            if state.creds.keys.len() < before {
                Answer::empty(StatusCode::NO_CONTENT)
            } else {
                Answer::error(not_found(path))
            }
        }
        (Route::Account, &Method::GET) => {
            let state = inner.lock();
            Answer::json(
                StatusCode::OK,
                account_json(&inner.account_sid, &state.creds),
            )
        }
        (Route::SecondaryAuthToken, &Method::POST) => {
            let mut state = inner.lock();
            let token = format!("{:032x}", state.sid_rng.random::<u128>());
            let t = inner.now();
            state.creds.secondary = Some((token.clone(), t));
            Answer::json(
                StatusCode::CREATED,
                json!({
                    "account_sid": inner.account_sid,
                    "date_created": iso8601(t),
                    "date_updated": iso8601(t),
                    "secondary_auth_token": token,
                    "url": "https://accounts.twilio.com/v1/AuthTokens/Secondary",
                }),
            )
        }
        (Route::SecondaryAuthToken, &Method::DELETE) => match inner.lock().creds.secondary.take() {
            Some(_) => Answer::empty(StatusCode::NO_CONTENT),
            None => Answer::error(not_found(path)),
        },
        (Route::AuthTokenPromotion, &Method::POST) => {
            let mut state = inner.lock();
            match state.creds.secondary.take() {
                Some((token, created)) => {
                    state.creds.primary = token.clone();
                    Answer::json(
                        StatusCode::OK,
                        json!({
                            "account_sid": inner.account_sid,
                            "auth_token": token,
                            "date_created": iso8601(created),
                            "date_updated": iso8601(inner.now()),
                            "url": "https://accounts.twilio.com/v1/AuthTokens/Promote",
                        }),
                    )
                }
                None => Answer::error(bad_request(
                    20001,
                    "There is no secondary Auth Token to promote: create one first.",
                )),
            }
        }
        _ => Answer::error(TwilioError::new(
            405,
            20004,
            format!("Method {method} not allowed on {path}"),
        )),
    }
}

fn first<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn valid_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    })
}

fn bad_request(code: u32, message: impl Into<String>) -> TwilioError {
    TwilioError::new(400, code, message)
}

fn create(
    inner: &Arc<Inner>,
    body: &[u8],
    principal: &Option<String>,
) -> Result<SimMessage, TwilioError> {
    let params = form_params(body)?;
    let to = first(&params, "To")
        .ok_or_else(|| bad_request(21604, "A 'To' phone number is required."))?;
    let from = first(&params, "From");
    let service = first(&params, "MessagingServiceSid");
    if from.is_none() && service.is_none() {
        return Err(bad_request(21603, "A 'From' phone number is required."));
    }
    let text = first(&params, "Body").unwrap_or("");
    let media_urls: Vec<String> = params
        .iter()
        .filter(|(k, v)| k == "MediaUrl" && !v.is_empty())
        .map(|(_, v)| v.clone())
        .collect();
    if text.is_empty() && media_urls.is_empty() {
        return Err(bad_request(21602, "Message body is required."));
    }
    if text.chars().count() > 1600 {
        return Err(bad_request(
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        ));
    }
    if to == "+15005550001" || !valid_e164(to) {
        return Err(bad_request(
            21211,
            format!("The 'To' number {to} is not a valid phone number."),
        ));
    }
    if let Some(sid) = service {
        let ok = sid.len() == 34
            && sid.starts_with("MG")
            && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(bad_request(
                21701,
                format!("The Messaging Service Sid {sid} is invalid."),
            ));
        }
    }
    match from {
        Some("+15005550001") => {
            return Err(bad_request(
                21212,
                "The 'From' number +15005550001 is not a valid phone number, shortcode, or alphanumeric sender ID.",
            ));
        }
        Some("+15005550007") => {
            return Err(bad_request(
                21606,
                "The 'From' phone number provided (+15005550007) is not a valid message-capable Twilio phone number for this destination.",
            ));
        }
        Some("+15005550008") => {
            return Err(bad_request(
                21611,
                "This 'From' number has exceeded the maximum number of queued messages.",
            ));
        }
        _ => {}
    }
    let from_shown = from.unwrap_or("+15005550006");
    match to {
        "+15005550002" => {
            return Err(bad_request(
                21612,
                format!(
                    "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: {from_shown} via SMS."
                ),
            ));
        }
        "+15005550003" => {
            return Err(bad_request(
                21408,
                format!(
                    "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."
                ),
            ));
        }
        "+15005550004" => {
            return Err(bad_request(
                21610,
                "Attempt to send to unsubscribed recipient",
            ));
        }
        "+15005550009" => {
            return Err(bad_request(
                21614,
                format!("'To' number {to} is not a valid mobile number"),
            ));
        }
        _ => {}
    }
    if inner.lock().opted_out.contains(to) {
        return Err(bad_request(
            21610,
            "Attempt to send to unsubscribed recipient",
        ));
    }
    let status_callback = first(&params, "StatusCallback").map(str::to_string);
    check_callback_url(status_callback.as_deref())?;

    // Twilio's timestamps have whole seconds.
    let now = inner.now();
    let mut state = inner.lock();
    let sid = state.new_sid("SM");
    let outcome = state.outcomes.get(to).copied().unwrap_or_default();
    let msg = SimMessage {
        sid: sid.clone(),
        account_sid: inner.account_sid.clone(),
        to: to.to_string(),
        from: from.map(str::to_string),
        messaging_service_sid: service.map(str::to_string),
        body: text.to_string(),
        media_urls,
        status: if from.is_none() {
            MessageStatus::Accepted
        } else {
            MessageStatus::Queued
        },
        error_code: None,
        error_message: None,
        status_callback,
        // Under a Messaging Service without From, Twilio reports 0 until a sender is picked.
        num_segments: if from.is_none() {
            0
        } else {
            num_segments(text)
        },
        meta: ResourceMeta::new(state.messages.len(), principal, now),
        // Not sent yet: Twilio sets `date_sent` when it hands the message on (a queued message
        // has none, so a `DateSent` filter does not list it).
        date_sent: None,
    };
    state.messages.push(msg.clone());
    let job = CallbackJob::plan(&mut state, &sid, outcome);
    drop(state);
    inner.schedule(Job::Message(job));
    Ok(msg)
}

fn valid_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

fn check_callback_url(url: Option<&str>) -> Result<(), TwilioError> {
    match url {
        Some(cb) if !valid_url(cb) => Err(bad_request(
            21609,
            format!("The StatusCallback URL {cb} is not a valid URL."),
        )),
        _ => Ok(()),
    }
}

fn http_method(params: &[(String, String)], name: &str) -> Result<String, TwilioError> {
    match first(params, name).map(str::to_ascii_uppercase) {
        None => Ok("POST".into()),
        Some(m) if m == "GET" || m == "POST" => Ok(m),
        Some(m) => Err(bad_request(
            21205,
            format!("{name} must be GET or POST, not {m}"),
        )),
    }
}

/// `POST Calls.json`: validates as Twilio does, stores the call, schedules its progress.
fn create_call(
    inner: &Arc<Inner>,
    body: &[u8],
    principal: &Option<String>,
) -> Result<SimCall, TwilioError> {
    let params = form_params(body)?;
    let to =
        first(&params, "To").ok_or_else(|| bad_request(21201, "No 'To' number is specified"))?;
    let from = first(&params, "From")
        .ok_or_else(|| bad_request(21213, "No 'From' number is specified"))?;
    let twiml = first(&params, "Twiml");
    let url = first(&params, "Url");
    match (twiml, url) {
        (None, None) => return Err(bad_request(21205, "Url parameter is required.")),
        (Some(t), _) if t.chars().count() > 4000 => {
            return Err(bad_request(
                32018,
                "Twiml size exceeded maximum allowed value of 4000 characters",
            ));
        }
        (None, Some(u)) if !valid_url(u) => {
            return Err(bad_request(21205, format!("Url is not a valid URL: {u}")));
        }
        _ => {}
    }
    if to == "+15005550001" {
        return Err(bad_request(
            21217,
            format!("Phone number {to} does not appear to be valid"),
        ));
    }
    if !valid_e164(to) {
        return Err(bad_request(
            21211,
            format!("Invalid 'To' Phone Number: {to}"),
        ));
    }
    if from == "+15005550001" || !valid_e164(from) {
        return Err(bad_request(
            21212,
            format!("Invalid 'From' Phone Number: {from}"),
        ));
    }
    let status_callback = first(&params, "StatusCallback").map(str::to_string);
    check_callback_url(status_callback.as_deref())?;
    let mut events: Vec<String> = Vec::new();
    for (k, v) in &params {
        if k != "StatusCallbackEvent" {
            continue;
        }
        // Some clients send one space-separated value instead of repeating the parameter.
        for e in v.split_whitespace() {
            if !CALL_EVENTS.contains(&e) {
                return Err(bad_request(
                    21626,
                    format!(
                        "Invalid StatusCallbackEvent {e}: initiated, ringing, answered or completed"
                    ),
                ));
            }
            if !events.iter().any(|x| x == e) {
                events.push(e.to_string());
            }
        }
    }
    if events.is_empty() {
        events.push("completed".into());
    }
    let status_callback_method = http_method(&params, "StatusCallbackMethod")?;
    let method = http_method(&params, "Method")?;

    let now = inner.now();
    let mut state = inner.lock();
    let sid = state.new_sid("CA");
    let queued = state
        .call_outcome_queues
        .get_mut(to)
        .and_then(VecDeque::pop_front);
    let outcome = queued
        .or_else(|| state.call_outcomes.get(to).cloned())
        .unwrap_or_default();
    let call = SimCall {
        sid: sid.clone(),
        account_sid: inner.account_sid.clone(),
        to: to.to_string(),
        from: from.to_string(),
        status: CallStatus::Queued,
        twiml: twiml.map(str::to_string),
        url: if twiml.is_some() {
            None
        } else {
            url.map(str::to_string)
        },
        method,
        status_callback,
        status_callback_events: events,
        status_callback_method,
        outcome: outcome.clone(),
        executed_twiml: None,
        digits: None,
        gather_response: None,
        meta: ResourceMeta::new(state.calls.len(), principal, now),
        start_time: None,
        answered_at: None,
        end_time: None,
        duration: None,
        sequence: 0,
    };
    state.calls.push(call.clone());
    drop(state);
    inner.schedule(Job::Call(CallJob::plan(&sid, &outcome)));
    Ok(call)
}

/// `POST Keys.json`: a new standard API key; the secret is shown once.
fn create_key(inner: &Inner, body: &[u8]) -> Result<SimKey, TwilioError> {
    let params = form_params(body)?;
    let name = friendly_name(&params)?;
    let mut state = inner.lock();
    let sid = state.new_sid("SK");
    let secret: String = (0..32)
        .map(|_| {
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            char::from(ALPHABET[state.sid_rng.random_range(0..ALPHABET.len())])
        })
        .collect();
    let t = inner.now();
    let key = SimKey {
        sid,
        friendly_name: name,
        secret,
        date_created: t,
        date_updated: t,
    };
    state.creds.keys.push(key.clone());
    Ok(key)
}

fn friendly_name(params: &[(String, String)]) -> Result<Option<String>, TwilioError> {
    match first(params, "FriendlyName") {
        Some(n) if n.chars().count() > 64 => Err(bad_request(
            20001,
            "FriendlyName must be 64 characters or fewer",
        )),
        n => Ok(n.map(str::to_string)),
    }
}

/// `POST Keys/{Sid}.json`: renames a key.
fn update_key(inner: &Inner, sid: &str, body: &[u8]) -> Result<Option<SimKey>, TwilioError> {
    let params = form_params(body)?;
    let name = friendly_name(&params)?;
    let mut state = inner.lock();
    let Some(key) = state.creds.keys.iter_mut().find(|k| k.sid == sid) else {
        return Ok(None);
    };
    if name.is_some() {
        key.friendly_name = name;
    }
    key.date_updated = inner.now();
    Ok(Some(key.clone()))
}

/// A `DateSent` filter value. Twilio filters on GMT dates: a date (`2008-01-02`) or a timestamp
/// (the Python SDK sends `2008-01-02T00:00:00Z` even for a date), of which only the day counts.
fn parse_day(value: &str) -> Option<Date> {
    use time::format_description::well_known::{Rfc2822, Rfc3339};
    use time::macros::format_description;
    let day = format_description!("[year]-[month]-[day]");
    if let Ok(d) = Date::parse(value, &day) {
        return Some(d);
    }
    let utc_day = |t: OffsetDateTime| t.to_offset(time::UtcOffset::UTC).date();
    if let Ok(t) =
        OffsetDateTime::parse(value, &Rfc3339).or_else(|_| OffsetDateTime::parse(value, &Rfc2822))
    {
        return Some(utc_day(t));
    }
    let plain = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let (head, _) = value.split_once('.').unwrap_or((value, ""));
    time::PrimitiveDateTime::parse(head, &plain)
        .ok()
        .map(|t| t.date())
}

/// The parameters of a create's or an update's form body, in the order sent.
fn form_params(body: &[u8]) -> Result<Vec<(String, String)>, TwilioError> {
    serde_urlencoded::from_bytes(body)
        .map_err(|e| bad_request(20001, format!("Invalid form body: {e}")))
}

fn query_params(query: Option<&str>) -> Result<Vec<(String, String)>, TwilioError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| bad_request(20001, format!("Invalid query string: {e}")))
}

/// One page of a list resource, newest first, under `key` (`messages`, `calls`, `keys`).
/// `items` are `(sid, JSON)` pairs already filtered and sorted; `filters` are the filter
/// parameter names carried into the page URIs.
fn paginate(
    path: &str,
    query: Option<&str>,
    params: &[(String, String)],
    filters: &[&str],
    key: &str,
    items: Vec<(String, Value)>,
) -> Result<Value, TwilioError> {
    let get = |name: &str| first(params, name);
    let page_size = match get("PageSize") {
        None => 50,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| bad_request(20001, format!("Invalid PageSize: {v}")))?,
    };
    let page = match get("Page") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| bad_request(20001, format!("Invalid Page: {v}")))?,
    };
    // A PageToken ("PA" + SID of the previous page's last item) wins over the page index.
    let start = match get("PageToken").and_then(|t| t.strip_prefix("PA")) {
        Some(sid) => items
            .iter()
            .position(|(s, _)| s == sid)
            .map_or(page * page_size, |i| i + 1),
        None => page * page_size,
    };
    let shown: Vec<&(String, Value)> = items.iter().skip(start).take(page_size).collect();
    let has_next = start + shown.len() < items.len();

    let filters: Vec<(&str, &str)> = filters
        .iter()
        .filter_map(|k| get(k).map(|v| (*k, v)))
        .collect();
    let page_uri = |page: usize, token: Option<String>| {
        let mut q = filters.clone();
        let size = page_size.to_string();
        let page = page.to_string();
        q.push(("PageSize", &size));
        q.push(("Page", &page));
        let token = token.unwrap_or_default();
        if !token.is_empty() {
            q.push(("PageToken", &token));
        }
        format!(
            "{path}?{}",
            serde_urlencoded::to_string(&q).unwrap_or_default()
        )
    };
    let uri = match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path.to_string(),
    };
    let next = has_next.then(|| page_uri(page + 1, shown.last().map(|(s, _)| format!("PA{s}"))));
    let previous = (page > 0).then(|| page_uri(page - 1, None));
    Ok(json!({
        key: shown.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        "page": page,
        "page_size": page_size,
        "uri": uri,
        "first_page_uri": page_uri(0, None),
        "next_page_uri": next,
        "previous_page_uri": previous,
        "start": start,
        "end": if shown.is_empty() { start } else { start + shown.len() - 1 },
    }))
}

/// A resource as a page lists it and a create's answer records it: `(sid, JSON)`.
fn item<R: Resource>(r: &R) -> (String, Value) {
    (r.sid().to_string(), r.twilio_json())
}

/// A list's items, `(sid, JSON)`: the resources of `all` that `keep` keeps, newest first, as
/// Twilio lists (by creation time, then creation order; `created` gives both).
fn newest_first<R: Resource>(
    all: &[R],
    keep: impl Fn(&R) -> bool,
    created: impl Fn(&R) -> (OffsetDateTime, usize),
) -> Vec<(String, Value)> {
    let mut matching: Vec<&R> = all.iter().filter(|r| keep(r)).collect();
    matching.sort_by_key(|r| std::cmp::Reverse(created(r)));
    matching.into_iter().map(item).collect()
}

fn list(inner: &Inner, path: &str, query: Option<&str>) -> Result<Value, TwilioError> {
    let params = query_params(query)?;
    let get = |name: &str| first(&params, name);
    let bound = |name: &str| -> Result<Option<Date>, TwilioError> {
        get(name)
            .map(|v| parse_day(v).ok_or_else(|| bad_request(20001, format!("Invalid {name}: {v}"))))
            .transpose()
    };
    let (on, before, after) = (bound("DateSent")?, bound("DateSent<")?, bound("DateSent>")?);
    let to = get("To");
    let from = get("From");

    let date_sent_matches = |m: &SimMessage| {
        let Some(day) = m.date_sent.map(|t| t.date()) else {
            return on.is_none() && before.is_none() && after.is_none();
        };
        on.is_none_or(|d| day == d)
            && before.is_none_or(|d| day <= d)
            && after.is_none_or(|d| day >= d)
    };
    let items = newest_first(
        &inner.lock().messages,
        |m| {
            to.is_none_or(|t| m.to == t)
                && from.is_none_or(|f| m.from.as_deref() == Some(f))
                && date_sent_matches(m)
        },
        |m| (m.meta.date_created, m.meta.index),
    );
    paginate(
        path,
        query,
        &params,
        &["To", "From", "DateSent", "DateSent<", "DateSent>"],
        "messages",
        items,
    )
}

fn list_calls(inner: &Inner, path: &str, query: Option<&str>) -> Result<Value, TwilioError> {
    let params = query_params(query)?;
    let get = |name: &str| first(&params, name);
    let (to, from, status) = (get("To"), get("From"), get("Status"));
    let items = newest_first(
        &inner.lock().calls,
        |c| {
            to.is_none_or(|t| c.to == t)
                && from.is_none_or(|f| c.from == f)
                && status.is_none_or(|s| c.status.as_str() == s)
        },
        |c| (c.meta.date_created, c.meta.index),
    );
    paginate(
        path,
        query,
        &params,
        &["To", "From", "Status"],
        "calls",
        items,
    )
}

fn list_keys(inner: &Inner, path: &str, query: Option<&str>) -> Result<Value, TwilioError> {
    let params = query_params(query)?;
    let items = inner.lock().creds.keys.iter().rev().map(item).collect();
    paginate(path, query, &params, &[], "keys", items)
}

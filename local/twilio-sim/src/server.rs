//! HTTP routes: Twilio's Messages REST API and the `/_sim` inspection API.

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
use crate::config::{Faults, Outcome};
use crate::model::{API_VERSION, MessageStatus, RequestRecord, SimMessage, TwilioError};
use crate::segments::num_segments;
use crate::sim::Inner;

type Shared = State<Arc<Inner>>;

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/_sim/messages", get(sim_messages))
        .route("/_sim/requests", get(sim_requests))
        .route("/_sim/callbacks", get(sim_callbacks))
        .route("/_sim/outcomes", post(sim_outcome))
        .route("/_sim/faults", get(sim_get_faults).post(sim_set_faults))
        .route("/_sim/flush", post(sim_flush))
        .route("/_sim/idle", post(sim_idle))
        .fallback(api)
        .with_state(inner)
}

// ---------------------------------------------------------------------------------------------
// Inspection API

async fn sim_messages(State(inner): Shared) -> Json<Value> {
    Json(json!(inner.lock().messages))
}

async fn sim_requests(State(inner): Shared) -> Json<Value> {
    Json(json!(inner.lock().requests))
}

async fn sim_callbacks(State(inner): Shared) -> Json<Value> {
    Json(json!(inner.lock().callbacks))
}

#[derive(Deserialize)]
struct OutcomeRequest {
    to: String,
    outcome: String,
    error_code: Option<u32>,
}

async fn sim_outcome(State(inner): Shared, Json(req): Json<OutcomeRequest>) -> Response {
    let outcome = match (req.outcome.as_str(), req.error_code) {
        ("deliver" | "delivered", _) => Outcome::Deliver,
        ("undelivered", code) => Outcome::Undelivered(code.unwrap_or(30003)),
        ("failed", code) => Outcome::Failed(code.unwrap_or(30008)),
        (other, _) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("unknown outcome {other:?}: deliver, undelivered or failed")})),
            )
                .into_response();
        }
    };
    inner.lock().outcomes.insert(req.to.clone(), outcome);
    Json(json!({"to": req.to, "outcome": outcome})).into_response()
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
        crate::callbacks::run_job(&inner, job, 0).await;
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

    fn json(status: StatusCode, body: Value) -> Self {
        Self {
            response: (status, Json(body)).into_response(),
            error_code: None,
            created_sid: None,
        }
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

/// Checks HTTP Basic credentials; returns the principal (account SID or API key SID).
fn authenticate(inner: &Inner, headers: &HeaderMap) -> Option<String> {
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
    let ok = (user == inner.account_sid && ct_eq(pass, &inner.auth_token))
        || inner
            .api_keys
            .iter()
            .any(|(sid, secret)| user == sid && ct_eq(pass, secret));
    ok.then(|| user.to_string())
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
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
    let principal = authenticate(&inner, &headers);
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

    if principal.is_none() {
        let no_creds = !headers.contains_key(header::AUTHORIZATION);
        let mut answer = Answer::error(TwilioError::new(
            401,
            20003,
            if no_creds {
                "Authentication Error - No credentials provided"
            } else {
                "Authentication Error - invalid username"
            },
        ));
        answer.response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
        record(&inner, None, &answer);
        return answer.response;
    }

    let route = match parse_route(&path) {
        Some((account, route)) if account == inner.account_sid => route,
        _ => {
            let answer = Answer::error(not_found(&path));
            record(&inner, None, &answer);
            return answer.response;
        }
    };

    let (fault, faults) = {
        let mut state = inner.lock();
        let faults = state.faults.clone();
        let total = faults.rate_429 + faults.rate_500 + faults.rate_timeout;
        let fault = if total > 0.0 {
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
            let is_create = matches!(route, Route::Messages) && method == Method::POST;
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

/// `/2010-04-01/Accounts/{AccountSid}/Messages.json` or `.../Messages/{Sid}.json`.
fn parse_route(path: &str) -> Option<(&str, Route)> {
    let rest = path.strip_prefix(&format!("/{API_VERSION}/Accounts/"))?;
    let (account, rest) = rest.split_once('/')?;
    if rest == "Messages.json" {
        return Some((account, Route::Messages));
    }
    let sid = rest.strip_prefix("Messages/")?.strip_suffix(".json")?;
    (!sid.is_empty() && !sid.contains('/')).then(|| (account, Route::Message(sid.to_string())))
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
        (Route::Messages, &Method::POST) => match create(inner, body, principal) {
            Ok(m) => Answer {
                response: (StatusCode::CREATED, Json(m.to_twilio_json())).into_response(),
                error_code: None,
                created_sid: Some(m.sid),
            },
            Err(e) => Answer::error(e),
        },
        (Route::Messages, &Method::GET) => match list(inner, path, query) {
            Ok(page) => Answer::json(StatusCode::OK, page),
            Err(e) => Answer::error(e),
        },
        (Route::Message(sid), &Method::GET) => {
            match inner.lock().messages.iter().find(|m| m.sid == sid) {
                Some(m) => Answer::json(StatusCode::OK, m.to_twilio_json()),
                None => Answer::error(not_found(path)),
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
    let params: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| bad_request(20001, format!("Invalid form body: {e}")))?;
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
    let status_callback = first(&params, "StatusCallback").map(str::to_string);
    if let Some(cb) = &status_callback {
        let ok = url::Url::parse(cb)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            return Err(bad_request(
                21609,
                format!("The StatusCallback URL {cb} is not a valid URL."),
            ));
        }
    }

    // Twilio's timestamps have whole seconds.
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
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
        index: state.messages.len(),
        principal: principal.clone().unwrap_or_default(),
        date_created: now,
        date_updated: now,
        date_sent: Some(now),
    };
    state.messages.push(msg.clone());
    let job = CallbackJob::plan(&mut state, &sid, outcome);
    drop(state);
    inner.schedule(job);
    Ok(msg)
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

fn list(inner: &Inner, path: &str, query: Option<&str>) -> Result<Value, TwilioError> {
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| bad_request(20001, format!("Invalid query string: {e}")))?;
    let get = |name: &str| first(&params, name);
    let bound = |name: &str| -> Result<Option<Date>, TwilioError> {
        get(name)
            .map(|v| parse_day(v).ok_or_else(|| bad_request(20001, format!("Invalid {name}: {v}"))))
            .transpose()
    };
    let (on, before, after) = (bound("DateSent")?, bound("DateSent<")?, bound("DateSent>")?);
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
    let to = get("To");
    let from = get("From");

    let state = inner.lock();
    let mut matching: Vec<&SimMessage> = state
        .messages
        .iter()
        .filter(|m| to.is_none_or(|t| m.to == t))
        .filter(|m| from.is_none_or(|f| m.from.as_deref() == Some(f)))
        .filter(|m| {
            let Some(day) = m.date_sent.map(|t| t.date()) else {
                return on.is_none() && before.is_none() && after.is_none();
            };
            on.is_none_or(|d| day == d)
                && before.is_none_or(|d| day <= d)
                && after.is_none_or(|d| day >= d)
        })
        .collect();
    // Newest first, as Twilio lists.
    matching.sort_by(|a, b| {
        b.date_created
            .cmp(&a.date_created)
            .then(b.index.cmp(&a.index))
    });

    // A PageToken ("PA" + SID of the previous page's last message) wins over the page index.
    let start = match get("PageToken").and_then(|t| t.strip_prefix("PA")) {
        Some(sid) => matching
            .iter()
            .position(|m| m.sid == sid)
            .map_or(page * page_size, |i| i + 1),
        None => page * page_size,
    };
    let items: Vec<&SimMessage> = matching
        .iter()
        .skip(start)
        .take(page_size)
        .copied()
        .collect();
    let has_next = start + items.len() < matching.len();

    let filters: Vec<(&str, &str)> = ["To", "From", "DateSent", "DateSent<", "DateSent>"]
        .into_iter()
        .filter_map(|k| get(k).map(|v| (k, v)))
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
    let next = has_next.then(|| page_uri(page + 1, items.last().map(|m| format!("PA{}", m.sid))));
    let previous = (page > 0).then(|| page_uri(page - 1, None));
    Ok(json!({
        "messages": items.iter().map(|m| m.to_twilio_json()).collect::<Vec<_>>(),
        "page": page,
        "page_size": page_size,
        "uri": uri,
        "first_page_uri": page_uri(0, None),
        "next_page_uri": next,
        "previous_page_uri": previous,
        "start": start,
        "end": if items.is_empty() { start } else { start + items.len() - 1 },
    }))
}

//! The caller's own messages: `GET /v1/messages?status=&from=&to=&limit=&cursor=` lists them
//! newest first, a page at a time behind an opaque cursor, numbers masked;
//! `GET /v1/reports/delivery?from=&to=` counts them by status, country and Twilio error code,
//! with the delivery rate. `from` and `to` are RFC 3339 times (`[from, to)`), by default the
//! last 30 days (list) or 24 hours (report). Both read the `by_caller` index: a caller never
//! sees another caller's messages.

use std::collections::BTreeMap;

use base64::Engine;
use herald::domain::{MessageId, MessageStatus};
use herald::ports::{MessageQuery, PageCursor};
use herald::problem::{self, Problem, ProblemKind};
use herald::service::Services;
use herald::templates::Encoding;
use lambda_http::{Request, RequestExt};
use serde::Serialize;

use crate::{invalid, rfc3339, unavailable};

const DAY_MS: i64 = 86_400_000;

/// Most messages a report counts; beyond, it says `truncated`.
pub const MAX_REPORT_MESSAGES: usize = 100_000;

fn param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name))
        .map(str::to_owned)
}

fn time_param(req: &Request, name: &str) -> Result<Option<i64>, Problem> {
    let Some(v) = param(req, name) else {
        return Ok(None);
    };
    let t = time::OffsetDateTime::parse(&v, &time::format_description::well_known::Rfc3339)
        .map_err(|_| invalid(ProblemKind::InvalidField, name, "an RFC 3339 time"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map(Some)
        .map_err(|_| invalid(ProblemKind::InvalidField, name, "out of range"))
}

/// `[from, to)` from the query, `default_span_ms` back from now by default.
fn bounds(svc: &Services, req: &Request, default_span_ms: i64) -> Result<(i64, i64), Problem> {
    let to = time_param(req, "to")?.unwrap_or_else(|| svc.clock.now_ms() + 1);
    let from = time_param(req, "from")?.unwrap_or(to - default_span_ms);
    if from >= to {
        return Err(invalid(
            ProblemKind::InvalidField,
            "from",
            "from must be before to",
        ));
    }
    Ok((from, to))
}

fn encode_cursor(c: &PageCursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}.{}", c.created_at_ms, c.id))
}

fn decode_cursor(s: &str) -> Option<PageCursor> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (ms, id) = text.split_once('.')?;
    Some(PageCursor {
        created_at_ms: ms.parse().ok()?,
        id: id.parse::<MessageId>().ok()?,
    })
}

/// One message of a list.
#[derive(Debug, Serialize)]
struct Item {
    id: MessageId,
    to: String,
    status: MessageStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<String>,
    segments: u32,
    encoding: Encoding,
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<String>,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<u32>,
    created_at: String,
    updated_at: String,
}

/// `GET /v1/messages`.
pub async fn list(svc: &Services, req: &Request, caller: &str) -> http::Response<String> {
    let status = match param(req, "status") {
        None => None,
        Some(s) => match s.parse::<MessageStatus>() {
            Ok(st) => Some(st),
            Err(()) => {
                return invalid(ProblemKind::InvalidField, "status", "not a message status")
                    .into_response();
            }
        },
    };
    let limit = match param(req, "limit").map(|l| l.parse::<u32>()) {
        None => 50,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        Some(_) => {
            return invalid(ProblemKind::InvalidField, "limit", "1 to 100").into_response();
        }
    };
    let after = match param(req, "cursor") {
        None => None,
        Some(c) => match decode_cursor(&c) {
            Some(c) => Some(c),
            None => {
                return invalid(
                    ProblemKind::InvalidField,
                    "cursor",
                    "not a cursor Herald gave",
                )
                .into_response();
            }
        },
    };
    let (from_ms, to_ms) = match bounds(svc, req, 30 * DAY_MS) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let q = MessageQuery {
        caller: caller.to_owned(),
        from_ms,
        to_ms,
        status,
        after,
        limit,
    };
    let page = match svc.queries.list_messages_by_caller(&q).await {
        Ok(p) => p,
        Err(e) => return unavailable(&e),
    };
    let messages: Vec<Item> = page
        .messages
        .into_iter()
        .map(|m| Item {
            to: m.to.masked,
            status: m.status,
            country: m.to.country,
            segments: m.own.segments,
            encoding: m.own.encoding,
            template: m.template,
            attempts: m.attempts.attempt,
            error_code: m.error_code,
            created_at: rfc3339(m.attempts.created_at_ms),
            updated_at: rfc3339(m.attempts.updated_at_ms),
            id: m.id,
        })
        .collect();
    problem::json(
        200,
        &serde_json::json!({
            "messages": messages,
            "next_cursor": page.next.as_ref().map(encode_cursor),
        }),
    )
}

/// `GET /v1/reports/delivery`.
#[derive(Debug, Default, Serialize)]
struct Report {
    from: String,
    to: String,
    total: u64,
    by_status: BTreeMap<&'static str, u64>,
    by_country: BTreeMap<String, u64>,
    by_error_code: BTreeMap<String, u64>,
    /// Messages in a final state.
    finished: u64,
    /// Delivered (or read) messages.
    delivered: u64,
    /// `delivered / finished`, `null` when nothing finished.
    delivery_rate: Option<f64>,
    /// More messages than [`MAX_REPORT_MESSAGES`]: only the newest were counted.
    truncated: bool,
}

/// `GET /v1/reports/delivery`.
pub async fn report(svc: &Services, req: &Request, caller: &str) -> http::Response<String> {
    let (from_ms, to_ms) = match bounds(svc, req, DAY_MS) {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let mut r = Report {
        from: rfc3339(from_ms),
        to: rfc3339(to_ms),
        ..Report::default()
    };
    let mut after = None;
    let mut counted = 0usize;
    loop {
        let q = MessageQuery {
            caller: caller.to_owned(),
            from_ms,
            to_ms,
            status: None,
            after: after.take(),
            limit: 1000,
        };
        let page = match svc.queries.list_messages_by_caller(&q).await {
            Ok(p) => p,
            Err(e) => return unavailable(&e),
        };
        for m in &page.messages {
            counted += 1;
            r.total += 1;
            *r.by_status.entry(m.status.as_str()).or_default() += 1;
            *r.by_country
                .entry(m.to.country.clone().unwrap_or_else(|| "unknown".into()))
                .or_default() += 1;
            if let Some(code) = m.error_code {
                *r.by_error_code.entry(code.to_string()).or_default() += 1;
            }
            if m.status.is_terminal() {
                r.finished += 1;
            }
            if matches!(m.status, MessageStatus::Delivered | MessageStatus::Read) {
                r.delivered += 1;
            }
        }
        match page.next {
            Some(next) if counted < MAX_REPORT_MESSAGES => after = Some(next),
            Some(_) => {
                r.truncated = true;
                break;
            }
            None => break,
        }
    }
    #[allow(clippy::cast_precision_loss)]
    {
        r.delivery_rate = (r.finished > 0).then(|| r.delivered as f64 / r.finished as f64);
    }
    problem::json(200, &r)
}

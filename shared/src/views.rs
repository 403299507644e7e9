//! What the API shows of a record of any channel (`GET /v1/messages/{id}`, `GET /v1/calls/{id}`):
//! the fields every record has and its timeline, found for its caller only. A channel's view
//! flattens [`RecordView`] beside its own fields.

use serde::Serialize;

use crate::api::unavailable;
use crate::domain::{Attempted, EventKind, Subject, rfc3339};
use crate::engine::Channel;
use crate::ports::Records;
use crate::problem::{Problem, ProblemKind};
use crate::service::Services;

/// One entry of a record's timeline.
#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    at: String,
    kind: EventKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<u32>,
    attempt: u32,
    applied: bool,
}

/// The fields every record's view has.
#[derive(Debug, Serialize)]
pub struct RecordView<Id, S> {
    /// Herald's id.
    pub id: Id,
    /// The recipient, masked.
    pub to: String,
    /// Where it is.
    pub status: S,
    /// The attempt it waits for or has made.
    pub attempts: u32,
    /// The template it was rendered from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Twilio's SID of the current attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twilio_sid: Option<String>,
    /// Twilio's error code of the last failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    /// A sanitized reason for the last failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// What happened to it, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

impl<Id: Clone, S> RecordView<Id, S> {
    /// The view of `r`, with its timeline.
    pub fn of<R: Attempted<Id = Id, Status = S>>(r: &R, timeline: Vec<TimelineEntry>) -> Self {
        let a = r.attempts();
        Self {
            id: r.record_id().clone(),
            to: r.to().masked.clone(),
            status: r.status(),
            attempts: a.attempt,
            template: r.template().map(str::to_owned),
            twilio_sid: r.twilio_sid().map(str::to_owned),
            error_code: r.error_code(),
            error: r.error_reason().map(str::to_owned),
            created_at: rfc3339(a.created_at_ms),
            updated_at: rfc3339(a.updated_at_ms),
            timeline,
        }
    }
}

/// The answer to `GET` of the record `raw_id` names ([`find`]): 200 with the channel's `view` of
/// its [`RecordView`] and the record, or the answer [`find`] gave.
pub async fn show<K, V>(
    svc: &Services,
    caller: &str,
    raw_id: &str,
    noun: &str,
    view: impl FnOnce(
        RecordView<<K::Record as Attempted>::Id, <K::Record as Attempted>::Status>,
        &K::Record,
    ) -> V,
) -> http::Response<String>
where
    K: Channel,
    <K::Record as Attempted>::Id: std::str::FromStr,
    V: Serialize,
{
    match find::<K>(svc, caller, raw_id, noun).await {
        Ok((r, timeline)) => crate::problem::json(200, &view(RecordView::of(&r, timeline), &r)),
        Err(answer) => answer,
    }
}

/// The record `raw_id` names, if `caller` made it, with its timeline; otherwise the answer: 404
/// for a malformed or unknown id and for another caller's record (as if it did not exist), 503
/// when the store cannot be read. `noun` names the record in the 404 (`message`, `call`).
pub async fn find<K>(
    svc: &Services,
    caller: &str,
    raw_id: &str,
    noun: &str,
) -> Result<(K::Record, Vec<TimelineEntry>), http::Response<String>>
where
    K: Channel,
    <K::Record as Attempted>::Id: std::str::FromStr,
{
    let not_found = || {
        Problem::new(ProblemKind::NotFound)
            .detail(format!("no {noun} with that id"))
            .into_response()
    };
    let Ok(id) = raw_id.parse::<<K::Record as Attempted>::Id>() else {
        return Err(not_found());
    };
    tracing::Span::current().record(K::SPAN_ID_FIELD, tracing::field::display(&id));
    let r = match K::store(svc).get_record(&id).await {
        Ok(Some(r)) if r.caller() == caller => r,
        Ok(_) => return Err(not_found()),
        Err(e) => return Err(unavailable(&e)),
    };
    let events = svc
        .events
        .events_for(&Subject::from(&id))
        .await
        .map_err(|e| unavailable(&e))?;
    let timeline = events
        .into_iter()
        .map(|e| TimelineEntry {
            at: rfc3339(e.at_ms),
            kind: e.kind,
            status: e.status,
            error_code: e.error_code,
            attempt: e.attempt,
            applied: e.applied,
        })
        .collect();
    Ok((r, timeline))
}

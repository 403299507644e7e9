//! What the HTTP APIs that send (`send-sms`, `place-call`) share, whatever the channel: the
//! route's path without its stage, the `503` of a store that cannot be reached, recording a new
//! record with its `accepted` event, how a first attempt is answered, and a handler's answer as
//! `lambda_http` takes it.

use crate::domain::{Attempted, EventKind, RecordStatus};
use crate::engine::{self, Channel, Outcome};
use crate::ports::{Records, StoreError};
use crate::problem::{Problem, ProblemKind};
use crate::service::Chaos;

/// The API path without any stage prefix (`/prod/v1/calls` → `/v1/calls`); a path with no
/// `/v1/` in it is kept as it is.
pub fn path(raw: &str) -> String {
    raw.find("/v1/")
        .map_or_else(|| raw.to_owned(), |i| raw[i..].to_owned())
}

/// The request's path as API Gateway sent it, without the stage its request context names:
/// `/prod/health` of stage `prod` → `/health`. Only that stage is taken off, and only when the
/// path starts with it (a REST API's `path` carries none); `$default` names no prefix, and a path
/// with no stage context is kept as it is (`/x/health` stays `/x/health`).
pub fn unstaged_path(req: &lambda_http::Request) -> &str {
    use lambda_http::RequestExt;
    use lambda_http::request::RequestContext;
    let raw = req.raw_http_path();
    let stage = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.stage.as_deref(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.stage.as_deref(),
        _ => None,
    };
    match stage {
        Some(stage) if stage != "$default" && !stage.is_empty() => raw
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(stage))
            .filter(|rest| rest.starts_with('/'))
            .unwrap_or(raw),
        _ => raw,
    }
}

/// `503 unavailable` for a store (or key) that failed: the error is logged, never shown.
pub fn unavailable(e: &dyn std::error::Error) -> http::Response<String> {
    tracing::error!(error = %e, "store unavailable");
    Problem::new(ProblemKind::Unavailable)
        .detail("please retry")
        .into_response()
}

/// The answer to a request that would send while its feature is turned off
/// (`SMS_ENABLED`, `VOICE_ENABLED`): `feature-disabled`, saying what is off in `detail`.
pub fn feature_disabled(detail: &str) -> http::Response<String> {
    Problem::new(ProblemKind::FeatureDisabled)
        .detail(detail)
        .into_response()
}

/// Records `r`, new and `accepted`, with its `accepted` event, only if no record has its id.
/// `false`: one has (recorded by an earlier try of the request); nothing changed.
pub async fn record_new<K: Channel>(
    svc: &crate::service::Services,
    r: &K::Record,
) -> Result<bool, StoreError> {
    match K::store(svc).insert_record(r).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Ok(false),
        Err(e) => return Err(e),
    }
    let accepted = <<K::Record as Attempted>::Status as RecordStatus>::ACCEPTED;
    let ev = engine::event::<K>(
        svc,
        r,
        EventKind::Accepted,
        Some(accepted.as_str()),
        None,
        None,
        true,
    );
    engine::record_event(svc, &ev).await;
    Ok(true)
}

/// How the API answers a request whose record's first attempt came to `outcome`: the HTTP
/// status and the record's status (`201` with the status Twilio gave; `202 retrying` when it
/// failed for now; `202 accepted` when it was interrupted or its sender died: recorded and held,
/// the claim expires and the sweeper makes the attempt again), or, when Twilio refused it for
/// good, `Err` with Twilio's code.
pub fn answered<S: RecordStatus>(outcome: Outcome<S>) -> Result<(u16, S), Option<u32>> {
    match outcome {
        Outcome::Submitted(status) => Ok((201, status)),
        Outcome::Deferred => Ok((202, S::RETRYING)),
        Outcome::Interrupted | Outcome::Crashed => Ok((202, S::ACCEPTED)),
        Outcome::Failed(code) => Err(code),
    }
}

/// A handler's answer as `lambda_http` takes it. An answer that marks the invocation's death
/// (failure injection: [`Chaos::death`]) becomes an error, as a Lambda timeout leaves it.
pub fn into_lambda(
    resp: http::Response<String>,
) -> Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error> {
    if Chaos::is_death(&resp) {
        return Err(Box::new(crate::delivery::Crashed));
    }
    Ok(resp.map(lambda_http::Body::from))
}

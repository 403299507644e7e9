//! Twilio's voice webhooks: call-progress status callbacks (`/webhooks/twilio/call-status`) and
//! the key the callee pressed at the alert's `<Gather>` (`/webhooks/twilio/voice-gather`). Both
//! are signature-checked exactly as message status callbacks are.
//!
//! Status callbacks are de-duplicated on `CallSid + CallStatus + SequenceNumber`, applied by the
//! monotonic call status machine under the retry policy ([`herald::calls::apply_report`]: an
//! unanswered or unacknowledged call is called again while attempts remain), and `CallDuration`
//! is recorded. A press of 1 acknowledges the alert and is thanked; another key hears the prompt
//! once more, then a goodbye.

use herald::calls::Voice;
use herald::domain::{CallId, CallReport, CallStatus, EventKind};
use herald::engine;
use herald::ports::CallApplied;
use herald::problem::{Problem, ProblemKind};
use herald::service::Services;
use herald::twilio::twiml;
use lambda_http::Request;

use crate::{
    attempt_of, callback_event, forbidden, form_params, param, public_url, query_param, verify,
};

/// Call-progress status callbacks, relative to `TWILIO_WEBHOOK_BASE_URL`.
pub const CALL_STATUS_PATH: &str = "/webhooks/twilio/call-status";
/// The `<Gather action>` of voice alerts, relative to `TWILIO_WEBHOOK_BASE_URL`.
pub const VOICE_GATHER_PATH: &str = "/webhooks/twilio/voice-gather";

fn twiml_response(body: String) -> http::Response<String> {
    herald::problem::respond(200, "text/xml", body)
}

/// Verifies the signature of a request to `route`; the form parameters when it holds.
async fn authenticated(
    svc: &Services,
    req: &Request,
    route: &str,
) -> Result<Vec<(String, String)>, http::Response<String>> {
    let url = public_url(svc, route, req.uri().query());
    let params = form_params(req.body().as_ref());
    let sig = req
        .headers()
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match verify(svc, &url, &params, sig).await {
        Ok(()) => Ok(params),
        Err(why) => {
            tracing::warn!(route, reason = why, "webhook rejected");
            Err(forbidden(why))
        }
    }
}

/// `POST /webhooks/twilio/call-status`.
pub async fn call_status(svc: &Services, req: &Request) -> http::Response<String> {
    let params = match authenticated(svc, req, CALL_STATUS_PATH).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let query = req.uri().query();
    let sid = param(&params, "CallSid").unwrap_or("");
    let reported = param(&params, "CallStatus").unwrap_or("");
    let status = CallStatus::from_twilio(reported);
    let sequence = param(&params, "SequenceNumber").and_then(|s| s.parse::<u32>().ok());
    let duration = param(&params, "CallDuration").and_then(|d| d.parse::<u32>().ok());
    let error_code = param(&params, "ErrorCode").and_then(|c| c.parse::<u32>().ok());
    let attempt = attempt_of(query);
    let id = query_param(query, "cid").and_then(|c| c.parse::<CallId>().ok());
    if let Some(id) = &id {
        herald::telemetry::record_call_id(id);
    }
    let now = svc.clock.now_ms();
    // Only values of known shape go into the event: nothing from the request is stored raw.
    let safe_sid = herald::twilio::is_sid(sid, "CA").then(|| sid.to_owned());
    let key = format!(
        "cs:{}:{}:{}",
        safe_sid.as_deref().unwrap_or("unknown"),
        status.map_or("unknown", CallStatus::as_str),
        sequence.map_or_else(|| "-".to_owned(), |s| s.to_string())
    );
    match svc.events.get_event(&key).await {
        Ok(Some(_)) => {
            tracing::info!(call_id = ?id.as_ref().map(CallId::as_str), "duplicate call callback");
            return twiml_response(twiml::empty());
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "store unavailable");
            return Problem::new(ProblemKind::Unavailable).into_response();
        }
    }
    let event = callback_event(
        key,
        status.map(CallStatus::as_str),
        safe_sid,
        error_code,
        attempt,
        &params,
        now,
    );
    let report = status.map(|status| CallReport {
        attempt,
        status,
        twilio_sid: event.twilio_sid.clone(),
        duration_seconds: duration,
        error_code,
        error_reason: error_code
            .map(|c| format!("Twilio error {c} ({})", herald::twilio::describe_code(c))),
        at_ms: now,
    });
    if let Err(answer) = crate::settle_callback::<Voice>(svc, id.as_ref(), report, event).await {
        return answer;
    }
    twiml_response(twiml::empty())
}

/// `POST /webhooks/twilio/voice-gather`: the key the callee pressed.
pub async fn voice_gather(svc: &Services, req: &Request) -> http::Response<String> {
    let params = match authenticated(svc, req, VOICE_GATHER_PATH).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let query = req.uri().query();
    let id = query_param(query, "cid").and_then(|c| c.parse::<CallId>().ok());
    if let Some(id) = &id {
        herald::telemetry::record_call_id(id);
    }
    let attempt = attempt_of(query);
    let repeated = query_param(query, "r").as_deref() == Some("1");
    let digits = param(&params, "Digits").unwrap_or("");
    let Some(id) = id else {
        tracing::warn!("gather without a call id");
        return twiml_response(twiml::empty());
    };
    let call = match svc.calls.get_record(&id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            tracing::warn!(call_id = %id, "gather for an unknown call");
            return twiml_response(twiml::empty());
        }
        Err(e) => {
            tracing::error!(call_id = %id, error = %e, "store unavailable");
            return Problem::new(ProblemKind::Unavailable).into_response();
        }
    };
    if digits != "1" {
        tracing::info!(call_id = %id, attempt, repeated, "a key other than 1 was pressed");
        return twiml_response(if repeated {
            twiml::goodbye(&call.own.speech)
        } else {
            twiml::prompt_again(&call.own.speech, &svc.voice_gather_url(&id, attempt, true))
        });
    }
    let now = svc.clock.now_ms();
    match svc.calls.acknowledge_call(&id, attempt, now).await {
        Ok(CallApplied::Applied(c)) => {
            tracing::info!(call_id = %id, attempt, "alert acknowledged");
            herald::telemetry::metric("CallsAcknowledged", 1.0, "Count", &[]);
            let mut ev = engine::event::<Voice>(
                svc,
                &c,
                EventKind::Acknowledged,
                Some("acknowledged"),
                None,
                c.twilio_sid.clone(),
                true,
            );
            ev.attempt = attempt;
            ev.key = format!("{id}:acknowledged");
            engine::record_event(svc, &ev).await;
        }
        Ok(_) => tracing::info!(call_id = %id, attempt, "acknowledged already"),
        Err(e) => {
            tracing::error!(call_id = %id, error = %e, "store unavailable");
            return Problem::new(ProblemKind::Unavailable).into_response();
        }
    }
    twiml_response(twiml::acknowledged(&call.own.speech))
}

//! Placing voice alerts, attempt by attempt, with the guarantees every channel of the attempt
//! engine has ([`crate::engine`]): the [`Voice`] channel says what is a call's own. Its Twilio
//! resource is a Call; a listed call matches when its `To` and `From` are the record's (Twilio's
//! Call resource shows no TwiML, nor anything else of what was said, so the text cannot be
//! compared: the window and SID ownership in [`crate::reconcile`] tell calls apart); its retry
//! policy is [`crate::domain::Call::reported`].
//!
//! What ends an alert: answered (or acknowledged, when the alert asks for it), or
//! `VOICE_MAX_ATTEMPTS` calls placed. Busy, no-answer and failed calls, and answered calls whose
//! acknowledgement is missing, get another attempt until then.

use async_trait::async_trait;

use crate::crypto::Sealed;
use crate::delivery::{Job, JobOutcome};
use crate::domain::{Call, CallId, CallReport, CallStatus};
use crate::engine::{self, Channel, Opened, Outcome};
use crate::ports::{CallApplied, CallStore, StoreError, TwilioCredentials};
use crate::service::Services;
use crate::twilio::{CallResource, LIST_MAX, Listing, NewCall, RetryClass, TwilioError, twiml};

/// What became of one attempt to place a call.
pub type Placement = Outcome<CallStatus>;

/// The most calls one alert may take (`VOICE_MAX_ATTEMPTS`).
pub fn max_attempts(svc: &Services) -> u32 {
    svc.config.voice_max_attempts
}

/// The TwiML of `call`'s current attempt speaking `text`: the `<Gather>` (when an
/// acknowledgement is asked for) posts to this attempt's gather URL.
pub fn twiml_for(svc: &Services, call: &Call, text: &str) -> String {
    let action = call
        .own
        .require_ack
        .then(|| svc.voice_gather_url(&call.id, call.attempts.attempt, false));
    twiml::alert(&call.own.speech, text, action.as_deref())
}

/// Handles a [`Job::Call`] from the retry queue: claims the attempt and places the call.
#[tracing::instrument(name = "call", skip_all, fields(call_id = %id))]
pub async fn process_call_job(
    svc: &Services,
    id: &CallId,
    attempt: u32,
    not_before_ms: Option<i64>,
) -> JobOutcome {
    engine::process::<Voice>(svc, id, attempt, not_before_ms).await
}

/// Makes the attempt `call` was claimed for ([`engine::make_attempt`]).
#[tracing::instrument(name = "call", skip_all, fields(call_id = %call.id))]
pub async fn attempt_call(svc: &Services, call: &Call) -> Placement {
    engine::make_attempt::<Voice>(svc, call).await
}

/// Applies a status report (a call-progress callback) under the retry policy, and queues the
/// next attempt when the report moved the call to one ([`engine::apply_report`]).
#[tracing::instrument(name = "call", skip_all, fields(call_id = %id))]
pub async fn apply_report(
    svc: &Services,
    id: &CallId,
    report: &CallReport,
) -> Result<CallApplied, StoreError> {
    engine::apply_report::<Voice>(svc, id, report).await
}

/// The voice channel of the attempt engine.
pub struct Voice;

#[async_trait]
impl Channel for Voice {
    type Record = Call;
    type Store = dyn CallStore;
    type Resource = CallResource;
    type Report = CallReport;

    const NAME: &'static str = "voice";
    const SPAN_ID_FIELD: &'static str = "call_id";
    const SUBMITTED_METRIC: &'static str = "CallsPlaced";
    const RETRIES_METRIC: &'static str = "CallRetries";
    const FAILURES_METRIC: &'static str = "CallFailures";
    const IN_FLIGHT: &'static [CallStatus] = &[
        CallStatus::Queued,
        CallStatus::Initiated,
        CallStatus::Ringing,
        CallStatus::InProgress,
    ];

    fn store(svc: &Services) -> &Self::Store {
        &*svc.calls
    }
    fn job(id: &CallId, attempt: u32, not_before_ms: Option<i64>) -> Job {
        Job::Call {
            id: id.clone(),
            attempt,
            not_before_ms,
        }
    }
    fn text(c: &Call) -> &Sealed {
        &c.own.message
    }
    fn is_failure(status: CallStatus) -> bool {
        status == CallStatus::Failed
    }
    fn attempts_allowed(svc: &Services, class: RetryClass) -> u32 {
        max_attempts(svc).min(crate::delivery::attempts_allowed(svc, class))
    }

    async fn attempt(svc: &Services, call: &Call) -> Placement {
        attempt_call(svc, call).await
    }

    async fn create(svc: &Services, call: &Call, o: &Opened) -> Result<CallResource, TwilioError> {
        let Some(from) = NewCall::caller_id(&svc.config.sender) else {
            return Err(TwilioError::Api {
                status: 400,
                code: Some(21212),
                retry_after: None,
            });
        };
        let twiml = twiml_for(svc, call, o.text.expose());
        let callback = svc.call_status_callback(&call.id, call.attempts.attempt);
        let new = NewCall {
            to: o.to.expose(),
            from,
            twiml: &twiml,
            status_callback: &callback,
        };
        svc.with_twilio(|creds| {
            let new = &new;
            async move { svc.twilio.create_call(&creds, new).await }
        })
        .await
    }

    async fn list(
        svc: &Services,
        creds: &TwilioCredentials,
        o: &Opened,
    ) -> Result<Option<Listing<CallResource>>, TwilioError> {
        // No caller ID: no call can have been placed.
        let Some(from) = NewCall::caller_id(&svc.config.sender) else {
            return Ok(None);
        };
        let listed = svc
            .twilio
            .list_calls(creds, o.to.expose(), from, LIST_MAX)
            .await?;
        Ok(Some(listed))
    }

    fn matches(svc: &Services, o: &Opened, r: &CallResource) -> bool {
        let from = NewCall::caller_id(&svc.config.sender);
        r.to.as_deref() == Some(o.to.expose().as_str())
            && from.is_some()
            && r.from.as_deref() == from
    }

    async fn fetch(
        svc: &Services,
        creds: &TwilioCredentials,
        sid: &str,
    ) -> Result<CallResource, TwilioError> {
        svc.twilio.fetch_call(creds, sid).await
    }
    fn resource_to(r: &CallResource) -> Option<&str> {
        r.to.as_deref()
    }

    fn report_of(c: &Call, r: &CallResource, at_ms: i64) -> Option<CallReport> {
        let status = CallStatus::from_twilio(&r.status).unwrap_or(CallStatus::Queued);
        let mut report = CallReport::new(c.attempts.attempt, status, at_ms);
        report.twilio_sid = Some(r.sid.clone());
        report.duration_seconds = r.duration.as_deref().and_then(|d| d.parse().ok());
        Some(report)
    }
    fn report_attempt(rep: &CallReport) -> u32 {
        rep.attempt
    }
    fn report_summary(rep: &CallReport) -> (&'static str, Option<u32>) {
        (rep.status.as_str(), rep.error_code)
    }

    fn reported(svc: &Services, c: &Call, report: &CallReport) -> Option<Call> {
        let retry_at =
            engine::retry_at_ms(svc, report.attempt, RetryClass::Retry, None, report.at_ms);
        c.reported(report, max_attempts(svc), retry_at)
    }

    fn unconfirmed(c: &Call, at_ms: i64) -> Option<Call> {
        c.changed(&CallReport::new(
            c.attempts.attempt,
            CallStatus::Unconfirmed,
            at_ms,
        ))
    }

    fn failed(c: &Call, code: Option<u32>, reason: String, at_ms: i64) -> Option<Call> {
        let mut report = CallReport::new(c.attempts.attempt, CallStatus::Failed, at_ms);
        report.error_code = code;
        report.error_reason = Some(reason);
        // No retry from here: the report is final whatever the policy would say.
        c.reported(&report, 0, at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_jobs_round_trip_and_carry_ids_only() {
        let job = Job::Call {
            id: CallId::generate(5),
            attempt: 2,
            not_before_ms: None,
        };
        let body = job.to_body();
        assert!(body.starts_with(r#"{"kind":"call","id":"call_"#), "{body}");
        assert_eq!(serde_json::from_str::<Job>(&body).unwrap(), job);
    }
}

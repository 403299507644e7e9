//! Placing voice alerts, attempt by attempt, with the same guarantees as
//! [`crate::delivery`] gives messages: an attempt is claimed (a lease) before Twilio is called,
//! its result recorded before the job is acknowledged, an ambiguous attempt reconciled against
//! Twilio's call list before calling again (by [`crate::reconcile`]'s rule: a call is adopted
//! only when its `To` and `From` match, it was created within that attempt's window and no other
//! record owns it; Twilio's Call resource shows no TwiML, so the text cannot be compared), every
//! created call's SID registered for its record before the result is recorded, and every next
//! attempt scheduled in the store *then* queued on the retry queue as a [`Job::Call`], with
//! delivery's full-jitter backoff.
//!
//! What ends an alert: answered (or acknowledged, when the alert asks for it), or
//! `VOICE_MAX_ATTEMPTS` calls placed. Busy, no-answer and failed calls, and answered calls whose
//! acknowledgement is missing, get another attempt until then ([`crate::domain::Call::reported`]).

use crate::delivery::{self, Job, JobOutcome, MAX_QUEUE_DELAY_SECS};
use crate::domain::event::EVENT_RETENTION_MS;
use crate::domain::{Call, CallId, CallReport, CallRetry, CallStatus, Event, EventKind, Subject};
use crate::ports::{CallApplied, CallClaim, QueueError, SidOwner, StoreError};
use crate::reconcile::{self, Decision, LookupError};
use crate::service::Services;
use crate::twilio::{
    CallResource, LIST_MAX, NewCall, RetryClass, TwilioError, describe_code, twiml,
};

/// What became of one attempt to place a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Twilio has the call (placed now, or found from an earlier attempt); its status.
    Placed(CallStatus),
    /// Twilio or the network failed for now; another attempt is scheduled.
    Deferred,
    /// Twilio refused the call for good, or every attempt was used; the code.
    Failed(Option<u32>),
    /// The attempt could not be finished (store or queue unavailable); the claim expires and
    /// the attempt is made again.
    Interrupted,
    /// The caller died mid-attempt (failure injection).
    Crashed,
}

/// The most calls one alert may take (`VOICE_MAX_ATTEMPTS`).
pub fn max_attempts(svc: &Services) -> u32 {
    svc.config.voice_max_attempts
}

fn lease_ms(svc: &Services) -> i64 {
    i64::try_from(svc.config.attempt_lease.as_millis()).unwrap_or(i64::MAX)
}

/// When the attempt after `failed_attempt` is due: delivery's full-jitter backoff from now.
pub fn retry_at_ms(
    svc: &Services,
    failed_attempt: u32,
    retry_after: Option<std::time::Duration>,
) -> i64 {
    let wait = delivery::backoff(
        failed_attempt,
        RetryClass::Retry,
        retry_after,
        svc.config.retry_base_delay,
        svc.config.retry_max_delay,
    );
    svc.clock.now_ms() + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
}

/// The TwiML of `call`'s current attempt speaking `text`: the `<Gather>` (when an
/// acknowledgement is asked for) posts to this attempt's gather URL.
pub fn twiml_for(svc: &Services, call: &Call, text: &str) -> String {
    let action = call
        .require_ack
        .then(|| svc.voice_gather_url(&call.id, call.attempt, false));
    twiml::alert(&call.speech, text, action.as_deref())
}

/// A sanitized event about `call`'s current attempt.
pub fn call_event(
    svc: &Services,
    call: &Call,
    kind: EventKind,
    status: Option<&str>,
    code: Option<u32>,
    sid: Option<String>,
    applied: bool,
) -> Event {
    let at_ms = svc.clock.now_ms();
    Event {
        key: format!("{}:{}:{}", call.id, kind.as_str(), call.attempt),
        subject: Subject::from(&call.id),
        kind,
        status: status.map(str::to_owned),
        twilio_sid: sid,
        error_code: code,
        attempt: call.attempt,
        applied,
        at_ms,
        expires_at_ms: at_ms + EVENT_RETENTION_MS,
        country: call.country.clone(),
        sealed: None,
    }
}

/// Puts the job for `call`'s current attempt on the retry queue, due at its
/// `next_attempt_at_ms`.
pub async fn enqueue_call_attempt(svc: &Services, call: &Call) -> Result<(), QueueError> {
    let now = svc.clock.now_ms();
    let due = call.next_attempt_at_ms.unwrap_or(now);
    let wait_secs = u32::try_from(((due - now).max(0) + 999) / 1000).unwrap_or(u32::MAX);
    let job = Job::Call {
        id: call.id.clone(),
        attempt: call.attempt,
        not_before_ms: (wait_secs > MAX_QUEUE_DELAY_SECS).then_some(due),
    };
    svc.retry_queue
        .send(&job.to_body(), wait_secs.min(MAX_QUEUE_DELAY_SECS))
        .await?;
    Ok(())
}

/// Handles a [`Job::Call`] from the retry queue: claims the attempt and places the call.
#[tracing::instrument(name = "call", skip_all, fields(call_id = %id))]
pub async fn process_call_job(
    svc: &Services,
    id: &CallId,
    attempt: u32,
    not_before_ms: Option<i64>,
) -> JobOutcome {
    let now = svc.clock.now_ms();
    if let Some(nb) = not_before_ms
        && nb > now
    {
        let wait = u32::try_from((nb - now + 999) / 1000).unwrap_or(u32::MAX);
        let again = Job::Call {
            id: id.clone(),
            attempt,
            not_before_ms: (wait > MAX_QUEUE_DELAY_SECS).then_some(nb),
        };
        return match svc
            .retry_queue
            .send(&again.to_body(), wait.min(MAX_QUEUE_DELAY_SECS))
            .await
        {
            Ok(_) => JobOutcome::Done,
            Err(_) => JobOutcome::Again,
        };
    }
    match svc
        .calls
        .claim_call_attempt(id, attempt, now, lease_ms(svc))
        .await
    {
        Ok(CallClaim::Claimed(c)) => match attempt_call(svc, &c).await {
            Placement::Interrupted => JobOutcome::Again,
            Placement::Crashed => JobOutcome::Crashed,
            _ => JobOutcome::Done,
        },
        Ok(CallClaim::Busy { .. }) => JobOutcome::Again,
        Ok(CallClaim::Stale(c)) => {
            // Done, or moved on. If it waits for the next attempt, make sure that job exists.
            if c.status == CallStatus::Retrying
                && c.attempt == attempt + 1
                && !c.is_done()
                && enqueue_call_attempt(svc, &c).await.is_err()
            {
                return JobOutcome::Again;
            }
            JobOutcome::Done
        }
        Ok(CallClaim::NotFound) => {
            tracing::warn!(call_id = %id, "job for an unknown call");
            JobOutcome::Done
        }
        Err(e) => {
            tracing::error!(call_id = %id, error = %e, "store unavailable");
            JobOutcome::Again
        }
    }
}

/// Makes the attempt `call` was claimed for: reconciles an ambiguous earlier attempt, places
/// the call, records the result and schedules what follows.
#[tracing::instrument(name = "call", skip_all, fields(call_id = %call.id))]
pub async fn attempt_call(svc: &Services, call: &Call) -> Placement {
    let aad = call.id.as_str();
    let opened = async {
        let to = svc.vault.open_string(aad, &call.to).await?;
        let text = svc.vault.open_string(aad, &call.message).await?;
        Ok::<_, crate::crypto::CryptoError>((to, text))
    }
    .await;
    let (to, text) = match opened {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(call_id = %call.id, error = %e, "cannot open the call");
            return Placement::Interrupted;
        }
    };
    if crate::service::Chaos::strike(svc.chaos.crash_after_claim) {
        return Placement::Crashed;
    }
    let started = svc.clock.now_ms();
    if let Some(window) = call.ambiguous_window(lease_ms(svc)) {
        match find_earlier(svc, call, to.expose(), window).await {
            Ok(Decision::Adopt(found)) => {
                tracing::info!(call_id = %call.id, attempt = call.attempt, "an earlier attempt reached Twilio: adopted, not called again");
                return record_placed(svc, call, &found, true).await;
            }
            Ok(Decision::Settling) => return Placement::Interrupted,
            Ok(Decision::SendAmbiguous(_)) => {
                let ev = call_event(
                    svc,
                    call,
                    EventKind::AmbiguousReconcile,
                    None,
                    None,
                    None,
                    false,
                );
                delivery::record_event(svc, &ev).await;
            }
            Ok(Decision::Send) => {}
            Err(e) => {
                tracing::warn!(call_id = %call.id, error = %e, "could not check Twilio for an earlier attempt");
                return Placement::Interrupted;
            }
        }
    }
    match place(svc, call, to.expose(), text.expose()).await {
        Ok(_) if crate::service::Chaos::strike(svc.chaos.crash_after_send) => Placement::Crashed,
        Ok(resource) => record_placed(svc, call, &resource, false).await,
        Err(e) => {
            // An answer that may hide a placed call leaves this attempt's window behind.
            let window = is_ambiguous(&e).then(|| (started, svc.clock.now_ms()));
            record_failure(svc, call, &e, window).await
        }
    }
}

async fn place(
    svc: &Services,
    call: &Call,
    to: &str,
    text: &str,
) -> Result<CallResource, TwilioError> {
    let Some(from) = NewCall::caller_id(&svc.config.sender) else {
        return Err(TwilioError::Api {
            status: 400,
            code: Some(21212),
            retry_after: None,
        });
    };
    let twiml = twiml_for(svc, call, text);
    let callback = svc.call_status_callback(&call.id, call.attempt);
    let new = NewCall {
        to,
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

/// What Twilio holds of `call`'s ambiguous attempt: the calls to `to` from Herald's caller ID
/// created within `window`, decided on by [`reconcile::decide`]. Twilio's calls carry no id of
/// ours and show no TwiML: the callee, the caller ID, the time and the SID's owner tell them
/// apart.
async fn find_earlier(
    svc: &Services,
    call: &Call,
    to: &str,
    window: (i64, i64),
) -> Result<Decision<CallResource>, LookupError> {
    let Some(from) = NewCall::caller_id(&svc.config.sender) else {
        // No caller ID: no call can have been placed.
        return Ok(Decision::Send);
    };
    let creds = svc.credentials.get().await.map_err(TwilioError::from)?;
    let listed = svc.twilio.list_calls(&creds, to, from, LIST_MAX).await?;
    if listed.truncated {
        reconcile::note_truncated("voice", call.id.as_str());
    }
    let candidates: Vec<CallResource> = listed
        .items
        .into_iter()
        .filter(|r| r.to.as_deref() == Some(to) && r.from.as_deref() == Some(from))
        .filter(|r| reconcile::in_window(r.created_at_ms(), window))
        .collect();
    Ok(reconcile::decide(
        svc,
        "voice",
        &sid_owner(call),
        candidates,
        svc.clock.now_ms(),
    )
    .await?)
}

/// Who owns the SIDs of `call`'s current attempt.
fn sid_owner(call: &Call) -> SidOwner {
    SidOwner {
        record_id: call.id.to_string(),
        attempt: call.attempt,
    }
}

async fn record_placed(svc: &Services, call: &Call, r: &CallResource, adopted: bool) -> Placement {
    if !adopted
        && let Err(e) =
            reconcile::register_created(svc, "voice", &sid_owner(call), &r.sid, svc.clock.now_ms())
                .await
    {
        // Twilio has the call but it is not registered: record nothing, so the claim expires
        // and the next attempt reconciles, finds it unowned and adopts it.
        tracing::error!(call_id = %call.id, error = %e, "could not register the Twilio SID; the attempt will reconcile");
        return Placement::Interrupted;
    }
    let status = CallStatus::from_twilio(&r.status).unwrap_or(CallStatus::Queued);
    let mut report = CallReport::new(call.attempt, status, svc.clock.now_ms());
    report.twilio_sid = Some(r.sid.clone());
    // A status that is already final (an adopted call) goes through the retry policy too.
    let retry_at = retry_at_ms(svc, call.attempt, None);
    match svc
        .calls
        .report_call(&call.id, &report, max_attempts(svc), retry_at)
        .await
    {
        Ok(CallApplied::Applied(next)) => {
            delivery::record_event(
                svc,
                &call_event(
                    svc,
                    call,
                    EventKind::Submitted,
                    Some(status.as_str()),
                    None,
                    Some(r.sid.clone()),
                    true,
                ),
            )
            .await;
            crate::telemetry::metric("CallsPlaced", 1.0, "Count", &[]);
            if next.status == CallStatus::Retrying
                && enqueue_call_attempt(svc, &next).await.is_err()
            {
                return Placement::Interrupted;
            }
            Placement::Placed(status)
        }
        Ok(_) => Placement::Placed(status),
        Err(e) => {
            tracing::error!(call_id = %call.id, error = %e, "could not record the placed call");
            Placement::Interrupted
        }
    }
}

fn is_ambiguous(e: &TwilioError) -> bool {
    match e {
        TwilioError::Timeout | TwilioError::Transport(_) | TwilioError::Decode(_) => true,
        TwilioError::Api { status, .. } => *status >= 500,
        TwilioError::Connect(_) | TwilioError::Credentials(_) => false,
    }
}

/// Records a failed attempt. `ambiguity` is the window in which the attempt may nevertheless
/// have reached Twilio (`None`: it surely did not), kept for the next attempt.
async fn record_failure(
    svc: &Services,
    call: &Call,
    e: &TwilioError,
    ambiguity: Option<(i64, i64)>,
) -> Placement {
    if let TwilioError::Credentials(se) = e {
        // As for messages: Herald's own credentials are unreadable, nothing was placed, and
        // the attempt is made again once they are.
        tracing::error!(call_id = %call.id, attempt = call.attempt, error = %se, "Twilio credentials unavailable: nothing placed, the attempt will be made again");
        return Placement::Interrupted;
    }
    let class = e.retry_class();
    let code = e.code();
    let reason = e.to_string();
    let now = svc.clock.now_ms();
    let allowed = max_attempts(svc).min(delivery::attempts_allowed(svc, class));
    if class.is_retryable() && call.attempt < allowed {
        let wait = delivery::backoff(
            call.attempt,
            class,
            e.retry_after(),
            svc.config.retry_base_delay,
            svc.config.retry_max_delay,
        );
        let change = CallRetry {
            attempt: call.attempt,
            error_code: code,
            error_reason: Some(reason.clone()),
            ambiguous_since_ms: ambiguity.map(|(since, _)| since),
            ambiguous_until_ms: ambiguity.map(|(_, until)| until),
            next_attempt_at_ms: now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX),
            at_ms: now,
        };
        tracing::warn!(call_id = %call.id, attempt = call.attempt, twilio_code = ?code, error = %reason, "call deferred");
        return match svc.calls.schedule_call_retry(&call.id, &change).await {
            Ok(CallApplied::Applied(next)) => {
                delivery::record_event(
                    svc,
                    &call_event(
                        svc,
                        call,
                        EventKind::Deferred,
                        Some(CallStatus::Retrying.as_str()),
                        code,
                        None,
                        true,
                    ),
                )
                .await;
                if let Err(qe) = enqueue_call_attempt(svc, &next).await {
                    tracing::error!(call_id = %call.id, error = %qe, "could not enqueue the next attempt");
                    return Placement::Interrupted;
                }
                Placement::Deferred
            }
            Ok(_) => Placement::Deferred,
            Err(se) => {
                tracing::error!(call_id = %call.id, error = %se, "could not record the failed attempt");
                Placement::Interrupted
            }
        };
    }
    tracing::warn!(call_id = %call.id, attempt = call.attempt, twilio_code = ?code, error = %reason, "call failed");
    let mut report = CallReport::new(call.attempt, CallStatus::Failed, now);
    report.error_code = code;
    report.error_reason = Some(match code {
        Some(c) if !class.is_retryable() => format!("Twilio error {c} ({})", describe_code(c)),
        _ => reason,
    });
    // No retry from here: the report is final whatever the policy would say.
    match svc.calls.report_call(&call.id, &report, 0, now).await {
        Ok(applied) => {
            let kind = if class.is_retryable() {
                EventKind::Deferred
            } else {
                EventKind::Rejected
            };
            record_event_of(svc, call, kind, CallStatus::Failed, code, applied).await;
            Placement::Failed(code)
        }
        Err(se) => {
            tracing::error!(call_id = %call.id, error = %se, "could not record the failure");
            Placement::Interrupted
        }
    }
}

async fn record_event_of(
    svc: &Services,
    call: &Call,
    kind: EventKind,
    status: CallStatus,
    code: Option<u32>,
    applied: CallApplied,
) {
    let done = matches!(applied, CallApplied::Applied(_));
    delivery::record_event(
        svc,
        &call_event(svc, call, kind, Some(status.as_str()), code, None, done),
    )
    .await;
}

/// Applies a status report (a call-progress callback) under the retry policy, and queues the
/// next attempt when the report moved the call to one.
#[tracing::instrument(name = "call", skip_all, fields(call_id = %id))]
pub async fn apply_report(
    svc: &Services,
    id: &CallId,
    report: &CallReport,
) -> Result<CallApplied, StoreError> {
    let retry_at = retry_at_ms(svc, report.attempt, None);
    let result = svc
        .calls
        .report_call(id, report, max_attempts(svc), retry_at)
        .await?;
    let waiting = match &result {
        CallApplied::Applied(next) if next.status == CallStatus::Retrying => {
            tracing::info!(call_id = %id, attempt = report.attempt, reported = report.status.as_str(), "calling again");
            crate::telemetry::metric("CallRetries", 1.0, "Count", &[]);
            Some(next)
        }
        // A repeated report of an attempt whose successor waits unclaimed: its job may have been
        // lost with the first report's answer; a duplicate job is harmless (the claim decides).
        CallApplied::Ignored(c)
            if c.status == CallStatus::Retrying
                && c.attempt == report.attempt + 1
                && c.claimed_until_ms.is_none() =>
        {
            Some(c)
        }
        _ => None,
    };
    if let Some(next) = waiting
        && let Err(e) = enqueue_call_attempt(svc, next).await
    {
        // The record waits for its next attempt: answer an error, so Twilio sends the callback
        // again and this enqueues it again.
        tracing::error!(call_id = %id, error = %e, "could not enqueue the next attempt");
        return Err(StoreError::transient(e));
    }
    Ok(result)
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

//! Handing messages to Twilio, attempt by attempt, so that every accepted message reaches a
//! final state and no attempt ever sends twice.
//!
//! An attempt is *claimed* in the store before Twilio is called (a lease: a redelivered or
//! duplicated job finds it taken or done); its result is recorded before the job is
//! acknowledged; a failure for now schedules the next attempt in the store *then* puts its job on
//! the retry queue (a crash in between is repaired by the redelivered job, or by the sweeper).
//! When an attempt's outcome is unknown (a timeout, a dropped connection, a 5xx, a claim whose
//! holder died) the next attempt first asks Twilio for the messages to that recipient from that
//! sender, and adopts one only when it is surely the record's own: the same body, created
//! within that attempt's window, owned by no other record ([`crate::reconcile`] has the rule).
//! Every Twilio SID a create answers with is registered for its record before the result is
//! recorded, so no two records ever hold one Twilio message.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::event::EVENT_RETENTION_MS;
use crate::domain::{
    Event, EventKind, Message, MessageId, MessageStatus, RetryChange, StatusChange, Subject,
};
use crate::ports::{Applied, Claim, QueueError, SidOwner};
use crate::reconcile::{self, Decision, LookupError};
use crate::service::Services;
use crate::twilio::{
    LIST_MAX, MessageResource, NewMessage, RetryClass, Sender, TwilioError, describe_code,
};

/// SQS's longest delay; longer waits are re-enqueued on arrival.
pub const MAX_QUEUE_DELAY_SECS: u32 = 900;

/// A job on the send or retry queue. Jobs hold ids only, never personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Make attempt `attempt` of message `id`.
    Message {
        /// The message.
        id: MessageId,
        /// The attempt the record must be waiting for.
        attempt: u32,
        /// Not before this time (Unix ms): a wait longer than the queue's delay limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before_ms: Option<i64>,
    },
    /// Make attempt `attempt` of voice call `id` (handled by [`crate::calls`]).
    Call {
        /// The call.
        id: crate::domain::CallId,
        /// The attempt the record must be waiting for.
        attempt: u32,
        /// Not before this time (Unix ms): a wait longer than the queue's delay limit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before_ms: Option<i64>,
    },
}

impl Job {
    /// The job as queue text.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("jobs serialise")
    }
}

/// What a job handler tells the event source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Done (or nothing to do): acknowledge the job.
    Done,
    /// Not done now: leave the job for redelivery (a batch item failure).
    Again,
    /// The sender died (failure injection).
    Crashed,
}

/// What became of one attempt to hand a message to Twilio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Twilio has it (accepted now, or found from an earlier attempt); its status.
    Submitted(MessageStatus),
    /// Twilio or the network failed for now; another attempt is scheduled.
    Deferred,
    /// Twilio refused it for good, or every attempt was used; the code.
    Failed(Option<u32>),
    /// The attempt could not be finished (store or queue unavailable); the claim will expire
    /// and the attempt be made again.
    Interrupted,
    /// The sender died mid-attempt (failure injection): nothing after this point happened.
    Crashed,
}

/// A handler invocation that died (failure injection): the event source acknowledges nothing
/// of its batch, as Lambda does when an invocation fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the handler died mid-batch (injected)")]
pub struct Crashed;

/// The full-jitter exponential backoff before attempt `failed_attempt + 1`: uniform in
/// `[0, min(cap, base·2^(failed_attempt-1))]`, at least one second and at least Twilio's
/// `Retry-After`; a full sender queue (21611) waits six times longer.
pub fn backoff(
    failed_attempt: u32,
    class: RetryClass,
    retry_after: Option<Duration>,
    base: Duration,
    cap: Duration,
) -> Duration {
    let base = if class == RetryClass::RetryLater {
        base * 6
    } else {
        base
    };
    let exp = 1u32
        .checked_shl(failed_attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    let ceiling = base.saturating_mul(exp).min(cap);
    let jittered = ceiling.mul_f64(rand::random::<f64>());
    jittered
        .max(Duration::from_secs(1))
        .max(retry_after.unwrap_or_default())
        .min(cap.max(Duration::from_secs(1)))
}

/// How many attempts a failure of this class allows in all.
pub fn attempts_allowed(svc: &Services, class: RetryClass) -> u32 {
    let all = 1 + svc.config.max_retries;
    match class {
        RetryClass::Never => 1,
        RetryClass::RetryFewTimes | RetryClass::RefreshCredentials => all.min(3),
        RetryClass::Retry | RetryClass::RetryLater => all,
    }
}

fn event(
    svc: &Services,
    m: &Message,
    kind: EventKind,
    status: MessageStatus,
    code: Option<u32>,
    sid: Option<String>,
    applied: bool,
) -> Event {
    let at_ms = svc.clock.now_ms();
    Event {
        key: format!("{}:{}:{}", m.id, kind.as_str(), m.attempt),
        subject: Subject::from(&m.id),
        kind,
        status: Some(status.as_str().to_owned()),
        twilio_sid: sid,
        error_code: code,
        attempt: m.attempt,
        applied,
        at_ms,
        expires_at_ms: at_ms + EVENT_RETENTION_MS,
        country: m.country.clone(),
        sealed: None,
    }
}

/// Records an event; a failure is logged, never fatal (the record is the truth).
pub async fn record_event(svc: &Services, ev: &Event) {
    if let Err(e) = svc.events.record_event(ev).await {
        tracing::error!(event_kind = ev.kind.as_str(), error = %e, "could not record an event");
    }
}

/// Puts the job for `m`'s current attempt on the retry queue, due at `m.next_attempt_at_ms`.
pub async fn enqueue_attempt(svc: &Services, m: &Message) -> Result<(), QueueError> {
    let now = svc.clock.now_ms();
    let due = m.next_attempt_at_ms.unwrap_or(now);
    let wait_secs = u32::try_from(((due - now).max(0) + 999) / 1000).unwrap_or(u32::MAX);
    let job = Job::Message {
        id: m.id.clone(),
        attempt: m.attempt,
        not_before_ms: (wait_secs > MAX_QUEUE_DELAY_SECS).then_some(due),
    };
    svc.retry_queue
        .send(&job.to_body(), wait_secs.min(MAX_QUEUE_DELAY_SECS))
        .await?;
    Ok(())
}

/// Handles one job from the send or retry queue.
pub async fn process_job(svc: &Services, job: &Job) -> JobOutcome {
    match job {
        Job::Message {
            id,
            attempt,
            not_before_ms,
        } => process_message_job(svc, id, *attempt, *not_before_ms).await,
        Job::Call {
            id,
            attempt,
            not_before_ms,
        } => crate::calls::process_call_job(svc, id, *attempt, *not_before_ms).await,
    }
}

/// [`process_job`] for a message: its lines carry the message id (a batch holds several).
#[tracing::instrument(name = "message", skip_all, fields(message_id = %id))]
async fn process_message_job(
    svc: &Services,
    id: &MessageId,
    attempt: u32,
    not_before_ms: Option<i64>,
) -> JobOutcome {
    let now = svc.clock.now_ms();
    if let Some(nb) = not_before_ms
        && nb > now
    {
        let wait = u32::try_from((nb - now + 999) / 1000).unwrap_or(u32::MAX);
        let again = Job::Message {
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
    let lease_ms = i64::try_from(svc.config.attempt_lease.as_millis()).unwrap_or(i64::MAX);
    match svc.messages.claim_attempt(id, attempt, now, lease_ms).await {
        Ok(Claim::Claimed(m)) => match attempt_send(svc, &m).await {
            Delivery::Interrupted => JobOutcome::Again,
            Delivery::Crashed => JobOutcome::Crashed,
            _ => JobOutcome::Done,
        },
        Ok(Claim::Busy { .. }) => JobOutcome::Again,
        Ok(Claim::Stale(m)) => {
            // Already done, or already moved on. If it waits for the next attempt, make sure
            // that attempt's job exists (this job may be the redelivery of one that crashed
            // before enqueueing it); a duplicate job is harmless, the claim decides.
            if m.status == MessageStatus::Retrying
                && m.attempt == attempt + 1
                && enqueue_attempt(svc, &m).await.is_err()
            {
                return JobOutcome::Again;
            }
            JobOutcome::Done
        }
        Ok(Claim::NotFound) => {
            tracing::warn!(message_id = %id, "job for an unknown message");
            JobOutcome::Done
        }
        Err(e) => {
            tracing::error!(message_id = %id, error = %e, "store unavailable");
            JobOutcome::Again
        }
    }
}

/// Makes the attempt `m` was claimed for: reconciles an ambiguous earlier attempt, hands the
/// message to Twilio, records the result and schedules what follows.
#[tracing::instrument(name = "message", skip_all, fields(message_id = %m.id))]
pub async fn attempt_send(svc: &Services, m: &Message) -> Delivery {
    let aad = m.id.as_str();
    let opened = async {
        let to = svc.vault.open_string(aad, &m.to).await?;
        let body = svc.vault.open_string(aad, &m.body).await?;
        Ok::<_, crate::crypto::CryptoError>((to, body))
    }
    .await;
    let (to, body) = match opened {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(message_id = %m.id, error = %e, "cannot open the message");
            return Delivery::Interrupted;
        }
    };
    if crate::service::Chaos::strike(svc.chaos.crash_after_claim) {
        return Delivery::Crashed;
    }
    let started = svc.clock.now_ms();
    if let Some(window) = m.ambiguous_window(lease_ms(svc)) {
        match find_earlier(svc, m, to.expose(), body.expose(), window).await {
            Ok(Decision::Adopt(found)) => {
                tracing::info!(message_id = %m.id, attempt = m.attempt, "an earlier attempt reached Twilio: adopted, not sent again");
                return record_submitted(svc, m, &found, true).await;
            }
            Ok(Decision::Settling) => return Delivery::Interrupted,
            Ok(Decision::SendAmbiguous(_)) => {
                let ev = event(
                    svc,
                    m,
                    EventKind::AmbiguousReconcile,
                    m.status,
                    None,
                    None,
                    false,
                );
                record_event(svc, &ev).await;
            }
            Ok(Decision::Send) => {}
            Err(LookupError::Twilio(e)) => {
                // Twilio cannot be asked now: this attempt fails for now and uses up one of
                // the attempts (so a long outage still ends), keeping the ambiguity for the next.
                tracing::warn!(message_id = %m.id, error = %e, "could not check Twilio for an earlier attempt");
                return record_failure(svc, m, &e, Some(window)).await;
            }
            Err(LookupError::Store(e)) => {
                tracing::error!(message_id = %m.id, error = %e, "could not read Twilio SID ownership; the attempt will be made again");
                return Delivery::Interrupted;
            }
        }
    }
    match submit(svc, m, to.expose(), body.expose()).await {
        Ok(_) if crate::service::Chaos::strike(svc.chaos.crash_after_send) => Delivery::Crashed,
        Ok(resource) => record_submitted(svc, m, &resource, false).await,
        Err(e) => {
            // An answer that may hide an accepted message leaves this attempt's window behind.
            let window = is_ambiguous(&e).then(|| (started, svc.clock.now_ms()));
            record_failure(svc, m, &e, window).await
        }
    }
}

fn lease_ms(svc: &Services) -> i64 {
    i64::try_from(svc.config.attempt_lease.as_millis()).unwrap_or(i64::MAX)
}

async fn submit(
    svc: &Services,
    m: &Message,
    to: &str,
    body: &str,
) -> Result<MessageResource, TwilioError> {
    let callback = svc.message_status_callback(&m.id, m.attempt);
    let new = NewMessage {
        to,
        sender: &svc.config.sender,
        body,
        status_callback: &callback,
    };
    svc.with_twilio(|creds| {
        let new = &new;
        async move { svc.twilio.create_message(&creds, new).await }
    })
    .await
}

/// What Twilio holds of `m`'s ambiguous attempt: the messages to `to` from Herald's sender with
/// `body`, created within `window`, decided on by [`reconcile::decide`].
async fn find_earlier(
    svc: &Services,
    m: &Message,
    to: &str,
    body: &str,
    window: (i64, i64),
) -> Result<Decision<MessageResource>, LookupError> {
    let creds = svc.credentials.get().await.map_err(TwilioError::from)?;
    // A Messaging Service picks the number itself: list by recipient, match the service.
    let from = match &svc.config.sender {
        Sender::From(n) => Some(n.as_str()),
        Sender::MessagingService(_) => None,
    };
    let listed = svc.twilio.list_messages(&creds, to, from, LIST_MAX).await?;
    if listed.truncated {
        reconcile::note_truncated("sms", m.id.as_str());
    }
    let candidates: Vec<MessageResource> = listed
        .items
        .into_iter()
        .filter(|r| r.to.as_deref() == Some(to) && r.body.as_deref() == Some(body))
        .filter(|r| sent_by(r, &svc.config.sender))
        .filter(|r| reconcile::in_window(r.created_at_ms(), window))
        .collect();
    Ok(reconcile::decide(svc, "sms", &sid_owner(m), candidates, svc.clock.now_ms()).await?)
}

/// Who owns the SIDs of `m`'s current attempt.
fn sid_owner(m: &Message) -> SidOwner {
    SidOwner {
        record_id: m.id.to_string(),
        attempt: m.attempt,
    }
}

/// Whether Twilio's message came from Herald's sender.
fn sent_by(r: &MessageResource, sender: &Sender) -> bool {
    match sender {
        Sender::From(n) => r.from.as_deref() == Some(n.as_str()),
        Sender::MessagingService(s) => r.messaging_service_sid.as_deref() == Some(s.as_str()),
    }
}

async fn record_submitted(
    svc: &Services,
    m: &Message,
    r: &MessageResource,
    adopted: bool,
) -> Delivery {
    if !adopted
        && let Err(e) =
            reconcile::register_created(svc, "sms", &sid_owner(m), &r.sid, svc.clock.now_ms()).await
    {
        // Twilio has it but it is not registered: record nothing, so the claim expires and the
        // next attempt reconciles, finds it unowned and adopts it.
        tracing::error!(message_id = %m.id, error = %e, "could not register the Twilio SID; the attempt will reconcile");
        return Delivery::Interrupted;
    }
    let status = MessageStatus::from_twilio(&r.status).unwrap_or(MessageStatus::Queued);
    let report = Report {
        attempt: m.attempt,
        status,
        twilio_sid: Some(r.sid.clone()),
        error_code: r.error_code,
        at_ms: svc.clock.now_ms(),
    };
    match apply_report(svc, &m.id, &report).await {
        Ok(Applied::Applied(now)) => {
            let mut ev = event(
                svc,
                m,
                EventKind::Submitted,
                status,
                r.error_code,
                Some(r.sid.clone()),
                true,
            );
            if adopted {
                ev.key.push_str(":adopted");
            }
            record_event(svc, &ev).await;
            crate::telemetry::metric("MessagesSubmitted", 1.0, "Count", &[]);
            match now.status {
                MessageStatus::Retrying => Delivery::Deferred,
                MessageStatus::Failed | MessageStatus::Undelivered => {
                    Delivery::Failed(now.error_code)
                }
                s => Delivery::Submitted(s),
            }
        }
        Ok(_) => Delivery::Submitted(status),
        Err(e) => {
            // Twilio has it; its callbacks will move the record on, and a claim taken over
            // later finds it by reconciling.
            tracing::error!(message_id = %m.id, error = %e, "could not record the send result");
            Delivery::Interrupted
        }
    }
}

/// A report of a message's status at Twilio: a status callback, an answer to a create, or what a
/// look-up found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The attempt it belongs to (the callback URL's `a`).
    pub attempt: u32,
    /// The status reported.
    pub status: MessageStatus,
    /// Twilio's message SID.
    pub twilio_sid: Option<String>,
    /// Twilio's error code.
    pub error_code: Option<u32>,
    /// When it was received.
    pub at_ms: i64,
}

/// Applies a report atomically: the status moves forward by the transition rule; a failure
/// Twilio may get past on another try (30001, 30003 …) instead moves the message to its next
/// attempt while attempts remain, and queues that attempt.
#[tracing::instrument(name = "message", skip_all, fields(message_id = %id))]
pub async fn apply_report(
    svc: &Services,
    id: &MessageId,
    report: &Report,
) -> Result<Applied, crate::ports::StoreError> {
    let code = report.error_code;
    let failure = matches!(
        report.status,
        MessageStatus::Failed | MessageStatus::Undelivered
    );
    let retry_class = code
        .map(crate::twilio::class_of_code)
        .filter(|c| failure && c.is_retryable());
    let reason = code.map(|c| format!("Twilio error {c} ({})", describe_code(c)));
    let change = StatusChange {
        attempt: report.attempt,
        status: report.status,
        twilio_sid: report.twilio_sid.clone(),
        error_code: code,
        error_reason: reason.clone(),
        at_ms: report.at_ms,
    };
    let decide = |m: &Message| {
        if !m.accepts(&change) {
            return None;
        }
        if let Some(class) = retry_class
            && m.attempt < attempts_allowed(svc, class)
        {
            let wait = backoff(
                m.attempt,
                class,
                None,
                svc.config.retry_base_delay,
                svc.config.retry_max_delay,
            );
            return m.retried(&RetryChange {
                attempt: m.attempt,
                error_code: code,
                error_reason: reason.clone(),
                ambiguous_since_ms: None,
                ambiguous_until_ms: None,
                next_attempt_at_ms: report.at_ms
                    + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX),
                at_ms: report.at_ms,
            });
        }
        m.changed(&change)
    };
    let result = svc.messages.update_message(id, &decide).await?;
    if let Applied::Applied(next) = &result
        && next.status == MessageStatus::Retrying
    {
        tracing::info!(message_id = %id, attempt = next.attempt, twilio_code = ?code, "retrying after a reported failure");
        crate::telemetry::metric("SendRetries", 1.0, "Count", &[]);
        if let Err(e) = enqueue_attempt(svc, next).await {
            tracing::error!(message_id = %id, error = %e, "could not enqueue the next attempt; the sweeper will");
        }
    }
    Ok(result)
}

/// Whether Twilio may have created the message although the request failed.
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
    m: &Message,
    e: &TwilioError,
    ambiguity: Option<(i64, i64)>,
) -> Delivery {
    if let TwilioError::Credentials(se) = e {
        // Herald cannot read its own credentials (a refused or unset secret): nothing was
        // sent, and it is no fault of the message. The attempt is not used up: the claim
        // expires and the attempt is made again once the secret can be read.
        tracing::error!(message_id = %m.id, attempt = m.attempt, error = %se, "Twilio credentials unavailable: nothing sent, the attempt will be made again");
        return Delivery::Interrupted;
    }
    let class = e.retry_class();
    let code = e.code();
    let reason = e.to_string();
    let now = svc.clock.now_ms();
    if class.is_retryable() && m.attempt < attempts_allowed(svc, class) {
        let wait = backoff(
            m.attempt,
            class,
            e.retry_after(),
            svc.config.retry_base_delay,
            svc.config.retry_max_delay,
        );
        let change = RetryChange {
            attempt: m.attempt,
            error_code: code,
            error_reason: Some(reason.clone()),
            ambiguous_since_ms: ambiguity.map(|(since, _)| since),
            ambiguous_until_ms: ambiguity.map(|(_, until)| until),
            next_attempt_at_ms: now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX),
            at_ms: now,
        };
        tracing::warn!(message_id = %m.id, attempt = m.attempt, twilio_code = ?code, error = %reason, retry_in_ms = wait.as_millis() as u64, "send deferred");
        crate::telemetry::metric("SendRetries", 1.0, "Count", &[]);
        return match svc.messages.schedule_retry(&m.id, &change).await {
            Ok(Applied::Applied(next)) => {
                record_event(
                    svc,
                    &event(
                        svc,
                        m,
                        EventKind::Deferred,
                        MessageStatus::Retrying,
                        code,
                        None,
                        true,
                    ),
                )
                .await;
                if let Err(qe) = enqueue_attempt(svc, &next).await {
                    // The record waits for the next attempt: the redelivered job, or the
                    // sweeper, enqueues it again.
                    tracing::error!(message_id = %m.id, error = %qe, "could not enqueue the next attempt");
                    return Delivery::Interrupted;
                }
                Delivery::Deferred
            }
            Ok(_) => Delivery::Deferred,
            Err(se) => {
                tracing::error!(message_id = %m.id, error = %se, "could not record the failed attempt");
                Delivery::Interrupted
            }
        };
    }
    let final_code = code;
    tracing::warn!(message_id = %m.id, attempt = m.attempt, twilio_code = ?code, error = %reason, "message failed");
    crate::telemetry::metric(
        "SendFailures",
        1.0,
        "Count",
        &[(
            "TwilioCode",
            &code.map_or_else(|| "none".to_owned(), |c| c.to_string()),
        )],
    );
    let change = StatusChange {
        attempt: m.attempt,
        status: MessageStatus::Failed,
        twilio_sid: None,
        error_code: code,
        error_reason: Some(match code {
            Some(c) if !class.is_retryable() => format!("Twilio error {c} ({})", describe_code(c)),
            _ => reason,
        }),
        at_ms: now,
    };
    match svc.messages.apply_message_status(&m.id, &change).await {
        Ok(applied) => {
            let kind = if class.is_retryable() {
                EventKind::Deferred
            } else {
                EventKind::Rejected
            };
            let done = matches!(applied, Applied::Applied(_));
            record_event(
                svc,
                &event(svc, m, kind, MessageStatus::Failed, code, None, done),
            )
            .await;
            Delivery::Failed(final_code)
        }
        Err(se) => {
            tracing::error!(message_id = %m.id, error = %se, "could not record the failure");
            Delivery::Interrupted
        }
    }
}

/// Handles a batch of jobs from an SQS event (send or retry queue): each job on its own, and
/// only the failed ones reported, so the event source deletes the rest. A job that cannot be
/// read is reported failed, with an error log and a metric, so it ends in the dead-letter queue
/// after the queue's `maxReceiveCount`, never dropped in silence.
pub async fn handle_sqs_batch(
    svc: &Services,
    event: aws_lambda_events::sqs::SqsEvent,
) -> Result<aws_lambda_events::sqs::SqsBatchResponse, Crashed> {
    use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
    let mut failures = Vec::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let outcome = match record.body.as_deref().map(serde_json::from_str::<Job>) {
            Some(Ok(job)) => process_job(svc, &job).await,
            _ => {
                tracing::error!(queue_message_id = %id, "unreadable job left for the dead-letter queue");
                crate::telemetry::metric("UnreadableJobs", 1.0, "Count", &[]);
                JobOutcome::Again
            }
        };
        if outcome == JobOutcome::Crashed {
            return Err(Crashed);
        }
        if outcome == JobOutcome::Again {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failures.push(failure);
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    Ok(response)
}

/// The sweeper: finds messages that wait longer than `grace_ms` past when they were due (their
/// job lost to a crash between the store and the queue) and enqueues their attempt again
/// (duplicated jobs are harmless: the claim decides); and asks Twilio where messages are that
/// it accepted more than `grace_ms` ago without reporting a final status (callbacks are best
/// effort). What Twilio answers for a record's SID is applied only when it is the record's own
/// message (its recipient has the record's lookup token); either way the record's timeline
/// says what the sweeper did. Returns how many messages it moved or enqueued.
pub async fn sweep(
    svc: &Services,
    grace_ms: i64,
    limit: u32,
) -> Result<u32, crate::ports::StoreError> {
    let now = svc.clock.now_ms();
    let mut enqueued = 0;
    for status in [MessageStatus::Accepted, MessageStatus::Retrying] {
        for m in svc
            .messages
            .list_messages_by_status(status, now - grace_ms, limit)
            .await?
        {
            let due = m.next_attempt_at_ms.unwrap_or(m.created_at_ms);
            let held = m.claimed_until_ms.is_some_and(|u| u > now);
            if !held && due + grace_ms <= now && enqueue_attempt(svc, &m).await.is_ok() {
                enqueued += 1;
            }
        }
    }
    for status in [
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Sent,
    ] {
        for m in svc
            .messages
            .list_messages_by_status(status, now - grace_ms, limit)
            .await?
        {
            if m.updated_at_ms + grace_ms > now {
                continue;
            }
            let Some(sid) = m.twilio_sid.clone() else {
                continue;
            };
            let fetched = match svc.credentials.get().await {
                Ok(creds) => svc.twilio.fetch_message(&creds, &sid).await,
                Err(e) => Err(e.into()),
            };
            match fetched {
                Ok(r) => {
                    match is_recipient_of(svc, &m, r.to.as_deref()).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(message_id = %m.id, twilio_sid = %sid, "the sweeper fetched a Twilio message that is not this record's (another recipient): nothing applied");
                            crate::telemetry::metric("SweepMismatch", 1.0, "Count", &[]);
                            let mut ev = event(
                                svc,
                                &m,
                                EventKind::SweepMismatch,
                                m.status,
                                None,
                                Some(sid),
                                false,
                            );
                            ev.status = None;
                            record_event(svc, &ev).await;
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(message_id = %m.id, error = %e, "could not check the fetched message's recipient: nothing applied");
                            continue;
                        }
                    }
                    let Some(reported) = MessageStatus::from_twilio(&r.status) else {
                        continue;
                    };
                    let report = Report {
                        attempt: m.attempt,
                        status: reported,
                        twilio_sid: Some(sid.clone()),
                        error_code: r.error_code,
                        at_ms: now,
                    };
                    let applied = matches!(
                        apply_report(svc, &m.id, &report).await,
                        Ok(Applied::Applied(_))
                    );
                    if applied {
                        enqueued += 1;
                    }
                    let mut ev = event(
                        svc,
                        &m,
                        EventKind::Swept,
                        reported,
                        r.error_code,
                        Some(sid),
                        applied,
                    );
                    // One event per status the sweeper found, however often it looks.
                    ev.key.push(':');
                    ev.key.push_str(reported.as_str());
                    record_event(svc, &ev).await;
                }
                Err(e) => {
                    tracing::warn!(message_id = %m.id, error = %e, "could not fetch a message from Twilio")
                }
            }
        }
    }
    if enqueued > 0 {
        tracing::warn!(enqueued, "sweeper moved or re-enqueued messages");
        crate::telemetry::metric("SweeperEnqueued", f64::from(enqueued), "Count", &[]);
    }
    Ok(enqueued)
}

/// Whether `to`, the recipient of a Twilio resource fetched by the SID `m` holds, is `m`'s own
/// recipient: compared through the lookup token, never as plaintext in the record.
async fn is_recipient_of(
    svc: &Services,
    m: &Message,
    to: Option<&str>,
) -> Result<bool, crate::crypto::CryptoError> {
    let Some(to) = to else {
        return Ok(false);
    };
    Ok(svc.vault.lookup_token(to).await? == m.to_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_its_bounds() {
        let base = Duration::from_secs(2);
        let cap = Duration::from_secs(60);
        for attempt in 1..=12 {
            for _ in 0..200 {
                let d = backoff(attempt, RetryClass::Retry, None, base, cap);
                let ceiling = (base * 2u32.pow((attempt - 1).min(10))).min(cap);
                assert!(
                    d >= Duration::from_secs(1) && d <= ceiling.max(Duration::from_secs(1)),
                    "{attempt}: {d:?}"
                );
            }
        }
        // Full jitter: spread over the range, not clustered at the top.
        let spread: Vec<Duration> = (0..400)
            .map(|_| backoff(5, RetryClass::Retry, None, base, cap))
            .collect();
        assert!(
            spread.iter().any(|d| *d < Duration::from_secs(10))
                && spread.iter().any(|d| *d > Duration::from_secs(22))
        );
    }

    #[test]
    fn retry_after_is_a_floor_and_the_cap_a_ceiling() {
        let d = backoff(
            1,
            RetryClass::Retry,
            Some(Duration::from_secs(30)),
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        assert_eq!(d, Duration::from_secs(30));
        let d = backoff(
            1,
            RetryClass::Retry,
            Some(Duration::from_secs(600)),
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        assert_eq!(d, Duration::from_secs(60));
        // A full sender queue waits longer: its ceiling is six times the base.
        assert!((0..200).any(|_| backoff(
            1,
            RetryClass::RetryLater,
            None,
            Duration::from_secs(10),
            Duration::from_secs(3600)
        ) > Duration::from_secs(10)));
    }

    #[test]
    fn jobs_round_trip_and_carry_ids_only() {
        let job = Job::Message {
            id: MessageId::generate(5),
            attempt: 2,
            not_before_ms: None,
        };
        let body = job.to_body();
        assert!(
            body.starts_with(r#"{"kind":"message","id":"msg_"#),
            "{body}"
        );
        assert_eq!(serde_json::from_str::<Job>(&body).unwrap(), job);
    }
}

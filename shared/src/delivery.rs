//! Handing messages to Twilio, attempt by attempt, so that every accepted message reaches a
//! final state and no attempt ever sends twice: the [`Sms`] channel of the attempt engine
//! ([`crate::engine`], which has the guarantees and the choices every channel shares), and what
//! is a message's own: its Twilio resource, what matches (the same `To`, sender and body), its
//! retry policy (a failure Twilio may get past on another try, such as 30001 or 30003, is sent
//! again while attempts remain). The queue jobs of every channel and their batch handler live
//! here too.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use async_trait::async_trait;

use crate::crypto::Sealed;
use crate::domain::{Attempted, Message, MessageId, MessageStatus, RetryChange, StatusChange};
use crate::engine::{self, Channel, Opened, Outcome};
use crate::ports::{Applied, MessageStore, QueueError, TwilioCredentials};
use crate::service::Services;
use crate::twilio::{
    LIST_MAX, Listing, MessageResource, NewMessage, RetryClass, Sender, TwilioError, describe_code,
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
pub type Delivery = Outcome<MessageStatus>;

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

/// Puts the job for `m`'s current attempt on the retry queue, due at `m.next_attempt_at_ms`.
pub async fn enqueue_attempt(svc: &Services, m: &Message) -> Result<(), QueueError> {
    engine::enqueue::<Sms>(svc, m).await
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
    engine::process::<Sms>(svc, id, attempt, not_before_ms).await
}

/// Makes the attempt `m` was claimed for ([`engine::make_attempt`]).
#[tracing::instrument(name = "message", skip_all, fields(message_id = %m.id))]
pub async fn attempt_send(svc: &Services, m: &Message) -> Delivery {
    engine::make_attempt::<Sms>(svc, m).await
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

/// Applies a report atomically ([`engine::apply_report`] under the [`Sms`] rules): the status
/// moves forward by the transition rule; a failure Twilio may get past on another try (30001,
/// 30003 …) instead moves the message to its next attempt while attempts remain, and queues that
/// attempt.
#[tracing::instrument(name = "message", skip_all, fields(message_id = %id))]
pub async fn apply_report(
    svc: &Services,
    id: &MessageId,
    report: &Report,
) -> Result<Applied, crate::ports::StoreError> {
    engine::apply_report::<Sms>(svc, id, report).await
}

/// The message channel of the attempt engine.
pub struct Sms;

#[async_trait]
impl Channel for Sms {
    type Record = Message;
    type Store = dyn MessageStore;
    type Resource = MessageResource;
    type Report = Report;

    const NAME: &'static str = "sms";
    const SPAN_ID_FIELD: &'static str = "message_id";
    const SUBMITTED_METRIC: &'static str = "MessagesSubmitted";
    const RETRIES_METRIC: &'static str = "SendRetries";
    const FAILURES_METRIC: &'static str = "SendFailures";
    const IN_FLIGHT: &'static [MessageStatus] = &[
        MessageStatus::Queued,
        MessageStatus::Sending,
        MessageStatus::Sent,
    ];

    fn store(svc: &Services) -> &Self::Store {
        &*svc.messages
    }
    fn job(id: &MessageId, attempt: u32, not_before_ms: Option<i64>) -> Job {
        Job::Message {
            id: id.clone(),
            attempt,
            not_before_ms,
        }
    }
    fn text(m: &Message) -> &Sealed {
        &m.own.body
    }
    fn is_failure(status: MessageStatus) -> bool {
        matches!(status, MessageStatus::Failed | MessageStatus::Undelivered)
    }
    fn attempts_allowed(svc: &Services, class: RetryClass) -> u32 {
        attempts_allowed(svc, class)
    }

    async fn attempt(svc: &Services, m: &Message) -> Delivery {
        attempt_send(svc, m).await
    }

    async fn create(
        svc: &Services,
        m: &Message,
        o: &Opened,
    ) -> Result<MessageResource, TwilioError> {
        let callback = svc.message_status_callback(&m.id, m.attempts.attempt);
        let new = NewMessage {
            to: o.to.expose(),
            sender: &svc.config.sender,
            body: o.text.expose(),
            status_callback: &callback,
        };
        svc.with_twilio(|creds| {
            let new = &new;
            async move { svc.twilio.create_message(&creds, new).await }
        })
        .await
    }

    async fn list(
        svc: &Services,
        creds: &TwilioCredentials,
        o: &Opened,
    ) -> Result<Option<Listing<MessageResource>>, TwilioError> {
        // A Messaging Service picks the number itself: list by recipient, match the service.
        let from = match &svc.config.sender {
            Sender::From(n) => Some(n.as_str()),
            Sender::MessagingService(_) => None,
        };
        let listed = svc
            .twilio
            .list_messages(creds, o.to.expose(), from, LIST_MAX)
            .await?;
        Ok(Some(listed))
    }

    fn matches(svc: &Services, o: &Opened, r: &MessageResource) -> bool {
        let sent_by = match &svc.config.sender {
            Sender::From(n) => r.from.as_deref() == Some(n.as_str()),
            Sender::MessagingService(s) => r.messaging_service_sid.as_deref() == Some(s.as_str()),
        };
        sent_by
            && r.to.as_deref() == Some(o.to.expose().as_str())
            && r.body.as_deref() == Some(o.text.expose().as_str())
    }

    async fn fetch(
        svc: &Services,
        creds: &TwilioCredentials,
        sid: &str,
    ) -> Result<MessageResource, TwilioError> {
        svc.twilio.fetch_message(creds, sid).await
    }
    fn resource_to(r: &MessageResource) -> Option<&str> {
        r.to.as_deref()
    }

    fn report_of(m: &Message, r: &MessageResource, at_ms: i64) -> Option<Report> {
        Some(Report {
            attempt: m.attempts.attempt,
            status: MessageStatus::from_twilio(&r.status).unwrap_or(MessageStatus::Queued),
            twilio_sid: Some(r.sid.clone()),
            error_code: r.error_code,
            at_ms,
        })
    }
    fn report_attempt(rep: &Report) -> u32 {
        rep.attempt
    }
    fn report_summary(rep: &Report) -> (&'static str, Option<u32>) {
        (rep.status.as_str(), rep.error_code)
    }

    fn reported(svc: &Services, m: &Message, report: &Report) -> Option<Message> {
        let code = report.error_code;
        let failure = Self::is_failure(report.status);
        let reason = code.map(|c| format!("Twilio error {c} ({})", describe_code(c)));
        let change = StatusChange {
            attempt: report.attempt,
            status: report.status,
            twilio_sid: report.twilio_sid.clone(),
            error_code: code,
            error_reason: reason.clone(),
            duration_seconds: None,
            at_ms: report.at_ms,
        };
        if !m.accepts(&change) {
            return None;
        }
        if let Some(class) = code
            .map(crate::twilio::class_of_code)
            .filter(|c| failure && c.is_retryable())
            && m.attempts.attempt < attempts_allowed(svc, class)
            // An unconfirmed message is old: a late failure is recorded, never tried again.
            && m.status != MessageStatus::Unconfirmed
        {
            return m.retried(&RetryChange {
                attempt: m.attempts.attempt,
                error_code: code,
                error_reason: reason,
                ambiguous_since_ms: None,
                ambiguous_until_ms: None,
                next_attempt_at_ms: engine::retry_at_ms(
                    svc,
                    m.attempts.attempt,
                    class,
                    None,
                    report.at_ms,
                ),
                at_ms: report.at_ms,
            });
        }
        m.changed(&change)
    }

    fn unconfirmed(m: &Message, at_ms: i64) -> Option<Message> {
        m.changed(&StatusChange::new(
            m.attempts.attempt,
            MessageStatus::Unconfirmed,
            at_ms,
        ))
    }

    fn failed(m: &Message, code: Option<u32>, reason: String, at_ms: i64) -> Option<Message> {
        m.changed(&StatusChange {
            error_code: code,
            error_reason: Some(reason),
            ..StatusChange::new(m.attempts.attempt, MessageStatus::Failed, at_ms)
        })
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

/// The sweeper ([`engine::sweep`]), for messages and for calls: re-enqueues records whose job
/// was lost or whose attempt's holder died, and asks Twilio about resources whose final report
/// never came. Returns how many records it moved or enqueued.
pub async fn sweep(
    svc: &Services,
    grace_ms: i64,
    limit: u32,
) -> Result<u32, crate::ports::StoreError> {
    let (messages, calls) = tokio::join!(
        engine::sweep::<Sms>(svc, grace_ms, limit),
        engine::sweep::<crate::calls::Voice>(svc, grace_ms, limit)
    );
    Ok(messages? + calls?)
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

//! `retry-processor`: the next attempts of messages, from the retry queue (flow 5 of the
//! design). Each job claims its attempt (the record must still wait for exactly that attempt, so
//! a redelivered or duplicated job never sends twice), tries again, and records success, a new
//! delayed attempt, or `failed` once attempts run out. Only the jobs that must come back are
//! reported; an unreadable job is reported every time, so it ends in the dead-letter queue.
//!
//! The schedule's event (EventBridge Scheduler) runs the sweeper instead: messages overdue past a
//! grace period get their attempt enqueued again. Any other event is refused ([`trigger`]).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use herald::service::Services;

/// How overdue a waiting message must be before the sweeper enqueues it again.
pub const SWEEP_GRACE_MS: i64 = 5 * 60 * 1000;

/// How many records per in-flight status one sweep takes ([`herald::sweep_pages::shares`]
/// splits it between the newest and an oldest-first walk).
pub const SWEEP_LIMIT: u32 = 500;

/// What an invocation is for.
#[derive(Debug)]
pub enum Trigger {
    /// A batch from the retry queue.
    Jobs(SqsEvent),
    /// The sweep schedule's notification.
    Sweep,
}

/// Tells a retry-queue batch from the sweep schedule's notification: EventBridge Scheduler's
/// default event for a target without `Input` (`source` `aws.scheduler`, `detail-type`
/// `Scheduled Event`), as the template's schedule sends it. Anything else is refused, so a
/// stray or hostile invocation neither sweeps nor is taken for jobs.
pub fn trigger(payload: serde_json::Value) -> Result<Trigger, herald::lambda::BadEvent> {
    if payload.get("Records").is_some() {
        return herald::lambda::decode(payload, "an SQS batch").map(Trigger::Jobs);
    }
    let scheduled = payload.get("source").and_then(|v| v.as_str()) == Some("aws.scheduler")
        && payload.get("detail-type").and_then(|v| v.as_str()) == Some("Scheduled Event");
    if scheduled {
        Ok(Trigger::Sweep)
    } else {
        Err(herald::lambda::BadEvent(
            "an SQS batch or the sweep schedule's event",
        ))
    }
}

/// One invocation as the Lambda gets it: jobs are handled, the schedule sweeps, anything else
/// fails without doing either. A panic fails the invocation too (the queue delivers the batch
/// again; the next schedule sweeps).
pub async fn invoke(
    svc: &Services,
    payload: serde_json::Value,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    match trigger(payload)? {
        Trigger::Jobs(jobs) => Ok(serde_json::to_value(
            herald::panics::catch(handle(svc, jobs)).await??,
        )?),
        Trigger::Sweep => {
            let enqueued = herald::panics::catch(sweep(svc)).await??;
            Ok(serde_json::json!({ "swept": enqueued }))
        }
    }
}

/// Handles a batch of retry jobs.
pub async fn handle(
    svc: &Services,
    event: SqsEvent,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    Ok(herald::delivery::handle_sqs_batch(svc, event).await?)
}

/// Runs the sweeper once (the scheduled trigger); returns how many attempts were enqueued.
pub async fn sweep(svc: &Services) -> Result<u32, lambda_runtime::Error> {
    Ok(herald::delivery::sweep(svc, SWEEP_GRACE_MS, SWEEP_LIMIT).await?)
}

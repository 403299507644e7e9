//! `retry-processor`: the next attempts of messages, from the retry queue (flow 5 of the
//! design). Each job claims its attempt (the record must still wait for exactly that attempt, so
//! a redelivered or duplicated job never sends twice), tries again, and records success, a new
//! delayed attempt, or `failed` once attempts run out. Only the jobs that must come back are
//! reported; an unreadable job is reported every time, so it ends in the dead-letter queue.
//!
//! A scheduled event (EventBridge) runs the sweeper instead: messages overdue past a grace
//! period get their attempt enqueued again.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use herald::service::Services;

/// How overdue a waiting message must be before the sweeper enqueues it again.
pub const SWEEP_GRACE_MS: i64 = 5 * 60 * 1000;

/// How many records per in-flight status one sweep takes ([`herald::sweep_pages::shares`]
/// splits it between the newest and an oldest-first walk).
pub const SWEEP_LIMIT: u32 = 500;

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

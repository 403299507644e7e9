//! A local stand-in for Lambda's SQS event source mapping: workers receive batches from an
//! embedded queue, hand them to the function as real `SqsEvent`s, and delete only what the
//! function did not report in `batchItemFailures`. A failed invocation (an error, or a crash the
//! soak injects) deletes nothing: the jobs come back after their visibility timeout and, past
//! the queue's `maxReceiveCount`, land in its dead-letter queue, as on AWS.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use herald::ports::Queue;

/// A function's SQS handler.
pub type SqsHandler = Arc<
    dyn Fn(
            SqsEvent,
        )
            -> Pin<Box<dyn Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>> + Send>>
        + Send
        + Sync,
>;

/// How the mapping is configured.
#[derive(Debug, Clone)]
pub struct MappingOptions {
    /// The queue's name (for the event source ARN).
    pub name: String,
    /// The function the mapping invokes (its log lines carry the name).
    pub function: &'static str,
    /// Jobs per invocation (1..=10).
    pub batch_size: u32,
    /// How long a received job stays hidden.
    pub visibility_timeout_secs: u32,
    /// Invocations at once.
    pub concurrency: usize,
    /// How long an idle worker waits before polling again.
    pub idle_poll: Duration,
}

/// Counters of a running mapping.
#[derive(Debug, Default)]
pub struct MappingStats {
    /// Invocations made.
    pub invocations: AtomicU64,
    /// Jobs deleted (done).
    pub deleted: AtomicU64,
    /// Jobs reported failed (left for redelivery).
    pub failed: AtomicU64,
    /// Invocations that died (nothing deleted).
    pub crashed: AtomicU64,
}

/// Receives one batch and invokes the handler with it; returns how many jobs it received.
pub async fn poll_once(
    queue: &dyn Queue,
    handler: &SqsHandler,
    opts: &MappingOptions,
    stats: &MappingStats,
) -> usize {
    let jobs = match queue
        .receive(opts.batch_size, opts.visibility_timeout_secs)
        .await
    {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(queue = %opts.name, error = %e, "receive failed");
            return 0;
        }
    };
    if jobs.is_empty() {
        return 0;
    }
    stats.invocations.fetch_add(1, Ordering::Relaxed);
    let span = herald::telemetry::invocation_span(opts.function, &ulid::Ulid::new().to_string());
    let invocation = handler(herald::sqs::event_for(&opts.name, &jobs));
    match tracing::Instrument::instrument(invocation, span).await {
        Ok(resp) => {
            let failed: HashSet<&str> = resp
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            for j in &jobs {
                if failed.contains(j.message_id.as_str()) {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                } else if queue.delete(&j.receipt).await.is_ok() {
                    stats.deleted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Err(e) => {
            stats.crashed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(queue = %opts.name, error = %e, jobs = jobs.len(), "invocation failed: the batch comes back");
        }
    }
    jobs.len()
}

/// Runs `opts.concurrency` workers until `stop` turns true.
pub fn spawn(
    queue: Arc<dyn Queue>,
    handler: SqsHandler,
    opts: MappingOptions,
    stats: Arc<MappingStats>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..opts.concurrency.max(1))
        .map(|_| {
            let (queue, handler, opts, stats, mut stop) = (
                queue.clone(),
                handler.clone(),
                opts.clone(),
                stats.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                while !*stop.borrow() {
                    if poll_once(queue.as_ref(), &handler, &opts, &stats).await == 0 {
                        tokio::select! {
                            _ = tokio::time::sleep(opts.idle_poll) => {}
                            _ = stop.changed() => {}
                        }
                    }
                }
            })
        })
        .collect()
}

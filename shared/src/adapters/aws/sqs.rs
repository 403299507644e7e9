//! The SQS queue: one queue and its dead-letter queue (attached by a redrive policy), over one
//! `aws_sdk_sqs::Client` built once per process.
//!
//! In production Lambda's event source mapping receives and deletes; this adapter sends jobs
//! (bulk sends, retries) and serves tooling: inspection, dead letters and redrive.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};

use crate::ports::{
    Queue, QueueDepth, QueueError, ReceivedJob, check_batch, check_batch_size, check_body,
    check_delay, check_visibility,
};

/// The longest long poll SQS allows, in seconds.
const MAX_WAIT_SECS: u32 = 20;

/// How long redrive hides a dead letter while it moves it (it reappears in the dead-letter queue
/// if the move fails half-way).
const REDRIVE_VISIBILITY_SECS: u32 = 60;

/// The dead-letter queue keeps jobs for the longest time SQS allows: 14 days.
const DLQ_RETENTION_SECS: u32 = 1_209_600;

/// A queue on SQS with its dead-letter queue.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dlq_url: String,
    wait_secs: u32,
}

/// Maps an SDK error to its meaning; anything not known to be the caller's fault is transient
/// and keeps its source.
fn map_err<E>(e: SdkError<E, aws_sdk_sqs::config::http::HttpResponse>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.code().unwrap_or_default();
    if code.contains("ReceiptHandleIsInvalid")
        || code.contains("InvalidIdFormat")
        || code.contains("MessageNotInflight")
    {
        QueueError::InvalidReceipt
    } else if code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist") {
        QueueError::NoSuchQueue
    } else {
        QueueError::transient(e)
    }
}

/// A batch entry SQS refused, by its error code.
fn entry_error(code: &str, message: Option<&str>) -> QueueError {
    let what = format!("{code}: {}", message.unwrap_or_default());
    if code.contains("TooLong") || code.contains("BatchRequestTooLong") {
        QueueError::Invalid(what)
    } else {
        QueueError::transient(std::io::Error::other(what))
    }
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl SqsQueue {
    /// The queue at `queue_url` with its dead-letter queue at `dlq_url`, over `client` (build it
    /// once per process and clone it). Receives do not long-poll unless
    /// [`SqsQueue::with_wait_time_secs`] says so.
    pub fn new(client: Client, queue_url: impl Into<String>, dlq_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dlq_url: dlq_url.into(),
            wait_secs: 0,
        }
    }

    /// Makes each `receive` wait up to `secs` (at most 20) for a job when none is visible: SQS
    /// long polling (`WaitTimeSeconds`), which also asks every server, not a sample.
    #[must_use]
    pub fn with_wait_time_secs(mut self, secs: u32) -> Self {
        self.wait_secs = secs.min(MAX_WAIT_SECS);
        self
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The dead-letter queue's URL.
    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    async fn receive_from(
        &self,
        url: &str,
        max: u32,
        visibility_timeout_secs: u32,
        wait_secs: u32,
    ) -> Result<Vec<ReceivedJob>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(to_i32(max))
            .visibility_timeout(to_i32(visibility_timeout_secs))
            .wait_time_seconds(to_i32(wait_secs))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(map_err)?;
        out.messages()
            .iter()
            .map(|m| {
                let attr = |name: &MessageSystemAttributeName| {
                    m.attributes().and_then(|a| a.get(name)).map(String::as_str)
                };
                let malformed = |what: &str| {
                    QueueError::transient(std::io::Error::other(format!(
                        "SQS message without {what}"
                    )))
                };
                Ok(ReceivedJob {
                    message_id: m
                        .message_id()
                        .ok_or_else(|| malformed("MessageId"))?
                        .to_owned(),
                    receipt: m
                        .receipt_handle()
                        .ok_or_else(|| malformed("ReceiptHandle"))?
                        .to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    receive_count: attr(&MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| malformed("ApproximateReceiveCount"))?,
                    sent_at_ms: attr(&MessageSystemAttributeName::SentTimestamp)
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| malformed("SentTimestamp"))?,
                })
            })
            .collect()
    }

    async fn counts(&self, url: &str) -> Result<[u64; 3], QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(map_err)?;
        let get = |name: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok([
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        ])
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, body: &str, delay_secs: u32) -> Result<String, QueueError> {
        check_body(body)?;
        check_delay(delay_secs)?;
        let out = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(to_i32(delay_secs))
            .send()
            .await
            .map_err(map_err)?;
        out.message_id().map(str::to_owned).ok_or_else(|| {
            QueueError::transient(std::io::Error::other("SendMessage answered no MessageId"))
        })
    }

    async fn send_batch(
        &self,
        jobs: &[(String, u32)],
    ) -> Result<Vec<Result<String, QueueError>>, QueueError> {
        check_batch(jobs.len())?;
        let mut results: Vec<Option<Result<String, QueueError>>> = Vec::with_capacity(jobs.len());
        let mut entries = Vec::new();
        for (i, (body, delay)) in jobs.iter().enumerate() {
            match check_body(body).and_then(|()| check_delay(*delay)) {
                Err(e) => results.push(Some(Err(e))),
                Ok(()) => {
                    results.push(None);
                    entries.push(
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(body)
                            .delay_seconds(to_i32(*delay))
                            .build()
                            .map_err(QueueError::transient)?,
                    );
                }
            }
        }
        check_batch_size(
            jobs.iter()
                .zip(&results)
                .filter(|(_, r)| r.is_none())
                .map(|((b, _), _)| b.as_str()),
        )?;
        if !entries.is_empty() {
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(map_err)?;
            let slot = |id: &str| id.parse::<usize>().ok().filter(|i| *i < jobs.len());
            for ok in out.successful() {
                if let Some(i) = slot(ok.id()) {
                    results[i] = Some(Ok(ok.message_id().to_owned()));
                }
            }
            for failed in out.failed() {
                if let Some(i) = slot(failed.id()) {
                    results[i] = Some(Err(entry_error(failed.code(), failed.message())));
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(QueueError::transient(std::io::Error::other(
                        "SendMessageBatch did not answer for this entry",
                    )))
                })
            })
            .collect())
    }

    async fn receive(
        &self,
        max: u32,
        visibility_timeout_secs: u32,
    ) -> Result<Vec<ReceivedJob>, QueueError> {
        check_batch(max as usize)?;
        check_visibility(visibility_timeout_secs)?;
        self.receive_from(
            &self.queue_url,
            max,
            visibility_timeout_secs,
            self.wait_secs,
        )
        .await
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        if receipt.is_empty() {
            return Err(QueueError::InvalidReceipt);
        }
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn change_visibility(
        &self,
        receipt: &str,
        visibility_timeout_secs: u32,
    ) -> Result<(), QueueError> {
        check_visibility(visibility_timeout_secs)?;
        if receipt.is_empty() {
            return Err(QueueError::InvalidReceipt);
        }
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(to_i32(visibility_timeout_secs))
            .send()
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn dead_letters(&self, max: u32) -> Result<Vec<ReceivedJob>, QueueError> {
        check_batch(max as usize)?;
        // Visibility 0: the jobs stay visible in the dead-letter queue.
        self.receive_from(&self.dlq_url, max, 0, self.wait_secs)
            .await
    }

    async fn redrive(&self) -> Result<u32, QueueError> {
        // StartMessageMoveTask is asynchronous and not in every emulator: move by hand, sending
        // each job before deleting it from the dead-letter queue (a failure duplicates, never
        // loses). Each job is hidden while it moves, so the loop ends. A long poll of at least a
        // second asks every SQS server, so an empty answer means the dead-letter queue is empty.
        let mut moved = 0_u32;
        let wait = self.wait_secs.max(1);
        loop {
            let batch = self
                .receive_from(&self.dlq_url, 10, REDRIVE_VISIBILITY_SECS, wait)
                .await?;
            if batch.is_empty() {
                return Ok(moved);
            }
            for job in batch {
                self.send(&job.body, 0).await?;
                self.client
                    .delete_message()
                    .queue_url(&self.dlq_url)
                    .receipt_handle(&job.receipt)
                    .send()
                    .await
                    .map_err(map_err)?;
                moved += 1;
            }
        }
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let [visible, in_flight, delayed] = self.counts(&self.queue_url).await?;
        let dead = self.counts(&self.dlq_url).await?.iter().sum();
        Ok(QueueDepth {
            visible,
            in_flight,
            delayed,
            dead,
        })
    }
}

/// Creates (or finds) the dead-letter queue `{name}-dlq` (14 days' retention) and the queue
/// `name` whose redrive policy moves a job there after `max_receive_count` receives; returns
/// `(queue_url, dlq_url)`. Idempotent: run again, it finds both and sets the policy again.
/// Standard queues only. For tests and local tooling (SAM creates the production queues).
pub async fn create_queues(
    client: &Client,
    name: &str,
    max_receive_count: u32,
) -> Result<(String, String), QueueError> {
    if !(1..=1000).contains(&max_receive_count) {
        return Err(QueueError::Invalid(format!(
            "max_receive_count {max_receive_count}: must be 1..=1000"
        )));
    }
    let dlq_name = format!("{name}-dlq");
    let dlq_url = create_queue(client, &dlq_name).await?;
    client
        .set_queue_attributes()
        .queue_url(&dlq_url)
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECS.to_string(),
        )
        .send()
        .await
        .map_err(map_err)?;
    let arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(map_err)?
        .attributes()
        .and_then(|a: &HashMap<QueueAttributeName, String>| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| {
            QueueError::transient(std::io::Error::other(
                "GetQueueAttributes answered no QueueArn",
            ))
        })?;
    let queue_url = create_queue(client, name).await?;
    let policy = serde_json::json!({
        "deadLetterTargetArn": arn,
        "maxReceiveCount": max_receive_count.to_string(),
    });
    client
        .set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
        .send()
        .await
        .map_err(map_err)?;
    Ok((queue_url, dlq_url))
}

async fn create_queue(client: &Client, name: &str) -> Result<String, QueueError> {
    client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(map_err)?
        .queue_url()
        .map(str::to_owned)
        .ok_or_else(|| {
            QueueError::transient(std::io::Error::other("CreateQueue answered no QueueUrl"))
        })
}

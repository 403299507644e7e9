//! The queue conformance suite against SQS through moto ([`herald::testing::aws_test_endpoint`]). Time is real: delays and visibility timeouts of 2 s,
//! waited out by long polling and bounded receive loops. Every test makes its own queues.

#![cfg(all(feature = "aws", feature = "test-util"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use herald::adapters::aws::{SqsQueue, create_queues};
use herald::ports::{Queue, QueueError};
use herald::testing_queue::{self as suite, QueueFixture, QueueTime};

/// The long poll of every receive, in seconds.
const POLL_SECS: u32 = 1;

fn endpoint() -> String {
    herald::testing::aws_test_endpoint()
}

/// A client for the test endpoint, with dummy credentials: never real AWS.
fn client() -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(herald::adapters::aws::http_client())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "herald-tests",
        ))
        .endpoint_url(endpoint())
        .build();
    Client::from_conf(config)
}

fn unique(prefix: &str) -> String {
    format!(
        "herald-{prefix}-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    )
}

struct Sqs {
    client: Client,
    run: String,
    next: AtomicU32,
}

impl Sqs {
    fn new() -> Self {
        Self {
            client: client(),
            run: unique("q"),
            next: AtomicU32::new(0),
        }
    }
}

#[async_trait]
impl QueueFixture for Sqs {
    async fn fresh(&self, max_receive_count: u32) -> (Arc<dyn Queue>, Arc<dyn Queue>) {
        let name = format!("{}-{}", self.run, self.next.fetch_add(1, Ordering::SeqCst));
        let (url, dlq) = create_queues(&self.client, &name, max_receive_count)
            .await
            .expect("queues created");
        let a = SqsQueue::new(self.client.clone(), &url, &dlq).with_wait_time_secs(POLL_SECS);
        let b = SqsQueue::new(client(), &url, &dlq).with_wait_time_secs(POLL_SECS);
        (Arc::new(a), Arc::new(b))
    }

    fn time(&self) -> QueueTime {
        QueueTime::Real {
            poll_secs: POLL_SECS,
        }
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            suite::$case(&Sqs::new()).await;
        }
    )*};
}

conformance!(
    round_trip,
    rejects_bad_requests,
    delayed_delivery,
    redelivery_after_visibility_timeout,
    delete_acknowledges,
    stale_receipt,
    partial_batch_acknowledgement,
    change_visibility,
    dead_letter_and_redrive,
    batches,
    concurrent_receivers,
);

#[tokio::test]
async fn create_queues_is_idempotent_and_sets_the_redrive_policy() {
    let c = client();
    let name = unique("idem");
    let first = create_queues(&c, &name, 3).await.expect("create");
    let second = create_queues(&c, &name, 5).await.expect("create again");
    assert_eq!(first, second);
    assert!(first.1.ends_with(&format!("{name}-dlq")), "{first:?}");
    let attrs = c
        .get_queue_attributes()
        .queue_url(&first.0)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .expect("attributes");
    let policy = attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy))
        .expect("a redrive policy");
    let policy: serde_json::Value = serde_json::from_str(policy).expect("policy is JSON");
    assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "5");
    assert!(
        policy["deadLetterTargetArn"]
            .as_str()
            .is_some_and(|arn| arn.ends_with(&format!("{name}-dlq"))),
        "{policy}"
    );
    assert!(matches!(
        create_queues(&c, &name, 0).await,
        Err(QueueError::Invalid(_))
    ));
}

#[tokio::test]
async fn a_missing_queue_is_named_as_such() {
    let c = client();
    let (url, dlq) = create_queues(&c, &unique("gone"), 3).await.expect("create");
    c.delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("delete queue");
    let q = SqsQueue::new(c, &url, &dlq);
    match q.send("x", 0).await {
        Err(QueueError::NoSuchQueue) => {}
        other => panic!("expected NoSuchQueue, got {other:?}"),
    }
}

//! SQS events built locally from jobs of an embedded queue: what Lambda's event source mapping
//! would hand a function, used by the local runner and the tests.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};

use crate::ports::ReceivedJob;

/// The SQS event Lambda would deliver for these jobs of queue `queue_name`.
pub fn event_for(queue_name: &str, jobs: &[ReceivedJob]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = jobs
        .iter()
        .map(|j| {
            let mut m = SqsMessage::default();
            m.message_id = Some(j.message_id.clone());
            m.receipt_handle = Some(j.receipt.clone());
            m.body = Some(j.body.clone());
            m.attributes.insert(
                "ApproximateReceiveCount".into(),
                j.receive_count.to_string(),
            );
            m.attributes
                .insert("SentTimestamp".into(), j.sent_at_ms.to_string());
            m.event_source = Some("aws:sqs".into());
            m.event_source_arn = Some(format!("arn:aws:sqs:local:000000000000:{queue_name}"));
            m.aws_region = Some("local".into());
            m
        })
        .collect();
    event
}

//! AWS adapters: DynamoDB, KMS, Secrets Manager and SQS.

mod sqs;

pub use sqs::{SqsQueue, create_queues};

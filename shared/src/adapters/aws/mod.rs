//! AWS adapters: DynamoDB, KMS, Secrets Manager and SQS.

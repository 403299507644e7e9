//! The `retry-processor` Lambda: builds configuration and AWS clients once per cold start, then
//! handles SQS batches from the retry queue (and the scheduled sweep) with `lib.rs`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::telemetry::init();
    let services = herald::lambda::services_from_env().await?;
    let services = &services;
    run(service_fn(move |event: LambdaEvent<Value>| {
        let span = herald::telemetry::invocation_span("retry-processor", &event.context.request_id);
        async move {
            if event.payload.get("Records").is_some() {
                let sqs: aws_lambda_events::sqs::SqsEvent = serde_json::from_value(event.payload)?;
                Ok::<Value, Error>(serde_json::to_value(
                    retry_processor::handle(services, sqs).await?,
                )?)
            } else {
                let enqueued = retry_processor::sweep(services).await?;
                Ok(serde_json::json!({ "swept": enqueued }))
            }
        }
        .instrument(span)
    }))
    .await
}

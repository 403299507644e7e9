//! The `retry-processor` Lambda: builds configuration and AWS clients once per cold start, then
//! handles SQS batches from the retry queue (and the scheduled sweep) with `lib.rs`.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::lambda::start("retry-processor");
    let services = herald::lambda::services_from_env().await?;
    let services = &services;
    run(service_fn(move |event: LambdaEvent<Value>| {
        let span = herald::telemetry::invocation_span("retry-processor", &event.context.request_id);
        retry_processor::invoke(services, event.payload).instrument(span)
    }))
    .await
}

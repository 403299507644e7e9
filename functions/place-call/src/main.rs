//! The `place-call` Lambda: builds configuration and AWS clients once per cold start, then
//! serves API Gateway requests (the voice API) with `lib.rs`, its only trigger on AWS. An SQS
//! batch of call jobs given to it directly (a local run, `cargo lambda invoke`) is handled too;
//! on AWS call jobs go to the retry queue, which `retry-processor` consumes.

use lambda_http::Service;
use lambda_http::request::LambdaRequest;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::telemetry::init();
    let services = herald::lambda::services_from_env().await?;
    let services = &services;
    run(service_fn(move |event: LambdaEvent<Value>| {
        let span = herald::telemetry::invocation_span("place-call", &event.context.request_id);
        invoke(services, event).instrument(span)
    }))
    .await
}

async fn invoke(
    services: &herald::service::Services,
    event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    {
        let (payload, context) = event.into_parts();
        if payload.get("Records").is_some() {
            let sqs: aws_lambda_events::sqs::SqsEvent = serde_json::from_value(payload)?;
            return Ok::<Value, Error>(serde_json::to_value(
                place_call::handle_sqs(services, sqs).await?,
            )?);
        }
        let request: LambdaRequest = serde_json::from_value(payload)?;
        let mut http = lambda_http::Adapter::from(lambda_http::service_fn(|req| {
            place_call::handle(services, req)
        }));
        let response = http.call(LambdaEvent::new(request, context)).await?;
        Ok(serde_json::to_value(response)?)
    }
}

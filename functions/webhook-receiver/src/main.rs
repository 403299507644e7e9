//! The `webhook-receiver` Lambda: builds configuration and AWS clients once per cold start, then
//! serves Twilio's callbacks through API Gateway with the handler in `lib.rs`. It reads the raw
//! API Gateway event itself (`request::ApiEvent`) so that REST API (v1) query strings are rebuilt
//! in the order Twilio signed them; HTTP API (v2) events work the same way.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::lambda::start("webhook-receiver");
    let services = herald::lambda::services_from_env().await?;
    run(service_fn(|event: LambdaEvent<Value>| {
        let services = &services;
        let span =
            herald::telemetry::invocation_span("webhook-receiver", &event.context.request_id);
        async move { Ok::<_, Error>(webhook_receiver::invoke(services, event.payload).await) }
            .instrument(span)
    }))
    .await
}

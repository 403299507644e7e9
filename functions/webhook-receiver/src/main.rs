//! The `webhook-receiver` Lambda: builds configuration and AWS clients once per cold start, then
//! serves Twilio's callbacks through API Gateway with the handler in `lib.rs`. It reads the raw
//! API Gateway event itself (`request::ApiEvent`) so that REST API (v1) query strings are rebuilt
//! in the order Twilio signed them; HTTP API (v2) events work the same way.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use tracing::Instrument;
use webhook_receiver::request::ApiEvent;

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::telemetry::init();
    let services = herald::lambda::services_from_env().await?;
    run(service_fn(|event: LambdaEvent<ApiEvent>| {
        let services = &services;
        let span =
            herald::telemetry::invocation_span("webhook-receiver", &event.context.request_id);
        async move { Ok::<_, Error>(webhook_receiver::handle_event(services, event.payload).await) }
            .instrument(span)
    }))
    .await
}

//! Start-up of a Lambda function on AWS: configuration and AWS clients built once per cold start
//! (feature `aws`). A failure names what is wrong and stops the function before it serves.

use std::sync::Arc;

use lambda_http::lambda_runtime::LambdaEvent;

use crate::adapters::aws::{AwsAdapters, AwsResources, load_sdk_config};
use crate::ports::{Clock, SystemClock};
use crate::service::Services;

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Configuration is missing or malformed.
    #[error("configuration: {0}")]
    Config(#[from] crate::ConfigError),
    /// The Twilio client could not be built.
    #[error("Twilio client: {0}")]
    Twilio(#[from] crate::twilio::TwilioError),
}

/// The services over the AWS adapters, from the environment. No request is made here: keys and
/// credentials are fetched on first use.
pub async fn services_from_env() -> Result<Services, StartupError> {
    let config = crate::Config::from_env()?;
    let resources = AwsResources::from_env()?;
    let sdk = load_sdk_config().await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let aws = AwsAdapters::new(&sdk, &resources, clock.clone());
    let adapters = aws.ports(clock);
    Ok(Services::new(config, adapters)?)
}

/// Runs an API function (`send-sms`, `place-call`) under the real `lambda_runtime`: services
/// built once per cold start, a span per invocation named after the function, API Gateway
/// requests served by `handle`, and an SQS batch of jobs (its send queue, or one given directly by
/// a local run or `cargo lambda invoke`) by [`crate::delivery::handle_sqs_batch`].
pub async fn run_api<F, Fut>(name: &'static str, handle: F) -> Result<(), lambda_http::Error>
where
    F: Fn(&'static Services, lambda_http::Request) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<
            Output = Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error>,
        > + Send,
{
    use lambda_http::lambda_runtime::{LambdaEvent, run, service_fn};
    use tracing::Instrument;
    crate::telemetry::init();
    // One per process, for the process's life.
    let services: &'static Services = Box::leak(Box::new(services_from_env().await?));
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let span = crate::telemetry::invocation_span(name, &event.context.request_id);
        invoke(services, handle, event).instrument(span)
    }))
    .await
}

async fn invoke<F, Fut>(
    services: &'static Services,
    handle: F,
    event: LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, lambda_http::Error>
where
    F: Fn(&'static Services, lambda_http::Request) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<
            Output = Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error>,
        > + Send,
{
    use lambda_http::Service;
    let (payload, context) = event.into_parts();
    if payload.get("Records").is_some() {
        let sqs: aws_lambda_events::sqs::SqsEvent = serde_json::from_value(payload)?;
        let answer = crate::delivery::handle_sqs_batch(services, sqs).await?;
        return Ok(serde_json::to_value(answer)?);
    }
    let request: lambda_http::request::LambdaRequest = serde_json::from_value(payload)?;
    let mut http =
        lambda_http::Adapter::from(lambda_http::service_fn(move |req| handle(services, req)));
    let response = http.call(LambdaEvent::new(request, context)).await?;
    Ok(serde_json::to_value(response)?)
}

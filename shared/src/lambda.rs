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

/// An event a function cannot read. It names what was expected, never what the event held
/// (serde's messages quote the values they refuse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the event is not {0}")]
pub struct BadEvent(pub &'static str);

/// Reads `payload`, a JSON object, as a `T` (`what` names it for the error), quoting nothing of
/// it on failure. (serde would read an array into a struct field by field.)
pub fn decode<T: serde::de::DeserializeOwned>(
    payload: serde_json::Value,
    what: &'static str,
) -> Result<T, BadEvent> {
    if !payload.is_object() {
        return Err(BadEvent(what));
    }
    serde_json::from_value(payload).map_err(|_| BadEvent(what))
}

/// What every function does first: JSON logs, and the panic hook that logs a panic's location
/// (never its message) and counts it ([`crate::panics`]).
pub fn start(function: &'static str) {
    crate::telemetry::init();
    crate::panics::install_hook(function);
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
    start(name);
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
        let sqs: aws_lambda_events::sqs::SqsEvent = decode(payload, "an SQS batch")?;
        // A panic fails the invocation: SQS delivers the whole batch again.
        let answer =
            crate::panics::catch(crate::delivery::handle_sqs_batch(services, sqs)).await??;
        return Ok(serde_json::to_value(answer)?);
    }
    let Ok(mut request) = decode::<lambda_http::request::LambdaRequest>(payload, "a request")
    else {
        return Ok(crate::apigw::unreadable_event_answer());
    };
    // What lambda_http would panic on is answered 400; the request it then converts is made
    // harmless (no host, no query, the root path), since it never reaches the handler.
    let unreadable = crate::apigw::unreadable_part(&request);
    if unreadable.is_some() {
        crate::apigw::defuse(&mut request);
    }
    let mut http = lambda_http::Adapter::from(lambda_http::service_fn(move |req| async move {
        match unreadable {
            Some(part) => Ok(crate::apigw::unreadable(part).map(lambda_http::Body::from)),
            None => match crate::panics::catch(handle(services, req)).await {
                Ok(answer) => answer,
                Err(_) => Ok(crate::panics::response().map(lambda_http::Body::from)),
            },
        }
    }));
    let response = http.call(LambdaEvent::new(request, context)).await?;
    Ok(serde_json::to_value(response)?)
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use serde_json::{Value, json};

    async fn ok(
        _: &'static crate::service::Services,
        _: lambda_http::Request,
    ) -> Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error> {
        Ok(lambda_http::Response::new(lambda_http::Body::from(
            "reached",
        )))
    }

    async fn panics(
        _: &'static crate::service::Services,
        req: lambda_http::Request,
    ) -> Result<lambda_http::Response<lambda_http::Body>, lambda_http::Error> {
        let body = String::from_utf8_lossy(req.body()).into_owned();
        panic!("handler saw {body}");
    }

    async fn services() -> &'static crate::service::Services {
        let env: &'static crate::test_env::TestEnv =
            Box::leak(Box::new(crate::test_env::TestEnv::start_with(&[]).await));
        &env.services
    }

    const NUMBER: &str = "+12025550199";

    /// Before, a panicking handler failed the invocation with `Lambda panicked: <message>`,
    /// the message quoting whatever it held. Now the caller gets `500 internal-error`
    /// problem+json in the request's own shape, with nothing of the request or the panic.
    #[tokio::test]
    async fn a_handler_that_panics_is_answered_500_quoting_nothing() {
        let services = services().await;
        let body = format!(r#"{{"to":"{NUMBER}"}}"#);
        let req = crate::apigw::HttpRequest {
            method: "POST",
            path: "/v1/messages",
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes(),
            ..Default::default()
        };
        let event = crate::apigw::event_v2(&req, "r", 0);
        let event = lambda_http::lambda_runtime::LambdaEvent::new(event, Default::default());
        let answer = super::invoke(services, panics, event).await.unwrap();
        assert_eq!(answer["statusCode"], 500, "{answer}");
        assert_eq!(
            answer["headers"]["content-type"],
            "application/problem+json"
        );
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["type"], "urn:herald:problem:internal-error");
        assert!(!answer.to_string().contains(NUMBER), "{answer}");
    }

    /// Before, an event that is neither an SQS batch nor an API Gateway request failed the
    /// invocation with serde's message, which quotes the value it refused.
    #[tokio::test]
    async fn events_that_are_not_requests_are_answered_400_and_batches_refused_quoting_nothing() {
        let services = services().await;
        for payload in [
            json!({}),
            json!(NUMBER),
            json!([NUMBER]),
            json!({"httpMethod": 5, "path": NUMBER}),
            json!({"version": "2.0", "rawPath": [NUMBER]}),
        ] {
            let event = lambda_http::lambda_runtime::LambdaEvent::new(payload, Default::default());
            let answer = super::invoke(services, ok, event).await.unwrap();
            assert_eq!(answer["statusCode"], 400, "{answer}");
            let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["type"], "urn:herald:problem:malformed-request");
            assert_eq!(body["field"], "event");
            assert!(!answer.to_string().contains(NUMBER), "{answer}");
        }
        for payload in [
            json!({"Records": NUMBER}),
            json!({"Records": [{"body": 5, "messageId": NUMBER}]}),
        ] {
            let event = lambda_http::lambda_runtime::LambdaEvent::new(payload, Default::default());
            let error = super::invoke(services, ok, event)
                .await
                .unwrap_err()
                .to_string();
            assert_eq!(error, "the event is not an SQS batch");
        }
    }

    /// As the binaries get them: a hostile event through `invoke` (lambda_http's adapter under
    /// the real runtime's event type) is answered 400 problem+json in its payload's own shape,
    /// where lambda_http alone panics.
    #[tokio::test]
    async fn events_lambda_http_would_panic_on_are_answered_400_in_their_own_shape() {
        let services = services().await;
        let req = crate::apigw::HttpRequest {
            method: "GET",
            path: "/health",
            headers: vec![("host".into(), "a b".into())],
            ..Default::default()
        };
        let v2 = crate::apigw::event_v2(&req, "r", 0);
        let v1 = json!({
            "path": "/health", "httpMethod": "GET",
            "headers": {"Host": "h", "X-Forwarded-Proto": "1"}, "multiValueHeaders": {},
            "queryStringParameters": {}, "multiValueQueryStringParameters": {},
            "requestContext": {"accountId": "0", "resourceId": "x", "stage": "prod",
                "requestId": "r", "identity": {}, "resourcePath": "/", "httpMethod": "GET",
                "apiId": "a"},
            "body": null, "isBase64Encoded": false,
        });
        for (event, field, v1_shape) in [
            (v2, "headers.host", false),
            (v1, "headers.x-forwarded-proto", true),
        ] {
            let event = lambda_http::lambda_runtime::LambdaEvent::new(event, Default::default());
            let answer = super::invoke(services, ok, event).await.unwrap();
            assert_eq!(answer["statusCode"], 400, "{answer}");
            let headers = if v1_shape {
                &answer["multiValueHeaders"]["content-type"][0]
            } else {
                &answer["headers"]["content-type"]
            };
            assert_eq!(headers, "application/problem+json", "{answer}");
            let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["type"], "urn:herald:problem:malformed-request");
            assert_eq!(body["field"], field);
        }
    }
}

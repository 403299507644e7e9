//! The `credential-rotation` Lambda: builds its configuration and the Secrets Manager and Twilio
//! clients once per cold start, then runs each rotation step with `lib.rs` against the secret
//! the event names.

use std::sync::Arc;

use aws_lambda_events::secretsmanager::SecretsManagerSecretRotationEvent;
use credential_rotation::{RotationConfig, Rotator, handle};
use herald::adapters::aws::{SecretsManagerSource, load_sdk_config};
use herald::ports::SystemClock;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::telemetry::init();
    let config = RotationConfig::from_lookup(|k| std::env::var(k).ok())?;
    let rotator = Rotator::new(&config, Arc::new(SystemClock))?;
    let sdk = load_sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let (rotator, secrets) = (&rotator, &secrets);
    run(service_fn(
        move |event: LambdaEvent<SecretsManagerSecretRotationEvent>| {
            let span = herald::telemetry::invocation_span(
                "credential-rotation",
                &event.context.request_id,
            );
            async move {
                let secret =
                    SecretsManagerSource::new(secrets.clone(), event.payload.secret_id.clone());
                handle(rotator, &secret, &event.payload).await?;
                Ok::<(), Error>(())
            }
            .instrument(span)
        },
    ))
    .await
}

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
    herald::lambda::start("credential-rotation");
    let config = RotationConfig::from_lookup(|k| std::env::var(k).ok())?;
    let rotator = Rotator::new(&config, Arc::new(SystemClock))?;
    let sdk = load_sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let (rotator, secrets) = (&rotator, &secrets);
    run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let span =
            herald::telemetry::invocation_span("credential-rotation", &event.context.request_id);
        async move {
            // Read here rather than by the runtime, whose error would quote the event.
            let event: SecretsManagerSecretRotationEvent =
                herald::lambda::decode(event.payload, "a Secrets Manager rotation event")?;
            let secret = SecretsManagerSource::new(secrets.clone(), event.secret_id.clone());
            herald::panics::catch(handle(rotator, &secret, &event)).await??;
            Ok::<(), Error>(())
        }
        .instrument(span)
    }))
    .await
}

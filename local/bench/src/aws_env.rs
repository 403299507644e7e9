//! The AWS side of a benchmark: tables, queues, a KMS key and the Twilio secret created in a moto
//! server on loopback, and the environment a Herald function reads them from; a Twilio simulator
//! holding the same (fake) credentials; and the services over the AWS adapters, built in process
//! exactly as `herald::lambda::services_from_env` builds them in a Lambda.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::{Region, SdkConfig};
use herald::adapters::aws::{AwsAdapters, AwsResources, TableNames, create_queues, create_tables};
use herald::ports::{Clock, SystemClock, TwilioCredentials};
use herald::service::Services;
use herald::{Config, Secret};

/// The webhook base URL (the one the `events/` fixtures were signed for).
pub const WEBHOOK_BASE: &str = herald::test_env::WEBHOOK_BASE;

/// The fake Twilio credentials every benchmark uses: those the `events/` fixtures were made with
/// (`scripts/make_events.py`), so the webhook fixture's signature is valid.
pub fn credentials() -> TwilioCredentials {
    TwilioCredentials {
        account_sid: format!("AC{}", "a1".repeat(16)),
        api_key_sid: format!("SK{}", "b2".repeat(16)),
        api_key_secret: Secret::new("test-key-secret".into()),
        auth_token: Secret::new("test-auth-token".into()),
        previous_auth_token: None,
        previous_valid_until_ms: None,
    }
}

/// Starts a Twilio simulator on loopback that accepts [`credentials`] and holds its status
/// callbacks (nothing is sent anywhere).
pub async fn start_simulator() -> std::io::Result<twilio_sim::SimHandle> {
    let creds = credentials();
    let mut cfg =
        twilio_sim::SimConfig::new(creds.account_sid.clone(), creds.auth_token.expose().clone());
    cfg.api_keys = vec![(
        creds.api_key_sid.clone(),
        creds.api_key_secret.expose().clone(),
    )];
    cfg.callback_mode = twilio_sim::CallbackMode::Manual;
    cfg.seed = 7;
    twilio_sim::Simulator::start(cfg).await
}

/// The SDK configuration for a moto server at `endpoint` (fake credentials, us-east-1).
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    herald::adapters::aws::sdk_loader()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "herald-bench",
        ))
        .load()
        .await
}

/// Creates Herald's resources in moto under the name `prefix`; returns the variables
/// `AwsResources::from_env` reads.
pub async fn provision(
    sdk: &SdkConfig,
    prefix: &str,
) -> Result<BTreeMap<String, String>, Box<dyn std::error::Error + Send + Sync>> {
    let tables = TableNames {
        messages: format!("{prefix}-messages"),
        events: format!("{prefix}-events"),
        state: format!("{prefix}-state"),
    };
    create_tables(&aws_sdk_dynamodb::Client::new(sdk), &tables).await?;
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let (send, send_dlq) = create_queues(&sqs, &format!("{prefix}-send"), 5).await?;
    let (retry, retry_dlq) = create_queues(&sqs, &format!("{prefix}-retry"), 5).await?;
    let key = aws_sdk_kms::Client::new(sdk)
        .create_key()
        .send()
        .await?
        .key_metadata
        .ok_or("no key metadata")?
        .key_id;
    let secret = aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(format!("{prefix}/twilio"))
        .secret_string(serde_json::to_string(&credentials())?)
        .send()
        .await?
        .arn
        .ok_or("no secret ARN")?;
    Ok(BTreeMap::from(
        [
            ("MESSAGES_TABLE", tables.messages),
            ("EVENTS_TABLE", tables.events),
            ("STATE_TABLE", tables.state),
            ("KMS_KEY_ID", key),
            ("TWILIO_SECRET_ARN", secret),
            ("SEND_QUEUE_URL", send),
            ("SEND_DLQ_URL", send_dlq),
            ("RETRY_QUEUE_URL", retry),
            ("RETRY_DLQ_URL", retry_dlq),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    ))
}

/// Herald's configuration for a benchmark: the fixtures' account and webhook base, the simulator
/// as Twilio, every country allowed and rate limits out of the way (a benchmark sends to the
/// same numbers far faster than any limit allows).
pub fn herald_env(twilio_api_base_url: &str) -> BTreeMap<String, String> {
    BTreeMap::from(
        [
            ("TWILIO_ACCOUNT_SID", credentials().account_sid),
            ("TWILIO_FROM_NUMBER", "+15005550006".to_owned()),
            ("TWILIO_WEBHOOK_BASE_URL", WEBHOOK_BASE.to_owned()),
            ("TWILIO_API_BASE_URL", twilio_api_base_url.to_owned()),
            ("ALLOWED_COUNTRIES", "*".to_owned()),
            ("CALLER_RATE_LIMIT_PER_MINUTE", "10000000".to_owned()),
            ("RECIPIENT_LIMIT_PER_HOUR", "1000000".to_owned()),
            ("RECIPIENT_LIMIT_PER_DAY", "10000000".to_owned()),
            ("COUNTRY_LIMIT_PER_HOUR", "100000000".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    )
}

/// The services over the AWS adapters for `env` (Herald's variables and the resources'), as
/// `herald::lambda::services_from_env` builds them from the process environment.
/// The DynamoDB store is built over `dynamodb` (a client the caller may have instrumented).
pub fn services(
    sdk: &SdkConfig,
    env: &BTreeMap<String, String>,
    dynamodb: aws_sdk_dynamodb::Client,
) -> Result<Services, Box<dyn std::error::Error + Send + Sync>> {
    let get = |k: &str| env.get(k).cloned();
    let config = Config::from_lookup(get)?;
    let resources = AwsResources::from_lookup(get)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut aws = AwsAdapters::new(sdk, &resources, clock.clone());
    aws.store = Arc::new(herald::adapters::aws::DynamoStore::new(
        dynamodb,
        resources.tables.clone(),
        clock.clone(),
    ));
    let adapters = aws.ports(clock);
    Ok(Services::new(config, adapters)?)
}

/// A name no other run in the same moto server uses.
pub fn unique_prefix(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("bench-{what}-{}-{nanos}", std::process::id())
}

//! AWS adapters: DynamoDB (messages, events, keyring), KMS (data keys), Secrets Manager (the
//! Twilio credentials) and SQS (send and retry queues), built once per process from one
//! [`SdkConfig`] and shared.
//!
//! ```no_run
//! # async fn init() -> Result<(), herald::ConfigError> {
//! use std::sync::Arc;
//! use herald::adapters::aws::{AwsAdapters, AwsResources, load_sdk_config};
//! use herald::ports::SystemClock;
//!
//! let resources = AwsResources::from_env()?;
//! let sdk_config = load_sdk_config().await;
//! let adapters = AwsAdapters::new(&sdk_config, &resources, Arc::new(SystemClock));
//! # let _ = adapters; Ok(()) }
//! ```

mod dynamo;
mod kms;
mod secrets;
mod sqs;

use std::sync::Arc;

pub use aws_config::SdkConfig;
pub use dynamo::{
    CALL_RECORD_KIND, DynamoStore, EVENTS_BY_SUBJECT, EVENTS_TTL_ATTRIBUTE, MESSAGES_BY_CALLER,
    MESSAGES_BY_STATUS, MESSAGES_IN_DOUBT, STATE_TTL_ATTRIBUTE, TableNames, create_tables,
};
pub use kms::KmsKeyService;
pub use secrets::SecretsManagerSource;
pub use sqs::{SqsQueue, create_queues};

use crate::config::ConfigError;
use crate::ports::Clock;

/// The variables [`AwsResources::from_env`] requires (the deployment template must set them on
/// every function; `infra/tests` checks it).
pub const REQUIRED_ENV: &[&str] = &[
    "MESSAGES_TABLE",
    "EVENTS_TABLE",
    "STATE_TABLE",
    "KMS_KEY_ID",
    "TWILIO_SECRET_ARN",
    "SEND_QUEUE_URL",
    "SEND_DLQ_URL",
    "RETRY_QUEUE_URL",
    "RETRY_DLQ_URL",
];

/// The AWS resources Herald uses, by name, as configured in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsResources {
    /// The DynamoDB tables.
    pub tables: TableNames,
    /// `KMS_KEY_ID`: the key (id, ARN or alias) that wraps data keys.
    pub kms_key_id: String,
    /// `TWILIO_SECRET_ARN`: the Secrets Manager secret that holds the Twilio credentials.
    pub twilio_secret_arn: String,
    /// `SEND_QUEUE_URL` and `SEND_DLQ_URL`: one job per message of a batch.
    pub send_queue: (String, String),
    /// `RETRY_QUEUE_URL` and `RETRY_DLQ_URL`: the next attempts, delayed.
    pub retry_queue: (String, String),
}

impl AwsResources {
    /// Reads `MESSAGES_TABLE`, `EVENTS_TABLE`, `STATE_TABLE`, `KMS_KEY_ID`,
    /// `TWILIO_SECRET_ARN`, `SEND_QUEUE_URL`, `SEND_DLQ_URL`, `RETRY_QUEUE_URL` and
    /// `RETRY_DLQ_URL` from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// As [`AwsResources::from_env`], reading variables through `get` (tests pass a map). A
    /// missing or blank variable is an error that names it.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        Ok(Self {
            tables: TableNames {
                messages: required("MESSAGES_TABLE")?,
                events: required("EVENTS_TABLE")?,
                state: required("STATE_TABLE")?,
            },
            kms_key_id: required("KMS_KEY_ID")?,
            twilio_secret_arn: required("TWILIO_SECRET_ARN")?,
            send_queue: (required("SEND_QUEUE_URL")?, required("SEND_DLQ_URL")?),
            retry_queue: (required("RETRY_QUEUE_URL")?, required("RETRY_DLQ_URL")?),
        })
    }
}

/// Every AWS adapter, each over a client built once. Clone the `Arc`s into the handlers.
#[derive(Debug, Clone)]
pub struct AwsAdapters {
    /// Messages, events and the keyring in DynamoDB.
    pub store: Arc<DynamoStore>,
    /// Data keys from KMS.
    pub keys: Arc<KmsKeyService>,
    /// The Twilio credentials from Secrets Manager.
    pub secrets: Arc<SecretsManagerSource>,
    /// The send queue.
    pub send_queue: Arc<SqsQueue>,
    /// The retry queue.
    pub retry_queue: Arc<SqsQueue>,
}

impl AwsAdapters {
    /// Builds one client per service from `sdk_config` and the adapters over them.
    pub fn new(sdk_config: &SdkConfig, resources: &AwsResources, clock: Arc<dyn Clock>) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(sdk_config);
        let kms = aws_sdk_kms::Client::new(sdk_config);
        let secretsmanager = aws_sdk_secretsmanager::Client::new(sdk_config);
        let sqs = aws_sdk_sqs::Client::new(sdk_config);
        let queue = |(url, dlq): &(String, String)| {
            Arc::new(SqsQueue::new(sqs.clone(), url.clone(), dlq.clone()))
        };
        Self {
            send_queue: queue(&resources.send_queue),
            retry_queue: queue(&resources.retry_queue),
            store: Arc::new(DynamoStore::new(dynamodb, resources.tables.clone(), clock)),
            keys: Arc::new(KmsKeyService::new(kms, resources.kms_key_id.clone())),
            secrets: Arc::new(SecretsManagerSource::new(
                secretsmanager,
                resources.twilio_secret_arn.clone(),
            )),
        }
    }
}

/// The HTTP client of every AWS SDK client: hyper over rustls with ring (the crypto provider
/// reqwest uses for Twilio), so a binary carries one TLS stack. Built once per process.
pub fn http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    static CLIENT: std::sync::OnceLock<aws_sdk_dynamodb::config::SharedHttpClient> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .build_https()
        })
        .clone()
}

impl AwsAdapters {
    /// Every port of the services over these adapters (the store serves all of the tables'
    /// ports), with `clock`.
    pub fn ports(&self, clock: Arc<dyn Clock>) -> crate::service::Adapters {
        crate::service::Adapters {
            messages: self.store.clone(),
            calls: self.store.clone(),
            events: self.store.clone(),
            opt_outs: self.store.clone(),
            keyring: self.store.clone(),
            keys: self.keys.clone(),
            secrets: self.secrets.clone(),
            send_queue: self.send_queue.clone(),
            retry_queue: self.retry_queue.clone(),
            clock,
            protection: self.store.clone(),
            sid_owners: self.store.clone(),
        }
    }
}

/// The SDK configuration loader with Herald's HTTP client ([`http_client`]) and the latest
/// behavior version; tests add an endpoint, region and credentials.
pub fn sdk_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client())
}

/// The SDK configuration from the usual sources (environment, profile, the Lambda role), with
/// the latest behavior version. A non-empty `AWS_ENDPOINT_URL` sends every service to that
/// endpoint (a local moto or DynamoDB Local); it is unset in production.
pub async fn load_sdk_config() -> SdkConfig {
    let mut loader = sdk_loader();
    if let Some(url) = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        loader = loader.endpoint_url(url.trim());
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn full() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("MESSAGES_TABLE", "herald-messages"),
            ("EVENTS_TABLE", "herald-events"),
            ("STATE_TABLE", "herald-state"),
            ("KMS_KEY_ID", "alias/herald"),
            (
                "TWILIO_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:herald/twilio",
            ),
            (
                "SEND_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/herald-send",
            ),
            (
                "SEND_DLQ_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/herald-send-dlq",
            ),
            (
                "RETRY_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/herald-retry",
            ),
            (
                "RETRY_DLQ_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/herald-retry-dlq",
            ),
        ])
    }

    #[test]
    fn reads_every_resource() {
        let env = full();
        let r = AwsResources::from_lookup(|k| env.get(k).map(|v| (*v).to_owned())).unwrap();
        assert_eq!(r.tables.messages, "herald-messages");
        assert_eq!(r.tables.events, "herald-events");
        assert_eq!(r.tables.state, "herald-state");
        assert_eq!(r.kms_key_id, "alias/herald");
        assert!(r.twilio_secret_arn.ends_with("herald/twilio"));
        assert!(
            r.send_queue.0.ends_with("/herald-send")
                && r.send_queue.1.ends_with("/herald-send-dlq")
        );
        assert!(
            r.retry_queue.0.ends_with("/herald-retry")
                && r.retry_queue.1.ends_with("/herald-retry-dlq")
        );
    }

    #[test]
    fn a_missing_or_blank_variable_is_named() {
        assert_eq!(REQUIRED_ENV.len(), full().len());
        for &name in REQUIRED_ENV {
            for blank in [None, Some("  ")] {
                let mut env = full();
                match blank {
                    None => {
                        env.remove(name);
                    }
                    Some(b) => {
                        env.insert(name, b);
                    }
                }
                let err =
                    AwsResources::from_lookup(|k| env.get(k).map(|v| (*v).to_owned())).unwrap_err();
                assert!(matches!(err, ConfigError::Missing(n) if n == name), "{err}");
                assert!(err.to_string().contains(name));
            }
        }
    }
}

//! Start-up of a Lambda function on AWS: configuration and AWS clients built once per cold start
//! (feature `aws`). A failure names what is wrong and stops the function before it serves.

use std::sync::Arc;

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

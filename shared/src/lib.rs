//! Herald's shared crate: the domain, the ports and their adapters, the Twilio client and
//! signatures, templates, phone numbers, configuration and telemetry, used by all five functions
//! and by the local runner.

pub mod adapters;
pub mod api;
pub mod apigw;
pub mod calls;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod domain;
pub mod engine;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod panics;
pub mod phone;
pub mod ports;
pub mod problem;
pub mod protect;
pub mod reconcile;
pub mod request;
pub mod secret;
pub mod service;
pub mod sqs;
pub mod sweep_pages;
pub mod telemetry;
pub mod templates;
#[cfg(feature = "test-util")]
pub mod test_env;
#[cfg(feature = "test-util")]
pub mod testing;
#[cfg(feature = "test-util")]
pub mod testing_calls;
#[cfg(feature = "test-util")]
pub mod testing_faults;
#[cfg(feature = "test-util")]
pub mod testing_paging;
#[cfg(feature = "test-util")]
pub mod testing_protect;
#[cfg(feature = "test-util")]
pub mod testing_queue;
#[cfg(feature = "test-util")]
pub mod testing_secrets;
#[cfg(feature = "test-util")]
pub mod testing_sids;
pub mod twilio;
pub mod views;
pub mod voice;

pub use config::{Config, ConfigError};
pub use secret::Secret;

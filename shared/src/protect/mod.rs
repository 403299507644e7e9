//! The protection of Herald's HTTP API, shared by `send-sms` and `place-call`: who the caller
//! is ([`identity`]), caller rate limits and recipient rules against SMS pumping ([`limits`]),
//! `Idempotency-Key` ([`idempotency`]), and their configuration ([`ProtectionConfig`]).

pub mod config;
pub mod idempotency;
pub mod identity;
pub mod limits;

pub use config::{Endpoint, ProtectionConfig};
pub use identity::{caller, unauthorized};

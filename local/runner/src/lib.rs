//! The local runner: Herald's handlers in one process behind a local API Gateway, with the
//! embedded adapters and the Twilio simulator.

pub mod demo;
pub mod demo_calls;
mod demo_flow;
pub mod event_source;
pub mod gateway;
pub mod rotation;
pub mod soak;
pub mod stack;
pub mod webhook_cli;

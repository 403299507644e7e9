//! A Twilio REST API simulator for Herald's tests, demo and local runs.
//!
//! It serves `Messages.json` (create, fetch, list) under `/2010-04-01/Accounts/{AccountSid}` the
//! way Twilio does (HTTP Basic with the account SID or API keys, Twilio's error JSON and codes,
//! test-credential magic numbers), then reports each message's progress with signed
//! (`X-Twilio-Signature`) status callbacks. Faults (429, 500, held responses, duplicate and
//! out-of-order callbacks) come from a seeded RNG, so runs repeat. Everything it saw is
//! available through [`SimHandle`] and the `/_sim/...` HTTP inspection API.

mod callbacks;
mod config;
mod model;
mod segments;
mod server;
mod signature;
mod sim;

pub use callbacks::SERVICE_SENDER;
pub use config::{CallbackMode, Faults, Outcome, SimConfig};
pub use model::{
    API_VERSION, CallbackRecord, MessageStatus, RequestRecord, SimMessage, TwilioError, rfc2822,
};
pub use segments::num_segments;
pub use signature::sign;
pub use sim::{SimHandle, Simulator};

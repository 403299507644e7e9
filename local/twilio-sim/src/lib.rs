//! A Twilio REST API simulator for Herald's tests, demo and local runs.
//!
//! It serves `Messages.json` and `Calls.json` (create, fetch, list), `Keys.json`, the Account
//! resource and the Accounts v1 auth-token rotation (`/v1/AuthTokens/...`) the way Twilio does
//! (HTTP Basic with the account SID or API keys, Twilio's error JSON and codes, test-credential
//! magic numbers), then reports each message's and call's progress with signed
//! (`X-Twilio-Signature`, form or JSON with `bodySHA256`) status callbacks, answers calls'
//! `<Gather>` with scripted digits, and delivers signed inbound-SMS webhooks. Faults (429, 500, held responses, duplicate and
//! out-of-order callbacks) come from a seeded RNG, so runs repeat. Everything it saw is
//! available through [`SimHandle`] and the `/_sim/...` HTTP inspection API.

mod callbacks;
mod calls;
mod config;
mod credentials;
mod inbound;
mod model;
mod segments;
mod server;
mod signature;
mod sim;
mod webhook;

pub use callbacks::SERVICE_SENDER;
pub use calls::{
    CALL_EVENTS, CallCallbackRecord, CallStatus, SimCall, VoiceRequestKind, VoiceRequestRecord,
};
pub use config::{CallOutcome, CallbackMode, Faults, Outcome, SimClock, SimConfig};
pub use credentials::SimKey;
pub use inbound::{InboundRecord, InboundSms};
pub use model::{
    API_VERSION, CallbackRecord, MessageStatus, RequestRecord, ResourceMeta, SimMessage,
    TwilioError, rfc2822,
};
pub use segments::num_segments;
pub use signature::sign;
pub use sim::{SimHandle, Simulator};
pub use webhook::WebhookDelivery;

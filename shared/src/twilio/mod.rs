//! Twilio: the REST client, webhook signatures, and Twilio's error codes with their retry class.

pub mod client;
pub mod credentials;
pub mod error;
pub mod signature;
pub mod twiml;

pub use client::calls::{CALL_STATUS_EVENTS, CallResource, MAX_TWIML_CHARS, NewCall};
pub use client::keys::{AccountAuth, KeyResource, NewKey};
pub use client::{
    Client, ClientOptions, LIST_MAX, Listing, MessageResource, NewMessage, Sender, is_sid,
};
pub use credentials::CredentialCache;
pub use error::{RetryClass, TwilioError, class_of_code, describe_code};

//! Sanitized events: what happened to a message or call, kept for its timeline and the audit.
//!
//! An event never holds a phone number or a body in plaintext: only kinds, ids, statuses, codes,
//! the country of the number, and times. The text of an inbound SMS is kept sealed (the Vault,
//! the event key as associated data) in [`Event::sealed`].

use serde::{Deserialize, Serialize};

/// Operational events are kept this long (DynamoDB TTL, SQLite sweep).
pub const EVENT_RETENTION_MS: i64 = 90 * 24 * 60 * 60 * 1000;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Herald accepted the request and recorded it.
    Accepted,
    /// Twilio accepted the message or call (`queued`).
    Submitted,
    /// Twilio refused it for good.
    Rejected,
    /// Twilio or the network failed for now; another attempt is due.
    Deferred,
    /// A signed status callback from Twilio.
    StatusCallback,
    /// A signed status callback for an id Herald does not know.
    OrphanCallback,
    /// An inbound SMS that is not a keyword: its text is kept sealed.
    InboundMessage,
    /// An inbound STOP-like keyword: the sender opted out.
    OptOut,
    /// An inbound START-like keyword: the sender opted back in.
    OptIn,
    /// An inbound HELP: answered with the help text.
    HelpRequest,
    /// The callee pressed 1 to acknowledge a voice alert.
    Acknowledged,
    /// An attempt whose earlier outcome was unknown found more than one Twilio resource that
    /// could be its own: it adopted none and sent again (a possible duplicate, counted).
    AmbiguousReconcile,
    /// The sweeper asked Twilio for the record's resource and applied what it reported (or
    /// found nothing new: `applied` is false).
    Swept,
    /// The sweeper fetched the record's Twilio SID and the resource is not the record's own (its
    /// recipient differs): nothing was applied.
    SweepMismatch,
    /// Twilio accepted the record's attempt and no final report came within
    /// `FINAL_STATE_AFTER_SECS`: the sweeper finished it `unconfirmed`.
    Unconfirmed,
}

impl EventKind {
    /// The kind as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Submitted => "submitted",
            Self::Rejected => "rejected",
            Self::Deferred => "deferred",
            Self::StatusCallback => "status_callback",
            Self::OrphanCallback => "orphan_callback",
            Self::InboundMessage => "inbound_message",
            Self::OptOut => "opt_out",
            Self::OptIn => "opt_in",
            Self::HelpRequest => "help_request",
            Self::Acknowledged => "acknowledged",
            Self::AmbiguousReconcile => "ambiguous_reconcile",
            Self::Swept => "swept",
            Self::SweepMismatch => "sweep_mismatch",
            Self::Unconfirmed => "unconfirmed",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        [
            Self::Accepted,
            Self::Submitted,
            Self::Rejected,
            Self::Deferred,
            Self::StatusCallback,
            Self::OrphanCallback,
            Self::InboundMessage,
            Self::OptOut,
            Self::OptIn,
            Self::HelpRequest,
            Self::Acknowledged,
            Self::AmbiguousReconcile,
            Self::Swept,
            Self::SweepMismatch,
            Self::Unconfirmed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or(())
    }
}

/// What an event is about: Herald's message or call id, or nothing known (an orphan).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Subject(pub String);

impl Subject {
    /// Events whose target Herald does not know.
    pub fn orphan() -> Self {
        Self("orphan".to_owned())
    }

    /// The conversation with one phone number, named by its lookup token (never the number):
    /// inbound messages and opt-outs are events of it.
    pub fn conversation(token: &crate::crypto::LookupToken) -> Self {
        Self(format!("conversation#{}", token.0))
    }
}

impl<T: std::fmt::Display> From<&T> for Subject {
    fn from(id: &T) -> Self {
        Self(id.to_string())
    }
}

/// One sanitized event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique key: the same key twice is the same event (dedupe).
    pub key: String,
    /// The message or call it is about.
    pub subject: Subject,
    /// What happened.
    pub kind: EventKind,
    /// The status reported or reached, as spelled by Twilio/Herald.
    pub status: Option<String>,
    /// Twilio's `SM…`/`CA…` id.
    pub twilio_sid: Option<String>,
    /// Twilio's error code.
    pub error_code: Option<u32>,
    /// The attempt it belongs to.
    pub attempt: u32,
    /// Whether it moved the record's status.
    pub applied: bool,
    /// When it happened, Unix milliseconds.
    pub at_ms: i64,
    /// When the store may forget it, Unix milliseconds.
    pub expires_at_ms: i64,
    /// The ISO country code of the phone number concerned (the recipient of a message, the
    /// sender of an inbound SMS), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The text of an inbound SMS, sealed with the event key as associated data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<crate::crypto::Sealed>,
}

//! Messages: the status machine, its ranks and transition rule, and the stored record.

use serde::{Deserialize, Serialize};

use super::ids::MessageId;
use crate::crypto::{LookupToken, Sealed};
use crate::templates::Encoding;

/// Where a message is in its life, as Twilio reports it, plus Herald's own `accepted` and
/// `retrying`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Recorded by Herald, not yet handed to Twilio (also Twilio's Messaging Service status).
    Accepted,
    /// Waiting in Herald's retry queue for its next attempt.
    Retrying,
    /// Scheduled by a Messaging Service.
    Scheduled,
    /// Queued at Twilio.
    Queued,
    /// Being sent by Twilio.
    Sending,
    /// Handed to the carrier.
    Sent,
    /// Delivered to the handset.
    Delivered,
    /// Read (channels that report it).
    Read,
    /// Some segments delivered.
    PartiallyDelivered,
    /// The carrier could not deliver it.
    Undelivered,
    /// It could not be sent.
    Failed,
    /// Canceled before it was sent.
    Canceled,
}

impl MessageStatus {
    /// Every status, in rank order.
    pub const ALL: [MessageStatus; 12] = [
        Self::Accepted,
        Self::Retrying,
        Self::Scheduled,
        Self::Queued,
        Self::Sending,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::PartiallyDelivered,
        Self::Undelivered,
        Self::Failed,
        Self::Canceled,
    ];

    /// The status's rank: a message only ever moves to a status of a higher rank.
    pub fn rank(self) -> u8 {
        match self {
            Self::Accepted => 0,
            Self::Retrying => 1,
            Self::Scheduled => 2,
            Self::Queued => 3,
            Self::Sending => 4,
            Self::Sent => 5,
            Self::Delivered
            | Self::Read
            | Self::PartiallyDelivered
            | Self::Undelivered
            | Self::Failed
            | Self::Canceled => 10,
        }
    }

    /// Whether the status is final: once there, a message never moves again.
    pub fn is_terminal(self) -> bool {
        self.rank() == 10
    }

    /// The status as Twilio and Herald's API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Retrying => "retrying",
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::PartiallyDelivered => "partially_delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Parses a status as Twilio spells it in `MessageStatus`/`SmsStatus`; `None` for statuses an
    /// outbound message cannot have (`receiving`, `received`) or unknown text.
    pub fn from_twilio(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s && *st != Self::Retrying)
    }

    /// What a report of `next` does to a message that is `self`.
    pub fn transition(self, next: MessageStatus) -> Transition {
        if !self.is_terminal() && next.rank() > self.rank() {
            Transition::Apply
        } else {
            Transition::EventOnly
        }
    }
}

impl std::fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MessageStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or(())
    }
}

/// The outcome of the transition rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The message moves to the new status.
    Apply,
    /// The report is kept as an event, the message stays where it is (late, duplicate or
    /// backwards report).
    EventOnly,
}

/// A message as Herald stores it. Phone number and body are sealed; nothing here is plaintext
/// personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Herald's id.
    pub id: MessageId,
    /// Who asked for it (the API caller's identity).
    pub caller: String,
    /// The recipient in E.164, encrypted with the id as associated data.
    pub to: Sealed,
    /// Keyed hash of the recipient, for opt-out and rate-limit lookups.
    pub to_token: LookupToken,
    /// The recipient as shown to people: `+*******2671`.
    pub to_masked: String,
    /// ISO 3166 region of the recipient, such as `US`.
    pub country: Option<String>,
    /// The text, encrypted with the id as associated data.
    pub body: Sealed,
    /// The template it was rendered from, if any.
    pub template: Option<String>,
    /// GSM-7 or UCS-2.
    pub encoding: Encoding,
    /// How many SMS segments the body takes.
    pub segments: u32,
    /// Where it is now.
    pub status: MessageStatus,
    /// The attempt the record waits for or has made (1 for the first send).
    pub attempt: u32,
    /// Twilio's `SM…` id once Twilio accepted it.
    pub twilio_sid: Option<String>,
    /// Twilio's error code of the last failure.
    pub error_code: Option<u32>,
    /// A sanitized reason for the last failure (never personal data).
    pub error_reason: Option<String>,
    /// When it was accepted, Unix milliseconds.
    pub created_at_ms: i64,
    /// When it last changed, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// A conditional change of a message's status, applied atomically by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The change applies only while the record is at this attempt.
    pub attempt: u32,
    /// The new status; applies only by the transition rule.
    pub status: MessageStatus,
    /// Twilio's id, stored when given.
    pub twilio_sid: Option<String>,
    /// Twilio's error code, stored when given.
    pub error_code: Option<u32>,
    /// Sanitized reason, stored when given.
    pub error_reason: Option<String>,
    /// When it happened, Unix milliseconds.
    pub at_ms: i64,
}

impl Message {
    /// Whether `change` would move this record, by attempt and by the transition rule.
    pub fn accepts(&self, change: &StatusChange) -> bool {
        self.attempt == change.attempt && self.status.transition(change.status) == Transition::Apply
    }

    /// Applies `change` in memory (the stores call this inside their atomic section).
    pub fn apply(&mut self, change: &StatusChange) {
        self.status = change.status;
        if change.twilio_sid.is_some() {
            self.twilio_sid.clone_from(&change.twilio_sid);
        }
        if change.error_code.is_some() {
            self.error_code = change.error_code;
        }
        if change.error_reason.is_some() {
            self.error_reason.clone_from(&change.error_reason);
        }
        self.updated_at_ms = change.at_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageStatus::*;

    #[test]
    fn statuses_only_move_forward() {
        assert_eq!(Queued.transition(Sent), Transition::Apply);
        assert_eq!(Sent.transition(Delivered), Transition::Apply);
        assert_eq!(Accepted.transition(Failed), Transition::Apply);
        assert_eq!(Sent.transition(Queued), Transition::EventOnly);
        assert_eq!(Sent.transition(Sent), Transition::EventOnly);
    }

    #[test]
    fn terminal_statuses_stick() {
        for t in MessageStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for next in MessageStatus::ALL {
                assert_eq!(t.transition(next), Transition::EventOnly, "{t} -> {next}");
            }
        }
        // A late `sent` after `delivered` is an event only.
        assert_eq!(Delivered.transition(Sent), Transition::EventOnly);
    }

    #[test]
    fn twilio_spellings_round_trip_and_inbound_statuses_are_not_outbound() {
        for s in MessageStatus::ALL {
            assert_eq!(s.as_str().parse::<MessageStatus>(), Ok(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(
            MessageStatus::from_twilio("partially_delivered"),
            Some(PartiallyDelivered)
        );
        assert_eq!(MessageStatus::from_twilio("received"), None);
        assert_eq!(MessageStatus::from_twilio("retrying"), None);
    }
}

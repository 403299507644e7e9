//! Messages: the status machine, its ranks and transition rule, and the stored record.

use serde::{Deserialize, Serialize};
use strum::{IntoStaticStr, VariantArray};

use super::ids::MessageId;
use super::recipient::Recipient;
use super::record::{Own, Record};
use crate::crypto::{LookupToken, Sealed};
use crate::templates::Encoding;

/// The rank of `unconfirmed` (a message's or a call's): above every status in flight, below
/// Twilio's final statuses (rank 10), so a late final report still applies.
pub const UNCONFIRMED_RANK: u8 = 9;

/// Where a message is in its life, as Twilio reports it, plus Herald's own `accepted` and
/// `retrying`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoStaticStr, VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
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
    /// Herald's own final status: Twilio accepted it, and no final report came within
    /// `FINAL_STATE_AFTER_SECS` (the sweeper asked one last time). Never retried (Twilio may have
    /// delivered it); a late genuine final report from Twilio still moves it to that status.
    Unconfirmed,
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
    /// Every status, in rank order (as declared).
    pub const ALL: &'static [Self] = <Self as VariantArray>::VARIANTS;

    /// The status's rank: a message only ever moves to a status of a higher rank.
    pub fn rank(self) -> u8 {
        match self {
            Self::Accepted => 0,
            Self::Retrying => 1,
            Self::Scheduled => 2,
            Self::Queued => 3,
            Self::Sending => 4,
            Self::Sent => 5,
            Self::Unconfirmed => UNCONFIRMED_RANK,
            Self::Delivered
            | Self::Read
            | Self::PartiallyDelivered
            | Self::Undelivered
            | Self::Failed
            | Self::Canceled => 10,
        }
    }

    /// The status as Twilio and Herald's API spell it (the serde name: the tests hold them
    /// equal).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses a status as Twilio spells it in `MessageStatus`/`SmsStatus`; `None` for statuses an
    /// outbound message cannot have (`receiving`, `received`), Herald's own (`retrying`,
    /// `unconfirmed`) or unknown text.
    pub fn from_twilio(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|st| st.as_str() == s && !matches!(st, Self::Retrying | Self::Unconfirmed))
    }
}

super::attempt::record_status!(MessageStatus);

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
pub type Message = Record<MessageId, MessageStatus, MessageFields>;

/// What only a message has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFields {
    /// The text, encrypted with the id as associated data.
    pub body: Sealed,
    /// GSM-7 or UCS-2.
    pub encoding: Encoding,
    /// How many SMS segments the body takes.
    pub segments: u32,
    /// Keyed hash of the recipient and the body ([`crate::crypto::Vault::match_token`]): the
    /// messages whose Twilio resources would match each other's share it. Records stored
    /// before it have none.
    #[serde(default)]
    pub match_token: Option<LookupToken>,
}

impl Own<MessageStatus> for MessageFields {
    fn match_token<'a>(&'a self, _to: &'a Recipient) -> Option<&'a LookupToken> {
        self.match_token.as_ref()
    }
}

/// A conditional change of a message's status (a status callback, or Twilio's answer to the
/// create).
pub type StatusChange = super::attempt::AttemptReport<MessageStatus>;

/// Why an attempt cannot be claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRefusal {
    /// The record does not wait for this attempt (done, terminal, or at another attempt).
    Stale,
    /// Another sender holds the attempt until this time.
    Busy {
        /// Unix milliseconds.
        until_ms: i64,
    },
}

impl Message {
    /// Whether `change` would move this record, by attempt and by the transition rule.
    ///
    /// A change belongs to the record when it is for the record's current attempt, or names the
    /// Twilio message the record holds (an earlier attempt's message that was adopted).
    pub fn accepts(&self, change: &StatusChange) -> bool {
        let ours = self.attempts.attempt == change.attempt
            || (change.twilio_sid.is_some() && change.twilio_sid == self.twilio_sid);
        ours && self.status.transition(change.status) == Transition::Apply
    }

    /// Applies `change` in memory (the stores call this inside their atomic section); a
    /// message's failures are `failed` and `undelivered` ([`Record::take_report`]).
    pub fn apply(&mut self, change: &StatusChange) {
        let failure = matches!(
            change.status,
            MessageStatus::Failed | MessageStatus::Undelivered
        );
        self.take_report(change, failure);
    }

    /// The record after `change`, or `None` when the change does not apply.
    pub fn changed(&self, change: &StatusChange) -> Option<Message> {
        self.accepts(change).then(|| {
            let mut m = self.clone();
            m.apply(change);
            m
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Attempted, RetryChange};
    use MessageStatus::*;

    fn record(status: MessageStatus, attempt: u32) -> Message {
        let own = MessageFields {
            body: Sealed(vec![]),
            encoding: Encoding::Gsm7,
            segments: 1,
            match_token: None,
        };
        Message::sample(MessageId::generate(1), status, attempt, own)
    }

    #[test]
    fn only_a_waiting_record_at_that_attempt_can_be_claimed() {
        let m = record(Accepted, 1);
        let c = m.claimed(1, 100, 50).unwrap();
        assert_eq!(
            (
                c.attempts.claimed_at_ms,
                c.attempts.claimed_until_ms,
                c.attempts.ambiguous_since_ms
            ),
            (Some(100), Some(150), None)
        );
        assert_eq!(m.claimed(2, 100, 50), Err(ClaimRefusal::Stale));
        assert_eq!(
            record(Queued, 1).claimed(1, 100, 50),
            Err(ClaimRefusal::Stale)
        );
        assert_eq!(
            record(Failed, 1).claimed(1, 100, 50),
            Err(ClaimRefusal::Stale)
        );
        // A live claim is respected; an expired one is taken over and makes the attempt ambiguous.
        assert_eq!(
            c.claimed(1, 120, 50),
            Err(ClaimRefusal::Busy { until_ms: 150 })
        );
        let taken = c.claimed(1, 150, 50).unwrap();
        assert_eq!(taken.attempts.ambiguous_since_ms, Some(100));
        assert_eq!(taken.attempts.claimed_until_ms, Some(200));
        // The dead holder may have reached Twilio any time within its lease.
        assert_eq!(taken.ambiguous_window(50), Some((100, 150)));
    }

    #[test]
    fn a_retry_moves_to_the_next_attempt_and_keeps_the_earliest_ambiguity() {
        let m = record(Accepted, 1).claimed(1, 100, 50).unwrap();
        let change = RetryChange {
            attempt: 1,
            error_code: Some(30001),
            error_reason: Some("queue overflow".into()),
            ambiguous_since_ms: Some(100),
            ambiguous_until_ms: Some(120),
            next_attempt_at_ms: 400,
            at_ms: 120,
        };
        let r = m.retried(&change).unwrap();
        assert_eq!(
            (
                r.status,
                r.attempts.attempt,
                r.attempts.claimed_until_ms,
                r.attempts.ambiguous_since_ms
            ),
            (Retrying, 2, None, Some(100))
        );
        assert_eq!(r.attempts.next_attempt_at_ms, Some(400));
        assert_eq!(r.ambiguous_window(50), Some((100, 120)));
        // A second ambiguous attempt widens the window: the earliest start, the latest end.
        let wider = r
            .retried(&RetryChange {
                attempt: 2,
                ambiguous_since_ms: Some(300),
                ambiguous_until_ms: Some(330),
                ..change.clone()
            })
            .unwrap();
        assert_eq!(wider.ambiguous_window(50), Some((100, 330)));
        // A failure Twilio surely did not accept ends the ambiguity (the attempt checked first).
        let clear = r
            .retried(&RetryChange {
                attempt: 2,
                ambiguous_since_ms: None,
                ambiguous_until_ms: None,
                ..change.clone()
            })
            .unwrap();
        assert_eq!(clear.ambiguous_window(50), None);
        // Not at that attempt any more, or final: no change.
        assert!(r.retried(&change).is_none());
        assert!(record(Delivered, 1).retried(&change).is_none());
        // Twilio accepting the next attempt clears what was in flight.
        let q = r
            .changed(&StatusChange {
                twilio_sid: Some("SM1".into()),
                ..StatusChange::new(2, Queued, 500)
            })
            .unwrap();
        assert_eq!(
            (
                q.attempts.claimed_until_ms,
                q.attempts.ambiguous_since_ms,
                q.attempts.ambiguous_until_ms,
                q.attempts.next_attempt_at_ms
            ),
            (None, None, None, None)
        );
    }

    #[test]
    fn a_record_stored_without_the_window_s_end_loads_and_ends_it_one_lease_later() {
        let mut m = record(Retrying, 2);
        m.attempts.ambiguous_since_ms = Some(1_000);
        let mut doc = serde_json::to_value(&m).unwrap();
        doc.as_object_mut().unwrap().remove("ambiguous_until_ms");
        let old: Message = serde_json::from_value(doc).unwrap();
        assert_eq!(old.attempts.ambiguous_until_ms, None);
        assert_eq!(old.ambiguous_window(60_000), Some((1_000, 61_000)));
    }

    #[test]
    fn statuses_only_move_forward() {
        assert_eq!(Queued.transition(Sent), Transition::Apply);
        assert_eq!(Sent.transition(Delivered), Transition::Apply);
        assert_eq!(Accepted.transition(Failed), Transition::Apply);
        assert_eq!(Sent.transition(Queued), Transition::EventOnly);
        assert_eq!(Sent.transition(Sent), Transition::EventOnly);
    }

    #[test]
    fn unconfirmed_is_final_but_a_late_final_report_replaces_it() {
        assert!(Unconfirmed.is_terminal());
        for s in [Queued, Sending, Sent] {
            assert_eq!(s.transition(Unconfirmed), Transition::Apply, "{s}");
        }
        for &next in MessageStatus::ALL {
            let moves = Unconfirmed.transition(next) == Transition::Apply;
            assert_eq!(moves, next.rank() == 10, "unconfirmed -> {next}");
        }
        // Twilio's final statuses are never replaced by it.
        assert_eq!(Delivered.transition(Unconfirmed), Transition::EventOnly);
        assert_eq!(Undelivered.transition(Unconfirmed), Transition::EventOnly);
        // Herald's own: Twilio never reports it.
        assert_eq!(MessageStatus::from_twilio("unconfirmed"), None);
        assert_eq!("unconfirmed".parse::<MessageStatus>(), Ok(Unconfirmed));
        // An unconfirmed message is never claimed for another attempt.
        assert_eq!(
            record(Unconfirmed, 1).claimed(1, 100, 50),
            Err(ClaimRefusal::Stale)
        );
    }

    #[test]
    fn terminal_statuses_stick() {
        for t in MessageStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.is_terminal() && *s != Unconfirmed)
        {
            for &next in MessageStatus::ALL {
                assert_eq!(t.transition(next), Transition::EventOnly, "{t} -> {next}");
            }
        }
        // A late `sent` after `delivered` is an event only.
        assert_eq!(Delivered.transition(Sent), Transition::EventOnly);
    }

    #[test]
    fn twilio_spellings_round_trip_and_inbound_statuses_are_not_outbound() {
        for &s in MessageStatus::ALL {
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

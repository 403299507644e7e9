//! The stored record of every kind that is sent attempt by attempt (a message, a call): what
//! every kind has, written once, and the kind's own fields beside it ([`Own`]). The document
//! stores them all side by side (`own`, the recipient and the attempts are flattened).

use serde::{Deserialize, Serialize};

use super::attempt::{AttemptReport, Attempted, Attempts, RecordStatus};
use super::recipient::Recipient;
use crate::crypto::LookupToken;

/// A record sent attempt by attempt, with status `S`, and `own`: what only its kind has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record<Id, S, K> {
    /// Herald's id.
    pub id: Id,
    /// Who asked for it (the API caller's identity).
    pub caller: String,
    /// The recipient (a call's callee): sealed, with its lookup token, masked form and region.
    #[serde(flatten)]
    pub to: Recipient,
    /// The template it was rendered from, if any.
    pub template: Option<String>,
    /// Where it is now.
    pub status: S,
    /// Its attempts: the attempt engine's bookkeeping, and when it was accepted and last
    /// changed.
    #[serde(flatten)]
    pub attempts: Attempts,
    /// Twilio's SID (`SM…`, `CA…`) of the current attempt, once Twilio accepted it.
    pub twilio_sid: Option<String>,
    /// Twilio's error code of the last failure.
    pub error_code: Option<u32>,
    /// A sanitized reason for the last failure (never personal data).
    pub error_reason: Option<String>,
    /// What only its kind has.
    #[serde(flatten)]
    pub own: K,
}

/// What only one kind of record has, and what of the attempt engine's reading of a record
/// depends on it.
pub trait Own<S: RecordStatus>: Clone + Send + Sync + 'static {
    /// The keyed hash shared by the records whose Twilio resources match each other's
    /// ([`Attempted::match_token`]), for a record to `to`.
    fn match_token<'a>(&'a self, to: &'a Recipient) -> Option<&'a LookupToken>;

    /// Whether another attempt may still be made of a record that is `status`
    /// ([`Attempted::is_open`]): by default, while it is not final.
    fn is_open(&self, status: S) -> bool {
        !status.is_terminal()
    }
}

impl<Id, S: RecordStatus, K> Record<Id, S, K> {
    /// Moves the record as `report` says, in memory (the stores call this inside their atomic
    /// section): its status, the SID it names, its error. A report of progress with no error
    /// (`failure` false: not a failure of the attempt) clears an earlier attempt's error, which
    /// is history (the timeline keeps it), not this record's. Unless the record moves to
    /// `retrying`, its attempt is settled: nothing is in flight or due any more.
    pub fn take_report(&mut self, report: &AttemptReport<S>, failure: bool) {
        self.status = report.status;
        if report.twilio_sid.is_some() {
            self.twilio_sid.clone_from(&report.twilio_sid);
        }
        if report.error_code.is_some() || report.error_reason.is_some() {
            self.error_code = report.error_code;
            self.error_reason.clone_from(&report.error_reason);
        } else if !failure {
            self.error_code = None;
            self.error_reason = None;
        }
        self.attempts.updated_at_ms = report.at_ms;
        if report.status != S::RETRYING {
            self.attempts.settle();
        }
    }
}

#[cfg(test)]
impl<Id, S, K> Record<Id, S, K> {
    /// A record of `own` for unit tests: `id`, `status` at `attempt`, accepted at 0, to a made-up
    /// recipient, with nothing else set.
    pub(crate) fn sample(id: Id, status: S, attempt: u32, own: K) -> Self {
        Self {
            id,
            caller: "c".into(),
            to: Recipient {
                sealed: crate::crypto::Sealed(vec![]),
                token: LookupToken("t".into()),
                masked: "+*1".into(),
                country: None,
            },
            template: None,
            status,
            attempts: Attempts {
                attempt,
                ..Attempts::new(0)
            },
            twilio_sid: None,
            error_code: None,
            error_reason: None,
            own,
        }
    }
}

impl<Id, S, K> Attempted for Record<Id, S, K>
where
    Id: Clone + std::fmt::Display + Send + Sync + 'static,
    S: RecordStatus,
    K: Own<S>,
{
    type Status = S;
    type Id = Id;

    fn record_id(&self) -> &Id {
        &self.id
    }
    fn status(&self) -> S {
        self.status
    }
    fn caller(&self) -> &str {
        &self.caller
    }
    fn to(&self) -> &Recipient {
        &self.to
    }
    fn twilio_sid(&self) -> Option<&str> {
        self.twilio_sid.as_deref()
    }
    fn error_code(&self) -> Option<u32> {
        self.error_code
    }
    fn error_reason(&self) -> Option<&str> {
        self.error_reason.as_deref()
    }
    fn template(&self) -> Option<&str> {
        self.template.as_deref()
    }
    fn attempts(&self) -> Attempts {
        self.attempts
    }
    fn set_attempts(&mut self, a: Attempts) {
        let created_at_ms = self.attempts.created_at_ms;
        self.attempts = Attempts { created_at_ms, ..a };
    }
    fn keep_identity(&mut self, of: &Self) {
        self.id = of.id.clone();
        self.attempts.created_at_ms = of.attempts.created_at_ms;
    }
    fn is_open(&self) -> bool {
        self.own.is_open(self.status)
    }
    fn enter_retrying(&mut self, error_code: Option<u32>, error_reason: Option<String>) {
        self.status = S::RETRYING;
        self.twilio_sid = None;
        self.error_code = error_code;
        self.error_reason = error_reason;
    }
    fn match_token(&self) -> Option<&LookupToken> {
        self.own.match_token(&self.to)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::crypto::{LookupToken, Sealed};
    use crate::domain::{
        Call, CallFields, CallId, CallStatus, Message, MessageFields, MessageId, MessageStatus,
        Speech,
    };
    use crate::templates::Encoding;

    /// The top-level names of `doc`'s JSON object.
    fn names(doc: &serde_json::Value) -> BTreeSet<&str> {
        doc.as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    /// What every record's document has at its top level: the recipient and the attempts stand
    /// beside the rest, as stored documents have them.
    const COMMON: [&str; 20] = [
        "id",
        "caller",
        "to",
        "to_token",
        "to_masked",
        "country",
        "template",
        "status",
        "attempt",
        "created_at_ms",
        "updated_at_ms",
        "claimed_at_ms",
        "claimed_until_ms",
        "ambiguous_since_ms",
        "ambiguous_until_ms",
        "ambiguous_from_attempt",
        "next_attempt_at_ms",
        "twilio_sid",
        "error_code",
        "error_reason",
    ];

    #[test]
    fn a_record_is_stored_as_one_flat_document_with_its_kinds_fields_beside_the_rest() {
        let mut message = Message::sample(
            MessageId::generate(1),
            MessageStatus::Queued,
            1,
            MessageFields {
                body: Sealed(vec![2]),
                encoding: Encoding::Gsm7,
                segments: 1,
                match_token: Some(LookupToken("m".into())),
            },
        );
        message.twilio_sid = Some("SM1".into());
        let doc = serde_json::to_value(&message).unwrap();
        let mut expected: BTreeSet<&str> = COMMON.into_iter().collect();
        expected.extend(["body", "encoding", "segments", "match_token"]);
        assert!(names(&doc).is_superset(&expected), "{doc}");
        assert!(
            names(&doc)
                .iter()
                .all(|n| expected.contains(n) || n.starts_with("doubt_"))
        );
        assert_eq!(serde_json::from_value::<Message>(doc).unwrap(), message);

        let mut call = Call::sample(
            CallId::generate(1),
            CallStatus::Completed,
            1,
            CallFields {
                message: Sealed(vec![3]),
                speech: Speech {
                    voice: "alice".into(),
                    language: "en-US".into(),
                    loop_count: 1,
                },
                require_ack: true,
                duration_seconds: Some(4),
                acknowledged_at_ms: Some(5),
            },
        );
        call.template = Some("outage".into());
        let doc = serde_json::to_value(&call).unwrap();
        let mut expected: BTreeSet<&str> = COMMON.into_iter().collect();
        expected.extend([
            "message",
            "speech",
            "require_ack",
            "duration_seconds",
            "acknowledged_at_ms",
        ]);
        assert!(names(&doc).is_superset(&expected), "{doc}");
        assert!(
            names(&doc)
                .iter()
                .all(|n| expected.contains(n) || n.starts_with("doubt_"))
        );
        assert_eq!(serde_json::from_value::<Call>(doc).unwrap(), call);
    }
}

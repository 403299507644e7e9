//! Voice calls: the call status machine, its ranks and transition rule, acknowledgement, and the
//! stored record. Mirrors [`super::message`]: claims with a lease, attempts, retries.
//!
//! A call is *done* when nobody needs to be called again: it was answered (or, for an alert
//! that asks for an acknowledgement, it was acknowledged). A report of `busy`, `no-answer` or
//! `failed`, or a `completed` call whose acknowledgement is still missing, moves the record to
//! its next attempt while attempts remain; otherwise the report is applied and sticks.

use serde::{Deserialize, Serialize};
use strum::{IntoStaticStr, VariantArray};

use super::attempt::Attempted;
use super::ids::CallId;
use super::message::{Transition, UNCONFIRMED_RANK};
use super::recipient::Recipient;
use super::record::{Own, Record};
use crate::crypto::{LookupToken, Sealed};

/// Where a call is, as Twilio reports it, plus Herald's own `accepted` and `retrying`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoStaticStr, VariantArray,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum CallStatus {
    /// Recorded by Herald, not yet handed to Twilio.
    Accepted,
    /// Waiting in Herald's retry queue for its next attempt.
    Retrying,
    /// Queued at Twilio.
    Queued,
    /// Twilio started dialling (the `initiated` event).
    Initiated,
    /// Ringing at the callee.
    Ringing,
    /// Answered, the alert is being spoken.
    InProgress,
    /// Herald's own final status: Twilio accepted the call, and no final report came within
    /// `FINAL_STATE_AFTER_SECS` (the sweeper asked one last time). Never retried; a late genuine
    /// final report from Twilio still moves it to that status.
    Unconfirmed,
    /// Answered and hung up.
    Completed,
    /// The callee was busy.
    Busy,
    /// Nobody answered.
    NoAnswer,
    /// The call could not be placed.
    Failed,
    /// Canceled before it was answered.
    Canceled,
}

impl CallStatus {
    /// Every status, in rank order (as declared).
    pub const ALL: &'static [Self] = <Self as VariantArray>::VARIANTS;

    /// The status's rank: a call only ever moves to a status of a higher rank.
    pub fn rank(self) -> u8 {
        match self {
            Self::Accepted => 0,
            Self::Retrying => 1,
            Self::Queued => 3,
            Self::Initiated => 4,
            Self::Ringing => 5,
            Self::InProgress => 6,
            Self::Unconfirmed => UNCONFIRMED_RANK,
            Self::Completed | Self::Busy | Self::NoAnswer | Self::Failed | Self::Canceled => 10,
        }
    }

    /// The status as Twilio and Herald's API spell it (the serde name: the tests hold them
    /// equal).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses a `CallStatus` as Twilio sends it (the Call resource's status, or a status
    /// callback's); `None` for Herald's own statuses and unknown text.
    pub fn from_twilio(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|st| {
            st.as_str() == s && !matches!(st, Self::Accepted | Self::Retrying | Self::Unconfirmed)
        })
    }

    /// Whether a call that ended so was not answered: another attempt may reach the callee.
    pub fn is_unanswered(self) -> bool {
        matches!(self, Self::Busy | Self::NoAnswer | Self::Failed)
    }
}

super::attempt::record_status!(CallStatus);

/// How the alert is spoken: Twilio `<Say>` attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Speech {
    /// `voice`, from the allow-list in [`crate::voice`].
    pub voice: String,
    /// `language`, from the allow-list in [`crate::voice`].
    pub language: String,
    /// `loop`: how many times the alert is spoken (1..=10).
    pub loop_count: u32,
}

/// A call as Herald stores it. The number and the spoken text are sealed; nothing here is
/// plaintext personal data.
pub type Call = Record<CallId, CallStatus, CallFields>;

/// What only a call has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallFields {
    /// The text spoken, encrypted with the id as associated data.
    pub message: Sealed,
    /// Voice, language and loop.
    pub speech: Speech,
    /// Whether the callee must press 1 to acknowledge the alert.
    pub require_ack: bool,
    /// Talk time of the last answered attempt, in seconds (`CallDuration`).
    pub duration_seconds: Option<u32>,
    /// When the callee pressed 1, Unix milliseconds.
    pub acknowledged_at_ms: Option<i64>,
}

impl CallFields {
    /// Whether the alert of a call that is `status` reached its callee: acknowledged, or (when
    /// no acknowledgement is asked for) answered.
    fn is_done(&self, status: CallStatus) -> bool {
        self.acknowledged_at_ms.is_some()
            || (!self.require_ack
                && matches!(status, CallStatus::InProgress | CallStatus::Completed))
    }
}

impl Own<CallStatus> for CallFields {
    fn match_token<'a>(&'a self, to: &'a Recipient) -> Option<&'a LookupToken> {
        // Twilio shows nothing of what a call says: calls match on their callee alone.
        Some(&to.token)
    }
    fn is_open(&self, status: CallStatus) -> bool {
        !status.is_terminal() && !self.is_done(status)
    }
}

/// A report about one attempt of a call (a status callback, or Twilio's answer to the create).
pub type CallReport = super::attempt::AttemptReport<CallStatus>;

/// A failed or unacknowledged attempt that will be tried again: the same change as a
/// message's.
pub type CallRetry = super::attempt::RetryChange;

impl Call {
    /// Whether the alert reached its callee: acknowledged, or (when no acknowledgement is asked
    /// for) answered. A done call is never called again.
    pub fn is_done(&self) -> bool {
        self.own.is_done(self.status)
    }

    /// Whether an attempt that ended with `status` calls for another attempt (attempts
    /// allowing): not answered, or answered without the acknowledgement the alert asks for.
    pub fn wants_another_attempt(&self, status: CallStatus) -> bool {
        !self.is_done()
            && (status.is_unanswered() || (status == CallStatus::Completed && self.own.require_ack))
    }

    /// Whether `report` would move this record, by attempt and by the transition rule.
    pub fn accepts(&self, report: &CallReport) -> bool {
        self.attempts.attempt == report.attempt
            && self.status.transition(report.status) == Transition::Apply
    }

    /// The record after `report`, or `None` when it does not apply.
    pub fn changed(&self, report: &CallReport) -> Option<Call> {
        if !self.accepts(report) {
            return None;
        }
        let mut c = self.clone();
        // A call's failures are the unanswered ends ([`Record::take_report`]).
        c.take_report(report, report.status.is_unanswered());
        if report.duration_seconds.is_some() {
            c.own.duration_seconds = report.duration_seconds;
        }
        Some(c)
    }

    /// The record after `report` under the retry policy, decided in one step: an attempt that
    /// ended unanswered (or unacknowledged, when asked for) moves to the next attempt, due at
    /// `retry_at_ms`, while `attempt < max_attempts`; anything else is applied by the transition
    /// rule. `None` when the report changes nothing (another attempt, a final record, a late or
    /// backwards report).
    pub fn reported(
        &self,
        report: &CallReport,
        max_attempts: u32,
        retry_at_ms: i64,
    ) -> Option<Call> {
        if !self.accepts(report) {
            return None;
        }
        // An unconfirmed call is old: a late failure is recorded, never tried again.
        if report.status.is_terminal()
            && self.status != CallStatus::Unconfirmed
            && self.wants_another_attempt(report.status)
            && self.attempts.attempt < max_attempts
        {
            let mut retried = self.retried(&CallRetry {
                attempt: report.attempt,
                error_code: report.error_code,
                error_reason: Some(report.error_reason.clone().unwrap_or_else(|| {
                    if report.status == CallStatus::Completed {
                        "answered without acknowledgement".to_owned()
                    } else {
                        format!("call ended {}", report.status)
                    }
                })),
                ambiguous_since_ms: None,
                ambiguous_until_ms: None,
                next_attempt_at_ms: retry_at_ms,
                at_ms: report.at_ms,
            })?;
            if report.duration_seconds.is_some() {
                retried.own.duration_seconds = report.duration_seconds;
            }
            return Some(retried);
        }
        self.changed(report)
    }

    /// The record once the callee acknowledged attempt `attempt` at `at_ms`, or `None` when it
    /// was acknowledged already (the first acknowledgement counts). A record that already moved
    /// on to a next attempt no one has claimed yet goes back to that acknowledged attempt,
    /// `completed`: the next attempt is then never made.
    pub fn acknowledged(&self, attempt: u32, at_ms: i64) -> Option<Call> {
        if self.own.acknowledged_at_ms.is_some() || attempt == 0 || attempt > self.attempts.attempt
        {
            return None;
        }
        let mut c = self.clone();
        c.own.acknowledged_at_ms = Some(at_ms);
        c.attempts.updated_at_ms = at_ms;
        if self.status == CallStatus::Retrying
            && attempt < self.attempts.attempt
            && self.attempts.claimed_until_ms.is_none()
        {
            c.status = CallStatus::Completed;
            c.attempts.attempt = attempt;
            c.error_code = None;
            c.error_reason = None;
            c.attempts.next_attempt_at_ms = None;
            c.attempts.ambiguous_since_ms = None;
            c.attempts.ambiguous_until_ms = None;
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::message::ClaimRefusal;
    use CallStatus::*;

    fn record(status: CallStatus, attempt: u32, require_ack: bool) -> Call {
        let own = CallFields {
            message: Sealed(vec![]),
            speech: Speech {
                voice: "alice".into(),
                language: "en-US".into(),
                loop_count: 1,
            },
            require_ack,
            duration_seconds: None,
            acknowledged_at_ms: None,
        };
        Call::sample(CallId::generate(1), status, attempt, own)
    }

    #[test]
    fn statuses_parse_as_twilio_spells_them_and_only_move_up() {
        assert_eq!(CallStatus::from_twilio("in-progress"), Some(InProgress));
        assert_eq!(CallStatus::from_twilio("no-answer"), Some(NoAnswer));
        assert_eq!(CallStatus::from_twilio("retrying"), None);
        assert_eq!(CallStatus::from_twilio("answered"), None);
        for &a in CallStatus::ALL {
            assert_eq!(a.as_str().parse::<CallStatus>(), Ok(a));
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str(), "{a:?}");
            for &b in CallStatus::ALL {
                let moves = a.transition(b) == Transition::Apply;
                let open = !a.is_terminal() || a == Unconfirmed;
                assert_eq!(moves, open && b.rank() > a.rank(), "{a} -> {b}");
            }
        }
        assert_eq!(Completed.transition(Ringing), Transition::EventOnly);
        assert_eq!(Busy.transition(Completed), Transition::EventOnly);
        assert_eq!(Ringing.transition(Unconfirmed), Transition::Apply);
        assert_eq!(Unconfirmed.transition(Completed), Transition::Apply);
        assert_eq!(Completed.transition(Unconfirmed), Transition::EventOnly);
        assert_eq!(CallStatus::from_twilio("unconfirmed"), None);
    }

    #[test]
    fn a_late_failure_after_unconfirmed_is_recorded_never_retried() {
        let c = record(Unconfirmed, 1, false);
        assert!(c.claimed(1, 10, 10).is_err());
        let late = c.reported(&CallReport::new(1, Busy, 10), 3, 500).unwrap();
        assert_eq!(
            (
                late.status,
                late.attempts.attempt,
                late.attempts.next_attempt_at_ms
            ),
            (Busy, 1, None)
        );
        let ack = record(Unconfirmed, 1, true);
        let done = ack
            .reported(&CallReport::new(1, Completed, 10), 3, 500)
            .unwrap();
        assert_eq!((done.status, done.attempts.attempt), (Completed, 1));
    }

    #[test]
    fn unanswered_calls_are_retried_until_attempts_run_out() {
        let c = record(Ringing, 1, false);
        let r = c.reported(&CallReport::new(1, Busy, 10), 3, 500).unwrap();
        assert_eq!(
            (r.status, r.attempts.attempt, r.attempts.next_attempt_at_ms),
            (Retrying, 2, Some(500))
        );
        // The last attempt's outcome sticks.
        let last = record(Ringing, 3, false);
        assert_eq!(
            last.reported(&CallReport::new(3, NoAnswer, 10), 3, 500)
                .unwrap()
                .status,
            NoAnswer
        );
        // A report about another attempt changes nothing.
        assert!(
            r.reported(&CallReport::new(1, Completed, 20), 3, 500)
                .is_none()
        );
    }

    #[test]
    fn an_answered_call_is_done_unless_it_must_be_acknowledged() {
        let c = record(InProgress, 1, false);
        let done = c
            .reported(&CallReport::new(1, Completed, 10), 3, 500)
            .unwrap();
        assert_eq!((done.status, done.attempts.attempt), (Completed, 1));
        assert_eq!(done.claimed(1, 20, 10), Err(ClaimRefusal::Stale));

        let ack = record(InProgress, 1, true);
        let again = ack
            .reported(&CallReport::new(1, Completed, 10), 3, 500)
            .unwrap();
        assert_eq!((again.status, again.attempts.attempt), (Retrying, 2));
        assert!(again.claimed(2, 600, 10).is_ok());

        let acked = ack.acknowledged(1, 5).unwrap();
        assert!(
            acked.acknowledged(1, 6).is_none(),
            "the first acknowledgement counts"
        );
        let done = acked
            .reported(&CallReport::new(1, Completed, 10), 3, 500)
            .unwrap();
        assert_eq!(
            (done.status, done.own.acknowledged_at_ms),
            (Completed, Some(5))
        );
    }

    #[test]
    fn a_late_acknowledgement_cancels_the_next_attempt_unless_it_is_under_way() {
        let c = record(InProgress, 1, true)
            .reported(&CallReport::new(1, Completed, 10), 3, 500)
            .unwrap();
        let acked = c.acknowledged(1, 20).unwrap();
        assert_eq!((acked.status, acked.attempts.attempt), (Completed, 1));
        assert_eq!(acked.claimed(2, 600, 10), Err(ClaimRefusal::Stale));

        let held = c.claimed(2, 600, 100).unwrap();
        let acked = held.acknowledged(1, 620).unwrap();
        assert_eq!((acked.status, acked.attempts.attempt), (Retrying, 2));
        assert!(acked.own.acknowledged_at_ms.is_some());
    }

    #[test]
    fn ambiguous_windows_merge_and_an_expired_claim_opens_one() {
        let c = record(Accepted, 1, false).claimed(1, 100, 50).unwrap();
        let taken = c.claimed(1, 160, 50).unwrap();
        assert_eq!(taken.ambiguous_window(50), Some((100, 150)));
        let r = taken
            .retried(&CallRetry {
                attempt: 1,
                error_code: None,
                error_reason: None,
                ambiguous_since_ms: Some(160),
                ambiguous_until_ms: Some(175),
                next_attempt_at_ms: 400,
                at_ms: 175,
            })
            .unwrap();
        assert_eq!(r.ambiguous_window(50), Some((100, 175)));
        let mut report = CallReport::new(2, Queued, 420);
        report.twilio_sid = Some("CA1".into());
        let q = r.changed(&report).unwrap();
        assert_eq!(q.ambiguous_window(50), None);
        // A record stored before the window had an end ends it one lease after its start.
        let mut doc = serde_json::to_value(&r).unwrap();
        doc.as_object_mut().unwrap().remove("ambiguous_until_ms");
        let old: Call = serde_json::from_value(doc).unwrap();
        assert_eq!(old.ambiguous_window(50), Some((100, 150)));
    }

    #[test]
    fn progress_clears_what_was_in_flight_and_records_the_duration() {
        let c = record(Accepted, 1, false).claimed(1, 100, 50).unwrap();
        let mut report = CallReport::new(1, Queued, 120);
        report.twilio_sid = Some("CA1".into());
        let q = c.changed(&report).unwrap();
        assert_eq!(
            (q.attempts.claimed_until_ms, q.twilio_sid.as_deref()),
            (None, Some("CA1"))
        );
        let mut done = CallReport::new(1, Completed, 200);
        done.duration_seconds = Some(17);
        assert_eq!(q.changed(&done).unwrap().own.duration_seconds, Some(17));
    }
}

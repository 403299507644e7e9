//! Herald's domain: messages, calls, their statuses and the rules that move them.

pub mod attempt;
pub mod call;
pub mod event;
pub mod ids;
pub mod message;
pub mod recipient;
pub mod record;
pub mod verification;

pub use attempt::{AttemptReport, Attempted, Attempts, RecordStatus, RetryChange};
pub use call::{Call, CallFields, CallReport, CallRetry, CallStatus, Speech};
pub use event::{Event, EventKind, Subject};
pub use ids::{CallId, InvalidId, MessageId, VerificationId};
pub use message::{ClaimRefusal, Message, MessageFields, MessageStatus, StatusChange, Transition};
pub use recipient::Recipient;
pub use record::{Own, Record};
pub use verification::{Verification, VerificationStatus};

/// Unix milliseconds as RFC 3339 (`2026-11-21T20:05:18.123Z`), as the API shows times; empty
/// for a time out of range.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_milliseconds_in_utc() {
        assert_eq!(
            super::rfc3339(1_800_000_000_123),
            "2027-01-15T08:00:00.123Z"
        );
        assert_eq!(super::rfc3339(i64::MAX), "");
    }
}

//! Herald's domain: messages, calls, their statuses and the rules that move them.

pub mod call;
pub mod event;
pub mod ids;
pub mod message;
pub mod verification;

pub use call::{Call, CallReport, CallRetry, CallStatus, Speech};
pub use event::{Event, EventKind, Subject};
pub use ids::{CallId, InvalidId, MessageId, VerificationId};
pub use message::{ClaimRefusal, Message, MessageStatus, RetryChange, StatusChange, Transition};
pub use verification::{Verification, VerificationStatus};

/// The window `(since, until)` of the ambiguous attempts of a message or call after another
/// one, `new`, ends: the windows merge (the earliest start, the latest end); no ambiguity when
/// `new` has none (its attempt's outcome is known).
pub(crate) fn merged_ambiguity(
    held: (Option<i64>, Option<i64>),
    new: (Option<i64>, Option<i64>),
) -> (Option<i64>, Option<i64>) {
    let since = new.0.map(|t| held.0.map_or(t, |e| e.min(t)));
    (since, since.and(new.1.max(held.1)))
}

/// The window in which an ambiguous earlier attempt may have reached Twilio, `(since, until)`
/// in Unix ms, or `None` when no attempt is ambiguous. A record stored without an end ends its
/// window one attempt lease after it began.
pub(crate) fn ambiguity_window(
    since: Option<i64>,
    until: Option<i64>,
    lease_ms: i64,
) -> Option<(i64, i64)> {
    let since = since?;
    let until = until.unwrap_or_else(|| since.saturating_add(lease_ms));
    Some((since, until.max(since)))
}

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

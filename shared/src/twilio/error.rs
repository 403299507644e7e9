//! Twilio's errors as types: HTTP status, Twilio code, and the retry class from
//! `TWILIO-NOTES.md`. Twilio's own message text is dropped: it can quote the phone number.

use std::time::Duration;

/// What to do about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryClass {
    /// Permanent: never retry (invalid number, opted out, blocked …).
    Never,
    /// Transient: retry with backoff (429, 5xx, timeouts, 20429, 30001).
    Retry,
    /// The sender's queue is full (21611): retry, with a longer delay.
    RetryLater,
    /// Might pass on another try (30003, 30008): retry a few times only.
    RetryFewTimes,
    /// Authentication failed (20003): refresh credentials once, then give up.
    RefreshCredentials,
}

impl RetryClass {
    /// Whether another attempt may succeed.
    pub fn is_retryable(self) -> bool {
        !matches!(self, Self::Never)
    }
}

/// The retry class of a Twilio error code (table in `TWILIO-NOTES.md`); unknown codes are
/// permanent.
pub fn class_of_code(code: u32) -> RetryClass {
    match code {
        20003 => RetryClass::RefreshCredentials,
        20429 | 30001 => RetryClass::Retry,
        21611 => RetryClass::RetryLater,
        30003 | 30008 => RetryClass::RetryFewTimes,
        _ => RetryClass::Never,
    }
}

/// A short, fixed description of a Twilio error code, safe to log and show.
pub fn describe_code(code: u32) -> &'static str {
    match code {
        20003 => "authentication failed",
        20429 => "too many concurrent requests",
        20500 => "internal server error",
        20503 => "service unavailable",
        21211 => "invalid To number",
        21212 => "invalid From number",
        21408 => "no permission to send to that region",
        21606 => "From number cannot send SMS",
        21610 => "recipient opted out",
        21611 => "sender's queue is full",
        21612 => "cannot route to this number",
        21614 => "To is not a mobile number",
        21617 => "body longer than 1600 characters",
        30001 => "queue overflow",
        30003 => "unreachable handset",
        30005 => "unknown destination",
        30006 => "landline or unreachable carrier",
        30007 => "filtered by the carrier",
        30008 => "unknown error",
        30450 => "blocked by SMS pumping protection",
        _ => "Twilio error",
    }
}

/// A failed Twilio request.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// Twilio answered with an error.
    #[error("Twilio answered {status}{}", code.map(|c| format!(" with code {c} ({})", describe_code(c))).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// Twilio's error code, when the body carried one.
        code: Option<u32>,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// No answer within the configured timeout.
    #[error("Twilio request timed out")]
    Timeout,
    /// The connection failed.
    #[error("could not reach Twilio")]
    Connect(#[source] reqwest::Error),
    /// Any other transport failure.
    #[error("Twilio request failed")]
    Transport(#[source] reqwest::Error),
    /// Twilio's answer was not what the API specifies.
    #[error("unexpected answer from Twilio: {0}")]
    Decode(String),
    /// The credentials could not be read.
    #[error("Twilio credentials unavailable: {0}")]
    Credentials(#[from] crate::ports::SecretError),
}

impl TwilioError {
    /// What to do about it.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            Self::Api { status, code, .. } => match code {
                Some(c) if class_of_code(*c) != RetryClass::Never => class_of_code(*c),
                _ if *status == 429 || *status >= 500 => RetryClass::Retry,
                _ if *status == 401 => RetryClass::RefreshCredentials,
                _ => RetryClass::Never,
            },
            Self::Timeout | Self::Connect(_) | Self::Transport(_) | Self::Decode(_) => {
                RetryClass::Retry
            }
            Self::Credentials(crate::ports::SecretError::Transient(_)) => RetryClass::Retry,
            Self::Credentials(_) => RetryClass::Never,
        }
    }

    /// Twilio's error code, if any.
    pub fn code(&self) -> Option<u32> {
        match self {
            Self::Api { code, .. } => *code,
            _ => None,
        }
    }

    /// The `Retry-After` Twilio asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_connect() {
            Self::Connect(e)
        } else {
            Self::Transport(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: Option<u32>) -> TwilioError {
        TwilioError::Api {
            status,
            code,
            retry_after: None,
        }
    }

    #[test]
    fn every_code_in_the_notes_has_its_class() {
        let table = [
            (20003, RetryClass::RefreshCredentials),
            (20429, RetryClass::Retry),
            (21211, RetryClass::Never),
            (21408, RetryClass::Never),
            (21610, RetryClass::Never),
            (21611, RetryClass::RetryLater),
            (21612, RetryClass::Never),
            (21614, RetryClass::Never),
            (21617, RetryClass::Never),
            (30001, RetryClass::Retry),
            (30003, RetryClass::RetryFewTimes),
            (30005, RetryClass::Never),
            (30006, RetryClass::Never),
            (30007, RetryClass::Never),
            (30008, RetryClass::RetryFewTimes),
            (30450, RetryClass::Never),
        ];
        for (code, class) in table {
            assert_eq!(class_of_code(code), class, "{code}");
            assert_eq!(api(400, Some(code)).retry_class(), class, "{code} in a 400");
        }
    }

    #[test]
    fn http_status_decides_when_the_code_does_not() {
        assert_eq!(api(429, None).retry_class(), RetryClass::Retry);
        assert_eq!(api(503, Some(20500)).retry_class(), RetryClass::Retry);
        assert_eq!(api(400, Some(21604)).retry_class(), RetryClass::Never);
        assert_eq!(api(401, None).retry_class(), RetryClass::RefreshCredentials);
        assert_eq!(TwilioError::Timeout.retry_class(), RetryClass::Retry);
    }

    #[test]
    fn display_never_carries_twilio_text() {
        let s = api(400, Some(21211)).to_string();
        assert_eq!(s, "Twilio answered 400 with code 21211 (invalid To number)");
    }
}

//! One-time-code verifications: a code sent by SMS to a number and checked later. The code
//! itself is never stored: only its keyed hash (HMAC under a key from the keyring).

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::crypto::LookupToken;
use crate::domain::{MessageId, VerificationId};

/// Where a verification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    /// The code was sent and waits to be checked.
    Pending,
    /// The right code was given; the verification is done.
    Approved,
    /// Too many wrong codes; no further check can approve it.
    Locked,
}

impl VerificationStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Locked => "locked",
        }
    }
}

/// A verification as Herald stores it: no code, no phone number in plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// `ver_…`.
    pub id: VerificationId,
    /// Who asked for it.
    pub caller: String,
    /// The lookup token of the number the code went to.
    pub to_token: LookupToken,
    /// The number, masked (`+*******2671`).
    pub to_masked: String,
    /// The keyed hash of the code (hex).
    pub code_hash: String,
    /// Where it is.
    pub status: VerificationStatus,
    /// Wrong codes given so far.
    pub failed_checks: u32,
    /// The SMS that carried the code, once recorded.
    pub message_id: Option<MessageId>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Unix milliseconds of the last change.
    pub updated_at_ms: i64,
    /// After this (Unix milliseconds) the code is no longer accepted.
    pub expires_at_ms: i64,
}

/// What a check of a code decided ([`Verification::checked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The code was right: the verification is approved now.
    Approved,
    /// The code was wrong; this many checks are left.
    Wrong {
        /// Checks left before the verification locks.
        left: u32,
    },
    /// The code was wrong and that was the last check allowed: it is locked now.
    LockedNow,
    /// Already locked: nothing was compared.
    Locked,
    /// Expired or already approved: nothing was compared.
    Gone,
}

impl Verification {
    /// Whether the code may still be checked at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// Decides a check of a code whose keyed hash is `given_hash` at `now_ms`: the next version
    /// of the record (`None`: unchanged) and the outcome. The hashes are compared in constant
    /// time. Pure: a store may call it more than once.
    pub fn checked(
        &self,
        given_hash: &str,
        now_ms: i64,
        max_checks: u32,
    ) -> (Option<Verification>, CheckOutcome) {
        match self.status {
            VerificationStatus::Approved => return (None, CheckOutcome::Gone),
            VerificationStatus::Locked => return (None, CheckOutcome::Locked),
            VerificationStatus::Pending if self.is_expired(now_ms) => {
                return (None, CheckOutcome::Gone);
            }
            VerificationStatus::Pending => {}
        }
        let mut next = self.clone();
        next.updated_at_ms = now_ms;
        if bool::from(self.code_hash.as_bytes().ct_eq(given_hash.as_bytes())) {
            next.status = VerificationStatus::Approved;
            return (Some(next), CheckOutcome::Approved);
        }
        next.failed_checks = self.failed_checks.saturating_add(1);
        if next.failed_checks >= max_checks {
            next.status = VerificationStatus::Locked;
            (Some(next), CheckOutcome::LockedNow)
        } else {
            let left = max_checks - next.failed_checks;
            (Some(next), CheckOutcome::Wrong { left })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Verification {
        Verification {
            id: VerificationId::generate(1),
            caller: "c".into(),
            to_token: LookupToken("t".into()),
            to_masked: "+*******0000".into(),
            code_hash: "aa".repeat(32),
            status: VerificationStatus::Pending,
            failed_checks: 0,
            message_id: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            expires_at_ms: 1000,
        }
    }

    #[test]
    fn right_code_approves_wrong_codes_lock() {
        let v = sample();
        let (next, out) = v.checked(&"aa".repeat(32), 10, 5);
        assert_eq!(out, CheckOutcome::Approved);
        assert_eq!(next.unwrap().status, VerificationStatus::Approved);
        let mut v = sample();
        for i in 1..=5 {
            let (next, out) = v.checked(&"bb".repeat(32), 10, 5);
            v = next.unwrap();
            if i < 5 {
                assert_eq!(out, CheckOutcome::Wrong { left: 5 - i });
            } else {
                assert_eq!(out, CheckOutcome::LockedNow);
            }
        }
        assert_eq!(v.checked(&"aa".repeat(32), 10, 5).1, CheckOutcome::Locked);
        assert_eq!(
            sample().checked(&"aa".repeat(32), 1000, 5).1,
            CheckOutcome::Gone
        );
    }
}

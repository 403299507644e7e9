//! Herald's own identifiers: time-ordered, prefixed, and checked when parsed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid Herald identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id")]
pub struct InvalidId {
    /// The kind of id that was expected, such as `message`.
    pub kind: &'static str,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new id ordered by `at_ms` (milliseconds since the Unix epoch).
            pub fn generate(at_ms: u64) -> Self {
                let ulid = ulid::Ulid::from_parts(at_ms, rand::random::<u128>());
                Self(format!("{}{}", $prefix, ulid.to_string().to_ascii_lowercase()))
            }

            /// The id ordered by `at_ms` whose other 80 bits are the low bits of `seed`: the
            /// same inputs give the same id (an id derived from an idempotency key, so that a
            /// retried request finds what the first one recorded). `seed` must be
            /// unpredictable (a keyed hash) for the ids to stay unguessable.
            pub fn derived(at_ms: u64, seed: u128) -> Self {
                let ulid = ulid::Ulid::from_parts(at_ms, seed);
                Self(format!("{}{}", $prefix, ulid.to_string().to_ascii_lowercase()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let rest = s.strip_prefix($prefix).ok_or(InvalidId { kind: $kind })?;
                ulid::Ulid::from_string(rest).map_err(|_| InvalidId { kind: $kind })?;
                Ok(Self(s.to_ascii_lowercase()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// The id of a message Herald accepted, such as `msg_01jc…`.
    MessageId,
    "msg_",
    "message"
);
prefixed_id!(
    /// The id of a voice call Herald accepted, such as `call_01jc…`.
    CallId,
    "call_",
    "call"
);

prefixed_id!(
    /// The id of a one-time-code verification, such as `ver_01jc…`.
    VerificationId,
    "ver_",
    "verification"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_sort_by_time() {
        let a = MessageId::generate(1_700_000_000_000);
        let b = MessageId::generate(1_700_000_000_001);
        assert!(a < b);
        assert_eq!(a.as_str().parse::<MessageId>().unwrap(), a);
        assert!(a.as_str().starts_with("msg_"));
    }

    #[test]
    fn derived_ids_are_stable_valid_and_ordered_by_time() {
        let a = MessageId::derived(1_700_000_000_000, 0xfeed_u128 << 64 | 7);
        assert_eq!(
            a,
            MessageId::derived(1_700_000_000_000, 0xfeed_u128 << 64 | 7)
        );
        assert_ne!(a, MessageId::derived(1_700_000_000_000, 8));
        assert_eq!(a.as_str().parse::<MessageId>().unwrap(), a);
        assert!(a < MessageId::derived(1_700_000_000_001, 0));
        let c = CallId::derived(1_700_000_000_000, u128::MAX);
        assert_eq!(c.as_str().parse::<CallId>().unwrap(), c);
    }

    #[test]
    fn wrong_prefix_or_garbage_is_rejected() {
        assert!(
            "call_01jc0000000000000000000000"
                .parse::<MessageId>()
                .is_err()
        );
        assert!("msg_not-a-ulid".parse::<MessageId>().is_err());
        assert!("".parse::<CallId>().is_err());
    }
}

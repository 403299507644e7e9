//! The configuration of the API's protection, read with the rest of [`crate::Config`].

use std::time::Duration;

use crate::config::{ConfigError, invalid, number};

/// The endpoints that have their own caller rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/messages`.
    Messages,
    /// `POST /v1/messages/batch`.
    Batch,
    /// `POST /v1/calls`.
    Calls,
    /// `POST /v1/verifications`.
    Verifications,
    /// `POST /v1/verifications/{id}/check`.
    VerificationChecks,
    /// Every `GET` of the API (messages, calls, verifications, reports).
    Reads,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 6] = [
        Self::Messages,
        Self::Batch,
        Self::Calls,
        Self::Verifications,
        Self::VerificationChecks,
        Self::Reads,
    ];

    /// A short stable name (counter keys, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::Batch => "batch",
            Self::Calls => "calls",
            Self::Verifications => "verifications",
            Self::VerificationChecks => "verification-checks",
            Self::Reads => "reads",
        }
    }

    /// The variable that overrides [`ProtectionConfig::caller_limit_per_minute`] for it.
    pub fn override_var(self) -> &'static str {
        match self {
            Self::Messages => "CALLER_RATE_LIMIT_MESSAGES_PER_MINUTE",
            Self::Batch => "CALLER_RATE_LIMIT_BATCH_PER_MINUTE",
            Self::Calls => "CALLER_RATE_LIMIT_CALLS_PER_MINUTE",
            Self::Verifications => "CALLER_RATE_LIMIT_VERIFICATIONS_PER_MINUTE",
            Self::VerificationChecks => "CALLER_RATE_LIMIT_VERIFICATION_CHECKS_PER_MINUTE",
            Self::Reads => "CALLER_RATE_LIMIT_READS_PER_MINUTE",
        }
    }
}

/// Rate limits, recipient rules, idempotency and one-time codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionConfig {
    /// `CALLER_RATE_LIMIT_PER_MINUTE` (default 600): requests per caller per endpoint per
    /// minute.
    pub caller_limit_per_minute: u32,
    /// `CALLER_RATE_LIMIT_<ENDPOINT>_PER_MINUTE` ([`Endpoint::override_var`]): per endpoint.
    pub caller_limit_overrides: Vec<(Endpoint, u32)>,
    /// `RECIPIENT_LIMIT_PER_HOUR` (default 10): messages (and calls) to one number per hour.
    pub recipient_limit_per_hour: u32,
    /// `RECIPIENT_LIMIT_PER_DAY` (default 50): messages (and calls) to one number per day.
    pub recipient_limit_per_day: u32,
    /// `ALLOWED_COUNTRIES` (default `US,CA`): ISO 3166-1 alpha-2 codes Herald sends to,
    /// comma-separated; `*` allows every country.
    pub allowed_countries: Option<Vec<String>>,
    /// `COUNTRY_LIMIT_PER_HOUR` (default 1000): messages (and calls) to one country per hour.
    pub country_limit_per_hour: u32,
    /// `IDEMPOTENCY_KEY_TTL_SECS` (default 86400): how long a key is remembered.
    pub idempotency_ttl: Duration,
    /// `OTP_LENGTH` (default 6, 4..=10): digits of a one-time code.
    pub otp_length: u32,
    /// `OTP_TTL_SECS` (default 600): how long a code may be checked.
    pub otp_ttl: Duration,
    /// `OTP_MAX_SENDS` (default 5): codes sent to one number per `OTP_SEND_WINDOW_SECS`.
    pub otp_max_sends: u32,
    /// `OTP_SEND_WINDOW_SECS` (default 600).
    pub otp_send_window: Duration,
    /// `OTP_MAX_CHECKS` (default 5): wrong codes before a verification locks.
    pub otp_max_checks: u32,
}

impl ProtectionConfig {
    /// Reads the variables through `var` (blank values are already `None`).
    pub fn from_lookup(var: &dyn Fn(&'static str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut caller_limit_overrides = Vec::new();
        for e in Endpoint::ALL {
            if let Some(v) = var(e.override_var()) {
                caller_limit_overrides
                    .push((e, number(Some(v), e.override_var(), 0, 0..=10_000_000)?));
            }
        }
        let allowed_countries = match var("ALLOWED_COUNTRIES") {
            None => Some(vec!["US".to_owned(), "CA".to_owned()]),
            Some(v) if v.trim() == "*" => None,
            Some(v) => {
                let mut list = Vec::new();
                for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                    if c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_alphabetic()) {
                        return Err(invalid(
                            "ALLOWED_COUNTRIES",
                            "expected ISO 3166-1 alpha-2 codes separated by commas, or *",
                        ));
                    }
                    list.push(c.to_ascii_uppercase());
                }
                if list.is_empty() {
                    return Err(invalid("ALLOWED_COUNTRIES", "no country given"));
                }
                Some(list)
            }
        };
        let secs = |name: &'static str, default: u32, range: std::ops::RangeInclusive<u32>| {
            number(var(name), name, default, range).map(|s| Duration::from_secs(s.into()))
        };
        Ok(Self {
            caller_limit_per_minute: number(
                var("CALLER_RATE_LIMIT_PER_MINUTE"),
                "CALLER_RATE_LIMIT_PER_MINUTE",
                600,
                1..=10_000_000,
            )?,
            caller_limit_overrides,
            recipient_limit_per_hour: number(
                var("RECIPIENT_LIMIT_PER_HOUR"),
                "RECIPIENT_LIMIT_PER_HOUR",
                10,
                1..=1_000_000,
            )?,
            recipient_limit_per_day: number(
                var("RECIPIENT_LIMIT_PER_DAY"),
                "RECIPIENT_LIMIT_PER_DAY",
                50,
                1..=10_000_000,
            )?,
            allowed_countries,
            country_limit_per_hour: number(
                var("COUNTRY_LIMIT_PER_HOUR"),
                "COUNTRY_LIMIT_PER_HOUR",
                1000,
                1..=100_000_000,
            )?,
            idempotency_ttl: secs("IDEMPOTENCY_KEY_TTL_SECS", 86_400, 60..=7 * 86_400)?,
            otp_length: number(var("OTP_LENGTH"), "OTP_LENGTH", 6, 4..=10)?,
            otp_ttl: secs("OTP_TTL_SECS", 600, 30..=86_400)?,
            otp_max_sends: number(var("OTP_MAX_SENDS"), "OTP_MAX_SENDS", 5, 1..=1000)?,
            otp_send_window: secs("OTP_SEND_WINDOW_SECS", 600, 60..=86_400)?,
            otp_max_checks: number(var("OTP_MAX_CHECKS"), "OTP_MAX_CHECKS", 5, 1..=100)?,
        })
    }

    /// The caller limit per minute of `endpoint`.
    pub fn caller_limit(&self, endpoint: Endpoint) -> u32 {
        self.caller_limit_overrides
            .iter()
            .find(|(e, _)| *e == endpoint)
            .map_or(self.caller_limit_per_minute, |(_, n)| *n)
    }

    /// Whether Herald sends to numbers of `country` (ISO alpha-2; `None`: not a country).
    pub fn country_allowed(&self, country: Option<&str>) -> bool {
        match (&self.allowed_countries, country) {
            (None, _) => true,
            (Some(list), Some(c)) => list.iter().any(|a| a.eq_ignore_ascii_case(c)),
            (Some(_), None) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<ProtectionConfig, ConfigError> {
        ProtectionConfig::from_lookup(&|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_and_overrides() {
        let c = load(&[]).unwrap();
        assert_eq!(c.caller_limit(Endpoint::Messages), 600);
        assert!(c.country_allowed(Some("US")) && c.country_allowed(Some("ca")));
        assert!(!c.country_allowed(Some("GB")) && !c.country_allowed(None));
        assert_eq!(c.otp_length, 6);
        assert_eq!(c.idempotency_ttl, Duration::from_secs(86_400));
        let c = load(&[
            ("CALLER_RATE_LIMIT_CALLS_PER_MINUTE", "5"),
            ("ALLOWED_COUNTRIES", "us, gb,FR"),
        ])
        .unwrap();
        assert_eq!(c.caller_limit(Endpoint::Calls), 5);
        assert_eq!(c.caller_limit(Endpoint::Messages), 600);
        assert!(c.country_allowed(Some("GB")) && c.country_allowed(Some("FR")));
        assert!(
            load(&[("ALLOWED_COUNTRIES", "*")])
                .unwrap()
                .country_allowed(None)
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (name, bad) in [
            ("ALLOWED_COUNTRIES", "USA"),
            ("OTP_LENGTH", "3"),
            ("OTP_LENGTH", "11"),
            ("CALLER_RATE_LIMIT_PER_MINUTE", "0"),
            ("RECIPIENT_LIMIT_PER_HOUR", "x"),
        ] {
            let err = load(&[(name, bad)]).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { name: n, .. } if n == name),
                "{name}: {err}"
            );
        }
    }
}

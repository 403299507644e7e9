//! Configuration from the environment, validated once at start-up. A missing or malformed value
//! is an error that names the variable; no credential ever has a default.

use std::time::Duration;

use crate::twilio::{ClientOptions, Sender, is_sid};

/// A configuration error: which variable, and what is wrong with it (never its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable is set to something unusable.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Everything the handlers need to know, whatever they run on.
#[derive(Debug, Clone)]
pub struct Config {
    /// `TWILIO_ACCOUNT_SID` (`AC…`).
    pub account_sid: String,
    /// `TWILIO_FROM_NUMBER` or `TWILIO_MESSAGING_SERVICE_SID`.
    pub sender: Sender,
    /// `TWILIO_WEBHOOK_BASE_URL`: the public base URL Twilio calls (custom domain, stage path).
    pub webhook_base_url: String,
    /// `TWILIO_API_BASE_URL` (default `https://api.twilio.com`), the simulator's URL locally.
    pub twilio_api_base_url: String,
    /// `TWILIO_REQUEST_TIMEOUT_SECS` (default 10).
    pub request_timeout: Duration,
    /// `TWILIO_CONNECT_TIMEOUT_SECS` (default 3).
    pub connect_timeout: Duration,
    /// `TWILIO_MAX_RETRIES` (default 5): attempts after the first.
    pub max_retries: u32,
    /// `SMS_ENABLED` (default true).
    pub sms_enabled: bool,
    /// `VOICE_ENABLED` (default true).
    pub voice_enabled: bool,
    /// `VOICE_MAX_ATTEMPTS` (default 3, 1..=10): calls placed for one voice alert at most.
    pub voice_max_attempts: u32,
    /// `CREDENTIALS_CACHE_SECS` (default 300): how long the Twilio secret is cached.
    pub credentials_ttl: Duration,
    /// `RETRY_BASE_DELAY_SECS` (default 5): the backoff's first ceiling.
    pub retry_base_delay: Duration,
    /// `RETRY_MAX_DELAY_SECS` (default 3600): the backoff's cap.
    pub retry_max_delay: Duration,
    /// `ATTEMPT_LEASE_SECS` (default 60): how long a sender holds an attempt; after that a
    /// redelivered job may take it over (and first asks Twilio whether it was sent). Must exceed
    /// the Twilio timeouts.
    pub attempt_lease: Duration,
    /// `FINAL_STATE_AFTER_SECS` (default 259200, 72 hours; 3600..=1209600): how long after
    /// Twilio accepted an attempt a record may wait for Twilio's final report. Past it, the
    /// sweeper asks Twilio one last time and otherwise finishes the record `unconfirmed`.
    pub final_state_after: Duration,
    /// `HELP_TEXT` (default [`DEFAULT_HELP_TEXT`]): the answer to an inbound HELP.
    pub help_text: String,
    /// The API's protection: rate limits, recipient rules, idempotency, one-time codes.
    pub protection: crate::protect::ProtectionConfig,
}

/// The variables [`Config::from_env`] cannot do without (the deployment template must set them
/// on every function; `infra/tests` checks it).
pub const REQUIRED_ENV: &[&str] = &["TWILIO_ACCOUNT_SID", "TWILIO_WEBHOOK_BASE_URL"];

/// Groups of variables of which exactly one must be set: the sender.
pub const REQUIRED_ONE_OF_ENV: &[&[&str]] =
    &[&["TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID"]];

/// The answer to an inbound HELP when `HELP_TEXT` is not set.
pub const DEFAULT_HELP_TEXT: &str =
    "Herald alerts. Reply STOP to unsubscribe, START to subscribe again. Msg&data rates may apply.";

impl Config {
    /// Reads and validates the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads and validates the configuration through `get` (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &'static str| get(name).filter(|v| !v.trim().is_empty());
        let required = |name: &'static str| var(name).ok_or(ConfigError::Missing(name));

        let account_sid = required("TWILIO_ACCOUNT_SID")?;
        if !is_sid(&account_sid, "AC") {
            return Err(invalid(
                "TWILIO_ACCOUNT_SID",
                "expected AC followed by 32 hex digits",
            ));
        }
        let sender = match (
            var("TWILIO_FROM_NUMBER"),
            var("TWILIO_MESSAGING_SERVICE_SID"),
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "TWILIO_FROM_NUMBER",
                    "set either TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID, not both",
                ));
            }
            // The form only: Twilio takes the sender in E.164 and checks that it is the
            // account's. Parsing it with the numbering plan's metadata would load that whole
            // database at every cold start (over 100 ms); requests load it when they need it.
            (Some(from), None) if crate::phone::is_e164(&from) => Sender::From(from),
            (Some(_), None) => {
                return Err(invalid(
                    "TWILIO_FROM_NUMBER",
                    "not an E.164 phone number (+ and 7 to 15 digits, no spaces)",
                ));
            }
            (None, Some(mg)) if is_sid(&mg, "MG") => Sender::MessagingService(mg),
            (None, Some(_)) => {
                return Err(invalid(
                    "TWILIO_MESSAGING_SERVICE_SID",
                    "expected MG followed by 32 hex digits",
                ));
            }
            (None, None) => return Err(ConfigError::Missing("TWILIO_FROM_NUMBER")),
        };
        let webhook_base_url = base_url(
            &required("TWILIO_WEBHOOK_BASE_URL")?,
            "TWILIO_WEBHOOK_BASE_URL",
        )?;
        let twilio_api_base_url = base_url(
            &var("TWILIO_API_BASE_URL").unwrap_or_else(|| "https://api.twilio.com".into()),
            "TWILIO_API_BASE_URL",
        )?;
        Ok(Self {
            account_sid,
            sender,
            webhook_base_url,
            twilio_api_base_url,
            request_timeout: secs(
                var("TWILIO_REQUEST_TIMEOUT_SECS"),
                "TWILIO_REQUEST_TIMEOUT_SECS",
                10,
                1..=60,
            )?,
            connect_timeout: secs(
                var("TWILIO_CONNECT_TIMEOUT_SECS"),
                "TWILIO_CONNECT_TIMEOUT_SECS",
                3,
                1..=30,
            )?,
            max_retries: number(var("TWILIO_MAX_RETRIES"), "TWILIO_MAX_RETRIES", 5, 0..=20)?,
            sms_enabled: flag(var("SMS_ENABLED"), "SMS_ENABLED", true)?,
            voice_enabled: flag(var("VOICE_ENABLED"), "VOICE_ENABLED", true)?,
            voice_max_attempts: number(var("VOICE_MAX_ATTEMPTS"), "VOICE_MAX_ATTEMPTS", 3, 1..=10)?,
            credentials_ttl: secs(
                var("CREDENTIALS_CACHE_SECS"),
                "CREDENTIALS_CACHE_SECS",
                300,
                0..=3600,
            )?,
            retry_base_delay: secs(
                var("RETRY_BASE_DELAY_SECS"),
                "RETRY_BASE_DELAY_SECS",
                5,
                1..=3600,
            )?,
            retry_max_delay: secs(
                var("RETRY_MAX_DELAY_SECS"),
                "RETRY_MAX_DELAY_SECS",
                3600,
                1..=86_400,
            )?,
            attempt_lease: secs(var("ATTEMPT_LEASE_SECS"), "ATTEMPT_LEASE_SECS", 60, 5..=900)?,
            final_state_after: secs(
                var("FINAL_STATE_AFTER_SECS"),
                "FINAL_STATE_AFTER_SECS",
                259_200,
                3_600..=1_209_600,
            )?,
            help_text: match var("HELP_TEXT") {
                None => DEFAULT_HELP_TEXT.to_owned(),
                Some(t) if t.chars().count() <= 1600 => t.trim().to_owned(),
                Some(_) => return Err(invalid("HELP_TEXT", "longer than 1600 characters")),
            },
            protection: crate::protect::ProtectionConfig::from_lookup(&var)?,
        })
        .and_then(|c: Self| {
            if c.attempt_lease <= c.request_timeout + c.connect_timeout {
                Err(invalid(
                    "ATTEMPT_LEASE_SECS",
                    "must exceed the Twilio connect and request timeouts",
                ))
            } else {
                Ok(c)
            }
        })
    }

    /// The Twilio client options this configuration describes.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions {
            base_url: self.twilio_api_base_url.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
        }
    }
}

pub(crate) fn invalid(name: &'static str, reason: &'static str) -> ConfigError {
    ConfigError::Invalid { name, reason }
}

fn base_url(v: &str, name: &'static str) -> Result<String, ConfigError> {
    let u = url::Url::parse(v).map_err(|_| invalid(name, "not a URL"))?;
    if !matches!(u.scheme(), "https" | "http") || u.host_str().is_none() {
        return Err(invalid(name, "expected an http(s) URL"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(invalid(name, "must not have a query or fragment"));
    }
    Ok(v.trim_end_matches('/').to_owned())
}

pub(crate) fn number(
    v: Option<String>,
    name: &'static str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let n: u32 = v
        .trim()
        .parse()
        .map_err(|_| invalid(name, "not a whole number"))?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(invalid(name, "out of range"))
    }
}

fn secs(
    v: Option<String>,
    name: &'static str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<Duration, ConfigError> {
    number(v, name, default, range).map(|s| Duration::from_secs(s.into()))
}

fn flag(v: Option<String>, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match v.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(s) if matches!(s.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
        Some(s) if matches!(s.as_str(), "false" | "0" | "no" | "off") => Ok(false),
        Some(_) => Err(invalid(name, "expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            ("TWILIO_ACCOUNT_SID", format!("AC{}", "a".repeat(32))),
            ("TWILIO_FROM_NUMBER", "+15005550006".to_owned()),
            (
                "TWILIO_WEBHOOK_BASE_URL",
                "https://hooks.example.com/prod/".to_owned(),
            ),
        ])
    }

    fn load(m: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn minimal_configuration_has_sane_defaults() {
        let c = load(&base()).unwrap();
        assert_eq!(c.webhook_base_url, "https://hooks.example.com/prod");
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.max_retries, 5);
        assert!(c.sms_enabled && c.voice_enabled);
        assert_eq!(c.voice_max_attempts, 3);
        assert_eq!(c.final_state_after, Duration::from_secs(72 * 3600));
        assert_eq!(c.sender, Sender::From("+15005550006".into()));
    }

    #[test]
    fn each_missing_or_malformed_variable_is_named() {
        for name in [
            "TWILIO_ACCOUNT_SID",
            "TWILIO_WEBHOOK_BASE_URL",
            "TWILIO_FROM_NUMBER",
        ] {
            let mut m = base();
            m.remove(name);
            assert_eq!(load(&m).unwrap_err(), ConfigError::Missing(name));
        }
        for (name, bad) in [
            ("TWILIO_ACCOUNT_SID", "AC123"),
            ("TWILIO_FROM_NUMBER", "not a number"),
            ("TWILIO_FROM_NUMBER", "+1 (415) 555-2671"),
            ("TWILIO_FROM_NUMBER", "14155552671"),
            ("TWILIO_FROM_NUMBER", "+0155552671"),
            ("TWILIO_FROM_NUMBER", "+1234567890123456"),
            ("TWILIO_WEBHOOK_BASE_URL", "ftp://x"),
            ("TWILIO_REQUEST_TIMEOUT_SECS", "ten"),
            ("TWILIO_MAX_RETRIES", "500"),
            ("ATTEMPT_LEASE_SECS", "12"),
            ("SMS_ENABLED", "maybe"),
            ("VOICE_MAX_ATTEMPTS", "0"),
            ("FINAL_STATE_AFTER_SECS", "3599"),
            ("FINAL_STATE_AFTER_SECS", "1209601"),
            ("FINAL_STATE_AFTER_SECS", "three days"),
        ] {
            let mut m = base();
            m.insert(name, bad.into());
            let err = load(&m).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { name: n, .. } if n == name),
                "{name}: {err}"
            );
            assert!(
                !err.to_string().contains(bad) || bad.len() < 4,
                "error must not echo the value"
            );
        }
    }

    #[test]
    fn final_state_after_takes_its_whole_range() {
        for (v, secs) in [("3600", 3600), ("1209600", 1_209_600), (" 86400 ", 86_400)] {
            let mut m = base();
            m.insert("FINAL_STATE_AFTER_SECS", v.into());
            assert_eq!(
                load(&m).unwrap().final_state_after,
                Duration::from_secs(secs)
            );
        }
        let mut m = base();
        m.insert("FINAL_STATE_AFTER_SECS", "60".into());
        assert_eq!(
            load(&m).unwrap_err().to_string(),
            "FINAL_STATE_AFTER_SECS is invalid: out of range"
        );
    }

    #[test]
    fn required_env_lists_exactly_what_start_up_refuses_without() {
        for name in REQUIRED_ENV {
            let mut m = base();
            m.remove(name);
            assert_eq!(load(&m).unwrap_err(), ConfigError::Missing(name));
        }
        let optional: Vec<&str> = base()
            .keys()
            .copied()
            .filter(|k| !REQUIRED_ENV.contains(k))
            .collect();
        assert_eq!(
            optional,
            ["TWILIO_FROM_NUMBER"],
            "the rest is the sender group"
        );
        let group = REQUIRED_ONE_OF_ENV[0];
        let mut m = base();
        m.remove("TWILIO_FROM_NUMBER");
        assert!(load(&m).is_err(), "one of {group:?} is required");
        m.insert(group[1], format!("MG{}", "b".repeat(32)));
        assert!(load(&m).is_ok());
    }

    #[test]
    fn sender_is_a_number_or_a_messaging_service_but_not_both() {
        let mut m = base();
        m.insert(
            "TWILIO_MESSAGING_SERVICE_SID",
            format!("MG{}", "b".repeat(32)),
        );
        assert!(load(&m).is_err());
        m.remove("TWILIO_FROM_NUMBER");
        assert!(matches!(
            load(&m).unwrap().sender,
            Sender::MessagingService(_)
        ));
    }
}

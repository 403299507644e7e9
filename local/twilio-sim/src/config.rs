//! Configuration of a simulator run: credentials, seed, callback timing, faults and outcomes.

use serde::{Deserialize, Serialize};

/// How status callbacks are dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackMode {
    /// Each message's callbacks run in a background task, after `callback_latency_ms` each.
    #[default]
    Immediate,
    /// Callbacks (and the status changes they carry) are held until
    /// [`SimHandle::flush_callbacks`](crate::SimHandle::flush_callbacks).
    Manual,
}

/// Fault injection rates (0.0 to 1.0) and parameters. The default injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Share of REST requests answered `429` with `Retry-After` and Twilio error 20429.
    pub rate_429: f64,
    /// Value of the `Retry-After` header (seconds) on injected 429 responses.
    pub retry_after_secs: u64,
    /// Share of REST requests answered `500` with Twilio error 20500.
    pub rate_500: f64,
    /// Share of REST requests whose response is held for `timeout_ms`.
    pub rate_timeout: f64,
    /// How long a held response is held, in milliseconds.
    pub timeout_ms: u64,
    /// `true`: a held create request creates the message first (the response is lost);
    /// `false`: nothing is created and the held request ends with a 503 (error 20503).
    pub timeout_after_accept: bool,
    /// Share of status callbacks that are sent twice.
    pub rate_duplicate_callback: f64,
    /// Share of messages whose `delivered`/`undelivered` callback is sent before `sent`.
    pub rate_out_of_order: f64,
}

/// What happens to a message after `queued`, chosen per `To` number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// `sent`, then `delivered`.
    #[default]
    Deliver,
    /// `sent`, then `undelivered` with this error code (e.g. 30003).
    Undelivered(u32),
    /// `failed` with this error code (e.g. 30008).
    Failed(u32),
    /// `sent`, and no carrier receipt ever: no further callback, and a fetch says `sent`.
    #[serde(rename = "stays-sent")]
    StaysSent,
}

/// What happens to a call after `queued`, chosen per `To` number.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallOutcome {
    /// Answered; the callee presses these keys at the call's `<Gather>` (its `action` URL gets
    /// `Digits`; a trailing `finishOnKey` character, `#` by default, becomes `FinishedOnKey`).
    AnswerAndPress(String),
    /// Answered; the callee listens and presses nothing.
    #[default]
    AnswerNoInput,
    /// Rings busy: ends `busy`.
    Busy,
    /// Rings out: ends `no-answer`.
    NoAnswer,
    /// Cannot be placed: ends `failed`.
    Failed,
    /// Rings and never ends: initiated → ringing, then no final status and no final callback
    /// (a fetch says `ringing`).
    RingsForever,
}

/// The simulator's time: the wall clock, or a function giving Unix milliseconds (a test's
/// injected clock, so the simulator's timestamps agree with the system under test).
#[derive(Clone, Default)]
pub struct SimClock(Option<std::sync::Arc<dyn Fn() -> i64 + Send + Sync>>);

impl SimClock {
    /// Time from `now_ms` (Unix milliseconds).
    pub fn from_fn(now_ms: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Self(Some(std::sync::Arc::new(now_ms)))
    }

    /// Now, with whole seconds (as Twilio's timestamps have).
    pub fn now(&self) -> time::OffsetDateTime {
        let t = match &self.0 {
            Some(f) => time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(f()) * 1_000_000)
                .unwrap_or_else(|_| time::OffsetDateTime::now_utc()),
            None => time::OffsetDateTime::now_utc(),
        };
        t.replace_nanosecond(0).unwrap_or(t)
    }
}

impl std::fmt::Debug for SimClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "SimClock(injected)"
        } else {
            "SimClock(wall)"
        })
    }
}

/// Everything a simulator instance needs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The account SID (`AC` + 32 hex) served under `/2010-04-01/Accounts/{AccountSid}`.
    pub account_sid: String,
    /// The auth token: signs callbacks and is accepted for HTTP Basic with the account SID.
    pub auth_token: String,
    /// API keys `(SK… sid, secret)` accepted for HTTP Basic.
    pub api_keys: Vec<(String, String)>,
    /// Seed of every random choice (SIDs, faults).
    pub seed: u64,
    /// Delay before each status callback, in milliseconds (0 = as soon as possible).
    pub callback_latency_ms: u64,
    /// Whether callbacks run by themselves or wait for a flush.
    pub callback_mode: CallbackMode,
    /// The longest time between signing a message status callback and posting it (the
    /// network), in milliseconds; each callback gets its own, from 0 to this, so they overtake
    /// each other, and a callback signed just before an auth-token promotion arrives after it.
    pub callback_in_flight_ms: u64,
    /// Faults injected from the start (see [`SimHandle::set_faults`](crate::SimHandle::set_faults)).
    pub faults: Faults,
    /// Send status callbacks (messages and calls) as `application/json` with `bodySHA256` in
    /// the signed URL instead of form posts (default `false`).
    pub json_callbacks: bool,
    /// Time (default: the wall clock).
    pub clock: SimClock,
    /// Where webhooks really go: each `(prefix, local)` sends every status callback, TwiML
    /// fetch and inbound webhook whose URL starts with `prefix` to `local` + the rest of the
    /// URL instead, with the `Host` header of the original URL. The signature is still
    /// computed over the original URL, as Twilio signs the URL it was given (e.g. an API
    /// Gateway URL `https://abc.execute-api.us-east-1.amazonaws.com` played by a local gateway
    /// `http://127.0.0.1:PORT`). The first matching prefix wins; default: none.
    pub deliver_to: Vec<(String, String)>,
}

impl SimConfig {
    /// A configuration with no API keys, seed 0, no latency, immediate form-encoded callbacks
    /// and no faults.
    pub fn new(account_sid: impl Into<String>, auth_token: impl Into<String>) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            api_keys: Vec::new(),
            seed: 0,
            callback_latency_ms: 0,
            callback_mode: CallbackMode::Immediate,
            callback_in_flight_ms: 0,
            faults: Faults::default(),
            json_callbacks: false,
            clock: SimClock::default(),
            deliver_to: Vec::new(),
        }
    }
}

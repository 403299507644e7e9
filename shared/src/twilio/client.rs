//! Twilio's REST client: one pooled reqwest client (rustls) per process, timeouts from config,
//! HTTP Basic with the API key SID and secret, typed answers and typed errors.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::error::TwilioError;
use crate::ports::TwilioCredentials;

pub mod calls;
pub mod keys;

/// Where Twilio is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `https://api.twilio.com` (or the simulator's URL).
    pub base_url: String,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Time for a whole request.
    pub request_timeout: Duration,
}

/// The sender of an SMS: a phone number or a Messaging Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// `From`, an E.164 number or alphanumeric sender id.
    From(String),
    /// `MessagingServiceSid` (`MG…`).
    MessagingService(String),
}

/// What to send.
pub struct NewMessage<'a> {
    /// Recipient in E.164.
    pub to: &'a str,
    /// The sender.
    pub sender: &'a Sender,
    /// The text.
    pub body: &'a str,
    /// Where Twilio posts status callbacks.
    pub status_callback: &'a str,
}

impl std::fmt::Debug for NewMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMessage").finish_non_exhaustive()
    }
}

/// Twilio's Message resource, the fields Herald reads. `Debug` leaves out the number and body.
#[derive(Clone, Deserialize)]
pub struct MessageResource {
    /// `SM…`.
    pub sid: String,
    /// Twilio's status (`queued`, `sent` …).
    pub status: String,
    /// Twilio's error code, when failed.
    pub error_code: Option<u32>,
    /// Segments, as a decimal string.
    pub num_segments: Option<String>,
    /// The recipient (personal data).
    #[serde(default)]
    pub to: Option<String>,
    /// The sender number (`null` under a Messaging Service until Twilio picks one).
    #[serde(default)]
    pub from: Option<String>,
    /// The Messaging Service it was sent through, if any (`MG…`).
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// The text (personal data).
    #[serde(default)]
    pub body: Option<String>,
    /// When Twilio created it, RFC 2822.
    #[serde(default)]
    pub date_created: Option<String>,
}

impl std::fmt::Debug for MessageResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageResource")
            .field("sid", &self.sid)
            .field("status", &self.status)
            .field("messaging_service_sid", &self.messaging_service_sid)
            .field("error_code", &self.error_code)
            .field("date_created", &self.date_created)
            .finish_non_exhaustive()
    }
}

impl MessageResource {
    /// When Twilio created it, Unix milliseconds.
    pub fn created_at_ms(&self) -> Option<i64> {
        rfc2822_ms(self.date_created.as_deref()?)
    }
}

/// A Twilio date (RFC 2822, as in `date_created`) as Unix milliseconds.
pub(crate) fn rfc2822_ms(date: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(date, &time::format_description::well_known::Rfc2822).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// One page of a Twilio list resource: its items (under the resource's plural name) and where
/// the next page is.
#[derive(Deserialize)]
pub(crate) struct ListPage<T> {
    #[serde(alias = "messages", alias = "calls")]
    items: Vec<T>,
    next_page_uri: Option<String>,
}

/// The most resources a list read for reconciling reads: one page of Twilio's largest size.
pub const LIST_MAX: usize = 1000;

/// What a bounded list read found.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    /// The resources read, in Twilio's order (which the API does not promise).
    pub items: Vec<T>,
    /// Whether the bound stopped the read before the last page: a resource may be unread.
    pub truncated: bool,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<u32>,
}

/// The Twilio REST client. Build once per process; clone freely.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: Arc<str>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl Client {
    /// A client with its own connection pool.
    pub fn new(opts: &ClientOptions) -> Result<Self, TwilioError> {
        let http = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(TwilioError::Transport)?;
        Ok(Self {
            http,
            base_url: opts.base_url.trim_end_matches('/').into(),
        })
    }

    fn account_url(&self, creds: &TwilioCredentials, tail: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/{}",
            self.base_url, creds.account_sid, tail
        )
    }

    /// `POST Messages.json`.
    pub async fn create_message(
        &self,
        creds: &TwilioCredentials,
        msg: &NewMessage<'_>,
    ) -> Result<MessageResource, TwilioError> {
        let (sender_key, sender_value) = match msg.sender {
            Sender::From(n) => ("From", n.as_str()),
            Sender::MessagingService(s) => ("MessagingServiceSid", s.as_str()),
        };
        let form = [
            ("To", msg.to),
            (sender_key, sender_value),
            ("Body", msg.body),
            ("StatusCallback", msg.status_callback),
        ];
        let req = self
            .http
            .post(self.account_url(creds, "Messages.json"))
            .basic_auth(&creds.api_key_sid, Some(creds.api_key_secret.expose()))
            .form(&form);
        self.send(req).await
    }

    /// `GET Accounts/{sid}.json`: whether Twilio answers and takes these credentials (the health
    /// check). Returns the account's `status` (`active`, `suspended`, `closed`).
    pub async fn fetch_account_status(
        &self,
        creds: &TwilioCredentials,
    ) -> Result<String, TwilioError> {
        #[derive(Deserialize)]
        struct Account {
            status: String,
        }
        let req = self
            .http
            .get(format!(
                "{}/2010-04-01/Accounts/{}.json",
                self.base_url, creds.account_sid
            ))
            // Standard API keys may not read the Accounts resource; the auth token may.
            .basic_auth(&creds.account_sid, Some(creds.auth_token.expose()));
        let account: Account = self.send(req).await?;
        Ok(account.status)
    }

    /// `GET Messages/{sid}.json`.
    pub async fn fetch_message(
        &self,
        creds: &TwilioCredentials,
        sid: &str,
    ) -> Result<MessageResource, TwilioError> {
        if !is_sid(sid, "SM") && !is_sid(sid, "MM") {
            return Err(TwilioError::Decode("not a message SID".into()));
        }
        let req = self
            .http
            .get(self.account_url(creds, &format!("Messages/{sid}.json")))
            .basic_auth(&creds.api_key_sid, Some(creds.api_key_secret.expose()));
        self.send(req).await
    }

    /// `GET Messages.json?To=…&From=…`: the messages to `to` (from `from`, when given), at most
    /// `max` (pages of up to [`LIST_MAX`] followed). No `DateSent` filter: a message still
    /// queued at Twilio has no `date_sent` yet, and must be found as surely as a sent one.
    pub async fn list_messages(
        &self,
        creds: &TwilioCredentials,
        to: &str,
        from: Option<&str>,
        max: usize,
    ) -> Result<Listing<MessageResource>, TwilioError> {
        let mut filters = vec![("To", to)];
        filters.extend(from.map(|f| ("From", f)));
        self.list(creds, "Messages.json", &filters, max).await
    }

    /// Reads the list resource `tail` with `filters`, page by page, until `max` resources or
    /// the last page.
    pub(crate) async fn list<T: serde::de::DeserializeOwned>(
        &self,
        creds: &TwilioCredentials,
        tail: &str,
        filters: &[(&str, &str)],
        max: usize,
    ) -> Result<Listing<T>, TwilioError> {
        let max = max.max(1);
        let page_size = max.min(LIST_MAX).to_string();
        let mut query: Vec<(&str, &str)> = filters.to_vec();
        query.push(("PageSize", &page_size));
        let first = format!(
            "{}?{}",
            self.account_url(creds, tail),
            serde_urlencoded::to_string(&query).map_err(|e| TwilioError::Decode(e.to_string()))?
        );
        let mut url = Some(first);
        let mut items = Vec::new();
        let mut truncated = false;
        while let Some(u) = url.take() {
            let req = self
                .http
                .get(&u)
                .basic_auth(&creds.api_key_sid, Some(creds.api_key_secret.expose()));
            let page: ListPage<T> = self.send(req).await?;
            items.extend(page.items);
            let next = page
                .next_page_uri
                .filter(|n| n.starts_with('/'))
                .map(|n| format!("{}{n}", self.base_url));
            if items.len() >= max {
                truncated = items.len() > max || next.is_some();
                items.truncate(max);
                break;
            }
            url = next;
        }
        Ok(Listing { items, truncated })
    }

    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, TwilioError> {
        let start = std::time::Instant::now();
        let resp = req.send().await;
        crate::telemetry::metric(
            "TwilioLatency",
            crate::telemetry::elapsed_ms(start),
            "Milliseconds",
            &[],
        );
        let resp = resp.map_err(TwilioError::from_reqwest)?;
        let status = resp.status();
        if status.is_success() {
            return resp.json::<T>().await.map_err(|e| {
                if e.is_timeout() {
                    TwilioError::Timeout
                } else {
                    TwilioError::Decode(e.without_url().to_string())
                }
            });
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let code = resp.json::<ErrorBody>().await.ok().and_then(|b| b.code);
        Err(TwilioError::Api {
            status: status.as_u16(),
            code,
            retry_after,
        })
    }
}

/// Whether `s` is a Twilio SID with this two-letter prefix and 32 hex digits.
pub fn is_sid(s: &str, prefix: &str) -> bool {
    s.len() == 34 && s.starts_with(prefix) && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

//! What the simulator stores and reports: messages, REST requests, callbacks, Twilio errors.

use serde::{Serialize, Serializer};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::webhook::WebhookDelivery;

/// The API version every resource reports.
pub const API_VERSION: &str = "2010-04-01";

/// A message's status, as far as the simulator moves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Initial status under a Messaging Service.
    Accepted,
    /// Initial status with a `From` number.
    Queued,
    /// Handed to the carrier.
    Sent,
    /// Confirmed by the handset.
    Delivered,
    /// The carrier could not deliver it.
    Undelivered,
    /// Twilio could not send it.
    Failed,
}

impl MessageStatus {
    /// Twilio's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
        }
    }

    /// Position in the life cycle; a stored status never moves backwards.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Self::Accepted | Self::Queued => 0,
            Self::Sent => 1,
            Self::Delivered | Self::Undelivered | Self::Failed => 2,
        }
    }
}

impl std::fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Formats a timestamp the way Twilio does (`Thu, 24 Aug 2023 05:01:45 +0000`).
pub fn rfc2822(t: OffsetDateTime) -> String {
    t.format(&Rfc2822)
        .unwrap_or_else(|_| unreachable!("UTC timestamps between years 1900 and 9999 format"))
}

/// Serializes a timestamp as [`rfc2822`] (for `#[serde(serialize_with)]`).
pub(crate) fn ser_time<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc2822(*t))
}

/// Serializes an optional timestamp as [`rfc2822`], or `null`.
pub(crate) fn ser_opt_time<S: Serializer>(
    t: &Option<OffsetDateTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => ser_time(t, s),
        None => s.serialize_none(),
    }
}

/// The path of an account's resource, without `.json`:
/// `/2010-04-01/Accounts/{account_sid}/{collection}/{sid}`.
pub(crate) fn resource_path(account_sid: &str, collection: &str, sid: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account_sid}/{collection}/{sid}")
}

/// A resource the REST API stores (a message, a call, an API key): what fetching one by SID
/// and listing them need alike.
pub(crate) trait Resource {
    /// Its SID (`SM…`, `CA…`, `SK…`).
    fn sid(&self) -> &str;
    /// The JSON Twilio returns for it.
    fn twilio_json(&self) -> Value;
}

/// The resource of `items` with SID `sid`.
pub(crate) fn by_sid<'a, R: Resource>(items: &'a [R], sid: &str) -> Option<&'a R> {
    items.iter().find(|r| r.sid() == sid)
}

/// What the simulator keeps of every resource created through the REST API (a message, a
/// call), beside the resource's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceMeta {
    /// Creation order among the resources of its kind, from 0.
    pub index: usize,
    /// Who created it: the account SID or the API key SID used.
    pub principal: String,
    /// Creation time.
    #[serde(serialize_with = "ser_time")]
    pub date_created: OffsetDateTime,
    /// Last change.
    #[serde(serialize_with = "ser_time")]
    pub date_updated: OffsetDateTime,
}

impl ResourceMeta {
    /// The resource at `index` that `principal` created at `now`.
    pub(crate) fn new(index: usize, principal: &Option<String>, now: OffsetDateTime) -> Self {
        Self {
            index,
            principal: principal.clone().unwrap_or_default(),
            date_created: now,
            date_updated: now,
        }
    }
}

/// A message created through the REST API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimMessage {
    /// `SM` + 32 lowercase hex.
    pub sid: String,
    /// The account it belongs to.
    pub account_sid: String,
    /// Recipient.
    pub to: String,
    /// Sender (`None` under a Messaging Service until a sender is picked at `sent`).
    pub from: Option<String>,
    /// Messaging Service, when the request used one.
    pub messaging_service_sid: Option<String>,
    /// Text.
    pub body: String,
    /// `MediaUrl` values.
    pub media_urls: Vec<String>,
    /// Current status.
    pub status: MessageStatus,
    /// Error code of `undelivered`/`failed`.
    pub error_code: Option<u32>,
    /// Error message of `undelivered`/`failed`.
    pub error_message: Option<String>,
    /// The `StatusCallback` URL as given (fragment included).
    pub status_callback: Option<String>,
    /// Segments (0 under a Messaging Service until `sent`, as Twilio reports).
    pub num_segments: u32,
    /// Its creation order, creator and times.
    #[serde(flatten)]
    pub meta: ResourceMeta,
    /// Send time: `None` while queued, set when the message is sent (or delivered).
    #[serde(serialize_with = "ser_opt_time")]
    pub date_sent: Option<OffsetDateTime>,
}

impl SimMessage {
    /// The resource URI, relative to the API host.
    pub fn uri(&self) -> String {
        format!("{}.json", self.base_path())
    }

    fn base_path(&self) -> String {
        resource_path(&self.account_sid, "Messages", &self.sid)
    }

    /// The JSON Twilio returns for this message (every field of `api.v2010.account.message`).
    pub fn to_twilio_json(&self) -> Value {
        let base = self.base_path();
        json!({
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.meta.date_created),
            "date_sent": self.date_sent.map(rfc2822),
            "date_updated": rfc2822(self.meta.date_updated),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": self.media_urls.len().to_string(),
            "num_segments": self.num_segments.to_string(),
            "price": null,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status.as_str(),
            "subresource_uris": {
                "media": format!("{base}/Media.json"),
                "feedback": format!("{base}/Feedback.json"),
            },
            "to": self.to,
            "uri": self.uri(),
        })
    }
}

impl Resource for SimMessage {
    fn sid(&self) -> &str {
        &self.sid
    }

    fn twilio_json(&self) -> Value {
        self.to_twilio_json()
    }
}

/// One REST request the simulator answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path, without the query string.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Authenticated principal: the account SID or API key SID (`None` if authentication failed).
    pub principal: Option<String>,
    /// HTTP status answered (for a held response: the status it ends with).
    pub status: u16,
    /// Twilio error code of an error answer.
    pub error_code: Option<u32>,
    /// Injected fault: `"429"`, `"500"` or `"timeout"`.
    pub fault: Option<String>,
    /// SID of the message a successful create made.
    pub created_sid: Option<String>,
}

/// One status callback POST (one attempt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallbackRecord {
    /// The message.
    pub message_sid: String,
    /// `MessageStatus` sent.
    pub message_status: MessageStatus,
    /// The POST to the URL the message's `StatusCallback` gave, and its answer.
    #[serde(flatten)]
    pub delivery: WebhookDelivery,
    /// The raw request body: form-encoded, or JSON with
    /// [`SimConfig::json_callbacks`](crate::SimConfig::json_callbacks).
    pub body: String,
    /// Whether this POST is a duplicate injected by `rate_duplicate_callback`.
    pub duplicate: bool,
}

/// A Twilio REST error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioError {
    /// HTTP status.
    pub status: u16,
    /// Twilio error code.
    pub code: u32,
    /// Human-readable message.
    pub message: String,
}

impl TwilioError {
    /// An error.
    pub fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// Twilio's error JSON: `{code, message, more_info, status}`.
    pub fn to_json(&self) -> Value {
        json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status,
        })
    }
}

/// The `error_message` Twilio shows for delivery error codes the simulator is told to use.
pub fn delivery_error_message(code: u32) -> String {
    match code {
        30001 => "Queue overflow",
        30002 => "Account suspended",
        30003 => "Unreachable destination handset",
        30004 => "Message blocked",
        30005 => "Unknown destination handset",
        30006 => "Landline or unreachable carrier",
        30007 => "Carrier violation",
        30008 => "Unknown error",
        30450 => "Message delivery blocked by SMS Pumping Protection",
        _ => "Message delivery failed",
    }
    .to_string()
}

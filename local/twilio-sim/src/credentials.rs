//! Credentials: the account's auth tokens (primary and secondary), API keys, the Account
//! resource, and what HTTP Basic accepts.

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::model::{API_VERSION, Resource, rfc2822, ser_time};

/// An API key (`SK…`) accepted for HTTP Basic until deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimKey {
    /// `SK` + 32 hex.
    pub sid: String,
    /// `FriendlyName` (none for keys given in [`SimConfig`](crate::SimConfig)).
    pub friendly_name: Option<String>,
    /// The secret (Twilio shows it only in the create answer; the simulator keeps it).
    pub secret: String,
    /// Creation time.
    #[serde(serialize_with = "ser_time")]
    pub date_created: OffsetDateTime,
    /// Last change.
    #[serde(serialize_with = "ser_time")]
    pub date_updated: OffsetDateTime,
}

impl SimKey {
    /// The JSON of `api.v2010.account.key` (no secret).
    pub fn to_twilio_json(&self) -> Value {
        json!({
            "sid": self.sid,
            "friendly_name": self.friendly_name,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
        })
    }

    /// The JSON of `api.v2010.account.new_key`: the create answer, with the secret.
    pub fn to_new_key_json(&self) -> Value {
        let mut v = self.to_twilio_json();
        v["secret"] = json!(self.secret);
        v
    }
}

impl Resource for SimKey {
    fn sid(&self) -> &str {
        &self.sid
    }

    fn twilio_json(&self) -> Value {
        self.to_twilio_json()
    }
}

/// Who authenticated a REST request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Principal {
    /// The account SID with the primary auth token.
    Account(String),
    /// An API key SID with its secret.
    Key(String),
}

impl Principal {
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Account(s) | Self::Key(s) => s,
        }
    }
}

/// The account's secrets, behind the simulator's state mutex.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) primary: String,
    pub(crate) secondary: Option<(String, OffsetDateTime)>,
    pub(crate) keys: Vec<SimKey>,
    pub(crate) created: OffsetDateTime,
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Credentials {
    pub(crate) fn new(
        primary: String,
        keys: Vec<(String, String)>,
        created: OffsetDateTime,
    ) -> Self {
        Self {
            primary,
            secondary: None,
            keys: keys
                .into_iter()
                .map(|(sid, secret)| SimKey {
                    sid,
                    friendly_name: None,
                    secret,
                    date_created: created,
                    date_updated: created,
                })
                .collect(),
            created,
        }
    }

    /// HTTP Basic `user:pass`: the account SID with the primary token (not the secondary one),
    /// or a live API key with its secret.
    pub(crate) fn check(&self, account_sid: &str, user: &str, pass: &str) -> Option<Principal> {
        if user == account_sid {
            return ct_eq(pass, &self.primary).then(|| Principal::Account(user.to_string()));
        }
        self.keys
            .iter()
            .any(|k| k.sid == user && ct_eq(pass, &k.secret))
            .then(|| Principal::Key(user.to_string()))
    }
}

/// ISO 8601, as the Accounts v1 API writes dates (`2015-07-31T04:00:00Z`).
pub(crate) fn iso8601(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| unreachable!("UTC timestamps between years 0 and 9999 format"))
}

/// The JSON of `api.v2010.account`.
pub(crate) fn account_json(account_sid: &str, creds: &Credentials) -> Value {
    let base = format!("/{API_VERSION}/Accounts/{account_sid}");
    let names = [
        ("available_phone_numbers", "AvailablePhoneNumbers"),
        ("calls", "Calls"),
        ("conferences", "Conferences"),
        ("incoming_phone_numbers", "IncomingPhoneNumbers"),
        ("notifications", "Notifications"),
        ("outgoing_caller_ids", "OutgoingCallerIds"),
        ("recordings", "Recordings"),
        ("transcriptions", "Transcriptions"),
        ("addresses", "Addresses"),
        ("signing_keys", "SigningKeys"),
        ("connect_apps", "ConnectApps"),
        ("sip", "SIP"),
        ("authorized_connect_apps", "AuthorizedConnectApps"),
        ("usage", "Usage"),
        ("keys", "Keys"),
        ("applications", "Applications"),
        ("short_codes", "SMS/ShortCodes"),
        ("queues", "Queues"),
        ("messages", "Messages"),
        ("balance", "Balance"),
    ];
    let subresources: serde_json::Map<String, Value> = names
        .iter()
        .map(|(k, path)| (k.to_string(), json!(format!("{base}/{path}.json"))))
        .collect();
    json!({
        "auth_token": creds.primary,
        "date_created": rfc2822(creds.created),
        "date_updated": rfc2822(creds.created),
        "friendly_name": "twilio-sim account",
        "owner_account_sid": account_sid,
        "sid": account_sid,
        "status": "active",
        "subresource_uris": subresources,
        "type": "Full",
        "uri": format!("{base}.json"),
    })
}

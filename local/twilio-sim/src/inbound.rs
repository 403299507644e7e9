//! Inbound SMS: the signed webhook Twilio POSTs to a number's messaging URL when a text
//! arrives, and opt-out keywords (STOP, START…) that change what later sends to that number do.

use serde::{Deserialize, Serialize};

use crate::model::API_VERSION;
use crate::segments::num_segments;
use crate::sim::Inner;
use crate::webhook::{self, Encoding, WebhookDelivery};

/// An inbound text to deliver to a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundSms {
    /// The sender (the handset).
    pub from: String,
    /// The Twilio number that received it.
    pub to: String,
    /// Text.
    pub body: String,
    /// The webhook URL (fragment `#rc=N` retries apply; the fragment is not signed).
    pub url: String,
    /// The Messaging Service the receiving number belongs to, if any.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
}

/// One inbound-SMS webhook POST (one attempt) and what the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboundRecord {
    /// `SM` + 32 hex: the inbound message.
    pub message_sid: String,
    /// The form POST to the URL given (fragment included), and its answer.
    #[serde(flatten)]
    pub delivery: WebhookDelivery,
    /// The answer's body (TwiML, e.g. `<Response><Message>…</Message></Response>`).
    pub response_body: Option<String>,
}

/// Opt-out keyword handling of a message body: `Some(true)` opts out, `Some(false)` opts back
/// in, `None` changes nothing. `HELP` and `INFO` are recognised by [`opt_out_type`] only.
pub(crate) fn opt_out_change(body: &str) -> Option<bool> {
    match opt_out_type(body) {
        Some("STOP") => Some(true),
        Some("START") => Some(false),
        _ => None,
    }
}

/// Twilio's `OptOutType` for a whole-message keyword (case-insensitive).
pub(crate) fn opt_out_type(body: &str) -> Option<&'static str> {
    let word = body.trim().to_ascii_uppercase();
    match word.as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "REVOKE" | "OPTOUT" => {
            Some("STOP")
        }
        "START" | "YES" | "UNSTOP" => Some("START"),
        "HELP" | "INFO" => Some("HELP"),
        _ => None,
    }
}

/// ISO 3166 country of an E.164 number, for the few prefixes Herald's tests use.
pub(crate) fn country(number: &str) -> &'static str {
    let d = number.strip_prefix('+').unwrap_or(number);
    const PREFIXES: [(&str, &str); 12] = [
        ("1", "US"),
        ("44", "GB"),
        ("33", "FR"),
        ("49", "DE"),
        ("34", "ES"),
        ("39", "IT"),
        ("31", "NL"),
        ("353", "IE"),
        ("61", "AU"),
        ("64", "NZ"),
        ("81", "JP"),
        ("91", "IN"),
    ];
    PREFIXES
        .iter()
        .filter(|(p, _)| d.starts_with(p))
        .max_by_key(|(p, _)| p.len())
        .map_or("", |(_, c)| c)
}

/// Delivers an inbound SMS: records it, applies opt-out keywords, POSTs the signed webhook
/// (retrying per `#rc=N`), and returns the last attempt.
pub(crate) async fn deliver(inner: &Inner, sms: InboundSms) -> InboundRecord {
    let signed = {
        let mut state = inner.lock();
        let sid = state.new_sid("SM");
        match opt_out_change(&sms.body) {
            Some(true) => {
                state.opted_out.insert(sms.from.clone());
            }
            Some(false) => {
                state.opted_out.remove(&sms.from);
            }
            None => {}
        }
        let mut params: Vec<(String, String)> = vec![
            ("AccountSid".into(), inner.account_sid.clone()),
            ("ApiVersion".into(), API_VERSION.into()),
            ("Body".into(), sms.body.clone()),
            ("From".into(), sms.from.clone()),
            ("FromCountry".into(), country(&sms.from).into()),
            ("MessageSid".into(), sid.clone()),
        ];
        if let Some(ms) = &sms.messaging_service_sid {
            params.push(("MessagingServiceSid".into(), ms.clone()));
        }
        params.extend([
            ("NumMedia".into(), "0".into()),
            ("NumSegments".into(), num_segments(&sms.body).to_string()),
        ]);
        if let Some(kind) = opt_out_type(&sms.body) {
            params.push(("OptOutType".into(), kind.into()));
        }
        params.extend([
            ("SmsMessageSid".into(), sid.clone()),
            ("SmsSid".into(), sid.clone()),
            ("SmsStatus".into(), "received".into()),
            ("To".into(), sms.to.clone()),
            ("ToCountry".into(), country(&sms.to).into()),
        ]);
        (
            sid,
            webhook::prepare(&state.creds.primary, &sms.url, params, Encoding::Form),
        )
    };
    let (sid, signed) = signed;
    let attempts = webhook::deliver(inner, &signed, &sid).await;
    let mut state = inner.lock();
    let mut last = None;
    for (delivery, response_body) in attempts {
        let record = InboundRecord {
            message_sid: sid.clone(),
            delivery,
            response_body,
        };
        state.inbound.push(record.clone());
        last = Some(record);
    }
    last.unwrap_or_else(|| unreachable!("deliver makes at least one attempt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords() {
        assert_eq!(opt_out_change(" stop "), Some(true));
        assert_eq!(opt_out_change("Unsubscribe"), Some(true));
        assert_eq!(opt_out_change("START"), Some(false));
        assert_eq!(opt_out_change("help"), None);
        assert_eq!(opt_out_type("help"), Some("HELP"));
        assert_eq!(opt_out_change("please stop"), None);
    }

    #[test]
    fn countries() {
        assert_eq!(country("+15551230001"), "US");
        assert_eq!(country("+447700900123"), "GB");
        assert_eq!(country("+353851234567"), "IE");
        assert_eq!(country("+99912"), "");
    }
}

//! Twilio's Calls resource: create a call with inline TwiML and call-progress status
//! callbacks, fetch one, and list the calls to a number (to reconcile an ambiguous attempt).

use serde::Deserialize;

use super::{Client, Listing, Sender, is_sid};
use crate::ports::TwilioCredentials;
use crate::twilio::TwilioError;

/// The call-progress events Herald asks Twilio to report, each sent as its own
/// `StatusCallbackEvent` parameter.
pub const CALL_STATUS_EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];

/// Twilio's limit on an inline `Twiml` parameter, in characters.
pub const MAX_TWIML_CHARS: usize = 4000;

/// A call to place.
pub struct NewCall<'a> {
    /// Callee in E.164.
    pub to: &'a str,
    /// Caller ID (`From`): a voice-capable Twilio number.
    pub from: &'a str,
    /// The TwiML document Twilio runs when the callee answers.
    pub twiml: &'a str,
    /// Where Twilio posts the call-progress events.
    pub status_callback: &'a str,
}

impl std::fmt::Debug for NewCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCall").finish_non_exhaustive()
    }
}

impl<'a> NewCall<'a> {
    /// The caller ID for `sender`: the configured number (a Messaging Service cannot place
    /// calls, so it has none).
    pub fn caller_id(sender: &'a Sender) -> Option<&'a str> {
        match sender {
            Sender::From(n) => Some(n),
            Sender::MessagingService(_) => None,
        }
    }

    /// The form parameters of `POST Calls.json`, `StatusCallbackEvent` repeated once per event.
    pub fn form(&self) -> Vec<(&'static str, &'a str)> {
        let mut form = vec![
            ("To", self.to),
            ("From", self.from),
            ("Twiml", self.twiml),
            ("StatusCallback", self.status_callback),
            ("StatusCallbackMethod", "POST"),
        ];
        form.extend(CALL_STATUS_EVENTS.map(|e| ("StatusCallbackEvent", e)));
        form
    }
}

/// Twilio's Call resource, the fields Herald reads. `Debug` leaves out the numbers.
#[derive(Clone, Deserialize)]
pub struct CallResource {
    /// `CA…`.
    pub sid: String,
    /// Twilio's status (`queued`, `ringing`, `in-progress`, `completed` …).
    pub status: String,
    /// The callee (personal data).
    #[serde(default)]
    pub to: Option<String>,
    /// The caller ID it was placed from.
    #[serde(default)]
    pub from: Option<String>,
    /// Talk time in seconds, as a decimal string, once ended.
    #[serde(default)]
    pub duration: Option<String>,
    /// When Twilio created it, RFC 2822.
    #[serde(default)]
    pub date_created: Option<String>,
}

impl std::fmt::Debug for CallResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallResource")
            .field("sid", &self.sid)
            .field("status", &self.status)
            .field("duration", &self.duration)
            .field("date_created", &self.date_created)
            .finish_non_exhaustive()
    }
}

impl CallResource {
    /// When Twilio created it, Unix milliseconds.
    pub fn created_at_ms(&self) -> Option<i64> {
        super::rfc2822_ms(self.date_created.as_deref()?)
    }
}

impl Client {
    /// `POST Calls.json` with inline TwiML and the four call-progress status callbacks.
    pub async fn create_call(
        &self,
        creds: &TwilioCredentials,
        call: &NewCall<'_>,
    ) -> Result<CallResource, TwilioError> {
        let req = self
            .http
            .post(self.account_url(creds, "Calls.json"))
            .basic_auth(&creds.api_key_sid, Some(creds.api_key_secret.expose()))
            .form(&call.form());
        self.send(req).await
    }

    /// `GET Calls/{sid}.json`.
    pub async fn fetch_call(
        &self,
        creds: &TwilioCredentials,
        sid: &str,
    ) -> Result<CallResource, TwilioError> {
        if !is_sid(sid, "CA") {
            return Err(TwilioError::Decode("not a call SID".into()));
        }
        let req = self
            .http
            .get(self.account_url(creds, &format!("Calls/{sid}.json")))
            .basic_auth(&creds.api_key_sid, Some(creds.api_key_secret.expose()));
        self.send(req).await
    }

    /// `GET Calls.json?To=…&From=…`: the calls to `to` from `from`, at most `max` (pages of up
    /// to [`LIST_MAX`](super::LIST_MAX) followed). No `StartTime` filter: a call still queued
    /// has not started.
    pub async fn list_calls(
        &self,
        creds: &TwilioCredentials,
        to: &str,
        from: &str,
        max: usize,
    ) -> Result<Listing<CallResource>, TwilioError> {
        self.list(creds, "Calls.json", &[("To", to), ("From", from)], max)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_event_is_its_own_parameter() {
        let call = NewCall {
            to: "+14155550100",
            from: "+15005550006",
            twiml: "<Response/>",
            status_callback: "https://h.example/webhooks/twilio/call-status?cid=call_x&a=1",
        };
        let form = call.form();
        let events: Vec<&str> = form
            .iter()
            .filter(|(k, _)| *k == "StatusCallbackEvent")
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(events, CALL_STATUS_EVENTS);
        let encoded = serde_urlencoded::to_string(&form).unwrap();
        assert!(encoded.contains("StatusCallbackEvent=initiated&StatusCallbackEvent=ringing"));
        assert!(encoded.contains("cid%3Dcall_x%26a%3D1"));
    }
}

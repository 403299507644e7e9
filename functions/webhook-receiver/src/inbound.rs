//! `POST /webhooks/twilio/inbound-sms`: texts people send to Herald's number.
//!
//! Whole-message keywords, case-insensitive and trimmed, as Twilio's default opt-out handling has
//! them: STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, and since 14 May 2025 REVOKE and OPTOUT
//! (the FCC's rule; `OPT OUT`, with a space, is not one) opt the sender out; START, YES, UNSTOP
//! opt them back in; HELP and INFO are answered with `HELP_TEXT` as TwiML `<Message>`. Opt-outs are kept by the lookup token of the number
//! ([`herald::ports::OptOutStore`]), and `send-sms` refuses opted-out recipients. Any other
//! text is kept as an event of the sender's conversation with the text sealed (the Vault, the
//! event key as associated data) and answered with an empty `<Response/>`.
//!
//! Every request is verified first; a replay (same `MessageSid`, with or without
//! `I-Twilio-Idempotency-Token`) changes nothing and gets the same answer.

use herald::domain::event::EVENT_RETENTION_MS;
use herald::domain::{Event, EventKind, Subject};
use herald::problem::{Problem, ProblemKind};
use herald::service::Services;
use lambda_http::Request;

/// The inbound-SMS route, relative to `TWILIO_WEBHOOK_BASE_URL`.
pub const INBOUND_SMS_PATH: &str = "/webhooks/twilio/inbound-sms";

/// What a whole inbound message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT.
    OptOut,
    /// START, YES, UNSTOP.
    OptIn,
    /// HELP, INFO.
    Help,
}

impl Keyword {
    /// The keyword a whole message is, if any: trimmed, any case; a keyword inside a longer
    /// message does not count.
    pub fn of(body: &str) -> Option<Self> {
        let word = body.trim().to_uppercase();
        match word.as_str() {
            "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "REVOKE"
            | "OPTOUT" => Some(Self::OptOut),
            "START" | "YES" | "UNSTOP" => Some(Self::OptIn),
            "HELP" | "INFO" => Some(Self::Help),
            _ => None,
        }
    }

    fn event_kind(self) -> EventKind {
        match self {
            Self::OptOut => EventKind::OptOut,
            Self::OptIn => EventKind::OptIn,
            Self::Help => EventKind::HelpRequest,
        }
    }
}

/// Escapes text for XML element content and attributes.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all are dropped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// TwiML that answers with one SMS.
pub fn twiml_message(text: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
        xml_escape(text)
    )
}

/// Empty TwiML: no answer.
pub const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

fn twiml(body: String) -> http::Response<String> {
    herald::problem::respond(200, "text/xml", body)
}

fn answer(svc: &Services, keyword: Option<Keyword>) -> http::Response<String> {
    match keyword {
        Some(Keyword::Help) => twiml(twiml_message(&svc.config.help_text)),
        // STOP/START: Twilio's own opt-out handling sends the confirmation.
        _ => twiml(EMPTY_TWIML.to_owned()),
    }
}

fn unavailable(what: &str, e: &dyn std::error::Error) -> http::Response<String> {
    // Twilio retries on a 5xx; every step before is idempotent.
    tracing::error!(error = %e, "{what}");
    Problem::new(ProblemKind::Unavailable).into_response()
}

/// Handles an inbound SMS whose signature has been verified; `params` are its parameters.
pub async fn inbound_sms(
    svc: &Services,
    req: &Request,
    params: &[(String, String)],
) -> http::Response<String> {
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let body = param("Body").unwrap_or("");
    let keyword = Keyword::of(body);
    let sid = param("MessageSid")
        .or_else(|| param("SmsSid"))
        .filter(|s| herald::twilio::is_sid(s, "SM") || herald::twilio::is_sid(s, "MM"));
    let Some(sid) = sid else {
        tracing::warn!("inbound SMS without a usable MessageSid: not recorded");
        return answer(svc, keyword);
    };
    let from = match param("From").map(herald::phone::parse) {
        Some(Ok(p)) => p,
        _ => {
            tracing::warn!(
                twilio_sid = sid,
                "inbound SMS from an unusable number: not recorded"
            );
            return answer(svc, keyword);
        }
    };
    let key = format!("in:{sid}");
    let replay = req.headers().contains_key("i-twilio-idempotency-token");
    match svc.events.get_event(&key).await {
        Ok(Some(_)) => {
            tracing::info!(twilio_sid = sid, replay, "duplicate inbound SMS");
            return answer(svc, keyword);
        }
        Ok(None) => {}
        Err(e) => return unavailable("store unavailable", &e),
    }
    let token = match svc.vault.lookup_token(from.e164()).await {
        Ok(t) => t,
        Err(e) => return unavailable("lookup token unavailable", &e),
    };
    let now = svc.clock.now_ms();
    let mut event = Event {
        key: key.clone(),
        subject: Subject::conversation(&token),
        kind: keyword.map_or(EventKind::InboundMessage, Keyword::event_kind),
        status: Some("received".to_owned()),
        twilio_sid: Some(sid.to_owned()),
        error_code: None,
        attempt: 1,
        applied: false,
        at_ms: now,
        expires_at_ms: now + EVENT_RETENTION_MS,
        country: from.country().map(str::to_owned),
        sealed: None,
    };
    match keyword {
        Some(k @ (Keyword::OptOut | Keyword::OptIn)) => {
            let opted_out = k == Keyword::OptOut;
            match svc.opt_outs.set_opt_out(&token, opted_out, now).await {
                Ok(applied) => event.applied = applied,
                Err(e) => return unavailable("opt-out store unavailable", &e),
            }
            herald::telemetry::metric(
                if opted_out { "OptOut" } else { "OptIn" },
                1.0,
                "Count",
                &[],
            );
            tracing::info!(twilio_sid = sid, opted_out, "opt-out changed");
        }
        Some(Keyword::Help) => {}
        None => match svc.vault.seal(&key, body.as_bytes()).await {
            Ok(sealed) => event.sealed = Some(sealed),
            Err(e) => return unavailable("vault unavailable", &e),
        },
    }
    match svc.events.record_event(&event).await {
        Ok(true) => tracing::info!(
            twilio_sid = sid,
            kind = event.kind.as_str(),
            "inbound SMS recorded"
        ),
        Ok(false) => tracing::info!(twilio_sid = sid, "duplicate inbound SMS"),
        Err(e) => return unavailable("could not record the inbound SMS", &e),
    }
    answer(svc, keyword)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_whole_messages_in_any_case() {
        for (text, k) in [
            ("STOP", Some(Keyword::OptOut)),
            ("  stop\n", Some(Keyword::OptOut)),
            ("StopAll", Some(Keyword::OptOut)),
            ("unsubscribe", Some(Keyword::OptOut)),
            ("Cancel", Some(Keyword::OptOut)),
            ("end", Some(Keyword::OptOut)),
            ("QUIT", Some(Keyword::OptOut)),
            ("revoke", Some(Keyword::OptOut)),
            ("OptOut", Some(Keyword::OptOut)),
            ("OPT OUT", None),
            ("start", Some(Keyword::OptIn)),
            ("Yes ", Some(Keyword::OptIn)),
            ("UNSTOP", Some(Keyword::OptIn)),
            ("help", Some(Keyword::Help)),
            (" Info", Some(Keyword::Help)),
            ("please stop", None),
            ("STOP!", None),
            ("", None),
            ("ACK 42", None),
        ] {
            assert_eq!(Keyword::of(text), k, "{text:?}");
        }
    }

    #[test]
    fn help_text_is_escaped() {
        assert_eq!(
            twiml_message("a<b & \"c\" 'd' >\u{1}"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>a&lt;b &amp; &quot;c&quot; &apos;d&apos; &gt;</Message></Response>"
        );
    }
}

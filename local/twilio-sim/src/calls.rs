//! Voice calls: the Call resource, its progress (initiated, ringing, answered, completed), the
//! signed call-progress status callbacks, and the `<Gather>` answer a scripted callee gives.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::config::CallOutcome;
use crate::model::{API_VERSION, Resource, ResourceMeta, resource_path, rfc2822, ser_opt_time};
use crate::sim::Inner;
use crate::webhook::{self, Encoding, Signed, WebhookDelivery};

/// The call progress events a `StatusCallbackEvent` can ask for.
pub const CALL_EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];

/// A call's status (the Call resource's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    /// Created, not dialled yet (also after the `initiated` event).
    Queued,
    /// Ringing at the callee.
    Ringing,
    /// Answered.
    InProgress,
    /// Answered and hung up.
    Completed,
    /// The callee was busy.
    Busy,
    /// The call could not be placed.
    Failed,
    /// Nobody answered.
    NoAnswer,
    /// Cancelled before it was answered.
    Canceled,
}

impl CallStatus {
    /// Twilio's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::Failed => "failed",
            Self::NoAnswer => "no-answer",
            Self::Canceled => "canceled",
        }
    }
}

impl std::fmt::Display for CallStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call created through the REST API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimCall {
    /// `CA` + 32 lowercase hex.
    pub sid: String,
    /// The account it belongs to.
    pub account_sid: String,
    /// Callee.
    pub to: String,
    /// Caller ID.
    pub from: String,
    /// Current status.
    pub status: CallStatus,
    /// The `Twiml` parameter, if given.
    pub twiml: Option<String>,
    /// The `Url` parameter, if given (its TwiML is fetched when the call is answered).
    pub url: Option<String>,
    /// `Method` for `Url` (`POST` by default).
    pub method: String,
    /// The `StatusCallback` URL as given (fragment included).
    pub status_callback: Option<String>,
    /// The events asked for (`completed` only when `StatusCallbackEvent` was not given).
    pub status_callback_events: Vec<String>,
    /// `StatusCallbackMethod` (`POST` by default).
    pub status_callback_method: String,
    /// The scripted outcome chosen at creation.
    pub outcome: CallOutcome,
    /// The TwiML document the call ran (the `Twiml` parameter, or what `Url` answered).
    pub executed_twiml: Option<String>,
    /// `Digits` sent to the `<Gather>` action.
    pub digits: Option<String>,
    /// What the `<Gather>` action URL answered (TwiML).
    pub gather_response: Option<String>,
    /// Its creation order, creator and times.
    #[serde(flatten)]
    pub meta: ResourceMeta,
    /// When dialling started (the `initiated` event).
    #[serde(serialize_with = "ser_opt_time")]
    pub start_time: Option<OffsetDateTime>,
    /// When the callee answered.
    #[serde(serialize_with = "ser_opt_time")]
    pub answered_at: Option<OffsetDateTime>,
    /// When the call ended.
    #[serde(serialize_with = "ser_opt_time")]
    pub end_time: Option<OffsetDateTime>,
    /// Talk time in seconds, once ended (0 if never answered; at least 1 if answered).
    pub duration: Option<u32>,
    /// Status callbacks sent so far: the next `SequenceNumber`.
    pub sequence: u32,
}

/// `(415) 867-5309` for North American numbers, the number itself otherwise.
fn formatted(number: &str) -> String {
    match number.strip_prefix("+1") {
        Some(d) if d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit()) => {
            format!("({}) {}-{}", &d[..3], &d[3..6], &d[6..])
        }
        _ => number.to_string(),
    }
}

impl SimCall {
    /// The resource URI, relative to the API host.
    pub fn uri(&self) -> String {
        format!("{}.json", self.base_path())
    }

    fn base_path(&self) -> String {
        resource_path(&self.account_sid, "Calls", &self.sid)
    }

    /// The JSON Twilio returns for this call (every field of `api.v2010.account.call`).
    pub fn to_twilio_json(&self) -> Value {
        let base = self.base_path();
        let sub = |name: &str| format!("{base}/{name}.json");
        json!({
            "sid": self.sid,
            "date_created": rfc2822(self.meta.date_created),
            "date_updated": rfc2822(self.meta.date_updated),
            "parent_call_sid": null,
            "account_sid": self.account_sid,
            "to": self.to,
            "to_formatted": formatted(&self.to),
            "from": self.from,
            "from_formatted": formatted(&self.from),
            "phone_number_sid": null,
            "status": self.status.as_str(),
            "start_time": self.start_time.map(rfc2822),
            "end_time": self.end_time.map(rfc2822),
            "duration": self.duration.map(|d| d.to_string()),
            "price": null,
            "price_unit": "USD",
            "direction": "outbound-api",
            "answered_by": null,
            "api_version": API_VERSION,
            "forwarded_from": null,
            "group_sid": null,
            "caller_name": null,
            "queue_time": "0",
            "trunk_sid": null,
            "uri": self.uri(),
            "subresource_uris": {
                "notifications": sub("Notifications"),
                "recordings": sub("Recordings"),
                "payments": sub("Payments"),
                "events": sub("Events"),
                "siprec": sub("Siprec"),
                "streams": sub("Streams"),
                "transcriptions": sub("Transcriptions"),
                "user_defined_message_subscriptions": sub("UserDefinedMessageSubscriptions"),
                "user_defined_messages": sub("UserDefinedMessages"),
            },
        })
    }
}

impl Resource for SimCall {
    fn sid(&self) -> &str {
        &self.sid
    }

    fn twilio_json(&self) -> Value {
        self.to_twilio_json()
    }
}

/// One call status callback POST (one attempt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallCallbackRecord {
    /// The call.
    pub call_sid: String,
    /// The progress event: `initiated`, `ringing`, `answered` or `completed`.
    pub event: String,
    /// `CallStatus` sent (`initiated`, `ringing`, `in-progress`, `completed`, `busy`, …).
    pub call_status: String,
    /// `SequenceNumber` sent (0, 1, 2… per call, over the callbacks actually sent).
    pub sequence_number: u32,
    /// The request to the URL the call's `StatusCallback` gave, and its answer.
    #[serde(flatten)]
    pub delivery: WebhookDelivery,
    /// The raw request body (form or JSON; empty for GET).
    pub body: String,
}

/// What a voice request (a TwiML webhook of a call) was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VoiceRequestKind {
    /// Fetching the call's TwiML from its `Url` when it is answered.
    Twiml,
    /// Submitting `Digits` to a `<Gather>`'s `action` URL.
    Gather,
}

/// One TwiML webhook request of a call and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoiceRequestRecord {
    /// What it was for.
    pub kind: VoiceRequestKind,
    /// The call.
    pub call_sid: String,
    /// `GET` or `POST`.
    pub method: String,
    /// The request to the URL given (the `<Gather action>` after XML unescaping, or the call's
    /// `Url`), and its answer.
    #[serde(flatten)]
    pub delivery: WebhookDelivery,
    /// The answer's body: TwiML.
    pub response_body: Option<String>,
}

/// One step of a call's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallStep {
    Initiated,
    Ringing,
    Answered,
    Press(String),
    Completed(CallStatus),
}

/// The steps of one call, in order.
#[derive(Debug, Clone)]
pub(crate) struct CallJob {
    pub(crate) sid: String,
    pub(crate) steps: Vec<CallStep>,
}

impl CallJob {
    pub(crate) fn plan(sid: &str, outcome: &CallOutcome) -> Self {
        use CallStep::*;
        let steps = match outcome {
            CallOutcome::AnswerAndPress(digits) => vec![
                Initiated,
                Ringing,
                Answered,
                Press(digits.clone()),
                Completed(CallStatus::Completed),
            ],
            CallOutcome::AnswerNoInput => {
                vec![
                    Initiated,
                    Ringing,
                    Answered,
                    Completed(CallStatus::Completed),
                ]
            }
            CallOutcome::Busy => vec![Initiated, Ringing, Completed(CallStatus::Busy)],
            CallOutcome::NoAnswer => vec![Initiated, Ringing, Completed(CallStatus::NoAnswer)],
            CallOutcome::Failed => vec![Initiated, Completed(CallStatus::Failed)],
            CallOutcome::RingsForever => vec![Initiated, Ringing],
        };
        Self {
            sid: sid.to_string(),
            steps,
        }
    }
}

/// Runs a call: for each step, waits `latency_ms`, applies it and sends what it sends.
pub(crate) async fn run_call_job(inner: &Arc<Inner>, job: CallJob, latency_ms: u64) {
    for step in &job.steps {
        if latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(latency_ms)).await;
        }
        run_step(inner, &job.sid, step).await;
    }
}

/// The parameters every voice webhook carries.
fn base_params(call: &SimCall, call_status: &str) -> Vec<(String, String)> {
    vec![
        ("AccountSid".into(), call.account_sid.clone()),
        ("ApiVersion".into(), API_VERSION.into()),
        ("CallSid".into(), call.sid.clone()),
        ("CallStatus".into(), call_status.into()),
        ("Called".into(), call.to.clone()),
        ("Caller".into(), call.from.clone()),
        ("Direction".into(), "outbound-api".into()),
        ("From".into(), call.from.clone()),
        ("To".into(), call.to.clone()),
    ]
}

async fn run_step(inner: &Arc<Inner>, sid: &str, step: &CallStep) {
    match step {
        CallStep::Press(digits) => {
            press(inner, sid, digits).await;
            return;
        }
        CallStep::Answered => {}
        _ => {}
    }
    // Apply the step, then build its status callback (if one was asked for).
    let prepared = {
        let mut state = inner.lock();
        let token = state.creds.primary.clone();
        let json = state.json_callbacks;
        let Some(call) = state.calls.iter_mut().find(|c| c.sid == sid) else {
            return;
        };
        let t = inner.now();
        let (event, call_status) = match step {
            CallStep::Initiated => {
                call.start_time = Some(t);
                ("initiated", "initiated".to_string())
            }
            CallStep::Ringing => {
                call.status = CallStatus::Ringing;
                ("ringing", "ringing".to_string())
            }
            CallStep::Answered => {
                call.status = CallStatus::InProgress;
                call.answered_at = Some(t);
                if call.twiml.is_some() {
                    call.executed_twiml = call.twiml.clone();
                }
                ("answered", "in-progress".to_string())
            }
            CallStep::Completed(status) => {
                call.status = *status;
                call.end_time = Some(t);
                let secs = call.answered_at.map(|a| {
                    let s = (t - a).whole_seconds().max(1);
                    u32::try_from(s).unwrap_or(u32::MAX)
                });
                call.duration = Some(secs.unwrap_or(0));
                ("completed", status.as_str().to_string())
            }
            CallStep::Press(_) => unreachable!("handled above"),
        };
        call.meta.date_updated = t;
        let wanted = call.status_callback_events.iter().any(|e| e == event);
        match (&call.status_callback, wanted) {
            (Some(url), true) => {
                let mut params = base_params(call, &call_status);
                params.push(("CallbackSource".into(), "call-progress-events".into()));
                params.push(("SequenceNumber".into(), call.sequence.to_string()));
                params.push(("Timestamp".into(), rfc2822(t)));
                if let (CallStep::Completed(_), Some(_)) = (step, call.answered_at) {
                    let secs = call.duration.unwrap_or(0);
                    params.push(("CallDuration".into(), secs.to_string()));
                    params.push(("Duration".into(), secs.div_ceil(60).to_string()));
                }
                let sequence = call.sequence;
                call.sequence += 1;
                let encoding = Encoding::for_method(&call.status_callback_method, json);
                let signed = webhook::prepare(&token, url, params, encoding);
                Some((event, call_status, sequence, signed))
            }
            _ => None,
        }
    };
    if let Some((event, call_status, sequence, signed)) = prepared {
        let attempts = webhook::deliver(inner, &signed, &format!("{sid}-{event}")).await;
        let mut state = inner.lock();
        for (delivery, _) in attempts {
            state.call_callbacks.push(CallCallbackRecord {
                call_sid: sid.to_string(),
                event: event.to_string(),
                call_status: call_status.clone(),
                sequence_number: sequence,
                delivery,
                body: signed.body.clone(),
            });
        }
    }
    if matches!(step, CallStep::Answered) {
        fetch_twiml(inner, sid).await;
    }
}

fn record_voice(
    inner: &Inner,
    kind: VoiceRequestKind,
    sid: &str,
    method: &str,
    attempts: Vec<(WebhookDelivery, Option<String>)>,
) -> Option<String> {
    let mut state = inner.lock();
    let mut answer = None;
    for (delivery, response_body) in attempts {
        if delivery.succeeded() {
            answer = response_body.clone();
        }
        state.voice_requests.push(VoiceRequestRecord {
            kind,
            call_sid: sid.to_string(),
            method: method.to_string(),
            delivery,
            response_body,
        });
    }
    answer
}

/// Sends a call's TwiML webhook, records its attempts and keeps the TwiML answered: as the
/// TwiML the call ran (`Url` fetch) or as the `<Gather>` action's answer.
async fn voice_request(
    inner: &Arc<Inner>,
    kind: VoiceRequestKind,
    sid: &str,
    signed: &Signed,
    method: &str,
) {
    let key = match kind {
        VoiceRequestKind::Twiml => format!("{sid}-twiml"),
        VoiceRequestKind::Gather => format!("{sid}-gather"),
    };
    let attempts = webhook::deliver(inner, signed, &key).await;
    let answer = record_voice(inner, kind, sid, method, attempts);
    if let Some(call) = inner.lock().calls.iter_mut().find(|c| c.sid == sid) {
        match kind {
            VoiceRequestKind::Twiml => call.executed_twiml = answer,
            VoiceRequestKind::Gather => call.gather_response = answer,
        }
    }
}

/// A call with a `Url`: fetch its TwiML when answered.
async fn fetch_twiml(inner: &Arc<Inner>, sid: &str) {
    let (signed, method) = {
        let state = inner.lock();
        let token = state.creds.primary.clone();
        let Some(call) = state.calls.iter().find(|c| c.sid == sid) else {
            return;
        };
        let (Some(url), None) = (&call.url, &call.twiml) else {
            return;
        };
        let encoding = Encoding::for_method(&call.method, false);
        let params = base_params(call, "in-progress");
        (
            webhook::prepare(&token, url, params, encoding),
            call.method.clone(),
        )
    };
    voice_request(inner, VoiceRequestKind::Twiml, sid, &signed, &method).await;
}

/// The callee presses `digits`: submitted to the TwiML's `<Gather action>`, if there is one.
async fn press(inner: &Arc<Inner>, sid: &str, digits: &str) {
    let prepared = {
        let mut state = inner.lock();
        let token = state.creds.primary.clone();
        let Some(call) = state.calls.iter_mut().find(|c| c.sid == sid) else {
            return;
        };
        let Some(gather) = call.executed_twiml.as_deref().and_then(find_gather) else {
            return;
        };
        let Some(action) = gather.action.clone() else {
            return;
        };
        let (sent, finished_on) = match digits.strip_suffix(gather.finish_on_key.as_str()) {
            Some(rest) if !gather.finish_on_key.is_empty() => {
                (rest.to_string(), gather.finish_on_key.clone())
            }
            _ => (digits.to_string(), String::new()),
        };
        call.digits = Some(sent.clone());
        let mut params = base_params(call, "in-progress");
        params.push(("Digits".into(), sent));
        params.push(("FinishedOnKey".into(), finished_on));
        let encoding = Encoding::for_method(&gather.method, false);
        (
            webhook::prepare(&token, &action, params, encoding),
            gather.method,
        )
    };
    let (signed, method) = prepared;
    voice_request(inner, VoiceRequestKind::Gather, sid, &signed, &method).await;
}

/// The first `<Gather>` of a TwiML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gather {
    /// `action`, XML-unescaped.
    pub(crate) action: Option<String>,
    /// `method`, upper case (`POST` by default).
    pub(crate) method: String,
    /// `finishOnKey` (`#` by default; may be empty).
    pub(crate) finish_on_key: String,
}

/// Finds the first `<Gather …>` element and reads its attributes.
pub(crate) fn find_gather(twiml: &str) -> Option<Gather> {
    let mut rest = twiml;
    loop {
        let at = rest.find("<Gather")?;
        let after = &rest[at + "<Gather".len()..];
        match after.chars().next() {
            Some(c) if c.is_whitespace() || c == '>' || c == '/' => {
                let attrs = parse_attributes(after);
                let get = |name: &str| {
                    attrs
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                };
                return Some(Gather {
                    action: get("action").filter(|a| !a.is_empty()),
                    method: get("method")
                        .map(|m| m.to_ascii_uppercase())
                        .unwrap_or_else(|| "POST".into()),
                    finish_on_key: get("finishOnKey").unwrap_or_else(|| "#".into()),
                });
            }
            _ => rest = after,
        }
    }
}

/// Attributes of a start tag, from just after its name to its `>`.
fn parse_attributes(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    loop {
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        let Some(&(start, c)) = chars.peek() else {
            return out;
        };
        if c == '>' || c == '/' {
            return out;
        }
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() || c == '>' || c == '/' {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        let name = s[start..end].to_string();
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().map(|(_, c)| *c) != Some('=') {
            if name.is_empty() {
                chars.next();
            }
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        let Some((q_at, quote)) = chars.next() else {
            return out;
        };
        if quote != '"' && quote != '\'' {
            let _ = q_at;
            continue;
        }
        let mut value_end = None;
        let value_start = q_at + 1;
        for (i, c) in chars.by_ref() {
            if c == quote {
                value_end = Some(i);
                break;
            }
        }
        let Some(value_end) = value_end else {
            return out;
        };
        out.push((name, xml_unescape(&s[value_start..value_end])));
    }
}

/// Replaces XML's five named entities and numeric character references.
pub(crate) fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e => {
                let code = if let Some(hex) = e.strip_prefix("#x").or(e.strip_prefix("#X")) {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = e.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
            }
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_gather_action_and_unescapes_it() {
        let twiml = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hi &amp; bye</Say>
            <Gather input="dtmf" numDigits='1' action="https://h.example/ack?a=1&amp;b=x%20y&#38;c=&#x41;" method="POST" timeout="10"><Say>Press 1</Say></Gather></Response>"#;
        let g = find_gather(twiml).unwrap();
        assert_eq!(
            g.action.as_deref(),
            Some("https://h.example/ack?a=1&b=x%20y&c=A")
        );
        assert_eq!(g.method, "POST");
        assert_eq!(g.finish_on_key, "#");
    }

    #[test]
    fn gather_variants() {
        assert_eq!(find_gather("<Response><Say>x</Say></Response>"), None);
        assert_eq!(find_gather("<Response><Gathering/></Response>"), None);
        let g = find_gather("<Response><Gather/></Response>").unwrap();
        assert_eq!(g.action, None);
        let g = find_gather("<Response><Gathering/><Gather\n action = 'u' method=\"get\" finishOnKey=\"\"/></Response>").unwrap();
        assert_eq!(g.action.as_deref(), Some("u"));
        assert_eq!(g.method, "GET");
        assert_eq!(g.finish_on_key, "");
    }

    #[test]
    fn unescape() {
        assert_eq!(xml_unescape("a&lt;b&gt;&quot;&apos;&amp;"), "a<b>\"'&");
        assert_eq!(xml_unescape("&bogus; & &#233;"), "&bogus; & é");
    }

    #[test]
    fn formatting() {
        assert_eq!(formatted("+14158675309"), "(415) 867-5309");
        assert_eq!(formatted("+447700900123"), "+447700900123");
    }
}

//! Voice alerts end to end against the Twilio simulator: `POST /v1/calls` through real API
//! Gateway events, the TwiML Twilio receives, and the simulator's signed call-progress callbacks
//! and `<Gather>` submissions delivered over loopback to the webhook receiver (Manual callback
//! mode: nothing happens until the test flushes), retries through the retry queue with a manual
//! clock.

use std::sync::Arc;

use herald::ports::Queue;
use herald::service::Services;
use herald::test_env::{TestEnv, json_request, read, request, timeline_field};
use serde_json::{Value, json};
use twilio_sim::CallOutcome;

const TO: &str = "+14155550123";

/// A test environment whose webhook base URL is a loopback server that hands every request to
/// the webhook receiver, as API Gateway would.
struct Harness {
    env: TestEnv,
    base: String,
    /// Where the webhook receiver dies in the next `<Gather>` submissions.
    gather_death: Arc<std::sync::Mutex<Option<Death>>>,
}

/// Where a webhook receiver killed in the middle of a `<Gather>` submission died: API Gateway
/// answers 502 either way, and Twilio hears no TwiML.
#[derive(Debug, Clone, Copy)]
enum Death {
    /// Before it read the request: nothing was stored.
    BeforeHandling,
    /// Once it stored what the callee pressed, before it answered.
    BeforeAnswering,
}

fn bad_gateway() -> axum::response::Response {
    let mut resp = axum::response::Response::new(axum::body::Body::empty());
    *resp.status_mut() = axum::http::StatusCode::BAD_GATEWAY;
    resp
}

async fn serve(
    svc: Arc<Services>,
    listener: tokio::net::TcpListener,
    gather_death: Arc<std::sync::Mutex<Option<Death>>>,
) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, Uri};
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let svc = svc.clone();
            let death = uri
                .path()
                .ends_with("/voice-gather")
                .then(|| *gather_death.lock().unwrap())
                .flatten();
            async move {
                if matches!(death, Some(Death::BeforeHandling)) {
                    return bad_gateway();
                }
                let headers: Vec<(String, String)> = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                    .collect();
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                let req = request(method.as_str(), path, &h, &body);
                let resp = webhook_receiver::handle(&svc, req).await.expect("handled");
                if matches!(death, Some(Death::BeforeAnswering)) {
                    return bad_gateway();
                }
                let (parts, body) = resp.into_parts();
                let bytes: Vec<u8> = body.as_ref().to_vec();
                axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
            }
        },
    );
    axum::serve(listener, app).await.expect("serve");
}

impl Harness {
    async fn start(env: &[(&str, &str)]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut vars = vec![("TWILIO_WEBHOOK_BASE_URL", base.as_str())];
        vars.extend_from_slice(env);
        let env = TestEnv::start_with(&vars).await;
        let gather_death = Arc::default();
        tokio::spawn(serve(
            env.services.clone(),
            listener,
            Arc::clone(&gather_death),
        ));
        Self {
            env,
            base,
            gather_death,
        }
    }

    /// Kills the webhook receiver at `death` in every `<Gather>` submission from now on.
    fn kill_gathers(&self, death: Option<Death>) {
        *self.gather_death.lock().unwrap() = death;
    }

    async fn place(&self, body: Value) -> (u16, Value) {
        let resp = place_call::handle(&self.env.services, json_request("POST", "/v1/calls", &body))
            .await
            .unwrap();
        read(&resp)
    }

    async fn view(&self, id: &str) -> Value {
        let resp = place_call::handle(
            &self.env.services,
            request("GET", &format!("/v1/calls/{id}"), &[], b""),
        )
        .await
        .unwrap();
        let (status, v) = read(&resp);
        assert_eq!(status, 200, "{v}");
        v
    }

    /// Runs every call the simulator holds, each callback and gather answered by Herald.
    async fn flush(&self) {
        self.env.sim.flush_callbacks().await;
    }

    /// Moves time past any backoff and hands the retry queue's jobs to the SQS handler.
    async fn run_retries(&self) -> usize {
        self.env.clock.advance(3_700_000);
        let jobs = self.env.retry_queue.receive(10, 60).await.unwrap();
        if jobs.is_empty() {
            return 0;
        }
        let event = herald::sqs::event_for(self.env.retry_queue.name(), &jobs);
        let resp = place_call::handle_sqs(&self.env.services, event)
            .await
            .unwrap();
        assert!(resp.batch_item_failures.is_empty());
        for j in &jobs {
            self.env.retry_queue.delete(&j.receipt).await.unwrap();
        }
        jobs.len()
    }

    /// Runs calls and retries until nothing is left to do.
    async fn settle(&self) {
        loop {
            self.flush().await;
            if self.run_retries().await == 0 {
                self.flush().await;
                return;
            }
        }
    }
}

/// A voice alert to `TO` whose callee presses 1, with the webhook receiver killed at `death`
/// in every `<Gather>` submission; the harness and the alert's id.
async fn pressing_1(death: Option<Death>) -> (Harness, String) {
    let h = Harness::start(&[]).await;
    h.env
        .sim
        .set_call_outcome(TO, CallOutcome::AnswerAndPress("1".into()));
    h.kill_gathers(death);
    let id = alert(&h).await;
    (h, id)
}

/// A voice alert to `TO` that asks for an acknowledgement; its id.
async fn alert(h: &Harness) -> String {
    placed(
        h,
        json!({"to": TO, "message": "Disk full", "require_ack": true}),
    )
    .await
}

async fn placed(h: &Harness, body: Value) -> String {
    let (status, answer) = h.place(body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["status"], "queued");
    answer["id"].as_str().unwrap().to_owned()
}

/// An element: depth, name, attributes, text.
type Element = (usize, String, Vec<(String, String)>, String);

/// Every element of a TwiML document as (depth, name, attributes, text), through a real XML
/// parser: anything malformed fails the test.
fn elements(doc: &str) -> Vec<Element> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(doc);
    let mut out: Vec<Element> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let element = |e: &quick_xml::events::BytesStart<'_>, depth: usize| {
        let attrs = e
            .attributes()
            .map(|a| {
                let a = a.unwrap();
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .unwrap()
                        .into_owned(),
                )
            })
            .collect();
        (
            depth,
            String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
            attrs,
            String::new(),
        )
    };
    loop {
        match reader.read_event().expect("well-formed TwiML") {
            Event::Start(e) => {
                out.push(element(&e, open.len()));
                open.push(out.len() - 1);
            }
            Event::Empty(e) => out.push(element(&e, open.len())),
            Event::End(_) => {
                open.pop();
            }
            Event::Text(t) => {
                let text = t.decode().unwrap().into_owned();
                out[*open.last().unwrap()].3.push_str(&text);
            }
            Event::GeneralRef(r) => {
                let name = r.decode().unwrap().into_owned();
                let ch = quick_xml::escape::unescape(&format!("&{name};"))
                    .unwrap()
                    .into_owned();
                out[*open.last().unwrap()].3.push_str(&ch);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn attr<'a>(e: &'a Element, name: &str) -> &'a str {
    e.2.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{} has no {name}", e.1))
}

#[tokio::test]
async fn invalid_requests_name_the_field_and_record_nothing() {
    let h = Harness::start(&[]).await;
    let long = "x".repeat(3900);
    for (body, status, field) in [
        (json!({"message": "hi"}), 422, "to"),
        (json!({"to": "not a number", "message": "hi"}), 422, "to"),
        (json!({"to": TO}), 422, "message"),
        (
            json!({"to": TO, "message": "hi", "template": "reminder"}),
            422,
            "template",
        ),
        (json!({"to": TO, "template": "nope"}), 422, "template"),
        (
            json!({"to": TO, "template": "reminder", "variables": {"service": "x", "event": "standup"}}),
            422,
            "variables.time",
        ),
        (
            json!({"to": TO, "message": "hi", "variables": {"a": 1}}),
            422,
            "variables",
        ),
        (
            json!({"to": TO, "message": "hi", "voice": "robot"}),
            422,
            "voice",
        ),
        (
            json!({"to": TO, "message": "hi", "voice": "Polly.Nobody"}),
            422,
            "voice",
        ),
        (
            json!({"to": TO, "message": "hi", "language": "xx-XX"}),
            422,
            "language",
        ),
        (
            json!({"to": TO, "message": "hi", "voice": "man", "language": "ja-JP"}),
            422,
            "language",
        ),
        (json!({"to": TO, "message": "hi", "loop": 0}), 422, "loop"),
        (json!({"to": TO, "message": "hi", "loop": "2"}), 422, "loop"),
        (
            json!({"to": TO, "message": "hi", "require_ack": "yes"}),
            422,
            "require_ack",
        ),
        (
            json!({"to": TO, "message": "hi", "colour": "red"}),
            422,
            "colour",
        ),
        (json!({"to": TO, "message": "   "}), 422, "message"),
        (json!({"to": TO, "message": long}), 422, "message"),
        (
            json!({"to": TO, "message": "<&>".repeat(300), "require_ack": true}),
            422,
            "message",
        ),
    ] {
        let (got, problem) = h.place(body.clone()).await;
        assert_eq!(got, status, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}: {problem}");
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:herald:problem:")
        );
    }
    let resp = place_call::handle(
        &h.env.services,
        request(
            "POST",
            "/v1/calls",
            &[("content-type", "application/json")],
            b"{not json",
        ),
    )
    .await
    .unwrap();
    assert_eq!(read(&resp).0, 400);
    assert_eq!(h.env.store.count_calls().await.unwrap(), 0);
    assert_eq!(h.env.store.count_events().await.unwrap(), 0);
    assert!(h.env.sim.calls().is_empty());
    // 3900 characters fit without the gather: the limit is on the TwiML.
    placed(&h, json!({"to": TO, "message": "y".repeat(3800)})).await;
}

#[tokio::test]
async fn voice_off_is_a_503_problem() {
    let h = Harness::start(&[("VOICE_ENABLED", "false")]).await;
    let (status, problem) = h.place(json!({"to": TO, "message": "hi"})).await;
    assert_eq!(status, 503);
    assert_eq!(problem["type"], "urn:herald:problem:feature-disabled");
    assert_eq!(h.env.store.count_calls().await.unwrap(), 0);
    assert!(h.env.sim.calls().is_empty());
}

#[tokio::test]
async fn the_twiml_escapes_every_variable_and_asks_for_the_acknowledgement() {
    let h = Harness::start(&[]).await;
    let summary = r#"db-1 </Say><Dial>+19005550000</Dial><Say> & "quotes" 'too'"#;
    let id = placed(
        &h,
        json!({
            "to": TO,
            "template": "emergency_alert",
            "variables": {"service": "payments & <billing>", "summary": summary},
            "voice": "Polly.Joanna",
            "language": "en-GB",
            "loop": 2,
            "require_ack": true,
        }),
    )
    .await;
    let calls = h.env.sim.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.to, TO);
    assert_eq!(
        call.status_callback.as_deref(),
        Some(format!("{}/webhooks/twilio/call-status?cid={id}&a=1", h.base).as_str())
    );
    assert_eq!(
        call.status_callback_events,
        ["initiated", "ringing", "answered", "completed"]
    );
    let twiml = call.twiml.as_deref().unwrap();
    assert!(twiml.chars().count() <= 4000);
    let els = elements(twiml);
    let shape: Vec<(usize, &str)> = els.iter().map(|e| (e.0, e.1.as_str())).collect();
    assert_eq!(
        shape,
        [
            (0, "Response"),
            (1, "Gather"),
            (2, "Say"),
            (2, "Say"),
            (1, "Say")
        ],
        "{twiml}"
    );
    assert_eq!(attr(&els[1], "numDigits"), "1");
    assert_eq!(
        attr(&els[1], "action"),
        format!("{}/webhooks/twilio/voice-gather?cid={id}&a=1", h.base)
    );
    assert_eq!(attr(&els[2], "voice"), "Polly.Joanna");
    assert_eq!(attr(&els[2], "language"), "en-GB");
    assert_eq!(attr(&els[2], "loop"), "2");
    assert_eq!(
        els[2].3,
        format!(
            "This is an emergency alert from payments & <billing>. {summary}. I repeat: {summary}."
        )
    );
    assert!(els[3].3.contains("Press 1"));

    let view = h.view(&id).await;
    assert_eq!(view["status"], "queued");
    assert_eq!(view["to"], "+*******0123");
    assert_eq!(view["template"], "emergency_alert");
    assert_eq!(view["acknowledgement"]["required"], true);
    assert_eq!(view["acknowledgement"]["acknowledged"], false);
}

#[tokio::test]
async fn a_pressed_1_acknowledges_the_alert_and_ends_it() {
    let (h, id) = pressing_1(None).await;
    h.settle().await;
    let view = h.view(&id).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["attempts"], 1);
    assert_eq!(view["acknowledgement"]["acknowledged"], true);
    assert!(view["acknowledgement"]["at"].as_str().is_some());
    assert!(view["duration_seconds"].as_u64().unwrap() >= 1);
    let kinds = timeline_field(&view, "kind");
    assert!(kinds.contains(&"acknowledged") && kinds.contains(&"status_callback"));
    let statuses = timeline_field(&view, "status");
    for s in [
        "accepted",
        "queued",
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ] {
        assert!(statuses.contains(&s), "{s} missing from {statuses:?}");
    }
    let gathers = h.env.sim.gathers();
    assert_eq!(gathers.len(), 1);
    assert_eq!(gathers[0].delivery.response_status, Some(200));
    let answer = gathers[0].response_body.as_deref().unwrap();
    assert!(answer.contains("Thank you") && answer.contains("<Hangup/>"));
    assert!(
        h.env
            .sim
            .call_callbacks()
            .iter()
            .all(|c| c.delivery.response_status == Some(200))
    );
    assert_eq!(h.env.sim.creates_for_call(TO), 1);
}

#[tokio::test]
async fn an_unacknowledged_alert_is_called_again_until_acknowledged() {
    let h = Harness::start(&[]).await;
    h.env.sim.set_call_outcomes(
        TO,
        vec![
            CallOutcome::AnswerNoInput,
            CallOutcome::AnswerAndPress("1".into()),
        ],
    );
    let id = alert(&h).await;
    h.flush().await;
    let view = h.view(&id).await;
    assert_eq!(
        (view["status"].as_str(), view["attempts"].as_u64()),
        (Some("retrying"), Some(2))
    );
    assert_eq!(h.run_retries().await, 1);
    h.settle().await;
    let view = h.view(&id).await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["attempts"], 2);
    assert_eq!(view["acknowledgement"]["acknowledged"], true);
    // The second call carries its own attempt in its callback and gather URLs.
    let second = &h.env.sim.calls()[1];
    assert!(second.status_callback.as_deref().unwrap().ends_with("&a=2"));
    assert!(second.twiml.as_deref().unwrap().contains("&amp;a=2"));
    assert_eq!(h.env.sim.creates_for_call(TO), 2);
}

/// The receiver killed once it stored the callee's 1, before it answered: the callee heard
/// no thanks, but pressed 1 and Herald kept it, so the alert is acknowledged and never called
/// again. (The soak holds Herald to the same truth: `Ack::Unanswered`.)
#[tokio::test]
async fn a_kept_acknowledgement_whose_answer_was_lost_is_final() {
    let (h, id) = pressing_1(Some(Death::BeforeAnswering)).await;
    h.settle().await;
    let view = h.view(&id).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["attempts"], 1);
    assert_eq!(view["acknowledgement"]["acknowledged"], true);
    let call = &h.env.sim.calls()[0];
    assert_eq!(call.digits.as_deref(), Some("1"));
    assert_eq!(call.gather_response, None, "no TwiML reached Twilio");
    assert!(
        h.env
            .sim
            .gathers()
            .iter()
            .all(|g| g.delivery.response_status == Some(502))
    );
    assert_eq!(h.env.sim.creates_for_call(TO), 1);
}

/// The receiver killed before it read the callee's 1: Herald never learnt of it, so the alert
/// is unacknowledged and called again, and the next 1 ends it.
#[tokio::test]
async fn an_acknowledgement_lost_before_it_was_stored_calls_again() {
    let (h, id) = pressing_1(Some(Death::BeforeHandling)).await;
    h.flush().await;
    let view = h.view(&id).await;
    assert_eq!(
        (view["status"].as_str(), view["attempts"].as_u64()),
        (Some("retrying"), Some(2)),
        "{view}"
    );
    assert_eq!(view["acknowledgement"]["acknowledged"], false);
    h.kill_gathers(None);
    h.settle().await;
    let view = h.view(&id).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["attempts"], 2);
    assert_eq!(view["acknowledgement"]["acknowledged"], true);
    assert_eq!(h.env.sim.creates_for_call(TO), 2);
}

#[tokio::test]
async fn busy_then_answered_is_called_twice_and_never_again() {
    let h = Harness::start(&[]).await;
    h.env
        .sim
        .set_call_outcomes(TO, vec![CallOutcome::Busy, CallOutcome::AnswerNoInput]);
    let id = placed(&h, json!({"to": TO, "message": "Backup failed"})).await;
    h.settle().await;
    let view = h.view(&id).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["attempts"], 2);
    assert_eq!(view["acknowledgement"]["required"], false);
    assert!(view["error_code"].is_null());
    assert_eq!(h.run_retries().await, 0);
    assert_eq!(h.env.sim.creates_for_call(TO), 2);
}

#[tokio::test]
async fn unanswered_calls_stop_after_voice_max_attempts() {
    let h = Harness::start(&[("VOICE_MAX_ATTEMPTS", "2")]).await;
    h.env.sim.set_call_outcome(TO, CallOutcome::NoAnswer);
    let no_answer = placed(&h, json!({"to": TO, "message": "Ping"})).await;
    let failing = "+14155550124";
    h.env.sim.set_call_outcome(failing, CallOutcome::Failed);
    let failed = placed(&h, json!({"to": failing, "message": "Ping"})).await;
    h.settle().await;
    let view = h.view(&no_answer).await;
    assert_eq!(
        (view["status"].as_str(), view["attempts"].as_u64()),
        (Some("no-answer"), Some(2))
    );
    let view = h.view(&failed).await;
    assert_eq!(
        (view["status"].as_str(), view["attempts"].as_u64()),
        (Some("failed"), Some(2))
    );
    assert_eq!(h.env.sim.creates_for_call(TO), 2);
    assert_eq!(h.env.sim.creates_for_call(failing), 2);

    // Completed but never acknowledged: called VOICE_MAX_ATTEMPTS times, then completed.
    let silent = "+14155550125";
    let id = placed(
        &h,
        json!({"to": silent, "message": "Ping", "require_ack": true}),
    )
    .await;
    h.settle().await;
    let view = h.view(&id).await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["attempts"], 2);
    assert_eq!(view["acknowledgement"]["acknowledged"], false);
    assert_eq!(h.env.sim.creates_for_call(silent), 2);
}

#[tokio::test]
async fn another_key_hears_the_prompt_once_more_then_goodbye() {
    let h = Harness::start(&[("VOICE_MAX_ATTEMPTS", "1")]).await;
    h.env
        .sim
        .set_call_outcome(TO, CallOutcome::AnswerAndPress("7".into()));
    let id = alert(&h).await;
    h.flush().await;
    let gather = &h.env.sim.gathers()[0];
    let again = gather.response_body.as_deref().unwrap();
    let els = elements(again);
    let g = els
        .iter()
        .find(|e| e.1 == "Gather")
        .expect("the prompt again");
    let action = attr(g, "action").to_owned();
    assert_eq!(
        action,
        format!("{}/webhooks/twilio/voice-gather?cid={id}&a=1&r=1", h.base)
    );
    assert!(again.contains("Press 1"));

    // The callee presses a wrong key again at the repeated prompt: goodbye.
    let params = vec![
        ("AccountSid".to_owned(), h.env.creds.account_sid.clone()),
        ("CallSid".to_owned(), h.env.sim.calls()[0].sid.clone()),
        ("Digits".to_owned(), "4".to_owned()),
    ];
    let sig = twilio_sim::sign(h.env.creds.auth_token.expose(), &action, &params);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let path = action.strip_prefix(&h.base).unwrap();
    let resp = webhook_receiver::handle(
        &h.env.services,
        request(
            "POST",
            path,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-twilio-signature", &sig),
            ],
            body.as_bytes(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let text = std::str::from_utf8(resp.body().as_ref())
        .unwrap()
        .to_owned();
    assert!(text.contains("Goodbye") && text.contains("<Hangup/>") && !text.contains("Gather"));

    let view = h.view(&id).await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["acknowledgement"]["acknowledged"], false);
}

#[tokio::test]
async fn duplicate_and_forged_callbacks_change_nothing() {
    let h = Harness::start(&[]).await;
    h.env
        .sim
        .set_call_outcome(TO, CallOutcome::AnswerAndPress("1".into()));
    let id = alert(&h).await;
    h.flush().await;
    let before = h.view(&id).await;
    let events = h.env.store.count_events().await.unwrap();
    let send = |cb: &twilio_sim::CallCallbackRecord, sig: &str| {
        let path = cb
            .delivery
            .signed_url
            .strip_prefix(&h.base)
            .unwrap()
            .to_owned();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(cb.delivery.params.iter())
            .finish();
        request(
            "POST",
            &path,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("x-twilio-signature", sig),
            ],
            body.as_bytes(),
        )
    };
    // Every callback again, newest first: duplicates, and out of order.
    for cb in h.env.sim.call_callbacks().iter().rev() {
        let resp = webhook_receiver::handle(&h.env.services, send(cb, &cb.delivery.signature))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(h.env.store.count_events().await.unwrap(), events);
    let after = h.view(&id).await;
    assert_eq!(after["status"], before["status"]);
    assert_eq!(after["attempts"], before["attempts"]);

    // A forged `busy` for this call: refused, nothing changes, no retry.
    let mut forged = h.env.sim.call_callbacks()[0].clone();
    forged.delivery.params = forged
        .delivery
        .params
        .into_iter()
        .map(|(k, v)| {
            if k == "CallStatus" {
                (k, "busy".to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    let resp = webhook_receiver::handle(&h.env.services, send(&forged, &forged.delivery.signature))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = webhook_receiver::handle(&h.env.services, send(&forged, ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(h.env.store.count_events().await.unwrap(), events);
    assert_eq!(h.run_retries().await, 0);
    assert_eq!(h.view(&id).await["status"], "completed");
}

#[tokio::test]
async fn a_number_twilio_refuses_fails_at_once_with_its_code() {
    let h = Harness::start(&[]).await;
    let (status, problem) = h
        .place(json!({"to": "+15005550001", "message": "hi"}))
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "urn:herald:problem:twilio-rejected");
    assert_eq!(problem["twilio_code"], 21217);
    let id = problem["call_id"].as_str().unwrap();
    let view = h.view(id).await;
    assert_eq!(view["status"], "failed");
    assert_eq!(view["error_code"], 21217);
    assert_eq!(view["attempts"], 1);
    assert_eq!(h.run_retries().await, 0);
}

#[tokio::test]
async fn unknown_calls_and_routes_are_404() {
    let h = Harness::start(&[]).await;
    for path in [
        "/v1/calls/call_01jc0000000000000000000000",
        "/v1/calls/nope",
    ] {
        let resp = place_call::handle(&h.env.services, request("GET", path, &[], b""))
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    }
    let resp = place_call::handle(&h.env.services, request("DELETE", "/v1/calls", &[], b""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}

//! The Calls REST API: create, fetch, list, validation and magic numbers, call-progress status
//! callbacks (order, SequenceNumber, signatures), `<Gather>` answers, faults, Manual mode.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use twilio_sim::{CallOutcome, CallStatus, CallbackMode, Faults, VoiceRequestKind, sign};

const CALLEE: &str = "+15551239001";

async fn call(sim: &twilio_sim::SimHandle, to: &str, extra: &[(&str, &str)]) -> String {
    let mut params = vec![("To", to), ("From", FROM)];
    params.extend_from_slice(extra);
    let (status, c) = create_call(sim, &params).await;
    assert_eq!(status, 201, "{c}");
    c["sid"].as_str().unwrap().to_string()
}

const ALL_EVENTS: [(&str, &str); 4] = [
    ("StatusCallbackEvent", "initiated"),
    ("StatusCallbackEvent", "ringing"),
    ("StatusCallbackEvent", "answered"),
    ("StatusCallbackEvent", "completed"),
];

#[tokio::test]
async fn create_returns_a_queued_call_and_fetch_and_list_return_it() {
    let mut c = config();
    c.callback_mode = CallbackMode::Manual;
    let sim = start(c).await;
    let (status, c) = create_call(
        &sim,
        &[
            ("To", CALLEE),
            ("From", FROM),
            ("Twiml", "<Response><Say>Hi</Say></Response>"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{c}");
    let sid = c["sid"].as_str().unwrap().to_string();
    assert!(sid.starts_with("CA") && sid.len() == 34);
    assert!(sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(c["status"], "queued");
    assert_eq!(c["to"], CALLEE);
    assert_eq!(c["to_formatted"], "(555) 123-9001");
    assert_eq!(c["from"], FROM);
    assert_eq!(c["direction"], "outbound-api");
    assert_eq!(c["account_sid"], ACCOUNT);
    assert_eq!(c["api_version"], "2010-04-01");
    assert_eq!(c["duration"], Value::Null);
    assert_eq!(c["start_time"], Value::Null);
    assert_eq!(
        c["uri"],
        format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json")
    );
    assert_eq!(sim.creates_for_call(CALLEE), 1);
    assert_eq!(sim.creates_for(CALLEE), 0);
    assert_eq!(sim.call(&sid).unwrap().status, CallStatus::Queued);

    let (status, fetched) = get_json(&call_url(&sim, &sid)).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, c);
    let (status, body) = get_json(&call_url(&sim, "CA00000000000000000000000000000000")).await;
    assert_twilio_error(status, &body, 404, 20404);

    let second = call(&sim, "+15551239002", &[("Url", "https://example.com/t")]).await;
    let (_, page) = get_json(&calls_url(&sim)).await;
    let sids: Vec<&str> = page["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["sid"].as_str().unwrap())
        .collect();
    assert_eq!(sids, vec![second.as_str(), sid.as_str()], "newest first");
    let (_, page) = get_json(&format!("{}?To=%2B15551239002", calls_url(&sim))).await;
    assert_eq!(page["calls"].as_array().unwrap().len(), 1);
    let (_, page) = get_json(&format!("{}?PageSize=1", calls_url(&sim))).await;
    assert!(
        page["next_page_uri"]
            .as_str()
            .unwrap()
            .contains("PageToken=PA")
    );

    // The call moves on when its (held) progress is flushed.
    assert_eq!(sim.held_callbacks(), 2);
    assert_eq!(sim.flush_callbacks().await, 2);
    let (_, done) = get_json(&call_url(&sim, &sid)).await;
    assert_eq!(done["status"], "completed");
    assert!(done["duration"].as_str().unwrap().parse::<u32>().unwrap() >= 1);
    assert!(done["start_time"].is_string() && done["end_time"].is_string());
    let (_, page) = get_json(&format!("{}?Status=completed", calls_url(&sim))).await;
    assert_eq!(page["calls"].as_array().unwrap().len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn answered_and_pressed_call_reports_every_event_in_order_and_submits_the_gather() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    sim.set_call_outcome(CALLEE, CallOutcome::AnswerAndPress("1".into()));
    let status_url = rx.url("/status?alert=a1&x=a%20b");
    let action = rx.url("/twiml/ack?alert=a1&channel=voice");
    let twiml = gather_twiml(&action);
    assert!(twiml.contains("alert=a1&amp;channel=voice"));
    let mut params = vec![("Twiml", twiml.as_str()), ("StatusCallback", &status_url)];
    params.extend_from_slice(&ALL_EVENTS);
    let sid = call(&sim, CALLEE, &params).await;
    sim.wait_idle().await;

    let got = rx.received();
    let kinds: Vec<String> = got
        .iter()
        .map(|r| {
            if r.path_and_query.starts_with("/twiml") {
                format!("gather:{}", r.param("Digits").unwrap())
            } else {
                format!(
                    "{}#{}",
                    r.param("CallStatus").unwrap(),
                    r.param("SequenceNumber").unwrap()
                )
            }
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "initiated#0",
            "ringing#1",
            "in-progress#2",
            "gather:1",
            "completed#3"
        ]
    );
    for r in &got {
        assert_signed(&rx, r);
        assert_eq!(r.method, "POST");
        assert_eq!(r.param("CallSid"), Some(sid.as_str()));
        assert_eq!(r.param("AccountSid"), Some(ACCOUNT));
        assert_eq!(r.param("From"), Some(FROM));
        assert_eq!(r.param("To"), Some(CALLEE));
        assert_eq!(r.param("Direction"), Some("outbound-api"));
        assert_eq!(r.param("ApiVersion"), Some("2010-04-01"));
    }
    let status_cbs: Vec<_> = got
        .iter()
        .filter(|r| r.path_and_query.starts_with("/status"))
        .collect();
    for r in &status_cbs {
        assert_eq!(r.path_and_query, "/status?alert=a1&x=a%20b");
        assert_eq!(r.param("CallbackSource"), Some("call-progress-events"));
        let ts = r.param("Timestamp").unwrap();
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc2822)
            .expect("RFC 2822 Timestamp");
    }
    for r in &status_cbs[..3] {
        assert_eq!(r.param("CallDuration"), None);
    }
    let completed = status_cbs[3];
    let secs: u32 = completed.param("CallDuration").unwrap().parse().unwrap();
    assert!(secs >= 1);
    assert_eq!(completed.param("Duration"), Some("1"));

    // The Gather submission: its URL unescaped from the TwiML, Digits, and the TwiML answer.
    let gather = got
        .iter()
        .find(|r| r.path_and_query.starts_with("/twiml"))
        .unwrap();
    assert_eq!(gather.path_and_query, "/twiml/ack?alert=a1&channel=voice");
    assert_eq!(gather.param("FinishedOnKey"), Some(""));
    assert_eq!(gather.param("CallStatus"), Some("in-progress"));
    let gathers = sim.gathers();
    assert_eq!(gathers.len(), 1);
    assert_eq!(gathers[0].kind, VoiceRequestKind::Gather);
    assert_eq!(gathers[0].delivery.url, action);
    assert_eq!(gathers[0].delivery.response_status, Some(200));
    assert_eq!(gathers[0].response_body.as_deref(), Some(TWIML_ANSWER));
    assert_eq!(
        gathers[0].delivery.signature,
        sign(TOKEN, &action, &gathers[0].delivery.params)
    );
    assert_eq!(gathers[0].delivery.param("Digits"), Some("1"));

    // Records match what was received; the stored call is completed.
    let records = sim.call_callbacks();
    assert_eq!(
        records
            .iter()
            .map(|r| (r.event.as_str(), r.sequence_number))
            .collect::<Vec<_>>(),
        vec![
            ("initiated", 0),
            ("ringing", 1),
            ("answered", 2),
            ("completed", 3)
        ]
    );
    for (rec, r) in records.iter().zip(&status_cbs) {
        assert_eq!(rec.delivery.signature, r.signature.clone().unwrap());
        assert_eq!(rec.delivery.params, r.params);
        assert_eq!(rec.delivery.response_status, Some(204));
    }
    let stored = sim.call(&sid).unwrap();
    assert_eq!(stored.status, CallStatus::Completed);
    assert_eq!(stored.digits.as_deref(), Some("1"));
    assert_eq!(stored.gather_response.as_deref(), Some(TWIML_ANSWER));
    assert_eq!(sim.calls().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn without_status_callback_event_only_completed_is_sent() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    sim.set_call_outcome("+15551239003", CallOutcome::Busy);
    sim.set_call_outcome("+15551239004", CallOutcome::NoAnswer);
    sim.set_call_outcome("+15551239005", CallOutcome::Failed);
    let twiml = "<Response><Say>x</Say></Response>";
    let mut sids = Vec::new();
    for to in [CALLEE, "+15551239003", "+15551239004", "+15551239005"] {
        let cb = rx.url(&format!("/status/{}", &to[1..]));
        sids.push(call(&sim, to, &[("Twiml", twiml), ("StatusCallback", &cb)]).await);
        sim.wait_idle().await;
    }
    let got = rx.received();
    let statuses: Vec<(&str, &str, Option<&str>)> = got
        .iter()
        .map(|r| {
            (
                r.param("CallStatus").unwrap(),
                r.param("SequenceNumber").unwrap(),
                r.param("CallDuration"),
            )
        })
        .collect();
    assert_eq!(statuses[0].0, "completed");
    assert!(statuses[0].2.is_some(), "answered: CallDuration");
    assert_eq!(
        statuses[1..],
        [
            ("busy", "0", None),
            ("no-answer", "0", None),
            ("failed", "0", None)
        ]
    );
    for r in &got {
        assert_signed(&rx, r);
    }
    let fetched: Vec<String> = {
        let mut v = Vec::new();
        for sid in &sids {
            let (_, c) = get_json(&call_url(&sim, sid)).await;
            v.push(format!("{}:{}", c["status"], c["duration"]));
        }
        v
    };
    assert_eq!(
        fetched[1..],
        [
            "\"busy\":\"0\"".to_string(),
            "\"no-answer\":\"0\"".to_string(),
            "\"failed\":\"0\"".to_string()
        ]
    );
    assert!(sim.gathers().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn only_the_requested_events_are_sent_with_consecutive_sequence_numbers() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    sim.set_call_outcome(CALLEE, CallOutcome::AnswerAndPress("2".into()));
    let cb = rx.url("/status");
    let twiml = gather_twiml(&rx.url("/twiml/g"));
    call(
        &sim,
        CALLEE,
        &[
            ("Twiml", &twiml),
            ("StatusCallback", &cb),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
        ],
    )
    .await;
    sim.set_call_outcome("+15551239003", CallOutcome::Busy);
    call(
        &sim,
        "+15551239003",
        &[
            ("Twiml", &twiml),
            ("StatusCallback", &cb),
            // One space-separated value is accepted too.
            ("StatusCallbackEvent", "initiated answered completed"),
        ],
    )
    .await;
    sim.wait_idle().await;
    let records = sim.call_callbacks();
    let mut seen: Vec<(String, String, u32)> = records
        .iter()
        .map(|r| {
            (
                r.delivery.param("To").unwrap().to_string(),
                r.call_status.clone(),
                r.sequence_number,
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("+15551239001".into(), "completed".into(), 1),
            ("+15551239001".into(), "in-progress".into(), 0),
            ("+15551239003".into(), "busy".into(), 1),
            ("+15551239003".into(), "initiated".into(), 0),
        ]
    );
    // The busy call was never answered: no gather.
    assert_eq!(sim.gathers().len(), 1);
    assert_eq!(sim.gathers()[0].delivery.param("Digits"), Some("2"));
    sim.shutdown().await;
}

#[tokio::test]
async fn finish_on_key_method_get_and_status_callback_method_get() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    sim.set_call_outcome(CALLEE, CallOutcome::AnswerAndPress("12#".into()));
    let action = rx.url("/twiml/get?a=1");
    let twiml = format!(
        "<Response><Gather action='{}' method='GET' finishOnKey='#'/></Response>",
        action.replace('&', "&amp;")
    );
    call(
        &sim,
        CALLEE,
        &[
            ("Twiml", &twiml),
            ("StatusCallback", &rx.url("/status?s=1")),
            ("StatusCallbackMethod", "GET"),
        ],
    )
    .await;
    sim.wait_idle().await;
    let got = rx.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.method, "GET");
        assert_signed(&rx, r);
        assert!(r.raw_body.is_empty());
    }
    assert_eq!(got[0].param("Digits"), Some("12"));
    assert_eq!(got[0].param("FinishedOnKey"), Some("#"));
    assert!(got[0].path_and_query.starts_with("/twiml/get?a=1&"));
    assert_eq!(got[1].param("CallStatus"), Some("completed"));
    assert!(got[1].path_and_query.starts_with("/status?s=1&"));
    sim.shutdown().await;
}

#[tokio::test]
async fn url_calls_fetch_their_twiml_when_answered() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    rx.set_voice_twiml(&gather_twiml(&rx.url("/twiml/ack?x=1&y=2")));
    sim.set_call_outcome(CALLEE, CallOutcome::AnswerAndPress("1".into()));
    let sid = call(&sim, CALLEE, &[("Url", &rx.url("/voice/start?alert=7"))]).await;
    sim.wait_idle().await;
    let reqs = sim.voice_requests();
    assert_eq!(
        reqs.iter().map(|r| r.kind).collect::<Vec<_>>(),
        vec![VoiceRequestKind::Twiml, VoiceRequestKind::Gather]
    );
    assert_eq!(reqs[0].delivery.param("CallStatus"), Some("in-progress"));
    assert_eq!(reqs[1].delivery.url, rx.url("/twiml/ack?x=1&y=2"));
    assert_eq!(reqs[1].response_body.as_deref(), Some(TWIML_ANSWER));
    for r in rx.received() {
        assert_signed(&rx, &r);
    }
    let c = sim.call(&sid).unwrap();
    assert!(c.executed_twiml.unwrap().contains("<Gather"));
    sim.shutdown().await;
}

#[tokio::test]
async fn validation_and_magic_numbers() {
    let sim = start(config()).await;
    let t = "<Response/>";
    let long = format!("<Response><Say>{}</Say></Response>", "a".repeat(4000));
    let exact = format!("<Response><Say>{}</Say></Response>", "a".repeat(4000 - 32));
    assert_eq!(exact.chars().count(), 4000);
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, u64);
    let cases: Vec<Case> = vec![
        (vec![("From", FROM), ("Twiml", t)], 400, 21201),
        (vec![("To", CALLEE), ("Twiml", t)], 400, 21213),
        (vec![("To", CALLEE), ("From", FROM)], 400, 21205),
        (
            vec![("To", CALLEE), ("From", FROM), ("Url", "not a url")],
            400,
            21205,
        ),
        (
            vec![("To", CALLEE), ("From", FROM), ("Twiml", &long)],
            400,
            32018,
        ),
        (
            vec![("To", "+15005550001"), ("From", FROM), ("Twiml", t)],
            400,
            21217,
        ),
        (
            vec![("To", "12345"), ("From", FROM), ("Twiml", t)],
            400,
            21211,
        ),
        (
            vec![("To", CALLEE), ("From", "+15005550001"), ("Twiml", t)],
            400,
            21212,
        ),
        (
            vec![
                ("To", CALLEE),
                ("From", FROM),
                ("Twiml", t),
                ("StatusCallback", "ftp://x"),
            ],
            400,
            21609,
        ),
        (
            vec![
                ("To", CALLEE),
                ("From", FROM),
                ("Twiml", t),
                ("StatusCallbackEvent", "hangup"),
            ],
            400,
            21626,
        ),
    ];
    for (params, status, code) in &cases {
        let (s, body) = create_call(&sim, params).await;
        assert_twilio_error(s, &body, *status, *code);
    }
    assert_eq!(sim.calls().len(), 0);
    let (s, _) = create_call(&sim, &[("To", CALLEE), ("From", FROM), ("Twiml", &exact)]).await;
    assert_eq!(s, 201, "4000 characters are accepted");
    let (s, _) = create_call(
        &sim,
        &[("To", CALLEE), ("From", "+15005550006"), ("Twiml", t)],
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(sim.creates_for_call(CALLEE), 2);

    // Calls are authenticated like messages; API keys work.
    let (s, body) = post_form(
        &calls_url(&sim),
        ACCOUNT,
        "wrong",
        &[("To", CALLEE), ("From", FROM), ("Twiml", t)],
    )
    .await;
    assert_twilio_error(s, &body, 401, 20003);
    let (s, body) = post_form(
        &calls_url(&sim),
        KEY_SID,
        KEY_SECRET,
        &[("To", CALLEE), ("From", FROM), ("Twiml", t)],
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(
        sim.call(body["sid"].as_str().unwrap())
            .unwrap()
            .meta
            .principal,
        KEY_SID
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_apply_to_calls() {
    let mut c = config();
    c.callback_mode = CallbackMode::Manual;
    c.faults = Faults {
        rate_429: 1.0,
        retry_after_secs: 3,
        ..Faults::default()
    };
    let sim = start(c).await;
    let params = [("To", CALLEE), ("From", FROM), ("Twiml", "<Response/>")];
    let (s, body) = create_call(&sim, &params).await;
    assert_twilio_error(s, &body, 429, 20429);
    sim.set_faults(Faults {
        rate_500: 1.0,
        ..Faults::default()
    });
    let (s, body) = create_call(&sim, &params).await;
    assert_twilio_error(s, &body, 500, 20500);
    assert_eq!(sim.creates_for_call(CALLEE), 0);

    // A held create that still creates the call: the answer is lost, the call exists.
    sim.set_faults(Faults {
        rate_timeout: 1.0,
        timeout_ms: 60_000,
        timeout_after_accept: true,
        ..Faults::default()
    });
    let err = client()
        .post(calls_url(&sim))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&params)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("held");
    assert!(err.is_timeout());
    assert_eq!(sim.creates_for_call(CALLEE), 1);
    let faults: Vec<Option<String>> = sim.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        faults,
        vec![
            Some("429".into()),
            Some("500".into()),
            Some("timeout".into())
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn manual_mode_holds_call_progress_until_flush() {
    let rx = Receiver::start().await;
    let mut c = config();
    c.callback_mode = CallbackMode::Manual;
    let sim = start(c).await;
    let sid = call(
        &sim,
        CALLEE,
        &[("Twiml", "<Response/>"), ("StatusCallback", &rx.url("/s"))],
    )
    .await;
    sim.wait_idle().await;
    assert!(rx.received().is_empty());
    assert_eq!(sim.call(&sid).unwrap().status, CallStatus::Queued);
    let r = client()
        .post(format!("{}/_sim/flush", sim.base_url()))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["flushed"], 1);
    assert_eq!(rx.received().len(), 1);
    assert_eq!(sim.call(&sid).unwrap().status, CallStatus::Completed);
    sim.shutdown().await;
}

#[tokio::test]
async fn call_outcomes_and_calls_through_the_inspection_api() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    let base = sim.base_url();
    let r = client()
        .post(format!("{base}/_sim/call-outcomes"))
        .json(&serde_json::json!({"to": CALLEE, "outcome": "answer-and-press", "digits": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client()
        .post(format!("{base}/_sim/call-outcomes"))
        .json(&serde_json::json!({"to": CALLEE, "outcome": "hang-up"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let twiml = gather_twiml(&rx.url("/twiml/a"));
    call(
        &sim,
        CALLEE,
        &[("Twiml", &twiml), ("StatusCallback", &rx.url("/s"))],
    )
    .await;
    sim.wait_idle().await;
    let calls: Value = client()
        .get(format!("{base}/_sim/calls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls[0]["status"], "completed");
    assert_eq!(calls[0]["digits"], "1");
    let voice: Value = client()
        .get(format!("{base}/_sim/voice-requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(voice[0]["kind"], "gather");
    assert_eq!(voice[0]["response_body"], TWIML_ANSWER);
    let cbs: Value = client()
        .get(format!("{base}/_sim/call-callbacks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cbs[0]["call_status"], "completed");
    assert_eq!(cbs[0]["sequence_number"], 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_sequence_of_outcomes_is_used_one_per_call_then_the_number_outcome_applies() {
    let mut c = config();
    c.callback_mode = CallbackMode::Manual;
    let sim = start(c).await;
    sim.set_call_outcome(CALLEE, CallOutcome::Failed);
    sim.set_call_outcomes(
        CALLEE,
        vec![CallOutcome::Busy, CallOutcome::AnswerAndPress("1".into())],
    );
    let twiml = [("Twiml", "<Response><Say>Hi</Say></Response>")];
    for _ in 0..3 {
        call(&sim, CALLEE, &twiml).await;
    }
    let outcomes: Vec<CallOutcome> = sim.calls().into_iter().map(|c| c.outcome).collect();
    assert_eq!(
        outcomes,
        [
            CallOutcome::Busy,
            CallOutcome::AnswerAndPress("1".into()),
            CallOutcome::Failed
        ]
    );
    sim.flush_callbacks().await;
    let statuses: Vec<CallStatus> = sim.calls().into_iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [CallStatus::Busy, CallStatus::Completed, CallStatus::Failed]
    );
}

#[tokio::test]
async fn a_call_that_rings_forever_never_reports_an_end() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    sim.set_call_outcome("+15551239006", CallOutcome::RingsForever);
    let cb = rx.url("/status/forever");
    let mut params = vec![
        ("Twiml", "<Response><Say>x</Say></Response>"),
        ("StatusCallback", cb.as_str()),
    ];
    params.extend_from_slice(&ALL_EVENTS);
    let sid = call(&sim, "+15551239006", &params).await;
    sim.wait_idle().await;
    let statuses: Vec<String> = rx
        .received()
        .iter()
        .map(|r| r.param("CallStatus").unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["initiated", "ringing"]);
    let (_, c) = get_json(&call_url(&sim, &sid)).await;
    assert_eq!(c["status"], "ringing");
    assert!(c["end_time"].is_null());
    assert_eq!(sim.call(&sid).unwrap().status, CallStatus::Ringing);
    sim.shutdown().await;
}

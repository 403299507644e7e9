//! JSON-signed status callbacks (`bodySHA256`) and inbound-SMS webhooks (signed, TwiML answer,
//! opt-out keywords).

mod common;

use common::*;
use serde_json::{Value, json};
use sha2::Digest as _;
use twilio_sim::{CallOutcome, InboundSms, sign};

fn body_hash(body: &str) -> String {
    hex::encode(sha2::Sha256::digest(body.as_bytes()))
}

#[tokio::test]
async fn json_callbacks_carry_body_sha256_and_sign_the_url_alone() {
    let rx = Receiver::start().await;
    let mut c = config();
    c.json_callbacks = true;
    let sim = start(c).await;
    let cb = rx.url("/status?mid=msg_1#rc=2");
    let (status, m) = create(
        &sim,
        &[
            ("To", "+15551230001"),
            ("From", FROM),
            ("Body", "json"),
            ("StatusCallback", &cb),
        ],
    )
    .await;
    assert_eq!(status, 201);
    let sid = m["sid"].as_str().unwrap();
    sim.wait_idle().await; // the message's callbacks first, then the call's
    sim.set_call_outcome("+15551239001", CallOutcome::AnswerAndPress("1".into()));
    let twiml = gather_twiml(&rx.url("/twiml/ack"));
    let (status, _) = create_call(
        &sim,
        &[
            ("To", "+15551239001"),
            ("From", FROM),
            ("Twiml", &twiml),
            ("StatusCallback", &rx.url("/call-status")),
        ],
    )
    .await;
    assert_eq!(status, 201);
    sim.wait_idle().await;

    let got = rx.received();
    let json_posts: Vec<_> = got
        .iter()
        .filter(|r| r.content_type.as_deref() == Some("application/json"))
        .collect();
    assert_eq!(
        json_posts.len(),
        3,
        "two message callbacks, one call callback"
    );
    for r in &json_posts {
        // Recomputed here: hash of the raw body in the URL, HMAC over the URL only.
        let url = rx.url(&r.path_and_query);
        let hash = body_hash(&r.raw_body);
        assert!(url.ends_with(&format!("bodySHA256={hash}")), "{url}");
        assert_eq!(
            r.signature.as_deref(),
            Some(expected_signature(TOKEN, &url, &[]).as_str())
        );
        assert_signed(&rx, r);
        let v: Value = serde_json::from_str(&r.raw_body).unwrap();
        assert_eq!(v["AccountSid"], ACCOUNT);
    }
    assert!(
        json_posts[0]
            .path_and_query
            .starts_with("/status?mid=msg_1&bodySHA256=")
    );
    assert_eq!(json_posts[0].param("MessageSid"), Some(sid));
    assert_eq!(json_posts[1].param("MessageStatus"), Some("delivered"));
    assert_eq!(json_posts[2].param("CallStatus"), Some("completed"));
    // The Gather submission stays a form POST, as TwiML requests are.
    let gather = got
        .iter()
        .find(|r| r.path_and_query == "/twiml/ack")
        .unwrap();
    assert!(
        gather
            .content_type
            .as_deref()
            .unwrap()
            .starts_with("application/x-www-form-urlencoded")
    );
    assert_signed(&rx, gather);

    let records = sim.callbacks();
    assert_eq!(records[0].body, json_posts[0].raw_body);
    assert_eq!(
        records[0].delivery.signature,
        sign(TOKEN, &records[0].delivery.signed_url, &[])
    );
    assert_eq!(records[0].delivery.url, cb);

    // Switched off at run time: form again.
    sim.set_json_callbacks(false);
    create(
        &sim,
        &[
            ("To", "+15551230002"),
            ("From", FROM),
            ("Body", "form"),
            ("StatusCallback", &rx.url("/form")),
        ],
    )
    .await;
    sim.wait_idle().await;
    let form: Vec<_> = rx
        .received()
        .into_iter()
        .filter(|r| r.path_and_query == "/form")
        .collect();
    assert_eq!(form.len(), 2);
    for r in &form {
        assert!(
            r.content_type
                .as_deref()
                .unwrap()
                .starts_with("application/x-www-form-urlencoded")
        );
        assert_signed(&rx, r);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn inbound_sms_is_signed_and_returns_the_twiml_answer() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    let url = rx.url("/twiml/sms?tenant=t1");
    let answer = sim
        .send_inbound_sms("+447700900123", "+15005550006", "ACK 42", &url)
        .await;
    assert_eq!(answer.delivery.response_status, Some(200));
    assert_eq!(answer.response_body.as_deref(), Some(TWIML_ANSWER));
    assert!(answer.message_sid.starts_with("SM") && answer.message_sid.len() == 34);

    let got = rx.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path_and_query, "/twiml/sms?tenant=t1");
    assert_signed(&rx, r);
    assert_eq!(
        r.signature.as_deref(),
        Some(answer.delivery.signature.as_str())
    );
    for (name, want) in [
        ("MessageSid", answer.message_sid.as_str()),
        ("SmsSid", answer.message_sid.as_str()),
        ("SmsMessageSid", answer.message_sid.as_str()),
        ("AccountSid", ACCOUNT),
        ("From", "+447700900123"),
        ("To", "+15005550006"),
        ("Body", "ACK 42"),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("FromCountry", "GB"),
        ("ToCountry", "US"),
        ("ApiVersion", "2010-04-01"),
        ("SmsStatus", "received"),
    ] {
        assert_eq!(r.param(name), Some(want), "{name}");
    }
    assert_eq!(r.param("MessagingServiceSid"), None);
    assert_eq!(r.param("OptOutType"), None);

    // With a Messaging Service.
    let mg = "MG0123456789abcdef0123456789abcdef";
    let answer = sim
        .send_inbound(InboundSms {
            from: "+15551230001".into(),
            to: "+15005550006".into(),
            body: "hello".into(),
            url: rx.url("/plain"),
            messaging_service_sid: Some(mg.into()),
        })
        .await;
    assert_eq!(answer.delivery.response_status, Some(204));
    assert_eq!(answer.response_body.as_deref(), Some(""));
    assert_eq!(rx.received()[1].param("MessagingServiceSid"), Some(mg));
    assert_signed(&rx, &rx.received()[1]);

    // The same through the inspection API.
    let resp: Value = client()
        .post(format!("{}/_sim/inbound", sim.base_url()))
        .json(
            &json!({"from": "+15551230001", "to": "+15005550006", "body": "via http", "url": url}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["response_status"], 200);
    assert_eq!(resp["response_body"], TWIML_ANSWER);
    assert_eq!(sim.inbound().len(), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn stop_opts_out_and_start_opts_back_in() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    let user = "+15551230007";
    let send = [("To", user), ("From", FROM), ("Body", "alert")];
    let r = sim
        .send_inbound_sms(user, FROM, " Stop ", &rx.url("/in"))
        .await;
    assert_eq!(r.delivery.param("OptOutType"), Some("STOP"));
    assert!(sim.is_opted_out(user));
    let (status, body) = create(&sim, &send).await;
    assert_twilio_error(status, &body, 400, 21610);
    sim.send_inbound_sms(user, FROM, "start", &rx.url("/in"))
        .await;
    assert!(!sim.is_opted_out(user));
    let (status, _) = create(&sim, &send).await;
    assert_eq!(status, 201);
    sim.shutdown().await;
}

#[tokio::test]
async fn revoke_and_optout_opt_out_since_may_2025_and_info_asks_for_help() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    let user = "+15551230008";
    for word in ["REVOKE", "optout"] {
        let r = sim.send_inbound_sms(user, FROM, word, &rx.url("/in")).await;
        assert_eq!(r.delivery.param("OptOutType"), Some("STOP"), "{word}");
        assert!(sim.is_opted_out(user), "{word}");
        sim.send_inbound_sms(user, FROM, "START", &rx.url("/in"))
            .await;
        assert!(!sim.is_opted_out(user));
    }
    let r = sim
        .send_inbound_sms(user, FROM, "OPT OUT", &rx.url("/in"))
        .await;
    assert_eq!(
        r.delivery.param("OptOutType"),
        None,
        "a space makes it no keyword"
    );
    assert!(!sim.is_opted_out(user));
    let r = sim
        .send_inbound_sms(user, FROM, "Info", &rx.url("/in"))
        .await;
    assert_eq!(r.delivery.param("OptOutType"), Some("HELP"));
    assert!(!sim.is_opted_out(user));
    sim.shutdown().await;
}

#[tokio::test]
async fn inbound_to_a_dead_receiver_records_the_error() {
    let sim = start(config()).await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r = sim
        .send_inbound_sms("+15551230001", FROM, "x", &format!("http://{dead}/in#rc=1"))
        .await;
    assert_eq!(r.delivery.response_status, None);
    assert!(r.delivery.error.is_some());
    assert_eq!(r.delivery.attempt, 2);
    assert_eq!(sim.inbound().len(), 2);
    sim.shutdown().await;
}

//! Inbound SMS through real API Gateway events: keywords opt people out and in, HELP answers
//! the configured text as escaped TwiML, other texts are kept sealed in the conversation, and
//! send-sms refuses opted-out recipients before calling Twilio.

use herald::domain::{EventKind, Subject};
use herald::test_env::{TestEnv, WEBHOOK_BASE, post_json, read, request};
use herald::twilio::signature;
use serde_json::json;

const ROUTE: &str = "/webhooks/twilio/inbound-sms";
const PERSON: &str = "+14155552671";

fn sid(n: u32) -> String {
    format!("SM{n:032x}")
}

async fn text(env: &TestEnv, n: u32, from: &str, body: &str) -> (u16, String) {
    let sid = sid(n);
    let params: Vec<(&str, &str)> = vec![
        ("MessageSid", &sid),
        ("SmsSid", &sid),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("From", from),
        ("To", "+15005550006"),
        ("Body", body),
        ("NumMedia", "0"),
    ];
    let token = env.creds.auth_token.expose().clone();
    let sig = signature::compute(&token, &format!("{WEBHOOK_BASE}{ROUTE}"), params.clone());
    let req = request(
        "POST",
        &format!("/prod{ROUTE}"),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", &sig),
        ],
        signature::form_urlencode(params).as_bytes(),
    );
    let resp = webhook_receiver::handle(&env.services, req).await.unwrap();
    let body: &[u8] = resp.body().as_ref();
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(body).into_owned(),
    )
}

/// `POST path` of `body` to send-sms.
async fn post(env: &TestEnv, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    post_json(send_sms::handle, &env.services, path, &body).await
}

async fn send(env: &TestEnv) -> (u16, serde_json::Value) {
    post(env, "/v1/messages", json!({"to": PERSON, "body": "alert"})).await
}

const EMPTY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

#[tokio::test]
async fn stop_refuses_sending_and_start_restores_it() {
    let env = TestEnv::start().await;
    assert_eq!(send(&env).await.0, 201);
    let sent = env.sim.messages().len();

    assert_eq!(
        text(&env, 1, PERSON, "  Stop ").await,
        (200, EMPTY.to_owned())
    );
    let (status, problem) = send(&env).await;
    assert_eq!(status, 422);
    assert_eq!(problem["type"], "urn:herald:problem:recipient-opted-out");
    assert_eq!(problem["field"], "to");
    assert_eq!(env.sim.messages().len(), sent, "nothing reached Twilio");
    assert_eq!(
        env.store.count_messages().await.unwrap(),
        1,
        "nothing recorded"
    );
    // The national form of the same number is the same recipient.
    let to_national = json!({"to": "+1 (415) 555-2671", "body": "x"});
    assert_eq!(post(&env, "/v1/messages", to_national).await.0, 422);
    // A batch refuses that item only.
    let batch =
        json!({"messages": [{"to": PERSON, "body": "a"}, {"to": "+14155550100", "body": "b"}]});
    let (_, answer) = post(&env, "/v1/messages/batch", batch).await;
    assert_eq!(
        answer["messages"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    assert!(
        answer.to_string().contains("recipient-opted-out"),
        "{answer}"
    );

    for (n, word) in [
        (2, "unsubscribe"),
        (3, "QUIT"),
        (4, "end"),
        (5, "Cancel"),
        (6, "STOPALL"),
    ] {
        assert_eq!(text(&env, n, PERSON, word).await.0, 200);
        assert_eq!(send(&env).await.0, 422, "{word}");
    }
    assert_eq!(
        text(&env, 7, PERSON, "start").await,
        (200, EMPTY.to_owned())
    );
    assert_eq!(send(&env).await.0, 201);
    for (n, stop, start) in [(8, "STOP", "yes"), (10, "stop", "UNSTOP")] {
        text(&env, n, PERSON, stop).await;
        assert_eq!(send(&env).await.0, 422);
        text(&env, n + 1, PERSON, start).await;
        assert_eq!(send(&env).await.0, 201, "{start}");
    }

    // The conversation's events: kinds, SIDs, country; never the number.
    let token = env.services.vault.lookup_token(PERSON).await.unwrap();
    let events = env
        .services
        .events
        .events_for(&Subject::conversation(&token))
        .await
        .unwrap();
    assert_eq!(events.len(), 11);
    assert_eq!(events[0].kind, EventKind::OptOut);
    assert_eq!(events[0].twilio_sid.as_deref(), Some(sid(1).as_str()));
    assert_eq!(events[0].country.as_deref(), Some("US"));
    assert_eq!(events[6].kind, EventKind::OptIn);
    let dump = serde_json::to_string(&events).unwrap();
    assert!(!dump.contains("4155552671"), "{dump}");
}

#[tokio::test]
async fn help_answers_the_configured_text_escaped() {
    let env = TestEnv::start_with(&[("HELP_TEXT", "Alerts <Acme & Co> \"24/7\"")]).await;
    let (status, body) = text(&env, 1, PERSON, "help").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>Alerts &lt;Acme &amp; Co&gt; &quot;24/7&quot;</Message></Response>"
    );
    let env = TestEnv::start().await;
    let (_, body) = text(&env, 1, PERSON, "HELP").await;
    assert!(body.contains("Reply STOP to unsubscribe"), "{body}");
    // HELP does not opt out.
    assert_eq!(send(&env).await.0, 201);
}

#[tokio::test]
async fn revoke_and_optout_opt_out_and_info_asks_for_help_as_twilio_has_them_since_may_2025() {
    let env = TestEnv::start().await;
    for (n, word) in [(1, "REVOKE"), (3, " optout ")] {
        assert_eq!(send(&env).await.0, 201, "{word}: opted in before");
        assert_eq!(text(&env, n, PERSON, word).await, (200, EMPTY.to_owned()));
        assert_eq!(send(&env).await.0, 422, "{word} opts out");
        assert_eq!(text(&env, n + 1, PERSON, "START").await.0, 200);
    }
    // With a space it is no keyword: kept as a text, and sending goes on.
    assert_eq!(
        text(&env, 5, PERSON, "OPT OUT").await,
        (200, EMPTY.to_owned())
    );
    assert_eq!(send(&env).await.0, 201);
    let (status, body) = text(&env, 6, PERSON, "info").await;
    assert_eq!(status, 200);
    assert!(body.contains("Reply STOP to unsubscribe"), "{body}");
    assert_eq!(send(&env).await.0, 201, "INFO does not opt out");

    let token = env.services.vault.lookup_token(PERSON).await.unwrap();
    let kinds: Vec<EventKind> = env
        .services
        .events
        .events_for(&Subject::conversation(&token))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::OptOut,
            EventKind::OptIn,
            EventKind::OptOut,
            EventKind::OptIn,
            EventKind::InboundMessage,
            EventKind::HelpRequest,
        ]
    );
}

#[tokio::test]
async fn other_texts_are_kept_sealed_in_the_conversation() {
    let env = TestEnv::start().await;
    let secret = "Running late, the door code is 4711";
    assert_eq!(
        text(&env, 1, "+447400123456", secret).await,
        (200, EMPTY.to_owned())
    );
    // "stop please" is not a keyword: kept, and sending goes on.
    assert_eq!(text(&env, 2, PERSON, "stop please").await.0, 200);
    assert_eq!(send(&env).await.0, 201);

    let ev = env
        .services
        .events
        .get_event(&format!("in:{}", sid(1)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.kind, EventKind::InboundMessage);
    assert_eq!(ev.country.as_deref(), Some("GB"));
    let token = env
        .services
        .vault
        .lookup_token("+447400123456")
        .await
        .unwrap();
    assert_eq!(ev.subject, Subject::conversation(&token));
    let opened = env
        .services
        .vault
        .open_string(&ev.key, ev.sealed.as_ref().unwrap())
        .await
        .unwrap();
    assert_eq!(opened.expose(), secret);
    // Sealed for this event only.
    assert!(
        env.services
            .vault
            .open(&format!("in:{}", sid(2)), ev.sealed.as_ref().unwrap())
            .await
            .is_err()
    );
    let raw = serde_json::to_string(&ev).unwrap();
    assert!(
        !raw.contains("door code") && !raw.contains("7400123456"),
        "{raw}"
    );
}

#[tokio::test]
async fn unsigned_or_forged_inbound_sms_change_nothing() {
    let env = TestEnv::start().await;
    let req = request(
        "POST",
        ROUTE,
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("MessageSid={}&From=%2B14155552671&Body=STOP", sid(1)).as_bytes(),
    );
    let resp = webhook_receiver::handle(&env.services, req).await.unwrap();
    assert_eq!(read(&resp).0, 403);
    assert_eq!(
        read(&resp).1["type"],
        "urn:herald:problem:invalid-signature"
    );
    let req = request(
        "POST",
        ROUTE,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-twilio-signature", "AAAA"),
        ],
        format!("MessageSid={}&From=%2B14155552671&Body=STOP", sid(1)).as_bytes(),
    );
    assert_eq!(
        read(&webhook_receiver::handle(&env.services, req).await.unwrap()).0,
        403
    );
    assert_eq!(env.store.count_events().await.unwrap(), 0);
    assert_eq!(send(&env).await.0, 201);
    let req = request("GET", ROUTE, &[], b"");
    assert_eq!(
        read(&webhook_receiver::handle(&env.services, req).await.unwrap()).0,
        405
    );
}

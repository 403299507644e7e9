//! The SMS API through real API Gateway events, on the embedded adapters with the Twilio
//! simulator: what is answered, what is recorded, and what reaches Twilio.

use herald::test_env::{TestEnv, WEBHOOK_BASE, json_request, read, request, timeline_field};
use serde_json::{Value, json};

async fn post(env: &TestEnv, body: Value) -> (u16, Value) {
    let resp = send_sms::handle(&env.services, json_request("POST", "/v1/messages", &body))
        .await
        .unwrap();
    read(&resp)
}

async fn get(env: &TestEnv, id: &str) -> (u16, Value) {
    let resp = send_sms::handle(
        &env.services,
        request("GET", &format!("/v1/messages/{id}"), &[], b""),
    )
    .await
    .unwrap();
    read(&resp)
}

#[tokio::test]
async fn a_valid_message_is_recorded_and_handed_to_twilio() {
    let env = TestEnv::start().await;
    let (status, answer) = post(
        &env,
        json!({"to": "+1 (415) 555-2671", "body": "Disk almost full"}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["status"], "queued");
    assert_eq!(answer["segments"], 1);
    assert_eq!(answer["encoding"], "GSM-7");
    let id = answer["id"].as_str().unwrap();
    assert!(id.starts_with("msg_"));

    let sent = env.sim.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "+14155552671");
    assert_eq!(sent[0].body, "Disk almost full");
    assert_eq!(
        sent[0].status_callback.as_deref(),
        Some(format!("{WEBHOOK_BASE}/webhooks/twilio/message-status?mid={id}&a=1").as_str())
    );

    let (status, view) = get(&env, id).await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "queued");
    assert_eq!(view["to"], "+*******2671");
    assert_eq!(view["twilio_sid"], sent[0].sid.as_str());
    let kinds = timeline_field(&view, "kind");
    assert_eq!(kinds, ["accepted", "submitted"]);
}

#[tokio::test]
async fn templates_are_rendered_before_sending_and_ucs2_is_counted() {
    let env = TestEnv::start().await;
    let (status, answer) =
        post(&env, json!({"to": "+447911123456", "template": "reminder", "variables": {"event": "Standup", "time": "09:30"}})).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(env.sim.messages()[0].body, "Reminder: Standup at 09:30.");

    let long =
        "Ваш заказ отправлен и будет доставлен завтра. Спасибо, что выбрали нас! До встречи.";
    let (status, answer) = post(&env, json!({"to": "+447911123456", "body": long})).await;
    assert_eq!(status, 201);
    assert_eq!(answer["encoding"], "UCS-2");
    assert_eq!(answer["segments"], 2);
}

#[tokio::test]
async fn bad_input_is_a_problem_naming_the_field_and_records_nothing() {
    let env = TestEnv::start().await;
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (json!("just a string"), 400, "malformed-request", None),
        (
            json!({"to": "+14155552671"}),
            422,
            "invalid-field",
            Some("body"),
        ),
        (json!({"body": "hi"}), 422, "invalid-field", Some("to")),
        (
            json!({"to": 14155552671u64, "body": "hi"}),
            422,
            "invalid-field",
            Some("to"),
        ),
        (
            json!({"to": "+14155552671", "body": "hi", "cc": "x"}),
            422,
            "invalid-field",
            Some("cc"),
        ),
        (
            json!({"to": "4155552671", "body": "hi"}),
            422,
            "invalid-phone-number",
            Some("to"),
        ),
        (
            json!({"to": "+999 1234567", "body": "hi"}),
            422,
            "invalid-phone-number",
            Some("to"),
        ),
        (
            json!({"to": "+1 415 55", "body": "hi"}),
            422,
            "invalid-phone-number",
            Some("to"),
        ),
        (
            json!({"to": "+14155552671", "template": "nope"}),
            422,
            "unknown-template",
            Some("template"),
        ),
        (
            json!({"to": "+14155552671", "template": "reminder", "variables": {"event": "x"}}),
            422,
            "missing-variable",
            Some("variables.time"),
        ),
        (
            json!({"to": "+14155552671", "template": "alert", "body": "x"}),
            422,
            "invalid-field",
            Some("template"),
        ),
        (
            json!({"to": "+14155552671", "body": "   "}),
            422,
            "invalid-field",
            Some("body"),
        ),
        (
            json!({"to": "+14155552671", "body": "a".repeat(1601)}),
            422,
            "body-too-long",
            Some("body"),
        ),
    ];
    for (body, want_status, want_type, want_field) in cases {
        let (status, problem) = post(&env, body.clone()).await;
        assert_eq!(status, want_status, "{body} -> {problem}");
        assert_eq!(
            problem["type"],
            format!("urn:herald:problem:{want_type}"),
            "{body}"
        );
        assert_eq!(problem["status"], want_status);
        assert_eq!(problem["field"].as_str(), want_field, "{body}");
        assert!(
            !problem.to_string().contains("4155552671"),
            "a problem must not echo the number: {problem}"
        );
    }
    // Malformed JSON text.
    let resp = send_sms::handle(
        &env.services,
        request("POST", "/v1/messages", &[], b"{not json"),
    )
    .await
    .unwrap();
    assert_eq!(read(&resp).0, 400);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");

    assert_eq!(env.store.count_messages().await.unwrap(), 0);
    assert_eq!(env.store.count_events().await.unwrap(), 0);
    assert!(env.sim.requests().is_empty(), "nothing may reach Twilio");
}

#[tokio::test]
async fn a_permanent_twilio_refusal_is_recorded_failed_with_its_code() {
    let env = TestEnv::start().await;
    for (to, code) in [
        ("+15005550001", 21211),
        ("+15005550004", 21610),
        ("+15005550009", 21614),
    ] {
        let (status, problem) = post(&env, json!({"to": to, "body": "hello"})).await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["type"], "urn:herald:problem:twilio-rejected");
        assert_eq!(problem["twilio_code"], code);
        let id = problem["message_id"].as_str().unwrap();
        let (_, view) = get(&env, id).await;
        assert_eq!(view["status"], "failed");
        assert_eq!(view["error_code"], code);
    }
}

#[tokio::test]
async fn a_transient_failure_leaves_the_message_retrying() {
    for faults in [
        twilio_sim::Faults {
            rate_500: 1.0,
            ..Default::default()
        },
        twilio_sim::Faults {
            rate_429: 1.0,
            retry_after_secs: 3,
            ..Default::default()
        },
    ] {
        let env = TestEnv::start().await;
        env.sim.set_faults(faults);
        let (status, answer) = post(&env, json!({"to": "+14155552671", "body": "hello"})).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["status"], "retrying");
        let (_, view) = get(&env, answer["id"].as_str().unwrap()).await;
        assert_eq!(view["status"], "retrying");
        assert!(
            view["error"]
                .as_str()
                .unwrap()
                .starts_with("Twilio answered")
        );
        let kinds = timeline_field(&view, "kind");
        assert_eq!(kinds, ["accepted", "deferred"]);
    }
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let env = TestEnv::start_with(&[("TWILIO_REQUEST_TIMEOUT_SECS", "1")]).await;
    env.sim.set_faults(twilio_sim::Faults {
        rate_timeout: 1.0,
        timeout_ms: 5_000,
        ..Default::default()
    });
    let (status, answer) = post(&env, json!({"to": "+14155552671", "body": "hello"})).await;
    assert_eq!(status, 202, "{answer}");
    let (_, view) = get(&env, answer["id"].as_str().unwrap()).await;
    assert_eq!(view["error"], "Twilio request timed out");
}

#[tokio::test]
async fn unknown_messages_and_routes_are_404_and_disabled_sms_is_503() {
    let env = TestEnv::start().await;
    assert_eq!(get(&env, "msg_01jz0000000000000000000000").await.0, 404);
    assert_eq!(get(&env, "not-an-id").await.0, 404);
    let resp = send_sms::handle(&env.services, request("GET", "/v1/nothing", &[], b""))
        .await
        .unwrap();
    assert_eq!(read(&resp).0, 404);
    let resp = send_sms::handle(&env.services, request("DELETE", "/v1/messages", &[], b""))
        .await
        .unwrap();
    assert_eq!(read(&resp).0, 405);

    let off = TestEnv::start_with(&[("SMS_ENABLED", "false")]).await;
    let (status, problem) = post(&off, json!({"to": "+14155552671", "body": "hello"})).await;
    assert_eq!(status, 503);
    assert_eq!(problem["type"], "urn:herald:problem:feature-disabled");
    assert!(off.sim.requests().is_empty());
}

#[tokio::test]
async fn the_stage_prefix_of_a_rest_api_path_is_ignored() {
    let env = TestEnv::start().await;
    let resp = send_sms::handle(
        &env.services,
        json_request(
            "POST",
            "/prod/v1/messages",
            &json!({"to": "+14155552671", "body": "hi"}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(read(&resp).0, 201);
}

#[tokio::test]
async fn a_batch_records_the_valid_items_queues_one_job_each_and_reports_the_rest() {
    let env = TestEnv::start().await;
    let body = json!({"messages": [
        {"to": "+14155550101", "body": "one"},
        {"to": "not a number", "body": "two"},
        {"to": "+14155550103", "template": "alert", "variables": {"service": "db", "summary": "down"}},
        {"to": "+14155550104", "template": "reminder", "variables": {}},
        {"to": "+14155550105", "body": "five"},
    ]});
    let resp = send_sms::handle(
        &env.services,
        json_request("POST", "/v1/messages/batch", &body),
    )
    .await
    .unwrap();
    let (status, answer) = read(&resp);
    assert_eq!(status, 202, "{answer}");
    let accepted: Vec<u64> = answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["index"].as_u64().unwrap())
        .collect();
    assert_eq!(accepted, [0, 2, 4]);
    let errors: Vec<(u64, &str, &str)> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["type"].as_str().unwrap(),
                e["field"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (
                1,
                "urn:herald:problem:invalid-phone-number",
                "messages[1].to"
            ),
            (
                3,
                "urn:herald:problem:missing-variable",
                "messages[3].variables.event"
            ),
        ]
    );
    assert_eq!(env.store.count_messages().await.unwrap(), 3);
    assert!(
        env.sim.requests().is_empty(),
        "nothing is sent before the send queue runs"
    );
    assert_eq!(
        herald::ports::Queue::depth(&env.send_queue)
            .await
            .unwrap()
            .visible,
        3
    );

    // The send queue triggers send-sms, which sends exactly as the API path does.
    let svc = env.services.clone();
    let handled = herald::test_env::drain(&env.send_queue, 61, |e| {
        let svc = svc.clone();
        async move { send_sms::handle_sqs(&svc, e).await }
    })
    .await;
    assert_eq!(handled, 3);
    assert_eq!(env.sim.messages().len(), 3);
    for m in answer["messages"].as_array().unwrap() {
        let (_, view) = get(&env, m["id"].as_str().unwrap()).await;
        assert_eq!(view["status"], "queued");
    }
    // A redelivered send job sends nothing more.
    let id = answer["messages"][0]["id"].as_str().unwrap();
    let job = herald::delivery::Job::Message {
        id: id.parse().unwrap(),
        attempt: 1,
        not_before_ms: None,
    };
    herald::ports::Queue::send(&env.send_queue, &job.to_body(), 0)
        .await
        .unwrap();
    let svc = env.services.clone();
    herald::test_env::drain(&env.send_queue, 61, |e| {
        let svc = svc.clone();
        async move { send_sms::handle_sqs(&svc, e).await }
    })
    .await;
    assert_eq!(env.sim.creates_for("+14155550101"), 1);
}

#[tokio::test]
async fn a_batch_must_hold_one_to_a_thousand_messages() {
    let env = TestEnv::start().await;
    for body in [
        json!({"messages": []}),
        json!({"messages": vec![json!({"to": "+14155550101", "body": "x"}); 1001]}),
        json!({"nope": 1}),
    ] {
        let resp = send_sms::handle(
            &env.services,
            json_request("POST", "/v1/messages/batch", &body),
        )
        .await
        .unwrap();
        let (status, problem) = read(&resp);
        assert_eq!(status, 422);
        assert_eq!(problem["field"], "messages");
    }
    assert_eq!(env.store.count_messages().await.unwrap(), 0);
}

/// Herald's own Twilio credentials unreadable (the secret refused to the function's role, or
/// not set yet): the API answers 503 problem+json and records nothing; a send job leaves its
/// message waiting, never failed and with its attempt not used up, and sends it once the
/// credentials can be read again.
#[tokio::test]
async fn unreadable_credentials_refuse_the_send_and_never_fail_a_message() {
    let env = TestEnv::start().await;
    env.secrets.withdraw();
    let (status, answer) = post(&env, json!({"to": "+14155552671", "body": "Disk full"})).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["type"], "urn:herald:problem:unavailable");
    let resp = send_sms::handle(&env.services, request("GET", "/v1/messages", &[], b""))
        .await
        .unwrap();
    let (status, listed) = read(&resp);
    assert_eq!(status, 200);
    assert_eq!(listed["messages"], json!([]), "nothing recorded");

    let resp = send_sms::handle(
        &env.services,
        json_request(
            "POST",
            "/v1/messages/batch",
            &json!({"messages": [{"to": "+14155550101", "body": "one"}]}),
        ),
    )
    .await
    .unwrap();
    let (status, batch) = read(&resp);
    assert_eq!(status, 202, "{batch}");
    let id = batch["messages"][0]["id"].as_str().unwrap().to_owned();
    let run = || {
        let svc = env.services.clone();
        herald::test_env::drain(&env.send_queue, 61, move |e| {
            let svc = svc.clone();
            async move { send_sms::handle_sqs(&svc, e).await }
        })
    };
    assert_eq!(run().await, 1);
    let (_, view) = get(&env, &id).await;
    assert_eq!(view["status"], "accepted", "waiting, not failed: {view}");
    assert_eq!(view["attempts"], 1);
    assert!(env.sim.requests().is_empty(), "nothing reached Twilio");

    // The secret is readable again: the redelivered job (after its visibility timeout and the
    // attempt's lease) sends the message.
    env.secrets.set(env.creds.clone());
    env.clock.advance(61_000);
    assert_eq!(run().await, 1);
    let (_, view) = get(&env, &id).await;
    assert_eq!(view["status"], "queued", "{view}");
    assert_eq!(env.sim.creates_for("+14155550101"), 1);
}

//! The API's protection, rule by rule, through real API Gateway events: each refusal's status
//! and problem `type`, and that nothing was sent (the simulator saw nothing) or recorded.

use herald::test_env::{TestEnv, json_request, read, request, request_as};
use serde_json::{Value, json};

async fn call(env: &TestEnv, req: lambda_http::Request) -> (u16, Value, http::HeaderMap) {
    let resp = send_sms::handle(&env.services, req).await.unwrap();
    let (status, body) = read(&resp);
    (status, body, resp.headers().clone())
}

fn post_as(caller: &str, path: &str, body: &Value, key: Option<&str>) -> lambda_http::Request {
    let raw = body.to_string();
    let mut headers = vec![("content-type", "application/json")];
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    request_as(Some(caller), "POST", path, &headers, raw.as_bytes())
}

async fn send(env: &TestEnv, to: &str) -> (u16, Value, http::HeaderMap) {
    call(
        env,
        json_request("POST", "/v1/messages", &json!({"to": to, "body": "hi"})),
    )
    .await
}

fn problem_type(v: &Value) -> &str {
    v["type"].as_str().unwrap_or("")
}

#[tokio::test]
async fn without_an_identity_every_api_route_is_401_and_nothing_is_sent() {
    let env = TestEnv::start().await;
    let body = json!({"to": "+14155552671", "body": "hi"});
    for (method, path, body) in [
        ("POST", "/v1/messages", body.clone()),
        (
            "POST",
            "/v1/messages/batch",
            json!({"messages": [body.clone()]}),
        ),
        ("POST", "/v1/verifications", json!({"to": "+14155552671"})),
        ("GET", "/v1/messages", Value::Null),
        ("GET", "/v1/reports/delivery", Value::Null),
        ("GET", "/v1/health", Value::Null),
    ] {
        let raw = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let (status, answer, headers) =
            call(&env, request_as(None, method, path, &[], raw.as_bytes())).await;
        assert_eq!(status, 401, "{method} {path}: {answer}");
        assert_eq!(problem_type(&answer), "urn:herald:problem:unauthorized");
        assert_eq!(headers["www-authenticate"], "Bearer");
        assert_eq!(headers["content-type"], "application/problem+json");
    }
    let resp = place_call::handle(
        &env.services,
        request_as(
            None,
            "POST",
            "/v1/calls",
            &[],
            br#"{"to":"+14155552671","message":"x"}"#,
        ),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(env.sim.messages().is_empty() && env.sim.calls().is_empty());
    assert_eq!(env.store.count_messages().await.unwrap(), 0);
    // /health needs no identity, and so says only whether Herald can work.
    let (status, health, _) = call(&env, request_as(None, "GET", "/health", &[], b"")).await;
    assert_eq!(status, 200);
    assert_eq!(health, json!({"status": "ok"}));
    // The details are a caller's.
    let (status, health, _) = call(&env, request("GET", "/v1/health", &[], b"")).await;
    assert_eq!(status, 200);
    assert_eq!(
        health["features"],
        json!({"sms_enabled": true, "voice_enabled": true})
    );
}

#[tokio::test]
async fn every_record_carries_its_caller_and_callers_see_only_their_own() {
    let env = TestEnv::start().await;
    let (status, a, _) = call(
        &env,
        post_as(
            "alice",
            "/v1/messages",
            &json!({"to": "+14155552671", "body": "a"}),
            None,
        ),
    )
    .await;
    assert_eq!(status, 201);
    let id = a["id"].as_str().unwrap();
    let m = env
        .services
        .messages
        .get_record(&id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.caller, "alice");
    let (status, _, _) = call(
        &env,
        request_as(Some("bob"), "GET", &format!("/v1/messages/{id}"), &[], b""),
    )
    .await;
    assert_eq!(status, 404, "another caller's message is not found");
    let (status, _, _) = call(
        &env,
        request_as(
            Some("alice"),
            "GET",
            &format!("/v1/messages/{id}"),
            &[],
            b"",
        ),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_caller_rate_limit_answers_429_with_retry_after_and_sends_nothing() {
    let env = TestEnv::start_with(&[("CALLER_RATE_LIMIT_MESSAGES_PER_MINUTE", "2")]).await;
    for i in 0..2 {
        let (status, answer, _) = send(&env, &format!("+1415555267{i}")).await;
        assert_eq!(status, 201, "{answer}");
    }
    let (status, answer, headers) = send(&env, "+14155552679").await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(
        problem_type(&answer),
        "urn:herald:problem:caller-rate-limit"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(env.sim.messages().len(), 2, "nothing sent");
    assert_eq!(
        env.store.count_messages().await.unwrap(),
        2,
        "nothing recorded"
    );
    // Per caller: another caller has its own budget; the next minute is fresh.
    let (status, _, _) = call(
        &env,
        post_as(
            "other",
            "/v1/messages",
            &json!({"to": "+14155552679", "body": "x"}),
            None,
        ),
    )
    .await;
    assert_eq!(status, 201);
    env.clock.advance(60_000);
    assert_eq!(send(&env, "+14155552679").await.0, 201);
}

#[tokio::test]
async fn per_number_hourly_and_daily_limits() {
    let env = TestEnv::start_with(&[
        ("RECIPIENT_LIMIT_PER_HOUR", "2"),
        ("RECIPIENT_LIMIT_PER_DAY", "3"),
    ])
    .await;
    let to = "+14155552671";
    assert_eq!(send(&env, to).await.0, 201);
    assert_eq!(send(&env, to).await.0, 201);
    let (status, answer, headers) = send(&env, to).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(
        problem_type(&answer),
        "urn:herald:problem:recipient-hourly-limit"
    );
    assert_eq!(answer["field"], "to");
    assert!(headers.contains_key("retry-after"));
    assert!(
        !answer.to_string().contains("2671"),
        "no number in the answer"
    );
    // Another number is not affected.
    assert_eq!(send(&env, "+14155552672").await.0, 201);
    env.clock.advance(3_600_000);
    assert_eq!(send(&env, to).await.0, 201);
    let (status, answer, _) = send(&env, to).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(
        problem_type(&answer),
        "urn:herald:problem:recipient-daily-limit"
    );
    let to_number = env.sim.messages().iter().filter(|m| m.to == to).count();
    assert_eq!(to_number, 3, "refused messages were not sent");
    // The counters are keyed by lookup token: the number is nowhere in the store.
    let dump = env.store.dump_values().await.unwrap();
    assert!(
        !dump
            .iter()
            .any(|v| v.windows(12).any(|w| w == to.as_bytes()))
    );
}

#[tokio::test]
async fn the_country_allow_list_and_the_country_velocity_cap() {
    let env = TestEnv::start_with(&[
        ("ALLOWED_COUNTRIES", "US,CA"),
        ("COUNTRY_LIMIT_PER_HOUR", "2"),
    ])
    .await;
    let (status, answer, _) = send(&env, "+447400123456").await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        problem_type(&answer),
        "urn:herald:problem:country-not-allowed"
    );
    assert_eq!(send(&env, "+14155552671").await.0, 201);
    assert_eq!(send(&env, "+14155552672").await.0, 201);
    let (status, answer, _) = send(&env, "+14155552673").await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(
        problem_type(&answer),
        "urn:herald:problem:country-velocity-limit"
    );
    // Canada has its own cap.
    assert_eq!(send(&env, "+16135550123").await.0, 201);
    assert_eq!(env.sim.messages().len(), 3);
    // In a batch, each refused item is an error of its own; the others go.
    let (status, answer, _) = call(
        &env,
        json_request(
            "POST",
            "/v1/messages/batch",
            &json!({"messages": [{"to": "+447400123456", "body": "x"}, {"to": "+16135550124", "body": "y"}]}),
        ),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        answer["errors"][0]["type"],
        "urn:herald:problem:country-not-allowed"
    );
    assert_eq!(answer["errors"][0]["field"], "messages[0].to");
    assert_eq!(answer["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_response_and_sends_once() {
    let env = TestEnv::start().await;
    let body = json!({"to": "+14155552671", "body": "once"});
    let (s1, a1, h1) = call(&env, post_as("alice", "/v1/messages", &body, Some("k-1"))).await;
    assert_eq!(s1, 201);
    assert!(!h1.contains_key("idempotent-replayed"));
    let (s2, a2, h2) = call(&env, post_as("alice", "/v1/messages", &body, Some("k-1"))).await;
    assert_eq!((s2, &a2), (s1, &a1), "the first response, replayed");
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(env.sim.messages().len(), 1, "no second send");
    // Same key, another payload: 422.
    let other = json!({"to": "+14155552671", "body": "twice?"});
    let (s3, a3, _) = call(&env, post_as("alice", "/v1/messages", &other, Some("k-1"))).await;
    assert_eq!(s3, 422);
    assert_eq!(
        problem_type(&a3),
        "urn:herald:problem:idempotency-key-reused"
    );
    // Keyed per caller: bob's k-1 is his own.
    assert_eq!(
        call(&env, post_as("bob", "/v1/messages", &body, Some("k-1")))
            .await
            .0,
        201
    );
    assert_eq!(env.sim.messages().len(), 2);
    // Keys expire (24 h by default).
    env.clock.advance(24 * 3_600_000);
    let (s4, a4, _) = call(&env, post_as("alice", "/v1/messages", &body, Some("k-1"))).await;
    assert_eq!(s4, 201);
    assert_ne!(a4["id"], a1["id"]);
    assert_eq!(env.sim.messages().len(), 3);
    // A malformed key is refused before anything happens.
    let long = "x".repeat(300);
    let (s5, a5, _) = call(&env, post_as("alice", "/v1/messages", &body, Some(&long))).await;
    assert_eq!(s5, 422, "{a5}");
    assert_eq!(a5["field"], "Idempotency-Key");
    assert_eq!(env.sim.messages().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_requests_with_one_key_at_once_send_once() {
    let env = TestEnv::start().await;
    let body = json!({"to": "+14155552671", "body": "race"});
    for round in 0..5 {
        let key = format!("race-{round}");
        let (a, b) = tokio::join!(
            call(&env, post_as("alice", "/v1/messages", &body, Some(&key))),
            call(&env, post_as("alice", "/v1/messages", &body, Some(&key))),
        );
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert!(
            statuses == [201, 201] || statuses == [201, 409],
            "one sends, the other is replayed or told it is in progress: {statuses:?}"
        );
        if a.0 == 409 || b.0 == 409 {
            let p = if a.0 == 409 { &a.1 } else { &b.1 };
            assert_eq!(problem_type(p), "urn:herald:problem:idempotency-key-in-use");
        }
    }
    assert_eq!(env.sim.messages().len(), 5, "one send per key");
}

#[tokio::test]
async fn batches_and_calls_take_idempotency_keys_too() {
    let env = TestEnv::start().await;
    let batch = json!({"messages": [{"to": "+14155552671", "body": "a"}, {"to": "+14155552672", "body": "b"}]});
    let (s1, a1, _) = call(
        &env,
        post_as("alice", "/v1/messages/batch", &batch, Some("b-1")),
    )
    .await;
    let (s2, a2, _) = call(
        &env,
        post_as("alice", "/v1/messages/batch", &batch, Some("b-1")),
    )
    .await;
    assert_eq!((s1, &a1), (s2, &a2));
    assert_eq!(
        env.store.count_messages().await.unwrap(),
        2,
        "recorded once"
    );

    let body = json!({"to": "+14155552673", "message": "Wake up"});
    let raw = body.to_string();
    let req = || {
        request_as(
            Some("alice"),
            "POST",
            "/v1/calls",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "c-1"),
            ],
            raw.as_bytes(),
        )
    };
    let r1 = place_call::handle(&env.services, req()).await.unwrap();
    let r2 = place_call::handle(&env.services, req()).await.unwrap();
    assert_eq!(read(&r1), read(&r2));
    assert_eq!(r2.headers()["idempotent-replayed"], "true");
    assert_eq!(env.sim.calls().len(), 1, "one call placed");
}

#[tokio::test]
async fn disabled_sms_is_503_and_shown_in_health() {
    let env = TestEnv::start_with(&[("SMS_ENABLED", "false")]).await;
    let (status, answer, _) = send(&env, "+14155552671").await;
    assert_eq!(status, 503);
    assert_eq!(problem_type(&answer), "urn:herald:problem:feature-disabled");
    let (status, answer, _) = call(
        &env,
        json_request("POST", "/v1/verifications", &json!({"to": "+14155552671"})),
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    let (_, health, _) = call(&env, request("GET", "/v1/health", &[], b"")).await;
    assert_eq!(
        health["features"],
        json!({"sms_enabled": false, "voice_enabled": true})
    );
    assert!(env.sim.messages().is_empty());
}

#[tokio::test]
async fn the_caller_lists_its_messages_page_by_page_and_gets_a_delivery_report() {
    let env = TestEnv::start().await;
    for i in 0..5 {
        let (s, _, _) = call(
            &env,
            post_as(
                "alice",
                "/v1/messages",
                &json!({"to": format!("+1415555267{i}"), "body": "x"}),
                None,
            ),
        )
        .await;
        assert_eq!(s, 201);
        env.clock.advance(1000);
    }
    call(
        &env,
        post_as(
            "bob",
            "/v1/messages",
            &json!({"to": "+14155552679", "body": "x"}),
            None,
        ),
    )
    .await;
    // Twilio refuses this one for good (21211 invalid number, a simulator magic number).
    let (s, _, _) = call(
        &env,
        post_as(
            "alice",
            "/v1/messages",
            &json!({"to": "+15005550001", "body": "x"}),
            None,
        ),
    )
    .await;
    assert_eq!(s, 422);

    let list = |query: &str| {
        request_as(
            Some("alice"),
            "GET",
            &format!("/v1/messages{query}"),
            &[],
            b"",
        )
    };
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            None => "?limit=2".to_owned(),
            Some(c) => format!("?limit=2&cursor={c}"),
        };
        let (status, page, _) = call(&env, list(&q)).await;
        assert_eq!(status, 200, "{page}");
        for m in page["messages"].as_array().unwrap() {
            assert!(
                m["to"].as_str().unwrap().starts_with("+*******"),
                "masked: {m}"
            );
            ids.push(m["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(ids.len(), 6, "alice's six, none of bob's");
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 6);

    let (_, failed, _) = call(&env, list("?status=failed")).await;
    assert_eq!(failed["messages"].as_array().unwrap().len(), 1);
    assert_eq!(failed["messages"][0]["error_code"], 21211);
    let (status, bad, _) = call(&env, list("?status=lost")).await;
    assert_eq!((status, bad["field"].as_str()), (422, Some("status")));
    let (status, _, _) = call(&env, list("?cursor=garbage")).await;
    assert_eq!(status, 422);
    // Time bounds: only the first two (created at t0 and t0+1s).
    let from = herald::domain::rfc3339(1_800_000_000_000);
    let to = herald::domain::rfc3339(1_800_000_002_000);
    let (_, bounded, _) = call(&env, list(&format!("?from={from}&to={to}"))).await;
    assert_eq!(
        bounded["messages"].as_array().unwrap().len(),
        2,
        "{bounded}"
    );

    let (status, report, _) = call(
        &env,
        request_as(Some("alice"), "GET", "/v1/reports/delivery", &[], b""),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["total"], 6);
    assert_eq!(report["by_status"]["queued"], 5);
    assert_eq!(report["by_status"]["failed"], 1);
    assert_eq!(report["by_country"]["US"], 6);
    assert_eq!(report["by_error_code"]["21211"], 1);
    assert_eq!(report["finished"], 1);
    assert_eq!(report["delivery_rate"], 0.0);
}

//! Twilio's message status callbacks through real API Gateway events: signatures, the status
//! machine, dedupe, orphans; and that a rejected request writes nothing.

use herald::ports::Queue;
use herald::test_env::{TestEnv, WEBHOOK_BASE, json_request, read, request};
use herald::twilio::signature;
use serde_json::json;

const ROUTE: &str = "/webhooks/twilio/message-status";

/// Sends a message through send-sms; returns its id and Twilio SID.
async fn send(env: &TestEnv) -> (String, String) {
    let resp = send_sms::handle(
        &env.services,
        json_request(
            "POST",
            "/v1/messages",
            &json!({"to": "+14155552671", "body": "hi"}),
        ),
    )
    .await
    .unwrap();
    let (status, answer) = read(&resp);
    assert_eq!(status, 201);
    let id = answer["id"].as_str().unwrap().to_owned();
    (id, env.sim.messages()[0].sid.clone())
}

fn form(params: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// A callback as Twilio sends it, signed for `signed_url` with `token`.
fn callback(
    query: &str,
    params: &[(&str, &str)],
    token: &str,
    signed_url: Option<&str>,
) -> lambda_http::Request {
    let url = format!("{WEBHOOK_BASE}{ROUTE}?{query}");
    let sig = signature::compute(token, signed_url.unwrap_or(&url), params.iter().copied());
    request(
        "POST",
        &format!("{ROUTE}?{query}"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", &sig),
        ],
        form(params).as_bytes(),
    )
}

fn status_params<'a>(sid: &'a str, status: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("ApiVersion", "2010-04-01"),
        ("From", "+15005550006"),
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("To", "+14155552671"),
    ]
}

async fn status_of(env: &TestEnv, id: &str) -> serde_json::Value {
    let resp = send_sms::handle(
        &env.services,
        request("GET", &format!("/v1/messages/{id}"), &[], b""),
    )
    .await
    .unwrap();
    read(&resp).1
}

async fn deliver(env: &TestEnv, req: lambda_http::Request) -> u16 {
    webhook_receiver::handle(&env.services, req)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn signed_callbacks_move_the_message_forward_only() {
    let env = TestEnv::start().await;
    let (id, sid) = send(&env).await;
    let q = format!("mid={id}&a=1");
    let token = env.creds.auth_token.expose().clone();

    assert_eq!(
        deliver(
            &env,
            callback(&q, &status_params(&sid, "sent"), &token, None)
        )
        .await,
        200
    );
    assert_eq!(status_of(&env, &id).await["status"], "sent");
    assert_eq!(
        deliver(
            &env,
            callback(&q, &status_params(&sid, "delivered"), &token, None)
        )
        .await,
        200
    );
    assert_eq!(status_of(&env, &id).await["status"], "delivered");

    // A late `sent` after `delivered` is an event only.
    let events_before = env.store.count_events().await.unwrap();
    let mut late = status_params(&sid, "sent");
    late.push(("RawDlrDoneDate", "2611211200"));
    assert_eq!(deliver(&env, callback(&q, &late, &token, None)).await, 200);
    let view = status_of(&env, &id).await;
    assert_eq!(view["status"], "delivered");
    // The dedupe key is MessageSid + MessageStatus: that late `sent` is a duplicate of the first.
    assert_eq!(env.store.count_events().await.unwrap(), events_before);
    let timeline = view["timeline"].as_array().unwrap();
    let callbacks: Vec<(&str, bool)> = timeline
        .iter()
        .filter(|e| e["kind"] == "status_callback")
        .map(|e| {
            (
                e["status"].as_str().unwrap(),
                e["applied"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(callbacks, [("sent", true), ("delivered", true)]);
}

#[tokio::test]
async fn out_of_order_delivered_then_sent_ends_delivered_with_both_events() {
    let env = TestEnv::start().await;
    let (id, sid) = send(&env).await;
    let q = format!("mid={id}&a=1");
    let token = env.creds.auth_token.expose().clone();
    assert_eq!(
        deliver(
            &env,
            callback(&q, &status_params(&sid, "delivered"), &token, None)
        )
        .await,
        200
    );
    assert_eq!(
        deliver(
            &env,
            callback(&q, &status_params(&sid, "sent"), &token, None)
        )
        .await,
        200
    );
    let view = status_of(&env, &id).await;
    assert_eq!(view["status"], "delivered");
    let callbacks: Vec<(&str, bool)> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "status_callback")
        .map(|e| {
            (
                e["status"].as_str().unwrap(),
                e["applied"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(callbacks, [("delivered", true), ("sent", false)]);
}

#[tokio::test]
async fn permanent_failures_are_final_with_their_code() {
    let env = TestEnv::start().await;
    let (id, sid) = send(&env).await;
    let token = env.creds.auth_token.expose().clone();
    let mut p = status_params(&sid, "undelivered");
    p.push(("ErrorCode", "30007"));
    assert_eq!(
        deliver(&env, callback(&format!("mid={id}&a=1"), &p, &token, None)).await,
        200
    );
    let view = status_of(&env, &id).await;
    assert_eq!(view["status"], "undelivered");
    assert_eq!(view["error_code"], 30007);
    assert_eq!(
        env.retry_queue.depth().await.unwrap(),
        herald::ports::QueueDepth::default()
    );
}

#[tokio::test]
async fn a_retryable_failure_schedules_the_next_attempt_until_attempts_run_out() {
    let env = TestEnv::start().await;
    let (id, sid) = send(&env).await;
    let token = env.creds.auth_token.expose().clone();
    let mut p = status_params(&sid, "failed");
    p.push(("ErrorCode", "30001"));
    assert_eq!(
        deliver(&env, callback(&format!("mid={id}&a=1"), &p, &token, None)).await,
        200
    );
    let view = status_of(&env, &id).await;
    assert_eq!(
        (view["status"].as_str(), view["attempts"].as_u64()),
        (Some("retrying"), Some(2))
    );
    let depth = env.retry_queue.depth().await.unwrap();
    assert_eq!(depth.visible + depth.delayed, 1, "one job for attempt 2");
    // A duplicate of that callback changes nothing; it finds attempt 2 waiting unclaimed and
    // queues its job again (the first one may have been lost with the first callback's answer;
    // a duplicate job is harmless, the claim decides).
    assert_eq!(
        deliver(&env, callback(&format!("mid={id}&a=1"), &p, &token, None)).await,
        200
    );
    let again = status_of(&env, &id).await;
    assert_eq!(
        (again["status"].as_str(), again["attempts"].as_u64()),
        (Some("retrying"), Some(2))
    );
    let depth = env.retry_queue.depth().await.unwrap();
    assert_eq!(depth.visible + depth.delayed, 2);

    // 30003 may be retried a few times only (3 attempts in all): at attempt 3 it is final.
    let env = TestEnv::start().await;
    let (id, sid) = send(&env).await;
    let mut p = status_params(&sid, "undelivered");
    p.push(("ErrorCode", "30003"));
    let message_id: herald::domain::MessageId = id.parse().unwrap();
    for a in 1..=2u32 {
        assert_eq!(
            deliver(&env, callback(&format!("mid={id}&a={a}"), &p, &token, None)).await,
            200
        );
        // Standing in for the retry processor: the next attempt reaches Twilio.
        let submitted = herald::testing::change(a + 1, herald::domain::MessageStatus::Queued, 1);
        let applied = herald::ports::MessageStore::apply_message_status(
            &*env.services.messages,
            &message_id,
            &submitted,
        )
        .await
        .unwrap();
        assert!(matches!(applied, herald::ports::Applied::Applied(_)));
    }
    assert_eq!(
        deliver(&env, callback(&format!("mid={id}&a=3"), &p, &token, None)).await,
        200
    );
    let view = status_of(&env, &id).await;
    assert_eq!(
        (
            view["status"].as_str(),
            view["attempts"].as_u64(),
            view["error_code"].as_u64()
        ),
        (Some("undelivered"), Some(3), Some(30003))
    );
}

#[tokio::test]
async fn duplicates_change_nothing_and_still_answer_200() {
    let env = TestEnv::start().await;
    let (id, sid) = send(&env).await;
    let q = format!("mid={id}&a=1");
    let token = env.creds.auth_token.expose().clone();
    assert_eq!(
        deliver(
            &env,
            callback(&q, &status_params(&sid, "sent"), &token, None)
        )
        .await,
        200
    );
    let events = env.store.count_events().await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            deliver(
                &env,
                callback(&q, &status_params(&sid, "sent"), &token, None)
            )
            .await,
            200
        );
    }
    assert_eq!(env.store.count_events().await.unwrap(), events);
    assert_eq!(status_of(&env, &id).await["status"], "sent");
}

#[tokio::test]
async fn missing_or_wrong_signatures_are_403_and_write_nothing() {
    let env = TestEnv::start().await;
    let (id, sid) = send(&env).await;
    let q = format!("mid={id}&a=1");
    let events = env.store.count_events().await.unwrap();
    let params = status_params(&sid, "delivered");

    let unsigned = request(
        "POST",
        &format!("{ROUTE}?{q}"),
        &[("content-type", "application/x-www-form-urlencoded")],
        form(&params).as_bytes(),
    );
    let resp = webhook_receiver::handle(&env.services, unsigned)
        .await
        .unwrap();
    let (status, problem) = read(&resp);
    assert_eq!(status, 403);
    assert_eq!(problem["type"], "urn:herald:problem:invalid-signature");

    // Signed with another token.
    assert_eq!(
        deliver(&env, callback(&q, &params, "not-the-token", None)).await,
        403
    );
    // Signed, then a parameter changed.
    let token = env.creds.auth_token.expose().clone();
    let good = signature::compute(
        &token,
        &format!("{WEBHOOK_BASE}{ROUTE}?{q}"),
        params.iter().copied(),
    );
    let mut tampered = params.clone();
    tampered[4] = ("MessageStatus", "failed");
    let req = request(
        "POST",
        &format!("{ROUTE}?{q}"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-twilio-signature", &good),
        ],
        form(&tampered).as_bytes(),
    );
    assert_eq!(deliver(&env, req).await, 403);
    // Signed for another message id.
    let other = callback(
        &q,
        &params,
        &token,
        Some(&format!("{WEBHOOK_BASE}{ROUTE}?mid=msg_other&a=1")),
    );
    assert_eq!(deliver(&env, other).await, 403);

    assert_eq!(env.store.count_events().await.unwrap(), events);
    assert_eq!(status_of(&env, &id).await["status"], "queued");
}

#[tokio::test]
async fn a_url_signed_with_the_default_port_is_accepted() {
    let env = TestEnv::start().await;
    let (id, sid) = send(&env).await;
    let q = format!("mid={id}&a=1");
    let token = env.creds.auth_token.expose().clone();
    let with_port = format!(
        "{}{ROUTE}?{q}",
        WEBHOOK_BASE.replace(".test/", ".test:443/")
    );
    assert_eq!(
        deliver(
            &env,
            callback(&q, &status_params(&sid, "sent"), &token, Some(&with_port))
        )
        .await,
        200
    );
    assert_eq!(status_of(&env, &id).await["status"], "sent");
}

#[tokio::test]
async fn a_valid_callback_for_an_unknown_message_is_an_orphan_event() {
    let env = TestEnv::start().await;
    let token = env.creds.auth_token.expose().clone();
    let sid = "SM0123456789abcdef0123456789abcdef";
    let q = "mid=msg_01jz0000000000000000000000&a=1";
    assert_eq!(
        deliver(
            &env,
            callback(q, &status_params(sid, "delivered"), &token, None)
        )
        .await,
        200
    );
    let ev =
        herald::ports::EventStore::get_event(&*env.services.events, &format!("ms:{sid}:delivered"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(ev.kind, herald::domain::EventKind::OrphanCallback);
    assert_eq!(ev.subject, herald::domain::Subject::orphan());
    assert_eq!(env.store.count_messages().await.unwrap(), 0);
}

#[tokio::test]
async fn events_never_hold_the_numbers_or_body() {
    let env = TestEnv::start().await;
    let (id, sid) = send(&env).await;
    let token = env.creds.auth_token.expose().clone();
    assert_eq!(
        deliver(
            &env,
            callback(
                &format!("mid={id}&a=1"),
                &status_params(&sid, "delivered"),
                &token,
                None
            )
        )
        .await,
        200
    );
    let ev =
        herald::ports::EventStore::get_event(&*env.services.events, &format!("ms:{sid}:delivered"))
            .await
            .unwrap()
            .unwrap();
    let text = serde_json::to_string(&ev).unwrap();
    assert!(
        !text.contains("4155552671") && !text.contains("5005550006") && !text.contains("\"hi\""),
        "{text}"
    );
}

/// A sender died after Twilio accepted A's message, before registering its SID; A's signed
/// status callback names A and its attempt, so it registers the SID as A's. B, an identical
/// alert whose attempt was answered 500 at the same moment, reconciles next: A's message is
/// A's, and B sends its own instead of reporting A's delivery as its own.
#[tokio::test]
async fn a_reported_sid_is_its_record_s_and_never_adopted_by_an_identical_alert() {
    let env = TestEnv::start().await;
    let body = json!({"to": "+14155552671", "body": "hi"});
    let post = |svc: std::sync::Arc<herald::service::Services>| {
        let body = body.clone();
        async move {
            let resp = send_sms::handle(&svc, json_request("POST", "/v1/messages", &body))
                .await
                .unwrap();
            read(&resp)
        }
    };
    env.sim.set_faults(twilio_sim::Faults {
        rate_500: 1.0,
        ..Default::default()
    });
    let (status, b) = post(env.services.clone()).await;
    assert_eq!(status, 202, "{b}");
    let b = b["id"].as_str().unwrap().to_owned();
    env.sim.set_faults(twilio_sim::Faults::default());
    // A's sender dies once Twilio accepted it: its SID is not registered by the send.
    let (_, a) = post(env.services_with_chaos(0.0, 1.0)).await;
    let a = a["id"].as_str().unwrap().to_owned();
    let a_sid = env.sim.messages()[0].sid.clone();
    let token = env.creds.auth_token.expose().clone();
    let p = status_params(&a_sid, "sent");
    assert_eq!(
        deliver(&env, callback(&format!("mid={a}&a=1"), &p, &token, None)).await,
        200
    );

    env.clock.advance(10_000);
    let svc = env.services.clone();
    herald::test_env::drain(&env.retry_queue, 61, |e| {
        let svc = svc.clone();
        async move { herald::delivery::handle_sqs_batch(&svc, e).await }
    })
    .await;
    let b_view = status_of(&env, &b).await;
    let b_sid = b_view["twilio_sid"]
        .as_str()
        .expect("B was sent")
        .to_owned();
    assert_ne!(b_sid, a_sid, "B holds its own Twilio message, not A's");
    assert_eq!(env.sim.creates_for("+14155552671"), 2, "one per alert");
}

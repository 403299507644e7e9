//! Auth-token rotation at the webhook receiver: after a promotion, callbacks signed with the new
//! token pass (the secret is read again at once), callbacks signed with the previous token pass
//! only within the grace window the secret names (time from the injected clock), then are
//! refused with 403.

use herald::Secret;
use herald::test_env::{TestEnv, WEBHOOK_BASE, json_request, read, request};
use herald::twilio::signature;
use serde_json::json;

const ROUTE: &str = "/webhooks/twilio/message-status";

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
    (
        answer["id"].as_str().unwrap().to_owned(),
        env.sim.messages()[0].sid.clone(),
    )
}

async fn callback(env: &TestEnv, id: &str, sid: &str, status: &str, token: &str) -> u16 {
    let query = format!("mid={id}&a=1");
    let params = [
        ("AccountSid", env.creds.account_sid.as_str()),
        ("MessageSid", sid),
        ("MessageStatus", status),
    ];
    let url = format!("{WEBHOOK_BASE}{ROUTE}?{query}");
    let sig = signature::compute(token, &url, params.iter().copied());
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let req = request(
        "POST",
        &format!("{ROUTE}?{query}"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", &sig),
        ],
        body.as_bytes(),
    );
    webhook_receiver::handle(&env.services, req)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_previous_token_passes_only_within_its_grace_window() {
    let env = TestEnv::start().await;
    let (id, sid) = send(&env).await;
    let old = env.creds.auth_token.expose().clone();
    let grace_ms = 60_000;
    let now = herald::ports::Clock::now_ms(&*env.clock);
    // finishSecret stored the new document, then Twilio promoted the new token.
    let mut rotated = env.creds.clone();
    rotated.auth_token = Secret::new("new-primary-token".into());
    rotated.previous_auth_token = Some(Secret::new(old.clone()));
    rotated.previous_valid_until_ms = Some(now + grace_ms);
    env.secrets.set(rotated);

    // The services still cache the old document: the new token's signature makes them read
    // the secret again, once.
    assert_eq!(
        callback(&env, &id, &sid, "sent", "new-primary-token").await,
        200
    );
    // Signed by Twilio just before the promotion, arriving after: within the window.
    assert_eq!(callback(&env, &id, &sid, "sent", &old).await, 200);
    env.clock.advance(grace_ms - 1);
    assert_eq!(callback(&env, &id, &sid, "delivered", &old).await, 200);
    env.clock.advance(1);
    assert_eq!(
        callback(&env, &id, &sid, "delivered", &old).await,
        403,
        "after the grace window the old token is refused"
    );
    assert_eq!(
        callback(&env, &id, &sid, "delivered", "new-primary-token").await,
        200
    );
    assert_eq!(
        callback(&env, &id, &sid, "delivered", "never-a-token").await,
        403
    );
}

#[tokio::test]
async fn without_a_window_the_previous_token_is_refused() {
    let env = TestEnv::start().await;
    let (id, sid) = send(&env).await;
    let old = env.creds.auth_token.expose().clone();
    let mut rotated = env.creds.clone();
    rotated.auth_token = Secret::new("new-primary-token".into());
    rotated.previous_auth_token = Some(Secret::new(old.clone()));
    rotated.previous_valid_until_ms = None;
    env.secrets.set(rotated);
    assert_eq!(
        callback(&env, &id, &sid, "sent", "new-primary-token").await,
        200
    );
    assert_eq!(callback(&env, &id, &sid, "delivered", &old).await, 403);
}

//! What the retry path's tests share: the API send, the stored record, the retry queue run as
//! its event source would. (Each test file uses part of it.)
#![allow(dead_code)]

use std::sync::Arc;

use herald::domain::{Message, MessageStatus};
use herald::service::Services;
use herald::test_env::{TestEnv, drain, post_json};
use serde_json::json;

/// The alert's text.
pub const BODY: &str = "Pager: db-1 is down";
/// Visibility timeout of the test event source: longer than the attempt lease.
pub const VISIBILITY: u32 = herald::test_env::RETRY_VISIBILITY_SECS;

/// `POST /v1/messages` of [`BODY`] to `to`.
pub async fn post(env: &TestEnv, to: &str) -> (u16, serde_json::Value) {
    post_with(&env.services, to).await
}

/// [`post`] through `svc` (services that may die).
pub async fn post_with(svc: &Services, to: &str) -> (u16, serde_json::Value) {
    let body = json!({"to": to, "body": BODY});
    post_json(send_sms::handle, svc, "/v1/messages", &body).await
}

/// `POST /v1/messages` of `body` to `to`, created (201): its id.
pub async fn send(env: &TestEnv, to: &str, body: &str) -> String {
    let body = json!({"to": to, "body": body});
    let (status, answer) = post_json(send_sms::handle, &env.services, "/v1/messages", &body).await;
    assert_eq!(status, 201, "{answer}");
    answer["id"].as_str().unwrap().to_owned()
}

/// The stored message `id`.
pub async fn record(env: &TestEnv, id: &str) -> Message {
    env.record(id).await
}

/// Asserts the message `id` is queued holding Twilio's first message (adopted) and that Twilio
/// created one message to `to` (never sent twice); returns the record.
pub async fn assert_adopted_once(env: &TestEnv, id: &str, to: &str) -> Message {
    let m = record(env, id).await;
    assert_eq!(m.status, MessageStatus::Queued);
    assert_eq!(
        m.twilio_sid.as_deref(),
        Some(env.sim.messages()[0].sid.as_str()),
        "adopted"
    );
    assert_eq!(env.sim.creates_for(to), 1, "never sent twice");
    m
}

/// Runs the retry queue until it is empty; returns how many jobs ran.
pub async fn run_retries(env: &TestEnv) -> usize {
    env.run_retries(|svc, e| async move { retry_processor::handle(&svc, e).await })
        .await
}

/// [`run_retries`] through `svc` (services that may die) instead of the environment's.
pub async fn run_retries_with(env: &TestEnv, svc: &Arc<Services>) -> usize {
    drain(&env.retry_queue, VISIBILITY, |e| {
        let svc = svc.clone();
        async move { retry_processor::handle(&svc, e).await }
    })
    .await
}

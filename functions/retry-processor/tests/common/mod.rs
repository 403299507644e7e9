//! What the retry path's tests share: the API send, the stored record, the retry queue run as
//! its event source would. (Each test file uses part of it.)
#![allow(dead_code)]

use herald::service::Services;
use herald::test_env::{TestEnv, post_json};
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
pub async fn record(env: &TestEnv, id: &str) -> herald::domain::Message {
    env.record(id).await
}

/// Runs the retry queue until it is empty; returns how many jobs ran.
pub async fn run_retries(env: &TestEnv) -> usize {
    env.run_retries(|svc, e| async move { retry_processor::handle(&svc, e).await })
        .await
}

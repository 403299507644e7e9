//! What place-call's adoption and sweep tests share: the API call, the stored call and the retry
//! queue run as its event source would. (Each test file uses part of it.)
#![allow(dead_code)]

use herald::domain::Call;
use herald::service::Services;
use herald::test_env::{TestEnv, post_json};
use serde_json::json;

/// `POST /v1/calls` of `message` to `to` through `svc`.
pub async fn place_with(svc: &Services, to: &str, message: &str) -> (u16, serde_json::Value) {
    let body = json!({"to": to, "message": message});
    post_json(place_call::handle, svc, "/v1/calls", &body).await
}

/// The stored call `id`.
pub async fn call(env: &TestEnv, id: &str) -> Call {
    env.record(id).await
}

/// Runs the retry queue through place-call until it is empty; returns how many jobs ran.
pub async fn run_retries(env: &TestEnv) -> usize {
    env.run_retries(|svc, e| async move { place_call::handle_sqs(&svc, e).await })
        .await
}

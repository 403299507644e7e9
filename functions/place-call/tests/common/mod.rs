//! What place-call's adoption and sweep tests share: the stored call and the retry queue run as
//! its event source would. (Each test file uses part of it.)
#![allow(dead_code)]

use herald::domain::Call;
use herald::test_env::TestEnv;

/// The stored call `id`.
pub async fn call(env: &TestEnv, id: &str) -> Call {
    env.record(id).await
}

/// Runs the retry queue through place-call until it is empty; returns how many jobs ran.
pub async fn run_retries(env: &TestEnv) -> usize {
    env.run_retries(|svc, e| async move { place_call::handle_sqs(&svc, e).await })
        .await
}

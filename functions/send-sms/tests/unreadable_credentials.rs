//! Unreadable Twilio credentials (the secret refused to the function's role, or not set yet)
//! answer 503 before any rate-limit unit is taken: requests refused for them use up none of the
//! caller's per-minute budget, the number's or the country's, nor the number's budget of codes.
//! Once the credentials can be read again, every unit is still there.

use std::sync::Arc;

use herald::service::Services;
use herald::test_env::{TestEnv, read, request};
use serde_json::{Value, json};

async fn post(svc: &Arc<Services>, path: &str, body: &Value) -> (u16, Value) {
    let req = request(
        "POST",
        path,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    let resp = if path == "/v1/calls" {
        place_call::handle(svc, req).await.unwrap()
    } else {
        send_sms::handle(svc, req).await.unwrap()
    };
    read(&resp)
}

/// The budgets a test makes tight (two each), the others left loose.
#[derive(Debug, Clone, Copy)]
enum Tight {
    /// The caller's, per endpoint and minute.
    Caller,
    /// The number's per hour and day, the country's per hour, and the codes to one number per
    /// window.
    Recipient,
}

async fn tight_env(tight: Tight) -> TestEnv {
    match tight {
        Tight::Caller => TestEnv::start_with(&[("CALLER_RATE_LIMIT_PER_MINUTE", "2")]).await,
        Tight::Recipient => {
            TestEnv::start_with(&[
                ("RECIPIENT_LIMIT_PER_HOUR", "2"),
                ("RECIPIENT_LIMIT_PER_DAY", "2"),
                ("COUNTRY_LIMIT_PER_HOUR", "2"),
                ("OTP_MAX_SENDS", "2"),
            ])
            .await
        }
    }
}

/// While the credentials are unreadable, five requests to `path` answer 503; then, readable
/// again, two go through and the third is refused by a limit (the budgets were all there).
async fn refused_requests_take_no_unit(path: &str, body: Value, sent: impl Fn(&TestEnv) -> usize) {
    for tight in [Tight::Caller, Tight::Recipient] {
        let env = tight_env(tight).await;
        env.secrets.withdraw();
        for _ in 0..5 {
            let (status, problem) = post(&env.services, path, &body).await;
            assert_eq!(status, 503, "{path}, {tight:?}: {problem}");
            assert_eq!(problem["type"], "urn:herald:problem:unavailable");
        }
        assert_eq!(sent(&env), 0);
        env.secrets.set(env.creds.clone());
        // The cache holds no credentials (they could not be read): the next request reads them.
        for i in 0..2 {
            let (status, answer) = post(&env.services, path, &body).await;
            assert_eq!(
                status, 201,
                "{path}, {tight:?}: request {i} after the outage: {answer}"
            );
        }
        assert_eq!(sent(&env), 2, "{path}, {tight:?}");
        let (status, problem) = post(&env.services, path, &body).await;
        assert_eq!(
            status, 429,
            "{path}, {tight:?}: the limits still hold: {problem}"
        );
    }
}

#[tokio::test]
async fn a_send_refused_for_unreadable_credentials_takes_no_rate_limit_unit() {
    refused_requests_take_no_unit(
        "/v1/messages",
        json!({"to": "+14155552701", "body": "Disk full"}),
        |env| env.sim.creates_for("+14155552701"),
    )
    .await;
}

#[tokio::test]
async fn a_call_refused_for_unreadable_credentials_takes_no_rate_limit_unit() {
    refused_requests_take_no_unit(
        "/v1/calls",
        json!({"to": "+14155552702", "message": "Wake up"}),
        |env| env.sim.creates_for_call("+14155552702"),
    )
    .await;
}

#[tokio::test]
async fn a_verification_refused_for_unreadable_credentials_takes_no_unit_or_code() {
    refused_requests_take_no_unit("/v1/verifications", json!({"to": "+14155552703"}), |env| {
        env.sim.creates_for("+14155552703")
    })
    .await;
}

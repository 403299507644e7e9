//! One-time codes: sent by SMS, checked, locked after too many wrong codes, gone once expired
//! or approved, limited per number; and the code is in no log line, no record and no answer.
//! (This binary captures every log line, so its tests share one subscriber.)

use std::io::Write;
use std::sync::{Arc, Mutex};

use herald::test_env::{TestEnv, json_request, read};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();

fn logs() -> String {
    let c = LOGS.get_or_init(|| {
        let c = Capture::default();
        let w = c.clone();
        herald::telemetry::init_with_level(move || w.clone(), "debug");
        c
    });
    String::from_utf8(c.0.lock().unwrap().clone()).unwrap()
}

async fn post(env: &TestEnv, path: &str, body: Value) -> (u16, Value) {
    let resp = send_sms::handle(&env.services, json_request("POST", path, &body))
        .await
        .unwrap();
    read(&resp)
}

/// The code in the last SMS the simulator got for `to`.
fn code_sent_to(env: &TestEnv, to: &str) -> String {
    let body = env
        .sim
        .messages()
        .into_iter()
        .rev()
        .find(|m| m.to == to)
        .expect("an SMS")
        .body;
    body.split_whitespace()
        .find(|w| w.trim_end_matches('.').chars().all(|c| c.is_ascii_digit()) && w.len() >= 4)
        .expect("a code in the SMS")
        .trim_end_matches('.')
        .to_owned()
}

#[tokio::test]
async fn a_code_is_sent_checked_and_then_gone() {
    logs();
    let env = TestEnv::start().await;
    let (status, started) = post(&env, "/v1/verifications", json!({"to": "+14155552671"})).await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["status"], "pending");
    assert_eq!(started["to"], "+*******2671");
    let id = started["id"].as_str().unwrap().to_owned();
    let code = code_sent_to(&env, "+14155552671");
    assert_eq!(code.len(), 6);
    let check = format!("/v1/verifications/{id}/check");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, answer) = post(&env, &check, json!({"code": wrong})).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("pending")),
        "{answer}"
    );
    assert_eq!(answer["checks_left"], 4);
    let (status, answer) = post(&env, &check, json!({"code": code})).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("approved")),
        "{answer}"
    );
    let (status, answer) = post(&env, &check, json!({"code": code})).await;
    assert_eq!(status, 410, "{answer}");
    assert_eq!(answer["type"], "urn:herald:problem:verification-gone");
    // Another caller cannot check it.
    let other = herald::test_env::request_as(
        Some("mallory"),
        "POST",
        &check,
        &[],
        json!({"code": code}).to_string().as_bytes(),
    );
    assert_eq!(
        send_sms::handle(&env.services, other)
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn a_code_expires() {
    logs();
    let env = TestEnv::start_with(&[("OTP_LENGTH", "8")]).await;
    let (_, started) = post(&env, "/v1/verifications", json!({"to": "+14155552672"})).await;
    let code = code_sent_to(&env, "+14155552672");
    assert_eq!(code.len(), 8);
    env.clock.advance(10 * 60_000);
    let (status, answer) = post(
        &env,
        &format!(
            "/v1/verifications/{}/check",
            started["id"].as_str().unwrap()
        ),
        json!({"code": code}),
    )
    .await;
    assert_eq!(status, 410, "{answer}");
}

#[tokio::test]
async fn five_wrong_codes_lock_it() {
    logs();
    let env = TestEnv::start().await;
    let (_, started) = post(&env, "/v1/verifications", json!({"to": "+14155552673"})).await;
    let code = code_sent_to(&env, "+14155552673");
    let check = format!(
        "/v1/verifications/{}/check",
        started["id"].as_str().unwrap()
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for i in 1..=5 {
        let (status, answer) = post(&env, &check, json!({"code": wrong})).await;
        if i < 5 {
            assert_eq!(status, 200, "{answer}");
        } else {
            assert_eq!(status, 429, "{answer}");
            assert_eq!(answer["type"], "urn:herald:problem:verification-locked");
        }
    }
    let (status, _) = post(&env, &check, json!({"code": code})).await;
    assert_eq!(status, 429, "the right code no longer helps");
}

#[tokio::test]
async fn at_most_five_codes_per_number_per_ten_minutes() {
    logs();
    let env = TestEnv::start().await;
    for _ in 0..5 {
        let (status, a) = post(&env, "/v1/verifications", json!({"to": "+14155552674"})).await;
        assert_eq!(status, 201, "{a}");
    }
    let (status, answer) = post(&env, "/v1/verifications", json!({"to": "+14155552674"})).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["type"], "urn:herald:problem:verification-send-limit");
    assert_eq!(env.sim.messages().len(), 5, "the sixth code was not sent");
    env.clock.advance(10 * 60_000);
    assert_eq!(
        post(&env, "/v1/verifications", json!({"to": "+14155552674"}))
            .await
            .0,
        201
    );
}

#[tokio::test]
async fn codes_are_in_no_log_record_or_answer() {
    logs();
    let env = TestEnv::start_with(&[("OTP_LENGTH", "10")]).await;
    let (_, started) = post(&env, "/v1/verifications", json!({"to": "+14155552675"})).await;
    let code = code_sent_to(&env, "+14155552675");
    let id = started["id"].as_str().unwrap().to_owned();
    let check = format!("/v1/verifications/{id}/check");
    let (_, wrong) = post(&env, &check, json!({"code": "0123456789"})).await;
    let (_, approved) = post(&env, &check, json!({"code": code})).await;
    assert_eq!(approved["status"], "approved");
    let view = send_sms::handle(
        &env.services,
        herald::test_env::request("GET", &format!("/v1/verifications/{id}"), &[], b""),
    )
    .await
    .unwrap();
    let (_, view) = read(&view);
    for answer in [&started, &wrong, &approved, &view] {
        assert!(!answer.to_string().contains(&code), "{answer}");
    }
    let logs = logs();
    assert!(logs.contains(&id), "the run logged about this verification");
    assert!(!logs.contains(&code), "the code is in the logs");
    let dump = env.store.dump_values().await.unwrap();
    assert!(
        !dump
            .iter()
            .any(|v| v.windows(code.len()).any(|w| w == code.as_bytes())),
        "the code is in the store"
    );
}

//! `POST /v1/verifications` that dies half-way (a Lambda timeout, a killed process), retried
//! with its `Idempotency-Key` once the key's lease has passed: one verification, one SMS with
//! its code (never a second one), the first try's verification id in the answer, and the code
//! in that SMS checks. Against the embedded adapters and the Twilio simulator, the death
//! injected at a [`CrashPoint`].

use herald::domain::VerificationId;
use herald::ports::VerificationStore;
use herald::service::CrashPoint;
use herald::test_env::{TestEnv, read, request_as};
use serde_json::{Value, json};

/// Past the idempotency key's lease (and the attempt lease: both `ATTEMPT_LEASE_SECS`, 60 s).
const PAST_LEASE_MS: i64 = 61_000;

const TO: &str = "+14155552681";

fn post(path: &str, body: &Value, key: Option<&str>) -> lambda_http::Request {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    request_as(
        Some("alice"),
        "POST",
        path,
        &headers,
        body.to_string().as_bytes(),
    )
}

/// The code in the SMS the simulator got for [`TO`] (exactly one).
fn the_code(env: &TestEnv) -> String {
    let sent: Vec<_> = env
        .sim
        .messages()
        .into_iter()
        .filter(|m| m.to == TO)
        .collect();
    assert_eq!(sent.len(), 1, "one code SMS");
    sent[0]
        .body
        .split_whitespace()
        .map(|w| w.trim_end_matches('.'))
        .find(|w| w.len() >= 4 && w.chars().all(|c| c.is_ascii_digit()))
        .expect("a code in the SMS")
        .to_owned()
}

/// The first try dies at `point` (and, with `after_twilio`, its sender right after Twilio
/// accepted the SMS, before the result is recorded); the retry with the key, past the lease,
/// answers `201` with the verification the first try recorded, and nothing is sent twice.
async fn verification_dies_and_is_retried(point: CrashPoint, after_twilio: bool) {
    let env = TestEnv::start().await;
    let crashing = env.services_with_crash(point, 0.0, if after_twilio { 1.0 } else { 0.0 });
    let body = json!({"to": TO, "service": "Acme"});
    let started_at = herald::ports::Clock::now_ms(&*env.clock);
    let died = send_sms::handle(&crashing, post("/v1/verifications", &body, Some("otp-k"))).await;
    assert!(died.is_err(), "{point:?}: the invocation dies");
    assert_eq!(env.store.count_verifications().await.unwrap(), 1);
    let reached_twilio = point == CrashPoint::Answered;
    assert_eq!(
        env.sim.creates_for(TO),
        usize::from(reached_twilio),
        "{point:?}"
    );

    // While the key's lease runs, the same request is 409 and sends nothing.
    let resp = send_sms::handle(
        &env.services,
        post("/v1/verifications", &body, Some("otp-k")),
    )
    .await
    .unwrap();
    assert_eq!(read(&resp).0, 409);

    env.clock.advance(PAST_LEASE_MS);
    let resp = send_sms::handle(
        &env.services,
        post("/v1/verifications", &body, Some("otp-k")),
    )
    .await
    .unwrap();
    let (status, answer) = read(&resp);
    assert_eq!(status, 201, "{point:?}: {answer}");
    assert!(!resp.headers().contains_key("idempotent-replayed"));
    let id: VerificationId = answer["id"].as_str().unwrap().parse().unwrap();
    let v = env.store.get_verification(&id).await.unwrap().unwrap();
    assert_eq!(
        v.created_at_ms, started_at,
        "{point:?}: the verification the first try recorded"
    );
    assert_eq!(env.store.count_verifications().await.unwrap(), 1);
    assert_eq!(
        answer["message_id"],
        v.message_id.as_ref().unwrap().as_str()
    );

    // The sweeper and the queues find nothing left to send.
    herald::delivery::sweep(&env.services, 30_000, 500)
        .await
        .unwrap();
    for queue in [&env.send_queue, &env.retry_queue] {
        let svc = env.services.clone();
        herald::test_env::drain(queue, 61, |e| {
            let svc = svc.clone();
            async move { send_sms::handle_sqs(&svc, e).await }
        })
        .await;
    }
    assert_eq!(env.store.count_messages().await.unwrap(), 1, "{point:?}");
    assert_eq!(env.sim.creates_for(TO), 1, "{point:?}: one code SMS in all");

    // Replayed now, and the code in the one SMS checks.
    let replay = send_sms::handle(
        &env.services,
        post("/v1/verifications", &body, Some("otp-k")),
    )
    .await
    .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(read(&replay), (201, answer));
    let code = the_code(&env);
    let check = send_sms::handle(
        &env.services,
        post(
            &format!("/v1/verifications/{id}/check"),
            &json!({"code": code}),
            None,
        ),
    )
    .await
    .unwrap();
    let (status, checked) = read(&check);
    assert_eq!(
        (status, checked["status"].as_str()),
        (200, Some("approved"))
    );
}

#[tokio::test]
async fn a_verification_that_dies_after_recording_it_sends_one_code_when_retried() {
    verification_dies_and_is_retried(CrashPoint::Recorded(1), false).await;
}

#[tokio::test]
async fn a_verification_that_dies_after_recording_its_sms_sends_it_once_when_retried() {
    verification_dies_and_is_retried(CrashPoint::Recorded(2), false).await;
}

#[tokio::test]
async fn a_verification_that_dies_after_twilio_accepted_its_sms_sends_no_second_code() {
    verification_dies_and_is_retried(CrashPoint::Answered, true).await;
}

#[tokio::test]
async fn a_verification_that_dies_before_its_answer_is_kept_sends_no_second_code() {
    verification_dies_and_is_retried(CrashPoint::Answered, false).await;
}

#[tokio::test]
async fn verifications_without_a_key_or_under_other_keys_are_separate() {
    let env = TestEnv::start().await;
    let body = json!({"to": TO});
    let mut ids = Vec::new();
    for key in [Some("a"), Some("b"), None, None] {
        let resp = send_sms::handle(&env.services, post("/v1/verifications", &body, key))
            .await
            .unwrap();
        let (status, answer) = read(&resp);
        assert_eq!(status, 201, "{answer}");
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no id repeats");
    assert_eq!(env.store.count_verifications().await.unwrap(), 4);
    assert_eq!(env.sim.creates_for(TO), 4);
}

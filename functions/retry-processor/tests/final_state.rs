//! Nothing stays open forever: a message Twilio leaves at `sent` with no carrier receipt ends
//! `unconfirmed` once FINAL_STATE_AFTER_SECS has passed since Twilio took it (and not before),
//! visible with its timeline; a late genuine final report still moves it, and a late failure is
//! recorded without sending again. Embedded adapters, the simulator and a manual clock.

use herald::delivery::{self, Report};
use herald::domain::{MessageId, MessageStatus};
use herald::test_env::{TestEnv, read, request};
use serde_json::{Value, json};

mod common;
use common::send;

const STUCK: &str = "+14155550123";
const GRACE_MS: i64 = retry_processor::SWEEP_GRACE_MS;
const FINAL_AFTER_SECS: i64 = 3600;

/// An environment whose callbacks go to a closed port (Herald never hears from Twilio) and
/// whose records are final after an hour.
async fn env() -> TestEnv {
    let env = TestEnv::start_losing_callbacks(&[("FINAL_STATE_AFTER_SECS", "3600")]).await;
    env.sim.set_outcome(STUCK, twilio_sim::Outcome::StaysSent);
    env
}

fn now(env: &TestEnv) -> i64 {
    herald::ports::Clock::now_ms(&*env.clock)
}

/// Sends a message and applies Twilio's `sent` report to it (the final one never comes).
async fn sent_message(env: &TestEnv, body: &str) -> MessageId {
    let id: MessageId = send(env, STUCK, body).await.parse().unwrap();
    env.sim.flush_callbacks().await;
    report(env, &id, MessageStatus::Sent, None).await;
    id
}

async fn report(env: &TestEnv, id: &MessageId, status: MessageStatus, code: Option<u32>) {
    let m = env.services.messages.get_record(id).await.unwrap().unwrap();
    delivery::apply_report(
        &env.services,
        id,
        &Report {
            attempt: m.attempts.attempt,
            status,
            twilio_sid: m.twilio_sid.clone(),
            error_code: code,
            at_ms: now(env),
        },
    )
    .await
    .unwrap();
}

async fn view(env: &TestEnv, id: &MessageId) -> Value {
    let resp = send_sms::handle(
        &env.services,
        request("GET", &format!("/v1/messages/{id}"), &[], b""),
    )
    .await
    .unwrap();
    let (status, v) = read(&resp);
    assert_eq!(status, 200, "{v}");
    v
}

async fn sweep(env: &TestEnv) {
    delivery::sweep(&env.services, GRACE_MS, 500).await.unwrap();
}

fn has_event(v: &Value, kind: &str) -> bool {
    v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == kind)
}

#[tokio::test]
async fn a_message_twilio_never_confirms_ends_unconfirmed_after_the_configured_time() {
    let env = env().await;
    let id = sent_message(&env, "Pager: db-1 is down").await;
    let twilio_messages = env.sim.messages().len();

    // Well past the sweeper's grace, short of the final-state time: asked about, still sent.
    env.clock.advance(FINAL_AFTER_SECS * 1000 - 60_000);
    sweep(&env).await;
    let v = view(&env, &id).await;
    assert_eq!(v["status"], "sent", "{v}");
    assert!(!has_event(&v, "unconfirmed"), "{v}");

    env.clock.advance(120_000);
    sweep(&env).await;
    let v = view(&env, &id).await;
    assert_eq!(v["status"], "unconfirmed", "{v}");
    assert!(has_event(&v, "unconfirmed"), "{v}");
    assert_eq!(v["attempts"], 1, "{v}");

    // Final: later sweeps leave it, and nothing was sent again.
    env.clock.advance(FINAL_AFTER_SECS * 1000);
    sweep(&env).await;
    assert_eq!(view(&env, &id).await["status"], "unconfirmed");
    assert_eq!(env.sim.messages().len(), twilio_messages, "sent once");

    // Twilio's genuine final report, however late, is the truth.
    report(&env, &id, MessageStatus::Delivered, None).await;
    assert_eq!(view(&env, &id).await["status"], "delivered");
}

#[tokio::test]
async fn a_late_failure_after_unconfirmed_is_recorded_and_never_sent_again() {
    let env = env().await;
    let id = sent_message(&env, "Pager: disk full on db-2").await;
    env.clock.advance(FINAL_AFTER_SECS * 1000 + GRACE_MS * 2);
    sweep(&env).await;
    assert_eq!(view(&env, &id).await["status"], "unconfirmed");
    let twilio_messages = env.sim.messages().len();

    report(&env, &id, MessageStatus::Undelivered, Some(30003)).await;
    let v = view(&env, &id).await;
    assert_eq!(
        (&v["status"], &v["attempts"]),
        (&json!("undelivered"), &json!(1)),
        "{v}"
    );
    env.clock.advance(GRACE_MS * 20);
    sweep(&env).await;
    let m = env
        .services
        .messages
        .get_record(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.status, MessageStatus::Undelivered);
    assert_eq!(
        env.sim.messages().len(),
        twilio_messages,
        "never sent again"
    );
}

//! The retry path on the embedded adapters with the Twilio simulator and a manual clock: every
//! accepted message reaches a final state, and no job, duplicate, redelivery or crash ever makes
//! Twilio accept a message twice.

use herald::delivery::Job;
use herald::domain::{MessageId, MessageStatus};
use herald::ports::{Clock, Queue};
use herald::test_env::{TestEnv, faults_500, faults_lost_answer, read};

mod common;
use common::{VISIBILITY, assert_adopted_once, post, record, run_retries, run_retries_with};

const TO: &str = "+14155550100";

/// Moves time past every delay and lease, then runs the retry queue.
async fn later(env: &TestEnv, ms: i64) -> usize {
    env.clock.advance(ms);
    run_retries(env).await
}

#[tokio::test]
async fn a_transient_failure_is_retried_after_its_backoff_and_sent_once() {
    let env = TestEnv::start().await;
    let (status, answer) = env.with_faults(faults_500(), post(&env, TO)).await;
    assert_eq!(status, 202);
    let id = answer["id"].as_str().unwrap().to_owned();
    let m = record(&env, &id).await;
    assert_eq!((m.status, m.attempts.attempt), (MessageStatus::Retrying, 2));
    let due = m.attempts.next_attempt_at_ms.unwrap() - env.clock.now_ms();
    assert!(
        (1000..=5000).contains(&due),
        "first backoff within [1 s, base 5 s]: {due}"
    );
    // Nothing happens before the delay.
    assert_eq!(run_retries(&env).await, 0);
    assert_eq!(later(&env, due + 1000).await, 1);
    let m = record(&env, &id).await;
    assert_eq!((m.status, m.attempts.attempt), (MessageStatus::Queued, 2));
    assert!(m.twilio_sid.is_some() && m.error_code.is_none());
    assert_eq!(env.sim.creates_for(TO), 1);
}

#[tokio::test]
async fn duplicated_and_concurrent_jobs_send_once() {
    let env = TestEnv::start().await;
    let (_, answer) = env.with_faults(faults_500(), post(&env, TO)).await;
    let id: MessageId = answer["id"].as_str().unwrap().parse().unwrap();
    let job = Job::Message {
        id: id.clone(),
        attempt: 2,
        not_before_ms: None,
    }
    .to_body();
    for _ in 0..5 {
        env.retry_queue.send(&job, 0).await.unwrap();
    }
    env.clock.advance(10_000);
    // Two invocations at once over the same jobs, as two Lambda instances would.
    let (a, b) = tokio::join!(run_retries(&env), run_retries(&env));
    assert_eq!(a + b, 6);
    assert_eq!(
        env.sim.creates_for(TO),
        1,
        "one create for six jobs of one attempt"
    );
    assert_eq!(
        record(&env, &id.to_string()).await.status,
        MessageStatus::Queued
    );
    // Jobs for a stale attempt or an unknown message are acknowledged and do nothing.
    env.retry_queue
        .send(
            &Job::Message {
                id: id.clone(),
                attempt: 1,
                not_before_ms: None,
            }
            .to_body(),
            0,
        )
        .await
        .unwrap();
    env.retry_queue
        .send(
            &Job::Message {
                id: MessageId::generate(1),
                attempt: 1,
                not_before_ms: None,
            }
            .to_body(),
            0,
        )
        .await
        .unwrap();
    assert_eq!(run_retries(&env).await, 2);
    assert_eq!(env.retry_queue.depth().await.unwrap().in_flight, 0);
    assert_eq!(env.sim.creates_for(TO), 1);
}

#[tokio::test]
async fn attempts_run_out_into_failed_with_the_last_reason() {
    let env = TestEnv::start_with(&[("TWILIO_MAX_RETRIES", "2")]).await;
    env.sim.set_faults(faults_500());
    let (_, answer) = post(&env, TO).await;
    let id = answer["id"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        later(&env, i64::from(VISIBILITY) * 1000).await;
    }
    let m = record(&env, &id).await;
    assert_eq!((m.status, m.attempts.attempt), (MessageStatus::Failed, 3));
    assert_eq!(
        m.error_reason.as_deref(),
        Some("Twilio answered 500 with code 20500 (internal server error)")
    );
    assert_eq!(env.sim.creates_for(TO), 0);
    // A 500 may hide an accepted message, so each later attempt first asks Twilio (and, Twilio
    // still failing, counts as failed): one create, then two look-ups, three attempts in all.
    let methods: Vec<String> = env
        .sim
        .requests()
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, ["POST", "GET", "GET"]);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let env = TestEnv::start().await;
    env.sim.set_faults(twilio_sim::Faults {
        rate_429: 1.0,
        retry_after_secs: 120,
        ..Default::default()
    });
    let (_, answer) = post(&env, TO).await;
    let m = record(&env, answer["id"].as_str().unwrap()).await;
    assert!(m.attempts.next_attempt_at_ms.unwrap() - env.clock.now_ms() >= 120_000);
}

#[tokio::test]
async fn a_crash_after_the_claim_is_recovered_without_a_second_send() {
    let env = TestEnv::start().await;
    let (_, answer) = env.with_faults(faults_500(), post(&env, TO)).await;
    let id = answer["id"].as_str().unwrap().to_owned();
    // The first retry dies right after claiming its attempt: nothing is acknowledged.
    let crashing = env.services_with_chaos(1.0, 0.0);
    let handled = run_retries_with(&env, &crashing).await;
    env.clock.advance(10_000);
    let handled = handled + run_retries_with(&env, &crashing).await;
    assert_eq!(handled, 1);
    assert!(
        record(&env, &id).await.attempts.claimed_until_ms.is_some(),
        "claimed, then the holder died"
    );
    // The job comes back after its visibility timeout; the lease has expired: taken over.
    assert_eq!(later(&env, i64::from(VISIBILITY) * 1000).await, 1);
    let m = record(&env, &id).await;
    assert_eq!(m.status, MessageStatus::Queued);
    assert_eq!(env.sim.creates_for(TO), 1);
}

#[tokio::test]
async fn a_crash_after_twilio_accepted_is_reconciled_not_resent() {
    let env = TestEnv::start().await;
    let (_, answer) = env.with_faults(faults_500(), post(&env, TO)).await;
    let id = answer["id"].as_str().unwrap().to_owned();
    let crashing = env.services_with_chaos(0.0, 1.0);
    env.clock.advance(10_000);
    run_retries_with(&env, &crashing).await;
    assert_eq!(env.sim.creates_for(TO), 1, "Twilio has it");
    assert_eq!(
        record(&env, &id).await.status,
        MessageStatus::Retrying,
        "but the record does not know"
    );
    assert_eq!(later(&env, i64::from(VISIBILITY) * 1000).await, 1);
    assert_adopted_once(&env, &id, TO).await;
    let view = read(
        &send_sms::handle(
            &env.services,
            herald::test_env::request("GET", &format!("/v1/messages/{id}"), &[], b""),
        )
        .await
        .unwrap(),
    )
    .1;
    assert!(
        view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "submitted")
    );
}

#[tokio::test]
async fn a_timeout_after_twilio_accepted_is_reconciled_not_resent() {
    let env = TestEnv::start_impatient().await;
    let (status, answer) = env.with_faults(faults_lost_answer(), post(&env, TO)).await;
    assert_eq!(status, 202);
    let id = answer["id"].as_str().unwrap().to_owned();
    let m = record(&env, &id).await;
    assert!(
        m.attempts.ambiguous_since_ms.is_some(),
        "a timeout leaves the outcome unknown"
    );
    assert_eq!(later(&env, 10_000).await, 1);
    let m = record(&env, &id).await;
    assert_eq!(m.status, MessageStatus::Queued);
    assert_eq!(env.sim.creates_for(TO), 1);
}

#[tokio::test]
async fn unreadable_jobs_end_in_the_dead_letter_queue() {
    let env = TestEnv::start().await;
    env.retry_queue.send("{not a job", 0).await.unwrap();
    for _ in 0..6 {
        later(&env, i64::from(VISIBILITY) * 1000).await;
    }
    let depth = env.retry_queue.depth().await.unwrap();
    assert_eq!((depth.visible, depth.in_flight, depth.dead), (0, 0, 1));
    assert_eq!(
        env.retry_queue.dead_letters(10).await.unwrap()[0].body,
        "{not a job"
    );
}

#[tokio::test]
async fn waits_longer_than_the_queue_delay_limit_are_re_enqueued() {
    let env = TestEnv::start().await;
    let (_, answer) = post(&env, TO).await;
    let id: MessageId = answer["id"].as_str().unwrap().parse().unwrap();
    let due = env.clock.now_ms() + 3_600_000;
    env.retry_queue
        .send(
            &Job::Message {
                id,
                attempt: 2,
                not_before_ms: Some(due),
            }
            .to_body(),
            0,
        )
        .await
        .unwrap();
    assert_eq!(run_retries(&env).await, 1);
    let depth = env.retry_queue.depth().await.unwrap();
    assert_eq!(
        depth.delayed, 1,
        "put back with the longest delay SQS allows"
    );
}

#[tokio::test]
async fn the_sweeper_finds_a_message_whose_job_was_lost() {
    let env = TestEnv::start().await;
    let (_, answer) = env.with_faults(faults_500(), post(&env, TO)).await;
    let id = answer["id"].as_str().unwrap().to_owned();
    // Lose the job (as if the queue send had failed after the store recorded the retry).
    env.clock.advance(10_000);
    let jobs = env.retry_queue.receive(10, 60).await.unwrap();
    for j in &jobs {
        env.retry_queue.delete(&j.receipt).await.unwrap();
    }
    assert_eq!(record(&env, &id).await.status, MessageStatus::Retrying);
    env.clock.advance(retry_processor::SWEEP_GRACE_MS * 2);
    assert_eq!(retry_processor::sweep(&env.services).await.unwrap(), 1);
    assert_eq!(run_retries(&env).await, 1);
    assert_eq!(record(&env, &id).await.status, MessageStatus::Queued);
    assert_eq!(env.sim.creates_for(TO), 1);
}

/// Before, any event without `Records` swept. Only the schedule's notification does now; other
/// events fail the invocation (quoting nothing of them) and change nothing.
#[tokio::test]
async fn only_the_schedules_event_sweeps_and_other_events_are_refused() {
    let env = TestEnv::start().await;
    let (_, answer) = env.with_faults(faults_500(), post(&env, TO)).await;
    let id = answer["id"].as_str().unwrap().to_owned();
    env.clock.advance(10_000);
    for j in env.retry_queue.receive(10, 60).await.unwrap() {
        env.retry_queue.delete(&j.receipt).await.unwrap();
    }
    env.clock.advance(retry_processor::SWEEP_GRACE_MS * 2);
    let scheduled: serde_json::Value = serde_json::from_str(include_str!(
        "../../../events/retry-processor/scheduled-sweep.json"
    ))
    .unwrap();
    let mut from_rules = scheduled.clone();
    from_rules["source"] = "aws.events".into();
    let mut other_kind = scheduled.clone();
    other_kind["detail-type"] = TO.into();
    for hostile in [
        serde_json::json!({}),
        serde_json::json!({"to": TO}),
        serde_json::json!({"Records": TO}),
        serde_json::json!({"Records": [{"body": TO, "messageId": 5}]}),
        serde_json::json!([TO]),
        serde_json::json!(TO),
        from_rules,
        other_kind,
    ] {
        let error = retry_processor::invoke(&env.services, hostile.clone())
            .await
            .expect_err(&hostile.to_string())
            .to_string();
        assert!(!error.contains(TO), "{error}");
        assert!(
            error.starts_with("the event is not an SQS batch"),
            "{error}"
        );
    }
    assert!(
        env.retry_queue.receive(10, 60).await.unwrap().is_empty(),
        "nothing swept"
    );
    assert_eq!(record(&env, &id).await.status, MessageStatus::Retrying);
    let swept = retry_processor::invoke(&env.services, scheduled)
        .await
        .unwrap();
    assert_eq!(swept, serde_json::json!({"swept": 1}));
    assert_eq!(run_retries(&env).await, 1);
    assert_eq!(record(&env, &id).await.status, MessageStatus::Queued);
}

#[tokio::test]
async fn a_batch_reports_only_its_failed_jobs() {
    let env = TestEnv::start().await;
    let (_, answer) = post(&env, TO).await;
    let id: MessageId = answer["id"].as_str().unwrap().parse().unwrap();
    let jobs: Vec<herald::ports::ReceivedJob> = vec![
        herald::ports::ReceivedJob {
            message_id: "good".into(),
            receipt: "r1".into(),
            body: Job::Message {
                id,
                attempt: 1,
                not_before_ms: None,
            }
            .to_body(),
            receive_count: 1,
            sent_at_ms: 0,
        },
        herald::ports::ReceivedJob {
            message_id: "bad".into(),
            receipt: "r2".into(),
            body: "[]".into(),
            receive_count: 1,
            sent_at_ms: 0,
        },
    ];
    let resp = retry_processor::handle(&env.services, herald::sqs::event_for("retry", &jobs))
        .await
        .unwrap();
    let failed: Vec<&str> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["bad"]);
}

//! A send request that dies half-way (a Lambda timeout, a killed process), retried with its
//! `Idempotency-Key` once the key's lease has passed: nothing is recorded or sent twice, and the
//! retry answers with the ids the first request recorded. Against the embedded adapters and the
//! Twilio simulator, with the request's death injected at a [`CrashPoint`].

use std::collections::HashMap;
use std::sync::Arc;

use herald::domain::{Message, MessageStatus};
use herald::ports::{Order, Records};
use herald::service::{CrashPoint, Services};
use herald::test_env::{TestEnv, read, request_as};
use serde_json::{Value, json};

/// Past the idempotency key's lease (and the attempt lease: both `ATTEMPT_LEASE_SECS`, 60 s).
const PAST_LEASE_MS: i64 = 61_000;

/// Items of the batch: distinct numbers whose last four digits tell them apart (records show
/// only those).
const ITEMS: usize = 25;

fn number(i: usize) -> String {
    format!("+1415555{:04}", 1000 + i)
}

fn batch() -> Value {
    json!({"messages": (0..ITEMS)
        .map(|i| json!({"to": number(i), "body": format!("Disk {i} almost full")}))
        .collect::<Vec<_>>()})
}

fn post(path: &str, body: &Value, key: &str) -> lambda_http::Request {
    request_as(
        Some("alice"),
        "POST",
        path,
        &[
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ],
        body.to_string().as_bytes(),
    )
}

/// Every message recorded, by the last four digits of its number.
async fn recorded(env: &TestEnv) -> HashMap<String, Message> {
    let mut all = HashMap::new();
    for &status in MessageStatus::ALL {
        for m in Records::<Message>::records_by_status(
            &env.store,
            status,
            i64::MAX,
            10_000,
            Order::OldestFirst,
            None,
        )
        .await
        .unwrap()
        .records
        {
            let last4 = m.to.masked[m.to.masked.len() - 4..].to_owned();
            assert!(all.insert(last4, m).is_none(), "one record per number");
        }
    }
    all
}

fn last4(i: usize) -> String {
    number(i)[number(i).len() - 4..].to_owned()
}

/// The send queue and the retry queue run until empty, as their event sources would.
async fn run_queues(env: &TestEnv) {
    for queue in [&env.send_queue, &env.retry_queue] {
        let svc = env.services.clone();
        herald::test_env::drain(queue, 61, |e| {
            let svc = svc.clone();
            async move { send_sms::handle_sqs(&svc, e).await }
        })
        .await;
    }
}

/// The first try of the batch, with `crashing`: the invocation dies (an error, no answer).
async fn first_try_dies(crashing: &Arc<Services>, key: &str) {
    let died = send_sms::handle(crashing, post("/v1/messages/batch", &batch(), key)).await;
    assert!(died.is_err(), "the invocation dies");
}

/// The retry with the key: `202`, every item accepted, in order; its ids by index.
async fn retry(env: &TestEnv, key: &str) -> (Value, Vec<String>) {
    let resp = send_sms::handle(&env.services, post("/v1/messages/batch", &batch(), key))
        .await
        .unwrap();
    let (status, answer) = read(&resp);
    assert_eq!(status, 202, "{answer}");
    assert!(!resp.headers().contains_key("idempotent-replayed"));
    assert_eq!(answer["errors"], json!([]), "{answer}");
    let ids: Vec<String> = answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            assert_eq!(m["index"], i);
            assert_eq!(m["status"], "accepted");
            m["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), ITEMS);
    (answer, ids)
}

/// Every item reached Twilio exactly once, as the message its record holds.
async fn each_sent_once(env: &TestEnv, ids: &[String]) {
    assert_eq!(
        env.sim.messages().len(),
        ITEMS,
        "Twilio got one message per item"
    );
    assert_eq!(env.store.count_messages().await.unwrap(), ITEMS as u64);
    let records = recorded(env).await;
    assert_eq!(records.len(), ITEMS, "one record per item");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            env.sim.creates_for(&number(i)),
            1,
            "item {i} reached Twilio once"
        );
        let m = &records[&last4(i)];
        assert_eq!(
            &m.id.to_string(),
            id,
            "item {i}: the id answered is its record's"
        );
        assert_eq!(m.status, MessageStatus::Queued, "item {i}");
        let sid = m.twilio_sid.as_deref().unwrap();
        assert_eq!(env.sim.message(sid).unwrap().to, number(i));
    }
}

#[tokio::test]
async fn a_batch_that_dies_after_recording_some_items_is_sent_once_when_retried() {
    let env = TestEnv::start().await;
    let crashing = env.services_with_crash(CrashPoint::Recorded(12), 0.0, 0.0);
    first_try_dies(&crashing, "batch-k").await;
    let before = recorded(&env).await;
    assert_eq!(
        before.len(),
        12,
        "the first try recorded 12 items, then died"
    );
    assert_eq!(
        herald::ports::Queue::depth(&env.send_queue)
            .await
            .unwrap()
            .visible,
        0,
        "and enqueued nothing"
    );

    // While the key's lease runs, the key is in use: the same batch is 409, another 422.
    let same = send_sms::handle(
        &env.services,
        post("/v1/messages/batch", &batch(), "batch-k"),
    )
    .await
    .unwrap();
    assert_eq!(read(&same).0, 409);
    let other = json!({"messages": [{"to": number(0), "body": "something else"}]});
    let resp = send_sms::handle(&env.services, post("/v1/messages/batch", &other, "batch-k"))
        .await
        .unwrap();
    assert_eq!(read(&resp).0, 422);

    // The sweeper may well send the orphaned items before the caller retries.
    env.clock.advance(PAST_LEASE_MS);
    let svc = env.services.clone();
    herald::delivery::sweep(&svc, 30_000, 500).await.unwrap();
    run_queues(&env).await;
    assert_eq!(
        env.sim.messages().len(),
        12,
        "the sweeper sent the 12 recorded"
    );

    let (answer, ids) = retry(&env, "batch-k").await;
    for (i, id) in ids.iter().enumerate().take(12) {
        assert_eq!(
            id,
            &before[&last4(i)].id.to_string(),
            "item {i}: the id the first try recorded"
        );
    }
    run_queues(&env).await;
    each_sent_once(&env, &ids).await;

    // The answer is kept now: replayed, and another batch with the key is refused.
    let resp = send_sms::handle(
        &env.services,
        post("/v1/messages/batch", &batch(), "batch-k"),
    )
    .await
    .unwrap();
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
    assert_eq!(read(&resp), (202, answer));
    let resp = send_sms::handle(&env.services, post("/v1/messages/batch", &other, "batch-k"))
        .await
        .unwrap();
    let (status, problem) = read(&resp);
    assert_eq!(status, 422);
    assert_eq!(problem["type"], "urn:herald:problem:idempotency-key-reused");
    assert_eq!(env.sim.messages().len(), ITEMS);
}

#[tokio::test]
async fn a_batch_that_dies_after_enqueueing_some_jobs_is_sent_once_when_retried() {
    let env = TestEnv::start().await;
    let crashing = env.services_with_crash(CrashPoint::Enqueued(10), 0.0, 0.0);
    first_try_dies(&crashing, "batch-q").await;
    assert_eq!(recorded(&env).await.len(), ITEMS);
    // The jobs that made it are sent meanwhile.
    run_queues(&env).await;
    assert_eq!(env.sim.messages().len(), 10);
    let before = recorded(&env).await;

    env.clock.advance(PAST_LEASE_MS);
    let (_, ids) = retry(&env, "batch-q").await;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(id, &before[&last4(i)].id.to_string(), "item {i}");
    }
    // Only the items still waiting for their first attempt were queued again.
    assert_eq!(
        herald::ports::Queue::depth(&env.send_queue)
            .await
            .unwrap()
            .visible,
        (ITEMS - 10) as u64
    );
    run_queues(&env).await;
    each_sent_once(&env, &ids).await;
}

#[tokio::test]
async fn a_batch_that_dies_before_its_answer_is_kept_answers_the_same_when_retried() {
    let env = TestEnv::start().await;
    let crashing = env.services_with_crash(CrashPoint::Answered, 0.0, 0.0);
    first_try_dies(&crashing, "batch-a").await;
    // Its jobs run before the caller retries.
    run_queues(&env).await;
    let before = recorded(&env).await;
    assert_eq!(before.len(), ITEMS);

    env.clock.advance(PAST_LEASE_MS);
    let (_, ids) = retry(&env, "batch-a").await;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(id, &before[&last4(i)].id.to_string(), "item {i}");
    }
    run_queues(&env).await;
    each_sent_once(&env, &ids).await;
}

#[tokio::test]
async fn a_batch_without_a_key_or_with_another_key_gets_fresh_ids() {
    let env = TestEnv::start().await;
    let (_, first) = retry(&env, "batch-1").await;
    let (_, second) = retry(&env, "batch-2").await;
    let resp = send_sms::handle(
        &env.services,
        herald::test_env::json_request("POST", "/v1/messages/batch", &batch()),
    )
    .await
    .unwrap();
    let (status, third) = read(&resp);
    assert_eq!(status, 202);
    let mut all: Vec<String> = first.into_iter().chain(second).collect();
    all.extend(
        third["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned()),
    );
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "no id repeats");
    assert_eq!(env.store.count_messages().await.unwrap(), 3 * ITEMS as u64);
}

#[tokio::test]
async fn a_dead_batch_whose_key_is_reused_for_another_batch_leaves_the_first_alone() {
    // As before this change: once the lease of a request that died has passed, its key may
    // be taken by another payload. That new batch gets ids of its own; the first one's records
    // are not mistaken for it.
    let env = TestEnv::start().await;
    let crashing = env.services_with_crash(CrashPoint::Recorded(5), 0.0, 0.0);
    first_try_dies(&crashing, "batch-x").await;
    env.clock.advance(PAST_LEASE_MS);
    let other = json!({"messages": [{"to": number(0), "body": "another text"}]});
    let resp = send_sms::handle(&env.services, post("/v1/messages/batch", &other, "batch-x"))
        .await
        .unwrap();
    let (status, answer) = read(&resp);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(env.store.count_messages().await.unwrap(), 6);
    let id: herald::domain::MessageId = answer["messages"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let m = Records::<Message>::get_record(&env.store, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.caller, "alice");
    run_queues(&env).await;
    let sent = env.sim.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, "another text");
}

/// A single send (`POST /v1/messages`) that dies after recording its message, before its
/// answer is kept: `point` says where; `after_twilio`: the sender also dies right after Twilio
/// accepted the message, before the result is recorded (the retry must find it at Twilio).
async fn single_send_dies_and_is_retried(point: CrashPoint, after_twilio: bool) {
    let env = TestEnv::start().await;
    let crashing = env.services_with_crash(point, 0.0, if after_twilio { 1.0 } else { 0.0 });
    let body = json!({"to": number(7), "body": "Database down"});
    let died = send_sms::handle(&crashing, post("/v1/messages", &body, "one-k")).await;
    assert!(died.is_err(), "the invocation dies");
    let before = recorded(&env).await;
    assert_eq!(before.len(), 1);
    let first_id = before[&last4(7)].id.to_string();
    // Dying before its answer is kept, it reached Twilio first.
    assert_eq!(
        env.sim.messages().len(),
        usize::from(point == CrashPoint::Answered),
        "{point:?}"
    );

    env.clock.advance(PAST_LEASE_MS);
    let resp = send_sms::handle(&env.services, post("/v1/messages", &body, "one-k"))
        .await
        .unwrap();
    let (status, answer) = read(&resp);
    assert_eq!(status, 201, "{point:?}: {answer}");
    assert_eq!(
        answer["id"],
        first_id.as_str(),
        "the message the first try recorded"
    );
    assert_eq!(answer["status"], "queued");
    // The sweeper and the queues find nothing left to do.
    herald::delivery::sweep(&env.services, 30_000, 500)
        .await
        .unwrap();
    run_queues(&env).await;
    assert_eq!(env.store.count_messages().await.unwrap(), 1);
    assert_eq!(env.sim.creates_for(&number(7)), 1, "{point:?}: sent once");
    let replay = send_sms::handle(&env.services, post("/v1/messages", &body, "one-k"))
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(read(&replay), (201, answer));
}

#[tokio::test]
async fn a_single_send_that_dies_after_recording_is_sent_once_when_retried() {
    single_send_dies_and_is_retried(CrashPoint::Recorded(1), false).await;
}

#[tokio::test]
async fn a_single_send_that_dies_after_twilio_accepted_is_not_sent_again() {
    single_send_dies_and_is_retried(CrashPoint::Answered, true).await;
}

#[tokio::test]
async fn a_single_send_that_dies_before_its_answer_is_kept_is_not_sent_again() {
    single_send_dies_and_is_retried(CrashPoint::Answered, false).await;
}

/// A call (`POST /v1/calls`) that dies after recording it: the retry places it once.
async fn call_dies_and_is_retried(point: CrashPoint, after_twilio: bool) {
    let env = TestEnv::start().await;
    let crashing = env.services_with_crash(point, 0.0, if after_twilio { 1.0 } else { 0.0 });
    let body = json!({"to": number(9), "message": "Wake up: the database is down"});
    let died = place_call::handle(&crashing, post("/v1/calls", &body, "call-k")).await;
    assert!(died.is_err(), "the invocation dies");
    assert_eq!(env.store.count_calls().await.unwrap(), 1);
    assert_eq!(
        env.sim.creates_for_call(&number(9)),
        usize::from(point == CrashPoint::Answered)
    );

    env.clock.advance(PAST_LEASE_MS);
    let resp = place_call::handle(&env.services, post("/v1/calls", &body, "call-k"))
        .await
        .unwrap();
    let (status, answer) = read(&resp);
    assert_eq!(status, 201, "{point:?}: {answer}");
    let id: herald::domain::CallId = answer["id"].as_str().unwrap().parse().unwrap();
    assert!(
        Records::<herald::domain::Call>::get_record(&env.store, &id)
            .await
            .unwrap()
            .is_some(),
        "the call the first try recorded"
    );
    assert_eq!(env.store.count_calls().await.unwrap(), 1);
    assert_eq!(
        env.sim.creates_for_call(&number(9)),
        1,
        "{point:?}: called once"
    );
    let replay = place_call::handle(&env.services, post("/v1/calls", &body, "call-k"))
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(read(&replay), (201, answer));
}

#[tokio::test]
async fn a_call_that_dies_after_recording_is_placed_once_when_retried() {
    call_dies_and_is_retried(CrashPoint::Recorded(1), false).await;
}

#[tokio::test]
async fn a_call_that_dies_after_twilio_accepted_is_not_placed_again() {
    call_dies_and_is_retried(CrashPoint::Answered, true).await;
}

//! A store write that committed but answered an error (a DynamoDB call whose answer timed out
//! after the write was made), under an `Idempotency-Key`: the request answers 503, which is not
//! kept, and the caller's retry with the key finds what was recorded (the ids are derived from
//! the key's use, which the 503 does not end) and goes on with it: nothing recorded or sent
//! twice, the first record's id answered. Against the embedded store, wrapped so that the chosen
//! write really happens and then fails once ([`CommitThenFail`]), and the Twilio simulator.

use std::sync::Arc;

use herald::adapters::embedded::SqliteStore;
use herald::domain::{Call, Message, MessageId, MessageStatus, VerificationId};
use herald::ports::{Records, VerificationStore};
use herald::service::Services;
use herald::test_env::{TestEnv, read, request_as};
use herald::testing_faults::{CommitThenFail, Write};
use serde_json::{Value, json};

/// Past the attempt lease (`ATTEMPT_LEASE_SECS`, 60 s) the first try's claim holds.
const PAST_LEASE_MS: i64 = 61_000;

/// How long the caller waits before retrying a 503.
const BACKOFF_MS: i64 = 1_000;

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

/// Services whose stores are `env`'s SQLite store behind a [`CommitThenFail`].
fn faulty(env: &TestEnv) -> (Arc<Services>, Arc<CommitThenFail<SqliteStore>>) {
    let faults = CommitThenFail::new(Arc::new(env.store.clone()));
    let f = faults.clone();
    let svc = env.services_with(move |mut a| {
        a.messages = f.clone();
        a.calls = f.clone();
        a.protection = f;
        a
    });
    (svc, faults)
}

/// The send queue and the retry queue run until empty, as their event sources would.
async fn run_queues(env: &TestEnv, svc: &Arc<Services>) {
    for queue in [&env.send_queue, &env.retry_queue] {
        let svc = svc.clone();
        herald::test_env::drain(queue, 61, |e| {
            let svc = svc.clone();
            async move { send_sms::handle_sqs(&svc, e).await }
        })
        .await;
    }
}

/// Past the first try's claim: the sweeper and the queues do what is left.
async fn settle(env: &TestEnv, svc: &Arc<Services>) {
    env.clock.advance(PAST_LEASE_MS);
    herald::delivery::sweep(svc, 30_000, 500).await.unwrap();
    run_queues(env, svc).await;
}

/// The first try's answer: 503 problem+json, after the armed write committed.
async fn first_try_fails(
    svc: &Arc<Services>,
    faults: &CommitThenFail<SqliteStore>,
    req: lambda_http::Request,
    write: Write,
) {
    let resp = if req.uri().path().ends_with("/v1/calls") {
        place_call::handle(svc, req).await.unwrap()
    } else {
        send_sms::handle(svc, req).await.unwrap()
    };
    let (status, problem) = read(&resp);
    assert_eq!(status, 503, "{problem}");
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "{problem}"
    );
    assert_eq!(problem["type"], "urn:herald:problem:unavailable");
    assert_eq!(faults.fired(), [write], "the write committed, then failed");
}

#[tokio::test]
async fn a_send_whose_record_committed_though_the_store_failed_is_sent_once() {
    let env = TestEnv::start().await;
    let (svc, faults) = faulty(&env);
    let to = "+14155552691";
    let body = json!({"to": to, "body": "Disk full"});
    faults.arm(Write::InsertMessage);
    first_try_fails(
        &svc,
        &faults,
        post("/v1/messages", &body, Some("s-k")),
        Write::InsertMessage,
    )
    .await;
    assert_eq!(env.store.count_messages().await.unwrap(), 1, "it committed");
    assert_eq!(env.sim.creates_for(to), 0);

    env.clock.advance(BACKOFF_MS);
    let resp = send_sms::handle(&svc, post("/v1/messages", &body, Some("s-k")))
        .await
        .unwrap();
    let (status, answer) = read(&resp);
    assert_eq!(
        env.store.count_messages().await.unwrap(),
        1,
        "no second record: {answer}"
    );
    assert_eq!(env.sim.creates_for(to), 0, "nothing sent yet: {answer}");
    // The first try's claim holds the attempt: recorded, and made once that claim ends.
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "accepted");
    let id: MessageId = answer["id"].as_str().unwrap().parse().unwrap();
    assert!(
        Records::<Message>::get_record(&env.store, &id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(env.store.count_messages().await.unwrap(), 1);

    settle(&env, &svc).await;
    assert_eq!(env.sim.creates_for(to), 1, "sent once");
    let m = Records::<Message>::get_record(&env.store, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.status, MessageStatus::Queued);
    assert_eq!(env.store.count_messages().await.unwrap(), 1);
    let replay = send_sms::handle(&svc, post("/v1/messages", &body, Some("s-k")))
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(read(&replay), (202, answer));
}

fn batch(n: usize) -> Value {
    json!({"messages": (0..n)
        .map(|i| json!({"to": format!("+1415555{:04}", 2000 + i), "body": format!("Disk {i} full")}))
        .collect::<Vec<_>>()})
}

#[tokio::test]
async fn a_batch_whose_item_committed_though_the_store_failed_is_sent_once() {
    let env = TestEnv::start().await;
    let (svc, faults) = faulty(&env);
    let n = 10;
    // Item 4's record commits and the store answers an error.
    faults.arm_after(Write::InsertMessage, 4);
    first_try_fails(
        &svc,
        &faults,
        post("/v1/messages/batch", &batch(n), Some("b-k")),
        Write::InsertMessage,
    )
    .await;
    assert_eq!(env.store.count_messages().await.unwrap(), 5);

    env.clock.advance(BACKOFF_MS);
    let resp = send_sms::handle(&svc, post("/v1/messages/batch", &batch(n), Some("b-k")))
        .await
        .unwrap();
    let (status, answer) = read(&resp);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["errors"], json!([]), "{answer}");
    let ids: Vec<String> = answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), n);
    assert_eq!(env.store.count_messages().await.unwrap(), n as u64);
    run_queues(&env, &svc).await;
    settle(&env, &svc).await;
    for (i, id) in ids.iter().enumerate() {
        let to = format!("+1415555{:04}", 2000 + i);
        assert_eq!(env.sim.creates_for(&to), 1, "item {i} sent once");
        let m = Records::<Message>::get_record(&env.store, &id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.status, MessageStatus::Queued, "item {i}");
    }
    assert_eq!(env.sim.messages().len(), n);
    assert_eq!(env.store.count_messages().await.unwrap(), n as u64);
}

/// The code in the one SMS the simulator got for `to`.
fn the_code(env: &TestEnv, to: &str) -> String {
    let sent: Vec<_> = env
        .sim
        .messages()
        .into_iter()
        .filter(|m| m.to == to)
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

/// A verification whose `write` committed though the store failed: one verification, one
/// code SMS, the first one's id, and the code checks.
async fn verification_write_fails(write: Write, to: &str) {
    let env = TestEnv::start().await;
    let (svc, faults) = faulty(&env);
    let body = json!({"to": to});
    faults.arm(write);
    first_try_fails(
        &svc,
        &faults,
        post("/v1/verifications", &body, Some("v-k")),
        write,
    )
    .await;
    assert_eq!(env.store.count_verifications().await.unwrap(), 1);

    env.clock.advance(BACKOFF_MS);
    let resp = send_sms::handle(&svc, post("/v1/verifications", &body, Some("v-k")))
        .await
        .unwrap();
    let (status, answer) = read(&resp);
    assert_eq!(status, 201, "{write:?}: {answer}");
    let id: VerificationId = answer["id"].as_str().unwrap().parse().unwrap();
    assert!(env.store.get_verification(&id).await.unwrap().is_some());
    assert_eq!(env.store.count_verifications().await.unwrap(), 1);
    settle(&env, &svc).await;
    assert_eq!(env.store.count_messages().await.unwrap(), 1, "{write:?}");
    let code = the_code(&env, to);
    let resp = send_sms::handle(
        &svc,
        post(
            &format!("/v1/verifications/{id}/check"),
            &json!({"code": code}),
            None,
        ),
    )
    .await
    .unwrap();
    let (status, checked) = read(&resp);
    assert_eq!(
        (status, checked["status"].as_str()),
        (200, Some("approved"))
    );
}

#[tokio::test]
async fn a_verification_that_committed_though_the_store_failed_sends_one_code() {
    verification_write_fails(Write::InsertVerification, "+14155552692").await;
}

#[tokio::test]
async fn a_verification_sms_that_committed_though_the_store_failed_is_sent_once() {
    verification_write_fails(Write::InsertMessage, "+14155552693").await;
}

#[tokio::test]
async fn a_call_whose_record_committed_though_the_store_failed_is_placed_once() {
    let env = TestEnv::start().await;
    let (svc, faults) = faulty(&env);
    let to = "+14155552694";
    let body = json!({"to": to, "message": "Wake up: the database is down"});
    faults.arm(Write::InsertCall);
    first_try_fails(
        &svc,
        &faults,
        post("/v1/calls", &body, Some("c-k")),
        Write::InsertCall,
    )
    .await;
    assert_eq!(env.store.count_calls().await.unwrap(), 1);

    env.clock.advance(BACKOFF_MS);
    let resp = place_call::handle(&svc, post("/v1/calls", &body, Some("c-k")))
        .await
        .unwrap();
    let (status, answer) = read(&resp);
    assert_eq!(
        env.store.count_calls().await.unwrap(),
        1,
        "no second record: {answer}"
    );
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().parse().unwrap();
    assert!(
        Records::<Call>::get_record(&env.store, &id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(env.store.count_calls().await.unwrap(), 1);
    // Without a sweep: the job queued for when the first try's claim ends places it.
    settle(&env, &svc).await;
    assert_eq!(env.sim.creates_for_call(to), 1, "called once");
    assert_eq!(env.store.count_calls().await.unwrap(), 1);
}

#[tokio::test]
async fn a_kept_answer_that_committed_though_the_store_failed_is_replayed() {
    // The answer is stored (the complete committed) though the store answered an error: the
    // request's own answer stands, and a retry is replayed from the store.
    let env = TestEnv::start().await;
    let (svc, faults) = faulty(&env);
    let to = "+14155552695";
    let body = json!({"to": to, "body": "Disk full"});
    faults.arm(Write::CompleteIdempotency);
    let resp = send_sms::handle(&svc, post("/v1/messages", &body, Some("a-k")))
        .await
        .unwrap();
    let first = read(&resp);
    assert_eq!(first.0, 201, "{}", first.1);
    assert_eq!(faults.fired(), [Write::CompleteIdempotency]);
    env.clock.advance(BACKOFF_MS);
    let replay = send_sms::handle(&svc, post("/v1/messages", &body, Some("a-k")))
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(read(&replay), first);
    assert_eq!(env.sim.creates_for(to), 1);
}

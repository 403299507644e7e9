//! The sweeper asks Twilio about records many at a time, not one after another: a look-up is a
//! network round trip, and one at a time a sweep of a full page per in-flight status would
//! outlast retry-processor's timeout, leaving the records after that point unvisited. Here the
//! simulator answers its REST requests only in groups of `herald::engine::SWEEP_CONCURRENCY`
//! held at once, so a sweeper that sends one request at a time gets no answer (its requests
//! time out) and reconciles nothing.

use herald::domain::MessageStatus;
use herald::test_env::{TestEnv, json_request, read};
use serde_json::json;

const GRACE_MS: i64 = retry_processor::SWEEP_GRACE_MS;

#[tokio::test]
async fn the_sweeper_has_a_group_of_twilio_lookups_in_flight_at_once() {
    // Twilio delivers the messages; their callbacks are lost.
    let env = TestEnv::start_losing_callbacks(&[
        ("RECIPIENT_LIMIT_PER_HOUR", "100000"),
        ("RECIPIENT_LIMIT_PER_DAY", "100000"),
        ("CALLER_RATE_LIMIT_PER_MINUTE", "100000"),
        // A look-up that gets no answer fails fast (only without concurrency).
        ("TWILIO_REQUEST_TIMEOUT_SECS", "2"),
    ])
    .await;
    let group = herald::engine::SWEEP_CONCURRENCY;
    let mut ids = Vec::new();
    for i in 0..2 * group {
        let body = json!({"to": "+14155550124", "body": format!("Pager: disk {i} is full")});
        let resp = send_sms::handle(&env.services, json_request("POST", "/v1/messages", &body))
            .await
            .unwrap();
        let (status, answer) = read(&resp);
        assert_eq!(status, 201, "{answer}");
        ids.push(answer["id"].as_str().unwrap().parse().unwrap());
        env.clock.advance(1);
    }
    env.sim.flush_callbacks().await;
    env.clock.advance(GRACE_MS * 2);

    env.sim.gate_requests(group);
    herald::delivery::sweep(&env.services, GRACE_MS, retry_processor::SWEEP_LIMIT)
        .await
        .unwrap();
    let gets = env
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/Messages/"))
        .count();
    assert_eq!(gets, 2 * group, "one look-up per record");
    for id in &ids {
        let m = env.services.messages.get_record(id).await.unwrap().unwrap();
        assert_eq!(
            m.status,
            MessageStatus::Delivered,
            "reconciled in one sweep"
        );
    }
}

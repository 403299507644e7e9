//! Injected REST faults: 429 with Retry-After, 500, held responses; seeded and repeatable.

mod common;

use std::time::Duration;

use common::*;
use twilio_sim::{CallbackMode, Faults};

const PARAMS: [(&str, &str); 3] = [("To", "+15551230001"), ("From", FROM), ("Body", "hi")];

fn manual() -> twilio_sim::SimConfig {
    let mut c = config();
    c.callback_mode = CallbackMode::Manual;
    c
}

#[tokio::test]
async fn rate_429_answers_with_retry_after_and_20429() {
    let mut c = manual();
    c.faults = Faults {
        rate_429: 1.0,
        retry_after_secs: 7,
        ..Faults::default()
    };
    let sim = start(c).await;
    let r = client()
        .post(messages_url(&sim))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&PARAMS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_twilio_error(429, &r.json().await.unwrap(), 429, 20429);
    assert_eq!(sim.creates_for("+15551230001"), 0);
    assert_eq!(sim.requests()[0].fault.as_deref(), Some("429"));

    sim.set_faults(Faults::default());
    let (status, _) = create(&sim, &PARAMS).await;
    assert_eq!(status, 201);
    assert_eq!(sim.requests()[1].fault, None);
    assert_eq!(sim.creates_for("+15551230001"), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_500_answers_twilio_error_json() {
    let mut c = manual();
    c.faults = Faults {
        rate_500: 1.0,
        ..Faults::default()
    };
    let sim = start(c).await;
    let (status, body) = create(&sim, &PARAMS).await;
    assert_twilio_error(status, &body, 500, 20500);
    assert_eq!(sim.creates_for("+15551230001"), 0);
    assert_eq!(sim.requests()[0].fault.as_deref(), Some("500"));
    sim.shutdown().await;
}

async fn timed_out_create(after_accept: bool) -> twilio_sim::SimHandle {
    let mut c = manual();
    c.faults = Faults {
        rate_timeout: 1.0,
        timeout_ms: 60_000,
        timeout_after_accept: after_accept,
        ..Faults::default()
    };
    let sim = start(c).await;
    let err = client()
        .post(messages_url(&sim))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&PARAMS)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("the response is held past the client's timeout");
    assert!(err.is_timeout(), "{err}");
    let req = &sim.requests()[0];
    assert_eq!(req.fault.as_deref(), Some("timeout"));
    sim
}

#[tokio::test]
async fn timeout_after_accept_creates_the_message() {
    let sim = timed_out_create(true).await;
    assert_eq!(
        sim.creates_for("+15551230001"),
        1,
        "the lost response's message exists"
    );
    assert!(sim.requests()[0].created_sid.is_some());
    // Shutdown releases the held response instead of waiting a minute.
    sim.shutdown().await;
}

#[tokio::test]
async fn timeout_before_accept_creates_nothing() {
    let sim = timed_out_create(false).await;
    assert_eq!(sim.creates_for("+15551230001"), 0);
    assert_eq!(sim.requests()[0].status, 503);
    sim.shutdown().await;
}

#[tokio::test]
async fn short_hold_still_answers() {
    let mut c = manual();
    c.faults = Faults {
        rate_timeout: 1.0,
        timeout_ms: 150,
        timeout_after_accept: true,
        ..Faults::default()
    };
    let sim = start(c).await;
    let started = std::time::Instant::now();
    let (status, _) = create(&sim, &PARAMS).await;
    assert_eq!(status, 201);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "the response was held"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_sequence_is_seeded() {
    let run = |seed: u64| async move {
        let mut c = manual();
        c.seed = seed;
        c.faults = Faults {
            rate_429: 0.3,
            rate_500: 0.3,
            ..Faults::default()
        };
        let sim = start(c).await;
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(create(&sim, &PARAMS).await.0);
        }
        sim.shutdown().await;
        statuses
    };
    let a = run(1).await;
    assert_eq!(a, run(1).await);
    assert!(
        a.contains(&429) && a.contains(&500) && a.contains(&201),
        "{a:?}"
    );
}

#[tokio::test]
async fn faults_can_be_set_over_http() {
    let sim = start(manual()).await;
    let r = client()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&serde_json::json!({"rate_429": 1.0, "retry_after_secs": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(sim.faults().rate_429, 1.0);
    let (status, _) = create(&sim, &PARAMS).await;
    assert_eq!(status, 429);

    let r = client()
        .post(format!("{}/_sim/outcomes", sim.base_url()))
        .json(&serde_json::json!({"to": "+15551230001", "outcome": "failed", "error_code": 30007}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r: serde_json::Value = client()
        .get(format!("{}/_sim/requests", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r[0]["fault"], "429");

    // Faults off again; the outcome set over HTTP applies.
    client()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    let (status, m) = create(&sim, &PARAMS).await;
    assert_eq!(status, 201);
    sim.flush_callbacks().await;
    let stored = sim.message(m["sid"].as_str().unwrap()).unwrap();
    assert_eq!(stored.status, twilio_sim::MessageStatus::Failed);
    assert_eq!(stored.error_code, Some(30007));
    sim.shutdown().await;
}

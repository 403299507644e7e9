//! End to end on one machine: HTTP API → send-sms → Twilio simulator → signed callbacks →
//! webhook-receiver → final states; the demo's outcomes; and personal data at rest.

use herald_runner::demo;
use herald_runner::stack::{LocalStack, StackOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_ends_every_message_as_the_simulator_was_told() {
    let dir = tempfile::tempdir().unwrap();
    let rows = demo::run(dir.path()).await.unwrap();
    assert_eq!(rows.len(), demo::scenarios().len());
    for r in &rows {
        assert!(
            r.as_expected,
            "{} ended {} {:?}",
            r.label, r.status, r.detail.error_code
        );
        assert!(
            r.to.starts_with("+*") && !r.to.contains("5552671"),
            "masked: {}",
            r.to
        );
    }
    let by_label = |l: &str| rows.iter().find(|r| r.label.starts_with(l)).unwrap();
    assert_eq!(by_label("UCS-2").detail.encoding, "UCS-2");
    assert!(by_label("UCS-2").detail.segments >= 2);
    assert_eq!(by_label("undelivered").detail.error_code, Some(30003));
    let table = demo::table(&rows);
    assert!(table.contains("delivered") && table.contains("21610"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_is_not_in_the_database_file_and_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StackOptions {
        seed: 3,
        ..StackOptions::new(dir.path())
    };
    let number = "+14155550199";
    let body = "Secret rendezvous at the old mill";
    let stack = LocalStack::start(&opts).await.unwrap();
    let http = reqwest::Client::new();
    let answer: serde_json::Value = http
        .post(format!("{}/v1/messages", stack.api_url))
        .bearer_auth(&stack.api_key)
        .json(&json!({"to": number, "body": body}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    stack.sim.wait_idle().await;
    stack.shutdown().await;

    let raw = std::fs::read(dir.path().join("herald.db")).unwrap();
    let mut all = raw.clone();
    if let Ok(wal) = std::fs::read(dir.path().join("herald.db-wal")) {
        all.extend(wal);
    }
    let text = String::from_utf8_lossy(&all);
    for needle in [number, "4155550199", body, "rendezvous"] {
        assert!(
            !text.contains(needle),
            "{needle:?} found in the raw database"
        );
    }

    // Restart on the same folder: the message and its final state are still there.
    let stack = LocalStack::start(&opts).await.unwrap();
    let view: serde_json::Value = http
        .get(format!("{}/v1/messages/{id}", stack.api_url))
        .bearer_auth(&stack.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "delivered");
    assert_eq!(view["to"], "+*******0199");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_out_of_order_callbacks_still_end_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::start(&StackOptions {
        seed: 5,
        ..StackOptions::new(dir.path())
    })
    .await
    .unwrap();
    stack.sim.set_faults(twilio_sim::Faults {
        rate_duplicate_callback: 1.0,
        rate_out_of_order: 1.0,
        ..Default::default()
    });
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for n in 0..5 {
        let answer: serde_json::Value = http
            .post(format!("{}/v1/messages", stack.api_url))
            .bearer_auth(&stack.api_key)
            .json(&json!({"to": format!("+1415555{:04}", 1000 + n), "body": "ping"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    stack.sim.wait_idle().await;
    let callbacks = stack.sim.callbacks();
    assert!(
        callbacks.len() >= 20,
        "each message gets sent and delivered twice: {}",
        callbacks.len()
    );
    for id in ids {
        let view: serde_json::Value = http
            .get(format!("{}/v1/messages/{id}", stack.api_url))
            .bearer_auth(&stack.api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view["status"], "delivered", "{view}");
        let statuses: Vec<&str> = view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "status_callback")
            .map(|e| e["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            statuses,
            ["delivered", "sent"],
            "deduplicated, in arrival order"
        );
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_ends_every_call_as_the_simulator_was_told() {
    use herald_runner::demo_calls;
    let dir = tempfile::tempdir().unwrap();
    let rows = demo_calls::run(dir.path()).await.unwrap();
    assert_eq!(rows.len(), demo_calls::scenarios().len());
    for r in &rows {
        assert!(
            r.as_expected,
            "{} ended {} after {} attempts, acknowledged {}",
            r.label, r.status, r.detail.attempts, r.detail.acknowledged
        );
        assert!(r.to.starts_with("+*"), "masked: {}", r.to);
    }
    let acked = rows.iter().find(|r| r.detail.acknowledged).unwrap();
    assert!(acked.detail.duration_seconds.unwrap_or(0) >= 1);
    let json = serde_json::to_value(&rows).unwrap();
    let mut keys: Vec<&str> = json[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let expected = [
        "acknowledged",
        "attempts",
        "duration_seconds",
        "id",
        "status",
        "to",
    ];
    assert_eq!(keys, expected);
    let table = demo_calls::table(&rows);
    assert!(table.contains("busy, then answered") && table.contains("failed"));

    // The number and the text are sealed in the database file.
    let raw = std::fs::read(dir.path().join("herald.db")).unwrap();
    let mut all = raw;
    if let Ok(wal) = std::fs::read(dir.path().join("herald.db-wal")) {
        all.extend(wal);
    }
    let text = String::from_utf8_lossy(&all);
    for needle in ["+14155550181", "4155550181", "Database primary is down"] {
        assert!(
            !text.contains(needle),
            "{needle:?} found in the raw database"
        );
    }
}

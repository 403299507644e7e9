//! The running local stack with the simulator texting it: STOP, HELP and START through signed
//! inbound webhooks, send-sms refusing an opted-out number before Twilio, and JSON-bodied status
//! callbacks (`bodySHA256`) verified end to end.

use herald_runner::stack::{LOCAL_FROM_NUMBER, LocalStack, StackOptions};
use serde_json::{Value, json};

const PERSON: &str = "+14155552671";

async fn send(http: &reqwest::Client, stack: &LocalStack) -> (u16, Value) {
    let r = http
        .post(format!("{}/v1/messages", stack.api_url))
        .bearer_auth(&stack.api_key)
        .json(&json!({"to": PERSON, "body": "Server down"}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_help_and_start_from_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::start(&StackOptions::new(dir.path()))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let hook = format!("{}{}", stack.api_url, webhook_receiver::INBOUND_SMS_PATH);

    assert_eq!(send(&http, &stack).await.0, 201);
    let created = stack.sim.messages().len();

    let stop = stack
        .sim
        .send_inbound_sms(PERSON, LOCAL_FROM_NUMBER, "Stop", &hook)
        .await;
    assert_eq!(stop.delivery.response_status, Some(200), "{stop:?}");
    let (status, problem) = send(&http, &stack).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "urn:herald:problem:recipient-opted-out");
    assert_eq!(
        stack.sim.messages().len(),
        created,
        "nothing reached the simulator"
    );

    let help = stack
        .sim
        .send_inbound_sms(PERSON, LOCAL_FROM_NUMBER, "help", &hook)
        .await;
    assert_eq!(help.delivery.response_status, Some(200));
    assert!(
        help.response_body
            .as_deref()
            .unwrap_or("")
            .contains("<Message>Herald alerts."),
        "{help:?}"
    );

    let start = stack
        .sim
        .send_inbound_sms(PERSON, LOCAL_FROM_NUMBER, "START", &hook)
        .await;
    assert_eq!(start.delivery.response_status, Some(200));
    assert_eq!(send(&http, &stack).await.0, 201);

    // An ordinary reply is kept (sealed) and answered with empty TwiML.
    let reply = stack
        .sim
        .send_inbound_sms(PERSON, LOCAL_FROM_NUMBER, "ACK 42", &hook)
        .await;
    assert_eq!(reply.delivery.response_status, Some(200));
    assert!(
        reply
            .response_body
            .as_deref()
            .unwrap_or("")
            .contains("<Response/>")
    );
    stack.sim.wait_idle().await;
    stack.shutdown().await;
    let raw = std::fs::read(dir.path().join("herald.db")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("herald.db-wal")).unwrap_or_default();
    let all = String::from_utf8_lossy(&[raw, wal].concat()).into_owned();
    assert!(!all.contains("ACK 42") && !all.contains("4155552671"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_status_callbacks_are_verified_and_applied() {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::start(&StackOptions::new(dir.path()))
        .await
        .unwrap();
    stack.sim.set_json_callbacks(true);
    let http = reqwest::Client::new();
    let (status, answer) = send(&http, &stack).await;
    assert_eq!(status, 201);
    stack.sim.wait_idle().await;
    let callbacks = stack.sim.callbacks();
    assert!(!callbacks.is_empty());
    for c in &callbacks {
        assert!(
            c.delivery.url.contains("bodySHA256=") || c.delivery.signed_url.contains("bodySHA256="),
            "{c:?}"
        );
        assert_eq!(c.delivery.response_status, Some(200), "{c:?}");
    }
    let view: Value = http
        .get(format!(
            "{}/v1/messages/{}",
            stack.api_url,
            answer["id"].as_str().unwrap()
        ))
        .bearer_auth(&stack.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "delivered", "{view}");
    stack.shutdown().await;
}

//! Credential rotation on the local stack: `herald rotate` in both modes (and the stack started
//! again afterwards), rotations racing sends, and the rotation drill, with a control run whose
//! grace window is zero to show the drill sees refused callbacks when there are some.

use std::time::Duration;

use credential_rotation::RotationMode;
use herald::ports::SecretSource;
use herald_runner::rotation::{self, DrillOptions};
use herald_runner::stack::{LocalStack, StackOptions};
use serde_json::json;

async fn send(stack: &LocalStack, n: usize) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/v1/messages", stack.api_url))
        .bearer_auth(&stack.api_key)
        .json(&json!({"to": format!("+1415555{:04}", 2000 + n), "body": format!("race {n}")}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_race_sends_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let stack = LocalStack::start(&StackOptions::new(dir.path()))
        .await
        .unwrap();
    let before = stack.secrets.current().await.unwrap();
    assert_eq!(send(&stack, 0).await, 201);

    for mode in [
        RotationMode::ApiKey,
        RotationMode::AuthToken,
        RotationMode::ApiKey,
    ] {
        let sends = (1..=10).map(|n| send(&stack, n));
        let (rotated, answers) =
            tokio::join!(rotation::rotate(&stack, mode), futures_join_all(sends));
        rotated.unwrap();
        assert!(answers.iter().all(|s| *s == 201), "{mode:?}: {answers:?}");
    }
    let after = stack.secrets.current().await.unwrap();
    assert_ne!(after.api_key_sid, before.api_key_sid);
    assert_ne!(after.auth_token, before.auth_token);
    assert_eq!(&stack.sim.auth_token(), after.auth_token.expose());
    // Current and previous keys only: the first is revoked, none leaked.
    assert_eq!(stack.sim.api_keys().len(), 2);
    assert!(
        !stack
            .sim
            .api_keys()
            .iter()
            .any(|k| k.sid == before.api_key_sid)
    );
    stack.shutdown().await;

    // Started again, the simulator takes the rotated credentials from the store.
    let stack = LocalStack::start(&StackOptions::new(dir.path()))
        .await
        .unwrap();
    assert_eq!(stack.secrets.current().await.unwrap(), after);
    assert_eq!(send(&stack, 99).await, 201);
    let r = rotation::rotate(&stack, RotationMode::ApiKey)
        .await
        .unwrap();
    assert_eq!(r.mode, "api-key");
    assert_eq!(send(&stack, 100).await, 201);
    stack.shutdown().await;
}

async fn futures_join_all<F: std::future::Future<Output = u16>>(
    futs: impl Iterator<Item = F>,
) -> Vec<u16> {
    let handles: Vec<_> = futs.collect();
    let mut out = Vec::new();
    for f in handles {
        out.push(f.await);
    }
    out
}

fn short() -> DrillOptions {
    DrillOptions {
        phase: Duration::from_millis(1200),
        ..DrillOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotation_drill_has_zero_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let report = rotation::drill(dir.path(), &short()).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.rotations, 2);
    assert!(report.sent > 20, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_grace_window_the_drill_sees_refused_callbacks() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DrillOptions {
        grace: Duration::ZERO,
        ..short()
    };
    let report = rotation::drill(dir.path(), &opts).await.unwrap();
    assert!(report.rejected_genuine_callbacks > 0, "{report:?}");
    assert!(!report.ok());
    assert_eq!(report.failed_sends, 0, "{report:?}");
}

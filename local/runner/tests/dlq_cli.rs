//! `herald dlq list` and `herald dlq redrive` as a person runs them, on a local data folder.

use std::process::Command;
use std::sync::Arc;

use herald::adapters::embedded::SqliteQueue;
use herald::ports::{ManualClock, Queue};

fn herald(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .output()
        .expect("run herald");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn dead_letters_are_listed_and_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let q = SqliteQueue::open(
        &db,
        "retry",
        herald_runner::stack::MAX_RECEIVE_COUNT,
        clock.clone(),
    )
    .unwrap();
    q.send(
        r#"{"kind":"message","id":"msg_01jz0000000000000000000000","attempt":2}"#,
        0,
    )
    .await
    .unwrap();
    // Received and never acknowledged, past maxReceiveCount: the job moves to the DLQ.
    for _ in 0..=herald_runner::stack::MAX_RECEIVE_COUNT {
        let _ = q.receive(10, 1).await.unwrap();
        clock.advance(2_000);
    }
    assert_eq!(q.depth().await.unwrap().dead, 1);

    let data_dir = dir.path().to_str().unwrap();
    let (code, out) = herald(&["dlq", "list", "--queue", "retry", "--data-dir", data_dir]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 job(s) in the retry dead-letter queue"),
        "{out}"
    );
    assert!(out.contains("msg_01jz0000000000000000000000"), "{out}");

    let (code, out) = herald(&["dlq", "list", "--queue", "send", "--data-dir", data_dir]);
    assert_eq!(code, 0);
    assert!(
        out.contains("0 job(s) in the send dead-letter queue"),
        "{out}"
    );

    let (code, out) = herald(&["dlq", "redrive", "--queue", "retry", "--data-dir", data_dir]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("moved 1 job(s)"), "{out}");
    let depth = q.depth().await.unwrap();
    assert_eq!((depth.dead, depth.visible), (0, 1));

    let (code, _) = herald(&[
        "dlq",
        "list",
        "--data-dir",
        dir.path().join("nowhere").to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "no data folder is a usage error");
}

//! A short soak on every test run: faults of every kind, and the three numbers that must be zero.
//! (scripts/test.sh runs the longer one: 2,000 messages, release build.)

use herald_runner::soak::{self, SoakOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_lost_sent_twice_or_ends_wrongly_under_faults() {
    let dir = tempfile::tempdir().unwrap();
    let report = soak::run(
        dir.path(),
        &SoakOptions {
            messages: 300,
            fault_rate: 0.3,
            seed: 11,
            deadline: std::time::Duration::from_secs(240),
            progress: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.accepted, 300, "{report:?}");
    assert_eq!(
        (report.lost, report.duplicate_sends, report.mismatched),
        (0, 0, 0),
        "{report:?}"
    );
    assert!(
        report.retries > 0,
        "faults at 30% must have caused retries: {report:?}"
    );
}

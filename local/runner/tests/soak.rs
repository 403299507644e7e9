//! A short alerting-shaped soak on every test run: repeated identical alerts, batches and voice
//! alerts under Twilio faults and whole-process kills, and the counts that must be zero.
//! (scripts/test.sh runs the longer one: 2,000 messages and 200 calls, release build.)

use herald_runner::soak::{self, SoakOptions, SoakReport};

async fn soak(seed: u64, legacy_match: bool) -> SoakReport {
    let dir = tempfile::tempdir().unwrap();
    soak::run(
        dir.path(),
        &SoakOptions {
            messages: 300,
            calls: 40,
            kills: 3,
            fault_rate: 0.3,
            seed,
            deadline: std::time::Duration::from_secs(240),
            progress: false,
            legacy_match,
            exe: env!("CARGO_BIN_EXE_herald").into(),
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_record_is_lost_doubled_adopted_or_wrong_under_faults_and_kills() {
    let report = soak(11, false).await;
    assert!(report.ok(), "{report:#?}");
    assert_eq!(report.messages.accepted, 300, "{report:#?}");
    assert_eq!(report.calls.accepted, 40, "{report:#?}");
    assert!(
        report.messages.retries > 0,
        "faults at 30% must have caused retries: {report:#?}"
    );
    // Three kills in the waves, one while settling.
    assert_eq!(report.kills, 4, "{report:#?}");
}

/// The control: with the old matching rule (the first resource with the record's To and text,
/// whoever sent it), identical alerts adopt each other's sends and the soak sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_old_matching_rule_fails_the_soak() {
    let report = soak(11, true).await;
    assert!(!report.ok(), "{report:#?}");
    let bad = |c: &soak::ChannelReport| c.adopted + c.lost + c.mismatched + c.duplicated;
    assert!(
        bad(&report.messages) + bad(&report.calls) > 0,
        "{report:#?}"
    );
}

//! The sweeper does not starve behind a backlog: 200 messages Twilio leaves at `sent` forever
//! (their final report never comes) do not delay a recent message whose final callback was lost,
//! and every one of them is asked about within ceil(200 / (limit / 2)) sweeps.

use std::collections::HashSet;

use herald::domain::{MessageStatus, StatusChange};
use herald::test_env::TestEnv;

mod common;
use common::{record, send};

const STUCK: &str = "+14155550123";
const FRESH: &str = "+14155550124";
const GRACE_MS: i64 = retry_processor::SWEEP_GRACE_MS;
const LIMIT: u32 = 10;

/// Twilio's `sent` callback arrived (applied as the webhook would); the final one never does.
async fn sent(env: &TestEnv, id: &str) -> String {
    let m = record(env, id).await;
    let id: herald::domain::MessageId = id.parse().unwrap();
    let change = StatusChange {
        twilio_sid: m.twilio_sid.clone(),
        ..StatusChange::new(
            m.attempts.attempt,
            MessageStatus::Sent,
            herald::ports::Clock::now_ms(&*env.clock),
        )
    };
    env.services
        .messages
        .apply_message_status(&id, &change)
        .await
        .unwrap();
    m.twilio_sid.unwrap()
}

/// The SIDs the sweeper asked Twilio about so far.
fn asked(env: &TestEnv) -> HashSet<String> {
    env.sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.contains("/Messages/"))
        .filter_map(|r| {
            r.path
                .rsplit('/')
                .next()
                .map(|s| s.trim_end_matches(".json").to_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_backlog_of_stuck_messages_neither_hides_a_recent_one_nor_is_left_unvisited() {
    // Twilio moves the messages on; their callbacks are lost.
    let env = TestEnv::start_losing_callbacks(&[
        ("RECIPIENT_LIMIT_PER_HOUR", "100000"),
        ("RECIPIENT_LIMIT_PER_DAY", "100000"),
        ("CALLER_RATE_LIMIT_PER_MINUTE", "100000"),
    ])
    .await;
    env.sim.set_outcome(STUCK, twilio_sim::Outcome::StaysSent);
    let mut stuck = Vec::new();
    for i in 0..200 {
        stuck.push(send(&env, STUCK, &format!("Backlog alert {i}")).await);
        env.clock.advance(1);
    }
    env.sim.flush_callbacks().await;
    let mut stuck_sids = HashSet::new();
    for id in &stuck {
        stuck_sids.insert(sent(&env, id).await);
    }
    env.clock.advance(GRACE_MS * 2);

    let fresh = send(&env, FRESH, "Pager: db-1 is down").await;
    env.sim.flush_callbacks().await;
    sent(&env, &fresh).await;
    env.clock.advance(GRACE_MS * 2);

    herald::delivery::sweep(&env.services, GRACE_MS, LIMIT)
        .await
        .unwrap();
    assert_eq!(
        record(&env, &fresh).await.status,
        MessageStatus::Delivered,
        "the very next sweep reconciles the recent message"
    );
    let sweeps = 200_usize.div_ceil((LIMIT / 2) as usize);
    for _ in 1..sweeps {
        herald::delivery::sweep(&env.services, GRACE_MS, LIMIT)
            .await
            .unwrap();
    }
    let asked = asked(&env);
    let missed: Vec<&String> = stuck_sids.difference(&asked).collect();
    assert!(
        missed.is_empty(),
        "{} of 200 never asked about in {sweeps} sweeps",
        missed.len()
    );
    for id in stuck {
        assert_eq!(
            record(&env, &id).await.status,
            MessageStatus::Sent,
            "still stuck"
        );
    }
}

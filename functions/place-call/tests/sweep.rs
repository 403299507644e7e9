//! The sweeper for calls, on the embedded adapters with the Twilio simulator and a manual clock:
//! a call whose job was lost, or whose caller died holding its claim, is placed once its lease
//! has run out (never twice: Twilio is asked first); a call whose final callback never came is
//! finished from what Twilio says, only when the fetched call is the record's own.

use herald::domain::{Call, CallId, CallStatus, EventKind};
use herald::ports::Order;
use herald::service::{CrashPoint, Services};
use herald::test_env::{TestEnv, json_request};
use serde_json::json;

mod common;
use common::run_retries;

const TO: &str = "+14155550123";
const OTHER: &str = "+14155550188";
/// The sweeper's grace, as the retry processor runs it.
const GRACE_MS: i64 = 30_000;

async fn place_with(svc: &Services, to: &str) -> (u16, serde_json::Value) {
    common::place_with(svc, to, "Database primary is down").await
}

/// An environment whose status callbacks go nowhere: to a loopback port no one listens on (so
/// every callback the simulator posts is refused, as when Herald's endpoint is down).
async fn env_losing_callbacks() -> TestEnv {
    TestEnv::start_losing_callbacks(&[]).await
}

async fn call(env: &TestEnv, id: &CallId) -> Call {
    common::call(env, id.as_str()).await
}

fn now(env: &TestEnv) -> i64 {
    herald::ports::Clock::now_ms(&*env.clock)
}

async fn sweep(env: &TestEnv) -> u32 {
    herald::delivery::sweep(&env.services, GRACE_MS, 500)
        .await
        .unwrap()
}

/// The request died once the call was recorded, before anything was queued or placed: without
/// a sweeper for calls, the alert stays `accepted` for good.
#[tokio::test]
async fn a_call_whose_request_died_after_recording_it_is_placed_by_the_sweeper() {
    let env = TestEnv::start().await;
    let dying = env.services_with_crash(CrashPoint::Recorded(1), 0.0, 0.0);
    let died = place_call::handle(
        &dying,
        json_request(
            "POST",
            "/v1/calls",
            &json!({"to": TO, "message": "Disk full"}),
        ),
    )
    .await;
    assert!(died.is_err(), "the invocation died");
    let listed = env
        .services
        .calls
        .records_by_status(CallStatus::Accepted, i64::MAX, 10, Order::OldestFirst, None)
        .await
        .unwrap()
        .records;
    assert_eq!(listed.len(), 1);
    let id = listed[0].id.clone();
    assert_eq!(env.sim.creates_for_call(TO), 0);

    // The record was created holding its first attempt's claim: not before that lease and the
    // grace have passed.
    let until = listed[0]
        .attempts
        .claimed_until_ms
        .expect("recorded with its claim");
    assert_eq!(sweep(&env).await, 0);
    env.clock.advance(until - now(&env) + GRACE_MS + 1);
    assert_eq!(sweep(&env).await, 1, "the sweeper queues the attempt");
    assert_eq!(run_retries(&env).await, 1);
    let c = call(&env, &id).await;
    assert_eq!(c.status, CallStatus::Queued);
    assert!(c.twilio_sid.is_some());
    assert_eq!(env.sim.creates_for_call(TO), 1);
    // Nothing is left to do: sweeping again places nothing more.
    env.clock.advance(GRACE_MS + 1_000);
    sweep(&env).await;
    run_retries(&env).await;
    assert_eq!(env.sim.creates_for_call(TO), 1, "placed once");
}

/// The caller died holding the claim (before Twilio, or after Twilio accepted the call): the
/// sweeper leaves the attempt alone while the lease holds, then has it made again, and the
/// next attempt asks Twilio first, so the callee is called exactly once.
#[tokio::test]
async fn an_attempt_whose_caller_died_is_resumed_after_its_lease_and_never_placed_twice() {
    for (claim, send, creates) in [(1.0, 0.0, 0), (0.0, 1.0, 1)] {
        let env = TestEnv::start().await;
        let dying = env.services_with_chaos(claim, send);
        let (status, b) = place_with(&dying, TO).await;
        assert_eq!(status, 202, "{b}");
        let id: CallId = b["id"].as_str().unwrap().parse().unwrap();
        let held = call(&env, &id).await;
        assert_eq!(held.status, CallStatus::Accepted);
        let until = held
            .attempts
            .claimed_until_ms
            .expect("the dead caller's claim");
        assert_eq!(env.sim.creates_for_call(TO), creates);

        // While the lease holds, the sweeper leaves the attempt to its holder.
        env.clock.advance(until - now(&env) - 1);
        assert_eq!(sweep(&env).await, 0, "the claim still holds");
        // Once it ran out (and the grace passed), the sweeper queues the attempt; the claim is
        // taken over as ambiguous, Twilio is asked, and the call placed (or adopted).
        env.clock.advance(GRACE_MS + 2);
        assert_eq!(sweep(&env).await, 1);
        assert_eq!(run_retries(&env).await, 1);
        let c = call(&env, &id).await;
        assert_eq!(c.status, CallStatus::Queued, "claim {claim}, send {send}");
        assert_eq!(env.sim.creates_for_call(TO), 1, "called once in all");
        let sid = c.twilio_sid.clone().unwrap();
        assert_eq!(env.sim.calls()[0].sid, sid);
    }
}

/// Twilio placed the call and it ended, but its status callbacks never came (held by the
/// simulator, never delivered): the sweeper asks Twilio and the call ends as Twilio says, with
/// a timeline event saying so.
#[tokio::test]
async fn a_call_whose_final_callback_never_came_is_finished_from_twilio() {
    let env = env_losing_callbacks().await;
    let (status, b) = place_with(&env.services, TO).await;
    assert_eq!(status, 201, "{b}");
    // The call rings, is answered and ends at Twilio; every callback is refused.
    env.sim.flush_callbacks().await;
    let id: CallId = b["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(call(&env, &id).await.status, CallStatus::Queued);

    env.clock.advance(GRACE_MS + 1_000);
    assert_eq!(sweep(&env).await, 1, "the sweeper applied Twilio's status");
    let c = call(&env, &id).await;
    assert_eq!(c.status, CallStatus::Completed, "{c:?}");
    let events = env.timeline(id.as_str()).await;
    assert!(
        events.iter().any(|e| e.kind == EventKind::Swept
            && e.applied
            && e.status.as_deref() == Some("completed")),
        "{events:?}"
    );
    assert_eq!(env.sim.creates_for_call(TO), 1);
}

/// A record holding a SID whose call went to someone else (a corrupted record, a SID mix-up):
/// the sweeper applies nothing from it, and says so in the record's timeline.
#[tokio::test]
async fn the_sweeper_applies_nothing_from_another_recipient_s_call() {
    let env = env_losing_callbacks().await;
    let (_, b) = place_with(&env.services, TO).await;
    let (_, other) = place_with(&env.services, OTHER).await;
    env.sim.flush_callbacks().await;
    let id: CallId = b["id"].as_str().unwrap().parse().unwrap();
    let other_id: CallId = other["id"].as_str().unwrap().parse().unwrap();
    let other_sid = call(&env, &other_id).await.twilio_sid.unwrap();
    env.services
        .calls
        .update_record(&id, &|c: &Call| {
            let mut c = c.clone();
            c.twilio_sid = Some(other_sid.clone());
            Some(c)
        })
        .await
        .unwrap();

    env.clock.advance(GRACE_MS + 1_000);
    sweep(&env).await;
    assert_eq!(
        call(&env, &id).await.status,
        CallStatus::Queued,
        "unchanged"
    );
    assert_eq!(
        call(&env, &other_id).await.status,
        CallStatus::Completed,
        "the other call's own record is finished"
    );
    let events = env.timeline(id.as_str()).await;
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::SweepMismatch && !e.applied),
        "{events:?}"
    );
}

/// A call that rings forever (its final callback never comes, Twilio says `ringing`) ends
/// `unconfirmed` once FINAL_STATE_AFTER_SECS has passed since its last report, not before, and
/// is never placed again.
#[tokio::test]
async fn a_call_that_never_ends_is_finished_unconfirmed_after_the_configured_time() {
    let env = TestEnv::start_losing_callbacks(&[("FINAL_STATE_AFTER_SECS", "3600")]).await;
    env.sim
        .set_call_outcome(TO, twilio_sim::CallOutcome::RingsForever);
    let (status, answer) = place_with(&env.services, TO).await;
    assert_eq!(status, 201, "{answer}");
    let id: CallId = answer["id"].as_str().unwrap().parse().unwrap();
    env.sim.flush_callbacks().await;
    let placed = env.sim.calls().len();

    // The sweeper learns from Twilio that it rings; the wait runs from that last report.
    env.clock.advance(GRACE_MS * 2);
    sweep(&env).await;
    assert_eq!(call(&env, &id).await.status, CallStatus::Ringing);
    env.clock.advance(3_600_000 - 60_000);
    sweep(&env).await;
    let c = call(&env, &id).await;
    assert_eq!(c.status, CallStatus::Ringing, "not final before its time");

    env.clock.advance(120_000);
    sweep(&env).await;
    let c = call(&env, &id).await;
    assert_eq!((c.status, c.attempts.attempt), (CallStatus::Unconfirmed, 1));
    let events = env.timeline(id.as_str()).await;
    assert!(
        events.iter().any(|e| e.kind == EventKind::Unconfirmed),
        "{events:?}"
    );
    env.clock.advance(3_600_000);
    sweep(&env).await;
    assert_eq!(run_retries(&env).await, 0);
    assert_eq!(env.sim.calls().len(), placed, "placed once");
    assert_eq!(call(&env, &id).await.status, CallStatus::Unconfirmed);
}

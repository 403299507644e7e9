//! Reconciling a call attempt whose outcome is unknown, on the embedded adapters with the
//! Twilio simulator and a manual clock: a call is adopted only when it is the record's own
//! (same To and From, created within the ambiguous attempt's window, owned by no other record;
//! Twilio's Call resource shows no TwiML, so the text cannot be compared); an identical alert's
//! call is never taken for it.

use herald::domain::CallStatus;
use herald::service::Services;
use herald::test_env::{TestEnv, faults_500, faults_lost_answer};

mod common;
use common::{call, place_with, run_retries};

const TO: &str = "+14155550123";

/// `POST /v1/calls` of the alert to [`TO`] through `svc` (services that may die).
async fn place(svc: &Services) -> (u16, serde_json::Value) {
    place_with(svc, TO, "Disk full").await
}

/// Places the alert while Twilio fails with `faults`: accepted (202), its outcome unknown; its
/// id.
async fn place_during(env: &TestEnv, faults: twilio_sim::Faults) -> String {
    let (status, b) = env.with_faults(faults, place(&env.services)).await;
    assert_eq!(status, 202, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// The defect of issue 2/8 for calls: B's create is answered 500, then A, to the same number,
/// is placed; B's next attempt must place its own call, not adopt A's.
#[tokio::test]
async fn an_identical_alert_s_call_is_not_adopted() {
    let env = TestEnv::start().await;
    let b = place_during(&env, faults_500()).await;
    assert!(call(&env, &b).await.attempts.ambiguous_since_ms.is_some());
    let (status, a) = place(&env.services).await;
    assert_eq!(status, 201, "{a}");
    let a_sid = call(&env, a["id"].as_str().unwrap())
        .await
        .twilio_sid
        .expect("A was placed");

    env.clock.advance(10_000);
    assert_eq!(run_retries(&env).await, 1);
    let b = call(&env, &b).await;
    assert_eq!(b.status, CallStatus::Queued);
    let b_sid = b.twilio_sid.clone().expect("B was placed");
    assert_ne!(b_sid, a_sid, "B has its own Twilio call, not A's");
    assert_eq!(env.sim.creates_for_call(TO), 2, "one call per alert");
}

/// B's own call reached Twilio but the answer was lost (a timeout after Twilio accepted): B's
/// next attempt adopts it (unowned, same To and From, in the window) and calls no one again.
#[tokio::test]
async fn a_lost_answer_s_call_is_still_adopted() {
    let env = TestEnv::start_impatient().await;
    let b = place_during(&env, faults_lost_answer()).await;
    let c = call(&env, &b).await;
    assert!(c.attempts.ambiguous_since_ms.is_some() && c.attempts.ambiguous_until_ms.is_some());
    assert_eq!(env.sim.creates_for_call(TO), 1, "Twilio has it");

    env.clock.advance(10_000);
    assert_eq!(run_retries(&env).await, 1);
    let c = call(&env, &b).await;
    assert_eq!(c.status, CallStatus::Queued);
    let sid = env.sim.calls()[0].sid.clone();
    assert_eq!(c.twilio_sid.as_deref(), Some(sid.as_str()), "adopted");
    assert_eq!(env.sim.creates_for_call(TO), 1, "never called twice");
    assert_eq!(
        env.sid_owner(&sid).await,
        Some(herald::ports::SidOwner {
            record_id: b,
            attempt: 2
        })
    );
}

/// Two unowned calls to the callee in B's window (B's own, whose answer was lost, and one of a
/// caller that died before recording it): B cannot tell which is its own and calls again.
#[tokio::test]
async fn two_candidate_calls_call_again_and_are_counted() {
    let env = TestEnv::start_impatient().await;
    let b = place_during(&env, faults_lost_answer()).await;
    let dying = env.services_with_chaos(0.0, 1.0);
    assert_eq!(place(&dying).await.0, 202);
    assert_eq!(env.sim.creates_for_call(TO), 2);

    env.clock.advance(10_000);
    run_retries(&env).await;
    let c = call(&env, &b).await;
    assert_eq!(c.status, CallStatus::Queued);
    assert_eq!(env.sim.creates_for_call(TO), 3, "called again");
    assert_eq!(
        env.sim.calls().last().map(|r| r.sid.clone()),
        c.twilio_sid,
        "B holds the call it placed now"
    );
    env.assert_reconciled_ambiguously(&b, "B's timeline says it called again")
        .await;
}

/// The sibling rule for calls: B's create is answered 500; A, to the same callee, reaches
/// Twilio and its sender dies before registering the answer. A's call is the one unowned match
/// in B's window, but A's claim is in doubt: B places its own call (counted) and keeps its
/// first attempt in doubt, and A, taken over after its lease, holds no call of B's.
#[tokio::test]
async fn a_sibling_in_doubt_keeps_its_call_from_being_adopted() {
    let env = TestEnv::start().await;
    let b = place_during(&env, faults_500()).await;
    let dying = env.services_with_chaos(0.0, 1.0);
    let (status, a) = place(&dying).await;
    assert_eq!(status, 202, "{a}");
    let a = a["id"].as_str().unwrap().to_owned();
    assert_eq!(env.sim.creates_for_call(TO), 1, "A's call reached Twilio");

    env.clock.advance(10_000);
    assert_eq!(run_retries(&env).await, 1);
    let bc = call(&env, &b).await;
    let b_sid = bc.twilio_sid.clone().expect("B was placed");
    assert_eq!(env.sim.creates_for_call(TO), 2, "B placed its own call");
    assert!(
        bc.attempts.doubt_since_ms.is_some(),
        "B's first attempt stays in doubt"
    );

    env.clock.advance(10 * 60 * 1000);
    herald::delivery::sweep(&env.services, 5 * 60 * 1000, 500)
        .await
        .unwrap();
    run_retries(&env).await;
    let ac = call(&env, &a).await;
    let a_sid = ac.twilio_sid.clone().expect("A has a call");
    assert_ne!(a_sid, b_sid, "A holds no call of B's");
    for (id, sid) in [(&a, &a_sid), (&b, &b_sid)] {
        let owner = env.sid_owner(sid).await.expect("owned");
        assert_eq!(&owner.record_id, id);
    }
}

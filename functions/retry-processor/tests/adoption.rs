//! Reconciling an attempt whose outcome is unknown, on the embedded adapters with the Twilio
//! simulator and a manual clock: a message is adopted only when it is the record's own (same
//! To, sender and body, created within the ambiguous attempt's window, owned by no other
//! record); an identical alert's message is never taken for it.

use herald::domain::{Attempted, Message, MessageId, MessageStatus};
use herald::ports::Clock;
use herald::test_env::{TestEnv, faults_500, faults_lost_answer};

mod common;
use common::{BODY, assert_adopted_once, post, post_with, record, run_retries, send};

const TO: &str = "+14155550100";

/// Sends the alert while Twilio fails with `faults`: accepted (202), its outcome unknown; its
/// id.
async fn post_during(env: &TestEnv, faults: twilio_sim::Faults) -> String {
    let (status, b) = env.with_faults(faults, post(env, TO)).await;
    assert_eq!(status, 202, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// Claims attempt 2 of `id` half a second later, as its sender would: the record as claimed,
/// and the attempt lease (ms).
async fn claim_attempt_2_later(env: &TestEnv, id: &MessageId) -> (Message, i64) {
    env.clock.advance(500);
    let lease = i64::try_from(env.services.config.attempt_lease.as_millis()).unwrap();
    let herald::ports::Claim::Claimed(claimed) = env
        .services
        .messages
        .claim(id, 2, env.clock.now_ms(), lease)
        .await
        .unwrap()
    else {
        panic!("attempt 2 can be claimed");
    };
    (claimed, lease)
}

/// The defect of issue 2/8: B's create is answered 500 (its outcome unknown), then A, with the
/// same number and text, is sent; B's next attempt must not take A's message for its own.
#[tokio::test]
async fn an_identical_alert_s_message_is_not_adopted() {
    let env = TestEnv::start().await;
    let b = post_during(&env, faults_500()).await;
    assert!(record(&env, &b).await.attempts.ambiguous_since_ms.is_some());
    let (status, a) = post(&env, TO).await;
    assert_eq!(status, 201, "{a}");
    let a = record(&env, a["id"].as_str().unwrap()).await;
    let a_sid = a.twilio_sid.clone().expect("A was sent");

    env.clock.advance(10_000);
    assert_eq!(run_retries(&env).await, 1);
    let b = record(&env, &b).await;
    assert_eq!(b.status, MessageStatus::Queued);
    let b_sid = b.twilio_sid.clone().expect("B was sent");
    assert_ne!(b_sid, a_sid, "B has its own Twilio message, not A's");
    assert_eq!(
        env.sim.creates_for(TO),
        2,
        "Twilio received one message per alert"
    );
    let sids: Vec<String> = env.sim.messages().iter().map(|m| m.sid.clone()).collect();
    assert!(sids.contains(&a_sid) && sids.contains(&b_sid));
}

/// B's own create reached Twilio but its answer was lost (a timeout after Twilio accepted): B's
/// next attempt finds its message (unowned, matching, in the window) and adopts it.
#[tokio::test]
async fn a_lost_answer_s_message_is_still_adopted() {
    let env = TestEnv::start_impatient().await;
    let b = post_during(&env, faults_lost_answer()).await;
    let m = record(&env, &b).await;
    let (since, until) = (
        m.attempts.ambiguous_since_ms.expect("ambiguous"),
        m.attempts.ambiguous_until_ms.expect("with its end"),
    );
    assert!(since <= until);
    assert_eq!(env.sim.creates_for(TO), 1, "Twilio has it");

    env.clock.advance(10_000);
    assert_eq!(run_retries(&env).await, 1);
    let m = assert_adopted_once(&env, &b, TO).await;
    // The SID is B's attempt 2's now: another record cannot take it.
    let owner = env
        .sid_owner(m.twilio_sid.as_deref().unwrap())
        .await
        .expect("owned");
    assert_eq!((owner.record_id.as_str(), owner.attempt), (b.as_str(), 2));
}

/// Two unowned messages match B's window (B's own, whose answer was lost, and one of a sender
/// that died before recording it): which is B's cannot be told, so B sends again and the
/// timeline says so.
#[tokio::test]
async fn two_candidates_send_again_and_are_counted() {
    let env = TestEnv::start_impatient().await;
    let b = post_during(&env, faults_lost_answer()).await;
    // A, identical, reaches Twilio in the same second, and its sender dies before recording.
    let dying = env.services_with_chaos(0.0, 1.0);
    assert_eq!(
        post_with(&dying, TO).await.0,
        202,
        "recorded, not sent as far as Herald knows"
    );
    assert_eq!(env.sim.creates_for(TO), 2);

    env.clock.advance(10_000);
    run_retries(&env).await;
    let m = record(&env, &b).await;
    assert_eq!(m.status, MessageStatus::Queued);
    assert_eq!(
        env.sim.creates_for(TO),
        3,
        "sent again: neither was surely B's"
    );
    let sid = m.twilio_sid.clone().unwrap();
    assert_eq!(
        env.sim.messages().last().map(|r| r.sid.clone()),
        Some(sid),
        "B holds the message it sent now"
    );
    env.assert_reconciled_ambiguously(&b, "B's timeline says it sent again")
        .await;
}

/// An unowned match created less than the settle margin ago may be another record's whose
/// answer is on its way: the attempt decides nothing now, and is not used up.
#[tokio::test]
async fn a_candidate_too_young_interrupts_without_using_the_attempt() {
    let env = TestEnv::start_impatient().await;
    let id: MessageId = post_during(&env, faults_lost_answer())
        .await
        .parse()
        .unwrap();
    let m = record(&env, id.as_str()).await;
    assert_eq!((m.status, m.attempts.attempt), (MessageStatus::Retrying, 2));

    // Attempt 2 is made half a second later, well inside the settle margin.
    let (claimed, lease) = claim_attempt_2_later(&env, &id).await;
    let outcome = herald::delivery::attempt_send(&env.services, &claimed).await;
    assert_eq!(outcome, herald::delivery::Delivery::Interrupted);
    let m = record(&env, id.as_str()).await;
    assert_eq!(
        (m.status, m.attempts.attempt),
        (MessageStatus::Retrying, 2),
        "not used up"
    );
    assert!(m.twilio_sid.is_none());
    assert_eq!(env.sim.creates_for(TO), 1, "nothing sent");
    let owner = env.sid_owner(&env.sim.messages()[0].sid).await;
    assert_eq!(owner, None, "nothing owned");

    // Once the lease is over, the attempt is made again and adopts the settled message.
    env.clock.advance(lease + 10_000);
    run_retries(&env).await;
    let m = record(&env, id.as_str()).await;
    assert_eq!((m.status, m.attempts.attempt), (MessageStatus::Queued, 2));
    assert_eq!(
        m.twilio_sid.as_deref(),
        Some(env.sim.messages()[0].sid.as_str())
    );
    assert_eq!(env.sim.creates_for(TO), 1, "never sent twice");
}

/// The sweeper asks Twilio about messages whose callbacks never came. It applies what Twilio
/// reports only for the record's own message (the recipient's lookup token is the record's),
/// and the timeline says what it did either way.
#[tokio::test]
async fn the_sweeper_applies_only_what_the_record_s_own_message_reports() {
    // Callbacks go to a closed port: Twilio moves the messages on, Herald never hears of it.
    let env = TestEnv::start_losing_callbacks(&[]).await;
    let a = send(&env, TO, BODY).await;
    let c = send(&env, "+14155550177", BODY).await;
    env.sim.flush_callbacks().await;
    let a_sid = record(&env, &a).await.twilio_sid.unwrap();
    // C's record holds A's SID: a record must never take another recipient's status for its own.
    let c_id: MessageId = c.parse().unwrap();
    let held = a_sid.clone();
    env.services
        .messages
        .update_record(&c_id, &move |m| {
            let mut next = m.clone();
            next.twilio_sid = Some(held.clone());
            Some(next)
        })
        .await
        .unwrap();

    env.clock.advance(retry_processor::SWEEP_GRACE_MS * 2);
    assert_eq!(retry_processor::sweep(&env.services).await.unwrap(), 1);
    assert_eq!(record(&env, &a).await.status, MessageStatus::Delivered);
    let c_now = record(&env, &c).await;
    assert_eq!(c_now.status, MessageStatus::Queued, "not applied");
    let kinds = |events: &[herald::domain::Event]| -> Vec<(herald::domain::EventKind, bool)> {
        events.iter().map(|e| (e.kind, e.applied)).collect()
    };
    let a_events = env.timeline(&a).await;
    assert!(
        a_events
            .iter()
            .any(|e| e.kind == herald::domain::EventKind::Swept
                && e.applied
                && e.status.as_deref() == Some("delivered")
                && e.twilio_sid.as_deref() == Some(a_sid.as_str())),
        "{:?}",
        kinds(&a_events)
    );
    let c_events = env.timeline(&c).await;
    assert!(
        c_events
            .iter()
            .any(|e| e.kind == herald::domain::EventKind::SweepMismatch && !e.applied),
        "{:?}",
        kinds(&c_events)
    );
    assert!(
        !c_events
            .iter()
            .any(|e| e.kind == herald::domain::EventKind::Swept),
        "nothing swept into C"
    );
    // Sweeping again adds nothing: one event per status found, one per mismatch and attempt.
    let before = (a_events.len(), c_events.len());
    retry_processor::sweep(&env.services).await.unwrap();
    assert_eq!(
        (env.timeline(&a).await.len(), env.timeline(&c).await.len()),
        before
    );
}

/// Twilio's answer to a create is proof the message is this record's: when its SID is owned by
/// another record already, that is logged and counted, the answer is kept for this record, and
/// nothing fails.
#[tokio::test]
async fn a_create_answered_with_a_sid_another_record_owns_is_kept() {
    let env = TestEnv::start().await;
    // The simulator draws SIDs from its seed: a twin with the same seed shows the next one.
    let mut twin_cfg = twilio_sim::SimConfig::new(
        env.creds.account_sid.clone(),
        env.creds.auth_token.expose().clone(),
    );
    twin_cfg.api_keys = vec![(
        env.creds.api_key_sid.clone(),
        env.creds.api_key_secret.expose().clone(),
    )];
    twin_cfg.callback_mode = twilio_sim::CallbackMode::Manual;
    twin_cfg.seed = 42;
    let twin = twilio_sim::Simulator::start(twin_cfg).await.unwrap();
    let twin_client = herald::twilio::Client::new(&herald::twilio::ClientOptions {
        base_url: twin.base_url(),
        connect_timeout: std::time::Duration::from_secs(1),
        request_timeout: std::time::Duration::from_secs(2),
    })
    .unwrap();
    let next_sid = twin_client
        .create_message(
            &env.creds,
            &herald::twilio::NewMessage {
                to: TO,
                sender: &env.services.config.sender,
                body: BODY,
                status_callback: "https://hooks.example.test/cb",
            },
        )
        .await
        .unwrap()
        .sid;
    twin.shutdown().await;
    let someone_else = herald::ports::SidOwner {
        record_id: "msg_someone_else".to_owned(),
        attempt: 1,
    };
    env.services
        .sid_owners
        .own_twilio_sid(&next_sid, &someone_else, env.clock.now_ms())
        .await
        .unwrap();

    let (status, a) = post(&env, TO).await;
    assert_eq!(status, 201, "{a}");
    let m = record(&env, a["id"].as_str().unwrap()).await;
    assert_eq!(m.status, MessageStatus::Queued);
    assert_eq!(
        m.twilio_sid.as_deref(),
        Some(next_sid.as_str()),
        "the answer is kept"
    );
    assert_eq!(
        env.sid_owner(&next_sid).await,
        Some(someone_else),
        "ownership is not taken over"
    );
}

/// A record's earlier attempt's message (its outcome recorded: undelivered, retried) is history,
/// not the next attempt's: even inside a later ambiguous attempt's window it is never adopted.
#[tokio::test]
async fn an_earlier_attempt_s_own_message_is_not_adopted_for_a_later_one() {
    let env = TestEnv::start().await;
    let (status, answer) = post(&env, TO).await;
    assert_eq!(status, 201, "{answer}");
    let id: MessageId = answer["id"].as_str().unwrap().parse().unwrap();
    let first = record(&env, id.as_str()).await.twilio_sid.unwrap();
    // Attempt 1 ends undelivered with a code Twilio may get past: attempt 2 is due.
    let report = herald::delivery::Report {
        attempt: 1,
        status: MessageStatus::Undelivered,
        twilio_sid: Some(first.clone()),
        error_code: Some(30003),
        at_ms: env.clock.now_ms(),
    };
    herald::delivery::apply_report(&env.services, &id, &report)
        .await
        .unwrap();
    assert_eq!(record(&env, id.as_str()).await.attempts.attempt, 2);

    // Attempt 2, half a second later, is answered 500: its outcome is unknown.
    env.sim.set_faults(faults_500());
    let (claimed, lease) = claim_attempt_2_later(&env, &id).await;
    assert_eq!(
        herald::delivery::attempt_send(&env.services, &claimed).await,
        herald::delivery::Delivery::Deferred
    );
    env.sim.set_faults(twilio_sim::Faults::default());
    let m = record(&env, id.as_str()).await;
    let (since, _) = m.ambiguous_window(lease).expect("ambiguous");
    assert!(since - 2_000 <= env.sim.messages()[0].meta.date_created.unix_timestamp() * 1000);

    // Attempt 3 finds attempt 1's message in the window, owned by attempt 1: it sends its own.
    env.clock.advance(10_000);
    run_retries(&env).await;
    let m = record(&env, id.as_str()).await;
    assert_eq!((m.status, m.attempts.attempt), (MessageStatus::Queued, 3));
    assert_ne!(m.twilio_sid.as_deref(), Some(first.as_str()));
    assert_eq!(env.sim.creates_for(TO), 2);
}

/// The case the alerting soak found: B's create is answered 500 (its outcome unknown); A,
/// identical, reaches Twilio and its sender dies before registering the answer, its callbacks
/// lost with it. A's message is the one unowned match in B's window, yet it may be A's: B must
/// not adopt it (a lost alert reported as delivered), and sends again, counted. A, taken over
/// after its lease, cannot tell either (B's first attempt stays in doubt) and sends again too:
/// every alert has a message of its own, and no record holds another's.
#[tokio::test]
async fn a_sibling_in_doubt_keeps_its_message_from_being_adopted() {
    let env = TestEnv::start().await;
    let b = post_during(&env, faults_500()).await;
    let dying = env.services_with_chaos(0.0, 1.0);
    let (status, a) = post_with(&dying, TO).await;
    assert_eq!(status, 202, "{a}");
    let a = a["id"].as_str().unwrap().to_owned();
    assert_eq!(env.sim.creates_for(TO), 1, "A's message reached Twilio");
    let a_first = env.sim.messages()[0].sid.clone();

    env.clock.advance(10_000);
    assert_eq!(run_retries(&env).await, 1);
    let bm = record(&env, &b).await;
    assert_eq!(bm.status, MessageStatus::Queued);
    let b_sid = bm.twilio_sid.clone().expect("B was sent");
    assert_ne!(b_sid, a_first, "B did not adopt A's message");
    assert_eq!(env.sim.creates_for(TO), 2, "B sent its own");
    assert!(
        bm.attempts.doubt_since_ms.is_some(),
        "B's first attempt stays in doubt"
    );
    env.assert_reconciled_ambiguously(&b, "B's timeline says it sent again")
        .await;

    // A's claim runs out; the sweeper takes its attempt over.
    env.clock.advance(10 * 60 * 1000);
    retry_processor::sweep(&env.services).await.unwrap();
    run_retries(&env).await;
    let am = record(&env, &a).await;
    let a_sid = am.twilio_sid.clone().expect("A has a message");
    assert_ne!(a_sid, b_sid, "A holds no message of B's");
    assert_eq!(
        env.sim.creates_for(TO),
        3,
        "A could not tell its own either"
    );
    env.assert_reconciled_ambiguously(&a, "A's timeline says it sent again")
        .await;
    for (id, sid) in [(&a, &a_sid), (&b, &b_sid)] {
        let owner = env.sid_owner(sid).await.expect("owned");
        assert_eq!(&owner.record_id, id);
    }
}

/// An identical record whose outcome is known is no sibling in doubt: B's one unowned match is
/// still adopted (B's own claim and window do not count against it either).
#[tokio::test]
async fn a_record_s_own_span_in_doubt_does_not_keep_it_from_adopting() {
    let env = TestEnv::start_impatient().await;
    let b = post_during(&env, faults_lost_answer()).await;
    // An identical alert sent in the same second, its answer recorded: its message is owned,
    // and the record is in doubt no more.
    let (status, _) = post(&env, TO).await;
    assert_eq!(status, 201);
    env.clock.advance(10_000);
    run_retries(&env).await;
    let m = record(&env, &b).await;
    assert_eq!(
        m.twilio_sid.as_deref(),
        Some(env.sim.messages()[0].sid.as_str()),
        "adopted"
    );
    assert_eq!(env.sim.creates_for(TO), 2, "one message per alert");
    assert!(m.attempts.doubt_since_ms.is_none());
}

/// B's create reached Twilio, its answer was lost, and Twilio's signed status callback for
/// attempt 1 registered the SID as attempt 1's before attempt 2 reconciled: the message is
/// still B's own (attempt 1's outcome was unknown), adopted, never sent twice.
#[tokio::test]
async fn a_message_a_callback_registered_for_an_unknown_attempt_is_adopted() {
    let env = TestEnv::start_impatient().await;
    let b = post_during(&env, faults_lost_answer()).await;
    let sid = env.sim.messages()[0].sid.clone();
    // What webhook-receiver does with the callback of attempt 1.
    herald::reconcile::register_reported(
        &env.services,
        "sms",
        &b,
        1,
        Some(&sid),
        env.clock.now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(
        record(&env, &b).await.attempts.ambiguous_from_attempt,
        Some(1)
    );

    env.clock.advance(10_000);
    run_retries(&env).await;
    let m = record(&env, &b).await;
    assert_eq!(m.status, MessageStatus::Queued);
    assert_eq!(m.twilio_sid.as_deref(), Some(sid.as_str()), "adopted");
    assert_eq!(env.sim.creates_for(TO), 1, "never sent twice");
}

//! The conformance suite of [`CallStore`] (feature `test-util`): the contract of the call store,
//! checked against the SQLite and DynamoDB adapters alike, races included.
//!
//! Like [`crate::testing`], each function uses fresh ids and panics on the first broken promise.

use std::sync::Arc;

use crate::crypto::Vault;
use crate::domain::{
    Call, CallFields, CallId, CallReport, CallRetry, CallStatus, Recipient, Speech,
};
use crate::phone::Masked;
use crate::ports::{CallApplied, CallClaim, CallStore, Decide, StoreError};
use crate::testing::{Alternate, contains, race};

/// A call accepted at `id_ms` for `to_e164` speaking `text`, both sealed through `vault`, at
/// attempt 1, status `accepted`.
pub async fn sample_call(
    vault: &Vault,
    id_ms: i64,
    to_e164: &str,
    text: &str,
    require_ack: bool,
) -> Call {
    let id = CallId::generate(u64::try_from(id_ms).expect("a time after 1970"));
    let message = vault
        .seal(id.as_str(), text.as_bytes())
        .await
        .expect("seal the text");
    Call {
        to: Recipient {
            sealed: vault
                .seal(id.as_str(), to_e164.as_bytes())
                .await
                .expect("seal the number"),
            token: vault.lookup_token(to_e164).await.expect("lookup token"),
            masked: Masked::of(to_e164).as_str().to_owned(),
            country: Some("US".to_owned()),
        },
        id,
        caller: "conformance".to_owned(),
        template: None,
        status: CallStatus::Accepted,
        attempts: crate::domain::Attempts::new(id_ms),
        twilio_sid: None,
        error_code: None,
        error_reason: None,
        own: CallFields {
            message,
            speech: Speech {
                voice: "alice".to_owned(),
                language: "en-US".to_owned(),
                loop_count: 1,
            },
            require_ack,
            duration_seconds: None,
            acknowledged_at_ms: None,
        },
    }
}

fn applied(r: CallApplied) -> Call {
    match r {
        CallApplied::Applied(c) => c,
        other => panic!("expected the change to apply, got {other:?}"),
    }
}

fn ignored(r: CallApplied) -> Call {
    match r {
        CallApplied::Ignored(c) => c,
        other => panic!("expected the change to be ignored, got {other:?}"),
    }
}

const T0: i64 = 1_731_600_000_000;

fn report(attempt: u32, status: CallStatus, at_ms: i64) -> CallReport {
    CallReport::new(attempt, status, at_ms)
}

/// Insert, read, the status machine by attempt, claims, retries and acknowledgement.
pub async fn call_store_contract(store: Arc<dyn CallStore>, vault: &Vault) {
    let c = sample_call(vault, T0, "+14155550100", "Disk full on db-1", true).await;
    store.insert_record(&c).await.expect("insert");
    assert!(
        matches!(store.insert_record(&c).await, Err(StoreError::Conflict)),
        "a second insert of one id is a conflict"
    );
    assert_eq!(store.get_record(&c.id).await.expect("get"), Some(c.clone()));
    let missing = CallId::generate(1);
    assert_eq!(store.get_record(&missing).await.expect("get"), None);
    assert_eq!(
        store
            .report_call(&missing, &report(1, CallStatus::Queued, T0), 3, T0)
            .await
            .expect("report"),
        CallApplied::NotFound
    );
    assert_eq!(
        store.claim(&missing, 1, T0, 1000).await.expect("claim"),
        CallClaim::NotFound
    );

    // Claims: one holder; a live claim is respected; a wrong attempt is stale.
    let held = match store.claim(&c.id, 1, T0 + 10, 1000).await.expect("claim") {
        CallClaim::Claimed(h) => h,
        other => panic!("expected a claim, got {other:?}"),
    };
    assert_eq!(held.attempts.claimed_until_ms, Some(T0 + 1010));
    assert_eq!(
        store.claim(&c.id, 1, T0 + 20, 1000).await.expect("claim"),
        CallClaim::Busy {
            until_ms: T0 + 1010
        }
    );
    assert!(matches!(
        store.claim(&c.id, 2, T0 + 20, 1000).await.expect("claim"),
        CallClaim::Stale(_)
    ));

    // The status moves up only, at its attempt.
    let mut queued = report(1, CallStatus::Queued, T0 + 30);
    queued.twilio_sid = Some("CA00000000000000000000000000000001".to_owned());
    let q = applied(
        store
            .report_call(&c.id, &queued, 3, T0)
            .await
            .expect("report"),
    );
    assert_eq!(
        (
            q.status,
            q.attempts.claimed_until_ms,
            q.twilio_sid.as_deref()
        ),
        (
            CallStatus::Queued,
            None,
            Some("CA00000000000000000000000000000001")
        )
    );
    applied(
        store
            .report_call(&c.id, &report(1, CallStatus::Ringing, T0 + 40), 3, T0)
            .await
            .expect("report"),
    );
    let back = ignored(
        store
            .report_call(&c.id, &report(1, CallStatus::Initiated, T0 + 50), 3, T0)
            .await
            .expect("report"),
    );
    assert_eq!(back.status, CallStatus::Ringing, "never backwards");
    ignored(
        store
            .report_call(&c.id, &report(2, CallStatus::Completed, T0 + 50), 3, T0)
            .await
            .expect("report"),
    );

    // Answered without the acknowledgement the alert asks for: the next attempt.
    applied(
        store
            .report_call(&c.id, &report(1, CallStatus::InProgress, T0 + 60), 3, T0)
            .await
            .expect("report"),
    );
    let mut done = report(1, CallStatus::Completed, T0 + 70);
    done.duration_seconds = Some(12);
    let next = applied(
        store
            .report_call(&c.id, &done, 3, T0 + 5_000)
            .await
            .expect("report"),
    );
    assert_eq!(
        (
            next.status,
            next.attempts.attempt,
            next.attempts.next_attempt_at_ms,
            next.own.duration_seconds
        ),
        (CallStatus::Retrying, 2, Some(T0 + 5_000), Some(12))
    );
    // Attempt 2 is claimed, and busy: attempt 3; attempt 3 busy is the last word.
    assert!(matches!(
        store
            .claim(&c.id, 2, T0 + 5_000, 1000)
            .await
            .expect("claim"),
        CallClaim::Claimed(_)
    ));
    let third = applied(
        store
            .report_call(
                &c.id,
                &report(2, CallStatus::Busy, T0 + 5_100),
                3,
                T0 + 9_000,
            )
            .await
            .expect("report"),
    );
    assert_eq!(
        (third.status, third.attempts.attempt),
        (CallStatus::Retrying, 3)
    );
    let last = applied(
        store
            .report_call(
                &c.id,
                &report(3, CallStatus::Busy, T0 + 9_100),
                3,
                T0 + 20_000,
            )
            .await
            .expect("report"),
    );
    assert_eq!((last.status, last.attempts.attempt), (CallStatus::Busy, 3));
    ignored(
        store
            .report_call(&c.id, &report(3, CallStatus::Completed, T0 + 9_200), 3, T0)
            .await
            .expect("report"),
    );

    // Acknowledgement: the first one counts; a done call is never claimed again.
    let a = sample_call(vault, T0, "+14155550101", "Ack me", true).await;
    store.insert_record(&a).await.expect("insert");
    let mut progress = report(1, CallStatus::InProgress, T0 + 10);
    progress.twilio_sid = Some("CA00000000000000000000000000000002".to_owned());
    applied(
        store
            .report_call(&a.id, &progress, 3, T0)
            .await
            .expect("report"),
    );
    let acked = applied(
        store
            .acknowledge_call(&a.id, 1, T0 + 20)
            .await
            .expect("ack"),
    );
    assert_eq!(acked.own.acknowledged_at_ms, Some(T0 + 20));
    assert_eq!(
        ignored(
            store
                .acknowledge_call(&a.id, 1, T0 + 30)
                .await
                .expect("ack")
        )
        .own
        .acknowledged_at_ms,
        Some(T0 + 20)
    );
    let fin = applied(
        store
            .report_call(&a.id, &report(1, CallStatus::Completed, T0 + 40), 3, T0)
            .await
            .expect("report"),
    );
    assert_eq!(
        (fin.status, fin.attempts.attempt),
        (CallStatus::Completed, 1)
    );

    // schedule: only at its attempt.
    let r = sample_call(vault, T0, "+14155550102", "Retry me", false).await;
    store.insert_record(&r).await.expect("insert");
    let retry = CallRetry {
        attempt: 1,
        error_code: Some(20500),
        error_reason: Some("Twilio answered 500".to_owned()),
        ambiguous_since_ms: Some(T0),
        ambiguous_until_ms: Some(T0 + 1),
        next_attempt_at_ms: T0 + 2_000,
        at_ms: T0 + 1,
    };
    let moved = applied(store.schedule(&r.id, &retry).await.expect("retry"));
    assert_eq!(
        (
            moved.attempts.attempt,
            moved.attempts.ambiguous_since_ms,
            moved.attempts.ambiguous_until_ms,
            moved.error_code
        ),
        (2, Some(T0), Some(T0 + 1), Some(20500))
    );
    ignored(store.schedule(&r.id, &retry).await.expect("retry"));

    // update_record never changes the id or the creation time.
    let other = CallId::generate(2);
    let kept = applied(
        store
            .update_record(&r.id, &|c: &Call| {
                let mut n = c.clone();
                n.id = other.clone();
                n.attempts.created_at_ms = 0;
                n.caller = "changed".to_owned();
                Some(n)
            })
            .await
            .expect("update"),
    );
    assert_eq!(
        (kept.id.clone(), kept.attempts.created_at_ms),
        (r.id.clone(), T0)
    );
    let stored = store
        .get_record(&r.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(stored.caller, "changed");
    assert_eq!(store.get_record(&other).await.expect("get"), None);
}

/// Concurrency: one insert of an id wins, one claim of an attempt wins, no update is lost, the
/// highest-ranked report wins whatever the order, and one acknowledgement counts.
pub async fn call_store_races(store: Arc<dyn CallStore>, vault: &Vault) {
    const N: usize = 8;
    let c = sample_call(vault, T0, "+14155550110", "Race", true).await;
    let inserts = race(N, |_| {
        let (s, c) = (store.clone(), c.clone());
        async move { s.insert_record(&c).await }
    })
    .await;
    assert_eq!(inserts.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        inserts
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(StoreError::Conflict)))
    );

    let claims = race(N, |_| {
        let (s, id) = (store.clone(), c.id.clone());
        async move { s.claim(&id, 1, T0 + 1, 60_000).await }
    })
    .await;
    let won = claims
        .iter()
        .filter(|r| matches!(r, Ok(CallClaim::Claimed(_))))
        .count();
    assert_eq!(won, 1, "exactly one claim of an attempt wins: {claims:?}");

    // No lost update: every increment lands.
    let bumps = race(N, |_| {
        let (s, id) = (store.clone(), c.id.clone());
        async move {
            let decide: &Decide<'_, Call> = &|c: &Call| {
                let mut n = c.clone();
                n.own.duration_seconds = Some(c.own.duration_seconds.unwrap_or(0) + 1);
                Some(n)
            };
            s.update_record(&id, decide).await
        }
    })
    .await;
    assert!(
        bumps
            .iter()
            .all(|r| matches!(r, Ok(CallApplied::Applied(_))))
    );
    let after = store
        .get_record(&c.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(after.own.duration_seconds, Some(N as u32));

    // Reports in any order: the highest rank wins.
    let statuses = [
        CallStatus::Queued,
        CallStatus::Initiated,
        CallStatus::Ringing,
        CallStatus::InProgress,
    ];
    let reports = race(statuses.len() * 2, |i| {
        let (s, id) = (store.clone(), c.id.clone());
        let st = statuses[i % statuses.len()];
        async move { s.report_call(&id, &report(1, st, T0 + 100), 3, T0).await }
    })
    .await;
    assert!(reports.iter().all(Result::is_ok));
    let after = store
        .get_record(&c.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(after.status, CallStatus::InProgress);

    let acks = race(N, |i| {
        let (s, id) = (store.clone(), c.id.clone());
        async move { s.acknowledge_call(&id, 1, T0 + 200 + i as i64).await }
    })
    .await;
    assert_eq!(
        acks.iter()
            .filter(|r| matches!(r, Ok(CallApplied::Applied(_))))
            .count(),
        1,
        "one acknowledgement counts"
    );
}

/// A callee's number and alert text stored through the vault, to look for in raw bytes.
#[derive(Debug, Clone)]
pub struct CallPersonalData {
    /// The call that holds them.
    pub id: CallId,
    /// The callee, E.164.
    pub e164: String,
    /// The spoken text.
    pub text: String,
}

impl CallPersonalData {
    /// Panics if the number (E.164, digits, national) or the text appears in any of `raw`;
    /// checks that `raw` holds the call id, so an empty dump cannot pass.
    pub fn assert_absent_from(&self, raw: &[Vec<u8>]) {
        use base64::Engine;
        assert!(
            raw.iter().any(|v| contains(v, self.id.as_str().as_bytes())),
            "the raw dump does not hold the call: it proves nothing"
        );
        let digits: String = self.e164.chars().filter(char::is_ascii_digit).collect();
        let national = digits.trim_start_matches('1').to_owned();
        let needles = [
            ("number (E.164)", self.e164.clone().into_bytes()),
            ("number (digits)", digits.into_bytes()),
            ("number (national)", national.into_bytes()),
            ("text", self.text.clone().into_bytes()),
            (
                "text (base64)",
                base64::engine::general_purpose::STANDARD
                    .encode(&self.text)
                    .into_bytes(),
            ),
        ];
        for (what, needle) in needles {
            for v in raw {
                assert!(!contains(v, &needle), "the {what} is stored in plaintext");
            }
        }
    }
}

/// Stores a call with a known number and text, moves it, and returns what to look for.
pub async fn store_call_personal_data(store: &dyn CallStore, vault: &Vault) -> CallPersonalData {
    let e164 = "+12025550143".to_owned();
    let text = "Reactor pressure critical in hall seven".to_owned();
    let c = sample_call(vault, T0, &e164, &text, true).await;
    store.insert_record(&c).await.expect("insert");
    let mut r = report(1, CallStatus::Queued, T0 + 1);
    r.twilio_sid = Some("CA99999999999999999999999999999999".to_owned());
    applied(store.report_call(&c.id, &r, 3, T0).await.expect("report"));
    let back = store
        .get_record(&c.id)
        .await
        .expect("get")
        .expect("present");
    crate::testing::assert_opens(vault, c.id.as_str(), &back.own.message, &text).await;
    CallPersonalData {
        id: c.id,
        e164,
        text,
    }
}

impl<S: CallStore + 'static> CallStore for Alternate<S> {}

/// [`crate::testing::in_doubt_contract`] for calls: three to one callee (calls match on their
/// callee alone), one to another.
pub async fn call_in_doubt_contract(store: Arc<dyn CallStore>, vault: &Vault) {
    let t = 1_731_800_000_000;
    let to = crate::testing::unique_number();
    let mut same = Vec::new();
    for (i, text) in ["Disk full", "Disk full", "Another text"]
        .iter()
        .enumerate()
    {
        let c = sample_call(vault, t + i as i64, &to, text, false).await;
        store.insert_record(&c).await.expect("insert");
        same.push(c);
    }
    let other = sample_call(
        vault,
        t + 3,
        &crate::testing::unique_number(),
        "Disk full",
        false,
    )
    .await;
    store.insert_record(&other).await.expect("insert");
    let same: [Call; 3] = same.try_into().expect("three");
    crate::testing::in_doubt_contract::<Call, _>(store.as_ref(), same, other, t).await;
}

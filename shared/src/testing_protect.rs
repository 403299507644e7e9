//! The conformance suite of the API-protection ports (feature `test-util`): rate limits,
//! idempotency keys, verifications and queries of messages by caller, each with its races, run
//! against SQLite and DynamoDB alike.

use std::sync::Arc;

use crate::crypto::{LookupToken, Vault};
use crate::domain::verification::CheckOutcome;
use crate::domain::{MessageStatus, Verification, VerificationId, VerificationStatus};
use crate::ports::{
    Acquired, Begun, DecideVerification, IdempotencyStore, MessagePage, MessageQueries,
    MessageQuery, MessageStore, RateLimiter, StoreError, StoredResponse, VerificationApplied,
    VerificationStore,
};
use crate::testing::{Alternate, race, sample_message, unique};

const T0: i64 = 1_731_600_000_000;

/// Runs every protection contract against `store` (which also holds `messages`).
pub async fn run_all(
    store: Arc<dyn crate::ports::ProtectionStore>,
    messages: Arc<dyn MessageStore>,
    vault: &Vault,
) {
    rate_limiter_contract(store.clone()).await;
    rate_limiter_races(store.clone()).await;
    idempotency_contract(store.clone()).await;
    idempotency_races(store.clone()).await;
    verification_contract(store.clone()).await;
    verification_races(store.clone()).await;
    message_query_contract(messages, store, vault).await;
}

fn allowed(a: Acquired) -> u32 {
    match a {
        Acquired::Allowed { used } => used,
        Acquired::Limited { .. } => panic!("expected the unit to be taken, got {a:?}"),
    }
}

/// [`RateLimiter`]: a window holds `limit` units, then refuses until it ends; keys and windows
/// are independent; a limit of 0 refuses.
pub async fn rate_limiter_contract(rl: Arc<dyn RateLimiter>) {
    let key = unique("rate");
    let window = 60_000;
    let now = T0 + 10_000; // 10 s into a minute window (T0 is a whole minute)
    for i in 1..=3 {
        assert_eq!(
            allowed(rl.acquire(&key, 3, window, now).await.expect("acquire")),
            i
        );
    }
    match rl
        .acquire(&key, 3, window, now + 5_000)
        .await
        .expect("acquire")
    {
        Acquired::Limited { retry_after_ms } => assert_eq!(retry_after_ms, 45_000),
        other => panic!("the fourth unit of three was {other:?}"),
    }
    // Refusals take nothing: a bigger limit finds 3 used.
    assert_eq!(
        allowed(rl.acquire(&key, 4, window, now).await.expect("acquire")),
        4
    );
    // Another key, the next window: fresh.
    assert_eq!(
        allowed(
            rl.acquire(&unique("rate"), 3, window, now)
                .await
                .expect("acquire")
        ),
        1
    );
    assert_eq!(
        allowed(
            rl.acquire(&key, 3, window, now + 50_000)
                .await
                .expect("acquire")
        ),
        1
    );
    assert!(matches!(
        rl.acquire(&unique("rate"), 0, window, now)
            .await
            .expect("acquire"),
        Acquired::Limited { .. }
    ));
}

/// [`RateLimiter`] under concurrency: N acquisitions at once against a limit L, exactly L pass.
pub async fn rate_limiter_races(rl: Arc<dyn RateLimiter>) {
    for (n, limit) in [(16usize, 5u32), (12, 12), (8, 1)] {
        let key = unique("rate-race");
        let results = race(n, |_| {
            let (rl, key) = (rl.clone(), key.clone());
            async move {
                rl.acquire(&key, limit, 3_600_000, T0)
                    .await
                    .expect("acquire")
            }
        })
        .await;
        let mut used: Vec<u32> = results
            .iter()
            .filter_map(|r| match r {
                Acquired::Allowed { used } => Some(*used),
                Acquired::Limited { .. } => None,
            })
            .collect();
        used.sort_unstable();
        let expect = (n as u32).min(limit);
        assert_eq!(
            used,
            (1..=expect).collect::<Vec<_>>(),
            "{n} racing acquisitions against a limit of {limit}"
        );
    }
}

fn response(body: &str) -> StoredResponse {
    StoredResponse {
        status: 201,
        content_type: "application/json".into(),
        body: body.into(),
    }
}

/// [`IdempotencyStore`]: start, in progress, mismatch, completion and replay, release,
/// takeover after the lease (keeping when the use of the key began), expiry.
pub async fn idempotency_contract(s: Arc<dyn IdempotencyStore>) {
    let started = |since_ms| Begun::Started { since_ms };
    let (lease, exp) = (T0 + 60_000, T0 + 86_400_000);
    let key = unique("idem");
    assert_eq!(
        s.begin(&key, "fp1", T0, lease, exp).await.expect("begin"),
        started(T0)
    );
    assert_eq!(
        s.begin(&key, "fp1", T0 + 1, lease, exp)
            .await
            .expect("begin"),
        Begun::InProgress
    );
    assert_eq!(
        s.begin(&key, "fp2", T0 + 1, lease, exp)
            .await
            .expect("begin"),
        Begun::Mismatch
    );
    // Completing with another fingerprint does nothing.
    s.complete(&key, "fp2", &response("wrong"))
        .await
        .expect("complete");
    assert_eq!(
        s.begin(&key, "fp1", T0 + 2, lease, exp)
            .await
            .expect("begin"),
        Begun::InProgress
    );
    s.complete(&key, "fp1", &response("{\"id\":1}"))
        .await
        .expect("complete");
    let replay = Begun::Completed(response("{\"id\":1}"));
    assert_eq!(
        s.begin(&key, "fp1", T0 + 3, lease, exp)
            .await
            .expect("begin"),
        replay
    );
    // A completed record outlives its lease, is not released, and is not completed twice.
    s.release(&key, "fp1").await.expect("release");
    s.complete(&key, "fp1", &response("again"))
        .await
        .expect("complete");
    assert_eq!(
        s.begin(&key, "fp1", lease + 1, lease, exp)
            .await
            .expect("begin"),
        replay
    );
    assert_eq!(
        s.begin(&key, "fp2", lease + 1, lease, exp)
            .await
            .expect("begin"),
        Begun::Mismatch
    );
    // Expired: the key is free again, for any payload, and a new use of it begins.
    assert_eq!(
        s.begin(&key, "fp2", exp, exp + 60_000, exp + 86_400_000)
            .await
            .expect("begin"),
        started(exp)
    );
    // Expired in progress, same payload: a new use too (its ids must not be the old ones').
    let key = unique("idem");
    assert_eq!(
        s.begin(&key, "fp", T0, lease, lease).await.expect("begin"),
        started(T0)
    );
    assert_eq!(
        s.begin(&key, "fp", lease, lease + 60_000, exp)
            .await
            .expect("begin"),
        started(lease)
    );

    // Released: free again at once. The same payload goes on with the use of the key that
    // began (a write the store committed though it answered an error is then found by the
    // retry, not made again); another payload begins a new use.
    let key = unique("idem");
    assert_eq!(
        s.begin(&key, "fp", T0, lease, exp).await.expect("begin"),
        started(T0)
    );
    s.release(&key, "other").await.expect("release");
    assert_eq!(
        s.begin(&key, "fp", T0, lease, exp).await.expect("begin"),
        Begun::InProgress
    );
    s.release(&key, "fp").await.expect("release");
    assert_eq!(
        s.begin(&key, "fp", T0 + 5, lease, exp)
            .await
            .expect("begin"),
        started(T0),
        "a released key, retried with its payload, keeps its start"
    );
    assert_eq!(
        s.begin(&key, "fp", T0 + 6, lease, exp)
            .await
            .expect("begin"),
        Begun::InProgress,
        "the retry holds it now"
    );
    s.release(&key, "fp").await.expect("release");
    assert_eq!(
        s.begin(&key, "fp2", T0 + 7, lease, exp)
            .await
            .expect("begin"),
        started(T0 + 7),
        "another payload over a released key: a new use"
    );
    assert_eq!(
        s.begin(&key, "fp", T0 + 8, lease, exp)
            .await
            .expect("begin"),
        Begun::Mismatch
    );
    s.release(&key, "fp2").await.expect("release");
    assert_eq!(
        s.begin(&key, "fp2", T0 + 9, lease, exp)
            .await
            .expect("begin"),
        started(T0 + 7)
    );

    let key = unique("idem");
    assert_eq!(
        s.begin(&key, "fp", T0 + 5, lease, exp)
            .await
            .expect("begin"),
        started(T0 + 5)
    );
    // In progress past its lease (the first request died): taken over by the same payload,
    // which goes on with the use of the key that began with the first request.
    assert_eq!(
        s.begin(&key, "fp", lease, lease + 60_000, exp)
            .await
            .expect("begin"),
        started(T0 + 5)
    );
    assert_eq!(
        s.begin(&key, "fp", lease + 1, lease + 60_000, exp)
            .await
            .expect("begin"),
        Begun::InProgress
    );
    // ... and again, after that lease too.
    assert_eq!(
        s.begin(&key, "fp", lease + 60_000, lease + 120_000, exp)
            .await
            .expect("begin"),
        started(T0 + 5)
    );
    // Past its lease, another payload: taken over as a new use of the key.
    assert_eq!(
        s.begin(&key, "fp2", lease + 120_000, lease + 180_000, exp)
            .await
            .expect("begin"),
        started(lease + 120_000)
    );
    assert_eq!(
        s.begin(&key, "fp", lease + 120_001, lease + 180_000, exp)
            .await
            .expect("begin"),
        Begun::Mismatch
    );
    s.complete(&key, "fp2", &response("{}"))
        .await
        .expect("complete");
    assert_eq!(
        s.begin(&key, "fp2", lease + 180_001, lease + 240_000, exp)
            .await
            .expect("begin"),
        Begun::Completed(response("{}"))
    );
}

/// [`IdempotencyStore`] under concurrency: of N begins of one key, exactly one starts; of N
/// takeovers of a dead record, exactly one takes it over.
pub async fn idempotency_races(s: Arc<dyn IdempotencyStore>) {
    let key = unique("idem-race");
    let results = race(12, |_| {
        let (s, key) = (s.clone(), key.clone());
        async move {
            s.begin(&key, "fp", T0, T0 + 60_000, T0 + 86_400_000)
                .await
                .expect("begin")
        }
    })
    .await;
    let started = results
        .iter()
        .filter(|b| **b == Begun::Started { since_ms: T0 })
        .count();
    assert_eq!(started, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|b| matches!(b, Begun::Started { .. } | Begun::InProgress))
    );
    // Of N retries taking over a dead record at once, exactly one does, keeping its start.
    let key = unique("idem-race");
    assert_eq!(
        s.begin(&key, "fp", T0, T0 + 60_000, T0 + 86_400_000)
            .await
            .expect("begin"),
        Begun::Started { since_ms: T0 }
    );
    let later = T0 + 60_000;
    let results = race(12, |_| {
        let (s, key) = (s.clone(), key.clone());
        async move {
            s.begin(&key, "fp", later, later + 60_000, T0 + 86_400_000)
                .await
                .expect("begin")
        }
    })
    .await;
    let taken = results
        .iter()
        .filter(|b| **b == Begun::Started { since_ms: T0 })
        .count();
    assert_eq!(taken, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|b| matches!(b, Begun::Started { since_ms: T0 } | Begun::InProgress))
    );
}

/// A pending verification whose code hashes to `"hash-of-code"`.
pub fn sample_verification(caller: &str) -> Verification {
    Verification {
        id: VerificationId::generate(u64::try_from(T0).expect("positive")),
        caller: caller.to_owned(),
        to_token: LookupToken(unique("token")),
        to_masked: "+*******2671".into(),
        code_hash: "hash-of-code".into(),
        status: VerificationStatus::Pending,
        failed_checks: 0,
        message_id: None,
        created_at_ms: T0,
        updated_at_ms: T0,
        expires_at_ms: T0 + 600_000,
    }
}

/// [`VerificationStore`]: create-if-absent, read back, conditional changes.
pub async fn verification_contract(s: Arc<dyn VerificationStore>) {
    let v = sample_verification(&unique("caller"));
    s.insert_verification(&v).await.expect("insert");
    assert!(matches!(
        s.insert_verification(&v).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        s.get_verification(&v.id).await.expect("get"),
        Some(v.clone())
    );
    let other = VerificationId::generate(1);
    assert_eq!(s.get_verification(&other).await.expect("get"), None);
    let keep: &DecideVerification<'_> = &|_| None;
    assert_eq!(
        s.update_verification(&other, keep).await.expect("update"),
        VerificationApplied::NotFound
    );
    assert_eq!(
        s.update_verification(&v.id, keep).await.expect("update"),
        VerificationApplied::Ignored(v.clone())
    );
    let wrong: &DecideVerification<'_> = &|cur| cur.checked("nope", T0 + 1, 5).0;
    let VerificationApplied::Applied(after) =
        s.update_verification(&v.id, wrong).await.expect("update")
    else {
        panic!("a wrong code is counted");
    };
    assert_eq!(after.failed_checks, 1);
    let right: &DecideVerification<'_> = &|cur| {
        let mut next = cur.checked("hash-of-code", T0 + 2, 5).0?;
        next.caller = "someone else".into(); // never changes
        Some(next)
    };
    let VerificationApplied::Applied(done) =
        s.update_verification(&v.id, right).await.expect("update")
    else {
        panic!("the right code approves");
    };
    assert_eq!(done.status, VerificationStatus::Approved);
    let stored = s
        .get_verification(&v.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(stored.status, VerificationStatus::Approved);
    assert_eq!(stored.caller, v.caller);
    assert_eq!(stored.failed_checks, 1);
}

/// [`VerificationStore`] under concurrency: of N wrong checks at once against a limit of 5,
/// five are counted and exactly one locks it; a right code racing them approves only if it
/// came before the lock.
pub async fn verification_races(s: Arc<dyn VerificationStore>) {
    let v = sample_verification(&unique("caller"));
    s.insert_verification(&v).await.expect("insert");
    let results = race(10, |_| {
        let (s, id) = (s.clone(), v.id.clone());
        async move {
            let decide: &DecideVerification<'_> = &|cur| cur.checked("wrong", T0 + 1, 5).0;
            s.update_verification(&id, decide).await.expect("update")
        }
    })
    .await;
    let applied: Vec<&Verification> = results
        .iter()
        .filter_map(|r| match r {
            VerificationApplied::Applied(v) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(applied.len(), 5, "five wrong codes are counted");
    assert_eq!(
        applied
            .iter()
            .filter(|v| v.status == VerificationStatus::Locked)
            .count(),
        1
    );
    let stored = s
        .get_verification(&v.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(
        (stored.status, stored.failed_checks),
        (VerificationStatus::Locked, 5)
    );
    assert_eq!(
        stored.checked("hash-of-code", T0 + 2, 5).1,
        CheckOutcome::Locked
    );
}

fn page_ids(p: &MessagePage) -> Vec<String> {
    p.messages.iter().map(|m| m.id.to_string()).collect()
}

/// [`MessageQueries`]: one caller's messages only, newest first, in time bounds, by status,
/// page by page with no gap and no repeat.
pub async fn message_query_contract(
    messages: Arc<dyn MessageStore>,
    queries: Arc<dyn MessageQueries>,
    vault: &Vault,
) {
    let (a, b) = (unique("caller-a"), unique("caller-b"));
    let mut mine = Vec::new();
    for i in 0..7i64 {
        let mut m = sample_message(vault, T0 + i * 1000, "+14155550100", "query test").await;
        m.caller = a.clone();
        if i % 2 == 0 {
            m.status = MessageStatus::Delivered;
        }
        messages.insert_record(&m).await.expect("insert");
        mine.push(m);
        let mut theirs = sample_message(vault, T0 + i * 1000, "+14155550101", "not yours").await;
        theirs.caller = b.clone();
        messages.insert_record(&theirs).await.expect("insert");
    }
    // Two at the same millisecond: pages still neither skip nor repeat them.
    let mut twin = sample_message(vault, T0 + 3000, "+14155550100", "twin").await;
    twin.caller = a.clone();
    messages.insert_record(&twin).await.expect("insert");
    mine.push(twin);

    let q = |after, status, from_ms, to_ms, limit| MessageQuery {
        caller: a.clone(),
        from_ms,
        to_ms,
        status,
        after,
        limit,
    };
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = queries
            .list_messages_by_caller(&q(after.clone(), None, T0, T0 + 100_000, 3))
            .await
            .expect("list");
        assert!(page.messages.len() <= 3);
        assert!(
            page.messages.iter().all(|m| m.caller == a),
            "another caller's message"
        );
        seen.extend(page.messages.iter().cloned());
        after = page.next.clone();
        if after.is_none() {
            break;
        }
    }
    let mut want: Vec<String> = mine.iter().map(|m| m.id.to_string()).collect();
    let mut got: Vec<String> = seen.iter().map(|m| m.id.to_string()).collect();
    assert!(
        seen.windows(2)
            .all(|w| w[0].attempts.created_at_ms >= w[1].attempts.created_at_ms),
        "newest first"
    );
    got.sort();
    want.sort();
    assert_eq!(got, want, "every message of the caller, once");

    let delivered = queries
        .list_messages_by_caller(&q(
            None,
            Some(MessageStatus::Delivered),
            T0,
            T0 + 100_000,
            100,
        ))
        .await
        .expect("list");
    assert_eq!(delivered.messages.len(), 4);
    assert!(delivered.next.is_none());
    assert!(
        delivered
            .messages
            .iter()
            .all(|m| m.status == MessageStatus::Delivered)
    );

    // [from, to): T0+1000 ..< T0+3000 holds the messages at 1000 and 2000.
    let bounded = queries
        .list_messages_by_caller(&q(None, None, T0 + 1000, T0 + 3000, 100))
        .await
        .expect("list");
    assert_eq!(
        page_ids(&bounded),
        vec![mine[2].id.to_string(), mine[1].id.to_string()]
    );
    let none = queries
        .list_messages_by_caller(&MessageQuery {
            caller: unique("nobody"),
            ..q(None, None, T0, T0 + 100_000, 10)
        })
        .await
        .expect("list");
    assert!(none.messages.is_empty() && none.next.is_none());
}

#[async_trait::async_trait]
impl<S: RateLimiter + 'static> RateLimiter for Alternate<S> {
    async fn acquire(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Acquired, StoreError> {
        self.pick().acquire(key, limit, window_ms, now_ms).await
    }
}

#[async_trait::async_trait]
impl<S: IdempotencyStore + 'static> IdempotencyStore for Alternate<S> {
    async fn begin(
        &self,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
        lease_until_ms: i64,
        expires_at_ms: i64,
    ) -> Result<Begun, StoreError> {
        self.pick()
            .begin(key, fingerprint, now_ms, lease_until_ms, expires_at_ms)
            .await
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.pick().complete(key, fingerprint, response).await
    }

    async fn release(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        self.pick().release(key, fingerprint).await
    }
}

#[async_trait::async_trait]
impl<S: VerificationStore + 'static> VerificationStore for Alternate<S> {
    async fn insert_verification(&self, v: &Verification) -> Result<(), StoreError> {
        self.pick().insert_verification(v).await
    }

    async fn get_verification(
        &self,
        id: &VerificationId,
    ) -> Result<Option<Verification>, StoreError> {
        self.pick().get_verification(id).await
    }

    async fn update_verification(
        &self,
        id: &VerificationId,
        decide: &DecideVerification<'_>,
    ) -> Result<VerificationApplied, StoreError> {
        self.pick().update_verification(id, decide).await
    }
}

#[async_trait::async_trait]
impl<S: MessageQueries + 'static> MessageQueries for Alternate<S> {
    async fn list_messages_by_caller(&self, q: &MessageQuery) -> Result<MessagePage, StoreError> {
        self.pick().list_messages_by_caller(q).await
    }
}

//! The conformance suite every adapter runs (feature `test-util`): one set of checks of the
//! contracts in [`crate::ports`], called with the embedded adapters and with the AWS ones.
//!
//! Each `*_contract` function takes the port objects and panics, with a message, on the first
//! broken promise. The functions use fresh ids, keys and names on every call, so they can share
//! one store and run in any order (or in parallel). [`run_all`] runs every one of them.
//!
//! ```no_run
//! # async fn demo(ports: herald::testing::Ports) {
//! herald::testing::run_all(&ports).await;
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::crypto::{CryptoError, LookupToken, Sealed, Vault};
use crate::domain::{
    Attempted, Event, EventKind, Message, MessageFields, MessageId, MessageStatus, Recipient,
    RetryChange, StatusChange, Subject,
};
use crate::phone::Masked;
use crate::ports::{
    Applied, Claim, Clock, Decide, EventStore, InDoubt, KeyError, KeyService, Keyring, ManualClock,
    MessageStore, OptOutStore, Order, Records, StoreError,
};
use crate::templates::Encoding;

/// The ports one adapter family provides, as the suite needs them.
///
/// `messages`, `events` and `keyring` are usually one store; it must read time from `clock`
/// (event expiry is tested by moving that clock). `foreign_keys` is a key service over a
/// different key than `keys`: what it wraps, `keys` must refuse.
#[derive(Clone)]
pub struct Ports {
    /// The message store under test.
    pub messages: Arc<dyn MessageStore>,
    /// The event store under test.
    pub events: Arc<dyn EventStore>,
    /// The keyring under test.
    pub keyring: Arc<dyn Keyring>,
    /// The opt-out store under test.
    pub opt_outs: Arc<dyn OptOutStore>,
    /// The key service under test.
    pub keys: Arc<dyn KeyService>,
    /// A key service of the same kind over another key.
    pub foreign_keys: Arc<dyn KeyService>,
    /// The clock the store reads.
    pub clock: Arc<ManualClock>,
}

impl Ports {
    /// A fresh vault over these ports' key service and keyring.
    pub fn vault(&self) -> Vault {
        Vault::new(
            self.keys.clone(),
            self.keyring.clone(),
            self.clock.clone() as Arc<dyn Clock>,
        )
    }
}

/// A clock at a fixed, realistic time (2024-11-14), for stores under test.
pub fn test_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(1_731_600_000_000))
}

/// Runs every contract against `ports`.
pub async fn run_all(ports: &Ports) {
    key_service_contract(ports.keys.clone(), ports.foreign_keys.clone()).await;
    keyring_contract(ports.keyring.clone()).await;
    keyring_races(ports.keyring.clone()).await;
    vault_contract(ports).await;
    let vault = ports.vault();
    message_store_contract(ports.messages.clone(), &vault).await;
    message_store_races(ports.messages.clone(), &vault).await;
    attempt_contract(ports.messages.clone(), &vault).await;
    attempt_races(ports.messages.clone(), &vault).await;
    message_in_doubt_contract(ports.messages.clone(), &vault).await;
    crate::testing_paging::message_paging_contract(ports.messages.clone(), &vault).await;
    event_store_contract(ports.events.clone(), ports.clock.clone()).await;
    event_store_races(ports.events.clone(), ports.clock.clone()).await;
    opt_out_contract(ports.opt_outs.clone(), &vault).await;
    opt_out_races(ports.opt_outs.clone(), &vault).await;
    let data = store_personal_data(ports.messages.as_ref(), ports.events.as_ref(), &vault).await;
    assert_eq!(
        ports
            .messages
            .get_record(&data.id)
            .await
            .expect("get")
            .map(|m| m.id),
        Some(data.id.clone())
    );
}

// ---------------------------------------------------------------------------------------------
// Builders

/// A unique name for this run (keys, subjects, keyring entries).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    )
}

/// A message accepted at `id_ms` for `to_e164` with `body`, both sealed through `vault` (so the
/// store holds exactly what production stores), at attempt 1, status `accepted`.
pub async fn sample_message(vault: &Vault, id_ms: i64, to_e164: &str, body: &str) -> Message {
    let id = MessageId::generate(u64::try_from(id_ms).expect("a time after 1970"));
    let to = vault
        .seal(id.as_str(), to_e164.as_bytes())
        .await
        .expect("seal the number");
    let sealed_body = vault
        .seal(id.as_str(), body.as_bytes())
        .await
        .expect("seal the body");
    let to_token = vault.lookup_token(to_e164).await.expect("lookup token");
    Message {
        id,
        caller: "conformance".to_owned(),
        to: Recipient {
            sealed: to,
            token: to_token,
            masked: Masked::of(to_e164).as_str().to_owned(),
            country: Some("US".to_owned()),
        },
        template: None,
        status: MessageStatus::Accepted,
        attempts: crate::domain::Attempts::new(id_ms),
        twilio_sid: None,
        error_code: None,
        error_reason: None,
        own: MessageFields {
            body: sealed_body,
            encoding: Encoding::Gsm7,
            segments: 1,
            match_token: Some(vault.match_token(to_e164, body).await.expect("match token")),
        },
    }
}

/// A status change at `attempt` to `status` at `at_ms`, with nothing else.
pub fn change(attempt: u32, status: MessageStatus, at_ms: i64) -> StatusChange {
    StatusChange::new(attempt, status, at_ms)
}

/// A status-callback event about `subject` at `at_ms` that expires at `expires_at_ms`.
pub fn sample_event(key: &str, subject: &Subject, at_ms: i64, expires_at_ms: i64) -> Event {
    Event {
        key: key.to_owned(),
        subject: subject.clone(),
        kind: EventKind::StatusCallback,
        status: Some("sent".to_owned()),
        twilio_sid: Some("SM00000000000000000000000000000000".to_owned()),
        error_code: None,
        attempt: 1,
        applied: true,
        at_ms,
        expires_at_ms,
        country: Some("US".to_owned()),
        sealed: None,
    }
}

/// Runs `n` futures made by `make(i)` as concurrent tasks released together by a barrier, and
/// returns their outputs in `i` order.
pub async fn race<T, F, Fut>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let mut set = JoinSet::new();
    for i in 0..n {
        let fut = make(i);
        let barrier = barrier.clone();
        set.spawn(async move {
            barrier.wait().await;
            (i, fut.await)
        });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(done) = set.join_next().await {
        let (i, v) = done.expect("a racing task panicked");
        out[i] = Some(v);
    }
    out.into_iter()
        .map(|v| v.expect("every task reported"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// KeyService

/// [`KeyService`]: fresh keys, round trips, and refusal of tampered, foreign and garbage keys.
pub async fn key_service_contract(keys: Arc<dyn KeyService>, foreign: Arc<dyn KeyService>) {
    let a = keys.generate_data_key().await.expect("generate a data key");
    let b = keys.generate_data_key().await.expect("generate a data key");
    assert_ne!(
        a.plaintext.expose(),
        b.plaintext.expose(),
        "data keys repeat"
    );
    assert_ne!(a.wrapped, b.wrapped, "wrapped keys repeat");
    assert!(!a.wrapped.is_empty(), "empty wrapped key");
    assert!(
        !contains(&a.wrapped, a.plaintext.expose()),
        "the wrapped key contains the plaintext key"
    );
    assert!(
        u16::try_from(a.wrapped.len()).is_ok(),
        "the wrapped key does not fit a sealed value"
    );

    for dk in [&a, &b] {
        let opened = keys.decrypt_data_key(&dk.wrapped).await.expect("unwrap");
        assert_eq!(opened.expose(), dk.plaintext.expose(), "round trip");
    }

    let mut last = a.wrapped.clone();
    *last.last_mut().expect("non-empty") ^= 0x01;
    let mut middle = a.wrapped.clone();
    let mid = middle.len() / 2;
    middle[mid] ^= 0x80;
    let truncated = a.wrapped[..a.wrapped.len() - 1].to_vec();
    let garbage = b"definitely not a wrapped key".to_vec();
    let empty = Vec::new();
    let foreign_key = foreign.generate_data_key().await.expect("foreign key");
    for (what, wrapped) in [
        ("last byte flipped", &last),
        ("middle byte flipped", &middle),
        ("truncated", &truncated),
        ("garbage", &garbage),
        ("empty", &empty),
        ("wrapped by another key", &foreign_key.wrapped),
    ] {
        match keys.decrypt_data_key(wrapped).await {
            Err(KeyError::Refused) => {}
            Err(e) => panic!("{what}: expected Refused, got {e:?}"),
            Ok(_) => panic!("{what}: unwrapped a key that is not ours"),
        }
    }
    // And the other way round: ours is foreign to the other service.
    assert!(
        matches!(
            foreign.decrypt_data_key(&a.wrapped).await,
            Err(KeyError::Refused)
        ),
        "the foreign service unwrapped our key"
    );
}

// ---------------------------------------------------------------------------------------------
// Keyring

/// [`Keyring`]: get of unknown names, put-if-absent keeps the first key.
pub async fn keyring_contract(keyring: Arc<dyn Keyring>) {
    let name = unique("conformance-key");
    assert_eq!(keyring.get_key(&name).await.expect("get_key"), None);
    let first: Vec<u8> = (0u8..=255).rev().chain([0, 0, 1]).collect();
    let second = b"second".to_vec();
    assert_eq!(
        keyring.put_key_if_absent(&name, &first).await.expect("put"),
        first,
        "put into an empty slot returns what was put"
    );
    assert_eq!(
        keyring.get_key(&name).await.expect("get"),
        Some(first.clone())
    );
    assert_eq!(
        keyring
            .put_key_if_absent(&name, &second)
            .await
            .expect("put"),
        first,
        "a second put returns the first key"
    );
    assert_eq!(
        keyring.get_key(&name).await.expect("get"),
        Some(first),
        "a second put changed the key"
    );
    let other = unique("conformance-key");
    assert_eq!(keyring.get_key(&other).await.expect("get"), None);
}

/// [`Keyring`] under concurrency: of 2 and of 8 concurrent puts, all get the same winner.
pub async fn keyring_races(keyring: Arc<dyn Keyring>) {
    for n in [2, 8, 8] {
        let name = unique("conformance-race");
        let offered: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("wrapped-{i}").into_bytes())
            .collect();
        let results = race(n, |i| {
            let keyring = keyring.clone();
            let name = name.clone();
            let mine = offered[i].clone();
            async move { keyring.put_key_if_absent(&name, &mine).await }
        })
        .await;
        let results: Vec<Vec<u8>> = results
            .into_iter()
            .map(|r| r.expect("put_key_if_absent"))
            .collect();
        let winner = results[0].clone();
        assert!(
            results.iter().all(|r| *r == winner),
            "{n} racing puts got different keys"
        );
        assert!(
            offered.contains(&winner),
            "the winner is not an offered key"
        );
        assert_eq!(keyring.get_key(&name).await.expect("get"), Some(winner));
    }
}

// ---------------------------------------------------------------------------------------------
// Vault

/// [`Vault`] over these ports: seal/open round trips, associated data, tampering, another
/// process (a second vault) reading the first's values and computing the same lookup tokens.
pub async fn vault_contract(ports: &Ports) {
    let a = ports.vault();
    let b = ports.vault();
    let id = MessageId::generate(1_731_600_000_000);
    let other_id = MessageId::generate(1_731_600_000_001);

    let text = "Herald vault conformance: ünïcödé ✓";
    let sealed = a.seal(id.as_str(), text.as_bytes()).await.expect("seal");
    assert!(
        !contains(&sealed.0, text.as_bytes()),
        "sealed holds plaintext"
    );
    assert_eq!(
        a.open_string(id.as_str(), &sealed)
            .await
            .expect("open")
            .expose(),
        text
    );
    assert_eq!(
        b.open_string(id.as_str(), &sealed)
            .await
            .expect("another vault opens it")
            .expose(),
        text
    );
    let again = a.seal(id.as_str(), text.as_bytes()).await.expect("seal");
    assert_ne!(
        again, sealed,
        "sealing twice gives the same bytes (nonce reuse)"
    );

    assert!(
        matches!(
            a.open(other_id.as_str(), &sealed).await,
            Err(CryptoError::Corrupt)
        ),
        "opened under another record's id"
    );
    let mut tampered = sealed.clone();
    *tampered.0.last_mut().expect("non-empty") ^= 1;
    assert!(matches!(
        a.open(id.as_str(), &tampered).await,
        Err(CryptoError::Corrupt)
    ));
    for junk in [
        Vec::new(),
        b"H1".to_vec(),
        b"nonsense of some length".to_vec(),
    ] {
        assert!(
            matches!(
                a.open(id.as_str(), &Sealed(junk)).await,
                Err(CryptoError::Corrupt)
            ),
            "opened junk"
        );
    }
    let foreign = Vault::new(
        ports.foreign_keys.clone(),
        ports.keyring.clone(),
        ports.clock.clone() as Arc<dyn Clock>,
    );
    assert!(
        matches!(
            foreign.open(id.as_str(), &sealed).await,
            Err(CryptoError::Key(KeyError::Refused))
        ),
        "a vault over another key opened our value"
    );

    let n1 = "+14155550100";
    let n2 = "+14155550101";
    let t1a = a.lookup_token(n1).await.expect("token");
    let t1b = b.lookup_token(n1).await.expect("token");
    let t2a = a.lookup_token(n2).await.expect("token");
    assert_eq!(t1a, t1b, "two vaults over one keyring disagree on a token");
    assert_eq!(
        t1a,
        a.lookup_token(n1).await.expect("token"),
        "token not stable"
    );
    assert_ne!(t1a, t2a, "two numbers share a token");
    assert_eq!(t1a.0.len(), 64, "token is not hex HMAC-SHA256");
    assert!(!t1a.0.contains("4155550100"), "token shows the number");
    let c = ports.vault();
    assert_eq!(c.lookup_token(n2).await.expect("token"), t2a);
}

// ---------------------------------------------------------------------------------------------
// MessageStore

fn applied(r: Applied) -> Message {
    match r {
        Applied::Applied(m) => m,
        other => panic!("expected Applied, got {other:?}"),
    }
}

fn ignored(r: Applied) -> Message {
    match r {
        Applied::Ignored(m) => m,
        other => panic!("expected Ignored, got {other:?}"),
    }
}

/// [`MessageStore`], one call at a time: create-if-absent, get, and every rule of
/// `apply_message_status` (forward only, by attempt, terminal sticks, late reports ignored).
pub async fn message_store_contract(store: Arc<dyn MessageStore>, vault: &Vault) {
    let t = 1_731_600_000_000;
    let m = sample_message(vault, t, "+14155550142", "conformance body").await;
    let id = m.id.clone();

    // Unknown ids.
    let unknown = MessageId::generate(1_731_600_000_000);
    assert_eq!(store.get_record(&unknown).await.expect("get"), None);
    assert_eq!(
        store
            .apply_message_status(&unknown, &change(1, MessageStatus::Queued, t))
            .await
            .expect("apply"),
        Applied::NotFound
    );

    // Create-if-absent.
    store.insert_record(&m).await.expect("insert");
    assert_eq!(store.get_record(&id).await.expect("get"), Some(m.clone()));
    let mut impostor = m.clone();
    impostor.caller = "impostor".to_owned();
    impostor.status = MessageStatus::Delivered;
    impostor.attempts.attempt = 7;
    assert!(
        matches!(
            store.insert_record(&impostor).await,
            Err(StoreError::Conflict)
        ),
        "a second insert of one id did not conflict"
    );
    assert_eq!(
        store.get_record(&id).await.expect("get"),
        Some(m.clone()),
        "a conflicting insert changed the record"
    );

    // Forward, with the Twilio sid.
    let mut queued = change(1, MessageStatus::Queued, t + 10);
    queued.twilio_sid = Some("SM0123456789abcdef0123456789abcdef".to_owned());
    let after = applied(
        store
            .apply_message_status(&id, &queued)
            .await
            .expect("apply"),
    );
    let mut expected = m.clone();
    expected.apply(&queued);
    assert_eq!(after, expected);
    assert_eq!(
        store.get_record(&id).await.expect("get"),
        Some(expected.clone())
    );

    // Same rank, lower rank, wrong attempt: ignored, record returned as stored.
    for (what, c) in [
        ("same status", change(1, MessageStatus::Queued, t + 20)),
        ("backwards", change(1, MessageStatus::Accepted, t + 20)),
        ("other attempt", change(2, MessageStatus::Sent, t + 20)),
    ] {
        let got = ignored(store.apply_message_status(&id, &c).await.expect("apply"));
        assert_eq!(
            got, expected,
            "{what}: Ignored did not return the record as is"
        );
        assert_eq!(
            store.get_record(&id).await.expect("get"),
            Some(expected.clone()),
            "{what}: the record moved"
        );
    }

    // Sent, then delivered; fields given later keep the earlier ones when absent.
    let sent = change(1, MessageStatus::Sent, t + 30);
    expected.apply(&sent);
    assert_eq!(
        applied(store.apply_message_status(&id, &sent).await.expect("apply")),
        expected
    );
    assert_eq!(
        expected.twilio_sid.as_deref(),
        Some("SM0123456789abcdef0123456789abcdef")
    );
    let delivered = change(1, MessageStatus::Delivered, t + 40);
    expected.apply(&delivered);
    assert_eq!(
        applied(
            store
                .apply_message_status(&id, &delivered)
                .await
                .expect("apply")
        ),
        expected
    );

    // A late `sent` after `delivered`, and any other terminal: ignored, record unchanged.
    for late in [
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Failed,
        MessageStatus::Undelivered,
        MessageStatus::Canceled,
    ] {
        let mut c = change(1, late, t + 50);
        c.error_code = Some(30_003);
        let got = ignored(store.apply_message_status(&id, &c).await.expect("apply"));
        assert_eq!(got, expected, "terminal record moved to {late}");
    }
    assert_eq!(store.get_record(&id).await.expect("get"), Some(expected));

    // A failure straight from accepted keeps its code and reason; a retry record waits for
    // its own attempt.
    let mut f = sample_message(vault, t + 1, "+14155550143", "second body").await;
    f.attempts.attempt = 2;
    f.status = MessageStatus::Retrying;
    store.insert_record(&f).await.expect("insert");
    ignored(
        store
            .apply_message_status(&f.id, &change(1, MessageStatus::Failed, t + 60))
            .await
            .expect("apply"),
    );
    let mut failed = change(2, MessageStatus::Failed, t + 70);
    failed.error_code = Some(21_211);
    failed.error_reason = Some("invalid 'To' number".to_owned());
    let got = applied(
        store
            .apply_message_status(&f.id, &failed)
            .await
            .expect("apply"),
    );
    assert_eq!(got.status, MessageStatus::Failed);
    assert_eq!(got.error_code, Some(21_211));
    assert_eq!(got.error_reason.as_deref(), Some("invalid 'To' number"));
    assert_eq!(got.attempts.updated_at_ms, t + 70);
    assert_eq!(store.get_record(&f.id).await.expect("get"), Some(got));

    // The sealed fields survive the store byte for byte.
    let back = store
        .get_record(&f.id)
        .await
        .expect("get")
        .expect("present");
    assert_opens(vault, f.id.as_str(), &back.to.sealed, "+14155550143").await;
}

/// Asserts that `sealed`, sealed with the associated data `aad`, opens to `expected`: the store
/// kept it byte for byte.
pub(crate) async fn assert_opens(vault: &Vault, aad: &str, sealed: &Sealed, expected: &str) {
    let opened = vault.open_string(aad, sealed).await.expect("open");
    assert_eq!(opened.expose(), expected);
}

/// Checks the outcome of concurrent changes of one record that started as `initial`.
fn check_race(initial: &Message, changes: &[StatusChange], results: &[Applied], last: &Message) {
    let valid = |c: &StatusChange| c.attempt == initial.attempts.attempt;
    let max_rank = changes
        .iter()
        .filter(|c| valid(c))
        .map(|c| c.status.rank())
        .max()
        .expect("at least one valid change");
    let mut winners: Vec<(&StatusChange, &Message)> = Vec::new();
    for (c, r) in changes.iter().zip(results) {
        match r {
            Applied::Applied(m) => {
                assert!(valid(c), "a change for another attempt was applied");
                assert_eq!(m.status, c.status, "Applied returned another status");
                winners.push((c, m));
            }
            Applied::Ignored(_) => {}
            Applied::NotFound => panic!("NotFound for a record that exists"),
        }
    }
    winners.sort_by_key(|(c, _)| c.status.rank());
    for pair in winners.windows(2) {
        assert!(
            pair[0].0.status.rank() < pair[1].0.status.rank(),
            "two applied changes of the same rank: {} and {}",
            pair[0].0.status,
            pair[1].0.status
        );
    }
    let (top, top_record) = winners.last().expect("nothing was applied");
    assert_eq!(
        top.status.rank(),
        max_rank,
        "the final status is not the highest-ranked offered"
    );
    assert_eq!(
        *top_record, last,
        "the stored record is not the one the last applied change returned"
    );
    for (c, r) in changes.iter().zip(results) {
        if let Applied::Ignored(m) = r
            && valid(c)
        {
            assert!(
                m.status.rank() >= c.status.rank() || m.status.is_terminal(),
                "{} was ignored although the record was at {}",
                c.status,
                m.status
            );
            assert!(
                winners.iter().any(|(_, w)| *w == m),
                "{} was ignored against a record no applied change produced ({})",
                c.status,
                m.status
            );
        }
    }
}

/// [`MessageStore`] under concurrency: racing inserts of one id (exactly one wins, nothing of
/// the others is kept) and racing status changes of one record (each decided against the
/// previous one's result; the highest rank offered wins whatever the order).
pub async fn message_store_races(store: Arc<dyn MessageStore>, vault: &Vault) {
    let t = 1_731_600_000_000;
    for n in [2, 8] {
        for _ in 0..3 {
            let m = sample_message(vault, t, "+14155550144", "race body").await;
            let results = race(n, |i| {
                let store = store.clone();
                let mut mine = m.clone();
                mine.caller = format!("caller-{i}");
                async move { store.insert_record(&mine).await }
            })
            .await;
            let mut winner = None;
            for (i, r) in results.into_iter().enumerate() {
                match r {
                    Ok(()) => {
                        assert!(winner.is_none(), "two of {n} racing inserts succeeded");
                        winner = Some(i);
                    }
                    Err(StoreError::Conflict) => {}
                    Err(e) => panic!("racing insert failed: {e:?}"),
                }
            }
            let winner = winner.unwrap_or_else(|| panic!("none of {n} racing inserts succeeded"));
            let stored = store
                .get_record(&m.id)
                .await
                .expect("get")
                .expect("present");
            assert_eq!(stored.caller, format!("caller-{winner}"));
        }
    }

    use MessageStatus::*;
    let rounds: Vec<Vec<(u32, MessageStatus)>> = vec![
        vec![(1, Queued), (1, Sent)],
        vec![(1, Sent), (1, Queued)],
        vec![(1, Delivered), (1, Failed)],
        vec![(1, Sending), (1, Undelivered)],
        vec![
            (1, Retrying),
            (1, Scheduled),
            (1, Queued),
            (1, Sending),
            (1, Sent),
            (1, Delivered),
            (1, Undelivered),
            (1, Sent),
        ],
        vec![
            (1, Sent),
            (1, Sending),
            (2, Canceled),
            (1, Queued),
            (1, Scheduled),
            (1, Retrying),
            (1, Queued),
            (1, Sending),
        ],
        vec![
            (1, Queued),
            (1, Queued),
            (1, Queued),
            (1, Queued),
            (1, Sent),
            (1, Sent),
            (1, Sent),
            (1, Sent),
        ],
    ];
    for (round, offered) in rounds.iter().enumerate() {
        let m = sample_message(vault, t, "+14155550145", "race body").await;
        store.insert_record(&m).await.expect("insert");
        let changes: Vec<StatusChange> = offered
            .iter()
            .enumerate()
            .map(|(i, (attempt, status))| {
                let mut c = change(*attempt, *status, t + 100 + i as i64);
                c.twilio_sid = Some(format!("SM{round:02}{i:030}"));
                c
            })
            .collect();
        let results = race(changes.len(), |i| {
            let store = store.clone();
            let id = m.id.clone();
            let c = changes[i].clone();
            async move { store.apply_message_status(&id, &c).await }
        })
        .await;
        let results: Vec<Applied> = results
            .into_iter()
            .map(|r| r.expect("apply_message_status"))
            .collect();
        let last = store
            .get_record(&m.id)
            .await
            .expect("get")
            .expect("present");
        check_race(&m, &changes, &results, &last);
    }
}

// ---------------------------------------------------------------------------------------------
// EventStore

/// Attempts: `claim` (one holder at a time, a lease that expires and makes the attempt
/// ambiguous, stale attempts refused), `schedule` (next attempt, once), and
/// `records_by_status` (status, age, order, limit).
pub async fn attempt_contract(store: Arc<dyn MessageStore>, vault: &Vault) {
    use MessageStatus::*;
    let t = 1_731_700_000_000;
    let unknown = MessageId::generate(1);
    assert_eq!(
        store.claim(&unknown, 1, t, 1000).await.expect("claim"),
        Claim::NotFound
    );

    let m = sample_message(vault, t, "+14155550160", "attempt body").await;
    store.insert_record(&m).await.expect("insert");
    let Claim::Claimed(c) = store.claim(&m.id, 1, t, 1000).await.expect("claim") else {
        panic!("a waiting message is claimed");
    };
    assert_eq!(
        (
            c.attempts.claimed_at_ms,
            c.attempts.claimed_until_ms,
            c.attempts.ambiguous_since_ms
        ),
        (Some(t), Some(t + 1000), None)
    );
    assert_eq!(
        store.claim(&m.id, 1, t + 999, 1000).await.expect("claim"),
        Claim::Busy { until_ms: t + 1000 }
    );
    assert!(matches!(
        store.claim(&m.id, 2, t + 10, 1000).await.expect("claim"),
        Claim::Stale(_)
    ));
    // The holder died: after the lease, the attempt is taken over and marked ambiguous.
    let Claim::Claimed(again) = store.claim(&m.id, 1, t + 1000, 1000).await.expect("claim") else {
        panic!("an expired claim is taken over");
    };
    assert_eq!(again.attempts.ambiguous_since_ms, Some(t));
    assert_eq!(
        again.attempts.ambiguous_until_ms,
        Some(t + 1000),
        "the dead holder's window ends with its lease"
    );

    let retry = RetryChange {
        attempt: 1,
        error_code: Some(30001),
        error_reason: Some("queue overflow".into()),
        ambiguous_since_ms: None,
        ambiguous_until_ms: None,
        next_attempt_at_ms: t + 5000,
        at_ms: t + 1100,
    };
    let Applied::Applied(r) = store.schedule(&m.id, &retry).await.expect("retry") else {
        panic!("a failed attempt is retried");
    };
    assert_eq!(
        (
            r.status,
            r.attempts.attempt,
            r.attempts.claimed_until_ms,
            r.attempts.next_attempt_at_ms
        ),
        (Retrying, 2, None, Some(t + 5000))
    );
    assert_eq!(r.error_code, Some(30001));
    assert!(matches!(
        store.schedule(&m.id, &retry).await.expect("retry"),
        Applied::Ignored(_)
    ));
    assert!(matches!(
        store.claim(&m.id, 1, t + 6000, 1000).await.expect("claim"),
        Claim::Stale(_)
    ));
    let Claim::Claimed(_) = store.claim(&m.id, 2, t + 6000, 1000).await.expect("claim") else {
        panic!("the next attempt is claimed");
    };
    let queued = StatusChange {
        twilio_sid: Some("SM".to_owned() + &"a".repeat(32)),
        ..change(2, Queued, t + 6100)
    };
    let Applied::Applied(q) = store
        .apply_message_status(&m.id, &queued)
        .await
        .expect("apply")
    else {
        panic!("Twilio's answer applies to the claimed attempt");
    };
    assert_eq!(
        (
            q.status,
            q.attempts.claimed_until_ms,
            q.attempts.ambiguous_since_ms
        ),
        (Queued, None, None)
    );
    assert!(matches!(
        store.claim(&m.id, 2, t + 9000, 1000).await.expect("claim"),
        Claim::Stale(_)
    ));
    let stored = store
        .get_record(&m.id)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(stored, q, "what was returned is what was stored");
    assert_eq!(stored.attempts.created_at_ms, m.attempts.created_at_ms);

    // Listing by status: only that status, only older than the bound, oldest first, limited.
    let base = t + 1_000_000 + (rand::random::<u32>() % 1_000_000) as i64 * 10;
    let mut ids = Vec::new();
    for k in 0..4 {
        let mut w = sample_message(vault, base + k, "+14155550161", "waiting").await;
        w.status = Accepted;
        w.attempts.created_at_ms = base + k * 100;
        store.insert_record(&w).await.expect("insert");
        ids.push(w.id);
    }
    let listed = store
        .records_by_status(Accepted, base + 250, 100, Order::OldestFirst, None)
        .await
        .expect("list")
        .records;
    let mine: Vec<&MessageId> = listed
        .iter()
        .map(|m| &m.id)
        .filter(|id| ids.contains(id))
        .collect();
    assert_eq!(mine, [&ids[0], &ids[1], &ids[2]]);
    assert!(
        listed
            .iter()
            .all(|m| m.status == Accepted && m.attempts.created_at_ms < base + 250)
    );
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].attempts.created_at_ms <= w[1].attempts.created_at_ms)
    );
    assert!(
        store
            .records_by_status(Accepted, base + 1000, 2, Order::OldestFirst, None)
            .await
            .expect("list")
            .records
            .len()
            <= 2
    );
    assert!(
        store
            .records_by_status(Delivered, base + 1000, 10, Order::OldestFirst, None)
            .await
            .expect("list")
            .records
            .iter()
            .all(|m| m.status == Delivered)
    );
}

/// Concurrent claims of one attempt: exactly one caller holds it; concurrent retries of one
/// attempt: exactly one moves the record.
pub async fn attempt_races(store: Arc<dyn MessageStore>, vault: &Vault) {
    let t = 1_731_800_000_000;
    for n in [2, 8] {
        let m = sample_message(vault, t, "+14155550162", "race").await;
        store.insert_record(&m).await.expect("insert");
        let results = race(n, |_| {
            let store = store.clone();
            let id = m.id.clone();
            async move { store.claim(&id, 1, t, 60_000).await.expect("claim") }
        })
        .await;
        let winners = results
            .iter()
            .filter(|r| matches!(r, Claim::Claimed(_)))
            .count();
        assert_eq!(
            winners, 1,
            "exactly one of {n} racing claims holds the attempt: {results:?}"
        );
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Claim::Claimed(_) | Claim::Busy { .. }))
        );

        let retry = RetryChange {
            attempt: 1,
            error_code: None,
            error_reason: None,
            ambiguous_since_ms: Some(t),
            ambiguous_until_ms: Some(t + 1),
            next_attempt_at_ms: t + 10,
            at_ms: t + 1,
        };
        let results = race(n, |_| {
            let store = store.clone();
            let id = m.id.clone();
            let retry = retry.clone();
            async move { store.schedule(&id, &retry).await.expect("retry") }
        })
        .await;
        assert_eq!(
            results
                .iter()
                .filter(|r| matches!(r, Applied::Applied(_)))
                .count(),
            1
        );
        let stored = store
            .get_record(&m.id)
            .await
            .expect("get")
            .expect("present");
        assert_eq!(
            (stored.attempts.attempt, stored.status),
            (2, MessageStatus::Retrying)
        );
    }
}

/// [`EventStore`], one call at a time: dedupe by key, get, timelines in order and per subject,
/// expiry (moving `clock`, which the store must read).
pub async fn event_store_contract(events: Arc<dyn EventStore>, clock: Arc<ManualClock>) {
    let now = clock.now_ms();
    let keep = now + crate::domain::event::EVENT_RETENTION_MS;
    let subject = Subject(unique("msg_conformance"));
    let other = Subject(unique("msg_conformance"));

    assert_eq!(events.get_event(&unique("nokey")).await.expect("get"), None);
    assert_eq!(
        events
            .events_for(&Subject(unique("nobody")))
            .await
            .expect("events_for"),
        Vec::<Event>::new()
    );

    // Dedupe.
    let key = unique("evt");
    let first = sample_event(&key, &subject, now, keep);
    assert!(events.record_event(&first).await.expect("record"));
    let mut dup = sample_event(&key, &other, now + 5, keep);
    dup.status = Some("delivered".to_owned());
    dup.applied = false;
    assert!(
        !events.record_event(&dup).await.expect("record"),
        "a second event with one key was recorded"
    );
    assert_eq!(
        events.get_event(&key).await.expect("get"),
        Some(first.clone())
    );
    assert!(
        events
            .events_for(&other)
            .await
            .expect("events_for")
            .is_empty(),
        "the duplicate landed in another timeline"
    );

    // Timeline order: by time, recorded out of order; ties keep their (key and recording)
    // order; subjects do not mix.
    let base = now + 1_000;
    let mut expected = vec![first.clone()];
    let times = [7, 3, 11, 0, 5, 5, 9, 1, 8, 2, 10, 4];
    let mut recorded = Vec::new();
    for (i, dt) in times.iter().enumerate() {
        let mut e = sample_event(&format!("{key}/{i:02}"), &subject, base + dt * 10, keep);
        e.attempt = u32::try_from(i).expect("small");
        assert!(events.record_event(&e).await.expect("record"));
        recorded.push(e);
        let noise = sample_event(&unique("noise"), &other, base + dt * 10, keep);
        assert!(events.record_event(&noise).await.expect("record"));
    }
    recorded.sort_by_key(|e| e.at_ms); // stable: ties stay in recording (and key) order
    expected.extend(recorded);
    let timeline = events.events_for(&subject).await.expect("events_for");
    assert_eq!(
        timeline.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        "timeline out of order"
    );
    assert_eq!(timeline, expected);
    let others = events.events_for(&other).await.expect("events_for");
    assert_eq!(others.len(), times.len());
    assert!(others.iter().all(|e| e.subject == other));

    // Expiry: gone from get and timelines once the clock reaches it, and its key is free again.
    let short = sample_event(&unique("short"), &subject, now + 2, now + 60_000);
    assert!(events.record_event(&short).await.expect("record"));
    assert_eq!(
        events.get_event(&short.key).await.expect("get"),
        Some(short.clone())
    );
    assert!(
        events
            .events_for(&subject)
            .await
            .expect("events_for")
            .contains(&short)
    );
    clock.advance(59_999);
    assert_eq!(
        events.get_event(&short.key).await.expect("get"),
        Some(short.clone()),
        "expired a millisecond early"
    );
    clock.advance(1);
    assert_eq!(
        events.get_event(&short.key).await.expect("get"),
        None,
        "an expired event is still returned"
    );
    let timeline = events.events_for(&subject).await.expect("events_for");
    assert!(
        !timeline.contains(&short),
        "an expired event is in a timeline"
    );
    assert_eq!(timeline, expected, "expiry of one event touched others");
    let later = clock.now_ms();
    let reborn = sample_event(&short.key, &subject, later, later + 60_000);
    assert!(
        events.record_event(&reborn).await.expect("record"),
        "the key of an expired event is still taken"
    );
    assert_eq!(
        events.get_event(&short.key).await.expect("get"),
        Some(reborn)
    );
}

/// [`EventStore`] under concurrency: of 2 and of 8 racing records of one key, exactly one
/// returns `true`, and its event is the one kept.
pub async fn event_store_races(events: Arc<dyn EventStore>, clock: Arc<ManualClock>) {
    let now = clock.now_ms();
    for n in [2, 8, 8] {
        let key = unique("race");
        let subject = Subject(unique("msg_race"));
        let offered: Vec<Event> = (0..n)
            .map(|i| {
                let mut e = sample_event(&key, &subject, now + i as i64, now + 86_400_000);
                e.attempt = u32::try_from(i).expect("small");
                e
            })
            .collect();
        let results = race(n, |i| {
            let events = events.clone();
            let e = offered[i].clone();
            async move { events.record_event(&e).await }
        })
        .await;
        let winners: Vec<usize> = results
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| r.expect("record_event").then_some(i))
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "{n} racing records of one key: {winners:?} won"
        );
        assert_eq!(
            events.get_event(&key).await.expect("get"),
            Some(offered[winners[0]].clone())
        );
        assert_eq!(
            events.events_for(&subject).await.expect("events_for"),
            vec![offered[winners[0]].clone()]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// OptOutStore

/// A lookup token no other call uses.
async fn fresh_token(vault: &Vault) -> crate::crypto::LookupToken {
    let n: u32 = rand::random::<u32>() % 10_000_000;
    vault
        .lookup_token(&format!("+1415{n:07}-{}", unique("t")))
        .await
        .expect("lookup token")
}

/// [`OptOutStore`], one call at a time: unknown is not opted out, STOP then START, last writer
/// by time wins (an older change is refused and changes nothing), equal times: the later call
/// wins, replays are harmless, tokens are independent.
pub async fn opt_out_contract(store: Arc<dyn OptOutStore>, vault: &Vault) {
    let a = fresh_token(vault).await;
    let b = fresh_token(vault).await;
    assert!(
        !store.is_opted_out(&a).await.expect("read"),
        "unknown token"
    );
    assert!(store.set_opt_out(&a, true, 1_000).await.expect("stop"));
    assert!(store.is_opted_out(&a).await.expect("read"), "after STOP");
    assert!(
        !store.is_opted_out(&b).await.expect("read"),
        "tokens are independent"
    );
    // Replaying the same change is harmless.
    assert!(store.set_opt_out(&a, true, 1_000).await.expect("replay"));
    assert!(store.is_opted_out(&a).await.expect("read"));
    // START, later.
    assert!(store.set_opt_out(&a, false, 2_000).await.expect("start"));
    assert!(!store.is_opted_out(&a).await.expect("read"), "after START");
    // An older STOP arriving late is refused.
    assert!(!store.set_opt_out(&a, true, 1_500).await.expect("late stop"));
    assert!(
        !store.is_opted_out(&a).await.expect("read"),
        "older change ignored"
    );
    // At the same time, the later call wins.
    assert!(store.set_opt_out(&a, true, 2_000).await.expect("same time"));
    assert!(store.is_opted_out(&a).await.expect("read"));
    // The first change of a token may be an opt-in.
    assert!(store.set_opt_out(&b, false, 5).await.expect("start first"));
    assert!(!store.is_opted_out(&b).await.expect("read"));
}

/// [`OptOutStore`] under concurrency: of changes racing with distinct times, the latest time
/// is what stays, whatever the order they land in.
pub async fn opt_out_races(store: Arc<dyn OptOutStore>, vault: &Vault) {
    for round in 0..4u32 {
        let token = fresh_token(vault).await;
        let n = 8;
        // The latest change is an opt-out in even rounds, an opt-in in odd ones.
        let last_opted_out = round % 2 == 0;
        let results = race(n, |i| {
            let store = store.clone();
            let token = token.clone();
            async move {
                let at = 1_000 + i64::try_from(i).expect("small");
                let opted_out = if i == n - 1 {
                    last_opted_out
                } else {
                    i % 2 == 1
                };
                store.set_opt_out(&token, opted_out, at).await.expect("set")
            }
        })
        .await;
        assert!(results[n - 1], "the latest change is always applied");
        assert_eq!(
            store.is_opted_out(&token).await.expect("read"),
            last_opted_out,
            "round {round}: the latest change stays"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Personal data at rest

/// A phone number and body stored through the vault, to look for in a store's raw bytes.
#[derive(Debug, Clone)]
pub struct PersonalData {
    /// The message that holds them.
    pub id: MessageId,
    /// The recipient, E.164.
    pub e164: String,
    /// The body.
    pub body: String,
}

impl PersonalData {
    /// What must not appear at rest: the number in E.164, digits only and national form, the
    /// body, and the body in base64 (documents are JSON with base64 fields).
    pub fn needles(&self) -> Vec<(&'static str, Vec<u8>)> {
        use base64::Engine;
        let digits: String = self.e164.chars().filter(char::is_ascii_digit).collect();
        let national = digits.trim_start_matches('1').to_owned();
        vec![
            ("number (E.164)", self.e164.clone().into_bytes()),
            ("number (digits)", digits.into_bytes()),
            ("number (national)", national.into_bytes()),
            ("body", self.body.clone().into_bytes()),
            (
                "body (base64)",
                base64::engine::general_purpose::STANDARD
                    .encode(&self.body)
                    .into_bytes(),
            ),
        ]
    }

    /// Panics if any needle appears in any of `raw` (every stored value of a store, as bytes).
    /// Also checks that `raw` does hold the message id, so an empty dump cannot pass.
    pub fn assert_absent_from(&self, raw: &[Vec<u8>]) {
        assert!(
            raw.iter().any(|v| contains(v, self.id.as_str().as_bytes())),
            "the raw dump does not hold the message: it proves nothing"
        );
        for (what, needle) in self.needles() {
            for v in raw {
                assert!(
                    !contains(v, &needle),
                    "the {what} is stored in plaintext ({} bytes value)",
                    v.len()
                );
            }
        }
    }
}

/// Stores a message with a known number and body sealed through `vault`, moves it, and records
/// an event about it; returns what to look for in the store's raw bytes.
pub async fn store_personal_data(
    messages: &dyn MessageStore,
    events: &dyn EventStore,
    vault: &Vault,
) -> PersonalData {
    let e164 = "+12025550187".to_owned();
    let body = "Your Herald verification code is 731946. Do not share it.".to_owned();
    let m = sample_message(vault, 1_731_600_000_000, &e164, &body).await;
    messages.insert_record(&m).await.expect("insert");
    let mut c = change(1, MessageStatus::Queued, 1_731_600_000_100);
    c.twilio_sid = Some("SM99999999999999999999999999999999".to_owned());
    applied(
        messages
            .apply_message_status(&m.id, &c)
            .await
            .expect("apply"),
    );
    let e = sample_event(
        &unique("pii"),
        &Subject::from(&m.id),
        1_731_600_000_100,
        i64::MAX / 2,
    );
    assert!(events.record_event(&e).await.expect("record"));
    // An inbound SMS with the same text, sealed as the webhook receiver seals it.
    let key = unique("in:SM");
    let token = vault.lookup_token(&e164).await.expect("token");
    let mut inbound = sample_event(
        &key,
        &Subject::conversation(&token),
        1_731_600_000_200,
        i64::MAX / 2,
    );
    inbound.kind = EventKind::InboundMessage;
    inbound.sealed = Some(vault.seal(&key, body.as_bytes()).await.expect("seal"));
    assert!(events.record_event(&inbound).await.expect("record inbound"));
    let stored = events.get_event(&key).await.expect("get").expect("present");
    assert_opens(vault, &key, stored.sealed.as_ref().expect("sealed"), &body).await;
    let back = messages
        .get_record(&m.id)
        .await
        .expect("get")
        .expect("present");
    assert_opens(vault, m.id.as_str(), &back.own.body, &body).await;
    PersonalData {
        id: m.id,
        e164,
        body,
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Several handles on one store

/// Several handles on one backing store (two connections to one SQLite file, two clients of one
/// DynamoDB), used in turn call by call: races then run across handles, as they do across
/// processes and Lambda instances, not only inside one handle's own locking.
pub struct Alternate<S> {
    handles: Vec<Arc<S>>,
    next: std::sync::atomic::AtomicUsize,
}

impl<S> Alternate<S> {
    /// Uses `handles` in turn; panics if there are none.
    pub fn new(handles: Vec<Arc<S>>) -> Self {
        assert!(!handles.is_empty(), "Alternate needs at least one handle");
        Self {
            handles,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub(crate) fn pick(&self) -> &S {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.handles[i % self.handles.len()]
    }
}

#[async_trait::async_trait]
impl<R: Attempted, S: Records<R> + 'static> Records<R> for Alternate<S> {
    async fn insert_record(&self, record: &R) -> Result<(), StoreError> {
        self.pick().insert_record(record).await
    }

    async fn get_record(&self, id: &R::Id) -> Result<Option<R>, StoreError> {
        self.pick().get_record(id).await
    }

    async fn update_record(
        &self,
        id: &R::Id,
        decide: &Decide<'_, R>,
    ) -> Result<Applied<R>, StoreError> {
        self.pick().update_record(id, decide).await
    }

    async fn records_by_status(
        &self,
        status: R::Status,
        created_before_ms: i64,
        limit: u32,
        order: crate::ports::Order,
        after: Option<&crate::ports::SweepCursor>,
    ) -> Result<crate::ports::Page<R>, StoreError> {
        self.pick()
            .records_by_status(status, created_before_ms, limit, order, after)
            .await
    }
    async fn records_in_doubt(
        &self,
        token: &LookupToken,
        until_from_ms: i64,
        limit: u32,
    ) -> Result<Vec<InDoubt>, StoreError> {
        self.pick()
            .records_in_doubt(token, until_from_ms, limit)
            .await
    }
}

impl<S: MessageStore + 'static> MessageStore for Alternate<S> {}

#[async_trait::async_trait]
impl<S: EventStore + 'static> EventStore for Alternate<S> {
    async fn record_event(&self, event: &Event) -> Result<bool, StoreError> {
        self.pick().record_event(event).await
    }

    async fn get_event(&self, key: &str) -> Result<Option<Event>, StoreError> {
        self.pick().get_event(key).await
    }

    async fn events_for(&self, subject: &Subject) -> Result<Vec<Event>, StoreError> {
        self.pick().events_for(subject).await
    }
}

#[async_trait::async_trait]
impl<S: OptOutStore + 'static> OptOutStore for Alternate<S> {
    async fn set_opt_out(
        &self,
        token: &crate::crypto::LookupToken,
        opted_out: bool,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        self.pick().set_opt_out(token, opted_out, at_ms).await
    }

    async fn is_opted_out(&self, token: &crate::crypto::LookupToken) -> Result<bool, StoreError> {
        self.pick().is_opted_out(token).await
    }
}

#[async_trait::async_trait]
impl<S: Keyring + 'static> Keyring for Alternate<S> {
    async fn get_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.pick().get_key(name).await
    }

    async fn put_key_if_absent(&self, name: &str, wrapped: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.pick().put_key_if_absent(name, wrapped).await
    }
}

// ---------------------------------------------------------------------------------------------
// The moto server for the AWS adapters' tests

static ENDPOINT: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
static SERVER: std::sync::OnceLock<std::sync::Mutex<std::process::Child>> =
    std::sync::OnceLock::new();

/// The AWS endpoint for the AWS adapters' tests: `HERALD_TEST_AWS_ENDPOINT` when set
/// (scripts/test.sh starts `scripts/moto_server.py` and names it), otherwise a moto server this
/// process starts from `.venv` (one per test binary, on a port the OS picks, serving one request
/// at a time, gone when the process exits). Panics with how to get one when neither works.
pub fn aws_test_endpoint() -> String {
    ENDPOINT
        .get_or_init(start_or_find_moto)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn start_or_find_moto() -> Result<String, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let python = root.join(".venv/bin/python");
    let how = "run scripts/test.sh (it creates .venv with moto), or create the venv: \
               python3 -m venv .venv && .venv/bin/pip install 'moto[server]>=5,<6'";
    if let Some(url) = std::env::var("HERALD_TEST_AWS_ENDPOINT")
        .ok()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
    {
        // scripts/test.sh starts scripts/moto_server.py (one request at a time) and names it.
        return Ok(url);
    }
    if !python.exists() {
        return Err(format!(
            "{} does not exist and HERALD_TEST_AWS_ENDPOINT is not set: {how}",
            python.display()
        ));
    }
    let mut child = std::process::Command::new(&python)
        .arg(root.join("scripts/moto_server.py"))
        .arg("--until-stdin-closes")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}; {how}", python.display()))?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("piped stdout")),
        &mut line,
    )
    .map_err(|e| format!("moto did not report its port: {e}"))?;
    let port: u16 = line
        .trim()
        .parse()
        .map_err(|_| format!("moto did not start (is moto[server] installed?): {how}"))?;
    // Kept, with its stdin open, for the life of this process.
    let _ = SERVER.set(std::sync::Mutex::new(child));
    Ok(format!("http://127.0.0.1:{port}"))
}

// ---------------------------------------------------------------------------------------------
// The doubt index

/// The doubt index ([`crate::ports::Records::records_in_doubt`]) of any record kind: `same`,
/// three records with one match token, and `other`, one with another, all stored by the caller
/// at `t`, waiting and unclaimed. Only records with a span in doubt are listed (a held claim, an
/// ambiguous window, a doubt kept after the outcome is known), by their token, from a span end
/// on, earliest end first, up to the limit; a record whose outcome is known leaves the index
/// unless it keeps a doubt.
pub async fn in_doubt_contract<R, S>(store: &S, same: [R; 3], other: R, t: i64)
where
    R: crate::domain::Attempted,
    S: crate::ports::Records<R> + ?Sized,
{
    let token = same[0].match_token().expect("a match token").clone();
    let ids = |v: Vec<InDoubt>| -> Vec<(String, i64, i64)> {
        v.into_iter()
            .map(|d| (d.record_id, d.since_ms, d.until_ms))
            .collect()
    };
    let id = |r: &R| r.record_id().to_string();
    assert!(
        store
            .records_in_doubt(&token, 0, 10)
            .await
            .expect("read")
            .is_empty(),
        "no record in doubt yet"
    );
    for (r, at) in [(&same[0], t), (&other, t), (&same[1], t + 500)] {
        assert!(matches!(
            store
                .claim(r.record_id(), 1, at, 1000)
                .await
                .expect("claim"),
            Claim::Claimed(_)
        ));
    }
    let both = vec![
        (id(&same[0]), t, t + 1000),
        (id(&same[1]), t + 500, t + 1500),
    ];
    assert_eq!(
        ids(store.records_in_doubt(&token, 0, 10).await.expect("read")),
        both,
        "held claims, by token, earliest end first"
    );
    assert_eq!(
        ids(store
            .records_in_doubt(&token, t + 1200, 10)
            .await
            .expect("read")),
        both[1..],
        "from a span end on"
    );
    assert_eq!(
        ids(store.records_in_doubt(&token, 0, 1).await.expect("read")),
        both[..1],
        "up to the limit"
    );
    // The outcome of same[0]'s attempt is known: it leaves the index.
    let settle = |r: &R| {
        let mut next = r.clone();
        let mut a = r.attempts();
        a.settle();
        next.set_attempts(a);
        Some(next)
    };
    assert!(matches!(
        store
            .update_record(same[0].record_id(), &settle)
            .await
            .expect("settle"),
        Applied::Applied(_)
    ));
    // same[2] keeps a doubt after its outcome is known.
    let doubted = |r: &R| {
        let mut next = r.clone();
        let mut a = r.attempts();
        a.doubt((t - 100, t + 100));
        a.settle();
        next.set_attempts(a);
        Some(next)
    };
    store
        .update_record(same[2].record_id(), &doubted)
        .await
        .expect("doubt");
    assert_eq!(
        ids(store.records_in_doubt(&token, 0, 10).await.expect("read")),
        vec![(id(&same[2]), t - 100, t + 100), both[1].clone()],
        "a settled record leaves, a doubt stays"
    );
    assert_eq!(
        ids(store
            .records_in_doubt(&token, t + 101, 10)
            .await
            .expect("read")),
        both[1..]
    );
}

/// A number in E.164 form no other run of a contract is likely to share (stores under test may
/// be shared by several): ten random digits, for stores only (it need not be a valid number).
pub fn unique_number() -> String {
    format!("+1{:010}", ulid::Ulid::new().random() % 10_000_000_000)
}

/// [`in_doubt_contract`] for messages: three identical ones and one with another body.
pub async fn message_in_doubt_contract(store: Arc<dyn MessageStore>, vault: &Vault) {
    let t =
        1_731_800_000_000 + i64::try_from(ulid::Ulid::new().random() % 1_000_000).expect("small");
    let to = &unique_number();
    let mut same = Vec::new();
    for i in 0..3 {
        let m = sample_message(vault, t + i, to, "Pager: db-1 is down").await;
        store.insert_record(&m).await.expect("insert");
        same.push(m);
    }
    let other = sample_message(vault, t + 3, to, "Pager: db-2 is down").await;
    store.insert_record(&other).await.expect("insert");
    let same: [Message; 3] = same.try_into().expect("three");
    in_doubt_contract::<Message, _>(store.as_ref(), same, other, t).await;
}

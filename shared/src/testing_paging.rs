//! The conformance suite of the sweeper's paged query
//! ([`crate::ports::Records::records_by_status`], feature `test-util`), written once for every
//! record kind and run for messages and calls against the SQLite and DynamoDB adapters alike:
//! both orders, the keyset cursor, ties in `created_at_ms`, and `created_before_ms`.
//!
//! Like [`crate::testing`], the records are fresh (in a random span of time no other contract
//! uses), so the suite can share a store with the others.

use std::sync::Arc;

use crate::crypto::Vault;
use crate::domain::{Attempted, CallStatus, MessageStatus};
use crate::ports::{CallStore, MessageStore, Order, Page, Records, SweepCursor};

/// When the paging records are created, after the span's start: three alone, seven in one
/// millisecond (as a batch makes them), two in another, and one at the bound (never listed).
pub const PAGING_OFFSETS: [i64; 13] = [0, 10, 20, 30, 30, 30, 30, 30, 30, 30, 40, 40, 50];

/// The bound the contract lists below: the last of [`PAGING_OFFSETS`] is at it.
const BOUND: i64 = 50;

/// A random start of a span no other contract uses (in 2030, 10 ms apart from other runs').
pub fn paging_base() -> i64 {
    1_900_000_000_000
        + i64::try_from(ulid::Ulid::new().random() % 1_000_000_000).expect("small") * 100
}

fn ids<R: Attempted>(page: &Page<R>) -> Vec<String> {
    page.records
        .iter()
        .map(|r| r.record_id().to_string())
        .collect()
}

/// The paged query of any record kind: `mine`, the records the caller stored with `status` at
/// `base` plus each of [`PAGING_OFFSETS`], and `other`, one it stored in the span with another
/// status (never listed).
pub async fn paging_contract<R, S>(store: &S, status: R::Status, mine: Vec<R>, other: R, base: i64)
where
    R: Attempted,
    S: Records<R> + ?Sized,
{
    let before = base + BOUND;
    // The listed ones, oldest first: by creation time, then id.
    let mut listed: Vec<(i64, String)> = mine
        .iter()
        .map(|r| (r.attempts().created_at_ms, r.record_id().to_string()))
        .filter(|(at, _)| *at < before)
        .collect();
    listed.sort();
    assert_eq!(listed.len(), 12);
    let oldest: Vec<String> = listed.iter().map(|(_, id)| id.clone()).collect();
    let newest: Vec<String> = oldest.iter().rev().cloned().collect();
    let cursor = |i: usize| SweepCursor {
        created_at_ms: listed[i].0,
        id: listed[i].1.clone(),
    };
    let start = SweepCursor {
        created_at_ms: base - 1,
        id: String::new(),
    };
    let page = |limit: u32, order: Order, after: Option<SweepCursor>, before: i64| async move {
        let p = store
            .records_by_status(status, before, limit, order, after.as_ref())
            .await
            .expect("list by status");
        assert!(
            p.records.iter().all(|r| r.status() == status),
            "only the status asked for"
        );
        p
    };

    // Newest first, from the newest end: ties by id, descending; the next page goes on.
    let first = page(4, Order::NewestFirst, None, before).await;
    assert_eq!(ids(&first), newest[..4], "the newest, newest first");
    assert_eq!(
        first.next,
        Some(cursor(12 - 4)),
        "the cursor of the last one"
    );
    let second = page(4, Order::NewestFirst, first.next.clone(), before).await;
    assert_eq!(ids(&second), newest[4..8], "the next page, past a tie");
    let third = page(4, Order::NewestFirst, second.next.clone(), before).await;
    assert_eq!(ids(&third), newest[8..]);

    // Oldest first from a cursor: pages of 5 and of 3 end inside the tie and walk every record
    // once; the page holding the last says so.
    for limit in [5, 3, 12, 100] {
        let mut walked = Vec::new();
        let mut after = Some(start.clone());
        let mut pages = 0;
        while let Some(a) = after.take() {
            let p = page(limit, Order::OldestFirst, Some(a), before).await;
            assert!(p.records.len() <= limit as usize, "at most the limit");
            walked.extend(ids(&p));
            if let Some(next) = &p.next {
                assert_eq!(
                    next,
                    &SweepCursor::of(p.records.last().expect("a page with a next is not empty")),
                    "the next page starts past the last record"
                );
            }
            after = p.next;
            pages += 1;
            assert!(pages <= 12, "the walk ends");
        }
        assert_eq!(
            walked, oldest,
            "pages of {limit}: every record once, oldest first"
        );
        assert_eq!(pages, 12_usize.div_ceil(limit as usize), "pages of {limit}");
    }

    // A cursor whose record is gone (or never was) is a position: the walk goes on past it, in
    // either order. Between the 5th and the 6th (both in the tie):
    let between = SweepCursor {
        created_at_ms: listed[4].0,
        id: format!("{}0", listed[4].1),
    };
    assert!(listed[4].1 < between.id && between.id < listed[5].1);
    let up = page(2, Order::OldestFirst, Some(between.clone()), before).await;
    assert_eq!(ids(&up), oldest[5..7]);
    let down = page(2, Order::NewestFirst, Some(between), before).await;
    assert_eq!(ids(&down), [oldest[4].clone(), oldest[3].clone()]);

    // `created_before_ms` bounds both ends: below the tie, the three alone, and no next page.
    let below = page(10, Order::OldestFirst, Some(start.clone()), base + 30).await;
    assert_eq!(ids(&below), oldest[..3]);
    assert_eq!(below.next, None);
    let below = page(2, Order::NewestFirst, None, base + 30).await;
    assert_eq!(ids(&below), [oldest[2].clone(), oldest[1].clone()]);
    // The last page of a walk (exactly full) has no next.
    let last = page(2, Order::OldestFirst, Some(cursor(9)), before).await;
    assert_eq!(ids(&last), oldest[10..]);
    assert_eq!(last.next, None, "nothing past the last");
    let past = page(2, Order::OldestFirst, Some(cursor(11)), before).await;
    assert!(past.records.is_empty() && past.next.is_none());

    // From the oldest end: the first of the status in the store, none of which is newer.
    let oldest_end = page(1, Order::OldestFirst, None, before).await;
    let first_of_all = oldest_end.records.first().expect("this status has records");
    assert!(first_of_all.attempts().created_at_ms <= base);
    assert_eq!(oldest_end.next, Some(SweepCursor::of(first_of_all)));

    // Another status is never listed.
    let other_id = other.record_id().to_string();
    for order in [Order::OldestFirst, Order::NewestFirst] {
        let all = page(100, order, None, before).await;
        assert!(
            !ids(&all).contains(&other_id),
            "{order:?}: another status listed"
        );
    }
}

/// [`paging_contract`] for messages: `accepted` ones, and one `queued`.
pub async fn message_paging_contract(store: Arc<dyn MessageStore>, vault: &Vault) {
    let base = paging_base();
    let to = crate::testing::unique_number();
    let mut mine = Vec::new();
    for offset in PAGING_OFFSETS {
        let m = crate::testing::sample_message(vault, base + offset, &to, "paging").await;
        store.insert_record(&m).await.expect("insert");
        mine.push(m);
    }
    let mut other = crate::testing::sample_message(vault, base + 25, &to, "paging").await;
    other.status = MessageStatus::Queued;
    store.insert_record(&other).await.expect("insert");
    paging_contract(store.as_ref(), MessageStatus::Accepted, mine, other, base).await;
}

/// [`paging_contract`] for calls: `accepted` ones, and one `queued`.
pub async fn call_paging_contract(store: Arc<dyn CallStore>, vault: &Vault) {
    let base = paging_base();
    let to = crate::testing::unique_number();
    let mut mine = Vec::new();
    for offset in PAGING_OFFSETS {
        let c = crate::testing_calls::sample_call(vault, base + offset, &to, "paging", false).await;
        store.insert_record(&c).await.expect("insert");
        mine.push(c);
    }
    let mut other = crate::testing_calls::sample_call(vault, base + 25, &to, "paging", false).await;
    other.status = CallStatus::Queued;
    store.insert_record(&other).await.expect("insert");
    paging_contract(store.as_ref(), CallStatus::Accepted, mine, other, base).await;
}

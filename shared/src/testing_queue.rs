//! The queue conformance suite (feature `test-util`): every [`Queue`] adapter runs these cases,
//! the SQLite queue under a manual clock (nothing waits) and SQS through moto in real time
//! (short delays, long polling and bounded receive loops; never a fixed sleep).
//!
//! An adapter's test file implements [`QueueFixture`] and calls each case from its own
//! `#[tokio::test]`, e.g. `testing_queue::round_trip(&fixture).await`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::ports::{
    MAX_BODY_BYTES, MAX_DELAY_SECS, ManualClock, Queue, QueueDepth, QueueError, ReceivedJob,
};

/// How time passes for the queue under test.
#[derive(Debug, Clone)]
pub enum QueueTime {
    /// The queue reads this clock; the suite moves it, and nothing waits.
    Manual(Arc<ManualClock>),
    /// Wall-clock time (a real service). `poll_secs` is how long one `receive` of the adapter
    /// may wait for a job (its long poll, at least 1).
    Real {
        /// The adapter's long-poll time, in seconds.
        poll_secs: u32,
    },
}

/// What the suite needs from an adapter's test.
#[async_trait]
pub trait QueueFixture: Send + Sync {
    /// A fresh, empty queue (uniquely named) with its dead-letter queue and this
    /// `max_receive_count`, as two handles that share nothing but the queue (two connections,
    /// two clients).
    async fn fresh(&self, max_receive_count: u32) -> (Arc<dyn Queue>, Arc<dyn Queue>);

    /// How time passes for the queues this fixture makes.
    fn time(&self) -> QueueTime;
}

/// Seconds, scaled to the time model: long under a manual clock, short in real time.
struct Timing {
    time: QueueTime,
    /// A delay, and a visibility timeout, that a test waits out.
    short: u32,
    /// A visibility timeout no test waits out.
    long: u32,
}

impl Timing {
    fn of(f: &dyn QueueFixture) -> Self {
        let time = f.time();
        match time {
            QueueTime::Manual(_) => Self {
                time,
                short: 30,
                long: 600,
            },
            QueueTime::Real { .. } => Self {
                time,
                short: 2,
                long: 60,
            },
        }
    }

    /// Lets `secs` pass: a manual clock moves; in real time nothing happens here (the next
    /// [`Timing::gather`] waits).
    fn pass(&self, secs: u32) {
        if let QueueTime::Manual(clock) = &self.time {
            clock.advance(i64::from(secs) * 1000);
        }
    }

    /// Receives until `want` jobs are gathered: under a manual clock until an empty answer; in
    /// real time for at most `within` seconds (plus a few of slack for the service).
    async fn gather(&self, q: &dyn Queue, want: usize, vis: u32, within: u32) -> Vec<ReceivedJob> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(u64::from(within) + 3);
        while got.len() < want {
            let n = u32::try_from((want - got.len()).min(10)).unwrap_or(10);
            let batch = q.receive(n, vis).await.expect("receive");
            let empty = batch.is_empty();
            got.extend(batch);
            match self.time {
                QueueTime::Manual(_) if empty => break,
                QueueTime::Real { .. } if Instant::now() >= deadline => break,
                _ => {}
            }
        }
        got
    }

    /// Asserts that no job is delivered in the next `secs` seconds: under a manual clock the
    /// clock moves by `secs` and one receive finds nothing; in real time every receive (long
    /// polls) until then finds nothing.
    async fn quiet(&self, q: &dyn Queue, vis: u32, secs: u32, what: &str) {
        match &self.time {
            QueueTime::Manual(clock) => {
                clock.advance(i64::from(secs) * 1000);
                let got = q.receive(10, vis).await.expect("receive");
                assert!(got.is_empty(), "{what}: got {got:?}");
            }
            QueueTime::Real { poll_secs } => {
                let end = Instant::now() + Duration::from_secs(u64::from(secs));
                let poll = Duration::from_secs(u64::from((*poll_secs).max(1)));
                loop {
                    let got = q.receive(10, vis).await.expect("receive");
                    assert!(got.is_empty(), "{what}: got {got:?}");
                    if Instant::now() + poll > end {
                        break;
                    }
                }
            }
        }
    }

    /// Now, as the queue sees it (Unix ms).
    fn now_ms(&self) -> i64 {
        match &self.time {
            QueueTime::Manual(clock) => crate::ports::Clock::now_ms(clock.as_ref()),
            QueueTime::Real { .. } => crate::ports::Clock::now_ms(&crate::ports::SystemClock),
        }
    }

    fn is_manual(&self) -> bool {
        matches!(self.time, QueueTime::Manual(_))
    }
}

fn ids(jobs: &[ReceivedJob]) -> HashSet<String> {
    jobs.iter().map(|j| j.message_id.clone()).collect()
}

fn bodies(jobs: &[ReceivedJob]) -> HashSet<String> {
    jobs.iter().map(|j| j.body.clone()).collect()
}

/// A job sent comes back once, as sent, with receive count 1 and its send time; while it is
/// hidden the depth counts it in flight; once deleted the queue is empty.
pub async fn round_trip(f: &dyn QueueFixture) {
    let t = Timing::of(f);
    let (q, _) = f.fresh(5).await;
    let before = t.now_ms();
    let id = q.send(r#"{"message_id":"msg_01"}"#, 0).await.expect("send");
    let after = t.now_ms();
    assert!(!id.is_empty());
    let got = t.gather(q.as_ref(), 1, t.long, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let job = &got[0];
    assert_eq!(job.message_id, id);
    assert_eq!(job.body, r#"{"message_id":"msg_01"}"#);
    assert_eq!(job.receive_count, 1);
    assert!(!job.receipt.is_empty());
    if t.is_manual() {
        assert_eq!(job.sent_at_ms, before);
    } else {
        assert!(
            (before - 5_000..=after + 5_000).contains(&job.sent_at_ms),
            "sent_at_ms {} not near {before}..{after}",
            job.sent_at_ms
        );
    }
    assert!(
        !format!("{job:?}").contains("msg_01"),
        "Debug shows the body"
    );
    assert_eq!(
        q.depth().await.expect("depth"),
        QueueDepth {
            in_flight: 1,
            ..QueueDepth::default()
        }
    );
    q.delete(&job.receipt).await.expect("delete");
    assert_eq!(q.depth().await.expect("depth"), QueueDepth::default());
}

/// Out-of-range requests are refused before anything is sent.
pub async fn rejects_bad_requests(f: &dyn QueueFixture) {
    let (q, _) = f.fresh(5).await;
    assert!(matches!(
        q.send("x", MAX_DELAY_SECS + 1).await,
        Err(QueueError::Invalid(_))
    ));
    assert!(matches!(q.send("", 0).await, Err(QueueError::Invalid(_))));
    let big = "x".repeat(MAX_BODY_BYTES + 1);
    assert!(matches!(
        q.send(&big, 0).await,
        Err(QueueError::TooLarge(n)) if n == MAX_BODY_BYTES + 1
    ));
    for max in [0, 11] {
        assert!(matches!(
            q.receive(max, 30).await,
            Err(QueueError::Invalid(_))
        ));
    }
    assert!(matches!(
        q.receive(1, 43_201).await,
        Err(QueueError::Invalid(_))
    ));
    assert!(matches!(
        q.send_batch(&[]).await,
        Err(QueueError::Invalid(_))
    ));
    let eleven: Vec<(String, u32)> = (0..11).map(|i| (format!("job-{i}"), 0)).collect();
    assert!(matches!(
        q.send_batch(&eleven).await,
        Err(QueueError::Invalid(_))
    ));
    let heavy: Vec<(String, u32)> = (0..10).map(|_| ("x".repeat(30_000), 0)).collect();
    assert!(matches!(
        q.send_batch(&heavy).await,
        Err(QueueError::TooLarge(300_000))
    ));
    assert!(matches!(
        q.delete("not-a-receipt").await,
        Err(QueueError::InvalidReceipt)
    ));
    assert!(matches!(
        q.change_visibility("not-a-receipt", 0).await,
        Err(QueueError::InvalidReceipt)
    ));
    assert_eq!(q.depth().await.expect("depth"), QueueDepth::default());
}

/// A delayed job is not delivered before its delay ends, and is after.
pub async fn delayed_delivery(f: &dyn QueueFixture) {
    let t = Timing::of(f);
    let (q, _) = f.fresh(5).await;
    let d = t.short;
    let id = q.send("late", d).await.expect("send");
    let depth = q.depth().await.expect("depth");
    assert_eq!(depth.delayed, 1, "{depth:?}");
    assert_eq!(depth.visible, 0, "{depth:?}");
    t.quiet(q.as_ref(), t.long, d - 1, "before the delay").await;
    t.pass(1);
    let got = t.gather(q.as_ref(), 1, t.long, d).await;
    assert_eq!(got.len(), 1, "after the delay");
    assert_eq!(got[0].message_id, id);
    assert_eq!(got[0].receive_count, 1);
}

/// A received job that is not deleted comes back after its visibility timeout, with its receive
/// count up by one and a new receipt; not before.
pub async fn redelivery_after_visibility_timeout(f: &dyn QueueFixture) {
    let t = Timing::of(f);
    let (q, _) = f.fresh(5).await;
    let v = t.short;
    let id = q.send("again", 0).await.expect("send");
    let first = t.gather(q.as_ref(), 1, v, 1).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    t.quiet(q.as_ref(), v, v - 1, "while hidden").await;
    t.pass(1);
    let second = t.gather(q.as_ref(), 1, t.long, v).await;
    assert_eq!(second.len(), 1, "after the visibility timeout");
    assert_eq!(second[0].message_id, id);
    assert_eq!(second[0].body, "again");
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(second[0].receipt, first[0].receipt);
}

/// A deleted job is never delivered again, and deleting it again succeeds.
pub async fn delete_acknowledges(f: &dyn QueueFixture) {
    let t = Timing::of(f);
    let (q, _) = f.fresh(5).await;
    q.send("done", 0).await.expect("send");
    let got = t.gather(q.as_ref(), 1, t.short, 1).await;
    assert_eq!(got.len(), 1);
    q.delete(&got[0].receipt).await.expect("delete");
    t.quiet(q.as_ref(), t.short, t.short + 1, "after delete")
        .await;
    q.delete(&got[0].receipt)
        .await
        .expect("deleting again is a no-op");
    assert_eq!(q.depth().await.expect("depth"), QueueDepth::default());
}

/// The receipt of an earlier delivery still deletes the job (SQS/moto semantics); a receipt of
/// a deleted job no longer changes visibility.
pub async fn stale_receipt(f: &dyn QueueFixture) {
    let t = Timing::of(f);
    let (q, _) = f.fresh(5).await;
    q.send("stale", 0).await.expect("send");
    let first = t.gather(q.as_ref(), 1, t.long, 1).await;
    assert_eq!(first.len(), 1);
    q.change_visibility(&first[0].receipt, 0)
        .await
        .expect("make visible now");
    let second = t.gather(q.as_ref(), 1, t.long, 1).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].receive_count, 2);
    q.delete(&first[0].receipt)
        .await
        .expect("stale delete succeeds");
    assert_eq!(q.depth().await.expect("depth"), QueueDepth::default());
    q.delete(&second[0].receipt)
        .await
        .expect("latest receipt of a deleted job: no-op");
    assert!(matches!(
        q.change_visibility(&second[0].receipt, 10).await,
        Err(QueueError::InvalidReceipt)
    ));
}

/// Receive five, delete three: only the other two come back after the timeout.
pub async fn partial_batch_acknowledgement(f: &dyn QueueFixture) {
    let t = Timing::of(f);
    let (q, _) = f.fresh(5).await;
    let jobs: Vec<(String, u32)> = (0..5).map(|i| (format!("part-{i}"), 0)).collect();
    for r in q.send_batch(&jobs).await.expect("send_batch") {
        r.expect("entry sent");
    }
    let v = t.short;
    let got = t.gather(q.as_ref(), 5, v, 2).await;
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(ids(&got).len(), 5);
    let (done, failed) = got.split_at(3);
    for j in done {
        q.delete(&j.receipt).await.expect("delete");
    }
    t.pass(v + 1);
    let back = t.gather(q.as_ref(), 2, t.long, v + 1).await;
    assert_eq!(back.len(), 2, "{back:?}");
    assert_eq!(ids(&back), ids(failed));
    assert!(back.iter().all(|j| j.receive_count == 2));
    for j in &back {
        q.delete(&j.receipt).await.expect("delete");
    }
    assert_eq!(q.depth().await.expect("depth"), QueueDepth::default());
}

/// `change_visibility` hides a job longer, or shows it at once.
pub async fn change_visibility(f: &dyn QueueFixture) {
    let t = Timing::of(f);
    let (q, _) = f.fresh(5).await;
    q.send("vis", 0).await.expect("send");
    let got = t.gather(q.as_ref(), 1, t.short, 1).await;
    assert_eq!(got.len(), 1);
    q.change_visibility(&got[0].receipt, t.long)
        .await
        .expect("extend");
    t.quiet(q.as_ref(), t.long, t.short + 1, "extended").await;
    q.change_visibility(&got[0].receipt, 0)
        .await
        .expect("release");
    let again = t.gather(q.as_ref(), 1, t.long, 1).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
}

/// After `max_receive_count` receives the next receive moves the job to the dead-letter queue
/// instead of returning it; `redrive` brings it back, its receive count reset.
pub async fn dead_letter_and_redrive(f: &dyn QueueFixture) {
    let t = Timing::of(f);
    let (q, _) = f.fresh(2).await;
    let id = q.send("poison", 0).await.expect("send");
    for n in 1..=2 {
        let got = t.gather(q.as_ref(), 1, t.long, 1).await;
        assert_eq!(got.len(), 1, "receive {n}");
        assert_eq!(got[0].receive_count, n);
        q.change_visibility(&got[0].receipt, 0)
            .await
            .expect("fail it now");
    }
    let third = q.receive(10, t.long).await.expect("receive");
    assert!(third.is_empty(), "{third:?}");
    let depth = q.depth().await.expect("depth");
    assert_eq!(depth.dead, 1, "{depth:?}");
    assert_eq!(
        depth.visible + depth.in_flight + depth.delayed,
        0,
        "{depth:?}"
    );
    let dead = q.dead_letters(10).await.expect("dead_letters");
    assert_eq!(bodies(&dead), HashSet::from(["poison".to_owned()]));
    // Inspection leaves it there.
    assert_eq!(q.depth().await.expect("depth").dead, 1);
    assert_eq!(q.redrive().await.expect("redrive"), 1);
    assert_eq!(q.redrive().await.expect("redrive again"), 0);
    let back = t.gather(q.as_ref(), 1, t.long, 1).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body, "poison");
    assert_eq!(back[0].receive_count, 1, "receive count reset");
    if t.is_manual() {
        assert_eq!(back[0].message_id, id);
    }
    assert!(q.dead_letters(10).await.expect("dead_letters").is_empty());
}

/// A batch of ten: ten ids; an entry that is out of range fails alone.
pub async fn batches(f: &dyn QueueFixture) {
    let t = Timing::of(f);
    let (q, _) = f.fresh(5).await;
    let jobs: Vec<(String, u32)> = (0..10).map(|i| (format!("batch-{i}"), 0)).collect();
    let sent: Vec<String> = q
        .send_batch(&jobs)
        .await
        .expect("send_batch")
        .into_iter()
        .map(|r| r.expect("entry sent"))
        .collect();
    assert_eq!(sent.iter().collect::<HashSet<_>>().len(), 10);
    let got = t.gather(q.as_ref(), 10, t.long, 2).await;
    assert_eq!(got.len(), 10, "{got:?}");
    assert_eq!(ids(&got), sent.into_iter().collect());
    assert_eq!(bodies(&got), jobs.iter().map(|(b, _)| b.clone()).collect());

    let mixed = vec![
        ("ok-1".to_owned(), 0),
        ("late-bad".to_owned(), MAX_DELAY_SECS + 1),
        (String::new(), 0),
        ("ok-2".to_owned(), 0),
    ];
    let results = q.send_batch(&mixed).await.expect("send_batch");
    assert_eq!(results.len(), 4);
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(QueueError::Invalid(_))));
    assert!(matches!(results[2], Err(QueueError::Invalid(_))));
    assert!(results[3].is_ok());
    let got = t.gather(q.as_ref(), 2, t.long, 2).await;
    assert_eq!(
        bodies(&got),
        HashSet::from(["ok-1".to_owned(), "ok-2".to_owned()])
    );
}

/// Receivers on two handles, two tasks each, drain the queue together: each job is held by
/// exactly one of them.
pub async fn concurrent_receivers(f: &dyn QueueFixture) {
    let t = Timing::of(f);
    let (a, b) = f.fresh(5).await;
    let mut sent = HashSet::new();
    for chunk in 0..2 {
        let jobs: Vec<(String, u32)> = (0..10).map(|i| (format!("c-{chunk}-{i}"), 0)).collect();
        for r in a.send_batch(&jobs).await.expect("send_batch") {
            sent.insert(r.expect("entry sent"));
        }
    }
    let vis = t.long;
    let mut tasks = Vec::new();
    for q in [a.clone(), b.clone(), a, b] {
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = q.receive(3, vis).await.expect("receive");
                if got.is_empty() {
                    break;
                }
                mine.extend(got.into_iter().map(|j| j.message_id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("receiver"));
    }
    let distinct: HashSet<String> = all.iter().cloned().collect();
    assert_eq!(distinct.len(), all.len(), "a job was held twice: {all:?}");
    assert_eq!(distinct, sent);
}

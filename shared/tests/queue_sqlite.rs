//! The queue conformance suite against the SQLite queue: a database file opened on two
//! connections, time moved by a manual clock (nothing sleeps).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use herald::adapters::embedded::{SqliteQueue, SqliteStore};
use herald::ports::{ManualClock, Queue, QueueDepth, QueueError};
use herald::testing_queue::{self as suite, QueueFixture, QueueTime};

struct Sqlite {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    next: AtomicU32,
}

impl Sqlite {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            clock: Arc::new(ManualClock::new(1_800_000_000_000)),
            next: AtomicU32::new(0),
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("herald.db")
    }
}

#[async_trait]
impl QueueFixture for Sqlite {
    async fn fresh(&self, max_receive_count: u32) -> (Arc<dyn Queue>, Arc<dyn Queue>) {
        let name = format!("q{}", self.next.fetch_add(1, Ordering::SeqCst));
        let open = || {
            SqliteQueue::open(&self.path(), &name, max_receive_count, self.clock.clone())
                .expect("queue opens")
        };
        (Arc::new(open()), Arc::new(open()))
    }

    fn time(&self) -> QueueTime {
        QueueTime::Manual(self.clock.clone())
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            suite::$case(&Sqlite::new()).await;
        }
    )*};
}

conformance!(
    round_trip,
    rejects_bad_requests,
    delayed_delivery,
    redelivery_after_visibility_timeout,
    delete_acknowledges,
    stale_receipt,
    partial_batch_acknowledgement,
    change_visibility,
    dead_letter_and_redrive,
    batches,
    concurrent_receivers,
);

#[tokio::test]
async fn shares_the_store_file_and_keeps_queues_apart() {
    let f = Sqlite::new();
    let store = SqliteStore::open(&f.path(), f.clock.clone()).expect("store opens");
    let send = SqliteQueue::open(&f.path(), "send", 3, f.clock.clone()).expect("queue opens");
    let retry = send.sibling("retry", 5).expect("sibling");
    send.send("to-send", 0).await.expect("send");
    retry.send("to-retry", 0).await.expect("send");
    let got = retry.receive(10, 30).await.expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "to-retry");
    assert!(matches!(
        send.delete(&got[0].receipt).await,
        Err(QueueError::InvalidReceipt)
    ));
    let got = send.receive(10, 30).await.expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "to-send");
    drop(store);
}

#[tokio::test]
async fn survives_reopening() {
    let f = Sqlite::new();
    let q = SqliteQueue::open(&f.path(), "durable", 3, f.clock.clone()).expect("queue opens");
    q.send("kept", 60).await.expect("send");
    drop(q);
    let q = SqliteQueue::open(&f.path(), "durable", 3, f.clock.clone()).expect("queue reopens");
    assert_eq!(
        q.depth().await.expect("depth"),
        QueueDepth {
            delayed: 1,
            ..QueueDepth::default()
        }
    );
    f.clock.advance(60_000);
    let got = q.receive(1, 30).await.expect("receive");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "kept");
}

#[tokio::test]
async fn dead_letter_receipts_are_for_inspection_only() {
    let f = Sqlite::new();
    let q = SqliteQueue::in_memory("mem", 1, f.clock.clone()).expect("queue");
    q.send("poison", 0).await.expect("send");
    let got = q.receive(1, 0).await.expect("receive");
    assert_eq!(got.len(), 1);
    assert!(q.receive(1, 0).await.expect("receive").is_empty());
    let dead = q.dead_letters(1).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert!(matches!(
        q.delete(&dead[0].receipt).await,
        Err(QueueError::InvalidReceipt)
    ));
    assert_eq!(q.depth().await.expect("depth").dead, 1);
}

#[test]
fn names_and_counts_are_checked() {
    let clock = Arc::new(ManualClock::new(0));
    assert!(SqliteQueue::in_memory("bad name", 3, clock.clone()).is_err());
    assert!(SqliteQueue::in_memory("", 3, clock.clone()).is_err());
    assert!(SqliteQueue::in_memory("ok", 0, clock.clone()).is_err());
    assert!(SqliteQueue::in_memory("ok", 1001, clock).is_err());
}

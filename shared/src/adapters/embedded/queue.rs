//! The SQLite queue: named work queues with their dead-letter queues in one database file, timed
//! by an injected clock, with SQS's semantics (delays, visibility timeouts, receive counts and a
//! redrive policy).
//!
//! A [`SqliteQueue`] opens its own connection (WAL, busy timeout) and may share the file with the
//! [`super::SqliteStore`]: its table (`queue_jobs`) is its own. Every receive, delete and move is
//! one immediate transaction, so receivers on other connections, or in other processes, never
//! get a job another receiver holds hidden.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, TransactionBehavior, params};

use crate::ports::{
    Clock, Queue, QueueDepth, QueueError, ReceivedJob, check_batch, check_batch_size, check_body,
    check_delay, check_visibility,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    dead INTEGER NOT NULL DEFAULT 0,
    message_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_jobs_by_queue ON queue_jobs (queue, dead, seq);
";

/// The largest `max_receive_count` (SQS's limit).
const MAX_RECEIVE_COUNT: u32 = 1000;

/// A named queue and its dead-letter queue in SQLite. Clone it freely: clones share one
/// connection.
#[derive(Clone)]
pub struct SqliteQueue {
    conn: Arc<Mutex<Connection>>,
    clock: Arc<dyn Clock>,
    name: Arc<str>,
    max_receive_count: u32,
}

impl std::fmt::Debug for SqliteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteQueue")
            .field("name", &self.name)
            .field("max_receive_count", &self.max_receive_count)
            .finish_non_exhaustive()
    }
}

fn backend(e: rusqlite::Error) -> QueueError {
    QueueError::transient(e)
}

fn check_name(name: &str) -> Result<(), QueueError> {
    let ok = !name.is_empty()
        && name.len() <= 80
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(QueueError::Invalid(
            "queue name: 1 to 80 letters, digits, '-' or '_'".into(),
        ))
    }
}

fn check_max_receive_count(n: u32) -> Result<(), QueueError> {
    if (1..=MAX_RECEIVE_COUNT).contains(&n) {
        Ok(())
    } else {
        Err(QueueError::Invalid(format!(
            "max_receive_count {n}: must be 1..={MAX_RECEIVE_COUNT}"
        )))
    }
}

fn secs_ms(secs: u32) -> i64 {
    i64::from(secs) * 1000
}

impl SqliteQueue {
    /// Opens (and creates) the database at `path` on a connection of its own, and the queue
    /// `name` in it (letters, digits, `-`, `_`; at most 80), with its dead-letter queue. A job is
    /// received at most `max_receive_count` times (1..=1000) before it moves there. The file may
    /// be the store's.
    pub fn open(
        path: &Path,
        name: &str,
        max_receive_count: u32,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        check_name(name)?;
        check_max_receive_count(max_receive_count)?;
        super::private::prepare_db(path).map_err(QueueError::transient)?;
        let conn = Connection::open(path).map_err(backend)?;
        Self::init(conn, name, max_receive_count, clock)
    }

    /// The queue `name` in a private in-memory database (tests).
    pub fn in_memory(
        name: &str,
        max_receive_count: u32,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        check_name(name)?;
        check_max_receive_count(max_receive_count)?;
        Self::init(
            Connection::open_in_memory().map_err(backend)?,
            name,
            max_receive_count,
            clock,
        )
    }

    /// Another queue (with its own dead-letter queue) in the same database, over the same
    /// connection and clock: the send queue and the retry queue side by side.
    pub fn sibling(&self, name: &str, max_receive_count: u32) -> Result<Self, QueueError> {
        check_name(name)?;
        check_max_receive_count(max_receive_count)?;
        Ok(Self {
            conn: self.conn.clone(),
            clock: self.clock.clone(),
            name: name.into(),
            max_receive_count,
        })
    }

    fn init(
        conn: Connection,
        name: &str,
        max_receive_count: u32,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, QueueError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            clock,
            name: name.into(),
            max_receive_count,
        })
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, QueueError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn
                .lock()
                .map_err(|_| QueueError::transient(std::io::Error::other("queue lock poisoned")))?;
            f(&mut c)
        })
        .await
        .map_err(QueueError::transient)?
    }

    /// `name/message_id/nonce`: a fresh receipt for one delivery.
    fn receipt(name: &str, message_id: &str) -> String {
        format!("{name}/{message_id}/{}", ulid::Ulid::new())
    }

    /// The message id in a receipt of this queue.
    fn parse_receipt<'r>(&self, receipt: &'r str) -> Result<&'r str, QueueError> {
        let mut parts = receipt.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(q), Some(id), Some(nonce), None)
                if q == &*self.name && !id.is_empty() && !nonce.is_empty() =>
            {
                Ok(id)
            }
            _ => Err(QueueError::InvalidReceipt),
        }
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send(&self, body: &str, delay_secs: u32) -> Result<String, QueueError> {
        let mut ids = self.send_batch(&[(body.to_owned(), delay_secs)]).await?;
        ids.pop()
            .unwrap_or_else(|| Err(QueueError::Invalid("nothing sent".into())))
    }

    async fn send_batch(
        &self,
        jobs: &[(String, u32)],
    ) -> Result<Vec<Result<String, QueueError>>, QueueError> {
        check_batch(jobs.len())?;
        let now = self.clock.now_ms();
        let name = self.name.clone();
        let checked: Vec<Result<(String, u32), QueueError>> = jobs
            .iter()
            .map(|(body, delay)| {
                check_body(body)?;
                check_delay(*delay)?;
                Ok((body.clone(), *delay))
            })
            .collect();
        check_batch_size(checked.iter().flatten().map(|(b, _)| b.as_str()))?;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let mut out = Vec::with_capacity(checked.len());
            for job in checked {
                out.push(match job {
                    Err(e) => Err(e),
                    Ok((body, delay)) => {
                        let id = ulid::Ulid::new().to_string();
                        tx.execute(
                            "INSERT INTO queue_jobs (queue, message_id, body, sent_at_ms, visible_at_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![&*name, id, body, now, now + secs_ms(delay)],
                        )
                        .map_err(backend)?;
                        Ok(id)
                    }
                });
            }
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
    }

    async fn receive(
        &self,
        max: u32,
        visibility_timeout_secs: u32,
    ) -> Result<Vec<ReceivedJob>, QueueError> {
        check_batch(max as usize)?;
        check_visibility(visibility_timeout_secs)?;
        let now = self.clock.now_ms();
        let hidden_until = now + secs_ms(visibility_timeout_secs);
        let name = self.name.clone();
        let max_receive_count = self.max_receive_count;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let mut out = Vec::new();
            let mut after = 0_i64;
            'scan: while out.len() < max as usize {
                let batch: Vec<(i64, String, String, u32, i64)> = {
                    let mut st = tx
                        .prepare_cached(
                            "SELECT seq, message_id, body, receive_count, sent_at_ms FROM queue_jobs
                             WHERE queue = ?1 AND dead = 0 AND visible_at_ms <= ?2 AND seq > ?3
                             ORDER BY seq LIMIT ?4",
                        )
                        .map_err(backend)?;
                    st.query_map(params![&*name, now, after, max], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .map_err(backend)?
                    .collect::<Result<_, _>>()
                    .map_err(backend)?
                };
                if batch.is_empty() {
                    break;
                }
                for (seq, message_id, body, count, sent_at_ms) in batch {
                    after = seq;
                    if count >= max_receive_count {
                        // The redrive policy: one receive too many moves it to the DLQ.
                        tx.execute(
                            "UPDATE queue_jobs SET dead = 1, visible_at_ms = ?2 WHERE seq = ?1",
                            params![seq, now],
                        )
                        .map_err(backend)?;
                        continue;
                    }
                    tx.execute(
                        "UPDATE queue_jobs SET receive_count = ?2, visible_at_ms = ?3 WHERE seq = ?1",
                        params![seq, count + 1, hidden_until],
                    )
                    .map_err(backend)?;
                    out.push(ReceivedJob {
                        receipt: Self::receipt(&name, &message_id),
                        message_id,
                        body,
                        receive_count: count + 1,
                        sent_at_ms,
                    });
                    if out.len() == max as usize {
                        break 'scan;
                    }
                }
            }
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let id = self.parse_receipt(receipt)?.to_owned();
        let name = self.name.clone();
        self.with(move |c| {
            c.execute(
                "DELETE FROM queue_jobs WHERE queue = ?1 AND dead = 0 AND message_id = ?2",
                params![&*name, id],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn change_visibility(
        &self,
        receipt: &str,
        visibility_timeout_secs: u32,
    ) -> Result<(), QueueError> {
        check_visibility(visibility_timeout_secs)?;
        let id = self.parse_receipt(receipt)?.to_owned();
        let name = self.name.clone();
        let until = self.clock.now_ms() + secs_ms(visibility_timeout_secs);
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE queue_jobs SET visible_at_ms = ?3
                     WHERE queue = ?1 AND dead = 0 AND message_id = ?2",
                    params![&*name, id, until],
                )
                .map_err(backend)?;
            if n == 1 {
                Ok(())
            } else {
                Err(QueueError::InvalidReceipt)
            }
        })
        .await
    }

    async fn dead_letters(&self, max: u32) -> Result<Vec<ReceivedJob>, QueueError> {
        check_batch(max as usize)?;
        let name = self.name.clone();
        self.with(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT message_id, body, receive_count, sent_at_ms FROM queue_jobs
                     WHERE queue = ?1 AND dead = 1 ORDER BY seq LIMIT ?2",
                )
                .map_err(backend)?;
            st.query_map(params![&*name, max], |r| {
                let message_id: String = r.get(0)?;
                Ok(ReceivedJob {
                    // Inspection only: no operation accepts a dead letter's receipt.
                    receipt: format!("dlq:{name}/{message_id}"),
                    message_id,
                    body: r.get(1)?,
                    receive_count: r.get(2)?,
                    sent_at_ms: r.get(3)?,
                })
            })
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)
        })
        .await
    }

    async fn redrive(&self) -> Result<u32, QueueError> {
        let name = self.name.clone();
        let now = self.clock.now_ms();
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE queue_jobs SET dead = 0, receive_count = 0, visible_at_ms = ?2
                     WHERE queue = ?1 AND dead = 1",
                    params![&*name, now],
                )
                .map_err(backend)?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
        .await
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let name = self.name.clone();
        let now = self.clock.now_ms();
        self.with(move |c| {
            c.query_row(
                "SELECT
                   COALESCE(SUM(dead = 0 AND visible_at_ms <= ?2), 0),
                   COALESCE(SUM(dead = 0 AND visible_at_ms > ?2 AND receive_count > 0), 0),
                   COALESCE(SUM(dead = 0 AND visible_at_ms > ?2 AND receive_count = 0), 0),
                   COALESCE(SUM(dead = 1), 0)
                 FROM queue_jobs WHERE queue = ?1",
                params![&*name, now],
                |r| {
                    Ok(QueueDepth {
                        visible: r.get(0)?,
                        in_flight: r.get(1)?,
                        delayed: r.get(2)?,
                        dead: r.get(3)?,
                    })
                },
            )
            .map_err(backend)
        })
        .await
    }
}

//! The SQLite store: messages, events, opt-outs, the keyring and Twilio SID ownership in one
//! database file (WAL mode).
//!
//! Each record is a JSON document plus the columns its conditions and indexes need; every
//! decision (create-if-absent, update-if-rank-is-lower) runs inside one immediate transaction.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::adapters::Stored;
use crate::crypto::LookupToken;
use crate::domain::{Attempted, Call, Event, Message, MessageStatus, RecordStatus, Subject};
use crate::ports::{
    Applied, Decide, EventStore, InDoubt, Keyring, MAX_UPDATE_ROUNDS, MessageStore, OptOutStore,
    Order, Page, Records, StoreError, SweepCursor,
};

mod calls;
mod protect;
mod sids;

/// The tables beside the records' ([`records_table`]), and the index of messages by caller (the
/// listing and the delivery report).
const SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS messages_by_caller ON messages (caller, created_at_ms);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_subject ON events (subject, at_ms, seq);
CREATE TABLE IF NOT EXISTS opt_outs (
    token TEXT PRIMARY KEY,
    opted_out INTEGER NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS keyring (
    name TEXT PRIMARY KEY,
    wrapped BLOB NOT NULL
);
";

/// The SQLite store. Clone it freely: clones share one connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    clock: Arc<dyn crate::ports::Clock>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::transient(e)
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Creates the table of a record kind (`messages`, `calls`), or brings one made by an earlier
/// version up to date: a JSON document plus the columns its conditions and indexes need, the
/// index the sweep pages by status through, the index by recipient, and the doubt index.
fn records_table(c: &Connection, table: &str) -> rusqlite::Result<()> {
    c.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (
            id TEXT PRIMARY KEY,
            caller TEXT NOT NULL,
            status TEXT NOT NULL,
            status_rank INTEGER NOT NULL,
            attempt INTEGER NOT NULL,
            to_token TEXT NOT NULL,
            created_at_ms INTEGER NOT NULL,
            doc TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS {table}_by_status_id ON {table} (status, created_at_ms, id);
        CREATE INDEX IF NOT EXISTS {table}_by_recipient ON {table} (to_token, created_at_ms);"
    ))?;
    doubt_index(c, table)?;
    // The status index before sweeps paged by `(created_at_ms, id)`: replaced by
    // `{table}_by_status_id`, which serves the keyset.
    c.execute_batch(&format!("DROP INDEX IF EXISTS {table}_by_status"))
}

/// Gives `table` (`messages`, `calls`) the columns of the doubt index, on a database made
/// before them too, and the index itself: only records with a span in doubt are in it.
fn doubt_index(c: &Connection, table: &str) -> rusqlite::Result<()> {
    let has: bool = c
        .prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = 'doubt_token'"
        ))?
        .exists([])?;
    if !has {
        c.execute_batch(&format!(
            "ALTER TABLE {table} ADD COLUMN doubt_token TEXT;
             ALTER TABLE {table} ADD COLUMN doubt_since_ms INTEGER;
             ALTER TABLE {table} ADD COLUMN doubt_until_ms INTEGER;"
        ))?;
    }
    c.execute_batch(&format!(
        "CREATE INDEX IF NOT EXISTS {table}_in_doubt ON {table} (doubt_token, doubt_until_ms)
         WHERE doubt_token IS NOT NULL"
    ))
}

/// The doubt index's columns of `r`: its match token and its span in doubt, or NULLs.
pub(super) fn doubt_columns<R: Attempted>(r: &R) -> (Option<String>, Option<i64>, Option<i64>) {
    match (r.match_token(), r.attempts().in_doubt()) {
        (Some(t), Some((since, until))) => (Some(t.0.clone()), Some(since), Some(until)),
        _ => (None, None, None),
    }
}

impl SqliteStore {
    /// Opens (and creates) the database at `path`, creating its folder.
    pub fn open(path: &Path, clock: Arc<dyn crate::ports::Clock>) -> Result<Self, StoreError> {
        super::private::prepare_db(path).map_err(StoreError::transient)?;
        let conn = Connection::open(path).map_err(backend)?;
        Self::init(conn, clock)
    }

    /// A private in-memory database (tests).
    pub fn in_memory(clock: Arc<dyn crate::ports::Clock>) -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(backend)?, clock)
    }

    fn init(conn: Connection, clock: Arc<dyn crate::ports::Clock>) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        for table in [<Message as SqliteKind>::TABLE, <Call as SqliteKind>::TABLE] {
            records_table(&conn, table).map_err(backend)?;
        }
        conn.execute_batch(SCHEMA).map_err(backend)?;
        conn.execute_batch(protect::SCHEMA).map_err(backend)?;
        protect::migrate(&conn).map_err(backend)?;
        conn.execute_batch(sids::SCHEMA).map_err(backend)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            clock,
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = conn
                .lock()
                .map_err(|_| StoreError::Corrupt("store lock poisoned".into()))?;
            f(&mut c)
        })
        .await
        .map_err(StoreError::transient)?
    }

    /// Deletes events past their expiry (SQLite has no TTL of its own); returns how many.
    pub async fn sweep_expired(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        self.with(move |c| {
            c.execute("DELETE FROM events WHERE expires_at_ms <= ?1", params![now])
                .map_err(backend)
        })
        .await
    }
}

/// The document stored under `id` in `table`, if any.
fn read_doc(c: &Connection, table: &str, id: &str) -> Result<Option<String>, StoreError> {
    c.query_row(
        &format!("SELECT doc FROM {table} WHERE id = ?1"),
        params![id],
        |r| r.get(0),
    )
    .optional()
    .map_err(backend)
}

/// What differs between the record kinds in the SQLite store: only their table (`messages`,
/// `calls`), which have the same columns.
pub(super) trait SqliteKind: Stored {
    /// The kind's table.
    const TABLE: &'static str;
}

impl SqliteKind for Message {
    const TABLE: &'static str = "messages";
}

/// Every record kind's store: a JSON document plus the columns its conditions and indexes
/// need, in the kind's table.
#[async_trait]
impl<R: SqliteKind> Records<R> for SqliteStore {
    async fn insert_record(&self, record: &R) -> Result<(), StoreError> {
        let table = R::TABLE;
        let doc = serde_json::to_string(record).map_err(corrupt)?;
        let doubt = doubt_columns(record);
        let id = record.record_id().to_string();
        let caller = record.caller().to_owned();
        let to_token = record.to().token.0.clone();
        let (status, a) = (record.status(), record.attempts());
        self.with(move |c| {
            let n = c
                .execute(
                    &format!(
                        "INSERT INTO {table} (id, caller, status, status_rank, attempt, to_token, created_at_ms, doc,
                             doubt_token, doubt_since_ms, doubt_until_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING"
                    ),
                    params![
                        id,
                        caller,
                        status.as_str(),
                        status.rank(),
                        a.attempt,
                        to_token,
                        a.created_at_ms,
                        doc,
                        doubt.0,
                        doubt.1,
                        doubt.2
                    ],
                )
                .map_err(backend)?;
            if n == 1 { Ok(()) } else { Err(StoreError::Conflict) }
        })
        .await
    }

    async fn get_record(&self, id: &R::Id) -> Result<Option<R>, StoreError> {
        let id = id.to_string();
        let doc = self.with(move |c| read_doc(c, R::TABLE, &id)).await?;
        doc.map(|d| serde_json::from_str(&d).map_err(corrupt))
            .transpose()
    }

    /// The one compare-and-set every record kind's change goes through: decide outside the
    /// connection on the document read, write only if the stored document is still that one
    /// (another connection to the file may have changed it), else read and decide again, at
    /// most [`MAX_UPDATE_ROUNDS`] times.
    async fn update_record(
        &self,
        id: &R::Id,
        decide: &Decide<'_, R>,
    ) -> Result<Applied<R>, StoreError> {
        let table = R::TABLE;
        for _ in 0..MAX_UPDATE_ROUNDS {
            let key = id.to_string();
            let read = self.with(move |c| read_doc(c, table, &key)).await?;
            let Some(old_doc) = read else {
                return Ok(Applied::NotFound);
            };
            let current: R = serde_json::from_str(&old_doc).map_err(corrupt)?;
            let Some(mut next) = decide(&current) else {
                return Ok(Applied::Ignored(current));
            };
            next.keep_identity(&current);
            let new_doc = serde_json::to_string(&next).map_err(corrupt)?;
            let key = id.to_string();
            let status = next.status();
            let (status, rank, attempt) = (status.as_str(), status.rank(), next.attempts().attempt);
            let (doubt_token, since, until) = doubt_columns(&next);
            let written = self
                .with(move |c| {
                    c.execute(
                        &format!(
                            "UPDATE {table} SET status = ?2, status_rank = ?3, attempt = ?4, doc = ?5,
                                 doubt_token = ?7, doubt_since_ms = ?8, doubt_until_ms = ?9
                             WHERE id = ?1 AND doc = ?6"
                        ),
                        params![
                            key,
                            status,
                            rank,
                            attempt,
                            new_doc,
                            old_doc,
                            doubt_token,
                            since,
                            until
                        ],
                    )
                    .map_err(backend)
                })
                .await?;
            if written == 1 {
                return Ok(Applied::Applied(next));
            }
        }
        Err(StoreError::Transient(
            format!("too much contention on one record of {table}").into(),
        ))
    }

    /// A keyset range over the `{table}_by_status_id` index, one more row read than asked for
    /// to know whether a next page exists.
    async fn records_by_status(
        &self,
        status: R::Status,
        created_before_ms: i64,
        limit: u32,
        order: Order,
        after: Option<&SweepCursor>,
    ) -> Result<Page<R>, StoreError> {
        let (table, status) = (R::TABLE, status.as_str());
        let (past, direction) = match order {
            Order::OldestFirst => (">", "ASC"),
            Order::NewestFirst => ("<", "DESC"),
        };
        let after = after.map(|c| (c.created_at_ms, c.id.clone()));
        self.with(move |c| {
            let keyset = if after.is_some() {
                format!("AND (created_at_ms, id) {past} (?4, ?5)")
            } else {
                String::new()
            };
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT doc, created_at_ms, id FROM {table} INDEXED BY {table}_by_status_id
                     WHERE status = ?1 AND created_at_ms < ?2 {keyset}
                     ORDER BY created_at_ms {direction}, id {direction} LIMIT ?3"
                ))
                .map_err(backend)?;
            let read = |r: &rusqlite::Row<'_>| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            };
            let extra = i64::from(limit) + 1;
            let rows = match &after {
                Some((at, id)) => st
                    .query_map(params![status, created_before_ms, extra, at, id], read)
                    .map_err(backend)?
                    .collect::<Result<Vec<_>, _>>(),
                None => st
                    .query_map(params![status, created_before_ms, extra], read)
                    .map_err(backend)?
                    .collect::<Result<Vec<_>, _>>(),
            }
            .map_err(backend)?;
            let page = Page::from_one_extra(rows, limit, |(_, at, id)| SweepCursor {
                created_at_ms: *at,
                id: id.clone(),
            });
            Ok(Page {
                records: page
                    .records
                    .into_iter()
                    .map(|(doc, _, _)| serde_json::from_str(&doc).map_err(corrupt))
                    .collect::<Result<_, _>>()?,
                next: page.next,
            })
        })
        .await
    }

    /// The kind's table's doubt index.
    async fn records_in_doubt(
        &self,
        token: &LookupToken,
        until_from_ms: i64,
        limit: u32,
    ) -> Result<Vec<InDoubt>, StoreError> {
        let (table, token) = (R::TABLE, token.0.clone());
        self.with(move |c| {
            let mut st = c
                .prepare_cached(&format!(
                    "SELECT id, doubt_since_ms, doubt_until_ms FROM {table} INDEXED BY {table}_in_doubt
                     WHERE doubt_token = ?1 AND doubt_until_ms >= ?2
                     ORDER BY doubt_until_ms LIMIT ?3"
                ))
                .map_err(backend)?;
            let rows = st
                .query_map(params![token, until_from_ms, limit], |r| {
                    Ok(InDoubt {
                        record_id: r.get(0)?,
                        since_ms: r.get(1)?,
                        until_ms: r.get(2)?,
                    })
                })
                .map_err(backend)?;
            rows.map(|r| r.map_err(backend)).collect()
        })
        .await
    }
}

impl MessageStore for SqliteStore {}

#[async_trait]
impl EventStore for SqliteStore {
    async fn record_event(&self, event: &Event) -> Result<bool, StoreError> {
        let e = event.clone();
        let doc = serde_json::to_string(&e).map_err(corrupt)?;
        let now = self.clock.now_ms();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            // An expired event not yet swept is gone as far as readers are concerned
            // (`get_event` hides it), so its key is free again, as in DynamoDB once TTL ran.
            tx.execute(
                "DELETE FROM events WHERE key = ?1 AND expires_at_ms <= ?2",
                params![e.key, now],
            )
            .map_err(backend)?;
            let n = tx
                .execute(
                    "INSERT INTO events (key, subject, at_ms, expires_at_ms, doc) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (key) DO NOTHING",
                    params![e.key, e.subject.0, e.at_ms, e.expires_at_ms, doc],
                )
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn get_event(&self, key: &str) -> Result<Option<Event>, StoreError> {
        let key = key.to_owned();
        let now = self.clock.now_ms();
        self.with(move |c| {
            let doc: Option<String> = c
                .query_row(
                    "SELECT doc FROM events WHERE key = ?1 AND expires_at_ms > ?2",
                    params![key, now],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            doc.map(|d| serde_json::from_str(&d).map_err(corrupt))
                .transpose()
        })
        .await
    }

    async fn events_for(&self, subject: &Subject) -> Result<Vec<Event>, StoreError> {
        let subject = subject.0.clone();
        let now = self.clock.now_ms();
        self.with(move |c| {
            let mut st = c
                .prepare_cached(
                    "SELECT doc FROM events WHERE subject = ?1 AND expires_at_ms > ?2 ORDER BY at_ms, seq",
                )
                .map_err(backend)?;
            let rows = st.query_map(params![subject, now], |r| r.get::<_, String>(0)).map_err(backend)?;
            rows.map(|r| serde_json::from_str(&r.map_err(backend)?).map_err(corrupt)).collect()
        })
        .await
    }
}

#[async_trait]
impl OptOutStore for SqliteStore {
    async fn set_opt_out(
        &self,
        token: &LookupToken,
        opted_out: bool,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let token = token.0.clone();
        self.with(move |c| {
            // One statement: insert, or overwrite only a change that is not newer.
            let n = c
                .execute(
                    "INSERT INTO opt_outs (token, opted_out, at_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (token) DO UPDATE SET opted_out = excluded.opted_out,
                     at_ms = excluded.at_ms WHERE excluded.at_ms >= opt_outs.at_ms",
                    params![token, opted_out, at_ms],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
        .await
    }

    async fn is_opted_out(&self, token: &LookupToken) -> Result<bool, StoreError> {
        let token = token.0.clone();
        self.with(move |c| {
            let v: Option<bool> = c
                .query_row(
                    "SELECT opted_out FROM opt_outs WHERE token = ?1",
                    params![token],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            Ok(v.unwrap_or(false))
        })
        .await
    }
}

#[async_trait]
impl Keyring for SqliteStore {
    async fn get_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT wrapped FROM keyring WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn put_key_if_absent(&self, name: &str, wrapped: &[u8]) -> Result<Vec<u8>, StoreError> {
        let name = name.to_owned();
        let wrapped = wrapped.to_vec();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            tx.execute(
                "INSERT INTO keyring (name, wrapped) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, wrapped],
            )
            .map_err(backend)?;
            let stored: Vec<u8> = tx
                .query_row(
                    "SELECT wrapped FROM keyring WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(stored)
        })
        .await
    }
}

impl SqliteStore {
    /// How many messages are stored (inspection and tests).
    pub async fn count_messages(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
                .map_err(backend)
        })
        .await
    }

    /// How many events are stored (inspection and tests).
    pub async fn count_events(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
                .map_err(backend)
        })
        .await
    }
}

impl SqliteStore {
    /// How many messages have each status (inspection: the soak and `herald up`).
    pub async fn count_by_status(&self) -> Result<Vec<(MessageStatus, u64)>, StoreError> {
        self.with(|c| {
            let mut st = c
                .prepare_cached("SELECT status, COUNT(*) FROM messages GROUP BY status")
                .map_err(backend)?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
                .map_err(backend)?;
            let mut out = Vec::new();
            for row in rows {
                let (status, n) = row.map_err(backend)?;
                let status = status
                    .parse::<MessageStatus>()
                    .map_err(|()| StoreError::Corrupt(format!("unknown status {status:?}")))?;
                out.push((status, n));
            }
            Ok(out)
        })
        .await
    }
}

//! The API's protection in the SQLite store: rate-limit windows, idempotency keys,
//! verifications, and queries of messages by caller (the `messages_by_caller` index). Every
//! decision is one statement or one immediate transaction.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, backend, corrupt};
use crate::domain::{Verification, VerificationId};
use crate::ports::{
    Acquired, Begun, DecideVerification, IdempotencyStore, MessagePage, MessageQueries,
    MessageQuery, PageCursor, RateLimiter, StoreError, StoredResponse, VerificationApplied,
    VerificationStore, window_start,
};

/// The tables, created with the rest of the schema.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rate_windows (
    key TEXT NOT NULL,
    window_start_ms INTEGER NOT NULL,
    used INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (key, window_start_ms)
);
CREATE INDEX IF NOT EXISTS rate_windows_by_expiry ON rate_windows (expires_at_ms);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    lease_until_ms INTEGER,
    expires_at_ms INTEGER NOT NULL,
    response TEXT,
    started_at_ms INTEGER
);
CREATE TABLE IF NOT EXISTS verifications (
    id TEXT PRIMARY KEY,
    caller TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    doc TEXT NOT NULL
);
";

/// Brings a database made before a column was added up to [`SCHEMA`] (`CREATE TABLE IF NOT
/// EXISTS` leaves an existing table as it was).
pub(super) fn migrate(c: &rusqlite::Connection) -> rusqlite::Result<()> {
    let has_started: bool = c
        .prepare(
            "SELECT 1 FROM pragma_table_info('idempotency_keys') WHERE name = 'started_at_ms'",
        )?
        .exists([])?;
    if !has_started {
        c.execute_batch("ALTER TABLE idempotency_keys ADD COLUMN started_at_ms INTEGER")?;
    }
    Ok(())
}

#[async_trait]
impl RateLimiter for SqliteStore {
    async fn acquire(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Acquired, StoreError> {
        let key = key.to_owned();
        let start = window_start(now_ms, window_ms);
        let end = start + window_ms.max(1);
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            tx.execute(
                "DELETE FROM rate_windows WHERE expires_at_ms <= ?1",
                params![now_ms],
            )
            .map_err(backend)?;
            let n = tx
                .execute(
                    "INSERT INTO rate_windows (key, window_start_ms, used, expires_at_ms)
                     SELECT ?1, ?2, 1, ?3 WHERE ?4 > 0
                     ON CONFLICT (key, window_start_ms) DO UPDATE SET used = used + 1
                     WHERE rate_windows.used < ?4",
                    params![key, start, end, limit],
                )
                .map_err(backend)?;
            let used: Option<u32> = tx
                .query_row(
                    "SELECT used FROM rate_windows WHERE key = ?1 AND window_start_ms = ?2",
                    params![key, start],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(if n == 1 {
                Acquired::Allowed {
                    used: used.unwrap_or(1),
                }
            } else {
                Acquired::Limited {
                    retry_after_ms: (end - now_ms).max(1),
                }
            })
        })
        .await
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn begin(
        &self,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
        lease_until_ms: i64,
        expires_at_ms: i64,
    ) -> Result<Begun, StoreError> {
        let (key, fingerprint) = (key.to_owned(), fingerprint.to_owned());
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let stored: Option<(String, i64, Option<i64>, Option<String>, Option<i64>)> = tx
                .query_row(
                    "SELECT fingerprint, expires_at_ms, lease_until_ms, response, started_at_ms
                     FROM idempotency_keys WHERE key = ?1",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .map_err(backend)?;
            let begun = match stored {
                // Live and completed: replayed, or another payload.
                Some((fp, exp, _, Some(r), _)) if exp > now_ms => {
                    if fp == fingerprint {
                        Begun::Completed(serde_json::from_str(&r).map_err(corrupt)?)
                    } else {
                        Begun::Mismatch
                    }
                }
                // Live and in progress.
                Some((fp, exp, Some(lease), None, _)) if exp > now_ms && lease > now_ms => {
                    if fp == fingerprint {
                        Begun::InProgress
                    } else {
                        Begun::Mismatch
                    }
                }
                // In progress past its lease (the first request died), same payload: taken
                // over, and this use of the key goes on from when it began.
                Some((fp, exp, _, None, since)) if exp > now_ms && fp == fingerprint => {
                    let since_ms = since.unwrap_or(now_ms);
                    tx.execute(
                        "UPDATE idempotency_keys SET lease_until_ms = ?2, expires_at_ms = ?3,
                         started_at_ms = ?4 WHERE key = ?1",
                        params![key, lease_until_ms, expires_at_ms, since_ms],
                    )
                    .map_err(backend)?;
                    Begun::Started { since_ms }
                }
                // None, expired, or dead with another payload: a new use of the key.
                _ => {
                    tx.execute(
                        "INSERT INTO idempotency_keys
                         (key, fingerprint, lease_until_ms, expires_at_ms, response, started_at_ms)
                         VALUES (?1, ?2, ?3, ?4, NULL, ?5)
                         ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint,
                         lease_until_ms = excluded.lease_until_ms,
                         expires_at_ms = excluded.expires_at_ms, response = NULL,
                         started_at_ms = excluded.started_at_ms",
                        params![key, fingerprint, lease_until_ms, expires_at_ms, now_ms],
                    )
                    .map_err(backend)?;
                    Begun::Started { since_ms: now_ms }
                }
            };
            tx.commit().map_err(backend)?;
            Ok(begun)
        })
        .await
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let (key, fingerprint) = (key.to_owned(), fingerprint.to_owned());
        let doc = serde_json::to_string(response).map_err(corrupt)?;
        self.with(move |c| {
            c.execute(
                "UPDATE idempotency_keys SET response = ?3, lease_until_ms = NULL
                 WHERE key = ?1 AND fingerprint = ?2 AND response IS NULL",
                params![key, fingerprint, doc],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn release(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        let (key, fingerprint) = (key.to_owned(), fingerprint.to_owned());
        self.with(move |c| {
            // The lease ends; the start stays (a retry of this payload goes on with this use).
            c.execute(
                "UPDATE idempotency_keys SET lease_until_ms = 0
                 WHERE key = ?1 AND fingerprint = ?2 AND response IS NULL",
                params![key, fingerprint],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
}

fn read_verification(c: &rusqlite::Connection, id: &str) -> Result<Option<String>, StoreError> {
    c.query_row(
        "SELECT doc FROM verifications WHERE id = ?1",
        params![id],
        |r| r.get(0),
    )
    .optional()
    .map_err(backend)
}

#[async_trait]
impl VerificationStore for SqliteStore {
    async fn insert_verification(&self, v: &Verification) -> Result<(), StoreError> {
        let doc = serde_json::to_string(v).map_err(corrupt)?;
        let (id, caller, created) = (v.id.to_string(), v.caller.clone(), v.created_at_ms);
        self.with(move |c| {
            let n = c
                .execute(
                    "INSERT INTO verifications (id, caller, created_at_ms, doc) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (id) DO NOTHING",
                    params![id, caller, created, doc],
                )
                .map_err(backend)?;
            if n == 1 { Ok(()) } else { Err(StoreError::Conflict) }
        })
        .await
    }

    async fn get_verification(
        &self,
        id: &VerificationId,
    ) -> Result<Option<Verification>, StoreError> {
        let id = id.to_string();
        self.with(move |c| {
            read_verification(c, &id)?
                .map(|d| serde_json::from_str(&d).map_err(corrupt))
                .transpose()
        })
        .await
    }

    async fn update_verification(
        &self,
        id: &VerificationId,
        decide: &DecideVerification<'_>,
    ) -> Result<VerificationApplied, StoreError> {
        loop {
            let key = id.to_string();
            let Some(old_doc) = self.with(move |c| read_verification(c, &key)).await? else {
                return Ok(VerificationApplied::NotFound);
            };
            let current: Verification = serde_json::from_str(&old_doc).map_err(corrupt)?;
            let Some(mut next) = decide(&current) else {
                return Ok(VerificationApplied::Ignored(current));
            };
            next.id = current.id.clone();
            next.caller = current.caller.clone();
            next.created_at_ms = current.created_at_ms;
            let new_doc = serde_json::to_string(&next).map_err(corrupt)?;
            let key = id.to_string();
            let written = self
                .with(move |c| {
                    c.execute(
                        "UPDATE verifications SET doc = ?2 WHERE id = ?1 AND doc = ?3",
                        params![key, new_doc, old_doc],
                    )
                    .map_err(backend)
                })
                .await?;
            if written == 1 {
                return Ok(VerificationApplied::Applied(next));
            }
        }
    }
}

#[async_trait]
impl MessageQueries for SqliteStore {
    async fn list_messages_by_caller(&self, q: &MessageQuery) -> Result<MessagePage, StoreError> {
        let q = q.clone();
        let limit = q.limit.clamp(1, 1000);
        self.with(move |c| {
            let (after_ms, after_id) = q.after.as_ref().map_or((i64::MAX, String::new()), |a| {
                (a.created_at_ms, a.id.to_string())
            });
            let mut st = c
                .prepare_cached(
                    "SELECT doc FROM messages INDEXED BY messages_by_caller
                     WHERE caller = ?1 AND created_at_ms >= ?2 AND created_at_ms < ?3
                     AND (?4 IS NULL OR status = ?4)
                     AND (?5 = 0 OR created_at_ms < ?6 OR (created_at_ms = ?6 AND id < ?7))
                     ORDER BY created_at_ms DESC, id DESC LIMIT ?8",
                )
                .map_err(backend)?;
            let rows = st
                .query_map(
                    params![
                        q.caller,
                        q.from_ms,
                        q.to_ms,
                        q.status.map(|s| s.as_str()),
                        i64::from(q.after.is_some()),
                        after_ms,
                        after_id,
                        limit + 1
                    ],
                    |r| r.get::<_, String>(0),
                )
                .map_err(backend)?;
            let mut messages: Vec<crate::domain::Message> = rows
                .map(|r| serde_json::from_str(&r.map_err(backend)?).map_err(corrupt))
                .collect::<Result<_, _>>()?;
            let next = if messages.len() > limit as usize {
                messages.truncate(limit as usize);
                messages.last().map(|m| PageCursor {
                    created_at_ms: m.attempts.created_at_ms,
                    id: m.id.clone(),
                })
            } else {
                None
            };
            Ok(MessagePage { messages, next })
        })
        .await
    }
}

impl SqliteStore {
    /// How many verifications are stored (tests and tools).
    pub async fn count_verifications(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            c.query_row("SELECT COUNT(*) FROM verifications", [], |r| r.get(0))
                .map_err(backend)
        })
        .await
    }

    /// Every text and blob value of every table, for tests that search the raw database for
    /// personal data or secrets (one-time codes).
    pub async fn dump_values(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.with(|c| {
            use rusqlite::types::ValueRef;
            let tables: Vec<String> = c
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
                .map_err(backend)?
                .query_map([], |r| r.get(0))
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            let mut out = Vec::new();
            for table in tables {
                let mut st = c
                    .prepare(&format!("SELECT * FROM \"{table}\""))
                    .map_err(backend)?;
                let columns = st.column_count();
                let mut rows = st.query([]).map_err(backend)?;
                while let Some(row) = rows.next().map_err(backend)? {
                    for i in 0..columns {
                        match row.get_ref(i).map_err(backend)? {
                            ValueRef::Text(t) | ValueRef::Blob(t) => out.push(t.to_vec()),
                            ValueRef::Integer(v) => out.push(v.to_string().into_bytes()),
                            _ => {}
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}

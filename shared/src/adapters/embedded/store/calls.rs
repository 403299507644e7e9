//! Calls in the SQLite store: a `calls` table beside `messages`, a JSON document plus the
//! columns its conditions and indexes need, changed by the same optimistic compare-and-set on
//! the document as messages.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, backend, corrupt};
use crate::crypto::LookupToken;
use crate::domain::{Call, CallId, CallStatus};
use crate::ports::{
    CallApplied, CallStore, DecideCall, InDoubt, Order, Page, StoreError, SweepCursor,
};

/// The calls table, created with the rest of the schema.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    caller TEXT NOT NULL,
    status TEXT NOT NULL,
    status_rank INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    to_token TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_by_status_id ON calls (status, created_at_ms, id);
CREATE INDEX IF NOT EXISTS calls_by_recipient ON calls (to_token, created_at_ms);
";

#[async_trait]
impl CallStore for SqliteStore {
    async fn insert_call(&self, call: &Call) -> Result<(), StoreError> {
        let c = call.clone();
        let doc = serde_json::to_string(&c).map_err(corrupt)?;
        let doubt = super::doubt_columns(&c);
        self.with(move |conn| {
            let n = conn
                .execute(
                    "INSERT INTO calls (id, caller, status, status_rank, attempt, to_token, created_at_ms, doc,
                         doubt_token, doubt_since_ms, doubt_until_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING",
                    params![
                        c.id.as_str(),
                        c.caller,
                        c.status.as_str(),
                        c.status.rank(),
                        c.attempt,
                        c.to_token.0,
                        c.created_at_ms,
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

    async fn get_call(&self, id: &CallId) -> Result<Option<Call>, StoreError> {
        let id = id.to_string();
        let doc = self.with(move |c| read_doc(c, &id)).await?;
        doc.map(|d| serde_json::from_str(&d).map_err(corrupt))
            .transpose()
    }

    async fn update_call(
        &self,
        id: &CallId,
        decide: &DecideCall<'_>,
    ) -> Result<CallApplied, StoreError> {
        self.update_doc("calls", id, decide).await
    }

    async fn list_calls_by_status(
        &self,
        status: CallStatus,
        created_before_ms: i64,
        limit: u32,
        order: Order,
        after: Option<&SweepCursor>,
    ) -> Result<Page<Call>, StoreError> {
        self.docs_by_status(
            "calls",
            status.as_str(),
            created_before_ms,
            limit,
            order,
            after,
        )
        .await
    }

    async fn calls_in_doubt(
        &self,
        token: &LookupToken,
        until_from_ms: i64,
        limit: u32,
    ) -> Result<Vec<InDoubt>, StoreError> {
        self.docs_in_doubt("calls", token, until_from_ms, limit)
            .await
    }
}

fn read_doc(c: &rusqlite::Connection, id: &str) -> Result<Option<String>, StoreError> {
    c.query_row("SELECT doc FROM calls WHERE id = ?1", params![id], |r| {
        r.get(0)
    })
    .optional()
    .map_err(backend)
}

impl SqliteStore {
    /// How many calls are stored (inspection and tests).
    pub async fn count_calls(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            c.query_row("SELECT COUNT(*) FROM calls", [], |r| r.get(0))
                .map_err(backend)
        })
        .await
    }
}

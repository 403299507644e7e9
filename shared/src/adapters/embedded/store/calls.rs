//! Calls in the SQLite store: a `calls` table beside `messages`, a JSON document plus the
//! columns its conditions and indexes need, changed by the same optimistic compare-and-set on
//! the document as messages.

use super::{SqliteStore, backend};
use crate::domain::Call;
use crate::ports::{CallStore, StoreError};

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

impl super::SqliteKind for Call {
    const TABLE: &'static str = "calls";
}

impl CallStore for SqliteStore {}

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

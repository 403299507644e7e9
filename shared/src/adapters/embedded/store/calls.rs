//! Calls in the SQLite store: a `calls` table beside `messages`, made alike
//! ([`super::records_table`]), and changed by the same optimistic compare-and-set on the
//! document as messages.

use super::{SqliteStore, backend};
use crate::domain::Call;
use crate::ports::{CallStore, StoreError};

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

//! Twilio SID ownership in the SQLite store: a `twilio_sids` table keyed by SID, claimed by an
//! `INSERT … ON CONFLICT DO NOTHING` and read back in the same immediate transaction.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, backend};
use crate::ports::{SidClaim, SidOwner, SidOwners, StoreError};

/// The SID table, created with the rest of the schema.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS twilio_sids (
    sid TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at_ms INTEGER NOT NULL
);
";

fn read_owner(c: &Connection, sid: &str) -> Result<Option<SidOwner>, StoreError> {
    c.query_row(
        "SELECT owner, attempt FROM twilio_sids WHERE sid = ?1",
        params![sid],
        |r| {
            Ok(SidOwner {
                record_id: r.get(0)?,
                attempt: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(backend)
}

#[async_trait]
impl SidOwners for SqliteStore {
    async fn own_twilio_sid(
        &self,
        sid: &str,
        owner: &SidOwner,
        at_ms: i64,
    ) -> Result<SidClaim, StoreError> {
        let (sid, owner) = (sid.to_owned(), owner.clone());
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            tx.execute(
                "INSERT INTO twilio_sids (sid, owner, attempt, at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (sid) DO NOTHING",
                params![sid, owner.record_id, owner.attempt, at_ms],
            )
            .map_err(backend)?;
            let stored = read_owner(&tx, &sid)?
                .ok_or_else(|| StoreError::Corrupt("SID ownership row vanished".into()))?;
            tx.commit().map_err(backend)?;
            Ok(if stored == owner {
                SidClaim::Owned
            } else {
                SidClaim::OwnedByOther(stored)
            })
        })
        .await
    }

    async fn twilio_sid_owner(&self, sid: &str) -> Result<Option<SidOwner>, StoreError> {
        let sid = sid.to_owned();
        self.with(move |c| read_owner(c, &sid)).await
    }
}

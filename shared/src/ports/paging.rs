//! Pages of the records of one status ([`super::Records::records_by_status`]): which end they
//! are read from, the keyset cursor that continues a walk, and the page itself.

/// Which end of a status's records a page is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Oldest first: by `created_at_ms`, then by id (the walk through a backlog).
    OldestFirst,
    /// Newest first: the reverse of [`Order::OldestFirst`] (the records that just went overdue).
    NewestFirst,
}

/// Where a page of records of one status ended: the keyset `(created_at_ms, id)` of its last
/// record. Unique even when thousands of records share a millisecond (a batch makes them so),
/// and valid after that record left the status or was deleted: the next page starts strictly
/// past it in the page's order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SweepCursor {
    /// The last record's creation time, Unix ms.
    pub created_at_ms: i64,
    /// The last record's id.
    pub id: String,
}

impl SweepCursor {
    /// The cursor just past `r`.
    pub fn of<R: crate::domain::Attempted>(r: &R) -> Self {
        Self {
            created_at_ms: r.attempts().created_at_ms,
            id: r.record_id().to_string(),
        }
    }
}

/// One page of records of one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<R> {
    /// The records, in the order asked for.
    pub records: Vec<R>,
    /// Where the next page starts: `Some` (the cursor of the last record here) when more records
    /// matched past this page when it was read, `None` when this page holds the last of them.
    pub next: Option<SweepCursor>,
}

impl<R> Page<R> {
    /// A page of `records` read with one more than `limit` asked for: the extra record, if
    /// any, is dropped and says that a next page exists.
    pub fn from_one_extra(
        mut records: Vec<R>,
        limit: u32,
        cursor: impl Fn(&R) -> SweepCursor,
    ) -> Self {
        let limit = limit as usize;
        if records.len() > limit {
            records.truncate(limit);
            let next = records.last().map(&cursor);
            Self { records, next }
        } else {
            Self {
                records,
                next: None,
            }
        }
    }
}

//! What the sweeper ([`crate::engine::sweep`]) reads of one status each time it runs: the newest
//! overdue records, so that a backlog never delays a recent one, and the next page of a walk
//! through the whole backlog, oldest first, from a cursor kept in memory between sweeps.
//!
//! The guarantee, for a `limit` of `2h` (the walk's share `h = limit / 2`, the newest's the
//! rest): every sweep looks at the newest `limit - h` records of each status, and a warm process
//! looks at every record that stays in a status within `ceil(backlog / h)` sweeps (the walk
//! wraps to the oldest when it reaches the end). A cold start (a new Lambda instance) begins the
//! walk from the oldest again: a process that never lives through `ceil(backlog / h)` sweeps
//! keeps revisiting the oldest part, but still sees every recent record.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::domain::{Attempted, RecordStatus};
use crate::ports::{Order, Records, StoreError, SweepCursor};

/// Where each channel's walk through each status stands: `(channel, status)` to the cursor the
/// next page starts past (absent: from the oldest). In memory, per process.
#[derive(Debug, Default)]
pub struct SweepCursors(Mutex<HashMap<(&'static str, &'static str), SweepCursor>>);

impl SweepCursors {
    /// Where the walk of `status` of `channel` stands (`None`: at the oldest).
    pub fn get(&self, channel: &'static str, status: &'static str) -> Option<SweepCursor> {
        self.0
            .lock()
            .expect("sweep cursors lock")
            .get(&(channel, status))
            .cloned()
    }

    /// Moves the walk of `status` of `channel` to `at` (`None`: back to the oldest).
    pub fn set(&self, channel: &'static str, status: &'static str, at: Option<SweepCursor>) {
        let mut cursors = self.0.lock().expect("sweep cursors lock");
        match at {
            Some(at) => cursors.insert((channel, status), at),
            None => cursors.remove(&(channel, status)),
        };
    }
}

/// How a sweep's `limit` of one status is shared: `(newest, walk)`, the walk's share half of it
/// rounded down, at least one of each.
pub fn shares(limit: u32) -> (u32, u32) {
    let walk = (limit / 2).max(1);
    (limit.saturating_sub(walk).max(1), walk)
}

/// The records of `status` created before `created_before_ms` one sweep of `channel` looks at:
/// the newest ones (newest first), then the next page of the walk (oldest first) not among them,
/// and moves the walk on. A walk that finds nothing past its cursor (the records past it left
/// the status) starts again from the oldest at once.
pub async fn records_to_sweep<R, S>(
    store: &S,
    cursors: &SweepCursors,
    channel: &'static str,
    status: R::Status,
    created_before_ms: i64,
    limit: u32,
) -> Result<Vec<R>, StoreError>
where
    R: Attempted,
    S: Records<R> + ?Sized,
{
    let (newest, walk) = shares(limit);
    let at = cursors.get(channel, status.as_str());
    // Two independent reads: at the same time.
    let (newest, mut page) = tokio::try_join!(
        store.records_by_status(status, created_before_ms, newest, Order::NewestFirst, None),
        store.records_by_status(
            status,
            created_before_ms,
            walk,
            Order::OldestFirst,
            at.as_ref(),
        ),
    )?;
    let mut records = newest.records;
    if page.records.is_empty() && at.is_some() {
        page = store
            .records_by_status(status, created_before_ms, walk, Order::OldestFirst, None)
            .await?;
    }
    cursors.set(channel, status.as_str(), page.next);
    let seen: std::collections::HashSet<String> =
        records.iter().map(|r| r.record_id().to_string()).collect();
    records.extend(
        page.records
            .into_iter()
            .filter(|r| !seen.contains(&r.record_id().to_string())),
    );
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_shared_between_the_newest_and_the_walk() {
        assert_eq!(shares(10), (5, 5));
        assert_eq!(shares(500), (250, 250));
        assert_eq!(shares(1001), (501, 500));
        assert_eq!(shares(1), (1, 1));
        assert_eq!(shares(0), (1, 1));
    }

    #[test]
    fn cursors_are_kept_per_channel_and_status() {
        let c = SweepCursors::default();
        let at = SweepCursor {
            created_at_ms: 5,
            id: "msg_a".into(),
        };
        c.set("sms", "sent", Some(at.clone()));
        assert_eq!(c.get("sms", "sent"), Some(at));
        assert_eq!(c.get("voice", "sent"), None);
        assert_eq!(c.get("sms", "queued"), None);
        c.set("sms", "sent", None);
        assert_eq!(c.get("sms", "sent"), None);
    }
}

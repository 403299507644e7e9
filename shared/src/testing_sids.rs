//! The conformance suite of [`SidOwners`] (feature `test-util`): a Twilio SID belongs to at most
//! one record (at one of its attempts), claimed atomically, idempotently for its owner, on every
//! adapter (SQLite, and DynamoDB through moto).

use std::sync::Arc;

use crate::ports::{SidClaim, SidOwner, SidOwners, StoreError};
use crate::testing::{Alternate, race, unique};

/// A fresh, well-formed message SID (`SM` + 32 hex digits) for one check.
fn fresh_sid() -> String {
    format!("SM{:032x}", rand::random::<u128>())
}

fn owner(prefix: &str, attempt: u32) -> SidOwner {
    SidOwner {
        record_id: unique(prefix),
        attempt,
    }
}

/// Runs every check of this suite.
pub async fn run_all(owners: Arc<dyn SidOwners>) {
    sid_owner_contract(owners.clone()).await;
    sid_owner_races(owners).await;
}

/// [`SidOwners`]: an unknown SID has no owner; the first claim owns it; the same owner's claim
/// again is still owned (idempotent); another record's claim, or another attempt's of the same
/// record, is refused, names the owner and changes nothing; SIDs are independent of each other.
pub async fn sid_owner_contract(owners: Arc<dyn SidOwners>) {
    let sid = fresh_sid();
    let (a, b) = (owner("msg_owner_a", 1), owner("call_owner_b", 3));
    assert_eq!(owners.twilio_sid_owner(&sid).await.expect("owner"), None);
    assert_eq!(
        owners.own_twilio_sid(&sid, &a, 1_000).await.expect("own"),
        SidClaim::Owned
    );
    assert_eq!(
        owners.twilio_sid_owner(&sid).await.expect("owner"),
        Some(a.clone())
    );
    assert_eq!(
        owners.own_twilio_sid(&sid, &a, 2_000).await.expect("own"),
        SidClaim::Owned,
        "claiming again for the same owner is idempotent"
    );
    assert_eq!(
        owners.own_twilio_sid(&sid, &b, 3_000).await.expect("own"),
        SidClaim::OwnedByOther(a.clone()),
        "another record cannot take an owned SID"
    );
    let a_later = SidOwner {
        record_id: a.record_id.clone(),
        attempt: a.attempt + 1,
    };
    assert_eq!(
        owners
            .own_twilio_sid(&sid, &a_later, 3_500)
            .await
            .expect("own"),
        SidClaim::OwnedByOther(a.clone()),
        "nor can a later attempt of the same record"
    );
    assert_eq!(
        owners.twilio_sid_owner(&sid).await.expect("owner"),
        Some(a.clone()),
        "a refused claim changes nothing"
    );
    let other = fresh_sid();
    assert_ne!(other, sid);
    assert_eq!(
        owners.own_twilio_sid(&other, &b, 4_000).await.expect("own"),
        SidClaim::Owned
    );
    assert_eq!(
        owners.twilio_sid_owner(&other).await.expect("owner"),
        Some(b)
    );
    assert_eq!(owners.twilio_sid_owner(&sid).await.expect("owner"), Some(a));
}

/// [`SidOwners`] under concurrency: of 2 and of 8 records claiming one SID at once, exactly one
/// owns it and every other is told that one; the same owner claiming concurrently always owns.
pub async fn sid_owner_races(owners: Arc<dyn SidOwners>) {
    for n in [2, 8, 8] {
        let sid = fresh_sid();
        let claimants: Vec<SidOwner> = (0..n).map(|i| owner(&format!("msg_race{i}"), 1)).collect();
        let results: Vec<Result<SidClaim, StoreError>> = race(n, |i| {
            let owners = owners.clone();
            let (sid, me) = (sid.clone(), claimants[i].clone());
            async move { owners.own_twilio_sid(&sid, &me, 1_000).await }
        })
        .await;
        let results: Vec<SidClaim> = results
            .into_iter()
            .map(|r| r.expect("own_twilio_sid"))
            .collect();
        let winners: Vec<&SidOwner> = results
            .iter()
            .zip(&claimants)
            .filter(|(r, _)| **r == SidClaim::Owned)
            .map(|(_, c)| c)
            .collect();
        assert_eq!(winners.len(), 1, "{n} racing claims: {results:?}");
        let winner = winners[0].clone();
        for r in &results {
            assert!(
                *r == SidClaim::Owned || *r == SidClaim::OwnedByOther(winner.clone()),
                "a refused claim names the winner: {r:?}"
            );
        }
        assert_eq!(
            owners.twilio_sid_owner(&sid).await.expect("owner"),
            Some(winner)
        );
    }
    let sid = fresh_sid();
    let me = owner("msg_same", 2);
    let results = race(8, |_| {
        let owners = owners.clone();
        let (sid, me) = (sid.clone(), me.clone());
        async move { owners.own_twilio_sid(&sid, &me, 1_000).await }
    })
    .await;
    assert!(
        results.iter().all(|r| matches!(r, Ok(SidClaim::Owned))),
        "one owner claiming concurrently always owns: {results:?}"
    );
}

#[async_trait::async_trait]
impl<S: SidOwners + 'static> SidOwners for Alternate<S> {
    async fn own_twilio_sid(
        &self,
        sid: &str,
        owner: &SidOwner,
        at_ms: i64,
    ) -> Result<SidClaim, StoreError> {
        self.pick().own_twilio_sid(sid, owner, at_ms).await
    }

    async fn twilio_sid_owner(&self, sid: &str) -> Result<Option<SidOwner>, StoreError> {
        self.pick().twilio_sid_owner(sid).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fresh_sids_are_message_sids() {
        let sid = super::fresh_sid();
        assert!(crate::twilio::is_sid(&sid, "SM"), "{sid}");
    }
}

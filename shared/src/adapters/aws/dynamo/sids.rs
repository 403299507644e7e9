//! Twilio SID ownership in DynamoDB: one item of the state table per SID, claimed by one
//! conditional write.
//!
//! State items (partition key `pk`, TTL attribute `expires_at` in epoch seconds):
//! - `sid#<Twilio SID>`: `owner` (S, the message or call id), `attempt` (N, the owner's
//!   attempt), `at_ms` (N), `expires_at_ms` (N). Put only when no item exists or the item
//!   already names this owner and attempt (idempotent), so of concurrent claims of one SID
//!   exactly one owner wins; it expires with the records (90 days).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{
    DynamoStore, Item, MAX_RETRIES, StoreFailure, get_n, get_s, is_conditional, n, s, transient,
    ttl_seconds,
};
use crate::domain::event::EVENT_RETENTION_MS;
use crate::ports::{SidClaim, SidOwner, SidOwners, StoreError};

fn sid_pk(sid: &str) -> AttributeValue {
    s(format!("sid#{sid}"))
}

fn owner_of(item: &Item) -> Result<SidOwner, StoreError> {
    Ok(SidOwner {
        record_id: get_s(item, "owner")?.to_owned(),
        attempt: u32::try_from(get_n(item, "attempt")?)
            .map_err(|_| StoreError::Corrupt("attempt out of range".into()))?,
    })
}

impl DynamoStore {
    async fn read_sid_owner(&self, sid: &str) -> Result<Option<SidOwner>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.state)
            .key("pk", sid_pk(sid))
            .consistent_read(true)
            .send()
            .await
            .map_err(transient)?;
        out.item.as_ref().map(owner_of).transpose()
    }
}

#[async_trait]
impl SidOwners for DynamoStore {
    async fn own_twilio_sid(
        &self,
        sid: &str,
        owner: &SidOwner,
        at_ms: i64,
    ) -> Result<SidClaim, StoreError> {
        let expires_at_ms = at_ms.saturating_add(EVENT_RETENTION_MS);
        for _ in 0..MAX_RETRIES {
            let res = self
                .client
                .put_item()
                .table_name(&self.tables.state)
                .item("pk", sid_pk(sid))
                .item("owner", s(&owner.record_id))
                .item("attempt", n(owner.attempt))
                .item("at_ms", n(at_ms))
                .item("expires_at_ms", n(expires_at_ms))
                .item("expires_at", n(ttl_seconds(expires_at_ms)))
                .condition_expression(
                    "attribute_not_exists(#pk) OR (#owner = :owner AND #attempt = :attempt)",
                )
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_names("#attempt", "attempt")
                .expression_attribute_values(":owner", s(&owner.record_id))
                .expression_attribute_values(":attempt", n(owner.attempt))
                .send()
                .await;
            match res {
                Ok(_) => return Ok(SidClaim::Owned),
                Err(e) if is_conditional(&e) => match self.read_sid_owner(sid).await? {
                    Some(other) if other == *owner => return Ok(SidClaim::Owned),
                    Some(other) => return Ok(SidClaim::OwnedByOther(other)),
                    // Expired and deleted between our write and our read: try again.
                    None => {}
                },
                Err(e) => return Err(transient(e)),
            }
        }
        Err(StoreError::transient(StoreFailure(
            "SID ownership item keeps vanishing",
        )))
    }

    async fn twilio_sid_owner(&self, sid: &str) -> Result<Option<SidOwner>, StoreError> {
        self.read_sid_owner(sid).await
    }
}

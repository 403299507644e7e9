//! Calls in DynamoDB: items of the messages table, told apart by their key. A call's `id` is
//! `call_…` (a message's is `msg_…`), so the two never collide, and a call item carries no
//! `status` and no `caller` attribute: the messages table's `by_status` and `by_caller` indexes
//! are sparse and never see calls (the SMS sweeper and audit queries stay messages only).
//!
//! Call items: `id` (S, `call_…`), `record_kind` (S, `call`), `call_status` (S), `status_rank`
//! (N), `attempt` (N), `to_token` (S), `created_at_ms` (N), `version` (N, bumped by every
//! change), `doc` (S, the call as JSON, number and text sealed). Every change is an optimistic
//! read-modify-write conditioned on `version`, exactly as for messages.

use async_trait::async_trait;

use super::{
    DynamoStore, MAX_RETRIES, StoreFailure, doc, get_n, is_conditional, n, s, to_doc, transient,
};
use crate::domain::{Call, CallId};
use crate::ports::{CallApplied, CallStore, DecideCall, StoreError};

/// The `record_kind` of call items in the messages table.
pub const CALL_RECORD_KIND: &str = "call";

impl DynamoStore {
    async fn read_call(&self, id: &CallId) -> Result<Option<super::Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.messages)
            .key("id", s(id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(transient)?;
        Ok(out.item)
    }
}

#[async_trait]
impl CallStore for DynamoStore {
    async fn insert_call(&self, call: &Call) -> Result<(), StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.tables.messages)
            .item("id", s(call.id.as_str()))
            .item("record_kind", s(CALL_RECORD_KIND))
            .item("call_status", s(call.status.as_str()))
            .item("status_rank", n(call.status.rank()))
            .item("attempt", n(call.attempt))
            .item("to_token", s(&call.to_token.0))
            .item("created_at_ms", n(call.created_at_ms))
            .item("version", n(0))
            .item("doc", s(to_doc(call)?))
            .condition_expression("attribute_not_exists(#id)")
            .expression_attribute_names("#id", "id")
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Err(StoreError::Conflict),
            Err(e) => Err(transient(e)),
        }
    }

    async fn get_call(&self, id: &CallId) -> Result<Option<Call>, StoreError> {
        self.read_call(id).await?.map(|item| doc(&item)).transpose()
    }

    async fn update_call(
        &self,
        id: &CallId,
        decide: &DecideCall<'_>,
    ) -> Result<CallApplied, StoreError> {
        for _ in 0..MAX_RETRIES {
            let Some(item) = self.read_call(id).await? else {
                return Ok(CallApplied::NotFound);
            };
            let current: Call = doc(&item)?;
            let Some(mut call) = decide(&current) else {
                return Ok(CallApplied::Ignored(current));
            };
            call.id = current.id.clone();
            call.created_at_ms = current.created_at_ms;
            let version = get_n(&item, "version")?;
            let res = self
                .client
                .update_item()
                .table_name(&self.tables.messages)
                .key("id", s(id.as_str()))
                .update_expression(
                    "SET #status = :status, #rank = :rank, #attempt = :attempt, #doc = :doc, \
                     #version = :next",
                )
                .condition_expression("attribute_exists(#id) AND #version = :read")
                .expression_attribute_names("#id", "id")
                .expression_attribute_names("#status", "call_status")
                .expression_attribute_names("#rank", "status_rank")
                .expression_attribute_names("#attempt", "attempt")
                .expression_attribute_names("#doc", "doc")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":status", s(call.status.as_str()))
                .expression_attribute_values(":rank", n(call.status.rank()))
                .expression_attribute_values(":attempt", n(call.attempt))
                .expression_attribute_values(":doc", s(to_doc(&call)?))
                .expression_attribute_values(":next", n(version + 1))
                .expression_attribute_values(":read", n(version))
                .send()
                .await;
            match res {
                Ok(_) => return Ok(CallApplied::Applied(call)),
                Err(e) if is_conditional(&e) => continue,
                Err(e) => return Err(transient(e)),
            }
        }
        Err(StoreError::transient(StoreFailure(
            "too much contention on one call",
        )))
    }
}

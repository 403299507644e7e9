//! Calls in DynamoDB: items of the messages table, told apart by their key. A call's `id` is
//! `call_…` (a message's is `msg_…`), so the two never collide. A call item's `status` is
//! `call:<status>`: the `by_status` index lists calls for the sweeper under statuses no message
//! has. It carries no `caller` attribute: the sparse `by_caller` index (the audit queries) never
//! sees calls.
//!
//! Call items: `id` (S, `call_…`), `record_kind` (S, `call`), `call_status` (S), `status` (S,
//! `call:<call_status>`), `status_rank`
//! (N), `attempt` (N), `to_token` (S), `created_at_ms` (N), `version` (N, bumped by every
//! change), `doc` (S, the call as JSON, number and text sealed). Every change is an optimistic
//! read-modify-write conditioned on `version`, exactly as for messages.

use async_trait::async_trait;

use super::{DynamoStore, doc, is_conditional, n, s, to_doc, transient};
use crate::crypto::LookupToken;
use crate::domain::{Call, CallId, CallStatus};
use crate::ports::{
    CallApplied, CallStore, DecideCall, InDoubt, Order, Page, StoreError, SweepCursor,
};

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
        let mut put = self.client.put_item();
        for (name, value) in super::doubt_attributes(call) {
            put = put.item(name, value);
        }
        let res = put
            .table_name(&self.tables.messages)
            .item("id", s(call.id.as_str()))
            .item("record_kind", s(CALL_RECORD_KIND))
            .item("call_status", s(call.status.as_str()))
            .item("status", s(swept_status(call.status)))
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
        self.update_doc(id, decide, |c: &Call| {
            vec![
                ("call_status", s(c.status.as_str())),
                ("status", s(swept_status(c.status))),
            ]
        })
        .await
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
            &swept_status(status),
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
        self.docs_in_doubt(token, until_from_ms, limit).await
    }
}

/// A call's `status` attribute: `call:<status>`, so the `by_status` index lists calls apart
/// from messages (whose statuses have no prefix).
fn swept_status(status: CallStatus) -> String {
    format!("call:{}", status.as_str())
}

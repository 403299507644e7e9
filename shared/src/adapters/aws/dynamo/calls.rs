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

use aws_sdk_dynamodb::types::AttributeValue;

use super::{DynamoKind, DynamoStore, s};
use crate::domain::{Call, CallStatus};
use crate::ports::CallStore;

/// The `record_kind` of call items in the messages table.
pub const CALL_RECORD_KIND: &str = "call";

/// Calls: `status` is `call:<status>`, so the `by_status` index lists calls apart from messages
/// (whose statuses have no prefix); their own status is `call_status`, and `record_kind` marks
/// them.
impl DynamoKind for Call {
    fn status_attribute(status: CallStatus) -> String {
        format!("call:{}", status.as_str())
    }
    fn status_attributes(&self) -> Vec<(&'static str, AttributeValue)> {
        vec![("call_status", s(self.status.as_str()))]
    }
    fn created_attributes(&self) -> Vec<(&'static str, AttributeValue)> {
        vec![("record_kind", s(CALL_RECORD_KIND))]
    }
}

impl CallStore for DynamoStore {}

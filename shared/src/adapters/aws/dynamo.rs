//! The DynamoDB store: messages, events and the keyring, every decision made atomically by a
//! condition expression.
//!
//! Tables (see [`create_tables`]):
//! - messages: partition key `id` (S); attributes `status` (S), `status_rank` (N), `attempt`
//!   (N), `caller` (S), `to_token` (S), `created_at_ms` (N), `version` (N, bumped by every
//!   status change), `doc` (S, the message as JSON, personal data sealed); GSIs `by_status`
//!   (`status`, `created_at_ms`) and `by_caller` (`caller`, `created_at_ms`).
//!   Voice calls are items of this table too, keyed `call_…` (messages are `msg_…`), with
//!   `record_kind = "call"`, `call_status`, a `status` of `call:<status>` (so `by_status`
//!   lists them for the sweeper apart from messages) and no `caller` (so `by_caller` never
//!   does); module `dynamo/calls.rs` has their attributes.
//! - events: partition key `key` (S); attributes `subject` (S), `at_ms` (N), `expires_at_ms`
//!   (N), `expires_at` (N, epoch seconds: the TTL attribute), `doc` (S); GSI `by_subject`
//!   (`subject`, `at_ms`).
//! - state: partition key `pk` (S); keyring items are `pk = "keyring#<name>"` with `wrapped` (B);
//!   opt-outs are `pk = "optout#<lookup token>"` with `opted_out` (BOOL) and `at_ms` (N); rate
//!   windows, idempotency keys and verifications are described in `dynamo/protect.rs`, Twilio
//!   SID ownership (`sid#<SID>`) in `dynamo/sids.rs`. Its TTL attribute is `expires_at`
//!   ([`STATE_TTL_ATTRIBUTE`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

use crate::adapters::Stored;
use crate::crypto::LookupToken;
use crate::domain::{Attempted, Event, Message, MessageStatus, RecordStatus, Subject};
use crate::ports::{
    Applied, Clock, Decide, EventStore, InDoubt, Keyring, MAX_UPDATE_ROUNDS, MessageStore,
    OptOutStore, Order, Page, Records, StoreError, SweepCursor,
};

mod calls;
mod protect;
mod sids;
pub use calls::CALL_RECORD_KIND;

/// GSI of the messages table by status and creation time.
pub const MESSAGES_BY_STATUS: &str = "by_status";
/// GSI of the messages table by caller and creation time.
pub const MESSAGES_BY_CALLER: &str = "by_caller";
/// Sparse GSI of the messages table of the records in doubt, by match token and the end of
/// their span in doubt ([`crate::ports::Records::records_in_doubt`]); it projects the span's
/// start.
pub const MESSAGES_IN_DOUBT: &str = "in_doubt";
/// GSI of the events table by subject and time.
pub const EVENTS_BY_SUBJECT: &str = "by_subject";
/// The TTL attribute of the events table (epoch seconds).
pub const EVENTS_TTL_ATTRIBUTE: &str = "expires_at";
/// The TTL attribute of the state table (epoch seconds): rate windows, idempotency keys,
/// verifications.
pub const STATE_TTL_ATTRIBUTE: &str = "expires_at";

/// The doubt index's attributes of `r` (its match token and span in doubt), none when it has
/// no span in doubt: the index is sparse.
pub(super) fn doubt_attributes<R: Attempted>(r: &R) -> Vec<(&'static str, AttributeValue)> {
    match (r.match_token(), r.attempts().in_doubt()) {
        (Some(t), Some((since, until))) => vec![
            ("doubt_token", s(&t.0)),
            ("doubt_since_ms", n(since)),
            ("doubt_until_ms", n(until)),
        ],
        _ => Vec::new(),
    }
}

/// How often a read-modify-write is retried when another writer got in between. Each retry
/// means another change was made, so this bounds only pathological contention.
const MAX_RETRIES: usize = 100;

/// The names of Herald's DynamoDB tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    /// `MESSAGES_TABLE`.
    pub messages: String,
    /// `EVENTS_TABLE`.
    pub events: String,
    /// `STATE_TABLE`: the keyring and opt-outs (later limits and idempotency keys).
    pub state: String,
}

/// Messages, events and the keyring in DynamoDB over one shared client.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
    clock: Arc<dyn Clock>,
    page_size: Option<i32>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

/// A store error that is not a DynamoDB error (contention, a vanished item).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct StoreFailure(&'static str);

/// Every SDK failure other than a failed condition: throttling, 5xx, network, but also a missing
/// table or a rejected request, which only an operator can fix. The source is kept.
fn transient<E>(err: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::transient(err)
}

fn is_conditional<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::Corrupt(format!(
            "attribute {name} is missing or not a string"
        ))),
    }
}

fn get_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("attribute {name} is not an integer"))),
        _ => Err(StoreError::Corrupt(format!(
            "attribute {name} is missing or not a number"
        ))),
    }
}

fn doc<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    // serde_json's message may quote the document; keep only its category and position.
    serde_json::from_str(get_s(item, "doc")?).map_err(|e| {
        StoreError::Corrupt(format!(
            "doc does not parse ({:?} at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

fn to_doc<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("cannot serialise: {e}")))
}

/// The TTL in epoch seconds, rounded up so DynamoDB never deletes an item before it expires.
fn ttl_seconds(expires_at_ms: i64) -> i64 {
    expires_at_ms.div_euclid(1000) + i64::from(expires_at_ms.rem_euclid(1000) != 0)
}

impl DynamoStore {
    /// A store over `client` and the named tables, reading time from `clock` (event expiry).
    pub fn new(client: Client, tables: TableNames, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            tables,
            clock,
            page_size: None,
        }
    }

    /// Queries read at most `n` items per page (tests use a small page to exercise paging).
    pub fn with_page_size(mut self, n: i32) -> Self {
        self.page_size = Some(n);
        self
    }

    /// The DynamoDB client (local tooling: table creation, scans).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table names.
    pub fn tables(&self) -> &TableNames {
        &self.tables
    }

    fn keyring_pk(name: &str) -> AttributeValue {
        s(format!("keyring#{name}"))
    }

    async fn read_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.state)
            .key("pk", Self::keyring_pk(name))
            .consistent_read(true)
            .send()
            .await
            .map_err(transient)?;
        match out.item {
            None => Ok(None),
            Some(item) => match item.get("wrapped") {
                Some(AttributeValue::B(b)) => Ok(Some(b.clone().into_inner())),
                _ => Err(StoreError::Corrupt(
                    "keyring item has no binary wrapped key".into(),
                )),
            },
        }
    }
}

/// What differs between the record kinds' items of the messages table (module docs).
pub(super) trait DynamoKind: Stored {
    /// The `status` attribute of a record with `status`: the `by_status` index's key, which
    /// keeps the kinds apart.
    fn status_attribute(status: Self::Status) -> String;
    /// The attributes besides `status` that follow the record's status: written by every
    /// change.
    fn status_attributes(&self) -> Vec<(&'static str, AttributeValue)>;
    /// The attributes written once, when the record is created.
    fn created_attributes(&self) -> Vec<(&'static str, AttributeValue)>;
}

/// Messages: `status` is the message's status; `caller` (the `by_caller` index) is theirs only.
impl DynamoKind for Message {
    fn status_attribute(status: MessageStatus) -> String {
        status.as_str().to_owned()
    }
    fn status_attributes(&self) -> Vec<(&'static str, AttributeValue)> {
        Vec::new()
    }
    fn created_attributes(&self) -> Vec<(&'static str, AttributeValue)> {
        vec![("caller", s(&self.caller))]
    }
}

impl DynamoStore {
    /// A consistent read of the item of the messages table keyed `id` (a record of any kind).
    async fn read_item(&self, id: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.messages)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(transient)?;
        Ok(out.item)
    }
}

/// Every record kind's items of the messages table: the attributes every kind has, and the
/// kind's own ([`DynamoKind`]).
#[async_trait]
impl<R: DynamoKind> Records<R> for DynamoStore {
    async fn insert_record(&self, record: &R) -> Result<(), StoreError> {
        let doc = to_doc(record)?;
        let (status, a) = (record.status(), record.attempts());
        let mut put = self.client.put_item();
        for (name, value) in doubt_attributes(record)
            .into_iter()
            .chain(record.created_attributes())
            .chain(record.status_attributes())
        {
            put = put.item(name, value);
        }
        let res = put
            .table_name(&self.tables.messages)
            .item("id", s(record.record_id().to_string()))
            .item("status", s(R::status_attribute(status)))
            .item("status_rank", n(status.rank()))
            .item("attempt", n(a.attempt))
            .item("to_token", s(&record.to().token.0))
            .item("created_at_ms", n(a.created_at_ms))
            .item("version", n(0))
            .item("doc", s(doc))
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

    async fn get_record(&self, id: &R::Id) -> Result<Option<R>, StoreError> {
        self.read_item(&id.to_string())
            .await?
            .map(|item| doc(&item))
            .transpose()
    }

    /// The one compare-and-set every record kind's change goes through: decide on a consistent
    /// read, write the new document (with its `status_rank`, `attempt` and the kind's own
    /// status attributes) only if the item's `version` is still the one read, and read and
    /// decide again otherwise, at most [`MAX_UPDATE_ROUNDS`] times.
    async fn update_record(
        &self,
        id: &R::Id,
        decide: &Decide<'_, R>,
    ) -> Result<Applied<R>, StoreError> {
        let key = id.to_string();
        for _ in 0..MAX_UPDATE_ROUNDS {
            let Some(item) = self.read_item(&key).await? else {
                return Ok(Applied::NotFound);
            };
            let current: R = doc(&item)?;
            let Some(mut next) = decide(&current) else {
                return Ok(Applied::Ignored(current));
            };
            next.keep_identity(&current);
            // Items written before `version` existed have none.
            let version = match item.get("version") {
                None => None,
                Some(_) => Some(get_n(&item, "version")?),
            };
            let mut set = vec![
                "#rank = :rank".to_owned(),
                "#attempt = :attempt".to_owned(),
                "#doc = :doc".to_owned(),
                "#version = :next".to_owned(),
            ];
            let mut update = self
                .client
                .update_item()
                .table_name(&self.tables.messages)
                .key("id", s(&key))
                .expression_attribute_names("#id", "id")
                .expression_attribute_names("#rank", "status_rank")
                .expression_attribute_names("#attempt", "attempt")
                .expression_attribute_names("#doc", "doc")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":rank", n(next.status().rank()))
                .expression_attribute_values(":attempt", n(next.attempts().attempt))
                .expression_attribute_values(":doc", s(to_doc(&next)?))
                .expression_attribute_values(":next", n(version.unwrap_or(0) + 1));
            // The kind's attributes that follow its status, then `status` (the `by_status` key).
            let mut indexed = next.status_attributes();
            indexed.push(("status", s(R::status_attribute(next.status()))));
            for (i, (name, value)) in indexed.into_iter().enumerate() {
                set.push(format!("#ix{i} = :ix{i}"));
                update = update
                    .expression_attribute_names(format!("#ix{i}"), name)
                    .expression_attribute_values(format!(":ix{i}"), value);
            }
            // The doubt index holds only records with a span in doubt.
            let doubt = doubt_attributes(&next);
            let expression = if doubt.is_empty() {
                update = update
                    .expression_attribute_names("#d0", "doubt_token")
                    .expression_attribute_names("#d1", "doubt_since_ms")
                    .expression_attribute_names("#d2", "doubt_until_ms");
                format!("SET {} REMOVE #d0, #d1, #d2", set.join(", "))
            } else {
                for (i, (name, value)) in doubt.into_iter().enumerate() {
                    set.push(format!("#d{i} = :d{i}"));
                    update = update
                        .expression_attribute_names(format!("#d{i}"), name)
                        .expression_attribute_values(format!(":d{i}"), value);
                }
                format!("SET {}", set.join(", "))
            };
            update = update.update_expression(expression);
            update = match version {
                Some(v) => update
                    .condition_expression("attribute_exists(#id) AND #version = :read")
                    .expression_attribute_values(":read", n(v)),
                None => update.condition_expression(
                    "attribute_exists(#id) AND attribute_not_exists(#version)",
                ),
            };
            match update.send().await {
                Ok(_) => return Ok(Applied::Applied(next)),
                Err(e) if is_conditional(&e) => continue,
                Err(e) => return Err(transient(e)),
            }
        }
        Err(StoreError::transient(StoreFailure(
            "too much contention on one record",
        )))
    }

    /// The `by_status` index under the kind's status attribute, in `order`
    /// (`ScanIndexForward`), strictly past `after`: the cursor is the index's keys plus the
    /// table's (`status`, `created_at_ms`, `id`), given as `ExclusiveStartKey`, a position that
    /// holds whether or not its item is still there. One more item is read than asked for, to
    /// know whether a next page exists.
    async fn records_by_status(
        &self,
        status: R::Status,
        created_before_ms: i64,
        limit: u32,
        order: Order,
        after: Option<&SweepCursor>,
    ) -> Result<Page<R>, StoreError> {
        let status = R::status_attribute(status);
        let status = status.as_str();
        let wanted = limit as usize + 1;
        let mut found: Vec<Item> = Vec::new();
        let mut start: Option<Item> = after.map(|c| {
            HashMap::from([
                ("status".to_owned(), s(status)),
                ("created_at_ms".to_owned(), n(c.created_at_ms)),
                ("id".to_owned(), s(&c.id)),
            ])
        });
        while found.len() < wanted {
            let out = self
                .client
                .query()
                .table_name(&self.tables.messages)
                .index_name(MESSAGES_BY_STATUS)
                .key_condition_expression("#status = :status AND #created < :before")
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#created", "created_at_ms")
                .expression_attribute_values(":status", s(status))
                .expression_attribute_values(":before", n(created_before_ms))
                .scan_index_forward(order == Order::OldestFirst)
                .limit(
                    i32::try_from(wanted - found.len())
                        .unwrap_or(i32::MAX)
                        .min(self.page_size.unwrap_or(i32::MAX)),
                )
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(transient)?;
            for item in out.items.unwrap_or_default() {
                if found.len() < wanted {
                    found.push(item);
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        let mut cursors = Vec::with_capacity(found.len());
        for item in &found {
            cursors.push(SweepCursor {
                created_at_ms: get_n(item, "created_at_ms")?,
                id: get_s(item, "id")?.to_owned(),
            });
        }
        let page =
            Page::from_one_extra(found.into_iter().zip(cursors).collect(), limit, |(_, c)| {
                c.clone()
            });
        Ok(Page {
            records: page
                .records
                .iter()
                .map(|(item, _)| doc(item))
                .collect::<Result<_, _>>()?,
            next: page.next,
        })
    }

    /// The sparse `in_doubt` index of the messages table (records of every kind).
    async fn records_in_doubt(
        &self,
        token: &LookupToken,
        until_from_ms: i64,
        limit: u32,
    ) -> Result<Vec<InDoubt>, StoreError> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        while found.len() < limit as usize {
            let out = self
                .client
                .query()
                .table_name(&self.tables.messages)
                .index_name(MESSAGES_IN_DOUBT)
                .key_condition_expression("#token = :token AND #until >= :from")
                .expression_attribute_names("#token", "doubt_token")
                .expression_attribute_names("#until", "doubt_until_ms")
                .expression_attribute_values(":token", s(&token.0))
                .expression_attribute_values(":from", n(until_from_ms))
                .scan_index_forward(true)
                .limit(
                    i32::try_from(limit)
                        .unwrap_or(i32::MAX)
                        .min(self.page_size.unwrap_or(i32::MAX)),
                )
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(transient)?;
            for item in out.items.unwrap_or_default() {
                if found.len() < limit as usize {
                    found.push(InDoubt {
                        record_id: get_s(&item, "id")?.to_owned(),
                        since_ms: get_n(&item, "doubt_since_ms")?,
                        until_ms: get_n(&item, "doubt_until_ms")?,
                    });
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(found)
    }
}

impl MessageStore for DynamoStore {}

#[async_trait]
impl EventStore for DynamoStore {
    async fn record_event(&self, event: &Event) -> Result<bool, StoreError> {
        let now = self.clock.now_ms();
        let res = self
            .client
            .put_item()
            .table_name(&self.tables.events)
            .item("key", s(&event.key))
            .item("subject", s(&event.subject.0))
            .item("at_ms", n(event.at_ms))
            .item("expires_at_ms", n(event.expires_at_ms))
            .item(EVENTS_TTL_ATTRIBUTE, n(ttl_seconds(event.expires_at_ms)))
            .item("doc", s(to_doc(event)?))
            // An expired event TTL has not deleted yet is gone as far as Herald is concerned.
            .condition_expression("attribute_not_exists(#key) OR #expires <= :now")
            .expression_attribute_names("#key", "key")
            .expression_attribute_names("#expires", "expires_at_ms")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(transient(e)),
        }
    }

    async fn get_event(&self, key: &str) -> Result<Option<Event>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.events)
            .key("key", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(transient)?;
        let now = self.clock.now_ms();
        match out.item {
            None => Ok(None),
            Some(item) => {
                let event: Event = doc(&item)?;
                Ok((event.expires_at_ms > now).then_some(event))
            }
        }
    }

    /// Reads the `by_subject` index, which is eventually consistent: an event recorded a moment
    /// ago may be missing for a moment. Events with the same `at_ms` are ordered by key.
    async fn events_for(&self, subject: &Subject) -> Result<Vec<Event>, StoreError> {
        let now = self.clock.now_ms();
        let mut events = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.events)
                .index_name(EVENTS_BY_SUBJECT)
                .key_condition_expression("#subject = :subject")
                .expression_attribute_names("#subject", "subject")
                .expression_attribute_values(":subject", s(&subject.0))
                .set_limit(self.page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(transient)?;
            for item in out.items.unwrap_or_default() {
                let event: Event = doc(&item)?;
                if event.expires_at_ms > now {
                    events.push(event);
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        events.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then_with(|| a.key.cmp(&b.key)));
        Ok(events)
    }
}

#[async_trait]
impl Keyring for DynamoStore {
    async fn get_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_key(name).await
    }

    async fn put_key_if_absent(&self, name: &str, wrapped: &[u8]) -> Result<Vec<u8>, StoreError> {
        for _ in 0..MAX_RETRIES {
            let res = self
                .client
                .put_item()
                .table_name(&self.tables.state)
                .item("pk", Self::keyring_pk(name))
                .item("wrapped", AttributeValue::B(Blob::new(wrapped)))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", "pk")
                .send()
                .await;
            match res {
                Ok(_) => return Ok(wrapped.to_vec()),
                Err(e) if is_conditional(&e) => {
                    if let Some(stored) = self.read_key(name).await? {
                        return Ok(stored);
                    }
                    // Deleted between our write and our read: try again.
                }
                Err(e) => return Err(transient(e)),
            }
        }
        Err(StoreError::transient(StoreFailure(
            "keyring entry keeps vanishing",
        )))
    }
}

fn opt_out_pk(token: &LookupToken) -> AttributeValue {
    s(format!("optout#{}", token.0))
}

#[async_trait]
impl OptOutStore for DynamoStore {
    async fn set_opt_out(
        &self,
        token: &LookupToken,
        opted_out: bool,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.tables.state)
            .item("pk", opt_out_pk(token))
            .item("opted_out", AttributeValue::Bool(opted_out))
            .item("at_ms", n(at_ms))
            // Last writer by time wins; equal times: this (later) call wins.
            .condition_expression("attribute_not_exists(#pk) OR #at <= :at")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#at", "at_ms")
            .expression_attribute_values(":at", n(at_ms))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(transient(e)),
        }
    }

    async fn is_opted_out(&self, token: &LookupToken) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.state)
            .key("pk", opt_out_pk(token))
            .consistent_read(true)
            .send()
            .await
            .map_err(transient)?;
        match out.item {
            None => Ok(false),
            Some(item) => match item.get("opted_out") {
                Some(AttributeValue::Bool(b)) => Ok(*b),
                _ => Err(StoreError::Corrupt(
                    "opt-out item has no boolean opted_out".into(),
                )),
            },
        }
    }
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(StoreError::transient)
}

fn attr(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(StoreError::transient)
}

fn gsi(name: &str, hash: &str, range: &str) -> Result<GlobalSecondaryIndex, StoreError> {
    gsi_projecting(
        name,
        hash,
        range,
        Projection::builder()
            .projection_type(ProjectionType::All)
            .build(),
    )
}

fn gsi_projecting(
    name: &str,
    hash: &str,
    range: &str,
    projection: Projection,
) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key(range, KeyType::Range)?)
        .projection(projection)
        .build()
        .map_err(StoreError::transient)
}

/// Creates Herald's three tables with their keys, indexes (on-demand billing) and the events
/// TTL, and waits until they are active. Idempotent: tables that exist are left as they are.
/// For tests and local tooling; production tables come from the SAM template.
pub async fn create_tables(client: &Client, tables: &TableNames) -> Result<(), StoreError> {
    use ScalarAttributeType::{N, S};
    let specs = [
        (
            &tables.messages,
            "id",
            vec![
                attr("id", S)?,
                attr("status", S)?,
                attr("caller", S)?,
                attr("created_at_ms", N)?,
                attr("doubt_token", S)?,
                attr("doubt_until_ms", N)?,
            ],
            vec![
                gsi(MESSAGES_BY_STATUS, "status", "created_at_ms")?,
                gsi(MESSAGES_BY_CALLER, "caller", "created_at_ms")?,
                gsi_projecting(
                    MESSAGES_IN_DOUBT,
                    "doubt_token",
                    "doubt_until_ms",
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .non_key_attributes("doubt_since_ms")
                        .build(),
                )?,
            ],
        ),
        (
            &tables.events,
            "key",
            vec![attr("key", S)?, attr("subject", S)?, attr("at_ms", N)?],
            vec![gsi(EVENTS_BY_SUBJECT, "subject", "at_ms")?],
        ),
        (&tables.state, "pk", vec![attr("pk", S)?], vec![]),
    ];
    for (name, pk, attrs, indexes) in specs {
        let res = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(pk, KeyType::Hash)?)
            .set_attribute_definitions(Some(attrs))
            .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
            .send()
            .await;
        match res {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceInUseException") => {}
            Err(e) => return Err(transient(e)),
        }
    }
    for name in [&tables.messages, &tables.events, &tables.state] {
        use aws_sdk_dynamodb::client::Waiters;
        client
            .wait_until_table_exists()
            .table_name(name)
            .wait(Duration::from_secs(300))
            .await
            .map_err(StoreError::transient)?;
    }
    for (table, attribute) in [
        (&tables.events, EVENTS_TTL_ATTRIBUTE),
        (&tables.state, STATE_TTL_ATTRIBUTE),
    ] {
        let ttl = client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
            .map_err(transient)?;
        let enabled = ttl
            .time_to_live_description
            .and_then(|d| d.attribute_name)
            .is_some_and(|a| a == attribute);
        if !enabled {
            client
                .update_time_to_live()
                .table_name(table)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attribute)
                        .enabled(true)
                        .build()
                        .map_err(StoreError::transient)?,
                )
                .send()
                .await
                .map_err(transient)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ttl_seconds;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(1_000), 1);
        assert_eq!(ttl_seconds(1_001), 2);
        assert_eq!(ttl_seconds(1_999), 2);
        assert_eq!(ttl_seconds(0), 0);
    }
}

//! The API's protection in DynamoDB: rate-limit windows, idempotency keys and verifications are
//! items of the state table, each decision one conditional write; queries of a caller's
//! messages read the messages table's `by_caller` index.
//!
//! State items (partition key `pk`, TTL attribute `expires_at` in epoch seconds):
//! - `rate#<key>#<window start>`: `used` (N), `expires_at_ms` (N). One conditional update adds
//!   one while `used < limit`.
//! - `idem#<scoped key>`: `fingerprint` (S), `lease_until_ms` (N, while in progress),
//!   `expires_at_ms` (N), `response` (S, once completed), `started_at_ms` (N: when this use of
//!   the key began). Created by a conditional put that succeeds only over no live record; an
//!   in-progress record of the same fingerprint whose lease ended (or was ended by a release,
//!   which sets it to 0) is taken over by a conditional update that keeps `started_at_ms`.
//! - `verification#<id>`: `caller` (S), `created_at_ms` (N), `version` (N), `doc` (S: the
//!   verification as JSON: a keyed hash of the code, a lookup token, a masked number). Changed
//!   by an optimistic write conditioned on `version`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{
    DynamoStore, Item, MAX_RETRIES, StoreFailure, doc, get_n, get_s, is_conditional, n, s, to_doc,
    transient, ttl_seconds,
};
use crate::domain::{Message, Verification, VerificationId};
use crate::ports::{
    Acquired, Begun, DecideVerification, IdempotencyStore, MessagePage, MessageQueries,
    MessageQuery, PageCursor, RateLimiter, StoreError, StoredResponse, VerificationApplied,
    VerificationStore, window_start,
};

/// How long a verification item outlives its code (for `GET` and audits).
const VERIFICATION_RETENTION_MS: i64 = 24 * 3_600_000;

#[async_trait]
impl RateLimiter for DynamoStore {
    async fn acquire(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Acquired, StoreError> {
        let start = window_start(now_ms, window_ms);
        let end = start + window_ms.max(1);
        let limited = Acquired::Limited {
            retry_after_ms: (end - now_ms).max(1),
        };
        if limit == 0 {
            return Ok(limited);
        }
        let res = self
            .client
            .update_item()
            .table_name(&self.tables.state)
            .key("pk", s(format!("rate#{key}#{start}")))
            .update_expression(
                "SET #used = if_not_exists(#used, :zero) + :one, #exp_ms = :exp_ms, #ttl = :ttl",
            )
            .condition_expression("attribute_not_exists(#pk) OR #used < :limit")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#used", "used")
            .expression_attribute_names("#exp_ms", "expires_at_ms")
            .expression_attribute_names("#ttl", "expires_at")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":exp_ms", n(end))
            .expression_attribute_values(":ttl", n(ttl_seconds(end)))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match res {
            Ok(out) => {
                let used = out
                    .attributes
                    .as_ref()
                    .map(|a| get_n(a, "used"))
                    .transpose()?
                    .unwrap_or(1);
                Ok(Acquired::Allowed {
                    used: u32::try_from(used).unwrap_or(u32::MAX),
                })
            }
            Err(e) if is_conditional(&e) => Ok(limited),
            Err(e) => Err(transient(e)),
        }
    }
}

fn idem_pk(key: &str) -> AttributeValue {
    s(format!("idem#{key}"))
}

impl DynamoStore {
    async fn read_state(&self, pk: AttributeValue) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.state)
            .key("pk", pk)
            .consistent_read(true)
            .send()
            .await
            .map_err(transient)?;
        Ok(out.item)
    }

    /// Takes over the in-progress record of `key` whose lease ended, when it has this
    /// `fingerprint` (the same request, retried after the first died): a new lease, and the time
    /// the use of the key began, kept (`None`: the record is not that any more).
    async fn take_over(
        &self,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
        lease_until_ms: i64,
        expires_at_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.tables.state)
            .key("pk", idem_pk(key))
            .update_expression(
                "SET #lease = :lease, #exp = :exp, #ttl = :ttl, \
                 #since = if_not_exists(#since, :now)",
            )
            .condition_expression(
                "#fp = :fp AND attribute_not_exists(#resp) AND #lease <= :now AND #exp > :now",
            )
            .expression_attribute_names("#lease", "lease_until_ms")
            .expression_attribute_names("#exp", "expires_at_ms")
            .expression_attribute_names("#ttl", "expires_at")
            .expression_attribute_names("#since", "started_at_ms")
            .expression_attribute_names("#fp", "fingerprint")
            .expression_attribute_names("#resp", "response")
            .expression_attribute_values(":lease", n(lease_until_ms))
            .expression_attribute_values(":exp", n(expires_at_ms))
            .expression_attribute_values(":ttl", n(ttl_seconds(expires_at_ms)))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":fp", s(fingerprint))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => Ok(Some(
                out.attributes
                    .as_ref()
                    .map(|a| get_n(a, "started_at_ms"))
                    .transpose()?
                    .unwrap_or(now_ms),
            )),
            Err(e) if is_conditional(&e) => Ok(None),
            Err(e) => Err(transient(e)),
        }
    }
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn begin(
        &self,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
        lease_until_ms: i64,
        expires_at_ms: i64,
    ) -> Result<Begun, StoreError> {
        for _ in 0..MAX_RETRIES {
            // A new use of the key: no record, an expired one, or one in progress past its
            // lease with another payload.
            let res = self
                .client
                .put_item()
                .table_name(&self.tables.state)
                .item("pk", idem_pk(key))
                .item("fingerprint", s(fingerprint))
                .item("lease_until_ms", n(lease_until_ms))
                .item("expires_at_ms", n(expires_at_ms))
                .item("expires_at", n(ttl_seconds(expires_at_ms)))
                .item("started_at_ms", n(now_ms))
                .condition_expression(
                    "attribute_not_exists(#pk) OR #exp <= :now \
                     OR (attribute_not_exists(#resp) AND #lease <= :now AND #fp <> :fp)",
                )
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#exp", "expires_at_ms")
                .expression_attribute_names("#resp", "response")
                .expression_attribute_names("#lease", "lease_until_ms")
                .expression_attribute_names("#fp", "fingerprint")
                .expression_attribute_values(":now", n(now_ms))
                .expression_attribute_values(":fp", s(fingerprint))
                .send()
                .await;
            match res {
                Ok(_) => return Ok(Begun::Started { since_ms: now_ms }),
                Err(e) if is_conditional(&e) => {}
                Err(e) => return Err(transient(e)),
            }
            let Some(item) = self.read_state(idem_pk(key)).await? else {
                continue; // released in between: try again
            };
            let live = get_n(&item, "expires_at_ms")? > now_ms
                && (item.contains_key("response") || get_n(&item, "lease_until_ms")? > now_ms);
            if !live {
                if let Some(since_ms) = self
                    .take_over(key, fingerprint, now_ms, lease_until_ms, expires_at_ms)
                    .await?
                {
                    return Ok(Begun::Started { since_ms });
                }
                continue; // changed in between: decide again
            }
            if get_s(&item, "fingerprint")? != fingerprint {
                return Ok(Begun::Mismatch);
            }
            return Ok(match item.get("response") {
                None => Begun::InProgress,
                Some(_) => Begun::Completed(
                    serde_json::from_str(get_s(&item, "response")?)
                        .map_err(|e| StoreError::Corrupt(format!("stored response: {e}")))?,
                ),
            });
        }
        Err(StoreError::transient(StoreFailure(
            "idempotency key keeps changing",
        )))
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.tables.state)
            .key("pk", idem_pk(key))
            .update_expression("SET #resp = :resp REMOVE #lease")
            .condition_expression("#fp = :fp AND attribute_not_exists(#resp)")
            .expression_attribute_names("#resp", "response")
            .expression_attribute_names("#lease", "lease_until_ms")
            .expression_attribute_names("#fp", "fingerprint")
            .expression_attribute_values(":resp", s(to_doc(response)?))
            .expression_attribute_values(":fp", s(fingerprint))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Ok(()),
            Err(e) => Err(transient(e)),
        }
    }

    async fn release(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        // The lease ends; the start stays (a retry of this payload goes on with this use).
        let res = self
            .client
            .update_item()
            .table_name(&self.tables.state)
            .key("pk", idem_pk(key))
            .update_expression("SET #lease = :zero")
            .condition_expression("#fp = :fp AND attribute_not_exists(#resp)")
            .expression_attribute_names("#lease", "lease_until_ms")
            .expression_attribute_names("#resp", "response")
            .expression_attribute_names("#fp", "fingerprint")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":fp", s(fingerprint))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Ok(()),
            Err(e) => Err(transient(e)),
        }
    }
}

fn verification_pk(id: &VerificationId) -> AttributeValue {
    s(format!("verification#{id}"))
}

#[async_trait]
impl VerificationStore for DynamoStore {
    async fn insert_verification(&self, v: &Verification) -> Result<(), StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.tables.state)
            .item("pk", verification_pk(&v.id))
            .item("caller", s(&v.caller))
            .item("created_at_ms", n(v.created_at_ms))
            .item(
                "expires_at",
                n(ttl_seconds(v.expires_at_ms + VERIFICATION_RETENTION_MS)),
            )
            .item("version", n(0))
            .item("doc", s(to_doc(v)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", "pk")
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Err(StoreError::Conflict),
            Err(e) => Err(transient(e)),
        }
    }

    async fn get_verification(
        &self,
        id: &VerificationId,
    ) -> Result<Option<Verification>, StoreError> {
        self.read_state(verification_pk(id))
            .await?
            .map(|item| doc(&item))
            .transpose()
    }

    async fn update_verification(
        &self,
        id: &VerificationId,
        decide: &DecideVerification<'_>,
    ) -> Result<VerificationApplied, StoreError> {
        for _ in 0..MAX_RETRIES {
            let Some(item) = self.read_state(verification_pk(id)).await? else {
                return Ok(VerificationApplied::NotFound);
            };
            let current: Verification = doc(&item)?;
            let Some(mut next) = decide(&current) else {
                return Ok(VerificationApplied::Ignored(current));
            };
            next.id = current.id.clone();
            next.caller = current.caller.clone();
            next.created_at_ms = current.created_at_ms;
            let version = get_n(&item, "version")?;
            let res = self
                .client
                .update_item()
                .table_name(&self.tables.state)
                .key("pk", verification_pk(id))
                .update_expression("SET #doc = :doc, #version = :next")
                .condition_expression("attribute_exists(#pk) AND #version = :read")
                .expression_attribute_names("#pk", "pk")
                .expression_attribute_names("#doc", "doc")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":doc", s(to_doc(&next)?))
                .expression_attribute_values(":next", n(version + 1))
                .expression_attribute_values(":read", n(version))
                .send()
                .await;
            match res {
                Ok(_) => return Ok(VerificationApplied::Applied(next)),
                Err(e) if is_conditional(&e) => continue,
                Err(e) => return Err(transient(e)),
            }
        }
        Err(StoreError::transient(StoreFailure(
            "too much contention on one verification",
        )))
    }
}

#[async_trait]
impl MessageQueries for DynamoStore {
    async fn list_messages_by_caller(&self, q: &MessageQuery) -> Result<MessagePage, StoreError> {
        let limit = q.limit.clamp(1, 1000) as usize;
        let mut found: Vec<Message> = Vec::new();
        let mut start: Option<Item> = q.after.as_ref().map(|a| {
            HashMap::from([
                ("id".to_owned(), s(a.id.as_str())),
                ("caller".to_owned(), s(&q.caller)),
                ("created_at_ms".to_owned(), n(a.created_at_ms)),
            ])
        });
        if q.to_ms <= q.from_ms {
            return Ok(MessagePage {
                messages: found,
                next: None,
            });
        }
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.tables.messages)
                .index_name(super::MESSAGES_BY_CALLER)
                .key_condition_expression("#caller = :caller AND #created BETWEEN :from AND :to")
                .expression_attribute_names("#caller", "caller")
                .expression_attribute_names("#created", "created_at_ms")
                .expression_attribute_values(":caller", s(&q.caller))
                .expression_attribute_values(":from", n(q.from_ms))
                .expression_attribute_values(":to", n(q.to_ms - 1))
                .scan_index_forward(false)
                .limit(
                    i32::try_from(limit + 1 - found.len())
                        .unwrap_or(i32::MAX)
                        .min(self.page_size.unwrap_or(i32::MAX)),
                )
                .set_exclusive_start_key(start.take());
            if let Some(status) = q.status {
                query = query
                    .filter_expression("#status = :status")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":status", s(status.as_str()));
            }
            let out = query.send().await.map_err(transient)?;
            for item in out.items.unwrap_or_default() {
                if found.len() <= limit {
                    found.push(doc(&item)?);
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() && found.len() <= limit => start = Some(k),
                _ => break,
            }
        }
        let next = if found.len() > limit {
            found.truncate(limit);
            found.last().map(|m| PageCursor {
                created_at_ms: m.attempts.created_at_ms,
                id: m.id.clone(),
            })
        } else {
            None
        };
        Ok(MessagePage {
            messages: found,
            next,
        })
    }
}

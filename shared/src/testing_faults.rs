//! A fault-injecting wrapper of a real store (feature `test-util`): [`CommitThenFail`] makes a
//! chosen write really happen and then answer an error, once, as a DynamoDB call whose answer
//! timed out after the write committed leaves it. Every other call, and the write itself, is the
//! wrapped adapter's: nothing of a port's behaviour is imitated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::crypto::LookupToken;
use crate::domain::{Attempted, Call, Message, Verification, VerificationId};
use crate::ports::{
    Acquired, Applied, Begun, CallStore, Decide, DecideVerification, IdempotencyStore, InDoubt,
    MessagePage, MessageQueries, MessageQuery, MessageStore, RateLimiter, Records, StoreError,
    StoredResponse, VerificationApplied, VerificationStore,
};

/// A write [`CommitThenFail`] can make fail after it committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Write {
    /// [`Records::insert_record`] of a message.
    InsertMessage,
    /// [`Records::insert_record`] of a call.
    InsertCall,
    /// [`VerificationStore::insert_verification`].
    InsertVerification,
    /// [`IdempotencyStore::complete`].
    CompleteIdempotency,
}

/// The error a write that committed answers.
#[derive(Debug, thiserror::Error)]
#[error("injected: the write committed, its answer was lost (a timeout)")]
pub struct LostAnswer;

/// A store over `S` whose armed writes commit and then answer [`StoreError::Transient`], each
/// once ([`CommitThenFail::arm`]); `skip` earlier writes of that kind go through first.
pub struct CommitThenFail<S> {
    inner: Arc<S>,
    /// The armed writes, each with how many of its kind still go through first.
    armed: Mutex<HashMap<Write, usize>>,
    fired: Mutex<Vec<Write>>,
}

impl<S> CommitThenFail<S> {
    /// A wrapper over `inner` with nothing armed.
    pub fn new(inner: Arc<S>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            armed: Mutex::new(HashMap::new()),
            fired: Mutex::new(Vec::new()),
        })
    }

    /// Arms `write`: the next one commits and then answers an error.
    pub fn arm(&self, write: Write) {
        self.arm_after(write, 0);
    }

    /// Arms `write` after `skip` more of them went through as usual.
    pub fn arm_after(&self, write: Write, skip: usize) {
        self.armed.lock().expect("faults lock").insert(write, skip);
    }

    /// The writes that committed and answered an error, in order.
    pub fn fired(&self) -> Vec<Write> {
        self.fired.lock().expect("faults lock").clone()
    }

    /// Runs `op` (the real write); when `write` is armed, disarms it and answers an error once
    /// the write has committed.
    async fn write<F>(&self, write: Write, op: F) -> Result<(), StoreError>
    where
        F: std::future::Future<Output = Result<(), StoreError>>,
    {
        op.await?;
        let strike = {
            let mut armed = self.armed.lock().expect("faults lock");
            match armed.get_mut(&write) {
                Some(0) => armed.remove(&write).is_some(),
                Some(n) => {
                    *n -= 1;
                    false
                }
                None => false,
            }
        };
        if strike {
            self.fired.lock().expect("faults lock").push(write);
            return Err(StoreError::transient(LostAnswer));
        }
        Ok(())
    }
}

/// Which [`Write`] inserting a record of the kind is.
pub trait Inserted: Attempted {
    /// [`Records::insert_record`] of the kind.
    const INSERT: Write;
}

impl Inserted for Message {
    const INSERT: Write = Write::InsertMessage;
}

impl Inserted for Call {
    const INSERT: Write = Write::InsertCall;
}

#[async_trait]
impl<R: Inserted, S: Records<R>> Records<R> for CommitThenFail<S> {
    async fn insert_record(&self, record: &R) -> Result<(), StoreError> {
        self.write(R::INSERT, self.inner.insert_record(record))
            .await
    }

    async fn get_record(&self, id: &R::Id) -> Result<Option<R>, StoreError> {
        self.inner.get_record(id).await
    }

    async fn update_record(
        &self,
        id: &R::Id,
        decide: &Decide<'_, R>,
    ) -> Result<Applied<R>, StoreError> {
        self.inner.update_record(id, decide).await
    }

    async fn records_by_status(
        &self,
        status: R::Status,
        created_before_ms: i64,
        limit: u32,
        order: crate::ports::Order,
        after: Option<&crate::ports::SweepCursor>,
    ) -> Result<crate::ports::Page<R>, StoreError> {
        self.inner
            .records_by_status(status, created_before_ms, limit, order, after)
            .await
    }
    async fn records_in_doubt(
        &self,
        token: &LookupToken,
        until_from_ms: i64,
        limit: u32,
    ) -> Result<Vec<InDoubt>, StoreError> {
        self.inner
            .records_in_doubt(token, until_from_ms, limit)
            .await
    }
}

impl<S: MessageStore> MessageStore for CommitThenFail<S> {}

impl<S: CallStore> CallStore for CommitThenFail<S> {}

#[async_trait]
impl<S: RateLimiter> RateLimiter for CommitThenFail<S> {
    async fn acquire(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Acquired, StoreError> {
        self.inner.acquire(key, limit, window_ms, now_ms).await
    }
}

#[async_trait]
impl<S: IdempotencyStore> IdempotencyStore for CommitThenFail<S> {
    async fn begin(
        &self,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
        lease_until_ms: i64,
        expires_at_ms: i64,
    ) -> Result<Begun, StoreError> {
        self.inner
            .begin(key, fingerprint, now_ms, lease_until_ms, expires_at_ms)
            .await
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        self.write(
            Write::CompleteIdempotency,
            self.inner.complete(key, fingerprint, response),
        )
        .await
    }

    async fn release(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        self.inner.release(key, fingerprint).await
    }
}

#[async_trait]
impl<S: VerificationStore> VerificationStore for CommitThenFail<S> {
    async fn insert_verification(&self, v: &Verification) -> Result<(), StoreError> {
        self.write(Write::InsertVerification, self.inner.insert_verification(v))
            .await
    }

    async fn get_verification(
        &self,
        id: &VerificationId,
    ) -> Result<Option<Verification>, StoreError> {
        self.inner.get_verification(id).await
    }

    async fn update_verification(
        &self,
        id: &VerificationId,
        decide: &DecideVerification<'_>,
    ) -> Result<VerificationApplied, StoreError> {
        self.inner.update_verification(id, decide).await
    }
}

#[async_trait]
impl<S: MessageQueries> MessageQueries for CommitThenFail<S> {
    async fn list_messages_by_caller(&self, q: &MessageQuery) -> Result<MessagePage, StoreError> {
        self.inner.list_messages_by_caller(q).await
    }
}

//! The ports: narrow traits every adapter implements (embedded and AWS), each with its contract.
//!
//! The conformance suite in [`crate::testing`] checks every contract below against every
//! adapter; an adapter that passes it can replace another without the handlers noticing.

use async_trait::async_trait;

use crate::crypto::{DataKey, LookupToken};
use crate::domain::{
    Attempted, Call, CallId, CallReport, ClaimRefusal, Event, Message, MessageId, MessageStatus,
    RetryChange, StatusChange, Subject,
};
use crate::secret::Secret;

mod paging;
pub use paging::{Order, Page, SweepCursor};

/// Why a store operation failed. Messages never contain personal data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A create-if-absent found the item already there.
    #[error("already exists")]
    Conflict,
    /// The backing service failed for now; the caller may retry.
    #[error("store unavailable: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored item could not be read back (schema drift, corruption).
    #[error("stored item is malformed: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps a backend error as transient.
    pub fn transient(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Transient(Box::new(e))
    }
}

/// Why a key-service operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key service failed for now.
    #[error("key service unavailable: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The wrapped key was refused (wrong key, tampered, not ours).
    #[error("wrapped key refused")]
    Refused,
}

/// The result of a conditional change of a record (a message by default, or a call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied<R = Message> {
    /// The record moved; here it is after the change.
    Applied(R),
    /// The record did not move (wrong attempt, terminal, or not a higher rank); here it is as is.
    Ignored(R),
    /// No record has that id.
    NotFound,
}

/// How many times a store's read-decide-write reads and decides again when another writer
/// changed the record in between, before it gives up with a transient error (every backend
/// stops: a record that hot is better retried by the caller than spun on).
pub const MAX_UPDATE_ROUNDS: usize = 100;

/// How a store's read-decide-write ([`Records::update_record`]) decides a record's next version
/// (`None`: leave it).
pub type Decide<'a, R = Message> = dyn for<'m> Fn(&'m R) -> Option<R> + Send + Sync + 'a;

/// The result of claiming an attempt ([`Records::claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim<R = Message> {
    /// This caller holds the attempt; the record as claimed.
    Claimed(R),
    /// Another caller holds it until then.
    Busy {
        /// Unix milliseconds.
        until_ms: i64,
    },
    /// The record does not wait for this attempt any more (done, final, or moved on); here it
    /// is.
    Stale(R),
    /// No such record.
    NotFound,
}

/// A record whose attempts may have created a Twilio resource it does not own, as the doubt
/// index holds it: its id and its span in doubt
/// ([`crate::domain::attempt::Attempts::in_doubt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InDoubt {
    /// The record's id.
    pub record_id: String,
    /// When the span starts, Unix ms.
    pub since_ms: i64,
    /// When it ends.
    pub until_ms: i64,
}

/// What any record kind's store has (every store of messages and every store of calls), and
/// what the attempt engine ([`crate::engine`]) needs of it, written once over the kind's atomic
/// read-decide-write. The adapters implement it once, generically over the record kind.
#[async_trait]
pub trait Records<R: Attempted>: Send + Sync {
    /// Records a new record. Create-if-absent: when a record with the same id exists, returns
    /// [`StoreError::Conflict`] and changes nothing. Of two concurrent inserts of one id, exactly
    /// one succeeds.
    async fn insert_record(&self, record: &R) -> Result<(), StoreError>;

    /// The atomic primitive every conditional change is built on: reads the record, asks
    /// `decide` for its next version (`None`: leave it), and writes that version only if the
    /// stored record is still the one `decide` saw; otherwise it reads and decides again. Of
    /// concurrent updates, each is decided against the record as the previous one left it.
    /// `decide` may run more than once and must not have side effects. The id and
    /// `created_at_ms` of the record never change.
    async fn update_record(
        &self,
        id: &R::Id,
        decide: &Decide<'_, R>,
    ) -> Result<Applied<R>, StoreError>;

    /// The record with this id, if any.
    async fn get_record(&self, id: &R::Id) -> Result<Option<R>, StoreError>;

    /// A page of up to `limit` records with `status`, created before `created_before_ms`, in
    /// `order` ([`Order`]: by `created_at_ms`, then id), starting strictly past `after` in that
    /// order (`None`: from that end). [`Page::next`] continues the walk. Eventually consistent
    /// on DynamoDB. The sweeper's query ([`crate::engine::sweep`]: records that wait too long).
    async fn records_by_status(
        &self,
        status: R::Status,
        created_before_ms: i64,
        limit: u32,
        order: Order,
        after: Option<&SweepCursor>,
    ) -> Result<Page<R>, StoreError>;

    /// Up to `limit` records with the match token `token` whose span in doubt
    /// ([`crate::domain::attempt::Attempts::in_doubt`]) ends at or after `until_from_ms`,
    /// earliest end first (the doubt index: only records with a span in doubt are in it).
    /// Eventually consistent on DynamoDB.
    async fn records_in_doubt(
        &self,
        token: &LookupToken,
        until_from_ms: i64,
        limit: u32,
    ) -> Result<Vec<InDoubt>, StoreError>;

    /// Claims `attempt` for a sender until `now_ms + lease_ms`
    /// ([`crate::domain::attempt::claimed`]): of concurrent claims of one attempt exactly one
    /// succeeds, so a duplicated or redelivered job never sends twice. A done call is never
    /// claimed.
    async fn claim(
        &self,
        id: &R::Id,
        attempt: u32,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Claim<R>, StoreError> {
        let refusal = std::sync::Mutex::new(None);
        let decide = |r: &R| match crate::domain::attempt::claimed(r, attempt, now_ms, lease_ms) {
            Ok(next) => Some(next),
            Err(e) => {
                *refusal.lock().expect("claim lock") = Some(e);
                None
            }
        };
        Ok(match self.update_record(id, &decide).await? {
            Applied::Applied(r) => Claim::Claimed(r),
            Applied::Ignored(r) => match refusal.lock().expect("claim lock").take() {
                Some(ClaimRefusal::Busy { until_ms }) => Claim::Busy { until_ms },
                _ => Claim::Stale(r),
            },
            Applied::NotFound => Claim::NotFound,
        })
    }

    /// Moves the record from `change.attempt` to the next attempt, `retrying`
    /// ([`crate::domain::attempt::retried`]); ignored when the record is at another attempt or
    /// takes no more.
    async fn schedule(&self, id: &R::Id, change: &RetryChange) -> Result<Applied<R>, StoreError> {
        self.update_record(id, &|r: &R| crate::domain::attempt::retried(r, change))
            .await
    }
}

/// Messages, stored with their personal data sealed: the [`Records`] of messages, and what
/// only messages have.
#[async_trait]
pub trait MessageStore: Records<Message> {
    /// Applies `change` atomically, only if the stored record is at `change.attempt` and the
    /// transition rule ([`crate::domain::MessageStatus::transition`]) allows it. Of concurrent
    /// changes, each is decided against the record as the previous one left it, so the final
    /// status is the highest-ranked one offered, whatever the order.
    async fn apply_message_status(
        &self,
        id: &MessageId,
        change: &StatusChange,
    ) -> Result<Applied, StoreError> {
        self.update_record(id, &|m: &Message| m.changed(change))
            .await
    }
}

/// The result of a conditional change of a call ([`Records::update_record`]).
pub type CallApplied = Applied<Call>;

/// The result of claiming a call's attempt.
pub type CallClaim = Claim<Call>;

/// Voice calls, stored with their personal data sealed: the [`Records`] of calls (the same
/// contract as messages: one atomic read-decide-write primitive, and the decisions built on
/// it), and what only calls have.
#[async_trait]
pub trait CallStore: Records<Call> {
    /// Applies `report` under the retry policy ([`Call::reported`]): the next attempt, due at
    /// `retry_at_ms`, for an unanswered or unacknowledged attempt while `attempt <
    /// max_attempts`, else the status by the transition rule.
    async fn report_call(
        &self,
        id: &CallId,
        report: &CallReport,
        max_attempts: u32,
        retry_at_ms: i64,
    ) -> Result<CallApplied, StoreError> {
        self.update_record(id, &|c: &Call| {
            c.reported(report, max_attempts, retry_at_ms)
        })
        .await
    }

    /// Records the callee's acknowledgement of `attempt` ([`Call::acknowledged`]); ignored when
    /// the call was acknowledged already.
    async fn acknowledge_call(
        &self,
        id: &CallId,
        attempt: u32,
        at_ms: i64,
    ) -> Result<CallApplied, StoreError> {
        self.update_record(id, &|c: &Call| c.acknowledged(attempt, at_ms))
            .await
    }
}

/// Who owns a Twilio SID: one record (a message or a call), at the attempt that created or
/// adopted it. Herald's ids and a number: never personal data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SidOwner {
    /// The message or call id.
    pub record_id: String,
    /// The attempt of that record the SID belongs to.
    pub attempt: u32,
}

impl std::fmt::Display for SidOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.record_id, self.attempt)
    }
}

/// The result of [`SidOwners::own_twilio_sid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidClaim {
    /// The SID belongs to the owner asked for (now, or already).
    Owned,
    /// Another owner has the SID (another record, or another attempt of the same record); here
    /// it is.
    OwnedByOther(SidOwner),
}

/// Which record owns each Twilio SID (`SM…`, `CA…`): a SID belongs to at most one record (at
/// one of its attempts), so no two records can ever report the same Twilio message or call as
/// theirs.
#[async_trait]
pub trait SidOwners: Send + Sync {
    /// Makes `owner` the owner of `sid` unless another owner has it, atomically, at `at_ms`
    /// (the ownership is kept at least as long as the records, 90 days). Idempotent for the
    /// same owner (same record and attempt). Of concurrent claims of one SID by different
    /// owners, exactly one is [`SidClaim::Owned`]; the others get [`SidClaim::OwnedByOther`]
    /// naming it. A refused claim changes nothing.
    async fn own_twilio_sid(
        &self,
        sid: &str,
        owner: &SidOwner,
        at_ms: i64,
    ) -> Result<SidClaim, StoreError>;

    /// The owner of `sid`, if any (strongly consistent: a claim that returned is seen).
    async fn twilio_sid_owner(&self, sid: &str) -> Result<Option<SidOwner>, StoreError>;
}

/// Sanitized events: the timelines of messages and calls, and the webhook dedupe log.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Records `event` unless an event with the same key exists. Returns `true` when it was
    /// recorded, `false` when the key was already there (nothing changed). Of two concurrent
    /// records of one key, exactly one returns `true`. An expired event (see
    /// [`EventStore::get_event`]) no longer holds its key, whether or not the backend has
    /// deleted it yet.
    async fn record_event(&self, event: &Event) -> Result<bool, StoreError>;

    /// The event with this key, if any and not expired: an event is expired once the store's
    /// clock reaches its `expires_at_ms`, even if the backend (DynamoDB TTL, the SQLite sweep)
    /// has not deleted it yet.
    async fn get_event(&self, key: &str) -> Result<Option<Event>, StoreError>;

    /// Every unexpired event about `subject`, oldest first by `at_ms`. Events with the same
    /// `at_ms` come in an order each adapter keeps stable (SQLite: recording order; DynamoDB:
    /// by key), so callers that care give distinct times or ordered keys. Read from an index
    /// that may be eventually consistent (DynamoDB GSI): an event recorded a moment ago may be
    /// missing for a moment; use [`EventStore::get_event`] for a decision.
    async fn events_for(&self, subject: &Subject) -> Result<Vec<Event>, StoreError>;
}

/// Opt-outs (STOP / START), keyed by the lookup token of the phone number, never the number.
///
/// Each token holds one state, `opted_out` or not, with the time of the change that set it.
/// Last writer by time wins: a change is applied only if its `at_ms` is not older than the
/// stored change's (equal times: the later call wins), atomically, so of concurrent or
/// reordered changes the one with the latest time is what stays, and replaying a change is
/// harmless. A token never seen is not opted out.
#[async_trait]
pub trait OptOutStore: Send + Sync {
    /// Sets the state of `token` as of `at_ms`. Returns `true` when it was applied, `false` when
    /// a newer change was already stored (nothing changed).
    async fn set_opt_out(
        &self,
        token: &LookupToken,
        opted_out: bool,
        at_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Whether `token` is opted out now (strongly consistent: a change that returned is seen).
    async fn is_opted_out(&self, token: &LookupToken) -> Result<bool, StoreError>;
}

/// Wrapped keys Herald keeps beside its data (the lookup-token key).
#[async_trait]
pub trait Keyring: Send + Sync {
    /// The wrapped key stored under `name`, if any.
    async fn get_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `wrapped` under `name` unless a key is there already, and returns the key that is
    /// stored afterwards: of concurrent callers, all get the same winner.
    async fn put_key_if_absent(&self, name: &str, wrapped: &[u8]) -> Result<Vec<u8>, StoreError>;
}

/// A key service that makes and unwraps 256-bit data keys (KMS, or a local master key).
#[async_trait]
pub trait KeyService: Send + Sync {
    /// A fresh random data key, plaintext and wrapped.
    async fn generate_data_key(&self) -> Result<DataKey, KeyError>;

    /// The plaintext of a key this service wrapped; [`KeyError::Refused`] for anything else.
    async fn decrypt_data_key(&self, wrapped: &[u8]) -> Result<Secret<[u8; 32]>, KeyError>;
}

/// Twilio credentials as stored in the secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TwilioCredentials {
    /// `AC…`: the account every request is made for.
    pub account_sid: String,
    /// `SK…`: the API key used for REST requests.
    pub api_key_sid: String,
    /// The API key's secret.
    pub api_key_secret: Secret<String>,
    /// The primary auth token: signs webhooks.
    pub auth_token: Secret<String>,
    /// During an auth-token rotation: the token that was primary before, still accepted on
    /// webhooks until [`previous_valid_until_ms`](Self::previous_valid_until_ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_auth_token: Option<Secret<String>>,
    /// Unix milliseconds until which the previous auth token is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_valid_until_ms: Option<i64>,
}

/// Why the secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The secret store failed for now.
    #[error("secret store unavailable: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The secret is missing or not a valid credentials document.
    #[error("secret is missing or malformed: {0}")]
    Invalid(String),
}

/// Where the Twilio credentials come from (Secrets Manager, or a local file).
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The current credentials (`AWSCURRENT`).
    async fn current(&self) -> Result<TwilioCredentials, SecretError>;
}

/// The staging label of the version in use.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The staging label of the version a rotation is preparing.
pub const AWSPENDING: &str = "AWSPENDING";
/// The staging label of the version that was current before the last rotation.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// A secret's metadata: whether rotation is enabled, and each version's staging labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretMetadata {
    /// Whether rotation is enabled for the secret.
    pub rotation_enabled: bool,
    /// Version id to its staging labels (versions without labels may be left out).
    pub versions: std::collections::BTreeMap<String, Vec<String>>,
}

impl SecretMetadata {
    /// Whether `version_id` carries `stage`.
    pub fn has_stage(&self, version_id: &str, stage: &str) -> bool {
        self.versions
            .get(version_id)
            .is_some_and(|s| s.iter().any(|x| x == stage))
    }

    /// The version that carries `stage`, if any.
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, s)| s.iter().any(|x| x == stage))
            .map(|(v, _)| v.as_str())
    }
}

/// One version of a secret with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretValue {
    /// The version id (a rotation's `ClientRequestToken`).
    pub version_id: String,
    /// Its staging labels.
    pub stages: Vec<String>,
    /// The value.
    pub text: Secret<String>,
}

/// A versioned secret with staging labels, as Secrets Manager keeps it (`AWSCURRENT`,
/// `AWSPENDING`, `AWSPREVIOUS`): what the rotation function reads and writes. A label is on at
/// most one version at a time.
#[async_trait]
pub trait SecretVersions: Send + Sync {
    /// Whether rotation is enabled, and the labels of each version. A missing secret is
    /// [`SecretError::Invalid`].
    async fn describe(&self) -> Result<SecretMetadata, SecretError>;

    /// The version that carries `stage`, with its value; `None` when no version carries it or
    /// that version has no value yet (the placeholder a rotation starts with).
    async fn get_by_stage(&self, stage: &str) -> Result<Option<SecretValue>, SecretError>;

    /// The version `version_id` with its value; `None` when there is no such version or it has
    /// no value yet.
    async fn get_version(&self, version_id: &str) -> Result<Option<SecretValue>, SecretError>;

    /// Stores `text` as version `version_id` with the labels `stages`, each taken from the
    /// version that had it; when `AWSCURRENT` moves, the version that had it becomes
    /// `AWSPREVIOUS`. A version without a value (a rotation's placeholder) gets it. Idempotent:
    /// storing the same text again under the same id only makes sure it has `stages` (a put
    /// interrupted halfway is completed); a different text under an existing id is [`SecretError::Invalid`] and changes nothing (versions are immutable).
    async fn put_version(
        &self,
        version_id: &str,
        text: &str,
        stages: &[&str],
    ) -> Result<(), SecretError>;

    /// Moves `stage` to `version_id` from whichever version has it; moving `AWSCURRENT` makes
    /// the version that had it `AWSPREVIOUS`. Nothing changes when `version_id` has it already;
    /// an unknown version is [`SecretError::Invalid`].
    async fn move_stage(&self, stage: &str, version_id: &str) -> Result<(), SecretError>;

    /// Takes `stage` off `version_id`; nothing changes when it does not carry it.
    async fn remove_stage(&self, stage: &str, version_id: &str) -> Result<(), SecretError>;
}

/// Time, injected so tests control it.
pub trait Clock: Send + Sync {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A clock that moves only when told: for tests.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock showing `ms`.
    pub fn new(ms: i64) -> Self {
        Self(std::sync::atomic::AtomicI64::new(ms))
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------------------------

/// The largest delay a job may carry, in seconds (SQS `DelaySeconds`: 15 minutes).
pub const MAX_DELAY_SECS: u32 = 900;

/// The longest visibility timeout, in seconds (SQS: 12 hours).
pub const MAX_VISIBILITY_TIMEOUT_SECS: u32 = 43_200;

/// The most jobs one `send_batch` or `receive` handles (SQS batch limit).
pub const MAX_BATCH: usize = 10;

/// The largest body, in bytes (SQS: 256 KiB).
pub const MAX_BODY_BYTES: usize = 262_144;

/// Why a queue operation failed. Messages never contain job bodies.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue service failed for now; the caller may retry.
    #[error("queue unavailable: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The receipt is not one this queue handed out (malformed, or for another queue).
    #[error("invalid receipt")]
    InvalidReceipt,
    /// The body is larger than [`MAX_BODY_BYTES`] (the size is given).
    #[error("job body too large: {0} bytes")]
    TooLarge(usize),
    /// An argument is out of range (delay, visibility timeout, batch size, empty body); the
    /// request was not sent and nothing changed.
    #[error("invalid queue request: {0}")]
    Invalid(String),
    /// The queue (or its dead-letter queue) does not exist.
    #[error("queue does not exist")]
    NoSuchQueue,
}

impl QueueError {
    /// Wraps a backend error as transient.
    pub fn transient(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Transient(Box::new(e))
    }
}

/// A job handed out by [`Queue::receive`] (or shown by [`Queue::dead_letters`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedJob {
    /// The queue's id for the job; stays the same across redeliveries.
    pub message_id: String,
    /// The handle that acknowledges or hides this delivery; each delivery has its own.
    pub receipt: String,
    /// The job, as sent (job JSON: ids only).
    pub body: String,
    /// How many times the job has been received, this delivery included (1 on the first).
    pub receive_count: u32,
    /// When the job was sent, in Unix milliseconds.
    pub sent_at_ms: i64,
}

impl std::fmt::Debug for ReceivedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedJob")
            .field("message_id", &self.message_id)
            .field("receive_count", &self.receive_count)
            .field("sent_at_ms", &self.sent_at_ms)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish_non_exhaustive()
    }
}

/// How many jobs a queue holds, by state. Approximate on SQS (eventually consistent), exact on
/// the embedded queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Jobs a receive could return now.
    pub visible: u64,
    /// Jobs received and not yet deleted, hidden until their visibility timeout ends.
    pub in_flight: u64,
    /// Jobs sent with a delay that has not ended yet.
    pub delayed: u64,
    /// Jobs in the dead-letter queue.
    pub dead: u64,
}

/// A work queue with a dead-letter queue: what an SQS event source mapping needs, and what the
/// local runner uses to emulate one. Delivery is at least once: a job comes back until it is
/// deleted, and handlers must tolerate seeing a job twice.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends one job, visible after `delay_secs`. A delay above [`MAX_DELAY_SECS`] is rejected
    /// with [`QueueError::Invalid`] (as SQS does; callers cap their backoff themselves), an empty
    /// body with [`QueueError::Invalid`], a body above [`MAX_BODY_BYTES`] with
    /// [`QueueError::TooLarge`]; nothing is sent then. Returns the job's message id.
    async fn send(&self, body: &str, delay_secs: u32) -> Result<String, QueueError>;

    /// Sends up to [`MAX_BATCH`] jobs `(body, delay_secs)` in one call. Each entry is checked and
    /// sent on its own: the answer holds one result per entry, in order, the message id or why
    /// that entry was refused. An empty batch or one above [`MAX_BATCH`] fails as a whole with
    /// [`QueueError::Invalid`], one whose valid bodies together exceed [`MAX_BODY_BYTES`] with
    /// [`QueueError::TooLarge`] (SQS limits the whole request); a failure of the service as a
    /// whole is [`QueueError::Transient`]. Nothing is sent when the batch fails as a whole.
    async fn send_batch(
        &self,
        jobs: &[(String, u32)],
    ) -> Result<Vec<Result<String, QueueError>>, QueueError>;

    /// Receives up to `max` (1..=[`MAX_BATCH`], else [`QueueError::Invalid`]) visible jobs. Each
    /// one returned is hidden for `visibility_timeout_secs` (at most
    /// [`MAX_VISIBILITY_TIMEOUT_SECS`]), gets a fresh receipt, and its receive count goes up by
    /// one. A job whose receive count would go above the queue's `max_receive_count` is moved
    /// to the dead-letter queue instead of being returned (the SQS redrive policy). Of
    /// concurrent receivers, no two get the same job while it is hidden.
    ///
    /// May return fewer jobs than are visible, even none (SQS short polling samples a subset of
    /// its servers; an adapter may long-poll): an empty answer does not prove the queue empty.
    async fn receive(
        &self,
        max: u32,
        visibility_timeout_secs: u32,
    ) -> Result<Vec<ReceivedJob>, QueueError>;

    /// Acknowledges a delivery: the job is removed and never delivered again. A receipt of an
    /// earlier delivery of a job still in the queue (it was received again since) also succeeds
    /// and deletes the job, as moto and SQS in practice do (SQS documents that such a delete may
    /// leave the job to be delivered again: still at least once). Deleting a job that is already
    /// gone succeeds (a retried delete is harmless). A malformed receipt, or one of another
    /// queue, is [`QueueError::InvalidReceipt`].
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;

    /// Hides the job of this delivery for `visibility_timeout_secs` from now (0 makes it visible
    /// at once: "retry now"; at most [`MAX_VISIBILITY_TIMEOUT_SECS`]). Any receipt of a job still
    /// in the queue works, as on moto; use the latest. A receipt of a deleted job, a malformed one
    /// or one of another queue is [`QueueError::InvalidReceipt`].
    async fn change_visibility(
        &self,
        receipt: &str,
        visibility_timeout_secs: u32,
    ) -> Result<(), QueueError>;

    /// Up to `max` (1..=[`MAX_BATCH`]) jobs from the dead-letter queue, for inspection. They stay
    /// there, visible (on SQS each look is a receive with visibility 0 and raises their receive
    /// count: compare bodies, not counts). Their receipts are for no other operation.
    async fn dead_letters(&self, max: u32) -> Result<Vec<ReceivedJob>, QueueError>;

    /// Moves every job from the dead-letter queue back to the queue, visible at once with its
    /// receive count reset (on SQS it is sent anew, so it gets a new message id; the embedded
    /// queue keeps the id); returns how many moved. A job is sent to the queue before it leaves
    /// the dead-letter queue, so a failure half-way may duplicate a job but never loses one.
    async fn redrive(&self) -> Result<u32, QueueError>;

    /// How many jobs the queue and its dead-letter queue hold, by state.
    async fn depth(&self) -> Result<QueueDepth, QueueError>;
}

/// Checks a body against the queue limits (shared by the adapters).
pub(crate) fn check_body(body: &str) -> Result<(), QueueError> {
    if body.is_empty() {
        return Err(QueueError::Invalid("empty body".into()));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(QueueError::TooLarge(body.len()));
    }
    Ok(())
}

/// Checks the bodies of a batch's valid entries together against [`MAX_BODY_BYTES`] (shared by
/// the adapters).
pub(crate) fn check_batch_size<'a>(
    bodies: impl IntoIterator<Item = &'a str>,
) -> Result<(), QueueError> {
    let total: usize = bodies.into_iter().map(str::len).sum();
    if total > MAX_BODY_BYTES {
        return Err(QueueError::TooLarge(total));
    }
    Ok(())
}

/// Checks a delay against [`MAX_DELAY_SECS`] (shared by the adapters).
pub(crate) fn check_delay(delay_secs: u32) -> Result<(), QueueError> {
    if delay_secs > MAX_DELAY_SECS {
        return Err(QueueError::Invalid(format!(
            "delay {delay_secs}s is above {MAX_DELAY_SECS}s"
        )));
    }
    Ok(())
}

/// Checks a visibility timeout against [`MAX_VISIBILITY_TIMEOUT_SECS`] (shared by the adapters).
pub(crate) fn check_visibility(secs: u32) -> Result<(), QueueError> {
    if secs > MAX_VISIBILITY_TIMEOUT_SECS {
        return Err(QueueError::Invalid(format!(
            "visibility timeout {secs}s is above {MAX_VISIBILITY_TIMEOUT_SECS}s"
        )));
    }
    Ok(())
}

/// Checks a receive or batch size against 1..=[`MAX_BATCH`] (shared by the adapters).
pub(crate) fn check_batch(n: usize) -> Result<(), QueueError> {
    if n == 0 || n > MAX_BATCH {
        return Err(QueueError::Invalid(format!(
            "batch of {n}: must be 1..={MAX_BATCH}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Protection of the HTTP API: rate limits, idempotency keys, verifications, queries
// ---------------------------------------------------------------------------------------------

/// The result of [`RateLimiter::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// Taken: this many units of the window are used now, this one included.
    Allowed {
        /// Units used in the window so far.
        used: u32,
    },
    /// The window is full; it ends in this many milliseconds.
    Limited {
        /// Milliseconds until the window ends (at least 1).
        retry_after_ms: i64,
    },
}

/// Fixed-window counters: at most `limit` acquisitions per key per window.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Takes one unit of the window of `window_ms` (windows start at multiples of `window_ms`
    /// since the epoch) that holds `now_ms`, for `key`, if fewer than `limit` were taken in it.
    /// Atomic: of N concurrent acquisitions against an empty window and a limit L, exactly
    /// min(N, L) are [`Acquired::Allowed`]. A refused acquisition changes nothing. `key` holds no
    /// personal data (callers pass lookup tokens, never numbers).
    async fn acquire(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Acquired, StoreError>;
}

/// The start of the window of `window_ms` that holds `now_ms`.
pub fn window_start(now_ms: i64, window_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(window_ms.max(1))
}

/// A response kept for an idempotency key, replayed to a repeated request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// The body (no personal data: Herald's answers carry ids and masked numbers only).
    pub body: String,
}

/// The result of [`IdempotencyStore::begin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// This request holds the key now: do the work, then complete or release it.
    Started {
        /// When this use of the key began: `now_ms` of the begin that created the record, kept
        /// when a request with the same fingerprint takes over a record whose lease ended (the
        /// first request died half-way, or let go of the key with [`IdempotencyStore::release`]),
        /// so that the retry derives the same ids the first one recorded; a new use (no record,
        /// an expired one, or a dead or released one of another fingerprint) begins at `now_ms`.
        since_ms: i64,
    },
    /// Another request with this key and payload is being handled.
    InProgress,
    /// A request with this key and payload finished; here is its response.
    Completed(StoredResponse),
    /// The key was used with another payload.
    Mismatch,
}

/// Idempotency keys: the first request with a key does the work, a repeat gets its response.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Begins a request with `key` (already scoped to the caller) and the `fingerprint` of its
    /// payload. When no live record has the key (none, or one expired at `now_ms`, or an
    /// in-progress one whose lease ended), writes an in-progress record leased until
    /// `lease_until_ms` and expiring at `expires_at_ms`, and answers [`Begun::Started`] with
    /// the time this use of the key began (kept from the dead record when it had the same
    /// fingerprint, else `now_ms`);
    /// otherwise [`Begun::Mismatch`] for another fingerprint, else [`Begun::InProgress`] or
    /// [`Begun::Completed`]. Atomic: of concurrent begins of one key, exactly one is
    /// [`Begun::Started`].
    async fn begin(
        &self,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
        lease_until_ms: i64,
        expires_at_ms: i64,
    ) -> Result<Begun, StoreError>;

    /// Completes the in-progress record of `key` and `fingerprint` with `response`. Does nothing
    /// when the record is not in progress with that fingerprint (it expired and was taken over).
    async fn complete(
        &self,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError>;

    /// Lets go of the in-progress record of `key` and `fingerprint` (the request answered
    /// something that is not kept, `429` or `5xx`): its lease ends now, so a retry with the key
    /// starts again at once, and the record stays with when its use began. A retry with the
    /// same fingerprint takes it over as [`Begun::Started`] with that start (and so derives the
    /// ids the request did: a write the store committed though it answered an error is found,
    /// not made twice); another fingerprint begins a new use over it. Completed records, and
    /// records of another fingerprint, are not touched.
    async fn release(&self, key: &str, fingerprint: &str) -> Result<(), StoreError>;
}

/// The result of [`VerificationStore::update_verification`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationApplied {
    /// The record moved; here it is after the change.
    Applied(crate::domain::Verification),
    /// The record did not move; here it is as is.
    Ignored(crate::domain::Verification),
    /// No verification has that id.
    NotFound,
}

/// How [`VerificationStore::update_verification`] decides a record's next version.
pub type DecideVerification<'a> = dyn for<'v> Fn(&'v crate::domain::Verification) -> Option<crate::domain::Verification>
    + Send
    + Sync
    + 'a;

/// One-time-code verifications (codes stored only as keyed hashes).
#[async_trait]
pub trait VerificationStore: Send + Sync {
    /// Records a new verification. Create-if-absent: [`StoreError::Conflict`] when the id exists.
    async fn insert_verification(
        &self,
        verification: &crate::domain::Verification,
    ) -> Result<(), StoreError>;

    /// The verification with this id, if any.
    async fn get_verification(
        &self,
        id: &crate::domain::VerificationId,
    ) -> Result<Option<crate::domain::Verification>, StoreError>;

    /// The atomic read-decide-write of one verification, as [`Records::update_record`]:
    /// of concurrent updates each is decided against the record as the previous one left it
    /// (so of N concurrent wrong checks against a limit, no more than the limit are counted
    /// and exactly one locks it). `decide` may run more than once. The id, caller and
    /// `created_at_ms` never change.
    async fn update_verification(
        &self,
        id: &crate::domain::VerificationId,
        decide: &DecideVerification<'_>,
    ) -> Result<VerificationApplied, StoreError>;
}

/// Where a page of [`MessageQueries::list_messages_by_caller`] continues.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PageCursor {
    /// `created_at_ms` of the last message returned.
    pub created_at_ms: i64,
    /// Its id.
    pub id: MessageId,
}

/// A query of one caller's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageQuery {
    /// Whose messages.
    pub caller: String,
    /// Created at or after (Unix milliseconds).
    pub from_ms: i64,
    /// Created before (Unix milliseconds).
    pub to_ms: i64,
    /// Only messages with this status.
    pub status: Option<MessageStatus>,
    /// Continue after this message (from the previous page).
    pub after: Option<PageCursor>,
    /// Messages per page (1..=1000).
    pub limit: u32,
}

/// A page of messages, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePage {
    /// The messages.
    pub messages: Vec<Message>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<PageCursor>,
}

/// Queries of messages by caller (the `by_caller` index).
#[async_trait]
pub trait MessageQueries: Send + Sync {
    /// Up to `q.limit` messages of `q.caller` created in `[q.from_ms, q.to_ms)`, with
    /// `q.status` when given, newest first (ties by id, descending), strictly after `q.after`
    /// in that order; `next` is set when more may follow. Never another caller's messages.
    /// Eventually consistent on DynamoDB.
    async fn list_messages_by_caller(&self, q: &MessageQuery) -> Result<MessagePage, StoreError>;
}

/// Every port of the API's protection, implemented by one store (SQLite or DynamoDB).
pub trait ProtectionStore:
    RateLimiter + IdempotencyStore + VerificationStore + MessageQueries
{
}

impl<T: RateLimiter + IdempotencyStore + VerificationStore + MessageQueries> ProtectionStore for T {}

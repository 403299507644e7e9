//! What every record kind (a message, a call, and the channels to come) shares about its
//! attempts: the claim with its lease, the window of an attempt whose outcome is unknown, and the
//! move to the next attempt. Written once here, over [`Attempted`]; a kind says only what its
//! statuses are and what "open" means for it.

use super::message::ClaimRefusal;

/// A record kind's status: Herald's own `accepted` and `retrying`, then what Twilio reports.
pub trait RecordStatus: Copy + Eq + std::fmt::Debug + Send + Sync + 'static {
    /// Recorded, no attempt made yet.
    const ACCEPTED: Self;
    /// Waiting for its next attempt.
    const RETRYING: Self;
    /// Whether the status is final.
    fn is_terminal(self) -> bool;
    /// Its rank: a record only moves to a status of a higher rank (stored beside the record).
    fn rank(self) -> u8;
    /// The status as the API spells it.
    fn as_str(self) -> &'static str;
}

/// The attempt bookkeeping of a record: what the attempt engine ([`crate::engine`]) reads and
/// writes of every record kind, held once in each record ([`Attempted::attempts`]) and stored
/// flattened into the record's document (the fields stand beside the record's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attempts {
    /// The attempt the record waits for or has made (1 for the first).
    pub attempt: u32,
    /// When the record was accepted, Unix milliseconds (never changed by
    /// [`Attempted::set_attempts`]).
    pub created_at_ms: i64,
    /// When the record last changed, Unix milliseconds.
    pub updated_at_ms: i64,
    /// When the attempt in flight was claimed (a sender is handing it to Twilio).
    #[serde(default)]
    pub claimed_at_ms: Option<i64>,
    /// Until when that claim holds; a later claim means its holder died mid-attempt.
    #[serde(default)]
    pub claimed_until_ms: Option<i64>,
    /// Set when an earlier attempt may have reached Twilio without Herald learning of it (a
    /// timeout, a dropped connection, a 5xx, a crash): when that attempt started. The next
    /// attempt first asks Twilio for the record's resource created between this time and
    /// [`ambiguous_until_ms`](Self::ambiguous_until_ms), so a retry never sends twice.
    #[serde(default)]
    pub ambiguous_since_ms: Option<i64>,
    /// When the ambiguous attempt (or the latest of several) ended: its failure was seen, or its
    /// lease ran out. Records stored before this field have none: their window ends at
    /// `ambiguous_since_ms` plus the attempt lease.
    #[serde(default)]
    pub ambiguous_until_ms: Option<i64>,
    /// The first of the attempts whose outcome is unknown since the last known one: a Twilio
    /// resource one of them owns (a status callback registered it) is the record's own.
    /// `None` on records stored before it was kept.
    #[serde(default)]
    pub ambiguous_from_attempt: Option<u32>,
    /// When the next attempt is due, while retrying.
    #[serde(default)]
    pub next_attempt_at_ms: Option<i64>,
    /// When an earlier attempt that may have created a Twilio resource the record never took
    /// for its own started: the record sent again without knowing which resource was its own
    /// (the reconcile was ambiguous). Never cleared: such a resource stays possibly the
    /// record's, and no identical record may adopt it ([`crate::reconcile`], step 5).
    #[serde(default)]
    pub doubt_since_ms: Option<i64>,
    /// When the latest such attempt ended.
    #[serde(default)]
    pub doubt_until_ms: Option<i64>,
}

impl Attempts {
    /// A new record's bookkeeping: waiting for its first attempt, accepted at `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        Self {
            attempt: 1,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            claimed_at_ms: None,
            claimed_until_ms: None,
            ambiguous_since_ms: None,
            ambiguous_until_ms: None,
            ambiguous_from_attempt: None,
            next_attempt_at_ms: None,
            doubt_since_ms: None,
            doubt_until_ms: None,
        }
    }

    /// A new record's bookkeeping whose first attempt is claimed by whoever records it (an API
    /// request that makes the attempt at once), for `lease_ms`.
    pub fn claimed(now_ms: i64, lease_ms: i64) -> Self {
        Self {
            claimed_at_ms: Some(now_ms),
            claimed_until_ms: Some(now_ms + lease_ms),
            ..Self::new(now_ms)
        }
    }

    /// Twilio has the record's resource, or the record is final: nothing is in flight, unknown
    /// or due any more.
    pub fn settle(&mut self) {
        self.claimed_at_ms = None;
        self.claimed_until_ms = None;
        self.ambiguous_since_ms = None;
        self.ambiguous_until_ms = None;
        self.ambiguous_from_attempt = None;
        self.next_attempt_at_ms = None;
    }

    /// The span of time in which an attempt of the record may have created a Twilio resource
    /// the record does not own: its attempts in doubt, its ambiguous attempt still to resolve,
    /// and the attempt its claim is held for (its outcome not recorded yet). `None` when every
    /// attempt's outcome is known. Stores index records by it, so an identical record's
    /// reconcile can tell when a resource could be another's ([`crate::reconcile`], step 5).
    /// An ambiguous window stored without its end is open-ended.
    pub fn in_doubt(&self) -> Option<(i64, i64)> {
        let ambiguous = self
            .ambiguous_since_ms
            .map(|s| (s, self.ambiguous_until_ms.unwrap_or(i64::MAX)));
        let doubt = self
            .doubt_since_ms
            .map(|s| (s, self.doubt_until_ms.unwrap_or(i64::MAX)));
        let claim = self
            .claimed_at_ms
            .map(|s| (s, self.claimed_until_ms.unwrap_or(i64::MAX)));
        [ambiguous, doubt, claim]
            .into_iter()
            .flatten()
            .reduce(|(s1, u1), (s2, u2)| (s1.min(s2), u1.max(u2)))
    }

    /// Puts `window`, an ambiguous attempt's, in doubt for good (merged with the doubt held).
    pub fn doubt(&mut self, (since, until): (i64, i64)) {
        self.doubt_since_ms = Some(self.doubt_since_ms.map_or(since, |s| s.min(since)));
        self.doubt_until_ms = Some(self.doubt_until_ms.map_or(until, |u| u.max(until)));
    }
}

/// A failed attempt that will be tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryChange {
    /// The attempt that failed: the change applies only while the record is at it.
    pub attempt: u32,
    /// Twilio's error code, if any.
    pub error_code: Option<u32>,
    /// Sanitized reason.
    pub error_reason: Option<String>,
    /// When the failed attempt may nevertheless have reached Twilio, the time it started.
    pub ambiguous_since_ms: Option<i64>,
    /// And then the time it ended (its failure was seen).
    pub ambiguous_until_ms: Option<i64>,
    /// When the next attempt is due.
    pub next_attempt_at_ms: i64,
    /// When it happened.
    pub at_ms: i64,
}

/// A report about one attempt of a record (a status callback, or Twilio's answer to the
/// create), applied atomically by the store: a message's [`StatusChange`], a call's
/// [`CallReport`].
///
/// [`StatusChange`]: super::StatusChange
/// [`CallReport`]: super::CallReport
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport<S> {
    /// The attempt it is about: it applies only while the record is at that attempt.
    pub attempt: u32,
    /// The reported status; applies only by the transition rule.
    pub status: S,
    /// Twilio's id, stored when given.
    pub twilio_sid: Option<String>,
    /// Twilio's error code, stored when given.
    pub error_code: Option<u32>,
    /// Sanitized reason, stored when given.
    pub error_reason: Option<String>,
    /// A call's talk time (`CallDuration`), stored when given; a message has none.
    pub duration_seconds: Option<u32>,
    /// When it happened, Unix milliseconds.
    pub at_ms: i64,
}

impl<S> AttemptReport<S> {
    /// A report of `status` for `attempt` at `at_ms`, with nothing else.
    pub fn new(attempt: u32, status: S, at_ms: i64) -> Self {
        Self {
            attempt,
            status,
            twilio_sid: None,
            error_code: None,
            error_reason: None,
            duration_seconds: None,
            at_ms,
        }
    }
}

/// A record that is sent attempt by attempt.
pub trait Attempted: Clone + Send + Sync + 'static {
    /// Its status.
    type Status: RecordStatus;
    /// Its id (`msg_…`, `call_…`).
    type Id: Clone + std::fmt::Display + Send + Sync + 'static;
    /// Its id.
    fn record_id(&self) -> &Self::Id;
    /// Where it is now.
    fn status(&self) -> Self::Status;
    /// Who asked for it (the API caller's identity).
    fn caller(&self) -> &str;
    /// Who it is for.
    fn to(&self) -> &super::Recipient;
    /// Twilio's SID of its current attempt, once Twilio accepted it.
    fn twilio_sid(&self) -> Option<&str>;
    /// Twilio's error code of its last failure.
    fn error_code(&self) -> Option<u32>;
    /// A sanitized reason for its last failure.
    fn error_reason(&self) -> Option<&str>;
    /// The template it was rendered from, if any.
    fn template(&self) -> Option<&str>;
    /// Its attempt bookkeeping.
    fn attempts(&self) -> Attempts;
    /// Writes the bookkeeping back.
    fn set_attempts(&mut self, a: Attempts);
    /// Gives the record `of`'s id and creation time (a store's read-decide-write never lets a
    /// decision change them).
    fn keep_identity(&mut self, of: &Self);
    /// Whether another attempt may still be made: not final, and (for a call) not done.
    fn is_open(&self) -> bool {
        !self.status().is_terminal()
    }
    /// Moves the record to `retrying` after a failed attempt: its error kept, the failed
    /// attempt's Twilio SID forgotten (that resource is history; its late reports must not
    /// match the next attempt).
    fn enter_retrying(&mut self, error_code: Option<u32>, error_reason: Option<String>);

    /// The keyed hash shared by the records whose Twilio resources match each other's
    /// ([`crate::reconcile`], step 1): for a message its recipient and body, for a call its
    /// callee. `None` for a record stored before it was kept.
    fn match_token(&self) -> Option<&crate::crypto::LookupToken>;

    /// Whether the record waits for a sender to make an attempt.
    fn is_waiting(&self) -> bool {
        let s = self.status();
        s == Self::Status::ACCEPTED || s == Self::Status::RETRYING
    }

    /// The record after claiming `attempt` at `now_ms` for `lease_ms` ([`claimed`]).
    fn claimed(&self, attempt: u32, now_ms: i64, lease_ms: i64) -> Result<Self, ClaimRefusal> {
        claimed(self, attempt, now_ms, lease_ms)
    }

    /// The record after `change` schedules the next attempt ([`retried`]).
    fn retried(&self, change: &RetryChange) -> Option<Self> {
        retried(self, change)
    }

    /// The window of an ambiguous earlier attempt ([`ambiguous_window`]).
    fn ambiguous_window(&self, lease_ms: i64) -> Option<(i64, i64)> {
        ambiguous_window(self, lease_ms)
    }
}

/// Writes what every record kind's status has, from its `ALL`, `rank` and `as_str`: whether it
/// is final, the transition rule, [`RecordStatus`], `Display` and `FromStr` (the API's
/// spelling).
macro_rules! record_status {
    ($status:ty) => {
        impl $status {
            /// Whether the status is final: no attempt is made again. Every final status but
            /// `unconfirmed` sticks; `unconfirmed` still moves to Twilio's true final status when
            /// it reports late ([`Self::transition`]).
            pub fn is_terminal(self) -> bool {
                self.rank() >= $crate::domain::message::UNCONFIRMED_RANK
            }

            /// What a report of `next` does to a record that is `self`: it moves up by rank, and
            /// a final status sticks, except `unconfirmed`, which Twilio's true final status
            /// replaces.
            pub fn transition(self, next: Self) -> $crate::domain::message::Transition {
                if (!self.is_terminal() || self == Self::Unconfirmed) && next.rank() > self.rank() {
                    $crate::domain::message::Transition::Apply
                } else {
                    $crate::domain::message::Transition::EventOnly
                }
            }
        }

        impl $crate::domain::attempt::RecordStatus for $status {
            const ACCEPTED: Self = Self::Accepted;
            const RETRYING: Self = Self::Retrying;
            fn is_terminal(self) -> bool {
                <$status>::is_terminal(self)
            }
            fn as_str(self) -> &'static str {
                <$status>::as_str(self)
            }
            fn rank(self) -> u8 {
                <$status>::rank(self)
            }
        }

        impl std::fmt::Display for $status {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $status {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|st| st.as_str() == s)
                    .ok_or(())
            }
        }
    };
}
pub(crate) use record_status;

/// The record after claiming `attempt` at `now_ms` for `lease_ms`: only an open, waiting record
/// at exactly that attempt, not held by a live claim, can be claimed. Taking over an expired
/// claim marks the attempt ambiguous (its holder may have reached Twilio at any time while it
/// held the claim).
pub fn claimed<R: Attempted>(
    r: &R,
    attempt: u32,
    now_ms: i64,
    lease_ms: i64,
) -> Result<R, ClaimRefusal> {
    let held = r.attempts();
    if held.attempt != attempt || !r.is_waiting() || !r.is_open() {
        return Err(ClaimRefusal::Stale);
    }
    if let Some(until_ms) = held.claimed_until_ms
        && until_ms > now_ms
    {
        return Err(ClaimRefusal::Busy { until_ms });
    }
    let mut a = held;
    if held.claimed_until_ms.is_some() {
        if held.ambiguous_since_ms.is_none() {
            a.ambiguous_from_attempt = Some(held.attempt);
        }
        a.ambiguous_since_ms = held.ambiguous_since_ms.or(held.claimed_at_ms);
        a.ambiguous_until_ms = held.ambiguous_until_ms.max(held.claimed_until_ms);
    }
    a.claimed_at_ms = Some(now_ms);
    a.claimed_until_ms = Some(now_ms.saturating_add(lease_ms));
    a.updated_at_ms = now_ms;
    let mut next = r.clone();
    next.set_attempts(a);
    Ok(next)
}

/// The record after `change` schedules the next attempt, or `None` when the record is not at
/// that attempt or cannot take another (final, or a call that is done).
pub fn retried<R: Attempted>(r: &R, change: &RetryChange) -> Option<R> {
    let held = r.attempts();
    if held.attempt != change.attempt || !r.is_open() {
        return None;
    }
    let mut next = r.clone();
    next.enter_retrying(change.error_code, change.error_reason.clone());
    let mut a = held;
    a.attempt += 1;
    // The windows of several ambiguous attempts merge: the earliest start, the latest end.
    (a.ambiguous_since_ms, a.ambiguous_until_ms) = merged_ambiguity(
        (held.ambiguous_since_ms, held.ambiguous_until_ms),
        (change.ambiguous_since_ms, change.ambiguous_until_ms),
    );
    a.ambiguous_from_attempt = match (held.ambiguous_since_ms, change.ambiguous_since_ms) {
        (_, None) => None,
        (None, Some(_)) => Some(change.attempt),
        (Some(_), Some(_)) => held.ambiguous_from_attempt,
    };
    a.claimed_at_ms = None;
    a.claimed_until_ms = None;
    a.next_attempt_at_ms = Some(change.next_attempt_at_ms);
    a.updated_at_ms = change.at_ms;
    next.set_attempts(a);
    Some(next)
}

/// The earlier attempts of `r` whose outcome is unknown: a resource one of them owns is `r`'s
/// own (empty when none is, or when a record stored before this was kept cannot tell).
pub fn ambiguous_attempts<R: Attempted>(r: &R) -> std::ops::Range<u32> {
    let a = r.attempts();
    match (a.ambiguous_since_ms, a.ambiguous_from_attempt) {
        (Some(_), Some(from)) => from..a.attempt,
        _ => 0..0,
    }
}

/// The window in which an ambiguous earlier attempt of `r` may have reached Twilio, `(since,
/// until)` in Unix ms, or `None` when no attempt is ambiguous. A record stored without an end
/// ends its window one attempt lease after it began.
pub fn ambiguous_window<R: Attempted>(r: &R, lease_ms: i64) -> Option<(i64, i64)> {
    let a = r.attempts();
    let since = a.ambiguous_since_ms?;
    let until = a
        .ambiguous_until_ms
        .unwrap_or_else(|| since.saturating_add(lease_ms));
    Some((since, until.max(since)))
}

/// The window `(since, until)` of the ambiguous attempts of a record after another one, `new`,
/// ends: the windows merge (the earliest start, the latest end); no ambiguity when `new` has
/// none (its attempt's outcome is known).
fn merged_ambiguity(
    held: (Option<i64>, Option<i64>),
    new: (Option<i64>, Option<i64>),
) -> (Option<i64>, Option<i64>) {
    let since = new.0.map(|t| held.0.map_or(t, |e| e.min(t)));
    (since, since.and(new.1.max(held.1)))
}

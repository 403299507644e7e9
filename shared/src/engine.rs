//! The one attempt engine every channel goes through: a message ([`crate::delivery`]), a voice
//! call ([`crate::calls`]), and the channels to come. Claim, send, resolve an unknown outcome,
//! record, schedule the retry and sweep are written here once, generic over a [`Channel`]; a
//! channel says only what differs: its Twilio resource, what matches, what is final, its retry
//! policy.
//!
//! An attempt is *claimed* in the store before Twilio is called (a lease: a redelivered or
//! duplicated job finds it taken or done); its result is recorded before the job is
//! acknowledged; a failure for now schedules the next attempt in the store *then* puts its job on
//! the retry queue (a crash in between is repaired by the redelivered job, or by the sweeper).
//! When an attempt's outcome is unknown (a timeout, a dropped connection, a 5xx, a claim whose
//! holder died) the next attempt first asks Twilio for the resources to that recipient from that
//! sender, and adopts one only when it is surely the record's own ([`crate::reconcile`] has the
//! rule). Every Twilio SID a create answers with is registered for its record before the result
//! is recorded, so no two records ever hold one Twilio resource.
//!
//! The choices every channel shares (the copies messages and calls once were had drifted apart):
//! - **A retried record forgets its SID.** `twilio_sid` is the current attempt's resource; the
//!   failed attempt's is history (the timeline keeps it), and its late reports must not move the
//!   next attempt.
//! - **When Twilio cannot be asked about an ambiguous attempt, the attempt is used up** (it fails
//!   for now, by the class of Twilio's error, and the ambiguity is kept for the next one), so a
//!   long outage still ends in a final state. Only unreadable credentials (nothing can have been
//!   sent, no fault of the record) and store failures interrupt an attempt without using it.
//! - **A store's read-decide-write gives up** after [`crate::ports::MAX_UPDATE_ROUNDS`] rounds of
//!   contention, on every backend, with a transient error: the job is redelivered.
//! - **A repeated report re-enqueues a lost successor.** When a report (a callback, the
//!   sweeper's look-up) finds the record already moved to the next attempt, unclaimed, its job
//!   may have been lost with the first report's answer: it is queued again (a duplicate job is
//!   harmless, the claim decides).
//! - **The sweeper treats every channel alike**: it re-enqueues overdue waiting records (a lost
//!   job, or an attempt whose holder died and whose lease ran out: the claim takes it over as
//!   ambiguous), and asks Twilio about resources it accepted whose final report never came,
//!   applying what it finds only when the resource's recipient is the record's own.
//! - **Nothing stays in flight forever.** A record in one of the channel's
//!   [`IN_FLIGHT`](Channel::IN_FLIGHT) statuses whose attempt Twilio accepted more than
//!   `FINAL_STATE_AFTER_SECS` ago is asked about one last time; unless that moves it, the
//!   sweeper finishes it `unconfirmed` ([`finish_unconfirmed`]): final, never retried (Twilio may
//!   have delivered it), and still moved to Twilio's true final status by a late report.
//!   *When Twilio accepted the attempt* is the record's `updated_at_ms`: an in-flight record's
//!   last change is Twilio's acceptance of the current attempt (its `queued`, which settles the
//!   claim) or a later report of it, never earlier; the claim fields that would say when the
//!   attempt started are cleared once Twilio has it, and `created_at_ms` is the first attempt's.
//!   So a record is finished no sooner than that long after Twilio accepted it, and a resource
//!   that still progresses (`queued`, then `sent`) gets the whole wait again from its latest
//!   report.

use async_trait::async_trait;

use crate::crypto::{CryptoError, Sealed};
use crate::delivery::{Job, JobOutcome, MAX_QUEUE_DELAY_SECS};
use crate::domain::event::EVENT_RETENTION_MS;
use crate::domain::{Attempted, Event, EventKind, RecordStatus, RetryChange, Subject};
use crate::ports::{Applied, Claim, QueueError, Records, SidOwner, StoreError, TwilioCredentials};
use crate::reconcile::{self, Decision, LookupError, TwilioResource};
use crate::secret::Secret;
use crate::service::Services;
use crate::twilio::{Listing, RetryClass, TwilioError, describe_code};

/// What became of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<S> {
    /// Twilio has it (accepted now, or found from an earlier attempt); its status.
    Submitted(S),
    /// Twilio or the network failed for now; another attempt is scheduled.
    Deferred,
    /// Twilio refused it for good, or every attempt was used; the code.
    Failed(Option<u32>),
    /// The attempt could not be finished (store or queue unavailable, credentials unreadable);
    /// the claim will expire and the attempt be made again.
    Interrupted,
    /// The sender died mid-attempt (failure injection): nothing after this point happened.
    Crashed,
}

/// What differs between record kinds. Everything else is the engine's.
#[async_trait]
pub trait Channel: Send + Sync + 'static {
    /// The stored record.
    type Record: Attempted + std::fmt::Debug;
    /// Where the records are.
    type Store: Records<Self::Record> + ?Sized;
    /// The Twilio resource an attempt creates.
    type Resource: TwilioResource + Send + Sync + 'static;
    /// A report of the resource's status (a callback, a create's answer, a look-up).
    type Report: Send + Sync;

    /// `sms`, `voice`: logs, and the reconcile metrics' `Channel` dimension.
    const NAME: &'static str;
    /// The log field that carries the record's id (`message_id`, `call_id`).
    const SPAN_ID_FIELD: &'static str;
    /// The metric of a resource created (or adopted).
    const SUBMITTED_METRIC: &'static str;
    /// The metric of an attempt that will be made again.
    const RETRIES_METRIC: &'static str;
    /// The metric of an attempt failed for good (dimension `TwilioCode`).
    const FAILURES_METRIC: &'static str;
    /// The statuses of a resource Twilio has whose final report may still come: the sweeper
    /// asks Twilio about records that stay in one too long.
    const IN_FLIGHT: &'static [<Self::Record as Attempted>::Status];

    /// The records' store.
    fn store(svc: &Services) -> &Self::Store;
    /// The queue job of attempt `attempt` of record `id`.
    fn job(id: &<Self::Record as Attempted>::Id, attempt: u32, not_before_ms: Option<i64>) -> Job;
    /// Whether a final status is a failure (the API answers it as such).
    fn is_failure(status: <Self::Record as Attempted>::Status) -> bool;
    /// How many attempts a failure of this class allows in all.
    fn attempts_allowed(svc: &Services, class: RetryClass) -> u32;

    /// The record's sealed text (a message's body, a call's spoken text).
    fn text(r: &Self::Record) -> &Sealed;
    /// Makes the attempt `r` was claimed for ([`make_attempt`]), in the record's span.
    async fn attempt(
        svc: &Services,
        r: &Self::Record,
    ) -> Outcome<<Self::Record as Attempted>::Status>;
    /// Creates the attempt's resource at Twilio.
    async fn create(
        svc: &Services,
        r: &Self::Record,
        o: &Opened,
    ) -> Result<Self::Resource, TwilioError>;
    /// The resources Twilio holds to the record's recipient from Herald's sender, or `None` when
    /// none can exist (no caller ID to call from).
    async fn list(
        svc: &Services,
        creds: &TwilioCredentials,
        o: &Opened,
    ) -> Result<Option<Listing<Self::Resource>>, TwilioError>;
    /// Whether a listed resource is the record's by content: its `To`, its sender and, where
    /// Twilio shows it, its text.
    fn matches(svc: &Services, o: &Opened, res: &Self::Resource) -> bool;
    /// Fetches a resource by SID (the sweeper).
    async fn fetch(
        svc: &Services,
        creds: &TwilioCredentials,
        sid: &str,
    ) -> Result<Self::Resource, TwilioError>;
    /// The resource's recipient.
    fn resource_to(res: &Self::Resource) -> Option<&str>;

    /// The report of `res`, a resource of `r`'s current attempt, at `at_ms` (`None`: Twilio's
    /// status cannot be read).
    fn report_of(r: &Self::Record, res: &Self::Resource, at_ms: i64) -> Option<Self::Report>;
    /// The attempt a report is about.
    fn report_attempt(rep: &Self::Report) -> u32;
    /// The status a report gives, as the API spells it, and its code.
    fn report_summary(rep: &Self::Report) -> (&'static str, Option<u32>);
    /// The record after `rep` under the channel's rules and retry policy (`None`: it does not
    /// move). May move the record to its next attempt.
    fn reported(svc: &Services, r: &Self::Record, rep: &Self::Report) -> Option<Self::Record>;
    /// The record finished `unconfirmed` at `at_ms` (Twilio accepted its current attempt and no
    /// final report came in time), or `None` when the transition rule refuses it (the record is
    /// final already). Never a retry.
    fn unconfirmed(r: &Self::Record, at_ms: i64) -> Option<Self::Record>;
    /// The record once its current attempt failed for good at `at_ms`.
    fn failed(
        r: &Self::Record,
        code: Option<u32>,
        reason: String,
        at_ms: i64,
    ) -> Option<Self::Record>;
}

/// A record's personal data, opened for an attempt: never logged, never stored.
pub struct Opened {
    /// The recipient, E.164.
    pub to: Secret<String>,
    /// The text: a message's body, a call's spoken text.
    pub text: Secret<String>,
}

async fn open<K: Channel>(svc: &Services, r: &K::Record) -> Result<Opened, CryptoError> {
    let aad = id_of::<K>(r).to_string();
    Ok(Opened {
        to: svc.vault.open_string(&aad, &r.to().sealed).await?,
        text: svc.vault.open_string(&aad, K::text(r)).await?,
    })
}

/// The record's id.
fn id_of<K: Channel>(r: &K::Record) -> &<K::Record as Attempted>::Id {
    r.record_id()
}

/// The attempt lease, in milliseconds.
pub fn lease_ms(svc: &Services) -> i64 {
    i64::try_from(svc.config.attempt_lease.as_millis()).unwrap_or(i64::MAX)
}

/// A sanitized event about `r`'s current attempt.
pub fn event<K: Channel>(
    svc: &Services,
    r: &K::Record,
    kind: EventKind,
    status: Option<&str>,
    code: Option<u32>,
    sid: Option<String>,
    applied: bool,
) -> Event {
    let at_ms = svc.clock.now_ms();
    let attempt = r.attempts().attempt;
    Event {
        key: format!("{}:{}:{}", id_of::<K>(r), kind.as_str(), attempt),
        subject: Subject::from(id_of::<K>(r)),
        kind,
        status: status.map(str::to_owned),
        twilio_sid: sid,
        error_code: code,
        attempt,
        applied,
        at_ms,
        expires_at_ms: at_ms + EVENT_RETENTION_MS,
        country: r.to().country.clone(),
        sealed: None,
    }
}

/// Records an event; a failure is logged, never fatal (the record is the truth).
pub async fn record_event(svc: &Services, ev: &Event) {
    if let Err(e) = svc.events.record_event(ev).await {
        tracing::error!(event_kind = ev.kind.as_str(), error = %e, "could not record an event");
    }
}

/// Who owns the SIDs of `r`'s current attempt.
fn sid_owner<K: Channel>(r: &K::Record) -> SidOwner {
    SidOwner {
        record_id: id_of::<K>(r).to_string(),
        attempt: r.attempts().attempt,
    }
}

/// What the API answers for a record that is where `r` is.
pub fn outcome_of<K: Channel>(r: &K::Record) -> Outcome<<K::Record as Attempted>::Status> {
    let status = r.status();
    if status == RecordStatus::ACCEPTED {
        Outcome::Interrupted
    } else if status == RecordStatus::RETRYING {
        Outcome::Deferred
    } else if K::is_failure(status) {
        Outcome::Failed(r.error_code())
    } else {
        Outcome::Submitted(status)
    }
}

/// Puts the job for `r`'s current attempt on the retry queue, due at its next attempt time.
pub async fn enqueue<K: Channel>(svc: &Services, r: &K::Record) -> Result<(), QueueError> {
    let a = r.attempts();
    enqueue_due::<K>(svc, id_of::<K>(r), a.attempt, a.next_attempt_at_ms).await
}

async fn enqueue_due<K: Channel>(
    svc: &Services,
    id: &<K::Record as Attempted>::Id,
    attempt: u32,
    due_ms: Option<i64>,
) -> Result<(), QueueError> {
    let now = svc.clock.now_ms();
    let due = due_ms.unwrap_or(now);
    let wait_secs = u32::try_from(((due - now).max(0) + 999) / 1000).unwrap_or(u32::MAX);
    let job = K::job(
        id,
        attempt,
        (wait_secs > MAX_QUEUE_DELAY_SECS).then_some(due),
    );
    svc.retry_queue
        .send(&job.to_body(), wait_secs.min(MAX_QUEUE_DELAY_SECS))
        .await?;
    Ok(())
}

/// Handles a job for attempt `attempt` of record `id`: claims the attempt and makes it.
pub async fn process<K: Channel>(
    svc: &Services,
    id: &<K::Record as Attempted>::Id,
    attempt: u32,
    not_before_ms: Option<i64>,
) -> JobOutcome {
    let now = svc.clock.now_ms();
    if let Some(nb) = not_before_ms
        && nb > now
    {
        // A wait longer than the queue's delay limit: queued again until it is due.
        return match enqueue_due::<K>(svc, id, attempt, Some(nb)).await {
            Ok(()) => JobOutcome::Done,
            Err(_) => JobOutcome::Again,
        };
    }
    match K::store(svc).claim(id, attempt, now, lease_ms(svc)).await {
        Ok(Claim::Claimed(r)) => match make_attempt::<K>(svc, &r).await {
            Outcome::Interrupted => JobOutcome::Again,
            Outcome::Crashed => JobOutcome::Crashed,
            _ => JobOutcome::Done,
        },
        Ok(Claim::Busy { .. }) => JobOutcome::Again,
        Ok(Claim::Stale(r)) => {
            // Done, or moved on. If it waits for the next attempt, make sure that attempt's job
            // exists (this job may be the redelivery of one that died before enqueueing it); a
            // duplicate job is harmless, the claim decides.
            if waits_unclaimed_after::<K>(&r, attempt) && enqueue::<K>(svc, &r).await.is_err() {
                return JobOutcome::Again;
            }
            JobOutcome::Done
        }
        Ok(Claim::NotFound) => {
            tracing::warn!(record_id = %id, channel = K::NAME, "job for an unknown record");
            JobOutcome::Done
        }
        Err(e) => {
            tracing::error!(record_id = %id, error = %e, "store unavailable");
            JobOutcome::Again
        }
    }
}

/// Whether `r` moved on from `attempt` to the next one and waits for it, unclaimed.
fn waits_unclaimed_after<K: Channel>(r: &K::Record, attempt: u32) -> bool {
    let a = r.attempts();
    r.status() == RecordStatus::RETRYING
        && a.attempt == attempt + 1
        && a.claimed_until_ms.is_none()
        && r.is_open()
}

/// What became of the record a request recorded ([`submit`]).
#[derive(Debug)]
pub enum Submitted<R, S> {
    /// The record as it is now, and what became of its first attempt.
    Attempted(R, Outcome<S>),
    /// The request died once it had recorded it (failure injection: [`CrashPoint::Recorded`]).
    ///
    /// [`CrashPoint::Recorded`]: crate::service::CrashPoint::Recorded
    Died,
}

/// Makes the first attempt of the record a request just recorded, `recorded`; or, when `None`
/// (its id, `id`, was taken: an earlier try of the request recorded it and died), goes on with
/// that one ([`resume`]), so a retried request never records and sends another.
pub async fn submit<K: Channel>(
    svc: &Services,
    id: Option<&<K::Record as Attempted>::Id>,
    recorded: Option<K::Record>,
) -> Result<Submitted<K::Record, <K::Record as Attempted>::Status>, StoreError> {
    let Some(r) = recorded else {
        let Some(id) = id else {
            return Err(StoreError::Conflict);
        };
        let Some(earlier) = K::store(svc).get_record(id).await? else {
            return Err(StoreError::Conflict);
        };
        tracing::Span::current().record(K::SPAN_ID_FIELD, tracing::field::display(id));
        let (now, outcome) = resume::<K>(svc, earlier).await?;
        return Ok(Submitted::Attempted(now, outcome));
    };
    if svc
        .chaos
        .crashes_at(crate::service::CrashPoint::Recorded(1))
    {
        return Ok(Submitted::Died);
    }
    let outcome = K::attempt(svc, &r).await;
    Ok(Submitted::Attempted(r, outcome))
}

/// Goes on with a record an earlier try of a request recorded before it died: its first attempt
/// is made now unless someone made it already (the claim decides, so nothing is sent twice; a
/// claim its holder left is taken over as ambiguous, so Twilio is asked first). Returns the
/// record as it is now and what became of the attempt.
pub async fn resume<K: Channel>(
    svc: &Services,
    r: K::Record,
) -> Result<(K::Record, Outcome<<K::Record as Attempted>::Status>), StoreError> {
    if r.status() != RecordStatus::ACCEPTED {
        let outcome = outcome_of::<K>(&r);
        return Ok((r, outcome));
    }
    let now = svc.clock.now_ms();
    let a = r.attempts();
    match K::store(svc)
        .claim(id_of::<K>(&r), a.attempt, now, lease_ms(svc))
        .await?
    {
        Claim::Claimed(claimed) => {
            let outcome = make_attempt::<K>(svc, &claimed).await;
            Ok((claimed, outcome))
        }
        // Someone holds the attempt (a sender, or a try of the request that recorded it and
        // answered an error, or died): recorded, and its job is queued for when that claim
        // ends, so the attempt is made then if the holder did not make it (the claim decides;
        // the sweeper would, later).
        Claim::Busy { until_ms } => {
            if let Err(e) = enqueue_due::<K>(svc, id_of::<K>(&r), a.attempt, Some(until_ms)).await {
                tracing::error!(record_id = %id_of::<K>(&r), error = %e, "could not enqueue the held attempt; the sweeper will");
            }
            Ok((r, Outcome::Interrupted))
        }
        Claim::Stale(found) => {
            let outcome = outcome_of::<K>(&found);
            Ok((found, outcome))
        }
        Claim::NotFound => Err(StoreError::Corrupt("record vanished".into())),
    }
}

/// Makes the attempt `r` was claimed for: resolves an ambiguous earlier attempt, creates the
/// resource at Twilio, records the result and schedules what follows.
pub async fn make_attempt<K: Channel>(
    svc: &Services,
    r: &K::Record,
) -> Outcome<<K::Record as Attempted>::Status> {
    let id = id_of::<K>(r);
    let attempt = r.attempts().attempt;
    let opened = match open::<K>(svc, r).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(record_id = %id, error = %e, "cannot open the record");
            return Outcome::Interrupted;
        }
    };
    if crate::service::Chaos::strike(svc.chaos.crash_after_claim) {
        return Outcome::Crashed;
    }
    let started = svc.clock.now_ms();
    if let Some(window) = crate::domain::attempt::ambiguous_window(r, lease_ms(svc)) {
        match find_earlier::<K>(svc, r, &opened, window).await {
            Ok(Decision::Adopt(found)) => {
                tracing::info!(record_id = %id, attempt, channel = K::NAME, "an earlier attempt reached Twilio: adopted, not sent again");
                return record_created::<K>(svc, r, &found, true).await;
            }
            Ok(Decision::Settling) => return Outcome::Interrupted,
            Ok(Decision::SendAmbiguous(_)) => {
                if !put_in_doubt::<K>(svc, r, window).await {
                    return Outcome::Interrupted;
                }
                let status = r.status().as_str();
                let ev = event::<K>(
                    svc,
                    r,
                    EventKind::AmbiguousReconcile,
                    Some(status),
                    None,
                    None,
                    false,
                );
                record_event(svc, &ev).await;
            }
            Ok(Decision::Send) => {}
            Err(LookupError::Twilio(e)) => {
                // Twilio cannot be asked now: this attempt fails for now and uses up one of the
                // attempts (so a long outage still ends), keeping the ambiguity for the next.
                tracing::warn!(record_id = %id, error = %e, "could not check Twilio for an earlier attempt");
                return record_failure::<K>(svc, r, &e, Some(window)).await;
            }
            Err(LookupError::Store(e)) => {
                tracing::error!(record_id = %id, error = %e, "could not read Twilio SID ownership; the attempt will be made again");
                return Outcome::Interrupted;
            }
        }
    }
    match K::create(svc, r, &opened).await {
        Ok(_) if crate::service::Chaos::strike(svc.chaos.crash_after_send) => Outcome::Crashed,
        Ok(resource) => record_created::<K>(svc, r, &resource, false).await,
        Err(e) => {
            // An answer that may hide a created resource leaves this attempt's window behind.
            let window = is_ambiguous(&e).then(|| (started, svc.clock.now_ms()));
            record_failure::<K>(svc, r, &e, window).await
        }
    }
}

/// What Twilio holds of `r`'s ambiguous attempt: the listed resources that match the record and
/// were created within `window`, decided on by [`reconcile::decide`].
async fn find_earlier<K: Channel>(
    svc: &Services,
    r: &K::Record,
    o: &Opened,
    window: (i64, i64),
) -> Result<Decision<K::Resource>, LookupError> {
    let creds = svc.credentials.get().await.map_err(TwilioError::from)?;
    let Some(listed) = K::list(svc, &creds, o).await? else {
        return Ok(Decision::Send);
    };
    if listed.truncated {
        reconcile::note_truncated(K::NAME, &id_of::<K>(r).to_string());
    }
    let candidates: Vec<K::Resource> = listed
        .items
        .into_iter()
        .filter(|res| K::matches(svc, o, res))
        .filter(|res| reconcile::in_window(res.created_at_ms(), window))
        .collect();
    let own = id_of::<K>(r).to_string();
    let sibling_in_doubt = |t: i64| async move {
        let Some(token) = r.match_token() else {
            // Stored before match tokens: its siblings cannot be looked for.
            return Ok(true);
        };
        let found = K::store(svc)
            .records_in_doubt(
                token,
                t.saturating_sub(reconcile::TWILIO_TIME_SLACK_MS),
                reconcile::SIBLINGS_READ,
            )
            .await?;
        Ok(reconcile::covered_by_sibling(
            &found,
            reconcile::SIBLINGS_READ,
            &own,
            t,
        ))
    };
    Ok(reconcile::decide(
        svc,
        K::NAME,
        &sid_owner::<K>(r),
        crate::domain::attempt::ambiguous_attempts(r),
        candidates,
        svc.clock.now_ms(),
        sibling_in_doubt,
    )
    .await?)
}

/// Puts `window`, the ambiguous attempt's of `r` that is sent again without knowing which
/// resource was its own, in doubt for good before the send: a resource it may have left is then
/// never adopted by an identical record ([`reconcile`], step 5). Only while `r`'s claim holds;
/// `false` when it could not be written (the attempt is interrupted, nothing sent).
async fn put_in_doubt<K: Channel>(svc: &Services, r: &K::Record, window: (i64, i64)) -> bool {
    let held = r.attempts();
    let decide = |cur: &K::Record| {
        let a = cur.attempts();
        (a.attempt == held.attempt && a.claimed_at_ms == held.claimed_at_ms && cur.is_waiting())
            .then(|| {
                let mut next = cur.clone();
                let mut a = a;
                a.doubt(window);
                next.set_attempts(a);
                next
            })
    };
    match K::store(svc).update_record(id_of::<K>(r), &decide).await {
        Ok(Applied::Applied(_)) => true,
        Ok(_) => {
            tracing::info!(record_id = %id_of::<K>(r), "the claim was lost before the attempt was put in doubt: not sent");
            false
        }
        Err(e) => {
            tracing::error!(record_id = %id_of::<K>(r), error = %e, "could not put the attempt in doubt; it will be made again");
            false
        }
    }
}

/// Whether Twilio may have created the resource although the request failed.
fn is_ambiguous(e: &TwilioError) -> bool {
    match e {
        TwilioError::Timeout | TwilioError::Transport(_) | TwilioError::Decode(_) => true,
        TwilioError::Api { status, .. } => *status >= 500,
        TwilioError::Connect(_) | TwilioError::Credentials(_) => false,
    }
}

/// Records the resource Twilio created (or that was adopted) for `r`'s attempt: its SID
/// registered first, then its status applied under the channel's rules.
async fn record_created<K: Channel>(
    svc: &Services,
    r: &K::Record,
    res: &K::Resource,
    adopted: bool,
) -> Outcome<<K::Record as Attempted>::Status> {
    let id = id_of::<K>(r);
    if !adopted
        && let Err(e) = reconcile::register_created(
            svc,
            K::NAME,
            &sid_owner::<K>(r),
            res.sid(),
            svc.clock.now_ms(),
        )
        .await
    {
        // Twilio has it but it is not registered: record nothing, so the claim expires and the
        // next attempt reconciles, finds it unowned and adopts it.
        tracing::error!(record_id = %id, error = %e, "could not register the Twilio SID; the attempt will reconcile");
        return Outcome::Interrupted;
    }
    let Some(report) = K::report_of(r, res, svc.clock.now_ms()) else {
        tracing::error!(record_id = %id, "Twilio's answer has no readable status; the attempt will reconcile");
        return Outcome::Interrupted;
    };
    let (status, code) = K::report_summary(&report);
    match apply_report::<K>(svc, id, &report).await {
        Ok(Applied::Applied(now)) => {
            let mut ev = event::<K>(
                svc,
                r,
                EventKind::Submitted,
                Some(status),
                code,
                Some(res.sid().to_owned()),
                true,
            );
            if adopted {
                ev.key.push_str(":adopted");
            }
            record_event(svc, &ev).await;
            crate::telemetry::metric(K::SUBMITTED_METRIC, 1.0, "Count", &[]);
            outcome_of::<K>(&now)
        }
        Ok(Applied::Ignored(now)) => outcome_of::<K>(&now),
        Ok(Applied::NotFound) => Outcome::Interrupted,
        Err(e) => {
            // Twilio has it; its callbacks move the record on, and a claim taken over later
            // finds it by reconciling.
            tracing::error!(record_id = %id, error = %e, "could not record the result");
            Outcome::Interrupted
        }
    }
}

/// The full-jitter exponential backoff before attempt `failed_attempt + 1`
/// ([`crate::delivery::backoff`]) from `at_ms`, as a due time.
pub fn retry_at_ms(
    svc: &Services,
    failed_attempt: u32,
    class: RetryClass,
    retry_after: Option<std::time::Duration>,
    at_ms: i64,
) -> i64 {
    let wait = crate::delivery::backoff(
        failed_attempt,
        class,
        retry_after,
        svc.config.retry_base_delay,
        svc.config.retry_max_delay,
    );
    at_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
}

/// Records a failed attempt. `ambiguity` is the window in which the attempt may nevertheless
/// have reached Twilio (`None`: it surely did not), kept for the next attempt.
async fn record_failure<K: Channel>(
    svc: &Services,
    r: &K::Record,
    e: &TwilioError,
    ambiguity: Option<(i64, i64)>,
) -> Outcome<<K::Record as Attempted>::Status> {
    let id = id_of::<K>(r);
    let attempt = r.attempts().attempt;
    if let TwilioError::Credentials(se) = e {
        // Herald cannot read its own credentials (a refused or unset secret): nothing was sent,
        // and it is no fault of the record. The attempt is not used up: the claim expires and
        // the attempt is made again once the secret can be read.
        tracing::error!(record_id = %id, attempt, error = %se, "Twilio credentials unavailable: nothing sent, the attempt will be made again");
        return Outcome::Interrupted;
    }
    let class = e.retry_class();
    let code = e.code();
    let reason = e.to_string();
    let now = svc.clock.now_ms();
    if class.is_retryable() && attempt < K::attempts_allowed(svc, class) {
        let change = RetryChange {
            attempt,
            error_code: code,
            error_reason: Some(reason.clone()),
            ambiguous_since_ms: ambiguity.map(|(since, _)| since),
            ambiguous_until_ms: ambiguity.map(|(_, until)| until),
            next_attempt_at_ms: retry_at_ms(svc, attempt, class, e.retry_after(), now),
            at_ms: now,
        };
        tracing::warn!(record_id = %id, attempt, channel = K::NAME, twilio_code = ?code, error = %reason, "attempt deferred");
        crate::telemetry::metric(K::RETRIES_METRIC, 1.0, "Count", &[]);
        return match K::store(svc).schedule(id, &change).await {
            Ok(Applied::Applied(next)) => {
                let ev = event::<K>(
                    svc,
                    r,
                    EventKind::Deferred,
                    Some(next.status().as_str()),
                    code,
                    None,
                    true,
                );
                record_event(svc, &ev).await;
                if let Err(qe) = enqueue::<K>(svc, &next).await {
                    // The record waits for the next attempt: the redelivered job, or the
                    // sweeper, enqueues it again.
                    tracing::error!(record_id = %id, error = %qe, "could not enqueue the next attempt");
                    return Outcome::Interrupted;
                }
                Outcome::Deferred
            }
            Ok(_) => Outcome::Deferred,
            Err(se) => {
                tracing::error!(record_id = %id, error = %se, "could not record the failed attempt");
                Outcome::Interrupted
            }
        };
    }
    tracing::warn!(record_id = %id, attempt, channel = K::NAME, twilio_code = ?code, error = %reason, "attempt failed for good");
    crate::telemetry::metric(
        K::FAILURES_METRIC,
        1.0,
        "Count",
        &[(
            "TwilioCode",
            &code.map_or_else(|| "none".to_owned(), |c| c.to_string()),
        )],
    );
    let reason = match code {
        Some(c) if !class.is_retryable() => format!("Twilio error {c} ({})", describe_code(c)),
        _ => reason,
    };
    let failed_status = K::failed(r, code, reason.clone(), now).map(|f| f.status().as_str());
    match K::store(svc)
        .update_record(id, &|rec: &K::Record| {
            let mut next = K::failed(rec, code, reason.clone(), now)?;
            // An attempt whose outcome stays unknown stays in doubt for good: a resource it
            // may have left is never adopted by an identical record.
            let mut a = next.attempts();
            let held = crate::domain::attempt::ambiguous_window(rec, lease_ms(svc));
            for w in [held, ambiguity].into_iter().flatten() {
                a.doubt(w);
            }
            next.set_attempts(a);
            Some(next)
        })
        .await
    {
        Ok(applied) => {
            let kind = if class.is_retryable() {
                EventKind::Deferred
            } else {
                EventKind::Rejected
            };
            let done = matches!(applied, Applied::Applied(_));
            let ev = event::<K>(svc, r, kind, failed_status, code, None, done);
            record_event(svc, &ev).await;
            Outcome::Failed(code)
        }
        Err(se) => {
            tracing::error!(record_id = %id, error = %se, "could not record the failure");
            Outcome::Interrupted
        }
    }
}

/// Applies a status callback Twilio sent about record `id` at `now_ms`: the SID it names is
/// registered to the report's attempt beside the report, not before it (neither waits), and the
/// report is applied ([`apply_report`]). Logs what it did. Twilio sends a callback answered
/// with an error again, and both writes are idempotent: on `Err` the caller answers so.
pub async fn apply_callback<K: Channel>(
    svc: &Services,
    id: &<K::Record as Attempted>::Id,
    sid: Option<&str>,
    report: &K::Report,
    now_ms: i64,
) -> Result<Applied<K::Record>, StoreError> {
    let attempt = K::report_attempt(report);
    let record_id = id.to_string();
    let (registered, applied) = tokio::join!(
        reconcile::register_reported(svc, K::NAME, &record_id, attempt, sid, now_ms),
        apply_report::<K>(svc, id, report)
    );
    registered?;
    let applied = applied?;
    let (reported, _) = K::report_summary(report);
    match &applied {
        Applied::Applied(r) => {
            tracing::info!(
                record_id,
                channel = K::NAME,
                reported,
                status = r.status().as_str(),
                attempt = r.attempts().attempt,
                "status applied"
            );
        }
        Applied::Ignored(r) => {
            tracing::info!(
                record_id,
                channel = K::NAME,
                reported,
                current = r.status().as_str(),
                "status kept as event only"
            );
        }
        Applied::NotFound => {
            tracing::warn!(
                record_id,
                channel = K::NAME,
                "callback for an unknown record"
            );
        }
    }
    Ok(applied)
}

/// Applies a report atomically under the channel's rules and retry policy, and queues the next
/// attempt when the report moved the record to one, or when a repeated report finds the record
/// already waiting for it, unclaimed (its job may have been lost with the first report's
/// answer). A failure to queue is an error, so the reporter (Twilio's callback, the sweeper)
/// tries again.
pub async fn apply_report<K: Channel>(
    svc: &Services,
    id: &<K::Record as Attempted>::Id,
    report: &K::Report,
) -> Result<Applied<K::Record>, StoreError> {
    let result = K::store(svc)
        .update_record(id, &|r: &K::Record| K::reported(svc, r, report))
        .await?;
    let attempt = K::report_attempt(report);
    let waiting = match &result {
        Applied::Applied(next) if next.status() == RecordStatus::RETRYING => {
            tracing::info!(record_id = %id, attempt, channel = K::NAME, "trying again after a reported failure");
            crate::telemetry::metric(K::RETRIES_METRIC, 1.0, "Count", &[]);
            Some(next)
        }
        Applied::Ignored(r) if waits_unclaimed_after::<K>(r, attempt) => Some(r),
        _ => None,
    };
    if let Some(next) = waiting
        && let Err(e) = enqueue::<K>(svc, next).await
    {
        tracing::error!(record_id = %id, error = %e, "could not enqueue the next attempt");
        return Err(StoreError::transient(e));
    }
    Ok(result)
}

/// The sweeper, for one channel: re-enqueues records that wait longer than `grace_ms` past when
/// they were due (their job lost, or their attempt's holder dead and its lease run out: the
/// claim takes it over as ambiguous), and asks Twilio where resources are that it accepted more
/// than `grace_ms` ago without a final report (callbacks are best effort). What Twilio answers
/// for a record's SID is applied only when it is the record's own resource (its recipient has
/// the record's lookup token); either way the record's timeline says what the sweeper did.
/// Returns how many records it moved or enqueued.
///
/// Of each status it looks at the newest `limit / 2` overdue records and at the next `limit / 2`
/// of a walk through the rest, oldest first, kept in [`Services::sweep_cursors`]: a backlog of
/// stuck records never hides a recent one, and a warm process visits every record within
/// `ceil(backlog / (limit / 2))` sweeps ([`crate::sweep_pages`]).
pub async fn sweep<K: Channel>(
    svc: &Services,
    grace_ms: i64,
    limit: u32,
) -> Result<u32, StoreError> {
    let now = svc.clock.now_ms();
    let mut moved = 0;
    for status in [
        <<K::Record as Attempted>::Status as RecordStatus>::ACCEPTED,
        <<K::Record as Attempted>::Status as RecordStatus>::RETRYING,
    ] {
        let records = records_to_sweep::<K>(svc, status, now - grace_ms, limit).await?;
        moved += at_once(records, |r| async move {
            let a = r.attempts();
            let due = a.next_attempt_at_ms.unwrap_or(a.created_at_ms);
            let held = a.claimed_until_ms.is_some_and(|u| u > now);
            r.is_open() && !held && due + grace_ms <= now && enqueue::<K>(svc, &r).await.is_ok()
        })
        .await;
    }
    for &status in K::IN_FLIGHT {
        let records = records_to_sweep::<K>(svc, status, now - grace_ms, limit).await?;
        moved += at_once(records, |r| async move {
            r.attempts().updated_at_ms + grace_ms <= now
                && finish_unconfirmed::<K>(svc, &r, now).await
        })
        .await;
    }
    if moved > 0 {
        tracing::warn!(
            moved,
            channel = K::NAME,
            "sweeper moved or re-enqueued records"
        );
        crate::telemetry::metric("SweeperEnqueued", f64::from(moved), "Count", &[]);
    }
    Ok(moved)
}

/// How many records one sweep works on at once: a Twilio look-up is a network round trip
/// (100-300 ms), so one at a time a sweep of `limit` records per in-flight status would outlast
/// retry-processor's timeout. Kept small: past an account's concurrency limit Twilio answers
/// 429 (error 20429), and Herald's sends share that limit with the sweeper.
pub const SWEEP_CONCURRENCY: usize = 16;

/// Runs `step` for every record, [`SWEEP_CONCURRENCY`] at a time; returns for how many it
/// answered `true` (moved).
async fn at_once<R, F, Fut>(records: Vec<R>, step: F) -> u32
where
    F: Fn(R) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    use futures_util::StreamExt as _;
    futures_util::stream::iter(records)
        .map(step)
        .buffer_unordered(SWEEP_CONCURRENCY)
        .fold(0, |n, moved| async move { n + u32::from(moved) })
        .await
}

/// The records of `status` one sweep of `K` looks at ([`crate::sweep_pages::records_to_sweep`]).
async fn records_to_sweep<K: Channel>(
    svc: &Services,
    status: <K::Record as Attempted>::Status,
    created_before_ms: i64,
    limit: u32,
) -> Result<Vec<K::Record>, StoreError> {
    crate::sweep_pages::records_to_sweep(
        K::store(svc),
        &svc.sweep_cursors,
        K::NAME,
        status,
        created_before_ms,
        limit,
    )
    .await
}

/// The metric of a record the sweeper finished `unconfirmed` (dimension `Channel`).
pub const UNCONFIRMED_METRIC: &str = "FinishedUnconfirmed";

/// The sweeper's step for an in-flight record `r`: asks Twilio about it ([`ask_twilio`]), and
/// when its attempt was accepted by Twilio more than `FINAL_STATE_AFTER_SECS` ago (its
/// `updated_at_ms`, module docs) and that look-up moved nothing, finishes it `unconfirmed`
/// through the store's atomic update: only while the record is still where `r` was (same
/// attempt, status and last change), never as a retry. Records an `unconfirmed` event and
/// counts [`UNCONFIRMED_METRIC`]. Returns whether the record moved.
pub async fn finish_unconfirmed<K: Channel>(svc: &Services, r: &K::Record, now: i64) -> bool {
    if ask_twilio::<K>(svc, r, now).await {
        return true;
    }
    let after_ms = i64::try_from(svc.config.final_state_after.as_millis()).unwrap_or(i64::MAX);
    let held = r.attempts();
    if held.updated_at_ms.saturating_add(after_ms) > now {
        return false;
    }
    let id = id_of::<K>(r);
    let status = r.status();
    let decide = |cur: &K::Record| {
        let a = cur.attempts();
        (cur.status() == status
            && a.attempt == held.attempt
            && a.updated_at_ms == held.updated_at_ms
            && K::IN_FLIGHT.contains(&status))
        .then(|| K::unconfirmed(cur, now))
        .flatten()
    };
    match K::store(svc).update_record(id, &decide).await {
        Ok(Applied::Applied(done)) => {
            tracing::warn!(record_id = %id, channel = K::NAME, attempt = held.attempt, from = status.as_str(), "no final report from Twilio in time: finished unconfirmed");
            crate::telemetry::metric(UNCONFIRMED_METRIC, 1.0, "Count", &[("Channel", K::NAME)]);
            let ev = event::<K>(
                svc,
                &done,
                EventKind::Unconfirmed,
                Some(done.status().as_str()),
                None,
                done.twilio_sid().map(str::to_owned),
                true,
            );
            record_event(svc, &ev).await;
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::error!(record_id = %id, error = %e, "could not finish the record unconfirmed; the next sweep tries again");
            false
        }
    }
}

/// Asks Twilio about `r`'s resource and applies what it says when the resource is `r`'s own.
/// Returns whether the record moved.
async fn ask_twilio<K: Channel>(svc: &Services, r: &K::Record, now: i64) -> bool {
    let id = id_of::<K>(r);
    let Some(sid) = r.twilio_sid().map(str::to_owned) else {
        return false;
    };
    let fetched = match svc.credentials.get().await {
        Ok(creds) => K::fetch(svc, &creds, &sid).await,
        Err(e) => Err(e.into()),
    };
    let res = match fetched {
        Ok(res) => res,
        Err(e) => {
            tracing::warn!(record_id = %id, error = %e, "could not fetch a resource from Twilio");
            return false;
        }
    };
    match is_recipient_of::<K>(svc, r, K::resource_to(&res)).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(record_id = %id, twilio_sid = %sid, "the sweeper fetched a Twilio resource that is not this record's (another recipient): nothing applied");
            crate::telemetry::metric("SweepMismatch", 1.0, "Count", &[]);
            let ev = event::<K>(
                svc,
                r,
                EventKind::SweepMismatch,
                None,
                None,
                Some(sid),
                false,
            );
            record_event(svc, &ev).await;
            return false;
        }
        Err(e) => {
            tracing::warn!(record_id = %id, error = %e, "could not check the fetched resource's recipient: nothing applied");
            return false;
        }
    }
    let Some(report) = K::report_of(r, &res, now) else {
        return false;
    };
    let (status, code) = K::report_summary(&report);
    let applied = matches!(
        apply_report::<K>(svc, id, &report).await,
        Ok(Applied::Applied(_))
    );
    let mut ev = event::<K>(
        svc,
        r,
        EventKind::Swept,
        Some(status),
        code,
        Some(sid),
        applied,
    );
    // One event per status the sweeper found, however often it looks.
    ev.key.push(':');
    ev.key.push_str(status);
    record_event(svc, &ev).await;
    applied
}

/// Whether `to`, the recipient of a Twilio resource fetched by the SID `r` holds, is `r`'s own
/// recipient: compared through the lookup token, never as plaintext in the record.
async fn is_recipient_of<K: Channel>(
    svc: &Services,
    r: &K::Record,
    to: Option<&str>,
) -> Result<bool, CryptoError> {
    let Some(to) = to else {
        return Ok(false);
    };
    Ok(svc.vault.lookup_token(to).await? == r.to().token)
}

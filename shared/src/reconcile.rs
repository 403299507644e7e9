//! Resolving an attempt whose outcome is unknown: the rule messages ([`crate::delivery`]) and
//! calls ([`crate::calls`]) share.
//!
//! When an attempt may have reached Twilio without Herald learning of it (a timeout, a dropped
//! connection, a 5xx, a sender that died holding its claim), the record keeps that attempt's
//! window ([`crate::domain::Message::ambiguous_window`]), and the next attempt lists what Twilio
//! holds for the recipient before it sends again. The rule:
//!
//! 1. **Candidates** are the listed resources that match the record: the same `To`, the same
//!    sender (`From`, or the Messaging Service a message went through) and, for a message, the
//!    same body. Twilio's Call resource exposes no TwiML (nor anything else of what was said),
//!    so a call matches on `To`, `From` and time only. A candidate was created within the
//!    window: from the ambiguous attempt's start minus [`TWILIO_TIME_SLACK_MS`] to its end plus
//!    [`TWILIO_TIME_SLACK_MS`] (Twilio's times have whole seconds).
//! 2. A candidate **this attempt owns** already (its create was answered and registered, but the
//!    result not recorded before the claim was lost) is adopted.
//!    So is one an earlier attempt of this record owns whose outcome is unknown too
//!    ([`crate::domain::attempt::ambiguous_attempts`]): a signed status callback registered it
//!    ([`register_reported`]) while the create's answer was lost.
//! 3. A candidate **another record owns** is that record's (a SID belongs to at most one record,
//!    [`crate::ports::SidOwners`]): it is left out, however well it matches. So is one an
//!    earlier attempt of this record owns whose outcome was recorded: it is history.
//! 4. **Settle**: if an unowned candidate was created less than [`settle_ms`] ago (the Twilio
//!    request timeout plus the slack), another record's create may have just reached Twilio,
//!    its answer on its way to be registered: nothing is decided now. The attempt is
//!    interrupted without being used up (its claim expires and it is made again).
//! 5. **Siblings.** One unowned candidate could still be another record's: an identical alert
//!    (same recipient and text; for a call, the same callee) whose own attempt may have
//!    created it and died before it could say so (its answer and its callbacks lost). The
//!    stores index every record with a span in doubt ([`crate::ports::Records::records_in_doubt`]:
//!    an ambiguous attempt not resolved yet, an attempt whose claim is held, an attempt the
//!    record sent again after without knowing which resource was its own) by its match token.
//!    When another record's span covers the candidate's creation time (widened by the slack),
//!    whose it is cannot be told: as in step 7. A record stored before its match token was kept
//!    cannot look for siblings, and sends again too.
//! 6. Exactly **one** unowned candidate and no sibling in doubt: this record claims its SID,
//!    atomically; if it wins, it adopts the resource. If another record won in between, the
//!    resource is that record's, and this one sends.
//! 7. **More than one** unowned candidate: which one is this record's cannot be told. None is
//!    adopted; the record puts the ambiguous attempt's window in doubt for good (so no sibling
//!    adopts the resource it may have left either), sends again, and the possible duplicate is
//!    counted (metric `AmbiguousReconcile`, a warning, an event in the record's timeline).
//! 8. **None**: the earlier attempt never reached Twilio; the record sends.
//!
//! A lost alert reported as delivered is the worst outcome Herald can have; a duplicate alert is
//! the lesser one. The rule adopts only what is surely the record's own, and sends otherwise.
//! Step 5 reads a DynamoDB index, which is eventually consistent: a sibling's span is written
//! before its create is sent (the claim) or within the request timeout after it (its
//! failure), so it is readable long before the candidate has settled (step 4).

use crate::ports::{SidClaim, SidOwner, StoreError};
use crate::service::Services;
use crate::twilio::{CallResource, MessageResource, TwilioError};

/// Twilio's timestamps have whole seconds, and clocks differ a little: the window and the settle
/// margin are widened by this much.
pub const TWILIO_TIME_SLACK_MS: i64 = 2_000;

/// The metric of a reconcile that could not tell the record's resource (dimension `Reason`:
/// `candidates`, several matched; `siblings`, an identical record may have made the one that
/// matched; `truncated`, the list was longer than its bound).
pub const AMBIGUOUS_RECONCILE_METRIC: &str = "AmbiguousReconcile";

/// The metric of a create answered with a SID another record owns.
pub const SID_OWNED_BY_OTHER_METRIC: &str = "SidOwnedByOther";

/// A Twilio resource a record may own: its SID and when Twilio created it.
pub trait TwilioResource {
    /// `SM…` or `CA…`.
    fn sid(&self) -> &str;
    /// When Twilio created it, Unix milliseconds (`None` when Twilio gave no readable time).
    fn created_at_ms(&self) -> Option<i64>;
}

impl TwilioResource for MessageResource {
    fn sid(&self) -> &str {
        &self.sid
    }
    fn created_at_ms(&self) -> Option<i64> {
        MessageResource::created_at_ms(self)
    }
}

impl TwilioResource for CallResource {
    fn sid(&self) -> &str {
        &self.sid
    }
    fn created_at_ms(&self) -> Option<i64> {
        CallResource::created_at_ms(self)
    }
}

/// What the next attempt does about an ambiguous earlier one.
#[derive(Debug)]
pub enum Decision<R> {
    /// This resource is the record's own (owned by it now): adopt it, do not send.
    Adopt(R),
    /// Nothing at Twilio is the record's: send.
    Send,
    /// This many unowned candidates: none can be told to be the record's. Send again (a
    /// possible duplicate, already counted and logged).
    SendAmbiguous(usize),
    /// An unowned candidate is too recent to decide: interrupt the attempt without using it up.
    Settling,
}

/// Why the earlier attempt could not be looked for.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// Twilio could not be asked.
    #[error(transparent)]
    Twilio(#[from] TwilioError),
    /// Ownership could not be read or claimed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a resource created at `created_at_ms` falls within the ambiguous window `(since,
/// until)`, widened by [`TWILIO_TIME_SLACK_MS`] on both sides. A resource without a readable
/// time is never in it.
pub fn in_window(created_at_ms: Option<i64>, (since, until): (i64, i64)) -> bool {
    created_at_ms.is_some_and(|t| {
        t >= since.saturating_sub(TWILIO_TIME_SLACK_MS)
            && t <= until.saturating_add(TWILIO_TIME_SLACK_MS)
    })
}

/// How old an unowned candidate must be before it is decided on: the Twilio request timeout
/// (no create answer comes later than that) plus [`TWILIO_TIME_SLACK_MS`].
pub fn settle_ms(svc: &Services) -> i64 {
    i64::try_from(svc.config.request_timeout.as_millis())
        .unwrap_or(i64::MAX)
        .saturating_add(TWILIO_TIME_SLACK_MS)
}

/// How many records in doubt step 5 reads at most; more than that, and the resource is taken
/// to be possibly a sibling's.
pub const SIBLINGS_READ: u32 = 100;

/// Whether a record other than `own` among `in_doubt` (as [`crate::ports::Records::records_in_doubt`]
/// read them, at most `read` of them) has a span covering `t`, widened by
/// [`TWILIO_TIME_SLACK_MS`]. A read that stopped at its bound counts as covering.
pub fn covered_by_sibling(
    in_doubt: &[crate::ports::InDoubt],
    read: u32,
    own: &str,
    t: i64,
) -> bool {
    in_doubt.len() >= read as usize
        || in_doubt.iter().any(|d| {
            d.record_id != own
                && d.since_ms <= t.saturating_add(TWILIO_TIME_SLACK_MS)
                && d.until_ms >= t.saturating_sub(TWILIO_TIME_SLACK_MS)
        })
}

/// Logs and counts a list read that stopped at its bound: a resource may have gone unread.
pub fn note_truncated(channel: &str, record_id: &str) {
    tracing::warn!(
        record_id,
        channel,
        "Twilio's list for this recipient is longer than the reconcile bound: unread resources cannot be adopted"
    );
    crate::telemetry::metric(
        AMBIGUOUS_RECONCILE_METRIC,
        1.0,
        "Count",
        &[("Channel", channel), ("Reason", "truncated")],
    );
}

/// Applies the rule (module docs, steps 2 to 8) to `candidates`, resources that already match
/// the record and fall within its window (step 1), for `owner` (the record at the attempt being
/// made, `unknown` its earlier attempts whose outcome is unknown) at `now_ms`. `sibling_in_doubt(t)` says whether another record with the record's match
/// token may have created a resource at `t` (step 5). `channel` (`sms`, `voice`) names the
/// metric's dimension.
pub async fn decide<R, F, Fut>(
    svc: &Services,
    channel: &str,
    owner: &SidOwner,
    unknown: std::ops::Range<u32>,
    mut candidates: Vec<R>,
    now_ms: i64,
    sibling_in_doubt: F,
) -> Result<Decision<R>, StoreError>
where
    R: TwilioResource,
    F: FnOnce(i64) -> Fut,
    Fut: std::future::Future<Output = Result<bool, StoreError>>,
{
    candidates.sort_by_key(TwilioResource::created_at_ms);
    if svc.chaos.legacy_match {
        return Ok(candidates
            .into_iter()
            .next()
            .map_or(Decision::Send, Decision::Adopt));
    }
    let record_id = owner.record_id.as_str();
    let mut unowned = Vec::new();
    for r in candidates {
        match svc.sid_owners.twilio_sid_owner(r.sid()).await? {
            Some(o)
                if o.record_id == owner.record_id
                    && (o.attempt == owner.attempt || unknown.contains(&o.attempt)) =>
            {
                return Ok(Decision::Adopt(r));
            }
            Some(_) => {}
            None => unowned.push(r),
        }
    }
    let settle = settle_ms(svc);
    if unowned.iter().any(|r| {
        r.created_at_ms()
            .is_some_and(|t| now_ms < t.saturating_add(settle))
    }) {
        tracing::info!(
            record_id,
            channel,
            candidates = unowned.len(),
            "a matching resource at Twilio is too recent to tell whose it is: the attempt will be made again"
        );
        return Ok(Decision::Settling);
    }
    if unowned.len() > 1 {
        tracing::warn!(
            record_id,
            channel,
            candidates = unowned.len(),
            "several resources at Twilio could be this record's: none adopted, sending again (a possible duplicate)"
        );
        crate::telemetry::metric(
            AMBIGUOUS_RECONCILE_METRIC,
            1.0,
            "Count",
            &[("Channel", channel), ("Reason", "candidates")],
        );
        return Ok(Decision::SendAmbiguous(unowned.len()));
    }
    let Some(only) = unowned.pop() else {
        return Ok(Decision::Send);
    };
    let created = only.created_at_ms().unwrap_or(now_ms);
    if sibling_in_doubt(created).await? {
        tracing::warn!(
            record_id,
            channel,
            "an identical record may have made the one matching resource at Twilio: not adopted, sending again (a possible duplicate)"
        );
        crate::telemetry::metric(
            AMBIGUOUS_RECONCILE_METRIC,
            1.0,
            "Count",
            &[("Channel", channel), ("Reason", "siblings")],
        );
        return Ok(Decision::SendAmbiguous(1));
    }
    match svc
        .sid_owners
        .own_twilio_sid(only.sid(), owner, now_ms)
        .await?
    {
        SidClaim::Owned => Ok(Decision::Adopt(only)),
        SidClaim::OwnedByOther(_) => {
            tracing::info!(
                record_id,
                channel,
                "the one matching resource was just registered by another record: sending"
            );
            Ok(Decision::Send)
        }
    }
}

/// Registers `sid`, which Twilio's answer to `owner`'s create named, as `owner`'s, before the
/// result is recorded. When another owner has it already, the answer is still the truth for
/// `owner` (Twilio created it for this request): that is logged and counted, and the caller goes
/// on. Only a store failure is an error.
pub async fn register_created(
    svc: &Services,
    channel: &str,
    owner: &SidOwner,
    sid: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    if let SidClaim::OwnedByOther(other) = svc.sid_owners.own_twilio_sid(sid, owner, now_ms).await?
    {
        tracing::error!(
            record_id = %owner.record_id,
            attempt = owner.attempt,
            other_owner = %other,
            twilio_sid = sid,
            channel,
            "Twilio answered this record's create with a SID another record owns: the answer is kept for this record"
        );
        crate::telemetry::metric(
            SID_OWNED_BY_OTHER_METRIC,
            1.0,
            "Count",
            &[("Channel", channel)],
        );
    }
    Ok(())
}

/// Registers `sid`, named by a genuine (signed) status callback for `record_id`'s attempt
/// `attempt`, as that attempt's: the callback's URL is the one Herald gave that attempt's create,
/// so the resource is surely that record's, even when the sender died before it could register
/// the create's answer. Registered before another record's reconcile can take the resource for
/// its own (a lost alert reported as delivered). A callback without a usable SID registers
/// nothing. Only a store failure is an error.
pub async fn register_reported(
    svc: &Services,
    channel: &str,
    record_id: &str,
    attempt: u32,
    sid: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let Some(sid) = sid else {
        return Ok(());
    };
    let owner = SidOwner {
        record_id: record_id.to_owned(),
        attempt,
    };
    register_created(svc, channel, &owner, sid, now_ms).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_widened_by_the_slack_and_needs_a_time() {
        let w = (10_000, 12_000);
        assert!(in_window(Some(8_000), w));
        assert!(in_window(Some(14_000), w));
        assert!(!in_window(Some(7_999), w));
        assert!(!in_window(Some(14_001), w));
        assert!(!in_window(None, w));
    }
}

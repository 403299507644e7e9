//! Status progression after `queued` and the signed status callbacks that report it.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use time::OffsetDateTime;

use crate::config::{Faults, Outcome};
use crate::model::{API_VERSION, CallbackRecord, MessageStatus, delivery_error_message};
use crate::signature::sign;
use crate::sim::{Inner, State};

/// The sender a Messaging Service "picks" for messages created without `From`.
pub const SERVICE_SENDER: &str = "+15005550006";

/// One status change, reported by one callback POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) status: MessageStatus,
    pub(crate) error_code: Option<u32>,
    pub(crate) duplicate: bool,
}

/// The status changes of one message, in the order they are reported.
#[derive(Debug, Clone)]
pub(crate) struct CallbackJob {
    pub(crate) sid: String,
    pub(crate) steps: Vec<Step>,
}

impl CallbackJob {
    /// Plans a message's steps from its outcome, drawing faults from the seeded RNG.
    pub(crate) fn plan(state: &mut State, sid: &str, outcome: Outcome) -> Self {
        let step = |status, error_code| Step {
            status,
            error_code,
            duplicate: false,
        };
        let mut steps = match outcome {
            Outcome::Deliver => vec![
                step(MessageStatus::Sent, None),
                step(MessageStatus::Delivered, None),
            ],
            Outcome::Undelivered(code) => vec![
                step(MessageStatus::Sent, None),
                step(MessageStatus::Undelivered, Some(code)),
            ],
            Outcome::Failed(code) => vec![step(MessageStatus::Failed, Some(code))],
        };
        let Faults {
            rate_duplicate_callback,
            rate_out_of_order,
            ..
        } = state.faults;
        if steps.len() == 2 && chance(state, rate_out_of_order) {
            steps.swap(0, 1);
        }
        let mut planned = Vec::with_capacity(steps.len() * 2);
        for s in steps {
            let twice = chance(state, rate_duplicate_callback);
            planned.push(s.clone());
            if twice {
                planned.push(Step {
                    duplicate: true,
                    ..s
                });
            }
        }
        Self {
            sid: sid.to_string(),
            steps: planned,
        }
    }
}

fn chance(state: &mut State, rate: f64) -> bool {
    rate > 0.0 && state.fault_rng.random::<f64>() < rate
}

/// Runs a job: for each step, waits `latency_ms`, applies the status, posts the callback.
pub(crate) async fn run_job(inner: &Arc<Inner>, job: CallbackJob, latency_ms: u64) {
    for step in &job.steps {
        if latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(latency_ms)).await;
        }
        run_step(inner, &job.sid, step).await;
    }
}

struct Prepared {
    url: String,
    signed_url: String,
    retries: u32,
    params: Vec<(String, String)>,
    signature: String,
}

/// Applies the step to the stored message and builds its callback (if it has a URL).
fn apply(inner: &Inner, sid: &str, step: &Step) -> Option<Prepared> {
    let mut state = inner.lock();
    let msg = state.message_mut(sid)?;
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    if msg.from.is_none() {
        msg.from = Some(SERVICE_SENDER.to_string());
        msg.num_segments = crate::segments::num_segments(&msg.body);
    }
    // Statuses only move forward: an early `delivered` is not undone by a late `sent`.
    if step.status.rank() > msg.status.rank() && !step.duplicate {
        msg.status = step.status;
        msg.error_code = step.error_code;
        msg.error_message = step.error_code.map(delivery_error_message);
        msg.date_updated = now;
    }
    let url = msg.status_callback.clone()?;
    let (signed_url, fragment) = match url.split_once('#') {
        Some((u, f)) => (u.to_string(), Some(f)),
        None => (url.clone(), None),
    };
    let retries = fragment.map(retry_count).unwrap_or(0);
    let mut params = vec![
        ("AccountSid".to_string(), msg.account_sid.clone()),
        ("ApiVersion".to_string(), API_VERSION.to_string()),
        ("From".to_string(), msg.from.clone().unwrap_or_default()),
        ("MessageSid".to_string(), msg.sid.clone()),
        (
            "MessageStatus".to_string(),
            step.status.as_str().to_string(),
        ),
        ("SmsSid".to_string(), msg.sid.clone()),
        ("SmsStatus".to_string(), step.status.as_str().to_string()),
        ("To".to_string(), msg.to.clone()),
    ];
    if let Some(ms) = &msg.messaging_service_sid {
        params.push(("MessagingServiceSid".to_string(), ms.clone()));
    }
    if let Some(code) = step.error_code {
        params.push(("ErrorCode".to_string(), code.to_string()));
    }
    if matches!(
        step.status,
        MessageStatus::Delivered | MessageStatus::Undelivered
    ) {
        // Carriers report YYMMDDhhmm.
        let raw = format!(
            "{:02}{:02}{:02}{:02}{:02}",
            now.year() % 100,
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute()
        );
        params.push(("RawDlrDoneDate".to_string(), raw));
    }
    let signature = sign(&inner.auth_token, &signed_url, &params);
    Some(Prepared {
        url,
        signed_url,
        retries,
        params,
        signature,
    })
}

/// `rc=N` of a connection-override fragment (`#rc=3&rp=all`), clamped to Twilio's 0–5.
fn retry_count(fragment: &str) -> u32 {
    fragment
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "rc")
        .and_then(|(_, v)| v.parse::<u32>().ok())
        .map_or(0, |n| n.min(5))
}

async fn run_step(inner: &Arc<Inner>, sid: &str, step: &Step) {
    let Some(p) = apply(inner, sid, step) else {
        return;
    };
    let body = serde_urlencoded::to_string(&p.params).unwrap_or_default();
    for attempt in 1..=p.retries + 1 {
        let mut req = inner
            .http
            .post(&p.signed_url)
            .header("X-Twilio-Signature", &p.signature)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(body.clone());
        if attempt > 1 {
            req = req.header(
                "I-Twilio-Idempotency-Token",
                format!("{}-{}-{}", sid, step.status, attempt),
            );
        }
        let (response_status, error) = match req.send().await {
            Ok(r) => (Some(r.status().as_u16()), None),
            Err(e) => (None, Some(error_chain(&e))),
        };
        let ok = response_status.is_some_and(|s| (200..300).contains(&s));
        inner.lock().callbacks.push(CallbackRecord {
            message_sid: sid.to_string(),
            message_status: step.status,
            url: p.url.clone(),
            signed_url: p.signed_url.clone(),
            params: p.params.clone(),
            signature: p.signature.clone(),
            attempt,
            duplicate: step.duplicate,
            response_status,
            error,
        });
        if ok {
            break;
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::retry_count;

    #[test]
    fn fragment_retry_count() {
        assert_eq!(retry_count("rc=3"), 3);
        assert_eq!(retry_count("ct=3000&rc=2&rp=all"), 2);
        assert_eq!(retry_count("rc=9"), 5);
        assert_eq!(retry_count("rp=all"), 0);
        assert_eq!(retry_count("rc=x"), 0);
    }
}

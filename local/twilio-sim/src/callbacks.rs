//! Status progression after `queued` and the signed status callbacks that report it.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;

use crate::config::{Faults, Outcome};
use crate::model::{API_VERSION, CallbackRecord, MessageStatus, delivery_error_message};
use crate::sim::{Inner, State};
use crate::webhook::{self, Encoding, Signed, WebhookDelivery};

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
            Outcome::StaysSent => vec![step(MessageStatus::Sent, None)],
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

/// Applies the step to the stored message and builds its signed callback (if it has a URL).
fn apply(inner: &Inner, sid: &str, step: &Step) -> Option<Signed> {
    let mut state = inner.lock();
    let token = state.creds.primary.clone();
    let encoding = if state.json_callbacks {
        Encoding::Json
    } else {
        Encoding::Form
    };
    let msg = state.message_mut(sid)?;
    let now = inner.now();
    if msg.from.is_none() {
        msg.from = Some(SERVICE_SENDER.to_string());
        msg.num_segments = crate::segments::num_segments(&msg.body);
    }
    // Statuses only move forward: an early `delivered` is not undone by a late `sent`.
    if step.status.rank() > msg.status.rank() && !step.duplicate {
        msg.status = step.status;
        msg.error_code = step.error_code;
        msg.error_message = step.error_code.map(delivery_error_message);
        msg.meta.date_updated = now;
        // Handed to the carrier now (a message that failed at Twilio never was).
        if msg.date_sent.is_none()
            && matches!(
                step.status,
                MessageStatus::Sent | MessageStatus::Delivered | MessageStatus::Undelivered
            )
        {
            msg.date_sent = Some(now);
        }
    }
    let url = msg.status_callback.clone()?;
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
    Some(webhook::prepare(&token, &url, params, encoding))
}

async fn run_step(inner: &Arc<Inner>, sid: &str, step: &Step) {
    let Some(p) = apply(inner, sid, step) else {
        return;
    };
    if inner.callback_in_flight_ms > 0 {
        // Each callback its own time in flight (0 to the maximum, from its SID and status), so
        // callbacks overtake each other as on a network.
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (sid, step.status.as_str()).hash(&mut h);
        let ms = h.finish() % (inner.callback_in_flight_ms + 1);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    for attempt in 1..=p.retries + 1 {
        let token = (attempt > 1).then(|| format!("{}-{}-{}", sid, step.status, attempt));
        let answer = webhook::send(inner, &p, token).await;
        let delivery = WebhookDelivery::new(&p, attempt, &answer);
        let ok = delivery.succeeded();
        inner.lock().callbacks.push(CallbackRecord {
            message_sid: sid.to_string(),
            message_status: step.status,
            delivery,
            body: p.body.clone(),
            duplicate: step.duplicate,
        });
        if ok {
            break;
        }
    }
}

//! `herald soak`: the local stack under faults, at volume. The simulator answers 429 (with
//! `Retry-After`), 500 and timeouts (some after accepting the message), duplicates and reorders
//! callbacks; senders "die" mid-batch after claiming an attempt or after Twilio accepted it. The
//! soak ends when every accepted message is final and checks three numbers that must be zero:
//! messages not final (`lost`), messages Twilio accepted more than once (`duplicate_sends`), and
//! final statuses that differ from the simulator's truth (`mismatched`).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;

use crate::stack::{LocalStack, StackOptions};

/// How to soak.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Messages to send.
    pub messages: usize,
    /// Overall fault rate (0..=1): spread over 429s, 500s, timeouts, callback faults, crashes.
    pub fault_rate: f64,
    /// Seed of the outcomes and of the simulator.
    pub seed: u64,
    /// The longest the soak waits for every message to be final.
    pub deadline: Duration,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// What the soak found.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Messages Herald accepted.
    pub accepted: usize,
    /// Of those, in a final state.
    #[serde(rename = "final")]
    pub final_: usize,
    /// Accepted but not final at the end.
    pub lost: usize,
    /// Messages the simulator accepted more than once.
    pub duplicate_sends: usize,
    /// Final statuses (or codes) that differ from the simulator's truth.
    pub mismatched: usize,
    /// Attempts beyond the first, over all messages.
    pub retries: u64,
    /// Jobs in the dead-letter queues at the end.
    pub dlq: u64,
    /// Wall time of the whole run.
    pub seconds: f64,
}

impl SoakReport {
    /// Whether nothing was lost, sent twice, or ended wrongly.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicate_sends == 0 && self.mismatched == 0
    }
}

/// What the simulator does with a number, and what Herald must end with.
fn outcome(rng: &mut rand::rngs::StdRng) -> (twilio_sim::Outcome, &'static str, Option<u32>) {
    match rng.random_range(0..100) {
        0..85 => (twilio_sim::Outcome::Deliver, "delivered", None),
        85..92 => (
            twilio_sim::Outcome::Undelivered(30003),
            "undelivered",
            Some(30003),
        ),
        92..96 => (twilio_sim::Outcome::Failed(30007), "failed", Some(30007)),
        _ => (twilio_sim::Outcome::Failed(30008), "failed", Some(30008)),
    }
}

fn bar(done: usize, total: usize, started: Instant) {
    let width = 40;
    let filled = (done * width)
        .checked_div(total)
        .unwrap_or(width)
        .min(width);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r[{}{}] {done}/{total} final  {:.0}s",
        "#".repeat(filled),
        " ".repeat(width - filled),
        started.elapsed().as_secs_f64()
    );
    let _ = err.flush();
}

/// Runs a soak in `data_dir`.
pub async fn run(
    data_dir: &std::path::Path,
    opts: &SoakOptions,
) -> Result<SoakReport, Box<dyn std::error::Error + Send + Sync>> {
    let started = Instant::now();
    let r = opts.fault_rate.clamp(0.0, 1.0);
    let mut stack_opts = StackOptions::new(data_dir);
    stack_opts.seed = opts.seed;
    stack_opts.concurrency = 4;
    stack_opts.crash_after_claim = r / 10.0;
    stack_opts.crash_after_send = r / 10.0;
    stack_opts.sweep_every = Duration::from_secs(5);
    stack_opts.env.extend(
        [
            ("TWILIO_REQUEST_TIMEOUT_SECS", "1"),
            ("TWILIO_MAX_RETRIES", "20"),
            // 2,000 US numbers from one caller in a minute: not what the protection is for.
            ("CALLER_RATE_LIMIT_PER_MINUTE", "100000"),
            ("COUNTRY_LIMIT_PER_HOUR", "1000000"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let stack = LocalStack::start(&stack_opts).await?;
    stack.sim.set_faults(twilio_sim::Faults {
        rate_429: r / 4.0,
        retry_after_secs: 1,
        rate_500: r / 4.0,
        rate_timeout: r / 8.0,
        timeout_ms: 1_500,
        timeout_after_accept: true,
        rate_duplicate_callback: r,
        rate_out_of_order: r,
    });

    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut truth: HashMap<String, (&'static str, Option<u32>)> = HashMap::new();
    let mut numbers = Vec::with_capacity(opts.messages);
    for i in 0..opts.messages {
        let to = format!("+1415{:07}", 2_000_000 + i);
        let (o, status, code) = outcome(&mut rng);
        stack.sim.set_outcome(&to, o);
        truth.insert(to.clone(), (status, code));
        numbers.push(to);
    }

    // Nine in ten through batches (send queue), one in ten through the API one by one.
    let http = reqwest::Client::new();
    let mut accepted: HashMap<String, String> = HashMap::new(); // id -> number
    let (singles, batched) = numbers.split_at(opts.messages / 10);
    for chunk in batched.chunks(1000) {
        let body = json!({"messages": chunk.iter().map(|to| json!({"to": to, "body": "Soak test: all systems nominal"})).collect::<Vec<_>>()});
        let answer: serde_json::Value = http
            .post(format!("{}/v1/messages/batch", stack.api_url))
            .bearer_auth(&stack.api_key)
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        for m in answer["messages"].as_array().into_iter().flatten() {
            let i = m["index"].as_u64().unwrap_or(0) as usize;
            if let (Some(id), Some(to)) = (m["id"].as_str(), chunk.get(i)) {
                accepted.insert(id.to_owned(), to.clone());
            }
        }
    }
    for to in singles {
        let answer: serde_json::Value = http
            .post(format!("{}/v1/messages", stack.api_url))
            .bearer_auth(&stack.api_key)
            .json(&json!({"to": to, "body": "Soak test: all systems nominal"}))
            .send()
            .await?
            .json()
            .await?;
        if let Some(id) = answer["id"]
            .as_str()
            .or_else(|| answer["message_id"].as_str())
        {
            accepted.insert(id.to_owned(), to.clone());
        }
    }

    let progress = opts.progress && std::io::stderr().is_terminal();
    let deadline = Instant::now() + opts.deadline;
    loop {
        let counts = stack.store.count_by_status().await?;
        let done: u64 = counts
            .iter()
            .filter(|(s, _)| s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        if progress {
            bar(
                usize::try_from(done).unwrap_or(usize::MAX),
                accepted.len(),
                started,
            );
        }
        if done as usize >= accepted.len() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if progress {
        eprintln!();
    }
    stack.sim.wait_idle().await;

    // A second create for a number is a duplicate unless Twilio had reported the previous one
    // failed or undelivered (then Herald's retry is a new attempt, on purpose).
    let mut by_number: HashMap<String, Vec<twilio_sim::SimMessage>> = HashMap::new();
    for m in stack.sim.messages() {
        by_number.entry(m.to.clone()).or_default().push(m);
    }
    let duplicated = |to: &String| {
        by_number.get(to).is_some_and(|ms| {
            ms.windows(2).any(|w| {
                !matches!(
                    w[0].status,
                    twilio_sim::MessageStatus::Failed | twilio_sim::MessageStatus::Undelivered
                )
            })
        })
    };
    let (mut final_, mut mismatched, mut retries) = (0, 0, 0u64);
    for (id, to) in &accepted {
        let Some(m) =
            herald::ports::MessageStore::get_message(&*stack.services.messages, &id.parse()?)
                .await?
        else {
            continue;
        };
        retries += u64::from(m.attempt.saturating_sub(1));
        if m.status.is_terminal() {
            final_ += 1;
            let (want_status, want_code) = truth[to];
            if m.status.as_str() != want_status || m.error_code != want_code {
                mismatched += 1;
                tracing::warn!(message_id = %id, status = m.status.as_str(), code = ?m.error_code, attempt = m.attempt, reason = ?m.error_reason, expected = want_status, expected_code = ?want_code, "mismatch");
            }
        }
    }
    let duplicate_sends = accepted.values().filter(|to| duplicated(to)).count();
    let dlq = herald::ports::Queue::depth(&stack.send_queue).await?.dead
        + herald::ports::Queue::depth(&stack.retry_queue).await?.dead;
    stack.shutdown().await;
    Ok(SoakReport {
        accepted: accepted.len(),
        final_,
        lost: accepted.len() - final_,
        duplicate_sends,
        mismatched,
        retries,
        dlq,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    })
}

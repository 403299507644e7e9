//! `herald soak`: Herald under the workload alerting has and the faults production has.
//!
//! **Workload.** The same few alert texts to the same few numbers, many at once: bursts of
//! identical single sends, batches full of repeats, and voice alerts with and without
//! acknowledgement. Every request carries an `Idempotency-Key` and is sent again with it until
//! it is answered, as a careful caller does.
//!
//! **Faults.** The simulator answers 429s (with `Retry-After`), 500s and timeouts (some after
//! accepting the message), duplicates and reorders callbacks; senders die after claiming an
//! attempt or after Twilio accepted it; and the whole Herald process is killed (SIGKILL) at
//! random moments, several times a run, and started again on the same data folder. The
//! simulator lives in the soak's own process, so its state and SIDs outlive every kill.
//!
//! **Checks, per record.** Each Twilio resource is attributed to the record whose id its status
//! callback URL carries. A record must have exactly the resources it should: one, or more
//! only where Twilio reported the previous one failed (a message `failed`/`undelivered`, a call
//! busy, unanswered, failed, or answered without the acknowledgement it required), each with
//! the record's own `To` and text. Its SID must be one of its own, and its final status the
//! simulator's truth. The counts per channel (`lost`, `duplicated`, `adopted`, `mismatched`)
//! must all be 0, else the run fails. `ambiguous_resends` counts the sends Herald made again
//! on purpose, not knowing which of several identical resources was its own (a duplicate
//! alert, chosen over a lost one); they are reported, not failed.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald::adapters::embedded::{SqliteQueue, SqliteStore};
use herald::domain::{Attempted, Call, InvalidId, Message, RecordStatus};
use herald::ports::{Queue, Records, SystemClock};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use twilio_sim::{CallOutcome, CallStatus as SimCallStatus, MessageStatus as SimMessageStatus};

use crate::stack::{LocalStack, MAX_RECEIVE_COUNT, StackOptions};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How to soak.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Messages to send.
    pub messages: usize,
    /// Voice alerts to place.
    pub calls: usize,
    /// Whole-process kills (SIGKILL) during the run, each followed by a restart.
    pub kills: usize,
    /// Overall fault rate (0..=1): spread over 429s, 500s, timeouts, callback faults, crashes.
    pub fault_rate: f64,
    /// Seed of the workload, the outcomes and the simulator.
    pub seed: u64,
    /// The longest the soak waits for every record to be final.
    pub deadline: Duration,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// The control run: Herald resolves unknown outcomes by the old rule (the first resource
    /// with the record's To and text, whoever sent it). The soak must fail with it.
    pub legacy_match: bool,
    /// The `herald` binary that runs the stack (`herald soak-node`).
    pub exe: PathBuf,
}

/// What the soak found for one channel.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelReport {
    /// Records Herald accepted.
    pub accepted: usize,
    /// Of those, in a final state.
    #[serde(rename = "final")]
    pub final_: usize,
    /// Accepted but not final at the end.
    pub lost: usize,
    /// Records with a Twilio resource beyond what Twilio's reports called for, sent without
    /// Herald knowing it might be one.
    pub duplicated: usize,
    /// Records holding a Twilio SID that is not one of their own.
    pub adopted: usize,
    /// Records whose resources carry another To or text, or whose final status (or code, or
    /// acknowledgement) is not the simulator's truth.
    pub mismatched: usize,
    /// Records Herald sent again on purpose when it could not tell which resource was its own.
    pub ambiguous_resends: usize,
    /// Attempts beyond the first, over all records.
    pub retries: u64,
    /// Twilio resources created for the records.
    pub twilio_resources: usize,
    /// The first records found wrong, with what Herald and Twilio hold (ids and statuses only).
    pub findings: Vec<String>,
}

/// The most findings a channel report lists.
const MAX_FINDINGS: usize = 20;

impl ChannelReport {
    fn find(&mut self, finding: impl FnOnce() -> String) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(finding());
        }
    }
}

impl ChannelReport {
    /// Whether nothing was lost, doubled, adopted or wrong.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.adopted == 0 && self.mismatched == 0
    }
}

/// What the soak found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakReport {
    /// Messages.
    pub messages: ChannelReport,
    /// Voice alerts.
    pub calls: ChannelReport,
    /// Requests (or batch items) Herald refused; the workload is valid, so any is a failure.
    pub rejected: usize,
    /// The problem types of the refusals (no request content).
    pub rejections: Vec<String>,
    /// Whole-process kills.
    pub kills: usize,
    /// Requests the workload sent again (connection lost to a kill, 409, 429, 5xx).
    pub client_retries: u64,
    /// Jobs in the dead-letter queues at the end.
    pub dlq: u64,
    /// Wall time of the whole run.
    pub seconds: f64,
}

impl SoakReport {
    /// Whether nothing was lost, doubled, adopted, wrong or refused.
    pub fn ok(&self) -> bool {
        self.messages.ok() && self.calls.ok() && self.rejected == 0
    }
}

/// How to run the stack under the soak (`herald soak-node`).
#[derive(Debug, Clone, clap::Args)]
pub struct NodeOptions {
    /// The data folder, the same across restarts.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The gateway's port, the same across restarts (the callbacks' URLs name it).
    #[arg(long)]
    pub port: u16,
    /// The soak's simulator.
    #[arg(long)]
    pub twilio_url: String,
    /// As [`SoakOptions::fault_rate`].
    #[arg(long)]
    pub fault_rate: f64,
    /// As [`SoakOptions::seed`].
    #[arg(long)]
    pub seed: u64,
    /// As [`SoakOptions::legacy_match`].
    #[arg(long)]
    pub legacy_match: bool,
}

/// Runs the stack for a soak: prints one JSON line (`api_url`, `api_key`) once it serves, and
/// stops when its standard input ends (the soak is done, or died).
pub async fn node(opts: &NodeOptions) -> Result<(), BoxError> {
    let r = opts.fault_rate.clamp(0.0, 1.0);
    let mut s = StackOptions::new(&opts.data_dir);
    s.port = opts.port;
    s.seed = opts.seed;
    s.concurrency = 4;
    s.crash_after_claim = r / 10.0;
    s.crash_after_send = r / 10.0;
    s.sweep_every = Duration::from_secs(5);
    s.twilio_api_base_url = Some(opts.twilio_url.clone());
    s.legacy_match = opts.legacy_match;
    s.env.extend(
        [
            ("TWILIO_REQUEST_TIMEOUT_SECS", "1"),
            ("TWILIO_MAX_RETRIES", "20"),
            // Thousands of alerts from one caller to a few numbers in a minute: not what the
            // protection is for.
            ("CALLER_RATE_LIMIT_PER_MINUTE", "1000000"),
            ("CALLER_RATE_LIMIT_MESSAGES_PER_MINUTE", "1000000"),
            ("CALLER_RATE_LIMIT_BATCH_PER_MINUTE", "1000000"),
            ("CALLER_RATE_LIMIT_CALLS_PER_MINUTE", "1000000"),
            ("RECIPIENT_LIMIT_PER_HOUR", "1000000"),
            ("RECIPIENT_LIMIT_PER_DAY", "1000000"),
            ("COUNTRY_LIMIT_PER_HOUR", "1000000"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let stack = LocalStack::start(&s).await?;
    println!(
        "{}",
        json!({"api_url": stack.api_url, "api_key": stack.api_key})
    );
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    stack.shutdown().await;
    Ok(())
}

/// What the simulator does with messages to a number.
fn message_outcome(rng: &mut rand::rngs::StdRng) -> twilio_sim::Outcome {
    match rng.random_range(0..100) {
        0..80 => twilio_sim::Outcome::Deliver,
        80..88 => twilio_sim::Outcome::Undelivered(30003),
        88..94 => twilio_sim::Outcome::Failed(30007),
        _ => twilio_sim::Outcome::Failed(30008),
    }
}

/// What the callee at a number does.
fn call_outcome(rng: &mut rand::rngs::StdRng) -> CallOutcome {
    match rng.random_range(0..100) {
        0..40 => CallOutcome::AnswerAndPress("1".into()),
        40..70 => CallOutcome::AnswerNoInput,
        70..85 => CallOutcome::Busy,
        85..95 => CallOutcome::NoAnswer,
        _ => CallOutcome::Failed,
    }
}

/// The alerts an on-call rota receives again and again (letters, digits, spaces and periods:
/// the text is found verbatim in the TwiML).
const ALERTS: &[&str] = &[
    "Disk usage above 90 percent on db1",
    "Primary database is down",
    "Error rate above 5 percent on checkout",
    "Queue backlog growing on ingest",
];
const VOICE_ALERTS: &[&str] = &[
    "Database primary is down. Please respond.",
    "Payment API error rate is critical.",
];

/// One request of the workload.
#[derive(Debug, Clone)]
enum Job {
    Single {
        to: String,
        text: &'static str,
    },
    Batch {
        items: Vec<(String, &'static str)>,
    },
    Call {
        to: String,
        text: &'static str,
        require_ack: bool,
    },
}

/// A message Herald accepted, and what it was asked to send.
#[derive(Debug, Clone)]
struct Sent {
    id: String,
    to: String,
    text: &'static str,
    require_ack: bool,
}

/// The workload: bursts of identical alerts, some as concurrent singles, some in batches, with
/// voice alerts among them.
fn workload(
    rng: &mut rand::rngs::StdRng,
    messages: usize,
    calls: usize,
    sms_numbers: &[String],
    voice_numbers: &[String],
) -> Vec<Job> {
    let mut stream = Vec::with_capacity(messages);
    while stream.len() < messages {
        let to = sms_numbers.choose(rng).cloned().unwrap_or_default();
        let text = *ALERTS.choose(rng).unwrap_or(&ALERTS[0]);
        for _ in 0..rng.random_range(1..=6usize) {
            stream.push((to.clone(), text));
        }
    }
    stream.truncate(messages);
    let mut jobs = Vec::new();
    let mut rest = &stream[..];
    while !rest.is_empty() {
        let n = rng.random_range(1..=40usize).min(rest.len());
        let (seg, tail) = rest.split_at(n);
        rest = tail;
        if n > 12 {
            jobs.push(Job::Batch {
                items: seg.to_vec(),
            });
        } else {
            jobs.extend(seg.iter().map(|(to, text)| Job::Single {
                to: to.clone(),
                text,
            }));
        }
    }
    let mut placed = 0;
    while placed < calls {
        let to = voice_numbers.choose(rng).cloned().unwrap_or_default();
        let text = *VOICE_ALERTS.choose(rng).unwrap_or(&VOICE_ALERTS[0]);
        let require_ack = rng.random_bool(0.5);
        let burst = rng.random_range(1..=3usize).min(calls - placed);
        let at = rng.random_range(0..=jobs.len());
        for _ in 0..burst {
            jobs.insert(
                at,
                Job::Call {
                    to: to.clone(),
                    text,
                    require_ack,
                },
            );
        }
        placed += burst;
    }
    jobs
}

/// The running `herald soak-node`.
struct Node {
    child: tokio::process::Child,
    exe: PathBuf,
    args: Vec<String>,
    log: PathBuf,
}

impl Node {
    async fn start(exe: &Path, args: Vec<String>, log: &Path) -> Result<(Self, Value), BoxError> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = tokio::process::Command::new(exe)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("soak-node has no stdout")?;
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await?;
        let ready: Value = serde_json::from_str(&line).map_err(|_| {
            format!(
                "soak-node did not start (see {}): {:?}",
                log.display(),
                child.try_wait()
            )
        })?;
        Ok((
            Self {
                child,
                exe: exe.to_owned(),
                args,
                log: log.to_owned(),
            },
            ready,
        ))
    }

    /// SIGKILL, then the same process again on the same data folder and port.
    async fn kill_and_restart(&mut self) -> Result<(), BoxError> {
        self.child.start_kill()?;
        self.child.wait().await?;
        let (next, _) = Self::start(&self.exe, self.args.clone(), &self.log).await?;
        *self = next;
        Ok(())
    }

    /// Ends its standard input and waits for it to stop (killed if it does not in 10 s).
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Posts `body` to `path` with `key` until Herald answers it (anything but 409, 429 or 5xx),
/// sending it again, byte for byte, after a lost connection.
async fn post(
    http: &reqwest::Client,
    api: &(String, String),
    path: &str,
    body: &Value,
    key: &str,
    retries: &AtomicU64,
) -> Result<(u16, Value), BoxError> {
    let mut delay = Duration::from_millis(50);
    for _ in 0..2_000 {
        let sent = http
            .post(format!("{}{path}", api.0))
            .bearer_auth(&api.1)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await;
        if let Ok(resp) = sent {
            let status = resp.status().as_u16();
            if !(status == 409 || status == 429 || status >= 500)
                && let Ok(v) = resp.json::<Value>().await
            {
                return Ok((status, v));
            }
        }
        retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
    Err(format!("{path}: no answer after 2,000 tries").into())
}

/// What the workload recorded.
#[derive(Default)]
struct Accepted {
    messages: Vec<Sent>,
    calls: Vec<Sent>,
    rejections: Vec<String>,
}

impl Accepted {
    fn refused(&mut self, v: &Value) {
        self.rejections
            .push(v["type"].as_str().unwrap_or("unknown").to_owned());
    }
}

/// Runs one job to its answer.
async fn run_job(
    http: &reqwest::Client,
    api: &(String, String),
    job: Job,
    retries: &AtomicU64,
    out: &std::sync::Mutex<Accepted>,
) -> Result<(), BoxError> {
    let key = ulid::Ulid::new().to_string();
    match job {
        Job::Single { to, text } => {
            let body = json!({"to": to, "body": text});
            let (status, v) = post(http, api, "/v1/messages", &body, &key, retries).await?;
            let id = v["id"].as_str().or_else(|| v["message_id"].as_str());
            let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
            match (status, id) {
                (201 | 202 | 422, Some(id)) => out.messages.push(Sent {
                    id: id.to_owned(),
                    to,
                    text,
                    require_ack: false,
                }),
                _ => out.refused(&v),
            }
        }
        Job::Batch { items } => {
            let body = json!({"messages": items.iter().map(|(to, text)| json!({"to": to, "body": text})).collect::<Vec<_>>()});
            let (_, v) = post(http, api, "/v1/messages/batch", &body, &key, retries).await?;
            let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
            let answered = v["messages"].as_array().map_or(0, Vec::len);
            for m in v["messages"].as_array().into_iter().flatten() {
                let i = usize::try_from(m["index"].as_u64().unwrap_or(u64::MAX)).ok();
                match (m["id"].as_str(), i.and_then(|i| items.get(i))) {
                    (Some(id), Some((to, text))) => out.messages.push(Sent {
                        id: id.to_owned(),
                        to: to.clone(),
                        text,
                        require_ack: false,
                    }),
                    _ => out.refused(m),
                }
            }
            for e in v["errors"].as_array().into_iter().flatten() {
                out.refused(e);
            }
            if answered == 0 && v["errors"].as_array().is_none_or(Vec::is_empty) {
                out.refused(&v);
            }
        }
        Job::Call {
            to,
            text,
            require_ack,
        } => {
            let body = json!({"to": to, "message": text, "require_ack": require_ack});
            let (status, v) = post(http, api, "/v1/calls", &body, &key, retries).await?;
            let id = v["id"].as_str().or_else(|| v["call_id"].as_str());
            let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
            match (status, id) {
                (201 | 202 | 422, Some(id)) => out.calls.push(Sent {
                    id: id.to_owned(),
                    to,
                    text,
                    require_ack,
                }),
                _ => out.refused(&v),
            }
        }
    }
    Ok(())
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

/// The value of `name` in the query of a callback URL.
fn query_param(url: Option<&str>, name: &str) -> Option<String> {
    let url = url::Url::parse(url?).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Whether record `id` (a call with `call`, else a message) is in a final state.
async fn is_final(store: &SqliteStore, id: &str, call: bool) -> Result<bool, BoxError> {
    Ok(if call {
        let c = Records::<Call>::get_record(store, &id.parse()?).await?;
        c.is_some_and(|c| c.status.is_terminal())
    } else {
        let m = Records::<Message>::get_record(store, &id.parse()?).await?;
        m.is_some_and(|m| m.status.is_terminal())
    })
}

/// The attempt a status callback URL names (its `a` parameter).
fn attempt_of(url: Option<&str>) -> Option<u32> {
    query_param(url, "a")?.parse().ok()
}

/// Runs a soak in `data_dir`.
pub async fn run(data_dir: &Path, opts: &SoakOptions) -> Result<SoakReport, BoxError> {
    let started = Instant::now();
    let r = opts.fault_rate.clamp(0.0, 1.0);
    std::fs::create_dir_all(data_dir)?;

    // The simulator, in this process: it outlives every kill of Herald's.
    let creds = crate::stack::credentials(data_dir)?;
    let mut sim_cfg =
        twilio_sim::SimConfig::new(creds.account_sid.clone(), creds.auth_token.expose().clone());
    sim_cfg.api_keys = vec![(
        creds.api_key_sid.clone(),
        creds.api_key_secret.expose().clone(),
    )];
    sim_cfg.seed = opts.seed;
    let sim = twilio_sim::Simulator::start(sim_cfg).await?;
    sim.set_faults(twilio_sim::Faults {
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
    let sms_numbers: Vec<String> = (0..(opts.messages / 50).clamp(3, 200))
        .map(|i| format!("+1415{:07}", 2_000_000 + i))
        .collect();
    for to in &sms_numbers {
        sim.set_outcome(to, message_outcome(&mut rng));
    }
    let voice_numbers: Vec<String> = (0..(opts.calls / 8).clamp(2, 50))
        .map(|i| format!("+1415{:07}", 3_000_000 + i))
        .collect();
    for to in &voice_numbers {
        sim.set_call_outcome(to, call_outcome(&mut rng));
    }
    let jobs = workload(
        &mut rng,
        opts.messages,
        opts.calls,
        &sms_numbers,
        &voice_numbers,
    );

    // Herald, in a process of its own, on a port the OS picked.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut args = vec![
        "soak-node".to_owned(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--port".into(),
        port.to_string(),
        "--twilio-url".into(),
        sim.base_url(),
        "--fault-rate".into(),
        r.to_string(),
        "--seed".into(),
        opts.seed.to_string(),
    ];
    if opts.legacy_match {
        args.push("--legacy-match".into());
    }
    let (mut node, ready) = Node::start(&opts.exe, args, &data_dir.join("soak-node.log")).await?;
    let api = Arc::new((
        ready["api_url"].as_str().unwrap_or_default().to_owned(),
        ready["api_key"].as_str().unwrap_or_default().to_owned(),
    ));

    let http = reqwest::Client::new();
    let retries = Arc::new(AtomicU64::new(0));
    let out = Arc::new(std::sync::Mutex::new(Accepted::default()));
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let waves = opts.kills.max(1);
    let per_wave = jobs.len().div_ceil(waves).max(1);
    let mut kills = 0;
    for (w, wave) in jobs.chunks(per_wave).enumerate() {
        let mut tasks = tokio::task::JoinSet::new();
        for job in wave.iter().cloned() {
            let (http, api, retries, out, limit) = (
                http.clone(),
                api.clone(),
                retries.clone(),
                out.clone(),
                limit.clone(),
            );
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                run_job(&http, &api, job, &retries, &out).await
            });
        }
        let kill_in = Duration::from_millis(rng.random_range(100..1_500));
        let killer = async {
            if w < opts.kills {
                tokio::time::sleep(kill_in).await;
                node.kill_and_restart().await?;
                kills += 1;
            }
            Ok::<_, BoxError>(())
        };
        let (answers, killed) = tokio::join!(tasks.join_all(), killer);
        killed?;
        for a in answers {
            a?;
        }
    }
    let Accepted {
        messages: sent_messages,
        calls: sent_calls,
        rejections,
    } = std::mem::take(&mut *out.lock().unwrap_or_else(|p| p.into_inner()));

    // Settling, with one more kill in the middle of it.
    let db = data_dir.join("herald.db");
    let clock: Arc<dyn herald::ports::Clock> = Arc::new(SystemClock);
    let store = SqliteStore::open(&db, clock.clone())?;
    let progress = opts.progress && std::io::stderr().is_terminal();
    let total = sent_messages.len() + sent_calls.len();
    let deadline = Instant::now() + opts.deadline;
    let final_count = AtomicUsize::new(0);
    let settle = async {
        let mut open: Vec<(&str, bool)> = sent_messages
            .iter()
            .map(|s| (s.id.as_str(), false))
            .chain(sent_calls.iter().map(|s| (s.id.as_str(), true)))
            .collect();
        loop {
            let mut still = Vec::new();
            for (id, call) in open {
                if !is_final(&store, id, call).await? {
                    still.push((id, call));
                }
            }
            open = still;
            let done = total - open.len();
            final_count.store(done, Ordering::Relaxed);
            if progress {
                bar(done, total, started);
            }
            if done >= total || Instant::now() >= deadline {
                return Ok::<_, BoxError>(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let settle_kill = async {
        if opts.kills > 0 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..2_000))).await;
            node.kill_and_restart().await?;
            kills += 1;
        }
        Ok::<_, BoxError>(())
    };
    let (settled, killed) = tokio::join!(settle, settle_kill);
    settled?;
    killed?;
    if progress {
        eprintln!();
    }
    sim.wait_idle().await;
    node.stop().await;

    let send_queue = SqliteQueue::open(&db, "send", MAX_RECEIVE_COUNT, clock)?;
    let retry_queue = send_queue.sibling("retry", MAX_RECEIVE_COUNT)?;
    let dlq = send_queue.depth().await?.dead + retry_queue.depth().await?.dead;

    let (messages, calls) = check_records(&store, &sim, &sent_messages, &sent_calls).await?;
    sim.shutdown().await;
    Ok(SoakReport {
        messages,
        calls,
        rejected: rejections.len(),
        rejections,
        kills,
        client_retries: retries.load(Ordering::Relaxed),
        dlq,
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    })
}

/// A Twilio resource as the per-record checks see it, whichever channel made it.
struct Resource {
    sid: String,
    /// The attempt its status callback URL names.
    attempt: Option<u32>,
    /// It carries the record's own To and text (the body, or the TwiML's words).
    own_content: bool,
    status: &'static str,
    error_code: Option<u32>,
    /// Twilio reported this one failed, so a next one is called for: a message
    /// `failed`/`undelivered`; a call busy, unanswered, failed, canceled, or answered without
    /// the acknowledgement it required.
    calls_for_another: bool,
    ack: Ack,
}

/// Whether the callee of a call acknowledged it, as the simulator saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ack {
    /// No 1 was pressed (or no acknowledgement was asked for).
    No,
    /// 1 was pressed and Herald answered with its thanks.
    Yes,
    /// 1 was pressed and Herald's answer never came: it was killed while handling it, before
    /// or after it stored the acknowledgement. Either record is true: acknowledged (the callee
    /// pressed 1 and Herald kept it), or not, and then the alert must be called again.
    Unanswered,
}

/// A record as the per-record checks see it.
struct Held {
    status: &'static str,
    terminal: bool,
    attempt: u32,
    sid: Option<String>,
    in_doubt: bool,
    error_code: Option<u32>,
    acknowledged: bool,
}

impl Held {
    /// How the checks see `r`.
    fn of<R: Attempted>(r: &R, acknowledged: bool) -> Self {
        let attempts = r.attempts();
        Self {
            status: r.status().as_str(),
            terminal: r.status().is_terminal(),
            attempt: attempts.attempt,
            sid: r.twilio_sid().map(str::to_owned),
            in_doubt: attempts.doubt_since_ms.is_some(),
            error_code: r.error_code(),
            acknowledged,
        }
    }
}

/// The per-record checks of one channel: `own` holds the resources made for each record (by
/// the id in their status callback URL), `records` what Herald holds for each of `sent`.
fn check(
    sent: &[Sent],
    mut own: HashMap<String, Vec<Resource>>,
    records: Vec<Option<Held>>,
    describe: impl Fn(&Resource) -> String,
) -> ChannelReport {
    let mut report = ChannelReport {
        accepted: sent.len(),
        ..ChannelReport::default()
    };
    for (s, rec) in sent.iter().zip(records) {
        let Some(rec) = rec else {
            report.lost += 1;
            report.find(|| format!("{}: not in the store", s.id));
            continue;
        };
        let mine = own.remove(&s.id).unwrap_or_default();
        report.twilio_resources += mine.len();
        report.retries += u64::from(rec.attempt.saturating_sub(1));
        let mut wrong = mine.iter().any(|r| !r.own_content);
        // Herald keeps an acknowledgement on the call it was given on, its last.
        let kept_ack = |r: &Resource| rec.acknowledged && rec.sid.as_deref() == Some(&r.sid);
        // A next call after an unanswered acknowledgement is called for only when Herald did
        // not keep it.
        let another =
            |r: &Resource| r.calls_for_another || (r.ack == Ack::Unanswered && !kept_ack(r));
        let unasked = mine.windows(2).filter(|w| !another(&w[0])).count();
        let duplicated = unasked > 0 && !rec.in_doubt;
        report.duplicated += usize::from(duplicated);
        report.ambiguous_resends += usize::from(unasked > 0 && rec.in_doubt);
        let held = rec
            .sid
            .as_deref()
            .map(|sid| mine.iter().find(|r| r.sid == sid));
        let adopted = matches!(held, Some(None));
        report.adopted += usize::from(adopted);
        let lost = !rec.terminal;
        if lost {
            report.lost += 1;
        } else {
            report.final_ += 1;
            // Herald's own failure when its last attempt reached no Twilio resource.
            let last_sent = mine.iter().any(|r| r.attempt == Some(rec.attempt));
            let truth = held.flatten().or(mine.last().filter(|_| last_sent));
            let (want, code) =
                truth.map_or(("failed", rec.error_code), |r| (r.status, r.error_code));
            wrong |= rec.status != want || rec.error_code != code;
            wrong |= if rec.acknowledged {
                !mine.iter().any(|r| kept_ack(r) && r.ack != Ack::No)
            } else {
                mine.iter().any(|r| r.ack == Ack::Yes)
            };
        }
        report.mismatched += usize::from(wrong);
        if wrong || lost || adopted || duplicated {
            report.find(|| {
                let twilio: Vec<String> = mine
                    .iter()
                    .map(|r| {
                        let held = if rec.sid.as_deref() == Some(r.sid.as_str()) { "*" } else { "" };
                        let attempt = r.attempt.map_or("?".into(), |a| a.to_string());
                        let foreign = if r.own_content { "" } else { " foreign" };
                        format!("{}{held} a{attempt}{foreign} {}", r.status, describe(r))
                    })
                    .collect();
                format!(
                    "{}: herald {} {:?} attempt {} ack {} require_ack {} adopted {adopted}; twilio [{}]",
                    s.id,
                    rec.status,
                    rec.error_code,
                    rec.attempt,
                    rec.acknowledged,
                    s.require_ack,
                    twilio.join(", ")
                )
            });
        }
    }
    report
}

/// A resource the simulator made, found by its status callback URL.
trait Made {
    /// Its `StatusCallback` URL.
    fn status_callback(&self) -> Option<&str>;
}

impl Made for twilio_sim::SimMessage {
    fn status_callback(&self) -> Option<&str> {
        self.status_callback.as_deref()
    }
}

impl Made for twilio_sim::SimCall {
    fn status_callback(&self) -> Option<&str> {
        self.status_callback.as_deref()
    }
}

/// The simulator's resources of one channel, by the record their status callback URL names
/// in its `param` parameter: each of `made` that `resource` keeps, given the record's [`Sent`]
/// (when it is one of `sent`) and the attempt the URL names.
fn own_resources<T: Made>(
    sent: &[Sent],
    made: Vec<T>,
    param: &str,
    resource: impl Fn(T, Option<&Sent>, Option<u32>) -> Option<Resource>,
) -> HashMap<String, Vec<Resource>> {
    let texts: HashMap<&str, &Sent> = sent.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut own: HashMap<String, Vec<Resource>> = HashMap::new();
    for r in made {
        let url = r.status_callback();
        let Some(id) = query_param(url, param) else {
            continue;
        };
        let attempt = attempt_of(url);
        if let Some(r) = resource(r, texts.get(id.as_str()).copied(), attempt) {
            own.entry(id).or_default().push(r);
        }
    }
    own
}

/// What Herald holds for each of `sent` (a record of kind `R`), as `held` sees it.
async fn held_records<R: Attempted>(
    store: &SqliteStore,
    sent: &[Sent],
    held: impl Fn(&Sent, R) -> Held,
) -> Result<Vec<Option<Held>>, BoxError>
where
    SqliteStore: Records<R>,
    R::Id: std::str::FromStr<Err = InvalidId>,
{
    let mut records = Vec::with_capacity(sent.len());
    for s in sent {
        let id: R::Id = s.id.parse()?;
        records.push(
            Records::<R>::get_record(store, &id)
                .await?
                .map(|r| held(s, r)),
        );
    }
    Ok(records)
}

/// A message the simulator holds, as the checks see it (`s`: the message it was made for).
fn message_resource(
    m: twilio_sim::SimMessage,
    s: Option<&Sent>,
    attempt: Option<u32>,
) -> Option<Resource> {
    Some(Resource {
        attempt,
        own_content: s.is_some_and(|s| m.to == s.to && m.body == s.text),
        status: m.status.as_str(),
        error_code: m.error_code,
        calls_for_another: matches!(
            m.status,
            SimMessageStatus::Failed | SimMessageStatus::Undelivered
        ),
        ack: Ack::No,
        sid: m.sid,
    })
}

/// Whether the callee acknowledged `c`: pressed 1 and was thanked, or pressed 1 and heard no
/// answer.
fn acknowledged(c: &twilio_sim::SimCall) -> Ack {
    if c.digits.as_deref() != Some("1") {
        return Ack::No;
    }
    match c.gather_response.as_deref() {
        Some(t) if t.contains("<Hangup/>") => Ack::Yes,
        Some(_) => Ack::No,
        None => Ack::Unanswered,
    }
}

/// A call the simulator holds, as the checks see it (`s`: the alert it was made for; none
/// when it was made for another).
fn call_resource(
    c: twilio_sim::SimCall,
    s: Option<&Sent>,
    attempt: Option<u32>,
) -> Option<Resource> {
    let s = s?;
    let said = c.executed_twiml.as_deref().or(c.twiml.as_deref());
    let ack = if s.require_ack {
        acknowledged(&c)
    } else {
        Ack::No
    };
    Some(Resource {
        attempt,
        own_content: c.to == s.to && said.is_some_and(|t| t.contains(s.text)),
        status: c.status.as_str(),
        error_code: None,
        calls_for_another: match c.status {
            SimCallStatus::Busy
            | SimCallStatus::NoAnswer
            | SimCallStatus::Failed
            | SimCallStatus::Canceled => true,
            SimCallStatus::Completed => s.require_ack && ack == Ack::No,
            _ => false,
        },
        ack,
        sid: c.sid,
    })
}

/// The per-record checks of the messages, then of the calls (error codes aside for these: a
/// call's outcome is its status and its acknowledgement).
async fn check_records(
    store: &SqliteStore,
    sim: &twilio_sim::SimHandle,
    messages: &[Sent],
    calls: &[Sent],
) -> Result<(ChannelReport, ChannelReport), BoxError> {
    let own = own_resources(messages, sim.messages(), "mid", message_resource);
    let records = held_records(store, messages, |_, m: Message| Held::of(&m, false)).await?;
    let messages = check(messages, own, records, |r| format!("{:?}", r.error_code));
    let own = own_resources(calls, sim.calls(), "cid", call_resource);
    let records = held_records(store, calls, |s, c: Call| {
        let acknowledged = s.require_ack && c.own.acknowledged_at_ms.is_some();
        Held {
            error_code: None,
            ..Held::of(&c, acknowledged)
        }
    })
    .await?;
    let calls = check(calls, own, records, |r| format!("ack {:?}", r.ack));
    Ok((messages, calls))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One voice alert that asked for an acknowledgement.
    fn alert() -> Vec<Sent> {
        vec![Sent {
            id: "call_1".into(),
            to: "+14155550100".into(),
            text: "Disk full",
            require_ack: true,
        }]
    }

    /// The call of `attempt`, completed, with what the callee's 1 got.
    fn call(attempt: u32, ack: Ack) -> Resource {
        Resource {
            sid: format!("CA{attempt}"),
            attempt: Some(attempt),
            own_content: true,
            status: "completed",
            error_code: None,
            calls_for_another: ack == Ack::No,
            ack,
        }
    }

    /// What Herald holds: completed on `attempt`, with that call's SID.
    fn held(attempt: u32, acknowledged: bool) -> Option<Held> {
        Some(Held {
            status: "completed",
            terminal: true,
            attempt,
            sid: Some(format!("CA{attempt}")),
            in_doubt: false,
            error_code: None,
            acknowledged,
        })
    }

    fn judge(calls: Vec<Resource>, record: Option<Held>) -> ChannelReport {
        let own = HashMap::from([("call_1".to_string(), calls)]);
        check(&alert(), own, vec![record], |r| format!("ack {:?}", r.ack))
    }

    /// (mismatched, duplicated) of one judged record.
    fn verdict(calls: Vec<Resource>, record: Option<Held>) -> (usize, usize) {
        let r = judge(calls, record);
        (r.mismatched, r.duplicated)
    }

    #[test]
    fn an_acknowledgement_herald_thanked_for_must_be_held() {
        assert_eq!(verdict(vec![call(1, Ack::Yes)], held(1, true)), (0, 0));
        assert_eq!(verdict(vec![call(1, Ack::Yes)], held(1, false)), (1, 0));
    }

    #[test]
    fn an_acknowledgement_no_one_gave_must_not_be_held() {
        assert_eq!(verdict(vec![call(1, Ack::No)], held(1, true)), (1, 0));
    }

    /// Herald killed while handling the 1, after or before storing it: either is true, and the
    /// alert is called again only when it was not kept.
    #[test]
    fn an_unanswered_acknowledgement_is_kept_or_called_again_never_both() {
        assert_eq!(
            verdict(vec![call(1, Ack::Unanswered)], held(1, true)),
            (0, 0)
        );
        assert_eq!(
            verdict(
                vec![call(1, Ack::Unanswered), call(2, Ack::Yes)],
                held(2, true)
            ),
            (0, 0)
        );
        let kept_and_called_again = judge(
            vec![call(1, Ack::Unanswered), call(2, Ack::Yes)],
            Some(Held {
                sid: Some("CA1".into()),
                ..held(1, true).unwrap()
            }),
        );
        assert_eq!(kept_and_called_again.duplicated, 1);
    }
}

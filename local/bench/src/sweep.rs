//! `herald-bench sweep`: the sweeper under a backlog. `stuck` messages that Twilio leaves at
//! `sent` forever (their final callback never comes) are sent through `send_sms::handle` into the
//! embedded SQLite store, with the Twilio simulator on loopback; then `fresh` recent messages
//! whose final callback was lost (Twilio delivered them, Herald still shows `sent` or `queued`).
//! With the injected clock past the sweep grace, it runs the sweeper as retry-processor does
//! (`herald::delivery::sweep` with `retry_processor::SWEEP_GRACE_MS`) until every stuck message
//! was asked about. The guarantees are checked (an error, a broken harness, otherwise): the first
//! sweep makes every fresh message final, and every stuck one is asked about within
//! `ceil(stuck / (limit / 2))` sweeps. Timings are only reported.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use herald::domain::{MessageId, MessageStatus, StatusChange};
use herald::ports::Clock as _;
use herald::test_env::{TestEnv, json_request, read};
use serde::Serialize;

use crate::emulator::ms;
use crate::stats::{Summary, percentile};

const STUCK_TO: &str = "+14155550123";
const FRESH_TO: &str = "+14155550124";
const GRACE_MS: i64 = retry_processor::SWEEP_GRACE_MS;

/// The whole `sweep` result.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SweepReport {
    /// Stuck messages (Twilio leaves them at `sent`).
    pub stuck: usize,
    /// Recent messages whose final callback was lost.
    pub fresh: usize,
    /// The sweep limit per status.
    pub limit: u32,
    /// The walk's share of it, `h = limit / 2`.
    pub walk_share: u32,
    /// Seconds to send the stuck messages through `send_sms::handle` (concurrently).
    pub seed_send_secs: f64,
    /// Seconds for the simulator to move them (callbacks to a closed port, lost).
    pub seed_twilio_secs: f64,
    /// Seconds to apply their `sent` status in the store.
    pub seed_sent_secs: f64,
    /// Sweeps run.
    pub sweeps: usize,
    /// Wall time of each sweep, ms.
    pub sweep_ms: Summary,
    /// Its 95th percentile, ms.
    pub sweep_p95_ms: f64,
    /// Twilio GETs (message fetches) per sweep.
    pub gets_per_sweep: Summary,
    /// Sweeps until every fresh message was final (the promise: 1).
    pub sweeps_to_fresh_final: usize,
    /// Sweeps until every stuck message was asked about at least once.
    pub sweeps_to_cover_backlog: usize,
    /// The promise: `ceil(stuck / h)`.
    pub cover_bound: usize,
    /// Stuck messages still `sent` at the end (all of them: none may be moved).
    pub stuck_still_sent: usize,
}

async fn send(env: &TestEnv, to: &str, i: usize) -> Result<MessageId, String> {
    let body = serde_json::json!({"to": to, "body": format!("Backlog alert {i}")});
    let resp = send_sms::handle(&env.services, json_request("POST", "/v1/messages", &body))
        .await
        .map_err(|e| e.to_string())?;
    let (status, answer) = read(&resp);
    if status != 201 {
        return Err(format!("POST /v1/messages answered {status}"));
    }
    answer["id"]
        .as_str()
        .ok_or("no id in the answer")?
        .parse()
        .map_err(|_| "an unreadable message id".to_owned())
}

/// Twilio's `sent` callback arrived (applied as the webhook does); returns the Twilio SID.
async fn apply_sent(env: &TestEnv, id: &MessageId) -> Result<String, String> {
    let m = env
        .services
        .messages
        .get_record(id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("a sent message is not in the store")?;
    let sid = m.twilio_sid.clone().ok_or("a sent message has no SID")?;
    let change = StatusChange {
        twilio_sid: Some(sid.clone()),
        ..StatusChange::new(m.attempts.attempt, MessageStatus::Sent, env.clock.now_ms())
    };
    env.services
        .messages
        .apply_message_status(id, &change)
        .await
        .map_err(|e| e.to_string())?;
    Ok(sid)
}

async fn status_of(env: &TestEnv, id: &MessageId) -> Result<MessageStatus, String> {
    Ok(env
        .services
        .messages
        .get_record(id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("a message left the store")?
        .status)
}

/// The SIDs of the message GETs the simulator saw from `from` on (request index).
fn gets_since(env: &TestEnv, from: usize) -> (Vec<String>, usize) {
    let requests = env.sim.requests();
    let sids = requests[from.min(requests.len())..]
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/Messages/"))
        .filter_map(|r| r.path.rsplit('/').next())
        .map(|s| s.trim_end_matches(".json").to_owned())
        .collect();
    (sids, requests.len())
}

/// Runs `sweep`.
pub async fn run(
    stuck: usize,
    fresh: usize,
    limit: u32,
    concurrency: usize,
) -> Result<SweepReport, String> {
    if stuck == 0 || fresh == 0 {
        return Err("--stuck and --fresh must be at least 1".into());
    }
    // Callbacks go to a closed port: Twilio moves the messages on, Herald never hears of it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?;
    let base = format!("http://{closed}");
    let env = Arc::new(
        TestEnv::start_with(&[
            ("TWILIO_WEBHOOK_BASE_URL", base.as_str()),
            // inprocess's limits: every message of the backlog goes to one number.
            ("CALLER_RATE_LIMIT_PER_MINUTE", "10000000"),
            ("RECIPIENT_LIMIT_PER_HOUR", "1000000"),
            ("RECIPIENT_LIMIT_PER_DAY", "10000000"),
            ("COUNTRY_LIMIT_PER_HOUR", "100000000"),
        ])
        .await,
    );
    env.sim
        .set_outcome(STUCK_TO, twilio_sim::Outcome::StaysSent);

    // 1. The backlog, through send-sms, `concurrency` at a time; 1 ms of clock per message.
    let t = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (env, next) = (env.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= stuck {
                    return Ok::<_, String>(ids);
                }
                ids.push(send(&env, STUCK_TO, i).await?);
                env.clock.advance(1);
            }
        }));
    }
    let mut stuck_ids = Vec::with_capacity(stuck);
    for task in tasks {
        stuck_ids.extend(task.await.map_err(|e| e.to_string())??);
    }
    let seed_send_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    env.sim.flush_callbacks().await;
    let seed_twilio_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut stuck_sids = HashSet::with_capacity(stuck);
    for id in &stuck_ids {
        stuck_sids.insert(apply_sent(&env, id).await?);
    }
    let seed_sent_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "  seeded {stuck} stuck: send {seed_send_secs:.1} s, Twilio {seed_twilio_secs:.1} s, sent {seed_sent_secs:.1} s"
    );
    env.clock.advance(GRACE_MS * 2);

    // 2. Recent messages whose final callback was lost: half at `sent`, half at `queued`.
    let mut fresh_ids = Vec::with_capacity(fresh);
    for i in 0..fresh {
        fresh_ids.push(send(&env, FRESH_TO, i).await?);
    }
    env.sim.flush_callbacks().await;
    for id in fresh_ids.iter().step_by(2) {
        apply_sent(&env, id).await?;
    }
    env.clock.advance(GRACE_MS * 2);

    // 3. Sweeps, as retry-processor runs them, until the backlog is covered (and a few past
    // the bound if it is not: then it is an error).
    let (_, walk) = herald::sweep_pages::shares(limit);
    let cover_bound = stuck.div_ceil(walk as usize);
    let mut asked: HashSet<String> = HashSet::with_capacity(stuck);
    let (_, mut seen_requests) = gets_since(&env, 0);
    let mut times = Vec::new();
    let mut gets = Vec::new();
    let mut sweeps_to_fresh_final = None;
    let mut sweeps_to_cover_backlog = None;
    let mut sweeps = 0;
    while sweeps_to_cover_backlog.is_none() && sweeps < cover_bound + 2 {
        let t = Instant::now();
        herald::delivery::sweep(&env.services, GRACE_MS, limit)
            .await
            .map_err(|e| format!("sweep: {e}"))?;
        times.push(ms(t.elapsed()));
        sweeps += 1;
        let (sids, n) = gets_since(&env, seen_requests);
        seen_requests = n;
        gets.push(sids.len() as f64);
        asked.extend(sids.into_iter().filter(|s| stuck_sids.contains(s)));
        if sweeps_to_fresh_final.is_none() {
            let mut all = true;
            for id in &fresh_ids {
                all &= status_of(&env, id).await? == MessageStatus::Delivered;
            }
            if all {
                sweeps_to_fresh_final = Some(sweeps);
            }
        }
        if asked.len() == stuck_sids.len() {
            sweeps_to_cover_backlog = Some(sweeps);
        }
        if sweeps % 50 == 0 {
            eprintln!(
                "  {sweeps} sweeps, {} of {stuck} stuck asked about",
                asked.len()
            );
        }
    }
    let mut stuck_still_sent = 0;
    for id in &stuck_ids {
        if status_of(&env, id).await? == MessageStatus::Sent {
            stuck_still_sent += 1;
        }
    }
    let sweeps_to_fresh_final =
        sweeps_to_fresh_final.ok_or("a fresh message never became final")?;
    if sweeps_to_fresh_final != 1 {
        return Err(format!(
            "the fresh messages became final only after {sweeps_to_fresh_final} sweeps, not 1"
        ));
    }
    let sweeps_to_cover_backlog = sweeps_to_cover_backlog.ok_or_else(|| {
        format!(
            "{} of {stuck} stuck messages never asked about in {sweeps} sweeps (bound {cover_bound})",
            stuck - asked.len()
        )
    })?;
    if sweeps_to_cover_backlog > cover_bound {
        return Err(format!(
            "the backlog took {sweeps_to_cover_backlog} sweeps to cover, past the bound {cover_bound}"
        ));
    }
    if stuck_still_sent != stuck {
        return Err(format!(
            "{} stuck messages left `sent`",
            stuck - stuck_still_sent
        ));
    }
    Ok(SweepReport {
        stuck,
        fresh,
        limit,
        walk_share: walk,
        seed_send_secs,
        seed_twilio_secs,
        seed_sent_secs,
        sweeps,
        sweep_ms: Summary::of(&times).ok_or("no sweep timed")?,
        sweep_p95_ms: percentile(&times, 95.0).ok_or("no sweep timed")?,
        gets_per_sweep: Summary::of(&gets).ok_or("no sweep counted")?,
        sweeps_to_fresh_final,
        sweeps_to_cover_backlog,
        cover_bound,
        stuck_still_sent,
    })
}

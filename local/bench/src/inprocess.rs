//! `herald-bench inprocess`: the CPU cost of a message, in one process, with the embedded
//! adapters (SQLite in memory, local key) and the Twilio simulator on loopback
//! (`herald::test_env::TestEnv`): `send_sms::handle` for `POST /v1/messages` and
//! `webhook_receiver::handle` for signed status callbacks (signature check, dedupe, status
//! update), one at a time for latency, and many at once for throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use herald::test_env::{TestEnv, WEBHOOK_BASE, json_request, request};
use herald::twilio::signature;
use serde::Serialize;

use crate::emulator::ms;
use crate::stats::Summary;

/// Latency and throughput of one kind of request.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Figures {
    /// One at a time: latency of each request, ms.
    pub sequential_ms: Summary,
    /// Requests in the concurrent run.
    pub concurrent_requests: usize,
    /// Requests in flight at once in that run.
    pub concurrency: usize,
    /// Their latency under that load, ms.
    pub concurrent_ms: Summary,
    /// Requests answered per second in that run.
    pub per_second: f64,
}

/// The whole `inprocess` result.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct InprocessReport {
    /// Worker threads of the runtime (the cores used).
    pub worker_threads: usize,
    /// `POST /v1/messages` → `201`, through the simulator.
    pub send_sms: Figures,
    /// A signed status callback → `200`.
    pub webhook: Figures,
}

fn recipient(i: usize) -> String {
    format!("+1415555{:04}", i % 10_000)
}

async fn send_one(env: &TestEnv, i: usize) -> Result<f64, String> {
    let req = json_request(
        "POST",
        "/v1/messages",
        &serde_json::json!({"to": recipient(i), "body": format!("Disk almost full on db-{i}")}),
    );
    let t = Instant::now();
    let resp = send_sms::handle(&env.services, req)
        .await
        .map_err(|e| e.to_string())?;
    let took = ms(t.elapsed());
    if resp.status().as_u16() != 201 {
        return Err(format!("POST /v1/messages answered {}", resp.status()));
    }
    Ok(took)
}

/// The status callback `status` of the simulator's message `m`, to `url` (at `path_and_query`
/// under the webhook base), signed with `token` as Twilio signs it.
pub(crate) fn signed_status_callback(
    token: &str,
    m: &twilio_sim::SimMessage,
    url: &str,
    path_and_query: &str,
    status: &str,
) -> lambda_http::Request {
    let params = [
        ("AccountSid", m.account_sid.as_str()),
        ("ApiVersion", "2010-04-01"),
        ("From", "+15005550006"),
        ("MessageSid", m.sid.as_str()),
        ("MessageStatus", status),
        ("SmsSid", m.sid.as_str()),
        ("SmsStatus", status),
        ("To", m.to.as_str()),
    ];
    let sig = signature::compute(token, url, params.iter().copied());
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    request(
        "POST",
        path_and_query,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", &sig),
        ],
        body.as_bytes(),
    )
}

/// For each message the simulator holds, its two status callbacks as Twilio signs them:
/// `sent`, then `delivered`.
fn callbacks(env: &TestEnv) -> Vec<[lambda_http::Request; 2]> {
    let token = env.creds.auth_token.expose().clone();
    let signed = |m: &twilio_sim::SimMessage, url: &str, path_and_query: &str, status: &str| {
        signed_status_callback(&token, m, url, path_and_query, status)
    };
    env.sim
        .messages()
        .iter()
        .filter_map(|m| {
            let url = m.status_callback.clone()?;
            let path_and_query = url.strip_prefix(WEBHOOK_BASE)?;
            Some([
                signed(m, &url, path_and_query, "sent"),
                signed(m, &url, path_and_query, "delivered"),
            ])
        })
        .collect()
}

async fn deliver(env: &TestEnv, req: lambda_http::Request) -> Result<f64, String> {
    let t = Instant::now();
    let resp = webhook_receiver::handle(&env.services, req)
        .await
        .map_err(|e| e.to_string())?;
    let took = ms(t.elapsed());
    if resp.status().as_u16() != 200 {
        return Err(format!("status callback answered {}", resp.status()));
    }
    Ok(took)
}

/// Runs `count` jobs `concurrency` at a time; returns each latency and the wall time.
async fn concurrently<F, Fut>(
    count: usize,
    concurrency: usize,
    job: F,
) -> Result<(Vec<f64>, f64), String>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<f64, String>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (job, next) = (job.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, String>(samples);
                }
                samples.push(job(i).await?);
            }
        }));
    }
    let mut all = Vec::with_capacity(count);
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok((all, t.elapsed().as_secs_f64()))
}

fn summary(samples: &[f64], what: &str) -> Result<Summary, String> {
    Summary::of(samples).ok_or_else(|| format!("no {what} measured"))
}

/// Runs `inprocess`: `messages` sequential and `messages` concurrent sends, then their status
/// callbacks the same way.
pub async fn run(
    messages: usize,
    concurrency: usize,
    worker_threads: usize,
) -> Result<InprocessReport, String> {
    let limits = [
        ("CALLER_RATE_LIMIT_PER_MINUTE", "10000000"),
        ("RECIPIENT_LIMIT_PER_HOUR", "1000000"),
        ("RECIPIENT_LIMIT_PER_DAY", "10000000"),
        ("COUNTRY_LIMIT_PER_HOUR", "100000000"),
    ];
    let env = Arc::new(TestEnv::start_with(&limits).await);
    // Warm up: the first send fetches the secret and makes the data key.
    for i in 0..20 {
        send_one(&env, i).await?;
    }
    let mut seq = Vec::with_capacity(messages);
    for i in 0..messages {
        seq.push(send_one(&env, 100 + i).await?);
    }
    let e = env.clone();
    let (conc, wall) = concurrently(messages, concurrency, move |i| {
        let e = e.clone();
        async move { send_one(&e, 100_000 + i).await }
    })
    .await?;
    let send_sms = Figures {
        sequential_ms: summary(&seq, "send")?,
        concurrent_requests: conc.len(),
        concurrency,
        concurrent_ms: summary(&conc, "send")?,
        per_second: conc.len() as f64 / wall,
    };

    // Callbacks: those of half the messages one at a time (`sent`, then `delivered`), those of
    // the other half concurrently (every `sent`, then every `delivered`, as Twilio sends them).
    let pairs = callbacks(&env);
    if pairs.len() < 2 {
        return Err("the simulator holds no status callback URL".into());
    }
    let half = pairs.len() / 2;
    let mut pairs = pairs.into_iter();
    let mut seq = Vec::with_capacity(2 * half);
    for [sent, delivered] in pairs.by_ref().take(half) {
        seq.push(deliver(&env, sent).await?);
        seq.push(deliver(&env, delivered).await?);
    }
    let (sent, delivered): (Vec<_>, Vec<_>) = pairs.map(|[s, d]| (Some(s), Some(d))).unzip();
    let rest = Arc::new(std::sync::Mutex::new(
        sent.into_iter().chain(delivered).collect::<Vec<_>>(),
    ));
    let n = rest.lock().expect("lock").len();
    let e = env.clone();
    let (conc, wall) = concurrently(n, concurrency, move |i| {
        let e = e.clone();
        let req = rest.lock().expect("lock")[i].take();
        async move {
            match req {
                Some(req) => deliver(&e, req).await,
                None => Err("callback taken twice".into()),
            }
        }
    })
    .await?;
    let webhook = Figures {
        sequential_ms: summary(&seq, "callback")?,
        concurrent_requests: conc.len(),
        concurrency,
        concurrent_ms: summary(&conc, "callback")?,
        per_second: conc.len() as f64 / wall,
    };
    Ok(InprocessReport {
        worker_threads,
        send_sms,
        webhook,
    })
}

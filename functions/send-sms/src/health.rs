//! Whether Herald can work right now. Twilio's reachability and account status (a
//! `GET Accounts/{sid}.json` with the current credentials, at most once a minute per instance),
//! the store (one read by key) and both queues (their depth, dead letters included), and the
//! feature switches. `200` when everything answers, `503` otherwise.
//!
//! `GET /health` needs no identity, so it says only `{"status":"ok"}` or
//! `{"status":"degraded"}`: no depth, no account status, no switch. The details are
//! `GET /v1/health`'s, behind the caller's identity like every `/v1` route; never a secret,
//! never a number.

use std::sync::Mutex;

use herald::ports::Queue;
use herald::service::Services;
use serde_json::{Value, json};

/// How long one Twilio check is reused.
pub const TWILIO_CHECK_TTL_MS: i64 = 60_000;

/// The last Twilio check of this instance: when, and what it found.
static TWILIO_CHECK: Mutex<Option<(i64, Value)>> = Mutex::new(None);

/// Twilio's reachability, from the cache when it is younger than [`TWILIO_CHECK_TTL_MS`].
async fn twilio(svc: &Services) -> Value {
    let now = svc.clock.now_ms();
    if let Ok(cached) = TWILIO_CHECK.lock()
        && let Some((at, v)) = cached.as_ref()
        && now - at < TWILIO_CHECK_TTL_MS
        && now >= *at
    {
        return v.clone();
    }
    let result = match svc.credentials.get().await {
        Err(e) => {
            json!({"ok": false, "error": format!("credentials: {}", error_kind(&e.to_string()))})
        }
        Ok(creds) => match svc.twilio.fetch_account_status(&creds).await {
            Ok(status) => json!({"ok": status == "active", "account_status": status}),
            Err(e) => json!({"ok": false, "error": error_kind(&e.to_string())}),
        },
    };
    let v = json!({"checked_at_ms": now, "result": result});
    if let Ok(mut cached) = TWILIO_CHECK.lock() {
        *cached = Some((now, v.clone()));
    }
    v
}

/// The first words of an error: its kind without any detail that could carry data.
fn error_kind(e: &str) -> String {
    e.split(':')
        .next()
        .unwrap_or("error")
        .chars()
        .take(80)
        .collect()
}

async fn queue(q: &dyn Queue) -> Value {
    match q.depth().await {
        Ok(d) => json!({"ok": true, "visible": d.visible, "in_flight": d.in_flight,
                         "delayed": d.delayed, "dead_letters": d.dead}),
        Err(e) => json!({"ok": false, "error": error_kind(&e.to_string())}),
    }
}

/// Everything the checks found, and whether all of it answers.
async fn check(svc: &Services) -> (bool, Value) {
    // A key no message has (ids are made at their creation time, never at time 0).
    let probe = herald::domain::MessageId::generate(0);
    let store = match svc.messages.get_record(&probe).await {
        Ok(_) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": error_kind(&e.to_string())}),
    };
    let (twilio, send, retry) = tokio::join!(
        twilio(svc),
        queue(svc.send_queue.as_ref()),
        queue(svc.retry_queue.as_ref())
    );
    let ok = [&twilio["result"], &store, &send, &retry]
        .iter()
        .all(|v| v["ok"] == true);
    let details = json!({
        "status": status(ok),
        "twilio": twilio,
        "store": store,
        "queues": {"send": send, "retry": retry},
        "features": {
            "sms_enabled": svc.config.sms_enabled,
            "voice_enabled": svc.config.voice_enabled,
        },
    });
    (ok, details)
}

fn status(ok: bool) -> &'static str {
    if ok { "ok" } else { "degraded" }
}

/// Answers `GET /health` (anonymous): `{"status":"ok"}` with `200` or `{"status":"degraded"}`
/// with `503`, nothing else.
pub async fn health(svc: &Services) -> http::Response<String> {
    let (ok, _) = check(svc).await;
    answer(ok, &json!({"status": status(ok)}))
}

/// Answers `GET /v1/health` (a caller's): the status with what each check found.
pub async fn details(svc: &Services) -> http::Response<String> {
    let (ok, details) = check(svc).await;
    answer(ok, &details)
}

fn answer(ok: bool, body: &Value) -> http::Response<String> {
    http::Response::builder()
        .status(if ok { 200 } else { 503 })
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(body.to_string())
        .unwrap_or_else(|_| unreachable!("static headers are valid"))
}

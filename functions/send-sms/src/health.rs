//! `GET /health`: whether Herald can work right now. Twilio's reachability (a
//! `GET Accounts/{sid}.json` with the current credentials, at most once a minute per instance),
//! the store (one read by key) and both queues (their depth, dead letters included), and the
//! feature switches. `200` when everything answers, `503` otherwise; never a secret, never a
//! number.

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

/// Answers `GET /health`.
pub async fn health(svc: &Services) -> http::Response<String> {
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
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "twilio": twilio,
        "store": store,
        "queues": {"send": send, "retry": retry},
        "features": {
            "sms_enabled": svc.config.sms_enabled,
            "voice_enabled": svc.config.voice_enabled,
        },
    });
    http::Response::builder()
        .status(if ok { 200 } else { 503 })
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(body.to_string())
        .unwrap_or_else(|_| unreachable!("static headers are valid"))
}

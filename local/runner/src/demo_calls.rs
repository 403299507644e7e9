//! `herald demo`, voice part: places voice alerts whose outcomes the simulator is told in
//! advance (one outcome per call: busy, then answered …), through Herald's public HTTP API,
//! lets Twilio's signed callbacks, the `<Gather>` answers and the retry queue do their work, and
//! shows where each alert ended: status, attempts, acknowledgement, talk time.

use serde::Serialize;
use serde_json::json;
use twilio_sim::CallOutcome;

use crate::stack::{LocalStack, StackOptions};

/// One scripted voice alert.
pub struct CallScenario {
    /// What it shows.
    pub label: &'static str,
    /// Callee.
    pub to: &'static str,
    /// The request body for `POST /v1/calls` (without `to`).
    pub request: serde_json::Value,
    /// What the callee does, one outcome per call placed.
    pub outcomes: Vec<CallOutcome>,
    /// The final status it must reach.
    pub expect_status: &'static str,
    /// How many calls it must take.
    pub expect_attempts: u32,
    /// Whether it must end acknowledged.
    pub expect_acknowledged: bool,
}

/// The demo's voice alerts (`VOICE_MAX_ATTEMPTS` is 3).
pub fn scenarios() -> Vec<CallScenario> {
    use CallOutcome::*;
    vec![
        CallScenario {
            label: "acknowledged (pressed 1)",
            to: "+14155550181",
            request: json!({"template": "emergency_alert", "variables": {"service": "payments", "summary": "error rate above 7 percent"}, "require_ack": true, "voice": "Polly.Joanna"}),
            outcomes: vec![AnswerAndPress("1".into())],
            expect_status: "completed",
            expect_attempts: 1,
            expect_acknowledged: true,
        },
        CallScenario {
            label: "answered, never acknowledged: called again",
            to: "+14155550182",
            request: json!({"message": "Database primary is down.", "require_ack": true, "loop": 2}),
            outcomes: vec![AnswerNoInput, AnswerNoInput, AnswerNoInput],
            expect_status: "completed",
            expect_attempts: 3,
            expect_acknowledged: false,
        },
        CallScenario {
            label: "busy, then answered",
            to: "+14155550183",
            request: json!({"template": "reminder", "variables": {"service": "ops", "event": "the failover drill", "time": "3 pm"}}),
            outcomes: vec![Busy, AnswerNoInput],
            expect_status: "completed",
            expect_attempts: 2,
            expect_acknowledged: false,
        },
        CallScenario {
            label: "failed every time",
            to: "+14155550184",
            request: json!({"message": "Certificate expires tomorrow.", "language": "en-GB", "voice": "woman"}),
            outcomes: vec![Failed, Failed, Failed],
            expect_status: "failed",
            expect_attempts: 3,
            expect_acknowledged: false,
        },
    ]
}

/// One row of the result (`--json`: `"calls":[…]`).
#[derive(Debug, Serialize)]
pub struct CallRow {
    /// Herald's call id.
    pub id: String,
    /// Masked callee.
    pub to: String,
    /// Final status.
    pub status: String,
    /// Calls placed.
    pub attempts: u32,
    /// Whether the callee pressed 1.
    pub acknowledged: bool,
    /// Talk time of the last answered call.
    pub duration_seconds: Option<u32>,
    /// What it shows.
    #[serde(skip)]
    pub label: &'static str,
    /// Whether it ended as the simulator was told.
    #[serde(skip)]
    pub as_expected: bool,
}

fn is_final(view: &serde_json::Value) -> bool {
    view["status"]
        .as_str()
        .and_then(|s| s.parse::<herald::domain::CallStatus>().ok())
        .is_some_and(|s| s.is_terminal())
}

/// Runs the voice demo on a stack in `data_dir`; returns the rows.
pub async fn run(
    data_dir: &std::path::Path,
) -> Result<Vec<CallRow>, Box<dyn std::error::Error + Send + Sync>> {
    let stack = LocalStack::start(&StackOptions {
        seed: 11,
        ..StackOptions::new(data_dir)
    })
    .await?;
    let http = reqwest::Client::new();
    let mut placed = Vec::new();
    for s in scenarios() {
        stack.sim.set_call_outcomes(s.to, s.outcomes.clone());
        let mut body = s.request.clone();
        body["to"] = json!(s.to);
        let resp = http
            .post(format!("{}/v1/calls", stack.api_url))
            .bearer_auth(&stack.api_key)
            .json(&body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let answer: serde_json::Value = resp.json().await?;
        let id = answer
            .get("id")
            .or_else(|| answer.get("call_id"))
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("{}: no call id in the {status} answer", s.label))?
            .to_owned();
        placed.push((s, id));
    }

    // Retries take real seconds (backoff); wait until every call is final, within a bound.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let views = loop {
        stack.sim.wait_idle().await;
        let mut views = Vec::new();
        for (_, id) in &placed {
            let v: serde_json::Value = http
                .get(format!("{}/v1/calls/{id}", stack.api_url))
                .bearer_auth(&stack.api_key)
                .send()
                .await?
                .json()
                .await?;
            views.push(v);
        }
        if views.iter().all(is_final) || tokio::time::Instant::now() >= deadline {
            break views;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };

    let rows = placed
        .into_iter()
        .zip(views)
        .map(|((s, id), v)| {
            let status = v["status"].as_str().unwrap_or("").to_owned();
            let attempts = v["attempts"]
                .as_u64()
                .and_then(|a| u32::try_from(a).ok())
                .unwrap_or(0);
            let acknowledged = v["acknowledgement"]["acknowledged"]
                .as_bool()
                .unwrap_or(false);
            CallRow {
                as_expected: status == s.expect_status
                    && attempts == s.expect_attempts
                    && acknowledged == s.expect_acknowledged,
                id,
                to: v["to"].as_str().unwrap_or("").to_owned(),
                status,
                attempts,
                acknowledged,
                duration_seconds: v["duration_seconds"]
                    .as_u64()
                    .and_then(|d| u32::try_from(d).ok()),
                label: s.label,
            }
        })
        .collect();
    stack.shutdown().await;
    Ok(rows)
}

/// The rows as a table for people.
pub fn table(rows: &[CallRow]) -> String {
    let mut out = format!(
        "{:<32} {:<14} {:<12} {:>3} {:<5} {:>4} {:<3} {}\n",
        "CALL", "TO", "STATUS", "TRY", "ACK", "SECS", "OK", "SCENARIO"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<32} {:<14} {:<12} {:>3} {:<5} {:>4} {:<3} {}\n",
            r.id,
            r.to,
            r.status,
            r.attempts,
            if r.acknowledged { "yes" } else { "no" },
            r.duration_seconds
                .map_or_else(|| "-".to_owned(), |d| d.to_string()),
            if r.as_expected { "yes" } else { "NO" },
            r.label
        ));
    }
    out
}

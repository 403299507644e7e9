//! `herald demo`: the whole system in one process. It sends messages whose outcomes the
//! simulator is told in advance, through Herald's public HTTP API, waits for Twilio's signed
//! callbacks, and shows where each message ended. Exit status 1 when any message did not end as
//! the simulator was told.

use serde::Serialize;
use serde_json::json;

use crate::stack::{LocalStack, StackOptions};

/// A fault the simulator applies while a scenario's message is sent (then cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFault {
    /// None.
    None,
    /// Twilio answers 500 to the first attempt.
    ServerError,
    /// Twilio answers 429 with `Retry-After: 1` to the first attempt.
    Throttled,
}

/// One scripted message.
pub struct Scenario {
    /// What it shows.
    pub label: &'static str,
    /// Recipient.
    pub to: &'static str,
    /// The request body for `POST /v1/messages` (without `to`).
    pub request: serde_json::Value,
    /// What the simulator does after accepting it (`None`: a magic number decides).
    pub outcome: Option<twilio_sim::Outcome>,
    /// The final status it must reach.
    pub expect_status: &'static str,
    /// The Twilio error code it must carry.
    pub expect_code: Option<u32>,
    /// A fault while it is sent.
    pub fault: SendFault,
    /// How many attempts it must take.
    pub expect_attempts: u32,
}

/// A message the simulator delivers at the first attempt.
fn delivered_first_time(
    label: &'static str,
    to: &'static str,
    request: serde_json::Value,
) -> Scenario {
    Scenario {
        label,
        to,
        request,
        outcome: Some(twilio_sim::Outcome::Deliver),
        expect_status: "delivered",
        expect_code: None,
        fault: SendFault::None,
        expect_attempts: 1,
    }
}

/// The demo's messages.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            label: "delivered after Twilio answered 500",
            to: "+14155550177",
            request: json!({"body": "Server room temperature back to normal."}),
            outcome: Some(twilio_sim::Outcome::Deliver),
            expect_status: "delivered",
            expect_code: None,
            fault: SendFault::ServerError,
            expect_attempts: 2,
        },
        Scenario {
            label: "delivered after Twilio answered 429",
            to: "+14155550178",
            request: json!({"body": "Nightly backup completed."}),
            outcome: Some(twilio_sim::Outcome::Deliver),
            expect_status: "delivered",
            expect_code: None,
            fault: SendFault::Throttled,
            expect_attempts: 2,
        },
        delivered_first_time(
            "delivered",
            "+14155552671",
            json!({"body": "Your order #1042 has shipped."}),
        ),
        Scenario {
            label: "undelivered (30003 unreachable handset, 3 attempts)",
            to: "+14155550143",
            request: json!({"body": "Your appointment is tomorrow at 9:00."}),
            outcome: Some(twilio_sim::Outcome::Undelivered(30003)),
            expect_status: "undelivered",
            expect_code: Some(30003),
            fault: SendFault::None,
            expect_attempts: 3,
        },
        Scenario {
            label: "failed at send (21211 invalid number)",
            to: "+15005550001",
            request: json!({"body": "This number is not valid at Twilio."}),
            outcome: None,
            expect_status: "failed",
            expect_code: Some(21211),
            fault: SendFault::None,
            expect_attempts: 1,
        },
        Scenario {
            label: "failed at send (21610 opted out)",
            to: "+15005550004",
            request: json!({"body": "This recipient replied STOP."}),
            outcome: None,
            expect_status: "failed",
            expect_code: Some(21610),
            fault: SendFault::None,
            expect_attempts: 1,
        },
        delivered_first_time(
            "UCS-2, several segments",
            "+447911123456",
            json!({"body": "Привет! Ваш заказ отправлен 🚚 и будет доставлен завтра между 9:00 и 12:00. Спасибо, что выбрали нас!"}),
        ),
        delivered_first_time(
            "template (alert)",
            "+33612345678",
            json!({"template": "alert", "variables": {"service": "payments", "summary": "error rate 7% over 5 min"}}),
        ),
    ]
}

/// One row of the result.
#[derive(Debug, Serialize)]
pub struct Row {
    /// Herald's message id.
    pub id: String,
    /// Masked recipient.
    pub to: String,
    /// Final status.
    pub status: String,
    /// Twilio error code.
    pub error_code: Option<u32>,
    /// Segments.
    pub segments: u32,
    /// GSM-7 or UCS-2.
    pub encoding: String,
    /// What it shows.
    #[serde(skip)]
    pub label: &'static str,
    /// Attempts it took.
    #[serde(skip)]
    pub attempts: u32,
    /// Whether it ended as the simulator was told.
    #[serde(skip)]
    pub as_expected: bool,
}

/// Runs the demo on a stack in `data_dir`; returns the rows.
pub async fn run(
    data_dir: &std::path::Path,
) -> Result<Vec<Row>, Box<dyn std::error::Error + Send + Sync>> {
    let stack = LocalStack::start(&StackOptions {
        seed: 7,
        ..StackOptions::new(data_dir)
    })
    .await?;
    let http = reqwest::Client::new();
    let mut sent = Vec::new();
    for s in scenarios() {
        if let Some(outcome) = s.outcome {
            stack.sim.set_outcome(s.to, outcome);
        }
        stack.sim.set_faults(match s.fault {
            SendFault::None => twilio_sim::Faults::default(),
            SendFault::ServerError => twilio_sim::Faults {
                rate_500: 1.0,
                ..Default::default()
            },
            SendFault::Throttled => twilio_sim::Faults {
                rate_429: 1.0,
                retry_after_secs: 1,
                ..Default::default()
            },
        });
        let mut body = s.request.clone();
        body["to"] = json!(s.to);
        let resp = http
            .post(format!("{}/v1/messages", stack.api_url))
            .bearer_auth(&stack.api_key)
            .json(&body)
            .send()
            .await?;
        stack.sim.set_faults(twilio_sim::Faults::default());
        let status = resp.status().as_u16();
        let answer: serde_json::Value = resp.json().await?;
        let id = answer
            .get("id")
            .or_else(|| answer.get("message_id"))
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("{}: no message id in the {status} answer", s.label))?
            .to_owned();
        sent.push((s, id));
    }

    // Retries take real seconds (backoff); wait until every message is final, within a bound.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let views = loop {
        stack.sim.wait_idle().await;
        let mut views = Vec::new();
        for (_, id) in &sent {
            let v: serde_json::Value = http
                .get(format!("{}/v1/messages/{id}", stack.api_url))
                .bearer_auth(&stack.api_key)
                .send()
                .await?
                .json()
                .await?;
            views.push(v);
        }
        let all_final = views.iter().all(|v| {
            v["status"]
                .as_str()
                .and_then(|s| s.parse::<herald::domain::MessageStatus>().ok())
                .is_some_and(|s| s.is_terminal())
        });
        if all_final || tokio::time::Instant::now() >= deadline {
            break views;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };

    let mut rows = Vec::new();
    for ((s, id), m) in sent.into_iter().zip(views) {
        let status = m["status"].as_str().unwrap_or("").to_owned();
        let error_code = m["error_code"].as_u64().and_then(|c| u32::try_from(c).ok());
        let attempts = m["attempts"]
            .as_u64()
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0);
        rows.push(Row {
            as_expected: status == s.expect_status
                && error_code == s.expect_code
                && attempts == s.expect_attempts,
            id,
            to: m["to"].as_str().unwrap_or("").to_owned(),
            status,
            error_code,
            segments: m["segments"]
                .as_u64()
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(0),
            encoding: m["encoding"].as_str().unwrap_or("").to_owned(),
            label: s.label,
            attempts,
        });
    }
    stack.shutdown().await;
    Ok(rows)
}

/// The rows as a table for people.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<32} {:<14} {:<12} {:>5} {:>4} {:<6} {:>3} {:<3} {}\n",
        "MESSAGE", "TO", "STATUS", "CODE", "SEGS", "ENC", "TRY", "OK", "SCENARIO"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<32} {:<14} {:<12} {:>5} {:>4} {:<6} {:>3} {:<3} {}\n",
            r.id,
            r.to,
            r.status,
            r.error_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            r.segments,
            r.encoding,
            r.attempts,
            if r.as_expected { "yes" } else { "NO" },
            r.label
        ));
    }
    out
}

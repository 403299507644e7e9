//! `herald demo`, voice part: places voice alerts whose outcomes the simulator is told in
//! advance (one outcome per call: busy, then answered …), through Herald's public HTTP API,
//! lets Twilio's signed callbacks, the `<Gather>` answers and the retry queue do their work, and
//! shows where each alert ended: status, attempts, acknowledgement, talk time.

use serde::Serialize;
use serde_json::json;
use twilio_sim::CallOutcome;

use crate::demo_flow::{self, Channel, str_field, u32_field};

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

/// The voice channel of the demo.
struct Calls;

impl Channel for Calls {
    type Scenario = CallScenario;
    type Status = herald::domain::CallStatus;
    type Row = CallRow;
    const PATH: &'static str = "/v1/calls";
    const ID_FIELD: &'static str = "call_id";
    const NOUN: &'static str = "call";
    const SEED: u64 = 11;

    fn label(s: &CallScenario) -> &'static str {
        s.label
    }

    fn to(s: &CallScenario) -> &'static str {
        s.to
    }

    fn request(s: &CallScenario) -> &serde_json::Value {
        &s.request
    }

    fn prepare(sim: &twilio_sim::SimHandle, s: &CallScenario) {
        sim.set_call_outcomes(s.to, s.outcomes.clone());
    }

    fn row(s: CallScenario, id: String, v: &serde_json::Value) -> CallRow {
        let status = str_field(v, "status");
        let attempts = u32_field(v, "attempts").unwrap_or(0);
        let acknowledged = v["acknowledgement"]["acknowledged"]
            .as_bool()
            .unwrap_or(false);
        CallRow {
            as_expected: status == s.expect_status
                && attempts == s.expect_attempts
                && acknowledged == s.expect_acknowledged,
            id,
            to: str_field(v, "to"),
            status,
            attempts,
            acknowledged,
            duration_seconds: u32_field(v, "duration_seconds"),
            label: s.label,
        }
    }
}

/// Runs the voice demo on a stack in `data_dir`; returns the rows.
pub async fn run(
    data_dir: &std::path::Path,
) -> Result<Vec<CallRow>, Box<dyn std::error::Error + Send + Sync>> {
    demo_flow::run::<Calls>(data_dir, scenarios()).await
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

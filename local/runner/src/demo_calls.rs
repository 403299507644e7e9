//! `herald demo`, voice part: places voice alerts whose outcomes the simulator is told in
//! advance (one outcome per call: busy, then answered …), through Herald's public HTTP API,
//! lets Twilio's signed callbacks, the `<Gather>` answers and the retry queue do their work, and
//! shows where each alert ended: status, attempts, acknowledgement, talk time.

use serde::Serialize;
use serde_json::json;
use twilio_sim::CallOutcome;

use crate::demo_flow::{self, Channel, str_field, u32_field};

/// What a voice alert's scenario scripts beside what every scenario states.
pub struct VoiceScript {
    /// What the callee does, one outcome per call placed.
    pub outcomes: Vec<CallOutcome>,
    /// Whether it must end acknowledged.
    pub expect_acknowledged: bool,
}

/// One scripted voice alert (its attempts are the calls it must take).
pub type CallScenario = demo_flow::Scenario<VoiceScript>;

/// The demo's voice alerts (`VOICE_MAX_ATTEMPTS` is 3).
pub fn scenarios() -> Vec<CallScenario> {
    use CallOutcome::*;
    vec![
        CallScenario {
            label: "acknowledged (pressed 1)",
            to: "+14155550181",
            request: json!({"template": "emergency_alert", "variables": {"service": "payments", "summary": "error rate above 7 percent"}, "require_ack": true, "voice": "Polly.Joanna"}),
            expect_status: "completed",
            expect_attempts: 1,
            script: VoiceScript {
                outcomes: vec![AnswerAndPress("1".into())],
                expect_acknowledged: true,
            },
        },
        CallScenario {
            label: "answered, never acknowledged: called again",
            to: "+14155550182",
            request: json!({"message": "Database primary is down.", "require_ack": true, "loop": 2}),
            expect_status: "completed",
            expect_attempts: 3,
            script: VoiceScript {
                outcomes: vec![AnswerNoInput, AnswerNoInput, AnswerNoInput],
                expect_acknowledged: false,
            },
        },
        CallScenario {
            label: "busy, then answered",
            to: "+14155550183",
            request: json!({"template": "reminder", "variables": {"service": "ops", "event": "the failover drill", "time": "3 pm"}}),
            expect_status: "completed",
            expect_attempts: 2,
            script: VoiceScript {
                outcomes: vec![Busy, AnswerNoInput],
                expect_acknowledged: false,
            },
        },
        CallScenario {
            label: "failed every time",
            to: "+14155550184",
            request: json!({"message": "Certificate expires tomorrow.", "language": "en-GB", "voice": "woman"}),
            expect_status: "failed",
            expect_attempts: 3,
            script: VoiceScript {
                outcomes: vec![Failed, Failed, Failed],
                expect_acknowledged: false,
            },
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
    type Script = VoiceScript;
    type Status = herald::domain::CallStatus;
    type Row = CallRow;
    const NOUN: &'static str = "call";
    const SEED: u64 = 11;

    fn prepare(sim: &twilio_sim::SimHandle, s: &CallScenario) {
        sim.set_call_outcomes(s.to, s.script.outcomes.clone());
    }

    fn row(s: CallScenario, id: String, v: &serde_json::Value) -> CallRow {
        let ended = demo_flow::ended(&s, v);
        let acknowledged = v["acknowledgement"]["acknowledged"]
            .as_bool()
            .unwrap_or(false);
        CallRow {
            as_expected: ended.as_expected && acknowledged == s.script.expect_acknowledged,
            id,
            to: str_field(v, "to"),
            status: ended.status,
            attempts: ended.attempts,
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

//! `herald demo`, voice part: places voice alerts whose outcomes the simulator is told in
//! advance (one outcome per call: busy, then answered …), through Herald's public HTTP API,
//! lets Twilio's signed callbacks, the `<Gather>` answers and the retry queue do their work, and
//! shows where each alert ended: status, attempts, acknowledgement, talk time.

use serde::Serialize;
use serde_json::json;
use twilio_sim::CallOutcome;

use crate::demo_flow::{self, Cells, Channel, Column, Ended, u32_field};

/// What a voice alert's scenario scripts beside what every scenario states.
pub struct VoiceScript {
    /// What the callee does, one outcome per call placed.
    pub outcomes: Vec<CallOutcome>,
    /// Whether it must end acknowledged.
    pub expect_acknowledged: bool,
}

/// One scripted voice alert (its attempts are the calls it must take).
pub type CallScenario = demo_flow::Scenario<VoiceScript>;

/// One row of the result (`--json`: `"calls":[…]`).
pub type CallRow = demo_flow::Row<CallDetail>;

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

/// What a voice alert's row shows beside what every row shows.
#[derive(Debug, Serialize)]
pub struct CallDetail {
    /// Calls placed.
    pub attempts: u32,
    /// Whether the callee pressed 1.
    pub acknowledged: bool,
    /// Talk time of the last answered call.
    pub duration_seconds: Option<u32>,
}

impl Cells for CallDetail {
    const COLUMNS: &'static [Column<'static>] = &[
        Column::right("TRY", 3),
        Column::left("ACK", 5),
        Column::right("SECS", 4),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.attempts.to_string(),
            if self.acknowledged { "yes" } else { "no" }.into(),
            self.duration_seconds
                .map_or_else(|| "-".into(), |d| d.to_string()),
        ]
    }
}

/// The voice channel of the demo.
struct Calls;

impl Channel for Calls {
    type Script = VoiceScript;
    type Status = herald::domain::CallStatus;
    type Detail = CallDetail;
    const NOUN: &'static str = "call";
    const SEED: u64 = 11;

    fn prepare(sim: &twilio_sim::SimHandle, s: &CallScenario) {
        sim.set_call_outcomes(s.to, s.script.outcomes.clone());
    }

    fn detail(s: &CallScenario, v: &serde_json::Value, ended: &Ended) -> (CallDetail, bool) {
        let acknowledged = v["acknowledgement"]["acknowledged"]
            .as_bool()
            .unwrap_or(false);
        let detail = CallDetail {
            attempts: ended.attempts,
            acknowledged,
            duration_seconds: u32_field(v, "duration_seconds"),
        };
        (detail, acknowledged == s.script.expect_acknowledged)
    }
}

/// Runs the voice demo on a stack in `data_dir`; returns the rows.
pub async fn run(data_dir: &std::path::Path) -> Result<Vec<CallRow>, demo_flow::Error> {
    demo_flow::run::<Calls>(data_dir, scenarios()).await
}

/// The rows as a table for people.
pub fn table(rows: &[CallRow]) -> String {
    demo_flow::table::<Calls>(rows)
}

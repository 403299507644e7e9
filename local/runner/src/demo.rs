//! `herald demo`: the whole system in one process. It sends messages whose outcomes the
//! simulator is told in advance, through Herald's public HTTP API, waits for Twilio's signed
//! callbacks, and shows where each message ended. Exit status 1 when any message did not end as
//! the simulator was told.

use serde::Serialize;
use serde_json::json;

use crate::demo_flow::{self, Cells, Channel, Column, Ended, str_field, u32_field};

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

/// What a message's scenario scripts beside what every scenario states.
pub struct SmsScript {
    /// What the simulator does after accepting it (`None`: a magic number decides).
    pub outcome: Option<twilio_sim::Outcome>,
    /// The Twilio error code it must carry.
    pub expect_code: Option<u32>,
    /// A fault while it is sent.
    pub fault: SendFault,
}

/// One scripted message.
pub type Scenario = demo_flow::Scenario<SmsScript>;

/// One row of the result.
pub type Row = demo_flow::Row<SmsDetail>;

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
        expect_status: "delivered",
        expect_attempts: 1,
        script: SmsScript {
            outcome: Some(twilio_sim::Outcome::Deliver),
            expect_code: None,
            fault: SendFault::None,
        },
    }
}

/// The demo's messages.
pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            label: "delivered after Twilio answered 500",
            to: "+14155550177",
            request: json!({"body": "Server room temperature back to normal."}),
            expect_status: "delivered",
            expect_attempts: 2,
            script: SmsScript {
                outcome: Some(twilio_sim::Outcome::Deliver),
                expect_code: None,
                fault: SendFault::ServerError,
            },
        },
        Scenario {
            label: "delivered after Twilio answered 429",
            to: "+14155550178",
            request: json!({"body": "Nightly backup completed."}),
            expect_status: "delivered",
            expect_attempts: 2,
            script: SmsScript {
                outcome: Some(twilio_sim::Outcome::Deliver),
                expect_code: None,
                fault: SendFault::Throttled,
            },
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
            expect_status: "undelivered",
            expect_attempts: 3,
            script: SmsScript {
                outcome: Some(twilio_sim::Outcome::Undelivered(30003)),
                expect_code: Some(30003),
                fault: SendFault::None,
            },
        },
        Scenario {
            label: "failed at send (21211 invalid number)",
            to: "+15005550001",
            request: json!({"body": "This number is not valid at Twilio."}),
            expect_status: "failed",
            expect_attempts: 1,
            script: SmsScript {
                outcome: None,
                expect_code: Some(21211),
                fault: SendFault::None,
            },
        },
        Scenario {
            label: "failed at send (21610 opted out)",
            to: "+15005550004",
            request: json!({"body": "This recipient replied STOP."}),
            expect_status: "failed",
            expect_attempts: 1,
            script: SmsScript {
                outcome: None,
                expect_code: Some(21610),
                fault: SendFault::None,
            },
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

/// What a message's row shows beside what every row shows.
#[derive(Debug, Serialize)]
pub struct SmsDetail {
    /// Twilio error code.
    pub error_code: Option<u32>,
    /// Segments.
    pub segments: u32,
    /// GSM-7 or UCS-2.
    pub encoding: String,
    /// Attempts it took.
    #[serde(skip)]
    pub attempts: u32,
}

impl Cells for SmsDetail {
    const COLUMNS: &'static [Column<'static>] = &[
        Column::right("CODE", 5),
        Column::right("SEGS", 4),
        Column::left("ENC", 6),
        Column::right("TRY", 3),
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.error_code
                .map_or_else(|| "-".into(), |c| c.to_string()),
            self.segments.to_string(),
            self.encoding.clone(),
            self.attempts.to_string(),
        ]
    }
}

/// The SMS channel of the demo.
struct Messages;

impl Channel for Messages {
    type Script = SmsScript;
    type Status = herald::domain::MessageStatus;
    type Detail = SmsDetail;
    const NOUN: &'static str = "message";
    const SEED: u64 = 7;

    fn prepare(sim: &twilio_sim::SimHandle, s: &Scenario) {
        if let Some(outcome) = s.script.outcome {
            sim.set_outcome(s.to, outcome);
        }
        sim.set_faults(match s.script.fault {
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
    }

    fn sent(sim: &twilio_sim::SimHandle) {
        sim.set_faults(twilio_sim::Faults::default());
    }

    fn detail(s: &Scenario, m: &serde_json::Value, ended: &Ended) -> (SmsDetail, bool) {
        let error_code = u32_field(m, "error_code");
        let detail = SmsDetail {
            error_code,
            segments: u32_field(m, "segments").unwrap_or(0),
            encoding: str_field(m, "encoding"),
            attempts: ended.attempts,
        };
        (detail, error_code == s.script.expect_code)
    }
}

/// Runs the demo on a stack in `data_dir`; returns the rows.
pub async fn run(data_dir: &std::path::Path) -> Result<Vec<Row>, demo_flow::Error> {
    demo_flow::run::<Messages>(data_dir, scenarios()).await
}

/// The rows as a table for people.
pub fn table(rows: &[Row]) -> String {
    demo_flow::table::<Messages>(rows)
}

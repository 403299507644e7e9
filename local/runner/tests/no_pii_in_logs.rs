//! Captures every log line of a full end-to-end run (at debug level) and searches it for the
//! phone numbers, bodies and secrets the run used; every line of a handler carries the request
//! id and, when it concerns one message or call, its id.

use std::io::Write;
use std::sync::{Arc, Mutex};

use herald_runner::demo;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lines of the handlers that concern no single message or call (a refused request, a sweep
/// over many, an inbound SMS): they carry the request id only.
const ABOUT_NO_ONE_MESSAGE: &[&str] = &[
    "webhook rejected",
    "callback without a usable id or status",
    "sweeper moved or re-enqueued messages",
    "duplicate inbound SMS",
    "inbound SMS recorded",
    "opt-out changed",
];

/// Whether a line comes from a handler (Herald's functions and the shared crate), not from the
/// local runner or the simulator around them.
fn is_handler_line(v: &serde_json::Value) -> bool {
    let target = v["target"].as_str().unwrap_or_default();
    [
        "herald::",
        "send_sms",
        "place_call",
        "webhook_receiver",
        "retry_processor",
    ]
    .iter()
    .any(|t| target.starts_with(t))
}

/// A field of the line's event or of any of its spans.
fn field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v.get(name).or_else(|| {
        v["spans"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|s| s.get(name))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_logs_no_number_body_or_secret() {
    // This binary has one test, so the global subscriber is ours alone; debug level makes the
    // search cover Herald's most verbose output.
    let capture = Capture::default();
    let writer = capture.clone();
    herald::telemetry::init_with_level(move || writer.clone(), "debug");
    herald::telemetry::set_metrics_output(herald::telemetry::MetricsOutput::Off);

    let dir = tempfile::tempdir().unwrap();
    let rows = demo::run(dir.path()).await.unwrap();
    assert!(rows.iter().all(|r| r.as_expected));

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.lines().count() > 20,
        "the run must have logged: {} lines",
        logs.lines().count()
    );
    let mut about_one = 0;
    for line in logs.lines() {
        let v = serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if !is_handler_line(&v) {
            continue;
        }
        assert!(
            field(&v, "request_id").is_some(),
            "a handler's line without the request id: {line}"
        );
        let subject = ["message_id", "call_id", "verification_id"]
            .iter()
            .any(|k| field(&v, k).is_some());
        if subject {
            about_one += 1;
        } else {
            let message = v["message"].as_str().unwrap_or_default();
            assert!(
                ABOUT_NO_ONE_MESSAGE.contains(&message),
                "a handler's line without the message or call id: {line}"
            );
        }
    }
    assert!(
        about_one > 20,
        "{about_one} lines name their message or call"
    );
    let secret: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("twilio-secret.json")).unwrap())
            .unwrap();
    let mut needles: Vec<String> = Vec::new();
    for s in demo::scenarios() {
        needles.push(s.to.to_owned());
        needles.push(s.to.trim_start_matches('+').to_owned());
        if let Some(b) = s.request.get("body").and_then(|b| b.as_str()) {
            needles.push(b.to_owned());
            needles.push(b.chars().take(16).collect());
        }
        if let Some(vars) = s.request.get("variables").and_then(|v| v.as_object()) {
            needles.extend(vars.values().filter_map(|v| v.as_str()).map(str::to_owned));
        }
    }
    needles.push(herald_runner::stack::LOCAL_FROM_NUMBER.to_owned());
    needles.push(secret["auth_token"].as_str().unwrap().to_owned());
    needles.push(secret["api_key_secret"].as_str().unwrap().to_owned());
    for n in needles {
        assert!(!logs.contains(&n), "the logs contain {n:?}");
    }
}

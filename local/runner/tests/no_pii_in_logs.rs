//! Captures every log line of a full end-to-end run (at debug level) and searches it for the
//! phone numbers, bodies and secrets the run used.

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
    for line in logs.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
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

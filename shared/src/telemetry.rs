//! Telemetry: JSON logs through `tracing` and CloudWatch embedded-metric-format (EMF) metrics.
//!
//! Nothing personal is ever given to a log call: phone numbers travel as [`crate::phone::Masked`]
//! or not at all, bodies and secrets never. The end-to-end tests capture the logs of a whole run
//! and search them for every number and body they used.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the JSON log subscriber for the process (level from `HERALD_LOG`, then `RUST_LOG`,
/// default `info`). Safe to call more than once: later calls do nothing.
pub fn init() {
    init_with_writer(std::io::stderr);
}

/// As [`init`], writing to `writer` (tests capture logs this way).
pub fn init_with_writer<W>(writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = std::env::var("HERALD_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    init_with_filter(writer, filter);
}

/// Installs the JSON log subscriber with an explicit filter directive such as `debug`.
pub fn init_with_level<W>(writer: W, directive: &str)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    init_with_filter(
        writer,
        EnvFilter::try_new(directive).unwrap_or_else(|_| EnvFilter::new("info")),
    );
}

fn init_with_filter<W>(writer: W, filter: EnvFilter)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        // Every span from the invocation down: the request id (invocation) and the message or
        // call id (the invocation's, or the job's within a batch) are on every line.
        .with_current_span(false)
        .with_span_list(true)
        .with_target(true)
        .with_ansi(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init();
}

/// Where metrics go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsOutput {
    /// Standard output: on Lambda, CloudWatch Logs extracts them (the default).
    Stdout,
    /// Standard error (local runs whose stdout is for people or for JSON).
    Stderr,
    /// Nowhere.
    Off,
}

static METRICS_OUTPUT: std::sync::OnceLock<MetricsOutput> = std::sync::OnceLock::new();

/// Chooses where metrics go, once per process (later calls do nothing).
pub fn set_metrics_output(output: MetricsOutput) {
    let _ = METRICS_OUTPUT.set(output);
}

/// One CloudWatch metric in embedded metric format, written as a single JSON line (Lambda
/// forwards stdout to CloudWatch Logs, which extracts the metric).
pub fn metric(name: &str, value: f64, unit: &str, dimensions: &[(&str, &str)]) {
    let output = *METRICS_OUTPUT.get_or_init(|| MetricsOutput::Stdout);
    if output == MetricsOutput::Off {
        return;
    }
    let now = crate::ports::Clock::now_ms(&crate::ports::SystemClock);
    let line = emf_line(name, value, unit, dimensions, now);
    let _ = match output {
        MetricsOutput::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
        _ => writeln!(std::io::stdout().lock(), "{line}"),
    };
}

/// The EMF JSON line for one metric at `ts_ms`.
pub fn emf_line(
    name: &str,
    value: f64,
    unit: &str,
    dimensions: &[(&str, &str)],
    ts_ms: i64,
) -> String {
    let mut root = serde_json::Map::new();
    let dim_names: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    root.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": ts_ms,
            "CloudWatchMetrics": [{
                "Namespace": "Herald",
                // With dimensions, the metric is also published without them: the total that
                // alarms watch (WebhookRejected, SendFailures).
                "Dimensions": if dim_names.is_empty() {
                    serde_json::json!([dim_names])
                } else {
                    serde_json::json!([dim_names, []])
                },
                "Metrics": [{"Name": name, "Unit": unit}],
            }],
        }),
    );
    for (k, v) in dimensions {
        root.insert((*k).into(), serde_json::Value::from(*v));
    }
    root.insert(name.into(), serde_json::Value::from(value));
    serde_json::Value::Object(root).to_string()
}

/// The span of one invocation: every log line inside it carries the request id (Lambda's
/// `context.request_id`, or the local gateway's request id) and the function's name, and, once
/// the handler knows it ([`record_message_id`], [`record_call_id`]), the message or call id.
pub fn invocation_span(function: &'static str, request_id: &str) -> tracing::Span {
    tracing::info_span!(
        "invocation",
        function,
        request_id = %request_id,
        message_id = tracing::field::Empty,
        call_id = tracing::field::Empty,
    )
}

/// Puts the message id on the current span (the invocation's, for a request about one message):
/// every later line of the invocation carries it.
pub fn record_message_id(id: &dyn std::fmt::Display) {
    tracing::Span::current().record("message_id", tracing::field::display(id));
}

/// Puts the call id on the current span, as [`record_message_id`] does for messages.
pub fn record_call_id(id: &dyn std::fmt::Display) {
    tracing::Span::current().record("call_id", tracing::field::display(id));
}

/// The span of the work on one message inside an invocation that may handle several (a batch
/// of jobs, the sweep): its lines carry the message id.
pub fn message_span(id: &dyn std::fmt::Display) -> tracing::Span {
    tracing::info_span!("message", message_id = %id)
}

/// The span of the work on one call, as [`message_span`] is for messages.
pub fn call_span(id: &dyn std::fmt::Display) -> tracing::Span {
    tracing::info_span!("call", call_id = %id)
}

/// Milliseconds since `start`, for latency metrics.
pub fn elapsed_ms(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_has_namespace_dimensions_and_value() {
        let l = emf_line(
            "SendFailures",
            1.0,
            "Count",
            &[("TwilioCode", "21211")],
            1000,
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Herald");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "TwilioCode"
        );
        assert_eq!(v["TwilioCode"], "21211");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][1],
            serde_json::json!([]),
            "also published as a total"
        );
        assert_eq!(v["SendFailures"], 1.0);
    }
}

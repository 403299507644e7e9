//! The CloudWatch dashboard and alarms against the code: every metric Herald's code emits (each
//! `telemetry::metric(` call in `shared/src` and `functions/*/src`, its name a string literal,
//! one of several literals, or a `const` of one) is on the dashboard in the `Herald` namespace,
//! the dashboard shows no Herald metric the code does not emit, and the page-worthy ones have
//! an alarm at their first occurrence.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::Value as Yaml;

const TEMPLATE: &str = include_str!("../template.yaml");

/// Metrics that page at their first occurrence: a Twilio resource tied to the wrong record, and
/// a panic in any function.
const PAGE_AT_ONCE: [&str; 3] = ["SidOwnedByOther", "SweepMismatch", "Panics"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("a source file");
            out.push((path, text));
        }
    }
}

/// The code that runs on AWS: the shared crate and the five functions.
fn code() -> Vec<(PathBuf, String)> {
    let root = workspace();
    let mut out = Vec::new();
    sources(&root.join("shared/src"), &mut out);
    for f in std::fs::read_dir(root.join("functions")).expect("functions/") {
        let src = f.expect("a function").path().join("src");
        if src.is_dir() {
            sources(&src, &mut out);
        }
    }
    assert!(out.len() > 20, "found the sources");
    out
}

/// The string literals in `text`.
fn literals(text: &str) -> Vec<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The first argument of the call whose `(` is at the start of `rest`: up to the first comma
/// outside brackets and braces.
fn first_argument(rest: &str) -> &str {
    let mut depth = 0usize;
    let mut in_str = false;
    for (i, c) in rest.char_indices() {
        match c {
            '"' => in_str = !in_str,
            _ if in_str => {}
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => {
                if depth <= 1 {
                    return &rest[1..i];
                }
                depth -= 1;
            }
            ',' if depth == 1 => return &rest[1..i],
            _ => {}
        }
    }
    panic!("an unterminated metric call: {rest:.80}")
}

/// `const NAME: &str = "value";` across the sources (`&'static str` too). A name may have
/// several values: an associated const of a trait, one per implementation (a channel's metric,
/// `K::SUBMITTED_METRIC`, is each channel's).
fn str_consts(code: &[(PathBuf, String)]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, text) in code {
        for line in text.lines() {
            let l = line.trim_start();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            let l = l.strip_prefix("pub(crate) ").unwrap_or(l);
            if let Some(rest) = l.strip_prefix("const ")
                && let Some((name, value)) = rest
                    .split_once(": &str = ")
                    .or_else(|| rest.split_once(": &'static str = "))
                && let Some(v) = literals(value).first()
            {
                out.entry(name.trim().to_owned())
                    .or_default()
                    .push(v.clone());
            }
        }
    }
    out
}

/// Every metric name the code emits, with where.
fn emitted() -> BTreeMap<String, String> {
    let code = code();
    let consts = str_consts(&code);
    let mut out = BTreeMap::new();
    for (path, text) in &code {
        for (at, _) in text.match_indices("telemetry::metric(") {
            let call = &text[at + "telemetry::metric".len()..];
            let arg = first_argument(call).trim();
            let names = match literals(arg) {
                found if !found.is_empty() => found,
                _ => {
                    let ident = arg.rsplit("::").next().unwrap_or(arg).trim();
                    consts.get(ident).cloned().unwrap_or_else(|| {
                        panic!(
                            "{}: metric name {arg} is neither a literal nor a const",
                            path.display()
                        )
                    })
                }
            };
            for name in names {
                out.insert(name, path.display().to_string());
            }
        }
    }
    // `telemetry::metric` itself, and its doc examples, name no metric.
    out.retain(|name, _| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()));
    out
}

fn template() -> Yaml {
    serde_yaml::from_str(TEMPLATE).expect("infra/template.yaml is YAML")
}

fn untagged(v: &Yaml) -> &Yaml {
    match v {
        Yaml::Tagged(t) => &t.value,
        other => other,
    }
}

/// The Herald metrics the dashboard shows.
fn on_dashboard(t: &Yaml) -> BTreeSet<String> {
    let body = untagged(&t["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
        .as_str()
        .expect("a dashboard body");
    let doc: serde_json::Value = serde_json::from_str(body).expect("the dashboard body is JSON");
    let mut out = BTreeSet::new();
    for widget in doc["widgets"].as_array().expect("widgets") {
        for m in widget["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if m[0] == "Herald" {
                out.insert(m[1].as_str().expect("a metric name").to_owned());
            }
        }
    }
    out
}

#[test]
fn every_metric_the_code_emits_is_on_the_dashboard() {
    let emitted = emitted();
    // The scan finds what it must (a guard against a scan that finds nothing).
    for known in [
        "MessagesSubmitted",
        "SendFailures",
        "AmbiguousReconcile",
        "SidOwnedByOther",
        "OptIn",
        "OptOut",
    ] {
        assert!(emitted.contains_key(known), "{known} not found in the code");
    }
    let shown = on_dashboard(&template());
    let missing: Vec<String> = emitted
        .iter()
        .filter(|(name, _)| !shown.contains(*name))
        .map(|(name, at)| format!("{name} ({at})"))
        .collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
    let stale: Vec<&String> = shown.iter().filter(|n| !emitted.contains_key(*n)).collect();
    assert!(
        stale.is_empty(),
        "on the dashboard, emitted nowhere: {stale:?}"
    );
}

#[test]
fn a_twilio_resource_tied_to_the_wrong_record_pages_at_once() {
    let t = template();
    let resources = t["Resources"].as_mapping().expect("Resources");
    for metric in PAGE_AT_ONCE {
        let alarms: Vec<&Yaml> = resources
            .values()
            .filter(|r| {
                r["Type"] == "AWS::CloudWatch::Alarm"
                    && r["Properties"]["Namespace"] == "Herald"
                    && r["Properties"]["MetricName"] == metric
            })
            .collect();
        assert_eq!(alarms.len(), 1, "one alarm on {metric}");
        let p = &alarms[0]["Properties"];
        assert_eq!(p["Statistic"], "Sum", "{metric}");
        assert_eq!(p["Threshold"].as_f64(), Some(0.0), "{metric}");
        assert_eq!(p["ComparisonOperator"], "GreaterThanThreshold", "{metric}");
        assert_eq!(p["TreatMissingData"], "notBreaching", "{metric}");
        let action = untagged(&p["AlarmActions"][0]);
        assert_eq!(action.as_str(), Some("AlarmTopic"), "{metric}");
    }
}

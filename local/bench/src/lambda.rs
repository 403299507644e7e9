//! `herald-bench lambda`: each function's binary, and the Node.js baseline, started N times under
//! the Runtime API emulator (cold start: exec → first `next`, exec → first answer), then one of
//! them fed K invocations of its fixture and its peak RSS read. The functions run against a
//! moto server and a Twilio simulator on loopback, with real configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Bytes;
use serde::Serialize;

use crate::aws_env;
use crate::emulator::{AnswerKind, Command, Start, measure_start};
use crate::stats::Summary;

/// The five functions and the fixture each answers (from `events/<function>/`).
pub const FUNCTIONS: &[(&str, &str)] = &[
    ("send-sms", "post-message.json"),
    ("place-call", "post-call.json"),
    ("webhook-receiver", "message-status.json"),
    ("retry-processor", "sqs-retry-queue.json"),
    ("credential-rotation", "testSecret.json"),
];

/// A variant of `send-sms`'s configuration also measured: the sender as a Messaging Service.
pub const MESSAGING_SERVICE: (&str, &str, &str) = (
    "(Messaging Service)",
    "TWILIO_MESSAGING_SERVICE_SID",
    "MG0123456789abcdef0123456789abcdef",
);

/// The Node.js baseline's fixtures: the SMS request, then a signed status callback.
pub const BASELINE_FIXTURES: &[(&str, &str)] = &[
    ("send-sms", "post-message.json"),
    ("webhook-receiver", "message-status.json"),
];

/// What `lambda` measured for one program.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Measured {
    /// The function's name (`node-baseline` for the baseline).
    pub name: String,
    /// The program started.
    pub program: String,
    /// The fixture answered first.
    pub fixture: String,
    /// Each start.
    pub starts: Vec<StartSummary>,
    /// Exec → first `next`, ms.
    pub init_ms: Summary,
    /// Exec → first answer, ms.
    pub first_answer_ms: Summary,
    /// How the first invocations were answered (`response` or `error`).
    pub first_answers: BTreeMap<String, usize>,
    /// Invocations in the memory run.
    pub invocations: usize,
    /// Of those, answered with a response (the rest with an error).
    pub responses: usize,
    /// Peak RSS over the memory run, kB.
    pub vm_hwm_kb: Option<u64>,
    /// Warm invocations of the memory run: handed out → answered, ms.
    pub warm_ms: Option<Summary>,
}

/// One start, without its warm samples.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct StartSummary {
    /// Exec → first `next`, ms.
    pub init_ms: f64,
    /// Exec → first answer, ms.
    pub first_answer_ms: f64,
    /// How the first invocation was answered.
    pub first_answer: AnswerKind,
}

/// The whole `lambda` result.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LambdaReport {
    /// Starts per program.
    pub starts: usize,
    /// Invocations in each memory run.
    pub invocations: usize,
    /// Where the binaries came from.
    pub bin_dir: String,
    /// Each function.
    pub functions: Vec<Measured>,
    /// The Node.js baseline, when it could be run.
    pub baseline: Option<Measured>,
    /// Why the baseline is missing.
    pub baseline_unavailable: Option<String>,
}

/// Options of `lambda`.
pub struct Options {
    /// The moto server.
    pub aws_endpoint: String,
    /// Where the functions' binaries are (`target/release` or `target/debug`).
    pub bin_dir: PathBuf,
    /// The `events/` folder.
    pub events_dir: PathBuf,
    /// Starts per program.
    pub starts: usize,
    /// Invocations in each memory run.
    pub invocations: usize,
    /// `node` and the baseline script, and its `node_modules`.
    pub node: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Why there is no baseline (when `node` is `None`).
    pub baseline_unavailable: Option<String>,
    /// Logs of the programs.
    pub log_dir: PathBuf,
    /// How long an answer may take.
    pub timeout: Duration,
}

fn lambda_env(name: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_FUNCTION_NAME", format!("herald-bench-{name}")),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/herald-bench-{name}"),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ("HERALD_LOG", "warn".to_owned()),
        ("TZ", "UTC".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

fn fixture(events_dir: &Path, function: &str, file: &str) -> std::io::Result<Bytes> {
    std::fs::read(events_dir.join(function).join(file)).map(Bytes::from)
}

async fn measure(
    name: &str,
    cmd: &Command,
    first: &Bytes,
    events: &[Bytes],
    o: &Options,
) -> Result<(Vec<StartSummary>, Start), Box<dyn std::error::Error + Send + Sync>> {
    let mut starts = Vec::new();
    let mut memory_run = None;
    for i in 0..o.starts.max(1) {
        // The first start is also the memory run: K invocations after the first.
        let more = if i == 0 {
            o.invocations.saturating_sub(1)
        } else {
            0
        };
        let s = measure_start(cmd, first, events, more, o.timeout)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        starts.push(StartSummary {
            init_ms: s.init_ms,
            first_answer_ms: s.first_answer_ms,
            first_answer: s.first_answer,
        });
        if i == 0 {
            memory_run = Some(s);
        }
    }
    Ok((starts, memory_run.expect("at least one start")))
}

fn summarise(
    name: &str,
    program: &str,
    fixture: &str,
    starts: Vec<StartSummary>,
    memory: Start,
) -> Measured {
    let init: Vec<f64> = starts.iter().map(|s| s.init_ms).collect();
    let first: Vec<f64> = starts.iter().map(|s| s.first_answer_ms).collect();
    let mut first_answers = BTreeMap::new();
    for s in &starts {
        let k = serde_json::to_value(s.first_answer)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *first_answers.entry(k).or_insert(0) += 1;
    }
    Measured {
        name: name.to_owned(),
        program: program.to_owned(),
        fixture: fixture.to_owned(),
        init_ms: Summary::of(&init).expect("at least one start"),
        first_answer_ms: Summary::of(&first).expect("at least one start"),
        first_answers,
        starts,
        invocations: memory.invocations,
        responses: memory.responses,
        vm_hwm_kb: memory.vm_hwm_kb,
        warm_ms: Summary::of(&memory.warm_ms),
    }
}

/// Runs `lambda`.
pub async fn run(o: Options) -> Result<LambdaReport, Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(&o.log_dir)?;
    let sdk = aws_env::sdk_config(&o.aws_endpoint).await;
    let resources = aws_env::provision(&sdk, &aws_env::unique_prefix("lambda")).await?;
    let sim = aws_env::start_simulator().await?;
    let mut env: Vec<(String, String)> = aws_env::herald_env(&sim.base_url())
        .into_iter()
        .chain(resources.clone())
        .collect();
    env.push(("AWS_ENDPOINT_URL".into(), o.aws_endpoint.clone()));

    let mut functions = Vec::new();
    let variants = FUNCTIONS
        .iter()
        .map(|(name, file)| (*name, *file, None))
        .chain([("send-sms", "post-message.json", Some(MESSAGING_SERVICE))]);
    for (name, file, variant) in variants {
        let program = o.bin_dir.join(name);
        let mut first = fixture(&o.events_dir, name, file)?;
        if name == "credential-rotation" {
            // The rotation step names the secret: point it at the one in moto.
            let mut event: serde_json::Value = serde_json::from_slice(&first)?;
            event["SecretId"] = resources["TWILIO_SECRET_ARN"].clone().into();
            first = Bytes::from(serde_json::to_vec(&event)?);
        }
        let mut cmd_env = lambda_env(name);
        cmd_env.extend(env.iter().cloned());
        let label = match variant {
            None => name.to_owned(),
            Some((label, var, value)) => {
                // The sender as a Messaging Service instead of a number: start-up then parses no
                // phone number (see BENCHMARKS.md).
                cmd_env.retain(|(k, _)| k != "TWILIO_FROM_NUMBER");
                cmd_env.push((var.to_owned(), value.to_owned()));
                format!("{name} {label}")
            }
        };
        let cmd = Command {
            program: program.clone(),
            args: vec![],
            env: cmd_env,
            log: o.log_dir.join(format!("{}.log", label.replace(' ', "-"))),
        };
        eprintln!("lambda: {label} ({} starts)", o.starts);
        let (starts, memory) =
            measure(&label, &cmd, &first, std::slice::from_ref(&first), &o).await?;
        functions.push(summarise(
            &label,
            &program.display().to_string(),
            &format!("events/{name}/{file}"),
            starts,
            memory,
        ));
    }

    let baseline = match &o.node {
        None => None,
        Some((node, script, modules)) => {
            let events = BASELINE_FIXTURES
                .iter()
                .map(|(f, file)| fixture(&o.events_dir, f, file))
                .collect::<Result<Vec<_>, _>>()?;
            let mut cmd_env = lambda_env("node-baseline");
            cmd_env.extend(env.iter().cloned());
            let creds = aws_env::credentials();
            cmd_env.extend([
                ("NODE_PATH".to_owned(), modules.display().to_string()),
                ("TWILIO_API_KEY_SID".to_owned(), creds.api_key_sid.clone()),
                (
                    "TWILIO_API_KEY_SECRET".to_owned(),
                    creds.api_key_secret.expose().clone(),
                ),
                (
                    "TWILIO_AUTH_TOKEN".to_owned(),
                    creds.auth_token.expose().clone(),
                ),
            ]);
            let cmd = Command {
                program: node.clone(),
                args: vec![script.display().to_string()],
                env: cmd_env,
                log: o.log_dir.join("node-baseline.log"),
            };
            eprintln!("lambda: node baseline ({} starts)", o.starts);
            let (starts, memory) = measure("node-baseline", &cmd, &events[0], &events, &o).await?;
            Some(summarise(
                "node-baseline",
                &format!("{} {}", node.display(), script.display()),
                "events/send-sms/post-message.json, events/webhook-receiver/message-status.json",
                starts,
                memory,
            ))
        }
    };
    sim.shutdown().await;
    Ok(LambdaReport {
        starts: o.starts,
        invocations: o.invocations,
        bin_dir: o.bin_dir.display().to_string(),
        functions,
        baseline,
        baseline_unavailable: o.baseline_unavailable,
    })
}

//! `herald-bench`: Herald's benchmarks, each writing JSON for `scripts/bench.sh`, which runs them
//! all and renders `BENCHMARKS.md` with `herald-bench report`. Benchmarks, not timed tests: a
//! missed target is reported, never an error; only a broken harness fails (a function that does
//! not start or answer, a request that does not validate, no AWS call counted).

mod aws_calls;
mod aws_env;
mod cost;
mod emulator;
mod inprocess;
mod lambda;
mod report;
mod signature;
mod stats;
mod sweep;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Herald's benchmarks (see scripts/bench.sh).
#[derive(Debug, Parser)]
#[command(name = "herald-bench", version)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Cold start and peak RSS of each function's binary (and the Node.js baseline) under a
    /// Lambda Runtime API emulator, against moto and a Twilio simulator on loopback.
    Lambda {
        /// The moto server (scripts/moto_server.py).
        #[arg(long)]
        aws_endpoint: String,
        /// Where the functions' binaries are.
        #[arg(long)]
        bin_dir: PathBuf,
        /// The events/ folder.
        #[arg(long, default_value = "events")]
        events_dir: PathBuf,
        /// Starts per program.
        #[arg(long, default_value_t = 20)]
        starts: usize,
        /// Invocations of the memory run.
        #[arg(long, default_value_t = 1000)]
        invocations: usize,
        /// `node`, to run the baseline.
        #[arg(long, requires = "node_script")]
        node: Option<PathBuf>,
        /// The baseline script (bench/node/lambda.js).
        #[arg(long, requires = "node_modules")]
        node_script: Option<PathBuf>,
        /// Its node_modules folder.
        #[arg(long)]
        node_modules: Option<PathBuf>,
        /// Why there is no baseline, to report.
        #[arg(long)]
        baseline_unavailable: Option<String>,
        /// Where the programs' logs go.
        #[arg(long, default_value = "target/bench/logs")]
        log_dir: PathBuf,
        /// Seconds an answer may take.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
        /// The JSON result.
        #[arg(long)]
        out: PathBuf,
    },
    /// send-sms and webhook-receiver in process (embedded adapters, Twilio simulator): latency
    /// and throughput.
    Inprocess {
        /// Messages in each of the sequential and concurrent runs.
        #[arg(long, default_value_t = 2000)]
        messages: usize,
        /// Requests in flight at once in the concurrent runs.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// The JSON result.
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes the shared file of signed status callbacks.
    SignatureCorpus {
        /// Requests.
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// The file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Herald's signature validation over the shared file: ns per validation.
    Signature {
        /// The file from signature-corpus.
        #[arg(long)]
        corpus: PathBuf,
        /// Times every request is validated.
        #[arg(long, default_value_t = 500)]
        rounds: u64,
        /// The JSON result.
        #[arg(long)]
        out: PathBuf,
    },
    /// AWS calls per message (POST /v1/messages and two status callbacks), counted by moto.
    AwsCalls {
        /// The moto server (scripts/moto_server.py).
        #[arg(long)]
        aws_endpoint: String,
        /// Messages.
        #[arg(long, default_value_t = 200)]
        messages: usize,
        /// The JSON result.
        #[arg(long)]
        out: PathBuf,
    },
    /// The sweeper under a backlog: `stuck` messages Twilio leaves at `sent` forever do not
    /// delay `fresh` ones whose final callback was lost, and are all asked about within
    /// ceil(stuck / (limit / 2)) sweeps.
    Sweep {
        /// Messages Twilio leaves at `sent` forever.
        #[arg(long, default_value_t = 100_000)]
        stuck: usize,
        /// Recent messages whose final callback was lost.
        #[arg(long, default_value_t = 20)]
        fresh: usize,
        /// The sweep limit per status (by default retry-processor's).
        #[arg(long, default_value_t = retry_processor::SWEEP_LIMIT)]
        limit: u32,
        /// Sends in flight at once while seeding.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// The JSON result.
        #[arg(long)]
        out: PathBuf,
    },
    /// Renders BENCHMARKS.md from the JSON results in a folder.
    Report {
        /// The folder with lambda.json, inprocess.json, signature-*.json, aws-calls.json,
        /// zips.json and run.json.
        #[arg(long)]
        results: PathBuf,
        /// The Markdown file.
        #[arg(long)]
        out: PathBuf,
    },
}

fn write_json<T: serde::Serialize>(path: &PathBuf, value: &T) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// Functions whose fixture must be answered with a response (an HTTP answer), not an error.
const MUST_RESPOND: &[&str] = &[
    "send-sms",
    "place-call",
    "webhook-receiver",
    "retry-processor",
];

async fn run(args: Args) -> Result<(), String> {
    match args.command {
        Cmd::Lambda {
            aws_endpoint,
            bin_dir,
            events_dir,
            starts,
            invocations,
            node,
            node_script,
            node_modules,
            baseline_unavailable,
            log_dir,
            timeout_secs,
            out,
        } => {
            let node = match (node, node_script, node_modules) {
                (Some(n), Some(s), Some(m)) => Some((n, s, m)),
                _ => None,
            };
            let report = lambda::run(lambda::Options {
                aws_endpoint,
                bin_dir,
                events_dir,
                starts,
                invocations,
                node,
                baseline_unavailable,
                log_dir,
                timeout: Duration::from_secs(timeout_secs),
            })
            .await
            .map_err(|e| e.to_string())?;
            write_json(&out, &report)?;
            for f in report.functions.iter().chain(&report.baseline) {
                eprintln!(
                    "  {:<20} init p50 {:>8.2} ms  first answer p50 {:>8.2} ms  peak RSS {:>7} kB  ({}/{} responses)",
                    f.name,
                    f.init_ms.p50,
                    f.first_answer_ms.p50,
                    f.vm_hwm_kb.map_or("?".into(), |k| k.to_string()),
                    f.responses,
                    f.invocations
                );
                if MUST_RESPOND.iter().any(|n| f.name.starts_with(n))
                    && f.responses != f.invocations
                {
                    return Err(format!(
                        "{} answered {} of {} invocations with an error (see its log)",
                        f.name,
                        f.invocations - f.responses,
                        f.invocations
                    ));
                }
            }
        }
        Cmd::Inprocess {
            messages,
            concurrency,
            out,
        } => {
            let workers = std::thread::available_parallelism().map_or(1, usize::from);
            let report = inprocess::run(messages, concurrency, workers).await?;
            eprintln!(
                "  send-sms: p50 {:.3} ms p99 {:.3} ms, {:.0}/s at {} in flight; webhook: p50 {:.3} ms p99 {:.3} ms, {:.0}/s",
                report.send_sms.sequential_ms.p50,
                report.send_sms.sequential_ms.p99,
                report.send_sms.per_second,
                concurrency,
                report.webhook.sequential_ms.p50,
                report.webhook.sequential_ms.p99,
                report.webhook.per_second
            );
            write_json(&out, &report)?;
        }
        Cmd::SignatureCorpus { count, out } => {
            // A fake token: only these generated requests are ever signed with it.
            write_json(
                &out,
                &signature::corpus(count, "bench-auth-token-not-a-secret"),
            )?;
        }
        Cmd::Signature {
            corpus,
            rounds,
            out,
        } => {
            let text = std::fs::read_to_string(&corpus)
                .map_err(|e| format!("{}: {e}", corpus.display()))?;
            let corpus: signature::Corpus =
                serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let result = signature::bench(&corpus, rounds);
            if !result.all_valid {
                return Err("Herald rejected a request of the corpus".into());
            }
            eprintln!("  herald: {:.0} ns/validation", result.ns_per_validation);
            write_json(&out, &result)?;
        }
        Cmd::AwsCalls {
            aws_endpoint,
            messages,
            out,
        } => {
            let report = aws_calls::run(&aws_endpoint, messages)
                .await
                .map_err(|e| e.to_string())?;
            for (k, v) in report.per_message() {
                eprintln!("  {k:<36} {v:>8.3} per message");
            }
            write_json(&out, &report)?;
        }
        Cmd::Sweep {
            stuck,
            fresh,
            limit,
            concurrency,
            out,
        } => {
            let r = sweep::run(stuck, fresh, limit, concurrency).await?;
            eprintln!(
                "  {} stuck, limit {}: sweep p50 {:.1} ms p95 {:.1} ms max {:.1} ms; fresh final after {} sweep(s); backlog covered in {} sweeps (bound {})",
                r.stuck,
                r.limit,
                r.sweep_ms.p50,
                r.sweep_p95_ms,
                r.sweep_ms.max,
                r.sweeps_to_fresh_final,
                r.sweeps_to_cover_backlog,
                r.cover_bound
            );
            write_json(&out, &r)?;
        }
        Cmd::Report { results, out } => {
            let md = report::render(&results)?;
            std::fs::write(&out, md).map_err(|e| format!("{}: {e}", out.display()))?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // The handlers' metrics lines are for CloudWatch; here they would only flood the output.
    herald::telemetry::set_metrics_output(herald::telemetry::MetricsOutput::Off);
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

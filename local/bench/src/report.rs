//! `herald-bench report`: BENCHMARKS.md from the JSON results of one run of `scripts/bench.sh`:
//! ratios to the Node.js baseline first, absolute figures next, each target with ✓ or ✗, a note
//! on each missed one, and the command that reproduces each figure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::aws_calls::AwsCallsReport;
use crate::cost::{self, Bill, Inputs, Invocation, US_EAST_1, WAITS};
use crate::inprocess::InprocessReport;
use crate::lambda::{LambdaReport, Measured};
use crate::signature::SignatureResult;
use crate::sweep::SweepReport;

/// The targets of issue 8.
pub mod targets {
    /// Median init of each function, ms.
    pub const INIT_MS: f64 = 15.0;
    /// How many times faster than the Node.js baseline the median init must be.
    pub const INIT_RATIO: f64 = 25.0;
    /// Peak RSS of each function, MiB.
    pub const RSS_MIB: f64 = 24.0;
    /// p99 of a status callback in process, ms.
    pub const WEBHOOK_P99_MS: f64 = 2.0;
    /// SMS accepted per second, end to end locally.
    pub const SMS_PER_SECOND: f64 = 2000.0;
    /// Size of each arm64 zip, bytes (4 MiB).
    pub const ZIP_BYTES: u64 = 4 * 1024 * 1024;
    /// The cost per million messages, as a multiple of the floor.
    pub const COST_OVER_FLOOR: f64 = 1.25;
    /// How many times faster than the Node SDK's `validateRequest` a signature check must be.
    pub const SIGNATURE_RATIO: f64 = 6.0;
}

fn load<T: DeserializeOwned>(dir: &Path, name: &str) -> Option<T> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    serde_json::from_str(&text).ok()
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

fn machine() -> (String, usize, String) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    (cpu, cores, kernel)
}

fn mib(kb: Option<u64>) -> Option<f64> {
    kb.map(|k| k as f64 / 1024.0)
}

fn cmd(run: &serde_json::Value, key: &str) -> String {
    run["commands"][key]
        .as_str()
        .map_or_else(String::new, |c| format!("`{c}`"))
}

/// The cost inputs of Herald and of the baseline from the measured figures (see BENCHMARKS.md
/// for the assumptions).
pub fn cost_inputs(
    calls: &AwsCallsReport,
    inproc: &InprocessReport,
    lambda: &LambdaReport,
) -> (Inputs, Option<Inputs>) {
    let n = calls.messages.max(1) as f64;
    let per = |m: &BTreeMap<String, u64>, by_table: &BTreeMap<String, u64>, d: f64| {
        let mut out: BTreeMap<String, f64> =
            m.iter().map(|(k, v)| (k.clone(), *v as f64 / d)).collect();
        out.insert(
            cost::GSI_WRITE.to_owned(),
            calls.gsi_writes(by_table) as f64 / d,
        );
        out
    };
    let invocations = |send_ms: f64, callback_ms: f64| {
        vec![
            Invocation {
                name: "POST /v1/messages (send-sms)".into(),
                per_message: 1.0,
                compute_ms: send_ms,
                aws_calls: per(&calls.send, &calls.send_writes_by_table, n),
                calls_twilio: true,
            },
            Invocation {
                name: "status callback (webhook-receiver)".into(),
                per_message: 2.0,
                compute_ms: callback_ms,
                aws_calls: per(&calls.callbacks, &calls.callback_writes_by_table, 2.0 * n),
                calls_twilio: false,
            },
        ]
    };
    let herald_fn = |name: &str| lambda.functions.iter().find(|f| f.name == name);
    let rss = ["send-sms", "webhook-receiver"]
        .iter()
        .filter_map(|n| mib(herald_fn(n)?.vm_hwm_kb))
        .fold(0.0, f64::max);
    let init = ["send-sms", "webhook-receiver"]
        .iter()
        .filter_map(|n| Some(herald_fn(n)?.init_ms.p50))
        .fold(0.0, f64::max);
    let herald = Inputs {
        invocations: invocations(
            inproc.send_sms.sequential_ms.p50,
            inproc.webhook.sequential_ms.p50,
        ),
        memory_mb: cost::configured_memory_mb(rss),
        cold_start_share: 0.01,
        init_ms: init,
    };
    let baseline = lambda.baseline.as_ref().map(|b| {
        let warm = b.warm_ms.map_or(1.0, |w| w.p50);
        Inputs {
            invocations: invocations(warm, warm),
            memory_mb: cost::configured_memory_mb(mib(b.vm_hwm_kb).unwrap_or(128.0)),
            cold_start_share: 0.01,
            init_ms: b.init_ms.p50,
        }
    });
    (herald, baseline)
}

fn bill_table(out: &mut String, herald: &Bill, baseline: Option<&Bill>) {
    let _ = writeln!(
        out,
        "| item | units per message | Herald $/M messages | Node baseline $/M messages |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (i, l) in herald.lines.iter().enumerate() {
        let b = baseline.map_or("n/a".into(), |b| {
            format!("{:.4}", b.lines[i].usd_per_million)
        });
        let _ = writeln!(
            out,
            "| {} | {:.4} | {:.4} | {} |",
            l.item, l.units_per_message, l.usd_per_million, b
        );
    }
    let b = baseline.map_or("n/a".into(), |b| format!("**{:.4}**", b.total));
    let _ = writeln!(out, "| **total** | | **{:.4}** | {} |", herald.total, b);
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

fn function_rows(out: &mut String, lambda: &LambdaReport, base: Option<&Measured>) {
    let _ = writeln!(
        out,
        "| program | init p50 (ms) | Node init ÷ this init | first answer p50 (ms) | first answers | peak RSS (MiB) | memory run | warm p50 (ms) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|---:|---|---:|");
    for f in lambda.functions.iter().chain(base) {
        let ratio = base.map(|b| b.init_ms.p50 / f.init_ms.p50);
        let answers = f
            .first_answers
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| {} | {:.2} | {}× | {:.2} | {} | {} | {}/{} responses | {} |",
            f.name,
            f.init_ms.p50,
            fmt_opt(ratio, 1),
            f.first_answer_ms.p50,
            answers,
            fmt_opt(mib(f.vm_hwm_kb), 1),
            f.responses,
            f.invocations,
            fmt_opt(f.warm_ms.map(|w| w.p50), 2),
        );
    }
}

/// Renders BENCHMARKS.md from the results in `dir`.
pub fn render(dir: &Path) -> Result<String, String> {
    let run: serde_json::Value = load(dir, "run.json").ok_or("run.json is missing")?;
    let lambda: LambdaReport = load(dir, "lambda.json").ok_or("lambda.json is missing")?;
    let inproc: InprocessReport = load(dir, "inprocess.json").ok_or("inprocess.json is missing")?;
    let calls: AwsCallsReport = load(dir, "aws-calls.json").ok_or("aws-calls.json is missing")?;
    let sigs: Vec<(String, Option<SignatureResult>)> = ["herald", "node", "python"]
        .iter()
        .map(|k| ((*k).to_owned(), load(dir, &format!("signature-{k}.json"))))
        .collect();
    let (cpu, cores, kernel) = machine();
    let base = lambda.baseline.as_ref();
    let mut failed: Vec<String> = Vec::new();
    let mut o = String::new();

    let _ = writeln!(o, "# Benchmarks\n");
    let _ = writeln!(
        o,
        "Produced by `scripts/bench.sh` ({} mode) on {}. Herald and the usual alternative, a Node.js \
         Lambda on the `twilio` npm SDK and AWS SDK v3 clients, measured in the same run on the same \
         machine. Benchmarks, not tests: nothing here fails CI. Ratios are the headline; absolute \
         figures depend on the machine. In the commands below, `$MOTO` is the URL of a \
         `scripts/moto_server.py` server.\n",
        run["mode"].as_str().unwrap_or("?"),
        run["date"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        o,
        "Machine: {cpu}, {cores} cores (shared with other work during the run), Linux {kernel}; \
         {}; {}; Rust {}.\n",
        run["node_version"]
            .as_str()
            .map_or("Node.js unavailable".into(), |v| format!("Node.js {v}")),
        run["python_version"]
            .as_str()
            .map_or("Python unavailable".into(), |v| format!("Python {v}")),
        run["rust_version"].as_str().unwrap_or("?"),
    );

    // ---- headline ----
    let (herald_in, base_in) = cost_inputs(&calls, &inproc, &lambda);
    let herald_bill = cost::bill(&herald_in, &US_EAST_1, &WAITS);
    let base_bill = base_in.as_ref().map(|i| cost::bill(i, &US_EAST_1, &WAITS));
    let floor = cost::floor(&US_EAST_1);
    let standard: Vec<&Measured> = lambda.functions.iter().filter(|f| !is_variant(f)).collect();
    let worst_init = standard.iter().map(|f| f.init_ms.p50).fold(0.0, f64::max);
    let worst_rss = standard
        .iter()
        .filter_map(|f| mib(f.vm_hwm_kb))
        .fold(0.0, f64::max);
    let sig_ns = |k: &str| {
        sigs.iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, r)| r.as_ref())
            .map(|r| r.ns_per_validation)
    };
    let _ = writeln!(o, "## Headline: Herald vs the Node.js baseline\n");
    let _ = writeln!(o, "| measure | Herald | Node.js baseline | Node ÷ Herald |");
    let _ = writeln!(o, "|---|---:|---:|---:|");
    let ratio = |b: Option<f64>, h: f64| fmt_opt(b.map(|b| b / h), 1);
    let _ = writeln!(
        o,
        "| cold start: exec → first `next`, median, slowest function (ms) | {:.2} | {} | {}× |",
        worst_init,
        fmt_opt(base.map(|b| b.init_ms.p50), 2),
        ratio(base.map(|b| b.init_ms.p50), worst_init)
    );
    let _ = writeln!(
        o,
        "| peak RSS over the memory run, largest function (MiB) | {:.1} | {} | {}× |",
        worst_rss,
        fmt_opt(base.and_then(|b| mib(b.vm_hwm_kb)), 1),
        ratio(base.and_then(|b| mib(b.vm_hwm_kb)), worst_rss)
    );
    if let Some(h) = sig_ns("herald") {
        let _ = writeln!(
            o,
            "| signature validation (ns each) | {:.0} | {} | {}× |",
            h,
            fmt_opt(sig_ns("node"), 0),
            ratio(sig_ns("node"), h)
        );
    }
    let _ = writeln!(
        o,
        "| AWS cost per million SMS with two callbacks ($) | {:.2} | {} | {}× |\n",
        herald_bill.total,
        fmt_opt(base_bill.as_ref().map(|b| b.total), 2),
        ratio(base_bill.as_ref().map(|b| b.total), herald_bill.total)
    );
    if let Some(why) = &lambda.baseline_unavailable {
        let _ = writeln!(o, "The Node.js baseline could not be run: {why}.\n");
    }

    // ---- targets ----
    let _ = writeln!(o, "## Targets\n");
    let _ = writeln!(o, "| target | measured | |");
    let _ = writeln!(o, "|---|---|---|");
    let mut target = |o: &mut String, name: String, measured: String, ok: Option<bool>| {
        let m = ok.map_or("n/a", mark);
        if ok == Some(false) {
            failed.push(name.clone());
        }
        let _ = writeln!(o, "| {name} | {measured} | {m} |");
    };
    for f in &standard {
        target(
            &mut o,
            format!("{}: median init ≤ {} ms", f.name, targets::INIT_MS),
            format!("{:.2} ms", f.init_ms.p50),
            Some(f.init_ms.p50 <= targets::INIT_MS),
        );
    }
    for f in &standard {
        let r = base.map(|b| b.init_ms.p50 / f.init_ms.p50);
        target(
            &mut o,
            format!(
                "{}: init ≥ {}× faster than Node",
                f.name,
                targets::INIT_RATIO
            ),
            format!("{}×", fmt_opt(r, 1)),
            r.map(|r| r >= targets::INIT_RATIO),
        );
    }
    for f in &standard {
        let m = mib(f.vm_hwm_kb);
        target(
            &mut o,
            format!(
                "{}: peak RSS ≤ {} MiB over {} invocations",
                f.name,
                targets::RSS_MIB,
                f.invocations
            ),
            format!("{} MiB", fmt_opt(m, 1)),
            m.map(|m| m <= targets::RSS_MIB),
        );
    }
    target(
        &mut o,
        format!("webhook p99 ≤ {} ms in process", targets::WEBHOOK_P99_MS),
        format!("{:.3} ms", inproc.webhook.sequential_ms.p99),
        Some(inproc.webhook.sequential_ms.p99 <= targets::WEBHOOK_P99_MS),
    );
    target(
        &mut o,
        format!(
            "≥ {} SMS accepted per second locally",
            targets::SMS_PER_SECOND
        ),
        format!(
            "{:.0}/s on {} cores",
            inproc.send_sms.per_second, inproc.worker_threads
        ),
        Some(inproc.send_sms.per_second >= targets::SMS_PER_SECOND),
    );
    {
        let (h, n) = (sig_ns("herald"), sig_ns("node"));
        let r = h.zip(n).map(|(h, n)| n / h);
        target(
            &mut o,
            format!(
                "signature validation ≥ {}× faster than twilio (npm)",
                targets::SIGNATURE_RATIO
            ),
            r.map_or("baseline unavailable".into(), |r| {
                format!(
                    "{r:.1}× ({:.0} ns vs {:.0} ns)",
                    h.unwrap_or(f64::NAN),
                    n.unwrap_or(f64::NAN)
                )
            }),
            r.map(|r| r >= targets::SIGNATURE_RATIO),
        );
    }
    let zip_dir = run["zip_dir"].as_str().unwrap_or("target/lambda-arm64");
    let zips: Vec<(&str, Option<u64>)> = crate::lambda::FUNCTIONS
        .iter()
        .map(|(f, _)| {
            (
                *f,
                std::fs::metadata(Path::new(zip_dir).join(f).join("bootstrap.zip"))
                    .ok()
                    .map(|m| m.len()),
            )
        })
        .collect();
    for (f, size) in &zips {
        target(
            &mut o,
            format!("{f}: arm64 zip ≤ 4 MiB"),
            size.map_or("not built".into(), |s| {
                format!("{:.2} MiB", s as f64 / 1048576.0)
            }),
            size.map(|s| s <= targets::ZIP_BYTES),
        );
    }
    target(
        &mut o,
        format!(
            "cost ≤ {}× the floor (${floor:.2}/M)",
            targets::COST_OVER_FLOOR
        ),
        format!(
            "${:.2}/M = {:.2}×",
            herald_bill.total,
            herald_bill.total / floor
        ),
        Some(herald_bill.total <= targets::COST_OVER_FLOOR * floor),
    );
    target(
        &mut o,
        "cost below the Node.js baseline".into(),
        base_bill
            .as_ref()
            .map_or("baseline unavailable".into(), |b| {
                let apart = (b.total - herald_bill.total).abs() / b.total * 100.0;
                let tie = if apart < 1.0 {
                    format!(" (a tie: {apart:.2}% apart, within the model's uncertainty)")
                } else {
                    String::new()
                };
                format!("${:.2}/M vs ${:.2}/M{tie}", herald_bill.total, b.total)
            }),
        base_bill.as_ref().map(|b| herald_bill.total < b.total),
    );
    let _ = writeln!(o);

    // ---- details ----
    let _ = writeln!(o, "## 1–2. Cold start and memory\n");
    let _ = writeln!(
        o,
        "Each binary ({}) is started {} times under a minimal Lambda Runtime API emulator on \
         loopback (`herald-bench lambda`), with real configuration pointing at a moto server and the \
         Twilio simulator: **init** is exec → its first `GET /2018-06-01/runtime/invocation/next`, \
         **first answer** exec → its first `POST …/invocation/{{id}}/response` (or `/error`) for its \
         fixture from `events/`. The first start then answers {} invocations of the fixture and its \
         peak RSS (`VmHWM`) is read before it is killed. The Node.js 20 baseline \
         (`bench/node/lambda.js`) loads `twilio` and the DynamoDB, SQS, Secrets Manager and KMS \
         clients of AWS SDK v3, builds them at module scope and speaks the same API; its handler only \
         parses the event and validates the callback's signature (no AWS or Twilio call), so its \
         first answer and warm time are lower bounds. Herald's first answer includes fetching the \
         secret, a KMS data key, the DynamoDB writes and the Twilio call (moto and the simulator are \
         on loopback: moto, in Python, serves one request at a time and dominates those times).\n",
        shown(&lambda.bin_dir),
        lambda.starts,
        lambda.invocations
    );
    function_rows(&mut o, &lambda, base);
    let _ = writeln!(o, "\nReproduce: {}\n", cmd(&run, "lambda"));

    let _ = writeln!(o, "## 3. Per-message cost in CPU (in process)\n");
    let _ = writeln!(
        o,
        "`herald-bench inprocess`: the handlers `send_sms::handle` and `webhook_receiver::handle` \
         called with API Gateway events over the embedded adapters (SQLite in memory, local key) with \
         the Twilio simulator on loopback in the same process (`herald::test_env::TestEnv`); \
         {} worker threads. Sequential: one request at a time; concurrent: {} in flight.\n",
        inproc.worker_threads, inproc.send_sms.concurrency
    );
    let _ = writeln!(
        o,
        "| handler | sequential p50 (ms) | sequential p99 (ms) | concurrent p50 (ms) | concurrent p99 (ms) | requests | per second |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|");
    for (name, f) in [
        ("send-sms POST /v1/messages → 201", &inproc.send_sms),
        ("webhook-receiver status callback → 200", &inproc.webhook),
    ] {
        let _ = writeln!(
            o,
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.0} |",
            f.sequential_ms.p50,
            f.sequential_ms.p99,
            f.concurrent_ms.p50,
            f.concurrent_ms.p99,
            f.concurrent_requests,
            f.per_second
        );
    }
    let _ = writeln!(o, "\nReproduce: {}\n", cmd(&run, "inprocess"));

    let _ = writeln!(o, "## 4. Signature validation\n");
    let _ = writeln!(
        o,
        "One file of realistic message status callbacks (URL with Herald's `?mid=…&a=…`, Twilio's \
         form parameters, `X-Twilio-Signature`; `herald-bench signature-corpus`), validated by each \
         implementation many times; every request must pass. Each implementation tries the URL with \
         and without its port, as the official SDKs do.\n"
    );
    let _ = writeln!(
        o,
        "| implementation | version | requests | validations | ns per validation | vs Herald |"
    );
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|");
    let herald_ns = sig_ns("herald");
    for (k, r) in &sigs {
        match r {
            Some(r) => {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {:.0} | {}× |",
                    r.implementation,
                    r.version,
                    r.requests,
                    r.validations,
                    r.ns_per_validation,
                    fmt_opt(herald_ns.map(|h| r.ns_per_validation / h), 1)
                );
            }
            None => {
                let _ = writeln!(o, "| {k} | unavailable | | | | |");
            }
        }
    }
    let _ = writeln!(o, "\nReproduce: {}\n", cmd(&run, "signature"));

    let _ = writeln!(o, "## 5. Size\n");
    let _ = writeln!(o, "| function | arm64 bootstrap.zip (bytes) | MiB |");
    let _ = writeln!(o, "|---|---:|---:|");
    for (f, size) in &zips {
        let _ = writeln!(
            o,
            "| {f} | {} | {} |",
            size.map_or("not built".into(), |s| s.to_string()),
            fmt_opt(size.map(|s| s as f64 / 1048576.0), 2)
        );
    }
    let _ = writeln!(
        o,
        "\nFrom `{}/<function>/bootstrap.zip`, built by `scripts/package.sh` (cargo-lambda, \
         release profile: opt-level s, LTO, one codegen unit, symbols stripped; AWS SDK on rustls \
         with ring). For comparison, the Node baseline's `node_modules` is {}.\n",
        shown(zip_dir),
        run["node_modules_size"].as_str().unwrap_or("not measured")
    );

    let _ = writeln!(o, "## 6. AWS cost per million SMS\n");
    let _ = writeln!(
        o,
        "Each message: one `POST /v1/messages` and Twilio's two status callbacks (`sent`, \
         `delivered`), each through API Gateway (HTTP API) and Lambda. AWS calls **counted**, not \
         guessed: `herald-bench aws-calls` runs the real handlers over the AWS adapters against \
         `scripts/moto_server.py`, which counts every call by IAM action, for {} messages (one \
         process, so the secret and the data key are fetched once and reused, as a warm Lambda \
         does).\n",
        calls.messages
    );
    let _ = writeln!(
        o,
        "| IAM action | per POST /v1/messages | per status callback | per message |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|");
    let n = calls.messages.max(1) as f64;
    for (action, per_msg) in calls.per_message() {
        let s = calls.send.get(&action).copied().unwrap_or(0) as f64 / n;
        let c = calls.callbacks.get(&action).copied().unwrap_or(0) as f64 / (2.0 * n);
        let _ = writeln!(o, "| {action} | {s:.3} | {c:.3} | {per_msg:.3} |");
    }
    let _ = writeln!(
        o,
        "\nDynamoDB writes by table (the SDK's requests, counted by an interceptor), and the \
         global secondary indexes each write also updates (every index projects all attributes):\n"
    );
    let _ = writeln!(
        o,
        "| table | indexes | writes per POST /v1/messages | writes per status callback | index write units per message |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|");
    for (table, k) in &calls.gsis {
        let s = calls.send_writes_by_table.get(table).copied().unwrap_or(0) as f64 / n;
        let c = calls
            .callback_writes_by_table
            .get(table)
            .copied()
            .unwrap_or(0) as f64
            / (2.0 * n);
        let _ = writeln!(
            o,
            "| {table} | {k} | {s:.3} | {c:.3} | {:.3} |",
            (s + 2.0 * c) * *k as f64
        );
    }
    let _ = writeln!(
        o,
        "\nPrices (us-east-1, on demand, as of {}): HTTP API $1.00 per million requests; Lambda \
         arm64 $0.20 per million requests and $0.0000133334 per GB-second; SQS $0.40 per million \
         requests; DynamoDB on-demand $0.625 per million write request units and $0.125 per million \
         read request units; KMS $0.03 per 10,000 requests; Secrets Manager $0.05 per 10,000 API \
         calls. Free tiers ignored.\n",
        US_EAST_1.as_of
    );
    let _ = writeln!(
        o,
        "Assumptions: every DynamoDB write is 1 WRU (items under 1 KB; a conditional write costs \
         the same, failed or not; no transactions are used) and every read 1 RRU (strongly \
         consistent, under 4 KB); each write also costs 1 WRU in each index of its table (a write that \
         moves an item's index key, such as a status change in `by_status`, costs one more there: \
         not counted, so DynamoDB is if anything understated). CloudWatch Logs are not counted. \
         Billed duration = measured compute (section 3 p50 for Herald; the \
         emulator's warm p50 for Node) + the time spent waiting on the network, the same for both \
         languages: {} ms per DynamoDB call, {} ms per SQS call, {} ms per KMS call, {} ms per \
         Secrets Manager call, {} ms for Twilio's `Messages.json`; rounded up to the millisecond. \
         1% of invocations are cold starts, billed their init time. Memory configured: the larger of \
         128 MB and 1.5 × peak RSS (Herald: {:.0} MB, as in infra/template.yaml; Node: {}). The \
         baseline makes the same AWS calls as Herald (same design): only Lambda time differs.\n",
        WAITS.dynamodb_ms,
        WAITS.sqs_ms,
        WAITS.kms_ms,
        WAITS.secrets_manager_ms,
        WAITS.twilio_create_ms,
        herald_in.memory_mb,
        base_in
            .as_ref()
            .map_or("n/a".into(), |b| format!("{:.0} MB", b.memory_mb))
    );
    bill_table(&mut o, &herald_bill, base_bill.as_ref());
    let _ = writeln!(
        o,
        "\nBilled duration per invocation (Herald): {}.",
        herald_bill
            .billed_ms
            .iter()
            .map(|(k, v)| format!("{k} {v:.0} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        o,
        "\nFloor (the requests that cannot be avoided: 3 × (API Gateway + Lambda request)): \
         **${floor:.2}** per million messages. Herald: **${:.2}** = {:.2}× the floor.\n",
        herald_bill.total,
        herald_bill.total / floor
    );
    let per_message = calls.per_message();
    let writes: f64 = per_message
        .iter()
        .filter(|(k, _)| cost::is_dynamodb_write(k))
        .map(|(_, v)| v)
        .sum();
    let reads: f64 = per_message
        .iter()
        .filter(|(k, _)| cost::is_dynamodb_read(k))
        .map(|(_, v)| v)
        .sum();
    let _ = writeln!(o, "What moves the figure:\n");
    let _ = writeln!(
        o,
        "- **DynamoDB writes per message** ({writes:.2} requests, {:.2} more units in the indexes): \
         each unit is $0.625/M = {:.0}% of the floor; they are {:.0}% of Herald's bill. Reads \
         ({reads:.2} per message) cost $0.125/M each.",
        herald_bill.lines[8].units_per_message,
        0.625 / floor * 100.0,
        (herald_bill.lines[4].usd_per_million + herald_bill.lines[8].usd_per_million)
            / herald_bill.total
            * 100.0
    );
    let _ = writeln!(
        o,
        "- **Caching** the Twilio secret and the KMS data key (as Herald does, within bounds): \
         without it every invocation would add a `GetSecretValue` ($5/M) and a KMS call ($3/M): \
         3 × $8 = $24 per million messages, {:.1}× the floor on its own.",
        24.0 / floor
    );
    let _ = writeln!(
        o,
        "- **Batching** (`POST /v1/messages/batch`, up to 100 messages per request) removes most of \
         the API call's API Gateway and Lambda requests (up to $1.20/M) but adds SQS \
         send/receive/delete per message (about $1.20/M) and a Lambda invocation per SQS batch: \
         roughly even; the two callbacks remain.",
    );
    let _ = writeln!(
        o,
        "- **Lambda duration** is almost all waiting on Twilio and DynamoDB, billed the same for \
         any language at the same memory; the language moves only compute, cold starts and the \
         memory size needed: {}.",
        base_bill
            .as_ref()
            .map_or("baseline unavailable".into(), |b| format!(
                "Lambda GB-seconds ${:.3}/M for Herald vs ${:.3}/M for the Node baseline",
                herald_bill.lines[2].usd_per_million, b.lines[2].usd_per_million
            ))
    );
    let _ = writeln!(
        o,
        "- **Against the baseline**, the bill is nearly all requests and DynamoDB, which do not \
         depend on the language; the Node figure is, if anything, low: its compute is that of a \
         handler that makes no call (a lower bound), and 128 MB is the least it could be given \
         (its peak RSS leaves little headroom; at 256 MB its GB-seconds double). Where the \
         language shows is cold starts, memory and the zip, not the bill."
    );
    let _ = writeln!(o, "\nReproduce: {}\n", cmd(&run, "aws_calls"));

    // ---- the sweeper ----
    sweep_section(
        &mut o,
        load(dir, "sweep.json").as_ref(),
        &cmd(&run, "sweep"),
    );

    // ---- misses ----
    let _ = writeln!(o, "## Missed targets\n");
    if failed.is_empty() {
        let _ = writeln!(o, "None.\n");
    } else {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for f in &failed {
            let why = why_missed(f, &lambda, &inproc, &herald_bill, base_bill.as_ref());
            match groups.iter_mut().find(|(w, _)| *w == why) {
                Some((_, names)) => names.push(f.clone()),
                None => groups.push((why, vec![f.clone()])),
            }
        }
        for (why, names) in groups {
            let _ = writeln!(o, "- **{}**: {why}", names.join("; "));
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(
        o,
        "This run: {} starts per program, {} invocations per memory run. Full run: \
         `scripts/bench.sh` (release builds, 20 starts, 1,000 invocations; writes BENCHMARKS.md). \
         CI: `scripts/bench.sh --quick` (debug builds, tiny N, results in target/bench/quick/; \
         fails only when the harness breaks).",
        lambda.starts, lambda.invocations
    );
    Ok(o)
}

/// Section 7: the sweeper under a backlog (`herald-bench sweep`), or why it is not there.
pub fn sweep_section(o: &mut String, r: Option<&SweepReport>, reproduce: &str) {
    let _ = writeln!(o, "## 7. Sweeper under a backlog\n");
    let Some(r) = r else {
        let _ = writeln!(o, "Not measured in this run (no sweep.json).\n");
        return;
    };
    let _ = writeln!(
        o,
        "`herald-bench sweep`: {} messages that Twilio leaves at `sent` forever (their final \
         callback never comes) are sent through `send_sms::handle` into the embedded SQLite store \
         (in memory) with the Twilio simulator on loopback, and their `sent` status applied; then \
         {} recent messages whose final callback was lost (Twilio delivered them; Herald shows \
         half `sent`, half `queued`). With the injected clock past the grace, the sweeper runs as \
         retry-processor's scheduled trigger does (`herald::delivery::sweep`, grace \
         `SWEEP_GRACE_MS`, limit {} per status: the newest {} plus the next {} of an oldest-first \
         walk), one sweep after another, until every stuck message was asked about. The \
         guarantees are checked, not just reported (the run fails otherwise): the first sweep \
         makes every recent message final, and every stuck one is asked about within \
         ceil({} / {}) = {} sweeps.\n",
        r.stuck,
        r.fresh,
        r.limit,
        r.limit - r.walk_share,
        r.walk_share,
        r.stuck,
        r.walk_share,
        r.cover_bound
    );
    let _ = writeln!(o, "| measure | value |\n|---|---:|");
    let rows: [(&str, String); 10] = [
        ("backlog (stuck at `sent`)", r.stuck.to_string()),
        ("sweep limit per status", r.limit.to_string()),
        (
            "seeding: send-sms, 16 in flight (s)",
            format!("{:.1}", r.seed_send_secs),
        ),
        (
            "seeding: simulator moves them, callbacks lost (s)",
            format!("{:.1}", r.seed_twilio_secs),
        ),
        (
            "seeding: `sent` applied in the store (s)",
            format!("{:.1}", r.seed_sent_secs),
        ),
        (
            "sweep wall time p50 / p95 / max (ms)",
            format!(
                "{:.1} / {:.1} / {:.1}",
                r.sweep_ms.p50, r.sweep_p95_ms, r.sweep_ms.max
            ),
        ),
        (
            "Twilio GETs per sweep p50 / max",
            format!("{:.0} / {:.0}", r.gets_per_sweep.p50, r.gets_per_sweep.max),
        ),
        (
            "sweeps until every recent message was final (promise: 1)",
            r.sweeps_to_fresh_final.to_string(),
        ),
        (
            "sweeps until every stuck message was asked about",
            format!("{} (bound {})", r.sweeps_to_cover_backlog, r.cover_bound),
        ),
        (
            "stuck messages still `sent` afterwards",
            format!("{} of {}", r.stuck_still_sent, r.stuck),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(o, "| {k} | {v} |");
    }
    let _ = writeln!(
        o,
        "\nWhat it means: a backlog of stuck records costs each sweep a bounded amount of work \
         (about `limit` Twilio GETs per in-flight status that has records, whatever the backlog) \
         and never delays a recent record: it is final after the next sweep. The backlog itself \
         is revisited in about ceil(backlog / (limit / 2)) sweeps (fewer by the newest share, \
         which the walk's last page overlaps). The sweep time is nearly all those GETs, \
         `SWEEP_CONCURRENCY` (16) at a time over loopback to the simulator (which finds a \
         message by a linear scan, so part of the time grows with the backlog in the simulator, \
         not in Herald); against Twilio each GET is a network round trip instead: at 200 ms, 500 \
         GETs 16 at a time take about 6 s per status, well within retry-processor's 120 s timeout. The store is SQLite in memory (its index \
         `messages_by_status_id`); DynamoDB reads per sweep are not counted here.\n"
    );
    if !reproduce.is_empty() {
        let _ = writeln!(o, "Reproduce: {reproduce}\n");
    }
}

/// A path as shown in BENCHMARKS.md: relative to the working directory (the repository) when
/// under it.
fn shown(path: &str) -> String {
    let cwd = std::env::current_dir()
        .map(|d| format!("{}/", d.display()))
        .unwrap_or_default();
    path.strip_prefix(&cwd).unwrap_or(path).to_owned()
}

fn is_variant(f: &Measured) -> bool {
    f.name.contains(' ')
}

fn why_missed(
    target: &str,
    lambda: &LambdaReport,
    inproc: &InprocessReport,
    herald: &Bill,
    baseline: Option<&Bill>,
) -> String {
    let init = |name: &str| {
        lambda
            .functions
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.init_ms.p50)
    };
    let variant = lambda.functions.iter().find(|f| is_variant(f));
    let node = lambda.baseline.as_ref().map(|b| b.init_ms.p50);
    let debug = lambda.bin_dir.ends_with("debug");
    if target.contains("cost ≤") {
        let floor = cost::floor(&US_EAST_1);
        let writes = herald.lines[4].usd_per_million + herald.lines[8].usd_per_million;
        let room = 1.25 * floor - floor - herald.lines[2].usd_per_million;
        let minimal = floor + herald.lines[2].usd_per_million + 3.0 * 0.625;
        format!(
            "the floor counts only the API Gateway and Lambda requests, but each message also pays \
             {:.2} DynamoDB write units, {:.2} of them in indexes (${writes:.2}/M, {:.0}% of the bill; see the \
             tables: the API call writes the messages, events and state (rate limits) tables, each \
             callback an event (its dedupe) and the message's status, and the messages and events \
             tables carry two and one indexes). 1.25× the floor leaves ${room:.2}/M beyond the \
             requests and Lambda time, less than one write per message at $0.625/M: even a design \
             with only the three writes a tracked message cannot avoid (the record and its two \
             status changes) costs ${minimal:.2}/M = {:.2}× the floor. So the target cannot be met \
             with DynamoDB on-demand as the store; each write removed saves $0.625/M (fold the \
             callback's event record into its conditional status update: −$1.25/M plus its index \
             write; one rate-limit item per request instead of one per window; `KEYS_ONLY` \
             projections, so that updates which do not move an index key do not write the index), and provisioned capacity with \
             auto-scaling cuts the write price several-fold at steady load.",
            herald.lines[4].units_per_message + herald.lines[8].units_per_message,
            herald.lines[8].units_per_message,
            writes / herald.total * 100.0,
            minimal / floor
        )
    } else if target.contains("below the Node") {
        format!(
            "with the same AWS calls, only Lambda GB-seconds differ (${:.3}/M vs ${:.3}/M): both \
             fit Lambda's smallest memory size, and the billed time is almost all waiting on \
             Twilio and DynamoDB{}.",
            herald.lines[2].usd_per_million,
            baseline.map_or(0.0, |b| b.lines[2].usd_per_million),
            if debug {
                "; this run used debug builds, whose compute is many times the release build's"
            } else {
                ""
            }
        )
    } else if target.contains("init") && !debug {
        let with_number = init("send-sms").unwrap_or(f64::NAN);
        let without = variant.map_or(f64::NAN, |v| v.init_ms.p50);
        let rotation = init("credential-rotation").unwrap_or(f64::NAN);
        let ratio_without = node.map_or(f64::NAN, |n| n / without);
        format!(
            "start-up validates `TWILIO_FROM_NUMBER` with the phonenumber crate, which loads its \
             whole metadata database (every country's patterns) on first use: that is nearly all \
             of the init. Measured in this run: send-sms starts in {with_number:.1} ms with a \
             number as sender, {without:.1} ms with `TWILIO_MESSAGING_SERVICE_SID` (no number \
             parsed at start; {ratio_without:.0}× faster than Node), and credential-rotation, \
             which parses no number, in {rotation:.1} ms. The load then moves to the first request \
             (the recipient is parsed), as the Messaging Service row's first answer shows. To \
             close it: check the sender's E.164 syntax only at start-up and warm the database on a \
             thread spawned at exec, so that it overlaps the wait for the first event; or generate \
             the metadata of the allowed countries only (ALLOWED_COUNTRIES) at build time."
        )
    } else if target.contains("init") {
        "a debug build (quick mode): the figures that count come from the release build of the \
         full run."
            .into()
    } else if target.contains("RSS") {
        if debug {
            "a debug build (quick mode): release binaries are much smaller in memory.".into()
        } else {
            "the peak comes from the AWS SDK's and rustls' buffers and the HTTP connection pools; \
             fewer pooled connections or MALLOC_ARENA_MAX=2 would lower it."
                .into()
        }
    } else if target.contains("signature") {
        "both check the URL as given and with its port added or removed, as the SDKs do: two \
         HMAC-SHA1 computations over the URL and the sorted parameters, both with the CPU's SHA \
         instructions here (Node through OpenSSL, Rust's sha1 through SHA-NI). What is left in \
         Herald's figure is the preparation around them: the parameters are sorted through a \
         map of vectors and each URL variant is a new string, a few dozen small allocations per \
         check. To close it: sort a vector of borrowed pairs once and feed the MAC the URL and \
         the pairs directly, without building the strings (a change to \
         shared/src/twilio/signature.rs, to be held to the SDK agreement test like the rest)."
            .into()
    } else if target.contains("webhook") {
        format!(
            "p50 is {:.3} ms, p99 {:.3} ms; the tail was not broken down in this run. Suspects: \
             the embedded SQLite store (one connection behind a mutex, so writes queue) and the \
             other builds sharing the 2 cores during the run{}; a rerun on an idle machine, or a \
             profile of the slowest 1%, would tell them apart.",
            inproc.webhook.sequential_ms.p50,
            inproc.webhook.sequential_ms.p99,
            if debug {
                "; and this was a debug build"
            } else {
                ""
            }
        )
    } else if target.contains("SMS") {
        format!(
            "one request at a time takes {:.3} ms at p50, but the local stack serialises: the \
             embedded SQLite store is one connection behind a mutex, and the Twilio simulator (an \
             HTTP server in the same process) shares the same 2 cores, as did other builds during \
             the run{}. On AWS, DynamoDB and Twilio take that load instead and each Lambda \
             instance serves one request at a time.",
            inproc.send_sms.sequential_ms.p50,
            if debug {
                "; and this was a debug build"
            } else {
                ""
            }
        )
    } else if target.contains("zip") {
        "the functions that send (send-sms, place-call) link the most: all four AWS SDK clients \
         (through the shared crate's adapters), the templates (minijinja) and the phone-number \
         metadata of every country; credential-rotation, with Secrets Manager only and no phone \
         numbers, is the smallest (see the table). Candidates, each to be measured against the \
         cold start: `opt-level = \"z\"` for the function binaries, the metadata of the allowed \
         countries only, and leaving out the SDK clients a function never calls."
            .into()
    } else {
        "see the figures above.".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweeper_section_shows_the_figures_or_says_it_was_not_measured() {
        let r: SweepReport = serde_json::from_value(serde_json::json!({
            "stuck": 500, "fresh": 6, "limit": 50, "walk_share": 25,
            "seed_send_secs": 1.4, "seed_twilio_secs": 0.1, "seed_sent_secs": 0.2,
            "sweeps": 19,
            "sweep_ms": {"n": 19, "p50": 52.5, "p99": 59.8, "min": 48.4, "max": 59.8},
            "sweep_p95_ms": 59.8,
            "gets_per_sweep": {"n": 19, "p50": 50.0, "p99": 53.0, "min": 50.0, "max": 53.0},
            "sweeps_to_fresh_final": 1, "sweeps_to_cover_backlog": 19, "cover_bound": 20,
            "stuck_still_sent": 500
        }))
        .expect("a sweep result");
        let mut o = String::new();
        sweep_section(&mut o, Some(&r), "`herald-bench sweep`");
        assert!(o.starts_with("## 7. Sweeper under a backlog"));
        assert!(o.contains("| 52.5 / 59.8 / 59.8 |"), "{o}");
        assert!(o.contains("| 19 (bound 20) |"), "{o}");
        assert!(o.contains("ceil(500 / 25) = 20 sweeps"), "{o}");
        let mut o = String::new();
        sweep_section(&mut o, None, "");
        assert!(o.contains("Not measured"));
    }
}

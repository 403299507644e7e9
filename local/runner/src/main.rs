//! `herald`: runs Herald on one machine. `herald demo` shows the whole system at work;
//! `herald up` serves the API and the webhooks on a loopback port with the Twilio simulator;
//! `herald soak` runs it at volume under faults; `herald dlq` inspects and replays dead letters.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use herald_runner::{demo, demo_calls, rotation, soak, stack, webhook_cli};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald: SMS and voice alerts through Twilio, run locally"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole system in-process and show what happened to each message.
    Demo {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Serve the API and the webhooks on a loopback port, with the Twilio simulator.
    Up {
        /// Port of the local API Gateway (0: any free port).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Where the database, master key and local secret live.
        #[arg(long, default_value = ".herald")]
        data_dir: PathBuf,
    },
    /// Send alerts shaped like real alerting (repeats, batches, voice alerts) through a local
    /// stack under faults and whole-process kills; exit 1 unless no record is lost, doubled,
    /// adopted from another or ends wrongly.
    Soak {
        /// Messages to send.
        #[arg(long, default_value_t = 2000)]
        messages: usize,
        /// Voice alerts to place.
        #[arg(long, default_value_t = 200)]
        calls: usize,
        /// Whole-process kills (SIGKILL, then a restart on the same data folder).
        #[arg(long, default_value_t = 5)]
        kills: usize,
        /// Control run: resolve unknown outcomes by the old rule (To and text only); the soak
        /// must then fail.
        #[arg(long)]
        control_legacy_match: bool,
        /// Overall fault rate, 0 to 1.
        #[arg(long, default_value_t = 0.2)]
        fault_rate: f64,
        /// Seed of the outcomes and faults.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Give up waiting for final states after this many seconds.
        #[arg(long, default_value_t = 600)]
        deadline_secs: u64,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The stack under `herald soak`, as a process of its own that the soak kills.
    #[command(hide = true)]
    SoakNode(soak::NodeOptions),
    /// Inspect or replay the dead-letter queues of a local stack.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Rotate the local stack's Twilio credentials (the API key, or with --auth-token the auth
    /// token) through the credential-rotation function's four steps.
    Rotate {
        /// Rotate the auth token (secondary token, then promotion) instead of the API key.
        #[arg(long)]
        auth_token: bool,
        /// Where the local stack keeps its data.
        #[arg(long, default_value = ".herald")]
        data_dir: PathBuf,
    },
    /// Send a stream of messages while rotating the API key and then the auth token; exit 1
    /// unless no send failed, no genuine callback was refused and the old credentials are dead.
    RotationDrill {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Twilio webhook tools.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// Check an X-Twilio-Signature and show every URL variant and string signed (phone numbers
    /// and Body masked); exit 0 when genuine, 1 when not. The auth token comes from
    /// TWILIO_AUTH_TOKEN or --auth-token-stdin. Without --signature, print the signature of
    /// each variant.
    Verify(webhook_cli::VerifyArgs),
}

#[derive(Subcommand)]
enum DlqAction {
    /// List the jobs in a dead-letter queue.
    List {
        /// Which queue.
        #[arg(long, value_enum, default_value_t = QueueName::Retry)]
        queue: QueueName,
        /// Where the local stack keeps its data.
        #[arg(long, default_value = ".herald")]
        data_dir: PathBuf,
    },
    /// Move every job of a dead-letter queue back to its queue.
    Redrive {
        /// Which queue.
        #[arg(long, value_enum, default_value_t = QueueName::Retry)]
        queue: QueueName,
        /// Where the local stack keeps its data.
        #[arg(long, default_value = ".herald")]
        data_dir: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum QueueName {
    /// The send queue (bulk sends).
    Send,
    /// The retry queue.
    Retry,
}

fn quiet_logs() {
    if std::env::var_os("HERALD_LOG").is_none() {
        // These commands print their own output; logs only when asked for with HERALD_LOG.
        herald::telemetry::init_with_writer(std::io::sink);
    } else {
        herald::telemetry::init();
    }
    herald::telemetry::set_metrics_output(herald::telemetry::MetricsOutput::Off);
}

async fn demo_command(json: bool) -> ExitCode {
    quiet_logs();
    let dir = std::env::temp_dir().join(format!("herald-demo-{}", std::process::id()));
    let result = demo::run(&dir).await;
    // Voice alerts: their own stack, in a folder of their own.
    let calls = match result {
        Ok(_) => demo_calls::run(&dir.join("calls")).await,
        Err(_) => Ok(Vec::new()),
    };
    let _ = std::fs::remove_dir_all(&dir);
    match result.and_then(|rows| Ok((rows, calls?))) {
        Ok((rows, calls)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "messages": rows, "calls": calls })
                );
            } else {
                print!("{}", demo::table(&rows));
                print!("\n{}", demo_calls::table(&calls));
            }
            let bad = rows.iter().filter(|r| !r.as_expected).count()
                + calls.iter().filter(|c| !c.as_expected).count();
            if bad == 0 {
                if !json {
                    println!(
                        "\nall {} messages and {} calls ended as the simulator was told",
                        rows.len(),
                        calls.len()
                    );
                }
                ExitCode::SUCCESS
            } else {
                eprintln!("{bad} message(s) or call(s) did not end as the simulator was told");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn up_command(port: u16, data_dir: PathBuf) -> ExitCode {
    herald::telemetry::init();
    herald::panics::install_hook("herald-up");
    herald::telemetry::set_metrics_output(herald::telemetry::MetricsOutput::Stderr);
    let stack = match stack::LocalStack::start(&stack::StackOptions {
        port,
        ..stack::StackOptions::new(data_dir.clone())
    })
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("herald up failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("Herald is up.");
    println!("  API (local API Gateway): {}", stack.api_url);
    println!("  Twilio simulator:        {}", stack.sim.base_url());
    println!("  API key (bearer):        {}", stack.api_key);
    println!(
        "  data:                    {}",
        data_dir.join("herald.db").display()
    );
    println!();
    println!("Try:");
    println!(
        "  curl -s -X POST {}/v1/messages -H \"authorization: Bearer {}\" \\",
        stack.api_url, stack.api_key
    );
    println!("       -H 'content-type: application/json' -H \"idempotency-key: $(uuidgen)\" \\");
    println!("       -d '{{\"to\":\"+14155552671\",\"body\":\"Hello from Herald\"}}'");
    println!(
        "  curl -s {}/v1/messages/<id> -H \"authorization: Bearer {}\"",
        stack.api_url, stack.api_key
    );
    println!("  curl -s {}/_sim/callbacks", stack.sim.base_url());
    println!("Text STOP to Herald (START opts back in, HELP answers the help text):");
    println!(
        "  curl -s -X POST {}/_sim/inbound -H 'content-type: application/json' \\",
        stack.sim.base_url()
    );
    println!(
        "       -d '{{\"from\":\"+14155552671\",\"to\":\"{}\",\"body\":\"STOP\",\"url\":\"{}{}\"}}'",
        stack::LOCAL_FROM_NUMBER,
        stack.api_url,
        webhook_receiver::INBOUND_SMS_PATH
    );
    let _ = tokio::signal::ctrl_c().await;
    stack.shutdown().await;
    ExitCode::SUCCESS
}

/// The end of a drill: its report printed (`--json`: as JSON, else by `human`); success when
/// the report is `ok`.
fn report_exit<R: serde::Serialize>(
    what: &str,
    result: Result<R, Box<dyn std::error::Error + Send + Sync>>,
    json: bool,
    ok: fn(&R) -> bool,
    human: impl FnOnce(&R),
) -> ExitCode {
    match result {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("report serialises")
                );
            } else {
                human(&report);
            }
            if ok(&report) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{what} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn soak_command(opts: soak::SoakOptions, json: bool) -> ExitCode {
    quiet_logs();
    let dir = std::env::temp_dir().join(format!("herald-soak-{}", std::process::id()));
    let result = soak::run(&dir, &opts).await;
    let _ = std::fs::remove_dir_all(&dir);
    report_exit("soak", result, json, soak::SoakReport::ok, |report| {
        for (name, c) in [("messages", &report.messages), ("calls", &report.calls)] {
            println!(
                "{name:<9} accepted {}  final {}  lost {}  duplicated {}  adopted {}  mismatched {}  ambiguous resends {}  retries {}  twilio resources {}",
                c.accepted,
                c.final_,
                c.lost,
                c.duplicated,
                c.adopted,
                c.mismatched,
                c.ambiguous_resends,
                c.retries,
                c.twilio_resources
            );
        }
        println!(
            "rejected {}  kills {}  client retries {}  dead letters {}  {:.1}s",
            report.rejected, report.kills, report.client_retries, report.dlq, report.seconds
        );
    })
}

async fn dlq_command(action: DlqAction) -> ExitCode {
    let (queue, data_dir, redrive) = match action {
        DlqAction::List { queue, data_dir } => (queue, data_dir, false),
        DlqAction::Redrive { queue, data_dir } => (queue, data_dir, true),
    };
    let name = match queue {
        QueueName::Send => "send",
        QueueName::Retry => "retry",
    };
    let db = data_dir.join("herald.db");
    if !db.exists() {
        eprintln!("no local stack data in {}", data_dir.display());
        return ExitCode::from(2);
    }
    let clock: Arc<dyn herald::ports::Clock> = Arc::new(herald::ports::SystemClock);
    let q = match herald::adapters::embedded::SqliteQueue::open(
        &db,
        name,
        stack::MAX_RECEIVE_COUNT,
        clock,
    ) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("cannot open the {name} queue: {e}");
            return ExitCode::FAILURE;
        }
    };
    use herald::ports::Queue;
    if redrive {
        match q.redrive().await {
            Ok(n) => {
                println!(
                    "moved {n} job(s) from the {name} dead-letter queue back to the {name} queue"
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("redrive failed: {e}");
                ExitCode::FAILURE
            }
        }
    } else {
        let total = match q.depth().await {
            Ok(d) => d.dead,
            Err(e) => {
                eprintln!("cannot read the dead-letter queue: {e}");
                return ExitCode::FAILURE;
            }
        };
        match q.dead_letters(10).await {
            Ok(jobs) => {
                println!("{total} job(s) in the {name} dead-letter queue");
                for j in &jobs {
                    println!(
                        "  {}  received {}x  sent at {}  {}",
                        j.message_id,
                        j.receive_count,
                        herald::domain::rfc3339(j.sent_at_ms),
                        j.body
                    );
                }
                if total > jobs.len() as u64 {
                    println!("  … and {} more", total - jobs.len() as u64);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot read the dead-letter queue: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

async fn rotate_command(auth_token: bool, data_dir: PathBuf) -> ExitCode {
    quiet_logs();
    // The simulator keeps no state across runs: a fresh seed keeps its new key SIDs fresh.
    let opts = stack::StackOptions {
        seed: rand::random(),
        ..stack::StackOptions::new(data_dir)
    };
    let stack = match stack::LocalStack::start(&opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("herald rotate failed to start the local stack: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mode = if auth_token {
        credential_rotation::RotationMode::AuthToken
    } else {
        credential_rotation::RotationMode::ApiKey
    };
    let result = rotation::rotate(&stack, mode).await;
    stack.shutdown().await;
    match result {
        Ok(r) => {
            println!(
                "rotated the {}: version {} is AWSCURRENT (API key {})",
                r.mode, r.version, r.api_key_sid
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rotation failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn rotation_drill_command(json: bool) -> ExitCode {
    quiet_logs();
    let dir = std::env::temp_dir().join(format!("herald-drill-{}", std::process::id()));
    let result = rotation::drill(&dir, &rotation::DrillOptions::default()).await;
    let _ = std::fs::remove_dir_all(&dir);
    report_exit(
        "rotation drill",
        result,
        json,
        rotation::DrillReport::ok,
        |report| {
            println!(
                "rotations {}  sent {}  failed sends {}  rejected genuine callbacks {}  old key revoked {}  old token rejected after grace {}",
                report.rotations,
                report.sent,
                report.failed_sends,
                report.rejected_genuine_callbacks,
                report.old_key_revoked,
                report.old_token_rejected_after_grace
            );
        },
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Demo { json } => demo_command(json).await,
        Command::Up { port, data_dir } => up_command(port, data_dir).await,
        Command::Soak {
            messages,
            calls,
            kills,
            control_legacy_match,
            fault_rate,
            seed,
            deadline_secs,
            json,
        } => {
            let exe = match std::env::current_exe() {
                Ok(exe) => exe,
                Err(e) => {
                    eprintln!("soak failed: cannot find the herald binary: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = soak::SoakOptions {
                messages,
                calls,
                kills,
                fault_rate,
                seed,
                deadline: std::time::Duration::from_secs(deadline_secs),
                progress: !json,
                legacy_match: control_legacy_match,
                exe,
            };
            soak_command(opts, json).await
        }
        Command::SoakNode(opts) => {
            // Warnings and errors go to the soak's node log (its standard error).
            if std::env::var_os("HERALD_LOG").is_none() {
                herald::telemetry::init_with_level(std::io::stderr, "warn");
            } else {
                herald::telemetry::init();
            }
            herald::telemetry::set_metrics_output(herald::telemetry::MetricsOutput::Off);
            match soak::node(&opts).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("soak node failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Dlq { action } => dlq_command(action).await,
        Command::Rotate {
            auth_token,
            data_dir,
        } => rotate_command(auth_token, data_dir).await,
        Command::RotationDrill { json } => rotation_drill_command(json).await,
        Command::Webhook {
            command: WebhookCommand::Verify(args),
        } => webhook_cli::run(&args),
    }
}

//! `herald`: runs Herald on one machine. `herald demo` shows the whole system at work;
//! `herald up` serves the API and the webhooks on a loopback port with the Twilio simulator.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use herald_runner::{demo, demo_calls, stack};

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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { json } => {
            herald::telemetry::set_metrics_output(herald::telemetry::MetricsOutput::Off);
            if std::env::var_os("HERALD_LOG").is_none() {
                // The demo prints its own table; logs only when asked for with HERALD_LOG.
                herald::telemetry::init_with_writer(std::io::sink);
            } else {
                herald::telemetry::init();
            }
            let dir = std::env::temp_dir().join(format!("herald-demo-{}", std::process::id()));
            let result = demo::run(&dir).await;
            // Voice alerts: their own stack, in a folder of their own.
            let calls = match result {
                Ok(_) => demo_calls::run(&dir.join("calls")).await,
                Err(_) => Ok(Vec::new()),
            };
            let _ = std::fs::remove_dir_all(&dir);
            let result = result.and_then(|rows| Ok((rows, calls?)));
            match result {
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
                        eprintln!(
                            "{bad} message(s) or call(s) did not end as the simulator was told"
                        );
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("demo failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Up { port, data_dir } => {
            herald::telemetry::init();
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
            println!(
                "  data:                    {}",
                data_dir.join("herald.db").display()
            );
            println!();
            println!("Try:");
            println!(
                "  curl -s -X POST {}/v1/messages -H 'content-type: application/json' \\",
                stack.api_url
            );
            println!("       -d '{{\"to\":\"+14155552671\",\"body\":\"Hello from Herald\"}}'");
            println!("  curl -s {}/v1/messages/<id>", stack.api_url);
            println!("  curl -s {}/_sim/callbacks", stack.sim.base_url());
            let _ = tokio::signal::ctrl_c().await;
            stack.shutdown().await;
            ExitCode::SUCCESS
        }
    }
}

//! The `twilio-sim` binary: runs the simulator until killed.
//!
//! The first line on stdout is exactly `twilio-sim listening on http://127.0.0.1:PORT`.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::Parser;
use twilio_sim::{CallbackMode, Faults, SimConfig, Simulator};

/// A Twilio REST API simulator with signed status callbacks, magic numbers and faults.
#[derive(Debug, Parser)]
#[command(name = "twilio-sim", version)]
struct Args {
    /// Port on 127.0.0.1 (0: the OS picks one).
    #[arg(long, default_value_t = 0, env = "TWILIO_SIM_PORT")]
    port: u16,
    /// Account SID served (AC + 32 hex).
    #[arg(
        long,
        default_value = "AC00000000000000000000000000000000",
        env = "TWILIO_SIM_ACCOUNT_SID"
    )]
    account_sid: String,
    /// Auth token: HTTP Basic password for the account SID, and the callback signing key.
    #[arg(long, default_value = "sim-auth-token", env = "TWILIO_SIM_AUTH_TOKEN")]
    auth_token: String,
    /// An API key accepted for HTTP Basic, as SID:SECRET (repeatable).
    #[arg(long = "api-key", value_name = "SID:SECRET", value_parser = parse_key)]
    api_keys: Vec<(String, String)>,
    /// Seed of every random choice (SIDs, faults).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Delay before each status callback, in milliseconds.
    #[arg(long, default_value_t = 0)]
    callback_latency_ms: u64,
    /// Hold callbacks until `POST /_sim/flush` instead of sending them by themselves.
    #[arg(long)]
    manual_callbacks: bool,
    /// Share of REST requests answered 429 (error 20429).
    #[arg(long, default_value_t = 0.0)]
    rate_429: f64,
    /// Retry-After of injected 429 answers, in seconds.
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u64,
    /// Share of REST requests answered 500 (error 20500).
    #[arg(long, default_value_t = 0.0)]
    rate_500: f64,
    /// Share of REST requests whose answer is held for --timeout-ms.
    #[arg(long, default_value_t = 0.0)]
    rate_timeout: f64,
    /// How long held answers are held, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// A held create request still creates the message (the answer is lost).
    #[arg(long)]
    timeout_after_accept: bool,
    /// Share of status callbacks sent twice.
    #[arg(long, default_value_t = 0.0)]
    rate_duplicate_callback: f64,
    /// Share of messages whose final callback comes before `sent`.
    #[arg(long, default_value_t = 0.0)]
    rate_out_of_order: f64,
    /// Send status callbacks as JSON, signed over the URL with `bodySHA256` added.
    #[arg(long)]
    json_callbacks: bool,
    /// Send every webhook whose URL starts with PREFIX to LOCAL instead (the rest of the URL
    /// appended), keeping the original Host header and signing the original URL (repeatable).
    /// E.g. `https://abc.execute-api.us-east-1.amazonaws.com=http://127.0.0.1:8080`.
    #[arg(long = "deliver-to", value_name = "PREFIX=LOCAL", value_parser = parse_deliver_to)]
    deliver_to: Vec<(String, String)>,
}

fn parse_key(s: &str) -> Result<(String, String), String> {
    s.split_once(':')
        .filter(|(sid, secret)| !sid.is_empty() && !secret.is_empty())
        .map(|(sid, secret)| (sid.to_string(), secret.to_string()))
        .ok_or_else(|| format!("expected SID:SECRET, got {s:?}"))
}

fn parse_deliver_to(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(prefix, local)| {
            prefix.contains("://")
                && (local.starts_with("http://") || local.starts_with("https://"))
        })
        .map(|(prefix, local)| (prefix.to_string(), local.to_string()))
        .ok_or_else(|| format!("expected PREFIX=http://HOST:PORT, got {s:?}"))
}

fn rate(name: &str, value: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("--{name} must be between 0 and 1, got {value}"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut config = SimConfig::new(args.account_sid, args.auth_token);
    config.api_keys = args.api_keys;
    config.seed = args.seed;
    config.callback_latency_ms = args.callback_latency_ms;
    config.json_callbacks = args.json_callbacks;
    config.deliver_to = args.deliver_to;
    if args.manual_callbacks {
        config.callback_mode = CallbackMode::Manual;
    }
    config.faults = Faults {
        rate_429: rate("rate-429", args.rate_429)?,
        retry_after_secs: args.retry_after_secs,
        rate_500: rate("rate-500", args.rate_500)?,
        rate_timeout: rate("rate-timeout", args.rate_timeout)?,
        timeout_ms: args.timeout_ms,
        timeout_after_accept: args.timeout_after_accept,
        rate_duplicate_callback: rate("rate-duplicate-callback", args.rate_duplicate_callback)?,
        rate_out_of_order: rate("rate-out-of-order", args.rate_out_of_order)?,
    };
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.port);
    let sim = Simulator::start_on(config, addr).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "twilio-sim listening on {}", sim.base_url())?;
        out.flush()?;
    }
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}

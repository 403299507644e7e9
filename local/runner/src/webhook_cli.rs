//! `herald webhook verify`: checks an `X-Twilio-Signature` the way the webhook receiver does and
//! shows why it fails: every URL variant tried, and the exact string signed for each (never the
//! auth token). Without `--signature` it prints the signature of each variant, to build test
//! requests.

use std::path::PathBuf;
use std::process::ExitCode;

use herald::twilio::signature::{self, Payload};

/// Arguments of `herald webhook verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The auth token that signs webhooks (or TWILIO_AUTH_TOKEN).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: String,
    /// The full URL Twilio requested (with its query string; a #fragment is ignored).
    #[arg(long)]
    pub url: String,
    /// The X-Twilio-Signature header to check; without it, signatures are printed.
    #[arg(long)]
    pub signature: Option<String>,
    /// A form parameter, NAME=VALUE (repeat for more; repeated names are allowed).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// The raw request body: form-encoded parameters, or a JSON body.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// The request's Content-Type; `application/json` checks the body against `bodySHA256`.
    #[arg(long, default_value = "application/x-www-form-urlencoded")]
    pub content_type: String,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

/// Runs the command: exit 0 when genuine (or when only printing signatures), 1 when not, 2 on a
/// usage error.
pub fn run(args: &VerifyArgs) -> ExitCode {
    let body = match &args.body_file {
        Some(path) => match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => Vec::new(),
    };
    let json = signature::is_json_content_type(&args.content_type);
    if json && !args.params.is_empty() {
        eprintln!("error: --param goes with form requests, not with a JSON body");
        return ExitCode::from(2);
    }
    let mut params = if json {
        Vec::new()
    } else {
        signature::parse_form(&body)
    };
    params.extend(args.params.iter().cloned());
    let payload = if json {
        Payload::Json(&body)
    } else {
        Payload::Form(&params)
    };
    let e = signature::explain(
        &args.auth_token,
        &args.url,
        payload,
        args.signature.as_deref(),
    );
    println!(
        "Request: {} {}",
        if json { "JSON" } else { "form" },
        args.url
    );
    if !json {
        println!("  {} form parameter(s)", params.len());
    }
    if let Some((claimed, actual)) = &e.body_hash {
        match claimed {
            Some(c) if c == actual => {
                println!("  bodySHA256 in the URL matches the body ({actual})")
            }
            Some(c) => println!("  bodySHA256 in the URL is {c}, but the body hashes to {actual}"),
            None => println!("  the URL has no bodySHA256 (the body hashes to {actual})"),
        }
    }
    println!("URL variants tried (the auth token is never shown):");
    for a in &e.attempts {
        println!("  {}:", a.variant.as_str());
        println!("    signed string: {}", a.signed);
        println!("    signature:     {}", a.signature);
        if args.signature.is_some() {
            println!(
                "    matches:       {}",
                if a.matches { "yes" } else { "no" }
            );
        }
    }
    let Some(given) = &args.signature else {
        return ExitCode::SUCCESS;
    };
    match e.verdict {
        Ok(variant) => {
            println!("genuine: matched the URL {}", variant.as_str());
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("NOT genuine: {why} (signature given: {given})");
            ExitCode::from(1)
        }
    }
}

//! `herald webhook verify`: checks an `X-Twilio-Signature` the way the webhook receiver does and
//! shows why it fails: every URL variant tried, and the string signed for each, with phone
//! numbers and message text masked unless `--show-signed-string` is given. The auth token comes
//! from `TWILIO_AUTH_TOKEN` or standard input, never the command line (where `ps` shows it), and
//! is never printed. Without `--signature` it prints the signature of each variant, to build test
//! requests.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use herald::Secret;
use herald::phone::Masked;
use herald::twilio::signature::{self, Payload};

/// The variable the auth token is read from, unless `--auth-token-stdin` is given.
pub const AUTH_TOKEN_VAR: &str = "TWILIO_AUTH_TOKEN";

/// Twilio webhook parameters that carry a phone number: masked as [`Masked`] does.
const PHONE_PARAMS: [&str; 5] = ["To", "From", "Caller", "Called", "ForwardedFrom"];

/// Twilio webhook parameters that carry message text: shown only as their length.
const TEXT_PARAMS: [&str; 1] = ["Body"];

/// Arguments of `herald webhook verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Read the auth token that signs webhooks from one line of standard input (otherwise it is
    /// read from TWILIO_AUTH_TOKEN).
    #[arg(long)]
    pub auth_token_stdin: bool,
    /// The full URL Twilio requested (with its query string; a #fragment is ignored).
    #[arg(long)]
    pub url: String,
    /// The X-Twilio-Signature header to check; without it, signatures are printed.
    #[arg(long)]
    pub signature: Option<String>,
    /// A form parameter, NAME=VALUE (repeat for more; repeated names are allowed).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// The raw request body: form-encoded parameters, or a JSON body.
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// The request's Content-Type; `application/json` checks the body against `bodySHA256`.
    #[arg(long, default_value = "application/x-www-form-urlencoded")]
    pub content_type: String,
    /// Print the signed strings as signed, with phone numbers (To, From, Caller, Called,
    /// ForwardedFrom) and Body in plaintext; by default they are masked.
    #[arg(long)]
    pub show_signed_string: bool,
}

/// Splits a `--param`. Parsed here rather than by clap, whose error would echo the value (it
/// may be a phone number or a message); this one names only its position.
fn parse_params(params: &[String]) -> Result<Vec<(String, String)>, String> {
    params
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("--param number {} is not NAME=VALUE (no '=')", i + 1))
        })
        .collect()
}

/// The auth token: one line of `stdin` (its line ending trimmed) when `from_stdin`, otherwise
/// `env` (the value of [`AUTH_TOKEN_VAR`]). The error never holds the token.
pub fn auth_token(
    from_stdin: bool,
    env: Option<String>,
    mut stdin: impl BufRead,
) -> Result<Secret<String>, String> {
    let token = if from_stdin {
        let mut line = String::new();
        stdin
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the auth token from standard input: {e}"))?;
        line.truncate(line.trim_end_matches(['\r', '\n']).len());
        if line.is_empty() {
            return Err(
                "--auth-token-stdin: standard input has no auth token on its first line".to_owned(),
            );
        }
        line
    } else {
        match env {
            Some(t) if !t.is_empty() => t,
            Some(_) => return Err(format!("{AUTH_TOKEN_VAR} is empty")),
            None => {
                return Err(format!(
                    "no auth token: set {AUTH_TOKEN_VAR}, or pass --auth-token-stdin and write \
                     it to standard input"
                ));
            }
        }
    };
    Ok(Secret::new(token))
}

/// Writes `value` of parameter `name` as `herald webhook verify` shows it by default: a phone
/// number masked (`+*******2671`), a message body as `<redacted, N chars>`, anything else as is.
pub fn show_masked(out: &mut String, name: &str, value: &str) {
    if PHONE_PARAMS.contains(&name) {
        out.push_str(Masked::of(value).as_str());
    } else if TEXT_PARAMS.contains(&name) {
        out.push_str(&format!("<redacted, {} chars>", value.chars().count()));
    } else {
        out.push_str(value);
    }
}

/// Runs the command: exit 0 when genuine (or when only printing signatures), 1 when not, 2 on a
/// usage error (a missing auth token among them).
pub fn run(args: &VerifyArgs) -> ExitCode {
    let token = match auth_token(
        args.auth_token_stdin,
        std::env::var(AUTH_TOKEN_VAR).ok(),
        std::io::stdin().lock(),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
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
    let extra = match parse_params(&args.params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
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
    params.extend(extra);
    let payload = if json {
        Payload::Json(&body)
    } else {
        Payload::Form(&params)
    };
    let e = signature::explain(
        token.expose(),
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
    if !json && !args.show_signed_string {
        println!(
            "  (phone numbers and Body are masked; --show-signed-string shows them as signed)"
        );
    }
    for a in &e.attempts {
        println!("  {}:", a.variant.as_str());
        if json || args.show_signed_string {
            println!("    signed string: {}", a.signed);
        } else {
            let shown = signature::string_to_show(
                &a.url,
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                show_masked,
            );
            println!("    signed string: {shown}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_one_line_of_stdin_or_the_variable() {
        let t = auth_token(true, Some("env".into()), &b"t0ken\r\nrest\n"[..]).unwrap();
        assert_eq!(t.expose(), "t0ken");
        let t = auth_token(false, Some("env".into()), &b"stdin\n"[..]).unwrap();
        assert_eq!(t.expose(), "env");
        for (stdin, env) in [(true, None), (false, None), (false, Some(String::new()))] {
            let e = auth_token(stdin, env, &b"\n"[..]).unwrap_err();
            assert!(
                e.contains("auth token") || e.contains(AUTH_TOKEN_VAR),
                "{e}"
            );
        }
    }

    #[test]
    fn a_bad_param_is_named_by_position_not_echoed() {
        let e = parse_params(&["a=b".into(), "+14155552671".into()]).unwrap_err();
        assert!(e.contains("--param number 2") && !e.contains("2671"), "{e}");
        assert_eq!(
            parse_params(&["a=b=c".into()]).unwrap(),
            [("a".to_owned(), "b=c".to_owned())]
        );
    }

    #[test]
    fn numbers_and_bodies_are_masked_and_other_values_kept() {
        let show = |k: &str, v: &str| {
            let mut s = String::new();
            show_masked(&mut s, k, v);
            s
        };
        assert_eq!(show("To", "+14155552671"), "+*******2671");
        assert_eq!(show("Caller", "+14155552671"), "+*******2671");
        assert_eq!(show("Body", "h\u{e9}llo"), "<redacted, 5 chars>");
        assert_eq!(show("MessageSid", "SM1"), "SM1");
    }
}

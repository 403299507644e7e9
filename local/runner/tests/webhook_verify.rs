//! `herald webhook verify` as a real process: exit 0 when genuine, 1 when not, 2 on a usage
//! error; it shows every URL variant and string signed, with phone numbers and Body masked
//! unless `--show-signed-string` is given; the auth token comes from TWILIO_AUTH_TOKEN or
//! standard input, never the command line, and is never shown.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use herald::twilio::signature;

const TOKEN: &str = "s3cr3t-auth-t0ken";

/// Runs `herald webhook verify ARGS` with TWILIO_AUTH_TOKEN set to `env` (unset if `None`) and
/// `stdin` written to its standard input.
fn herald_with(env: Option<&str>, stdin: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.args(["webhook", "verify"])
        .args(args)
        .env_remove("TWILIO_AUTH_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = env {
        cmd.env("TWILIO_AUTH_TOKEN", t);
    }
    let mut child = cmd.spawn().expect("run herald");
    // It may exit before reading (a usage error): a broken pipe here is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().expect("run herald")
}

/// Runs it with the auth token in TWILIO_AUTH_TOKEN.
fn herald(args: &[&str]) -> Output {
    herald_with(Some(TOKEN), "", args)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// Distinctive personal data: none of it may be printed unless asked for.
const TO: &str = "+14155550123";
const FROM: &str = "+447700900987";
const CALLER: &str = "+33612345678";
const CALLED: &str = "+61491570156";
const BODY: &str = "Meet at Pier 39 zebra-quokka";
const INBOUND: &str = "https://hooks.example.com/webhooks/twilio/inbound-sms";

fn personal_params() -> Vec<(&'static str, &'static str)> {
    vec![
        ("MessageSid", "SM77"),
        ("To", TO),
        ("From", FROM),
        ("Caller", CALLER),
        ("Called", CALLED),
        ("Body", BODY),
    ]
}

/// `--param NAME=VALUE` for each of `personal_params`.
fn personal_args() -> Vec<String> {
    personal_params()
        .into_iter()
        .flat_map(|(k, v)| ["--param".to_owned(), format!("{k}={v}")])
        .collect()
}

fn args<'a>(head: &[&'a str], tail: &'a [String]) -> Vec<&'a str> {
    head.iter()
        .copied()
        .chain(tail.iter().map(String::as_str))
        .collect()
}

fn assert_no_personal_data(out: &str) {
    for secret in [TO, FROM, CALLER, CALLED, BODY, "zebra-quokka", TOKEN] {
        assert!(!out.contains(secret), "{secret:?} printed:\n{out}");
    }
}

#[test]
fn by_default_numbers_and_bodies_are_masked_and_the_verdict_still_right() {
    let sig = signature::compute(TOKEN, INBOUND, personal_params());
    let tail = personal_args();

    let o = herald(&args(&["--url", INBOUND, "--signature", &sig], &tail));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("genuine: matched the URL as given"), "{out}");
    assert_no_personal_data(&out);
    assert!(
        out.contains(&format!(
            "signed string: {INBOUND}Body<redacted, {} chars>Called+*******0156\
             Caller+*******5678From+********0987MessageSidSM77To+*******0123",
            BODY.chars().count()
        )),
        "{out}"
    );
    assert!(out.contains("--show-signed-string"), "{out}");

    // A tampered body: still NOT genuine, still masked.
    let tampered: Vec<String> = tail.iter().map(|a| a.replace("zebra", "tiger")).collect();
    let o = herald(&args(&["--url", INBOUND, "--signature", &sig], &tampered));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("NOT genuine: signature does not match"),
        "{out}"
    );
    assert_no_personal_data(&out);
    assert!(!out.contains("tiger-quokka"), "{out}");

    // Without --signature: the signatures are printed, the data still masked.
    let o = herald(&args(&["--url", INBOUND], &tail));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains(&format!("signature:     {sig}")), "{out}");
    assert_no_personal_data(&out);

    // The same parameters in a form body file.
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, signature::form_urlencode(personal_params())).unwrap();
    let o = herald(&[
        "--url",
        INBOUND,
        "--signature",
        &sig,
        "--body-file",
        body.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_no_personal_data(&out);
}

#[test]
fn show_signed_string_shows_the_string_as_signed() {
    let sig = signature::compute(TOKEN, INBOUND, personal_params());
    let tail = personal_args();
    let o = herald(&args(
        &[
            "--url",
            INBOUND,
            "--signature",
            &sig,
            "--show-signed-string",
        ],
        &tail,
    ));
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "signed string: {}",
            signature::string_to_sign(INBOUND, personal_params())
        )),
        "{out}"
    );
    for shown in [TO, FROM, CALLER, CALLED, BODY] {
        assert!(out.contains(shown), "{shown:?} not shown:\n{out}");
    }
    assert!(!out.contains(TOKEN), "{out}");
}

#[test]
fn the_token_can_come_from_standard_input() {
    let sig = signature::compute(TOKEN, INBOUND, personal_params());
    let tail = personal_args();
    let head = ["--auth-token-stdin", "--url", INBOUND, "--signature", &sig];
    for line in [
        format!("{TOKEN}\n"),
        format!("{TOKEN}\r\n"),
        TOKEN.to_owned(),
    ] {
        let o = herald_with(None, &line, &args(&head, &tail));
        let out = text(&o);
        assert_eq!(o.status.code(), Some(0), "{line:?}: {out}");
        assert!(out.contains("genuine: matched the URL as given"), "{out}");
        assert_no_personal_data(&out);
    }
    // Standard input wins over the variable when asked for.
    let o = herald_with(Some("wrong"), &format!("{TOKEN}\n"), &args(&head, &tail));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // A wrong token on standard input: not genuine.
    let o = herald_with(None, "wrong\n", &args(&head, &tail));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_no_personal_data(&text(&o));
}

#[test]
fn the_auth_token_flag_is_gone() {
    let o = herald_with(
        None,
        "",
        &["--auth-token", TOKEN, "--url", INBOUND, "--param", "Body=x"],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("--auth-token"), "{out}");
    assert!(!out.contains("genuine"), "{out}");
    assert!(!out.contains(TOKEN), "{out}");
}

#[test]
fn a_missing_token_is_a_clear_usage_error() {
    let o = herald_with(None, "", &["--url", INBOUND, "--param", "Body=x"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("TWILIO_AUTH_TOKEN") && out.contains("--auth-token-stdin"),
        "{out}"
    );
    assert!(!out.contains("URL variants"), "{out}");

    let o = herald_with(Some(""), "", &["--url", INBOUND]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("TWILIO_AUTH_TOKEN is empty"), "{out}");

    // --auth-token-stdin with nothing on standard input; the variable is not used then.
    let o = herald_with(Some(TOKEN), "", &["--auth-token-stdin", "--url", INBOUND]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("standard input has no auth token"), "{out}");
    assert!(!out.contains(TOKEN), "{out}");
}

#[test]
fn a_genuine_form_request_exits_0_and_names_the_variant() {
    let url = "https://hooks.example.com/prod/webhooks/twilio/message-status?mid=m1&a=1";
    let params = [
        ("MessageSid", "SM1"),
        ("MessageStatus", "sent"),
        ("Digits", "2"),
        ("Digits", "1"),
    ];
    let sig = signature::compute(TOKEN, url, params);
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, "MessageSid=SM1&MessageStatus=sent&Digits=2").unwrap();
    let o = herald(&[
        "--url",
        &format!("{url}#rc=3"),
        "--signature",
        &sig,
        "--body-file",
        body.to_str().unwrap(),
        "--param",
        "Digits=1",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("genuine: matched the URL as given"), "{out}");
    assert!(
        out.contains(&format!(
            "signed string: {url}Digits1Digits2MessageSidSM1MessageStatussent"
        )),
        "{out}"
    );
    assert!(!out.contains(TOKEN), "{out}");

    // Signed by Twilio with :443: the variant is named.
    let sig = signature::compute(TOKEN, &url.replace(".com/", ".com:443/"), params);
    let o = herald(&[
        "--url",
        url,
        "--signature",
        &sig,
        "--param",
        "MessageSid=SM1",
        "--param",
        "MessageStatus=sent",
        "--param",
        "Digits=1",
        "--param",
        "Digits=2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("matched the URL default port added"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_tampered_request_exits_1_and_shows_each_string_signed() {
    let url = "https://hooks.example.com/webhooks/twilio/inbound-sms";
    let sig = signature::compute(TOKEN, url, [("Body", "STOP")]);
    let o = herald(&["--url", url, "--signature", &sig, "--param", "Body=START"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("NOT genuine: signature does not match"),
        "{out}"
    );
    assert!(
        out.contains(&format!("signed string: {url}Body<redacted, 5 chars>")),
        "{out}"
    );
    assert!(
        out.contains(
            "signed string: https://hooks.example.com:443/webhooks/twilio/inbound-sms\
             Body<redacted, 5 chars>"
        ),
        "{out}"
    );
    assert_eq!(out.matches("matches:       no").count(), 2, "{out}");
    assert!(!out.contains("START") && !out.contains(TOKEN), "{out}");

    let o = herald(&[
        "--url",
        url,
        "--signature",
        &sig,
        "--param",
        "Body=START",
        "--show-signed-string",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("signed string: {url}BodySTART")),
        "{out}"
    );
    assert!(
        out.contains(
            "signed string: https://hooks.example.com:443/webhooks/twilio/inbound-smsBodySTART"
        ),
        "{out}"
    );
    assert!(!out.contains(TOKEN), "{out}");
}

#[test]
fn json_bodies_are_checked_against_body_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, br#"{"MessageStatus":"delivered"}"#).unwrap();
    let hash = signature::body_sha256(br#"{"MessageStatus":"delivered"}"#);
    let url = format!("https://h.example/webhooks/twilio/message-status?mid=m&bodySHA256={hash}");
    let sig = signature::sign(TOKEN, &url);
    let args = |sig: &str| -> Vec<String> {
        [
            "--url",
            &url,
            "--signature",
            sig,
            "--body-file",
            body.to_str().unwrap(),
            "--content-type",
            "application/json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let o = herald(&args(&sig).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("bodySHA256 in the URL matches the body"));
    std::fs::write(&body, br#"{"MessageStatus":"failed"}"#).unwrap();
    let o = herald(&args(&sig).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("but the body hashes to"), "{}", text(&o));
}

#[test]
fn without_a_signature_it_prints_the_signature_of_each_variant() {
    let url = "http://127.0.0.1:8080/webhooks/twilio/inbound-sms";
    let o = herald(&["--url", url, "--param", "Body=HELP"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let expected = signature::compute(TOKEN, url, [("Body", "HELP")]);
    let without = signature::compute(
        TOKEN,
        "http://127.0.0.1/webhooks/twilio/inbound-sms",
        [("Body", "HELP")],
    );
    assert!(out.contains(&format!("signature:     {expected}")), "{out}");
    assert!(out.contains(&format!("signature:     {without}")), "{out}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec![],
        vec!["--signature", "x"],
        vec!["--url", "https://h/x", "--param", "no-equals-sign"],
        vec!["--url", "https://h/x", "--body-file", "/nonexistent/herald"],
        vec![
            "--url",
            "https://h/x",
            "--content-type",
            "application/json",
            "--param",
            "a=b",
        ],
        vec!["--bogus"],
    ] {
        let o = herald(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
    // A bad --param is not echoed: it may be a phone number or a message.
    let o = herald(&["--url", "https://h/x", "--param", TO]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--param number 1"), "{}", text(&o));
    assert_no_personal_data(&text(&o));
}

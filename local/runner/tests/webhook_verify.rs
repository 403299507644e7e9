//! `herald webhook verify` as a real process: exit 0 when genuine, 1 when not, 2 on a usage
//! error; it shows every URL variant and string signed, and never the auth token.

use std::process::{Command, Output};

use herald::twilio::signature;

const TOKEN: &str = "s3cr3t-auth-t0ken";

fn herald(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["webhook", "verify"])
        .args(args)
        .env_remove("TWILIO_AUTH_TOKEN")
        .output()
        .expect("run herald")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
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
        "--auth-token",
        TOKEN,
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
        "--auth-token",
        TOKEN,
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
    let o = herald(&[
        "--auth-token",
        TOKEN,
        "--url",
        url,
        "--signature",
        &sig,
        "--param",
        "Body=START",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("NOT genuine: signature does not match"),
        "{out}"
    );
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
    assert_eq!(out.matches("matches:       no").count(), 2, "{out}");
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
            "--auth-token",
            TOKEN,
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
    let o = herald(&["--auth-token", TOKEN, "--url", url, "--param", "Body=HELP"]);
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
        vec!["--url", "https://h/x"],
        vec!["--auth-token", TOKEN],
        vec![
            "--auth-token",
            TOKEN,
            "--url",
            "https://h/x",
            "--param",
            "no-equals-sign",
        ],
        vec![
            "--auth-token",
            TOKEN,
            "--url",
            "https://h/x",
            "--body-file",
            "/nonexistent/herald",
        ],
        vec![
            "--auth-token",
            TOKEN,
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
}

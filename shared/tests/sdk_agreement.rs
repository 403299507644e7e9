//! Herald's signature checks against the official Twilio Python SDK (`RequestValidator`, twilio
//! 9.x in `.venv`), on a seeded corpus of random requests: form and JSON bodies, repeated
//! parameters, odd characters (unicode, `+`, `%`, `&`, `=`, spaces), ports, query strings with
//! percent-encoding kept as sent, fragments.
//!
//! This test writes the corpus, runs `shared/tests/python/sdk_oracle.py` (which signs each
//! request with the SDK, makes mutants, and records the SDK's verdicts), then checks both
//! directions: Herald accepts every request the SDK signed (and computes the same signature), and
//! Herald's verdict equals `RequestValidator.validate` on every genuine and mutated request. It
//! also checks Herald's query encoding against `urllib.parse.urlencode`.
//!
//! Python: `HERALD_PYTHON`, else `.venv/bin/python` at the workspace root (with `twilio`).
//! `HERALD_SDK_CASES` sets the corpus size (default 1200), `HERALD_SDK_SEED` the seed.

use std::path::PathBuf;

use herald::twilio::signature::{self, Payload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("HERALD_PYTHON") {
        return p.into();
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let p = root.join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: create it with `python3 -m venv .venv && .venv/bin/pip install 'twilio>=9,<10'` \
         (or set HERALD_PYTHON)",
        p.display()
    );
    p
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// A random text with the characters that break naive implementations.
fn odd_text(rng: &mut StdRng, max: usize) -> String {
    const PIECES: &[&str] = &[
        "a",
        "Z",
        "0",
        "9",
        " ",
        "+",
        "%",
        "%2B",
        "&",
        "=",
        "?",
        "/",
        "#",
        "~",
        "*",
        ".",
        "-",
        "_",
        "\u{e9}",
        "\u{fc}",
        "\u{4e2d}",
        "\u{1f600}",
        "\u{20ac}",
        "'",
        "\"",
        "<",
        ">",
        ";",
        ",",
        "\n",
        "\t",
        "hello",
        "+15005550006",
        "SM1234",
    ];
    let n = rng.random_range(0..=max);
    (0..n).map(|_| pick(rng, PIECES)).collect()
}

fn name(rng: &mut StdRng) -> String {
    const NAMES: &[&str] = &[
        "Body",
        "From",
        "To",
        "Digits",
        "MessageSid",
        "MessageStatus",
        "a",
        "A",
        "b",
        "\u{e9}",
        "x y",
        "Media+Url",
        "k%",
        "&",
        "=",
    ];
    if rng.random_bool(0.8) {
        pick(rng, NAMES).to_owned()
    } else {
        odd_text(rng, 3)
    }
}

/// One query-string token, percent-encoded in one of several ways: Python's encoding, `%20`
/// for spaces, or lowercase hex (all kept as sent by the URL).
fn query_token(rng: &mut StdRng, text: &str) -> String {
    let encoded = signature::form_urlencode([(text, "")]);
    let encoded = encoded.trim_end_matches('=').to_owned();
    match rng.random_range(0..3) {
        0 => encoded,
        1 => encoded.replace('+', "%20"),
        _ => {
            // Lowercase the hex digits of every escape.
            let mut out = String::new();
            let mut chars = encoded.chars().peekable();
            while let Some(c) = chars.next() {
                out.push(c);
                if c == '%' {
                    for _ in 0..2 {
                        if let Some(h) = chars.next() {
                            out.push(h.to_ascii_lowercase());
                        }
                    }
                }
            }
            out
        }
    }
}

fn url(rng: &mut StdRng) -> String {
    let https = rng.random_bool(0.7);
    let scheme = if https { "https" } else { "http" };
    let host = pick(
        rng,
        &[
            "hooks.example.com",
            "api.example.org",
            "x.test",
            "Herald-Prod.example.net",
            "127.0.0.1",
        ],
    );
    let port = match rng.random_range(0..10) {
        0..=4 => String::new(),
        5 | 6 => if https { ":443" } else { ":80" }.to_owned(),
        _ => format!(":{}", rng.random_range(1..=65535u32)),
    };
    let segments: Vec<String> = (0..rng.random_range(0..4))
        .map(|_| {
            pick(
                rng,
                &[
                    "prod",
                    "webhooks",
                    "twilio",
                    "message-status",
                    "a%20b",
                    "%C3%A9t%C3%A9",
                    "v1.2",
                    "~x",
                    "A_B",
                ],
            )
            .to_owned()
        })
        .collect();
    let path = if segments.is_empty() && rng.random_bool(0.3) {
        String::new()
    } else {
        format!("/{}", segments.join("/"))
    };
    let query: Vec<String> = (0..rng.random_range(0..5))
        .map(|_| {
            let k = odd_text(rng, 3);
            let v = odd_text(rng, 4);
            let k = if k.is_empty() { "k".to_owned() } else { k };
            format!("{}={}", query_token(rng, &k), query_token(rng, &v))
        })
        .collect();
    let mut u = format!("{scheme}://{host}{port}{path}");
    if !query.is_empty() {
        u.push('?');
        u.push_str(&query.join("&"));
    }
    if rng.random_bool(0.2) {
        u.push_str(pick(rng, &["#rc=3&rp=all&ct=3000", "#", "#x"]));
    }
    u
}

fn corpus(seed: u64, n: usize) -> Value {
    let mut rng = StdRng::seed_from_u64(seed);
    let cases: Vec<Value> = (0..n)
        .map(|id| {
            let token: String = (0..32)
                .map(|_| char::from(b"abcdef0123456789"[rng.random_range(0..16)]))
                .collect();
            let query_pairs: Vec<(String, String)> = (0..rng.random_range(0..4))
                .map(|_| (odd_text(&mut rng, 3), odd_text(&mut rng, 5)))
                .collect();
            let mut case = json!({
                "id": id,
                "token": token,
                "url": url(&mut rng),
                "query_pairs": query_pairs,
            });
            if rng.random_bool(0.3) {
                let mut body = serde_json::Map::new();
                for _ in 0..rng.random_range(0..6) {
                    body.insert(name(&mut rng), Value::String(odd_text(&mut rng, 6)));
                }
                let mut text = Value::Object(body).to_string();
                if rng.random_bool(0.3) {
                    // Whitespace and key order as some other serialiser writes them.
                    text = text.replace(',', ", ").replace(':', ": ");
                }
                case["json_body"] = Value::String(text);
            } else {
                let mut params: Vec<(String, String)> = Vec::new();
                for _ in 0..rng.random_range(0..9) {
                    let k = name(&mut rng);
                    let v = odd_text(&mut rng, 6);
                    if rng.random_bool(0.2) && !params.is_empty() {
                        // A repeated name, with a new or an identical value.
                        let (pk, pv) = params[rng.random_range(0..params.len())].clone();
                        let v = if rng.random_bool(0.5) { pv } else { v };
                        params.push((pk, v));
                    } else {
                        params.push((k, v));
                    }
                }
                case["params"] = json!(params);
            }
            case
        })
        .collect();
    json!({"seed": seed, "cases": cases})
}

fn herald_verdict(token: &str, url: &str, v: &Value) -> bool {
    let sig = v["signature"].as_str().unwrap();
    match v["json_body"].as_str() {
        Some(body) => signature::validate(token, url, Payload::Json(body.as_bytes()), sig).is_ok(),
        None => {
            let params: Vec<(String, String)> =
                serde_json::from_value(v["params"].clone()).unwrap();
            signature::validate(token, url, Payload::Form(&params), sig).is_ok()
        }
    }
}

#[test]
fn herald_and_the_official_python_sdk_agree() {
    let seed = std::env::var("HERALD_SDK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(408);
    let n: usize = std::env::var("HERALD_SDK_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1200);
    let corpus = corpus(seed, n);
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("corpus.json"), dir.path().join("sdk.json"));
    std::fs::write(&input, corpus.to_string()).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sdk_oracle.py");
    let status = std::process::Command::new(python())
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .status()
        .expect("run the SDK oracle");
    assert!(status.success(), "the SDK oracle failed: {status}");
    let results: Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let results = results["results"].as_array().unwrap();
    assert_eq!(results.len(), n);

    let (mut compared, mut genuine, mut sdk_valid_mutants) = (0usize, 0usize, 0usize);
    let mut disagreements = Vec::new();
    for (case, r) in corpus["cases"].as_array().unwrap().iter().zip(results) {
        let token = case["token"].as_str().unwrap();
        // Herald encodes queries exactly as urllib.parse.urlencode.
        let pairs: Vec<(String, String)> =
            serde_json::from_value(case["query_pairs"].clone()).unwrap();
        assert_eq!(
            signature::form_urlencode(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            r["urlencoded"].as_str().unwrap(),
            "query encoding of {pairs:?}"
        );
        for v in r["variants"].as_array().unwrap() {
            let url = v["url"].as_str().unwrap();
            let sdk = v["sdk_valid"].as_bool().unwrap();
            let ours = herald_verdict(token, url, v);
            compared += 1;
            if v["what"] == "genuine" {
                genuine += 1;
                assert!(sdk, "the SDK refuses its own signature: {v}");
                // Herald signs the same way...
                if let Some(params) = v["params"].as_array().filter(|_| v["json_body"].is_null()) {
                    let params: Vec<(String, String)> =
                        serde_json::from_value(Value::Array(params.clone())).unwrap();
                    assert_eq!(
                        signature::compute(
                            token,
                            url,
                            params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
                        ),
                        r["signature"].as_str().unwrap(),
                        "signature of {v}"
                    );
                } else {
                    assert_eq!(
                        signature::sign(token, url),
                        r["signature"].as_str().unwrap()
                    );
                }
                // ... accepts what the SDK signed, with the configured #fragment too.
                assert!(ours, "Herald refuses a request the SDK signed: {v}");
                let configured = case["url"].as_str().unwrap();
                if let Some((_, fragment)) = configured.split_once('#') {
                    assert!(
                        herald_verdict(token, &format!("{url}#{fragment}"), v),
                        "the fragment changed the verdict: {v}"
                    );
                }
            } else if sdk {
                sdk_valid_mutants += 1;
            }
            if ours != sdk {
                disagreements.push(format!("Herald {ours}, SDK {sdk}: {v}"));
            }
        }
    }
    eprintln!(
        "SDK agreement: {n} requests ({genuine} genuine), {compared} verdicts compared, \
         {sdk_valid_mutants} mutants valid for both (port variants, duplicate values), {} disagreements",
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements, first ones:\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(10)].join("\n")
    );
    assert!(n >= 1000 || std::env::var_os("HERALD_SDK_CASES").is_some());
}

//! The webhook receiver under attack, through raw API Gateway events (REST v1 and HTTP v2) as
//! the Lambda receives them: a tamper matrix over genuine requests of each kind (form status
//! callback, JSON status callback, inbound SMS), replays, and a seeded fuzz-style run over the
//! request decoder.

use herald::test_env::{TestEnv, WEBHOOK_BASE, json_request, read, request};
use herald::twilio::signature;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use webhook_receiver::request::{self, ApiEvent, Signed};

const STATUS: &str = "/webhooks/twilio/message-status";
const INBOUND: &str = "/webhooks/twilio/inbound-sms";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    V1,
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    Form(Vec<(String, String)>),
    Json(String),
}

/// A request as Twilio sends it, before API Gateway turns it into an event.
#[derive(Debug, Clone)]
struct Req {
    api: Api,
    route: &'static str,
    query: Vec<(String, String)>,
    content: Content,
    signature: Option<String>,
    extra_headers: Vec<(String, String)>,
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn refs(p: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

impl Req {
    /// Signs it as Twilio does (a JSON body's hash is added to the query first).
    fn signed(mut self, token: &str) -> Self {
        if let Content::Json(body) = &self.content {
            self.query
                .push(("bodySHA256".into(), signature::body_sha256(body.as_bytes())));
        }
        let url = request::public_url(
            WEBHOOK_BASE,
            self.route,
            Some(&signature::form_urlencode(refs(&self.query))),
        );
        self.signature = Some(match &self.content {
            Content::Form(p) => signature::compute(token, &url, refs(p)),
            Content::Json(_) => signature::sign(token, &url),
        });
        self
    }

    /// The API Gateway event JSON, built by hand so object members keep their order.
    fn event(&self) -> String {
        let s = |v: &str| serde_json::to_string(v).unwrap();
        let (ct, body, b64) = match &self.content {
            Content::Form(p) => (
                "application/x-www-form-urlencoded",
                signature::form_urlencode(refs(p)),
                false,
            ),
            // JSON bodies go base64-encoded, as API Gateway does for binary media types.
            Content::Json(b) => (
                "application/json; charset=utf-8",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b),
                true,
            ),
        };
        let mut headers = vec![
            ("Content-Type".to_owned(), ct.to_owned()),
            ("Host".to_owned(), "hooks.example.test".to_owned()),
            ("I-Twilio-Idempotency-Token".to_owned(), "tok-1".to_owned()),
        ];
        if let Some(sig) = &self.signature {
            // Header names in any case.
            headers.push(("X-TWILIO-signature".to_owned(), sig.clone()));
        }
        headers.extend(self.extra_headers.iter().cloned());
        let header_obj = headers
            .iter()
            .map(|(k, v)| format!("{}:{}", s(k), s(v)))
            .collect::<Vec<_>>()
            .join(",");
        match self.api {
            Api::V2 => format!(
                r#"{{"version":"2.0","routeKey":"$default","rawPath":{},"rawQueryString":{},"headers":{{{header_obj}}},"requestContext":{{"http":{{"method":"POST","path":{}}},"stage":"prod","domainName":"hooks.example.test"}},"body":{},"isBase64Encoded":{b64}}}"#,
                s(&format!("/prod{}", self.route)),
                s(&signature::form_urlencode(refs(&self.query))),
                s(self.route),
                s(&body),
            ),
            Api::V1 => {
                // API Gateway groups a name's values, in the order the names first appear.
                let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
                for (k, v) in &self.query {
                    match grouped.iter_mut().find(|(n, _)| n == k) {
                        Some((_, vs)) => vs.push(v.clone()),
                        None => grouped.push((k.clone(), vec![v.clone()])),
                    }
                }
                let mv = grouped
                    .iter()
                    .map(|(k, vs)| format!("{}:{}", s(k), serde_json::to_string(vs).unwrap()))
                    .collect::<Vec<_>>()
                    .join(",");
                let single = grouped
                    .iter()
                    .map(|(k, vs)| format!("{}:{}", s(k), s(vs.last().unwrap())))
                    .collect::<Vec<_>>()
                    .join(",");
                let mvh = headers
                    .iter()
                    .map(|(k, v)| format!("{}:[{}]", s(k), s(v)))
                    .collect::<Vec<_>>()
                    .join(",");
                let (q, mq) = if grouped.is_empty() {
                    ("null".to_owned(), "null".to_owned())
                } else {
                    (format!("{{{single}}}"), format!("{{{mv}}}"))
                };
                format!(
                    r#"{{"resource":"/{{proxy+}}","path":{},"httpMethod":"POST","headers":{{{header_obj}}},"multiValueHeaders":{{{mvh}}},"queryStringParameters":{q},"multiValueQueryStringParameters":{mq},"requestContext":{{"stage":"prod","httpMethod":"POST","path":{}}},"body":{},"isBase64Encoded":{b64}}}"#,
                    s(self.route),
                    s(&format!("/prod{}", self.route)),
                    s(&body),
                )
            }
        }
    }
}

async fn deliver(env: &TestEnv, r: &Req) -> (u16, String) {
    let event: ApiEvent = serde_json::from_str(&r.event()).expect("event");
    let resp = webhook_receiver::handle_event(&env.services, event).await;
    (
        u16::try_from(resp["statusCode"].as_u64().unwrap()).unwrap(),
        resp["body"].as_str().unwrap_or("").to_owned(),
    )
}

async fn send(env: &TestEnv, to: &str) -> (String, String) {
    let resp = send_sms::handle(
        &env.services,
        json_request("POST", "/v1/messages", &json!({"to": to, "body": "hi"})),
    )
    .await
    .unwrap();
    let (status, answer) = read(&resp);
    assert_eq!(status, 201, "{answer}");
    let id = answer["id"].as_str().unwrap().to_owned();
    (id, env.sim.messages().last().unwrap().sid.clone())
}

async fn status_of(env: &TestEnv, id: &str) -> Value {
    let resp = send_sms::handle(
        &env.services,
        request("GET", &format!("/v1/messages/{id}"), &[], b""),
    )
    .await
    .unwrap();
    read(&resp).1
}

fn status_params(sid: &str, status: &str) -> Vec<(String, String)> {
    pairs(&[
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("ApiVersion", "2010-04-01"),
        ("From", "+15005550006"),
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("To", "+14155552671"),
    ])
}

fn inbound_params(body: &str) -> Vec<(String, String)> {
    pairs(&[
        ("ToCountry", "US"),
        ("SmsMessageSid", "SM11111111111111111111111111111111"),
        ("NumMedia", "0"),
        ("SmsSid", "SM11111111111111111111111111111111"),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", "+15005550006"),
        ("NumSegments", "1"),
        ("MessageSid", "SM11111111111111111111111111111111"),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("From", "+447400123456"),
        ("ApiVersion", "2010-04-01"),
    ])
}

/// A different character in place of `c`, keeping it printable.
fn flip(c: char) -> char {
    match c {
        'a'..='y' | 'A'..='Y' | '0'..='8' => char::from_u32(c as u32 + 1).unwrap(),
        'z' => 'a',
        'Z' => 'A',
        '9' => '0',
        '+' => '-',
        _ => 'x',
    }
}

fn flip_at(s: &str, i: usize) -> String {
    s.chars()
        .enumerate()
        .map(|(j, c)| if j == i { flip(c) } else { c })
        .collect()
}

/// Every single-change variant of a genuine request: each character of each query name and
/// value, each form name and value, the JSON body and the signature flipped; each parameter
/// removed; a parameter added; and the signature missing.
fn tampered(genuine: &Req) -> Vec<(String, Req)> {
    let mut out = Vec::new();
    let mut push = |what: String, r: Req| out.push((what, r));
    for (i, (k, v)) in genuine.query.iter().enumerate() {
        for j in 0..k.chars().count() {
            let mut r = genuine.clone();
            r.query[i].0 = flip_at(k, j);
            push(format!("query name {k}[{j}]"), r);
        }
        for j in 0..v.chars().count() {
            let mut r = genuine.clone();
            r.query[i].1 = flip_at(v, j);
            push(format!("query value {k}[{j}]"), r);
        }
        let mut r = genuine.clone();
        r.query.remove(i);
        push(format!("query {k} removed"), r);
    }
    let mut r = genuine.clone();
    r.query.push(("extra".into(), "1".into()));
    push("query parameter added".into(), r);
    match &genuine.content {
        Content::Form(params) => {
            for (i, (k, v)) in params.iter().enumerate() {
                for j in 0..k.chars().count() {
                    let mut p = params.clone();
                    p[i].0 = flip_at(k, j);
                    let mut r = genuine.clone();
                    r.content = Content::Form(p);
                    push(format!("form name {k}[{j}]"), r);
                }
                for j in 0..v.chars().count() {
                    let mut p = params.clone();
                    p[i].1 = flip_at(v, j);
                    let mut r = genuine.clone();
                    r.content = Content::Form(p);
                    push(format!("form value {k}[{j}]"), r);
                }
                let mut p = params.clone();
                p.remove(i);
                let mut r = genuine.clone();
                r.content = Content::Form(p);
                push(format!("form {k} removed"), r);
            }
            let mut p = params.clone();
            p.push(("Extra".into(), "1".into()));
            let mut r = genuine.clone();
            r.content = Content::Form(p);
            push("form parameter added".into(), r);
        }
        Content::Json(body) => {
            for j in 0..body.chars().count() {
                let mut r = genuine.clone();
                r.content = Content::Json(flip_at(body, j));
                push(format!("JSON body [{j}]"), r);
            }
        }
    }
    let sig = genuine.signature.clone().unwrap();
    for j in 0..sig.chars().count() {
        let mut r = genuine.clone();
        r.signature = Some(flip_at(&sig, j));
        push(format!("signature [{j}]"), r);
    }
    let mut r = genuine.clone();
    r.signature = None;
    push("signature missing".into(), r);
    let mut r = genuine.clone();
    r.signature = Some(String::new());
    push("signature empty".into(), r);
    out
}

/// Runs the tamper matrix on `genuine`: every variant is refused with 403 problem+json (or 404
/// for a changed route) and changes nothing; then the genuine request is accepted.
async fn matrix(env: &TestEnv, genuine: &Req, unchanged: impl AsyncFn(&TestEnv) -> bool) -> usize {
    let events = env.store.count_events().await.unwrap();
    let variants = tampered(genuine);
    for (what, r) in &variants {
        let (status, body) = deliver(env, r).await;
        assert_eq!(status, 403, "{what} was not refused: {body}");
        assert!(body.contains("invalid-signature"), "{what}: {body}");
    }
    assert_eq!(env.store.count_events().await.unwrap(), events);
    assert!(unchanged(env).await, "a refused request changed something");
    let (status, body) = deliver(env, genuine).await;
    assert_eq!(status, 200, "the genuine request: {body}");
    assert!(!unchanged(env).await, "the genuine request changed nothing");
    variants.len()
}

#[tokio::test]
async fn tamper_matrix_form_status_callback_over_rest_v1() {
    let env = TestEnv::start().await;
    let token = env.creds.auth_token.expose().clone();
    let (id, sid) = send(&env, "+14155552671").await;
    // Decoded by API Gateway v1 and re-encoded by Herald: odd characters must survive.
    let genuine = Req {
        api: Api::V1,
        route: STATUS,
        query: pairs(&[("mid", &id), ("a", "1"), ("note", "x y+z&=%~*\u{e9}")]),
        content: Content::Form(status_params(&sid, "delivered")),
        signature: None,
        extra_headers: vec![],
    }
    .signed(&token);
    let id2 = id.clone();
    let n = matrix(&env, &genuine, async move |env: &TestEnv| {
        status_of(env, &id2).await["status"] == "queued"
    })
    .await;
    assert!(n > 200, "{n} variants");
    let view = status_of(&env, &id).await;
    assert_eq!(view["status"], "delivered");
    let ev =
        herald::ports::EventStore::get_event(&*env.services.events, &format!("ms:{sid}:delivered"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(ev.country.as_deref(), Some("US"));
}

#[tokio::test]
async fn tamper_matrix_json_status_callback_over_http_v2() {
    let env = TestEnv::start().await;
    let token = env.creds.auth_token.expose().clone();
    let (id, sid) = send(&env, "+447400123456").await;
    let body: serde_json::Map<String, Value> = status_params(&sid, "sent")
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let genuine = Req {
        api: Api::V2,
        route: STATUS,
        query: pairs(&[("mid", &id), ("a", "1")]),
        content: Content::Json(Value::Object(body).to_string()),
        signature: None,
        extra_headers: vec![],
    }
    .signed(&token);
    let id2 = id.clone();
    matrix(&env, &genuine, async move |env: &TestEnv| {
        status_of(env, &id2).await["status"] == "queued"
    })
    .await;
    assert_eq!(status_of(&env, &id).await["status"], "sent");
}

#[tokio::test]
async fn tamper_matrix_inbound_sms_over_both_apis() {
    for api in [Api::V1, Api::V2] {
        let env = TestEnv::start().await;
        let token = env.creds.auth_token.expose().clone();
        let genuine = Req {
            api,
            route: INBOUND,
            query: vec![],
            content: Content::Form(inbound_params("STOP")),
            signature: None,
            extra_headers: vec![],
        }
        .signed(&token);
        let lookup = env
            .services
            .vault
            .lookup_token("+447400123456")
            .await
            .unwrap();
        let l2 = lookup.clone();
        matrix(&env, &genuine, async move |env: &TestEnv| {
            !env.services.opt_outs.is_opted_out(&l2).await.unwrap()
        })
        .await;
        assert!(env.services.opt_outs.is_opted_out(&lookup).await.unwrap());
    }
}

#[tokio::test]
async fn replays_change_nothing_and_still_answer_200() {
    let env = TestEnv::start().await;
    let token = env.creds.auth_token.expose().clone();
    let (id, sid) = send(&env, "+14155552671").await;
    let callback = Req {
        api: Api::V1,
        route: STATUS,
        query: pairs(&[("mid", &id), ("a", "1")]),
        content: Content::Form(status_params(&sid, "sent")),
        signature: None,
        extra_headers: vec![],
    }
    .signed(&token);
    let help = Req {
        api: Api::V2,
        route: INBOUND,
        query: vec![],
        content: Content::Form(inbound_params("help")),
        signature: None,
        extra_headers: vec![],
    }
    .signed(&token);
    assert_eq!(deliver(&env, &callback).await.0, 200);
    let (status, first_answer) = deliver(&env, &help).await;
    assert_eq!(status, 200);
    assert!(first_answer.contains("<Message>"), "{first_answer}");
    let events = env.store.count_events().await.unwrap();
    let view = status_of(&env, &id).await;
    for retry in [false, true] {
        let mut c = callback.clone();
        let mut h = help.clone();
        if retry {
            // Twilio's retries carry a new idempotency token.
            c.extra_headers = vec![("I-Twilio-Idempotency-Token".into(), "retry-2".into())];
            h.extra_headers = c.extra_headers.clone();
        }
        assert_eq!(deliver(&env, &c).await.0, 200);
        assert_eq!(deliver(&env, &h).await, (200, first_answer.clone()));
    }
    assert_eq!(env.store.count_events().await.unwrap(), events);
    assert_eq!(status_of(&env, &id).await, view);
}

#[tokio::test]
async fn stage_paths_and_custom_domains_come_from_the_base_url() {
    // A custom domain with a base path, and a port: the signed URL is rebuilt from the config.
    let base = "https://alerts.example.org:8443/twilio";
    let env = TestEnv::start_with(&[("TWILIO_WEBHOOK_BASE_URL", base)]).await;
    let token = env.creds.auth_token.expose().clone();
    let params = inbound_params("hello there");
    let url = format!("{base}{INBOUND}");
    let sig = signature::compute(&token, &url, refs(&params));
    let req = request(
        "POST",
        &format!("/twilio{INBOUND}"),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("x-twilio-signature", &sig),
        ],
        signature::form_urlencode(refs(&params)).as_bytes(),
    );
    let resp = webhook_receiver::handle(&env.services, req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // Signed by Twilio for the same URL without its port (as the SDKs allow).
    let params = inbound_params("hello again");
    let mut params = params;
    params[1].1 = "SM22222222222222222222222222222222".into();
    params[3].1 = params[1].1.clone();
    params[8].1 = params[1].1.clone();
    let sig = signature::compute(
        &token,
        &format!("https://alerts.example.org/twilio{INBOUND}"),
        refs(&params),
    );
    let req = request(
        "POST",
        &format!("/twilio{INBOUND}"),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", &sig),
        ],
        signature::form_urlencode(refs(&params)).as_bytes(),
    );
    assert_eq!(
        webhook_receiver::handle(&env.services, req)
            .await
            .unwrap()
            .status(),
        200
    );
}

/// The webhook route of a raw path (as the handler finds it).
fn route_of(path: &str) -> &str {
    path.find("/webhooks/").map_or(path, |i| &path[i..])
}

/// Decodes an event and checks its signature as the handler does; `Some(canonical)` when
/// accepted.
fn verdict(json: &[u8], token: &str) -> Option<Vec<u8>> {
    let (req, _) = request::decode(json).ok()?;
    let route = route_of(lambda_http::RequestExt::raw_http_path(&req)).to_owned();
    let signed = Signed::of(WEBHOOK_BASE, &route, &req);
    signed.check(token).ok().map(|_| signed.canonical())
}

/// Before, an event that was not an API Gateway event failed the invocation with serde's
/// message, which quotes the value it refused, and no 400 named the part at fault. Now each is
/// answered 400 problem+json naming it from a fixed list, quoting nothing, changing nothing.
#[tokio::test]
async fn unreadable_events_are_answered_400_naming_the_part_at_fault() {
    let env = TestEnv::start().await;
    let number = "+14155552671";
    let v2 = |path: &str, query: &str, method: Option<&str>| {
        json!({
            "version": "2.0", "rawPath": path, "rawQueryString": query,
            "requestContext": method.map_or(json!({}), |m| json!({"http": {"method": m}})),
            "headers": {"content-type": "application/x-www-form-urlencoded"},
            "body": format!("From={number}"), "isBase64Encoded": false,
        })
    };
    let mut bad_header = v2(INBOUND, "", Some("POST"));
    bad_header["headers"]["x-note"] = json!(format!("{number}\u{1}"));
    let mut bad_base64 = v2(INBOUND, "", Some("POST"));
    bad_base64["isBase64Encoded"] = json!(true);
    let v1 = json!({"httpMethod": "POST", "path": format!("/webhooks/{number} x"),
        "multiValueQueryStringParameters": {}, "requestContext": {}, "body": ""});
    let events = env.store.count_events().await.unwrap();
    for (payload, field) in [
        (json!(number), "event"),
        (json!([number]), "event"),
        (json!({"version": "2.0", "rawPath": [number]}), "event"),
        (v2(INBOUND, "", None), "method"),
        (v2(INBOUND, "", Some("PO ST")), "method"),
        (
            v2(&format!("/webhooks/{number} x"), "", Some("POST")),
            "path",
        ),
        (
            v2(INBOUND, &format!("to={number} x"), Some("POST")),
            "query",
        ),
        (v1, "path"),
        (bad_header, "headers"),
        (bad_base64, "body"),
    ] {
        let answer = webhook_receiver::invoke(&env.services, payload.clone()).await;
        assert_eq!(answer["statusCode"], 400, "{payload}: {answer}");
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            body["type"], "urn:herald:problem:malformed-request",
            "{answer}"
        );
        assert_eq!(body["field"], field, "{payload}: {answer}");
        assert!(!answer.to_string().contains(number), "{answer}");
    }
    assert_eq!(env.store.count_events().await.unwrap(), events);
}

/// Seeded fuzz-style run (stable Rust has no `cargo fuzz`): thousands of byte-level mutations
/// of genuine events (flip, insert, delete, truncate, duplicate a slice). The decoder must never
/// panic, and must never accept a request whose signed content differs from the genuine one.
/// Every 25th mutant also goes through the whole handler.
#[tokio::test]
async fn fuzz_the_decoder_with_mutated_events() {
    let env = TestEnv::start().await;
    let token = env.creds.auth_token.expose().clone();
    let (id, sid) = send(&env, "+14155552671").await;
    let json_body: serde_json::Map<String, Value> = status_params(&sid, "sent")
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let genuine = [
        Req {
            api: Api::V1,
            route: STATUS,
            query: pairs(&[("mid", &id), ("a", "1")]),
            content: Content::Form(status_params(&sid, "delivered")),
            signature: None,
            extra_headers: vec![],
        },
        Req {
            api: Api::V2,
            route: STATUS,
            query: pairs(&[("mid", &id), ("a", "1")]),
            content: Content::Json(Value::Object(json_body).to_string()),
            signature: None,
            extra_headers: vec![],
        },
        Req {
            api: Api::V2,
            route: INBOUND,
            query: vec![],
            content: Content::Form(inbound_params("Running late, call me")),
            signature: None,
            extra_headers: vec![],
        },
    ]
    .map(|r| r.signed(&token));
    let iterations: usize = std::env::var("HERALD_FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        std::env::var("HERALD_FUZZ_SEED")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20_261_121),
    );
    let started = std::time::Instant::now();
    let (mut accepted, mut decoded) = (0usize, 0usize);
    for g in &genuine {
        let original = g.event().into_bytes();
        let expected = verdict(&original, &token).expect("the genuine event is accepted");
        for n in 0..iterations {
            let mut m = original.clone();
            let mutations = rng.random_range(1..=3);
            for _ in 0..mutations {
                if m.is_empty() {
                    break;
                }
                let i = rng.random_range(0..m.len());
                match rng.random_range(0..6) {
                    0 => m[i] = rng.random(),
                    1 => m[i] ^= 1 << rng.random_range(0..8),
                    2 => m.insert(i, rng.random_range(0x20..0x7f)),
                    3 => {
                        m.remove(i);
                    }
                    4 => m.truncate(i),
                    _ => {
                        let end = (i + rng.random_range(1..16)).min(m.len());
                        let chunk = m[i..end].to_vec();
                        m.splice(i..i, chunk);
                    }
                }
            }
            let got = std::panic::catch_unwind(|| verdict(&m, &token)).unwrap_or_else(|_| {
                panic!("decoder panicked on {:?}", String::from_utf8_lossy(&m))
            });
            if request::decode(&m).is_ok() {
                decoded += 1;
            }
            if let Some(canonical) = got {
                accepted += 1;
                assert_eq!(
                    canonical,
                    expected,
                    "accepted a mutated request: {}",
                    String::from_utf8_lossy(&m)
                );
            }
            if n % 25 == 0
                && let Ok(event) = serde_json::from_slice::<ApiEvent>(&m)
            {
                let resp = webhook_receiver::handle_event(&env.services, event).await;
                let status = resp["statusCode"].as_u64().unwrap();
                assert!(
                    [200, 400, 403, 404, 405].contains(&status),
                    "status {status}"
                );
            }
        }
    }
    eprintln!(
        "fuzz: {} mutants, {decoded} decoded, {accepted} accepted with unchanged signed content, {:?}",
        iterations * genuine.len(),
        started.elapsed()
    );
}

//! The simulator's responses against Twilio's own OpenAPI 3.0 spec (`spec/twilio_api_v2010.json`).
//!
//! The operations' response schemas are converted to JSON Schema (`$ref` inlined, `nullable`
//! turned into a `null` type, OpenAPI-only keywords dropped) and real responses of a running
//! simulator are validated with the `jsonschema` crate, formats included.

mod common;

use std::sync::OnceLock;

use common::*;
use serde_json::{Map, Value, json};
use twilio_sim::{CallbackMode, Outcome};

const MESSAGES: &str = "/2010-04-01/Accounts/{AccountSid}/Messages.json";
const MESSAGE: &str = "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json";
const MESSAGE_SCHEMA: &str = "api.v2010.account.message";

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/twilio_api_v2010.json");
        let text = std::fs::read_to_string(path).expect("spec file");
        serde_json::from_str(&text).expect("spec JSON")
    })
}

fn component(name: &str) -> &'static Value {
    &spec()["components"]["schemas"][name]
}

/// OpenAPI 3.0 schema object → JSON Schema (draft 2020-12).
fn to_json_schema(node: &Value, depth: usize) -> Value {
    assert!(depth < 32, "schema nesting too deep (a $ref cycle?)");
    match node {
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| to_json_schema(v, depth + 1)).collect())
        }
        Value::Object(obj) => {
            if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
                let name = reference
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("unsupported $ref {reference}"));
                let target = component(name);
                assert!(!target.is_null(), "dangling $ref {reference}");
                return to_json_schema(target, depth + 1);
            }
            let mut out = Map::new();
            for (key, value) in obj {
                match key.as_str() {
                    // Documentation and OpenAPI-only keywords.
                    "description" | "example" | "examples" | "nullable" | "xml"
                    | "externalDocs" | "discriminator" | "deprecated" => {}
                    k if k.starts_with("x-") => {}
                    "properties" | "patternProperties" => {
                        let props = value
                            .as_object()
                            .expect("properties object")
                            .iter()
                            .map(|(k, v)| (k.clone(), to_json_schema(v, depth + 1)))
                            .collect();
                        out.insert(key.clone(), Value::Object(props));
                    }
                    "items" | "additionalProperties" | "not" | "allOf" | "anyOf" | "oneOf" => {
                        out.insert(key.clone(), to_json_schema(value, depth + 1));
                    }
                    // Twilio's URIs are relative ("/2010-04-01/..."), as the spec's own examples
                    // show: `format: uri` there means a URI reference.
                    "format" if value == "uri" => {
                        out.insert(key.clone(), json!("uri-reference"));
                    }
                    _ => {
                        out.insert(key.clone(), value.clone());
                    }
                }
            }
            if obj.get("nullable") == Some(&Value::Bool(true)) {
                match out.get_mut("type") {
                    Some(Value::String(t)) => {
                        let t = t.clone();
                        out.insert("type".into(), json!([t, "null"]));
                    }
                    Some(Value::Array(types)) => types.push(json!("null")),
                    _ => {}
                }
                if let Some(Value::Array(values)) = out.get_mut("enum") {
                    values.push(Value::Null);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn is_rfc2822(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc2822).is_ok()
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .with_format("date-time-rfc-2822", is_rfc2822)
        .with_format("phone-number", |s: &str| {
            s.strip_prefix('+')
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .with_format("currency", |s: &str| {
            s.len() == 3 && s.bytes().all(|b| b.is_ascii_alphabetic())
        })
        .build(schema)
        .expect("valid JSON Schema")
}

fn operation(path: &str, method: &str) -> &'static Value {
    let op = &spec()["paths"][path][method];
    assert!(op.is_object(), "{method} {path} in the spec");
    op
}

/// The JSON Schema of an operation's response with that status code.
fn response_schema(path: &str, method: &str, status: &str) -> Value {
    let op = operation(path, method);
    let schema = &op["responses"][status]["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{} has a {status} JSON schema",
        op["operationId"]
    );
    to_json_schema(schema, 0)
}

fn assert_valid(schema: &Value, instance: &Value, what: &str) {
    let v = validator(schema);
    let errors: Vec<String> = v
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not conform:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

/// Every property the spec's Message schema declares is present (not just allowed).
fn assert_every_message_property(message: &Value, what: &str) {
    let declared = component(MESSAGE_SCHEMA)["properties"]
        .as_object()
        .expect("message properties");
    assert!(
        declared.len() >= 20,
        "the spec declares the message's fields"
    );
    let obj = message.as_object().expect("message object");
    let missing: Vec<&String> = declared.keys().filter(|k| !obj.contains_key(*k)).collect();
    assert!(missing.is_empty(), "{what} lacks {missing:?}");
    let extra: Vec<&String> = obj.keys().filter(|k| !declared.contains_key(*k)).collect();
    assert!(
        extra.is_empty(),
        "{what} has fields the spec does not declare: {extra:?}"
    );
}

#[test]
fn conversion_accepts_the_specs_own_examples_and_rejects_broken_ones() {
    for (path, method, status) in [
        (MESSAGES, "post", "201"),
        (MESSAGES, "get", "200"),
        (MESSAGE, "get", "200"),
    ] {
        let schema = response_schema(path, method, status);
        let examples = operation(path, method)["responses"][status]["content"]["application/json"]
            ["examples"]
            .as_object()
            .expect("examples");
        assert!(!examples.is_empty());
        for (name, example) in examples {
            assert_valid(&schema, &example["value"], &format!("spec example {name}"));
        }
    }
    let schema = response_schema(MESSAGE, "get", "200");
    let v = validator(&schema);
    let good = operation(MESSAGE, "get")["responses"]["200"]["content"]["application/json"]
        ["examples"]["fetch"]["value"]
        .clone();
    for (field, bad) in [
        ("status", json!("lost")),
        ("sid", json!("XX123")),
        ("error_code", json!("30007")),
        ("date_created", json!("2019-05-24T17:18:27Z")),
        ("num_segments", json!(1)),
    ] {
        let mut broken = good.clone();
        broken[field] = bad;
        assert!(!v.is_valid(&broken), "a wrong {field} must not validate");
    }
    let mut nulls = good;
    nulls["body"] = Value::Null; // nullable: true
    assert!(v.is_valid(&nulls));
}

#[tokio::test]
async fn create_fetch_and_list_responses_conform() {
    let rx = Receiver::start().await;
    let mut c = config();
    c.callback_mode = CallbackMode::Manual;
    let sim = start(c).await;
    sim.set_outcome("+15551230002", Outcome::Undelivered(30003));

    let create_schema = response_schema(MESSAGES, "post", "201");
    let fetch_schema = response_schema(MESSAGE, "get", "200");
    let list_schema = response_schema(MESSAGES, "get", "200");

    let cb = rx.url("/s?mid=1");
    let mg = "MG0123456789abcdef0123456789abcdef";
    let creates: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("To", "+15551230001"),
            ("From", FROM),
            ("Body", "plain"),
            ("StatusCallback", &cb),
        ],
        vec![
            ("To", "+15551230002"),
            ("From", FROM),
            ("Body", "ünïcödé ж 👍"),
            ("StatusCallback", &cb),
        ],
        vec![
            ("To", "+15551230003"),
            ("MessagingServiceSid", mg),
            ("Body", "via service"),
        ],
        vec![
            ("To", "+15551230004"),
            ("From", FROM),
            ("MediaUrl", "https://example.com/x.png"),
        ],
    ];
    let mut sids = Vec::new();
    for params in &creates {
        let (status, body) = create(&sim, params).await;
        assert_eq!(status, 201, "{body}");
        assert_valid(&create_schema, &body, "CreateMessage 201");
        assert_every_message_property(&body, "CreateMessage 201");
        sids.push(body["sid"].as_str().unwrap().to_string());
    }

    // Before and after the status callbacks (delivered, undelivered with an error code).
    for round in ["queued", "after callbacks"] {
        for sid in &sids {
            let (status, body) = get_json(&message_url(&sim, sid)).await;
            assert_eq!(status, 200);
            assert_valid(&fetch_schema, &body, &format!("FetchMessage 200 ({round})"));
            assert_every_message_property(&body, "FetchMessage 200");
        }
        for query in [
            "",
            "?PageSize=2",
            "?To=%2B15551230002",
            "?PageSize=1&Page=0",
        ] {
            let (status, page) = get_json(&format!("{}{query}", messages_url(&sim))).await;
            assert_eq!(status, 200);
            assert_valid(&list_schema, &page, &format!("ListMessage 200 {query}"));
            for key in list_schema["properties"].as_object().unwrap().keys() {
                assert!(page.get(key).is_some(), "list page lacks {key}");
            }
            for m in page["messages"].as_array().unwrap() {
                assert_every_message_property(m, "ListMessage item");
            }
        }
        sim.flush_callbacks().await;
    }
    let (_, undelivered) = get_json(&message_url(&sim, &sids[1])).await;
    assert_eq!(undelivered["status"], "undelivered");
    assert_eq!(undelivered["error_code"], 30003);
    sim.shutdown().await;
}

/// The spec declares no error responses for these operations; errors are checked against the
/// documented shape `{code, message, more_info, status}` instead.
#[tokio::test]
async fn error_responses_have_twilios_shape() {
    for (path, method) in [(MESSAGES, "post"), (MESSAGES, "get"), (MESSAGE, "get")] {
        let responses = operation(path, method)["responses"].as_object().unwrap();
        for status in responses.keys() {
            assert!(
                !(status.starts_with('4') || status.starts_with('5')),
                "the spec now declares error {status} for {method} {path}: validate against it"
            );
        }
    }
    let error_schema = json!({
        "type": "object",
        "required": ["code", "message", "more_info", "status"],
        "additionalProperties": false,
        "properties": {
            "code": {"type": "integer"},
            "message": {"type": "string", "minLength": 1},
            "more_info": {"type": "string", "format": "uri", "pattern": "^https://www\\.twilio\\.com/docs/errors/[0-9]+$"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
        }
    });
    let mut c = config();
    c.callback_mode = CallbackMode::Manual;
    let sim = start(c).await;
    let mut bodies = Vec::new();
    bodies.push(create(&sim, &[("From", FROM), ("Body", "x")]).await);
    bodies.push(
        create(
            &sim,
            &[("To", "+15005550002"), ("From", FROM), ("Body", "x")],
        )
        .await,
    );
    bodies.push(get_json(&message_url(&sim, "SM00000000000000000000000000000000")).await);
    let r = client().get(messages_url(&sim)).send().await.unwrap();
    bodies.push((r.status().as_u16(), r.json().await.unwrap()));
    sim.set_faults(twilio_sim::Faults {
        rate_429: 1.0,
        ..Default::default()
    });
    bodies.push(
        create(
            &sim,
            &[("To", "+15551230001"), ("From", FROM), ("Body", "x")],
        )
        .await,
    );
    for (status, body) in &bodies {
        assert_valid(&error_schema, body, &format!("error {status}"));
        assert_eq!(body["status"].as_u64(), Some(u64::from(*status)));
    }
    let statuses: Vec<u16> = bodies.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, vec![400, 400, 404, 401, 429]);
    sim.shutdown().await;
}

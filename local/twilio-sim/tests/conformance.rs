//! The simulator's responses against Twilio's own OpenAPI 3.0 specs (`spec/twilio_api_v2010.json`
//! for Messages, Calls, Keys and the Account; `spec/twilio_accounts_v1.json` for auth tokens).
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

const CALLS: &str = "/2010-04-01/Accounts/{AccountSid}/Calls.json";
const CALL: &str = "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json";
const KEYS: &str = "/2010-04-01/Accounts/{AccountSid}/Keys.json";
const KEY: &str = "/2010-04-01/Accounts/{AccountSid}/Keys/{Sid}.json";
const ACCOUNT_PATH: &str = "/2010-04-01/Accounts/{Sid}.json";
const SECONDARY: &str = "/v1/AuthTokens/Secondary";
const PROMOTE: &str = "/v1/AuthTokens/Promote";

fn load(file: &str) -> Value {
    let path = format!("{}/spec/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("spec file");
    serde_json::from_str(&text).expect("spec JSON")
}

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| load("twilio_api_v2010.json"))
}

fn accounts_spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| load("twilio_accounts_v1.json"))
}

/// The spec a path belongs to.
fn spec_of(path: &str) -> &'static Value {
    if path.starts_with("/v1/") {
        accounts_spec()
    } else {
        spec()
    }
}

fn component(name: &str) -> &'static Value {
    component_in(spec(), name)
}

fn component_in(root: &'static Value, name: &str) -> &'static Value {
    &root["components"]["schemas"][name]
}

/// OpenAPI 3.0 schema object → JSON Schema (draft 2020-12), `$ref`s resolved in `root`.
fn to_json_schema_in(root: &'static Value, node: &Value, depth: usize) -> Value {
    assert!(depth < 32, "schema nesting too deep (a $ref cycle?)");
    match node {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| to_json_schema_in(root, v, depth + 1))
                .collect(),
        ),
        Value::Object(obj) => {
            if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
                let name = reference
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("unsupported $ref {reference}"));
                let target = component_in(root, name);
                assert!(!target.is_null(), "dangling $ref {reference}");
                return to_json_schema_in(root, target, depth + 1);
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
                            .map(|(k, v)| (k.clone(), to_json_schema_in(root, v, depth + 1)))
                            .collect();
                        out.insert(key.clone(), Value::Object(props));
                    }
                    "items" | "additionalProperties" | "not" | "allOf" | "anyOf" | "oneOf" => {
                        out.insert(key.clone(), to_json_schema_in(root, value, depth + 1));
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
    let op = &spec_of(path)["paths"][path][method];
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
    to_json_schema_in(spec_of(path), schema, 0)
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

/// Every property the schema `name` of `root` declares is present, and nothing else.
fn assert_every_property(root: &'static Value, name: &str, value: &Value, what: &str) {
    let declared = component_in(root, name)["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{name} properties"));
    let obj = value.as_object().expect("object");
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
        (CALLS, "post", "201"),
        (CALLS, "get", "200"),
        (CALL, "get", "200"),
        (KEYS, "post", "201"),
        (KEYS, "get", "200"),
        (KEY, "get", "200"),
        (KEY, "post", "200"),
        (ACCOUNT_PATH, "get", "200"),
        (SECONDARY, "post", "201"),
        (PROMOTE, "post", "200"),
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

    // `initiated` is a callback event, never a call status; Accounts v1 dates are ISO 8601.
    let v = validator(&response_schema(CALL, "get", "200"));
    let mut call = operation(CALL, "get")["responses"]["200"]["content"]["application/json"]
        ["examples"]["fetch"]["value"]
        .clone();
    assert!(v.is_valid(&call));
    call["status"] = json!("initiated");
    assert!(!v.is_valid(&call));
    let v = validator(&response_schema(SECONDARY, "post", "201"));
    let mut token = operation(SECONDARY, "post")["responses"]["201"]["content"]["application/json"]
        ["examples"]["create"]["value"]
        .clone();
    assert!(v.is_valid(&token));
    token["date_created"] = json!("Fri, 31 Jul 2015 04:00:00 +0000");
    assert!(!v.is_valid(&token));
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

/// Calls, keys, the account and auth tokens: every response the simulator gives for the
/// operations it serves validates against the spec and carries every declared property.
#[tokio::test]
async fn call_key_account_and_auth_token_responses_conform() {
    use reqwest::Method;
    use twilio_sim::CallOutcome;

    let rx = Receiver::start().await;
    let mut c = config();
    c.callback_mode = CallbackMode::Manual;
    let sim = start(c).await;
    sim.set_call_outcome("+15551239001", CallOutcome::AnswerAndPress("1".into()));
    sim.set_call_outcome("+15551239002", CallOutcome::Busy);
    let v2010 = spec();
    let base = sim.base_url();

    // Calls: create, fetch and list, before and after their progress.
    let twiml = gather_twiml(&rx.url("/twiml/ack"));
    let mut sids = Vec::new();
    for (to, extra) in [
        ("+15551239001", ("Twiml", twiml.as_str())),
        ("+15551239002", ("Url", "https://example.com/twiml")),
    ] {
        let (status, body) = create_call(
            &sim,
            &[
                ("To", to),
                ("From", FROM),
                extra,
                ("StatusCallback", &rx.url("/s")),
            ],
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_valid(
            &response_schema(CALLS, "post", "201"),
            &body,
            "CreateCall 201",
        );
        assert_every_property(v2010, "api.v2010.account.call", &body, "CreateCall 201");
        sids.push(body["sid"].as_str().unwrap().to_string());
    }
    for round in ["queued", "after progress"] {
        for sid in &sids {
            let (status, body) = get_json(&call_url(&sim, sid)).await;
            assert_eq!(status, 200);
            assert_valid(
                &response_schema(CALL, "get", "200"),
                &body,
                &format!("FetchCall ({round})"),
            );
            assert_every_property(v2010, "api.v2010.account.call", &body, "FetchCall");
        }
        for query in ["", "?PageSize=1", "?Status=busy"] {
            let (status, page) = get_json(&format!("{}{query}", calls_url(&sim))).await;
            assert_eq!(status, 200);
            let schema = response_schema(CALLS, "get", "200");
            assert_valid(&schema, &page, &format!("ListCall {query}"));
            for key in schema["properties"].as_object().unwrap().keys() {
                assert!(page.get(key).is_some(), "call page lacks {key}");
            }
        }
        sim.flush_callbacks().await;
    }
    let (_, busy) = get_json(&call_url(&sim, &sids[1])).await;
    assert_eq!(busy["status"], "busy");

    // Keys: create (with secret), list, fetch, update (without).
    let keys_url = format!("{base}/2010-04-01/Accounts/{ACCOUNT}/Keys.json");
    let (status, new_key) = post_form(&keys_url, ACCOUNT, TOKEN, &[("FriendlyName", "k1")]).await;
    assert_eq!(status, 201);
    assert_valid(
        &response_schema(KEYS, "post", "201"),
        &new_key,
        "CreateNewKey 201",
    );
    assert_every_property(
        v2010,
        "api.v2010.account.new_key",
        &new_key,
        "CreateNewKey 201",
    );
    let (status, nameless) = post_form(&keys_url, ACCOUNT, TOKEN, &[]).await;
    assert_eq!(status, 201);
    assert_valid(
        &response_schema(KEYS, "post", "201"),
        &nameless,
        "CreateNewKey 201 (no name)",
    );
    let key_url = format!(
        "{base}/2010-04-01/Accounts/{ACCOUNT}/Keys/{}.json",
        new_key["sid"].as_str().unwrap()
    );
    let (status, page) = request(Method::GET, &keys_url, ACCOUNT, TOKEN).await;
    assert_eq!(status, 200);
    assert_valid(&response_schema(KEYS, "get", "200"), &page, "ListKey 200");
    for k in page["keys"].as_array().unwrap() {
        assert_every_property(v2010, "api.v2010.account.key", k, "ListKey item");
    }
    let (status, fetched) = request(Method::GET, &key_url, ACCOUNT, TOKEN).await;
    assert_eq!(status, 200);
    assert_valid(
        &response_schema(KEY, "get", "200"),
        &fetched,
        "FetchKey 200",
    );
    assert_every_property(v2010, "api.v2010.account.key", &fetched, "FetchKey 200");
    let (status, updated) = post_form(&key_url, ACCOUNT, TOKEN, &[("FriendlyName", "k2")]).await;
    assert_eq!(status, 200);
    assert_valid(
        &response_schema(KEY, "post", "200"),
        &updated,
        "UpdateKey 200",
    );
    assert_every_property(v2010, "api.v2010.account.key", &updated, "UpdateKey 200");
    assert!(operation(KEY, "delete")["responses"]["204"].is_object());
    let (status, _) = request(Method::DELETE, &key_url, ACCOUNT, TOKEN).await;
    assert_eq!(status, 204);

    // The account.
    let (status, account) = request(
        Method::GET,
        &format!("{base}/2010-04-01/Accounts/{ACCOUNT}.json"),
        ACCOUNT,
        TOKEN,
    )
    .await;
    assert_eq!(status, 200);
    assert_valid(
        &response_schema(ACCOUNT_PATH, "get", "200"),
        &account,
        "FetchAccount 200",
    );
    assert_every_property(v2010, "api.v2010.account", &account, "FetchAccount 200");

    // Auth tokens (Accounts v1).
    let (status, secondary) =
        request(Method::POST, &format!("{base}{SECONDARY}"), ACCOUNT, TOKEN).await;
    assert_eq!(status, 201);
    assert_valid(
        &response_schema(SECONDARY, "post", "201"),
        &secondary,
        "CreateSecondaryAuthToken 201",
    );
    assert_every_property(
        accounts_spec(),
        "accounts.v1.secondary_auth_token",
        &secondary,
        "CreateSecondaryAuthToken 201",
    );
    let (status, promoted) =
        request(Method::POST, &format!("{base}{PROMOTE}"), ACCOUNT, TOKEN).await;
    assert_eq!(status, 200);
    assert_valid(
        &response_schema(PROMOTE, "post", "200"),
        &promoted,
        "UpdateAuthTokenPromotion 200",
    );
    assert_every_property(
        accounts_spec(),
        "accounts.v1.auth_token_promotion",
        &promoted,
        "UpdateAuthTokenPromotion 200",
    );
    assert!(operation(SECONDARY, "delete")["responses"]["204"].is_object());
    sim.shutdown().await;
}

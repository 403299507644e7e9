//! `GET /health` and `GET /v1/health` through real API Gateway events, on the embedded adapters
//! with the Twilio simulator. Anyone may ask `/health`, so it says `ok` or `degraded` and nothing
//! more; what each check found (queue and dead-letter depths, Twilio's account status, the
//! switches) is `/v1/health`'s, for a caller with an identity. Only `/health` itself (its stage
//! off) is health: no other path that ends in `/health`.
//!
//! The Twilio check is cached per process for a minute of the services' clock: the test that
//! makes it fail runs its clock a week ahead, so no other test here reads what it cached.

use herald::apigw::{HttpRequest, event_v2, read_request, with_jwt_subject};
use herald::test_env::{TestEnv, read, request, request_as};
use serde_json::{Value, json};

async fn call(env: &TestEnv, req: lambda_http::Request) -> (u16, Value, http::HeaderMap) {
    let resp = send_sms::handle(&env.services, req).await.unwrap();
    let (status, body) = read(&resp);
    (status, body, resp.headers().clone())
}

/// A `GET` of `raw_path` through an API Gateway v2 event whose request context names `stage`
/// (`None`: no stage at all), from `caller`.
fn v2_get(raw_path: &str, stage: Option<&str>, caller: Option<&str>) -> lambda_http::Request {
    let mut event = event_v2(
        &HttpRequest {
            method: "GET",
            path: raw_path,
            headers: vec![("host".into(), "api.example.test".into())],
            ..Default::default()
        },
        "r",
        0,
    );
    event["requestContext"]["stage"] = stage.map_or(Value::Null, |s| json!(s));
    if let Some(caller) = caller {
        with_jwt_subject(&mut event, caller);
    }
    read_request(&event.to_string()).expect("event decodes")
}

/// An anonymous `GET` of `path` through an API Gateway REST (v1) event of stage `stage`: its
/// `path` carries no stage, which the URL `lambda_http` builds puts in front.
fn v1_get(path: &str, stage: &str) -> lambda_http::Request {
    let event = json!({
        "resource": "/health", "path": path, "httpMethod": "GET",
        "headers": {"Host": "api.example.test"}, "multiValueHeaders": {},
        "queryStringParameters": {}, "multiValueQueryStringParameters": {},
        "requestContext": {"accountId": "0", "resourceId": "x", "stage": stage,
            "requestId": "r", "identity": {}, "resourcePath": "/health", "httpMethod": "GET",
            "apiId": "a"},
        "body": null, "isBase64Encoded": false,
    });
    read_request(&event.to_string()).expect("event decodes")
}

/// The anonymous answer is exactly `{"status": …}`: one key, no depth, account status or switch.
fn only_status(body: &Value, status: &str) {
    assert_eq!(body, &json!({ "status": status }), "{body}");
}

#[tokio::test]
async fn anonymous_health_says_ok_and_nothing_more() {
    let env = TestEnv::start().await;
    let (status, body, headers) = call(&env, request_as(None, "GET", "/health", &[], b"")).await;
    assert_eq!(status, 200);
    only_status(&body, "ok");
    assert_eq!(body.as_object().map(serde_json::Map::len), Some(1));
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["cache-control"], "no-store");
    // A caller's identity does not make `/health` say more: the details are `/v1/health`'s.
    let (status, body, _) = call(&env, request("GET", "/health", &[], b"")).await;
    assert_eq!(status, 200);
    only_status(&body, "ok");
    // Only GET.
    let (status, body, _) = call(&env, request_as(None, "POST", "/health", &[], b"")).await;
    assert_eq!(status, 405, "{body}");
}

#[tokio::test]
async fn degraded_is_503_with_only_the_status_anonymously_and_the_cause_for_a_caller() {
    let env = TestEnv::start().await;
    // Its own minute of the process-wide Twilio check (see the module's note).
    env.clock.advance(7 * 24 * 3_600_000);
    env.secrets.withdraw();
    let (status, body, _) = call(&env, request_as(None, "GET", "/health", &[], b"")).await;
    assert_eq!(status, 503);
    only_status(&body, "degraded");
    let (status, body, _) = call(&env, request("GET", "/v1/health", &[], b"")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["twilio"]["result"]["ok"], false, "{body}");
    assert_eq!(body["store"]["ok"], true, "{body}");
}

#[tokio::test]
async fn only_the_exact_health_route_is_health() {
    let env = TestEnv::start().await;
    for path in [
        "/v1/messages/x/health",
        "/x/health",
        "/foo/health",
        "/healthz",
        "/health/",
        "/prod/health",
    ] {
        // Anonymous: not health, so no identity is refused, as on any route but `/health`.
        let (status, body, _) = call(&env, request_as(None, "GET", path, &[], b"")).await;
        assert_eq!(status, 401, "{path}: {body}");
        // A caller's: an unknown route (or no such message).
        let (status, body, headers) = call(&env, request("GET", path, &[], b"")).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(
            body["type"], "urn:herald:problem:not-found",
            "{path}: {body}"
        );
        assert_eq!(headers["content-type"], "application/problem+json");
    }
    // No stage in the request context at all: nothing is taken off.
    let (status, body, _) = call(&env, v2_get("/x/health", None, Some("alice"))).await;
    assert_eq!(status, 404, "{body}");
    // Another stage than the one in the path: nothing is taken off either.
    let (status, body, _) = call(&env, v2_get("/prod/health", Some("beta"), Some("alice"))).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn health_behind_the_stage_of_the_request_context_is_health() {
    let env = TestEnv::start().await;
    // HTTP API, a named stage: the stage is in rawPath.
    for req in [
        v2_get("/prod/health", Some("prod"), None),
        v2_get("/health", None, None),
        v1_get("/health", "prod"),
    ] {
        let (status, body, _) = call(&env, req).await;
        assert_eq!(status, 200, "{body}");
        only_status(&body, "ok");
    }
    // A stage in front of another path ending in /health is still no health.
    let (status, body, _) = call(
        &env,
        v2_get("/prod/v1/messages/x/health", Some("prod"), None),
    )
    .await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn v1_health_needs_an_identity_and_shows_the_depths_and_the_account() {
    let env = TestEnv::start().await;
    let (status, body, headers) = call(&env, request_as(None, "GET", "/v1/health", &[], b"")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["type"], "urn:herald:problem:unauthorized");
    assert_eq!(headers["www-authenticate"], "Bearer");

    // Two send jobs waiting on the send queue.
    let batch = json!({"messages": [
        {"to": "+14155552671", "body": "one"},
        {"to": "+14155552672", "body": "two"},
    ]});
    let (status, body, _) = call(
        &env,
        request(
            "POST",
            "/v1/messages/batch",
            &[("content-type", "application/json")],
            batch.to_string().as_bytes(),
        ),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    let (status, body, headers) = call(&env, request("GET", "/v1/health", &[], b"")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["status"], "ok");
    assert_eq!(
        body["twilio"]["result"],
        json!({"ok": true, "account_status": "active"})
    );
    assert_eq!(body["store"], json!({"ok": true}));
    let send = &body["queues"]["send"];
    assert_eq!(send["ok"], true, "{body}");
    assert_eq!(send["visible"], 2, "{body}");
    assert_eq!(send["dead_letters"], 0, "{body}");
    assert_eq!(body["queues"]["retry"]["dead_letters"], 0, "{body}");
    assert_eq!(
        body["features"],
        json!({"sms_enabled": true, "voice_enabled": true})
    );
    // Only GET.
    let (status, body, headers) = call(&env, request("POST", "/v1/health", &[], b"")).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(headers["allow"], "GET");
}

#[tokio::test]
async fn v1_health_takes_a_unit_of_the_callers_read_budget() {
    let env = TestEnv::start_with(&[("CALLER_RATE_LIMIT_PER_MINUTE", "2")]).await;
    for _ in 0..2 {
        let (status, body, _) = call(&env, request("GET", "/v1/health", &[], b"")).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body, _) = call(&env, request("GET", "/v1/health", &[], b"")).await;
    assert_eq!(status, 429, "{body}");
    // The anonymous answer is not the caller's to spend.
    let (status, _, _) = call(&env, request_as(None, "GET", "/health", &[], b"")).await;
    assert_eq!(status, 200);
}

//! What an `Idempotency-Key` keeps of its request: a keyed fingerprint (HMAC-SHA256 under the
//! vault's key), never a plain hash a phone number could be recovered from by trying numbers;
//! and a record kept before fingerprints were keyed (a plain SHA-256) still recognises its
//! request's retry within its lifetime: replayed or taken over, never refused as another body.

use herald::ports::{Clock, IdempotencyStore, StoredResponse};
use herald::protect::idempotency::{keyed_fingerprint, legacy_fingerprint, scoped_key};
use herald::test_env::{TestEnv, read, request_as};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn post(path: &str, body: &Value, key: &str) -> lambda_http::Request {
    request_as(
        Some("alice"),
        "POST",
        path,
        &[
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ],
        body.to_string().as_bytes(),
    )
}

/// Whether any value stored in `env`'s database holds `needle`.
async fn stored(env: &TestEnv, needle: &str) -> bool {
    env.store
        .dump_values()
        .await
        .unwrap()
        .iter()
        .any(|v| v.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

#[tokio::test]
async fn the_stored_fingerprint_is_keyed_and_differs_across_vault_keys() {
    let body = json!({"to": "+14155552671", "body": "Disk full"});
    let raw = body.to_string();
    let mut keyed = Vec::new();
    for _ in 0..2 {
        // Each environment's vault has a lookup key of its own.
        let env = TestEnv::start().await;
        let resp = send_sms::handle(&env.services, post("/v1/messages", &body, "fp-k"))
            .await
            .unwrap();
        assert_eq!(read(&resp).0, 201);
        let fp = keyed_fingerprint(&env.services.vault, "POST", "/v1/messages", raw.as_bytes())
            .await
            .unwrap();
        assert!(stored(&env, &fp).await, "the keyed fingerprint is kept");
        let plain = legacy_fingerprint("POST", "/v1/messages", raw.as_bytes());
        assert!(!stored(&env, &plain).await, "the plain fingerprint is not");
        let body_sha = hex::encode(Sha256::digest(raw.as_bytes()));
        assert!(!stored(&env, &body_sha).await, "nor the body's SHA-256");
        assert_ne!(fp, plain);
        assert_ne!(fp, body_sha);
        keyed.push(fp);
    }
    assert_ne!(keyed[0], keyed[1], "another vault key, another fingerprint");
}

/// Writes the record a request under `key` left before fingerprints were keyed: begun at
/// `at_ms` with its plain fingerprint, and completed with `response` if one is given.
async fn legacy_record(
    env: &TestEnv,
    key: &str,
    body: &Value,
    at_ms: i64,
    response: Option<&StoredResponse>,
) {
    let scoped = scoped_key("alice", key);
    let fp = legacy_fingerprint("POST", "/v1/messages", body.to_string().as_bytes());
    let begun = env
        .store
        .begin(&scoped, &fp, at_ms, at_ms + 60_000, at_ms + 86_400_000)
        .await
        .unwrap();
    assert_eq!(begun, herald::ports::Begun::Started { since_ms: at_ms });
    if let Some(r) = response {
        env.store.complete(&scoped, &fp, r).await.unwrap();
    }
}

#[tokio::test]
async fn a_response_kept_under_the_old_fingerprint_is_replayed_not_refused() {
    let env = TestEnv::start().await;
    let body = json!({"to": "+14155552672", "body": "Disk full"});
    let kept = StoredResponse {
        status: 201,
        content_type: "application/json".into(),
        body: r#"{"id":"msg_01jc0000000000000000000000","status":"queued"}"#.into(),
    };
    let now = env.clock.now_ms();
    legacy_record(&env, "old-k", &body, now - 3_600_000, Some(&kept)).await;

    let resp = send_sms::handle(&env.services, post("/v1/messages", &body, "old-k"))
        .await
        .unwrap();
    let (status, answer) = read(&resp);
    assert_eq!(status, 201, "{answer}");
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
    assert_eq!(answer.to_string(), kept.body.replace(' ', ""));
    assert!(env.sim.messages().is_empty(), "nothing sent again");

    // Another body under that key is still refused.
    let other = json!({"to": "+14155552672", "body": "Something else"});
    let resp = send_sms::handle(&env.services, post("/v1/messages", &other, "old-k"))
        .await
        .unwrap();
    let (status, problem) = read(&resp);
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["type"], "urn:herald:problem:idempotency-key-reused");
    assert!(env.sim.messages().is_empty());
}

#[tokio::test]
async fn a_dead_request_of_the_old_fingerprint_is_taken_over_and_its_answer_kept() {
    let env = TestEnv::start().await;
    let body = json!({"to": "+14155552673", "body": "Disk full"});
    let now = env.clock.now_ms();
    // Begun before the upgrade, its lease long over (it died), nothing recorded.
    legacy_record(&env, "dead-k", &body, now - 120_000, None).await;
    let resp = send_sms::handle(&env.services, post("/v1/messages", &body, "dead-k"))
        .await
        .unwrap();
    let first = read(&resp);
    assert_eq!(first.0, 201, "{}", first.1);
    assert!(!resp.headers().contains_key("idempotent-replayed"));
    let replay = send_sms::handle(&env.services, post("/v1/messages", &body, "dead-k"))
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(read(&replay), first);
    assert_eq!(env.sim.creates_for("+14155552673"), 1);
}

#[tokio::test]
async fn a_new_use_of_a_key_never_keeps_the_old_fingerprint() {
    // The key's old record expired: the request begins a new use, under its keyed fingerprint.
    let env = TestEnv::start().await;
    let body = json!({"to": "+14155552674", "body": "Disk full"});
    let raw = body.to_string();
    let now = env.clock.now_ms();
    legacy_record(&env, "exp-k", &body, now - 2 * 86_400_000, None).await;
    let resp = send_sms::handle(&env.services, post("/v1/messages", &body, "exp-k"))
        .await
        .unwrap();
    assert_eq!(read(&resp).0, 201);
    let plain = legacy_fingerprint("POST", "/v1/messages", raw.as_bytes());
    assert!(!stored(&env, &plain).await);
    let fp = keyed_fingerprint(&env.services.vault, "POST", "/v1/messages", raw.as_bytes())
        .await
        .unwrap();
    assert!(stored(&env, &fp).await);
}

//! Credential rotation: API keys (create, list, fetch, update, delete → refused), the Account
//! resource, and Accounts v1 auth tokens (secondary, promote → old token refused, new signing key).

mod common;

use common::*;
use reqwest::Method;
use serde_json::Value;

fn keys_url(sim: &twilio_sim::SimHandle) -> String {
    format!("{}/2010-04-01/Accounts/{ACCOUNT}/Keys.json", sim.base_url())
}

fn key_url(sim: &twilio_sim::SimHandle, sid: &str) -> String {
    format!(
        "{}/2010-04-01/Accounts/{ACCOUNT}/Keys/{sid}.json",
        sim.base_url()
    )
}

fn account_url(sim: &twilio_sim::SimHandle) -> String {
    format!("{}/2010-04-01/Accounts/{ACCOUNT}.json", sim.base_url())
}

const MSG: [(&str, &str); 3] = [("To", "+15551230001"), ("From", FROM), ("Body", "hi")];

#[tokio::test]
async fn created_keys_work_at_once_and_deleted_keys_are_refused() {
    let sim = start(config()).await;
    let (status, key) = post_form(
        &keys_url(&sim),
        ACCOUNT,
        TOKEN,
        &[("FriendlyName", "rotation-1")],
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let sid = key["sid"].as_str().unwrap().to_string();
    let secret = key["secret"].as_str().unwrap().to_string();
    assert!(sid.starts_with("SK") && sid.len() == 34);
    assert_eq!(secret.len(), 32);
    assert_eq!(key["friendly_name"], "rotation-1");
    assert!(key["date_created"].is_string() && key["date_updated"].is_string());

    // The new key authenticates immediately.
    let (status, _) = post_form(&messages_url(&sim), &sid, &secret, &MSG).await;
    assert_eq!(status, 201);
    let (status, body) = post_form(&messages_url(&sim), &sid, "wrong-secret", &MSG).await;
    assert_twilio_error(status, &body, 401, 20003);

    // List (newest first, no secrets), fetch, update.
    let (status, page) = request(Method::GET, &keys_url(&sim), ACCOUNT, TOKEN).await;
    assert_eq!(status, 200);
    let keys = page["keys"].as_array().unwrap();
    assert_eq!(
        keys.iter()
            .map(|k| k["sid"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec![sid.as_str(), KEY_SID]
    );
    assert!(keys.iter().all(|k| k.get("secret").is_none()));
    let (status, fetched) = request(Method::GET, &key_url(&sim, &sid), ACCOUNT, TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(fetched["friendly_name"], "rotation-1");
    assert!(fetched.get("secret").is_none());
    let (status, updated) = post_form(
        &key_url(&sim, &sid),
        ACCOUNT,
        TOKEN,
        &[("FriendlyName", "renamed")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(updated["friendly_name"], "renamed");
    assert_eq!(sim.api_keys().len(), 2);

    // Delete: 204, then the key is refused and gone.
    let (status, body) = request(Method::DELETE, &key_url(&sim, &sid), ACCOUNT, TOKEN).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = post_form(&messages_url(&sim), &sid, &secret, &MSG).await;
    assert_twilio_error(status, &body, 401, 20003);
    let (status, body) = request(Method::GET, &key_url(&sim, &sid), ACCOUNT, TOKEN).await;
    assert_twilio_error(status, &body, 404, 20404);
    let (status, body) = request(Method::DELETE, &key_url(&sim, &sid), ACCOUNT, TOKEN).await;
    assert_twilio_error(status, &body, 404, 20404);

    // The configured key can be revoked the same way.
    let (status, _) = request(Method::DELETE, &key_url(&sim, KEY_SID), ACCOUNT, TOKEN).await;
    assert_eq!(status, 204);
    let (status, body) = post_form(&messages_url(&sim), KEY_SID, KEY_SECRET, &MSG).await;
    assert_twilio_error(status, &body, 401, 20003);
    assert!(sim.api_keys().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_standard_key_cannot_manage_credentials() {
    let sim = start(config()).await;
    let (status, body) = post_form(
        &keys_url(&sim),
        KEY_SID,
        KEY_SECRET,
        &[("FriendlyName", "x")],
    )
    .await;
    assert_twilio_error(status, &body, 401, 20003);
    for (method, url) in [
        (Method::GET, keys_url(&sim)),
        (Method::GET, key_url(&sim, KEY_SID)),
        (Method::DELETE, key_url(&sim, KEY_SID)),
        (Method::GET, account_url(&sim)),
        (
            Method::POST,
            format!("{}/v1/AuthTokens/Secondary", sim.base_url()),
        ),
        (
            Method::POST,
            format!("{}/v1/AuthTokens/Promote", sim.base_url()),
        ),
    ] {
        let (status, body) = request(method.clone(), &url, KEY_SID, KEY_SECRET).await;
        assert_twilio_error(status, &body, 401, 20003);
    }
    // It still sends messages.
    let (status, _) = post_form(&messages_url(&sim), KEY_SID, KEY_SECRET, &MSG).await;
    assert_eq!(status, 201);
    assert_eq!(sim.api_keys().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn account_resource_shows_the_primary_token() {
    let sim = start(config()).await;
    let (status, account) = request(Method::GET, &account_url(&sim), ACCOUNT, TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(account["sid"], ACCOUNT);
    assert_eq!(account["status"], "active");
    assert_eq!(account["auth_token"], TOKEN);
    assert_eq!(
        account["uri"],
        format!("/2010-04-01/Accounts/{ACCOUNT}.json")
    );
    let other = format!(
        "{}/2010-04-01/Accounts/AC99999999999999999999999999999999.json",
        sim.base_url()
    );
    let (status, body) = request(Method::GET, &other, ACCOUNT, TOKEN).await;
    assert_twilio_error(status, &body, 404, 20404);
    sim.shutdown().await;
}

#[tokio::test]
async fn promoting_the_secondary_token_switches_authentication_and_signing() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    let secondary_url = format!("{}/v1/AuthTokens/Secondary", sim.base_url());
    let promote_url = format!("{}/v1/AuthTokens/Promote", sim.base_url());

    let (status, body) = request(Method::POST, &promote_url, ACCOUNT, TOKEN).await;
    assert_twilio_error(status, &body, 400, 20001);
    let (status, body) = request(Method::DELETE, &secondary_url, ACCOUNT, TOKEN).await;
    assert_twilio_error(status, &body, 404, 20404);

    let (status, created) = request(Method::POST, &secondary_url, ACCOUNT, TOKEN).await;
    assert_eq!(status, 201, "{created}");
    let new_token = created["secondary_auth_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(new_token.len(), 32);
    assert_eq!(created["account_sid"], ACCOUNT);
    assert_eq!(
        sim.secondary_auth_token().as_deref(),
        Some(new_token.as_str())
    );

    // A secondary token that has not been promoted is refused; the primary still works.
    let (status, body) = post_form(&messages_url(&sim), ACCOUNT, &new_token, &MSG).await;
    assert_twilio_error(status, &body, 401, 20003);
    let (status, _) = post_form(&messages_url(&sim), ACCOUNT, TOKEN, &MSG).await;
    assert_eq!(status, 201);
    sim.wait_idle().await;

    let (status, promoted) = request(Method::POST, &promote_url, ACCOUNT, TOKEN).await;
    assert_eq!(status, 200, "{promoted}");
    assert_eq!(promoted["auth_token"], new_token.as_str());
    assert_eq!(sim.auth_token(), new_token);
    assert_eq!(sim.secondary_auth_token(), None);

    // The old token is refused everywhere; the new one works.
    let (status, body) = post_form(&messages_url(&sim), ACCOUNT, TOKEN, &MSG).await;
    assert_twilio_error(status, &body, 401, 20003);
    let (status, body) = request(Method::GET, &account_url(&sim), ACCOUNT, TOKEN).await;
    assert_twilio_error(status, &body, 401, 20003);
    let (status, account) = request(Method::GET, &account_url(&sim), ACCOUNT, &new_token).await;
    assert_eq!(status, 200);
    assert_eq!(account["auth_token"], new_token.as_str());

    // Callbacks are now signed with the new token.
    let mut params = MSG.to_vec();
    let cb = rx.url("/status?after=promote");
    params.push(("StatusCallback", &cb));
    let (status, _) = post_form(&messages_url(&sim), ACCOUNT, &new_token, &params).await;
    assert_eq!(status, 201);
    sim.wait_idle().await;
    let got = rx.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_signed_with(&rx, r, &new_token);
        let url = rx.url(&r.path_and_query);
        assert_ne!(
            r.signature.as_deref(),
            Some(expected_signature(TOKEN, &url, &r.params).as_str())
        );
    }

    // A second rotation: create, delete (nothing to promote), create, promote.
    let (status, _) = request(Method::POST, &secondary_url, ACCOUNT, &new_token).await;
    assert_eq!(status, 201);
    let (status, _) = request(Method::DELETE, &secondary_url, ACCOUNT, &new_token).await;
    assert_eq!(status, 204);
    let (status, _) = request(Method::POST, &promote_url, ACCOUNT, &new_token).await;
    assert_eq!(status, 400);
    assert_eq!(sim.auth_token(), new_token);
    sim.shutdown().await;
}

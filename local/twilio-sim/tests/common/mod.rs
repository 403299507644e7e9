//! Helpers shared by the integration tests: a simulator, a REST client, a callback receiver.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::Sha1;
use twilio_sim::{SimConfig, SimHandle, Simulator};

/// Made-up credentials: nothing here is a real Twilio account.
pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub const TOKEN: &str = "test-auth-token-not-real";
pub const KEY_SID: &str = "SKfedcba9876543210fedcba9876543210";
pub const KEY_SECRET: &str = "test-key-secret-not-real";
pub const FROM: &str = "+15005550006";

pub fn config() -> SimConfig {
    let mut c = SimConfig::new(ACCOUNT, TOKEN);
    c.api_keys = vec![(KEY_SID.to_string(), KEY_SECRET.to_string())];
    c.seed = 42;
    c
}

pub async fn start(config: SimConfig) -> SimHandle {
    Simulator::start(config).await.expect("simulator starts")
}

pub fn messages_url(sim: &SimHandle) -> String {
    format!(
        "{}/2010-04-01/Accounts/{ACCOUNT}/Messages.json",
        sim.base_url()
    )
}

pub fn message_url(sim: &SimHandle, sid: &str) -> String {
    format!(
        "{}/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json",
        sim.base_url()
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// POSTs a create with the account's credentials; returns (status, JSON, Retry-After).
pub async fn create(sim: &SimHandle, params: &[(&str, &str)]) -> (u16, Value) {
    let resp = client()
        .post(messages_url(sim))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(params)
        .send()
        .await
        .expect("create request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

pub async fn get_json(url: &str) -> (u16, Value) {
    let resp = client()
        .get(url)
        .basic_auth(ACCOUNT, Some(TOKEN))
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

/// Asserts a Twilio error body `{code, message, more_info, status}`.
pub fn assert_twilio_error(status: u16, body: &Value, want_status: u16, want_code: u64) {
    assert_eq!(status, want_status, "HTTP status of {body}");
    assert_eq!(body["code"].as_u64(), Some(want_code), "code of {body}");
    assert_eq!(body["status"].as_u64(), Some(u64::from(want_status)));
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(
        body["more_info"].as_str(),
        Some(format!("https://www.twilio.com/docs/errors/{want_code}").as_str())
    );
}

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Path and query, as requested.
    pub path_and_query: String,
    pub signature: Option<String>,
    pub user_agent: Option<String>,
    pub content_type: Option<String>,
    pub idempotency_token: Option<String>,
    pub params: Vec<(String, String)>,
    pub raw_body: String,
}

impl Received {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on 127.0.0.1:0. Paths starting with `/fail` answer 500.
#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let store = Arc::clone(&got);
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let store = Arc::clone(&store);
            async move {
                let h = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let raw_body = String::from_utf8(body.to_vec()).expect("UTF-8 body");
                let params: Vec<(String, String)> =
                    serde_urlencoded::from_str(&raw_body).expect("form body");
                let path_and_query = uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default();
                let fail = uri.path().starts_with("/fail");
                store.lock().unwrap().push(Received {
                    path_and_query,
                    signature: h("x-twilio-signature"),
                    user_agent: h("user-agent"),
                    content_type: h("content-type"),
                    idempotency_token: h("i-twilio-idempotency-token"),
                    params,
                    raw_body,
                });
                if fail {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Self { base, got }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// `(MessageSid, MessageStatus)` of every callback, in arrival order.
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.received()
            .iter()
            .map(|r| {
                (
                    r.param("MessageSid").unwrap_or("").to_string(),
                    r.param("MessageStatus").unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

/// Twilio's signature, written out here independently of `twilio_sim::sign`: URL, then each
/// parameter name (sorted) followed by each of its values (sorted, de-duplicated).
pub fn expected_signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
    names.sort();
    names.dedup();
    let mut data = url.to_string();
    for name in names {
        let mut values: Vec<&str> = params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        values.sort();
        values.dedup();
        for v in values {
            data.push_str(name);
            data.push_str(v);
        }
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).expect("key");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a received callback's signature against the URL the receiver was asked for.
pub fn assert_signed(receiver: &Receiver, r: &Received) {
    let url = receiver.url(&r.path_and_query);
    let want = expected_signature(TOKEN, &url, &r.params);
    assert_eq!(
        r.signature.as_deref(),
        Some(want.as_str()),
        "signature of {url}"
    );
}

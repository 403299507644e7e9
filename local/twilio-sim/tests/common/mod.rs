//! Helpers shared by the integration tests: a simulator, a REST client, a callback receiver.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
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
    pub method: String,
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

/// The TwiML a receiver answers on `/twiml…` paths.
pub const TWIML_ANSWER: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>Acknowledged &amp; thanks</Say><Hangup/></Response>";

/// A webhook receiver on 127.0.0.1:0. Paths starting with `/fail` answer 500, paths starting
/// with `/twiml` answer 200 with [`TWIML_ANSWER`], paths starting with `/voice` answer the
/// TwiML in [`Receiver::set_voice_twiml`]; everything else answers 204. Form bodies are parsed
/// into `params`; JSON object bodies too (string values); GET query parameters too.
#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    got: Arc<Mutex<Vec<Received>>>,
    voice: Arc<Mutex<String>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let voice: Arc<Mutex<String>> = Arc::default();
        let store = Arc::clone(&got);
        let voice_twiml = Arc::clone(&voice);
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let store = Arc::clone(&store);
                let voice_twiml = Arc::clone(&voice_twiml);
                async move {
                    let h = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let raw_body = String::from_utf8(body.to_vec()).expect("UTF-8 body");
                    let content_type = h("content-type");
                    let params: Vec<(String, String)> = if method == Method::GET {
                        serde_urlencoded::from_str(uri.query().unwrap_or("")).expect("query")
                    } else if content_type.as_deref() == Some("application/json") {
                        let v: Value = serde_json::from_str(&raw_body).expect("JSON body");
                        v.as_object()
                            .expect("JSON object")
                            .iter()
                            .map(|(k, v)| {
                                (k.clone(), v.as_str().expect("string value").to_string())
                            })
                            .collect()
                    } else {
                        serde_urlencoded::from_str(&raw_body).expect("form body")
                    };
                    let path_and_query = uri
                        .path_and_query()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default();
                    let path = uri.path().to_string();
                    store.lock().unwrap().push(Received {
                        method: method.to_string(),
                        path_and_query,
                        signature: h("x-twilio-signature"),
                        user_agent: h("user-agent"),
                        content_type,
                        idempotency_token: h("i-twilio-idempotency-token"),
                        params,
                        raw_body,
                    });
                    let xml = [("content-type", "text/xml")];
                    if path.starts_with("/fail") {
                        StatusCode::INTERNAL_SERVER_ERROR.into_response()
                    } else if path.starts_with("/twiml") {
                        (StatusCode::OK, xml, TWIML_ANSWER).into_response()
                    } else if path.starts_with("/voice") {
                        let twiml = voice_twiml.lock().unwrap().clone();
                        (StatusCode::OK, xml, twiml).into_response()
                    } else {
                        StatusCode::NO_CONTENT.into_response()
                    }
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Self { base, got, voice }
    }

    /// The TwiML `/voice…` paths answer.
    pub fn set_voice_twiml(&self, twiml: &str) {
        *self.voice.lock().unwrap() = twiml.to_string();
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
    assert_signed_with(receiver, r, TOKEN);
}

/// Like [`assert_signed`] with another token. JSON requests: the body's SHA-256 must be the
/// URL's `bodySHA256` and only the URL is signed; GET requests: only the URL is signed.
pub fn assert_signed_with(receiver: &Receiver, r: &Received, token: &str) {
    let url = receiver.url(&r.path_and_query);
    let json = r.content_type.as_deref() == Some("application/json");
    if json {
        use sha2::Digest as _;
        let hash = hex::encode(sha2::Sha256::digest(r.raw_body.as_bytes()));
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let got: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        assert!(
            got.iter().any(|(k, v)| k == "bodySHA256" && *v == hash),
            "bodySHA256 of {url}"
        );
    }
    let signed_params = if json || r.method == "GET" {
        Vec::new()
    } else {
        r.params.clone()
    };
    let want = expected_signature(token, &url, &signed_params);
    assert_eq!(
        r.signature.as_deref(),
        Some(want.as_str()),
        "signature of {url}"
    );
}

pub fn calls_url(sim: &SimHandle) -> String {
    format!(
        "{}/2010-04-01/Accounts/{ACCOUNT}/Calls.json",
        sim.base_url()
    )
}

pub fn call_url(sim: &SimHandle, sid: &str) -> String {
    format!(
        "{}/2010-04-01/Accounts/{ACCOUNT}/Calls/{sid}.json",
        sim.base_url()
    )
}

/// POSTs form `params` to `url` with Basic `user:pass`; returns (status, JSON or Null).
pub async fn post_form(url: &str, user: &str, pass: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let resp = client()
        .post(url)
        .basic_auth(user, Some(pass))
        .form(params)
        .send()
        .await
        .expect("POST");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON body")
    };
    (status, body)
}

/// Sends `method` to `url` with Basic `user:pass`; returns (status, JSON or Null).
pub async fn request(method: reqwest::Method, url: &str, user: &str, pass: &str) -> (u16, Value) {
    let resp = client()
        .request(method, url)
        .basic_auth(user, Some(pass))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON body")
    };
    (status, body)
}

/// POSTs a call create with the account's credentials.
pub async fn create_call(sim: &SimHandle, params: &[(&str, &str)]) -> (u16, Value) {
    post_form(&calls_url(sim), ACCOUNT, TOKEN, params).await
}

/// TwiML with a one-digit `<Gather>` whose action is `action` (XML-escaped here).
pub fn gather_twiml(action: &str) -> String {
    let escaped = action.replace('&', "&amp;");
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Gather input=\"dtmf\" numDigits=\"1\" action=\"{escaped}\" method=\"POST\"><Say>Alert. Press 1 to acknowledge.</Say></Gather><Say>No input.</Say></Response>"
    )
}

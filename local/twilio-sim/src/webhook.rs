//! Signed webhook requests, shared by status callbacks, voice requests and inbound SMS.
//!
//! Three encodings, as Twilio sends them:
//! - form POST: the URL (fragment removed) is signed together with the sorted parameters;
//! - JSON POST: `bodySHA256=<hex sha256 of the raw body>` is appended to the URL's query string
//!   and the resulting URL alone is signed;
//! - GET: the parameters go in the query string and the resulting URL alone is signed.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::signature::sign;
use crate::sim::Inner;

/// How a webhook is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// `application/x-www-form-urlencoded` POST.
    Form,
    /// `application/json` POST with `bodySHA256` in the URL.
    Json,
    /// GET with the parameters in the query string.
    Get,
}

impl Encoding {
    /// How a webhook configured with `method` is sent: `GET` in the query string, otherwise a
    /// POST, JSON when `json` is set.
    pub(crate) fn for_method(method: &str, json: bool) -> Self {
        if method == "GET" {
            Self::Get
        } else if json {
            Self::Json
        } else {
            Self::Form
        }
    }
}

/// A webhook request, built and signed, ready to be sent (possibly several times).
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    /// The URL as configured (fragment included).
    pub(crate) url: String,
    /// The URL requested and signed (fragment removed; `bodySHA256` or GET parameters added).
    pub(crate) signed_url: String,
    /// The parameters carried (in the body, or in the query string for GET).
    pub(crate) params: Vec<(String, String)>,
    /// The raw request body (empty for GET).
    pub(crate) body: String,
    /// `X-Twilio-Signature`.
    pub(crate) signature: String,
    /// Retries allowed by an `#rc=N` connection override.
    pub(crate) retries: u32,
    pub(crate) encoding: Encoding,
}

/// The outcome of one attempt.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) status: Option<u16>,
    pub(crate) body: Option<String>,
    pub(crate) error: Option<String>,
}

/// One attempt of a signed webhook request and the receiver's answer: what the records of
/// status callbacks, voice requests and inbound SMS have alike. A record embeds it with
/// `#[serde(flatten)]`, so in JSON its fields stand beside the record's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookDelivery {
    /// The URL as configured (fragment included).
    pub url: String,
    /// The URL requested and signed (fragment removed; `bodySHA256=…` added for JSON, the
    /// parameters for GET).
    pub signed_url: String,
    /// Parameters, in the order sent.
    pub params: Vec<(String, String)>,
    /// `X-Twilio-Signature` header value.
    pub signature: String,
    /// 1 for the first attempt, then 2, 3… for `#rc=N` retries.
    pub attempt: u32,
    /// HTTP status of the receiver's answer.
    pub response_status: Option<u16>,
    /// Connection error, if no answer came.
    pub error: Option<String>,
}

impl WebhookDelivery {
    /// Attempt number `attempt` of `signed`, answered as `answer` says (its body aside).
    pub(crate) fn new(signed: &Signed, attempt: u32, answer: &Attempt) -> Self {
        Self {
            url: signed.url.clone(),
            signed_url: signed.signed_url.clone(),
            params: signed.params.clone(),
            signature: signed.signature.clone(),
            attempt,
            response_status: answer.status,
            error: answer.error.clone(),
        }
    }

    /// The value of the first parameter called `name`, in the order sent.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the receiver answered 2xx.
    pub fn succeeded(&self) -> bool {
        self.response_status
            .is_some_and(|s| (200..300).contains(&s))
    }
}

/// `rc=N` of a connection-override fragment (`#rc=3&rp=all`), clamped to Twilio's 0–5.
pub(crate) fn retry_count(fragment: &str) -> u32 {
    fragment
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "rc")
        .and_then(|(_, v)| v.parse::<u32>().ok())
        .map_or(0, |n| n.min(5))
}

fn with_query(url: &str, extra: &str) -> String {
    if extra.is_empty() {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{extra}")
}

/// Builds and signs a webhook request with `token`.
pub(crate) fn prepare(
    token: &str,
    url: &str,
    params: Vec<(String, String)>,
    encoding: Encoding,
) -> Signed {
    let (base, fragment) = match url.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (url, None),
    };
    let retries = fragment.map(retry_count).unwrap_or(0);
    let (signed_url, body, signature) = match encoding {
        Encoding::Form => {
            let body = serde_urlencoded::to_string(&params).unwrap_or_default();
            let signature = sign(token, base, &params);
            (base.to_string(), body, signature)
        }
        Encoding::Json => {
            let object: serde_json::Map<String, serde_json::Value> = params
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let body = serde_json::Value::Object(object).to_string();
            let hash = hex::encode(Sha256::digest(body.as_bytes()));
            let signed_url = with_query(base, &format!("bodySHA256={hash}"));
            let signature = sign(token, &signed_url, &[]);
            (signed_url, body, signature)
        }
        Encoding::Get => {
            let query = serde_urlencoded::to_string(&params).unwrap_or_default();
            let signed_url = with_query(base, &query);
            let signature = sign(token, &signed_url, &[]);
            (signed_url, String::new(), signature)
        }
    };
    Signed {
        url: url.to_string(),
        signed_url,
        params,
        body,
        signature,
        retries,
        encoding,
    }
}

/// Sends one attempt. `idempotency` is added as `I-Twilio-Idempotency-Token` (Twilio's retries).
pub(crate) async fn send(inner: &Inner, s: &Signed, idempotency: Option<String>) -> Attempt {
    // Signed over `signed_url`; requested where `deliver_to` says, with the original Host.
    let (target, host) = inner.delivery_target(&s.signed_url);
    let mut req = match s.encoding {
        Encoding::Get => inner.http.get(&target),
        Encoding::Form => inner
            .http
            .post(&target)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(s.body.clone()),
        Encoding::Json => inner
            .http
            .post(&target)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(s.body.clone()),
    };
    req = req.header("X-Twilio-Signature", &s.signature);
    if let Some(host) = host {
        req = req.header(reqwest::header::HOST, host);
    }
    if let Some(token) = idempotency {
        req = req.header("I-Twilio-Idempotency-Token", token);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.text().await.ok();
            Attempt {
                status: Some(status),
                body,
                error: None,
            }
        }
        Err(e) => Attempt {
            status: None,
            body: None,
            error: Some(error_chain(&e)),
        },
    }
}

/// Sends a signed request, retrying up to its `#rc=N` until one is answered 2xx; returns every
/// attempt, each with the body it was answered with. From the second attempt on, each carries
/// the idempotency token `{token_prefix}-{attempt}`.
pub(crate) async fn deliver(
    inner: &Inner,
    signed: &Signed,
    token_prefix: &str,
) -> Vec<(WebhookDelivery, Option<String>)> {
    let mut attempts = Vec::new();
    for attempt in 1..=signed.retries + 1 {
        let idempotency = (attempt > 1).then(|| format!("{token_prefix}-{attempt}"));
        let answer = send(inner, signed, idempotency).await;
        let delivery = WebhookDelivery::new(signed, attempt, &answer);
        let ok = delivery.succeeded();
        attempts.push((delivery, answer.body));
        if ok {
            break;
        }
    }
    attempts
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::tests::p;

    #[test]
    fn fragment_retry_count() {
        assert_eq!(retry_count("rc=3"), 3);
        assert_eq!(retry_count("ct=3000&rc=2&rp=all"), 2);
        assert_eq!(retry_count("rc=9"), 5);
        assert_eq!(retry_count("rp=all"), 0);
        assert_eq!(retry_count("rc=x"), 0);
    }

    #[test]
    fn json_signs_the_url_with_the_body_hash_only() {
        let s = prepare(
            "tok",
            "https://x.example/cb?a=1#rc=2",
            p(&[("B", "2"), ("A", "1")]),
            Encoding::Json,
        );
        let hash = hex::encode(Sha256::digest(s.body.as_bytes()));
        assert_eq!(
            s.signed_url,
            format!("https://x.example/cb?a=1&bodySHA256={hash}")
        );
        assert_eq!(s.signature, sign("tok", &s.signed_url, &[]));
        assert_eq!(s.retries, 2);
        let v: serde_json::Value = serde_json::from_str(&s.body).unwrap();
        assert_eq!(v["A"], "1");
        let no_query = prepare("tok", "https://x.example/cb", p(&[]), Encoding::Json);
        assert!(
            no_query
                .signed_url
                .starts_with("https://x.example/cb?bodySHA256=")
        );
    }

    #[test]
    fn get_puts_params_in_the_signed_url() {
        let s = prepare(
            "tok",
            "https://x.example/g",
            p(&[("Digits", "1 2")]),
            Encoding::Get,
        );
        assert_eq!(s.signed_url, "https://x.example/g?Digits=1+2");
        assert_eq!(s.signature, sign("tok", &s.signed_url, &[]));
        assert!(s.body.is_empty());
    }
}

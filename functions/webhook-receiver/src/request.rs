//! Webhook requests as API Gateway hands them over, and what of them Twilio signed.
//!
//! The Lambda decodes the raw event itself ([`ApiEvent`], [`decode_event`]) instead of letting
//! `lambda_http` do it, because of the query string, which is part of the signed URL:
//! - HTTP API (payload 2.0) events carry `rawQueryString`, the query exactly as sent, kept as is
//!   (`lambda_http` keeps it too).
//! - REST API (v1) events carry no raw query, only `multiValueQueryStringParameters` with
//!   *decoded* names and values. `lambda_http` turns them into a `HashMap` (the order is lost)
//!   and re-encodes them its own way. Here the JSON object is read in the order API Gateway wrote
//!   it and re-encoded the way Twilio and its SDKs encode query strings (Python's `urlencode`,
//!   [`signature::form_urlencode`]). That rebuilds the URL Twilio signed whenever the URL given to
//!   Twilio was itself encoded that way, as Herald's callback URLs are. Its limits: a query that
//!   was encoded differently (`%20` for a space, lowercase hex, `*` or `~` escaped or not as
//!   another encoder does, a `;` separator, a parameter without `=`) cannot be told apart once
//!   decoded and will not validate; use an HTTP API (v2), which passes the raw query, for such
//!   URLs.
//!
//! Bodies marked `isBase64Encoded` are decoded; header names may come in any case. The public
//! URL is `TWILIO_WEBHOOK_BASE_URL` (scheme, custom domain, stage path) + the route + the query.

use base64::Engine;
use herald::twilio::signature::{self, Payload, SignatureError, UrlVariant};
use lambda_http::{Body, Request, RequestExt};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value, json};

/// Which API Gateway payload a request came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKind {
    /// REST API, payload 1.0 (`httpMethod`, `multiValueQueryStringParameters`).
    RestV1,
    /// HTTP API, payload 2.0 (`rawPath`, `rawQueryString`).
    HttpV2,
}

/// A JSON object read in document order (`serde_json::Value` would sort its keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry::<String, V>()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Vis(std::marker::PhantomData))
    }
}

/// The parts of an API Gateway event (REST v1 or HTTP v2) a webhook needs, read in order.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiEvent {
    /// `"2.0"` for HTTP APIs; absent or `"1.0"` for REST APIs.
    #[serde(default)]
    pub version: Option<String>,
    /// v2: the path as requested.
    #[serde(default)]
    pub raw_path: Option<String>,
    /// v2: the query string as sent.
    #[serde(default)]
    pub raw_query_string: Option<String>,
    /// v1: the resource path.
    #[serde(default)]
    pub path: Option<String>,
    /// v1: the method.
    #[serde(default)]
    pub http_method: Option<String>,
    /// Both: the request context (v2 holds the method in `http.method`).
    #[serde(default)]
    pub request_context: Option<Value>,
    /// Both: headers (v2 joins repeated ones with `,`).
    #[serde(default)]
    pub headers: Option<Ordered<Option<String>>>,
    /// v1: every header's values.
    #[serde(default)]
    pub multi_value_headers: Option<Ordered<Option<Vec<String>>>>,
    /// v1: the last value of each query parameter, decoded.
    #[serde(default)]
    pub query_string_parameters: Option<Ordered<Option<String>>>,
    /// v1: every value of each query parameter, decoded, in the order sent.
    #[serde(default)]
    pub multi_value_query_string_parameters: Option<Ordered<Option<Vec<String>>>>,
    /// The body, base64 when `isBase64Encoded`.
    #[serde(default)]
    pub body: Option<String>,
    /// Whether `body` is base64.
    #[serde(default)]
    pub is_base64_encoded: bool,
}

impl ApiEvent {
    /// Which payload this is.
    pub fn kind(&self) -> ApiKind {
        if self.version.as_deref() == Some("2.0") || self.raw_path.is_some() {
            ApiKind::HttpV2
        } else {
            ApiKind::RestV1
        }
    }
}

/// Why an event could not be read as an HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The event is not JSON of the expected shape.
    #[error("not an API Gateway event: {0}")]
    Shape(String),
    /// No method or path.
    #[error("the event has no {0}")]
    Missing(&'static str),
    /// A method, path, query or header API Gateway would not have passed.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// `isBase64Encoded` with a body that is not base64.
    #[error("the body is not valid base64")]
    Base64,
}

impl DecodeError {
    /// The part of the event at fault, from a fixed list (`event`, `method`, `path`, `query`,
    /// `headers`, `body`): never a name or value the request chose.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Shape(_) => "event",
            Self::Missing(part) | Self::Invalid(part) => part,
            Self::Base64 => "body",
        }
    }
}

/// Rebuilds a REST API (v1) query string from its decoded parameters, in the order given,
/// encoded as Twilio encodes (see the module documentation for the limits).
pub fn rebuild_v1_query(event: &ApiEvent) -> String {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    match &event.multi_value_query_string_parameters {
        Some(Ordered(mv)) if !mv.is_empty() => {
            for (k, vs) in mv {
                for v in vs.iter().flatten() {
                    pairs.push((k, v));
                }
            }
        }
        _ => {
            for (k, v) in event.query_string_parameters.iter().flat_map(|o| &o.0) {
                if let Some(v) = v {
                    pairs.push((k, v));
                }
            }
        }
    }
    signature::form_urlencode(pairs)
}

/// Decodes raw event JSON into a request (see [`decode_event`]).
pub fn decode(json: &[u8]) -> Result<(Request, ApiKind), DecodeError> {
    let event: ApiEvent =
        serde_json::from_slice(json).map_err(|e| DecodeError::Shape(e.classify_name()))?;
    decode_event(event)
}

trait ClassifyName {
    fn classify_name(&self) -> String;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> String {
        // Never the event's text: only the category and the position.
        format!(
            "{:?} at line {} column {}",
            self.classify(),
            self.line(),
            self.column()
        )
    }
}

/// The request an API Gateway event describes, with the query string Twilio signed: as sent for
/// HTTP APIs (v2), rebuilt in order for REST APIs (v1). The body is decoded from base64 when
/// marked so. The raw path is kept (`RequestExt::raw_http_path`).
pub fn decode_event(event: ApiEvent) -> Result<(Request, ApiKind), DecodeError> {
    let kind = event.kind();
    let ctx_method = event
        .request_context
        .as_ref()
        .and_then(|c| c.pointer("/http/method"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let (method, path, query) = match kind {
        ApiKind::HttpV2 => (
            ctx_method,
            event.raw_path.clone(),
            event.raw_query_string.clone().unwrap_or_default(),
        ),
        ApiKind::RestV1 => (
            event.http_method.clone(),
            event.path.clone(),
            rebuild_v1_query(&event),
        ),
    };
    let method = method.ok_or(DecodeError::Missing("method"))?;
    let path = path.ok_or(DecodeError::Missing("path"))?;
    if !path.starts_with('/') {
        return Err(DecodeError::Invalid("path"));
    }
    if path.parse::<http::Uri>().is_err() {
        return Err(DecodeError::Invalid("path"));
    }
    let uri = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    let uri: http::Uri = uri.parse().map_err(|_| DecodeError::Invalid("query"))?;
    let method =
        http::Method::from_bytes(method.as_bytes()).map_err(|_| DecodeError::Invalid("method"))?;

    let mut headers = http::HeaderMap::new();
    let mut add = |name: &str, value: &str| -> Result<(), DecodeError> {
        // Header names in any case: HeaderName lowercases them.
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| DecodeError::Invalid("headers"))?;
        let value =
            http::HeaderValue::from_str(value).map_err(|_| DecodeError::Invalid("headers"))?;
        headers.append(name, value);
        Ok(())
    };
    match (&event.multi_value_headers, kind) {
        (Some(Ordered(mv)), ApiKind::RestV1) if !mv.is_empty() => {
            for (k, vs) in mv {
                for v in vs.iter().flatten() {
                    add(k, v)?;
                }
            }
        }
        _ => {
            for (k, v) in event.headers.iter().flat_map(|o| &o.0) {
                if let Some(v) = v {
                    add(k, v)?;
                }
            }
        }
    }

    let body = match event.body {
        None => Body::Empty,
        Some(b) if event.is_base64_encoded => Body::Binary(
            base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|_| DecodeError::Base64)?,
        ),
        Some(b) => Body::Text(b),
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(body)
        .map_err(|_| DecodeError::Invalid("request"))?;
    *req.headers_mut() = headers;
    Ok((req.with_raw_http_path(path), kind))
}

/// The API Gateway response (v1 or v2 shape) for `resp`: text bodies as they are, binary ones in
/// base64.
pub fn encode_response(kind: ApiKind, resp: http::Response<Body>) -> Value {
    let (parts, body) = resp.into_parts();
    let mut headers = Map::new();
    let mut multi = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_owned(), Value::String(values.join(",")));
        multi.insert(name.as_str().to_owned(), json!(values));
    }
    let (body, b64) = match body {
        Body::Empty => (Value::Null, false),
        Body::Text(t) => (Value::String(t), false),
        Body::Binary(b) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            true,
        ),
        _ => (Value::Null, false),
    };
    let status = parts.status.as_u16();
    match kind {
        ApiKind::RestV1 => json!({
            "statusCode": status,
            "headers": headers,
            "multiValueHeaders": multi,
            "body": body,
            "isBase64Encoded": b64,
        }),
        ApiKind::HttpV2 => json!({
            "statusCode": status,
            "headers": headers,
            "cookies": [],
            "body": body,
            "isBase64Encoded": b64,
        }),
    }
}

/// The URL Twilio requested: the configured public base, the route, and the query string as
/// it arrived (or as rebuilt for REST APIs).
pub fn public_url(base: &str, route: &str, query: Option<&str>) -> String {
    match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{base}{route}?{q}"),
        None => format!("{base}{route}"),
    }
}

/// The body of a signed request: form parameters, or the raw bytes of a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedBody {
    /// Form parameters, decoded, in order.
    Form(Vec<(String, String)>),
    /// A JSON body, as received.
    Json(Vec<u8>),
}

/// What Twilio signed in a request: the public URL, the body, and the `X-Twilio-Signature`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The public URL (base + route + query).
    pub url: String,
    /// The body.
    pub body: SignedBody,
    /// `X-Twilio-Signature` (empty when missing).
    pub signature: String,
}

impl Signed {
    /// Reads what was signed from `req`, sent to `route` under the public `base` URL. A body is
    /// JSON when `Content-Type` says `application/json` (its hash rides in the URL as
    /// `bodySHA256`), form-encoded otherwise.
    pub fn of(base: &str, route: &str, req: &Request) -> Self {
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let raw: &[u8] = req.body().as_ref();
        let body = if signature::is_json_content_type(header("content-type")) {
            SignedBody::Json(raw.to_vec())
        } else {
            SignedBody::Form(signature::parse_form(raw))
        };
        Self {
            url: public_url(base, route, req.uri().query()),
            body,
            signature: header("x-twilio-signature").to_owned(),
        }
    }

    /// The payload to check the signature against.
    pub fn payload(&self) -> Payload<'_> {
        match &self.body {
            SignedBody::Form(p) => Payload::Form(p),
            SignedBody::Json(b) => Payload::Json(b),
        }
    }

    /// Checks the signature with `auth_token` (constant time).
    pub fn check(&self, auth_token: &str) -> Result<UrlVariant, SignatureError> {
        signature::validate(auth_token, &self.url, self.payload(), &self.signature)
    }

    /// The string whose HMAC is the signature, for the URL as given (for JSON: the URL and the
    /// body bytes after it, which `bodySHA256` binds): two requests with the same canonical form
    /// are the same signed request.
    pub fn canonical(&self) -> Vec<u8> {
        match &self.body {
            SignedBody::Form(p) => signature::string_to_sign(
                &self.url,
                p.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .into_bytes(),
            SignedBody::Json(b) => {
                let mut s = self.url.clone().into_bytes();
                s.push(0);
                s.extend_from_slice(b);
                s
            }
        }
    }

    /// The request's parameters: the form's, or a JSON object's members (strings as they are,
    /// other values as JSON text). A JSON body that is not an object has none.
    pub fn params(&self) -> Vec<(String, String)> {
        match &self.body {
            SignedBody::Form(p) => p.clone(),
            SignedBody::Json(b) => match serde_json::from_slice::<Value>(b) {
                Ok(Value::Object(o)) => o
                    .into_iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => (k, s),
                        other => (k, other.to_string()),
                    })
                    .collect(),
                _ => Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_queries_are_rebuilt_in_order_and_encoded_as_twilio_does() {
        let event: ApiEvent = serde_json::from_str(
            r#"{"httpMethod":"POST","path":"/webhooks/twilio/message-status",
                "multiValueQueryStringParameters":{"z":["1"],"a":["x y","+&="],"mid":["m"]},
                "queryStringParameters":{"z":"1","a":"+&=","mid":"m"},
                "headers":{"X-Twilio-Signature":"s"},"body":null,"isBase64Encoded":false}"#,
        )
        .unwrap();
        assert_eq!(event.kind(), ApiKind::RestV1);
        assert_eq!(rebuild_v1_query(&event), "z=1&a=x+y&a=%2B%26%3D&mid=m");
        let (req, _) = decode_event(event).unwrap();
        assert_eq!(req.uri().query(), Some("z=1&a=x+y&a=%2B%26%3D&mid=m"));
        assert_eq!(req.headers().get("x-twilio-signature").unwrap(), "s");
    }

    #[test]
    fn v2_raw_queries_and_base64_bodies_are_kept_as_sent() {
        let event = json!({
            "version": "2.0", "rawPath": "/prod/webhooks/twilio/inbound-sms",
            "rawQueryString": "a=%7e&b=x%20y",
            "requestContext": {"http": {"method": "POST"}, "stage": "prod"},
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            "body": base64::engine::general_purpose::STANDARD.encode("Body=%C3%A9"),
            "isBase64Encoded": true,
        });
        let (req, kind) = decode(event.to_string().as_bytes()).unwrap();
        assert_eq!(kind, ApiKind::HttpV2);
        assert_eq!(req.uri().query(), Some("a=%7e&b=x%20y"));
        assert_eq!(req.raw_http_path(), "/prod/webhooks/twilio/inbound-sms");
        let body: &[u8] = req.body().as_ref();
        assert_eq!(body, b"Body=%C3%A9");
        let s = Signed::of("https://h", "/r", &req);
        assert_eq!(s.url, "https://h/r?a=%7e&b=x%20y");
        assert_eq!(s.params(), [("Body".to_owned(), "\u{e9}".to_owned())]);
    }

    #[test]
    fn malformed_events_are_errors_not_panics() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"version":"2.0","rawPath":"x","requestContext":{"http":{"method":"POST"}}}"#,
            r#"{"httpMethod":"P OST","path":"/a"}"#,
            r#"{"httpMethod":"POST","path":"/a","body":"***","isBase64Encoded":true}"#,
            r#"{"httpMethod":"POST","path":"/a","headers":{"bad name":"v"}}"#,
            r#"{"version":"2.0","rawPath":"/a","rawQueryString":"a b","requestContext":{"http":{"method":"GET"}}}"#,
        ] {
            assert!(decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_have_the_shape_of_their_api() {
        let resp = http::Response::builder()
            .status(200)
            .header("content-type", "text/xml")
            .body(Body::Text("<Response/>".into()))
            .unwrap();
        let v1 = encode_response(ApiKind::RestV1, resp);
        assert_eq!(v1["statusCode"], 200);
        assert_eq!(v1["multiValueHeaders"]["content-type"][0], "text/xml");
        assert_eq!(v1["body"], "<Response/>");
        let resp = http::Response::builder()
            .status(403)
            .body(Body::Binary(vec![0, 1]))
            .unwrap();
        let v2 = encode_response(ApiKind::HttpV2, resp);
        assert_eq!(v2["statusCode"], 403);
        assert_eq!(v2["isBase64Encoded"], true);
        assert_eq!(v2["body"], "AAE=");
    }
}

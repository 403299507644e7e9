//! API Gateway HTTP API (payload 2.0) events: what the local gateway and the tests build from a
//! plain HTTP request, so handlers always receive exactly what API Gateway would send.

use base64::Engine;
use serde_json::{Map, Value, json};

/// A plain HTTP request, as a client sent it.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest<'a> {
    /// `GET`, `POST` …
    pub method: &'a str,
    /// The raw path, e.g. `/v1/messages`.
    pub path: &'a str,
    /// The raw query string as sent, without `?` (empty for none).
    pub query: &'a str,
    /// Header names and values, in order; repeated names are joined with `,` as API Gateway does.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: &'a [u8],
}

/// The API Gateway v2 event for `req`.
pub fn event_v2(req: &HttpRequest<'_>, request_id: &str, now_ms: i64) -> Value {
    let mut headers = Map::new();
    for (name, value) in &req.headers {
        let name = name.to_ascii_lowercase();
        match headers.get_mut(&name) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(value);
            }
            _ => {
                headers.insert(name, Value::String(value.clone()));
            }
        }
    }
    let mut qs = Map::new();
    for (k, v) in url::form_urlencoded::parse(req.query.as_bytes()) {
        match qs.get_mut(k.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                qs.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    let (body, is_b64) = match std::str::from_utf8(req.body) {
        _ if req.body.is_empty() => (Value::Null, false),
        Ok(s) => (Value::String(s.to_owned()), false),
        Err(_) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(req.body)),
            true,
        ),
    };
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let host = match header("host") {
        h if h.is_empty() => "127.0.0.1".to_owned(),
        h => h,
    };
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": req.path,
        "rawQueryString": req.query,
        "headers": headers.clone(),
        "queryStringParameters": if qs.is_empty() { Value::Null } else { Value::Object(qs) },
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": "local",
            "http": {
                "method": req.method,
                "path": req.path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": header("user-agent"),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": "",
            "timeEpoch": now_ms,
        },
        "body": body,
        "isBase64Encoded": is_b64,
    })
}

/// Puts a JWT authorizer's context for `subject` into an event built by [`event_v2`], as API
/// Gateway does for a route with a JWT authorizer once the token is valid (the local gateway
/// does this for a known bearer API key).
pub fn with_jwt_subject(event: &mut Value, subject: &str) {
    if let Some(ctx) = event
        .get_mut("requestContext")
        .and_then(Value::as_object_mut)
    {
        ctx.insert(
            "authorizer".to_owned(),
            json!({
                "jwt": {
                    "claims": { "sub": subject, "iss": "herald-local" },
                    "scopes": null,
                }
            }),
        );
    }
}

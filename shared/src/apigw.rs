//! API Gateway HTTP API (payload 2.0) events: what the local gateway and the tests build from a
//! plain HTTP request, so handlers always receive exactly what API Gateway would send; and the
//! guard in front of `lambda_http`'s own conversion of an event, which panics on some headers,
//! paths and bodies a client can send ([`unreadable_part`]): the local gateway and the Lambda
//! entry point answer those `400` instead.

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

/// The part of an API Gateway event that `lambda_http` cannot turn into a request without
/// panicking (it `unwrap`s the URL it builds from the `Host` and `X-Forwarded-Proto` headers,
/// the stage and the path, and `expect`s the URI and a base64 body to be valid), named as a
/// problem's `field`: `headers.host`, `headers.x-forwarded-proto`, `path`, `query` or `body`.
/// `None` when the conversion is safe. The checks repeat `lambda_http`'s own steps with the same
/// crates, so what passes here converts.
pub fn unreadable_part(req: &lambda_http::request::LambdaRequest) -> Option<&'static str> {
    use lambda_http::request::LambdaRequest;
    match req {
        LambdaRequest::ApiGatewayV2(ag) => {
            let host =
                header_str(&ag.headers, "host").or(ag.request_context.domain_name.as_deref());
            let path = with_stage(
                &ag.request_context.stage,
                ag.raw_path.as_deref().unwrap_or(""),
            );
            let query = ag.raw_query_string.as_deref().unwrap_or("");
            check_uri(&ag.headers, host, &path, query)
                .or_else(|| check_body(ag.is_base64_encoded, ag.body.as_deref()))
        }
        LambdaRequest::ApiGatewayV1(ag) => {
            let host =
                header_str(&ag.headers, "host").or(ag.request_context.domain_name.as_deref());
            let path = with_stage(&ag.request_context.stage, ag.path.as_deref().unwrap_or(""));
            let query = if ag.multi_value_query_string_parameters.is_empty() {
                ag.query_string_parameters.to_query_string()
            } else {
                ag.multi_value_query_string_parameters.to_query_string()
            };
            check_uri(&ag.headers, host, &path, &query)
                .or_else(|| check_body(ag.is_base64_encoded, ag.body.as_deref()))
        }
        _ => None,
    }
}

/// Reads an API Gateway event (REST v1 or HTTP v2) into a request as `lambda_http` does, or
/// names what makes it unreadable (see [`unreadable_part`]; `event` when it is no such event).
pub fn read_request(event: &str) -> Result<lambda_http::Request, &'static str> {
    let req: lambda_http::request::LambdaRequest =
        serde_json::from_str(event).map_err(|_| "event")?;
    match unreadable_part(&req) {
        Some(part) => Err(part),
        None => Ok(req.into()),
    }
}

/// The `400 malformed-request` of an unreadable request, naming the part at fault.
pub fn unreadable(part: &'static str) -> http::Response<String> {
    crate::problem::Problem::new(crate::problem::ProblemKind::MalformedRequest)
        .detail("unreadable request")
        .field(part)
        .into_response()
}

/// The answer to an invocation that is not an API Gateway event at all: [`unreadable`]`("event")`
/// in the proxy response shape both payload versions share (`statusCode`, `headers`, `body`).
pub fn unreadable_event_answer() -> serde_json::Value {
    let answer = unreadable("event");
    serde_json::json!({
        "statusCode": answer.status().as_u16(),
        "headers": {"content-type": crate::problem::CONTENT_TYPE},
        "body": answer.into_body(),
        "isBase64Encoded": false,
    })
}

fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn with_stage(stage: &Option<String>, path: &str) -> String {
    if std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_some() {
        return path.into();
    }
    match stage.as_deref() {
        None | Some("$default") => path.into(),
        Some(stage) if path.starts_with(&format!("/{stage}/")) => path.into(),
        Some(stage) => format!("/{stage}{path}"),
    }
}

fn check_uri(
    headers: &http::HeaderMap,
    host: Option<&str>,
    path: &str,
    query: &str,
) -> Option<&'static str> {
    let mut uri = match host {
        None => match url::Url::parse(&format!("http://localhost{path}")) {
            Ok(u) => u.path().to_owned(),
            Err(_) => return Some("path"),
        },
        Some(host) => {
            let proto = header_str(headers, "x-forwarded-proto");
            let scheme = proto.unwrap_or("https");
            match url::Url::parse(&format!("{scheme}://{host}{path}")) {
                Ok(u) => u.to_string(),
                // Which of the three is at fault: try each with safe stand-ins for the others.
                Err(_) if url::Url::parse(&format!("https://{host}/")).is_err() => {
                    return Some("headers.host");
                }
                Err(_)
                    if proto.is_some() && url::Url::parse(&format!("{scheme}://h/")).is_err() =>
                {
                    return Some("headers.x-forwarded-proto");
                }
                Err(_) => return Some("path"),
            }
        }
    };
    if http::Uri::try_from(uri.as_str()).is_err() {
        return Some("path");
    }
    if !query.is_empty() {
        uri.push('?');
        uri.push_str(query);
        if http::Uri::try_from(uri).is_err() {
            return Some("query");
        }
    }
    None
}

fn check_body(base64: bool, body: Option<&str>) -> Option<&'static str> {
    match body {
        Some(b) if base64 && base64::engine::general_purpose::STANDARD.decode(b).is_err() => {
            Some("body")
        }
        _ => None,
    }
}

/// Makes an event that [`unreadable_part`] refused safe for `lambda_http` to convert: an empty
/// event of the same payload (so the `400` is answered in its shape), which converts to `GET /`.
pub fn defuse(req: &mut lambda_http::request::LambdaRequest) {
    use lambda_http::request::LambdaRequest;
    match req {
        LambdaRequest::ApiGatewayV2(ag) => *ag = Default::default(),
        LambdaRequest::ApiGatewayV1(ag) => *ag = Default::default(),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn v2(headers: &[(&str, &str)], path: &str, query: &str) -> Value {
        let req = HttpRequest {
            method: "GET",
            path,
            query,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: b"",
        };
        event_v2(&req, "r", 0)
    }

    /// A REST API (v1) event with these headers, path and decoded query parameters.
    fn v1(headers: &[(&str, &str)], path: &str, query: &[(&str, &str)]) -> Value {
        let headers: Map<String, Value> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let qs: Map<String, Value> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        json!({
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": "GET",
            "headers": headers,
            "multiValueHeaders": {},
            "queryStringParameters": qs,
            "multiValueQueryStringParameters": {},
            "requestContext": {
                "accountId": "000000000000", "resourceId": "x", "stage": "prod",
                "requestId": "r", "identity": {}, "resourcePath": "/{proxy+}",
                "httpMethod": "GET", "apiId": "local",
            },
            "body": null,
            "isBase64Encoded": false,
        })
    }

    fn lambda_http_panics(event: &str) -> bool {
        std::panic::catch_unwind(|| lambda_http::request::from_str(event)).is_err()
    }

    #[test]
    fn what_lambda_http_would_panic_on_is_named_instead_in_both_payloads() {
        let mut bad_b64 = v2(&[], "/v1/messages", "");
        bad_b64["body"] = json!("not base64!");
        bad_b64["isBase64Encoded"] = json!(true);
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "v2 Host: a b",
                v2(&[("host", "a b")], "/health", ""),
                "headers.host",
            ),
            (
                "v2 Host: [",
                v2(&[("host", "[")], "/health", ""),
                "headers.host",
            ),
            (
                "v2 X-Forwarded-Proto: 1",
                v2(&[("x-forwarded-proto", "1")], "/health", ""),
                "headers.x-forwarded-proto",
            ),
            (
                "v2 X-Forwarded-Proto: a b",
                v2(&[("x-forwarded-proto", "a b")], "/v1/messages", ""),
                "headers.x-forwarded-proto",
            ),
            ("v2 path :x", v2(&[], ":x", ""), "path"),
            (
                "v2 query with a space",
                v2(&[], "/v1/messages", "a b"),
                "query",
            ),
            ("v2 body not base64", bad_b64, "body"),
            (
                "v1 Host: a b",
                v1(&[("Host", "a b")], "/prod/health", &[]),
                "headers.host",
            ),
            (
                "v1 Host: [",
                v1(&[("host", "[")], "/v1/messages", &[("limit", "1")]),
                "headers.host",
            ),
            (
                "v1 X-Forwarded-Proto: 1",
                v1(&[("Host", "h"), ("X-Forwarded-Proto", "1")], "/health", &[]),
                "headers.x-forwarded-proto",
            ),
        ];
        for (what, event, field) in cases {
            let text = event.to_string();
            assert!(
                lambda_http_panics(&text),
                "{what}: lambda_http no longer panics"
            );
            assert_eq!(read_request(&text).err(), Some(field), "{what}");
            let mut typed: lambda_http::request::LambdaRequest =
                serde_json::from_str(&text).unwrap();
            defuse(&mut typed);
            assert_eq!(unreadable_part(&typed), None, "{what}: defused");
            let _: lambda_http::Request = typed.into();
        }
        let resp = unreadable("headers.host");
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let doc: Value = serde_json::from_str(resp.body()).unwrap();
        assert_eq!(doc["type"], "urn:herald:problem:malformed-request");
        assert_eq!(doc["field"], "headers.host");
    }

    /// Seeded fuzz: hostile hosts, schemes, stages, paths and query strings in both payloads.
    /// Whatever `read_request` lets through converts, and nothing it is given panics.
    #[test]
    fn fuzzed_headers_paths_and_queries_never_panic_and_what_is_read_converts() {
        const PIECES: &[&str] = &[
            "", "a", " ", "[", "]", ":", ":x", "@", "/", "//", "?", "#", "%", "%zz", "%00", "\\",
            "..", "é", "\u{0}", "\"", "<", "{", "|", "^", "`", "1", "h:1", "[::1]", "a b",
            "$default", "prod", "-", "*", "\t", "xn--", "ß", "\u{202e}",
        ];
        let mut rng = StdRng::seed_from_u64(15);
        let piece = |rng: &mut StdRng| -> String {
            (0..rng.random_range(0..4))
                .map(|_| PIECES[rng.random_range(0..PIECES.len())])
                .collect()
        };
        let (mut refused, mut read, mut would_panic) = (0, 0, 0);
        for i in 0..4000 {
            let host = piece(&mut rng);
            let proto = piece(&mut rng);
            let path = format!(
                "{}{}",
                if rng.random_bool(0.7) { "/" } else { "" },
                piece(&mut rng)
            );
            let query = piece(&mut rng);
            let stage = piece(&mut rng);
            let mut headers = vec![];
            if rng.random_bool(0.8) {
                headers.push(("host", host.as_str()));
            }
            if rng.random_bool(0.5) {
                headers.push(("x-forwarded-proto", proto.as_str()));
            }
            let mut event = if i % 2 == 0 {
                v2(&headers, &path, &query)
            } else {
                v1(
                    &headers,
                    &path,
                    &[("q", query.as_str()), (query.as_str(), "v")],
                )
            };
            event["requestContext"]["stage"] = json!(stage);
            if rng.random_bool(0.2) {
                event["requestContext"]["domainName"] = json!(piece(&mut rng));
            }
            let text = event.to_string();
            if lambda_http_panics(&text) {
                would_panic += 1;
            }
            // Events whose headers API Gateway could never send fail to parse: an error, no panic.
            match std::panic::catch_unwind(|| read_request(&text)) {
                Ok(Ok(_)) => read += 1,
                Ok(Err(_)) => refused += 1,
                Err(_) => panic!("read_request panicked on {text}"),
            }
        }
        assert!(
            refused > 100 && read > 100,
            "refused {refused}, read {read}"
        );
        assert!(
            would_panic > 100,
            "only {would_panic} events would have panicked lambda_http"
        );
    }
}

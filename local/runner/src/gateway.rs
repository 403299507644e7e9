//! A local stand-in for API Gateway (HTTP API, payload 2.0): every HTTP request becomes the same
//! event JSON API Gateway would send, decoded by `lambda_http` exactly as on AWS, and handed to
//! the function's handler.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use lambda_http::Body;

/// A handler as the Lambdas expose it.
pub type Handler = Arc<
    dyn Fn(
            lambda_http::Request,
        ) -> Pin<
            Box<
                dyn Future<Output = Result<lambda_http::Response<Body>, lambda_http::Error>> + Send,
            >,
        > + Send
        + Sync,
>;

/// Routes: the function serving each path prefix.
#[derive(Clone)]
pub struct Routes {
    /// `(path prefix, function name, handler)`, first match wins.
    pub routes: Vec<(&'static str, &'static str, Handler)>,
    /// Bearer API keys and the caller each stands for. A request with
    /// `Authorization: Bearer <key>` of a known key reaches the handler with a JWT-authorizer
    /// request context whose `sub` is that caller, as API Gateway's JWT authorizer does on AWS;
    /// any other request carries no identity (the API answers `401`).
    pub api_keys: Arc<std::collections::HashMap<String, String>>,
}

/// The caller a request's `Authorization: Bearer <key>` header stands for, if the key is known.
pub fn bearer_caller<'a>(
    keys: &'a std::collections::HashMap<String, String>,
    headers: &HeaderMap,
) -> Option<&'a str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, key) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let key = key.trim();
    // Compare every key in constant time, so timing does not tell how much of a key was right.
    let mut found = None;
    for (k, caller) in keys {
        if bool::from(subtle::ConstantTimeEq::ct_eq(k.as_bytes(), key.as_bytes())) {
            found = Some(caller.as_str());
        }
    }
    found
}

async fn dispatch(
    State(routes): State<Arc<Routes>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((_, function, handler)) = routes
        .routes
        .iter()
        .find(|(prefix, _, _)| uri.path().starts_with(prefix))
    else {
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "application/problem+json")],
            r#"{"type":"urn:herald:problem:not-found","title":"Not found","status":404}"#,
        )
            .into_response();
    };
    let now_ms = herald::ports::Clock::now_ms(&herald::ports::SystemClock);
    let request_id = ulid::Ulid::new().to_string();
    let req = herald::apigw::HttpRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: &body,
    };
    let mut event = herald::apigw::event_v2(&req, &request_id, now_ms);
    if let Some(caller) = bearer_caller(&routes.api_keys, &headers) {
        herald::apigw::with_jwt_subject(&mut event, caller);
    }
    // As on AWS: what lambda_http cannot read is answered 400 before it could panic.
    let req = match herald::apigw::read_request(&event.to_string()) {
        Ok(r) => r,
        Err(part) => return herald::apigw::unreadable(part).map(axum::body::Body::from),
    };
    let span = herald::telemetry::invocation_span(function, &request_id);
    // As on AWS: a handler that panics is answered 500, not a dropped connection.
    let answer = herald::panics::catch(tracing::Instrument::instrument(handler(req), span)).await;
    let Ok(answer) = answer else {
        return herald::panics::response().map(axum::body::Body::from);
    };
    match answer {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let bytes: Vec<u8> = match body {
                Body::Empty => Vec::new(),
                Body::Text(t) => t.into_bytes(),
                Body::Binary(b) => b,
                _ => Vec::new(),
            };
            Response::from_parts(parts, axum::body::Body::from(bytes))
        }
        Err(e) => {
            tracing::error!(error = %e, "handler failed");
            (StatusCode::BAD_GATEWAY, [("content-type", "application/problem+json")], r#"{"type":"urn:herald:problem:unavailable","title":"Temporarily unavailable","status":502}"#).into_response()
        }
    }
}

/// The axum router of the local gateway.
pub fn router(routes: Routes) -> axum::Router {
    axum::Router::new()
        .fallback(dispatch)
        .with_state(Arc::new(routes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends `head` (the request line and headers) to a gateway in front of a handler that
    /// answers every request it gets `200`, and returns the raw answer.
    async fn exchange(head: &str) -> String {
        let ok: Handler = Arc::new(|_req| {
            Box::pin(async { Ok(lambda_http::Response::new(Body::from("reached"))) })
        });
        exchange_with(ok, head).await
    }

    /// As [`exchange`], in front of `handler`.
    async fn exchange_with(handler: Handler, head: &str) -> String {
        let routes = Routes {
            routes: vec![("/", "send-sms", handler)],
            api_keys: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router(routes)).await });
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        server.abort();
        answer
    }

    /// Before, a handler that panicked dropped the connection (hyper's task unwound).
    #[tokio::test]
    async fn a_handler_that_panics_is_answered_500_problem_json() {
        let panics: Handler = Arc::new(|req| {
            Box::pin(async move {
                let path = req.uri().path().to_owned();
                panic!("handler saw {path}")
            })
        });
        let answer = exchange_with(panics, "GET /v1/messages/x HTTP/1.1\r\nHost: h\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        assert!(
            answer.contains("urn:herald:problem:internal-error"),
            "{answer}"
        );
        assert!(!answer.contains("/v1/messages/x"), "{answer}");
    }

    /// Before, these dropped the connection: lambda_http panicked turning the event into a
    /// request.
    #[tokio::test]
    async fn headers_lambda_http_cannot_read_are_answered_400_naming_the_header() {
        for (head, field) in [
            ("GET /health HTTP/1.1\r\nHost: a b\r\n", "headers.host"),
            ("GET /health HTTP/1.1\r\nHost: [\r\n", "headers.host"),
            (
                "GET /v1/messages HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: 1\r\n",
                "headers.x-forwarded-proto",
            ),
            (
                "POST /v1/messages HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: a b\r\nContent-Length: 0\r\n",
                "headers.x-forwarded-proto",
            ),
        ] {
            let answer = exchange(head).await;
            assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
            assert!(answer.contains("application/problem+json"), "{answer}");
            assert!(
                answer.contains("urn:herald:problem:malformed-request"),
                "{answer}"
            );
            assert!(
                answer.contains(&format!("\"field\":\"{field}\"")),
                "{answer}"
            );
            assert!(!answer.contains("reached"), "{answer}");
        }
        let fine =
            exchange("GET /health HTTP/1.1\r\nHost: localhost:8080\r\nX-Forwarded-Proto: http\r\n")
                .await;
        assert!(
            fine.starts_with("HTTP/1.1 200") && fine.contains("reached"),
            "{fine}"
        );
    }
}

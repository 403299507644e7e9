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
    let req = match lambda_http::request::from_str(&event.to_string()) {
        Ok(r) => r,
        Err(_) => return (StatusCode::BAD_REQUEST, "unreadable request").into_response(),
    };
    let span = herald::telemetry::invocation_span(function, &request_id);
    match tracing::Instrument::instrument(handler(req), span).await {
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

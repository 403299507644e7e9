//! Who is calling: the identity API Gateway puts in the request context. On AWS it is the
//! JWT authorizer's `sub` claim (or the IAM caller of an IAM-authorised route); locally the
//! gateway maps `Authorization: Bearer <key>` to the same JWT-authorizer context, so handlers
//! read one thing everywhere. No identity: `401`.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::problem::{Problem, ProblemKind};

/// The caller's identity: the JWT `sub` claim, else the IAM caller's ARN (`None`: anonymous).
pub fn caller(req: &Request) -> Option<String> {
    let id = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().and_then(|a| {
            a.jwt
                .as_ref()
                .and_then(|j| j.claims.get("sub").cloned())
                .or_else(|| a.iam.as_ref().and_then(|i| i.user_arn.clone()))
        }),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx
            .authorizer
            .fields
            .get("claims")
            .and_then(|c| c.get("sub"))
            .and_then(|s| s.as_str().map(str::to_owned))
            .or_else(|| ctx.identity.user_arn.clone()),
        _ => None,
    };
    id.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The `401` answer to a request without an identity.
pub fn unauthorized() -> http::Response<String> {
    let mut resp = Problem::new(ProblemKind::Unauthorized)
        .detail("send a bearer token (Authorization: Bearer …)")
        .into_response();
    resp.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apigw::{HttpRequest, event_v2, with_jwt_subject};

    fn req(sub: Option<&str>) -> Request {
        let mut ev = event_v2(
            &HttpRequest {
                method: "GET",
                path: "/v1/messages",
                ..Default::default()
            },
            "r",
            0,
        );
        if let Some(sub) = sub {
            with_jwt_subject(&mut ev, sub);
        }
        lambda_http::request::from_str(&ev.to_string()).unwrap()
    }

    #[test]
    fn the_jwt_subject_is_the_caller() {
        assert_eq!(caller(&req(Some("svc-a"))).as_deref(), Some("svc-a"));
        assert_eq!(caller(&req(None)), None);
        assert_eq!(caller(&req(Some("  "))), None);
        assert_eq!(unauthorized().status(), 401);
    }
}

//! `Idempotency-Key` on the POSTs that send. The first request with a key (per caller) does
//! the work and its response is kept; a repeat with the same payload gets that response again
//! (`Idempotent-Replayed: true`) and sends nothing; the same key with another payload is `422`,
//! and while the first is still being handled, `409`. Keys expire after
//! `IDEMPOTENCY_KEY_TTL_SECS`. Responses that changed nothing (`429`, `5xx`) are not kept, so
//! a retry with the key starts again.

use std::future::Future;

use sha2::{Digest, Sha256};

use crate::ports::{Begun, StoredResponse};
use crate::problem::{Problem, ProblemKind};
use crate::service::Services;

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// The response header set on a replayed response.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Runs `work` at most once per (caller, `Idempotency-Key`) with this payload: the request's
/// method, path and body. Without the header, `work` simply runs.
pub async fn once<F, Fut>(
    svc: &Services,
    req: &lambda_http::Request,
    caller: &str,
    path: &str,
    work: F,
) -> http::Response<String>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = http::Response<String>>,
{
    let Some(raw) = req.headers().get(HEADER) else {
        return work().await;
    };
    let key = match raw.to_str() {
        Ok(k)
            if !k.is_empty()
                && k.len() <= MAX_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            k
        }
        _ => {
            return Problem::new(ProblemKind::InvalidField)
                .field("Idempotency-Key")
                .detail(format!("1 to {MAX_KEY_LEN} visible ASCII characters"))
                .into_response();
        }
    };
    let scoped = sha256_hex(&[caller.as_bytes(), key.as_bytes()]);
    let body: &[u8] = req.body().as_ref();
    let fingerprint = sha256_hex(&[req.method().as_str().as_bytes(), path.as_bytes(), body]);
    let now = svc.clock.now_ms();
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let lease = now.saturating_add(ms(svc.config.attempt_lease));
    let expires = now.saturating_add(ms(svc.config.protection.idempotency_ttl));
    let begun = svc
        .idempotency
        .begin(&scoped, &fingerprint, now, lease, expires)
        .await;
    match begun {
        Ok(Begun::Started) => {}
        Ok(Begun::Completed(stored)) => {
            let mut resp =
                crate::problem::respond(stored.status, &stored.content_type, stored.body);
            resp.headers_mut()
                .insert(REPLAYED_HEADER, http::HeaderValue::from_static("true"));
            return resp;
        }
        Ok(Begun::InProgress) => {
            return Problem::new(ProblemKind::IdempotencyKeyInUse)
                .field("Idempotency-Key")
                .detail("a request with this key is still being handled; retry shortly")
                .into_response();
        }
        Ok(Begun::Mismatch) => {
            return Problem::new(ProblemKind::IdempotencyKeyReused)
                .field("Idempotency-Key")
                .detail("this key was used with a different request")
                .into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "idempotency store unavailable");
            return Problem::new(ProblemKind::Unavailable)
                .detail("please retry")
                .into_response();
        }
    }
    let resp = work().await;
    let status = resp.status().as_u16();
    let kept = if status >= 500 || status == 429 {
        svc.idempotency.release(&scoped, &fingerprint).await
    } else {
        let stored = StoredResponse {
            status,
            content_type: resp
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_owned(),
            body: resp.body().clone(),
        };
        svc.idempotency
            .complete(&scoped, &fingerprint, &stored)
            .await
    };
    if let Err(e) = kept {
        // The work is done; a repeat within the lease answers 409, after it runs again.
        tracing::error!(error = %e, "could not record the idempotent response");
    }
    resp
}

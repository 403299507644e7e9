//! `Idempotency-Key` on the POSTs that send. The first request with a key (per caller) does
//! the work and its response is kept; a repeat with the same payload gets that response again
//! (`Idempotent-Replayed: true`) and sends nothing; the same key with another payload is `422`,
//! and while the first is still being handled, `409`. Keys expire after
//! `IDEMPOTENCY_KEY_TTL_SECS`. Responses that changed nothing (`429`, `5xx`) are not kept, so
//! a retry with the key starts again.
//!
//! A request that dies half-way (a Lambda timeout, a killed process) keeps no response; once its
//! lease ends, a retry with the same key and payload does the work again. So that it does not
//! record and send again what the first one did, the work gets a [`Keyed`]: the records it
//! creates take ids derived from the caller, the key, the payload and when this use of the key
//! began, and the retry finds them and goes on with them.

use std::future::Future;

use sha2::{Digest, Sha256};

use crate::crypto::CryptoError;
use crate::domain::{CallId, MessageId};
use crate::ports::{Begun, StoredResponse};
use crate::problem::{Problem, ProblemKind};
use crate::service::{Chaos, CrashPoint, Services};

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

/// The keyed-hash purpose of ids derived from an idempotency key.
const ID_PURPOSE: &str = "idempotent-record-id-v1";

/// One use of an `Idempotency-Key` by one caller, with one payload, that the work of [`once`]
/// runs under. The ids of what the work records are derived from it ([`Keyed::message_id`],
/// [`Keyed::call_id`]): the first request and every retry of it (after it died) derive the same
/// ids, another caller, key or payload, or a later use of the key (after it expired), others.
/// It holds hashes and a time only; `Debug` shows the time.
#[derive(Clone)]
pub struct Keyed {
    /// SHA-256 of the caller and the key.
    scoped: String,
    /// SHA-256 of the method, path and body.
    fingerprint: String,
    /// When this use of the key began (the first request of it).
    since_ms: i64,
    /// Whether this request took the key over from an earlier one that died.
    retry: bool,
}

impl std::fmt::Debug for Keyed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed")
            .field("since_ms", &self.since_ms)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Keyed {
    /// Whether an earlier request of this use of the key died half-way (this one took the key
    /// over once its lease ended): only then may records with the derived ids exist already, so
    /// only then are they looked up.
    pub fn is_retry(&self) -> bool {
        self.retry
    }

    /// The id of the message at `index` of the request (`0` for a single send): ordered by when
    /// this use of the key began, the rest a keyed hash (unguessable without Herald's key).
    pub async fn message_id(&self, svc: &Services, index: usize) -> Result<MessageId, CryptoError> {
        let seed = self.seed(svc, MessageId::PREFIX, index).await?;
        Ok(MessageId::derived(self.at(), seed))
    }

    /// The id of the call the request places.
    pub async fn call_id(&self, svc: &Services) -> Result<CallId, CryptoError> {
        let seed = self.seed(svc, CallId::PREFIX, 0).await?;
        Ok(CallId::derived(self.at(), seed))
    }

    fn at(&self) -> u64 {
        u64::try_from(self.since_ms).unwrap_or_default()
    }

    async fn seed(&self, svc: &Services, kind: &str, index: usize) -> Result<u128, CryptoError> {
        let mut data = Vec::with_capacity(160);
        for part in [
            self.scoped.as_bytes(),
            self.fingerprint.as_bytes(),
            &self.since_ms.to_be_bytes(),
            kind.as_bytes(),
            &(index as u64).to_be_bytes(),
        ] {
            data.extend_from_slice(&(part.len() as u64).to_be_bytes());
            data.extend_from_slice(part);
        }
        let hash = svc.vault.keyed_hash(ID_PURPOSE, &data).await?;
        hash.get(..32)
            .and_then(|h| u128::from_str_radix(h, 16).ok())
            .ok_or(CryptoError::Corrupt)
    }
}

/// Runs `work` at most once per (caller, `Idempotency-Key`) with this payload: the request's
/// method, path and body. Without the header, `work` simply runs, given `None`; with it, `work`
/// is given the [`Keyed`] use of the key to derive the ids of what it records from.
pub async fn once<F, Fut>(
    svc: &Services,
    req: &lambda_http::Request,
    caller: &str,
    path: &str,
    work: F,
) -> http::Response<String>
where
    F: FnOnce(Option<Keyed>) -> Fut,
    Fut: Future<Output = http::Response<String>>,
{
    let Some(raw) = req.headers().get(HEADER) else {
        let resp = work(None).await;
        if svc.chaos.crashes_at(CrashPoint::Answered) {
            return Chaos::death();
        }
        return resp;
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
    let since_ms = match begun {
        Ok(Begun::Started { since_ms }) => since_ms,
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
    };
    let resp = work(Some(Keyed {
        scoped: scoped.clone(),
        fingerprint: fingerprint.clone(),
        since_ms,
        retry: since_ms < now,
    }))
    .await;
    if Chaos::is_death(&resp) || svc.chaos.crashes_at(CrashPoint::Answered) {
        // The request died: nothing is kept, and the key's lease runs out.
        return Chaos::death();
    }
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

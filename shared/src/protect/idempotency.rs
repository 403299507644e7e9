//! `Idempotency-Key` on the POSTs that send. The first request with a key (per caller) does
//! the work and its response is kept; a repeat with the same payload gets that response again
//! (`Idempotent-Replayed: true`) and sends nothing; the same key with another payload is `422`,
//! and while the first is still being handled, `409`. Keys expire after
//! `IDEMPOTENCY_KEY_TTL_SECS`. Responses `429` and `5xx` are not kept, so a retry with the key
//! is handled again (going on with whatever the first try recorded, as below).
//!
//! A request that dies half-way (a Lambda timeout, a killed process) keeps no response; once its
//! lease ends, a retry with the same key and payload does the work again. So that it does not
//! record and send again what the first one did, the work gets a [`Keyed`]: the records it
//! creates take ids derived from the caller, the key, the payload and when this use of the key
//! began, and the retry finds them and goes on with them. A request answered `429` or `5xx`
//! lets go of the key the same way (its lease ends at once, the start is kept): a store write
//! that committed though the store answered an error is found by the retry, not made twice.
//!
//! The payload is known by its fingerprint: a keyed hash (HMAC-SHA256 under the vault's lookup
//! key, [`crate::crypto::Vault::keyed_hash`]) of the method, path and body, never a plain hash:
//! the body holds phone numbers and texts, and a plain hash of a number is found by trying them
//! all. Records begun before fingerprints were keyed hold the plain SHA-256; for as long as one
//! of them can live (`IDEMPOTENCY_KEY_TTL_SECS`, 24 h, past the upgrade; a takeover renews it
//! once), a request whose keyed fingerprint does not match is compared with its plain one
//! before it is refused (`422`), so a genuine retry across the upgrade is replayed, not refused.
//! That comparison costs a second store call only when a key is reused with another payload.

use std::future::Future;

use sha2::{Digest, Sha256};

use crate::crypto::CryptoError;
use crate::domain::{CallId, MessageId, VerificationId};
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

/// The key a caller's `Idempotency-Key` is kept under: SHA-256 of the caller and the key
/// (neither is personal data).
pub fn scoped_key(caller: &str, key: &str) -> String {
    sha256_hex(&[caller.as_bytes(), key.as_bytes()])
}

/// The keyed-hash purpose of ids derived from an idempotency key.
const ID_PURPOSE: &str = "idempotent-record-id-v1";

/// The keyed-hash purpose of a request's fingerprint.
const FINGERPRINT_PURPOSE: &str = "idempotency-fingerprint-v1";

/// The fingerprint of a request (`method`, `path`, `body`) kept beside its `Idempotency-Key`: a
/// keyed hash under the vault's lookup key (hex HMAC-SHA256), so that what is stored reveals
/// nothing of the body (a phone number in it cannot be found by hashing candidates) without
/// Herald's key. Equal requests give equal fingerprints under one vault, different ones under
/// another.
pub async fn keyed_fingerprint(
    vault: &crate::crypto::Vault,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<String, CryptoError> {
    let mut data = Vec::with_capacity(32 + method.len() + path.len() + body.len());
    for part in [method.as_bytes(), path.as_bytes(), body] {
        data.extend_from_slice(&(part.len() as u64).to_be_bytes());
        data.extend_from_slice(part);
    }
    vault.keyed_hash(FINGERPRINT_PURPOSE, &data).await
}

/// The fingerprint records begun before fingerprints were keyed hold: a plain SHA-256 of the
/// method, path and body. Only compared with, never stored for a new use of a key; dead code
/// once every such record has expired (one `IDEMPOTENCY_KEY_TTL_SECS` after the upgrade, two if
/// a takeover renewed one), and then to be removed.
pub fn legacy_fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    sha256_hex(&[method.as_bytes(), path.as_bytes(), body])
}

/// One use of an `Idempotency-Key` by one caller, with one payload, that the work of [`once`]
/// runs under. The ids of what the work records are derived from it ([`Keyed::message_id`],
/// [`Keyed::call_id`], [`Keyed::verification_id`]): the first request and every retry of it
/// (after it died, or answered `429` or `5xx`) derive the same ids, another caller, key or
/// payload, or a later use of the key (after it expired), others.
/// It holds hashes and a time only; `Debug` shows the time.
#[derive(Clone)]
pub struct Keyed {
    /// SHA-256 of the caller and the key.
    scoped: String,
    /// The fingerprint the key's record holds ([`keyed_fingerprint`]; for a use of the key begun
    /// before fingerprints were keyed, [`legacy_fingerprint`]).
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

    /// The id of the verification the request starts (`POST /v1/verifications`; the SMS that
    /// carries its code takes [`Keyed::message_id`] `0`).
    pub async fn verification_id(&self, svc: &Services) -> Result<VerificationId, CryptoError> {
        let seed = self.seed(svc, VerificationId::PREFIX, 0).await?;
        Ok(VerificationId::derived(self.at(), seed))
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
    let scoped = scoped_key(caller, key);
    let body: &[u8] = req.body().as_ref();
    let method = req.method().as_str();
    let fingerprint = match keyed_fingerprint(&svc.vault, method, path, body).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "keyed hash unavailable");
            return Problem::new(ProblemKind::Unavailable)
                .detail("please retry")
                .into_response();
        }
    };
    let now = svc.clock.now_ms();
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let lease = now.saturating_add(ms(svc.config.attempt_lease));
    let expires = now.saturating_add(ms(svc.config.protection.idempotency_ttl));
    let begun = svc
        .idempotency
        .begin(&scoped, &fingerprint, now, lease, expires)
        .await;
    let (fingerprint, begun) = match begun {
        Ok(Begun::Mismatch) => {
            let legacy = legacy_fingerprint(method, path, body);
            begin_legacy(svc, &scoped, fingerprint, legacy, now, lease, expires).await
        }
        other => (fingerprint, other),
    };
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

/// Begins a request whose keyed fingerprint found the key used with another one: the record
/// may be one begun before fingerprints were keyed, of this very request (a retry across the
/// upgrade), so the request's [`legacy_fingerprint`] is tried before it is refused. Returns the
/// fingerprint the key's record holds for this request, and what beginning came to.
async fn begin_legacy(
    svc: &Services,
    scoped: &str,
    keyed: String,
    legacy: String,
    now: i64,
    lease: i64,
    expires: i64,
) -> (String, Result<Begun, crate::ports::StoreError>) {
    let store = &svc.idempotency;
    match store.begin(scoped, &legacy, now, lease, expires).await {
        // Another payload whichever way it is hashed: refused.
        Ok(Begun::Mismatch) => (keyed, Ok(Begun::Mismatch)),
        // A new use of the key (the record went in between: expired, or let go): it must not
        // hold the plain hash, so it is let go at once and begun again with the keyed one (over
        // a record of another fingerprint whose lease ended, a new use).
        Ok(Begun::Started { since_ms }) if since_ms >= now => {
            if let Err(e) = store.release(scoped, &legacy).await {
                return (keyed, Err(e));
            }
            let again = store.begin(scoped, &keyed, now, lease, expires).await;
            (keyed, again)
        }
        // This request, begun before the upgrade: replayed, in progress, or taken over (it goes
        // on under the fingerprint its record holds, and derives the ids it derived then).
        other => (legacy, other),
    }
}

#[cfg(all(test, feature = "embedded"))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::adapters::embedded::{LocalKeyService, SqliteStore};
    use crate::crypto::Vault;
    use crate::ports::ManualClock;

    fn vault(master: u8) -> Vault {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let store = SqliteStore::in_memory(clock.clone()).expect("store");
        Vault::new(
            Arc::new(LocalKeyService::from_key(&[master; 32])),
            Arc::new(store),
            clock,
        )
    }

    #[tokio::test]
    async fn the_fingerprint_is_keyed_not_a_plain_hash_of_the_request() {
        let body = br#"{"to":"+14155552671","body":"Disk full"}"#;
        let (a, b) = (vault(1), vault(2));
        let fp = keyed_fingerprint(&a, "POST", "/v1/messages", body)
            .await
            .unwrap();
        assert_eq!(
            fp,
            keyed_fingerprint(&a, "POST", "/v1/messages", body)
                .await
                .unwrap(),
            "the same request, the same fingerprint"
        );
        assert_eq!(fp.len(), 64);
        let plain = legacy_fingerprint("POST", "/v1/messages", body);
        assert_ne!(fp, plain, "not the plain SHA-256");
        assert_ne!(
            fp,
            hex::encode(Sha256::digest(body)),
            "not the body's SHA-256"
        );
        assert_ne!(
            fp,
            keyed_fingerprint(&b, "POST", "/v1/messages", body)
                .await
                .unwrap(),
            "another vault key, another fingerprint"
        );
        assert_ne!(
            fp,
            keyed_fingerprint(&a, "POST", "/v1/messages/batch", body)
                .await
                .unwrap(),
            "another path, another fingerprint"
        );
    }
}

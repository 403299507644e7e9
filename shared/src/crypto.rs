//! Personal data at rest: AES-256-GCM envelope encryption under data keys from a key service
//! (KMS, or a local key), and keyed lookup tokens (HMAC-SHA256) of phone numbers.
//!
//! A sealed value is `b"H1" | u16 wrapped-key length | wrapped data key | 12-byte nonce |
//! ciphertext+tag`, with the record id as associated data, so a value copied onto another record
//! does not open. Data keys are cached and reused within bounds (age and use count); unwrapped
//! keys are cached by their wrapped bytes so reads cost one key-service call per data key.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::OnceCell;

use crate::ports::{Clock, KeyError, KeyService, Keyring, StoreError};
use crate::secret::Secret;

const MAGIC: &[u8; 2] = b"H1";
const NONCE_LEN: usize = 12;
/// The keyring entry that holds the wrapped lookup-token key.
pub const LOOKUP_KEY_NAME: &str = "lookup-token-hmac-v1";

/// Ciphertext of a piece of personal data. `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(#[serde(with = "b64")] pub Vec<u8>);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// A keyed hash of a phone number (hex HMAC-SHA256): equal numbers give equal tokens, and the
/// token does not reveal the number without the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LookupToken(pub String);

/// A fresh data key: the 32 plaintext bytes and the same key wrapped by the key service.
pub struct DataKey {
    /// The key itself; never stored.
    pub plaintext: Secret<[u8; 32]>,
    /// The key encrypted by the key service; stored beside the data.
    pub wrapped: Vec<u8>,
}

/// Why sealing or opening failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key service failed.
    #[error("key service: {0}")]
    Key(#[from] KeyError),
    /// The keyring store failed.
    #[error("keyring: {0}")]
    Store(#[from] StoreError),
    /// The sealed bytes are not in Herald's format, or fail authentication.
    #[error("sealed value is malformed or does not authenticate")]
    Corrupt,
}

/// How long and how often one data key is used for new values.
#[derive(Debug, Clone, Copy)]
pub struct KeyReuse {
    /// Maximum age of the cached data key, in milliseconds.
    pub max_age_ms: i64,
    /// Maximum number of values sealed under one data key.
    pub max_uses: u32,
}

impl Default for KeyReuse {
    fn default() -> Self {
        Self {
            max_age_ms: 5 * 60 * 1000,
            max_uses: 10_000,
        }
    }
}

struct CurrentKey {
    key: [u8; 32],
    wrapped: Vec<u8>,
    created_ms: i64,
    uses: u32,
}

/// Seals and opens personal data, and makes lookup tokens. Build one per process and share it.
pub struct Vault {
    keys: Arc<dyn KeyService>,
    keyring: Arc<dyn Keyring>,
    clock: Arc<dyn Clock>,
    reuse: KeyReuse,
    current: Mutex<Option<CurrentKey>>,
    opened: Mutex<HashMap<Vec<u8>, [u8; 32]>>,
    lookup_key: OnceCell<Secret<[u8; 32]>>,
}

const MAX_OPENED_KEYS: usize = 256;

impl Vault {
    /// A vault over a key service and the keyring that stores its lookup-token key.
    pub fn new(
        keys: Arc<dyn KeyService>,
        keyring: Arc<dyn Keyring>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::with_reuse(keys, keyring, clock, KeyReuse::default())
    }

    /// As [`Vault::new`], with explicit data-key reuse bounds.
    pub fn with_reuse(
        keys: Arc<dyn KeyService>,
        keyring: Arc<dyn Keyring>,
        clock: Arc<dyn Clock>,
        reuse: KeyReuse,
    ) -> Self {
        Self {
            keys,
            keyring,
            clock,
            reuse,
            current: Mutex::new(None),
            opened: Mutex::new(HashMap::new()),
            lookup_key: OnceCell::new(),
        }
    }

    async fn data_key(&self) -> Result<([u8; 32], Vec<u8>), CryptoError> {
        let now = self.clock.now_ms();
        {
            let mut cur = self.current.lock().expect("vault lock");
            if let Some(c) = cur.as_mut()
                && c.uses < self.reuse.max_uses
                && now - c.created_ms < self.reuse.max_age_ms
            {
                c.uses += 1;
                return Ok((c.key, c.wrapped.clone()));
            }
        }
        let fresh = self.keys.generate_data_key().await?;
        let key = *fresh.plaintext.expose();
        let wrapped = fresh.wrapped;
        self.remember(&wrapped, key);
        *self.current.lock().expect("vault lock") = Some(CurrentKey {
            key,
            wrapped: wrapped.clone(),
            created_ms: now,
            uses: 1,
        });
        Ok((key, wrapped))
    }

    fn remember(&self, wrapped: &[u8], key: [u8; 32]) {
        let mut opened = self.opened.lock().expect("vault lock");
        if opened.len() >= MAX_OPENED_KEYS {
            opened.clear();
        }
        opened.insert(wrapped.to_vec(), key);
    }

    async fn unwrap_key(&self, wrapped: &[u8]) -> Result<[u8; 32], CryptoError> {
        if let Some(k) = self.opened.lock().expect("vault lock").get(wrapped) {
            return Ok(*k);
        }
        let key = *self.keys.decrypt_data_key(wrapped).await?.expose();
        self.remember(wrapped, key);
        Ok(key)
    }

    /// Encrypts `plaintext`, bound to `aad` (the record id).
    pub async fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Sealed, CryptoError> {
        let (key, wrapped) = self.data_key().await?;
        let cipher = Aes256Gcm::new((&key).into());
        let nonce: [u8; NONCE_LEN] = rand::random();
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Corrupt)?;
        let wrapped_len = u16::try_from(wrapped.len()).map_err(|_| CryptoError::Corrupt)?;
        let mut out = Vec::with_capacity(4 + wrapped.len() + NONCE_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&wrapped_len.to_be_bytes());
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(Sealed(out))
    }

    /// Decrypts a value sealed for `aad`.
    pub async fn open(&self, aad: &str, sealed: &Sealed) -> Result<Secret<Vec<u8>>, CryptoError> {
        let b = &sealed.0;
        if b.len() < 4 || &b[..2] != MAGIC {
            return Err(CryptoError::Corrupt);
        }
        let wl = u16::from_be_bytes([b[2], b[3]]) as usize;
        if b.len() < 4 + wl + NONCE_LEN + 16 {
            return Err(CryptoError::Corrupt);
        }
        let wrapped = &b[4..4 + wl];
        let nonce = &b[4 + wl..4 + wl + NONCE_LEN];
        let ct = &b[4 + wl + NONCE_LEN..];
        let key = self.unwrap_key(wrapped).await?;
        let cipher = Aes256Gcm::new((&key).into());
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map(Secret::new)
            .map_err(|_| CryptoError::Corrupt)
    }

    /// Decrypts a value sealed for `aad` that holds UTF-8 text.
    pub async fn open_string(
        &self,
        aad: &str,
        sealed: &Sealed,
    ) -> Result<Secret<String>, CryptoError> {
        let bytes = self.open(aad, sealed).await?;
        String::from_utf8(bytes.expose().clone())
            .map(Secret::new)
            .map_err(|_| CryptoError::Corrupt)
    }

    async fn lookup_key(&self) -> Result<&Secret<[u8; 32]>, CryptoError> {
        self.lookup_key
            .get_or_try_init(|| async {
                let wrapped = match self.keyring.get_key(LOOKUP_KEY_NAME).await? {
                    Some(w) => w,
                    None => {
                        let fresh = self.keys.generate_data_key().await?;
                        self.keyring
                            .put_key_if_absent(LOOKUP_KEY_NAME, &fresh.wrapped)
                            .await?
                    }
                };
                let key = self.keys.decrypt_data_key(&wrapped).await?;
                Ok::<_, CryptoError>(key)
            })
            .await
    }

    /// The lookup token of an E.164 phone number.
    pub async fn lookup_token(&self, e164: &str) -> Result<LookupToken, CryptoError> {
        let key = self.lookup_key().await?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose()).expect("any key length");
        mac.update(b"phone:");
        mac.update(e164.as_bytes());
        Ok(LookupToken(hex::encode(mac.finalize().into_bytes())))
    }

    /// A keyed hash (HMAC-SHA256 under the lookup key from the keyring, hex) of `data` for
    /// `purpose` (domain-separated from lookup tokens and from other purposes): what Herald
    /// stores instead of a secret it must recognise later (one-time codes).
    pub async fn keyed_hash(&self, purpose: &str, data: &[u8]) -> Result<String, CryptoError> {
        let key = self.lookup_key().await?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose()).expect("any key length");
        mac.update(b"keyed-hash:");
        mac.update(&(purpose.len() as u64).to_be_bytes());
        mac.update(purpose.as_bytes());
        mac.update(data);
        Ok(hex::encode(mac.finalize().into_bytes()))
    }

    /// The token shared by the messages whose Twilio resources would match each other's: a
    /// keyed hash of the recipient (E.164) and the body, so that identical alerts can be found
    /// without either being stored in plain text.
    pub async fn match_token(&self, e164: &str, body: &str) -> Result<LookupToken, CryptoError> {
        let mut data = Vec::with_capacity(e164.len() + body.len() + 8);
        data.extend_from_slice(&(e164.len() as u64).to_be_bytes());
        data.extend_from_slice(e164.as_bytes());
        data.extend_from_slice(body.as_bytes());
        Ok(LookupToken(self.keyed_hash("sms-match", &data).await?))
    }
}

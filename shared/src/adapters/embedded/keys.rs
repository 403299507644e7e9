//! The local key service: data keys wrapped with AES-256-GCM under a master key kept in a file
//! (created with mode 0600 on first use), standing in for KMS on one machine.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;

use crate::crypto::DataKey;
use crate::ports::{KeyError, KeyService};
use crate::secret::Secret;

const MAGIC: &[u8; 2] = b"L1";

/// Wraps data keys under a local master key.
pub struct LocalKeyService {
    master: Aes256Gcm,
}

impl std::fmt::Debug for LocalKeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalKeyService(***)")
    }
}

impl LocalKeyService {
    /// Loads the master key from `path`, creating a random one there if the file does not exist.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "master key file must hold 32 bytes",
                    )
                })?;
                Ok(Self::from_key(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let key: [u8; 32] = rand::random();
                match super::private_options()
                    .write(true)
                    .create_new(true)
                    .open(path)
                {
                    Ok(mut f) => {
                        f.write_all(&key)?;
                        f.sync_all()?;
                        Ok(Self::from_key(&key))
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// A key service over a given master key (tests).
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self {
            master: Aes256Gcm::new(key.into()),
        }
    }
}

#[async_trait]
impl KeyService for LocalKeyService {
    async fn generate_data_key(&self) -> Result<DataKey, KeyError> {
        let key: [u8; 32] = rand::random();
        let nonce: [u8; 12] = rand::random();
        let ct = self
            .master
            .encrypt(Nonce::from_slice(&nonce), key.as_slice())
            .map_err(|_| KeyError::Refused)?;
        let mut wrapped = Vec::with_capacity(2 + 12 + ct.len());
        wrapped.extend_from_slice(MAGIC);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&ct);
        Ok(DataKey {
            plaintext: Secret::new(key),
            wrapped,
        })
    }

    async fn decrypt_data_key(&self, wrapped: &[u8]) -> Result<Secret<[u8; 32]>, KeyError> {
        if wrapped.len() < 14 || &wrapped[..2] != MAGIC {
            return Err(KeyError::Refused);
        }
        let pt = self
            .master
            .decrypt(Nonce::from_slice(&wrapped[2..14]), &wrapped[14..])
            .map_err(|_| KeyError::Refused)?;
        let key: [u8; 32] = pt.as_slice().try_into().map_err(|_| KeyError::Refused)?;
        Ok(Secret::new(key))
    }
}

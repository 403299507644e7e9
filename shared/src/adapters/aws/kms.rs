//! The KMS key service: 256-bit data keys generated and unwrapped by one KMS key.
//!
//! Every call names the configured key and an encryption context, so a data key wrapped by any
//! other key (or for any other purpose) is refused rather than silently unwrapped.

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use crate::crypto::DataKey;
use crate::ports::{KeyError, KeyService};
use crate::secret::Secret;

/// The encryption context bound to every data key Herald makes.
const CONTEXT: (&str, &str) = ("purpose", "herald-data-key");

/// KMS error codes that mean "this key, or this ciphertext, will not do" rather than "not now".
const REFUSALS: &[&str] = &[
    "InvalidCiphertextException",
    "IncorrectKeyException",
    "AccessDeniedException",
    "InvalidKeyUsageException",
    "NotFoundException",
    "DisabledException",
    "KMSInvalidStateException",
    "ValidationException",
];

/// Data keys from KMS under one key (id, ARN or alias).
///
/// Errors: a ciphertext KMS will not decrypt with this key (tampered, another key's, another
/// context's), and a key that is missing, disabled or not ours to use, are
/// [`KeyError::Refused`]; throttling, KMS internal errors and the network are
/// [`KeyError::Transient`], with the SDK error as source.
#[derive(Debug, Clone)]
pub struct KmsKeyService {
    client: Client,
    key_id: String,
}

impl KmsKeyService {
    /// A key service over `client` using the key `key_id`.
    pub fn new(client: Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
        }
    }
}

fn key_error<E, R>(err: SdkError<E, R>) -> KeyError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if err.code().is_some_and(|c| REFUSALS.contains(&c)) {
        KeyError::Refused
    } else {
        KeyError::Transient(Box::new(err))
    }
}

/// A missing field in a KMS answer: the service misbehaved, which may pass.
#[derive(Debug, thiserror::Error)]
#[error("KMS answered without {0}")]
struct Incomplete(&'static str);

#[async_trait]
impl KeyService for KmsKeyService {
    async fn generate_data_key(&self) -> Result<DataKey, KeyError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(CONTEXT.0, CONTEXT.1)
            .send()
            .await
            .map_err(key_error)?;
        let plaintext = out
            .plaintext
            .ok_or(KeyError::Transient(Box::new(Incomplete("a plaintext key"))))?
            .into_inner();
        let plaintext: [u8; 32] = plaintext
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Transient(Box::new(Incomplete("a 32-byte key"))))?;
        let wrapped = out
            .ciphertext_blob
            .ok_or(KeyError::Transient(Box::new(Incomplete("a wrapped key"))))?
            .into_inner();
        Ok(DataKey {
            plaintext: Secret::new(plaintext),
            wrapped,
        })
    }

    async fn decrypt_data_key(&self, wrapped: &[u8]) -> Result<Secret<[u8; 32]>, KeyError> {
        if wrapped.is_empty() {
            return Err(KeyError::Refused);
        }
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .encryption_context(CONTEXT.0, CONTEXT.1)
            .send()
            .await
            .map_err(key_error)?;
        let plaintext = out.plaintext.ok_or(KeyError::Refused)?.into_inner();
        let key: [u8; 32] = plaintext
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Refused)?;
        Ok(Secret::new(key))
    }
}

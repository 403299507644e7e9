//! The Twilio secret in a local JSON file (the same document Secrets Manager holds).

use std::path::PathBuf;

use async_trait::async_trait;

use crate::ports::{SecretError, SecretSource, TwilioCredentials};

/// Reads the credentials document from a file on every call (the cache sits above).
#[derive(Debug, Clone)]
pub struct FileSecretSource {
    path: PathBuf,
}

impl FileSecretSource {
    /// A source reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Writes `creds` to `path` (mode 0600), replacing it atomically.
    pub fn write(path: &std::path::Path, creds: &TwilioCredentials) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec_pretty(creds).map_err(std::io::Error::other)?;
        let mut file = super::private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        std::io::Write::write_all(&mut file, &json)?;
        std::fs::rename(tmp, path)
    }
}

#[async_trait]
impl SecretSource for FileSecretSource {
    async fn current(&self) -> Result<TwilioCredentials, SecretError> {
        let bytes = tokio::fs::read(&self.path).await.map_err(|e| {
            SecretError::Invalid(format!("cannot read the secret file: {}", e.kind()))
        })?;
        serde_json::from_slice(&bytes).map_err(|_| {
            SecretError::Invalid("the secret file is not a credentials document".into())
        })
    }
}

//! The Twilio credentials from Secrets Manager: the `AWSCURRENT` version of one secret, a JSON
//! document with the fields of [`TwilioCredentials`].

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;

use crate::Secret;
use crate::ports::{
    AWSCURRENT, SecretError, SecretMetadata, SecretSource, SecretValue, SecretVersions,
    TwilioCredentials,
};

/// Secrets Manager error codes that mean the secret cannot be had as configured (missing,
/// scheduled for deletion, not readable by this role), as opposed to "not now".
const INVALID: &[&str] = &[
    "ResourceNotFoundException",
    "InvalidRequestException",
    "InvalidParameterException",
    "DecryptionFailure",
    "AccessDeniedException",
];

/// The label a version carries between its put and the move of `AWSCURRENT` to it.
const INCOMING: &str = "HERALD_INCOMING";

/// Reads the credentials on every call (the cache sits above).
#[derive(Debug, Clone)]
pub struct SecretsManagerSource {
    client: Client,
    secret_id: String,
}

impl SecretsManagerSource {
    /// A source reading the secret `secret_id` (ARN or name).
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }
}

pub(crate) use crate::twilio::credentials::parse_credentials;

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn current(&self) -> Result<TwilioCredentials, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage("AWSCURRENT")
            .send()
            .await
            .map_err(|e| match e.code() {
                Some(code) if INVALID.contains(&code) => {
                    SecretError::Invalid(format!("Secrets Manager refused: {code}"))
                }
                _ => SecretError::Transient(Box::new(e)),
            })?;
        let text = out.secret_string.ok_or_else(|| {
            SecretError::Invalid(
                "the secret has no string value (binary secrets are not read)".into(),
            )
        })?;
        parse_credentials(&text)
    }
}

fn refused<E, R>(e: aws_sdk_secretsmanager::error::SdkError<E, R>) -> SecretError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match e.code() {
        Some(code) if INVALID.contains(&code) => {
            SecretError::Invalid(format!("Secrets Manager refused: {code}"))
        }
        _ => SecretError::Transient(Box::new(e)),
    }
}

/// Whether an error means "no such version, or no value yet".
fn no_value<E: ProvideErrorMetadata, R>(e: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> bool {
    e.code() == Some("ResourceNotFoundException")
}

impl SecretsManagerSource {
    async fn get(
        &self,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<Option<SecretValue>, SecretError> {
        let out = match self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .set_version_id(version_id.map(str::to_owned))
            .set_version_stage(stage.map(str::to_owned))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if no_value(&e) => {
                // A missing secret is an error; a missing version or value is `None`.
                self.describe().await?;
                return Ok(None);
            }
            Err(e) => return Err(refused(e)),
        };
        let Some(text) = out.secret_string else {
            return Ok(None);
        };
        Ok(Some(SecretValue {
            version_id: out.version_id.unwrap_or_default(),
            stages: out.version_stages.unwrap_or_default(),
            text: Secret::new(text),
        }))
    }
}

#[async_trait]
impl SecretVersions for SecretsManagerSource {
    async fn describe(&self) -> Result<SecretMetadata, SecretError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(refused)?;
        Ok(SecretMetadata {
            // moto leaves RotationEnabled out until rotation was configured.
            rotation_enabled: out.rotation_enabled.unwrap_or(false),
            versions: out
                .version_ids_to_stages
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
    }

    async fn get_by_stage(&self, stage: &str) -> Result<Option<SecretValue>, SecretError> {
        self.get(None, Some(stage)).await
    }

    async fn get_version(&self, version_id: &str) -> Result<Option<SecretValue>, SecretError> {
        self.get(Some(version_id), None).await
    }

    async fn put_version(
        &self,
        version_id: &str,
        text: &str,
        stages: &[&str],
    ) -> Result<(), SecretError> {
        // Secrets Manager refuses another value under an existing version; moto lets a pending
        // version be overwritten. Checking first gives both the contract's answer.
        if let Some(existing) = self.get_version(version_id).await? {
            if existing.text.expose() != text {
                return Err(SecretError::Invalid(
                    "the version exists with another value (versions are immutable)".into(),
                ));
            }
            for stage in stages {
                self.move_stage(stage, version_id).await?;
            }
            return Ok(());
        }
        // AWSCURRENT is moved with UpdateSecretVersionStage, never put: moto's PutSecretValue
        // with AWSCURRENT demotes the version it created the secret with, not the one that holds
        // AWSCURRENT after an UpdateSecretVersionStage, leaving two current versions.
        let mut put: Vec<String> = stages
            .iter()
            .filter(|s| **s != AWSCURRENT)
            .map(|s| (*s).to_owned())
            .collect();
        let makes_current = put.len() < stages.len();
        if makes_current && put.is_empty() {
            put.push(INCOMING.to_owned());
        }
        let result = self
            .client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .client_request_token(version_id)
            .secret_string(text)
            .set_version_stages(Some(put))
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceExistsException") => {
                return Err(SecretError::Invalid(
                    "the version exists with another value (versions are immutable)".into(),
                ));
            }
            Err(e) => return Err(refused(e)),
        }
        if makes_current {
            self.move_stage(AWSCURRENT, version_id).await?;
            self.remove_stage(INCOMING, version_id).await?;
        }
        Ok(())
    }

    async fn move_stage(&self, stage: &str, version_id: &str) -> Result<(), SecretError> {
        let meta = self.describe().await?;
        if !meta.versions.contains_key(version_id) {
            return Err(SecretError::Invalid("no such version".into()));
        }
        let from = meta.version_with(stage).map(str::to_owned);
        if from.as_deref() == Some(version_id) {
            return Ok(());
        }
        self.client
            .update_secret_version_stage()
            .secret_id(&self.secret_id)
            .version_stage(stage)
            .move_to_version_id(version_id)
            .set_remove_from_version_id(from)
            .send()
            .await
            .map_err(refused)?;
        Ok(())
    }

    async fn remove_stage(&self, stage: &str, version_id: &str) -> Result<(), SecretError> {
        if stage == AWSCURRENT {
            return Err(SecretError::Invalid(
                "AWSCURRENT is moved, never removed".into(),
            ));
        }
        if !self.describe().await?.has_stage(version_id, stage) {
            return Ok(());
        }
        self.client
            .update_secret_version_stage()
            .secret_id(&self.secret_id)
            .version_stage(stage)
            .remove_from_version_id(version_id)
            .send()
            .await
            .map_err(refused)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_document_is_invalid_and_not_quoted() {
        let text = r#"{"account_sid": "ACxyz", "api_key_sid": 42, "api_key_secret": "hunter2"}"#;
        let err = parse_credentials(text).unwrap_err();
        let shown = err.to_string();
        assert!(matches!(err, SecretError::Invalid(_)));
        assert!(
            !shown.contains("hunter2") && !shown.contains("ACxyz"),
            "{shown}"
        );
    }
}

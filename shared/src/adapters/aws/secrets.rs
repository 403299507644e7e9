//! The Twilio credentials from Secrets Manager: the `AWSCURRENT` version of one secret, a JSON
//! document with the fields of [`TwilioCredentials`].

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;

use crate::ports::{SecretError, SecretSource, TwilioCredentials};

/// Secrets Manager error codes that mean the secret cannot be had as configured (missing,
/// scheduled for deletion, not readable by this role), as opposed to "not now".
const INVALID: &[&str] = &[
    "ResourceNotFoundException",
    "InvalidRequestException",
    "InvalidParameterException",
    "DecryptionFailure",
    "AccessDeniedException",
];

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

/// Parses the credentials document. Errors name the problem, never the secret's text.
pub(crate) fn parse_credentials(text: &str) -> Result<TwilioCredentials, SecretError> {
    serde_json::from_str(text).map_err(|e| {
        SecretError::Invalid(format!(
            "the secret is not a credentials document ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

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

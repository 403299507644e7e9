//! Who a record is for: the number sealed, its lookup token, its masked form and its region.

use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, LookupToken, Sealed, Vault};
use crate::phone::PhoneNumber;

/// A record's recipient (a message's recipient, a call's callee), stored flattened into the
/// record's document as `to`, `to_token`, `to_masked` and `country`. Nothing here is plaintext
/// personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The number in E.164, encrypted with the record's id as associated data.
    #[serde(rename = "to")]
    pub sealed: Sealed,
    /// Keyed hash of the number, for opt-out, rate-limit and match lookups.
    #[serde(rename = "to_token")]
    pub token: LookupToken,
    /// The number as shown to people: `+*******2671`.
    #[serde(rename = "to_masked")]
    pub masked: String,
    /// ISO 3166 region of the number, such as `US`.
    pub country: Option<String>,
}

impl Recipient {
    /// `to`, sealed for the record whose id is `aad`, with its lookup token.
    pub async fn seal(vault: &Vault, aad: &str, to: &PhoneNumber) -> Result<Self, CryptoError> {
        Ok(Self {
            sealed: vault.seal(aad, to.e164().as_bytes()).await?,
            token: vault.lookup_token(to.e164()).await?,
            masked: to.masked().to_string(),
            country: to.country().map(str::to_owned),
        })
    }
}

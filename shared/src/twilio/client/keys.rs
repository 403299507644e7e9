//! Twilio credential management for the rotation: API keys (`Keys.json`, with the account's
//! auth token), the Account resource, and the Accounts v1 auth-token endpoints (secondary token,
//! promotion). A standard API key cannot manage credentials: these requests authenticate with
//! the account SID and its auth token.

use serde::Deserialize;

use super::{Client, TwilioError, is_sid};
use crate::Secret;
use crate::ports::TwilioCredentials;

/// An API key as listed (no secret).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct KeyResource {
    /// `SK…`.
    pub sid: String,
    /// Its `FriendlyName`.
    #[serde(default)]
    pub friendly_name: Option<String>,
}

/// A new API key: the only answer that shows its secret.
#[derive(Clone, Deserialize)]
pub struct NewKey {
    /// `SK…`.
    pub sid: String,
    /// Its `FriendlyName`.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// The secret.
    pub secret: Secret<String>,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("sid", &self.sid)
            .field("friendly_name", &self.friendly_name)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct KeyPage {
    keys: Vec<KeyResource>,
    next_page_uri: Option<String>,
}

#[derive(Deserialize)]
struct SecondaryToken {
    secondary_auth_token: Secret<String>,
}

#[derive(Deserialize)]
struct PromotedToken {
    auth_token: Secret<String>,
}

#[derive(Deserialize)]
struct AccountResource {
    sid: String,
}

/// The account SID and an auth token: what credential management authenticates with.
#[derive(Clone, Copy)]
pub struct AccountAuth<'a> {
    /// `AC…`.
    pub account_sid: &'a str,
    /// An auth token of the account.
    pub auth_token: &'a Secret<String>,
}

impl std::fmt::Debug for AccountAuth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountAuth")
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

impl<'a> AccountAuth<'a> {
    /// The account SID with the primary auth token of `creds`.
    pub fn of(creds: &'a TwilioCredentials) -> Self {
        Self {
            account_sid: &creds.account_sid,
            auth_token: &creds.auth_token,
        }
    }
}

impl Client {
    fn auth(&self, req: reqwest::RequestBuilder, auth: AccountAuth<'_>) -> reqwest::RequestBuilder {
        req.basic_auth(auth.account_sid, Some(auth.auth_token.expose()))
    }

    fn keys_url(&self, account_sid: &str, tail: &str) -> String {
        format!("{}/2010-04-01/Accounts/{account_sid}/{tail}", self.base_url)
    }

    /// `POST Keys.json`: a new standard API key named `friendly_name` (at most 64 characters).
    pub async fn create_key(
        &self,
        auth: AccountAuth<'_>,
        friendly_name: &str,
    ) -> Result<NewKey, TwilioError> {
        let req = self
            .http
            .post(self.keys_url(auth.account_sid, "Keys.json"))
            .form(&[("FriendlyName", friendly_name)]);
        self.send(self.auth(req, auth)).await
    }

    /// `GET Keys.json`: every API key of the account (pages followed).
    pub async fn list_keys(&self, auth: AccountAuth<'_>) -> Result<Vec<KeyResource>, TwilioError> {
        let mut url = Some(format!(
            "{}?PageSize=100",
            self.keys_url(auth.account_sid, "Keys.json")
        ));
        let mut found = Vec::new();
        while let Some(u) = url.take() {
            let page: KeyPage = self.send(self.auth(self.http.get(&u), auth)).await?;
            found.extend(page.keys);
            url = page
                .next_page_uri
                .filter(|n| n.starts_with('/'))
                .map(|n| format!("{}{n}", self.base_url));
        }
        Ok(found)
    }

    /// `DELETE Keys/{sid}.json`: revokes the key. `Ok(false)` when there was no such key.
    pub async fn delete_key(&self, auth: AccountAuth<'_>, sid: &str) -> Result<bool, TwilioError> {
        if !is_sid(sid, "SK") {
            return Err(TwilioError::Decode("not an API key SID".into()));
        }
        let req = self
            .http
            .delete(self.keys_url(auth.account_sid, &format!("Keys/{sid}.json")));
        match self.send_no_content(self.auth(req, auth)).await {
            Ok(()) => Ok(true),
            Err(TwilioError::Api { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET Accounts/{sid}.json` with the account SID and `auth.auth_token`: proves the token.
    pub async fn fetch_account(&self, auth: AccountAuth<'_>) -> Result<(), TwilioError> {
        let req = self.http.get(
            self.keys_url(auth.account_sid, "")
                .trim_end_matches('/')
                .to_owned()
                + ".json",
        );
        let account: AccountResource = self.send(self.auth(req, auth)).await?;
        if account.sid == auth.account_sid {
            Ok(())
        } else {
            Err(TwilioError::Decode("another account answered".into()))
        }
    }

    /// `GET Messages.json?PageSize=1` with the API key of `creds`: proves the key.
    pub async fn probe_key(&self, creds: &TwilioCredentials) -> Result<(), TwilioError> {
        let req = self
            .http
            .get(self.account_url(creds, "Messages.json?PageSize=1"))
            .basic_auth(&creds.api_key_sid, Some(creds.api_key_secret.expose()));
        let _: serde_json::Value = self.send(req).await?;
        Ok(())
    }

    /// `POST {accounts}/v1/AuthTokens/Secondary`: a new secondary auth token (replacing any).
    pub async fn create_secondary_auth_token(
        &self,
        accounts_base_url: &str,
        auth: AccountAuth<'_>,
    ) -> Result<Secret<String>, TwilioError> {
        let url = format!(
            "{}/v1/AuthTokens/Secondary",
            accounts_base_url.trim_end_matches('/')
        );
        let t: SecondaryToken = self.send(self.auth(self.http.post(url), auth)).await?;
        Ok(t.secondary_auth_token)
    }

    /// `POST {accounts}/v1/AuthTokens/Promote`: the secondary token becomes the primary; returns
    /// it. Twilio answers 400/20001 when there is no secondary token.
    pub async fn promote_auth_token(
        &self,
        accounts_base_url: &str,
        auth: AccountAuth<'_>,
    ) -> Result<Secret<String>, TwilioError> {
        let url = format!(
            "{}/v1/AuthTokens/Promote",
            accounts_base_url.trim_end_matches('/')
        );
        let t: PromotedToken = self.send(self.auth(self.http.post(url), auth)).await?;
        Ok(t.auth_token)
    }

    async fn send_no_content(&self, req: reqwest::RequestBuilder) -> Result<(), TwilioError> {
        let resp = req.send().await.map_err(TwilioError::from_reqwest)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let code = resp
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|b| b.get("code").and_then(serde_json::Value::as_u64))
            .and_then(|c| u32::try_from(c).ok());
        Err(TwilioError::Api {
            status: status.as_u16(),
            code,
            retry_after: None,
        })
    }
}

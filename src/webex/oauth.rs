//! OAuth: the token endpoint (refresh-token and authorization-code grants)
//! and the browser consent URL.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::*;

/// The token endpoint's answer.
#[derive(Clone, Deserialize)]
pub struct TokenGrant {
    pub access_token: SecretString,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    #[serde(default)]
    pub refresh_token_expires_in: Option<u64>,
    /// The granted scopes, space-separated.
    #[serde(default)]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("access_token", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Why a token grant failed.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The server refused (bad, expired or revoked refresh token; wrong client).
    #[error("the token endpoint refused: {0}")]
    Refused(String),
    /// The server could not be reached or did not answer properly.
    #[error("the token endpoint failed: {0}")]
    Unavailable(ApiError),
}

impl Client {
    /// `POST /access_token` with the refresh-token grant.
    pub async fn refresh_grant(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        refresh_token: &SecretString,
    ) -> Result<TokenGrant, GrantError> {
        self.grant(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
        ])
        .await
    }

    /// `POST /access_token` with the authorization-code grant and the PKCE verifier.
    pub async fn code_grant(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        code: &SecretString,
        redirect_uri: &str,
        code_verifier: &SecretString,
    ) -> Result<TokenGrant, GrantError> {
        self.grant(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
            ("code", code.expose_secret()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier.expose_secret()),
        ])
        .await
    }

    async fn grant(&self, form: &[(&str, &str)]) -> Result<TokenGrant, GrantError> {
        let req = self.http.post(self.url("access_token")).form(form);
        match self.send::<TokenGrant>(req, &new_tracking_id()).await {
            Ok(a) => Ok(a.value),
            Err(e @ ApiError::Status { status, .. })
                if (400..500).contains(&status) && status != 429 =>
            {
                Err(GrantError::Refused(e.to_string()))
            }
            Err(e) => Err(GrantError::Unavailable(e)),
        }
    }

    /// The browser consent URL: `{base}/authorize?client_id=..&response_type=code&redirect_uri=..&scope=..&state=..&code_challenge=..&code_challenge_method=S256`.
    pub fn authorize_url(
        &self,
        client_id: &str,
        redirect_uri: &str,
        scopes: &str,
        state: &str,
        code_challenge: &str,
    ) -> Url {
        let mut url = self.url("authorize");
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scopes)
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }
}

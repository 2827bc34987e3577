//! The browser side of the OAuth authorization-code flow: `GET /v1/authorize` (the
//! consent page, answered at once with its redirect), the one-time codes it hands out,
//! and their redemption by the token endpoint, with PKCE (`S256` only).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use super::model::state::SimState;
use super::model::tokens::{new_token, Grant};
use super::routes::auth::OAuthError;
use super::routes::errors::TrackingId;

/// How long an issued code can be redeemed (Webex does not document it; ten minutes is
/// the usual upper bound, RFC 6749 section 4.1.2).
const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// Length of an S256 `code_challenge`: 32 bytes of SHA-256 in unpadded base64url.
const S256_CHALLENGE_LEN: usize = 43;

/// What an issued code was granted for; the token request must match it.
#[derive(Clone, Debug)]
pub(crate) struct PendingCode {
    /// The client that asked for it.
    client_id: String,
    /// The `redirect_uri` of the authorization request, compared verbatim.
    redirect_uri: String,
    /// The S256 `code_challenge`, if the request used PKCE.
    code_challenge: Option<String>,
    /// The scope asked for (only logged: the answer reports the configured scopes).
    scope: Option<String>,
    /// When it was issued.
    issued: Instant,
}

/// Codes issued and not yet redeemed.
#[derive(Debug, Default)]
pub(crate) struct CodeStore {
    /// By code.
    pending: HashMap<String, PendingCode>,
}

impl CodeStore {
    /// Stores `pending` under a fresh random code and returns the code; forgets codes
    /// that have expired.
    fn issue(&mut self, pending: PendingCode) -> String {
        let now = pending.issued;
        self.pending
            .retain(|_, old| now.saturating_duration_since(old.issued) < CODE_LIFETIME);
        let code = new_token("code");
        self.pending.insert(code.clone(), pending);
        code
    }

    /// Removes `code` and returns what it was issued for: a code works at most once,
    /// whatever the outcome of the request that presents it.
    fn take(&mut self, code: &str) -> Option<PendingCode> {
        self.pending.remove(code)
    }
}

/// The query of an authorization request (all optional so that missing ones get an
/// OAuth error).
#[derive(Debug, Deserialize)]
pub(crate) struct AuthorizeQuery {
    client_id: Option<String>,
    response_type: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

/// `GET /v1/authorize`. Problems with the client or the redirect URI get a 400 OAuth
/// error body (there is nowhere safe to redirect to); every other outcome is a 302 to
/// the redirect URI with `code` or `error` (and `error_description`), plus `state`.
pub(crate) async fn authorize(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    query: Result<Query<AuthorizeQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => {
            return OAuthError::bad_request("invalid_request", rejection.body_text())
                .into_response(&tracking)
        }
    };
    match consent(&sim, &query) {
        Ok((redirect_uri, params)) => redirect(redirect_uri, &params, query.state.as_deref()),
        Err(error) => error.into_response(&tracking),
    }
}

/// Where the consent page sends the browser back: the redirect URI and the
/// parameters to append to its query (before `state`).
type Redirect = (Url, Vec<(&'static str, String)>);

/// Checks an authorization request. `Err` is answered directly (400); `Ok` gives the
/// redirect URI and the parameters to append to it (a code or an OAuth error).
fn consent(sim: &SimState, query: &AuthorizeQuery) -> Result<Redirect, OAuthError> {
    let config = &sim.config;
    if query.client_id.as_deref() != Some(config.client_id.as_str()) {
        return Err(OAuthError::bad_request(
            "invalid_client",
            "Unknown or missing client_id.",
        ));
    }
    let raw_redirect = query.redirect_uri.as_deref().ok_or_else(|| {
        OAuthError::bad_request("invalid_request", "The parameter redirect_uri is required.")
    })?;
    let redirect_uri = Url::parse(raw_redirect)
        .ok()
        .filter(|url| url.fragment().is_none())
        .ok_or_else(|| {
            OAuthError::bad_request(
                "invalid_request",
                "The redirect_uri must be an absolute URI without a fragment.",
            )
        })?;
    let refuse = |error: &'static str, description: &str| {
        Ok((
            redirect_uri.clone(),
            vec![
                ("error", error.to_owned()),
                ("error_description", description.to_owned()),
            ],
        ))
    };
    match query.response_type.as_deref() {
        Some("code") => {}
        None => {
            return refuse(
                "invalid_request",
                "The parameter response_type is required.",
            )
        }
        Some(_) => {
            return refuse(
                "unsupported_response_type",
                "Only response_type=code is supported.",
            )
        }
    }
    if let Err(description) = check_challenge(query) {
        return refuse("invalid_request", description);
    }
    if config.deny_consent {
        return refuse(
            "access_denied",
            "The user denied the authorization request.",
        );
    }
    let code = sim.codes().issue(PendingCode {
        client_id: config.client_id.clone(),
        redirect_uri: raw_redirect.to_owned(),
        code_challenge: query.code_challenge.clone(),
        scope: query.scope.clone(),
        issued: Instant::now(),
    });
    Ok((redirect_uri, vec![("code", code)]))
}

/// The PKCE parameters must be absent together or be an S256 method with a
/// well-formed challenge (`plain`, also the RFC 7636 default without a method, is not
/// supported).
fn check_challenge(query: &AuthorizeQuery) -> Result<(), &'static str> {
    const BAD_METHOD: &str = "Unsupported code_challenge_method: only S256 is supported.";
    const NO_CHALLENGE: &str =
        "The parameter code_challenge is required with code_challenge_method.";
    const NO_METHOD: &str = "The parameter code_challenge_method=S256 is required with \
        code_challenge (plain is not supported).";
    const BAD_CHALLENGE: &str = "The code_challenge must be the unpadded base64url SHA-256 \
        of the code_verifier (43 characters).";
    let challenge = query.code_challenge.as_deref();
    match (challenge, query.code_challenge_method.as_deref()) {
        (None, None) => Ok(()),
        (_, Some(method)) if method != "S256" => Err(BAD_METHOD),
        (None, Some(_)) => Err(NO_CHALLENGE),
        (Some(_), None) => Err(NO_METHOD),
        (Some(challenge), Some(_)) => {
            let well_formed =
                challenge.len() == S256_CHALLENGE_LEN && URL_SAFE_NO_PAD.decode(challenge).is_ok();
            well_formed.then_some(()).ok_or(BAD_CHALLENGE)
        }
    }
}

/// A 302 to `target` with `params` and then `state` (verbatim, if given) appended to
/// the query it already has.
fn redirect(mut target: Url, params: &[(&str, String)], state: Option<&str>) -> Response {
    {
        let mut query = target.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
    }
    match HeaderValue::from_str(target.as_str()) {
        Ok(location) => (StatusCode::FOUND, [(LOCATION, location)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The S256 code challenge of `verifier`: BASE64URL-NOPAD(SHA-256(verifier)).
pub(crate) fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// True for a verifier RFC 7636 allows: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// PKCE at the token endpoint: a code issued with a challenge needs the matching
/// verifier, and a code issued without one takes none (no downgrade).
fn check_verifier(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), &'static str> {
    const UNEXPECTED: &str = "PKCE: a code_verifier was sent but the authorization request \
        had no code_challenge.";
    const MISSING: &str =
        "PKCE verification failed: the parameter code_verifier is required for this code.";
    const MALFORMED: &str = "PKCE verification failed: the code_verifier must be 43 to 128 \
        characters of [A-Za-z0-9-._~].";
    const MISMATCH: &str =
        "PKCE verification failed: the code_verifier does not match the code_challenge.";
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(UNEXPECTED),
        (Some(_), None) => Err(MISSING),
        (Some(_), Some(verifier)) if !is_valid_verifier(verifier) => Err(MALFORMED),
        (Some(challenge), Some(verifier)) => (pkce_challenge(verifier) == challenge)
            .then_some(())
            .ok_or(MISMATCH),
    }
}

/// The fields of an authorization-code token request (client already authenticated).
#[derive(Debug)]
pub(crate) struct CodeRequest<'a> {
    /// `client_id` of the request.
    pub(crate) client_id: &'a str,
    /// `code`.
    pub(crate) code: Option<&'a str>,
    /// `redirect_uri`.
    pub(crate) redirect_uri: Option<&'a str>,
    /// `code_verifier`.
    pub(crate) code_verifier: Option<&'a str>,
}

/// Redeems an authorization code for a fresh access and refresh token. The code is used
/// up as soon as it is found, even when the request then fails.
pub(crate) fn redeem_code(sim: &SimState, request: &CodeRequest<'_>) -> Result<Grant, OAuthError> {
    let code = request.code.ok_or_else(|| {
        OAuthError::bad_request("invalid_request", "The parameter code is required.")
    })?;
    let redirect_uri = request.redirect_uri.ok_or_else(|| {
        OAuthError::bad_request("invalid_request", "The parameter redirect_uri is required.")
    })?;
    let now = Instant::now();
    let invalid = |description: &str| OAuthError::bad_request("invalid_grant", description);
    let pending = sim.codes().take(code).ok_or_else(|| {
        invalid("The authorization code is invalid, expired or was already used.")
    })?;
    if now.saturating_duration_since(pending.issued) >= CODE_LIFETIME {
        return Err(invalid("The authorization code has expired."));
    }
    if pending.client_id != request.client_id {
        return Err(invalid(
            "The authorization code was issued to another client.",
        ));
    }
    if pending.redirect_uri != redirect_uri {
        return Err(invalid(
            "The redirect_uri does not match the one of the authorization request.",
        ));
    }
    check_verifier(pending.code_challenge.as_deref(), request.code_verifier).map_err(invalid)?;
    tracing::debug!(scope = ?pending.scope, "simulator: authorization code redeemed");
    Ok(sim.tokens().issue(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_valid_verifier(verifier));
        assert_eq!(
            pkce_challenge(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifier_format() {
        assert!(!is_valid_verifier(&"a".repeat(42)));
        assert!(is_valid_verifier(&"a".repeat(128)));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        assert!(!is_valid_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn redirect_keeps_the_existing_query_and_encodes_state() {
        let target = Url::parse("http://127.0.0.1:8080/cb?x=1").unwrap();
        let response = redirect(target, &[("code", "c".to_owned())], Some("a b&c=d"));
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(
            response.headers()[LOCATION],
            "http://127.0.0.1:8080/cb?x=1&code=c&state=a+b%26c%3Dd"
        );
    }

    #[test]
    fn codes_expire_and_work_once() {
        let mut codes = CodeStore::default();
        let t0 = Instant::now();
        let pending = |issued| PendingCode {
            client_id: "c".to_owned(),
            redirect_uri: "http://x/".to_owned(),
            code_challenge: None,
            scope: None,
            issued,
        };
        let old = codes.issue(pending(t0));
        let fresh = codes.issue(pending(t0 + CODE_LIFETIME));
        assert!(codes.take(&old).is_none(), "expired codes are forgotten");
        assert!(codes.take(&fresh).is_some());
        assert!(codes.take(&fresh).is_none());
    }
}

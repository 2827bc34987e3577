//! The browser side of the OAuth authorization-code flow: `GET /v1/authorize` (the
//! consent page, answered at once with its redirect), and the redemption of its codes
//! by the token endpoint.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use url::Url;

use super::auth::OAuthError;
use super::errors::TrackingId;
use crate::sim::model::codes::{check_verifier, PendingCode, CODE_LIFETIME};
use crate::sim::model::state::SimState;
use crate::sim::model::tokens::Grant;

/// Length of an S256 `code_challenge`: 32 bytes of SHA-256 in unpadded base64url.
const S256_CHALLENGE_LEN: usize = 43;

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
    fn redirect_keeps_the_existing_query_and_encodes_state() {
        let target = Url::parse("http://127.0.0.1:8080/cb?x=1").unwrap();
        let response = redirect(target, &[("code", "c".to_owned())], Some("a b&c=d"));
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(
            response.headers()[LOCATION],
            "http://127.0.0.1:8080/cb?x=1&code=c&state=a+b%26c%3Dd"
        );
    }
}

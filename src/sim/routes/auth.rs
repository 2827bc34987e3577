//! The OAuth token endpoint `POST /v1/access_token` (refresh-token and
//! authorization-code grants), and the bearer token of an `Authorization` header.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;

use super::authorize::{redeem_code, CodeRequest};
use super::errors::TrackingId;
use crate::sim::model::state::SimState;
use crate::sim::model::tokens::Grant;
use crate::sim::SimConfig;

/// The bearer token of an `Authorization: Bearer <token>` header value.
pub(crate) fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The form fields of a token request (all optional so that missing ones get an OAuth error).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
}

/// An OAuth error answer: `{"error", "error_description", "message", "trackingId"}`.
#[derive(Debug)]
pub(crate) struct OAuthError {
    /// HTTP status of the answer.
    status: StatusCode,
    /// The OAuth error code (`invalid_grant`, ...).
    error: &'static str,
    /// Human-readable explanation, sent as `error_description` and `message`.
    description: String,
}

impl OAuthError {
    /// A 400 with the given OAuth error code.
    pub(crate) fn bad_request(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
        }
    }

    /// The JSON answer, carrying the request's tracking id.
    pub(crate) fn into_response(self, tracking: &TrackingId) -> Response {
        let body = json!({
            "error": self.error,
            "error_description": self.description,
            "message": self.description,
            "trackingId": tracking.0,
        });
        (self.status, Json(body)).into_response()
    }
}

/// Which grant a token request used.
#[derive(Clone, Copy, Debug, PartialEq)]
enum GrantType {
    /// `refresh_token`: counted in `refreshes`.
    Refresh,
    /// `authorization_code`: counted in `code_grants`.
    Code,
}

/// `POST /v1/access_token`: the refresh-token and authorization-code grants.
/// Successes are counted by grant type, every refusal in `refresh_failures`.
pub(crate) async fn access_token(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    match grant(&sim, form) {
        Ok((GrantType::Refresh, body)) => {
            sim.record(|stats| stats.refreshes += 1);
            Json(body).into_response()
        }
        Ok((GrantType::Code, body)) => {
            sim.record(|stats| stats.code_grants += 1);
            Json(body).into_response()
        }
        Err(error) => {
            sim.record(|stats| stats.refresh_failures += 1);
            error.into_response(&tracking)
        }
    }
}

/// Checks a token request and, if it is good, issues the tokens (the JSON answer).
fn grant(
    sim: &SimState,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<(GrantType, serde_json::Value), OAuthError> {
    let Form(form) = form
        .map_err(|rejection| OAuthError::bad_request("invalid_request", rejection.body_text()))?;
    let grant_type = match form.grant_type.as_deref() {
        Some("refresh_token") => GrantType::Refresh,
        Some("authorization_code") => GrantType::Code,
        Some(other) => {
            return Err(OAuthError::bad_request(
                "unsupported_grant_type",
                format!("The grant type '{other}' is not supported by the simulator."),
            ))
        }
        None => {
            return Err(OAuthError::bad_request(
                "invalid_request",
                "The parameter grant_type is required.",
            ))
        }
    };
    check_client(&sim.config, &form)?;
    let grant = match grant_type {
        GrantType::Refresh => redeem_refresh(sim, &form)?,
        GrantType::Code => redeem_code(
            sim,
            &CodeRequest {
                client_id: form.client_id.as_deref().unwrap_or_default(),
                code: form.code.as_deref(),
                redirect_uri: form.redirect_uri.as_deref(),
                code_verifier: form.code_verifier.as_deref(),
            },
        )?,
    };
    let config = &sim.config;
    Ok((
        grant_type,
        json!({
            "access_token": grant.access_token,
            "expires_in": reported_expires_in(config),
            "refresh_token": grant.refresh_token,
            "refresh_token_expires_in": config.refresh_token_lifetime.as_secs(),
            "scope": config.granted_scopes,
            "token_type": "Bearer",
        }),
    ))
}

/// Redeems the refresh token of a (client-authenticated) refresh request.
fn redeem_refresh(sim: &SimState, form: &TokenForm) -> Result<Grant, OAuthError> {
    let refresh_token = form.refresh_token.as_deref().ok_or_else(|| {
        OAuthError::bad_request(
            "invalid_request",
            "The parameter refresh_token is required.",
        )
    })?;
    sim.tokens()
        .refresh(
            refresh_token,
            sim.config.rotate_refresh_tokens,
            Instant::now(),
        )
        .ok_or_else(|| {
            OAuthError::bad_request(
                "invalid_grant",
                "The refresh token provided is expired, revoked, malformed, or invalid.",
            )
        })
}

/// 401 `invalid_client` unless the client id and secret are the configured ones.
fn check_client(config: &SimConfig, form: &TokenForm) -> Result<(), OAuthError> {
    let id_ok = form.client_id.as_deref() == Some(config.client_id.as_str());
    let secret_ok = form.client_secret.as_deref() == Some(config.client_secret.as_str());
    if id_ok && secret_ok {
        return Ok(());
    }
    Err(OAuthError {
        status: StatusCode::UNAUTHORIZED,
        error: "invalid_client",
        description: "Client authentication failed: unknown client_id or wrong client_secret."
            .to_owned(),
    })
}

/// `expires_in` of issued access tokens: the real lifetime (whole seconds, rounded
/// down) when one is configured, else `issued_expires_in`.
fn reported_expires_in(config: &SimConfig) -> u64 {
    config
        .token_lifetime
        .map_or(config.issued_expires_in, |lifetime| lifetime.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}

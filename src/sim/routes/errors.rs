//! Webex-style error answers and the per-request tracking id, and the answers to the
//! directory's refusals.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use uuid::Uuid;

use crate::sim::model::directory::Refusal;

/// `errors[].errorCode` of an unknown license id (`License not recognized`).
const CODE_UNKNOWN_LICENSE: u32 = 400_000;
/// `errors[].errorCode` of a bad attendee site.
const CODE_BAD_SITE: u32 = 400_216;

/// Request and response header carrying the tracking id (`TrackingID`; HTTP names are
/// case-insensitive and hyper writes them in lower case).
pub(crate) const TRACKING_HEADER: HeaderName = HeaderName::from_static("trackingid");

/// The id Webex support asks for: the client's `TrackingID` header when it sent one,
/// else a generated `SIM_<uuid>`. The gate stores it in the request extensions so that
/// every handler reports the same id in its body as the gate puts in the header.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TrackingId(pub String);

impl TrackingId {
    /// The client's tracking id, or a freshly generated one.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        headers
            .get(&TRACKING_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(|value| Self(value.to_owned()))
            .unwrap_or_else(|| Self(format!("SIM_{}", Uuid::new_v4())))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TrackingId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<TrackingId>()
            .cloned()
            .unwrap_or_else(|| Self::from_headers(&parts.headers)))
    }
}

/// An error answer in the Webex REST shape:
/// `{"message": "...", "errors": [{"description": "..."}], "trackingId": "..."}`
/// (each error also carries `errorCode` when [`ApiError::with_code`] set one).
#[derive(Debug)]
pub(crate) struct ApiError {
    /// HTTP status of the answer.
    pub(crate) status: StatusCode,
    /// Summary shown in `message`.
    pub(crate) message: String,
    /// One `errors[].description` per problem.
    pub(crate) descriptions: Vec<String>,
    /// `errors[].errorCode` of every problem, if any (such as the license errors of
    /// `PATCH /v1/licenses/users`).
    pub(crate) code: Option<u32>,
    /// Echoed in `trackingId`.
    pub(crate) tracking: TrackingId,
}

impl ApiError {
    /// An error with a single problem, used as both message and description.
    pub(crate) fn new(
        status: StatusCode,
        message: impl Into<String>,
        tracking: &TrackingId,
    ) -> Self {
        let message = message.into();
        Self {
            status,
            descriptions: vec![message.clone()],
            message,
            code: None,
            tracking: tracking.clone(),
        }
    }

    /// A 400 listing every problem found; the message is the first problem.
    pub(crate) fn invalid(problems: Vec<String>, tracking: &TrackingId) -> Self {
        let message = problems
            .first()
            .cloned()
            .unwrap_or_else(|| "The input parameters contain invalid items.".to_owned());
        Self {
            status: StatusCode::BAD_REQUEST,
            message,
            descriptions: problems,
            code: None,
            tracking: tracking.clone(),
        }
    }

    /// The same error with `errorCode` set on each of its `errors`.
    pub(crate) fn with_code(self, code: u32) -> Self {
        Self {
            code: Some(code),
            ..self
        }
    }

    /// 404 for an unknown meeting, person or path.
    pub(crate) fn not_found(tracking: &TrackingId) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "The requested resource could not be found.",
            tracking,
        )
    }
}

impl Refusal {
    /// The Webex error answer.
    pub(crate) fn into_error(self, tracking: &TrackingId) -> ApiError {
        match self {
            Refusal::NotFound => ApiError::not_found(tracking),
            Refusal::Conflict(email) => ApiError::new(
                StatusCode::CONFLICT,
                format!("A person with the email {email} already exists."),
                tracking,
            ),
            Refusal::UnknownLicenses(ids) => ApiError {
                message: "License not recognized".to_owned(),
                ..ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("License not recognized {}", ids.join(", ")),
                    tracking,
                )
            }
            .with_code(CODE_UNKNOWN_LICENSE),
            Refusal::UnknownSites(sites) => ApiError {
                message: "Invalid site URL".to_owned(),
                ..ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Request contains invalid attendee siteUrls: {}",
                        sites.join(", ")
                    ),
                    tracking,
                )
            }
            .with_code(CODE_BAD_SITE),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let errors: Vec<_> = self
            .descriptions
            .iter()
            .map(|description| match self.code {
                Some(code) => json!({ "errorCode": code, "description": description }),
                None => json!({ "description": description }),
            })
            .collect();
        let body = json!({
            "message": self.message,
            "errors": errors,
            "trackingId": self.tracking.0,
        });
        (self.status, Json(body)).into_response()
    }
}

/// Fallback for paths the simulator does not serve.
pub(crate) async fn unknown_path(tracking: TrackingId) -> ApiError {
    ApiError::not_found(&tracking)
}

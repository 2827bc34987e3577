//! The license handlers: `GET /v1/licenses` and `PATCH /v1/licenses/users` (body
//! checks and 200 / 206 answers).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::errors::{ApiError, TrackingId};
use super::people::check_org;
use crate::sim::model::directory::{Operation, Target};
use crate::sim::model::state::SimState;
use crate::sim::model::times::now;

/// Query parameters of `GET /v1/licenses`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListParams {
    org_id: Option<String>,
}

/// `GET /v1/licenses`: `{items}` in configuration order.
pub(crate) async fn list(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let Query(params) = match params {
        Ok(params) => params,
        Err(rejection) => {
            return ApiError::invalid(vec![rejection.body_text()], &tracking).into_response()
        }
    };
    if let Err(error) = check_org(&sim, params.org_id.as_deref(), &tracking) {
        return error.into_response();
    }
    let items = sim.directory().licenses_json();
    Json(json!({ "items": items })).into_response()
}

/// PatchUserLicenses, the fields the simulator looks at.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchRequest {
    email: Option<String>,
    person_id: Option<String>,
    org_id: Option<String>,
    licenses: Option<Vec<LicenseRequest>>,
    site_urls: Option<Vec<SiteRequest>>,
}

/// LicenseRequest (`properties` is accepted and ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LicenseRequest {
    id: Option<String>,
    operation: Option<String>,
}

/// SiteUrlsRequest.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SiteRequest {
    site_url: Option<String>,
    account_type: Option<String>,
    operation: Option<String>,
}

/// A checked PATCH body.
#[derive(Debug, PartialEq)]
struct Patch {
    /// The person (`personId` wins over `email` when both are given).
    target: Target,
    /// `orgId`, if given.
    org_id: Option<String>,
    /// License operations, in order.
    licenses: Vec<Operation>,
    /// Attendee-site operations, in order.
    sites: Vec<Operation>,
}

/// `PATCH /v1/licenses/users`: 404 for an unknown person, 400 for an unknown license
/// id or attendee site (nothing applied); else every operation is tried in order and
/// the answer is the UserLicensesResponse, with 200 when all were applied and 206
/// (Partial Content) when some `add` found no free unit.
pub(crate) async fn patch_users(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    body: Bytes,
) -> Response {
    let patch = match check_patch(&body) {
        Ok(patch) => patch,
        Err(problems) => return ApiError::invalid(problems, &tracking).into_response(),
    };
    if let Err(error) = check_org(&sim, patch.org_id.as_deref(), &tracking) {
        return error.into_response();
    }
    let patched =
        sim.directory()
            .patch_licenses(&patch.target, &patch.licenses, &patch.sites, &now());
    match patched {
        Ok((answer, all_applied)) => {
            sim.record(|stats| stats.license_patches += 1);
            let status = if all_applied {
                StatusCode::OK
            } else {
                StatusCode::PARTIAL_CONTENT
            };
            (status, Json(answer)).into_response()
        }
        Err(refusal) => refusal.into_error(&tracking).into_response(),
    }
}

/// Parses and checks a PATCH body; `Err` lists every problem.
fn check_patch(body: &[u8]) -> Result<Patch, Vec<String>> {
    let request: PatchRequest = serde_json::from_slice(body).map_err(|error| {
        vec![format!(
            "The request body is not a valid license assignment: {error}."
        )]
    })?;
    let mut problems = Vec::new();
    let target = match (request.person_id, request.email) {
        (Some(id), _) => Some(Target::Id(id)),
        (None, Some(email)) => Some(Target::Email(email)),
        (None, None) => {
            problems.push("At least one of email or personId is required.".to_owned());
            None
        }
    };
    let licenses = request.licenses.unwrap_or_default();
    let site_requests = request.site_urls.unwrap_or_default();
    if licenses.is_empty() && site_requests.is_empty() {
        problems.push("licenses or siteUrls is required.".to_owned());
    }
    let licenses: Vec<Operation> = licenses
        .into_iter()
        .enumerate()
        .filter_map(|(at, license)| {
            let add = check_operation("licenses", at, license.operation, &mut problems);
            let id = license.id.filter(|id| !id.is_empty());
            if id.is_none() {
                problems.push(format!("licenses[{at}].id is required."));
            }
            Some(Operation { target: id?, add })
        })
        .collect();
    let sites: Vec<Operation> = site_requests
        .into_iter()
        .enumerate()
        .filter_map(|(at, site)| {
            let add = check_operation("siteUrls", at, site.operation, &mut problems);
            if site.account_type.as_deref() != Some("attendee") {
                problems.push(format!(
                    "siteUrls[{at}].accountType must be attendee (only attendee is supported)."
                ));
            }
            let url = site.site_url.filter(|url| !url.is_empty());
            if url.is_none() {
                problems.push(format!("siteUrls[{at}].siteUrl is required."));
            }
            Some(Operation { target: url?, add })
        })
        .collect();
    match target {
        Some(target) if problems.is_empty() => Ok(Patch {
            target,
            org_id: request.org_id,
            licenses,
            sites,
        }),
        _ => Err(problems),
    }
}

/// `operation`: `add` (the default) or `remove`.
fn check_operation(
    list: &str,
    at: usize,
    operation: Option<String>,
    problems: &mut Vec<String>,
) -> bool {
    match operation.as_deref() {
        None | Some("add") => true,
        Some("remove") => false,
        Some(other) => {
            problems.push(format!(
                "{list}[{at}].operation must be add or remove (got '{other}')."
            ));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn check_value(body: &Value) -> Result<Patch, Vec<String>> {
        check_patch(body.to_string().as_bytes())
    }

    #[test]
    fn patch_bodies() {
        let patch = check_value(&json!({
            "email": "jo@example.com",
            "licenses": [
                {"id": "a"},
                {"id": "b", "operation": "remove", "properties": {"extension": "1"}}
            ],
            "siteUrls": [{"siteUrl": "acme.webex.com", "accountType": "attendee"}],
        }))
        .unwrap();
        assert_eq!(patch.target, Target::Email("jo@example.com".to_owned()));
        let ops: Vec<(&str, bool)> = patch
            .licenses
            .iter()
            .map(|op| (op.target.as_str(), op.add))
            .collect();
        assert_eq!(ops, [("a", true), ("b", false)]);
        assert_eq!(patch.sites.len(), 1);
        let by_id =
            check_value(&json!({"email": "x@y.z", "personId": "p", "licenses": [{"id": "a"}]}));
        assert_eq!(by_id.unwrap().target, Target::Id("p".to_owned()));
        assert_eq!(
            check_value(&json!({"licenses": [{"operation": "swap"}]})).unwrap_err(),
            [
                "At least one of email or personId is required.",
                "licenses[0].operation must be add or remove (got 'swap').",
                "licenses[0].id is required.",
            ]
        );
        assert_eq!(
            check_value(&json!({"personId": "p"})).unwrap_err(),
            ["licenses or siteUrls is required."]
        );
        assert!(check_value(&json!({
            "personId": "p",
            "siteUrls": [{"siteUrl": "acme.webex.com", "accountType": "host"}],
        }))
        .is_err());
    }
}

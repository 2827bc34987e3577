//! The `/v1/people` handlers: the signed-in admin (`GET /v1/people/me`, who is not
//! among the organization's people) and list / get / create / full replace of the
//! organization's people.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::errors::{ApiError, TrackingId};
use super::paging;
use super::person_body::{check_create, check_replace};
use crate::sim::model::directory::Refusal;
use crate::sim::model::state::SimState;
use crate::sim::model::times::now;
use crate::sim::server::ConnectionKill;
use crate::sim::ADMIN_EMAIL;

/// `max` of a listing when not given.
const DEFAULT_MAX: usize = 100;
/// Largest `max` of a listing.
const MAX_MAX: usize = 1000;

pub(crate) use crate::sim::model::org::ADMIN_PERSON_ID;

/// `GET /v1/people/me`: a Person as in the admin spec.
pub(crate) async fn me(State(sim): State<Arc<SimState>>) -> Json<Value> {
    Json(json!({
        "id": ADMIN_PERSON_ID,
        "emails": [ADMIN_EMAIL],
        "displayName": "Sim Admin",
        "firstName": "Sim",
        "lastName": "Admin",
        "orgId": sim.config.org_id,
        "created": "2020-01-06T09:00:00.000Z",
        "status": "active",
        "type": "person",
    }))
}

/// 403 unless `org_id` (an `orgId` of a body or query) is absent or the simulator's
/// organization.
pub(crate) fn check_org(
    sim: &SimState,
    org_id: Option<&str>,
    tracking: &TrackingId,
) -> Result<(), ApiError> {
    match org_id {
        Some(org_id) if org_id != sim.config.org_id => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("The access token is not authorized for the organization {org_id}."),
            tracking,
        )),
        _ => Ok(()),
    }
}

/// Query parameters of `GET /v1/people` that the simulator supports.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListParams {
    email: Option<String>,
    display_name: Option<String>,
    id: Option<String>,
    org_id: Option<String>,
    max: Option<String>,
    /// The simulator's paging cursor (see [`paging`]).
    cursor: Option<String>,
}

/// What a `GET /v1/people` cursor holds.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Cursor {
    /// Position (creation order) of the previous page's last person.
    after: usize,
}

/// `GET /v1/people`: `{items}` matching every filter given (`email` exact and
/// case-insensitive, `displayName` prefix, `id` comma-separated), oldest first, at most
/// `max` (default 100, up to 1000), with a `Link` to the next page when more match.
pub(crate) async fn list(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    uri: Uri,
    headers: HeaderMap,
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
    let (max, after) = match check_page(&params) {
        Ok(checked) => checked,
        Err(problem) => return ApiError::invalid(vec![problem], &tracking).into_response(),
    };
    let ids: Option<Vec<String>> = params.id.as_deref().map(|ids| {
        ids.split(',')
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
            .collect()
    });
    let (items, next) = sim.directory().list(
        params.email.as_deref(),
        params.display_name.as_deref(),
        ids.as_deref(),
        after,
        max,
    );
    let next = next.map(|after| paging::encode(&Cursor { after }));
    paging::answer(items, next.as_deref(), &uri, &headers)
}

/// `max`, and the position after which the page starts (from the cursor).
fn check_page(params: &ListParams) -> Result<(usize, Option<usize>), String> {
    let max = check_max(params.max.as_deref())?;
    let cursor = params.cursor.as_deref().map(paging::decode::<Cursor>);
    Ok((max, cursor.transpose()?.map(|cursor| cursor.after)))
}

/// `max`: 1..=1000, default 100.
fn check_max(max: Option<&str>) -> Result<usize, String> {
    let Some(text) = max else {
        return Ok(DEFAULT_MAX);
    };
    match text.trim().parse::<usize>() {
        Ok(max @ 1..=MAX_MAX) => Ok(max),
        _ => Err(format!(
            "max must be a whole number from 1 to {MAX_MAX} (got '{text}')."
        )),
    }
}

/// `GET /v1/people/{personId}`.
pub(crate) async fn get_one(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    Path(id): Path<String>,
) -> Response {
    match sim.directory().get(&id) {
        Some(person) => Json(person).into_response(),
        None => ApiError::not_found(&tracking).into_response(),
    }
}

/// `POST /v1/people`. A valid create is carried out; then, with probability
/// `people_create_lost_rate`, the connection is dropped without an answer, else with
/// probability `people_create_error_rate` the answer is a 500.
pub(crate) async fn create(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    Extension(kill): Extension<ConnectionKill>,
    body: Bytes,
) -> Response {
    let (input, org_id) = match check_create(&body) {
        Ok(checked) => checked,
        Err(problems) => return ApiError::invalid(problems, &tracking).into_response(),
    };
    if let Err(error) = check_org(&sim, org_id.as_deref(), &tracking) {
        return error.into_response();
    }
    let created = sim.directory().create(input, &now());
    let person = match created {
        Ok(person) => person,
        Err(refusal) => {
            if matches!(refusal, Refusal::Conflict(_)) {
                sim.record(|stats| stats.people_create_conflicts += 1);
            }
            return refusal.into_error(&tracking).into_response();
        }
    };
    let lost = sim.chance(sim.config.people_create_lost_rate);
    let failed = !lost && sim.chance(sim.config.people_create_error_rate);
    sim.record(|stats| {
        stats.people_created += 1;
        stats.dropped += u64::from(lost);
        stats.injected_failures += u64::from(failed);
    });
    if lost {
        kill.trigger();
        return std::future::pending().await;
    }
    if failed {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error (injected by the simulator after the person was created).",
            &tracking,
        )
        .into_response();
    }
    Json(person).into_response()
}

/// `PUT /v1/people/{personId}`: a full replace (see `Directory::replace`).
pub(crate) async fn update(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (input, org_id) = match check_replace(&body) {
        Ok(checked) => checked,
        Err(problems) => return ApiError::invalid(problems, &tracking).into_response(),
    };
    if let Err(error) = check_org(&sim, org_id.as_deref(), &tracking) {
        return error.into_response();
    }
    let replaced = sim.directory().replace(&id, input, &now());
    match replaced {
        Ok(person) => {
            sim.record(|stats| stats.people_updates += 1);
            Json(person).into_response()
        }
        Err(refusal) => refusal.into_error(&tracking).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use base64::Engine as _;

    use super::*;
    use crate::sim::DEFAULT_ORG_ID;

    #[test]
    fn ids_are_webex_style() {
        let decode = |id: &str| String::from_utf8(STANDARD_NO_PAD.decode(id).unwrap()).unwrap();
        assert_eq!(
            decode(ADMIN_PERSON_ID),
            "ciscospark://us/PEOPLE/5a1c0e5e-0000-4000-8000-00000000ad01"
        );
        assert_eq!(
            decode(DEFAULT_ORG_ID),
            "ciscospark://us/ORGANIZATION/5a1c0e5e-0000-4000-8000-00000000c0de"
        );
    }

    #[test]
    fn list_max() {
        assert_eq!(check_max(None), Ok(100));
        assert_eq!(check_max(Some("1000")), Ok(1000));
        assert!(check_max(Some("1001")).is_err());
        assert!(check_max(Some("0")).is_err());
    }
}

//! Meeting sites and hosts' settings over REST: `GET /v1/meetingPreferences/sites`,
//! a site's session types and tracking codes (`/v1/admin/meeting/config/*`), and
//! a host's (`/v1/admin/meeting/userconfig/*`, GET and full-replace PUT).
//!
//! The traps the spec describes are reproduced: the user GETs take `email` as an
//! HTTP **header** (an `email` query parameter is ignored, so the answer is about
//! the caller, the admin); without `siteUrl` every call is about the *admin's*
//! default site. PUT bodies are checked against their schemas: a property the
//! schema does not define is a 400. A mapped site refuses tracking codes with 409.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};

use super::errors::{ApiError, TrackingId};
use crate::sim::model::sites::{SettingsRefusal, SimSite};
use crate::sim::model::state::SimState;
use crate::sim::server::ConnectionKill;
use crate::sim::{SimStats, ADMIN_EMAIL};

type Params = Query<HashMap<String, String>>;

impl SettingsRefusal {
    fn into_error(self, tracking: &TrackingId) -> ApiError {
        match self {
            SettingsRefusal::UnknownSite(site) => ApiError::new(
                StatusCode::NOT_FOUND,
                format!("Site {site} is not found."),
                tracking,
            ),
            SettingsRefusal::NotAHost(why) => {
                ApiError::new(StatusCode::NOT_FOUND, why, tracking)
            }
            SettingsRefusal::Invalid(problems) => ApiError {
                message: "The request could not be understood by the server due to malformed syntax. See 'errors' for more details.".to_owned(),
                ..ApiError::invalid(problems, tracking)
            },
            SettingsRefusal::Mapped(why) => ApiError::new(StatusCode::CONFLICT, why, tracking),
        }
    }
}

/// The site a call is about: `siteUrl`, else the admin's default site.
fn site_of(sim: &SimState, params: &HashMap<String, String>) -> Result<SimSite, SettingsRefusal> {
    let settings = sim.settings();
    match params.get("siteUrl").filter(|s| !s.is_empty()) {
        Some(url) => settings.site(url).cloned(),
        None => settings
            .sites()
            .first()
            .cloned()
            .ok_or_else(|| SettingsRefusal::UnknownSite("(default)".into())),
    }
}

/// A JSON answer, or the refusal as Webex words it.
fn answer(result: Result<Value, SettingsRefusal>, tracking: &TrackingId) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(r) => r.into_error(tracking).into_response(),
    }
}

/// `GET /v1/meetingPreferences/sites[?userEmail=]`.
pub(crate) async fn sites(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    Query(params): Params,
) -> Response {
    let email = params
        .get("userEmail")
        .cloned()
        .unwrap_or_else(|| ADMIN_EMAIL.to_owned());
    let Some((_, sites)) = sim.host(&email) else {
        return ApiError::not_found(&tracking).into_response();
    };
    let sites: Vec<Value> = sites
        .iter()
        .enumerate()
        .map(|(i, url)| json!({ "siteUrl": url, "default": i == 0 }))
        .collect();
    Json(json!({ "sites": sites })).into_response()
}

/// `GET /v1/admin/meeting/config/sessionTypes[?siteUrl=]`.
pub(crate) async fn site_session_types(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    Query(params): Params,
) -> Response {
    let result = site_of(&sim, &params).map(|site| {
        let items: Vec<Value> = site
            .session_types
            .iter()
            .map(|t| json!({ "id": t.id, "shortName": t.short_name, "siteUrl": site.url, "name": t.name, "type": t.kind }))
            .collect();
        json!({ "items": items })
    });
    answer(result, &tracking)
}

/// `GET /v1/admin/meeting/config/trackingCodes[?siteUrl=]`.
pub(crate) async fn site_tracking_codes(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    Query(params): Params,
) -> Response {
    let result = site_of(&sim, &params).map(|site| {
        let items: Vec<Value> = site
            .tracking_codes
            .iter()
            .map(|c| {
                let options: Vec<Value> = c
                    .options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| json!({ "value": o, "defaultValue": i == 0 }))
                    .collect();
                json!({
                    "id": c.id,
                    "name": c.name,
                    "siteUrl": site.url,
                    "options": options,
                    "inputMode": c.input_mode,
                    "hostProfileCode": "optional",
                    "scheduleStartCodes": [{ "service": "All", "type": "optional" }],
                })
            })
            .collect();
        json!({ "items": items })
    });
    answer(result, &tracking)
}

/// The user a userconfig GET is about: `personId`, else the `email` header,
/// else the caller (the admin). An `email` query parameter is not read.
fn user_of(
    sim: &SimState,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Option<String> {
    if let Some(id) = params.get("personId").filter(|s| !s.is_empty()) {
        return sim.directory().email_of(id);
    }
    match headers.get("email").and_then(|v| v.to_str().ok()) {
        Some(email) if !email.trim().is_empty() => Some(email.trim().to_owned()),
        _ => Some(ADMIN_EMAIL.to_owned()),
    }
}

/// The host a request is about, with their person id and host sites.
fn host(
    sim: &SimState,
    email: Option<String>,
) -> Result<(String, String, Vec<String>), SettingsRefusal> {
    let email = email.ok_or_else(|| SettingsRefusal::NotAHost("The user is not found.".into()))?;
    let (id, sites) = sim
        .host(&email)
        .ok_or_else(|| SettingsRefusal::NotAHost(format!("User {email} is not found.")))?;
    Ok((email, id, sites))
}

fn session_types_json(site: &SimSite, ids: &[String]) -> Vec<Value> {
    ids.iter()
        .filter_map(|id| site.session_types.iter().find(|t| &t.id == id))
        .map(|t| json!({ "id": t.id, "shortName": t.short_name, "name": t.name, "type": t.kind }))
        .collect()
}

fn tracking_json(
    site: &SimSite,
    email: &str,
    id: &str,
    codes: &std::collections::BTreeMap<String, String>,
) -> Value {
    let items: Vec<Value> = site
        .tracking_codes
        .iter()
        .filter_map(|c| {
            codes
                .get(&c.name)
                .map(|v| json!({ "id": c.id, "name": c.name, "value": v }))
        })
        .collect();
    json!({ "siteUrl": site.url, "personId": id, "email": email, "trackingCodes": items })
}

/// What a userconfig GET is about: the site, the host (email, person id)
/// and their settings there.
fn host_settings(
    sim: &SimState,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<(SimSite, String, String, crate::sim::HostSettings), SettingsRefusal> {
    let site = site_of(sim, params)?;
    let (email, id, sites) = host(sim, user_of(sim, params, headers))?;
    let settings = sim.settings().get(&email, &site.url, &sites)?.clone();
    Ok((site, email, id, settings))
}

/// `GET /v1/admin/meeting/userconfig/sessionTypes`.
pub(crate) async fn user_session_types(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let result = host_settings(&sim, &params, &headers).map(|(site, email, id, settings)| {
        json!({ "items": [{
            "personId": id, "email": email, "siteUrl": site.url,
            "sessionTypes": session_types_json(&site, &settings.session_types),
        }]})
    });
    answer(result, &tracking)
}

/// `GET /v1/admin/meeting/userconfig/trackingCodes`.
pub(crate) async fn user_tracking_codes(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    headers: HeaderMap,
    Query(params): Params,
) -> Response {
    let result = host_settings(&sim, &params, &headers)
        .map(|(site, email, id, settings)| tracking_json(&site, &email, &id, &settings.tracking));
    answer(result, &tracking)
}

/// A PUT body: its object, every property the schema does not define refused.
fn body_object(body: &[u8], allowed: &[&str]) -> Result<Map<String, Value>, SettingsRefusal> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| SettingsRefusal::Invalid(vec![format!("The body is not JSON: {e}")]))?;
    let Value::Object(map) = value else {
        return Err(SettingsRefusal::Invalid(vec![
            "The body is not a JSON object.".into(),
        ]));
    };
    let unknown: Vec<String> = map
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("Unrecognized field '{k}'."))
        .collect();
    if !unknown.is_empty() {
        return Err(SettingsRefusal::Invalid(unknown));
    }
    Ok(map)
}

/// The site (required `siteUrl`) and the host (`personId` wins over `email`) of a PUT.
fn put_target(
    sim: &SimState,
    map: &Map<String, Value>,
) -> Result<(SimSite, String, String, Vec<String>), SettingsRefusal> {
    let site = match map.get("siteUrl").and_then(Value::as_str) {
        Some(url) if !url.is_empty() => sim.settings().site(url)?.clone(),
        _ => {
            return Err(SettingsRefusal::Invalid(
                vec!["siteUrl is required.".into()],
            ))
        }
    };
    let email = match (
        map.get("personId").and_then(Value::as_str),
        map.get("email").and_then(Value::as_str),
    ) {
        (Some(id), _) => sim.directory().email_of(id),
        (None, Some(email)) => Some(email.to_owned()),
        (None, None) => {
            return Err(SettingsRefusal::Invalid(vec![
                "At least one of personId and email is required.".into(),
            ]))
        }
    };
    let (email, id, sites) = host(sim, email)?;
    Ok((site, email, id, sites))
}

/// Drops the connection after a carried-out change, with `settings_drop_rate`.
async fn maybe_drop(sim: &SimState, kill: &ConnectionKill) {
    if sim.chance(sim.config.settings_drop_rate) {
        sim.record(|stats| stats.dropped += 1);
        kill.trigger();
        std::future::pending::<()>().await;
    }
}

/// `PUT /v1/admin/meeting/userconfig/sessionTypes`: the host's set, replaced.
pub(crate) async fn put_user_session_types(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    Extension(kill): Extension<ConnectionKill>,
    body: Bytes,
) -> Response {
    let done: Result<(bool, Value), SettingsRefusal> = (|| {
        let map = body_object(&body, &["siteUrl", "sessionTypeIds", "personId", "email"])?;
        let ids: Vec<String> = match map.get("sessionTypeIds") {
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => {
                return Err(SettingsRefusal::Invalid(vec![
                    "sessionTypeIds is required: an array of strings.".into(),
                ]))
            }
        };
        let (site, email, id, sites) = put_target(&sim, &map)?;
        let changed = sim
            .settings()
            .set_session_types(&email, &site.url, &sites, &ids)?;
        let now = sim
            .settings()
            .get(&email, &site.url, &sites)?
            .session_types
            .clone();
        Ok((
            changed,
            json!({
                "personId": id, "email": email, "siteUrl": site.url,
                "sessionTypes": session_types_json(&site, &now),
            }),
        ))
    })();
    answer_put(&sim, &kill, &tracking, done, |stats| {
        stats.session_type_updates += 1;
    })
    .await
}

/// `PUT /v1/admin/meeting/userconfig/trackingCodes`: the host's list, replaced.
pub(crate) async fn put_user_tracking_codes(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    Extension(kill): Extension<ConnectionKill>,
    body: Bytes,
) -> Response {
    let done: Result<(bool, Value), SettingsRefusal> = (|| {
        let map = body_object(&body, &["siteUrl", "personId", "email", "trackingCodes"])?;
        let mut codes = Vec::new();
        let mut problems = Vec::new();
        for item in map
            .get("trackingCodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match (
                item.get("name").and_then(Value::as_str),
                item.get("value").and_then(Value::as_str),
            ) {
                (Some(n), Some(v)) if item.as_object().is_some_and(|o| o.len() == 2) => {
                    if v.is_empty() {
                        problems.push(format!(
                            "The value of tracking code '{n}' must be 1 to 120 characters."
                        ));
                    }
                    codes.push((n.to_owned(), v.to_owned()));
                }
                _ => problems.push("Each tracking code is {name, value}.".to_owned()),
            }
        }
        if !problems.is_empty() {
            return Err(SettingsRefusal::Invalid(problems));
        }
        let (site, email, id, sites) = put_target(&sim, &map)?;
        let changed = sim
            .settings()
            .set_tracking(&email, &site.url, &sites, &codes, true)?;
        let now = sim
            .settings()
            .get(&email, &site.url, &sites)?
            .tracking
            .clone();
        Ok((changed, tracking_json(&site, &email, &id, &now)))
    })();
    answer_put(&sim, &kill, &tracking, done, |stats| {
        stats.tracking_code_updates += 1;
    })
    .await
}

/// A settings `PUT`'s answer: counted (`count`, and whether it changed
/// nothing), then the new state, or the connection dropped after the write
/// (`settings_drop_rate`), or the refusal.
async fn answer_put(
    sim: &SimState,
    kill: &ConnectionKill,
    tracking: &TrackingId,
    done: Result<(bool, Value), SettingsRefusal>,
    count: impl FnOnce(&mut SimStats),
) -> Response {
    match done {
        Ok((changed, answer)) => {
            sim.record(|stats| {
                count(stats);
                stats.settings_noop_writes += u64::from(!changed);
            });
            maybe_drop(sim, kill).await;
            Json(answer).into_response()
        }
        Err(r) => r.into_error(tracking).into_response(),
    }
}

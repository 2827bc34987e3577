//! The `/v1/meetings` handlers: create (with dropped answers and slow creates), list
//! (parameters, window and cursor checks, paging), get and delete.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use tokio::task::JoinError;

use super::errors::{ApiError, TrackingId};
use super::meeting_body::{is_valid_email, validate_create};
use super::paging;
use crate::sim::model::meetings::{
    spawn_slow_create, store, window, ListQuery, Position, DEFAULT_HOST,
};
use crate::sim::model::state::SimState;
use crate::sim::model::times::parse_instant;
use crate::sim::server::ConnectionKill;

/// `max` of a listing when not given, and its upper bound.
const DEFAULT_MAX: usize = 10;
const MAX_MAX: usize = 100;

/// `POST /v1/meetings`. With probability `drop_rate` the meeting is stored and the
/// connection is then dropped without an answer. With probability `slow_create_rate`
/// the meeting is stored only after `slow_create_delay`, by a task that outlives this
/// handler (see [`SimConfig::slow_create_rate`](crate::sim::SimConfig::slow_create_rate)).
pub(crate) async fn create(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    Extension(kill): Extension<ConnectionKill>,
    body: Bytes,
) -> Response {
    let request = match validate_create(&body, Utc::now()) {
        Ok(request) => request,
        Err(problems) => return ApiError::invalid(problems, &tracking).into_response(),
    };
    let drop_answer = sim.chance(sim.config.drop_rate);
    let meeting = if sim.chance(sim.config.slow_create_rate) {
        match spawn_slow_create(sim.clone(), request).await {
            Ok(meeting) => meeting,
            Err(error) => return slow_create_lost(&error, &tracking),
        }
    } else {
        store(&sim, request, false)
    };
    if drop_answer {
        sim.record(|stats| stats.dropped += 1);
        kill.trigger();
        return std::future::pending().await;
    }
    Json(meeting.to_json()).into_response()
}

/// The 500 answered when a slow create's task ended without storing (the runtime is
/// shutting down).
fn slow_create_lost(error: &JoinError, tracking: &TrackingId) -> Response {
    tracing::warn!(%error, "simulator: a slow meeting create did not finish");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal Server Error (the simulator stopped before the meeting was stored).",
        tracking,
    )
    .into_response()
}

/// Query parameters of `GET /v1/meetings` that the simulator supports.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListParams {
    integration_tag: Option<String>,
    host_email: Option<String>,
    from: Option<String>,
    to: Option<String>,
    max: Option<String>,
    meeting_type: Option<String>,
    /// The simulator's paging cursor (see [`paging`]).
    cursor: Option<String>,
}

/// What a `GET /v1/meetings` cursor holds.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Cursor {
    /// Window start of the first page (kept, so that a default window, which follows
    /// the clock, does not move between pages).
    from: DateTime<Utc>,
    /// Window end of the first page.
    to: DateTime<Utc>,
    /// The last meeting of the previous page.
    after: Position,
}

/// `GET /v1/meetings`: one page, with a `Link` to the next when more match.
pub(crate) async fn list(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    uri: Uri,
    headers: HeaderMap,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let query = params
        .map_err(|rejection| vec![rejection.body_text()])
        .and_then(|Query(params)| check_list(params, Utc::now()));
    let query = match query {
        Ok(query) => query,
        Err(problems) => return ApiError::invalid(problems, &tracking).into_response(),
    };
    let (items, next) = sim.meetings().list(&query);
    let cursor = next.map(|after| {
        paging::encode(&Cursor {
            from: query.from,
            to: query.to,
            after,
        })
    });
    paging::answer(items, cursor.as_deref(), &uri, &headers)
}

/// Checks listing parameters and fills in the meetingSeries window defaults (or, on a
/// later page, the window of the first).
fn check_list(params: ListParams, now: DateTime<Utc>) -> Result<ListQuery, Vec<String>> {
    let mut problems = Vec::new();
    if let Some(kind) = params
        .meeting_type
        .as_deref()
        .filter(|kind| *kind != "meetingSeries")
    {
        problems.push(format!(
            "meetingType '{kind}' is not supported by the simulator (only meetingSeries)."
        ));
    }
    let max = check_max(params.max.as_deref(), &mut problems);
    let mut parse = |field: &str, value: Option<&str>| {
        value.and_then(|text| {
            parse_instant(text, Tz::UTC)
                .map_err(|reason| problems.push(format!("{field}: {reason}")))
                .ok()
        })
    };
    let (from, to) = window(
        parse("from", params.from.as_deref()),
        parse("to", params.to.as_deref()),
        now,
    );
    let cursor = params.cursor.as_deref().and_then(|cursor| {
        paging::decode::<Cursor>(cursor)
            .map_err(|problem| problems.push(problem))
            .ok()
    });
    let (from, to) = cursor
        .as_ref()
        .map_or((from, to), |cursor| (cursor.from, cursor.to));
    if from > to {
        problems.push("from cannot be after to.".to_owned());
    }
    let host = params.host_email.unwrap_or_else(|| DEFAULT_HOST.to_owned());
    if !is_valid_email(&host) {
        problems.push(format!("hostEmail '{host}' is not a valid email address."));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ListQuery {
        tag: params.integration_tag,
        host,
        from,
        to,
        max,
        after: cursor.map(|cursor| cursor.after),
    })
}

/// `max`: 1..=100, default 10.
fn check_max(max: Option<&str>, problems: &mut Vec<String>) -> usize {
    let Some(text) = max else {
        return DEFAULT_MAX;
    };
    match text.trim().parse::<usize>() {
        Ok(max @ 1..=MAX_MAX) => max,
        Ok(max) if max > MAX_MAX => {
            problems.push(format!("max cannot be greater than {MAX_MAX} (got {max})."));
            DEFAULT_MAX
        }
        _ => {
            problems.push(format!(
                "max must be a whole number from 1 to {MAX_MAX} (got '{text}')."
            ));
            DEFAULT_MAX
        }
    }
}

/// `GET /v1/meetings/{meetingId}`.
pub(crate) async fn get_one(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    Path(id): Path<String>,
) -> Response {
    match sim.meetings().get(&id) {
        Some(meeting) => Json(meeting.to_json()).into_response(),
        None => ApiError::not_found(&tracking).into_response(),
    }
}

/// `DELETE /v1/meetings/{meetingId}` (`hostEmail` and `sendEmail` are accepted and ignored).
pub(crate) async fn delete_one(
    State(sim): State<Arc<SimState>>,
    tracking: TrackingId,
    Path(id): Path<String>,
) -> Response {
    if sim.meetings().remove(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::not_found(&tracking).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn list_parameters() {
        let now = at("2027-01-10T12:00:00Z");
        let params = |max: &str| ListParams {
            max: Some(max.to_owned()),
            ..ListParams::default()
        };
        assert_eq!(check_list(params("100"), now).unwrap().max, 100);
        assert!(check_list(params("101"), now).unwrap_err()[0].contains("greater than 100"));
        assert!(check_list(params("0"), now).is_err());
        assert!(check_list(params("ten"), now).is_err());
        let backwards = ListParams {
            from: Some("2027-01-12".into()),
            to: Some("2027-01-11".into()),
            ..ListParams::default()
        };
        assert_eq!(
            check_list(backwards, now).unwrap_err(),
            ["from cannot be after to."]
        );
        let default = check_list(ListParams::default(), now).unwrap();
        assert_eq!((default.host.as_str(), default.max), (DEFAULT_HOST, 10));
    }

    #[test]
    fn a_cursor_keeps_the_window_of_the_first_page() {
        let now = at("2027-01-10T12:00:00Z");
        let after = Position {
            start: at("2027-01-11T09:00:00Z"),
            seq: 4,
        };
        let cursor = Cursor {
            from: at("2027-01-01T00:00:00Z"),
            to: at("2027-01-08T00:00:00Z"),
            after,
        };
        let params = ListParams {
            cursor: Some(paging::encode(&cursor)),
            ..ListParams::default()
        };
        let query = check_list(params, now).unwrap();
        assert_eq!((query.from, query.to), (cursor.from, cursor.to));
        assert_eq!(query.after, Some(after));
        let bad = ListParams {
            cursor: Some("x".into()),
            ..ListParams::default()
        };
        assert!(check_list(bad, now).unwrap_err()[0].starts_with("cursor 'x' is not valid"));
    }
}

//! Stored meetings and the `/v1/meetings` handlers.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::task::{JoinError, JoinHandle};
use uuid::Uuid;

use super::model::state::SimState;
use super::model::times::{format_in, parse_instant};
use super::routes::errors::{ApiError, TrackingId};
use super::routes::meeting_body::{is_valid_email, validate_create, NewMeeting};
use super::routes::paging;
use super::server::ConnectionKill;

/// The user every access token belongs to: the default host and the user whose
/// meetings a listing without `hostEmail` shows.
pub(crate) const DEFAULT_HOST: &str = super::ADMIN_EMAIL;
/// Site of every meeting.
const SITE_URL: &str = "sim.webex.com";
/// Listing window when `from` or `to` is missing.
const DEFAULT_WINDOW: TimeDelta = TimeDelta::days(7);
/// `max` of a listing when not given, and its upper bound.
const DEFAULT_MAX: usize = 10;
const MAX_MAX: usize = 100;

/// A stored meeting series.
#[derive(Clone, Debug)]
pub(crate) struct Meeting {
    /// 32 hex characters.
    id: String,
    /// Creation order: 0 for the first meeting stored, never reused.
    seq: u64,
    /// Nine digits, unique among all meetings ever created.
    meeting_number: String,
    /// Password given or generated.
    password: String,
    /// 6-digit host key.
    host_key: String,
    /// The host (given or [`DEFAULT_HOST`]).
    host_email: String,
    /// The validated request.
    request: NewMeeting,
}

impl Meeting {
    /// True when `email` hosts the meeting or is invited to it.
    fn concerns(&self, email: &str) -> bool {
        self.host_email.eq_ignore_ascii_case(email)
            || self
                .request
                .invitee_emails
                .iter()
                .any(|invitee| invitee.eq_ignore_ascii_case(email))
    }

    /// True when the meeting overlaps `[from, to)`.
    fn overlaps(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        self.request.start < to && self.request.end > from
    }

    /// True when the meeting carries `tag`.
    fn has_tag(&self, tag: &str) -> bool {
        self.request.integration_tags.iter().any(|own| own == tag)
    }

    /// The meeting's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Where the meeting comes in a listing.
    fn position(&self) -> Position {
        Position {
            start: self.request.start,
            seq: self.seq,
        }
    }

    /// The MeetingSeriesObject answered by create, get and list.
    pub(crate) fn to_json(&self) -> Value {
        let request = &self.request;
        let tz = request.timezone;
        let mut body = json!({
            "id": self.id,
            "meetingNumber": self.meeting_number,
            "title": request.title,
            "password": self.password,
            "meetingType": "meetingSeries",
            "state": "active",
            "timezone": tz.name(),
            "start": format_in(request.start, tz),
            "end": format_in(request.end, tz),
            "hostUserId": host_user_id(&self.host_email),
            "hostDisplayName": display_name(&self.host_email),
            "hostEmail": self.host_email,
            "hostKey": self.host_key,
            "siteUrl": SITE_URL,
            "webLink": format!("https://{SITE_URL}/sim/j.php?MTID=m{}", self.id),
            "sipAddress": format!("{}@{SITE_URL}", self.meeting_number),
            "enabledAutoRecordMeeting": request.enabled_auto_record_meeting,
            "enabledBreakoutSessions": false,
            "scheduledType": "meeting",
            "telephony": {
                "accessCode": self.meeting_number,
                "callInNumbers": [
                    {"label": "Sim Toll", "callInNumber": "+1-555-0100", "tollType": "toll"}
                ]
            },
        });
        let optional = [
            (
                "agenda",
                request.agenda.as_ref().map(|agenda| json!(agenda)),
            ),
            (
                "recurrence",
                request.recurrence.as_ref().map(|rule| json!(rule)),
            ),
            (
                "integrationTags",
                (!request.integration_tags.is_empty()).then(|| json!(request.integration_tags)),
            ),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                body[key] = value;
            }
        }
        body
    }
}

/// `hostUserId`: a stable id derived from the host's email.
fn host_user_id(email: &str) -> String {
    let hex: String = email
        .to_ascii_lowercase()
        .bytes()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("SIM_PEOPLE_{hex}")
}

/// `hostDisplayName`: the email's local part in words, `john.andersen` → `John Andersen`.
fn display_name(email: &str) -> String {
    let local = email.split('@').next().unwrap_or(email);
    local
        .split(['.', '_', '-', '+'])
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect::<String>()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every meeting the simulator holds, in creation order.
#[derive(Debug, Default)]
pub(crate) struct MeetingStore {
    /// Stored meetings, oldest first.
    meetings: Vec<Meeting>,
    /// Meeting numbers ever handed out (never reused, even after a delete).
    numbers: HashSet<String>,
    /// How many stored meetings carry each integration tag (duplicates are
    /// counted in O(1), so a 100,000-meeting benchmark measures the client).
    tags: std::collections::HashMap<String, u32>,
    /// `seq` of the next meeting stored.
    next_seq: u64,
}

impl MeetingStore {
    /// Meetings stored now.
    pub(crate) fn len(&self) -> usize {
        self.meetings.len()
    }

    /// Stores a new meeting; the flag tells whether one of its integration tags was
    /// already on a stored meeting (Webex creates it anyway).
    pub(crate) fn insert(&mut self, request: NewMeeting) -> (Meeting, bool) {
        let duplicate = request
            .integration_tags
            .iter()
            .any(|tag| self.tags.get(tag).is_some_and(|n| *n > 0));
        for tag in &request.integration_tags {
            *self.tags.entry(tag.clone()).or_default() += 1;
        }
        let mut rng = rand::rng();
        let meeting = Meeting {
            id: Uuid::new_v4().simple().to_string(),
            seq: self.next_seq,
            meeting_number: self.fresh_number(),
            password: request
                .password
                .clone()
                .unwrap_or_else(|| format!("Sim{:05}", rng.random_range(0..100_000))),
            host_key: format!("{:06}", rng.random_range(0..1_000_000)),
            host_email: request
                .host_email
                .clone()
                .unwrap_or_else(|| DEFAULT_HOST.to_owned()),
            request,
        };
        self.next_seq += 1;
        self.meetings.push(meeting.clone());
        (meeting, duplicate)
    }

    /// A nine-digit meeting number not handed out before.
    fn fresh_number(&mut self) -> String {
        loop {
            let number = rand::rng()
                .random_range(100_000_000..1_000_000_000u32)
                .to_string();
            if self.numbers.insert(number.clone()) {
                return number;
            }
        }
    }

    /// The meeting with this id.
    pub(crate) fn get(&self, id: &str) -> Option<&Meeting> {
        self.meetings.iter().find(|meeting| meeting.id == id)
    }

    /// Stores a copy of the meeting with this id (same request, integration tags
    /// included; a new id and meeting number); `None` if there is none.
    pub(crate) fn duplicate(&mut self, id: &str) -> Option<Meeting> {
        let request = self.get(id)?.request.clone();
        Some(self.insert(request).0)
    }

    /// Deletes the meeting with this id; false if there is none.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let Some(at) = self.meetings.iter().position(|meeting| meeting.id == id) else {
            return false;
        };
        let gone = self.meetings.remove(at);
        for tag in &gone.request.integration_tags {
            if let Some(n) = self.tags.get_mut(tag) {
                *n = n.saturating_sub(1);
            }
        }
        true
    }

    /// One page of a listing, sorted by start (then creation order): at most `max`
    /// meetings after `query.after`, and the position of the last one when more follow.
    fn list(&self, query: &ListQuery) -> (Vec<Value>, Option<Position>) {
        let mut found: Vec<&Meeting> = self
            .meetings
            .iter()
            .filter(|meeting| meeting.concerns(&query.host))
            .filter(|meeting| query.tag.as_deref().is_none_or(|tag| meeting.has_tag(tag)))
            .filter(|meeting| meeting.overlaps(query.from, query.to))
            .filter(|meeting| query.after.is_none_or(|after| meeting.position() > after))
            .collect();
        found.sort_by_key(|meeting| meeting.position());
        let more = found.len() > query.max;
        found.truncate(query.max);
        let next = found.last().filter(|_| more).map(|last| last.position());
        (
            found.iter().map(|meeting| meeting.to_json()).collect(),
            next,
        )
    }

    /// Every stored meeting as GET returns it, in creation order.
    pub(crate) fn all_json(&self) -> Vec<Value> {
        self.meetings.iter().map(Meeting::to_json).collect()
    }
}

/// `POST /v1/meetings`. With probability `drop_rate` the meeting is stored and the
/// connection is then dropped without an answer. With probability `slow_create_rate`
/// the meeting is stored only after `slow_create_delay`, by a task that outlives this
/// handler (see [`SimConfig::slow_create_rate`](super::SimConfig::slow_create_rate)).
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

/// Stores a created meeting and counts it; `slow` also settles a pending slow create.
fn store(sim: &SimState, request: NewMeeting, slow: bool) -> Meeting {
    let (meeting, duplicate) = sim.meetings().insert(request);
    sim.record(|stats| {
        stats.creates += 1;
        stats.duplicates += u64::from(duplicate);
        if slow {
            stats.slow_creates_pending = stats.slow_creates_pending.saturating_sub(1);
        }
    });
    meeting
}

/// Starts a slow create: a task that waits `slow_create_delay` and then stores the
/// meeting. It runs to the end even when the handler awaiting it is dropped (the
/// client timed out or went away).
fn spawn_slow_create(sim: Arc<SimState>, request: NewMeeting) -> JoinHandle<Meeting> {
    sim.record(|stats| {
        stats.slow_creates += 1;
        stats.slow_creates_pending += 1;
    });
    tokio::spawn(async move {
        tokio::time::sleep(sim.config.slow_create_delay).await;
        store(&sim, request, true)
    })
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

/// The sort key of a listing: start, then creation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Position {
    /// The meeting's start.
    start: DateTime<Utc>,
    /// The meeting's creation order.
    seq: u64,
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

/// A checked listing request.
#[derive(Debug)]
struct ListQuery {
    /// Only meetings with this integration tag.
    tag: Option<String>,
    /// Only meetings this user hosts or is invited to.
    host: String,
    /// Window start (inclusive).
    from: DateTime<Utc>,
    /// Window end (exclusive).
    to: DateTime<Utc>,
    /// Most items returned.
    max: usize,
    /// Only meetings after this one (the previous page's last).
    after: Option<Position>,
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

/// The meetingSeries window: neither bound → [now, now + 7 d); one bound → the other
/// is 7 days away from it.
fn window(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    match (from, to) {
        (Some(from), Some(to)) => (from, to),
        (Some(from), None) => (from, from + DEFAULT_WINDOW),
        (None, Some(to)) => (to - DEFAULT_WINDOW, to),
        (None, None) => (now, now + DEFAULT_WINDOW),
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
    fn window_defaults() {
        let now = at("2027-01-10T12:00:00Z");
        let day = |d: u32| at(&format!("2027-01-{d:02}T12:00:00Z"));
        assert_eq!(window(None, None, now), (now, day(17)));
        assert_eq!(window(Some(day(20)), None, now), (day(20), day(27)));
        assert_eq!(window(None, Some(day(20)), now), (day(13), day(20)));
        assert_eq!(window(Some(day(1)), Some(day(2)), now), (day(1), day(2)));
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

    #[test]
    fn display_names() {
        assert_eq!(display_name("john.andersen@example.com"), "John Andersen");
        assert_eq!(display_name(DEFAULT_HOST), "Admin");
    }
}

//! Stored meetings: what a create stores (ids, meeting numbers, host), the
//! MeetingSeriesObject they answer with, listing order and filters, the default
//! listing window, and slow creates that store their meeting after a delay.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::state::SimState;
use super::times::format_in;

/// The user every access token belongs to: the default host and the user whose
/// meetings a listing without `hostEmail` shows.
pub(crate) const DEFAULT_HOST: &str = crate::sim::ADMIN_EMAIL;
/// Site of every meeting.
const SITE_URL: &str = "sim.webex.com";
/// Listing window when `from` or `to` is missing.
const DEFAULT_WINDOW: TimeDelta = TimeDelta::days(7);

/// A meeting request that passed validation, times already kept to the minute.
#[derive(Clone, Debug)]
pub(crate) struct NewMeeting {
    /// Meeting title.
    pub(crate) title: String,
    /// Agenda, if given.
    pub(crate) agenda: Option<String>,
    /// Password, if given (non-empty).
    pub(crate) password: Option<String>,
    /// Time zone of `start`/`end` in answers.
    pub(crate) timezone: Tz,
    /// Start instant.
    pub(crate) start: DateTime<Utc>,
    /// End instant.
    pub(crate) end: DateTime<Utc>,
    /// RFC 2445 rule, if given (not interpreted).
    pub(crate) recurrence: Option<String>,
    /// Whether the meeting records automatically.
    pub(crate) enabled_auto_record_meeting: bool,
    /// Host, if given.
    pub(crate) host_email: Option<String>,
    /// Invitee emails (not returned, but a listing for an invitee finds the meeting).
    pub(crate) invitee_emails: Vec<String>,
    /// Integration tags.
    pub(crate) integration_tags: Vec<String>,
}

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
    pub(crate) fn list(&self, query: &ListQuery) -> (Vec<Value>, Option<Position>) {
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

/// Stores a created meeting and counts it; `slow` also settles a pending slow create.
pub(crate) fn store(sim: &SimState, request: NewMeeting, slow: bool) -> Meeting {
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
pub(crate) fn spawn_slow_create(sim: Arc<SimState>, request: NewMeeting) -> JoinHandle<Meeting> {
    sim.record(|stats| {
        stats.slow_creates += 1;
        stats.slow_creates_pending += 1;
    });
    tokio::spawn(async move {
        tokio::time::sleep(sim.config.slow_create_delay).await;
        store(&sim, request, true)
    })
}

/// The sort key of a listing: start, then creation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Position {
    /// The meeting's start.
    pub(crate) start: DateTime<Utc>,
    /// The meeting's creation order.
    pub(crate) seq: u64,
}

/// A checked listing request.
#[derive(Debug)]
pub(crate) struct ListQuery {
    /// Only meetings with this integration tag.
    pub(crate) tag: Option<String>,
    /// Only meetings this user hosts or is invited to.
    pub(crate) host: String,
    /// Window start (inclusive).
    pub(crate) from: DateTime<Utc>,
    /// Window end (exclusive).
    pub(crate) to: DateTime<Utc>,
    /// Most items returned.
    pub(crate) max: usize,
    /// Only meetings after this one (the previous page's last).
    pub(crate) after: Option<Position>,
}

/// The meetingSeries window: neither bound → [now, now + 7 d); one bound → the other
/// is 7 days away from it.
pub(crate) fn window(
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
    fn display_names() {
        assert_eq!(display_name("john.andersen@example.com"), "John Andersen");
        assert_eq!(display_name(DEFAULT_HOST), "Admin");
    }
}

//! Validation of `POST /v1/meetings` bodies, with the rules of the Webex meetings API.
//! Every problem found is reported, each as one sentence.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::sim::model::meetings::NewMeeting;
use crate::sim::model::times::{parse_instant, to_minute};

/// Longest title.
const MAX_TITLE_CHARS: usize = 128;
/// Longest agenda.
const MAX_AGENDA_CHARS: usize = 1300;
/// Most invitees.
const MAX_INVITEES: usize = 1000;
/// Longest invitee display name.
const MAX_DISPLAY_NAME_CHARS: usize = 128;
/// Most integration tags.
const MAX_TAGS: usize = 3;
/// Longest integration tag.
const MAX_TAG_CHARS: usize = 64;
/// How far in the past a start may be (clock skew, slow requests).
const PAST_SLACK: TimeDelta = TimeDelta::minutes(5);
/// Shortest meeting.
const MIN_DURATION: TimeDelta = TimeDelta::minutes(10);
/// Longest meeting: 23 h 59 min.
const MAX_DURATION: TimeDelta = TimeDelta::minutes(23 * 60 + 59);

/// The fields of CreateMeetingObject the simulator looks at; others are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateMeetingRequest {
    title: Option<String>,
    agenda: Option<String>,
    password: Option<String>,
    start: Option<String>,
    end: Option<String>,
    timezone: Option<String>,
    recurrence: Option<String>,
    enabled_auto_record_meeting: Option<bool>,
    invitees: Option<Vec<InviteeRequest>>,
    host_email: Option<String>,
    integration_tags: Option<Vec<String>>,
}

/// InviteeObjectForCreateMeeting.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InviteeRequest {
    email: Option<String>,
    display_name: Option<String>,
}

/// Parses and checks a create body; `Err` lists every problem.
pub(crate) fn validate_create(body: &[u8], now: DateTime<Utc>) -> Result<NewMeeting, Vec<String>> {
    let request: CreateMeetingRequest = serde_json::from_slice(body).map_err(|error| {
        vec![format!(
            "The request body is not a valid meeting object: {error}."
        )]
    })?;
    let mut problems = Vec::new();
    let title = check_title(request.title.as_deref(), &mut problems);
    let timezone = check_timezone(request.timezone.as_deref(), &mut problems);
    let times = check_times(&request, timezone, now, &mut problems);
    check_length(
        "agenda",
        request.agenda.as_deref(),
        MAX_AGENDA_CHARS,
        &mut problems,
    );
    let invitee_emails = check_invitees(
        request.invitees.as_deref().unwrap_or_default(),
        &mut problems,
    );
    let integration_tags = request.integration_tags.unwrap_or_default();
    check_tags(&integration_tags, &mut problems);
    if let Some(host) = request.host_email.as_deref() {
        check_email("hostEmail", host, &mut problems);
    }
    match (title, times) {
        (Some(title), Some((start, end))) if problems.is_empty() => Ok(NewMeeting {
            title,
            agenda: request.agenda,
            password: request.password.filter(|password| !password.is_empty()),
            timezone,
            start: to_minute(start, now, true),
            end: to_minute(end, now, false),
            recurrence: request.recurrence,
            enabled_auto_record_meeting: request.enabled_auto_record_meeting.unwrap_or(false),
            host_email: request.host_email,
            invitee_emails,
            integration_tags,
        }),
        _ => Err(problems),
    }
}

/// Title: required, 1..=128 characters, not blank.
fn check_title(title: Option<&str>, problems: &mut Vec<String>) -> Option<String> {
    let Some(title) = title else {
        problems.push("title is required.".to_owned());
        return None;
    };
    if title.trim().is_empty() {
        problems.push("title cannot be empty.".to_owned());
        return None;
    }
    check_length("title", Some(title), MAX_TITLE_CHARS, problems).then(|| title.to_owned())
}

/// Pushes a problem when `value` is longer than `max` characters; true when fine.
fn check_length(field: &str, value: Option<&str>, max: usize, problems: &mut Vec<String>) -> bool {
    let chars = value.map_or(0, |value| value.chars().count());
    if chars <= max {
        return true;
    }
    problems.push(format!(
        "{field} can be at most {max} characters long (it has {chars})."
    ));
    false
}

/// The IANA time zone of the meeting (UTC when not given; UTC after reporting a bad one).
fn check_timezone(timezone: Option<&str>, problems: &mut Vec<String>) -> Tz {
    let Some(name) = timezone else {
        return Tz::UTC;
    };
    name.parse().unwrap_or_else(|_| {
        problems.push(format!("timezone '{name}' is not an IANA time zone name."));
        Tz::UTC
    })
}

/// Start and end: present, ISO 8601, end after start, 10 min ..= 23 h 59 min apart,
/// start not in the past (with some slack).
fn check_times(
    request: &CreateMeetingRequest,
    timezone: Tz,
    now: DateTime<Utc>,
    problems: &mut Vec<String>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let start = parse_time("start", request.start.as_deref(), timezone, problems);
    let end = parse_time("end", request.end.as_deref(), timezone, problems);
    let (start, end) = (start?, end?);
    let before = problems.len();
    let duration = end - start;
    if duration <= TimeDelta::zero() {
        problems.push("end must be after start.".to_owned());
    } else if duration < MIN_DURATION {
        problems.push("The meeting must last at least 10 minutes.".to_owned());
    } else if duration > MAX_DURATION {
        problems.push("The meeting can last at most 23 hours and 59 minutes.".to_owned());
    }
    if start < now - PAST_SLACK {
        problems.push("start cannot be before the current date and time.".to_owned());
    }
    (problems.len() == before).then_some((start, end))
}

/// One required date-time field.
fn parse_time(
    field: &str,
    value: Option<&str>,
    timezone: Tz,
    problems: &mut Vec<String>,
) -> Option<DateTime<Utc>> {
    let Some(value) = value else {
        problems.push(format!("{field} is required."));
        return None;
    };
    parse_instant(value, timezone)
        .map_err(|reason| problems.push(format!("{field}: {reason}")))
        .ok()
}

/// At most 1000 invitees, each with a well-formed email; returns their emails.
fn check_invitees(invitees: &[InviteeRequest], problems: &mut Vec<String>) -> Vec<String> {
    if invitees.len() > MAX_INVITEES {
        problems.push(format!(
            "invitees can have at most {MAX_INVITEES} items (it has {}).",
            invitees.len()
        ));
    }
    let mut emails = Vec::with_capacity(invitees.len());
    for (index, invitee) in invitees.iter().enumerate() {
        let field = format!("invitees[{index}].email");
        match invitee.email.as_deref() {
            Some(email) if check_email(&field, email, problems) => emails.push(email.to_owned()),
            Some(_) => {}
            None => problems.push(format!("{field} is required.")),
        }
        let name_field = format!("invitees[{index}].displayName");
        check_length(
            &name_field,
            invitee.display_name.as_deref(),
            MAX_DISPLAY_NAME_CHARS,
            problems,
        );
    }
    emails
}

/// At most 3 tags, each 1..=64 characters.
fn check_tags(tags: &[String], problems: &mut Vec<String>) {
    if tags.len() > MAX_TAGS {
        problems.push(format!(
            "integrationTags can have at most {MAX_TAGS} items (it has {}).",
            tags.len()
        ));
    }
    for (index, tag) in tags.iter().enumerate() {
        let field = format!("integrationTags[{index}]");
        if tag.is_empty() {
            problems.push(format!("{field} cannot be empty."));
        }
        check_length(&field, Some(tag), MAX_TAG_CHARS, problems);
    }
}

/// Pushes a problem unless `email` is well-formed; true when fine.
fn check_email(field: &str, email: &str, problems: &mut Vec<String>) -> bool {
    if is_valid_email(email) {
        return true;
    }
    problems.push(format!("{field} '{email}' is not a valid email address."));
    false
}

/// A plain `local@domain.tld` check: one `@`, no spaces or quoting characters, and a
/// domain of at least two non-empty labels of letters, digits and hyphens.
pub(crate) fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    local_ok && domain_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2027-01-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn problems(body: serde_json::Value) -> Vec<String> {
        validate_create(body.to_string().as_bytes(), now()).unwrap_err()
    }

    #[test]
    fn accepts_a_good_meeting_and_keeps_minutes() {
        let body = json!({
            "title": "Standup", "start": "2027-01-12T09:00:30", "end": "2027-01-12T09:30:59",
            "timezone": "Europe/Berlin", "integrationTags": ["row-1"], "unknownField": 1,
            "invitees": [{"email": "a@example.com", "displayName": "A"}]
        });
        let meeting = validate_create(body.to_string().as_bytes(), now()).unwrap();
        assert_eq!(meeting.start.to_rfc3339(), "2027-01-12T08:00:00+00:00");
        assert_eq!(meeting.end.to_rfc3339(), "2027-01-12T08:30:00+00:00");
        assert_eq!(meeting.invitee_emails, ["a@example.com"]);
    }

    #[test]
    fn reports_each_problem() {
        let found = problems(json!({
            "title": "x".repeat(129), "start": "2027-01-12T09:00:00Z", "end": "2027-01-12T09:05:00Z",
            "agenda": "a".repeat(1301), "integrationTags": ["1", "2", "3", "4"],
            "hostEmail": "not-an-email", "invitees": [{"email": "b@c"}, {}]
        }));
        let expected = [
            "title can be at most 128",
            "at least 10 minutes",
            "agenda can be at most 1300",
            "invitees[0].email 'b@c'",
            "invitees[1].email is required",
            "integrationTags can have at most 3",
            "hostEmail 'not-an-email'",
        ];
        assert_eq!(found.len(), expected.len(), "{found:?}");
        for (problem, fragment) in found.iter().zip(expected) {
            assert!(problem.contains(fragment), "{problem:?} lacks {fragment:?}");
        }
    }

    #[test]
    fn time_rules() {
        let at =
            |start: &str, end: &str| problems(json!({"title": "t", "start": start, "end": end}));
        assert!(at("2027-01-12T10:00:00Z", "2027-01-12T09:00:00Z")[0]
            .contains("end must be after start"));
        assert!(at("2027-01-12T00:00:00Z", "2027-01-13T00:00:00Z")[0].contains("at most 23 hours"));
        assert!(
            at("2027-01-10T11:50:00Z", "2027-01-10T12:50:00Z")[0].contains("before the current")
        );
        assert!(at("tomorrow", "2027-01-10T12:50:00Z")[0].starts_with("start: 'tomorrow'"));
        let missing = problems(json!({"start": "2027-01-12T10:00:00Z", "timezone": "Mars/Base"}));
        assert_eq!(
            missing,
            [
                "title is required.",
                "timezone 'Mars/Base' is not an IANA time zone name.",
                "end is required."
            ]
        );
        // Four minutes in the past is within the slack; 23 h 59 min is allowed.
        let body =
            json!({"title": "t", "start": "2027-01-10T11:56:00Z", "end": "2027-01-11T11:55:00Z"});
        assert!(validate_create(body.to_string().as_bytes(), now()).is_ok());
    }

    #[test]
    fn emails() {
        for good in ["a@b.co", "first.last+tag@sub.example.com", "ü@exämple.de"] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a@@b.co", "a b@c.co", "a@b..co", "a@-b.co", ".a@b.co",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn malformed_json_is_one_problem() {
        let found = validate_create(b"{\"title\": 5}", now()).unwrap_err();
        assert_eq!(found.len(), 1);
        assert!(found[0].starts_with("The request body is not a valid meeting object"));
    }
}

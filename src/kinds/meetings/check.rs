//! The meetings job kind: what a row of a meetings spreadsheet means, and the
//! Webex rules it must pass before anything is sent.
//!
//! Pure: no clock, no I/O. "Now" is an argument.

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::csvin::{is_valid_email, ColumnRef, Problem};

/// Webex: a title is at most 128 characters.
pub const MAX_TITLE: usize = 128;
/// Webex: an agenda is at most 1300 characters.
pub const MAX_AGENDA: usize = 1300;
/// Webex: a meeting has at most 1000 invitees.
pub const MAX_INVITEES: usize = 1000;
/// Webex: shortest meeting, in minutes.
pub const MIN_MINUTES: i64 = 10;
/// Webex: longest meeting, in minutes (23 h 59 min).
pub const MAX_MINUTES: i64 = 23 * 60 + 59;
/// Webex's 24-hour creation quota for one host.
pub const QUOTA_PER_HOST: u64 = 800;
/// Webex's 24-hour creation quota for an admin overall.
pub const QUOTA_TOTAL: u64 = 3000;

/// The columns a meetings file may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Title,
    Start,
    End,
    Duration,
    HostEmail,
    Timezone,
    Agenda,
    Invitees,
    CoHosts,
    Password,
    SendEmail,
    AutoRecord,
    Recurrence,
}

impl Field {
    const ALL: [Field; 13] = [
        Field::Title,
        Field::Start,
        Field::End,
        Field::Duration,
        Field::HostEmail,
        Field::Timezone,
        Field::Agenda,
        Field::Invitees,
        Field::CoHosts,
        Field::Password,
        Field::SendEmail,
        Field::AutoRecord,
        Field::Recurrence,
    ];

    /// The canonical column name, as the README documents it.
    pub const fn name(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Start => "start",
            Field::End => "end",
            Field::Duration => "duration",
            Field::HostEmail => "hostEmail",
            Field::Timezone => "timezone",
            Field::Agenda => "agenda",
            Field::Invitees => "invitees",
            Field::CoHosts => "coHosts",
            Field::Password => "password",
            Field::SendEmail => "sendEmail",
            Field::AutoRecord => "enabledAutoRecordMeeting",
            Field::Recurrence => "recurrence",
        }
    }
}

/// The fields as the shared header mapping takes them (in `Field` order).
pub const FIELDS: [crate::header::Field; 13] = {
    let mut fields = [crate::header::Field::named(""); 13];
    let mut i = 0;
    while i < 13 {
        fields[i] = crate::header::Field::named(Field::ALL[i].name());
        i += 1;
    }
    fields
};

/// What a meetings header needs: a title, a start, a host, and an end or a duration.
const RULES: [crate::header::Rule; 4] = [
    crate::header::Rule::Required {
        field: Field::Title as usize,
        fix: None,
    },
    crate::header::Rule::Required {
        field: Field::Start as usize,
        fix: None,
    },
    crate::header::Rule::Required {
        field: Field::HostEmail as usize,
        fix: None,
    },
    crate::header::Rule::OneOf {
        fields: &[Field::End as usize, Field::Duration as usize],
        fix: "add an end column (ISO 8601 time) or a duration column (minutes)",
    },
];

/// Where each known column sits in the file.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Each `Field`'s column (by discriminant).
    mapping: crate::header::Mapping,
    /// Headers we do not know, as written (reported once, then ignored).
    pub unknown: Vec<String>,
    /// How many columns the header has.
    pub width: usize,
}

impl Layout {
    /// Maps a header row onto the meeting fields. Fails when a required
    /// column is missing or a column appears twice.
    pub fn from_headers(headers: &[String]) -> Result<Layout, Vec<Problem>> {
        let (mapping, problems) = crate::header::map(headers, &FIELDS, &RULES);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Layout {
            unknown: mapping.unmatched.iter().map(|c| c.name.clone()).collect(),
            width: mapping.width,
            mapping,
        })
    }

    fn col(&self, f: Field) -> Option<&ColumnRef> {
        self.mapping.column(f as usize)
    }

    fn get<'a>(&self, f: Field, fields: &'a [String]) -> Option<(&ColumnRef, &'a str)> {
        self.mapping.get(f as usize, fields)
    }
}

/// An invitee in a create-meeting request (InviteeObjectForCreateMeeting).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitee {
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub co_host: Option<bool>,
}

/// The body of `POST /v1/meetings` (fields of CreateMeetingObject only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingRequest {
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agenda: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub password: Option<String>,
    /// RFC 3339 with the offset that applies at that moment.
    pub start: String,
    /// RFC 3339 with the offset that applies at that moment.
    pub end: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recurrence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub enabled_auto_record_meeting: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub invitees: Vec<Invitee>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub send_email: Option<bool>,
    pub host_email: String,
    /// Set by the queue: identifies the run and row, for exactly-once.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub integration_tags: Vec<String>,
}

impl MeetingRequest {
    /// The start as an instant.
    pub fn start_utc(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.start)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
    /// The end as an instant.
    pub fn end_utc(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.end)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The `from`/`to` of a lookup by tag: a day either side of the meeting.
    /// The list API searches only 7 days from now when none is given, so
    /// without it a meeting further out would never be found.
    pub fn lookup_window(&self) -> Option<(String, String)> {
        let day = chrono::Duration::days(1);
        let text = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Some((text(self.start_utc()? - day), text(self.end_utc()? + day)))
    }
}

/// Checks one data row and builds its request, or lists everything wrong
/// with it (all problems at once, not just the first). Warnings that do not
/// stop the row are pushed to `warnings`.
pub fn parse_row(
    layout: &Layout,
    fields: &[String],
    line: u64,
    now: DateTime<Utc>,
    warnings: &mut Vec<Problem>,
) -> Result<MeetingRequest, Vec<Problem>> {
    let mut errors = Vec::new();
    let need = |f: Field, errors: &mut Vec<Problem>| -> Option<String> {
        match layout.get(f, fields) {
            Some((_, v)) => Some(v.to_owned()),
            None => {
                let col = layout.col(f).expect("required column checked by Layout");
                errors.push(Problem::cell(
                    line,
                    col,
                    format!("{} is empty", f.name()),
                    format!("fill in the {}", f.name()),
                ));
                None
            }
        }
    };

    if fields.len() > layout.width && fields[layout.width..].iter().any(|f| !f.trim().is_empty()) {
        errors.push(Problem::line(
            line,
            format!(
                "the row has {} cells but the header has {}",
                fields.len(),
                layout.width
            ),
            "a cell probably holds an unquoted comma: put the cell in double quotes",
        ));
    }

    // title
    let title = need(Field::Title, &mut errors);
    if let (Some(t), Some(col)) = (&title, layout.col(Field::Title)) {
        let n = t.chars().count();
        if n > MAX_TITLE {
            errors.push(Problem::cell(
                line,
                col,
                format!("the title is {n} characters long; Webex allows {MAX_TITLE}"),
                format!("shorten the title to {MAX_TITLE} characters or fewer"),
            ));
        }
    }

    // timezone
    let tz = match layout.get(Field::Timezone, fields) {
        Some((col, v)) => match v.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                errors.push(Problem::cell(
                    line,
                    col,
                    format!("`{v}` is not an IANA time zone"),
                    "use a name such as Europe/Berlin, America/New_York or UTC",
                ));
                None
            }
        },
        None => None,
    };
    let tz_broken = layout.get(Field::Timezone, fields).is_some() && tz.is_none();

    // start
    let start = need(Field::Start, &mut errors).and_then(|raw| {
        let col = layout.col(Field::Start).expect("required");
        match parse_time(&raw, tz) {
            Ok(t) => Some(t),
            Err(e) => {
                if !tz_broken {
                    errors.push(Problem::cell(line, col, e.message(&raw, "start"), e.fix()));
                }
                None
            }
        }
    });
    if let (Some(s), Some(col)) = (&start, layout.col(Field::Start)) {
        if s.with_timezone(&Utc) < now {
            errors.push(Problem::cell(
                line,
                col,
                format!("the start {} is in the past", s.to_rfc3339()),
                "choose a start in the future (Webex refuses meetings in the past)",
            ));
        }
    }

    // end / duration
    let end_given = layout.get(Field::End, fields);
    let duration_given = layout.get(Field::Duration, fields);
    let mut end: Option<DateTime<FixedOffset>> = None;
    if let Some((col, raw)) = end_given {
        match parse_time(raw, tz) {
            Ok(t) => end = Some(t),
            Err(e) => {
                if !tz_broken {
                    errors.push(Problem::cell(line, col, e.message(raw, "end"), e.fix()))
                }
            }
        }
    }
    if let Some((col, raw)) = duration_given {
        match raw.parse::<i64>() {
            Ok(minutes) => {
                if let Some(s) = &start {
                    let by_duration = *s + chrono::Duration::minutes(minutes);
                    match end {
                        Some(e) if e != by_duration => errors.push(Problem::cell(
                            line,
                            col,
                            format!("duration {minutes} min disagrees with end {} (start + duration = {})", e.to_rfc3339(), by_duration.to_rfc3339()),
                            "give either end or duration, or make them agree",
                        )),
                        _ => end = Some(by_duration),
                    }
                }
            }
            Err(_) => errors.push(Problem::cell(
                line,
                col,
                format!("duration `{raw}` is not a whole number of minutes"),
                "write the length in minutes, e.g. 45",
            )),
        }
    }
    if end_given.is_none() && duration_given.is_none() {
        let col = layout
            .col(Field::End)
            .or(layout.col(Field::Duration))
            .expect("checked by Layout");
        errors.push(Problem::cell(
            line,
            col,
            "the row has neither an end nor a duration",
            "fill in end (ISO 8601 time) or duration (minutes)",
        ));
    }
    if let (Some(s), Some(e)) = (&start, &end) {
        let minutes = (*e - *s).num_seconds() as f64 / 60.0;
        let col = end_given
            .map(|c| c.0)
            .or(duration_given.map(|c| c.0))
            .expect("one of them is set");
        if e <= s {
            errors.push(Problem::cell(
                line,
                col,
                format!(
                    "the meeting ends ({}) before or when it starts ({})",
                    e.to_rfc3339(),
                    s.to_rfc3339()
                ),
                "make the end later than the start",
            ));
        } else if minutes < MIN_MINUTES as f64 {
            errors.push(Problem::cell(
                line,
                col,
                format!("the meeting lasts {minutes} minutes; Webex needs at least {MIN_MINUTES}"),
                "make the meeting at least 10 minutes long",
            ));
        } else if minutes > MAX_MINUTES as f64 {
            errors.push(Problem::cell(
                line,
                col,
                format!(
                    "the meeting lasts {:.0} minutes; Webex allows at most 23 h 59 min",
                    minutes
                ),
                "split it into meetings shorter than 24 hours, or use recurrence",
            ));
        }
    }

    // host
    let host = need(Field::HostEmail, &mut errors);
    if let (Some(h), Some(col)) = (&host, layout.col(Field::HostEmail)) {
        if !is_valid_email(h) {
            errors.push(Problem::cell(
                line,
                col,
                format!("`{h}` is not a valid email address"),
                "write the host's Webex email, e.g. jane.doe@example.com",
            ));
        }
    }

    // agenda
    let agenda = layout.get(Field::Agenda, fields).map(|(col, v)| {
        let n = v.chars().count();
        if n > MAX_AGENDA {
            errors.push(Problem::cell(
                line,
                col,
                format!("the agenda is {n} characters long; Webex allows {MAX_AGENDA}"),
                format!("shorten the agenda to {MAX_AGENDA} characters or fewer"),
            ));
        }
        v.to_owned()
    });

    // invitees and co-hosts
    let mut invitees: Vec<Invitee> = Vec::new();
    if let Some((col, raw)) = layout.get(Field::Invitees, fields) {
        for item in raw.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, email) = split_name_email(item);
            if !is_valid_email(&email) {
                errors.push(Problem::cell(
                    line,
                    col,
                    format!("invitee `{item}` is not a valid email address"),
                    "write invitees as email or Name <email>, separated by ;",
                ));
                continue;
            }
            if invitees
                .iter()
                .any(|i| i.email.eq_ignore_ascii_case(&email))
            {
                warnings.push(
                    Problem::cell(
                        line,
                        col,
                        format!("invitee {email} is listed twice; it is invited once"),
                        "remove the repeat",
                    )
                    .warning(),
                );
                continue;
            }
            invitees.push(Invitee {
                email,
                display_name: name,
                co_host: None,
            });
        }
        if invitees.len() > MAX_INVITEES {
            errors.push(Problem::cell(
                line,
                col,
                format!("{} invitees; Webex allows {MAX_INVITEES}", invitees.len()),
                "split the invitees over several meetings or use a group",
            ));
        }
    }
    if let Some((col, raw)) = layout.get(Field::CoHosts, fields) {
        for item in raw.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (_, email) = split_name_email(item);
            match invitees
                .iter_mut()
                .find(|i| i.email.eq_ignore_ascii_case(&email))
            {
                Some(inv) => inv.co_host = Some(true),
                None => errors.push(Problem::cell(
                    line,
                    col,
                    format!("co-host {email} is not among the invitees"),
                    "add the co-host to the invitees column too",
                )),
            }
        }
    }

    let password = layout
        .get(Field::Password, fields)
        .map(|(_, v)| v.to_owned());
    let send_email = parse_bool_cell(layout, Field::SendEmail, fields, line, &mut errors);
    let auto_record = parse_bool_cell(layout, Field::AutoRecord, fields, line, &mut errors);
    let recurrence = layout.get(Field::Recurrence, fields).and_then(|(col, v)| {
        let rule = v.strip_prefix("RRULE:").unwrap_or(v);
        if rule.to_ascii_uppercase().starts_with("FREQ=")
            || rule.to_ascii_uppercase().contains(";FREQ=")
        {
            Some(rule.to_owned())
        } else {
            errors.push(Problem::cell(
                line,
                col,
                format!("`{v}` is not an RFC 2445 recurrence rule"),
                "write a rule such as FREQ=WEEKLY;INTERVAL=1;COUNT=10",
            ));
            None
        }
    });

    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(title), Some(start), Some(end), Some(host)) = (title, start, end, host) else {
        unreachable!("every missing value pushed an error")
    };
    Ok(MeetingRequest {
        title,
        agenda,
        password,
        start: start.to_rfc3339(),
        end: end.to_rfc3339(),
        timezone: tz.map(|t| t.name().to_owned()),
        recurrence,
        enabled_auto_record_meeting: auto_record,
        invitees,
        send_email,
        host_email: host,
        integration_tags: Vec::new(),
    })
}

fn parse_bool_cell(
    layout: &Layout,
    f: Field,
    fields: &[String],
    line: u64,
    errors: &mut Vec<Problem>,
) -> Option<bool> {
    let (col, v) = layout.get(f, fields)?;
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" => Some(true),
        "false" | "no" | "n" | "0" => Some(false),
        _ => {
            errors.push(Problem::cell(
                line,
                col,
                format!("`{v}` is not true or false"),
                "write true or false (or leave the cell empty for Webex's default)",
            ));
            None
        }
    }
}

/// Splits `Jane Doe <jane@acme.com>` into its name and address; a bare
/// address has no name.
pub fn split_name_email(item: &str) -> (Option<String>, String) {
    if let (Some(open), true) = (item.rfind('<'), item.ends_with('>')) {
        let email = item[open + 1..item.len() - 1].trim().to_owned();
        let name = item[..open].trim().trim_matches('"').trim();
        return ((!name.is_empty()).then(|| name.to_owned()), email);
    }
    (None, item.to_owned())
}

/// Why a time cell could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum TimeError {
    /// Not an ISO 8601 date and time.
    Format,
    /// A local time with no offset, and no timezone column to read it in.
    NoZone,
    /// The local time does not exist in the zone (the spring-forward gap).
    Gap(String),
}

impl TimeError {
    fn message(&self, raw: &str, what: &str) -> String {
        match self {
            TimeError::Format => format!("{what} `{raw}` is not an ISO 8601 date and time"),
            TimeError::NoZone => {
                format!("{what} `{raw}` has no UTC offset and the row has no timezone")
            }
            TimeError::Gap(tz) => {
                format!("{what} `{raw}` does not exist in {tz} (the clocks skip that hour)")
            }
        }
    }
    fn fix(&self) -> &'static str {
        match self {
            TimeError::Format => {
                "write it as 2027-01-12T09:00:00+01:00 (or 2027-01-12 09:00 with a timezone column)"
            }
            TimeError::NoZone => {
                "add an offset (2027-01-12T09:00:00+01:00 or ...Z) or fill in the timezone column"
            }
            TimeError::Gap(_) => "move the time out of the daylight-saving gap",
        }
    }
}

/// Reads an ISO 8601 time. With an offset it stands as written; without one
/// it is read in `tz` (the earlier of two readings when the clocks go back).
pub fn parse_time(raw: &str, tz: Option<Tz>) -> Result<DateTime<FixedOffset>, TimeError> {
    let s = raw.trim();
    let (naive, offset) = match quick_time(s) {
        Some(quick) => quick,
        None => return parse_time_slowly(s, tz),
    };
    match offset {
        Some(offset) => offset
            .from_local_datetime(&naive)
            .single()
            .ok_or(TimeError::Format),
        None => in_zone(naive, tz),
    }
}

/// The shapes nearly every spreadsheet uses, read without chrono's format
/// machinery (ingest reads millions of them): `2027-01-12T09:00`,
/// `2027-01-12 09:00:30`, each optionally followed by `Z` or `+01:00`.
/// `None` for anything else (or any impossible value), which then goes the
/// general way: what chrono reads, this reads the same (it also reads
/// `2027-01-12T09:00Z`, which chrono's `%z` refuses).
fn quick_time(s: &str) -> Option<(NaiveDateTime, Option<FixedOffset>)> {
    let b = s.as_bytes();
    let num = |at: usize, len: usize| -> Option<u32> {
        let digits = b.get(at..at + len)?;
        digits.iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    if b.len() < 16
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b' ')
        || b[13] != b':'
    {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 2)?, num(8, 2)?)?;
    let (seconds, rest) = match b.get(16) {
        Some(b':') => (num(17, 2)?, &b[19..]),
        _ => (0, &b[16..]),
    };
    let time = chrono::NaiveTime::from_hms_opt(num(11, 2)?, num(14, 2)?, seconds)?;
    let offset = match rest {
        [] => None,
        [b'Z'] => Some(FixedOffset::east_opt(0)?),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let two = |a: &u8, b: &u8| -> Option<i32> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i32::from(a - b'0') * 10 + i32::from(b - b'0'))
            };
            let (h, m) = (two(h1, h2)?, two(m1, m2)?);
            if m >= 60 {
                return None;
            }
            let secs = (h * 60 + m) * 60;
            Some(FixedOffset::east_opt(if *sign == b'-' {
                -secs
            } else {
                secs
            })?)
        }
        _ => return None,
    };
    Some((date.and_time(time), offset))
}

/// A local time read in `tz` (the earlier of two readings when the clocks go back).
fn in_zone(naive: NaiveDateTime, tz: Option<Tz>) -> Result<DateTime<FixedOffset>, TimeError> {
    let tz = tz.ok_or(TimeError::NoZone)?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.fixed_offset()),
        LocalResult::Ambiguous(early, _) => Ok(early.fixed_offset()),
        LocalResult::None => Err(TimeError::Gap(tz.name().to_owned())),
    }
}

/// [`parse_time`] for every shape chrono's formats accept.
fn parse_time_slowly(s: &str, tz: Option<Tz>) -> Result<DateTime<FixedOffset>, TimeError> {
    // Accept a space instead of the `T`, as spreadsheets often write it.
    let owned;
    let s = if s.len() > 10 && s.as_bytes()[10] == b' ' && s.is_char_boundary(10) {
        owned = format!("{}T{}", &s[..10], s[11..].trim_start());
        owned.as_str()
    } else {
        s
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Ok(t);
        }
    }
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|fmt| NaiveDateTime::parse_from_str(s, fmt).ok())
        .ok_or(TimeError::Format)?;
    in_zone(naive, tz)
}

/// Counts meetings per host and in total, to warn about Webex's 24-hour
/// creation quota. Memory grows with the number of hosts, not of rows.
#[derive(Default, Debug)]
pub struct QuotaCounter {
    per_host: std::collections::HashMap<String, u64>,
    total: u64,
}

impl QuotaCounter {
    /// Counts one valid meeting.
    pub fn add(&mut self, host: &str) {
        self.total += 1;
        // Hosts repeat: only a host not seen before costs an allocation.
        let key = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(host.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(host)
        };
        match self.per_host.get_mut(key.as_ref()) {
            Some(n) => *n += 1,
            None => {
                self.per_host.insert(key.into_owned(), 1);
            }
        }
    }

    /// Warnings for every quota the file exceeds.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut hosts: Vec<_> = self
            .per_host
            .iter()
            .filter(|(_, n)| **n > QUOTA_PER_HOST)
            .collect();
        hosts.sort();
        for (host, n) in hosts {
            out.push(Problem::line(0, format!("{n} meetings for host {host}; Webex lets an admin create {QUOTA_PER_HOST} per host in 24 hours"), "split the file and run the rest tomorrow, or expect 429s and failures past the quota").warning());
        }
        if self.total > QUOTA_TOTAL {
            out.push(Problem::line(0, format!("{} meetings in total; Webex lets an admin create {QUOTA_TOTAL} in 24 hours", self.total), "split the file and run the rest tomorrow, or expect failures past the quota").warning());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn row(headers: &[&str], cells: &[&str]) -> Result<MeetingRequest, Vec<Problem>> {
        let headers: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
        let layout = Layout::from_headers(&headers)?;
        let cells: Vec<String> = cells.iter().map(|s| s.to_string()).collect();
        parse_row(&layout, &cells, 7, now(), &mut Vec::new())
    }

    const H: [&str; 5] = ["Title", "Start", "Duration", "Host Email", "timezone"];
    /// A valid row under `H`.
    const GOOD: [&str; 5] = [
        "Weekly sync",
        "2027-01-12 09:00",
        "45",
        "jane@acme.com",
        "Europe/Berlin",
    ];

    #[test]
    fn a_good_row_becomes_a_request() {
        let r = row(&H, &GOOD).unwrap();
        assert_eq!(r.start, "2027-01-12T09:00:00+01:00");
        assert_eq!(r.end, "2027-01-12T09:45:00+01:00");
        assert_eq!(r.timezone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(r.host_email, "jane@acme.com");
    }

    #[test]
    fn header_variants_match_and_missing_columns_are_named() {
        let layout = Layout::from_headers(&[
            "TITLE".into(),
            "start".into(),
            "host_email".into(),
            "END".into(),
            "Notes".into(),
        ])
        .unwrap();
        assert_eq!(layout.unknown, vec!["Notes".to_string()]);
        let errs = Layout::from_headers(&["title".into(), "start".into()]).unwrap_err();
        assert!(errs.iter().any(|p| p.message.contains("hostEmail")));
        assert!(errs.iter().any(|p| p.message.contains("end")));
        let errs = Layout::from_headers(&[
            "title".into(),
            "start".into(),
            "end".into(),
            "hostEmail".into(),
            "Host Email".into(),
        ])
        .unwrap_err();
        assert_eq!(errs[0].column, Some((5, "Host Email".into())));
    }

    #[test]
    fn every_problem_in_a_row_is_reported_with_its_column() {
        let long = "x".repeat(129);
        let errs = row(
            &H,
            &[
                &long,
                "2020-01-01 09:00",
                "5",
                "not-an-email",
                "Europe/Berlin",
            ],
        )
        .unwrap_err();
        let cols: Vec<usize> = errs.iter().map(|p| p.column.as_ref().unwrap().0).collect();
        assert_eq!(cols, vec![1, 2, 3, 4], "{errs:#?}");
        assert!(errs.iter().all(|p| p.line == 7 && !p.fix.is_empty()));
    }

    #[test]
    fn the_quick_time_reader_agrees_with_chrono_on_every_shape() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let dates = [
            "2027-01-12",
            "2028-02-29",
            "2027-02-29",
            "2027-13-01",
            "0000-01-01",
            "2027-03-28",
            "2027-10-31",
        ];
        let times = [
            "09:00",
            "00:00",
            "23:59",
            "24:00",
            "02:30",
            "09:00:30",
            "09:00:60",
            "9:00",
            "09:0x",
            "09:00:00.5",
        ];
        let offsets = [
            "", "Z", "z", "+01:00", "-12:30", "+14:00", "+05:60", "+24:00", "+0100", "+01", " ",
            "Zx",
        ];
        let mut quick = 0;
        for d in dates {
            for sep in ["T", " ", "  ", "t"] {
                for t in times {
                    for o in offsets {
                        let s = format!("{d}{sep}{t}{o}");
                        for tz in [Some(berlin), None] {
                            let slow = parse_time_slowly(s.trim(), tz);
                            if quick_time(&s).is_some() {
                                quick += 1;
                            }
                            let got = parse_time(&s, tz);
                            if slow.is_err() && got.is_ok() {
                                // The one shape chrono misses: minutes, then Z.
                                assert!(s.ends_with('Z') && s.len() == 17, "{s} in {tz:?}");
                                continue;
                            }
                            assert_eq!(got, slow, "{s} in {tz:?}");
                        }
                    }
                }
            }
        }
        // The common shapes did take the quick way.
        assert!(quick > 200, "{quick}");
        assert!(quick_time("2027-01-12 09:00").is_some());
        assert!(quick_time("2027-01-12T09:00:00+01:00").is_some());
    }

    #[test]
    fn time_rules() {
        let h = ["title", "start", "end", "hostEmail"];
        assert!(row(
            &h,
            &[
                "t",
                "2027-01-12T09:00:00Z",
                "2027-01-12T09:10:00Z",
                "a@b.co"
            ]
        )
        .is_ok());
        let e = row(
            &h,
            &[
                "t",
                "2027-01-12T09:00:00Z",
                "2027-01-12T09:09:00Z",
                "a@b.co",
            ],
        )
        .unwrap_err();
        assert!(e[0].message.contains("at least 10"), "{e:?}");
        let e = row(
            &h,
            &[
                "t",
                "2027-01-12T09:00:00Z",
                "2027-01-12T08:00:00Z",
                "a@b.co",
            ],
        )
        .unwrap_err();
        assert!(e[0].message.contains("before"), "{e:?}");
        assert!(row(
            &h,
            &[
                "t",
                "2027-01-12T00:00:00Z",
                "2027-01-12T23:59:00Z",
                "a@b.co"
            ]
        )
        .is_ok());
        let e = row(
            &h,
            &[
                "t",
                "2027-01-12T00:00:00Z",
                "2027-01-13T00:00:00Z",
                "a@b.co",
            ],
        )
        .unwrap_err();
        assert!(e[0].message.contains("23 h 59"), "{e:?}");
        let e = row(
            &h,
            &["t", "2027-01-12 09:00", "2027-01-12T10:00:00Z", "a@b.co"],
        )
        .unwrap_err();
        assert!(e[0].message.contains("no UTC offset"), "{e:?}");
        let e = row(
            &h,
            &["t", "12/01/2027 9:00", "2027-01-12T10:00:00Z", "a@b.co"],
        )
        .unwrap_err();
        assert!(e[0].message.contains("ISO 8601"), "{e:?}");
    }

    #[test]
    fn daylight_saving_gap_and_overlap() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            parse_time("2027-03-28T02:30", Some(berlin)),
            Err(TimeError::Gap("Europe/Berlin".into()))
        );
        assert_eq!(
            parse_time("2027-10-31T02:30", Some(berlin))
                .unwrap()
                .to_rfc3339(),
            "2027-10-31T02:30:00+02:00"
        );
        assert_eq!(
            parse_time("2027-01-12T09:00:00+0530", None)
                .unwrap()
                .to_rfc3339(),
            "2027-01-12T09:00:00+05:30"
        );
    }

    #[test]
    fn invitees_cohosts_and_booleans() {
        let h = [
            "title",
            "start",
            "duration",
            "hostEmail",
            "invitees",
            "coHosts",
            "sendEmail",
        ];
        let r = row(
            &h,
            &[
                "t",
                "2027-01-12T09:00:00Z",
                "30",
                "a@b.co",
                "Ann Lee <ann@b.co>; bob@b.co; bob@b.co",
                "BOB@b.co",
                "FALSE",
            ],
        )
        .unwrap();
        assert_eq!(r.invitees.len(), 2);
        assert_eq!(r.invitees[0].display_name.as_deref(), Some("Ann Lee"));
        assert_eq!(r.invitees[1].co_host, Some(true));
        assert_eq!(r.send_email, Some(false));
        let e = row(
            &h,
            &[
                "t",
                "2027-01-12T09:00:00Z",
                "30",
                "a@b.co",
                "ann@b.co",
                "carl@b.co",
                "maybe",
            ],
        )
        .unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].column.as_ref().unwrap().1, "coHosts");
        assert_eq!(e[1].column.as_ref().unwrap().1, "sendEmail");
    }

    #[test]
    fn request_serializes_to_webex_field_names_only() {
        let r = row(&H, &GOOD).unwrap();
        let v = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, vec!["end", "hostEmail", "start", "timezone", "title"]);
    }

    #[test]
    fn quota_warnings() {
        let mut q = QuotaCounter::default();
        for _ in 0..801 {
            q.add("Jane@acme.com");
        }
        let w = q.warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].message.contains("801 meetings for host jane@acme.com"));
    }
}

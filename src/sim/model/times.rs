//! ISO 8601 date-times as the Webex APIs write them: meeting times parsed and formatted
//! as the meetings API does it, and the `created` / `lastModified` stamp of people.

use chrono::{
    DateTime, DurationRound, NaiveDate, NaiveDateTime, SecondsFormat, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;

/// Local date-time layouts accepted without an offset (read in the meeting's time zone).
const NAIVE_LAYOUTS: [&str; 4] = [
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];

/// Layouts with a numeric offset that RFC 3339 does not cover (`+0100`).
const OFFSET_LAYOUTS: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"];

/// Parses an ISO 8601 date-time: with an offset or `Z` it is absolute; without one it is
/// read in `tz`; a bare date means its midnight in `tz`. The error says what was wrong.
pub(crate) fn parse_instant(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Ok(parsed.with_timezone(&Utc));
    }
    if let Some(parsed) = OFFSET_LAYOUTS
        .iter()
        .find_map(|layout| DateTime::parse_from_str(text, layout).ok())
    {
        return Ok(parsed.with_timezone(&Utc));
    }
    let naive = NAIVE_LAYOUTS
        .iter()
        .find_map(|layout| NaiveDateTime::parse_from_str(text, layout).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|date| date.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| format!("'{text}' is not an ISO 8601 date and time."))?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|local| local.with_timezone(&Utc))
        .ok_or_else(|| format!("'{text}' does not exist in time zone {tz} (clock change)."))
}

/// RFC 3339 in the meeting's time zone, to the second: `2027-01-12T09:00:00+01:00`,
/// or with `Z` for the `UTC` zone, as Webex writes them.
pub(crate) fn format_in(instant: DateTime<Utc>, tz: Tz) -> String {
    let local = instant.with_timezone(&tz);
    if tz == Tz::UTC {
        local.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        local.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// Now as Webex writes `created` and `lastModified`.
pub(crate) fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Webex keeps meeting times to the minute: seconds are stripped, and a start within
/// the current minute moves to the next minute.
pub(crate) fn to_minute(
    instant: DateTime<Utc>,
    now: DateTime<Utc>,
    is_start: bool,
) -> DateTime<Utc> {
    let minute = TimeDelta::minutes(1);
    let truncate = |t: DateTime<Utc>| t.duration_trunc(minute).unwrap_or(t);
    let truncated = truncate(instant);
    if is_start && truncated == truncate(now) {
        truncated + minute
    } else {
        truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn parses_offsets_and_local_times() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let expected = utc("2027-01-12T08:00:00Z");
        for text in [
            "2027-01-12T09:00:00+01:00",
            "2027-01-12T08:00:00Z",
            "2027-01-12 08:00:00Z",
            "2027-01-12T09:00:00.000+0100",
        ] {
            assert_eq!(parse_instant(text, Tz::UTC), Ok(expected), "{text}");
        }
        for text in [
            "2027-01-12T09:00:00",
            "2027-01-12 09:00:00",
            "2027-01-12T09:00",
        ] {
            assert_eq!(parse_instant(text, berlin), Ok(expected), "{text}");
        }
        assert_eq!(
            parse_instant("2027-01-12", Tz::UTC),
            Ok(utc("2027-01-12T00:00:00Z"))
        );
        assert!(parse_instant("next tuesday", Tz::UTC).is_err());
        // 02:30 does not exist in Berlin on the spring clock change.
        assert!(parse_instant("2027-03-28T02:30:00", berlin).is_err());
    }

    #[test]
    fn formats_in_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let instant = utc("2027-07-12T07:00:00Z");
        assert_eq!(format_in(instant, berlin), "2027-07-12T09:00:00+02:00");
        assert_eq!(format_in(instant, Tz::UTC), "2027-07-12T07:00:00Z");
    }

    #[test]
    fn keeps_minutes() {
        let now = utc("2027-03-01T10:32:16Z");
        assert_eq!(
            to_minute(utc("2027-03-01T10:32:41Z"), now, true),
            utc("2027-03-01T10:33:00Z")
        );
        assert_eq!(
            to_minute(utc("2027-03-01T11:32:41Z"), now, true),
            utc("2027-03-01T11:32:00Z")
        );
        assert_eq!(
            to_minute(utc("2027-03-01T11:52:41Z"), now, false),
            utc("2027-03-01T11:52:00Z")
        );
    }
}

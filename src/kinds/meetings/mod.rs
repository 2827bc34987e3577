//! The meetings job kind: schedule meetings on behalf of their hosts
//! (`POST /v1/meetings`), exactly once by integration tag.
//!
//! - [`check`]: what a row means and the Webex rules it must pass (pure);
//! - [`run`]: carrying out a row, looking up uncertain creates by tag;
//! - [`verify`]: `webex-bulk verify`, a finished run checked against Webex.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::csvin::Problem;
use crate::ingest::problems_text;
use crate::kinds::{BoxFuture, Checker, Job, Kind, KindOptions, Org, PrepareError, Runner};
use crate::store::ReportRow;

pub mod check;
pub mod run;
pub mod verify;

use check::{parse_row, Layout, MeetingRequest, QuotaCounter};

/// The meetings kind.
pub struct Meetings;

impl Kind for Meetings {
    fn name(&self) -> &'static str {
        "meetings"
    }

    fn about(&self) -> &'static str {
        "Schedule meetings (POST /v1/meetings), on behalf of their hosts."
    }

    fn fields(&self) -> &'static [crate::header::Field] {
        &check::FIELDS
    }

    fn date_fields(&self) -> &'static [&'static str] {
        &["start", "end"]
    }

    fn scopes(&self) -> &'static [&'static str] {
        &["meeting:admin_schedule_write"]
    }

    fn prepare<'a>(
        &'a self,
        _org: Option<&'a Org>,
        options: &'a KindOptions,
    ) -> BoxFuture<'a, Result<Box<dyn Job>, PrepareError>> {
        Box::pin(async move {
            options.rest_only(self.name())?;
            Ok(Box::new(MeetingsJob) as Box<dyn Job>)
        })
    }

    fn result_columns(&self) -> &'static [&'static str] {
        &["meeting_id", "meeting_number", "web_link"]
    }

    fn result_cells(&self, row: &ReportRow) -> Vec<String> {
        [&row.result_id, &row.result_number, &row.result_link]
            .into_iter()
            .map(|v| v.clone().unwrap_or_default())
            .collect()
    }
}

/// Meetings need nothing from the org.
pub struct MeetingsJob;

impl Job for MeetingsJob {
    fn checker(
        &self,
        header: &[String],
        now: DateTime<Utc>,
    ) -> Result<Box<dyn Checker + '_>, Vec<Problem>> {
        Ok(Box::new(MeetingChecker {
            layout: Layout::from_headers(header)?,
            quota: QuotaCounter::default(),
            now,
        }))
    }

    fn runner(&self, header: &[String], uid: &str) -> Result<Arc<dyn Runner>, String> {
        Ok(Arc::new(run::MeetingRunner {
            rows: MeetingRows::new(header, uid)?,
        }))
    }
}

/// A meetings file's rows, checked one by one, with the hosts' quotas.
struct MeetingChecker {
    layout: Layout,
    quota: QuotaCounter,
    now: DateTime<Utc>,
}

impl Checker for MeetingChecker {
    fn width(&self) -> usize {
        self.layout.width
    }

    fn ignored(&self) -> (&[String], &'static str) {
        (&self.layout.unknown, "meeting fields")
    }

    fn check(
        &mut self,
        fields: &[String],
        line: u64,
        warnings: &mut Vec<Problem>,
    ) -> Result<Option<String>, Vec<Problem>> {
        let req = parse_row(&self.layout, fields, line, self.now, warnings)?;
        self.quota.add(&req.host_email);
        // The request is rebuilt from the cells when it is sent.
        Ok(None)
    }

    fn finish(&self) -> Vec<Problem> {
        self.quota.warnings()
    }

    fn preview(&self, fields: &[String], line: u64) -> Vec<(&'static str, String)> {
        let Ok(req) = parse_row(&self.layout, fields, line, self.now, &mut Vec::new()) else {
            return Vec::new();
        };
        let mut shown = vec![
            ("title", req.title),
            ("start", req.start),
            ("end", req.end),
            ("timezone", req.timezone.unwrap_or_default()),
            ("hostEmail", req.host_email),
        ];
        if !req.invitees.is_empty() {
            let first = &req.invitees[0].email;
            shown.push((
                "invitees",
                match req.invitees.len() {
                    1 => first.clone(),
                    n => format!("{first} and {} more", n - 1),
                },
            ));
        }
        if let Some(r) = req.recurrence {
            shown.push(("recurrence", r));
        }
        if req.password.is_some() {
            shown.push(("password", "(set, not shown)".into()));
        }
        shown
    }
}

/// The integration tag that identifies a row of a run, in Webex.
pub fn integration_tag(run_uid: &str, line: u64) -> String {
    format!("webex-bulk:{run_uid}:{line}")
}

/// How a queued meetings row becomes its request when it is sent: the same
/// pure check as at ingest, on the cells the store kept, with the row's
/// integration tag. The queue stores the cells (the intent) once rather than
/// the cells and a request made from them.
#[derive(Clone, Debug)]
pub struct MeetingRows {
    layout: Layout,
    uid: String,
}

impl MeetingRows {
    /// For a run with this `header` and `uid`.
    pub fn new(header: &[String], uid: &str) -> Result<MeetingRows, String> {
        let layout = Layout::from_headers(header).map_err(|problems| {
            let all: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
            format!("the run's header row is unusable: {}", all.join("; "))
        })?;
        Ok(MeetingRows {
            layout,
            uid: uid.to_owned(),
        })
    }

    /// The request of a queued row: the body stored at ingest (runs queued
    /// by earlier versions kept one), else rebuilt from its `cells`.
    pub fn queued(
        &self,
        line: i64,
        stored: Option<&str>,
        cells: &[String],
    ) -> Result<MeetingRequest, String> {
        match stored {
            Some(body) => serde_json::from_str(body)
                .map_err(|e| format!("the queued request is unreadable: {e}")),
            None => self.request(line, cells),
        }
    }

    /// The request of the row at `line` with these `cells`.
    pub fn request(&self, line: i64, cells: &[String]) -> Result<MeetingRequest, String> {
        // "In the past" was judged when the row was queued; from then on the
        // row is sent as queued and Webex has the last word.
        let queued = DateTime::<Utc>::MIN_UTC;
        let mut req = parse_row(&self.layout, cells, line as u64, queued, &mut Vec::new())
            .map_err(|problems| {
                format!(
                    "the queued row no longer reads as a meeting: {}",
                    problems_text(&problems)
                )
            })?;
        req.integration_tags = vec![integration_tag(&self.uid, line as u64)];
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_rebuilt_request_is_the_one_checked_at_ingest_with_its_tag() {
        let header = strings(&[
            "Title",
            "Start",
            "Duration",
            "Host Email",
            "Timezone",
            "Invitees",
        ]);
        let cells = strings(&[
            "Weekly sync",
            "2027-03-28 02:30",
            "30",
            "jane@acme.example.com",
            "Europe/Berlin",
            "Ann <ann@acme.example.com>; bob@acme.example.com",
        ]);
        let now = DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let layout = Layout::from_headers(&header).unwrap();
        // 02:30 on that day does not exist in Berlin: refused at ingest and on rebuild alike.
        assert!(parse_row(&layout, &cells, 9, now, &mut Vec::new()).is_err());
        let rows = MeetingRows::new(&header, "abc123").unwrap();
        let err = rows.request(9, &cells).unwrap_err();
        assert!(err.contains("start"), "{err}");

        let mut cells = cells;
        cells[1] = "2027-03-29 09:30".into();
        let mut checked = parse_row(&layout, &cells, 9, now, &mut Vec::new()).unwrap();
        checked.integration_tags = vec!["webex-bulk:abc123:9".into()];
        assert_eq!(rows.request(9, &cells).unwrap(), checked);
        assert_eq!(checked.start, "2027-03-29T09:30:00+02:00");
    }

    #[test]
    fn a_queued_meeting_is_rebuilt_even_after_its_start_has_passed() {
        // "In the past" is judged once, at ingest; a resume days later sends
        // the row as queued and lets Webex answer.
        let header = strings(&["title", "start", "end", "hostEmail"]);
        let cells = strings(&[
            "Old",
            "2020-01-01T09:00:00Z",
            "2020-01-01T10:00:00Z",
            "a@b.example.com",
        ]);
        let req = MeetingRows::new(&header, "u")
            .unwrap()
            .request(2, &cells)
            .unwrap();
        assert_eq!(req.integration_tags, vec!["webex-bulk:u:2".to_string()]);
    }

    #[test]
    fn a_body_stored_by_an_earlier_version_is_sent_as_stored() {
        let header = strings(&["title", "start", "end", "hostEmail"]);
        let cells = strings(&[
            "Now",
            "2027-01-01T09:00:00Z",
            "2027-01-01T10:00:00Z",
            "a@b.example.com",
        ]);
        let rows = MeetingRows::new(&header, "u").unwrap();
        let rebuilt = rows.queued(2, None, &cells).unwrap();
        assert_eq!(rebuilt, rows.request(2, &cells).unwrap());
        // An earlier version stored the body (with its own tag): it wins.
        let mut old = rebuilt.clone();
        old.title = "As queued".into();
        old.integration_tags = vec!["webex-bulk:old:2".into()];
        let body = serde_json::to_string(&old).unwrap();
        assert_eq!(rows.queued(2, Some(&body), &cells).unwrap(), old);
        let err = rows.queued(2, Some("{not json"), &cells).unwrap_err();
        assert!(err.contains("unreadable"), "{err}");
    }

    #[test]
    fn a_header_without_meeting_columns_cannot_be_rebuilt() {
        let err = MeetingRows::new(&strings(&["email"]), "u").unwrap_err();
        assert!(err.contains("title"), "{err}");
    }

    #[test]
    fn a_preview_shows_the_row_as_sent_and_never_its_password() {
        let header = strings(&[
            "title",
            "start",
            "duration",
            "hostEmail",
            "timezone",
            "password",
            "invitees",
        ]);
        let cells = strings(&[
            "Sync",
            "2027-03-29 09:30",
            "30",
            "jane@acme.example.com",
            "Europe/Berlin",
            "S3cret!pw",
            "a@acme.example.com; b@acme.example.com",
        ]);
        let now = DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let checker = MeetingsJob.checker(&header, now).unwrap();
        let shown = checker.preview(&cells, 2);
        let get = |k: &str| shown.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("start"), Some("2027-03-29T09:30:00+02:00"));
        assert_eq!(get("invitees"), Some("a@acme.example.com and 1 more"));
        assert_eq!(get("password"), Some("(set, not shown)"));
        assert!(
            shown.iter().all(|(_, v)| !v.contains("S3cret")),
            "{shown:?}"
        );
    }
}

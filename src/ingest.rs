//! Reading a file into the queue: stream, check, store.
//!
//! [`scan`] reads a meetings file record by record and checks each row
//! (the checks themselves are pure, in `meetings`). [`ingest`] does the same
//! inside one store transaction, so a file is either queued whole (valid rows
//! `pending`, invalid ones `invalid` with their reasons) or not at all.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::csvin::{CsvFile, Encoding, Problem, ReadError, Severity};
use crate::kinds::meetings::check::{parse_row, Layout, MeetingRequest, QuotaCounter};
use crate::kinds::users::check::{self as users, License, UnitCounter, UserChange};
use crate::store::{encode_cells, NewRow, NewRun, RunInfo, Store, StoreError};

/// Why a file was not queued.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The header row is unusable.
    #[error("{} has an unusable header row", path.display())]
    Header {
        path: std::path::PathBuf,
        problems: Vec<Problem>,
    },
    /// `--strict` and some rows are invalid.
    #[error("{invalid} of {rows} rows are invalid and --strict refuses the whole file; nothing was queued\n    fix: correct the rows listed above (or run without --strict to send the valid rows)")]
    Strict { rows: u64, invalid: u64 },
    /// More rows than `--max-rows` allows.
    #[error("{} has more than {max} rows (--max-rows {max}); nothing was queued\n    fix: check that this is the right file, or raise --max-rows", path.display())]
    TooManyRows { path: std::path::PathBuf, max: u64 },
    /// The same file (same content) was run before.
    #[error("this file was already run as run {} ({}) on {}: {}; nothing was queued\n    fix: continue that run with `webex-bulk run --resume {}`, or start over deliberately with --new-run",
        .0.id, .0.source_path, .0.created_at, counts_line(.1), .0.id)]
    Duplicate(Box<RunInfo>, crate::store::Counts),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn counts_line(c: &crate::store::Counts) -> String {
    format!(
        "{} succeeded, {} failed, {} invalid, {} pending",
        c.succeeded,
        c.failed,
        c.invalid,
        c.pending + c.in_flight
    )
}

/// What a scan found.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// Data rows read.
    pub rows: u64,
    /// Rows that passed every check.
    pub valid: u64,
    /// Rows with at least one error.
    pub invalid: u64,
    /// Warnings issued.
    pub warnings: u64,
    /// The header row as written.
    pub header: Vec<String>,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
}

/// What kind of rows a file holds, with what checking them needs.
#[derive(Clone, Copy, Debug)]
pub enum Job<'a> {
    /// Meetings; "in the past" is judged against `now`.
    Meetings { now: DateTime<Utc> },
    /// People and licenses; names resolve against the org's `licenses`.
    Users { licenses: &'a [License] },
}

impl Job<'_> {
    /// The kind's name, as runs record it.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Meetings { .. } => "meetings",
            Job::Users { .. } => "users",
        }
    }
}

/// A checked row, ready to be queued.
#[derive(Clone, Debug)]
pub enum RowRequest {
    Meeting(MeetingRequest),
    User(UserChange),
}

/// The header of a file, mapped for its kind.
enum Mapped<'a> {
    Meetings {
        layout: Box<Layout>,
        quota: QuotaCounter,
        now: DateTime<Utc>,
    },
    Users {
        layout: users::Layout,
        units: UnitCounter,
        licenses: &'a [License],
    },
}

impl Mapped<'_> {
    fn width(&self) -> usize {
        match self {
            Mapped::Meetings { layout, .. } => layout.width,
            Mapped::Users { layout, .. } => layout.width,
        }
    }

    fn parse(
        &mut self,
        fields: &[String],
        line: u64,
        warnings: &mut Vec<Problem>,
    ) -> Result<RowRequest, Vec<Problem>> {
        match self {
            Mapped::Meetings { layout, quota, now } => {
                parse_row(layout, fields, line, *now, warnings).map(|req| {
                    quota.add(&req.host_email);
                    RowRequest::Meeting(req)
                })
            }
            Mapped::Users {
                layout,
                units,
                licenses,
            } => users::parse_row(layout, fields, line, licenses).map(|change| {
                units.add(&change);
                RowRequest::User(change)
            }),
        }
    }

    fn finish(&self) -> Vec<Problem> {
        match self {
            Mapped::Meetings { quota, .. } => quota.warnings(),
            Mapped::Users {
                units, licenses, ..
            } => units.warnings(licenses),
        }
    }
}

/// Reads and checks every row of a `job` file. `on_row` gets each row's
/// cells and its request (or its problems); `on_problem` gets every problem
/// and warning as it is found (so nothing accumulates in memory).
pub fn scan_job(
    path: &Path,
    encoding: Encoding,
    job: Job<'_>,
    mut on_row: impl FnMut(u64, &[String], Result<RowRequest, &[Problem]>) -> Result<(), IngestError>,
    mut on_problem: impl FnMut(&Problem),
) -> Result<Scan, IngestError> {
    let mut file = CsvFile::open(path, encoding)?;
    let header = file.headers().to_vec();
    let header_error = |problems| IngestError::Header {
        path: path.to_owned(),
        problems,
    };
    let (mut mapped, ignored, what) = match job {
        Job::Meetings { now } => {
            let layout = Layout::from_headers(&header).map_err(header_error)?;
            let ignored = layout.unknown.clone();
            (
                Mapped::Meetings {
                    layout: Box::new(layout),
                    quota: QuotaCounter::default(),
                    now,
                },
                ignored,
                "meeting fields",
            )
        }
        Job::Users { licenses } => {
            let layout = users::Layout::from_headers(&header, licenses).map_err(header_error)?;
            let ignored = layout.ignored.clone();
            (
                Mapped::Users {
                    layout,
                    units: UnitCounter::default(),
                    licenses,
                },
                ignored,
                "person fields or licenses of this org",
            )
        }
    };
    if !ignored.is_empty() {
        on_problem(
            &Problem::line(
                1,
                format!("ignoring column(s) that are not {what}: {}", ignored.join(", ")),
                "nothing to do if they are notes or report columns; check the spelling if one should be a field",
            )
            .warning(),
        );
    }
    let mut scan = Scan {
        header,
        ..Scan::default()
    };
    let mut fields = Vec::with_capacity(mapped.width());
    let mut warnings = Vec::new();
    while let Some(line) = file.next_record(&mut fields)? {
        scan.rows += 1;
        warnings.clear();
        match mapped.parse(&fields, line, &mut warnings) {
            Ok(req) => {
                scan.valid += 1;
                on_row(line, &fields, Ok(req))?;
            }
            Err(problems) => {
                scan.invalid += 1;
                problems.iter().for_each(&mut on_problem);
                on_row(line, &fields, Err(&problems))?;
            }
        }
        scan.warnings += warnings.len() as u64;
        warnings.iter().for_each(&mut on_problem);
    }
    for w in mapped.finish() {
        scan.warnings += 1;
        on_problem(&w);
    }
    scan.sha256 = file.sha256_hex();
    Ok(scan)
}

/// [`scan_job`] for a meetings file.
pub fn scan(
    path: &Path,
    encoding: Encoding,
    now: DateTime<Utc>,
    mut on_row: impl FnMut(
        u64,
        &[String],
        Result<MeetingRequest, &[Problem]>,
    ) -> Result<(), IngestError>,
    on_problem: impl FnMut(&Problem),
) -> Result<Scan, IngestError> {
    scan_job(
        path,
        encoding,
        Job::Meetings { now },
        |line, fields, result| match result {
            Ok(RowRequest::Meeting(req)) => on_row(line, fields, Ok(req)),
            Ok(RowRequest::User(_)) => unreachable!("a meetings scan yields meetings"),
            Err(problems) => on_row(line, fields, Err(problems)),
        },
        on_problem,
    )
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

/// How to queue a file.
pub struct IngestOptions<'a> {
    pub encoding: Encoding,
    /// Refuse the whole file when a row is invalid.
    pub strict: bool,
    /// Refuse a file with more data rows than this.
    pub max_rows: Option<u64>,
    /// Queue it even if the same content was run before.
    pub new_run: bool,
    /// The run's options, recorded with it.
    pub options: &'a serde_json::Value,
    /// What the rows are (and what checking them needs).
    pub job: Job<'a>,
}

/// The short reason an invalid row is stored with.
pub fn problems_text(problems: &[Problem]) -> String {
    problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| match &p.column {
            Some((_, name)) => format!("{name}: {} (fix: {})", p.message, p.fix),
            None => format!("{} (fix: {})", p.message, p.fix),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Rows per batch handed from the reading thread to the writing one.
const BATCH: usize = 512;
/// Batches in flight between them: memory stays flat whatever the file's size.
const BATCHES_AHEAD: usize = 4;

/// What the reading thread hands to the writing one.
#[derive(Default)]
struct Batch {
    rows: Vec<NewRow>,
    /// Problems and warnings, in the order they were found.
    problems: Vec<Problem>,
}

/// Checks `path` and queues it as a new run, in one transaction.
///
/// Reading and checking run on one thread while this one writes the rows
/// (batches over a bounded channel), so the two halves overlap; a file is
/// still either queued whole or not at all.
pub fn ingest(
    store: &mut Store,
    path: &Path,
    opts: &IngestOptions<'_>,
    mut on_problem: impl FnMut(&Problem),
) -> Result<(i64, Scan), IngestError> {
    let source = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let source = source.to_string_lossy().into_owned();
    let kind = opts.job.kind();
    let mut ingest = store.begin_ingest(&NewRun {
        kind,
        source_path: &source,
        options: opts.options,
    })?;
    let (to_writer, batches) = std::sync::mpsc::sync_channel::<Batch>(BATCHES_AHEAD);
    let scan = std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_rows(path, opts, to_writer));
        let mut written: Result<(), IngestError> = Ok(());
        for batch in batches.iter() {
            batch.problems.iter().for_each(&mut on_problem);
            if let Err(e) = ingest.add_rows(&batch.rows) {
                // Dropping the receiver stops the reader at its next batch.
                written = Err(e.into());
                break;
            }
        }
        drop(batches);
        let read = match reader.join() {
            Ok(read) => read,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        written?;
        read
    })?;
    if opts.strict && scan.invalid > 0 {
        return Err(IngestError::Strict {
            rows: scan.rows,
            invalid: scan.invalid,
        });
    }
    if !opts.new_run {
        if let Some((earlier, counts)) = ingest.find_previous(kind, &scan.sha256)? {
            return Err(IngestError::Duplicate(Box::new(earlier), counts));
        }
    }
    let run_id = ingest.commit(&scan.sha256, &scan.header)?;
    Ok((run_id, scan))
}

/// The reading half of [`ingest`]: scans the file and sends its rows, ready
/// to store, in batches. Stops at the next batch if the writing half has
/// gone (whose own error is then the one reported).
fn read_rows(
    path: &Path,
    opts: &IngestOptions<'_>,
    to_writer: std::sync::mpsc::SyncSender<Batch>,
) -> Result<Scan, IngestError> {
    let send = |batch: &mut Batch| -> Result<(), IngestError> {
        let full = std::mem::replace(
            batch,
            Batch {
                rows: Vec::with_capacity(BATCH),
                problems: Vec::new(),
            },
        );
        to_writer
            .send(full)
            .map_err(|_| IngestError::Store(StoreError::WriterGone))
    };
    // Problems arrive through their own callback; they travel with the next row.
    let problems = std::cell::RefCell::new(Vec::new());
    let mut batch = Batch::default();
    let mut count = 0u64;
    let scan = scan_job(
        path,
        opts.encoding,
        opts.job,
        |line, fields, result| {
            count += 1;
            if let Some(max) = opts.max_rows.filter(|max| count > *max) {
                return Err(IngestError::TooManyRows {
                    path: path.to_owned(),
                    max,
                });
            }
            let (request, error) = match result {
                // A meeting's request is rebuilt from its cells when it is sent.
                Ok(RowRequest::Meeting(_)) => (None, None),
                // A change holds license ids resolved now, against the org.
                Ok(RowRequest::User(change)) => (
                    Some(serde_json::to_string(&change).expect("a change serializes")),
                    None,
                ),
                Err(found) => (None, Some(problems_text(found))),
            };
            batch.problems.append(&mut problems.borrow_mut());
            batch.rows.push(NewRow {
                line,
                original: encode_cells(fields),
                request,
                error,
            });
            if batch.rows.len() >= BATCH {
                send(&mut batch)?;
            }
            Ok(())
        },
        |p| problems.borrow_mut().push(p.clone()),
    )?;
    batch.problems.append(&mut problems.borrow_mut());
    if !batch.rows.is_empty() || !batch.problems.is_empty() {
        send(&mut batch)?;
    }
    Ok(scan)
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

    /// A meetings file of `n` rows where every 7th row has no title, and
    /// `tail` appended as it is (raw bytes).
    fn file(dir: &Path, n: usize, tail: &[u8]) -> std::path::PathBuf {
        use std::io::Write;
        let path = dir.join("m.csv");
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(f, "title,start,duration,hostEmail").unwrap();
        for i in 0..n {
            let title = if i % 7 == 3 {
                String::new()
            } else {
                format!("M{i}")
            };
            writeln!(f, "{title},2027-01-12T09:00:00Z,30,h@acme.example.com").unwrap();
        }
        f.write_all(tail).unwrap();
        path
    }

    fn queue(
        path: &Path,
        max_rows: Option<u64>,
    ) -> (Store, Result<(i64, Scan), IngestError>, Vec<u64>) {
        let mut store = Store::open(&path.with_extension("db")).unwrap();
        let options = serde_json::json!({});
        let opts = IngestOptions {
            encoding: Encoding::Utf8,
            strict: false,
            max_rows,
            new_run: false,
            options: &options,
            job: Job::Meetings {
                now: DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
            },
        };
        let mut lines = Vec::new();
        let result = ingest(&mut store, path, &opts, |p| lines.push(p.line));
        (store, result, lines)
    }

    #[test]
    fn every_row_of_a_file_larger_than_a_batch_is_queued_with_its_problems_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let n = BATCH * BATCHES_AHEAD * 2 + 77;
        let (store, result, lines) = queue(&file(dir.path(), n, b""), None);
        let (run, scan) = result.unwrap();
        let bad = (0..n).filter(|i| i % 7 == 3).count() as u64;
        assert_eq!((scan.rows, scan.invalid), (n as u64, bad));
        let c = store.counts(run).unwrap();
        assert_eq!((c.pending, c.invalid), (n as u64 - bad, bad));
        // One problem per invalid row, reported in file order, then the
        // file's own warnings (one host over its quota, and the total).
        let mut expected: Vec<u64> = (0..n as u64)
            .filter(|i| i % 7 == 3)
            .map(|i| i + 2)
            .collect();
        expected.extend([0, 0]);
        assert_eq!(lines, expected);
    }

    #[test]
    fn a_file_that_breaks_after_several_batches_queues_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let n = BATCH * BATCHES_AHEAD * 2;
        let (store, result, _) = queue(
            &file(dir.path(), n, b"M,2027-01-12T09:00:00Z,30,\xff@x\n"),
            None,
        );
        match result {
            Err(IngestError::Read(ReadError::NotUtf8 { line, column, .. })) => {
                assert_eq!((line, column), (n as u64 + 2, 4))
            }
            other => panic!("expected NotUtf8, got {:?}", other.map(|r| r.0)),
        }
        assert!(store.runs().unwrap().is_empty());
    }

    #[test]
    fn max_rows_past_several_batches_queues_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let n = BATCH * BATCHES_AHEAD * 2;
        let (store, result, _) = queue(&file(dir.path(), n, b""), Some(n as u64 - 1));
        assert!(matches!(result, Err(IngestError::TooManyRows { .. })));
        assert!(store.runs().unwrap().is_empty());
    }
}

//! Reading a file into the queue: stream, check, store.
//!
//! [`scan`] reads a meetings file record by record and checks each row
//! (the checks themselves are pure, in `meetings`). [`ingest`] does the same
//! inside one store transaction, so a file is either queued whole (valid rows
//! `pending`, invalid ones `invalid` with their reasons) or not at all.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::csvin::{CsvFile, Encoding, Problem, ReadError, Severity};
use crate::meetings::{parse_row, Layout, MeetingRequest, QuotaCounter};
use crate::store::{NewRun, RunInfo, Store, StoreError};
use crate::users::{self, License, UnitCounter, UserChange};

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

/// Checks `path` and queues it as a new run, in one transaction.
pub fn ingest(
    store: &mut Store,
    path: &Path,
    opts: &IngestOptions<'_>,
    on_problem: impl FnMut(&Problem),
) -> Result<(i64, Scan), IngestError> {
    let source = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let source = source.to_string_lossy().into_owned();
    let kind = opts.job.kind();
    let mut ingest = store.begin_ingest(&NewRun {
        kind,
        source_path: &source,
        options: opts.options,
    })?;
    let uid = ingest.uid().to_owned();
    let mut count = 0u64;
    let scan = scan_job(
        path,
        opts.encoding,
        opts.job,
        |line, fields, result| {
            count += 1;
            if let Some(max) = opts.max_rows {
                if count > max {
                    return Err(IngestError::TooManyRows {
                        path: path.to_owned(),
                        max,
                    });
                }
            }
            match result {
                Ok(RowRequest::Meeting(mut req)) => {
                    req.integration_tags = vec![integration_tag(&uid, line)];
                    let body = serde_json::to_string(&req).expect("a request serializes");
                    ingest.add_row(line, fields, Some(&body), None)?;
                }
                Ok(RowRequest::User(change)) => {
                    let body = serde_json::to_string(&change).expect("a change serializes");
                    ingest.add_row(line, fields, Some(&body), None)?;
                }
                Err(problems) => {
                    ingest.add_row(line, fields, None, Some(&problems_text(problems)))?
                }
            }
            Ok(())
        },
        on_problem,
    )?;
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

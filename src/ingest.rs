//! Reading a file into the queue: stream, check, store.
//!
//! [`scan_job`] reads a file record by record and checks each row with its
//! kind's [`crate::kinds::Checker`] (pure). [`ingest`] does the same inside one store
//! transaction, so a file is either queued whole (valid rows `pending`,
//! invalid ones `invalid` with their reasons) or not at all. Names no kind.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::csvin::{Encoding, Problem, ReadError, Severity};
use crate::kinds::Job;
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
    /// `--only-lines` names lines where no row starts.
    #[error("{} has no row at line(s) {lines}; nothing was queued\n    fix: give the lines of rows as the file numbers them (the header is line 1; `webex-bulk validate` names each row's line)", path.display())]
    NoSuchLines {
        path: std::path::PathBuf,
        lines: String,
    },
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
    /// The first valid rows as they will be sent (line, fields): see
    /// [`crate::kinds::Checker::preview`].
    pub previews: Vec<(u64, Vec<(&'static str, String)>)>,
    /// Rows left out by `--only-lines` (neither checked nor queued).
    pub skipped: u64,
}

/// `--only-lines 12,40-45`: the file lines (header = 1) whose rows a run
/// takes; the others are neither checked nor queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lines(Vec<(u64, u64)>);

impl Lines {
    /// Parses `12,40-45` (lines from 2: line 1 is the header).
    pub fn parse(text: &str) -> Result<Lines, String> {
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || format!("`{part}` is not a line or a range of lines (write 12,40-45)");
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if a < 2 || b < a {
                return Err(format!("`{part}`: rows start at line 2 (line 1 is the header), and a range runs from low to high"));
            }
            ranges.push((a, b));
        }
        if ranges.is_empty() {
            return Err("no lines given (write 12,40-45)".into());
        }
        Ok(Lines(ranges))
    }

    pub fn contains(&self, line: u64) -> bool {
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&line))
    }

    /// The lines or ranges no row was read from (`seen`: the rows' lines).
    fn missing(&self, seen: &[u64]) -> Vec<String> {
        self.0
            .iter()
            .filter(|(a, b)| !seen.iter().any(|l| (*a..=*b).contains(l)))
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect()
    }

    /// As people write it (`3,6-7`), and as the run's key mixes it in.
    pub fn key(&self) -> String {
        self.0
            .iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// How a file is read: its encoding, its delimiter (`None`: sniffed), and
/// which of its rows (`None`: all).
#[derive(Clone, Copy, Debug)]
pub struct Reading<'a> {
    pub encoding: Encoding,
    pub delimiter: Option<u8>,
    pub only: Option<&'a Lines>,
    /// A workbook's sheet (`None`: its first).
    pub sheet: Option<&'a str>,
}

/// How many valid rows a scan previews.
pub const PREVIEW_ROWS: usize = 3;

/// Reads and checks every row of a file of `job`'s kind ("in the past" is
/// judged against `now`). `on_row` gets each row's cells and what to store
/// beside them (or its problems: see [`crate::kinds::Checker::check`]); `on_problem` gets
/// every problem and warning as it is found (so nothing accumulates in memory).
pub fn scan_job(
    path: &Path,
    reading: Reading<'_>,
    job: &dyn Job,
    now: DateTime<Utc>,
    mut on_row: impl FnMut(
        u64,
        &[String],
        Result<Option<String>, &[Problem]>,
    ) -> Result<(), IngestError>,
    mut on_problem: impl FnMut(&Problem),
) -> Result<Scan, IngestError> {
    let Reading {
        encoding,
        delimiter,
        only,
        sheet,
    } = reading;
    let mut file = crate::sheet::Table::open(path, encoding, delimiter, sheet)?;
    let guesses = file.guesses().len() as u64;
    for guess in file.guesses() {
        on_problem(&Problem::line(0, guess.clone(), "nothing to do if that is right").warning());
    }
    let header = file.headers().to_vec();
    let mut checker = job
        .checker(&header, now)
        .map_err(|problems| IngestError::Header {
            path: path.to_owned(),
            problems,
        })?;
    let (ignored, what) = checker.ignored();
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
        warnings: guesses,
        ..Scan::default()
    };
    let mut fields = Vec::with_capacity(checker.width());
    let mut warnings = Vec::new();
    let mut taken = Vec::new();
    while let Some(line) = file.next_record(&mut fields)? {
        if let Some(only) = only {
            if !only.contains(line) {
                scan.skipped += 1;
                continue;
            }
            taken.push(line);
        }
        scan.rows += 1;
        warnings.clear();
        match checker.check(&fields, line, &mut warnings) {
            Ok(stored) => {
                scan.valid += 1;
                if scan.previews.len() < PREVIEW_ROWS {
                    scan.previews.push((line, checker.preview(&fields, line)));
                }
                on_row(line, &fields, Ok(stored))?;
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
    for w in checker.finish() {
        scan.warnings += 1;
        on_problem(&w);
    }
    scan.sha256 = file.sha256_hex();
    if let Some(only) = only {
        let missing = only.missing(&taken);
        if !missing.is_empty() {
            return Err(IngestError::NoSuchLines {
                path: path.to_owned(),
                lines: missing.join(", "),
            });
        }
    }
    Ok(scan)
}

/// How to queue a file.
pub struct IngestOptions<'a> {
    pub encoding: Encoding,
    /// The field delimiter; `None`: sniffed from the header line.
    pub delimiter: Option<u8>,
    /// Refuse the whole file when a row is invalid.
    pub strict: bool,
    /// Refuse a file with more data rows than this.
    pub max_rows: Option<u64>,
    /// Queue it even if the same content was run before.
    pub new_run: bool,
    /// The run's options, recorded with it.
    pub options: &'a serde_json::Value,
    /// The kind's name, as the run records it.
    pub kind: &'a str,
    /// The kind, prepared for this run.
    pub job: &'a dyn Job,
    /// "In the past" is judged against it.
    pub now: DateTime<Utc>,
    /// The run's recipe (as stored), if the file is read through one: the
    /// guard against running a file twice keys on (kind, recipe, content).
    pub recipe: Option<String>,
    /// `--only-lines`: only these rows are checked and queued (and the
    /// guard keys on them too).
    pub only_lines: Option<&'a Lines>,
    /// `--sheet`: which sheet of a workbook.
    pub sheet: Option<&'a str>,
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
    let kind = opts.kind;
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
    // The same content through another recipe is another run.
    // The same content through another recipe, or other lines of it, is
    // another run.
    let key = match (&opts.recipe, opts.only_lines) {
        (None, None) => scan.sha256.clone(),
        (recipe, lines) => {
            use sha2::{Digest, Sha256};
            let lines = lines.map(Lines::key).unwrap_or_default();
            let recipe = recipe.as_deref().unwrap_or("");
            hex::encode(Sha256::digest(format!(
                "{}\n{recipe}\n{lines}",
                scan.sha256
            )))
        }
    };
    if !opts.new_run {
        if let Some((earlier, counts)) = ingest.find_previous(kind, &key)? {
            return Err(IngestError::Duplicate(Box::new(earlier), counts));
        }
    }
    let run_id = ingest.commit(&key, &scan.header)?;
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
        Reading {
            encoding: opts.encoding,
            delimiter: opts.delimiter,
            only: opts.only_lines,
            sheet: opts.sheet,
        },
        opts.job,
        opts.now,
        |line, fields, result| {
            count += 1;
            if let Some(max) = opts.max_rows.filter(|max| count > *max) {
                return Err(IngestError::TooManyRows {
                    path: path.to_owned(),
                    max,
                });
            }
            let (request, error) = match result {
                Ok(stored) => (stored, None),
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
    );
    batch.problems.append(&mut problems.borrow_mut());
    if let Err(e) = scan {
        // What was found so far still reaches the user (how the file was
        // read explains many a refused header); the rows go nowhere.
        batch.rows.clear();
        if !batch.problems.is_empty() {
            let _ = send(&mut batch);
        }
        return Err(e);
    }
    if !batch.rows.is_empty() || !batch.problems.is_empty() {
        send(&mut batch)?;
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lines_are_read_as_lines_and_ranges() {
        let l = Lines::parse(" 12, 40-45,7").unwrap();
        assert!(l.contains(12) && l.contains(40) && l.contains(45) && l.contains(7));
        assert!(!l.contains(39) && !l.contains(46) && !l.contains(2));
        assert_eq!(l.key(), "12,40-45,7");
        assert_eq!(l.missing(&[12, 41]), ["7"]);
        assert!(Lines::parse("1").unwrap_err().contains("line 2"));
        assert!(Lines::parse("9-3").is_err());
        assert!(Lines::parse("x").unwrap_err().contains("`x`"));
        assert!(Lines::parse(" , ").is_err());
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
            delimiter: None,
            strict: false,
            max_rows,
            new_run: false,
            options: &options,
            kind: "meetings",
            job: &crate::kinds::meetings::MeetingsJob,
            now: DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            recipe: None,
            only_lines: None,
            sheet: None,
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

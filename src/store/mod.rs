//! The durable queue: the only module that speaks SQL.
//!
//! One SQLite file (WAL) holds every run, every row with its state, and a log
//! of every attempt. It is the single source of truth: the engine keeps
//! nothing in memory that a crash could lose. A row is marked `in_flight`
//! (committed) before its request is sent, and its result is committed as
//! soon as the answer comes.
//!
//! Two faces:
//! - [`Store`]: a plain synchronous handle, used for ingest, status, report.
//! - [`Writer`]: the same store owned by one thread that executes commands in
//!   batches (group commit: one transaction, one fsync for all commands that
//!   arrived together). The engine talks to it from async code.
//!
//! Files: `schema` (the tables, the version, the migrations), `reads`
//! (runs and rows read back), `ingest` (a file queued in one transaction),
//! `writer` (the engine's commands); here, the types and the opening. The
//! store names no job kind: a run's kind is a name it keeps, and a row's
//! intent is its cells (plus, for kinds that resolve one at ingest, a body).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};
use serde::Serialize;

mod ingest;
mod reads;
mod schema;
mod writer;

pub use ingest::Ingest;
use schema::migrate;
pub use schema::SCHEMA_VERSION;
use writer::insert_attempts;
pub use writer::{Waiting, Writer};

/// A store error: the database could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("{0}")]
    Corrupt(String),
    /// Not the database: what the caller wrote out of it (a report) failed.
    #[error("{0}")]
    Output(String),
    /// Not a failure of the database: there is none to use at that path (it
    /// cannot be created, or a newer webex-bulk wrote it).
    #[error("{0}")]
    Unusable(String),
}

impl StoreError {
    /// The database itself failed (a damaged file, an I/O error): not the
    /// caller's output, nor a path where no database can be opened.
    pub fn is_database(&self) -> bool {
        match self {
            StoreError::Output(_) | StoreError::Unusable(_) => false,
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code != rusqlite::ErrorCode::CannotOpen
            }
            _ => true,
        }
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The state of one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    Pending,
    InFlight,
    Succeeded,
    Failed,
    Invalid,
}

impl RowState {
    /// The name stored in the database and shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RowState::Pending => "pending",
            RowState::InFlight => "in_flight",
            RowState::Succeeded => "succeeded",
            RowState::Failed => "failed",
            RowState::Invalid => "invalid",
        }
    }
}

/// The state of a run as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Being worked on (or the process died while it was).
    Running,
    /// Stopped by an authentication failure; `--resume` continues.
    Paused,
    /// Stopped by Ctrl-C; `--resume` continues.
    Interrupted,
    /// Every row has a final state.
    Finished,
}

impl RunState {
    fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Interrupted => "interrupted",
            RunState::Finished => "finished",
        }
    }
    fn parse(s: &str) -> RunState {
        match s {
            "paused" => RunState::Paused,
            "interrupted" => RunState::Interrupted,
            "finished" => RunState::Finished,
            _ => RunState::Running,
        }
    }
}

/// The most a create may leave after its row was claimed (or re-stamped):
/// the engine stamps the row again before a create that would leave later
/// (see `Writer::stamp`). A row found `in_flight` after a stop counts its
/// settle window from `updated_at + SEND_SLACK_MS`.
pub const SEND_SLACK_MS: i64 = 5_000;

/// What a run was, for listing and resuming.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    pub id: i64,
    pub uid: String,
    pub kind: String,
    pub source_path: String,
    pub source_sha256: String,
    pub options: serde_json::Value,
    #[serde(skip)]
    pub header: Vec<String>,
    pub state: RunState,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
}

/// How many rows of a run are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: u64,
    pub in_flight: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub invalid: u64,
    /// Succeeded rows still to be looked up once more (their create followed
    /// an uncertain attempt); a run is finished only when this is 0. Not a
    /// state of its own: these rows are counted in `succeeded` too.
    pub checks: u64,
    /// Rows whose report has a note (e.g. "removed 1 duplicate").
    pub noted: u64,
}

impl Counts {
    /// Every row of the run.
    pub fn total(&self) -> u64 {
        self.pending + self.in_flight + self.succeeded + self.failed + self.invalid
    }
    /// Rows with a final state.
    pub fn done(&self) -> u64 {
        self.succeeded + self.failed + self.invalid
    }
}

/// A row handed to a worker: it is `in_flight` in the database.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub line: i64,
    /// The row's cells as read from the file, encoded (see [`Claimed::cells`]).
    pub original: String,
    /// The body resolved at ingest, for kinds that store one (users).
    pub request: Option<String>,
    /// An earlier attempt may have created it: look it up before sending.
    pub reconcile: bool,
    /// When the latest create that may have happened was sent (ms): a
    /// lookup that finds nothing proves nothing before this + the settle window.
    pub uncertain_at: Option<i64>,
    /// When this claim was made (ms); the row's create leaves within
    /// [`SEND_SLACK_MS`] of it, or the row is stamped again first.
    pub claimed_at: i64,
    /// This claim is the final check of a succeeded row (see `check_at`),
    /// not an attempt to carry it out.
    pub check: bool,
    /// The recorded result's id (meeting id), for a check.
    pub result_id: Option<String>,
    /// Creates that may have been sent for it before this claim.
    pub creates: u32,
    pub attempts: u32,
    pub failures: u32,
    pub throttled: u32,
}

impl Claimed {
    /// The row's cells (decoded by the worker, not by the writer thread).
    pub fn cells(&self) -> std::result::Result<Vec<String>, String> {
        decode_cells(&self.original)
            .map_err(|e| format!("the queued row is unreadable (line {}): {e}", self.line))
    }
}

/// The meeting (or other object) a row produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Created {
    /// Meeting id / person id.
    pub id: String,
    /// Meeting number / what was done to the person (created, updated, no change).
    pub number: Option<String>,
    /// Web link of a meeting.
    pub link: Option<String>,
    /// Anything else the report shows (users: licenses before and after, JSON).
    pub extra: Option<String>,
}

/// How a row's attempt ended, as the store records it.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Done: the object exists.
    Succeeded {
        created: Created,
        status: Option<u16>,
        tracking_id: Option<String>,
        /// What the report says about it (e.g. "removed 1 duplicate").
        note: Option<String>,
        /// Look it up once more at this time (ms): an attempt before the
        /// one that succeeded may still create a second one.
        check_at: Option<i64>,
    },
    /// Try again at `next_at` (ms since epoch).
    Retry {
        next_at: i64,
        status: Option<u16>,
        error: String,
        tracking_id: Option<String>,
        /// The request may have been carried out: look before resending.
        reconcile: bool,
        /// When the request that may have been carried out was sent (ms).
        uncertain_at: Option<i64>,
        /// Counted against `--max-attempts` (transient failures).
        counts_as_failure: bool,
        /// A 429.
        throttled: bool,
    },
    /// Final failure. `reconcile`: the last create's outcome is unknown, so
    /// a later retry (`--retry-failed`) must look before it sends.
    Failed {
        status: Option<u16>,
        error: String,
        tracking_id: Option<String>,
        reconcile: bool,
        /// When the request that may have been carried out was sent (ms).
        uncertain_at: Option<i64>,
    },
    /// The attempt ended before anything was sent for it; back to pending as is.
    Released,
    /// A succeeded row's final check ended: `next_check` is when to look
    /// again (the check could not be finished), `None` when it is done.
    Checked {
        note: Option<String>,
        next_check: Option<i64>,
        /// The check's lookup failed transiently (counted like a row's failures).
        failure: bool,
        /// The check's lookup was answered 429.
        throttled: bool,
    },
}

impl Outcome {
    /// The row failed for good, for a reason the kind tells (nothing that
    /// may still land).
    pub fn failed(status: Option<u16>, error: String) -> Outcome {
        Outcome::Failed {
            status,
            error,
            tracking_id: None,
            reconcile: false,
            uncertain_at: None,
        }
    }

    /// A final check that found nothing to do.
    pub fn checked() -> Outcome {
        Outcome::Checked {
            note: None,
            next_check: None,
            failure: false,
            throttled: false,
        }
    }
}

/// One line of the attempts log.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// 'create' or 'lookup'.
    pub action: &'static str,
    pub started_at: i64,
    pub finished_at: i64,
    pub http_status: Option<u16>,
    /// Short word: 'ok', 'found', 'not_found', 'retry', 'failed', ...
    pub outcome: &'static str,
    pub error: Option<String>,
    pub tracking_id: Option<String>,
}

/// One line of the attempts log, as read back.
#[derive(Clone, Debug)]
pub struct LoggedAttempt {
    pub action: String,
    pub http_status: Option<i64>,
    pub outcome: String,
    pub error: Option<String>,
}

/// A row as the report shows it.
#[derive(Clone, Debug)]
pub struct ReportRow {
    pub line: i64,
    pub original: Vec<String>,
    pub state: String,
    pub attempts: i64,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    pub tracking_id: Option<String>,
    pub result_id: Option<String>,
    pub result_number: Option<String>,
    pub result_link: Option<String>,
    pub result_extra: Option<String>,
    /// What else happened to it (e.g. "removed 1 duplicate").
    pub note: Option<String>,
}

/// A succeeded row, as `verify` reads it.
#[derive(Clone, Debug)]
pub struct SucceededRow {
    pub line: i64,
    /// The row's cells, encoded (see [`decode_cells`]).
    pub original: String,
    /// The body stored at ingest, for runs that kept one.
    pub request: Option<String>,
    /// The meeting (or person) id recorded for it.
    pub result_id: Option<String>,
}

/// A row as ingest queues it.
#[derive(Clone, Debug)]
pub struct NewRow {
    /// The file's own line number.
    pub line: u64,
    /// The row's cells, as [`encode_cells`] wrote them.
    pub original: String,
    /// The body to send, for kinds that resolve it at ingest (users).
    pub request: Option<String>,
    /// Why the row is invalid; `None`: it is pending.
    pub error: Option<String>,
}

/// How a row's cells are kept (a JSON array of strings).
pub fn encode_cells(cells: &[String]) -> String {
    serde_json::to_string(cells).expect("strings serialize")
}

/// The cells [`encode_cells`] wrote.
pub fn decode_cells(text: &str) -> std::result::Result<Vec<String>, serde_json::Error> {
    serde_json::from_str(text)
}

/// A new run's description.
#[derive(Clone, Debug)]
pub struct NewRun<'a> {
    pub kind: &'a str,
    pub source_path: &'a str,
    pub options: &'a serde_json::Value,
}

/// How long a statement waits for another process's lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A synchronous handle on the database.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path`. A new database is
    /// readable by its owner only: it holds people's names, invitees and
    /// meeting passwords (SQLite gives its WAL and journal files the same mode).
    pub fn open(path: &Path) -> Result<Store> {
        create_private(path)
            .map_err(|e| StoreError::Unusable(format!("cannot create {}: {e}", path.display())))?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // For a new database only: 16 KiB pages make the b-trees of a large
        // ingest shallower and its writes larger (benches/ingest: ~1.2x).
        conn.pragma_update(None, "page_size", 16384)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before we go on, so "in_flight" survives
        // a power cut, not only a crash. Group commit keeps this cheap.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut conn = conn;
        migrate(&mut conn)?;
        Ok(Store { conn })
    }

    /// Starts an ingest: one transaction in which the run and all its rows
    /// are written; nothing is visible (or queued) until [`Ingest::commit`].
    ///
    /// While nobody else has the database open, the ingest runs with a
    /// rollback journal instead of the WAL: the new rows' pages are then
    /// written once, straight into the database, instead of into the WAL and
    /// again by the checkpoint (benches/ingest: the commit of 1M rows took
    /// ~0.9 s of checkpointing). Only pages that existed before are
    /// journaled, so a crash still leaves no trace of the ingest. The WAL is
    /// `retry_failed`, failed rows get a fresh set of attempts too.
    pub fn prepare_resume(&mut self, run_id: i64, retry_failed: bool) -> Result<u64> {
        let tx = self.conn.transaction()?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO attempts (run_id, line, action, started_at, finished_at, outcome, error)
             SELECT run_id, line, 'interrupted', ?2, ?2, 'unknown', 'the process ended while this request was in flight; it will be looked up before any resend'
             FROM rows WHERE run_id = ?1 AND state = 'in_flight'",
            params![run_id, now],
        )?;
        // The create may have left up to SEND_SLACK_MS after the claim (or
        // the last stamp): its settle window counts from then.
        let n = tx.execute(
            "UPDATE rows SET state = 'pending', reconcile = 1, next_at = 0, creates = creates + 1,
             uncertain_at = max(coalesce(uncertain_at, 0), updated_at + ?3), updated_at = ?2
             WHERE run_id = ?1 AND state = 'in_flight'",
            params![run_id, now, SEND_SLACK_MS],
        )?;
        // Checks are lookups: one that was under way is simply made again.
        tx.execute(
            "UPDATE rows INDEXED BY rows_checks SET checking = 0 WHERE run_id = ?1 AND check_at IS NOT NULL AND checking = 1",
            params![run_id],
        )?;
        if retry_failed {
            tx.execute(
                "UPDATE rows SET state = 'pending', failures = 0, throttled = 0, next_at = 0, updated_at = ?2
                 WHERE run_id = ?1 AND state = 'failed'",
                params![run_id, now],
            )?;
        }
        tx.execute(
            "UPDATE runs SET state = 'running', exit_code = NULL, message = NULL, finished_at = NULL, updated_at = ?2 WHERE id = ?1",
            params![run_id, now_text()],
        )?;
        tx.commit()?;
        Ok(n as u64)
    }

    /// Records how a run stopped.
    pub fn set_run_state(
        &self,
        run_id: i64,
        state: RunState,
        exit_code: Option<i32>,
        message: Option<&str>,
    ) -> Result<()> {
        set_run_state(&self.conn, run_id, state, exit_code, message)
    }

    /// Adds requests made for a row outside a run (`verify --fix`) to its attempt log.
    pub fn log_attempts(&mut self, run_id: i64, line: i64, attempts: &[Attempt]) -> Result<()> {
        let tx = self.conn.transaction()?;
        insert_attempts(&tx, run_id, line, attempts)?;
        tx.execute(
            "UPDATE rows SET attempts = attempts + ?3 WHERE run_id = ?1 AND line = ?2",
            params![run_id, line, attempts.len() as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Hands the store to a writer thread for the engine.
    pub fn into_writer(self) -> Writer {
        Writer::spawn(self)
    }
}

/// Creates an empty file at `path`, readable and writable by its owner only
/// (0600 on Unix), unless something is there already.
pub fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunInfo> {
    let options: String = r.get(5)?;
    let header: String = r.get(6)?;
    let state: String = r.get(7)?;
    Ok(RunInfo {
        id: r.get(0)?,
        uid: r.get(1)?,
        kind: r.get(2)?,
        source_path: r.get(3)?,
        source_sha256: r.get(4)?,
        options: serde_json::from_str(&options).unwrap_or(serde_json::Value::Null),
        header: serde_json::from_str(&header).unwrap_or_default(),
        state: RunState::parse(&state),
        exit_code: r.get(8)?,
        message: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        finished_at: r.get(12)?,
    })
}

fn counts(conn: &Connection, run_id: i64) -> Result<Counts> {
    let mut stmt =
        conn.prepare_cached("SELECT state, count(*) FROM rows WHERE run_id = ?1 GROUP BY state")?;
    let mut c = Counts::default();
    let mut rows = stmt.query([run_id])?;
    while let Some(r) = rows.next()? {
        let state: String = r.get(0)?;
        let n: i64 = r.get(1)?;
        let n = n as u64;
        match state.as_str() {
            "pending" => c.pending = n,
            "in_flight" => c.in_flight = n,
            "succeeded" => c.succeeded = n,
            "failed" => c.failed = n,
            "invalid" => c.invalid = n,
            other => return Err(StoreError::Corrupt(format!("unknown row state {other:?}"))),
        }
    }
    // Both rare, both behind a partial index: no scan of the run's rows.
    c.checks = conn
        .prepare_cached("SELECT count(*) FROM rows WHERE run_id = ?1 AND check_at IS NOT NULL")?
        .query_row([run_id], |r| r.get::<_, i64>(0))? as u64;
    c.noted = conn
        .prepare_cached("SELECT count(*) FROM rows INDEXED BY rows_noted WHERE run_id = ?1 AND note IS NOT NULL")?
        .query_row([run_id], |r| r.get::<_, i64>(0))? as u64;
    Ok(c)
}

fn set_run_state(
    conn: &Connection,
    run_id: i64,
    state: RunState,
    exit_code: Option<i32>,
    message: Option<&str>,
) -> Result<()> {
    let now = now_text();
    let finished = (state == RunState::Finished).then(|| now.clone());
    conn.execute(
        "UPDATE runs SET state = ?2, exit_code = ?3, message = ?4, updated_at = ?5, finished_at = ?6 WHERE id = ?1",
        params![run_id, state.as_str(), exit_code, message, now, finished],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests;

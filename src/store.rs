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

use std::path::Path;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Serialize;

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
}

impl StoreError {
    /// The database itself failed (not the caller's output).
    pub fn is_database(&self) -> bool {
        !matches!(self, StoreError::Output(_))
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

/// The schema as the first release wrote it (`user_version` 0 or 1). New
/// databases are created with it and then migrated like old ones, so every
/// database goes through the same steps.
const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    uid           TEXT NOT NULL,            -- random, part of every integration tag of the run
    kind          TEXT NOT NULL,            -- job kind, e.g. 'meetings'
    source_path   TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    options       TEXT NOT NULL,            -- JSON: the options the run was started with
    header        TEXT NOT NULL,            -- JSON array: the file's header row, for the report
    state         TEXT NOT NULL,
    exit_code     INTEGER,
    message       TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    finished_at   TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_hash ON runs(kind, source_sha256);
CREATE TABLE IF NOT EXISTS rows (
    run_id         INTEGER NOT NULL REFERENCES runs(id),
    line           INTEGER NOT NULL,        -- the file's own line number (header = 1)
    state          TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0, -- requests sent for this row (creates and lookups)
    failures       INTEGER NOT NULL DEFAULT 0, -- transient failures, counted against --max-attempts
    throttled      INTEGER NOT NULL DEFAULT 0, -- 429 answers
    next_at        INTEGER NOT NULL DEFAULT 0, -- ms since epoch: not to be tried before
    reconcile      INTEGER NOT NULL DEFAULT 0, -- 1: an earlier create may have happened; look before sending
    last_status    INTEGER,
    error          TEXT,
    tracking_id    TEXT,
    result_id      TEXT,                    -- meeting id
    result_number  TEXT,                    -- meeting number
    result_link    TEXT,                    -- web link
    result_extra   TEXT,                    -- JSON: what else the report shows (users: licenses before/after)
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (run_id, line)
) WITHOUT ROWID;
-- What a row says, written once at ingest. Kept apart from `rows` so that the
-- state changes of a run rewrite small pages, not the rows' text. Its key
-- is the rowid (run_id << 32) + line: rows are appended in order and found
-- by rowid, and large rows stay out of a WITHOUT ROWID b-tree.
CREATE TABLE IF NOT EXISTS row_data (
    key            INTEGER PRIMARY KEY,     -- (run_id << 32) + line
    request        TEXT,                    -- JSON body, for kinds whose request is resolved against
                                            -- the org at ingest (users: license ids); NULL where the
                                            -- request is a pure function of the cells (meetings) and
                                            -- for invalid rows
    original       TEXT NOT NULL            -- JSON array: the row's cells as read
);
-- Only pending rows are in it: a claim takes a row out, a success never touches it.
CREATE INDEX IF NOT EXISTS rows_pending ON rows(run_id, next_at, line) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS attempts (
    id           INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL,
    line         INTEGER NOT NULL,
    action       TEXT NOT NULL,             -- 'create', 'lookup', or 'interrupted'
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL,
    http_status  INTEGER,
    outcome      TEXT NOT NULL,
    error        TEXT,
    tracking_id  TEXT
);
"#;

/// Version 2: the settle window and the final check (exactly once on a slow
/// server), and a note for rows that needed repair.
const MIGRATE_V2: &str = r#"
ALTER TABLE rows ADD COLUMN uncertain_at INTEGER; -- ms: when the row's latest create whose outcome is
                                                  -- unknown was sent (for a row found in_flight after a
                                                  -- stop: the latest time it may have been sent). A
                                                  -- "not found" proves nothing before uncertain_at + settle.
ALTER TABLE rows ADD COLUMN check_at INTEGER;     -- ms: a succeeded row whose create followed an uncertain
                                                  -- attempt is looked up once more at this time (extra
                                                  -- meetings with its tag are removed); NULL: no check due
ALTER TABLE rows ADD COLUMN checking INTEGER NOT NULL DEFAULT 0; -- 1 while a worker holds the check
ALTER TABLE rows ADD COLUMN note TEXT;            -- what the report says about a succeeded row
                                                  -- (e.g. 'removed 1 duplicate')
ALTER TABLE rows ADD COLUMN creates INTEGER NOT NULL DEFAULT 0; -- creates that may have been sent
                                                  -- (a stop while in flight counts as one): a row that
                                                  -- may have sent two has its final check
CREATE INDEX IF NOT EXISTS rows_checks ON rows(run_id, check_at) WHERE check_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS rows_noted ON rows(run_id) WHERE note IS NOT NULL;
-- What earlier versions knew, from the attempt log.
UPDATE rows SET creates = c.n FROM (SELECT run_id, line, count(*) AS n FROM attempts
    WHERE action IN ('create', 'interrupted') GROUP BY run_id, line) AS c
    WHERE rows.run_id = c.run_id AND rows.line = c.line;
-- Earlier versions claimed rows ahead without stamping them before a late
-- send: a row they left in flight may have been sent any time until now.
UPDATE rows SET updated_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    WHERE state = 'in_flight';
-- (5000 = SEND_SLACK_MS: the last update came after the uncertain send)
UPDATE rows SET uncertain_at = updated_at + 5000 WHERE reconcile = 1;
"#;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// The most a create may leave after its row was claimed (or re-stamped):
/// the engine stamps the row again before a create that would leave later
/// (see `Writer::stamp`). A row found `in_flight` after a stop counts its
/// settle window from `updated_at + SEND_SLACK_MS`.
pub const SEND_SLACK_MS: i64 = 5_000;

/// Brings a database of any earlier version to [`SCHEMA_VERSION`], in one
/// transaction; refuses one written by a newer build.
fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction()?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "this database was written by a newer webex-bulk (schema version {version}, this build knows up to {SCHEMA_VERSION}); use that version or a new --db"
        )));
    }
    if version < 1 {
        tx.execute_batch(SCHEMA_V1)?;
    }
    if version < 2 {
        tx.execute_batch(MIGRATE_V2)?;
    }
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    Ok(())
}

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
            .map_err(|e| StoreError::Corrupt(format!("cannot create {}: {e}", path.display())))?;
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
    /// back as soon as the ingest ends, whichever way.
    pub fn begin_ingest(&mut self, run: &NewRun<'_>) -> Result<Ingest<'_>> {
        let conn = &self.conn;
        let rollback_journal = switch_journal(conn, "delete");
        let tx = match Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Deferred) {
            Ok(tx) => tx,
            Err(e) => {
                if rollback_journal {
                    switch_journal(conn, "wal");
                }
                return Err(e.into());
            }
        };
        let mut ingest = Ingest {
            conn,
            tx: Some(tx),
            rollback_journal,
            run_id: 0,
            uid: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            now: now_ms(),
        };
        let now = now_text();
        let tx = ingest.tx();
        tx.execute(
            "INSERT INTO runs (uid, kind, source_path, source_sha256, options, header, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, '', ?4, '[]', 'running', ?5, ?5)",
            params![ingest.uid, run.kind, run.source_path, run.options.to_string(), now],
        )?;
        ingest.run_id = tx.last_insert_rowid();
        Ok(ingest)
    }

    /// One run.
    pub fn run(&self, id: i64) -> Result<Option<RunInfo>> {
        self.conn
            .query_row(
                "SELECT id, uid, kind, source_path, source_sha256, options, header, state, exit_code, message, created_at, updated_at, finished_at FROM runs WHERE id = ?1",
                [id],
                run_from_row,
            )
            .optional()
            .map_err(Into::into)
    }

    /// The newest run, if any.
    pub fn latest_run(&self) -> Result<Option<RunInfo>> {
        let id: Option<i64> = self
            .conn
            .query_row("SELECT max(id) FROM runs", [], |r| r.get(0))?;
        id.map(|id| self.run(id)).transpose().map(Option::flatten)
    }

    /// Every run, oldest first.
    pub fn runs(&self) -> Result<Vec<RunInfo>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, uid, kind, source_path, source_sha256, options, header, state, exit_code, message, created_at, updated_at, finished_at FROM runs ORDER BY id",
        )?;
        let rows = stmt
            .query_map([], run_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Row counts by state.
    pub fn counts(&self, run_id: i64) -> Result<Counts> {
        counts(&self.conn, run_id)
    }

    /// Makes a stopped run ready to go on: rows left `in_flight` by a crash
    /// or an interruption go back to `pending`, marked for reconciliation
    /// (their create may have happened), and the attempt log says so. With
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

    /// Visits the rows of a run in line order (streaming: one row in memory at a time).
    pub fn for_each_row(
        &self,
        run_id: i64,
        failed_only: bool,
        mut f: impl FnMut(ReportRow) -> std::io::Result<()>,
    ) -> Result<()> {
        let sql = if failed_only {
            "SELECT r.line, d.original, r.state, r.attempts, r.last_status, r.error, r.tracking_id, r.result_id, r.result_number, r.result_link, r.result_extra, r.note
             FROM rows r JOIN row_data d ON d.key = (r.run_id << 32) + r.line WHERE r.run_id = ?1 AND r.state IN ('failed', 'invalid') ORDER BY r.line"
        } else {
            "SELECT r.line, d.original, r.state, r.attempts, r.last_status, r.error, r.tracking_id, r.result_id, r.result_number, r.result_link, r.result_extra, r.note
             FROM rows r JOIN row_data d ON d.key = (r.run_id << 32) + r.line WHERE r.run_id = ?1 ORDER BY r.line"
        };
        let mut stmt = self.conn.prepare(sql)?;
        let mut rows = stmt.query([run_id])?;
        while let Some(r) = rows.next()? {
            let original: String = r.get(1)?;
            let row = ReportRow {
                line: r.get(0)?,
                original: decode_cells(&original).map_err(|e| {
                    StoreError::Corrupt(format!("row {}: {e}", r.get::<_, i64>(0).unwrap_or(0)))
                })?,
                state: r.get(2)?,
                attempts: r.get(3)?,
                http_status: r.get(4)?,
                error: r.get(5)?,
                tracking_id: r.get(6)?,
                result_id: r.get(7)?,
                result_number: r.get(8)?,
                result_link: r.get(9)?,
                result_extra: r.get(10)?,
                note: r.get(11)?,
            };
            f(row).map_err(|e| StoreError::Output(format!("cannot write the report: {e}")))?;
        }
        Ok(())
    }

    /// The attempts log of one row, oldest first.
    pub fn attempts(&self, run_id: i64, line: i64) -> Result<Vec<LoggedAttempt>> {
        let mut stmt = self.conn.prepare(
            "SELECT action, http_status, outcome, error FROM attempts WHERE run_id = ?1 AND line = ?2 ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![run_id, line], |r| {
                Ok(LoggedAttempt {
                    action: r.get(0)?,
                    http_status: r.get(1)?,
                    outcome: r.get(2)?,
                    error: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Up to `limit` succeeded rows after `after_line`, in line order (for
    /// `verify`, which goes through a run a page at a time).
    pub fn succeeded_rows(
        &self,
        run_id: i64,
        after_line: i64,
        limit: usize,
    ) -> Result<Vec<SucceededRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT r.line, d.original, d.request, r.result_id
             FROM rows r JOIN row_data d ON d.key = (r.run_id << 32) + r.line
             WHERE r.run_id = ?1 AND r.state = 'succeeded' AND r.line > ?2 ORDER BY r.line LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![run_id, after_line, limit as i64], |r| {
                Ok(SucceededRow {
                    line: r.get(0)?,
                    original: r.get(1)?,
                    request: r.get(2)?,
                    result_id: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
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

/// Switches the journal mode (`"wal"` or `"delete"`) if no other connection
/// is in the way, without waiting for one. Whether the mode is now `mode`.
fn switch_journal(conn: &Connection, mode: &str) -> bool {
    let switched = conn.busy_timeout(std::time::Duration::ZERO).and_then(|()| {
        conn.pragma_update_and_check(None, "journal_mode", mode, |r| r.get::<_, String>(0))
    });
    let _ = conn.busy_timeout(BUSY_TIMEOUT);
    match switched {
        Ok(now) => now.eq_ignore_ascii_case(mode),
        Err(e) => {
            tracing::debug!("journal mode stays: {e}");
            false
        }
    }
}

/// Rows one ingest statement inserts: one statement for many rows saves
/// SQLite's per-statement work (benches/ingest: ~1.3x on the writing side).
const ROWS_PER_INSERT: usize = 32;
const INSERT_STATE: &str = "INSERT INTO rows (run_id, line, state, error, updated_at) VALUES {}";
const STATE_VALUES: &str = "(?, ?, ?, ?, ?)";
const INSERT_DATA: &str = "INSERT INTO row_data (key, request, original) VALUES {}";
const DATA_VALUES: &str = "(?, ?, ?)";

/// The ingest's inserts: of [`ROWS_PER_INSERT`] rows, and of one.
struct InsertSql {
    many_states: String,
    many_data: String,
    one_state: String,
    one_data: String,
}

static INSERTS: std::sync::LazyLock<InsertSql> = std::sync::LazyLock::new(|| {
    let many = |values: &str| vec![values; ROWS_PER_INSERT].join(", ");
    InsertSql {
        many_states: INSERT_STATE.replace("{}", &many(STATE_VALUES)),
        many_data: INSERT_DATA.replace("{}", &many(DATA_VALUES)),
        one_state: INSERT_STATE.replace("{}", STATE_VALUES),
        one_data: INSERT_DATA.replace("{}", DATA_VALUES),
    }
});

/// An ingest in progress: one transaction.
pub struct Ingest<'a> {
    conn: &'a Connection,
    /// The transaction; `None` once committed.
    tx: Option<Transaction<'a>>,
    /// The ingest switched to a rollback journal; the WAL comes back at the end.
    rollback_journal: bool,
    run_id: i64,
    uid: String,
    /// When the rows were queued (ms since the epoch).
    now: i64,
}

impl Drop for Ingest<'_> {
    fn drop(&mut self) {
        // Not committed: nothing of it stays.
        drop(self.tx.take());
        if self.rollback_journal && !switch_journal(self.conn, "wal") {
            // Still correct (and durable), only slower; the next open has the WAL again.
            tracing::warn!("could not switch the database back to WAL mode");
        }
    }
}

impl Ingest<'_> {
    fn tx(&self) -> &Transaction<'_> {
        self.tx
            .as_ref()
            .expect("an ingest has its transaction until it is committed")
    }

    /// The new run's id.
    pub fn run_id(&self) -> i64 {
        self.run_id
    }

    /// The new run's random uid (part of every integration tag).
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Queues rows (in line order). A row without an `error` is `pending`.
    pub fn add_rows(&mut self, rows: &[NewRow]) -> Result<()> {
        let tx = self.tx();
        let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
        if chunks.len() > 0 {
            let (mut state, mut data) = (
                tx.prepare_cached(&INSERTS.many_states)?,
                tx.prepare_cached(&INSERTS.many_data)?,
            );
            for chunk in &mut chunks {
                for (i, row) in chunk.iter().enumerate() {
                    self.bind(&mut state, &mut data, i, row)?;
                }
                state.raw_execute()?;
                data.raw_execute()?;
            }
        }
        let mut state = tx.prepare_cached(&INSERTS.one_state)?;
        let mut data = tx.prepare_cached(&INSERTS.one_data)?;
        for row in chunks.remainder() {
            self.bind(&mut state, &mut data, 0, row)?;
            state.raw_execute()?;
            data.raw_execute()?;
        }
        Ok(())
    }

    /// Binds `row` as the `i`-th row of the two inserts.
    fn bind(
        &self,
        state: &mut rusqlite::Statement<'_>,
        data: &mut rusqlite::Statement<'_>,
        i: usize,
        row: &NewRow,
    ) -> Result<()> {
        let line = row.line as i64;
        let (s, d) = (i * 5, i * 3);
        state.raw_bind_parameter(s + 1, self.run_id)?;
        state.raw_bind_parameter(s + 2, line)?;
        state.raw_bind_parameter(
            s + 3,
            if row.error.is_none() {
                "pending"
            } else {
                "invalid"
            },
        )?;
        state.raw_bind_parameter(s + 4, row.error.as_deref())?;
        state.raw_bind_parameter(s + 5, self.now)?;
        data.raw_bind_parameter(d + 1, (self.run_id << 32) + line)?;
        data.raw_bind_parameter(d + 2, row.request.as_deref())?;
        data.raw_bind_parameter(d + 3, row.original.as_str())?;
        Ok(())
    }

    /// An earlier run of this kind with this content, and its counts.
    pub fn find_previous(&self, kind: &str, sha256: &str) -> Result<Option<(RunInfo, Counts)>> {
        let found = self
            .tx()
            .query_row(
                "SELECT id, uid, kind, source_path, source_sha256, options, header, state, exit_code, message, created_at, updated_at, finished_at
                 FROM runs WHERE kind = ?1 AND source_sha256 = ?2 AND id != ?3 ORDER BY id DESC LIMIT 1",
                params![kind, sha256, self.run_id],
                run_from_row,
            )
            .optional()?;
        match found {
            Some(run) => {
                let c = counts(self.tx(), run.id)?;
                Ok(Some((run, c)))
            }
            None => Ok(None),
        }
    }

    /// Makes the run and its rows durable, recording the file's hash and header.
    pub fn commit(mut self, sha256: &str, header: &[String]) -> Result<i64> {
        let tx = self.tx.take().expect("committed once");
        tx.execute(
            "UPDATE runs SET source_sha256 = ?2, header = ?3 WHERE id = ?1",
            params![
                self.run_id,
                sha256,
                serde_json::to_string(header).unwrap_or_default()
            ],
        )?;
        tx.commit()?;
        Ok(self.run_id)
    }
}

/// A command for the writer thread.
enum Command {
    Claim {
        run_id: i64,
        now: i64,
        limit: usize,
        reply: tokio::sync::oneshot::Sender<Result<Vec<Claimed>>>,
    },
    Complete {
        run_id: i64,
        line: i64,
        outcome: Outcome,
        attempts: Vec<Attempt>,
        /// `None`: nobody waits; a failure is kept for [`Writer::failure`].
        reply: Option<tokio::sync::oneshot::Sender<Result<()>>>,
    },
    Release {
        run_id: i64,
        lines: Vec<i64>,
        reply: tokio::sync::oneshot::Sender<Result<()>>,
    },
    Counts {
        run_id: i64,
        reply: tokio::sync::oneshot::Sender<Result<Counts>>,
    },
    NextDue {
        run_id: i64,
        reply: tokio::sync::oneshot::Sender<Result<Waiting>>,
    },
    Stamp {
        run_id: i64,
        line: i64,
        now: i64,
        reply: tokio::sync::oneshot::Sender<Result<()>>,
    },
    SetRunState {
        run_id: i64,
        state: RunState,
        exit_code: Option<i32>,
        message: Option<String>,
        reply: tokio::sync::oneshot::Sender<Result<()>>,
    },
}

/// The store owned by one thread; cheap to clone, usable from async code.
///
/// Commands that arrive while the thread is busy are executed together in
/// one transaction (group commit), and each gets its answer only after that
/// transaction is committed: so when `claim` returns, the rows really are
/// `in_flight` on disk.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Command>,
    /// The first error of a command nobody waited for.
    failure: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// The most commands one group commit takes.
const MAX_BATCH: usize = 512;
/// How long a result nobody waits for ([`Writer::record`]) may wait for
/// other commands before it is committed on its own.
const RECORD_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

impl Command {
    /// Whether someone waits for this command's answer.
    fn waited_for(&self) -> bool {
        !matches!(self, Command::Complete { reply: None, .. })
    }
}

impl Writer {
    fn spawn(store: Store) -> Writer {
        let (tx, rx) = mpsc::channel::<Command>();
        let failure = std::sync::Arc::new(std::sync::Mutex::new(None));
        let slot = failure.clone();
        std::thread::Builder::new()
            .name("webex-bulk-store".into())
            .spawn(move || writer_loop(store, rx, slot))
            .expect("spawn the store thread");
        Writer { tx, failure }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Marks up to `limit` due rows `in_flight` (durably) and returns them.
    pub async fn claim(&self, run_id: i64, now: i64, limit: usize) -> Result<Vec<Claimed>> {
        self.ask(|reply| Command::Claim {
            run_id,
            now,
            limit,
            reply,
        })
        .await
    }

    /// Gives claimed rows that were never started back to `pending`:
    /// nothing was sent for them.
    pub async fn release(&self, run_id: i64, lines: Vec<i64>) -> Result<()> {
        self.ask(|reply| Command::Release {
            run_id,
            lines,
            reply,
        })
        .await
    }

    /// Records how a claimed row's attempt ended.
    /// `attempts` are the requests sent for it this time (logged, and counted in `attempts`).
    pub async fn complete(
        &self,
        run_id: i64,
        line: i64,
        outcome: Outcome,
        attempts: Vec<Attempt>,
    ) -> Result<()> {
        self.ask(|reply| Command::Complete {
            run_id,
            line,
            outcome,
            attempts,
            reply: Some(reply),
        })
        .await
    }

    /// Records how a claimed row's attempt ended without waiting for the
    /// commit: it goes into the next group commit (milliseconds). Commands
    /// are carried out in order, so anything asked later sees it. Should the
    /// process die before that commit, the row is still `in_flight` and is
    /// looked up on resume, never sent again blindly. A failure to write is
    /// kept for [`Writer::failure`].
    pub fn record(
        &self,
        run_id: i64,
        line: i64,
        outcome: Outcome,
        attempts: Vec<Attempt>,
    ) -> Result<()> {
        self.tx
            .send(Command::Complete {
                run_id,
                line,
                outcome,
                attempts,
                reply: None,
            })
            .map_err(|_| StoreError::WriterGone)
    }

    /// The first failure of a [`Writer::record`], if any.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("writer failure").clone()
    }

    /// Row counts by state.
    pub async fn counts(&self, run_id: i64) -> Result<Counts> {
        self.ask(|reply| Command::Counts { run_id, reply }).await
    }

    /// What the run still waits for: when the earliest pending row or
    /// final check becomes due.
    pub async fn next_due(&self, run_id: i64) -> Result<Waiting> {
        self.ask(|reply| Command::NextDue { run_id, reply }).await
    }

    /// Records durably that a claimed row's request leaves now (ms): a row
    /// whose create would leave more than [`SEND_SLACK_MS`] after its claim
    /// is stamped first, so a stop's settle window never starts too early.
    pub async fn stamp(&self, run_id: i64, line: i64, now: i64) -> Result<()> {
        self.ask(|reply| Command::Stamp {
            run_id,
            line,
            now,
            reply,
        })
        .await
    }

    /// Records how the run stopped.
    pub async fn set_run_state(
        &self,
        run_id: i64,
        state: RunState,
        exit_code: Option<i32>,
        message: Option<String>,
    ) -> Result<()> {
        self.ask(|reply| Command::SetRunState {
            run_id,
            state,
            exit_code,
            message,
            reply,
        })
        .await
    }
}

/// Where the writer keeps the first error of a command nobody waited for.
type FailureSlot = std::sync::Arc<std::sync::Mutex<Option<String>>>;

/// Answers a batch gets once its transaction is settled.
enum Reply {
    Claim(
        tokio::sync::oneshot::Sender<Result<Vec<Claimed>>>,
        Result<Vec<Claimed>>,
    ),
    /// `None`: nobody waits; an error goes to the failure slot.
    Unit(Option<tokio::sync::oneshot::Sender<Result<()>>>, Result<()>),
    Counts(tokio::sync::oneshot::Sender<Result<Counts>>, Result<Counts>),
    NextDue(
        tokio::sync::oneshot::Sender<Result<Waiting>>,
        Result<Waiting>,
    ),
}

impl Reply {
    fn fail(self, message: &str, failure: &FailureSlot) {
        let err = || StoreError::Corrupt(message.to_owned());
        match self {
            Reply::Claim(s, _) => drop(s.send(Err(err()))),
            Reply::Unit(Some(s), _) => drop(s.send(Err(err()))),
            Reply::Unit(None, _) => keep_failure(failure, message.to_owned()),
            Reply::Counts(s, _) => drop(s.send(Err(err()))),
            Reply::NextDue(s, _) => drop(s.send(Err(err()))),
        }
    }
    fn send(self, failure: &FailureSlot) {
        match self {
            Reply::Claim(s, r) => drop(s.send(r)),
            Reply::Unit(Some(s), r) => drop(s.send(r)),
            Reply::Unit(None, Err(e)) => keep_failure(failure, e.to_string()),
            Reply::Unit(None, Ok(())) => {}
            Reply::Counts(s, r) => drop(s.send(r)),
            Reply::NextDue(s, r) => drop(s.send(r)),
        }
    }
}

fn keep_failure(failure: &FailureSlot, message: String) {
    let mut slot = failure.lock().expect("writer failure");
    if slot.is_none() {
        *slot = Some(message);
    }
}

fn writer_loop(mut store: Store, rx: mpsc::Receiver<Command>, failure: FailureSlot) {
    while let Ok(first) = rx.recv() {
        // Commit as soon as the queue is empty if someone waits for an
        // answer; results nobody waits for keep company for a moment (one
        // commit, one fsync for many).
        let since = std::time::Instant::now();
        let mut waited_for = first.waited_for();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let left = (since + RECORD_DELAY).saturating_duration_since(std::time::Instant::now());
            let next = if waited_for || left.is_zero() {
                rx.try_recv().ok()
            } else {
                rx.recv_timeout(left).ok()
            };
            match next {
                Some(cmd) => {
                    waited_for |= cmd.waited_for();
                    batch.push(cmd);
                }
                None => break,
            }
        }
        let tx = match store.conn.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                let msg = format!("cannot start a transaction: {e}");
                for cmd in batch {
                    reply_of(cmd).fail(&msg, &failure);
                }
                continue;
            }
        };
        let replies: Vec<Reply> = batch.into_iter().map(|cmd| execute(&tx, cmd)).collect();
        match tx.commit() {
            Ok(()) => replies.into_iter().for_each(|r| r.send(&failure)),
            Err(e) => {
                let msg = format!("cannot commit to the database: {e}");
                replies.into_iter().for_each(|r| r.fail(&msg, &failure));
            }
        }
    }
}

fn reply_of(cmd: Command) -> Reply {
    match cmd {
        Command::Claim { reply, .. } => Reply::Claim(reply, Ok(Vec::new())),
        Command::Complete { reply, .. } => Reply::Unit(reply, Ok(())),
        Command::SetRunState { reply, .. } => Reply::Unit(Some(reply), Ok(())),
        Command::Release { reply, .. } => Reply::Unit(Some(reply), Ok(())),
        Command::Counts { reply, .. } => Reply::Counts(reply, Ok(Counts::default())),
        Command::NextDue { reply, .. } => Reply::NextDue(reply, Ok(Waiting::default())),
        Command::Stamp { reply, .. } => Reply::Unit(Some(reply), Ok(())),
    }
}

fn execute(tx: &Transaction<'_>, cmd: Command) -> Reply {
    match cmd {
        Command::Claim {
            run_id,
            now,
            limit,
            reply,
        } => Reply::Claim(reply, claim(tx, run_id, now, limit)),
        Command::Complete {
            run_id,
            line,
            outcome,
            attempts,
            reply,
        } => Reply::Unit(reply, complete(tx, run_id, line, &outcome, &attempts)),
        Command::Release {
            run_id,
            lines,
            reply,
        } => Reply::Unit(Some(reply), release(tx, run_id, &lines)),
        Command::Counts { run_id, reply } => Reply::Counts(reply, counts(tx, run_id)),
        Command::NextDue { run_id, reply } => {
            Reply::NextDue(reply, waiting(tx, run_id, now_ms()))
        }
        Command::Stamp {
            run_id,
            line,
            now,
            reply,
        } => Reply::Unit(
            Some(reply),
            tx.prepare_cached(
                "UPDATE rows SET updated_at = ?3 WHERE run_id = ?1 AND line = ?2 AND state = 'in_flight'",
            )
            .and_then(|mut s| s.execute(params![run_id, line, now]))
            .map(drop)
            .map_err(Into::into),
        ),
        Command::SetRunState {
            run_id,
            state,
            exit_code,
            message,
            reply,
        } => Reply::Unit(
            Some(reply),
            set_run_state(tx, run_id, state, exit_code, message.as_deref()),
        ),
    }
}

/// Claimed rows that were never started go back to `pending` as they were
/// (a row that was to be looked up first still is), and claimed checks to
/// waiting.
fn release(tx: &Transaction<'_>, run_id: i64, lines: &[i64]) -> Result<()> {
    let mut back = tx.prepare_cached(
        "UPDATE rows SET state = 'pending', updated_at = ?3 WHERE run_id = ?1 AND line = ?2 AND state = 'in_flight'",
    )?;
    let mut check = tx.prepare_cached(
        "UPDATE rows SET checking = 0 WHERE run_id = ?1 AND line = ?2 AND checking = 1",
    )?;
    let now = now_ms();
    for line in lines {
        back.execute(params![run_id, line, now])?;
        check.execute(params![run_id, line])?;
    }
    Ok(())
}

/// What a run still waits for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Waiting {
    /// When the earliest pending row or final check not yet under way becomes due (ms).
    pub next: Option<i64>,
    /// Final checks not done yet (under way or waiting).
    pub checks: u64,
    /// When the earliest waiting final check becomes due (ms).
    pub next_check: Option<i64>,
    /// Rows whose earlier create's outcome is unknown, waiting until Webex
    /// has had time to finish it (pending, to be looked up, not due yet).
    pub settling: u64,
    /// When the earliest of those is looked up again (ms).
    pub next_settled: Option<i64>,
}

fn waiting(tx: &Transaction<'_>, run_id: i64, now: i64) -> Result<Waiting> {
    let pending: Option<i64> = tx
        .prepare_cached("SELECT min(next_at) FROM rows WHERE run_id = ?1 AND state = 'pending'")?
        .query_row([run_id], |r| r.get(0))?;
    let (checks, next_check): (i64, Option<i64>) = tx
        .prepare_cached(
            "SELECT count(*), min(CASE WHEN checking = 0 THEN check_at END) FROM rows INDEXED BY rows_checks
             WHERE run_id = ?1 AND check_at IS NOT NULL",
        )?
        .query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (settling, next_settled): (i64, Option<i64>) = tx
        .prepare_cached(
            "SELECT count(*), min(next_at) FROM rows
             WHERE run_id = ?1 AND state = 'pending' AND next_at > ?2 AND reconcile = 1 AND uncertain_at IS NOT NULL",
        )?
        .query_row(params![run_id, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let next = match (pending, next_check) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(Waiting {
        next,
        checks: checks as u64,
        next_check,
        settling: settling as u64,
        next_settled,
    })
}

/// Due pending rows first (durably `in_flight`), then due final checks.
fn claim(tx: &Transaction<'_>, run_id: i64, now: i64, limit: usize) -> Result<Vec<Claimed>> {
    let read = |check: bool| {
        move |r: &rusqlite::Row<'_>| {
            Ok(Claimed {
                line: r.get(0)?,
                original: r.get(6)?,
                request: r.get(1)?,
                reconcile: r.get::<_, i64>(2)? != 0,
                uncertain_at: r.get(7)?,
                claimed_at: now,
                check,
                result_id: r.get(8)?,
                creates: r.get::<_, i64>(9)? as u32,
                attempts: r.get::<_, i64>(3)? as u32,
                failures: r.get::<_, i64>(4)? as u32,
                throttled: r.get::<_, i64>(5)? as u32,
            })
        }
    };
    let mut claimed = tx
        .prepare_cached(
            "SELECT r.line, d.request, r.reconcile, r.attempts, r.failures, r.throttled, d.original, r.uncertain_at, r.result_id, r.creates
             FROM rows r JOIN row_data d ON d.key = (r.run_id << 32) + r.line
             WHERE r.run_id = ?1 AND r.state = 'pending' AND r.next_at <= ?2 ORDER BY r.next_at, r.line LIMIT ?3",
        )?
        .query_map(params![run_id, now, limit as i64], read(false))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut mark = tx.prepare_cached(
        "UPDATE rows SET state = 'in_flight', updated_at = ?3 WHERE run_id = ?1 AND line = ?2",
    )?;
    for c in &claimed {
        mark.execute(params![run_id, c.line, now])?;
    }
    if claimed.len() < limit {
        let checks = tx
            .prepare_cached(
                "SELECT r.line, d.request, r.reconcile, r.attempts, r.failures, r.throttled, d.original, r.uncertain_at, r.result_id, r.creates
                 FROM rows r JOIN row_data d ON d.key = (r.run_id << 32) + r.line
                 WHERE r.run_id = ?1 AND r.check_at IS NOT NULL AND r.check_at <= ?2 AND r.checking = 0
                 ORDER BY r.check_at, r.line LIMIT ?3",
            )?
            .query_map(
                params![run_id, now, (limit - claimed.len()) as i64],
                read(true),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut hold =
            tx.prepare_cached("UPDATE rows SET checking = 1 WHERE run_id = ?1 AND line = ?2")?;
        for c in &checks {
            hold.execute(params![run_id, c.line])?;
        }
        claimed.extend(checks);
    }
    Ok(claimed)
}

fn complete(
    tx: &Transaction<'_>,
    run_id: i64,
    line: i64,
    outcome: &Outcome,
    attempts: &[Attempt],
) -> Result<()> {
    let now = now_ms();
    let sent = attempts.len() as i64;
    // Creates sent this time (each may have made a meeting).
    let creates = attempts.iter().filter(|a| a.action == "create").count() as i64;
    match outcome {
        Outcome::Succeeded {
            created,
            status,
            tracking_id,
            note,
            check_at,
        } => {
            tx.prepare_cached(
                "UPDATE rows SET state = 'succeeded', attempts = attempts + ?3, last_status = ?4, tracking_id = coalesce(?5, tracking_id),
                 error = NULL, note = ?6, result_id = ?7, result_number = ?8, result_link = ?9, reconcile = 0, updated_at = ?10,
                 result_extra = ?11, check_at = ?12, checking = 0, creates = creates + ?13 WHERE run_id = ?1 AND line = ?2",
            )?
            .execute(params![run_id, line, sent, status, tracking_id, note, created.id, created.number, created.link, now, created.extra, check_at, creates])?;
        }
        Outcome::Checked {
            note,
            next_check,
            failure,
            throttled,
        } => {
            tx.prepare_cached(
                "UPDATE rows SET attempts = attempts + ?3, note = CASE WHEN ?4 IS NULL THEN note WHEN note IS NULL THEN ?4 ELSE note || '; ' || ?4 END,
                 check_at = ?5, checking = 0, updated_at = ?6, failures = failures + ?7, throttled = throttled + ?8
                 WHERE run_id = ?1 AND line = ?2",
            )?
            .execute(params![run_id, line, sent, note, next_check, now, *failure as i64, *throttled as i64])?;
        }
        Outcome::Retry {
            next_at,
            status,
            error,
            tracking_id,
            reconcile,
            uncertain_at,
            counts_as_failure,
            throttled,
        } => {
            tx.prepare_cached(
                "UPDATE rows SET state = 'pending', attempts = attempts + ?3, failures = failures + ?4, throttled = throttled + ?5,
                 next_at = ?6, last_status = ?7, error = ?8, tracking_id = ?9, reconcile = max(reconcile, ?10), updated_at = ?11,
                 uncertain_at = coalesce(?12, uncertain_at), creates = creates + ?13 WHERE run_id = ?1 AND line = ?2",
            )?
            .execute(params![
                run_id,
                line,
                sent,
                *counts_as_failure as i64,
                *throttled as i64,
                next_at,
                status,
                error,
                tracking_id,
                *reconcile as i64,
                now,
                uncertain_at,
                creates
            ])?;
        }
        Outcome::Failed {
            status,
            error,
            tracking_id,
            reconcile,
            uncertain_at,
        } => {
            tx.prepare_cached(
                "UPDATE rows SET state = 'failed', attempts = attempts + ?3, last_status = ?4, error = ?5, tracking_id = ?6, updated_at = ?7,
                 reconcile = max(reconcile, ?8), uncertain_at = coalesce(?9, uncertain_at), creates = creates + ?10 WHERE run_id = ?1 AND line = ?2",
            )?
            .execute(params![run_id, line, sent, status, error, tracking_id, now, *reconcile as i64, uncertain_at, creates])?;
        }
        Outcome::Released => {
            tx.prepare_cached("UPDATE rows SET state = 'pending', attempts = attempts + ?3, updated_at = ?4 WHERE run_id = ?1 AND line = ?2")?
                .execute(params![run_id, line, sent, now])?;
        }
    }
    insert_attempts(tx, run_id, line, attempts)
}

fn insert_attempts(
    tx: &Transaction<'_>,
    run_id: i64,
    line: i64,
    attempts: &[Attempt],
) -> Result<()> {
    for a in attempts {
        tx.prepare_cached(
            "INSERT INTO attempts (run_id, line, action, started_at, finished_at, http_status, outcome, error, tracking_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![run_id, line, a.action, a.started_at, a.finished_at, a.http_status, a.outcome, a.error, a.tracking_id])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_rows(n: u64) -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("q.db")).unwrap();
        let opts = serde_json::json!({});
        let mut ingest = store
            .begin_ingest(&NewRun {
                kind: "meetings",
                source_path: "x.csv",
                options: &opts,
            })
            .unwrap();
        let mut rows: Vec<NewRow> = (2..2 + n)
            .map(|line| NewRow {
                line,
                original: encode_cells(&[format!("t{line}")]),
                request: None,
                error: None,
            })
            .collect();
        rows.push(NewRow {
            line: 2 + n,
            original: encode_cells(&["bad".into()]),
            request: None,
            error: Some("title is empty".into()),
        });
        ingest.add_rows(&rows).unwrap();
        let id = ingest.commit("abc", &["title".to_string()]).unwrap();
        (dir, store, id)
    }

    #[test]
    fn an_ingest_that_is_not_committed_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("q.db")).unwrap();
        drop(one_row_ingest(&mut store));
        assert!(store.runs().unwrap().is_empty());
    }

    fn journal_mode(store: &Store) -> String {
        store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap()
    }

    fn one_row_ingest(store: &mut Store) -> Ingest<'_> {
        let opts = serde_json::json!({});
        let mut ingest = store
            .begin_ingest(&NewRun {
                kind: "meetings",
                source_path: "x",
                options: &opts,
            })
            .unwrap();
        let row = NewRow {
            line: 2,
            original: encode_cells(&["t".into()]),
            request: None,
            error: None,
        };
        ingest.add_rows(&[row]).unwrap();
        ingest
    }

    #[test]
    fn an_ingest_alone_writes_without_the_wal_and_gives_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let mut store = Store::open(&path).unwrap();
        assert_eq!(journal_mode(&store), "wal");
        let ingest = one_row_ingest(&mut store);
        assert!(ingest.rollback_journal);
        let run = ingest.commit("h", &[]).unwrap();
        assert_eq!(journal_mode(&store), "wal");
        // A dropped ingest gives the WAL back too.
        drop(one_row_ingest(&mut store));
        assert_eq!(journal_mode(&store), "wal");
        let other = Store::open(&path).unwrap();
        assert_eq!(other.counts(run).unwrap().pending, 1);
        assert_eq!(other.runs().unwrap().len(), 1);
    }

    #[test]
    fn an_ingest_beside_another_connection_keeps_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let mut store = Store::open(&path).unwrap();
        let reader = Store::open(&path).unwrap();
        assert!(reader.runs().unwrap().is_empty());
        let ingest = one_row_ingest(&mut store);
        assert!(!ingest.rollback_journal);
        let run = ingest.commit("h", &[]).unwrap();
        assert_eq!(reader.counts(run).unwrap().pending, 1);
        assert_eq!(journal_mode(&store), "wal");
    }

    #[tokio::test]
    async fn claims_are_durable_and_resume_marks_them_for_lookup() {
        let (dir, store, run) = store_with_rows(3);
        assert_eq!(store.latest_run().unwrap().unwrap().source_sha256, "abc");
        let writer = store.into_writer();
        let got = writer.claim(run, now_ms(), 2).await.unwrap();
        assert_eq!(got.iter().map(|c| c.line).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(got[1].cells().unwrap(), vec!["t3".to_string()]);
        assert_eq!(got[1].request, None);
        // A second connection (another process after a crash) sees them in flight.
        let mut other = Store::open(&dir.path().join("q.db")).unwrap();
        let c = other.counts(run).unwrap();
        assert_eq!((c.pending, c.in_flight, c.invalid), (1, 2, 1));
        writer
            .complete(
                run,
                2,
                Outcome::Succeeded {
                    created: Created {
                        id: "m1".into(),
                        number: None,
                        link: None,
                        extra: None,
                    },
                    status: Some(200),
                    tracking_id: None,
                    note: None,
                    check_at: None,
                },
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(other.prepare_resume(run, false).unwrap(), 1);
        let c = other.counts(run).unwrap();
        assert_eq!((c.pending, c.in_flight, c.succeeded), (2, 0, 1));
        let again = writer.claim(run, now_ms(), 10).await.unwrap();
        assert_eq!(
            again
                .iter()
                .map(|c| (c.line, c.reconcile))
                .collect::<Vec<_>>(),
            vec![(3, true), (4, false)]
        );
        assert_eq!(other.attempts(run, 3).unwrap()[0].action, "interrupted");
    }

    #[tokio::test]
    async fn released_rows_are_pending_again_as_they_were() {
        let (dir, store, run) = store_with_rows(3);
        let writer = store.into_writer();
        let first = writer.claim(run, now_ms(), 3).await.unwrap();
        assert_eq!(first.len(), 3);
        // A crash: line 2 must be looked up before any resend.
        writer.release(run, vec![2, 3, 4]).await.unwrap();
        let mut other = Store::open(&dir.path().join("q.db")).unwrap();
        other
            .conn
            .execute("UPDATE rows SET reconcile = 1 WHERE line = 2", [])
            .unwrap();
        let again = writer.claim(run, now_ms(), 3).await.unwrap();
        writer.release(run, vec![3]).await.unwrap();
        assert_eq!(
            again
                .iter()
                .map(|c| (c.line, c.reconcile))
                .collect::<Vec<_>>(),
            vec![(2, true), (3, false), (4, false)]
        );
        let c = other.counts(run).unwrap();
        assert_eq!((c.pending, c.in_flight), (1, 2));
        // Released rows have no attempt: nothing was sent.
        assert!(other.attempts(run, 3).unwrap().is_empty());
        assert_eq!(other.prepare_resume(run, false).unwrap(), 2);
    }

    #[tokio::test]
    async fn a_result_nobody_waits_for_is_committed_on_its_own() {
        let (dir, store, run) = store_with_rows(1);
        let writer = store.into_writer();
        let claimed = writer.claim(run, now_ms(), 1).await.unwrap();
        writer
            .record(
                run,
                claimed[0].line,
                Outcome::Succeeded {
                    created: Created {
                        id: "m".into(),
                        ..Created::default()
                    },
                    status: Some(200),
                    tracking_id: None,
                    note: None,
                    check_at: None,
                },
                vec![],
            )
            .unwrap();
        // Nobody asks anything more: the record is committed all the same.
        let other = Store::open(&dir.path().join("q.db")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while other.counts(run).unwrap().succeeded == 0 {
            assert!(std::time::Instant::now() < deadline, "never committed");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop(writer);
    }

    #[tokio::test]
    async fn recorded_results_are_committed_before_anything_asked_later() {
        let (_dir, store, run) = store_with_rows(3);
        let writer = store.into_writer();
        let claimed = writer.claim(run, now_ms(), 3).await.unwrap();
        for c in &claimed {
            let created = Created {
                id: format!("m{}", c.line),
                number: None,
                link: None,
                extra: None,
            };
            let outcome = Outcome::Succeeded {
                created,
                status: Some(200),
                tracking_id: None,
                note: None,
                check_at: None,
            };
            writer.record(run, c.line, outcome, vec![]).unwrap();
        }
        // No await on the records; the next question sees all of them.
        let c = writer.counts(run).await.unwrap();
        assert_eq!((c.succeeded, c.in_flight), (3, 0));
        assert!(writer.failure().is_none());
    }

    #[tokio::test]
    async fn retries_wait_until_due() {
        let (_dir, store, run) = store_with_rows(1);
        let writer = store.into_writer();
        let now = now_ms();
        let c = writer.claim(run, now, 5).await.unwrap();
        assert_eq!(c.len(), 1);
        let retry = Outcome::Retry {
            next_at: now + 60_000,
            status: Some(503),
            error: "busy".into(),
            tracking_id: None,
            reconcile: true,
            uncertain_at: Some(now),
            counts_as_failure: true,
            throttled: false,
        };
        writer.complete(run, 2, retry, vec![]).await.unwrap();
        assert!(writer.claim(run, now, 5).await.unwrap().is_empty());
        let waiting = writer.next_due(run).await.unwrap();
        assert_eq!(waiting.next, Some(now + 60_000));
        // Its earlier create may still land: it waits for Webex to finish.
        assert_eq!(
            (waiting.settling, waiting.next_settled),
            (1, Some(now + 60_000))
        );
        let later = writer.claim(run, now + 60_000, 5).await.unwrap();
        assert_eq!((later[0].failures, later[0].reconcile), (1, true));
    }

    #[tokio::test]
    async fn an_uncertain_create_keeps_its_send_time_and_a_stop_counts_from_the_claim() {
        let (dir, store, run) = store_with_rows(2);
        let writer = store.into_writer();
        let claimed_at = now_ms() - 10_000;
        let c = writer.claim(run, claimed_at, 2).await.unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].uncertain_at, None);
        // Line 2: a create timed out; it was sent at `sent`.
        let sent = claimed_at + 100;
        let retry = Outcome::Retry {
            next_at: 0,
            status: None,
            error: "timeout".into(),
            tracking_id: None,
            reconcile: true,
            uncertain_at: Some(sent),
            counts_as_failure: true,
            throttled: false,
        };
        let create = Attempt {
            action: "create",
            started_at: sent,
            finished_at: sent + 1_000,
            http_status: None,
            outcome: "retry",
            error: Some("timeout".into()),
            tracking_id: None,
        };
        writer.complete(run, 2, retry, vec![create]).await.unwrap();
        // Line 3 stays in flight, stamped later (its create left late).
        writer.stamp(run, 3, claimed_at + 3_000).await.unwrap();
        let again = writer.claim(run, now_ms(), 1).await.unwrap();
        assert_eq!(
            (again[0].line, again[0].uncertain_at, again[0].creates),
            (2, Some(sent), 1)
        );
        drop(writer);
        // The process stops with both in flight.
        let mut store = Store::open(&dir.path().join("q.db")).unwrap();
        assert_eq!(store.prepare_resume(run, false).unwrap(), 2);
        let writer = store.into_writer();
        let mut rows = writer.claim(run, now_ms(), 5).await.unwrap();
        rows.sort_by_key(|c| c.line);
        let uncertain: Vec<_> = rows
            .iter()
            .map(|c| (c.line, c.reconcile, c.uncertain_at))
            .collect();
        assert_eq!(
            uncertain,
            vec![
                // The later of its known send and its claim + slack.
                (2, true, Some(rows[0].uncertain_at.unwrap().max(sent))),
                (3, true, Some(claimed_at + 3_000 + SEND_SLACK_MS)),
            ]
        );
        assert!(rows[0].uncertain_at.unwrap() >= sent + SEND_SLACK_MS);
        // A stop in flight counts as a create that may have been sent.
        let creates: Vec<_> = rows.iter().map(|c| c.creates).collect();
        assert_eq!(creates, vec![2, 1]);
    }

    #[tokio::test]
    async fn a_final_check_is_held_while_under_way_and_ends_the_run_only_when_done() {
        let (dir, store, run) = store_with_rows(1);
        let writer = store.into_writer();
        let now = now_ms();
        writer.claim(run, now, 1).await.unwrap();
        let succeeded = Outcome::Succeeded {
            created: Created {
                id: "m2".into(),
                ..Created::default()
            },
            status: Some(200),
            tracking_id: None,
            note: None,
            check_at: Some(now + 60_000),
        };
        writer.complete(run, 2, succeeded, vec![]).await.unwrap();
        let c = writer.counts(run).await.unwrap();
        assert_eq!((c.succeeded, c.checks, c.done(), c.total()), (1, 1, 2, 2));
        let waiting = writer.next_due(run).await.unwrap();
        assert_eq!(
            waiting,
            Waiting {
                next: Some(now + 60_000),
                checks: 1,
                next_check: Some(now + 60_000),
                ..Waiting::default()
            }
        );
        assert!(writer.claim(run, now, 5).await.unwrap().is_empty());
        let check = writer.claim(run, now + 60_000, 5).await.unwrap();
        assert_eq!(check.len(), 1);
        assert!(check[0].check);
        assert_eq!(check[0].result_id.as_deref(), Some("m2"));
        // Held: not handed out twice, and not "due" while a worker has it.
        assert!(writer.claim(run, now + 60_000, 5).await.unwrap().is_empty());
        assert_eq!(writer.next_due(run).await.unwrap().next, None);
        assert_eq!(writer.next_due(run).await.unwrap().checks, 1);
        // Given back (the run stopped before it started): due again.
        writer.release(run, vec![2]).await.unwrap();
        let check = writer.claim(run, now + 60_000, 5).await.unwrap();
        assert_eq!(check.len(), 1);
        // A stop while it is under way: the resume makes it again.
        drop(writer);
        let mut store = Store::open(&dir.path().join("q.db")).unwrap();
        store.prepare_resume(run, false).unwrap();
        assert_eq!(store.counts(run).unwrap().succeeded, 1);
        let writer = store.into_writer();
        let check = writer.claim(run, now + 60_000, 5).await.unwrap();
        assert_eq!(check.len(), 1);
        let done = Outcome::Checked {
            note: Some("removed 1 duplicate".into()),
            next_check: None,
            failure: false,
            throttled: false,
        };
        writer.complete(run, 2, done, vec![]).await.unwrap();
        let c = writer.counts(run).await.unwrap();
        assert_eq!((c.succeeded, c.checks), (1, 0));
        assert_eq!(writer.next_due(run).await.unwrap(), Waiting::default());
        drop(writer);
        let store = Store::open(&dir.path().join("q.db")).unwrap();
        let mut notes = Vec::new();
        store
            .for_each_row(run, false, |r| {
                notes.push((r.state, r.result_id, r.note));
                Ok(())
            })
            .unwrap();
        assert_eq!(
            notes,
            vec![
                (
                    "succeeded".to_string(),
                    Some("m2".to_string()),
                    Some("removed 1 duplicate".to_string())
                ),
                ("invalid".to_string(), None, None)
            ]
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_database_and_its_wal_are_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let mut store = Store::open(&path).unwrap();
        let run = one_row_ingest(&mut store).commit("h", &[]).unwrap();
        let writer = store.into_writer();
        // A write in WAL mode: the WAL and its index exist now.
        assert_eq!(writer.claim(run, now_ms(), 1).await.unwrap().len(), 1);
        let mode = |name: &str| {
            std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("q.db"), 0o600);
        assert_eq!(mode("q.db-wal"), 0o600);
        assert_eq!(mode("q.db-shm"), 0o600);
        drop(writer);
    }

    #[tokio::test]
    async fn a_database_of_the_first_schema_is_migrated_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.execute_batch(
                "INSERT INTO runs (uid, kind, source_path, source_sha256, options, header, state, created_at, updated_at)
                 VALUES ('u', 'meetings', 'x.csv', 'h', '{}', '[\"title\"]', 'running', 't', 't');
                 INSERT INTO rows (run_id, line, state, updated_at) VALUES (1, 2, 'in_flight', 5);
                 INSERT INTO attempts (run_id, line, action, started_at, finished_at, outcome)
                 VALUES (1, 2, 'create', 1, 2, 'retry'), (1, 2, 'lookup', 3, 4, 'not_found');
                 INSERT INTO row_data (key, request, original) VALUES ((1 << 32) + 2, NULL, '[\"t\"]');",
            )
            .unwrap();
        }
        let mut store = Store::open(&path).unwrap();
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let migrated_at = now_ms() - 60_000;
        assert_eq!(store.prepare_resume(1, false).unwrap(), 1);
        assert_eq!(store.counts(1).unwrap().pending, 1);
        let writer = store.into_writer();
        let row = &writer.claim(1, now_ms(), 1).await.unwrap()[0];
        // The old create and the stop in flight; and the window counts from
        // the migration (the old version did not stamp late sends).
        assert_eq!(row.creates, 2);
        assert!(row.uncertain_at.unwrap() >= migrated_at + SEND_SLACK_MS);
        drop(writer);
        // Opening again changes nothing.
        Store::open(&path).unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let Err(e) = Store::open(&path) else {
            panic!("a newer schema is refused")
        };
        assert!(e.to_string().contains("newer webex-bulk"), "{e}");
    }
}

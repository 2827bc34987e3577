//! The schema, its version (`PRAGMA user_version`) and the migrations
//! that bring a database of any earlier version up to it.

use rusqlite::Connection;

use super::*;

/// The schema as the first release wrote it (`user_version` 0 or 1). New
/// databases are created with it and then migrated like old ones, so every
/// database goes through the same steps.
pub(super) const SCHEMA_V1: &str = r#"
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

/// Brings a database of any earlier version to [`SCHEMA_VERSION`], in one
/// transaction; refuses one written by a newer build.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction()?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Unusable(format!(
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

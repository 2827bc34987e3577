//! Queueing a file: one transaction for the run and all its rows.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::*;

impl Store {
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
    pub(super) rollback_journal: bool,
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

//! Reading runs and rows (status, report, resume, verify).

use rusqlite::{params, OptionalExtension};

use super::*;

impl Store {
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

    /// The line of the `n`-th pending row of a run (0-based, in line order),
    /// if it has that many: where `run --limit` stops.
    pub fn nth_pending_line(&self, run_id: i64, n: u64) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT line FROM rows WHERE run_id = ?1 AND state = 'pending' ORDER BY line LIMIT 1 OFFSET ?2",
                params![run_id, n as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(Into::into)
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
}

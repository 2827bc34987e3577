//! The per-row report: the file's own columns, then what happened (the
//! shared columns, the kind's, and the note). Names no kind.

use std::collections::HashSet;
use std::io::Write;

use crate::csvin::normalize_header;
use crate::kinds::Kind;
use crate::store::{ReportRow, RunInfo, Store, StoreError};

/// The columns the report adds after the file's own, before the kind's
/// ([`Kind::result_columns`]); `note` comes last.
pub const SHARED_COLUMNS: [&str; 6] = [
    "line",
    "status",
    "attempts",
    "http_status",
    "error",
    "tracking_id",
];

/// Every column the report adds after the file's own, for a run of `kind`.
pub fn result_columns(kind: &dyn Kind) -> Vec<&'static str> {
    let mut columns = SHARED_COLUMNS.to_vec();
    columns.extend(kind.result_columns());
    columns.push("note");
    columns
}

fn result_cells(kind: &dyn Kind, row: &ReportRow) -> Vec<String> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut cells = vec![
        row.line.to_string(),
        row.state.clone(),
        row.attempts.to_string(),
        row.http_status.map(|s| s.to_string()).unwrap_or_default(),
        text(&row.error),
        text(&row.tracking_id),
    ];
    cells.extend(kind.result_cells(row));
    cells.push(text(&row.note));
    cells
}

/// The positions of the file's own columns in `header`: those that are not
/// `ours` (a report or verify output fed back in would repeat our columns).
pub fn own_columns(header: &[String], ours: &[&str]) -> Vec<usize> {
    let ours: HashSet<String> = ours.iter().map(|c| normalize_header(c)).collect();
    (0..header.len())
        .filter(|i| !ours.contains(&normalize_header(&header[*i])))
        .collect()
}

/// Writes the report of `run` (of `kind`) as CSV. With `failed_only`, only
/// failed and invalid rows: correct them in a spreadsheet and run the file
/// again (the result columns are ignored on input). Returns how many rows
/// were written.
pub fn write_report(
    store: &Store,
    run: &RunInfo,
    kind: &dyn Kind,
    failed_only: bool,
    out: impl Write,
) -> Result<u64, StoreError> {
    let columns = result_columns(kind);
    let keep = own_columns(&run.header, &columns);
    let mut w = csv::Writer::from_writer(out);
    let io = |e: csv::Error| StoreError::Output(format!("cannot write the report: {e}"));
    let mut head: Vec<&str> = keep.iter().map(|i| run.header[*i].as_str()).collect();
    head.extend(&columns);
    w.write_record(&head).map_err(io)?;
    let mut n = 0;
    store.for_each_row(run.id, failed_only, |row| {
        let mut rec: Vec<String> = keep
            .iter()
            .map(|i| row.original.get(*i).cloned().unwrap_or_default())
            .collect();
        rec.extend(result_cells(kind, &row));
        n += 1;
        w.write_record(&rec).map_err(std::io::Error::other)
    })?;
    w.flush()
        .map_err(|e| StoreError::Output(format!("cannot write the report: {e}")))?;
    Ok(n)
}

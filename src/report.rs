//! The per-row report: the file's own columns, then what happened.

use std::collections::HashSet;
use std::io::Write;

use crate::csvin::normalize_header;
use crate::store::{RunInfo, Store, StoreError};

/// The columns the report adds after the file's own.
pub const RESULT_COLUMNS: [&str; 9] = [
    "line",
    "status",
    "attempts",
    "http_status",
    "error",
    "tracking_id",
    "meeting_id",
    "meeting_number",
    "web_link",
];

/// Writes the report of `run` as CSV. With `failed_only`, only failed and
/// invalid rows: correct them in a spreadsheet and run the file again (the
/// result columns are ignored on input). Returns how many rows were written.
pub fn write_report(
    store: &Store,
    run: &RunInfo,
    failed_only: bool,
    out: impl Write,
) -> Result<u64, StoreError> {
    // A report fed back in and reported again would repeat our columns.
    let ours: HashSet<String> = RESULT_COLUMNS.iter().map(|c| normalize_header(c)).collect();
    let keep: Vec<usize> = (0..run.header.len())
        .filter(|i| !ours.contains(&normalize_header(&run.header[*i])))
        .collect();
    let mut w = csv::Writer::from_writer(out);
    let io = |e: csv::Error| StoreError::Corrupt(format!("cannot write the report: {e}"));
    let mut head: Vec<&str> = keep.iter().map(|i| run.header[*i].as_str()).collect();
    head.extend(RESULT_COLUMNS);
    w.write_record(&head).map_err(io)?;
    let mut n = 0;
    store.for_each_row(run.id, failed_only, |row| {
        let mut rec: Vec<String> = keep
            .iter()
            .map(|i| row.original.get(*i).cloned().unwrap_or_default())
            .collect();
        rec.push(row.line.to_string());
        rec.push(row.state.clone());
        rec.push(row.attempts.to_string());
        rec.push(row.http_status.map(|s| s.to_string()).unwrap_or_default());
        rec.push(row.error.clone().unwrap_or_default());
        rec.push(row.tracking_id.clone().unwrap_or_default());
        rec.push(row.result_id.clone().unwrap_or_default());
        rec.push(row.result_number.clone().unwrap_or_default());
        rec.push(row.result_link.clone().unwrap_or_default());
        n += 1;
        w.write_record(&rec).map_err(std::io::Error::other)
    })?;
    w.flush()
        .map_err(|e| StoreError::Corrupt(format!("cannot write the report: {e}")))?;
    Ok(n)
}

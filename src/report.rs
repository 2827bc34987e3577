//! The per-row report: the file's own columns, then what happened.

use std::collections::HashSet;
use std::io::Write;

use crate::csvin::normalize_header;
use crate::store::{ReportRow, RunInfo, Store, StoreError};

/// The columns the report adds after the file's own, for a meetings run.
pub const RESULT_COLUMNS: [&str; 10] = [
    "line",
    "status",
    "attempts",
    "http_status",
    "error",
    "tracking_id",
    "meeting_id",
    "meeting_number",
    "web_link",
    "note",
];

/// The same for a users run.
pub const USER_RESULT_COLUMNS: [&str; 11] = [
    "line",
    "status",
    "attempts",
    "http_status",
    "error",
    "tracking_id",
    "person_id",
    "action",
    "licenses_before",
    "licenses_after",
    "note",
];

/// The result columns of a run of `kind`.
pub fn result_columns(kind: &str) -> &'static [&'static str] {
    match kind {
        "users" => &USER_RESULT_COLUMNS,
        _ => &RESULT_COLUMNS,
    }
}

/// A users row's licenses before and after, each as `A; B`.
fn licenses(extra: Option<&str>) -> (String, String) {
    let v: serde_json::Value = extra
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or_default();
    let list = |key: &str| {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    };
    (list("before"), list("after"))
}

fn result_cells(kind: &str, row: &ReportRow) -> Vec<String> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut cells = vec![
        row.line.to_string(),
        row.state.clone(),
        row.attempts.to_string(),
        row.http_status.map(|s| s.to_string()).unwrap_or_default(),
        text(&row.error),
        text(&row.tracking_id),
        text(&row.result_id),
        text(&row.result_number),
    ];
    if kind == "users" {
        let (before, after) = licenses(row.result_extra.as_deref());
        cells.extend([before, after]);
    } else {
        cells.push(text(&row.result_link));
    }
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

/// Writes the report of `run` as CSV. With `failed_only`, only failed and
/// invalid rows: correct them in a spreadsheet and run the file again (the
/// result columns are ignored on input). Returns how many rows were written.
pub fn write_report(
    store: &Store,
    run: &RunInfo,
    failed_only: bool,
    out: impl Write,
) -> Result<u64, StoreError> {
    let columns = result_columns(&run.kind);
    let keep = own_columns(&run.header, columns);
    let mut w = csv::Writer::from_writer(out);
    let io = |e: csv::Error| StoreError::Corrupt(format!("cannot write the report: {e}"));
    let mut head: Vec<&str> = keep.iter().map(|i| run.header[*i].as_str()).collect();
    head.extend(columns);
    w.write_record(&head).map_err(io)?;
    let mut n = 0;
    store.for_each_row(run.id, failed_only, |row| {
        let mut rec: Vec<String> = keep
            .iter()
            .map(|i| row.original.get(*i).cloned().unwrap_or_default())
            .collect();
        rec.extend(result_cells(&run.kind, &row));
        n += 1;
        w.write_record(&rec).map_err(std::io::Error::other)
    })?;
    w.flush()
        .map_err(|e| StoreError::Corrupt(format!("cannot write the report: {e}")))?;
    Ok(n)
}

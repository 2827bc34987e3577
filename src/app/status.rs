//! `webex-bulk status` and `webex-bulk report`: read the queue, send nothing.

use crate::cli::{ReportArgs, StatusArgs};
use crate::kinds::{self};
use crate::store::{RunInfo, RunState};

use super::*;

pub(super) fn status(args: &StatusArgs) -> Result<Exit, Failure> {
    if !args.db.db.exists() {
        return Err(fail(
            Exit::Usage,
            format!(
                "no database at {} (runs create it; pass --db to look elsewhere)",
                args.db.db.display()
            ),
        ));
    }
    let store = open_store(&args.db)?;
    let mut list = Vec::new();
    for run in store.runs()? {
        let counts = store.counts(run.id)?;
        list.push((run, counts));
    }
    if args.json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|(r, c)| serde_json::json!({"run": r, "counts": c, "total": c.total()}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(Exit::Ok);
    }
    if list.is_empty() {
        println!("no runs in {}", args.db.db.display());
        return Ok(Exit::Ok);
    }
    println!(
        "{:>4}  {:<9} {:<12} {:>6} {:>8} {:>9} {:>9} {:>7} {:>8}  {:<20}  file",
        "run",
        "kind",
        "state",
        "total",
        "pending",
        "in_flight",
        "succeeded",
        "failed",
        "invalid",
        "created"
    );
    for (r, c) in &list {
        println!(
            "{:>4}  {:<9} {:<12} {:>6} {:>8} {:>9} {:>9} {:>7} {:>8}  {:<20}  {}",
            r.id,
            r.kind,
            state_label(r),
            c.total(),
            c.pending,
            c.in_flight,
            c.succeeded,
            c.failed,
            c.invalid,
            r.created_at,
            r.source_path
        );
    }
    for (r, c) in &list {
        if c.checks > 0 {
            println!(
                "run {}: {} succeeded rows still wait for their final check for duplicates; `webex-bulk run --resume {}` finishes it",
                r.id, c.checks, r.id
            );
        }
    }
    Ok(Exit::Ok)
}

pub(super) fn state_label(r: &RunInfo) -> String {
    match (r.state, r.exit_code) {
        (RunState::Finished, Some(code)) => format!("finished({code})"),
        (state, _) => serde_json::to_value(state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    }
}

pub(super) fn report(args: &ReportArgs) -> Result<Exit, Failure> {
    if !args.db.db.exists() {
        return Err(fail(
            Exit::Usage,
            format!("no database at {}", args.db.db.display()),
        ));
    }
    let store = open_store(&args.db)?;
    let run = match args.run {
        Some(id) => store.run(id)?,
        None => store.latest_run()?,
    }
    .ok_or_else(|| fail(Exit::Usage, "no such run (see `webex-bulk status`)"))?;
    let kind =
        kinds::find(&run.kind).map_err(|e| fail(Exit::Usage, format!("run {}: {e}", run.id)))?;
    let written = match &args.output {
        Some(path) => {
            let file = match std::fs::File::create(path) {
                Ok(f) => f,
                Err(e) => {
                    return Err(fail(
                        Exit::Usage,
                        format!("cannot create {}: {e}", path.display()),
                    ))
                }
            };
            crate::report::write_report(
                &store,
                &run,
                kind,
                args.failed,
                std::io::BufWriter::new(file),
            )
        }
        None => {
            crate::report::write_report(&store, &run, kind, args.failed, std::io::stdout().lock())
        }
    };
    let n = written?;
    if let Some(path) = &args.output {
        eprintln!("wrote {n} rows of run {} to {}", run.id, path.display());
    }
    Ok(Exit::Ok)
}

//! `webex-bulk run`: queue a file (or pick a run to continue) and carry it
//! out; [`execute`] is the one entry point, used by `run` and `demo`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::{self, EnvCredentials};
use crate::cli::RunArgs;
use crate::csvin::Encoding;
use crate::engine::{self, Settings, Shared, Stop};
use crate::ingest::{self, IngestOptions};
use crate::kinds::{self, Org};
use crate::progress::{self, Mode, Progress, Tally};
use crate::rate::{parse_rate, Pacing, Rate};
use crate::store::{Counts, RunState};
use crate::webex::check_base_url;

use super::*;

/// Everything a run needs, whether it came from the command line or the demo.
pub struct RunPlan {
    pub db: PathBuf,
    /// A new file to queue, or a run to continue.
    pub source: Source,
    pub base_url: Option<String>,
    pub concurrency: Option<u16>,
    pub rate: Option<String>,
    pub max_attempts: Option<u32>,
    pub timeout: Duration,
    /// The settle window (see [`crate::settle`]); `None`: the run's own, else the default.
    pub settle: Option<Duration>,
    pub progress: Mode,
    /// Where refreshed tokens are kept.
    pub home: PathBuf,
    pub profile: String,
    pub env: EnvCredentials,
    /// `--api`, `--xml-url`, `--xml-rate-pause`.
    pub api: crate::cli::ApiArgs,
}

/// What a run works on.
pub enum Source {
    File {
        /// The kind's name (see [`crate::kinds::find`]).
        kind: String,
        path: PathBuf,
        /// `--job`: the file is read through this recipe.
        recipe: Option<Box<crate::recipe::Recipe>>,
        /// `--date-order`, for the recipe's date columns.
        date_order: Option<crate::dates::DateOrder>,
        /// `--only-lines`: the rows the run takes.
        only_lines: Option<crate::ingest::Lines>,
        /// `--sheet`: which sheet of a workbook.
        sheet: Option<String>,
        encoding: Encoding,
        /// `None`: sniffed from the header line.
        delimiter: Option<u8>,
        /// Carry out only this many valid rows, then stop (resumable).
        limit: Option<u64>,
        strict: bool,
        max_rows: Option<u64>,
        new_run: bool,
    },
    Resume {
        run: Option<i64>,
        retry_failed: bool,
    },
}

pub(super) async fn run(args: RunArgs) -> Result<Exit, Failure> {
    if args.dry_run {
        // Everything a run checks before it queues, and nothing more.
        return super::validate::validate(crate::cli::ValidateArgs {
            kind: args.kind,
            file: args.file,
            recipe: args.recipe,
            encoding: args.encoding,
            delimiter: args.delimiter,
            base_url: args.base_url,
            profile: args.profile,
            api: args.api,
            only_lines: args.only_lines,
            sheet: args.sheet,
        })
        .await;
    }
    let source = match &args.resume {
        Some(which) => {
            let run = if which == "latest" {
                None
            } else {
                match which.parse::<i64>() {
                    Ok(id) => Some(id),
                    Err(_) => {
                        return Err(fail(
                            Exit::Usage,
                            format!("--resume takes a run id (a number), not `{which}`"),
                        ))
                    }
                }
            };
            Source::Resume {
                run,
                retry_failed: args.retry_failed,
            }
        }
        None => {
            let target = target(args.kind.clone(), args.file.clone(), &args.recipe)?;
            Source::File {
                kind: target.kind,
                path: target.file,
                recipe: target.recipe,
                date_order: target.date_order,
                only_lines: args.only_lines.clone(),
                sheet: args.sheet.clone(),
                encoding: args.encoding,
                delimiter: args.delimiter,
                limit: args.limit,
                strict: args.strict,
                max_rows: args.max_rows,
                new_run: args.new_run,
            }
        }
    };
    let plan = RunPlan {
        db: args.db.db,
        source,
        base_url: args.base_url,
        concurrency: args.concurrency,
        rate: args.rate,
        max_attempts: args.max_attempts,
        timeout: Duration::from_secs(args.timeout.max(1)),
        settle: args.settle.map(Duration::from_secs),
        progress: args.progress,
        home: auth::home_dir(),
        profile: args.profile,
        env: EnvCredentials::from_env(),
        api: args.api,
    };
    let (ctrl_c, _guard) = ctrl_c_shutdown();
    Ok(execute(plan, ctrl_c).await?.exit)
}

/// Resolves when Ctrl-C is pressed; a second Ctrl-C exits at once (rows in
/// flight are looked up on resume, so nothing is lost or doubled).
pub fn ctrl_c_shutdown() -> (
    impl std::future::Future<Output = ()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!("\nwebex-bulk: stopping: letting requests in flight finish (Ctrl-C again to quit at once)");
        let _ = tx.send(());
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("webex-bulk: quitting now; `webex-bulk run --resume` continues (rows in flight are looked up first)");
            std::process::exit(Exit::Interrupted.code().into());
        }
    });
    (
        async move {
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        },
        handle,
    )
}

/// How a run ended.
pub struct RunResult {
    pub exit: Exit,
    pub run_id: i64,
    pub counts: Counts,
}

/// Queues (or resumes) and carries out a run; prints the summary.
pub async fn execute(
    plan: RunPlan,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RunResult, Failure> {
    let mut store = open_database(&plan.db)?;
    let _lock = lock_database(&plan.db)?;

    // The run: a new one from a file, or one to continue.
    let stored_options;
    let (client, tokens);
    // The run's kind, made ready (it may have asked the org).
    let job;
    // `--limit N`: the line of the N-th valid row; later rows wait.
    let mut last_line = i64::MAX;
    let run_id = match &plan.source {
        Source::File {
            kind,
            path,
            recipe,
            date_order,
            only_lines,
            sheet,
            encoding,
            delimiter,
            limit,
            strict,
            max_rows,
            new_run,
        } => {
            // Everything is checked before anything is queued.
            let kind = kinds::find(kind).map_err(|e| fail(Exit::Usage, e))?;
            // A recipe's rate, concurrency and attempts are the run's
            // defaults (the command line's flags win).
            let recipe_defaults = match recipe {
                Some(r) => serde_json::json!({
                    "rate": r.rate, "concurrency": r.concurrency, "max_attempts": r.max_attempts,
                }),
                None => serde_json::Value::Null,
            };
            let options = Effective::of(&plan, &recipe_defaults);
            let (base, _) = options.check()?;
            let kind_options = options.api.kind_options()?;
            (client, tokens) = connect(&plan, base)?;
            let org = Org::new(client.clone(), tokens.clone());
            job = through_recipe(
                prepare(kind, Some(&org), &kind_options).await?,
                recipe.clone(),
                *date_order,
            );
            let mut options = options.to_json();
            // The resolved recipe goes with the run: a resume never rereads it.
            let recipe_json = recipe
                .as_ref()
                .map(|r| serde_json::to_value(r).expect("a recipe serializes"));
            if let Some(r) = &recipe_json {
                options["recipe"] = r.clone();
            }
            if let Some(order) = date_order {
                options["date_order"] = serde_json::to_value(order).expect("an order serializes");
            }
            let opts = IngestOptions {
                encoding: *encoding,
                delimiter: *delimiter,
                strict: *strict,
                max_rows: *max_rows,
                new_run: *new_run,
                options: &options,
                kind: kind.name(),
                job: job.as_ref(),
                now: chrono::Utc::now(),
                recipe: recipe_json.as_ref().map(|r| r.to_string()),
                only_lines: only_lines.as_ref(),
                sheet: sheet.as_deref(),
            };
            const SHOWN: usize = 50;
            let mut shown = 0usize;
            let mut hidden = 0u64;
            let (run_id, scan) = ingest::ingest(&mut store, path, &opts, |p| {
                if shown < SHOWN {
                    shown += 1;
                    print_problem(path, p);
                } else {
                    hidden += 1;
                }
            })
            .map_err(|e| input_error(path, e))?;
            if hidden > 0 {
                eprintln!("... and {hidden} more problems (`webex-bulk report --failed` lists every invalid row with its reason)");
            }
            eprintln!(
                "queued run {run_id}: {} rows from {} ({} valid, {} invalid)",
                scan.rows,
                path.display(),
                scan.valid,
                scan.invalid
            );
            if let Some(lines) = only_lines {
                eprintln!(
                    "--only-lines {}: the file's other {} rows are not part of run {run_id}",
                    lines.key().replace(',', ", "),
                    scan.skipped
                );
            }
            if let Some(n) = limit {
                if let Some(line) = store.nth_pending_line(run_id, n - 1).map_err(storage)? {
                    last_line = line;
                    eprintln!("--limit {n}: carrying out the rows up to line {line}; `webex-bulk run --resume {run_id}` does the rest");
                }
            }
            stored_options = options;
            run_id
        }
        Source::Resume { run, retry_failed } => {
            let info = match run {
                Some(id) => store.run(*id),
                None => store.latest_run(),
            }
            .map_err(storage)?
            .ok_or_else(|| {
                fail(
                    Exit::Usage,
                    format!(
                        "no run to resume in {} (see `webex-bulk status`)",
                        plan.db.display()
                    ),
                )
            })?;
            let counts = store.counts(info.id).map_err(storage)?;
            if info.state == RunState::Finished && !(*retry_failed && counts.failed > 0) {
                let exit = info
                    .exit_code
                    .and_then(|code| Exit::from_code(code.into()))
                    .unwrap_or_else(|| Exit::of_counts(&counts));
                eprintln!(
                    "run {} already finished: {} succeeded, {} failed, {} invalid; nothing to send",
                    info.id, counts.succeeded, counts.failed, counts.invalid
                );
                return Ok(RunResult {
                    exit,
                    run_id: info.id,
                    counts,
                });
            }
            let kind = kinds::find(&info.kind)
                .map_err(|e| fail(Exit::Usage, format!("run {}: {e}", info.id)))?;
            let resumed = Effective::of(&plan, &info.options);
            let (base, _) = resumed.check()?;
            let kind_options = resumed.api.kind_options()?;
            // The recipe (and date order) the run was queued with, as stored.
            let (stored_recipe, stored_order) = match stored_recipe(info.id, &info.options)? {
                Some((recipe, order)) => (Some(Box::new(recipe)), order),
                None => (None, None),
            };
            (client, tokens) = connect(&plan, base)?;
            let org = Org::new(client.clone(), tokens.clone());
            job = through_recipe(
                prepare(kind, Some(&org), &kind_options).await?,
                stored_recipe,
                stored_order,
            );
            let reopened = store
                .prepare_resume(info.id, *retry_failed)
                .map_err(storage)?;
            eprintln!(
                "resuming run {} ({}): {} rows left{}",
                info.id,
                info.source_path,
                counts.pending + counts.in_flight + if *retry_failed { counts.failed } else { 0 },
                if reopened > 0 {
                    format!(", {reopened} of them were in flight and will be looked up before any resend")
                } else {
                    String::new()
                }
            );
            if counts.checks > 0 {
                eprintln!(
                    "{} succeeded rows still wait for their final check for duplicates",
                    counts.checks
                );
            }
            stored_options = info.options.clone();
            info.id
        }
    };

    let options = Effective::of(&plan, &stored_options);
    let (_, rate) = options.check()?;
    if options.settle < plan.timeout {
        eprintln!(
            "webex-bulk: warning: the settle window ({} s) is shorter than --timeout ({} s): a create that timed out may still be under way when its window ends, and be sent again; give --settle at least twice --timeout",
            options.settle.as_secs(),
            plan.timeout.as_secs()
        );
    }
    let settings = Settings {
        concurrency: options.concurrency,
        max_attempts: options.max_attempts,
        settle: options.settle,
        last_line,
        ..Settings::default()
    };

    let info = store
        .run(run_id)
        .map_err(storage)?
        .ok_or_else(|| fail(Exit::Usage, format!("run {run_id} is gone")))?;
    let runner = job
        .runner(&info.header, &info.uid)
        .map_err(|e| fail(Exit::Usage, format!("run {run_id}: {e}")))?;
    let counts = store.counts(run_id).map_err(storage)?;
    let tally = Arc::new(Tally::default());
    tally
        .succeeded
        .store(counts.succeeded, std::sync::atomic::Ordering::Relaxed);
    tally.failed.store(
        counts.failed + counts.invalid,
        std::sync::atomic::Ordering::Relaxed,
    );
    let pacing = Arc::new(Pacing::new(rate, options.concurrency));
    let writer = store.into_writer();
    let shared = Arc::new(Shared {
        run_id,
        runner,
        writer: writer.clone(),
        client,
        tokens,
        pacing: pacing.clone(),
        tally: tally.clone(),
        settings,
        auth_stop: Default::default(),
    });

    let started = Instant::now();
    let display = Progress::new(plan.progress, counts.total(), counts.done(), tally, pacing);
    let ticker = {
        let interval = display.interval();
        let display = Arc::new(display);
        let d = display.clone();
        let handle = tokio::spawn(async move {
            if !d.visible() {
                return;
            }
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                d.tick();
            }
        });
        (display, handle)
    };
    let stop = engine::run(shared.clone(), shutdown).await;
    ticker.1.abort();
    ticker.0.finish();
    let stop = stop.map_err(|e| {
        storage(format!(
            "run {run_id} stopped: {e}; what was recorded is kept: once the cause is fixed, `webex-bulk run --resume {run_id}` continues"
        ))
    })?;
    let counts = writer.counts(run_id).await.map_err(storage)?;
    let elapsed = progress::humanize(started.elapsed());
    // A `--limit` run whose first rows are done: the rest waits for --resume.
    let limited =
        last_line != i64::MAX && stop == Stop::Finished && counts.pending + counts.in_flight > 0;
    let (state, exit, message) = match &stop {
        Stop::Finished if limited => (
            RunState::Interrupted,
            Exit::Ok,
            Some("stopped after the rows --limit asked for".to_owned()),
        ),
        Stop::Finished => (RunState::Finished, Exit::of_counts(&counts), None),
        Stop::Interrupted => (
            RunState::Interrupted,
            Exit::Interrupted,
            Some("interrupted by Ctrl-C".to_owned()),
        ),
        Stop::AuthFailed(why) => (RunState::Paused, Exit::Auth, Some(why.clone())),
    };
    let exit_for_state = (state == RunState::Finished).then_some(i32::from(exit.code()));
    writer
        .set_run_state(run_id, state, exit_for_state, message)
        .await
        .map_err(storage)?;
    let tally_line = format!(
        "{} succeeded, {} failed, {} invalid, {} left (of {})",
        counts.succeeded,
        counts.failed,
        counts.invalid,
        counts.pending + counts.in_flight,
        counts.total()
    );
    let db = plan.db.display();
    match &stop {
        Stop::Finished if limited => {
            println!(
                "run {run_id} stopped after the rows --limit asked for, in {elapsed}: {tally_line}"
            );
            eprintln!("webex-bulk: check them (webex-bulk report --db {db} --run {run_id}), then `webex-bulk run --resume {run_id} --db {db}` does the rest");
        }
        Stop::Finished => {
            println!("run {run_id} finished in {elapsed}: {tally_line}");
            if counts.failed + counts.invalid > 0 {
                println!("rows that need attention: webex-bulk report --db {db} --run {run_id} --failed -o failed.csv");
            }
            if counts.noted > 0 {
                println!(
                    "{} rows have a note in the report (such as a duplicate removed): webex-bulk report --db {db} --run {run_id}",
                    counts.noted
                );
            }
            eprintln!(
                "{}",
                match exit {
                    Exit::Ok => "webex-bulk: every row succeeded".to_owned(),
                    _ => format!(
                        "webex-bulk: run {run_id} finished with {} failed and {} invalid rows",
                        counts.failed, counts.invalid
                    ),
                }
            );
        }
        Stop::Interrupted => {
            println!("run {run_id} interrupted after {elapsed}: {tally_line}");
            eprintln!("webex-bulk: interrupted; continue with `webex-bulk run --resume {run_id} --db {db}`");
        }
        Stop::AuthFailed(why) => {
            println!("run {run_id} paused after {elapsed}: {tally_line}");
            eprintln!("webex-bulk: authentication failed: {why}\nwebex-bulk: fix the credentials, then continue with `webex-bulk run --resume {run_id} --db {db}`");
        }
    }
    Ok(RunResult {
        exit,
        run_id,
        counts,
    })
}

/// The options a run goes with: the command line's, else those the run was
/// started with, else the defaults.
pub(super) struct Effective {
    pub(super) base_url: String,
    pub(super) rate: String,
    pub(super) concurrency: usize,
    pub(super) max_attempts: u32,
    /// How long after an uncertain create "not found" is trusted.
    pub(super) settle: Duration,
    /// `--api`, `--xml-url`, `--xml-rate-pause`.
    pub(super) api: ApiOptions,
}

impl Effective {
    pub(super) fn of(plan: &RunPlan, stored: &serde_json::Value) -> Effective {
        let text = |k: &str| stored.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let number = |k: &str| stored.get(k).and_then(|v| v.as_u64());
        let defaults = Settings::default();
        Effective {
            base_url: plan
                .base_url
                .clone()
                .or_else(|| text("base_url"))
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
            rate: plan
                .rate
                .clone()
                .or_else(|| text("rate"))
                .unwrap_or_else(|| DEFAULT_RATE.to_owned()),
            concurrency: plan
                .concurrency
                .map(u64::from)
                .or_else(|| number("concurrency"))
                .map_or(defaults.concurrency, |n| n.max(1) as usize),
            max_attempts: plan
                .max_attempts
                .map(u64::from)
                .or_else(|| number("max_attempts"))
                .map_or(defaults.max_attempts, |n| n.max(1) as u32),
            // A window shorter than --timeout is warned about (see
            // `execute_inner`), not raised behind the user's back.
            api: ApiOptions::of(&plan.api, stored),
            settle: plan
                .settle
                .or_else(|| number("settle_secs").map(Duration::from_secs))
                .unwrap_or_else(|| crate::settle::default_settle(plan.timeout)),
        }
    }

    /// Checks the base URL and the rate.
    pub(super) fn check(&self) -> Result<(url::Url, Rate), Failure> {
        let base = check_base_url(&self.base_url).map_err(|e| fail(Exit::Usage, e))?;
        let rate = parse_rate(&self.rate).map_err(|e| fail(Exit::Usage, e))?;
        Ok((base, rate))
    }

    /// As recorded with the run.
    pub(super) fn to_json(&self) -> serde_json::Value {
        let mut options = serde_json::json!({
            "base_url": self.base_url,
            "rate": self.rate,
            "concurrency": self.concurrency,
            "max_attempts": self.max_attempts,
            "settle_secs": self.settle.as_secs(),
        });
        self.api.record(&mut options);
        options
    }
}

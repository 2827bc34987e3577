//! Carries out the commands. `main` calls [`main`]; every command returns
//! the process exit code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::auth::{self, AuthError, CredentialStore, Credentials, EnvCredentials, TokenManager};
use crate::cli::{
    Cli, Command, DbArg, ReportArgs, RunArgs, SimArgs, StatusArgs, ValidateArgs, VerifyArgs,
};
use crate::csvin::{Encoding, Problem, Severity};
use crate::engine::{self, Settings, Shared, Stop};
use crate::ingest::{self, IngestError, IngestOptions};
use crate::kinds::{self, Job, Kind, Org, PrepareError};
use crate::progress::{self, Mode, Progress, Tally};
use crate::rate::{parse_rate, Pacing, Rate};
use crate::store::{Counts, RunInfo, RunState, Store};
use crate::webex::{check_base_url, Client};

/// Every row succeeded.
pub const EXIT_OK: i32 = 0;
/// The run finished with failed or invalid rows.
pub const EXIT_ROWS_FAILED: i32 = 1;
/// Usage or input error; nothing was queued.
pub const EXIT_USAGE: i32 = 2;
/// Authentication failed; the run is paused and resumable.
pub const EXIT_AUTH: i32 = 3;
/// Interrupted by Ctrl-C; resumable.
pub const EXIT_INTERRUPTED: i32 = 130;

/// The Webex API, unless told otherwise.
pub const DEFAULT_BASE_URL: &str = "https://webexapis.com/v1";
/// The request rate, unless told otherwise.
pub const DEFAULT_RATE: &str = "auto";

/// Parses the arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    init_logging(cli.verbose);
    match cli.command {
        Command::Validate(args) => with_runtime(|| validate(args)),
        Command::Status(args) => status(&args),
        Command::Report(args) => report(&args),
        Command::Verify(args) => with_runtime(|| verify(args)),
        Command::Run(args) => with_runtime(|| run(args)),
        Command::Sim(args) => with_runtime(|| sim(args)),
        Command::Demo(args) => with_runtime(|| crate::demo::demo(args)),
        Command::Auth(command) => with_runtime(|| crate::authcmd::auth(command)),
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEBEX_BULK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("webex_bulk={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn with_runtime<F: std::future::Future<Output = i32>>(f: impl FnOnce() -> F) -> i32 {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f()),
        Err(e) => fail(EXIT_USAGE, format!("cannot start the async runtime: {e}")),
    }
}

/// Prints a one-line reason on stderr and returns `code`.
pub fn fail(code: i32, reason: impl std::fmt::Display) -> i32 {
    eprintln!("webex-bulk: {reason}");
    code
}

fn open_store(db: &DbArg) -> Result<Store, i32> {
    Store::open(&db.db).map_err(|e| {
        fail(
            EXIT_USAGE,
            format!("cannot open the database {}: {e}", db.db.display()),
        )
    })
}

fn print_problem(path: &Path, p: &Problem) {
    eprintln!("{}", p.display(path));
}

/// `validate KIND FILE`: checks every row; sends nothing, except what a
/// kind that checks rows against the org asks it (users: `GET /v1/licenses`).
async fn validate(args: ValidateArgs) -> i32 {
    let kind = match kinds::find(&args.kind) {
        Ok(k) => k,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let org = if kind.needs_org() {
        let base = args
            .base_url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let base = match check_base_url(&base) {
            Ok(b) => b,
            Err(e) => return fail(EXIT_USAGE, e),
        };
        let store = CredentialStore::new(&auth::home_dir());
        let stored = match store.load(&args.profile) {
            Ok(s) => s,
            Err(e) => return fail(EXIT_USAGE, e),
        };
        let creds = auth::resolve(EnvCredentials::from_env(), stored);
        if creds.access_token.is_none() && creds.refresh_token.is_none() {
            return fail(EXIT_USAGE, format!("validate {} checks rows against the org and needs credentials: set WEBEX_ACCESS_TOKEN (or run `webex-bulk auth service-app`)", kind.name()));
        }
        let client = Client::new(base, Duration::from_secs(60));
        let tokens = TokenManager::new(creds, client.clone(), store, &args.profile);
        Some(Org::new(client, Arc::new(tokens)))
    } else {
        None
    };
    let job = match prepare(kind, org.as_ref()).await {
        Ok(job) => job,
        Err(code) => return code,
    };
    let mut errors = 0u64;
    let result = ingest::scan_job(
        &args.file,
        args.encoding,
        job.as_ref(),
        chrono::Utc::now(),
        |_, _, _| Ok(()),
        |p| {
            if p.severity == Severity::Error {
                errors += 1;
            }
            print_problem(&args.file, p);
        },
    );
    match result {
        Ok(scan) => {
            println!(
                "{}: {} rows, {} valid, {} invalid ({} problems, {} warnings)",
                args.file.display(),
                scan.rows,
                scan.valid,
                scan.invalid,
                errors,
                scan.warnings
            );
            if scan.invalid == 0 {
                EXIT_OK
            } else {
                EXIT_ROWS_FAILED
            }
        }
        Err(e) => input_error(&args.file, e),
    }
}

/// The kind made ready for a run: what it needs from the org, asked once.
async fn prepare(kind: &dyn Kind, org: Option<&Org>) -> Result<Box<dyn Job>, i32> {
    kind.prepare(org).await.map_err(|e| match e {
        PrepareError::Auth(e) => fail(EXIT_AUTH, e),
        PrepareError::Org(e) => fail(EXIT_USAGE, e),
    })
}

fn input_error(path: &Path, e: IngestError) -> i32 {
    if let IngestError::Header { problems, .. } = &e {
        for p in problems {
            print_problem(path, p);
        }
    }
    fail(EXIT_USAGE, e)
}

fn status(args: &StatusArgs) -> i32 {
    if !args.db.db.exists() {
        return fail(
            EXIT_USAGE,
            format!(
                "no database at {} (runs create it; pass --db to look elsewhere)",
                args.db.db.display()
            ),
        );
    }
    let store = match open_store(&args.db) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let runs = match store.runs() {
        Ok(r) => r,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let mut list = Vec::new();
    for run in runs {
        match store.counts(run.id) {
            Ok(c) => list.push((run, c)),
            Err(e) => return fail(EXIT_USAGE, e),
        }
    }
    if args.json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|(r, c)| serde_json::json!({"run": r, "counts": c, "total": c.total()}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return EXIT_OK;
    }
    if list.is_empty() {
        println!("no runs in {}", args.db.db.display());
        return EXIT_OK;
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
    EXIT_OK
}

fn state_label(r: &RunInfo) -> String {
    match (r.state, r.exit_code) {
        (RunState::Finished, Some(code)) => format!("finished({code})"),
        (state, _) => serde_json::to_value(state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    }
}

fn report(args: &ReportArgs) -> i32 {
    if !args.db.db.exists() {
        return fail(
            EXIT_USAGE,
            format!("no database at {}", args.db.db.display()),
        );
    }
    let store = match open_store(&args.db) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let run = match args.run {
        Some(id) => store.run(id),
        None => store.latest_run(),
    };
    let run = match run {
        Ok(Some(r)) => r,
        Ok(None) => return fail(EXIT_USAGE, "no such run (see `webex-bulk status`)"),
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let kind = match kinds::find(&run.kind) {
        Ok(k) => k,
        Err(e) => return fail(EXIT_USAGE, format!("run {}: {e}", run.id)),
    };
    let written = match &args.output {
        Some(path) => {
            let file = match std::fs::File::create(path) {
                Ok(f) => f,
                Err(e) => {
                    return fail(EXIT_USAGE, format!("cannot create {}: {e}", path.display()))
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
    match written {
        Ok(n) => {
            if let Some(path) = &args.output {
                eprintln!("wrote {n} rows of run {} to {}", run.id, path.display());
            }
            EXIT_OK
        }
        Err(e) => fail(EXIT_USAGE, e),
    }
}

/// `webex-bulk verify`: see [`crate::kinds::meetings::verify`].
async fn verify(args: VerifyArgs) -> i32 {
    match verify_inner(args).await {
        Ok(code) | Err(code) => code,
    }
}

async fn verify_inner(args: VerifyArgs) -> Result<i32, i32> {
    if !args.db.db.exists() {
        return Err(fail(
            EXIT_USAGE,
            format!("no database at {}", args.db.db.display()),
        ));
    }
    let mut store = open_store(&args.db)?;
    // --fix deletes meetings and writes the log: not beside a run of the same queue.
    let _lock = lock_database(&args.db.db)?;
    let run = match args.run {
        Some(id) => store.run(id),
        None => store.latest_run(),
    }
    .map_err(|e| fail(EXIT_USAGE, e))?
    .ok_or_else(|| fail(EXIT_USAGE, "no such run (see `webex-bulk status`)"))?;
    if run.kind != "meetings" {
        return Err(fail(
            EXIT_USAGE,
            format!(
                "run {} is a {} run; verify checks meetings runs (people are unique by email, so a users run cannot hold duplicates)",
                run.id, run.kind
            ),
        ));
    }
    if run.state != RunState::Finished {
        eprintln!(
            "webex-bulk: run {} is not finished ({}); only its succeeded rows are checked",
            run.id,
            state_label(&run)
        );
    }
    let plan = RunPlan {
        db: args.db.db.clone(),
        source: Source::Resume {
            run: Some(run.id),
            retry_failed: false,
        },
        base_url: args.base_url,
        concurrency: args.concurrency,
        rate: args.rate,
        max_attempts: None,
        timeout: Duration::from_secs(args.timeout.max(1)),
        settle: None,
        progress: Mode::None,
        home: auth::home_dir(),
        profile: args.profile,
        env: EnvCredentials::from_env(),
    };
    let options = Effective::of(&plan, &run.options);
    let (base, rate) = options.check()?;
    let (client, tokens) = connect(&plan, base)?;
    tokens.ensure().await.map_err(|e| fail(EXIT_AUTH, e))?;
    let verify_options = crate::kinds::meetings::verify::Options {
        fix: args.fix,
        concurrency: options.concurrency,
        max_attempts: options.max_attempts,
        max_throttled: Settings::default().max_throttled,
    };
    let pacing = Arc::new(Pacing::new(rate));
    let out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| fail(EXIT_USAGE, format!("cannot write {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let summary = crate::kinds::meetings::verify::verify(
        &mut store,
        &run,
        client,
        tokens,
        pacing,
        verify_options,
        out,
    )
    .await
    .map_err(|e| match e {
        crate::kinds::meetings::verify::VerifyError::Auth(_) => fail(EXIT_AUTH, e),
        e => fail(EXIT_USAGE, e),
    })?;
    let removed = if args.fix {
        format!(" ({} duplicates removed)", summary.removed)
    } else {
        String::new()
    };
    eprintln!(
        "verified run {}: {} ok, {} missing, {} duplicated{removed}, {} unchecked",
        run.id, summary.ok, summary.missing, summary.duplicated, summary.unchecked
    );
    if summary.unfixed > 0 && !args.fix {
        eprintln!(
            "webex-bulk: `webex-bulk verify --run {} --fix` removes the duplicates (never the meeting the run recorded)",
            run.id
        );
    }
    if let Some(path) = &args.output {
        eprintln!("wrote the rows that are not ok to {}", path.display());
    }
    Ok(if summary.all_ok() {
        EXIT_OK
    } else {
        EXIT_ROWS_FAILED
    })
}

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
}

/// What a run works on.
pub enum Source {
    File {
        /// The kind's name (see [`crate::kinds::find`]).
        kind: String,
        path: PathBuf,
        encoding: Encoding,
        strict: bool,
        max_rows: Option<u64>,
        new_run: bool,
    },
    Resume {
        run: Option<i64>,
        retry_failed: bool,
    },
}

async fn run(args: RunArgs) -> i32 {
    let source = match &args.resume {
        Some(which) => {
            let run = if which == "latest" {
                None
            } else {
                match which.parse::<i64>() {
                    Ok(id) => Some(id),
                    Err(_) => {
                        return fail(
                            EXIT_USAGE,
                            format!("--resume takes a run id (a number), not `{which}`"),
                        )
                    }
                }
            };
            Source::Resume {
                run,
                retry_failed: args.retry_failed,
            }
        }
        None => Source::File {
            kind: args.kind.expect("clap requires KIND without --resume"),
            path: args
                .file
                .clone()
                .expect("clap requires FILE without --resume"),
            encoding: args.encoding,
            strict: args.strict,
            max_rows: args.max_rows,
            new_run: args.new_run,
        },
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
    };
    let (ctrl_c, _guard) = ctrl_c_shutdown();
    execute(plan, ctrl_c).await.code
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
            std::process::exit(EXIT_INTERRUPTED);
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
    pub code: i32,
    pub run_id: Option<i64>,
    pub counts: Counts,
}

impl RunResult {
    fn early(code: i32) -> RunResult {
        RunResult {
            code,
            run_id: None,
            counts: Counts::default(),
        }
    }
}

/// Queues (or resumes) and carries out a run; prints the summary.
pub async fn execute(plan: RunPlan, shutdown: impl std::future::Future<Output = ()>) -> RunResult {
    match execute_inner(plan, shutdown).await {
        Ok(r) => r,
        Err(code) => RunResult::early(code),
    }
}

async fn execute_inner(
    plan: RunPlan,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RunResult, i32> {
    let mut store = Store::open(&plan.db).map_err(|e| {
        fail(
            EXIT_USAGE,
            format!("cannot open the database {}: {e}", plan.db.display()),
        )
    })?;
    let _lock = lock_database(&plan.db)?;

    // The run: a new one from a file, or one to continue.
    let stored_options;
    let (client, tokens);
    // The run's kind, made ready (it may have asked the org).
    let job;
    let run_id = match &plan.source {
        Source::File {
            kind,
            path,
            encoding,
            strict,
            max_rows,
            new_run,
        } => {
            // Everything is checked before anything is queued.
            let kind = kinds::find(kind).map_err(|e| fail(EXIT_USAGE, e))?;
            let options = Effective::of(&plan, &serde_json::Value::Null);
            let (base, _) = options.check()?;
            (client, tokens) = connect(&plan, base)?;
            let org = Org::new(client.clone(), tokens.clone());
            job = prepare(kind, Some(&org)).await?;
            let options = options.to_json();
            let opts = IngestOptions {
                encoding: *encoding,
                strict: *strict,
                max_rows: *max_rows,
                new_run: *new_run,
                options: &options,
                kind: kind.name(),
                job: job.as_ref(),
                now: chrono::Utc::now(),
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
            stored_options = options;
            run_id
        }
        Source::Resume { run, retry_failed } => {
            let info = match run {
                Some(id) => store.run(*id),
                None => store.latest_run(),
            }
            .map_err(|e| fail(EXIT_USAGE, e))?
            .ok_or_else(|| {
                fail(
                    EXIT_USAGE,
                    format!(
                        "no run to resume in {} (see `webex-bulk status`)",
                        plan.db.display()
                    ),
                )
            })?;
            let counts = store.counts(info.id).map_err(|e| fail(EXIT_USAGE, e))?;
            if info.state == RunState::Finished && !(*retry_failed && counts.failed > 0) {
                let code = info.exit_code.unwrap_or_else(|| counts.exit_code());
                eprintln!(
                    "run {} already finished: {} succeeded, {} failed, {} invalid; nothing to send",
                    info.id, counts.succeeded, counts.failed, counts.invalid
                );
                return Ok(RunResult {
                    code,
                    run_id: Some(info.id),
                    counts,
                });
            }
            let (base, _) = Effective::of(&plan, &info.options).check()?;
            (client, tokens) = connect(&plan, base)?;
            let kind = kinds::find(&info.kind)
                .map_err(|e| fail(EXIT_USAGE, format!("run {}: {e}", info.id)))?;
            let org = Org::new(client.clone(), tokens.clone());
            job = prepare(kind, Some(&org)).await?;
            let reopened = store
                .prepare_resume(info.id, *retry_failed)
                .map_err(|e| fail(EXIT_USAGE, e))?;
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
        ..Settings::default()
    };

    let info = store
        .run(run_id)
        .map_err(|e| fail(EXIT_USAGE, e))?
        .ok_or_else(|| fail(EXIT_USAGE, format!("run {run_id} is gone")))?;
    let runner = job
        .runner(&info.header, &info.uid)
        .map_err(|e| fail(EXIT_USAGE, format!("run {run_id}: {e}")))?;
    let counts = store.counts(run_id).map_err(|e| fail(EXIT_USAGE, e))?;
    let tally = Arc::new(Tally::default());
    tally
        .succeeded
        .store(counts.succeeded, std::sync::atomic::Ordering::Relaxed);
    tally.failed.store(
        counts.failed + counts.invalid,
        std::sync::atomic::Ordering::Relaxed,
    );
    let pacing = Arc::new(Pacing::new(rate));
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
        fail(
            EXIT_USAGE,
            format!("run {run_id} stopped: {e}; `webex-bulk run --resume {run_id}` continues"),
        )
    })?;
    let counts = writer
        .counts(run_id)
        .await
        .map_err(|e| fail(EXIT_USAGE, e))?;
    let elapsed = progress::humanize(started.elapsed());
    let (state, code, message) = match &stop {
        Stop::Finished => (RunState::Finished, counts.exit_code(), None),
        Stop::Interrupted => (
            RunState::Interrupted,
            EXIT_INTERRUPTED,
            Some("interrupted by Ctrl-C".to_owned()),
        ),
        Stop::AuthFailed(why) => (RunState::Paused, EXIT_AUTH, Some(why.clone())),
    };
    let exit_for_state = (state == RunState::Finished).then_some(code);
    writer
        .set_run_state(run_id, state, exit_for_state, message)
        .await
        .map_err(|e| fail(EXIT_USAGE, e))?;
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
                match code {
                    EXIT_OK => "webex-bulk: every row succeeded".to_owned(),
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
        code,
        run_id: Some(run_id),
        counts,
    })
}

/// The options a run goes with: the command line's, else those the run was
/// started with, else the defaults.
struct Effective {
    base_url: String,
    rate: String,
    concurrency: usize,
    max_attempts: u32,
    /// How long after an uncertain create "not found" is trusted.
    settle: Duration,
}

impl Effective {
    fn of(plan: &RunPlan, stored: &serde_json::Value) -> Effective {
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
            settle: plan
                .settle
                .or_else(|| number("settle_secs").map(Duration::from_secs))
                .unwrap_or_else(|| crate::settle::default_settle(plan.timeout)),
        }
    }

    /// Checks the base URL and the rate.
    fn check(&self) -> Result<(url::Url, Rate), i32> {
        let base = check_base_url(&self.base_url).map_err(|e| fail(EXIT_USAGE, e))?;
        let rate = parse_rate(&self.rate).map_err(|e| fail(EXIT_USAGE, e))?;
        Ok((base, rate))
    }

    /// As recorded with the run.
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "base_url": self.base_url,
            "rate": self.rate,
            "concurrency": self.concurrency,
            "max_attempts": self.max_attempts,
            "settle_secs": self.settle.as_secs(),
        })
    }
}

/// The API client and the run's one token manager.
fn connect(plan: &RunPlan, base: url::Url) -> Result<(Client, Arc<TokenManager>), i32> {
    let creds = credentials(plan)?;
    let client = Client::new(base, plan.timeout);
    let tokens = TokenManager::new(
        creds,
        client.clone(),
        CredentialStore::new(&plan.home),
        &plan.profile,
    );
    Ok((client, Arc::new(tokens)))
}

fn credentials(plan: &RunPlan) -> Result<Credentials, i32> {
    let store = CredentialStore::new(&plan.home);
    let stored = store.load(&plan.profile).map_err(|e| fail(EXIT_USAGE, e))?;
    let env = EnvCredentials {
        access_token: plan.env.access_token.clone(),
        refresh_token: plan.env.refresh_token.clone(),
        client_id: plan.env.client_id.clone(),
        client_secret: plan.env.client_secret.clone(),
    };
    let creds = auth::resolve(env, stored);
    if creds.access_token.is_none() && creds.refresh_token.is_none() {
        return Err(fail(EXIT_USAGE, AuthError::Missing));
    }
    Ok(creds)
}

/// One process at a time works on a database: a second `run` would claim
/// the same rows. The lock goes with the process, however it ends.
fn lock_database(db: &Path) -> Result<std::fs::File, i32> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    crate::store::create_private(&path)
        .map_err(|e| fail(EXIT_USAGE, format!("cannot create {}: {e}", path.display())))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| fail(EXIT_USAGE, format!("cannot create {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(fail(
            EXIT_USAGE,
            format!("another webex-bulk process is running on {}; wait for it to finish (or stop it) first", db.display()),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(fail(EXIT_USAGE, format!("cannot lock {}: {e}", path.display()))),
    }
}

async fn sim(args: SimArgs) -> i32 {
    let Ok(slow_create_delay) = Duration::try_from_secs_f64(args.slow_create_secs) else {
        return fail(
            EXIT_USAGE,
            format!(
                "--slow-create-secs must be a number of seconds, 0 or more (got {})",
                args.slow_create_secs
            ),
        );
    };
    let config = crate::sim::SimConfig {
        token_lifetime: args.token_lifetime.map(Duration::from_secs),
        token_max_requests: args.token_max_requests,
        rotate_refresh_tokens: args.rotate_refresh_tokens,
        rate_limit: args.rate_limit,
        retry_after_secs: args.retry_after,
        fail_rate: args.fail_rate,
        drop_rate: args.drop_rate,
        slow_create_rate: args.slow_create_rate,
        slow_create_delay,
        latency: Duration::from_millis(args.latency_ms),
        seed: args.seed,
        ..crate::sim::SimConfig::default()
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let handle = match crate::sim::start(config, addr).await {
        Ok(h) => h,
        Err(e) => return fail(EXIT_USAGE, format!("cannot listen on {addr}: {e}")),
    };
    println!("{}", handle.base_url());
    let _ = std::io::stdout().flush();
    eprintln!(
        "webex-bulk sim: listening on {} (stats: http://{}/_sim/stats); it accepts the simulator's built-in test credentials listed in the README; Ctrl-C stops it",
        handle.base_url(),
        handle.addr()
    );
    let _ = tokio::signal::ctrl_c().await;
    let stats = handle.stats();
    handle.shutdown().await;
    eprintln!(
        "webex-bulk sim: stopped; {}",
        serde_json::to_string(&stats).unwrap_or_default()
    );
    EXIT_OK
}

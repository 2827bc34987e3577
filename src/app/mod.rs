//! Carries out the commands, one file each (`run`, `validate`, `status` and
//! `report`, `verify`, `sim`); `main` calls [`main`], which returns the
//! process exit code. What the commands share is here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;

use crate::auth::{self, AuthError, CredentialStore, Credentials, EnvCredentials, TokenManager};
use crate::cli::{Cli, Command, DbArg};
use crate::csvin::Problem;
use crate::ingest::IngestError;
use crate::kinds::{Job, Kind, Org, PrepareError};
use crate::progress::{self};
use crate::store::Store;
use crate::webex::Client;

pub mod authcmd;
mod run;
mod sim;
mod status;
mod validate;
mod verify;

pub use run::{ctrl_c_shutdown, execute, RunPlan, RunResult, Source};

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
        Command::Validate(args) => with_runtime(|| validate::validate(args)),
        Command::Status(args) => status::status(&args),
        Command::Report(args) => status::report(&args),
        Command::Verify(args) => with_runtime(|| verify::verify(args)),
        Command::Run(args) => with_runtime(|| run::run(args)),
        Command::Sim(args) => with_runtime(|| sim::sim(args)),
        Command::Demo(args) => with_runtime(|| crate::demo::demo(args)),
        Command::Auth(command) => with_runtime(|| crate::app::authcmd::auth(command)),
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

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
use crate::kinds::{Job, Kind, KindOptions, Org, PrepareError};
use crate::progress::{self};
use crate::store::Store;
use crate::webex::Client;

pub mod authcmd;
mod exit;
mod run;
mod sim;
mod status;
mod validate;
mod verify;

pub use exit::{fail, storage, Exit, Failure};
pub use run::{ctrl_c_shutdown, execute, RunPlan, RunResult, Source};

/// The Webex API, unless told otherwise.
pub const DEFAULT_BASE_URL: &str = "https://webexapis.com/v1";
/// The request rate, unless told otherwise.
pub const DEFAULT_RATE: &str = "auto";

/// Parses the arguments and runs the command. The one place a failure is
/// printed and mapped to the process exit code.
pub fn main() -> std::process::ExitCode {
    let exit = match command() {
        Ok(exit) => exit,
        Err(failure) => {
            eprintln!("webex-bulk: {failure}");
            failure.exit
        }
    };
    exit.into()
}

fn command() -> Result<Exit, Failure> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints its own message (and --help, --version).
            let _ = e.print();
            return Ok(if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok
            });
        }
    };
    init_logging(cli.verbose);
    match cli.command {
        Command::Validate(args) => with_runtime(|| validate::validate(args)),
        Command::Status(args) => status::status(&args),
        Command::Jobs => jobs(),
        Command::Report(args) => status::report(&args),
        Command::Verify(args) => with_runtime(|| verify::verify(args)),
        Command::Run(args) => with_runtime(|| run::run(args)),
        Command::Sim(args) => with_runtime(|| sim::sim(args)),
        Command::Demo(args) => with_runtime(|| crate::demo::demo(args)),
        Command::Auth(command) => with_runtime(|| authcmd::auth(command)),
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

fn with_runtime<F: std::future::Future<Output = Result<Exit, Failure>>>(
    f: impl FnOnce() -> F,
) -> Result<Exit, Failure> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f()),
        Err(e) => Err(fail(
            Exit::Usage,
            format!("cannot start the async runtime: {e}"),
        )),
    }
}

fn open_store(db: &DbArg) -> Result<Store, Failure> {
    open_database(&db.db)
}

/// Opens the queue: a path where none can be opened (or one a newer
/// version wrote) is a usage error, a damaged file a storage failure.
fn open_database(path: &Path) -> Result<Store, Failure> {
    Store::open(path).map_err(|e| {
        let exit = if e.is_database() {
            Exit::Storage
        } else {
            Exit::Usage
        };
        fail(
            exit,
            format!("cannot open the database {}: {e}", path.display()),
        )
    })
}

fn print_problem(path: &Path, p: &Problem) {
    eprintln!("{}", p.display(path));
}

/// The kind made ready for a run: what it needs from the org, asked once.
async fn prepare(
    kind: &dyn Kind,
    org: Option<&Org>,
    options: &KindOptions,
) -> Result<Box<dyn Job>, Failure> {
    kind.prepare(org, options).await.map_err(|e| match e {
        PrepareError::Auth(e) => fail(Exit::Auth, e),
        PrepareError::Unauthorized(e) => fail(Exit::Auth, e),
        PrepareError::Org(e) | PrepareError::Usage(e) => fail(Exit::Usage, e),
    })
}

/// `webex-bulk jobs`: the recipes in ./jobs and $WEBEX_BULK_HOME/jobs, a
/// broken one with its error (not a stop).
fn jobs() -> Result<Exit, Failure> {
    let dirs = [PathBuf::from("jobs"), auth::home_dir().join("jobs")];
    let found = crate::recipe::list(&dirs);
    if found.is_empty() {
        println!(
            "no recipes in ./jobs or {} (see README.md, \"Recipes\")",
            dirs[1].display()
        );
        return Ok(Exit::Ok);
    }
    for (path, recipe) in &found {
        match recipe {
            Ok(r) => println!("{:<40} {:<14} {}", path.display(), r.kind, r.description),
            Err(e) => println!(
                "{:<40} {:<14} cannot be used: {}",
                path.display(),
                "?",
                e.to_string().replace('\n', " ")
            ),
        }
    }
    Ok(Exit::Ok)
}

/// What `run` and `validate` work on: the kind, the file and, with
/// `--job`, the recipe (which names the kind: a KIND given too must agree,
/// and the one positional argument may be the file) and the date order.
pub(super) struct Target {
    pub(super) kind: String,
    pub(super) file: PathBuf,
    pub(super) recipe: Option<Box<crate::recipe::Recipe>>,
    pub(super) date_order: Option<crate::dates::DateOrder>,
}

pub(super) fn target(
    kind: Option<String>,
    file: Option<PathBuf>,
    args: &crate::cli::RecipeArgs,
) -> Result<Target, Failure> {
    let date_order = args
        .date_order
        .as_deref()
        .and_then(crate::dates::DateOrder::parse);
    let Some(path) = &args.job else {
        if let Some(k) = kind.as_deref().filter(|k| crate::kinds::find(k).is_err()) {
            return Err(fail(
                Exit::Usage,
                format!(
                    "`{k}` is not a job kind\n    fix: use one of: {} (or --job RECIPE.toml)",
                    crate::kinds::names().join(", ")
                ),
            ));
        }
        let (Some(kind), Some(file)) = (kind, file) else {
            return Err(fail(
                Exit::Usage,
                "give the job kind and the file (or --job RECIPE.toml and the file)",
            ));
        };
        // --date-order alone: the file's own columns, its dates in that order.
        let recipe = match date_order {
            None => None,
            Some(order) => {
                let k = crate::kinds::find(&kind).map_err(|e| fail(Exit::Usage, e))?;
                let recipe =
                    crate::recipe::Recipe::by_header(k, order).map_err(|e| fail(Exit::Usage, e))?;
                Some(Box::new(recipe))
            }
        };
        return Ok(Target {
            kind,
            file,
            recipe,
            date_order,
        });
    };
    let recipe = crate::recipe::Recipe::load(path).map_err(|e| fail(Exit::Usage, e))?;
    let file = match (kind, file) {
        (Some(kind), Some(file)) if kind == recipe.kind => file,
        (Some(kind), Some(_)) => {
            return Err(fail(
                Exit::Usage,
                format!("the recipe {} is for {} jobs, not {kind}\n    fix: leave out the kind (the recipe names it)", recipe.name, recipe.kind),
            ))
        }
        (Some(file), None) => PathBuf::from(file),
        (None, Some(file)) => file,
        (None, None) => return Err(fail(Exit::Usage, "give the file to read through the recipe")),
    };
    Ok(Target {
        kind: recipe.kind.clone(),
        file,
        recipe: Some(Box::new(recipe)),
        date_order,
    })
}

/// The recipe (and date order) run `id` was queued through, as its options
/// store them; `None` for a run without one.
pub(super) fn stored_recipe(
    id: i64,
    options: &serde_json::Value,
) -> Result<Option<(crate::recipe::Recipe, Option<crate::dates::DateOrder>)>, Failure> {
    let recipe = match options.get("recipe") {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(r) => serde_json::from_value::<crate::recipe::Recipe>(r.clone()).map_err(|e| {
            fail(
                Exit::Storage,
                format!("run {id}: its stored recipe is unreadable: {e}"),
            )
        })?,
    };
    let order = options
        .get("date_order")
        .and_then(|o| serde_json::from_value(o.clone()).ok());
    Ok(Some((recipe, order)))
}

/// A prepared kind, read through the recipe if there is one.
pub(super) fn through_recipe(
    job: Box<dyn Job>,
    recipe: Option<Box<crate::recipe::Recipe>>,
    date_order: Option<crate::dates::DateOrder>,
) -> Box<dyn Job> {
    match recipe {
        None => job,
        Some(recipe) => Box::new(crate::recipe::RecipeJob {
            inner: job,
            recipe: *recipe,
            date_order,
        }),
    }
}

/// The API options a run goes with: the command line's, else the run's
/// (`stored`), else the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ApiOptions {
    pub(super) xml: bool,
    pub(super) xml_url: String,
    pub(super) xml_rate_pause: u64,
}

impl ApiOptions {
    pub(super) fn of(args: &crate::cli::ApiArgs, stored: &serde_json::Value) -> ApiOptions {
        let text = |k: &str| stored.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        ApiOptions {
            xml: match args.api {
                Some(api) => api == crate::cli::ApiChoice::Xml,
                None => text("api").as_deref() == Some("xml"),
            },
            xml_url: args
                .xml_url
                .clone()
                .or_else(|| text("xml_url"))
                .unwrap_or_else(|| crate::webex::xml::DEFAULT_XML_URL.to_owned()),
            xml_rate_pause: args
                .xml_rate_pause
                .or_else(|| stored.get("xml_rate_pause_secs").and_then(|v| v.as_u64()))
                .unwrap_or(crate::webex::xml::DEFAULT_XML_RATE_PAUSE.as_secs()),
        }
    }

    /// What the kind is told (the XML address checked like the base URL).
    pub(super) fn kind_options(&self) -> Result<KindOptions, Failure> {
        if !self.xml {
            return Ok(KindOptions::default());
        }
        let url = crate::webex::check_base_url(&self.xml_url)
            .map_err(|e| fail(Exit::Usage, format!("--xml-url: {e}")))?;
        Ok(KindOptions {
            xml: Some(crate::webex::xml::XmlEndpoint {
                url,
                rate_pause: std::time::Duration::from_secs(self.xml_rate_pause),
            }),
        })
    }

    /// As recorded with the run (beside the other options).
    pub(super) fn record(&self, options: &mut serde_json::Value) {
        options["api"] = serde_json::json!(if self.xml { "xml" } else { "rest" });
        if self.xml {
            options["xml_url"] = serde_json::json!(self.xml_url);
            options["xml_rate_pause_secs"] = serde_json::json!(self.xml_rate_pause);
        }
    }
}

fn input_error(path: &Path, e: IngestError) -> Failure {
    if let IngestError::Header { problems, .. } = &e {
        for p in problems {
            print_problem(path, p);
        }
    }
    match e {
        IngestError::Store(e) => storage(e),
        e => fail(Exit::Usage, e),
    }
}

/// The API client and the run's one token manager.
fn connect(plan: &RunPlan, base: url::Url) -> Result<(Client, Arc<TokenManager>), Failure> {
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

fn credentials(plan: &RunPlan) -> Result<Credentials, Failure> {
    let store = CredentialStore::new(&plan.home);
    let stored = store
        .load(&plan.profile)
        .map_err(|e| fail(Exit::Usage, e))?;
    let env = EnvCredentials {
        access_token: plan.env.access_token.clone(),
        refresh_token: plan.env.refresh_token.clone(),
        client_id: plan.env.client_id.clone(),
        client_secret: plan.env.client_secret.clone(),
    };
    let creds = auth::resolve(env, stored);
    if creds.access_token.is_none() && creds.refresh_token.is_none() {
        return Err(fail(Exit::Usage, AuthError::Missing));
    }
    Ok(creds)
}

/// One process at a time works on a database: a second `run` would claim
/// the same rows. The lock goes with the process, however it ends.
fn lock_database(db: &Path) -> Result<std::fs::File, Failure> {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    crate::store::create_private(&path).map_err(|e| {
        fail(
            Exit::Usage,
            format!("cannot create {}: {e}", path.display()),
        )
    })?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| {
            fail(
                Exit::Usage,
                format!("cannot create {}: {e}", path.display()),
            )
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(fail(
            Exit::Usage,
            format!("another webex-bulk process is running on {}; wait for it to finish (or stop it) first", db.display()),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(fail(Exit::Usage, format!("cannot lock {}: {e}", path.display()))),
    }
}

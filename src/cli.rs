//! The command line, as typed arguments (clap). No behaviour here: `app`
//! carries the commands out.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::csvin::Encoding;
use crate::progress::Mode;

/// Bulk Webex administration from spreadsheets: check every row, queue it
/// durably, carry it out under one rate limit, resume after any stop, and
/// report on every row.
#[derive(Debug, Parser)]
#[command(name = "webex-bulk", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). Logs never contain tokens.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// The KIND argument: a kind's name; with `--job` (whose recipe names the
/// kind) it may be left out, and the one argument is the file. Lists the
/// kinds for `--help` but accepts any text: the command checks it.
#[derive(Clone)]
struct KindOrFile;

impl clap::builder::TypedValueParser for KindOrFile {
    type Value = String;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        Ok(value.to_string_lossy().into_owned())
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(crate::kinds::KINDS.iter().map(|k| {
            clap::builder::PossibleValue::new(k.name()).help(k.about())
        })))
    }
}

/// `--job` and `--date-order`, for `run` and `validate`.
#[derive(Debug, Args, Clone, Default)]
pub struct RecipeArgs {
    /// A recipe (jobs/NAME.toml) that maps the file's columns onto a kind's fields; the kind may then be left out: `run --job jobs/onboard-new-hires.toml FILE`.
    #[arg(long, value_name = "RECIPE.toml")]
    pub job: Option<PathBuf>,
    /// How the file writes dates (dmy: 10.03.2027, mdy: 3/10/2027, ymd): the recipe's date columns (wins over its date_order), or without --job the kind's own (meetings: start, end).
    #[arg(long, value_name = "ORDER", value_parser = ["dmy", "mdy", "ymd"])]
    pub date_order: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a file, queue its rows and carry them out (or continue a run with --resume).
    Run(RunArgs),
    /// Check every row of a file and print each problem; sends nothing.
    Validate(ValidateArgs),
    /// List the recipes in ./jobs and $WEBEX_BULK_HOME/jobs with their kinds and descriptions.
    Jobs,
    /// List the runs in the database with their counts.
    Status(StatusArgs),
    /// Write the per-row results of a run as CSV.
    Report(ReportArgs),
    /// Check a meetings run against Webex: every succeeded row's meeting is there, exactly once.
    Verify(VerifyArgs),
    /// Run the bundled Webex simulator (for trying things out and for tests).
    Sim(SimArgs),
    /// Run the meetings sample against the bundled simulator, with faults, and show the result.
    Demo(DemoArgs),
    /// Set up, check and forget credentials (service app, OAuth login).
    #[command(subcommand)]
    Auth(AuthCommand),
}

/// `webex-bulk auth ...`
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Store a service app's credentials: the client secret and refresh token
    /// are read from WEBEX_CLIENT_SECRET / WEBEX_REFRESH_TOKEN or a hidden prompt.
    ServiceApp(ServiceAppArgs),
    /// Authorize an integration in the browser (OAuth code flow with PKCE)
    /// and store its tokens; the client secret comes from WEBEX_CLIENT_SECRET or a hidden prompt.
    Login(LoginArgs),
    /// Whom the stored token belongs to, its scopes and expiry, and warnings.
    Status {
        #[command(flatten)]
        target: TargetArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Forget the stored tokens of a profile.
    Logout {
        /// The profile to forget.
        #[arg(long, default_value = "default", value_name = "NAME")]
        profile: String,
    },
}

/// Which profile, against which API.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// The credential profile.
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub profile: String,
    /// The Webex API base URL (plain http only to this machine).
    #[arg(long, env = "WEBEX_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServiceAppArgs {
    /// The service app's client id (Developer Portal).
    #[arg(long, value_name = "ID")]
    pub client_id: String,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The integration's client id (Developer Portal).
    #[arg(long, value_name = "ID")]
    pub client_id: String,
    /// The scopes to ask for, space-separated.
    #[arg(
        long,
        value_name = "SCOPES",
        default_value = "spark:kms meeting:admin_schedule_write meeting:admin_schedule_read meeting:admin_preferences_read spark-admin:people_read spark-admin:people_write spark-admin:licenses_read"
    )]
    pub scopes: String,
    /// The local port of the redirect URI http://localhost:PORT/callback (as registered for the integration).
    #[arg(long, default_value_t = 8765)]
    pub port: u16,
    /// Seconds to wait for the browser.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout: u64,
    /// Only print the address; do not try to open a browser.
    #[arg(long)]
    pub no_browser: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// The database option shared by several commands.
#[derive(Debug, Args, Clone)]
pub struct DbArg {
    /// The queue database (created if missing).
    #[arg(long, default_value = "webex-bulk.db", value_name = "PATH")]
    pub db: PathBuf,
}

/// Which Webex API a kind that has two ways uses (user-settings: REST, or
/// the Meetings XML API).
#[derive(Debug, Args, Clone, Default)]
pub struct ApiArgs {
    /// The API that carries the rows, for kinds that have two ways (user-settings: rest, or xml: the Meetings XML API with a session ticket) [default: rest, or the run's].
    #[arg(long, value_enum, value_name = "API")]
    pub api: Option<ApiChoice>,
    /// The Meetings XML API's address, for --api xml (https, or http to this machine) [default: https://api.webex.com/WBXService/XMLService, or the run's].
    #[arg(long, env = "WEBEX_XML_URL", value_name = "URL")]
    pub xml_url: Option<String>,
    /// Seconds every worker pauses after the XML API's rate answer (000045, which says no Retry-After; Cisco documents 60) [default: 60, or the run's].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub xml_rate_pause: Option<u64>,
}

/// The APIs of `--api`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApiChoice {
    Rest,
    Xml,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// What the rows are (left out with --job, whose recipe names it).
    #[arg(value_parser = KindOrFile, required_unless_present_any = ["resume", "job"])]
    pub kind: Option<String>,
    /// The file: CSV, or a workbook (.xlsx, .xlsm, .xlsb, .xls, .ods).
    #[arg(required_unless_present_any = ["resume", "job"], value_name = "FILE.csv")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Continue a stopped run (the newest when no id is given) instead of starting one.
    #[arg(long, value_name = "RUN_ID", num_args = 0..=1, default_missing_value = "latest", conflicts_with_all = ["kind", "file"])]
    pub resume: Option<String>,
    #[command(flatten)]
    pub db: DbArg,
    /// The Webex API base URL (plain http only to this machine).
    #[arg(long, env = "WEBEX_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// Requests in flight at most: a ceiling; below it the number in flight follows what the rate needs (rate x latency) and drops when the server slows down or fails [default: 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=512))]
    pub concurrency: Option<u16>,
    /// Request rate, shared by all requests: auto (find and ride the server's limit), auto:50/s (with a ceiling), 10/s, 300/min, unlimited [default: auto].
    #[arg(long, value_name = "SPEC")]
    pub rate: Option<String>,
    /// Attempts per row for transient failures (5xx, timeouts) before it fails [default: 8].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: Option<u32>,
    /// Refuse a file with more data rows than this (a guard against the wrong file).
    #[arg(long, value_name = "N")]
    pub max_rows: Option<u64>,
    /// Queue the file even if the same content was run before.
    #[arg(long)]
    pub new_run: bool,
    /// Refuse the whole file if any row is invalid (default: invalid rows are recorded and skipped).
    #[arg(long)]
    pub strict: bool,
    /// Check the file and show its first valid rows as they will be sent, as `validate` does; queues and sends nothing.
    #[arg(long, conflicts_with = "resume")]
    pub dry_run: bool,
    /// Carry out only the first N valid rows of the new run, then stop (exit 0): try a job on a few rows; `--resume` does the rest.
    #[arg(long, value_name = "N", conflicts_with = "resume", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// The sheet of a workbook (.xlsx, .xlsm, .xlsb, .xls, .ods) to read [default: its first].
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
    /// Queue and carry out only these lines of the file (as it numbers them, the header being line 1): 12,40-45; the other rows are not part of the run. For fixing a few rows.
    #[arg(long, value_name = "LINES", conflicts_with = "resume", value_parser = crate::ingest::Lines::parse)]
    pub only_lines: Option<crate::ingest::Lines>,
    /// With --resume: give failed rows a fresh set of attempts too.
    #[arg(long, requires = "resume")]
    pub retry_failed: bool,
    /// The file's encoding (auto: UTF-16 by its byte-order mark, else UTF-8, else Windows-1252 with a warning).
    #[arg(long, value_enum, default_value = "auto")]
    pub encoding: Encoding,
    /// The field delimiter: one character, or tab [default: sniffed from the header line: , ; or tab].
    #[arg(long, value_name = "CHAR", value_parser = crate::csvin::parse_delimiter)]
    pub delimiter: Option<u8>,
    /// How to show progress on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: Mode,
    /// Seconds to wait for one answer before the request counts as timed out.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
    /// Seconds Webex may still be working on a create whose outcome we do not know (a timeout, a dropped connection, a 5xx, a stop): a lookup that finds nothing is trusted, and the create sent again, only this long after it was sent [default: 120, or twice --timeout if longer].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub settle: Option<u64>,
    /// The credential profile to keep refreshed tokens under.
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub profile: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// What the rows are (left out with --job, whose recipe names it).
    #[arg(value_parser = KindOrFile, required_unless_present = "job")]
    pub kind: Option<String>,
    /// The file: CSV, or a workbook (.xlsx, .xlsm, .xlsb, .xls, .ods).
    #[arg(value_name = "FILE.csv")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// The file's encoding (auto: UTF-16 by its byte-order mark, else UTF-8, else Windows-1252 with a warning).
    #[arg(long, value_enum, default_value = "auto")]
    pub encoding: Encoding,
    /// The field delimiter: one character, or tab [default: sniffed from the header line: , ; or tab].
    #[arg(long, value_name = "CHAR", value_parser = crate::csvin::parse_delimiter)]
    pub delimiter: Option<u8>,
    /// For kinds that check rows against the org (users: its licenses), the Webex API to ask (sends only those GETs).
    #[arg(long, env = "WEBEX_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// For kinds that check rows against the org, the credential profile to ask with.
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub profile: String,
    #[command(flatten)]
    pub api: ApiArgs,
    /// The sheet of a workbook to read [default: its first].
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
    /// Check only these lines of the file: 12,40-45.
    #[arg(long, value_name = "LINES", value_parser = crate::ingest::Lines::parse)]
    pub only_lines: Option<crate::ingest::Lines>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The run to report on (default: the newest).
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<i64>,
    /// Only failed and invalid rows, ready to be corrected and run again.
    #[arg(long)]
    pub failed: bool,
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The run to verify (default: the newest).
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<i64>,
    /// Delete the duplicates found (without emails; never the meeting the run recorded).
    #[arg(long)]
    pub fix: bool,
    /// Write the rows that are not ok to this file instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The Webex API base URL (plain http only to this machine) [default: the run's].
    #[arg(long, env = "WEBEX_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// Request rate, shared by all requests [default: the run's].
    #[arg(long, value_name = "SPEC")]
    pub rate: Option<String>,
    /// Requests in flight at most [default: the run's].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=512))]
    pub concurrency: Option<u16>,
    /// Seconds to wait for one answer before the request counts as timed out.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
    /// The credential profile.
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub profile: String,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Requests per second the simulator allows before answering 429 (default: no limit).
    #[arg(long, value_name = "PER_SEC")]
    pub rate_limit: Option<f64>,
    /// Requests the simulator takes at once before its limit shows (the token bucket's
    /// size; default: a second's worth of --rate-limit).
    #[arg(long, value_name = "N", requires = "rate_limit")]
    pub rate_burst: Option<f64>,
    /// Decide the rate limit when a request arrives, before --latency-ms (a 429 is
    /// answered at once, as by a gateway in front of slow work), not after it.
    #[arg(long, requires = "rate_limit")]
    pub rate_limit_on_arrival: bool,
    /// The Retry-After (seconds) sent with a 429.
    #[arg(long, default_value_t = 2, value_name = "SECS")]
    pub retry_after: u64,
    /// Access tokens stop working this many seconds after they are issued.
    #[arg(long, value_name = "SECS")]
    pub token_lifetime: Option<u64>,
    /// Access tokens stop working after this many requests.
    #[arg(long, value_name = "N")]
    pub token_max_requests: Option<u64>,
    /// Every refresh returns a new refresh token and retires the old one.
    #[arg(long)]
    pub rotate_refresh_tokens: bool,
    /// Share (0..1) of requests answered with an injected 500/502/503.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub fail_rate: f64,
    /// Share (0..1) of creates carried out and then answered by dropping the connection.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub drop_rate: f64,
    /// Share (0..1) of meeting creates that are slow: the meeting is stored only after
    /// --slow-create-secs, even if the client gave up waiting.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub slow_create_rate: f64,
    /// How long a slow meeting create takes, in seconds (fractions allowed).
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    pub slow_create_secs: f64,
    /// Latency added to every answer, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,
    /// Seed for the injected faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// People host1@sim.example.com .. hostN@sim.example.com, each a meeting host (odd ones on acme.webex.com, even ones on acme-eu.webex.com), for user-settings files.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub hosts: usize,
    /// A meeting site whose tracking codes are mapped to user attributes (hosts' tracking codes cannot be changed); repeatable.
    #[arg(long, value_name = "SITE_URL")]
    pub mapped_site: Vec<String>,
    /// Share (0..1) of changes of a host's settings carried out and then answered by dropping the connection.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub settings_drop_rate: f64,
    /// How long an XML API session ticket works, in seconds.
    #[arg(long, default_value_t = 5400, value_name = "SECS")]
    pub xml_ticket_ttl: u64,
    /// XML API calls allowed per caller in each --xml-rate-window before the rate answer (000045) (default: no limit).
    #[arg(long, value_name = "N")]
    pub xml_rate_limit: Option<u32>,
    /// The window of --xml-rate-limit, in seconds (Cisco documents 60).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub xml_rate_window: u64,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's database, report and credential store in this folder
    /// (default: a new folder under the system's temporary folder).
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// How to show progress on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: Mode,
}

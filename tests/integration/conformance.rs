//! The same end-to-end cases for every kind of job: SIGKILL mid-run and
//! `run --resume`, dropped connections, a token that expires while many
//! workers are in flight, a 429 storm, and invalid rows. Each ends on the
//! same check: every valid row's object exists exactly once, and nothing
//! was made or sent for an invalid row.
//!
//! A kind takes part with one [`KindCase`] impl and one `conformance!` line
//! (at the bottom of this file).

use std::collections::HashMap;
use std::time::Duration;

use webex_bulk::sim::{
    SimConfig, SimHandle, SimLicense, SimPerson, SimStats, LICENSE_MEETING_ACME, LICENSE_MESSAGING,
};

use crate::util::*;

/// A valid row: its cells (one CSV line, no line break) and the key of the
/// object it makes.
pub struct Row {
    pub cells: String,
    pub key: String,
}

/// A row our validation refuses.
pub struct InvalidRow {
    pub cells: String,
    /// The key its object would have: it must never exist.
    pub key: String,
    /// The refused cell: its column (1-based) and header, as problems name it.
    pub column: usize,
    pub header: &'static str,
}

/// What the cases need to know about a kind.
pub trait KindCase {
    /// The kind as the command line names it: `run KIND FILE`.
    const KIND: &'static str;
    /// The header line of its files.
    const HEADER: &'static str;
    /// Valid row `i`; rows with different `i` have different keys.
    fn row(i: usize) -> Row;
    /// Rows our validation refuses (each for one cell), with keys no valid row has.
    fn invalid_rows() -> Vec<InvalidRow>;
    /// What the simulator needs for this kind's rows (the org's licenses,
    /// people...), on top of the fault settings of a case.
    fn sim(config: SimConfig) -> SimConfig {
        config
    }
    /// Makes the simulator carry out `share` of this kind's creates and then
    /// drop the connection without an answer.
    fn drop_after_work(config: SimConfig, share: f64) -> SimConfig;
    /// The key of every object of this kind the simulator holds, one entry
    /// per object (twice if it holds two).
    fn keys(sim: &SimHandle) -> Vec<String>;
    /// Creates the simulator carried out (answered or not).
    fn creates(stats: &SimStats) -> u64;
    /// Objects the simulator stored with a key it already held (or, where
    /// Webex refuses a second one, was asked to create again).
    fn duplicates(stats: &SimStats) -> u64;
}

/// A file for a case, with what its rows must leave behind.
struct CaseFile {
    text: String,
    /// The keys of its valid rows.
    valid: Vec<String>,
    /// Its invalid rows, with their lines.
    invalid: Vec<(u64, InvalidRow)>,
}

/// `valid` valid rows and, when `with_invalid`, the kind's invalid rows
/// spread among them.
fn case_file<K: KindCase>(valid: usize, with_invalid: bool) -> CaseFile {
    let bad = if with_invalid {
        K::invalid_rows()
    } else {
        Vec::new()
    };
    // The j-th invalid row (from 1) goes after valid row j * valid / (bad + 1).
    let after: Vec<usize> = (1..=bad.len())
        .map(|j| j * valid / (bad.len() + 1))
        .collect();
    let mut file = CaseFile {
        text: format!("{}\n", K::HEADER),
        valid: Vec::new(),
        invalid: Vec::new(),
    };
    let mut line = 1;
    let mut bad = bad.into_iter();
    for i in 0..valid {
        let row = K::row(i);
        file.text.push_str(&row.cells);
        file.text.push('\n');
        file.valid.push(row.key);
        line += 1;
        for _ in after.iter().filter(|a| **a == i + 1) {
            let row = bad.next().unwrap();
            file.text.push_str(&row.cells);
            file.text.push('\n');
            line += 1;
            file.invalid.push((line, row));
        }
    }
    assert_eq!(bad.count(), 0, "every invalid row is in the file");
    file
}

/// Every valid row's object exists exactly once, no invalid row's does,
/// and nothing else does; the simulator carried out one create per valid row.
fn assert_every_row_once<K: KindCase>(sim: &SimHandle, file: &CaseFile) {
    let mut held: HashMap<String, usize> = HashMap::new();
    for key in K::keys(sim) {
        *held.entry(key).or_default() += 1;
    }
    for key in &file.valid {
        assert_eq!(
            held.get(key).copied().unwrap_or(0),
            1,
            "the row {key} has exactly one object"
        );
    }
    for (line, row) in &file.invalid {
        assert!(
            !held.contains_key(&row.key),
            "the invalid row on line {line} has no object"
        );
    }
    assert_eq!(
        held.values().sum::<usize>(),
        file.valid.len(),
        "no other objects: {held:?}"
    );
    let stats = sim.stats();
    assert_eq!(
        K::creates(&stats),
        file.valid.len() as u64,
        "one create carried out per valid row: {stats:?}"
    );
    assert_eq!(K::duplicates(&stats), 0, "{stats:?}");
}

/// The report has a row for every line of the file, and every valid row succeeded.
async fn assert_report_every_row_done(work: &Work, file: &CaseFile) {
    let report = work.report(&[]).await;
    assert_eq!(report.code, 0, "{report:?}");
    let (headers, rows) = parse_report(&report.stdout);
    assert_eq!(rows.len(), file.valid.len() + file.invalid.len());
    let status = column(&headers, "status");
    let succeeded = rows.iter().filter(|r| r[status] == "succeeded").count();
    assert_eq!(succeeded, file.valid.len(), "{rows:?}");
}

/// `run KIND` on `file` at no rate limit of ours (the simulator's limits
/// and faults are what each case is about), with `extra` options.
async fn run_case<K: KindCase>(
    work: &Work,
    sim: &SimHandle,
    file: &CaseFile,
    extra: &[&str],
) -> Output {
    let mut args = vec!["--rate", "unlimited"];
    args.extend_from_slice(extra);
    work.run_kind(K::KIND, sim, &Env::sim(), "rows.csv", &file.text, &args)
        .await
}

/// The requests a run of `valid` valid rows sends to a simulator without
/// faults: what one row costs, measured rather than assumed.
async fn clean_requests<K: KindCase>(valid: usize) -> u64 {
    let sim = start_sim(K::sim(SimConfig::default())).await;
    let work = Work::new();
    let file = case_file::<K>(valid, false);
    let out = run_case::<K>(&work, &sim, &file, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_every_row_once::<K>(&sim, &file);
    sim.stats().requests
}

/// SIGKILL while rows are in flight, then `run --resume`.
async fn killed_mid_run_then_resumed<K: KindCase>() {
    const ROWS: usize = 60;
    // With 100 ms per request and 8 workers, the run is still early on
    // when the first few objects exist: the kill lands mid-run.
    let sim = start_sim(K::sim(SimConfig {
        latency: Duration::from_millis(100),
        ..SimConfig::default()
    }))
    .await;
    let work = Work::new();
    let file = case_file::<K>(ROWS, false);
    let mut child = work.spawn_kind(
        K::KIND,
        &sim,
        "rows.csv",
        &file.text,
        &["--rate", "unlimited", "--concurrency", "8"],
    );
    wait_until(Duration::from_secs(120), || K::keys(&sim).len() >= 8).await;
    child.start_kill().unwrap(); // SIGKILL: no chance to clean up
    assert!(!child.wait().await.unwrap().success());
    assert!(K::keys(&sim).len() < ROWS, "killed mid-run");

    // A create in flight at the kill is finished (or never started) within
    // the simulator's latency: a settle window of 2 s is ample.
    let out = work.resume(&sim, &Env::sim(), &["--settle", "2"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("in flight and will be looked up"),
        "{out:?}"
    );
    assert_every_row_once::<K>(&sim, &file);
    assert_report_every_row_done(&work, &file).await;
}

/// Connections dropped after the server did the work, and 5xx before it.
async fn dropped_connections<K: KindCase>() {
    // Enough creates that some are dropped whatever the order of requests.
    const ROWS: usize = 40;
    // The seed decides which requests fail; with this one the first draw
    // fails, which for users is the run's one license listing (tried again
    // like any transient failure before the first row).
    let config = SimConfig {
        fail_rate: 0.1,
        seed: 7,
        ..SimConfig::default()
    };
    let sim = start_sim(K::drop_after_work(K::sim(config), 0.3)).await;
    let work = Work::new();
    let file = case_file::<K>(ROWS, false);
    // This simulator finishes a create before it answers (or drops the
    // connection), so a short settle window is safe here; the slow-server
    // tests cover the window itself.
    let out = run_case::<K>(
        &work,
        &sim,
        &file,
        &["--max-attempts", "20", "--settle", "1"],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let stats = sim.stats();
    assert!(stats.dropped > 0, "connections were dropped: {stats:?}");
    assert_every_row_once::<K>(&sim, &file);
    assert_report_every_row_done(&work, &file).await;
}

/// The access token stops working while 8 workers are in flight: they all
/// see the 401, and one refresh serves them all.
async fn expired_token_under_concurrency_is_refreshed_once<K: KindCase>() {
    const ROWS: usize = 40;
    const WORKERS: u64 = 8;
    // Every token (the first and the refreshed one) works for `budget`
    // requests. The first runs out with at least WORKERS rows still to do
    // (so every worker is in flight when it does), and the second covers
    // what is left plus every row that saw the 401 doing its requests again.
    let clean = clean_requests::<K>(ROWS).await;
    let per_row = clean.div_ceil(ROWS as u64);
    let redo = WORKERS * per_row;
    let (low, high) = ((clean + redo).div_ceil(2), clean - redo);
    assert!(low < high, "{ROWS} rows are too few for {WORKERS} workers");
    let budget = (low + high) / 2;
    let sim = start_sim(K::sim(SimConfig {
        latency: Duration::from_millis(150),
        token_max_requests: Some(budget),
        ..SimConfig::default()
    }))
    .await;
    let work = Work::new();
    let file = case_file::<K>(ROWS, false);
    let out = run_case::<K>(&work, &sim, &file, &["--concurrency", &WORKERS.to_string()]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let stats = sim.stats();
    assert!(
        stats.unauthorized >= 2,
        "several workers saw the 401 (token good for {budget} of {clean} requests): {stats:?}"
    );
    assert_eq!(stats.refreshes, 1, "exactly one refresh: {stats:?}");
    assert!(!out.all().contains("sim-access-token") && !out.all().contains("sim-refresh-token"));
    assert_every_row_once::<K>(&sim, &file);
    assert_report_every_row_done(&work, &file).await;
}

/// A server allowing half the run's requests per second, with a 2 s
/// Retry-After window: every worker pauses, none sends inside a window.
async fn a_429_storm_has_no_early_request<K: KindCase>() {
    const ROWS: usize = 20;
    let clean = clean_requests::<K>(ROWS).await;
    let sim = start_sim(K::sim(SimConfig {
        rate_limit: Some(clean as f64 / 2.0),
        retry_after_secs: 2,
        // Requests already on their way when a window opens are not early.
        early_grace: Duration::from_secs(1),
        ..SimConfig::default()
    }))
    .await;
    let work = Work::new();
    let file = case_file::<K>(ROWS, false);
    let out = run_case::<K>(&work, &sim, &file, &["--concurrency", "16"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let stats = sim.stats();
    assert!(stats.rate_limited > 0, "the storm happened: {stats:?}");
    assert_eq!(
        stats.early_requests, 0,
        "nobody sent inside a Retry-After window: {stats:?}"
    );
    assert_every_row_once::<K>(&sim, &file);
    assert_report_every_row_done(&work, &file).await;
}

/// Invalid rows: named with line and column, reported invalid, never sent.
async fn invalid_rows_are_reported_and_never_sent<K: KindCase>() {
    const ROWS: usize = 10;
    let clean = clean_requests::<K>(ROWS).await;
    let sim = start_sim(K::sim(SimConfig::default())).await;
    let work = Work::new();
    let file = case_file::<K>(ROWS, true);
    let out = run_case::<K>(&work, &sim, &file, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    for (line, row) in &file.invalid {
        let named = format!("line {line}, column {} ({})", row.column, row.header);
        assert!(out.stderr.contains(&named), "`{named}` in {out:?}");
    }
    assert_every_row_once::<K>(&sim, &file);
    assert_eq!(
        sim.stats().requests,
        clean,
        "the same requests as a file of the valid rows alone"
    );

    let failed = work.report(&["--failed"]).await;
    assert_eq!(failed.code, 0, "{failed:?}");
    let (headers, rows) = parse_report(&failed.stdout);
    let (line, status, error) = (
        column(&headers, "line"),
        column(&headers, "status"),
        column(&headers, "error"),
    );
    let listed: Vec<(String, String, bool)> = rows
        .iter()
        .zip(&file.invalid)
        .map(|(r, (_, row))| {
            (
                r[line].clone(),
                r[status].clone(),
                r[error].starts_with(&format!("{}: ", row.header)),
            )
        })
        .collect();
    let expected: Vec<(String, String, bool)> = file
        .invalid
        .iter()
        .map(|(line, _)| (line.to_string(), "invalid".to_owned(), true))
        .collect();
    assert_eq!(rows.len(), file.invalid.len(), "{rows:?}");
    assert_eq!(listed, expected, "line, status, error names the column");
}

/// `run meetings`: one meeting per row, keyed by title.
pub struct Meetings;

impl Meetings {
    /// Starts two days from now, half an hour apart.
    fn start(i: usize) -> String {
        let base = chrono::Utc::now() + chrono::Duration::days(2);
        (base + chrono::Duration::minutes(30 * i as i64))
            .format("%Y-%m-%dT%H:%M:00Z")
            .to_string()
    }
}

impl KindCase for Meetings {
    const KIND: &'static str = "meetings";
    const HEADER: &'static str = "title,start,duration,hostEmail,invitees";
    fn row(i: usize) -> Row {
        let title = format!("Row {i} review");
        Row {
            cells: format!(
                "{title},{},30,host{}@acme.example.com,guest{i}@acme.example.com",
                Self::start(i),
                i % 7
            ),
            key: title,
        }
    }
    fn invalid_rows() -> Vec<InvalidRow> {
        vec![
            InvalidRow {
                cells: format!(
                    "Bad host review,{},30,host@acme-corp,guest@acme.example.com",
                    Self::start(0)
                ),
                key: "Bad host review".into(),
                column: 4,
                header: "hostEmail",
            },
            InvalidRow {
                cells: format!(
                    "Bad duration review,{},forty,host1@acme.example.com,guest@acme.example.com",
                    Self::start(1)
                ),
                key: "Bad duration review".into(),
                column: 3,
                header: "duration",
            },
        ]
    }
    fn drop_after_work(config: SimConfig, share: f64) -> SimConfig {
        SimConfig {
            drop_rate: share,
            ..config
        }
    }
    fn keys(sim: &SimHandle) -> Vec<String> {
        sim.meetings()
            .iter()
            .map(|m| m["title"].as_str().expect("a title").to_owned())
            .collect()
    }
    fn creates(stats: &SimStats) -> u64 {
        stats.creates
    }
    fn duplicates(stats: &SimStats) -> u64 {
        stats.duplicates
    }
}

/// `run users`: one person per row, keyed by email, given a license.
pub struct Users;

impl KindCase for Users {
    const KIND: &'static str = "users";
    const HEADER: &'static str = "email,firstName,lastName,addLicenses";
    fn row(i: usize) -> Row {
        let email = format!("p{i}@acme.example.com");
        Row {
            cells: format!("{email},P{i},Person,Messaging"),
            key: email,
        }
    }
    fn invalid_rows() -> Vec<InvalidRow> {
        vec![
            InvalidRow {
                cells: "bad.email@acme-corp,Bad,Email,Messaging".into(),
                key: "bad.email@acme-corp".into(),
                column: 1,
                header: "email",
            },
            InvalidRow {
                cells: "ghost@acme.example.com,Ghost,Person,Messagin".into(),
                key: "ghost@acme.example.com".into(),
                column: 4,
                header: "addLicenses",
            },
        ]
    }
    /// The org has the license the rows add, and no people yet.
    fn sim(config: SimConfig) -> SimConfig {
        SimConfig {
            licenses: vec![SimLicense {
                id: LICENSE_MESSAGING.into(),
                name: "Messaging".into(),
                total_units: 1000,
                site_url: None,
            }],
            people: Vec::new(),
            ..config
        }
    }
    fn drop_after_work(config: SimConfig, share: f64) -> SimConfig {
        SimConfig {
            people_create_lost_rate: share,
            ..config
        }
    }
    fn keys(sim: &SimHandle) -> Vec<String> {
        sim.people()
            .iter()
            .map(|p| {
                p["emails"][0]
                    .as_str()
                    .expect("an email")
                    .to_ascii_lowercase()
            })
            .collect()
    }
    fn creates(stats: &SimStats) -> u64 {
        stats.people_created
    }
    fn duplicates(stats: &SimStats) -> u64 {
        // Webex refuses a second person with one email (409): a doubled
        // create shows as a refused one.
        stats.people_duplicates + stats.people_create_conflicts
    }
}

/// `run user-settings` (over REST): one host's session types and tracking
/// code per row, keyed by email; the "object" is the host's `Cost Centre`,
/// which only the row sets.
pub struct UserSettings;

impl UserSettings {
    /// Hosts on acme.webex.com at start (more than any case's rows).
    const HOSTS: usize = 100;
    fn email(i: usize) -> String {
        format!("u{i}@acme.example.com")
    }
}

impl KindCase for UserSettings {
    const KIND: &'static str = "user-settings";
    const HEADER: &'static str = "email,siteUrl,sessionTypes,trackingCodes";
    fn row(i: usize) -> Row {
        Row {
            cells: format!(
                "{},acme.webex.com,PRO;WBN,Cost Centre=CC-{i}",
                Self::email(i)
            ),
            key: Self::email(i),
        }
    }
    fn invalid_rows() -> Vec<InvalidRow> {
        vec![
            InvalidRow {
                cells: "u98@acme-corp,acme.webex.com,PRO,Cost Centre=X".into(),
                key: "u98@acme-corp".into(),
                column: 1,
                header: "email",
            },
            InvalidRow {
                cells: format!("{},acme.webex.com,PRO,Cost Center=X", Self::email(99)),
                key: Self::email(99),
                column: 4,
                header: "trackingCodes",
            },
        ]
    }
    /// Every host holds a meeting license on acme.webex.com.
    fn sim(config: SimConfig) -> SimConfig {
        SimConfig {
            people: (0..Self::HOSTS)
                .map(|i| SimPerson {
                    email: Self::email(i),
                    licenses: vec![LICENSE_MEETING_ACME.into()],
                    ..SimPerson::default()
                })
                .collect(),
            ..config
        }
    }
    fn drop_after_work(config: SimConfig, share: f64) -> SimConfig {
        SimConfig {
            settings_drop_rate: share,
            ..config
        }
    }
    fn keys(sim: &SimHandle) -> Vec<String> {
        (0..Self::HOSTS)
            .map(Self::email)
            .filter(|e| {
                sim.user_settings(e, "acme.webex.com")
                    .is_some_and(|h| h.tracking.contains_key("Cost Centre"))
            })
            .collect()
    }
    fn creates(stats: &SimStats) -> u64 {
        stats.tracking_code_updates
    }
    fn duplicates(stats: &SimStats) -> u64 {
        // A write of what was already there: an attempt that wrote again
        // instead of reading first.
        stats.settings_noop_writes
    }
}

/// The cases, as tests of one kind: `conformance!(module, KindCaseImpl);`.
macro_rules! conformance {
    ($module:ident, $kind:ty) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_killed_run_resumes_and_does_every_row_once() {
                killed_mid_run_then_resumed::<$kind>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dropped_connections_never_do_a_row_twice() {
                dropped_connections::<$kind>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_token_expiring_under_many_workers_is_refreshed_once() {
                expired_token_under_concurrency_is_refreshed_once::<$kind>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_429_storm_pauses_every_worker_with_no_early_request() {
                a_429_storm_has_no_early_request::<$kind>().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn invalid_rows_are_reported_with_line_and_column_and_never_sent() {
                invalid_rows_are_reported_and_never_sent::<$kind>().await;
            }
        }
    };
}

conformance!(meetings, Meetings);
conformance!(users, Users);
conformance!(user_settings, UserSettings);

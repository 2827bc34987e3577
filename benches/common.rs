//! Shared by the benchmarks: machine facts, peak memory, input files.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

/// The number of CPU cores, printed with every figure.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Resets the process's peak RSS (Linux: `clear_refs` 5), so that what
/// follows is measured on its own.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak RSS in MB since the last reset (Linux `VmHWM`).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user + system) this process has used so far, in seconds
/// (Linux `/proc/self/stat`; `None` elsewhere).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// How many rows a benchmark uses: `BENCH_ROWS` or the default.
pub fn rows(default: usize) -> usize {
    std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes a realistic meetings CSV of `n` valid rows (streaming).
pub fn write_meetings_csv(path: &Path, n: usize) {
    let base = chrono::Utc::now() + chrono::Duration::days(2);
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(
        w,
        "title,start,duration,timezone,hostEmail,agenda,invitees,sendEmail"
    )
    .unwrap();
    for i in 0..n {
        // Office hours only: 9:00 to 16:45 on the next 400 days.
        let day = base.date_naive() + chrono::Duration::days((i % 400) as i64);
        let start = day
            .and_hms_opt(9 + (i % 8) as u32, 15 * (i % 4) as u32, 0)
            .unwrap();
        writeln!(
            w,
            "Customer review {i},{},45,Europe/Berlin,host{}@acme.example.com,Quarterly numbers and next steps,Ann Lee <ann{}@acme.example.com>; bob{}@acme.example.com,false",
            start.format("%Y-%m-%d %H:%M"),
            i % 500,
            i % 97,
            i % 89
        )
        .unwrap();
    }
    // On disk before anything is timed: the kernel writing the generated
    // file back must not be counted against what reads it.
    w.into_inner().unwrap().sync_all().unwrap();
}

/// The simulator's built-in credentials, as a run takes them from the environment.
pub fn sim_env() -> webex_bulk::auth::EnvCredentials {
    webex_bulk::auth::EnvCredentials {
        access_token: Some("sim-access-token".to_owned().into()),
        refresh_token: Some("sim-refresh-token".to_owned().into()),
        client_id: Some("sim-client-id".into()),
        client_secret: Some("sim-client-secret".to_owned().into()),
    }
}

/// A run as `webex-bulk run` would do it, without progress output.
pub fn plan(
    dir: &Path,
    source: webex_bulk::app::Source,
    base_url: String,
    rate: &str,
    concurrency: u16,
) -> webex_bulk::app::RunPlan {
    webex_bulk::app::RunPlan {
        db: dir.join("bench.db"),
        source,
        base_url: Some(base_url),
        concurrency: Some(concurrency),
        rate: Some(rate.into()),
        max_attempts: Some(8),
        settle: None,
        timeout: std::time::Duration::from_secs(60),
        progress: webex_bulk::progress::Mode::None,
        home: dir.join("home"),
        profile: "default".into(),
        env: sim_env(),
        api: webex_bulk::cli::ApiArgs::default(),
    }
}

/// Queues `csv` as a new run (the ingest is not what these benchmarks time).
pub fn queue(dir: &Path, csv: &Path) -> i64 {
    let mut store = webex_bulk::store::Store::open(&dir.join("bench.db")).unwrap();
    let options = serde_json::json!({});
    let opts = webex_bulk::ingest::IngestOptions {
        encoding: webex_bulk::csvin::Encoding::Utf8,
        delimiter: Some(b','),
        strict: false,
        max_rows: None,
        new_run: true,
        options: &options,
        kind: "meetings",
        job: &webex_bulk::kinds::meetings::MeetingsJob,
        now: chrono::Utc::now(),
        recipe: None,
        only_lines: None,
        sheet: None,
    };
    webex_bulk::ingest::ingest(&mut store, csv, &opts, |_| {})
        .unwrap()
        .0
}

/// Runs `body` on a multi-threaded runtime with a temporary folder holding a
/// generated meetings CSV of `n` rows.
pub fn with_csv<F, Fut>(n: usize, body: F)
where
    F: FnOnce(tempfile::TempDir, std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("meetings.csv");
    write_meetings_csv(&csv, n);
    rt.block_on(body(dir, csv));
}

/// The bundled simulator on a free loopback port.
pub async fn start_sim(config: webex_bulk::sim::SimConfig) -> webex_bulk::sim::SimHandle {
    webex_bulk::sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

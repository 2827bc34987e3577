//! `webex-bulk demo`: the meetings sample, through the real engine, against
//! the bundled simulator, which misbehaves on purpose (429s, an expiring
//! token, 5xx, dropped connections), so the user sees the engine cope.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::app::{execute, fail, Exit, Failure, RunPlan, Source};
use crate::auth::EnvCredentials;
use crate::cli::DemoArgs;
use crate::csvin::normalize_header;
use crate::sim::{self, SimConfig};

/// The meetings sample, built into the binary.
pub const MEETINGS_SAMPLE: &str = include_str!("../samples/meetings.csv");

/// Moves the `start`/`end` cells of a meetings CSV forward by whole weeks
/// (weekdays and times of day stay) so that the earliest start is at least
/// a day after `now`. The sample's dates are fixed; this keeps it valid on
/// any day it is run.
pub fn rebase_dates(csv_text: &str, now: DateTime<Utc>) -> Result<String, String> {
    let mut reader = csv::ReaderBuilder::new().from_reader(csv_text.as_bytes());
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    let cols: Vec<usize> = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| matches!(normalize_header(h).as_str(), "start" | "end"))
        .map(|(i, _)| i)
        .collect();
    let records: Vec<csv::StringRecord> = reader
        .records()
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let naive = |s: &str| NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M").ok();
    let earliest = records
        .iter()
        .flat_map(|r| cols.iter().filter_map(|c| r.get(*c).and_then(naive)))
        .min();
    let shift = match earliest {
        Some(e) => {
            let wanted = (now + chrono::Duration::days(1)).naive_utc();
            let gap = wanted - e;
            if gap <= chrono::Duration::zero() {
                chrono::Duration::zero()
            } else {
                chrono::Duration::weeks(gap.num_weeks() + 1)
            }
        }
        None => chrono::Duration::zero(),
    };
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    writer.write_record(&headers).map_err(|e| e.to_string())?;
    for r in &records {
        let row: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| match (cols.contains(&i), naive(cell)) {
                (true, Some(t)) => (t + shift).format("%Y-%m-%d %H:%M").to_string(),
                _ => cell.to_owned(),
            })
            .collect();
        writer.write_record(&row).map_err(|e| e.to_string())?;
    }
    String::from_utf8(writer.into_inner().map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

/// The simulator as the demo sets it up: a rate limit below our rate (so
/// some 429s), tokens that expire every 40 requests and rotate, a few 5xx
/// and dropped connections, a little latency.
pub fn demo_sim_config() -> SimConfig {
    SimConfig {
        rate_limit: Some(12.0),
        retry_after_secs: 1,
        token_max_requests: Some(40),
        rotate_refresh_tokens: true,
        fail_rate: 0.04,
        drop_rate: 0.05,
        latency: Duration::from_millis(40),
        seed: 5,
        ..SimConfig::default()
    }
}

/// The demo's settle window: its simulator has no slow creates, so a
/// create's unknown outcome is settled as soon as it is answered.
const DEMO_SETTLE: Duration = Duration::from_secs(2);

pub async fn demo(args: DemoArgs) -> Result<Exit, Failure> {
    let dir = match prepare_dir(args.keep.as_deref()) {
        Ok(d) => d,
        Err(e) => return Err(fail(Exit::Usage, e)),
    };
    let config = demo_sim_config();
    let faults = format!(
        "429s above {} requests/s, tokens that expire every {} requests, {:.0}% 5xx, {:.0}% dropped connections",
        config.rate_limit.unwrap_or(f64::INFINITY),
        config.token_max_requests.unwrap_or(u64::MAX),
        config.fail_rate * 100.0,
        config.drop_rate * 100.0
    );
    let env = EnvCredentials {
        access_token: config.access_tokens.first().cloned().map(Into::into),
        refresh_token: config.refresh_tokens.first().cloned().map(Into::into),
        client_id: Some(config.client_id.clone()),
        client_secret: Some(config.client_secret.clone().into()),
    };
    let handle = match sim::start(config, "127.0.0.1:0".parse().expect("address")).await {
        Ok(h) => h,
        Err(e) => {
            return Err(fail(
                Exit::Usage,
                format!("cannot start the simulator: {e}"),
            ))
        }
    };
    let sample = dir.join("meetings.csv");
    let text = match rebase_dates(MEETINGS_SAMPLE, Utc::now()) {
        Ok(t) => t,
        Err(e) => {
            return Err(fail(
                Exit::Usage,
                format!("the built-in sample is broken: {e}"),
            ))
        }
    };
    if let Err(e) = std::fs::write(&sample, text) {
        return Err(fail(
            Exit::Usage,
            format!("cannot write {}: {e}", sample.display()),
        ));
    }
    eprintln!(
        "webex-bulk demo: simulator at {} ({faults})",
        handle.base_url()
    );
    eprintln!(
        "webex-bulk demo: running {} with --rate auto (start at 5/s, find the limit), up to {} in flight (adaptive) and --settle {}\n\
         (the demo's simulator finishes every create before it answers, so a short settle window is safe here;\n \
         against Webex keep the default of {} s: see \"How it stays safe\" in the README)\n",
        sample.display(),
        crate::engine::DEFAULT_CONCURRENCY,
        DEMO_SETTLE.as_secs(),
        crate::settle::DEFAULT_SETTLE.as_secs()
    );
    let db = dir.join("webex-bulk.db");
    let plan = RunPlan {
        db: db.clone(),
        source: Source::File {
            kind: crate::kinds::Kind::name(&crate::kinds::meetings::Meetings).to_owned(),
            path: sample,
            recipe: None,
            date_order: None,
            only_lines: None,
            sheet: None,
            encoding: crate::csvin::Encoding::Utf8,
            delimiter: None,
            limit: None,
            strict: false,
            max_rows: None,
            new_run: false,
        },
        base_url: Some(handle.base_url()),
        // The defaults, as a first run would have them.
        concurrency: None,
        rate: Some("auto".into()),
        max_attempts: Some(8),
        settle: Some(DEMO_SETTLE),
        // Its simulator answers in milliseconds; the window is as long.
        timeout: DEMO_SETTLE,
        progress: args.progress,
        home: dir.join("home"),
        profile: "default".into(),
        env,
        api: crate::cli::ApiArgs::default(),
    };
    let (ctrl_c, _guard) = crate::app::ctrl_c_shutdown();
    let result = execute(plan, ctrl_c).await;
    let stats = handle.stats();
    handle.shutdown().await;
    let result = result?;
    let run_id = result.run_id;
    let report = dir.join("report.csv");
    if let Ok(store) = crate::store::Store::open(&db) {
        if let Ok(Some(run)) = store.run(run_id) {
            if let Ok(file) = std::fs::File::create(&report) {
                let _ = crate::report::write_report(
                    &store,
                    &run,
                    &crate::kinds::meetings::Meetings,
                    false,
                    std::io::BufWriter::new(file),
                );
            }
        }
    }
    println!(
        "simulator saw: {} requests, {} meetings created, {} duplicates, {} answered 429 ({} early), {} token refreshes, {} injected 5xx, {} dropped connections",
        stats.requests, stats.creates, stats.duplicates, stats.rate_limited, stats.early_requests, stats.refreshes, stats.injected_failures, stats.dropped
    );
    println!("report: {}", report.display());
    println!("try:    webex-bulk status --db {}", db.display());
    Ok(result.exit)
}

fn prepare_dir(keep: Option<&Path>) -> Result<PathBuf, String> {
    match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            if dir.join("webex-bulk.db").exists() {
                return Err(format!(
                    "{} already holds a demo database; choose an empty folder",
                    dir.display()
                ));
            }
            Ok(dir.to_owned())
        }
        None => tempfile::Builder::new()
            .prefix("webex-bulk-demo-")
            .tempdir()
            .map(|d| d.keep())
            .map_err(|e| format!("cannot create a temporary folder: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebasing_keeps_weekday_and_time_and_lands_in_the_future() {
        let now = DateTime::parse_from_rfc3339("2031-06-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let out = rebase_dates(
            "title,Start,duration\na,2027-01-11 14:00,30\nb,2027-01-12 09:30,30\n",
            now,
        )
        .unwrap();
        let mut lines = out.lines().skip(1);
        let a = lines.next().unwrap().split(',').nth(1).unwrap().to_owned();
        let t = NaiveDateTime::parse_from_str(&a, "%Y-%m-%d %H:%M").unwrap();
        assert!(
            t > now.naive_utc() + chrono::Duration::days(1)
                && t < now.naive_utc() + chrono::Duration::days(9),
            "{t}"
        );
        assert_eq!(t.format("%a %H:%M").to_string(), "Mon 14:00");
        // A sample already in the future is left alone.
        let early = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(rebase_dates("start\n2027-01-11 14:00\n", early)
            .unwrap()
            .contains("2027-01-11 14:00"));
    }

    #[test]
    fn the_built_in_sample_is_valid_today() {
        let text = rebase_dates(MEETINGS_SAMPLE, Utc::now()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        std::fs::write(&path, text).unwrap();
        let mut problems = Vec::new();
        let scan = crate::ingest::scan_job(
            &path,
            crate::ingest::Reading {
                encoding: crate::csvin::Encoding::Utf8,
                delimiter: None,
                only: None,
                sheet: None,
            },
            &crate::kinds::meetings::MeetingsJob,
            Utc::now(),
            |_, _, _| Ok(()),
            |p| problems.push(p.clone()),
        )
        .unwrap();
        assert_eq!((scan.rows, scan.valid), (50, 50), "{problems:#?}");
    }
}

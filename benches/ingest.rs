//! Benchmark 1: a generated meetings CSV validated and queued into a fresh
//! database. Prints rows per second and peak RSS (which must not grow with
//! the file). `BENCH_ROWS` overrides the default 1,000,000 rows.

mod common;

use std::time::Instant;

use webex_bulk::csvin::Encoding;
use webex_bulk::ingest::{ingest, IngestOptions};
use webex_bulk::store::Store;

fn main() {
    let n = common::rows(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("meetings.csv");
    common::write_meetings_csv(&csv, n);
    let size_mb = std::fs::metadata(&csv).unwrap().len() as f64 / 1e6;

    common::reset_peak_rss();
    let started = Instant::now();
    let db = dir.path().join("bench.db");
    let mut store = Store::open(&db).unwrap();
    let options = serde_json::json!({});
    let opts = IngestOptions {
        encoding: Encoding::Utf8,
        strict: false,
        max_rows: None,
        new_run: false,
        options: &options,
        job: webex_bulk::ingest::Job::Meetings {
            now: chrono::Utc::now(),
        },
    };
    let (_, scan) = ingest(&mut store, &csv, &opts, |p| {
        assert_ne!(p.severity, webex_bulk::csvin::Severity::Error, "{p:?}")
    })
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(scan.valid as usize, n);
    let peak = common::peak_rss_mb()
        .map(|m| format!("{m:.1} MB"))
        .unwrap_or_else(|| "n/a".into());
    println!("bench ingest: cores {}", common::cores());
    println!("bench ingest: rows {n} ({size_mb:.0} MB of CSV)");
    println!("bench ingest: seconds {secs:.2}");
    println!("bench ingest: rows_per_second {:.0}", n as f64 / secs);
    println!("bench ingest: peak_rss {peak}");
    let on_disk: u64 = ["", "-wal", "-journal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    println!("bench ingest: database {:.0} MB", on_disk as f64 / 1e6);
}

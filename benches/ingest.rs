//! Benchmark 1: a generated meetings CSV validated and queued into a fresh
//! database. Prints rows per second and peak RSS, for the file and for one a
//! tenth of its size (the two peaks show that memory does not grow with the
//! file). `BENCH_ROWS` overrides the default 1,000,000 rows.

mod common;

use std::path::Path;
use std::time::Instant;

use webex_bulk::csvin::Encoding;
use webex_bulk::ingest::{ingest, IngestOptions};
use webex_bulk::store::Store;

/// What queueing one file took.
struct Figures {
    seconds: f64,
    peak_rss_mb: Option<f64>,
    database_bytes: u64,
}

/// Generates `n` rows in `dir` and queues them into a fresh database there.
fn queue(dir: &Path, n: usize) -> Figures {
    let csv = dir.join(format!("meetings-{n}.csv"));
    common::write_meetings_csv(&csv, n);
    let db = dir.join(format!("bench-{n}.db"));

    common::reset_peak_rss();
    let started = Instant::now();
    let mut store = Store::open(&db).unwrap();
    let options = serde_json::json!({});
    let opts = IngestOptions {
        encoding: Encoding::Utf8,
        delimiter: Some(b','),
        strict: false,
        max_rows: None,
        new_run: false,
        options: &options,
        kind: "meetings",
        job: &webex_bulk::kinds::meetings::MeetingsJob,
        now: chrono::Utc::now(),
        recipe: None,
        only_lines: None,
        sheet: None,
    };
    let (_, scan) = ingest(&mut store, &csv, &opts, |p| {
        assert_ne!(p.severity, webex_bulk::csvin::Severity::Error, "{p:?}")
    })
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(scan.valid as usize, n);
    let peak_rss_mb = common::peak_rss_mb();
    drop(store);
    let database_bytes = ["", "-wal", "-journal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    std::fs::remove_file(&csv).unwrap();
    Figures {
        seconds,
        peak_rss_mb,
        database_bytes,
    }
}

fn main() {
    let n = common::rows(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let tenth = queue(dir.path(), n / 10);
    let full = queue(dir.path(), n);
    let mb = |f: &Figures| {
        f.peak_rss_mb
            .map(|m| format!("{m:.1} MB"))
            .unwrap_or_else(|| "n/a".into())
    };
    println!("bench ingest: cores {}", common::cores());
    println!("bench ingest: rows {n}");
    println!("bench ingest: seconds {:.2}", full.seconds);
    println!(
        "bench ingest: rows_per_second {:.0}",
        n as f64 / full.seconds
    );
    println!("bench ingest: peak_rss {}", mb(&full));
    println!("bench ingest: peak_rss_at_{}_rows {}", n / 10, mb(&tenth));
    println!(
        "bench ingest: database {:.0} MB ({:.0} bytes per row)",
        full.database_bytes as f64 / 1e6,
        full.database_bytes as f64 / n as f64
    );
}

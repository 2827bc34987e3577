//! Benchmark 4: resume. A 100,000-row run is killed (SIGKILL) half way; then
//! the time from starting `webex-bulk run --resume` to its first request
//! reaching the simulator. The resumed run is let finish and checked: every
//! meeting exactly once. `BENCH_ROWS` overrides the row count.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use webex_bulk::sim::SimConfig;

fn main() {
    let n = common::rows(100_000);
    common::with_csv(n, |dir, csv| async move {
        let sim = common::start_sim(SimConfig::default()).await;
        let db = dir.path().join("bench.db");
        let base = sim.base_url();
        let command = |args: &[&str]| {
            let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_webex-bulk"));
            c.args(args)
                .args([
                    "--db",
                    db.to_str().unwrap(),
                    "--base-url",
                    &base,
                    "--progress",
                    "none",
                    "--rate",
                    "unlimited",
                    "--concurrency",
                    "64",
                    // The simulator finishes every create before it answers,
                    // so the rows in flight at the kill settle at once; the
                    // default window (120 s) would only add a wait at the end.
                    "--settle",
                    "2",
                ])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("WEBEX_BULK_HOME", dir.path().join("home"))
                .env("WEBEX_ACCESS_TOKEN", "sim-access-token")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            c
        };
        let mut first = command(&["run", "meetings", csv.to_str().unwrap()])
            .spawn()
            .unwrap();
        while (sim.stats().creates as usize) < n / 2 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        first.start_kill().unwrap();
        first.wait().await.unwrap();
        let created_before = sim.stats().creates;

        let requests_before = sim.stats().requests;
        let started = Instant::now();
        let mut resume = command(&["run", "--resume"]).spawn().unwrap();
        while sim.stats().requests == requests_before {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let to_first = started.elapsed();
        let status = resume.wait().await.unwrap();
        let total = started.elapsed();
        assert!(status.success());
        let stats = sim.stats();
        assert_eq!(stats.creates as usize, n, "every meeting created");
        assert_eq!(stats.duplicates, 0, "none twice");
        println!("bench resume: cores {}", common::cores());
        println!("bench resume: rows {n}, killed after {created_before} creates");
        println!(
            "bench resume: seconds_to_first_request {:.3}",
            to_first.as_secs_f64()
        );
        println!("bench resume: seconds_to_finish {:.1}", total.as_secs_f64());
    });
}

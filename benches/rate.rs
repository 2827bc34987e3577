//! Benchmark 3: riding the rate limit. The simulator allows 20 requests/s
//! (429 with Retry-After: 1 beyond that); 1,000 rows with `--rate auto`.
//! Prints the achieved rate as a share of the limit and the share of requests
//! answered 429. `BENCH_ROWS` overrides the row count.

mod common;

use std::time::{Duration, Instant};

use webex_bulk::app::{execute, Source};
use webex_bulk::sim::SimConfig;

const LIMIT: f64 = 20.0;

fn main() {
    let n = common::rows(1_000);
    common::with_csv(n, |dir, csv| async move {
        let config = SimConfig {
            rate_limit: Some(LIMIT),
            retry_after_secs: 1,
            latency: Duration::from_millis(20),
            ..SimConfig::default()
        };
        let sim = common::start_sim(config).await;
        common::queue(dir.path(), &csv);
        let plan = common::plan(
            dir.path(),
            Source::Resume {
                run: None,
                retry_failed: false,
            },
            sim.base_url(),
            "auto",
            8,
        );
        let started = Instant::now();
        let result = execute(plan, std::future::pending())
            .await
            .expect("the run");
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(result.exit, webex_bulk::app::Exit::Ok);
        let stats = sim.stats();
        assert_eq!(stats.creates as usize, n);
        println!("bench rate: cores {}", common::cores());
        println!("bench rate: rows {n}, server limit {LIMIT}/s, Retry-After 1 s");
        println!("bench rate: seconds {secs:.1}");
        println!(
            "bench rate: achieved_share_of_limit {:.3}",
            n as f64 / secs / LIMIT
        );
        println!(
            "bench rate: share_answered_429 {:.4} ({} of {} requests; {} early)",
            stats.rate_limited as f64 / stats.requests as f64,
            stats.rate_limited,
            stats.requests,
            stats.early_requests
        );
    });
}

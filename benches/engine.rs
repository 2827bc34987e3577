//! Benchmark 2: engine overhead. 100,000 meetings against the bundled
//! simulator on loopback (no rate limit, no latency), concurrency 64, every
//! row's intent durable before its request; compared with a bare baseline in
//! the same run: the same HTTP client firing the same requests at the same
//! simulator with no queue. `BENCH_ROWS` overrides the row count.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use webex_bulk::app::{execute, Source};
use webex_bulk::sim::SimConfig;
use webex_bulk::webex::{check_base_url, new_tracking_id, Client};

const CONCURRENCY: usize = 64;

fn main() {
    let n = common::rows(100_000);
    common::with_csv(n, |dir, csv| async move {
        // Baseline: the client alone, 64 requests in flight, no queue.
        let skip_baseline = std::env::var_os("BENCH_SKIP_BASELINE").is_some();
        let sim = common::start_sim(SimConfig::default()).await;
        let client = Client::new(
            check_base_url(&sim.base_url()).unwrap(),
            Duration::from_secs(60),
        );
        let token = Arc::new(secrecy::SecretString::from("sim-access-token".to_owned()));
        let bodies = if skip_baseline {
            Vec::new()
        } else {
            request_bodies(&csv, n)
        };
        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let bodies = Arc::new(bodies);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENCY {
            let (client, token, next, bodies) =
                (client.clone(), token.clone(), next.clone(), bodies.clone());
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    client
                        .create_meeting(&token, body, &new_tracking_id())
                        .await
                        .expect("baseline create");
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        let baseline = bodies.len() as f64 / started.elapsed().as_secs_f64();
        assert_eq!(sim.stats().creates as usize, bodies.len());
        sim.shutdown().await;

        // The engine: queue first (not timed), then carry the run out.
        let sim = common::start_sim(SimConfig::default()).await;
        common::queue(dir.path(), &csv);
        let plan = common::plan(
            dir.path(),
            Source::Resume {
                run: None,
                retry_failed: false,
            },
            sim.base_url(),
            "unlimited",
            CONCURRENCY as u16,
        );
        let started = Instant::now();
        let cpu_before = common::cpu_seconds();
        let result = execute(plan, std::future::pending()).await;
        let engine = n as f64 / started.elapsed().as_secs_f64();
        let cpu = cpu_before.and_then(|b| Some(common::cpu_seconds()? - b));
        assert_eq!(result.code, 0);
        assert_eq!(sim.stats().creates as usize, n);
        assert_eq!(sim.stats().duplicates, 0);

        println!("bench engine: cores {}", common::cores());
        println!("bench engine: rows {n}, concurrency {CONCURRENCY}");
        println!("bench engine: baseline_rows_per_second {baseline:.0}");
        println!("bench engine: engine_rows_per_second {engine:.0}");
        println!("bench engine: ratio_to_baseline {:.2}", engine / baseline);
        if let Some(cpu) = cpu {
            // Engine, simulator and HTTP on both sides: what a row costs the machine.
            println!(
                "bench engine: cpu_microseconds_per_row {:.1}",
                cpu * 1e6 / n as f64
            );
        }
    });
}

/// The bodies the engine would send, with distinct integration tags.
fn request_bodies(csv: &std::path::Path, n: usize) -> Vec<String> {
    let mut bodies = Vec::with_capacity(n);
    webex_bulk::ingest::scan(
        csv,
        webex_bulk::csvin::Encoding::Utf8,
        chrono::Utc::now(),
        |line, _, req| {
            let mut req = req.expect("valid");
            req.integration_tags = vec![webex_bulk::ingest::integration_tag("baseline", line)];
            bodies.push(serde_json::to_string(&req).unwrap());
            Ok(())
        },
        |_| {},
    )
    .unwrap();
    bodies
}

//! Benchmark 2: engine overhead. 100,000 meetings against the bundled
//! simulator on loopback (no rate limit, no latency), concurrency 64, every
//! row's intent durable before its request; compared with a bare baseline:
//! the same HTTP client firing the same requests at the same simulator with
//! no queue. The two alternate for a few rounds (a shared machine's speed
//! drifts; a ratio of neighbours is steadier) and the medians are printed.
//! `BENCH_ROWS` and `BENCH_ROUNDS` override the defaults (100,000 and 3).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use webex_bulk::app::{execute, Source};
use webex_bulk::sim::SimConfig;
use webex_bulk::webex::{check_base_url, new_tracking_id, Client};

const CONCURRENCY: usize = 64;

/// One measured pass.
#[derive(Clone, Copy)]
struct Pass {
    rows_per_second: f64,
    /// CPU of the whole process (client or engine, and the simulator) per row.
    cpu_us_per_row: Option<f64>,
}

fn main() {
    let n = common::rows(100_000);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    common::with_csv(n, |dir, csv| async move {
        let bodies = Arc::new(request_bodies(&csv, n));
        println!("bench engine: cores {}", common::cores());
        println!("bench engine: rows {n}, concurrency {CONCURRENCY}, rounds {rounds}");
        let mut passes = Vec::new();
        for round in 1..=rounds {
            let baseline = baseline(&bodies).await;
            let folder = dir.path().join(format!("round-{round}"));
            std::fs::create_dir(&folder).unwrap();
            let engine = engine(&folder, &csv, n).await;
            println!(
                "bench engine: round {round}: baseline {:.0} rows/s, engine {:.0} rows/s, ratio {:.2}",
                baseline.rows_per_second,
                engine.rows_per_second,
                engine.rows_per_second / baseline.rows_per_second
            );
            passes.push((baseline, engine));
        }
        let median = |f: &dyn Fn(&(Pass, Pass)) -> Option<f64>| {
            let mut v: Vec<f64> = passes.iter().filter_map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        println!(
            "bench engine: baseline_rows_per_second {:.0}",
            median(&|p| Some(p.0.rows_per_second))
        );
        println!(
            "bench engine: engine_rows_per_second {:.0}",
            median(&|p| Some(p.1.rows_per_second))
        );
        println!(
            "bench engine: ratio_to_baseline {:.2}",
            median(&|p| Some(p.1.rows_per_second / p.0.rows_per_second))
        );
        // What a row costs the machine (client or engine, HTTP, simulator).
        println!(
            "bench engine: cpu_microseconds_per_row baseline {:.1}, engine {:.1}",
            median(&|p| p.0.cpu_us_per_row),
            median(&|p| p.1.cpu_us_per_row)
        );
    });
}

/// Times `work` over `n` rows: rows per second and CPU per row.
async fn measure(n: usize, work: impl std::future::Future<Output = ()>) -> Pass {
    let cpu_before = common::cpu_seconds();
    let started = Instant::now();
    work.await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_before.and_then(|b| Some(common::cpu_seconds()? - b));
    Pass {
        rows_per_second: n as f64 / seconds,
        cpu_us_per_row: cpu.map(|c| c * 1e6 / n as f64),
    }
}

/// The client alone, 64 requests in flight, no queue.
async fn baseline(bodies: &Arc<Vec<String>>) -> Pass {
    let sim = common::start_sim(SimConfig::default()).await;
    let client = Client::new(
        check_base_url(&sim.base_url()).unwrap(),
        Duration::from_secs(60),
    );
    let token = Arc::new(secrecy::SecretString::from("sim-access-token".to_owned()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pass = measure(bodies.len(), async {
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
    })
    .await;
    assert_eq!(sim.stats().creates as usize, bodies.len());
    sim.shutdown().await;
    pass
}

/// The engine: the file queued first (not timed), then the run carried out.
async fn engine(folder: &Path, csv: &Path, n: usize) -> Pass {
    let sim = common::start_sim(SimConfig::default()).await;
    common::queue(folder, csv);
    let plan = common::plan(
        folder,
        Source::Resume {
            run: None,
            retry_failed: false,
        },
        sim.base_url(),
        "unlimited",
        CONCURRENCY as u16,
    );
    let mut code = None;
    let pass = measure(n, async {
        code = Some(
            execute(plan, std::future::pending())
                .await
                .expect("the run")
                .exit,
        );
    })
    .await;
    assert_eq!(code, Some(webex_bulk::app::Exit::Ok));
    assert_eq!(sim.stats().creates as usize, n);
    assert_eq!(sim.stats().duplicates, 0);
    sim.shutdown().await;
    pass
}

/// The bodies the engine would send, with distinct integration tags: each
/// row's request rebuilt from its cells, as the engine does.
fn request_bodies(csv: &Path, n: usize) -> Vec<String> {
    let mut reader = csv::Reader::from_path(csv).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = webex_bulk::kinds::meetings::MeetingRows::new(&header, "baseline").unwrap();
    let mut bodies = Vec::with_capacity(n);
    for (i, record) in reader.records().enumerate() {
        let cells: Vec<String> = record.unwrap().iter().map(str::to_owned).collect();
        // The file has no blank lines: line = record + 2 (the header is line 1).
        let req = rows.request(i as i64 + 2, &cells).expect("valid");
        bodies.push(serde_json::to_string(&req).unwrap());
    }
    bodies
}

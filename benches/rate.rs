//! Benchmark 3: riding the rate limit with default options (`--rate auto`,
//! the default `--concurrency`), against a simulator that allows 20
//! requests/s (a token bucket, 429 with a Retry-After window beyond that):
//!
//! 1. no latency, 300 rows and 1,000 rows;
//! 2. 0.5 to 1.5 s per request (uniform, seeded), 600 rows;
//! 3. 0.2 s per request, Retry-After 10 s, 600 rows: the time against
//!    rows / limit + one Retry-After;
//! 4. no latency, 1,000 rows; the limit drops to 10/s after 20 s and goes
//!    back to 20/s after 40 s: the share of the limit in each phase.
//!
//! Servers differ in two ways that matter here, so the scenarios run
//! against several: the bucket's burst (a second's worth, 20, or the 5 of
//! the server the issue measured), and when the limit is decided: after
//! each request's latency (`after`: a 429 takes as long as an answer, and
//! every request on its way when a window opens is refused) or on arrival
//! (`arrival`: a gateway in front of slow work answers 429 at once).
//!
//! Each prints the share of the limit, the share of requests answered 429,
//! the early requests (sent inside a Retry-After window) and the most
//! requests in flight. `BENCH_ONLY=2` runs one scenario.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use webex_bulk::app::{execute, Source};
use webex_bulk::sim::{SimConfig, SimStats};

const LIMIT: f64 = 20.0;

/// A server's shape: its burst (`None`: a second's worth) and whether it
/// decides on arrival.
#[derive(Clone, Copy)]
struct Shape {
    burst: Option<f64>,
    on_arrival: bool,
}

impl Shape {
    const fn new(burst: Option<f64>, on_arrival: bool) -> Shape {
        Shape { burst, on_arrival }
    }

    fn name(&self) -> String {
        format!(
            "burst {}, {}",
            self.burst.unwrap_or(LIMIT),
            if self.on_arrival { "arrival" } else { "after" }
        )
    }

    fn config(&self, config: SimConfig) -> SimConfig {
        SimConfig {
            rate_burst: self.burst,
            rate_limit_on_arrival: self.on_arrival,
            ..config
        }
    }
}

/// The bench's first server, the same deciding on arrival, and the two
/// with the burst of the server the issue measured.
const SECOND_AFTER: Shape = Shape::new(None, false);
const SECOND_ARRIVAL: Shape = Shape::new(None, true);
const FIVE_AFTER: Shape = Shape::new(Some(5.0), false);
const FIVE_ARRIVAL: Shape = Shape::new(Some(5.0), true);

fn main() {
    let only: Option<u32> = std::env::var("BENCH_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    let wanted = |n: u32| only.is_none_or(|o| o == n);
    common::with_csv(0, |dir, _| async move {
        println!("bench rate: cores {}", common::cores());
        println!(
            "bench rate: server limit {LIMIT}/s, default options; each scenario names the server's burst and where it decides"
        );
        if wanted(1) {
            // Without latency, when the limit is decided makes no difference.
            for shape in [SECOND_AFTER, FIVE_AFTER] {
                for rows in [300, 1_000] {
                    let config = shape.config(SimConfig {
                        rate_limit: Some(LIMIT),
                        retry_after_secs: 1,
                        ..SimConfig::default()
                    });
                    let (secs, stats, _) = ride(dir.path(), "1", rows, config, &[]).await;
                    let name = format!("1 no latency, {rows} rows, {}", shape.name());
                    print_common(&name, rows, secs, &stats);
                    println!(
                        "bench rate: {name}: share_of_limit {:.3}",
                        rows as f64 / secs / LIMIT
                    );
                }
            }
        }
        if wanted(2) {
            let rows = 600;
            for shape in [SECOND_AFTER, SECOND_ARRIVAL, FIVE_AFTER, FIVE_ARRIVAL] {
                let config = shape.config(SimConfig {
                    rate_limit: Some(LIMIT),
                    retry_after_secs: 1,
                    latency: Duration::from_millis(500),
                    latency_max: Some(Duration::from_millis(1500)),
                    ..SimConfig::default()
                });
                let (secs, stats, _) = ride(dir.path(), "2", rows, config, &[]).await;
                let name = format!("2 latency 0.5-1.5 s, 600 rows, {}", shape.name());
                print_common(&name, rows, secs, &stats);
                println!(
                    "bench rate: {name}: share_of_limit {:.3}",
                    rows as f64 / secs / LIMIT
                );
                if !shape.on_arrival {
                    // Each request sent before the client hears of the
                    // first 429 and decided inside its window is refused:
                    // at the limit, limit x E[min(latency, window)].
                    let floor = LIMIT * 0.875;
                    println!(
                        "bench rate: {name}: one 429 window refuses at least {floor:.1} requests here ({:.1}% of {})",
                        100.0 * floor / (rows as f64 + floor),
                        rows as f64 + floor
                    );
                    let (rate, share, refused) = best_steady(shape, rows);
                    println!(
                        "bench rate: {name}: the best steady rate with at most 2% answered 429, knowing the server: {rate}/s, share_of_limit {share:.3}, {:.1}% answered 429",
                        100.0 * refused
                    );
                }
            }
        }
        if wanted(3) {
            let rows = 600;
            let retry = 10;
            for shape in [SECOND_AFTER, SECOND_ARRIVAL, FIVE_ARRIVAL] {
                let config = shape.config(SimConfig {
                    rate_limit: Some(LIMIT),
                    retry_after_secs: retry,
                    early_grace: Duration::from_secs(1),
                    latency: Duration::from_millis(200),
                    ..SimConfig::default()
                });
                let (secs, stats, _) = ride(dir.path(), "3", rows, config, &[]).await;
                let name = format!(
                    "3 latency 0.2 s, Retry-After 10 s, 600 rows, {}",
                    shape.name()
                );
                print_common(&name, rows, secs, &stats);
                let target = rows as f64 / LIMIT + retry as f64;
                println!(
                    "bench rate: {name}: seconds {secs:.1} against rows/limit + one Retry-After {target:.1}: ratio {:.3}",
                    secs / target
                );
            }
        }
        if wanted(4) {
            let rows = 1_000;
            let (drop_at, back_at) = (20.0, 40.0);
            let config = SimConfig {
                rate_limit: Some(LIMIT),
                retry_after_secs: 1,
                rate_limit_changes: vec![
                    (Duration::from_secs_f64(drop_at), LIMIT / 2.0),
                    (Duration::from_secs_f64(back_at), LIMIT),
                ],
                ..SimConfig::default()
            };
            let (secs, stats, at) = ride(dir.path(), "4", rows, config, &[drop_at, back_at]).await;
            let name = "4 limit 20/s, 10/s after 20 s, 20/s after 40 s, 1000 rows";
            print_common(name, rows, secs, &stats);
            let (c1, c2) = (at[0] as f64, at[1] as f64);
            println!(
                "bench rate: {name}: share_of_limit before the drop {:.3}, while 10/s {:.3}, after the return {:.3} (over {:.1} s)",
                c1 / drop_at / LIMIT,
                (c2 - c1) / (back_at - drop_at) / (LIMIT / 2.0),
                (rows as f64 - c2) / (secs - back_at) / LIMIT,
                secs - back_at
            );
        }
    });
}

fn print_common(name: &str, rows: usize, secs: f64, stats: &SimStats) {
    println!(
        "bench rate: {name}: seconds {secs:.1}, share_answered_429 {:.4} ({} of {} requests), early {}, max_in_flight {}",
        stats.rate_limited as f64 / stats.requests as f64,
        stats.rate_limited,
        stats.requests,
        stats.early_requests,
        stats.max_in_flight
    );
    assert_eq!(stats.creates as usize, rows);
}

/// Runs `rows` rows with default options against a simulator configured so;
/// returns the seconds, the simulator's counters, and the meetings created
/// by each of the times `marks` (seconds from the start).
async fn ride(
    dir: &Path,
    name: &str,
    rows: usize,
    config: SimConfig,
    marks: &[f64],
) -> (f64, SimStats, Vec<u64>) {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    let folder = dir.join(format!("scenario-{name}-{rows}-{n}"));
    std::fs::create_dir_all(&folder).unwrap();
    let csv = folder.join("meetings.csv");
    common::write_meetings_csv(&csv, rows);
    let sim = Arc::new(common::start_sim(config).await);
    common::queue(&folder, &csv);
    let mut plan = common::plan(
        &folder,
        Source::Resume {
            run: None,
            retry_failed: false,
        },
        sim.base_url(),
        "auto",
        8,
    );
    // The defaults, as a new user runs it.
    plan.rate = None;
    plan.concurrency = None;
    plan.max_attempts = None;
    let started = Instant::now();
    let counts: Arc<Vec<AtomicU64>> = Arc::new(marks.iter().map(|_| AtomicU64::new(0)).collect());
    let watcher = {
        let (sim, counts, marks) = (sim.clone(), counts.clone(), marks.to_vec());
        tokio::spawn(async move {
            for (i, at) in marks.iter().enumerate() {
                tokio::time::sleep_until((started + Duration::from_secs_f64(*at)).into()).await;
                counts[i].store(sim.stats().creates, Ordering::Relaxed);
            }
        })
    };
    let result = execute(plan, std::future::pending())
        .await
        .expect("the run");
    let secs = started.elapsed().as_secs_f64();
    watcher.abort();
    assert_eq!(result.exit, webex_bulk::app::Exit::Ok);
    let at = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    (secs, sim.stats(), at)
}

/// What the best client that knew the server could do in scenario 2: the
/// steady rate (whole requests per second up to the limit) with the highest
/// share of the limit among those with at most 2% answered 429, and that
/// share and 429 share (the mean of three seeds). A model of the
/// simulator at 1 ms steps: latency uniform in 0.5-1.5 s, the bucket and a
/// 1 s window decided after the latency, and a client that pauses for the
/// Retry-After on each 429.
fn best_steady(shape: Shape, rows: usize) -> (u32, f64, f64) {
    let burst = shape.burst.unwrap_or(LIMIT);
    let one = |rate: f64, seed: u64| -> (f64, f64) {
        let mut rng = seed.wrapping_mul(6364136223846793005) | 1;
        let mut uniform = move || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut t, mut next, mut paused_until, mut window_until) = (0.0f64, 0.0, 0.0, -1.0);
        let (mut tokens, mut refilled_at) = (burst, 0.0f64);
        let (mut ok, mut refused, mut sent) = (0usize, 0usize, 0usize);
        let mut due = std::collections::BinaryHeap::new();
        while ok < rows {
            t += 0.001;
            while let Some(std::cmp::Reverse(at)) = due.peek().copied() {
                if at > (t * 1e6) as u64 {
                    break;
                }
                due.pop();
                let at = at as f64 / 1e6;
                tokens = (tokens + (at - refilled_at) * LIMIT).min(burst);
                refilled_at = at;
                if at < window_until {
                    refused += 1;
                } else if tokens >= 1.0 {
                    tokens -= 1.0;
                    ok += 1;
                    continue;
                } else {
                    window_until = at + 1.0;
                    refused += 1;
                }
                paused_until = f64::max(paused_until, at + 1.0);
            }
            if t >= paused_until && t >= next {
                sent += 1;
                next = t + 1.0 / rate;
                let latency = 0.5 + uniform();
                due.push(std::cmp::Reverse(((t + latency) * 1e6) as u64));
            }
        }
        (rows as f64 / t / LIMIT, refused as f64 / sent as f64)
    };
    let mut best = (0, 0.0, 0.0);
    for rate in 5..=LIMIT as u32 {
        let runs: Vec<(f64, f64)> = (1..=3).map(|seed| one(rate as f64, seed)).collect();
        let share = runs.iter().map(|r| r.0).sum::<f64>() / 3.0;
        let refused = runs.iter().map(|r| r.1).sum::<f64>() / 3.0;
        if refused <= 0.02 && share > best.1 {
            best = (rate, share, refused);
        }
    }
    best
}

//! Exactly once when Webex is slower than we are: creates that the server
//! finishes after the client gave up (a timeout, a killed process), repairs of
//! duplicates, and `verify`.

use std::time::Duration;

use webex_bulk::sim::{SimConfig, SimHandle};

use crate::util::*;

/// A server on which a share of creates take `delay` before the meeting exists.
async fn slow_sim(share: f64, delay: Duration, seed: u64) -> SimHandle {
    start_sim(SimConfig {
        slow_create_rate: share,
        slow_create_delay: delay,
        seed,
        ..SimConfig::default()
    })
    .await
}

/// Waits until the server has finished every create it started: only then
/// does "exactly once" mean anything.
async fn until_settled(sim: &SimHandle) {
    wait_until(Duration::from_secs(120), || {
        sim.stats().slow_creates_pending == 0
    })
    .await;
}

/// Once the server has finished every create it started: each of the run's
/// `rows` has exactly one meeting, and the report links exactly those.
async fn assert_one_meeting_per_row(sim: &SimHandle, work: &Work, rows: usize) {
    until_settled(sim).await;
    assert_each_created_once(sim, rows);
    let report = work.report(&[]).await;
    assert_report_links_every_meeting(sim, &report.stdout, rows);
}

/// The ids of the meetings the server holds, oldest first.
fn meeting_ids(sim: &SimHandle) -> Vec<String> {
    sim.meetings()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every succeeded row of the report links a meeting the server has, and
/// the server has no other meeting.
fn assert_report_links_every_meeting(sim: &SimHandle, report: &str, rows: usize) {
    let (headers, lines) = parse_report(report);
    let col = |n: &str| headers.iter().position(|h| h == n).unwrap();
    assert_eq!(lines.len(), rows);
    let mut linked: Vec<String> = lines
        .iter()
        .map(|r| {
            assert_eq!(r[col("status")], "succeeded", "{r:?}");
            r[col("meeting_id")].clone()
        })
        .collect();
    let mut held = meeting_ids(sim);
    linked.sort();
    held.sort();
    assert_eq!(
        linked, held,
        "the report links exactly the meetings that exist"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_slower_than_the_client_timeout_are_found_not_sent_twice() {
    // A quarter of the creates take 2.5 s on the server; we wait 1 s.
    let sim = slow_sim(0.25, Duration::from_millis(2_500), 11).await;
    let work = Work::new();
    let started = std::time::Instant::now();
    let out = work
        .run_meetings(
            &sim,
            &Env::sim(),
            "m.csv",
            &meetings_csv(60),
            &["--rate", "unlimited", "--timeout", "1", "--settle", "5"],
        )
        .await;
    eprintln!(
        "slow creates, --timeout 1: run took {:?}",
        started.elapsed()
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(sim.stats().slow_creates > 0, "{:?}", sim.stats());
    assert_one_meeting_per_row(&sim, &work, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_twice_while_slow_creates_are_under_way_every_row_has_one_meeting() {
    let sim = slow_sim(0.5, Duration::from_secs(2), 12).await;
    let work = Work::new();
    let started = std::time::Instant::now();
    let mut child = work.spawn_meetings(
        &sim,
        &meetings_csv(60),
        &["--rate", "unlimited", "--concurrency", "8", "--settle", "4"],
    );
    wait_until(Duration::from_secs(120), || {
        let s = sim.stats();
        s.creates >= 10 && s.slow_creates_pending > 0
    })
    .await;
    child.start_kill().unwrap(); // SIGKILL while the server still works on creates
    assert!(!child.wait().await.unwrap().success());

    // Resume at once, and kill that too while creates are under way.
    let before = sim.stats().requests;
    let mut resumed = work.spawn_resume(&sim, &[]);
    wait_until(Duration::from_secs(120), || {
        let s = sim.stats();
        s.requests >= before + 10 && s.slow_creates_pending > 0
    })
    .await;
    resumed.start_kill().unwrap();
    assert!(!resumed.wait().await.unwrap().success());

    let out = work.resume(&sim, &Env::sim(), &[]).await;
    eprintln!(
        "slow creates, killed twice: took {:?} in all",
        started.elapsed()
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_one_meeting_per_row(&sim, &work, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_meetings_for_one_tag_keep_one_and_the_report_says_so() {
    // Every create takes 5 s; we give up after 1 s and look again only
    // after the settle window. Meanwhile a second meeting with the first
    // row's tag appears (as a create that was sent twice would leave).
    let sim = slow_sim(1.0, Duration::from_secs(5), 13).await;
    let work = Work::new();
    let child = work.spawn_meetings(
        &sim,
        &meetings_csv(2),
        &["--rate", "unlimited", "--timeout", "1", "--settle", "20"],
    );
    wait_until(Duration::from_secs(60), || sim.meetings().len() == 2).await;
    let first = sim.meetings()[0]["id"].as_str().unwrap().to_owned();
    let copy = sim.duplicate_meeting(&first).unwrap();
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let ids = meeting_ids(&sim);
    assert!(ids.contains(&first), "the first created is kept: {ids:?}");
    assert!(!ids.contains(&copy), "the duplicate is removed: {ids:?}");
    assert_eq!(ids.len(), 2);
    let report = work.report(&[]).await;
    let (headers, rows) = parse_report(&report.stdout);
    let col = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let notes: Vec<&str> = rows.iter().map(|r| r[col("note")].as_str()).collect();
    assert_eq!(
        notes
            .iter()
            .filter(|n| **n == "removed 1 duplicate")
            .count(),
        1
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 rows have a note"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_planted_duplicate_and_a_deleted_meeting_and_fixes_only_the_duplicate() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let out = work
        .run_meetings(&sim, &Env::sim(), "m.csv", &meetings_csv(5), &[])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let (db, base) = (s(&work.db()), sim.base_url());
    let verify = |extra: &'static [&'static str]| {
        let mut args: Vec<String> = ["verify", "--db", &db, "--base-url", &base]
            .iter()
            .map(|a| a.to_string())
            .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        let work = &work;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(work, &Env::sim(), &args).await
        }
    };
    let clean = verify(&[]).await;
    assert_eq!(clean.code, 0, "{clean:?}");
    assert!(
        clean.stderr.contains("5 ok, 0 missing, 0 duplicated"),
        "{clean:?}"
    );

    let meetings = sim.meetings();
    let id = |i: usize| meetings[i]["id"].as_str().unwrap().to_owned();
    let copy = sim.duplicate_meeting(&id(1)).unwrap();
    assert!(sim.delete_meeting(&id(3)));

    let found = verify(&[]).await;
    assert_eq!(found.code, 1, "{found:?}");
    assert!(
        found.stderr.contains("3 ok, 1 missing, 1 duplicated"),
        "{found:?}"
    );
    let (headers, rows) = parse_report(&found.stdout);
    let col = |n: &str| headers.iter().position(|h| h == n).unwrap();
    let seen: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r[col("verify")].as_str(),
                r[col("meeting_id")].as_str(),
                r[col("other_meeting_ids")].as_str(),
            )
        })
        .collect();
    let (recorded, deleted) = (id(1), id(3));
    assert_eq!(
        seen,
        [
            ("duplicated", recorded.as_str(), copy.as_str()),
            ("missing", deleted.as_str(), "")
        ]
    );
    assert_eq!(sim.meetings().len(), 5, "verify alone changes nothing");

    let fixed = verify(&["--fix"]).await;
    assert!(fixed.stderr.contains("1 duplicates removed"), "{fixed:?}");
    let ids = meeting_ids(&sim);
    assert!(!ids.contains(&copy) && ids.contains(&recorded), "{ids:?}");
    assert_eq!(ids.len(), 4, "the deleted meeting is not brought back");

    // The duplicate is gone; the deleted meeting is still a finding.
    let again = verify(&[]).await;
    assert!(
        again.stderr.contains("4 ok, 1 missing, 0 duplicated"),
        "{again:?}"
    );
    assert_eq!(again.code, 1);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_with_final_checks_waiting_keeps_them_and_resume_finishes_them() {
    // A quarter of the requests fail with a 5xx before the server does
    // anything: such a create is uncertain, is not found once its window has
    // passed, is sent again, and its row is then checked once more a window
    // later. Ctrl-C comes as soon as a row waits for that check (due a
    // window after its success, so it is still waiting).
    let sim = start_sim(SimConfig {
        fail_rate: 0.25,
        seed: 14,
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let child = work.spawn_meetings(
        &sim,
        &meetings_csv(40),
        &[
            "--rate",
            "unlimited",
            "--max-attempts",
            "30",
            "--settle",
            "6",
        ],
    );
    // Read the queue only once the file is queued (no reader in the way of
    // the ingest's own journal).
    wait_until(Duration::from_secs(120), || sim.stats().creates > 0).await;
    let db = work.db();
    let counts = || {
        let store = webex_bulk::store::Store::open(&db).ok()?;
        store.counts(1).ok()
    };
    wait_until(Duration::from_secs(120), || {
        counts().is_some_and(|c| c.checks > 0)
    })
    .await;
    let out = interrupt(child).await;
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    let status = work.status().await;
    assert_eq!(status[0]["run"]["state"], "interrupted");
    let waiting = status[0]["counts"]["checks"].as_u64().unwrap();
    assert!(waiting > 0, "{status}");

    let out = work.resume(&sim, &Env::sim(), &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "{waiting} succeeded rows still wait for their final check"
        )),
        "{out:?}"
    );
    let status = work.status().await;
    assert_eq!(status[0]["run"]["state"], "finished");
    assert_eq!(status[0]["counts"]["checks"], 0);
    assert_each_created_once(&sim, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_out_of_attempts_is_looked_up_once_more_before_it_is_called_failed() {
    // Each create takes 5 s and we give up after 3 s, with one attempt
    // allowed: the row is out of attempts, but its meeting is on the way.
    let sim = slow_sim(1.0, Duration::from_secs(5), 15).await;
    let work = Work::new();
    let out = work
        .run_meetings(
            &sim,
            &Env::sim(),
            "m.csv",
            &meetings_csv(3),
            &[
                "--rate",
                "unlimited",
                "--timeout",
                "3",
                "--max-attempts",
                "1",
                "--settle",
                "8",
            ],
        )
        .await;
    assert_eq!(out.code, 0, "found, not failed: {out:?}");
    assert_one_meeting_per_row(&sim, &work, 3).await;
}

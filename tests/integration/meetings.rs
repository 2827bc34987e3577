//! `run meetings`: the sample end to end and its report, the automatic rate,
//! a kill while refresh tokens rotate, and Ctrl-C. The cases every kind
//! shares (kills, drops, 401s, 429 storms, invalid rows) are in conformance.rs.

use std::time::Duration;

use crate::util::*;
use webex_bulk::sim::SimConfig;

fn sample() -> String {
    webex_bulk::demo::rebase_dates(webex_bulk::demo::MEETINGS_SAMPLE, chrono::Utc::now()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_run_of_the_sample_creates_every_meeting_and_reports_it() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let out = work
        .run_meetings(
            &sim,
            &Env::sim(),
            "meetings.csv",
            &sample(),
            &["--rate", "unlimited"],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("50 succeeded, 0 failed, 0 invalid"),
        "{out:?}"
    );
    assert_each_created_once(&sim, 50);

    let report = work.report(&[]).await;
    assert_eq!(report.code, 0, "{report:?}");
    let (headers, rows) = parse_report(&report.stdout);
    assert_eq!(rows.len(), 50);
    let (status, id, link) = (
        column(&headers, "status"),
        column(&headers, "meeting_id"),
        column(&headers, "web_link"),
    );
    let ids: std::collections::HashSet<String> = sim
        .meetings()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    for row in &rows {
        assert_eq!(row[status], "succeeded");
        assert!(
            ids.contains(&row[id]),
            "the report names a meeting the server has"
        );
        assert!(row[link].starts_with("https://"));
    }

    // Resuming a finished run sends nothing and gives the run's own code.
    let before = sim.stats().requests;
    let again = work.resume(&sim, &Env::sim(), &[]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("already finished"), "{again:?}");
    assert_eq!(sim.stats().requests, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_has_the_original_columns_then_the_results() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let text = meetings_csv(3).replace("title,start", "Title,Start");
    let out = work
        .run_meetings(&sim, &Env::sim(), "m.csv", &text, &[])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let report_path = s(&work.path("report.csv"));
    let out = work.report(&["-o", &report_path]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let (headers, rows) = parse_report(&std::fs::read_to_string(&report_path).unwrap());
    assert_eq!(
        headers,
        [
            "Title",
            "Start",
            "duration",
            "hostEmail",
            "invitees",
            "line",
            "status",
            "attempts",
            "http_status",
            "error",
            "tracking_id",
            "meeting_id",
            "meeting_number",
            "web_link",
            "note"
        ]
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (rows[0][5].as_str(), rows[2][5].as_str()),
        ("2", "4"),
        "lines are the file's own"
    );
    assert_eq!((rows[0][7].as_str(), rows[0][8].as_str()), ("1", "200"));
    assert!(!rows[0][10].is_empty(), "every row keeps a tracking id");
    assert_eq!(rows[0][12].len(), 9, "the meeting number");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_automatic_rate_finds_the_limit_and_backs_off() {
    let sim = start_sim(SimConfig {
        rate_limit: Some(10.0),
        retry_after_secs: 1,
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    // No --rate: `auto` is the default. It starts at 5/s and doubles until
    // the server says no, then rides under the limit.
    let out = work
        .run_meetings(&sim, &Env::sim(), "m.csv", &meetings_csv(80), &["-v"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("adaptive rate lowered to"), "{out:?}");
    let stats = sim.stats();
    assert!(
        stats.rate_limited >= 1,
        "it probed up to the limit: {stats:?}"
    );
    assert!(
        stats.rate_limited * 10 <= stats.requests,
        "and did not keep hitting it: {stats:?}"
    );
    assert_eq!(stats.early_requests, 0, "{stats:?}");
    assert_each_created_once(&sim, 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_grow_with_latency_up_to_the_ceiling() {
    // Webex-like: creates take 0.6 to 1.2 s, the limit is 20/s. At that
    // latency the old fixed 8 in flight held a run to about 9 rows/s.
    let sim = start_sim(SimConfig {
        rate_limit: Some(20.0),
        retry_after_secs: 1,
        latency: Duration::from_millis(600),
        latency_max: Some(Duration::from_millis(1200)),
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let out = work
        .run_meetings(
            &sim,
            &Env::sim(),
            "m.csv",
            &meetings_csv(150),
            &["-v", "--concurrency", "24"],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let stats = sim.stats();
    assert!(
        stats.max_in_flight > 8,
        "more in flight than the old default when rate x latency needs it: {stats:?}"
    );
    assert!(
        stats.max_in_flight <= 24,
        "never more than --concurrency: {stats:?}"
    );
    assert!(
        out.stderr.contains("requests in flight at most"),
        "-v logs the changes: {out:?}"
    );
    assert_eq!(stats.early_requests, 0, "{stats:?}");
    assert_each_created_once(&sim, 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_answers_429_at_once_is_told_from_the_answers() {
    // The limit is decided on arrival and a 429 comes back at once, while
    // creates take 0.4 to 0.8 s: when the 429 comes, the creates let in
    // just before it are still being worked on. The run waits for their
    // answers before it estimates the limit, and no request it has on its
    // way is refused for the window (only what arrives after it opened).
    let sim = start_sim(SimConfig {
        rate_limit: Some(20.0),
        rate_limit_on_arrival: true,
        retry_after_secs: 1,
        latency: Duration::from_millis(400),
        latency_max: Some(Duration::from_millis(800)),
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let out = work
        .run_meetings(&sim, &Env::sim(), "m.csv", &meetings_csv(200), &["-v"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("once what was sent before the 429 was answered"),
        "the estimate waited for the answers: {out:?}"
    );
    let stats = sim.stats();
    assert_eq!(stats.early_requests, 0, "{stats:?}");
    assert!(
        stats.rate_limited * 20 <= stats.requests,
        "few 429s: only what was sent while the first one came back: {stats:?}"
    );
    assert_each_created_once(&sim, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_and_creates_every_meeting_exactly_once() {
    // Tokens expire every 30 requests and the refresh token rotates: the
    // environment's refresh token is dead by the time of the resume, which
    // must go on with the stored one.
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(30),
        token_max_requests: Some(30),
        rotate_refresh_tokens: true,
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    // At 50/s the kill lands about half a second from the next refresh
    // (request 60): a kill between the simulator rotating the refresh token
    // and the client storing the new one would leave no working token, for
    // any client (the resume would rightly stop for new credentials).
    let mut child = work.spawn_meetings(
        &sim,
        &meetings_csv(200),
        &["--rate", "50/s", "--concurrency", "16"],
    );
    wait_until(Duration::from_secs(120), || {
        let stats = sim.stats();
        stats.refreshes >= 1 && stats.creates >= 35
    })
    .await;
    child.start_kill().unwrap(); // SIGKILL: no chance to clean up
    assert!(!child.wait().await.unwrap().success());
    assert!(sim.stats().creates < 200, "killed mid-run");

    // Creates in flight at the kill were finished before the simulator
    // answered: a short settle window is safe (see the slow-server tests).
    let out = work.resume(&sim, &Env::sim(), &["--settle", "1"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("in flight and will be looked up"),
        "{out:?}"
    );
    assert_each_created_once(&sim, 200);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_cleanly_with_130_and_resume_finishes() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let child = work.spawn_meetings(&sim, &meetings_csv(300), &["--rate", "100/s"]);
    wait_until(Duration::from_secs(120), || sim.stats().creates >= 20).await;
    let out = interrupt(child).await;
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = work.status().await;
    assert_eq!(status[0]["run"]["state"], "interrupted");
    assert_eq!(
        status[0]["counts"]["in_flight"], 0,
        "in-flight requests were let finish and recorded"
    );
    let out = work
        .resume(&sim, &Env::sim(), &["--rate", "unlimited"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_each_created_once(&sim, 300);
}

/// `--limit 3` tries a job on its first three valid rows (an invalid row in
/// between does not count), stops with 0, and `--resume` does the rest,
/// each meeting once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_carries_out_the_first_rows_and_resume_does_the_rest() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let mut text = meetings_csv(10);
    // Line 3 (the second row) has no title: invalid, and not one of the three.
    text = text.replacen("Row 1 review", "", 1);
    let out = work
        .run_meetings(&sim, &Env::sim(), "m.csv", &text, &["--limit", "3"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("stopped after the rows --limit asked for"),
        "{out:?}"
    );
    assert!(out.stderr.contains("--resume"), "{out:?}");
    assert_eq!(sim.stats().creates, 3);
    let titles: Vec<String> = sim
        .meetings()
        .iter()
        .map(|m| m["title"].as_str().unwrap().to_owned())
        .collect();
    for first in ["Row 0 review", "Row 2 review", "Row 3 review"] {
        assert!(titles.iter().any(|t| t == first), "{titles:?}");
    }
    let status = work.status().await;
    assert_eq!(status[0]["run"]["state"], "interrupted", "{status:#}");
    assert_eq!(status[0]["counts"]["pending"], 6, "{status:#}");

    let out = work.resume(&sim, &Env::sim(), &[]).await;
    assert_eq!(out.code, 1, "finished, with its invalid row: {out:?}");
    assert_each_created_once(&sim, 9);
}

/// `--only-lines 3,6-7` queues and carries out those rows only (the others
/// are not part of the run); other lines of the same file are another run;
/// a line where no row starts is refused before anything is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_lines_carries_out_just_those_rows() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let text = meetings_csv(10);
    let out = work
        .run_meetings(
            &sim,
            &Env::sim(),
            "m.csv",
            &text,
            &["--only-lines", "3,6-7"],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("--only-lines 3, 6-7: the file's other 7 rows are not part of run 1"),
        "{out:?}"
    );
    let mut titles: Vec<String> = sim
        .meetings()
        .iter()
        .map(|m| m["title"].as_str().unwrap().to_owned())
        .collect();
    titles.sort();
    assert_eq!(titles, ["Row 1 review", "Row 4 review", "Row 5 review"]);
    let status = work.status().await;
    assert_eq!(status[0]["run"]["state"], "finished", "{status:#}");
    // Other lines of the same file: another run, not refused as a repeat.
    let out = work
        .run_meetings(&sim, &Env::sim(), "m.csv", &text, &["--only-lines", "2"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_each_created_once(&sim, 4);
    // A line past the end: refused, nothing queued.
    let out = work
        .run_meetings(
            &sim,
            &Env::sim(),
            "m.csv",
            &text,
            &["--only-lines", "4,40-45"],
        )
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("has no row at line(s) 40-45; nothing was queued"),
        "{out:?}"
    );
    assert_eq!(work.status().await.as_array().unwrap().len(), 2);
}

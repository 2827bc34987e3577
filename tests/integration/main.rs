//! End-to-end tests: the real binary, the bundled simulator, real loopback HTTP.

mod auth;
mod slow;
mod storage;
mod users;
mod util;

use std::time::Duration;

use util::*;
use webex_bulk::sim::SimConfig;

fn sample() -> String {
    webex_bulk::demo::rebase_dates(webex_bulk::demo::MEETINGS_SAMPLE, chrono::Utc::now()).unwrap()
}

fn column(headers: &[String], name: &str) -> usize {
    headers
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {headers:?}"))
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
async fn invalid_rows_are_reported_with_line_and_column_and_never_sent() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let text = include_str!("../../samples/meetings-with-mistakes.csv");
    let file = s(&work.write("mistakes.csv", text));

    let check = run(&work, &Env::default(), &["validate", "meetings", &file]).await;
    assert_eq!(check.code, 1, "{check:?}");
    for expected in [
        "line 3, column 1 (Title): title is empty",
        "line 4, column 2 (Start): start `13/01/2027 10:00` is not an ISO 8601 date and time",
        "line 5, column 3 (Duration): the meeting lasts 5 minutes",
        "line 6, column 4 (Timezone): `Europe/Berlinn` is not an IANA time zone",
        "line 7, column 5 (Host Email): `maria.gonzalez@acme-corp` is not a valid email address",
        "line 9, column 6 (Invitees): invitee `david.kim@acme-corp` is not a valid email address",
        "line 10, column 7 (Co-Hosts): co-host noah.schmidt@acme-corp.example.com is not among the invitees",
        "line 11, column 2 (Start)",
        "line 12, column 3 (Duration): duration `forty` is not a whole number of minutes",
    ] {
        assert!(check.stderr.contains(expected), "missing `{expected}` in:\n{}", check.stderr);
    }
    assert!(
        check.stderr.contains("fix: "),
        "every problem says how to fix it"
    );
    assert!(
        check.stdout.contains("12 rows, 2 valid, 10 invalid"),
        "{check:?}"
    );
    assert_eq!(sim.stats().requests, 0, "validate sends nothing");

    let out = work
        .run_meetings(&sim, &Env::sim(), "mistakes.csv", text, &[])
        .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(sim.stats().creates, 2, "only the valid rows are sent");
    let failed = work.report(&["--failed"]).await;
    let (headers, rows) = parse_report(&failed.stdout);
    assert_eq!(rows.len(), 10);
    let (status, error) = (column(&headers, "status"), column(&headers, "error"));
    assert!(rows
        .iter()
        .all(|r| r[status] == "invalid" && r[error].contains("fix:")));

    // --strict refuses the whole file: nothing queued.
    let strict_db = work.path("strict.db");
    let out = run(
        &work,
        &Env::sim(),
        &run_args(&file, &s(&strict_db), &sim.base_url(), &["--strict"]),
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(work.status_of(&strict_db).await, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_pauses_every_worker_with_no_early_request() {
    let sim = start_sim(SimConfig {
        rate_limit: Some(15.0),
        retry_after_secs: 1,
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let out = work
        .run_meetings(
            &sim,
            &Env::sim(),
            "m.csv",
            &meetings_csv(60),
            &["--rate", "unlimited", "--concurrency", "16"],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let stats = sim.stats();
    assert!(stats.rate_limited > 0, "the storm happened: {stats:?}");
    assert_eq!(
        stats.early_requests, 0,
        "nobody sent inside a Retry-After window: {stats:?}"
    );
    assert_each_created_once(&sim, 60);
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
async fn an_expired_token_seen_by_many_workers_is_refreshed_once() {
    // The token the run starts with is not valid: all 64 first requests get 401 at once.
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(200),
        rotate_refresh_tokens: true,
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let env = Env {
        access_token: Some("expired-access-token".into()),
        ..Env::sim()
    };
    let out = work
        .run_meetings(
            &sim,
            &env,
            "m.csv",
            &meetings_csv(100),
            &["--rate", "unlimited", "--concurrency", "64"],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let stats = sim.stats();
    assert!(
        stats.unauthorized >= 32,
        "many workers saw the 401: {stats:?}"
    );
    assert_eq!(stats.refreshes, 1, "exactly one refresh: {stats:?}");
    assert_each_created_once(&sim, 100);
    // The rotated refresh token was stored, 0600, and is not the one we started with.
    let path = work.home().join("credentials.json");
    assert!(!std::fs::read_to_string(&path)
        .unwrap()
        .contains("sim-refresh-token"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(
        !out.all().contains("expired-access-token") && !out.all().contains("sim-refresh-token")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_pauses_the_run_and_resume_finishes_it() {
    let sim = start_sim(SimConfig {
        token_max_requests: Some(10),
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let revoked = Env {
        refresh_token: Some("revoked-refresh-token".into()),
        ..Env::sim()
    };
    let out = work
        .run_meetings(&sim, &revoked, "m.csv", &meetings_csv(30), &["-vv"])
        .await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("authentication failed"), "{out:?}");
    assert!(out.stderr.contains("--resume 1"), "{out:?}");
    for secret in [
        "revoked-refresh-token",
        "sim-access-token",
        "sim-client-secret",
    ] {
        assert!(
            !out.all().contains(secret),
            "no token in any output, even at -vv"
        );
    }
    let created = sim.stats().creates;
    assert!((1..30).contains(&created), "{created}");
    assert_eq!(work.status().await[0]["run"]["state"], "paused");

    // The admin fixes the credentials and resumes.
    let out = work.resume(&sim, &Env::sim(), &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_each_created_once(&sim, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_never_create_a_meeting_twice() {
    let sim = start_sim(SimConfig {
        drop_rate: 0.3,
        fail_rate: 0.1,
        seed: 7,
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let out = work
        .run_meetings(
            &sim,
            &Env::sim(),
            "m.csv",
            &meetings_csv(40),
            // This simulator finishes a create before it answers (or drops
            // the connection), so a short settle window is safe here; the
            // slow-server tests cover the window itself.
            &[
                "--rate",
                "unlimited",
                "--max-attempts",
                "20",
                "--settle",
                "1",
            ],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(sim.stats().dropped > 0, "{:?}", sim.stats());
    assert_each_created_once(&sim, 40);
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
    let mut child = work.spawn_meetings(
        &sim,
        &meetings_csv(200),
        &["--rate", "unlimited", "--concurrency", "16"],
    );
    wait_until(Duration::from_secs(120), || sim.stats().creates >= 40).await;
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
async fn a_run_killed_while_queueing_leaves_nothing_and_the_file_runs_again() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let text = meetings_csv(3_000);
    let split = text.match_indices('\n').nth(2_000).unwrap().0 + 1;
    // The file is a pipe: the run reads the first 2,000 rows (queued in its
    // open transaction) and then waits for more, deterministically.
    let fifo = work.path("m.csv");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (db, base, file) = (s(&work.db()), sim.base_url(), s(&fifo));
    let mut child = command(&work, &Env::sim(), &run_args(&file, &db, &base, &[]))
        .spawn()
        .unwrap();
    let head = text[..split].to_owned();
    let writer = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            use std::io::Write;
            let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            pipe.write_all(head.as_bytes()).unwrap();
            pipe // kept open: the reader waits for the rest
        }
    });
    let journal = work.path("queue.db-journal");
    wait_until(Duration::from_secs(120), || journal.exists()).await;
    let pipe = writer.join().unwrap();
    child.start_kill().unwrap(); // SIGKILL in the middle of the transaction
    assert!(!child.wait().await.unwrap().success());
    drop(pipe);
    assert_eq!(sim.stats().creates, 0);

    // The interrupted transaction is rolled back: no run, no rows.
    assert_eq!(work.status().await, serde_json::json!([]));
    std::fs::remove_file(&fifo).unwrap();
    let out = work
        .run_meetings(&sim, &Env::sim(), "m.csv", &text, &["--rate", "unlimited"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("queued run 1: 3000 rows"), "{out:?}");
    assert_each_created_once(&sim, 3_000);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_file_twice_is_refused() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let text = meetings_csv(5);
    assert_eq!(
        work.run_meetings(&sim, &Env::sim(), "m.csv", &text, &[])
            .await
            .code,
        0
    );
    let requests = sim.stats().requests;
    // Even under another name: it is the content that counts.
    let out = work
        .run_meetings(&sim, &Env::sim(), "copy of m.csv", &text, &[])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("already run as run 1"), "{out:?}");
    assert!(out.stderr.contains("5 succeeded"), "{out:?}");
    assert!(
        out.stderr.contains("--resume") && out.stderr.contains("--new-run"),
        "{out:?}"
    );
    assert_eq!(sim.stats().requests, requests, "nothing sent");
    assert_eq!(
        work.status().await.as_array().unwrap().len(),
        1,
        "nothing queued"
    );
    // On purpose, it goes.
    let out = work
        .run_meetings(&sim, &Env::sim(), "m.csv", &text, &["--new-run"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sim.stats().creates, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_anything_is_queued() {
    let work = Work::new();
    let db = s(&work.db());
    // Plain http to a host that is not this machine.
    let file = s(&work.write("m.csv", &meetings_csv(2)));
    let out = run(
        &work,
        &Env::sim(),
        &run_args(&file, &db, "http://webexapis.example.com/v1", &[]),
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("unencrypted"), "{out:?}");
    // No credentials at all.
    let out = run(
        &work,
        &Env::default(),
        &run_args(&file, &db, "http://127.0.0.1:9/v1", &[]),
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("WEBEX_ACCESS_TOKEN"), "{out:?}");
    // A missing column.
    let bad = s(&work.write("bad.csv", "title,start\nx,2030-01-01T10:00:00Z\n"));
    let out = run(
        &work,
        &Env::sim(),
        &run_args(&bad, &db, "http://127.0.0.1:9/v1", &[]),
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("line 1") && out.stderr.contains("hostEmail"),
        "{out:?}"
    );
    // More rows than --max-rows.
    let out = run(
        &work,
        &Env::sim(),
        &run_args(&file, &db, "http://127.0.0.1:9/v1", &["--max-rows", "1"]),
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("more than 1 rows"), "{out:?}");
    // Not UTF-8: the first bad line is named; windows-1252 reads it.
    let latin = work.path("latin.csv");
    let mut bytes = meetings_csv(3).into_bytes();
    let pos = bytes.windows(5).rposition(|w| w == b"Row 2").unwrap();
    bytes[pos] = 0xC9; // 'É' in Windows-1252
    std::fs::write(&latin, bytes).unwrap();
    let out = run(
        &work,
        &Env::default(),
        &["validate", "meetings", &s(&latin)],
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("line 4") && out.stderr.contains("windows-1252"),
        "{out:?}"
    );
    let out = run(
        &work,
        &Env::default(),
        &[
            "validate",
            "meetings",
            &s(&latin),
            "--encoding",
            "windows-1252",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    // Nothing was ever queued.
    assert_eq!(work.status().await, serde_json::json!([]));
}

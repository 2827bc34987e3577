//! What a file must be before anything is queued or sent: invalid rows,
//! bad input, the same file twice, and a run killed while queueing.

use std::time::Duration;

use crate::util::*;
use webex_bulk::sim::SimConfig;

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
    // The valid rows as they will be sent: the start in the host's zone.
    for shown in [
        "  line 2:",
        "    start      2027-01-12T09:00:00+01:00",
        "    timezone   Europe/Berlin",
        "  line 13:",
        "    hostEmail  emma.wilson@acme-corp.example.com",
    ] {
        assert!(
            check.stdout.contains(shown),
            "missing `{shown}` in:\n{}",
            check.stdout
        );
    }
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
    // Not UTF-8: read as Windows-1252, with a warning that says so; with
    // --encoding utf-8 the first bad line is named.
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
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("read as Windows-1252") && out.stdout.contains("1 warnings"),
        "{out:?}"
    );
    let out = run(
        &work,
        &Env::default(),
        &["validate", "meetings", &s(&latin), "--encoding", "utf-8"],
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

/// A file as a German Excel saves it: `;` between fields, Windows-1252
/// bytes (an umlaut in a title). It runs as it is, and says how it was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semicolon_windows_1252_file_runs_as_it_is_and_says_how_it_was_read() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let text = meetings_csv(5)
        .replace(',', ";")
        .replace("review", "Pr\u{fc}fung");
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&text);
    assert!(!unmappable);
    let path = work.path("de.csv");
    std::fs::write(&path, &bytes).unwrap();
    let (file, db, base) = (s(&path), s(&work.db()), sim.base_url());
    let out = run(&work, &Env::sim(), &run_args(&file, &db, &base, &[])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("separated by `;`"), "{out:?}");
    assert!(out.stderr.contains("read as Windows-1252"), "{out:?}");
    assert_each_created_once(&sim, 5);
    let titles: Vec<String> = sim
        .meetings()
        .iter()
        .map(|m| m["title"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        titles.iter().all(|t| t.contains("Pr\u{fc}fung")),
        "{titles:?}"
    );
}

/// `run --dry-run` checks and shows the first rows as `validate` does, and
/// queues and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_shows_the_rows_and_queues_and_sends_nothing() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let out = work
        .run_meetings(&sim, &Env::sim(), "m.csv", &meetings_csv(4), &["--dry-run"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("4 rows, 4 valid, 0 invalid"), "{out:?}");
    assert!(out.stdout.contains("as they will be sent"), "{out:?}");
    assert!(out.stdout.contains("Row 0 review"), "{out:?}");
    assert_eq!(sim.stats().requests, 0, "nothing sent");
    assert!(!work.db().exists(), "nothing queued");
}

/// A refused header still says how the file was read: the likeliest
/// explanation of a refusal is a delimiter or encoding the user did not expect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_header_still_says_how_the_file_was_read() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let text = meetings_csv(2)
        .replace(',', ";")
        .replacen("title", "titel", 1);
    let out = work
        .run_meetings(&sim, &Env::sim(), "m.csv", &text, &[])
        .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("separated by `;`"), "{out:?}");
    assert!(out.stderr.contains("no `title` column"), "{out:?}");
    assert_eq!(sim.stats().requests, 0);
}

//! A queue written by an earlier release still lists, reports and resumes.
//!
//! `tests/fixtures/queue-v2.db` was made by the release at commit 2e0e9fc
//! (schema version 2), killed in the middle of a meetings run and of a users
//! run; tests/fixtures/README.md says what it holds and how it was made. Each
//! test works on a copy: the committed file is never opened in place.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use webex_bulk::sim::{SimConfig, SimHandle, SimPerson, LICENSE_MESSAGING};

use crate::util::*;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/queue-v2.db");
/// The schema version the fixture was written with.
const FIXTURE_VERSION: i64 = 2;

const MEETINGS_RUN: &str = "1";
const USERS_RUN: &str = "2";

/// The meetings run's rows that had succeeded: line, meeting id, meeting number.
const OLD_MEETINGS: [(u32, &str, &str); 4] = [
    (2, "617fc22066a743fcac5185dd5397076e", "460118518"),
    (3, "de2b3565faa14d42ae6144cf27a77cbf", "899624939"),
    (4, "5b9f7200b90948438da5a9ff71cb8f7f", "378630873"),
    (6, "0fe0523347754cab9befc7b812ac7895", "188345139"),
];

/// The users run's rows that had succeeded: line, person id, licenses after.
const OLD_PEOPLE: [(u32, &str, &str); 3] = [
    (
        2,
        "Y2lzY29zcGFyazovL3VzL1BFT1BMRS8wODE5Y2ZhYy1jNGJjLTQxNDMtYjI2Mi0xNjI2MTA5ZDZmOTI",
        "Messaging; Meeting - Webex Enterprise@acme.webex.com",
    ),
    (
        3,
        "Y2lzY29zcGFyazovL3VzL1BFT1BMRS8wZTIxNTAxMS1hYzkwLTRlMzUtYmYxMy05ODY3ZDlmYzI0ZTY",
        "Messaging",
    ),
    (
        6,
        "Y2lzY29zcGFyazovL3VzL1BFT1BMRS9iNDA3MGFlMi0wNGQ0LTRjNTctYTIzMi1hYmZhZmExZDJjZTg",
        "Messaging; Webex Calling - Professional",
    ),
];

/// The meetings report: the file's columns, then the results.
const MEETINGS_COLUMNS: [&str; 16] = [
    "Title",
    "Start",
    "Duration",
    "Timezone",
    "Host Email",
    "Invitees",
    "line",
    "status",
    "attempts",
    "http_status",
    "error",
    "tracking_id",
    "meeting_id",
    "meeting_number",
    "web_link",
    "note",
];

/// The users report: the file's columns, then the results.
const USERS_COLUMNS: [&str; 17] = [
    "email",
    "firstName",
    "lastName",
    "addLicenses",
    "department",
    "title",
    "line",
    "status",
    "attempts",
    "http_status",
    "error",
    "tracking_id",
    "person_id",
    "action",
    "licenses_before",
    "licenses_after",
    "note",
];

/// A fresh copy of the fixture as this work's database.
fn old_queue() -> Work {
    let work = Work::new();
    std::fs::copy(FIXTURE, work.db()).expect("the fixture is there");
    work
}

/// `PRAGMA user_version` as the file's header has it (offset 60, big
/// endian), read without opening the database.
fn header_version(db: &Path) -> i64 {
    let bytes = std::fs::read(db).unwrap();
    assert!(bytes.starts_with(b"SQLite format 3\0"), "an SQLite file");
    i64::from(i32::from_be_bytes(bytes[60..64].try_into().unwrap()))
}

/// `PRAGMA user_version` of a database (its WAL included).
fn schema_version(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// One report row: column name -> value.
type Row = BTreeMap<String, String>;

/// `report --run RUN [extra]`: the header row, and the rows by line.
async fn report(work: &Work, run: &str, extra: &[&str]) -> (Vec<String>, BTreeMap<u32, Row>) {
    let mut args = vec!["--run", run];
    args.extend_from_slice(extra);
    let out = work.report(&args).await;
    assert_eq!(out.code, 0, "{out:?}");
    let (headers, lines) = parse_report(&out.stdout);
    let mut rows = BTreeMap::new();
    for cells in lines {
        assert_eq!(cells.len(), headers.len(), "{cells:?}");
        let row: Row = headers.iter().cloned().zip(cells).collect();
        let line = row["line"].parse().expect("a line number");
        assert!(rows.insert(line, row).is_none(), "line {line} twice");
    }
    (headers, rows)
}

/// The lines of a report whose status is `status`.
fn lines_in(rows: &BTreeMap<u32, Row>, status: &str) -> Vec<u32> {
    rows.iter()
        .filter(|(_, r)| r["status"] == status)
        .map(|(line, _)| *line)
        .collect()
}

/// A run of `status --json`.
fn run_of<'a>(status: &'a Value, id: &str) -> &'a Value {
    status
        .as_array()
        .expect("a list of runs")
        .iter()
        .find(|r| r["run"]["id"].as_i64() == id.parse().ok())
        .unwrap_or_else(|| panic!("no run {id} in {status:#}"))
}

/// `run --resume RUN [extra]` against `sim` (the run's stored base URL is
/// that of the simulator the fixture was made with), with its credentials.
async fn resume(work: &Work, sim: &SimHandle, run_id: &str, extra: &[&str]) -> Output {
    let (db, base) = (s(&work.db()), sim.base_url());
    let mut args = vec![
        "run",
        "--resume",
        run_id,
        "--db",
        &db,
        "--base-url",
        &base,
        "--progress",
        "none",
    ];
    args.extend_from_slice(extra);
    run(work, &Env::sim(), &args).await
}

/// Creates a meeting in the simulator as Webex would have it, had a create
/// sent before the old process died been carried out. Its id.
async fn plant_meeting(sim: &SimHandle, body: Value) -> String {
    let answer = reqwest::Client::new()
        .post(format!("{}/meetings", sim.base_url()))
        .bearer_auth("sim-access-token")
        .timeout(COMMAND_TIMEOUT)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{answer:?}");
    let meeting: Value = answer.json().await.unwrap();
    meeting["id"].as_str().expect("a meeting id").to_owned()
}

/// After a resume: the database is at this build's schema version, and a
/// second report of `run` is the same as the first.
async fn assert_upgraded(work: &Work, run: &str, first: &BTreeMap<u32, Row>) {
    assert_eq!(
        schema_version(&work.db()),
        webex_bulk::store::SCHEMA_VERSION,
        "the resumed queue is at this build's schema version"
    );
    let (_, again) = report(work, run, &[]).await;
    assert_eq!(&again, first, "a second report reads the same");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_both_runs_of_an_old_queue_with_their_counts() {
    assert_eq!(
        header_version(Path::new(FIXTURE)),
        FIXTURE_VERSION,
        "the fixture is the old schema"
    );
    let work = old_queue();
    let status = work.status().await;
    assert_eq!(status.as_array().unwrap().len(), 2, "{status:#}");
    for (id, kind, counts) in [
        (MEETINGS_RUN, "meetings", [2, 2, 4, 0, 2]),
        (USERS_RUN, "users", [3, 1, 3, 1, 2]),
    ] {
        let run = run_of(&status, id);
        assert_eq!(run["run"]["kind"], kind, "{run:#}");
        assert_eq!(
            run["run"]["state"], "running",
            "killed mid-run, as the old process left it: {run:#}"
        );
        let got: Vec<&Value> = ["pending", "in_flight", "succeeded", "failed", "invalid"]
            .iter()
            .map(|k| &run["counts"][k])
            .collect();
        assert_eq!(got, counts.map(Value::from).iter().collect::<Vec<_>>());
        assert_eq!(run["total"], 10);
        let uid = run["run"]["uid"].as_str().unwrap();
        assert!(
            uid.len() == 12 && uid.chars().all(|c| c.is_ascii_hexdigit()),
            "{uid}"
        );
    }

    // The table too.
    let out = run(&work, &Env::default(), &["status", "--db", &s(&work.db())]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let table: Vec<String> = out
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(9).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        table,
        [
            "1 meetings running 10 2 2 4 0 2",
            "2 users running 10 3 1 3 1 2"
        ],
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_of_an_old_queue_have_its_columns_results_and_reasons() {
    let work = old_queue();

    let (headers, rows) = report(&work, MEETINGS_RUN, &[]).await;
    assert_eq!(headers, MEETINGS_COLUMNS);
    assert_eq!(
        rows.keys().copied().collect::<Vec<_>>(),
        (2..=11).collect::<Vec<_>>()
    );
    assert_eq!(lines_in(&rows, "succeeded"), [2, 3, 4, 6]);
    assert_eq!(lines_in(&rows, "in_flight"), [7, 9]);
    assert_eq!(lines_in(&rows, "pending"), [10, 11]);
    assert_eq!(lines_in(&rows, "invalid"), [5, 8]);
    let first = &rows[&2];
    assert_eq!(
        (
            first["Title"].as_str(),
            first["Start"].as_str(),
            first["Timezone"].as_str(),
            first["Invitees"].as_str()
        ),
        (
            "Kickoff: platform migration",
            "2036-03-03 09:00",
            "Europe/Berlin",
            "olivia.brown@acme-corp.example.com; david.kim@acme-corp.example.com"
        ),
        "the file's own cells"
    );
    for (line, id, number) in OLD_MEETINGS {
        let row = &rows[&line];
        assert_eq!(row["meeting_id"], id, "{row:?}");
        assert_eq!(row["meeting_number"], number, "{row:?}");
        assert_eq!(
            row["web_link"],
            format!("https://sim.webex.com/sim/j.php?MTID=m{id}")
        );
        assert_eq!(
            (row["attempts"].as_str(), row["http_status"].as_str()),
            ("1", "200")
        );
        assert!(row["tracking_id"].starts_with("WEBEXBULK_"), "{row:?}");
        assert_eq!((row["error"].as_str(), row["note"].as_str()), ("", ""));
    }
    for line in [7, 9, 10, 11] {
        let row = &rows[&line];
        assert_eq!(
            (row["meeting_id"].as_str(), row["attempts"].as_str()),
            ("", "0"),
            "{row:?}"
        );
    }
    assert!(rows[&5]["error"].contains("`Europe/Berlinn` is not an IANA time zone"));
    assert!(rows[&8]["error"].contains("the meeting lasts 5 minutes"));
    for line in [5, 8] {
        assert!(rows[&line]["error"].contains("fix:"), "{:?}", rows[&line]);
    }
    let (_, failed) = report(&work, MEETINGS_RUN, &["--failed"]).await;
    assert_eq!(failed.keys().copied().collect::<Vec<_>>(), [5, 8]);

    let (headers, rows) = report(&work, USERS_RUN, &[]).await;
    assert_eq!(headers, USERS_COLUMNS);
    assert_eq!(rows.len(), 10);
    assert_eq!(lines_in(&rows, "succeeded"), [2, 3, 6]);
    assert_eq!(lines_in(&rows, "failed"), [4]);
    assert_eq!(lines_in(&rows, "invalid"), [5, 7]);
    assert_eq!(lines_in(&rows, "in_flight"), [8]);
    assert_eq!(lines_in(&rows, "pending"), [9, 10, 11]);
    assert_eq!(rows[&2]["email"], "ana.silva@acme-corp.example.com");
    for (line, id, licenses) in OLD_PEOPLE {
        let row = &rows[&line];
        assert_eq!(row["person_id"], id, "{row:?}");
        assert_eq!(row["action"], "created", "{row:?}");
        assert_eq!(row["licenses_before"], "", "{row:?}");
        assert_eq!(row["licenses_after"], licenses, "{row:?}");
    }
    assert!(rows[&4]["error"].contains(
        "nameless.newcomer@acme-corp.example.com does not exist, and the row gives no name"
    ));
    assert!(
        rows[&5]["error"].contains("`carla.acme-corp.example.com` is not a valid email address")
    );
    assert!(rows[&7]["error"].contains("no license of this org is named `Messagin`"));
    let (_, failed) = report(&work, USERS_RUN, &["--failed"]).await;
    assert_eq!(failed.keys().copied().collect::<Vec<_>>(), [4, 5, 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_meetings_run_resumes_and_each_row_left_gets_exactly_one_meeting() {
    let work = old_queue();
    let sim = start_sim(SimConfig::default()).await;
    let uid = run_of(&work.status().await, MEETINGS_RUN)["run"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let tag = |line: u32| format!("webex-bulk:{uid}:{line}");

    // Lines 7 and 9 were in flight when the old process died. Webex had
    // carried out the create of line 7 (the answer was lost with the
    // process); that of line 9 never arrived.
    let planted = plant_meeting(
        &sim,
        json!({
            "title": "Security briefing",
            "start": "2036-03-10T15:00:00",
            "end": "2036-03-10T15:30:00",
            "timezone": "Europe/London",
            "hostEmail": "noah.schmidt@acme-corp.example.com",
            "integrationTags": [tag(7)],
        }),
    )
    .await;
    let before = sim.stats();
    assert_eq!((before.requests, before.creates), (1, 1));

    // The run's own settle window (120 s): line 9's create was sent so long
    // ago (when the fixture was made) that its lookup's "not found" is final
    // and no final check waits a window after the resend.
    let out = resume(&work, &sim, MEETINGS_RUN, &[]).await;
    assert_eq!(out.code, 1, "finished, with its 2 invalid rows: {out:?}");
    assert!(
        out.stderr
            .contains("2 of them were in flight and will be looked up before any resend"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("8 succeeded, 0 failed, 2 invalid, 0 left (of 10)"),
        "{out:?}"
    );

    // Exactly one meeting for each row that had not succeeded: line 7's is
    // the one Webex had, found by its tag and not created again.
    assert_each_created_once(&sim, 4);
    let stats = sim.stats();
    assert_eq!(
        stats.creates, 4,
        "the planted one, then lines 9, 10 and 11: {stats:?}"
    );
    let by_tag: BTreeMap<String, String> = sim
        .meetings()
        .iter()
        .map(|m| {
            (
                m["integrationTags"][0].as_str().unwrap().to_owned(),
                m["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        by_tag.keys().cloned().collect::<Vec<_>>(),
        [tag(10), tag(11), tag(7), tag(9)],
        "no meeting for a row that had succeeded before"
    );
    assert!(
        stats.requests - before.requests >= 3 + 2,
        "3 creates, and a lookup for each row that was in flight: {stats:?}"
    );

    let (_, rows) = report(&work, MEETINGS_RUN, &[]).await;
    assert_eq!(lines_in(&rows, "succeeded"), [2, 3, 4, 6, 7, 9, 10, 11]);
    assert_eq!(lines_in(&rows, "invalid"), [5, 8]);
    for (line, id, number) in OLD_MEETINGS {
        let row = &rows[&line];
        assert_eq!(
            (row["meeting_id"].as_str(), row["meeting_number"].as_str()),
            (id, number),
            "a row that had succeeded keeps its meeting: {row:?}"
        );
        assert_eq!(row["attempts"], "1", "and is not sent again: {row:?}");
    }
    assert_eq!(rows[&7]["meeting_id"], planted, "{:?}", rows[&7]);
    for line in [9, 10, 11] {
        assert_eq!(
            rows[&line]["meeting_id"],
            by_tag[&tag(line)],
            "{:?}",
            rows[&line]
        );
        assert_eq!(rows[&line]["meeting_number"].len(), 9, "{:?}", rows[&line]);
        assert!(rows[&line]["web_link"].starts_with("https://"));
    }
    let attempts = |line: u32| -> u32 { rows[&line]["attempts"].parse().unwrap() };
    assert!(
        attempts(9) >= 2,
        "line 9 was looked up, then created (once: see above): {:?}",
        rows[&9]
    );
    assert!(attempts(7) >= 1, "line 7 was looked up: {:?}", rows[&7]);
    assert_eq!(
        (attempts(10), attempts(11)),
        (1, 1),
        "rows never sent before are sent at once"
    );
    assert!(rows[&5]["error"].contains("`Europe/Berlinn` is not an IANA time zone"));
    assert!(rows[&8]["error"].contains("the meeting lasts 5 minutes"));

    let status = work.status().await;
    let run = run_of(&status, MEETINGS_RUN);
    assert_eq!(
        (&run["run"]["state"], &run["run"]["exit_code"]),
        (&json!("finished"), &json!(1)),
        "{run:#}"
    );
    assert_eq!(
        run_of(&status, USERS_RUN)["run"]["state"],
        "running",
        "the other run is left as it was"
    );
    assert_upgraded(&work, MEETINGS_RUN, &rows).await;

    // Finished now: resuming again sends nothing.
    let requests = sim.stats().requests;
    let again = resume(&work, &sim, MEETINGS_RUN, &[]).await;
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("already finished"), "{again:?}");
    assert_eq!(sim.stats().requests, requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_users_run_resumes_and_the_person_in_flight_is_found_not_created_again() {
    let work = old_queue();
    // Line 8 was in flight when the old process died: Webex had created
    // Eva, with her license (the answer was lost with the process).
    let eva = SimPerson {
        email: "eva.novak@acme-corp.example.com".into(),
        first_name: Some("Eva".into()),
        last_name: Some("Novak".into()),
        display_name: None,
        department: Some("Legal".into()),
        title: Some("Counsel".into()),
        licenses: vec![LICENSE_MESSAGING.into()],
    };
    let sim = start_sim(SimConfig {
        people: vec![eva],
        ..SimConfig::default()
    })
    .await;
    let eva_id = sim.people()[0]["id"].as_str().unwrap().to_owned();

    let out = resume(&work, &sim, USERS_RUN, &[]).await;
    assert_eq!(
        out.code, 1,
        "finished, with its failed and invalid rows: {out:?}"
    );
    assert!(
        out.stderr
            .contains("1 of them were in flight and will be looked up before any resend"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("7 succeeded, 1 failed, 2 invalid, 0 left (of 10)"),
        "{out:?}"
    );

    let stats = sim.stats();
    assert_eq!(stats.people_created, 3, "lines 9, 10 and 11: {stats:?}");
    assert_eq!(stats.people_duplicates, 0, "{stats:?}");
    let emails: Vec<String> = sim
        .people()
        .iter()
        .map(|p| p["emails"][0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        emails,
        [
            "eva.novak@acme-corp.example.com",
            "farid.haddad@acme-corp.example.com",
            "grace.okafor@acme-corp.example.com",
            "hiro.rossi@acme-corp.example.com"
        ],
        "nobody whose row had succeeded or failed is sent again"
    );

    let (_, rows) = report(&work, USERS_RUN, &[]).await;
    assert_eq!(lines_in(&rows, "succeeded"), [2, 3, 6, 8, 9, 10, 11]);
    assert_eq!(lines_in(&rows, "failed"), [4]);
    assert_eq!(lines_in(&rows, "invalid"), [5, 7]);
    for (line, id, licenses) in OLD_PEOPLE {
        let row = &rows[&line];
        assert_eq!(row["person_id"], id, "{row:?}");
        assert_eq!(
            (row["action"].as_str(), row["licenses_after"].as_str()),
            ("created", licenses)
        );
        assert_eq!(row["attempts"], "2", "not sent again: {row:?}");
    }
    let row = &rows[&8];
    assert_eq!(row["person_id"], eva_id, "Eva was found: {row:?}");
    assert_eq!(row["action"], "no change", "{row:?}");
    assert_eq!(
        row["attempts"], "1",
        "one lookup found her; nothing was sent: {row:?}"
    );
    assert_eq!(
        (
            row["licenses_before"].as_str(),
            row["licenses_after"].as_str()
        ),
        ("Messaging", "Messaging")
    );
    let people = sim.people();
    for (line, licenses) in [
        (9, "Webex Enterprise Edition"),
        (
            10,
            "Messaging; Meeting - Webex Enterprise@acme-eu.webex.com",
        ),
        (11, "Messaging"),
    ] {
        let row = &rows[&line];
        assert_eq!(row["action"], "created", "{row:?}");
        assert_eq!(row["licenses_after"], licenses, "{row:?}");
        let person = people
            .iter()
            .find(|p| p["emails"][0] == row["email"].as_str())
            .unwrap();
        assert_eq!(row["person_id"], person["id"].as_str().unwrap());
        assert_eq!(
            person["licenses"].as_array().unwrap().len(),
            licenses.split("; ").count(),
            "{person:#}"
        );
    }
    assert!(rows[&4]["error"].contains("does not exist, and the row gives no name"));
    assert_eq!(rows[&4]["attempts"], "1", "a failed row is not retried");
    assert!(rows[&7]["error"].contains("no license of this org is named `Messagin`"));

    let status = work.status().await;
    let run = run_of(&status, USERS_RUN);
    assert_eq!(
        (&run["run"]["state"], &run["run"]["exit_code"]),
        (&json!("finished"), &json!(1)),
        "{run:#}"
    );
    assert_eq!(run_of(&status, MEETINGS_RUN)["run"]["state"], "running");
    assert_upgraded(&work, USERS_RUN, &rows).await;
}

//! `run user-settings`: hosts' session types and tracking codes, over REST
//! and over the Meetings XML API (`--api xml`). The cases every kind shares
//! (kills, drops, 401s, 429 storms, invalid rows) are in conformance.rs.

use std::time::Duration;

use webex_bulk::sim::{
    SimConfig, SimHandle, SimPerson, LICENSE_MEETING_ACME, LICENSE_MEETING_ACME_EU,
};

use crate::util::*;

const ACME: &str = "acme.webex.com";
const EU: &str = "acme-eu.webex.com";

/// Hosts `h0..` on acme.webex.com and `eu0..` on acme-eu.webex.com.
fn hosts(acme: usize, eu: usize) -> Vec<SimPerson> {
    let host = |email: String, license: &str| SimPerson {
        email,
        licenses: vec![license.into()],
        ..SimPerson::default()
    };
    (0..acme)
        .map(|i| host(format!("h{i}@acme.example.com"), LICENSE_MEETING_ACME))
        .chain((0..eu).map(|i| host(format!("eu{i}@acme.example.com"), LICENSE_MEETING_ACME_EU)))
        .collect()
}

fn types(sim: &SimHandle, email: &str, site: &str) -> Vec<String> {
    let mut t = sim
        .user_settings(email, site)
        .expect("a host")
        .session_types;
    t.sort();
    t
}

fn code(sim: &SimHandle, email: &str, site: &str, name: &str) -> Option<String> {
    sim.user_settings(email, site)
        .expect("a host")
        .tracking
        .get(name)
        .cloned()
}

fn xml_args(sim: &SimHandle) -> Vec<String> {
    vec![
        "--api".into(),
        "xml".into(),
        "--xml-url".into(),
        sim.xml_url(),
    ]
}

async fn run_settings(work: &Work, sim: &SimHandle, text: &str, extra: &[String]) -> Output {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    work.run_kind(
        "user-settings",
        sim,
        &Env::sim(),
        "settings.csv",
        text,
        &extra,
    )
    .await
}

/// A file of every kind of change; the XML special characters go into a
/// free-text tracking code.
const BULK: &str = "email,siteUrl,sessionTypes,addSessionTypes,removeSessionTypes,trackingCodes
h0@acme.example.com,acme.webex.com,PRO;Webinar,,,Department=R&D;Cost Centre=R&D <EU> \"Zürich\" 'x' €5
h1@acme.example.com,,,WBN,,Project=Gemini
h2@acme.example.com,https://ACME.webex.com/,,TRS,PRO,
h3@acme.example.com,acme.webex.com,,,,Region=EMEA
eu0@acme.example.com,,PRO;22,,,Cost Centre=EU-1
";

/// What [`BULK`] leaves behind, over either API.
fn assert_bulk_applied(sim: &SimHandle) {
    assert_eq!(types(sim, "h0@acme.example.com", ACME), ["3", "9"]);
    assert_eq!(
        code(sim, "h0@acme.example.com", ACME, "Cost Centre").as_deref(),
        Some("R&D <EU> \"Zürich\" 'x' €5"),
        "special characters round-trip"
    );
    assert_eq!(
        code(sim, "h0@acme.example.com", ACME, "Department").as_deref(),
        Some("R&D")
    );
    // Added to the default set (PRO), on the person's default site.
    assert_eq!(types(sim, "h1@acme.example.com", ACME), ["3", "9"]);
    assert_eq!(
        code(sim, "h1@acme.example.com", ACME, "Project").as_deref(),
        Some("Gemini")
    );
    assert_eq!(types(sim, "h2@acme.example.com", ACME), ["13"]);
    assert_eq!(
        code(sim, "h3@acme.example.com", ACME, "Region").as_deref(),
        Some("EMEA")
    );
    assert_eq!(types(sim, "h3@acme.example.com", ACME), ["3"], "untouched");
    // The person's default site is their license's.
    assert_eq!(types(sim, "eu0@acme.example.com", EU), ["22", "3"]);
    assert_eq!(
        code(sim, "eu0@acme.example.com", EU, "Cost Centre").as_deref(),
        Some("EU-1")
    );
}

/// Runs [`BULK`] twice over `api`: everything applied once, then all "no change".
async fn bulk_twice(extra: impl Fn(&SimHandle) -> Vec<String>) -> SimHandle {
    let sim = start_sim(SimConfig {
        people: hosts(4, 1),
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let out = run_settings(&work, &sim, BULK, &extra(&sim)).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_bulk_applied(&sim);
    let stats = sim.stats();
    assert_eq!(stats.settings_noop_writes, 0, "{stats:?}");
    let report = work.report(&[]).await;
    let (headers, rows) = parse_report(&report.stdout);
    let (action, before, after, codes_after, site) = (
        column(&headers, "action"),
        column(&headers, "session_types_before"),
        column(&headers, "session_types_after"),
        column(&headers, "tracking_codes_after"),
        column(&headers, "applied_site"),
    );
    assert_eq!(rows[0][action], "updated session types and tracking codes");
    assert_eq!(rows[0][before], "PRO");
    assert_eq!(rows[0][after], "PRO; WBN");
    assert!(rows[0][codes_after].contains("Department=R&D"), "{rows:?}");
    assert_eq!(rows[3][action], "updated tracking codes");
    assert_eq!(rows[4][site], EU);

    // The same file again: nothing to write.
    let mut again = extra(&sim);
    again.push("--new-run".into());
    let out = run_settings(&work, &sim, BULK, &again).await;
    assert_eq!(out.code, 0, "{out:?}");
    let later = sim.stats();
    assert_eq!(
        later.session_type_updates, stats.session_type_updates,
        "{later:?}"
    );
    assert_eq!(later.tracking_code_updates, stats.tracking_code_updates);
    let report = work.report(&[]).await;
    let (headers, rows) = parse_report(&report.stdout);
    let action = column(&headers, "action");
    assert!(rows.iter().all(|r| r[action] == "no change"), "{rows:?}");
    assert_bulk_applied(&sim);
    sim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_file_over_rest_is_applied_and_a_second_run_changes_nothing() {
    let sim = bulk_twice(|_| Vec::new()).await;
    assert_eq!(sim.stats().xml_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_file_over_the_xml_api_is_applied_and_a_second_run_changes_nothing() {
    let sim = bulk_twice(xml_args).await;
    let stats = sim.stats();
    assert!(stats.xml_set_users >= 5, "{stats:?}");
    // One ticket per site per run (the runs are two, the sites two).
    assert_eq!(stats.xml_tickets, 4, "{stats:?}");
    assert_eq!(stats.xml_ticket_rejections, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_tickets_that_stop_working_mid_run_cause_exactly_one_new_ticket() {
    const ROWS: usize = 40;
    let sim = start_sim(SimConfig {
        people: hosts(ROWS, 0),
        latency: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let mut text = String::from("email,siteUrl,trackingCodes\n");
    for i in 0..ROWS {
        text.push_str(&format!(
            "h{i}@acme.example.com,{ACME},Cost Centre=CC-{i}\n"
        ));
    }
    let mut args = xml_args(&sim);
    args.extend([
        "--concurrency".into(),
        "8".into(),
        "--rate".into(),
        "unlimited".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = work.spawn_kind("user-settings", &sim, "s.csv", &text, &args);
    wait_until(Duration::from_secs(120), || sim.stats().xml_set_users >= 8).await;
    let before = sim.stats();
    sim.expire_xml_tickets();
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .expect("the run ends")
        .unwrap();
    assert!(status.success());
    let stats = sim.stats();
    assert!(
        before.xml_set_users < ROWS as u64,
        "expired mid-run: {before:?}"
    );
    assert!(stats.xml_ticket_rejections >= 1, "{stats:?}");
    assert_eq!(
        stats.xml_tickets,
        before.xml_tickets + 1,
        "one new ticket for all the workers: {stats:?}"
    );
    for i in 0..ROWS {
        let email = format!("h{i}@acme.example.com");
        assert_eq!(
            code(&sim, &email, ACME, "Cost Centre"),
            Some(format!("CC-{i}"))
        );
    }
    assert_eq!(stats.settings_noop_writes, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_xml_rate_answer_pauses_every_worker() {
    const ROWS: usize = 24;
    let sim = start_sim(SimConfig {
        people: hosts(ROWS, 0),
        xml_rate_limit: Some((12, Duration::from_secs(2))),
        early_grace: Duration::from_secs(1),
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let mut text = String::from("email,sessionTypes\n");
    for i in 0..ROWS {
        text.push_str(&format!("h{i}@acme.example.com,PRO;PRV\n"));
    }
    let mut args = xml_args(&sim);
    args.extend([
        "--xml-rate-pause".into(),
        "2".into(),
        "--concurrency".into(),
        "8".into(),
    ]);
    let out = run_settings(&work, &sim, &text, &args).await;
    assert_eq!(out.code, 0, "{out:?}");
    let stats = sim.stats();
    assert!(
        stats.xml_rate_limited > 0,
        "the limit was reached: {stats:?}"
    );
    assert_eq!(
        stats.xml_early_requests, 0,
        "nobody called during the pause: {stats:?}"
    );
    for i in 0..ROWS {
        assert_eq!(
            types(&sim, &format!("h{i}@acme.example.com"), ACME),
            ["11", "3"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_site_refuses_tracking_codes_with_the_reason_and_the_fix() {
    let mut config = SimConfig {
        people: hosts(2, 0),
        ..SimConfig::default()
    };
    config.meeting_sites[0].mapped = true;
    let sim = start_sim(config).await;
    let work = Work::new();
    let text = "email,siteUrl,sessionTypes,trackingCodes
h0@acme.example.com,acme.webex.com,,Department=Sales
h1@acme.example.com,,PRO;WBN,
";
    let out = run_settings(&work, &sim, text, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let report = work.report(&[]).await;
    let (headers, rows) = parse_report(&report.stdout);
    let (status, error) = (column(&headers, "status"), column(&headers, "error"));
    assert_eq!(rows[0][status], "failed");
    assert!(
        rows[0][error].contains("mapped to user attributes")
            && rows[0][error].contains("change h0@acme.example.com's attribute instead"),
        "{rows:?}"
    );
    assert_eq!(rows[1][status], "succeeded");
    assert_eq!(types(&sim, "h1@acme.example.com", ACME), ["3", "9"]);
    // The failed row reads back as it was written, its site included.
    let failed = work.report(&["--failed"]).await;
    let (headers, rows) = parse_report(&failed.stdout);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][column(&headers, "siteUrl")], ACME);
    assert_eq!(
        rows[0][column(&headers, "trackingCodes")],
        "Department=Sales"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_checked_against_the_sites_before_anything_is_sent() {
    let sim = start_sim(SimConfig {
        people: hosts(1, 0),
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let long = "x".repeat(121);
    let text = format!(
        "email,siteUrl,sessionTypes,trackingCodes
h0@acme.example.com,acme.webex.com,Events,
h0@acme.example.com,acme.webex.com,,Cost Center=1
h0@acme.example.com,acme.webex.com,,Department=Marketing
h0@acme.example.com,acme.webex.com,,Project={long}
h0@acme.example.com,other.webex.com,PRO,
h0@acme.example.com,acme.webex.com,PRO,Department=sales
"
    );
    let file = s(&work.write("s.csv", &text));
    let base = sim.base_url();
    let out = run(
        &work,
        &Env::sim(),
        &["validate", "user-settings", &file, "--base-url", &base],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    for expected in [
        "line 2, column 3 (sessionTypes)",
        "acme.webex.com has no session type `Events`",
        "line 3, column 4 (trackingCodes)",
        "no tracking code named `Cost Center`",
        "line 4, column 4 (trackingCodes)",
        "`Marketing` is not an option of the tracking code `Department`",
        "line 5, column 4 (trackingCodes)",
        "121 characters",
        "line 6, column 2 (siteUrl)",
        "other.webex.com is not one of the meeting sites",
        "6 rows, 1 valid, 5 invalid",
    ] {
        assert!(out.all().contains(expected), "`{expected}` in {out:?}");
    }
    // The valid row is shown as it will be sent (the option's own spelling).
    assert!(out.stdout.contains("Department=Sales"), "{out:?}");
    // Only the sites were read: nothing about a host, nothing written.
    let stats = sim.stats();
    assert_eq!(stats.requests, 1 + 2 * 2, "{stats:?}");
    assert_eq!(stats.session_type_updates + stats.tracking_code_updates, 0);
}

/// A file of `rows` hosts each given a cost centre.
fn cost_centres(rows: usize) -> String {
    let mut text = String::from("email,siteUrl,sessionTypes,trackingCodes\n");
    for i in 0..rows {
        text.push_str(&format!(
            "h{i}@acme.example.com,{ACME},PRO;PRV,Cost Centre=CC-{i}\n"
        ));
    }
    text
}

fn assert_every_host_once(sim: &SimHandle, rows: usize) {
    for i in 0..rows {
        let email = format!("h{i}@acme.example.com");
        assert_eq!(
            code(sim, &email, ACME, "Cost Centre"),
            Some(format!("CC-{i}")),
            "{email}"
        );
        assert_eq!(types(sim, &email, ACME), ["11", "3"], "{email}");
    }
    let stats = sim.stats();
    assert_eq!(
        stats.settings_noop_writes, 0,
        "no row written twice: {stats:?}"
    );
    assert_eq!(
        stats.xml_set_users, rows as u64,
        "one SetUser per row: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_xml_dropped_answers_and_5xx_never_write_a_row_twice() {
    const ROWS: usize = 30;
    let sim = start_sim(SimConfig {
        people: hosts(ROWS, 0),
        settings_drop_rate: 0.3,
        fail_rate: 0.1,
        seed: 3,
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let mut args = xml_args(&sim);
    args.extend([
        "--max-attempts".into(),
        "20".into(),
        "--rate".into(),
        "unlimited".into(),
    ]);
    let out = run_settings(&work, &sim, &cost_centres(ROWS), &args).await;
    assert_eq!(out.code, 0, "{out:?}");
    let stats = sim.stats();
    assert!(
        stats.dropped > 0 && stats.injected_failures > 0,
        "{stats:?}"
    );
    assert_every_host_once(&sim, ROWS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_xml_a_killed_run_resumes_and_writes_every_row_once() {
    const ROWS: usize = 40;
    let sim = start_sim(SimConfig {
        people: hosts(ROWS, 0),
        latency: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let mut args = xml_args(&sim);
    args.extend([
        "--concurrency".into(),
        "8".into(),
        "--rate".into(),
        "unlimited".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = work.spawn_kind("user-settings", &sim, "s.csv", &cost_centres(ROWS), &args);
    wait_until(Duration::from_secs(120), || sim.stats().xml_set_users >= 8).await;
    child.start_kill().unwrap();
    assert!(!child.wait().await.unwrap().success());
    assert!(sim.stats().xml_set_users < ROWS as u64, "killed mid-run");
    // The resume keeps the run's API (stored with it).
    let out = work.resume(&sim, &Env::sim(), &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_every_host_once(&sim, ROWS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_xml_a_token_without_spark_all_stops_with_the_reason_and_no_secret() {
    let sim = start_sim(SimConfig {
        people: hosts(1, 0),
        granted_scopes: "meeting:admin_schedule_read meeting:admin_schedule_write".into(),
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let out = run_settings(&work, &sim, &cost_centres(1), &xml_args(&sim)).await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("030002") && out.stderr.contains("spark:all"),
        "{out:?}"
    );
    assert!(
        !out.all().contains("sim-access-token") && !out.all().contains("SIMTICKET"),
        "{out:?}"
    );
    assert_eq!(sim.stats().xml_tickets, 0);
}

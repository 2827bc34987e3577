//! `run users`: people created or updated, licenses added and removed, from
//! our CSV or a Control Hub export; idempotent through creates that fail
//! after the work. The cases every kind shares (kills, drops, 401s, 429
//! storms, invalid rows) are in conformance.rs.

use crate::util::*;
use webex_bulk::sim::{SimConfig, SimHandle, SimPerson};

fn person(email: &str, first: &str, last: &str) -> SimPerson {
    SimPerson {
        email: email.into(),
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        display_name: Some(format!("{first} {last}")),
        department: None,
        title: None,
        licenses: Vec::new(),
    }
}

fn license_id(sim: &SimHandle, label: &str) -> String {
    let (name, site) = label
        .split_once('@')
        .map(|(n, s)| (n, Some(s)))
        .unwrap_or((label, None));
    sim.licenses()
        .iter()
        .find(|l| l["name"] == name && site.is_none_or(|s| l["siteUrl"] == s))
        .unwrap_or_else(|| panic!("no license {label}"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn people_by_email(sim: &SimHandle, email: &str) -> Vec<serde_json::Value> {
    sim.people()
        .into_iter()
        .filter(|p| {
            p["emails"][0]
                .as_str()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
        .collect()
}

fn run_users<'a>(
    work: &'a Work,
    sim: &'a SimHandle,
    name: &str,
    text: &str,
    extra: &[&'a str],
) -> impl std::future::Future<Output = Output> + 'a {
    let file = s(&work.write(name, text));
    let (db, base) = (s(&work.db()), sim.base_url());
    let mut args: Vec<String> = [
        "run",
        "users",
        &file,
        "--db",
        &db,
        "--base-url",
        &base,
        "--progress",
        "none",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(work, &Env::sim(), &args).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_file_creates_and_updates_people_and_reports_licenses() {
    let mut existing = person("ana.silva@acme-corp.example.com", "Ana", "Silva");
    existing.title = Some("Account Executive".into());
    existing.department = Some("Sales".into());
    let sim = start_sim(SimConfig {
        people: vec![
            existing,
            person("ben.okafor@acme-corp.example.com", "Ben", "Okafor"),
        ],
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let text = include_str!("../../samples/users.csv");
    let out = run_users(&work, &sim, "users.csv", text, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let stats = sim.stats();
    assert_eq!(stats.people_created, 28, "{stats:?}");
    assert_eq!(stats.people_duplicates, 0);
    assert_eq!(sim.people().len(), 30);
    let ana = &people_by_email(&sim, "ana.silva@acme-corp.example.com")[0];
    let licenses: Vec<&str> = ana["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(licenses.contains(&license_id(&sim, "Messaging").as_str()));
    assert!(
        licenses.contains(&license_id(&sim, "Meeting - Webex Enterprise@acme.webex.com").as_str())
    );

    let report = work.report(&[]).await;
    let (headers, rows) = parse_report(&report.stdout);
    let col = |n: &str| headers.iter().position(|h| h == n).unwrap();
    assert_eq!(
        &headers[headers.len() - 5..],
        [
            "person_id",
            "action",
            "licenses_before",
            "licenses_after",
            "note"
        ]
    );
    let actions: Vec<&str> = rows.iter().map(|r| r[col("action")].as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "created").count(), 28);
    assert_eq!(actions.iter().filter(|a| **a == "updated").count(), 2);
    assert_eq!(rows[0][col("licenses_before")], "");
    assert_eq!(
        rows[0][col("licenses_after")],
        "Messaging; Meeting - Webex Enterprise@acme.webex.com"
    );
    assert!(rows.iter().all(|r| !r[col("person_id")].is_empty()));
    // Each row names the request that settled it, for Webex support.
    assert!(rows.iter().all(|r| !r[col("tracking_id")].is_empty()));

    // The same people again: nothing to do, no write sent.
    let before = sim.stats();
    let out = run_users(&work, &sim, "again.csv", &format!("{text}\n"), &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let after = sim.stats();
    assert_eq!(
        (
            after.people_created,
            after.people_updates,
            after.license_patches
        ),
        (
            before.people_created,
            before.people_updates,
            before.license_patches
        )
    );
    let (headers, rows) = parse_report(&work.report(&[]).await.stdout);
    let action = headers.iter().position(|h| h == "action").unwrap();
    assert!(rows.iter().all(|r| r[action] == "no change"), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_hub_export_adds_and_removes_by_true_and_false() {
    let mut hiro = person("hiro.rossi@acme-corp.example.com", "Hiro", "Rossi");
    let sim0 = start_sim(SimConfig::default()).await;
    let calling = license_id(&sim0, "Webex Calling - Professional");
    hiro.licenses = vec![calling.clone()];
    let sim = start_sim(SimConfig {
        people: vec![hiro],
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let mut text = include_str!("../../samples/controlhub-users.csv").to_owned();
    // Hiro's row says FALSE for calling: it is removed.
    text = text.replacen(
        "hiro.rossi@acme-corp.example.com,Hiro,Rossi,Hiro Rossi,Active,,TRUE,TRUE,,,",
        "hiro.rossi@acme-corp.example.com,Hiro,Rossi,Hiro Rossi,Active,,TRUE,TRUE,,FALSE,",
        1,
    );
    let out = run_users(&work, &sim, "export.csv", &text, &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("ignoring column(s)") && out.stderr.contains("User Status"),
        "{out:?}"
    );
    let hiro = &people_by_email(&sim, "hiro.rossi@acme-corp.example.com")[0];
    let held: Vec<&str> = hiro["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        !held.contains(&calling.as_str()),
        "FALSE removed it: {held:?}"
    );
    assert!(held.contains(&license_id(&sim, "Messaging").as_str()));
    assert_eq!(sim.people().len(), 30);
    assert_eq!(sim.stats().people_duplicates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_license_names_are_refused_before_any_call() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let text = "email,firstName,addLicenses\nann@acme.example.com,Ann,Messagin\nbo@acme.example.com,Bo,Meeting - Webex Enterprise\n";
    let file = s(&work.write("bad.csv", text));
    let check = run(
        &work,
        &Env::sim(),
        &["validate", "users", &file, "--base-url", &sim.base_url()],
    )
    .await;
    assert_eq!(check.code, 1, "{check:?}");
    assert!(
        check
            .stderr
            .contains("line 2, column 3 (addLicenses): no license of this org is named `Messagin`"),
        "{check:?}"
    );
    assert!(check.stderr.contains("line 3, column 3 (addLicenses): `Meeting - Webex Enterprise` exists on several meeting sites"), "{check:?}");
    assert!(check.stderr.contains("Name@siteUrl"), "{check:?}");
    let out = run_users(&work, &sim, "bad.csv", text, &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let stats = sim.stats();
    assert_eq!(
        stats.requests, 2,
        "only the two license listings: {stats:?}"
    );
    assert!(sim.people().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licenses_that_run_out_fail_their_rows_and_say_which() {
    let sim = start_sim(SimConfig {
        people: vec![person("old@acme.example.com", "Old", "Timer")],
        ..SimConfig::default()
    })
    .await;
    let assistant = sim
        .licenses()
        .into_iter()
        .find(|l| l["name"] == "Webex Assistant")
        .expect("a scarce license");
    let free =
        assistant["totalUnits"].as_u64().unwrap() - assistant["consumedUnits"].as_u64().unwrap();
    let work = Work::new();
    let mut text =
        String::from("email,firstName,addLicenses\nold@acme.example.com,Old,Webex Assistant\n");
    for i in 0..free + 1 {
        text.push_str(&format!("new{i}@acme.example.com,New{i},Webex Assistant\n"));
    }
    let file = s(&work.write("scarce.csv", &text));
    let check = run(
        &work,
        &Env::sim(),
        &["validate", "users", &file, "--base-url", &sim.base_url()],
    )
    .await;
    assert_eq!(check.code, 0, "{check:?}");
    assert!(
        check.stderr.contains(&format!(
            "adds Webex Assistant {} times but only {free}",
            free + 2
        )),
        "{check:?}"
    );
    let out = run_users(&work, &sim, "scarce.csv", &text, &["--concurrency", "1"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let (headers, rows) = parse_report(&work.report(&["--failed"]).await.stdout);
    let error = headers.iter().position(|h| h == "error").unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter().all(|r| r[error].contains("Webex Assistant")),
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_whose_answers_are_lost_or_fail_never_make_a_person_twice() {
    let sim = start_sim(SimConfig {
        people_create_lost_rate: 0.3,
        people_create_error_rate: 0.3,
        seed: 3,
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let out = run_users(
        &work,
        &sim,
        "users.csv",
        include_str!("../../samples/users.csv"),
        &["--max-attempts", "20"],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sim.people().len(), 30);
    assert_eq!(sim.stats().people_duplicates, 0);
    assert_eq!(sim.stats().people_created, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_keeps_the_fields_the_file_does_not_mention() {
    let mut ann = person("ann@acme.example.com", "Ann", "Lee");
    ann.title = Some("Account Executive".into());
    ann.department = Some("Sales".into());
    let sim = start_sim(SimConfig {
        people: vec![ann],
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let out = run_users(
        &work,
        &sim,
        "move.csv",
        "email,department\nann@acme.example.com,Marketing\n",
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let ann = &people_by_email(&sim, "ann@acme.example.com")[0];
    assert_eq!(ann["department"], "Marketing");
    assert_eq!(
        ann["title"], "Account Executive",
        "PUT is a full replace: the title was sent back"
    );
    assert_eq!(ann["firstName"], "Ann");
    assert_eq!(ann["displayName"], "Ann Lee");
    assert_eq!(sim.stats().people_updates, 1);
}

/// An address taken in another org: Webex answers every create with 409 and
/// this org's lookup never finds the person. The row fails after its
/// attempts, saying why; it does not go round forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_taken_in_another_org_fails_its_row_after_its_attempts() {
    let sim = start_sim(SimConfig {
        other_org_emails: vec!["taken@elsewhere.example.com".into()],
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let text = "email,firstName,lastName\n\
                taken@elsewhere.example.com,Tia,Taken\n\
                free@acme.example.com,Fay,Free\n";
    let out = run_users(&work, &sim, "p.csv", text, &["--max-attempts", "3"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let (headers, rows) = parse_report(&work.report(&[]).await.stdout);
    let col = |n: &str| headers.iter().position(|h| h == n).unwrap();
    assert_eq!(rows[0][col("status")], "failed");
    assert!(
        rows[0][col("error")].contains("may belong to another org"),
        "{:?}",
        rows[0]
    );
    // Three tries, each a lookup and a create.
    assert_eq!(rows[0][col("attempts")], "6", "{:?}", rows[0]);
    assert_eq!(rows[1][col("status")], "succeeded");
    assert_eq!(sim.stats().people_create_conflicts, 3);
}

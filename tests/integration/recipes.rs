//! Recipes (`jobs/*.toml`): the shipped ones on their messy samples, a run
//! and a resume through a recipe edited in between, a recipe's mistakes with
//! their lines, dates that read two ways, and `webex-bulk jobs`.

use std::path::Path;

use webex_bulk::sim::SimConfig;

use crate::util::*;

/// Copies the repository's `jobs/NAME.toml` and `samples/SAMPLE` into the
/// work folder (the commands run there: messages show relative paths).
fn shipped(work: &Work, job: &str, sample: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let jobs = work.path("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    std::fs::copy(
        root.join("jobs").join(format!("{job}.toml")),
        jobs.join(format!("{job}.toml")),
    )
    .unwrap();
    std::fs::copy(root.join("samples").join(sample), work.path(sample)).unwrap();
}

async fn validate(work: &Work, sim: &webex_bulk::sim::SimHandle, args: &[&str]) -> Output {
    let base = sim.base_url();
    let mut all = vec!["validate"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--base-url", &base]);
    run(work, &Env::sim(), &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_recipe_reads_its_sample() {
    let sim = start_sim(SimConfig::default()).await;
    for (job, sample, rows) in [
        ("schedule-meetings", "schedule-meetings.csv", 3),
        ("weekly-office-hours", "office-hours.csv", 3),
        ("onboard-new-hires", "new-hires.csv", 3),
        ("offboard-remove-licenses", "leavers.csv", 2),
    ] {
        let work = Work::new();
        shipped(&work, job, sample);
        let out = validate(&work, &sim, &["--job", &format!("jobs/{job}.toml"), sample]).await;
        assert_eq!(out.code, 0, "{job}: {out:?}");
        assert!(
            out.stdout
                .contains(&format!("{sample}: {rows} rows, {rows} valid, 0 invalid")),
            "{job}: {out:?}"
        );
        let listed = run(&work, &Env::default(), &["jobs"]).await;
        assert!(
            listed.stdout.contains(&format!("jobs/{job}.toml")),
            "{listed:?}"
        );
    }
}

/// The European sheet as it will be sent: a date and a time joined in
/// Europe/Berlin, across the change to summer time (29 March +01:00, 1 April
/// +02:00), the default duration where the cell is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_of_a_recipe_shows_the_rows_as_they_will_be_sent() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    shipped(&work, "schedule-meetings", "schedule-meetings.csv");
    let base = sim.base_url();
    let out = run(
        &work,
        &Env::sim(),
        &[
            "run",
            "--job",
            "jobs/schedule-meetings.toml",
            "schedule-meetings.csv",
            "--dry-run",
            "--base-url",
            &base,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let expected = "schedule-meetings.csv: 3 rows, 3 valid, 0 invalid (0 problems, 1 warnings)
the first valid rows, as they will be sent:
  line 2:
    title      Quartalsplanung Vertrieb
    start      2030-03-29T09:00:00+01:00
    end        2030-03-29T10:00:00+01:00
    timezone   Europe/Berlin
    hostEmail  anna.berger@acme.example.com
    invitees   jonas.keller@acme.example.com and 1 more
  line 3:
    title      Quartalsplanung Vertrieb (Teil 2)
    start      2030-04-01T09:00:00+02:00
    end        2030-04-01T09:30:00+02:00
    timezone   Europe/Berlin
    hostEmail  anna.berger@acme.example.com
    invitees   jonas.keller@acme.example.com
  line 4:
    title      Kundentermin Müller & Söhne
    start      2030-04-02T14:30:00+02:00
    end        2030-04-02T15:15:00+02:00
    timezone   Europe/Berlin
    hostEmail  jonas.keller@acme.example.com
    invitees   kontakt@mueller-soehne.example.com
";
    assert_eq!(out.stdout, expected);
    assert!(
        out.stderr
            .contains("ignoring column(s) that are not used by the recipe: Raum"),
        "{out:?}"
    );
    assert_eq!(sim.stats().creates, 0, "a dry run sends nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_resumes_with_its_stored_recipe_even_after_the_file_was_edited() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    shipped(&work, "schedule-meetings", "schedule-meetings.csv");
    let (db, base) = (s(&work.db()), sim.base_url());
    let args = [
        "run",
        "--job",
        "jobs/schedule-meetings.toml",
        "schedule-meetings.csv",
        "--db",
        &db,
        "--base-url",
        &base,
        "--progress",
        "none",
    ];
    let mut first = args.to_vec();
    first.extend_from_slice(&["--limit", "1"]);
    let out = run(&work, &Env::sim(), &first).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sim.meetings().len(), 1);
    // Someone edits the recipe: another title column, another default.
    let path = work.path("jobs/schedule-meetings.toml");
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replace("title = \"Betreff\"", "title = \"Raum\"")
        .replace("duration = 30", "duration = 90");
    std::fs::write(&path, edited).unwrap();
    let out = work.resume(&sim, &Env::sim(), &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let meetings = sim.meetings();
    let titles: Vec<&str> = meetings
        .iter()
        .map(|m| m["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Quartalsplanung Vertrieb",
            "Quartalsplanung Vertrieb (Teil 2)",
            "Kundentermin Müller & Söhne"
        ]
    );
    // Row 3 had no duration: the recipe's default as it was (30 minutes).
    assert_eq!(meetings[1]["start"], "2030-04-01T09:00:00+02:00");
    assert_eq!(meetings[1]["end"], "2030-04-01T09:30:00+02:00");
    // verify reads the run's rows through its stored recipe too.
    let db = s(&work.db());
    let out = run(
        &work,
        &Env::sim(),
        &["verify", "--db", &db, "--run", "1", "--base-url", &base],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("3 ok, 0 missing, 0 duplicated, 0 unchecked"),
        "{out:?}"
    );
    // The same file through the same recipe is refused; through another
    // recipe (the edited one is another) it is a new run.
    let out = run(&work, &Env::sim(), &args).await;
    assert!(
        out.stderr.contains("queued run 2"),
        "a new run through the edited recipe: {out:?}"
    );
    // Its problems point at the file's own column.
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("line 4, column 8 (Raum → title): title is empty"),
        "{out:?}"
    );
    let out = run(&work, &Env::sim(), &args).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("already run as run 2"), "{out:?}");
    // Its invalid row, as `report --failed` writes it, reads back through
    // the same recipe: the file's own columns, the same problem.
    let failed = work
        .report(&["--run", "2", "--failed", "-o", "failed.csv"])
        .await;
    assert_eq!(failed.code, 0, "{failed:?}");
    let out = validate(
        &work,
        &sim,
        &["--job", "jobs/schedule-meetings.toml", "failed.csv"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains("failed.csv: 1 rows, 0 valid, 1 invalid"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("(Raum → title): title is empty"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_hires_are_created_through_the_recipe() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    shipped(&work, "onboard-new-hires", "new-hires.csv");
    let (db, base) = (s(&work.db()), sim.base_url());
    let out = run(
        &work,
        &Env::sim(),
        &[
            "run",
            "--job",
            "jobs/onboard-new-hires.toml",
            "new-hires.csv",
            "--db",
            &db,
            "--base-url",
            &base,
            "--progress",
            "none",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let people = sim.people();
    assert_eq!(people.len(), 3);
    let chloe = people
        .iter()
        .find(|p| p["emails"][0] == "chloe.martin@acme.example.com")
        .expect("created");
    assert_eq!(chloe["displayName"], "Chloé Martin");
    assert_eq!(chloe["title"], "Account Executive");
    assert_eq!(chloe["licenses"].as_array().unwrap().len(), 2);
    // The report has the file's own columns: it reads back through the recipe.
    let report = work.report(&[]).await;
    assert!(
        report
            .stdout
            .starts_with("Employee ID,Work Email,Given Name,Surname"),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_in_a_recipe_and_dates_that_read_two_ways_are_named_with_the_fix() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    std::fs::create_dir_all(work.path("jobs")).unwrap();
    work.write(
        "jobs/broken.toml",
        "kind = \"meetings\"\ndescription = \"x\"\n\n[fields]\ntitle = \"Subjekt\"\nstart = { date = \"Date\", time = \"Time\" }\nhostEmail = \"Host\"\n\n[defaults]\nduration = 30\n",
    );
    work.write(
        "jobs/bad-key.toml",
        "kind = \"meetings\"\n[fields]\ntitle = \"Subject\"\nfavourite = \"Colour\"\n",
    );
    work.write(
        "m.csv",
        "Subject,Date,Time,Host\nPlanning,03/04/2030,9:00 AM,a@acme.example.com\nReview,25/04/2030,9:00 AM,a@acme.example.com\n",
    );
    let out = validate(&work, &sim, &["--job", "jobs/broken.toml", "m.csv"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("maps `title` from the column `Subjekt`, which this file does not have"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("did you mean `Subject`?") && out.stderr.contains("line 5"),
        "{out:?}"
    );
    let out = validate(&work, &sim, &["--job", "jobs/bad-key.toml", "m.csv"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("jobs/bad-key.toml, line 4: the meetings kind has no field `favourite`"),
        "{out:?}"
    );
    let listed = run(&work, &Env::default(), &["jobs"]).await;
    assert!(
        listed.stdout.contains("cannot be used"),
        "a broken recipe is listed: {listed:?}"
    );
    let out = validate(&work, &sim, &["meetngs", "m.csv"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("`meetngs` is not a job kind")
            && out
                .stderr
                .contains("use one of: meetings, users, user-settings"),
        "{out:?}"
    );

    // Without a date order, 03/04/2030 reads two ways: refused, with the fix.
    work.write(
        "jobs/plain.toml",
        "kind = \"meetings\"\n[fields]\ntitle = \"Subject\"\nstart = { date = \"Date\", time = \"Time\" }\nhostEmail = \"Host\"\n[defaults]\nduration = 30\ntimezone = \"Europe/Paris\"\n",
    );
    let out = validate(&work, &sim, &["--job", "jobs/plain.toml", "m.csv"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("line 2, column 2 (Date + Time → start)"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("reads as more than one date") && out.stderr.contains("--date-order"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("2 rows, 1 valid, 1 invalid"),
        "25/04/2030 reads one way: {out:?}"
    );
    let out = validate(
        &work,
        &sim,
        &["--job", "jobs/plain.toml", "m.csv", "--date-order", "dmy"],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("2030-04-03T09:00:00"), "{out:?}");
    // --date-order without a recipe: the kind's own columns, its date
    // columns in that order (an ISO date-time is taken as it is).
    work.write(
        "own.csv",
        "title,start,duration,hostEmail,timezone\nPlanning,10.03.2030 09:00,30,a@acme.example.com,Europe/Berlin\nReview,2030-03-11T10:00:00+01:00,30,a@acme.example.com,\n",
    );
    let out = validate(&work, &sim, &["meetings", "own.csv"]).await;
    assert_eq!(out.code, 1, "not ISO, no order: {out:?}");
    let out = validate(&work, &sim, &["meetings", "own.csv", "--date-order", "dmy"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("start      2030-03-10T09:00:00+01:00"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("start      2030-03-11T10:00:00+01:00"),
        "{out:?}"
    );
    let out = validate(&work, &sim, &["users", "own.csv", "--date-order", "dmy"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("the users kind has no date columns"),
        "{out:?}"
    );
}

/// A workbook made here: its second sheet, a date-formatted column and a
/// time-formatted one, read through a recipe; problems name the sheet's
/// own row numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workbook_sheet_reads_through_a_recipe_with_its_row_numbers() {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let mut book = Workbook::new();
    book.add_worksheet().set_name("Read me").unwrap();
    let sheet = book.add_worksheet();
    sheet.set_name("Plan").unwrap();
    let date = Format::new().set_num_format("dd/mm/yyyy");
    let time = Format::new().set_num_format("h:mm AM/PM");
    for (c, h) in ["Subject", "Day", "Starts", "Organizer"].iter().enumerate() {
        sheet.write(0, c as u16, *h).unwrap();
    }
    for (r, (title, day, hour)) in [("Planning", 29, 9), ("", 30, 10), ("Review", 1, 14)]
        .iter()
        .enumerate()
    {
        let r = r as u32 + 1;
        let month = if *day == 1 { 4 } else { 3 };
        sheet.write(r, 0, *title).unwrap();
        sheet
            .write_datetime_with_format(
                r,
                1,
                ExcelDateTime::from_ymd(2030, month, *day).unwrap(),
                &date,
            )
            .unwrap();
        sheet
            .write_datetime_with_format(r, 2, ExcelDateTime::from_hms(*hour, 0, 0).unwrap(), &time)
            .unwrap();
        sheet.write(r, 3, "anna.berger@acme.example.com").unwrap();
    }
    book.save(work.path("plan.xlsx")).unwrap();
    std::fs::create_dir_all(work.path("jobs")).unwrap();
    work.write(
        "jobs/plan.toml",
        "kind = \"meetings\"\n[fields]\ntitle = \"Subject\"\nstart = { date = \"Day\", time = \"Starts\" }\nhostEmail = \"Organizer\"\n[defaults]\nduration = 30\ntimezone = \"Europe/Berlin\"\n",
    );
    let out = validate(
        &work,
        &sim,
        &["--job", "jobs/plan.toml", "plan.xlsx", "--sheet", "Plan"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains("plan.xlsx: 3 rows, 2 valid, 1 invalid"),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("plan.xlsx, line 3, column 1 (Subject → title)"),
        "{out:?}"
    );
    assert!(out.stdout.contains("2030-03-29T09:00:00+01:00"), "{out:?}");
    assert!(out.stdout.contains("2030-04-01T14:00:00+02:00"), "{out:?}");
}

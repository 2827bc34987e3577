//! What the queue database says when it cannot be used: a damaged database
//! exits 4 (not 2, which promises that nothing was queued), and a run of a
//! kind this version does not know is refused, never taken for meetings.

use webex_bulk::sim::SimConfig;

use crate::util::*;

/// A finished meetings run of 3 rows in `work`'s database, then `sql` run on it.
async fn queue_then(work: &Work, sql: &str) {
    let sim = start_sim(SimConfig::default()).await;
    let out = work
        .run_meetings(&sim, &Env::sim(), "m.csv", &meetings_csv(3), &[])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    sim.shutdown().await;
    let conn = rusqlite::Connection::open(work.db()).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_database_exits_4_and_says_so() {
    let work = Work::new();
    // The rows are gone, the schema version says all is well.
    queue_then(&work, "DROP TABLE rows;").await;
    let db = s(&work.db());
    let sim = start_sim(SimConfig::default()).await;
    let base = sim.base_url();
    for args in [
        vec!["status", "--db", &db],
        vec!["report", "--db", &db],
        vec![
            "run",
            "--resume",
            "1",
            "--db",
            &db,
            "--base-url",
            &base,
            "--retry-failed",
        ],
    ] {
        let out = run(&work, &Env::sim(), &args).await;
        assert_eq!(out.code, 4, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("rows"),
            "{args:?} names what failed: {out:?}"
        );
    }
    assert_eq!(sim.stats().requests, 0, "nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_database_exits_4_and_a_missing_folder_2() {
    let work = Work::new();
    let junk = work.write("junk.db", &"not a database, just text\n".repeat(400));
    let junk = s(&junk);
    for args in [
        vec!["status", "--db", &junk],
        vec!["report", "--db", &junk],
        vec!["run", "--resume", "--db", &junk],
    ] {
        let out = run(&work, &Env::sim(), &args).await;
        assert_eq!(out.code, 4, "{args:?}: {out:?}");
        assert!(out.stderr.contains("not a database"), "{args:?}: {out:?}");
    }
    // A path where no database can be: a usage error.
    let nowhere = s(&work.path("no/such/folder/q.db"));
    let file = s(&work.write("m.csv", &meetings_csv(1)));
    let out = run(
        &work,
        &Env::sim(),
        &["run", "meetings", &file, "--db", &nowhere],
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("cannot create"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_an_unknown_kind_is_refused_never_taken_for_meetings() {
    let work = Work::new();
    queue_then(
        &work,
        "UPDATE runs SET kind = 'user-settings-v9', state = 'interrupted'; UPDATE rows SET state = 'pending';",
    )
    .await;
    let db = s(&work.db());
    let sim = start_sim(SimConfig::default()).await;
    let base = sim.base_url();
    for args in [
        vec!["report", "--db", &db],
        vec!["run", "--resume", "--db", &db, "--base-url", &base],
    ] {
        let out = run(&work, &Env::sim(), &args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(
            out.stderr
                .contains("`user-settings-v9` is not a job kind this version of webex-bulk knows"),
            "{args:?}: {out:?}"
        );
        assert!(!out.stdout.contains("meeting_id"), "{out:?}");
    }
    assert_eq!(sim.stats().requests, 0, "nothing sent");
    // status still lists it, as it is.
    let status = work.status().await;
    assert_eq!(status[0]["run"]["kind"], "user-settings-v9");
}

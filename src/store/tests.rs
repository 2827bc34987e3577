use super::schema::SCHEMA_V1;
use super::*;

fn store_with_rows(n: u64) -> (tempfile::TempDir, Store, i64) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("q.db")).unwrap();
    let opts = serde_json::json!({});
    let mut ingest = store
        .begin_ingest(&NewRun {
            kind: "meetings",
            source_path: "x.csv",
            options: &opts,
        })
        .unwrap();
    let mut rows: Vec<NewRow> = (2..2 + n)
        .map(|line| NewRow {
            line,
            original: encode_cells(&[format!("t{line}")]),
            request: None,
            error: None,
        })
        .collect();
    rows.push(NewRow {
        line: 2 + n,
        original: encode_cells(&["bad".into()]),
        request: None,
        error: Some("title is empty".into()),
    });
    ingest.add_rows(&rows).unwrap();
    let id = ingest.commit("abc", &["title".to_string()]).unwrap();
    (dir, store, id)
}

#[test]
fn an_ingest_that_is_not_committed_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("q.db")).unwrap();
    drop(one_row_ingest(&mut store));
    assert!(store.runs().unwrap().is_empty());
}

fn journal_mode(store: &Store) -> String {
    store
        .conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap()
}

fn one_row_ingest(store: &mut Store) -> Ingest<'_> {
    let opts = serde_json::json!({});
    let mut ingest = store
        .begin_ingest(&NewRun {
            kind: "meetings",
            source_path: "x",
            options: &opts,
        })
        .unwrap();
    let row = NewRow {
        line: 2,
        original: encode_cells(&["t".into()]),
        request: None,
        error: None,
    };
    ingest.add_rows(&[row]).unwrap();
    ingest
}

#[test]
fn an_ingest_alone_writes_without_the_wal_and_gives_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let mut store = Store::open(&path).unwrap();
    assert_eq!(journal_mode(&store), "wal");
    let ingest = one_row_ingest(&mut store);
    assert!(ingest.rollback_journal);
    let run = ingest.commit("h", &[]).unwrap();
    assert_eq!(journal_mode(&store), "wal");
    // A dropped ingest gives the WAL back too.
    drop(one_row_ingest(&mut store));
    assert_eq!(journal_mode(&store), "wal");
    let other = Store::open(&path).unwrap();
    assert_eq!(other.counts(run).unwrap().pending, 1);
    assert_eq!(other.runs().unwrap().len(), 1);
}

#[test]
fn an_ingest_beside_another_connection_keeps_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let mut store = Store::open(&path).unwrap();
    let reader = Store::open(&path).unwrap();
    assert!(reader.runs().unwrap().is_empty());
    let ingest = one_row_ingest(&mut store);
    assert!(!ingest.rollback_journal);
    let run = ingest.commit("h", &[]).unwrap();
    assert_eq!(reader.counts(run).unwrap().pending, 1);
    assert_eq!(journal_mode(&store), "wal");
}

#[tokio::test]
async fn claims_are_durable_and_resume_marks_them_for_lookup() {
    let (dir, store, run) = store_with_rows(3);
    assert_eq!(store.latest_run().unwrap().unwrap().source_sha256, "abc");
    let writer = store.into_writer();
    let got = writer.claim(run, now_ms(), 2, i64::MAX).await.unwrap();
    assert_eq!(got.iter().map(|c| c.line).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(got[1].cells().unwrap(), vec!["t3".to_string()]);
    assert_eq!(got[1].request, None);
    // A second connection (another process after a crash) sees them in flight.
    let mut other = Store::open(&dir.path().join("q.db")).unwrap();
    let c = other.counts(run).unwrap();
    assert_eq!((c.pending, c.in_flight, c.invalid), (1, 2, 1));
    writer
        .complete(
            run,
            2,
            Outcome::Succeeded {
                created: Created {
                    id: "m1".into(),
                    number: None,
                    link: None,
                    extra: None,
                },
                status: Some(200),
                tracking_id: None,
                note: None,
                check_at: None,
            },
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(other.prepare_resume(run, false).unwrap(), 1);
    let c = other.counts(run).unwrap();
    assert_eq!((c.pending, c.in_flight, c.succeeded), (2, 0, 1));
    let again = writer.claim(run, now_ms(), 10, i64::MAX).await.unwrap();
    assert_eq!(
        again
            .iter()
            .map(|c| (c.line, c.reconcile))
            .collect::<Vec<_>>(),
        vec![(3, true), (4, false)]
    );
    assert_eq!(other.attempts(run, 3).unwrap()[0].action, "interrupted");
}

#[tokio::test]
async fn released_rows_are_pending_again_as_they_were() {
    let (dir, store, run) = store_with_rows(3);
    let writer = store.into_writer();
    let first = writer.claim(run, now_ms(), 3, i64::MAX).await.unwrap();
    assert_eq!(first.len(), 3);
    // A crash: line 2 must be looked up before any resend.
    writer.release(run, vec![2, 3, 4]).await.unwrap();
    let mut other = Store::open(&dir.path().join("q.db")).unwrap();
    other
        .conn
        .execute("UPDATE rows SET reconcile = 1 WHERE line = 2", [])
        .unwrap();
    let again = writer.claim(run, now_ms(), 3, i64::MAX).await.unwrap();
    writer.release(run, vec![3]).await.unwrap();
    assert_eq!(
        again
            .iter()
            .map(|c| (c.line, c.reconcile))
            .collect::<Vec<_>>(),
        vec![(2, true), (3, false), (4, false)]
    );
    let c = other.counts(run).unwrap();
    assert_eq!((c.pending, c.in_flight), (1, 2));
    // Released rows have no attempt: nothing was sent.
    assert!(other.attempts(run, 3).unwrap().is_empty());
    assert_eq!(other.prepare_resume(run, false).unwrap(), 2);
}

#[tokio::test]
async fn a_result_nobody_waits_for_is_committed_on_its_own() {
    let (dir, store, run) = store_with_rows(1);
    let writer = store.into_writer();
    let claimed = writer.claim(run, now_ms(), 1, i64::MAX).await.unwrap();
    writer
        .record(
            run,
            claimed[0].line,
            Outcome::Succeeded {
                created: Created {
                    id: "m".into(),
                    ..Created::default()
                },
                status: Some(200),
                tracking_id: None,
                note: None,
                check_at: None,
            },
            vec![],
        )
        .unwrap();
    // Nobody asks anything more: the record is committed all the same.
    let other = Store::open(&dir.path().join("q.db")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while other.counts(run).unwrap().succeeded == 0 {
        assert!(std::time::Instant::now() < deadline, "never committed");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    drop(writer);
}

#[tokio::test]
async fn recorded_results_are_committed_before_anything_asked_later() {
    let (_dir, store, run) = store_with_rows(3);
    let writer = store.into_writer();
    let claimed = writer.claim(run, now_ms(), 3, i64::MAX).await.unwrap();
    for c in &claimed {
        let created = Created {
            id: format!("m{}", c.line),
            number: None,
            link: None,
            extra: None,
        };
        let outcome = Outcome::Succeeded {
            created,
            status: Some(200),
            tracking_id: None,
            note: None,
            check_at: None,
        };
        writer.record(run, c.line, outcome, vec![]).unwrap();
    }
    // No await on the records; the next question sees all of them.
    let c = writer.counts(run).await.unwrap();
    assert_eq!((c.succeeded, c.in_flight), (3, 0));
    assert!(writer.failure().is_none());
}

#[tokio::test]
async fn retries_wait_until_due() {
    let (_dir, store, run) = store_with_rows(1);
    let writer = store.into_writer();
    let now = now_ms();
    let c = writer.claim(run, now, 5, i64::MAX).await.unwrap();
    assert_eq!(c.len(), 1);
    let retry = Outcome::Retry {
        next_at: now + 60_000,
        status: Some(503),
        error: "busy".into(),
        tracking_id: None,
        reconcile: true,
        uncertain_at: Some(now),
        counts_as_failure: true,
        throttled: false,
    };
    writer.complete(run, 2, retry, vec![]).await.unwrap();
    assert!(writer
        .claim(run, now, 5, i64::MAX)
        .await
        .unwrap()
        .is_empty());
    let waiting = writer.next_due(run, i64::MAX).await.unwrap();
    assert_eq!(waiting.next, Some(now + 60_000));
    // Its earlier create may still land: it waits for Webex to finish.
    assert_eq!(
        (waiting.settling, waiting.next_settled),
        (1, Some(now + 60_000))
    );
    let later = writer.claim(run, now + 60_000, 5, i64::MAX).await.unwrap();
    assert_eq!((later[0].failures, later[0].reconcile), (1, true));
}

#[tokio::test]
async fn an_uncertain_create_keeps_its_send_time_and_a_stop_counts_from_the_claim() {
    let (dir, store, run) = store_with_rows(2);
    let writer = store.into_writer();
    let claimed_at = now_ms() - 10_000;
    let c = writer.claim(run, claimed_at, 2, i64::MAX).await.unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].uncertain_at, None);
    // Line 2: a create timed out; it was sent at `sent`.
    let sent = claimed_at + 100;
    let retry = Outcome::Retry {
        next_at: 0,
        status: None,
        error: "timeout".into(),
        tracking_id: None,
        reconcile: true,
        uncertain_at: Some(sent),
        counts_as_failure: true,
        throttled: false,
    };
    let create = Attempt {
        action: "create",
        started_at: sent,
        finished_at: sent + 1_000,
        http_status: None,
        outcome: "retry",
        error: Some("timeout".into()),
        tracking_id: None,
    };
    writer.complete(run, 2, retry, vec![create]).await.unwrap();
    // Line 3 stays in flight, stamped later (its create left late).
    writer.stamp(run, 3, claimed_at + 3_000).await.unwrap();
    let again = writer.claim(run, now_ms(), 1, i64::MAX).await.unwrap();
    assert_eq!(
        (again[0].line, again[0].uncertain_at, again[0].creates),
        (2, Some(sent), 1)
    );
    drop(writer);
    // The process stops with both in flight.
    let mut store = Store::open(&dir.path().join("q.db")).unwrap();
    assert_eq!(store.prepare_resume(run, false).unwrap(), 2);
    let writer = store.into_writer();
    let mut rows = writer.claim(run, now_ms(), 5, i64::MAX).await.unwrap();
    rows.sort_by_key(|c| c.line);
    let uncertain: Vec<_> = rows
        .iter()
        .map(|c| (c.line, c.reconcile, c.uncertain_at))
        .collect();
    assert_eq!(
        uncertain,
        vec![
            // The later of its known send and its claim + slack.
            (2, true, Some(rows[0].uncertain_at.unwrap().max(sent))),
            (3, true, Some(claimed_at + 3_000 + SEND_SLACK_MS)),
        ]
    );
    assert!(rows[0].uncertain_at.unwrap() >= sent + SEND_SLACK_MS);
    // A stop in flight counts as a create that may have been sent.
    let creates: Vec<_> = rows.iter().map(|c| c.creates).collect();
    assert_eq!(creates, vec![2, 1]);
}

#[tokio::test]
async fn a_final_check_is_held_while_under_way_and_ends_the_run_only_when_done() {
    let (dir, store, run) = store_with_rows(1);
    let writer = store.into_writer();
    let now = now_ms();
    writer.claim(run, now, 1, i64::MAX).await.unwrap();
    let succeeded = Outcome::Succeeded {
        created: Created {
            id: "m2".into(),
            ..Created::default()
        },
        status: Some(200),
        tracking_id: None,
        note: None,
        check_at: Some(now + 60_000),
    };
    writer.complete(run, 2, succeeded, vec![]).await.unwrap();
    let c = writer.counts(run).await.unwrap();
    assert_eq!((c.succeeded, c.checks, c.done(), c.total()), (1, 1, 2, 2));
    let waiting = writer.next_due(run, i64::MAX).await.unwrap();
    assert_eq!(
        waiting,
        Waiting {
            next: Some(now + 60_000),
            checks: 1,
            next_check: Some(now + 60_000),
            ..Waiting::default()
        }
    );
    assert!(writer
        .claim(run, now, 5, i64::MAX)
        .await
        .unwrap()
        .is_empty());
    let check = writer.claim(run, now + 60_000, 5, i64::MAX).await.unwrap();
    assert_eq!(check.len(), 1);
    assert!(check[0].check);
    assert_eq!(check[0].result_id.as_deref(), Some("m2"));
    // Held: not handed out twice, and not "due" while a worker has it.
    assert!(writer
        .claim(run, now + 60_000, 5, i64::MAX)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(writer.next_due(run, i64::MAX).await.unwrap().next, None);
    assert_eq!(writer.next_due(run, i64::MAX).await.unwrap().checks, 1);
    // Given back (the run stopped before it started): due again.
    writer.release(run, vec![2]).await.unwrap();
    let check = writer.claim(run, now + 60_000, 5, i64::MAX).await.unwrap();
    assert_eq!(check.len(), 1);
    // A stop while it is under way: the resume makes it again.
    drop(writer);
    let mut store = Store::open(&dir.path().join("q.db")).unwrap();
    store.prepare_resume(run, false).unwrap();
    assert_eq!(store.counts(run).unwrap().succeeded, 1);
    let writer = store.into_writer();
    let check = writer.claim(run, now + 60_000, 5, i64::MAX).await.unwrap();
    assert_eq!(check.len(), 1);
    let done = Outcome::Checked {
        note: Some("removed 1 duplicate".into()),
        next_check: None,
        failure: false,
        throttled: false,
    };
    writer.complete(run, 2, done, vec![]).await.unwrap();
    let c = writer.counts(run).await.unwrap();
    assert_eq!((c.succeeded, c.checks), (1, 0));
    assert_eq!(
        writer.next_due(run, i64::MAX).await.unwrap(),
        Waiting::default()
    );
    drop(writer);
    let store = Store::open(&dir.path().join("q.db")).unwrap();
    let mut notes = Vec::new();
    store
        .for_each_row(run, false, |r| {
            notes.push((r.state, r.result_id, r.note));
            Ok(())
        })
        .unwrap();
    assert_eq!(
        notes,
        vec![
            (
                "succeeded".to_string(),
                Some("m2".to_string()),
                Some("removed 1 duplicate".to_string())
            ),
            ("invalid".to_string(), None, None)
        ]
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_database_and_its_wal_are_readable_by_the_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let mut store = Store::open(&path).unwrap();
    let run = one_row_ingest(&mut store).commit("h", &[]).unwrap();
    let writer = store.into_writer();
    // A write in WAL mode: the WAL and its index exist now.
    assert_eq!(
        writer
            .claim(run, now_ms(), 1, i64::MAX)
            .await
            .unwrap()
            .len(),
        1
    );
    let mode = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("q.db"), 0o600);
    assert_eq!(mode("q.db-wal"), 0o600);
    assert_eq!(mode("q.db-shm"), 0o600);
    drop(writer);
}

#[tokio::test]
async fn a_database_of_the_first_schema_is_migrated_and_a_newer_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        conn.execute_batch(
                "INSERT INTO runs (uid, kind, source_path, source_sha256, options, header, state, created_at, updated_at)
                 VALUES ('u', 'meetings', 'x.csv', 'h', '{}', '[\"title\"]', 'running', 't', 't');
                 INSERT INTO rows (run_id, line, state, updated_at) VALUES (1, 2, 'in_flight', 5);
                 INSERT INTO attempts (run_id, line, action, started_at, finished_at, outcome)
                 VALUES (1, 2, 'create', 1, 2, 'retry'), (1, 2, 'lookup', 3, 4, 'not_found');
                 INSERT INTO row_data (key, request, original) VALUES ((1 << 32) + 2, NULL, '[\"t\"]');",
            )
            .unwrap();
    }
    let mut store = Store::open(&path).unwrap();
    let version: i64 = store
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let migrated_at = now_ms() - 60_000;
    assert_eq!(store.prepare_resume(1, false).unwrap(), 1);
    assert_eq!(store.counts(1).unwrap().pending, 1);
    let writer = store.into_writer();
    let row = &writer.claim(1, now_ms(), 1, i64::MAX).await.unwrap()[0];
    // The old create and the stop in flight; and the window counts from
    // the migration (the old version did not stamp late sends).
    assert_eq!(row.creates, 2);
    assert!(row.uncertain_at.unwrap() >= migrated_at + SEND_SLACK_MS);
    drop(writer);
    // Opening again changes nothing.
    Store::open(&path).unwrap();
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let Err(e) = Store::open(&path) else {
        panic!("a newer schema is refused")
    };
    assert!(e.to_string().contains("newer webex-bulk"), "{e}");
}

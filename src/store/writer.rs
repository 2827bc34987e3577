//! The writer: the store owned by one thread, executing the engine's
//! commands in order, in group commits.

use std::sync::mpsc;

use rusqlite::{params, Transaction};

use super::*;

/// A command for the writer thread.
enum Command {
    Claim {
        run_id: i64,
        now: i64,
        limit: usize,
        last_line: i64,
        reply: tokio::sync::oneshot::Sender<Result<Vec<Claimed>>>,
    },
    Complete {
        run_id: i64,
        line: i64,
        outcome: Outcome,
        attempts: Vec<Attempt>,
        /// `None`: nobody waits; a failure is kept for [`Writer::failure`].
        reply: Option<tokio::sync::oneshot::Sender<Result<()>>>,
    },
    Release {
        run_id: i64,
        lines: Vec<i64>,
        reply: tokio::sync::oneshot::Sender<Result<()>>,
    },
    Counts {
        run_id: i64,
        reply: tokio::sync::oneshot::Sender<Result<Counts>>,
    },
    NextDue {
        run_id: i64,
        last_line: i64,
        reply: tokio::sync::oneshot::Sender<Result<Waiting>>,
    },
    Stamp {
        run_id: i64,
        line: i64,
        now: i64,
        reply: tokio::sync::oneshot::Sender<Result<()>>,
    },
    SetRunState {
        run_id: i64,
        state: RunState,
        exit_code: Option<i32>,
        message: Option<String>,
        reply: tokio::sync::oneshot::Sender<Result<()>>,
    },
}

/// The store owned by one thread; cheap to clone, usable from async code.
///
/// Commands that arrive while the thread is busy are executed together in
/// one transaction (group commit), and each gets its answer only after that
/// transaction is committed: so when `claim` returns, the rows really are
/// `in_flight` on disk.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Command>,
    /// The first error of a command nobody waited for.
    failure: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// The most commands one group commit takes.
const MAX_BATCH: usize = 512;
/// How long a result nobody waits for ([`Writer::record`]) may wait for
/// other commands before it is committed on its own.
const RECORD_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

impl Command {
    /// Whether someone waits for this command's answer.
    fn waited_for(&self) -> bool {
        !matches!(self, Command::Complete { reply: None, .. })
    }
}

impl Writer {
    pub(super) fn spawn(store: Store) -> Writer {
        let (tx, rx) = mpsc::channel::<Command>();
        let failure = std::sync::Arc::new(std::sync::Mutex::new(None));
        let slot = failure.clone();
        std::thread::Builder::new()
            .name("webex-bulk-store".into())
            .spawn(move || writer_loop(store, rx, slot))
            .expect("spawn the store thread");
        Writer { tx, failure }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Marks up to `limit` due rows `in_flight` (durably) and returns them.
    /// Claims up to `limit` due rows (then due final checks) at lines up to
    /// `last_line` (`i64::MAX`: all; a `--limit` run stops short of the rest).
    pub async fn claim(
        &self,
        run_id: i64,
        now: i64,
        limit: usize,
        last_line: i64,
    ) -> Result<Vec<Claimed>> {
        self.ask(|reply| Command::Claim {
            run_id,
            now,
            limit,
            last_line,
            reply,
        })
        .await
    }

    /// Gives claimed rows that were never started back to `pending`:
    /// nothing was sent for them.
    pub async fn release(&self, run_id: i64, lines: Vec<i64>) -> Result<()> {
        self.ask(|reply| Command::Release {
            run_id,
            lines,
            reply,
        })
        .await
    }

    /// Records how a claimed row's attempt ended.
    /// `attempts` are the requests sent for it this time (logged, and counted in `attempts`).
    pub async fn complete(
        &self,
        run_id: i64,
        line: i64,
        outcome: Outcome,
        attempts: Vec<Attempt>,
    ) -> Result<()> {
        self.ask(|reply| Command::Complete {
            run_id,
            line,
            outcome,
            attempts,
            reply: Some(reply),
        })
        .await
    }

    /// Records how a claimed row's attempt ended without waiting for the
    /// commit: it goes into the next group commit (milliseconds). Commands
    /// are carried out in order, so anything asked later sees it. Should the
    /// process die before that commit, the row is still `in_flight` and is
    /// looked up on resume, never sent again blindly. A failure to write is
    /// kept for [`Writer::failure`].
    pub fn record(
        &self,
        run_id: i64,
        line: i64,
        outcome: Outcome,
        attempts: Vec<Attempt>,
    ) -> Result<()> {
        self.tx
            .send(Command::Complete {
                run_id,
                line,
                outcome,
                attempts,
                reply: None,
            })
            .map_err(|_| StoreError::WriterGone)
    }

    /// The first failure of a [`Writer::record`], if any.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("writer failure").clone()
    }

    /// Row counts by state.
    pub async fn counts(&self, run_id: i64) -> Result<Counts> {
        self.ask(|reply| Command::Counts { run_id, reply }).await
    }

    /// What the run still waits for: when the earliest pending row (at a
    /// line up to `last_line`) or final check becomes due.
    pub async fn next_due(&self, run_id: i64, last_line: i64) -> Result<Waiting> {
        self.ask(|reply| Command::NextDue {
            run_id,
            last_line,
            reply,
        })
        .await
    }

    /// Records durably that a claimed row's request leaves now (ms): a row
    /// whose create would leave more than [`SEND_SLACK_MS`] after its claim
    /// is stamped first, so a stop's settle window never starts too early.
    pub async fn stamp(&self, run_id: i64, line: i64, now: i64) -> Result<()> {
        self.ask(|reply| Command::Stamp {
            run_id,
            line,
            now,
            reply,
        })
        .await
    }

    /// Records how the run stopped.
    pub async fn set_run_state(
        &self,
        run_id: i64,
        state: RunState,
        exit_code: Option<i32>,
        message: Option<String>,
    ) -> Result<()> {
        self.ask(|reply| Command::SetRunState {
            run_id,
            state,
            exit_code,
            message,
            reply,
        })
        .await
    }
}

/// Where the writer keeps the first error of a command nobody waited for.
type FailureSlot = std::sync::Arc<std::sync::Mutex<Option<String>>>;

/// Answers a batch gets once its transaction is settled.
enum Reply {
    Claim(
        tokio::sync::oneshot::Sender<Result<Vec<Claimed>>>,
        Result<Vec<Claimed>>,
    ),
    /// `None`: nobody waits; an error goes to the failure slot.
    Unit(Option<tokio::sync::oneshot::Sender<Result<()>>>, Result<()>),
    Counts(tokio::sync::oneshot::Sender<Result<Counts>>, Result<Counts>),
    NextDue(
        tokio::sync::oneshot::Sender<Result<Waiting>>,
        Result<Waiting>,
    ),
}

impl Reply {
    fn fail(self, message: &str, failure: &FailureSlot) {
        let err = || StoreError::Corrupt(message.to_owned());
        match self {
            Reply::Claim(s, _) => drop(s.send(Err(err()))),
            Reply::Unit(Some(s), _) => drop(s.send(Err(err()))),
            Reply::Unit(None, _) => keep_failure(failure, message.to_owned()),
            Reply::Counts(s, _) => drop(s.send(Err(err()))),
            Reply::NextDue(s, _) => drop(s.send(Err(err()))),
        }
    }
    fn send(self, failure: &FailureSlot) {
        match self {
            Reply::Claim(s, r) => drop(s.send(r)),
            Reply::Unit(Some(s), r) => drop(s.send(r)),
            Reply::Unit(None, Err(e)) => keep_failure(failure, e.to_string()),
            Reply::Unit(None, Ok(())) => {}
            Reply::Counts(s, r) => drop(s.send(r)),
            Reply::NextDue(s, r) => drop(s.send(r)),
        }
    }
}

fn keep_failure(failure: &FailureSlot, message: String) {
    let mut slot = failure.lock().expect("writer failure");
    if slot.is_none() {
        *slot = Some(message);
    }
}

fn writer_loop(mut store: Store, rx: mpsc::Receiver<Command>, failure: FailureSlot) {
    while let Ok(first) = rx.recv() {
        // Commit as soon as the queue is empty if someone waits for an
        // answer; results nobody waits for keep company for a moment (one
        // commit, one fsync for many).
        let since = std::time::Instant::now();
        let mut waited_for = first.waited_for();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let left = (since + RECORD_DELAY).saturating_duration_since(std::time::Instant::now());
            let next = if waited_for || left.is_zero() {
                rx.try_recv().ok()
            } else {
                rx.recv_timeout(left).ok()
            };
            match next {
                Some(cmd) => {
                    waited_for |= cmd.waited_for();
                    batch.push(cmd);
                }
                None => break,
            }
        }
        let tx = match store.conn.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                let msg = format!("cannot start a transaction: {e}");
                for cmd in batch {
                    reply_of(cmd).fail(&msg, &failure);
                }
                continue;
            }
        };
        let replies: Vec<Reply> = batch.into_iter().map(|cmd| execute(&tx, cmd)).collect();
        match tx.commit() {
            Ok(()) => replies.into_iter().for_each(|r| r.send(&failure)),
            Err(e) => {
                let msg = format!("cannot commit to the database: {e}");
                replies.into_iter().for_each(|r| r.fail(&msg, &failure));
            }
        }
    }
}

fn reply_of(cmd: Command) -> Reply {
    match cmd {
        Command::Claim { reply, .. } => Reply::Claim(reply, Ok(Vec::new())),
        Command::Complete { reply, .. } => Reply::Unit(reply, Ok(())),
        Command::SetRunState { reply, .. } => Reply::Unit(Some(reply), Ok(())),
        Command::Release { reply, .. } => Reply::Unit(Some(reply), Ok(())),
        Command::Counts { reply, .. } => Reply::Counts(reply, Ok(Counts::default())),
        Command::NextDue { reply, .. } => Reply::NextDue(reply, Ok(Waiting::default())),
        Command::Stamp { reply, .. } => Reply::Unit(Some(reply), Ok(())),
    }
}

fn execute(tx: &Transaction<'_>, cmd: Command) -> Reply {
    match cmd {
        Command::Claim {
            run_id,
            now,
            limit,
            last_line,
            reply,
        } => Reply::Claim(reply, claim(tx, run_id, now, limit, last_line)),
        Command::Complete {
            run_id,
            line,
            outcome,
            attempts,
            reply,
        } => Reply::Unit(reply, complete(tx, run_id, line, &outcome, &attempts)),
        Command::Release {
            run_id,
            lines,
            reply,
        } => Reply::Unit(Some(reply), release(tx, run_id, &lines)),
        Command::Counts { run_id, reply } => Reply::Counts(reply, counts(tx, run_id)),
        Command::NextDue {
            run_id,
            last_line,
            reply,
        } => Reply::NextDue(reply, waiting(tx, run_id, now_ms(), last_line)),
        Command::Stamp {
            run_id,
            line,
            now,
            reply,
        } => Reply::Unit(
            Some(reply),
            tx.prepare_cached(
                "UPDATE rows SET updated_at = ?3 WHERE run_id = ?1 AND line = ?2 AND state = 'in_flight'",
            )
            .and_then(|mut s| s.execute(params![run_id, line, now]))
            .map(drop)
            .map_err(Into::into),
        ),
        Command::SetRunState {
            run_id,
            state,
            exit_code,
            message,
            reply,
        } => Reply::Unit(
            Some(reply),
            set_run_state(tx, run_id, state, exit_code, message.as_deref()),
        ),
    }
}

/// Claimed rows that were never started go back to `pending` as they were
/// (a row that was to be looked up first still is), and claimed checks to
/// waiting.
fn release(tx: &Transaction<'_>, run_id: i64, lines: &[i64]) -> Result<()> {
    let mut back = tx.prepare_cached(
        "UPDATE rows SET state = 'pending', updated_at = ?3 WHERE run_id = ?1 AND line = ?2 AND state = 'in_flight'",
    )?;
    let mut check = tx.prepare_cached(
        "UPDATE rows SET checking = 0 WHERE run_id = ?1 AND line = ?2 AND checking = 1",
    )?;
    let now = now_ms();
    for line in lines {
        back.execute(params![run_id, line, now])?;
        check.execute(params![run_id, line])?;
    }
    Ok(())
}

/// What a run still waits for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Waiting {
    /// When the earliest pending row or final check not yet under way becomes due (ms).
    pub next: Option<i64>,
    /// Final checks not done yet (under way or waiting).
    pub checks: u64,
    /// When the earliest waiting final check becomes due (ms).
    pub next_check: Option<i64>,
    /// Rows whose earlier create's outcome is unknown, waiting until Webex
    /// has had time to finish it (pending, to be looked up, not due yet).
    pub settling: u64,
    /// When the earliest of those is looked up again (ms).
    pub next_settled: Option<i64>,
}

fn waiting(tx: &Transaction<'_>, run_id: i64, now: i64, last_line: i64) -> Result<Waiting> {
    let pending: Option<i64> = tx
        .prepare_cached(
            "SELECT min(next_at) FROM rows WHERE run_id = ?1 AND state = 'pending' AND line <= ?2",
        )?
        .query_row(params![run_id, last_line], |r| r.get(0))?;
    let (checks, next_check): (i64, Option<i64>) = tx
        .prepare_cached(
            "SELECT count(*), min(CASE WHEN checking = 0 THEN check_at END) FROM rows INDEXED BY rows_checks
             WHERE run_id = ?1 AND check_at IS NOT NULL",
        )?
        .query_row([run_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (settling, next_settled): (i64, Option<i64>) = tx
        .prepare_cached(
            "SELECT count(*), min(next_at) FROM rows
             WHERE run_id = ?1 AND state = 'pending' AND next_at > ?2 AND reconcile = 1 AND uncertain_at IS NOT NULL",
        )?
        .query_row(params![run_id, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let next = match (pending, next_check) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(Waiting {
        next,
        checks: checks as u64,
        next_check,
        settling: settling as u64,
        next_settled,
    })
}

/// Due pending rows first (durably `in_flight`), then due final checks.
fn claim(
    tx: &Transaction<'_>,
    run_id: i64,
    now: i64,
    limit: usize,
    last_line: i64,
) -> Result<Vec<Claimed>> {
    let read = |check: bool| {
        move |r: &rusqlite::Row<'_>| {
            Ok(Claimed {
                line: r.get(0)?,
                original: r.get(6)?,
                request: r.get(1)?,
                reconcile: r.get::<_, i64>(2)? != 0,
                uncertain_at: r.get(7)?,
                claimed_at: now,
                check,
                result_id: r.get(8)?,
                creates: r.get::<_, i64>(9)? as u32,
                attempts: r.get::<_, i64>(3)? as u32,
                failures: r.get::<_, i64>(4)? as u32,
                throttled: r.get::<_, i64>(5)? as u32,
            })
        }
    };
    let mut claimed = tx
        .prepare_cached(
            "SELECT r.line, d.request, r.reconcile, r.attempts, r.failures, r.throttled, d.original, r.uncertain_at, r.result_id, r.creates
             FROM rows r JOIN row_data d ON d.key = (r.run_id << 32) + r.line
             WHERE r.run_id = ?1 AND r.state = 'pending' AND r.next_at <= ?2 AND r.line <= ?4 ORDER BY r.next_at, r.line LIMIT ?3",
        )?
        .query_map(params![run_id, now, limit as i64, last_line], read(false))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut mark = tx.prepare_cached(
        "UPDATE rows SET state = 'in_flight', updated_at = ?3 WHERE run_id = ?1 AND line = ?2",
    )?;
    for c in &claimed {
        mark.execute(params![run_id, c.line, now])?;
    }
    if claimed.len() < limit {
        let checks = tx
            .prepare_cached(
                "SELECT r.line, d.request, r.reconcile, r.attempts, r.failures, r.throttled, d.original, r.uncertain_at, r.result_id, r.creates
                 FROM rows r JOIN row_data d ON d.key = (r.run_id << 32) + r.line
                 WHERE r.run_id = ?1 AND r.check_at IS NOT NULL AND r.check_at <= ?2 AND r.checking = 0
                 ORDER BY r.check_at, r.line LIMIT ?3",
            )?
            .query_map(
                params![run_id, now, (limit - claimed.len()) as i64],
                read(true),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut hold =
            tx.prepare_cached("UPDATE rows SET checking = 1 WHERE run_id = ?1 AND line = ?2")?;
        for c in &checks {
            hold.execute(params![run_id, c.line])?;
        }
        claimed.extend(checks);
    }
    Ok(claimed)
}

fn complete(
    tx: &Transaction<'_>,
    run_id: i64,
    line: i64,
    outcome: &Outcome,
    attempts: &[Attempt],
) -> Result<()> {
    let now = now_ms();
    let sent = attempts.len() as i64;
    // Creates sent this time (each may have made a meeting).
    let creates = attempts.iter().filter(|a| a.action == "create").count() as i64;
    match outcome {
        Outcome::Succeeded {
            created,
            status,
            tracking_id,
            note,
            check_at,
        } => {
            tx.prepare_cached(
                "UPDATE rows SET state = 'succeeded', attempts = attempts + ?3, last_status = ?4, tracking_id = coalesce(?5, tracking_id),
                 error = NULL, note = ?6, result_id = ?7, result_number = ?8, result_link = ?9, reconcile = 0, updated_at = ?10,
                 result_extra = ?11, check_at = ?12, checking = 0, creates = creates + ?13 WHERE run_id = ?1 AND line = ?2",
            )?
            .execute(params![run_id, line, sent, status, tracking_id, note, created.id, created.number, created.link, now, created.extra, check_at, creates])?;
        }
        Outcome::Checked {
            note,
            next_check,
            failure,
            throttled,
        } => {
            tx.prepare_cached(
                "UPDATE rows SET attempts = attempts + ?3, note = CASE WHEN ?4 IS NULL THEN note WHEN note IS NULL THEN ?4 ELSE note || '; ' || ?4 END,
                 check_at = ?5, checking = 0, updated_at = ?6, failures = failures + ?7, throttled = throttled + ?8
                 WHERE run_id = ?1 AND line = ?2",
            )?
            .execute(params![run_id, line, sent, note, next_check, now, *failure as i64, *throttled as i64])?;
        }
        Outcome::Retry {
            next_at,
            status,
            error,
            tracking_id,
            reconcile,
            uncertain_at,
            counts_as_failure,
            throttled,
        } => {
            tx.prepare_cached(
                "UPDATE rows SET state = 'pending', attempts = attempts + ?3, failures = failures + ?4, throttled = throttled + ?5,
                 next_at = ?6, last_status = ?7, error = ?8, tracking_id = ?9, reconcile = max(reconcile, ?10), updated_at = ?11,
                 uncertain_at = coalesce(?12, uncertain_at), creates = creates + ?13 WHERE run_id = ?1 AND line = ?2",
            )?
            .execute(params![
                run_id,
                line,
                sent,
                *counts_as_failure as i64,
                *throttled as i64,
                next_at,
                status,
                error,
                tracking_id,
                *reconcile as i64,
                now,
                uncertain_at,
                creates
            ])?;
        }
        Outcome::Failed {
            status,
            error,
            tracking_id,
            reconcile,
            uncertain_at,
        } => {
            tx.prepare_cached(
                "UPDATE rows SET state = 'failed', attempts = attempts + ?3, last_status = ?4, error = ?5, tracking_id = ?6, updated_at = ?7,
                 reconcile = max(reconcile, ?8), uncertain_at = coalesce(?9, uncertain_at), creates = creates + ?10 WHERE run_id = ?1 AND line = ?2",
            )?
            .execute(params![run_id, line, sent, status, error, tracking_id, now, *reconcile as i64, uncertain_at, creates])?;
        }
        Outcome::Released => {
            tx.prepare_cached("UPDATE rows SET state = 'pending', attempts = attempts + ?3, updated_at = ?4 WHERE run_id = ?1 AND line = ?2")?
                .execute(params![run_id, line, sent, now])?;
        }
    }
    insert_attempts(tx, run_id, line, attempts)
}

pub(super) fn insert_attempts(
    tx: &Transaction<'_>,
    run_id: i64,
    line: i64,
    attempts: &[Attempt],
) -> Result<()> {
    for a in attempts {
        tx.prepare_cached(
            "INSERT INTO attempts (run_id, line, action, started_at, finished_at, http_status, outcome, error, tracking_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![run_id, line, a.action, a.started_at, a.finished_at, a.http_status, a.outcome, a.error, a.tracking_id])?;
    }
    Ok(())
}

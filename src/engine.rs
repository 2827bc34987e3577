//! The engine: carries out the pending rows of a run against Webex.
//!
//! One dispatcher claims due rows from the store (durably `in_flight`
//! before anything is sent) and spawns one task per row. Shared by all of
//! them: one rate limiter, one 429 pause, one token refresh. A row that must
//! wait (retry, backoff) goes back to the store with a due time and holds no
//! slot and no memory while it waits.
//!
//! Entry point: [`run`], which ends when every row is final, when
//! `shutdown` fires (Ctrl-C), or when authentication fails.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::auth::{AuthError, TokenManager};
use crate::ingest::MeetingRows;
use crate::kinds::meetings::check::MeetingRequest;
use crate::progress::Tally;
use crate::rate::Pacing;
use crate::retry::{backoff_delay, parse_retry_after, BACKOFF_BASE, BACKOFF_CAP};
use crate::settle::{self, Decision};
use crate::store::{
    now_ms, Attempt, Claimed, Counts, Created, Outcome, StoreError, Writer, SEND_SLACK_MS,
};
use crate::webex::{new_tracking_id, ApiError, Client, CONNECT_TIMEOUT};

/// How the engine behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Transient failures (5xx, timeouts, ...) a row may have before it fails.
    pub max_attempts: u32,
    /// 429s a row may get before it fails (they do not use up `max_attempts`).
    pub max_throttled: u32,
    /// How long in-flight requests may take to finish after Ctrl-C or an auth failure.
    pub drain_timeout: Duration,
    /// How long after an uncertain create a lookup that finds nothing is
    /// trusted (see [`crate::settle`]).
    pub settle: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            concurrency: 8,
            max_attempts: 8,
            max_throttled: 50,
            drain_timeout: Duration::from_secs(30),
            settle: settle::DEFAULT_SETTLE,
        }
    }
}

/// Why the engine stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Every row is final.
    Finished,
    /// Ctrl-C (or another shutdown signal).
    Interrupted,
    /// Authentication failed; a person must fix the credentials.
    AuthFailed(String),
}

/// What the engine stopped on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a worker crashed: {0}")]
    Worker(String),
}

/// The most rows one claim takes.
const MAX_CLAIM: usize = 256;

/// What the rows of a run are, with what carrying them out needs.
#[derive(Clone, Debug)]
pub enum RunJob {
    /// Meetings: each request is rebuilt from the row's stored cells.
    Meetings(Box<MeetingRows>),
    /// People: each change was resolved against the org at ingest.
    Users {
        /// License id → the label reports show.
        license_names: std::collections::HashMap<String, String>,
    },
}

impl RunJob {
    /// The label a report shows for a license id (users runs).
    pub fn license_name(&self, id: &str) -> Option<&str> {
        match self {
            RunJob::Users { license_names } => license_names.get(id).map(String::as_str),
            RunJob::Meetings(_) => None,
        }
    }
}

/// Everything the workers share.
pub struct Shared {
    /// The run being carried out.
    pub run_id: i64,
    /// What its rows are.
    pub job: RunJob,
    /// The queue.
    pub writer: Writer,
    /// Webex.
    pub client: Client,
    /// The one token source and refresh.
    pub tokens: Arc<TokenManager>,
    /// The one rate limiter and 429 pause (and the adaptive rate).
    pub pacing: Arc<Pacing>,
    /// Display counters.
    pub tally: Arc<Tally>,
    /// Engine settings.
    pub settings: Settings,
    /// Stops dispatching when authentication fails.
    pub auth_stop: AuthStop,
}

/// The run-wide "authentication failed" signal.
#[derive(Default)]
pub struct AuthStop {
    /// Set (once) when authentication failed: dispatching stops.
    reason: Mutex<Option<String>>,
    /// Wakes the dispatcher when `reason` is set.
    notify: Notify,
}

impl Shared {
    fn fail_auth(&self, why: String) {
        let mut slot = self.auth_stop.reason.lock().expect("auth failure");
        if slot.is_none() {
            tracing::error!("authentication failed: {why}");
            *slot = Some(why);
        }
        self.auth_stop.notify.notify_one();
    }

    fn auth_failure(&self) -> Option<String> {
        self.auth_stop.reason.lock().expect("auth failure").clone()
    }
}

/// Carries out the run's pending rows until all are final, `shutdown`
/// completes, or authentication fails.
pub async fn run(
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) -> Result<Stop, EngineError> {
    tokio::pin!(shutdown);
    let s = &shared;
    let mut workers: JoinSet<Result<(), StoreError>> = JoinSet::new();
    let mut stop = None;

    if let Err(e) = s.tokens.ensure().await {
        return Ok(Stop::AuthFailed(e.to_string()));
    }
    // The adaptive rate grows with time; this ends with the run.
    let _ticker = s.pacing.keep_ticking();

    // Rows claimed (durably `in_flight`) but not started yet. When the rate
    // allows, a claim takes rows for the free slots and as many again, so a
    // fast run commits once for many rows. They start as slots free up and
    // go back to `pending` if the run stops first (after a crash they are
    // looked up before any send, like every `in_flight` row).
    let mut ready: VecDeque<Claimed> = VecDeque::new();

    loop {
        while let Some(done) = workers.try_join_next() {
            reap(done)?;
        }
        if let Some(why) = s.writer.failure() {
            return Err(EngineError::Store(StoreError::Corrupt(why)));
        }
        if let Some(why) = s.auth_failure() {
            stop = Some(Stop::AuthFailed(why));
            break;
        }
        if workers.len() >= s.settings.concurrency {
            tokio::select! {
                done = workers.join_next() => { if let Some(d) = done { reap(d)?; } continue; }
                _ = s.auth_stop.notify.notified() => continue,
                _ = &mut shutdown => { stop = Some(Stop::Interrupted); break; }
            }
        }
        if !ready.is_empty() {
            // Their turns at the limiter were taken when they were claimed.
            tokio::select! {
                _ = s.pacing.pause.wait() => {}
                _ = s.auth_stop.notify.notified() => continue,
                _ = &mut shutdown => { stop = Some(Stop::Interrupted); break; }
            }
            let free = s.settings.concurrency - workers.len();
            for row in ready.drain(..free.min(ready.len())) {
                let shared = shared.clone();
                workers.spawn(async move { work(&shared, row).await });
            }
            continue;
        }
        // Wait for the pause and the limiter without holding a slot or a row.
        tokio::select! {
            _ = async { s.pacing.pause.wait().await; s.pacing.limiter.until_ready().await; s.pacing.pause.wait().await } => {}
            _ = s.auth_stop.notify.notified() => continue,
            _ = &mut shutdown => { stop = Some(Stop::Interrupted); break; }
        }
        // Take more rows at once when the rate allows (fewer commits).
        let free = s.settings.concurrency - workers.len();
        let most = (free + s.settings.concurrency).min(MAX_CLAIM);
        let mut want = 1;
        while want < most && s.pacing.limiter.try_take() {
            want += 1;
        }
        let rows = s.writer.claim(s.run_id, now_ms(), want).await?;
        if rows.is_empty() {
            let waiting = s.writer.next_due(s.run_id).await?;
            s.tally.checks.store(waiting.checks, Ordering::Relaxed);
            s.tally
                .next_check_at
                .store(waiting.next_check.unwrap_or(0), Ordering::Relaxed);
            s.tally.settling.store(waiting.settling, Ordering::Relaxed);
            s.tally
                .next_settled_at
                .store(waiting.next_settled.unwrap_or(0), Ordering::Relaxed);
            if workers.is_empty() && waiting.next.is_none() {
                break;
            }
            let sleep = waiting
                .next
                .map(|t| Duration::from_millis((t - now_ms()).clamp(1, 60_000) as u64))
                .unwrap_or(Duration::from_secs(60));
            tokio::select! {
                done = workers.join_next(), if !workers.is_empty() => { if let Some(d) = done { reap(d)?; } }
                _ = tokio::time::sleep(sleep) => {}
                _ = s.auth_stop.notify.notified() => {}
                _ = &mut shutdown => { stop = Some(Stop::Interrupted); break; }
            }
            continue;
        }
        ready.extend(rows);
    }

    // Nothing was sent for the rows not started yet.
    if !ready.is_empty() {
        let lines = ready.drain(..).map(|row| row.line).collect();
        s.writer.release(s.run_id, lines).await?;
    }
    // Let what is in flight finish (bounded); what does not finish stays
    // `in_flight` in the store and is looked up on resume.
    let drain = async {
        while let Some(done) = workers.join_next().await {
            reap(done)?;
        }
        Ok::<(), EngineError>(())
    };
    match tokio::time::timeout(s.settings.drain_timeout, drain).await {
        Ok(r) => r?,
        Err(_) => {
            tracing::warn!(
                "in-flight requests did not finish in {:?}; they will be looked up on resume",
                s.settings.drain_timeout
            );
            workers.abort_all();
        }
    }
    // A barrier: commands run in order, so every recorded result is
    // committed once this answers.
    s.writer.counts(s.run_id).await?;
    if let Some(why) = s.writer.failure() {
        return Err(EngineError::Store(StoreError::Corrupt(why)));
    }
    if let Some(why) = s.auth_failure() {
        return Ok(Stop::AuthFailed(why));
    }
    Ok(stop.unwrap_or(Stop::Finished))
}

fn reap(done: Result<Result<(), StoreError>, tokio::task::JoinError>) -> Result<(), EngineError> {
    match done {
        Ok(r) => r.map_err(EngineError::Store),
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => Err(EngineError::Worker(e.to_string())),
    }
}

/// What one request came to.
enum Step<T> {
    Done(T),
    Outcome(Outcome),
}

/// Carries out one claimed row and records the result.
async fn work(s: &Shared, row: Claimed) -> Result<(), StoreError> {
    let was_retrying = row.failures + row.throttled > 0;
    let mut log = Vec::new();
    let outcome = match &s.job {
        RunJob::Meetings(rows) => meeting(s, rows, &row, &mut log).await,
        RunJob::Users { .. } if row.check => Outcome::Checked {
            note: None,
            next_check: None,
            failure: false,
            throttled: false,
        },
        RunJob::Users { .. } => crate::kinds::users::run::person(s, &row, &mut log).await,
    };
    if row.check {
        // The row stays succeeded; nothing to count.
        return s.writer.record(s.run_id, row.line, outcome, log);
    }
    let now_retrying = matches!(
        outcome,
        Outcome::Retry {
            counts_as_failure: true,
            ..
        } | Outcome::Retry {
            throttled: true,
            ..
        }
    );
    let t = &s.tally;
    match &outcome {
        Outcome::Succeeded { .. } => {
            t.succeeded.fetch_add(1, Ordering::Relaxed);
            t.finished_here.fetch_add(1, Ordering::Relaxed);
        }
        Outcome::Failed { error, .. } => {
            tracing::warn!(line = row.line, "row failed: {error}");
            t.failed.fetch_add(1, Ordering::Relaxed);
            t.finished_here.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
    t.retrying
        .fetch_add(now_retrying as i64 - was_retrying as i64, Ordering::Relaxed);
    // Into the next group commit; the slot is free at once (see `Writer::record`).
    s.writer.record(s.run_id, row.line, outcome, log)
}

/// Exactly once: look first when an earlier create may have happened, and
/// trust a "not found" only once the settle window has passed; then create.
async fn meeting(s: &Shared, rows: &MeetingRows, row: &Claimed, log: &mut Vec<Attempt>) -> Outcome {
    let built = row
        .cells()
        .and_then(|cells| rows.queued(row.line, row.request.as_deref(), &cells))
        .map(|req| {
            let body = serde_json::to_string(&req).expect("a request serializes");
            (req, body)
        });
    let (req, body) = match built {
        Ok(built) => built,
        Err(error) if row.check => {
            return Outcome::Checked {
                note: Some(format!("the final check could not be made: {error}")),
                next_check: None,
                failure: false,
                throttled: false,
            }
        }
        Err(error) => {
            return Outcome::Failed {
                status: None,
                error,
                tracking_id: None,
                reconcile: row.reconcile,
                uncertain_at: None,
            }
        }
    };
    if row.check {
        return check(s, row, &req, log).await;
    }
    if row.reconcile {
        let found = match lookup(s, row, &req, log).await {
            Step::Done(found) => found,
            Step::Outcome(o) => return o,
        };
        let ids: Vec<&str> = found.meetings.iter().map(|m| m.id.as_str()).collect();
        match settle::decide(
            &ids,
            None,
            row.uncertain_at,
            found.sent_at,
            s.settings.settle,
        ) {
            Decision::Adopt { keep, extras } => {
                tracing::info!(
                    line = row.line,
                    "found the meeting an earlier attempt created; not sending again"
                );
                let extras = extras.iter().map(|i| ids[*i].to_owned()).collect();
                let removal = remove(s, row, &req.host_email, extras, log).await;
                // When two creates may have been sent, the other may land
                // later still: look once more after the window.
                let check_at = row
                    .uncertain_at
                    .filter(|_| row.creates >= 2)
                    .map(|sent| settle::check_at(sent, s.settings.settle, now_ms()));
                // A removal to try again waits for that check, never ends it early.
                let check_at = check_at.or(removal.retry_at);
                return Outcome::Succeeded {
                    created: created(&found.meetings[keep]),
                    status: found.status,
                    tracking_id: found.tracking_id,
                    note: removal.note(),
                    check_at,
                };
            }
            Decision::LookAgainAt(at) => {
                tracing::info!(
                    line = row.line,
                    "not found yet; an earlier create may still be under way: looking again in {}s",
                    (at - now_ms()).max(0) / 1000
                );
                return Outcome::Retry {
                    next_at: at,
                    status: found.status,
                    error: "an earlier create's outcome is unknown and the meeting is not found yet; looking again once the server has had time to finish it".into(),
                    tracking_id: found.tracking_id,
                    reconcile: true,
                    uncertain_at: None,
                    counts_as_failure: false,
                    throttled: false,
                };
            }
            Decision::Resend | Decision::RecordedMissing { .. }
                if row.failures >= s.settings.max_attempts =>
            {
                return Outcome::Failed {
                    status: found.status,
                    error: format!(
                        "gave up after {} attempts; no meeting was found once the server had had time to finish the last one, so none was created",
                        row.failures
                    ),
                    tracking_id: found.tracking_id,
                    reconcile: true,
                    uncertain_at: None,
                };
            }
            Decision::Resend | Decision::RecordedMissing { .. } => {}
        }
        // The lookup used the dispatcher's turn; the create needs its own.
        s.pacing.limiter.until_ready().await;
    }
    let Some((token, generation)) = s.tokens.fresh().await else {
        return auth_outcome(s, row, 0, Some(401), "no access token".into(), None).await;
    };
    s.pacing.pause.wait().await;
    // A create that leaves long after the claim (a pause, a slow lookup) is
    // stamped first: after a stop, its settle window counts from the stamp.
    let mut stamped = row.claimed_at;
    while now_ms() - stamped > STAMP_AFTER_MS {
        stamped = now_ms();
        if let Err(e) = s.writer.stamp(s.run_id, row.line, stamped).await {
            tracing::error!(line = row.line, "cannot record the send time: {e}");
            return Outcome::Released;
        }
    }
    let tracking = new_tracking_id();
    let started = now_ms();
    let result = s.client.create_meeting(&token, &body, &tracking).await;
    match result {
        Ok(answer) => {
            s.pacing.accepted();
            log.push(Attempt {
                action: "create",
                started_at: started,
                finished_at: now_ms(),
                http_status: Some(answer.status),
                outcome: "created",
                error: None,
                tracking_id: answer.tracking_id.clone().or(Some(tracking)),
            });
            Outcome::Succeeded {
                created: created(&answer.value),
                status: Some(answer.status),
                tracking_id: answer.tracking_id,
                note: None,
                // An earlier create was not found within its window, so this
                // one was sent; should it land after all, give it one more
                // window and look again.
                check_at: row
                    .uncertain_at
                    .map(|_| settle::check_at(now_ms(), s.settings.settle, now_ms())),
            }
        }
        Err(e) => {
            // The request left once its connection was up: by the connect
            // timeout at the latest (and by the answer at the latest).
            let sent_by = (started + CONNECT_TIMEOUT.as_millis() as i64).min(now_ms());
            let uncertain_at = e.may_have_happened().then_some(sent_by);
            let outcome = on_error(s, row, generation, &e, uncertain_at).await;
            log.push(attempt_for_error(
                "create", started, &e, &tracking, &outcome,
            ));
            outcome
        }
    }
}

/// A create that leaves more than this after its row was claimed stamps the
/// row first (half of [`SEND_SLACK_MS`]: the rest covers the stamp itself).
const STAMP_AFTER_MS: i64 = SEND_SLACK_MS / 2;

fn created(m: &crate::webex::Meeting) -> Created {
    Created {
        id: m.id.clone(),
        number: m.meeting_number.clone(),
        link: m.web_link.clone(),
        extra: None,
    }
}

/// The final check of a succeeded row whose create followed an uncertain
/// attempt: look its tag up once more, and remove every meeting but the
/// recorded one.
async fn check(s: &Shared, row: &Claimed, req: &MeetingRequest, log: &mut Vec<Attempt>) -> Outcome {
    let found = match lookup(s, row, req, log).await {
        Step::Done(found) => found,
        Step::Outcome(o) => return as_check(o),
    };
    let ids: Vec<&str> = found.meetings.iter().map(|m| m.id.as_str()).collect();
    let decision = settle::decide(
        &ids,
        row.result_id.as_deref(),
        None,
        found.sent_at,
        s.settings.settle,
    );
    match decision {
        Decision::Adopt { extras, .. } => {
            let extras = extras.iter().map(|i| ids[*i].to_owned()).collect();
            let removal = remove(s, row, &req.host_email, extras, log).await;
            Outcome::Checked {
                note: removal.note(),
                next_check: removal.retry_at,
                failure: removal.failure,
                throttled: removal.throttled,
            }
        }
        Decision::RecordedMissing { others } => {
            tracing::warn!(
                line = row.line,
                "the final check did not find the recorded meeting"
            );
            let mut note = "the final check did not find the recorded meeting".to_owned();
            if !others.is_empty() {
                note.push_str(&format!(
                    "; {} other meeting(s) carry its tag: see `webex-bulk verify`",
                    others.len()
                ));
            }
            Outcome::Checked {
                note: Some(note),
                next_check: None,
                failure: false,
                throttled: false,
            }
        }
        Decision::Resend | Decision::LookAgainAt(_) => Outcome::Checked {
            note: None,
            next_check: None,
            failure: false,
            throttled: false,
        },
    }
}

/// A check's lookup that did not answer: look again when the row would
/// have been tried again, or give the check up (the row stays succeeded).
fn as_check(o: Outcome) -> Outcome {
    match o {
        Outcome::Retry {
            next_at,
            counts_as_failure,
            throttled,
            ..
        } => Outcome::Checked {
            note: None,
            next_check: Some(next_at),
            failure: counts_as_failure,
            throttled,
        },
        Outcome::Failed { error, .. } => Outcome::Checked {
            note: Some(format!("the final check could not be made: {error}")),
            next_check: None,
            failure: false,
            throttled: false,
        },
        other => other,
    }
}

/// What removing a row's extra meetings came to.
#[derive(Default)]
struct Removal {
    /// Meetings removed (or already gone).
    removed: usize,
    /// A removal must be tried again at this time (ms): the next check does it.
    retry_at: Option<i64>,
    /// That retry follows a transient failure (counted against `--max-attempts`).
    failure: bool,
    /// That retry follows a 429.
    throttled: bool,
    /// Removals refused for good: "id: reason".
    refused: Vec<String>,
}

impl Removal {
    fn note(&self) -> Option<String> {
        let mut parts: Vec<String> = settle::removed_note(self.removed).into_iter().collect();
        if !self.refused.is_empty() {
            parts.push(format!(
                "could not remove {} duplicate(s): {}",
                self.refused.len(),
                self.refused.join("; ")
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Deletes the meetings `ids` (duplicates of the row's meeting), without
/// emails, each a request of its own (its own limiter turn), each logged.
async fn remove(
    s: &Shared,
    row: &Claimed,
    host: &str,
    ids: Vec<String>,
    log: &mut Vec<Attempt>,
) -> Removal {
    let mut removal = Removal::default();
    for id in ids {
        s.pacing.limiter.until_ready().await;
        let Some((token, generation)) = s.tokens.fresh().await else {
            removal.retry_at = Some(now_ms());
            break;
        };
        s.pacing.pause.wait().await;
        let tracking = new_tracking_id();
        let started = now_ms();
        match s.client.delete_meeting(&token, &id, host, &tracking).await {
            Ok(answer) => {
                s.pacing.accepted();
                tracing::warn!(
                    line = row.line,
                    "removed a duplicate meeting ({id}) that an earlier attempt created"
                );
                log.push(Attempt {
                    action: "delete",
                    started_at: started,
                    finished_at: now_ms(),
                    http_status: Some(answer.status),
                    outcome: "removed_duplicate",
                    error: Some(format!("duplicate meeting {id}")),
                    tracking_id: answer.tracking_id.or(Some(tracking)),
                });
                removal.removed += 1;
            }
            Err(e) => {
                let outcome = on_error(s, row, generation, &e, None).await;
                log.push(attempt_for_error(
                    "delete", started, &e, &tracking, &outcome,
                ));
                match outcome {
                    Outcome::Retry {
                        next_at,
                        counts_as_failure,
                        throttled,
                        ..
                    } => {
                        removal.retry_at = Some(next_at);
                        removal.failure = counts_as_failure;
                        removal.throttled = throttled;
                        break;
                    }
                    _ => removal.refused.push(format!("{id}: {e}")),
                }
            }
        }
    }
    removal
}

/// What a lookup by tag found, and when it was sent.
struct Found {
    meetings: Vec<crate::webex::Meeting>,
    /// When the lookup was sent (ms): what it can prove depends on it.
    sent_at: i64,
    status: Option<u16>,
    tracking_id: Option<String>,
}

/// `GET /meetings?integrationTag=..&hostEmail=..` in a window around the meeting.
async fn lookup(
    s: &Shared,
    row: &Claimed,
    req: &MeetingRequest,
    log: &mut Vec<Attempt>,
) -> Step<Found> {
    let tag = req.integration_tags.first().cloned().unwrap_or_default();
    let Some((token, generation)) = s.tokens.fresh().await else {
        return Step::Outcome(
            auth_outcome(s, row, 0, Some(401), "no access token".into(), None).await,
        );
    };
    let Some((from, to)) = req.lookup_window() else {
        return Step::Outcome(Outcome::Failed {
            status: None,
            error: "the queued request has no readable start/end".into(),
            tracking_id: None,
            reconcile: true,
            uncertain_at: None,
        });
    };
    s.pacing.pause.wait().await;
    let tracking = new_tracking_id();
    let started = now_ms();
    let result = s
        .client
        .find_meetings_by_tag(&token, &tag, &req.host_email, &from, &to, &tracking)
        .await;
    match result {
        Ok(answer) => {
            s.pacing.accepted();
            let tracking_id = answer.tracking_id.or(Some(tracking));
            log.push(Attempt {
                action: if row.check { "check" } else { "lookup" },
                started_at: started,
                finished_at: now_ms(),
                http_status: Some(answer.status),
                outcome: match answer.value.len() {
                    0 => "not_found",
                    1 => "found",
                    _ => "found_several",
                },
                error: None,
                tracking_id: tracking_id.clone(),
            });
            Step::Done(Found {
                meetings: answer.value,
                sent_at: started,
                status: Some(answer.status),
                tracking_id,
            })
        }
        Err(e) => {
            // Whatever happened, the create may still have happened: keep looking first.
            let outcome = on_error(s, row, generation, &e, None).await;
            log.push(attempt_for_error(
                "lookup", started, &e, &tracking, &outcome,
            ));
            Step::Outcome(outcome)
        }
    }
}

pub(crate) fn attempt_for_error(
    action: &'static str,
    started: i64,
    e: &ApiError,
    tracking: &str,
    outcome: &Outcome,
) -> Attempt {
    Attempt {
        action,
        started_at: started,
        finished_at: now_ms(),
        http_status: e.status(),
        outcome: match outcome {
            Outcome::Failed { .. } => "failed",
            Outcome::Retry {
                throttled: true, ..
            } => "rate_limited",
            _ => "retry",
        },
        error: Some(e.to_string()),
        tracking_id: e
            .tracking_id()
            .map(str::to_owned)
            .or(Some(tracking.to_owned())),
    }
}

/// Decides what an API error means for the row. `uncertain_at`: the request
/// may have been carried out; it was sent then (ms). Look before sending it
/// again, and trust a "not found" only after the settle window.
pub(crate) async fn on_error(
    s: &Shared,
    row: &Claimed,
    generation: u64,
    e: &ApiError,
    uncertain_at: Option<i64>,
) -> Outcome {
    let uncertain = uncertain_at.is_some();
    let status = e.status();
    let tracking_id = e.tracking_id().map(str::to_owned);
    if status.is_some() && !e.is_rate_limited() {
        s.pacing.accepted();
    }
    if e.is_rate_limited() {
        let wait = parse_retry_after(e.retry_after(), SystemTime::now());
        s.pacing.throttled(wait);
        tracing::info!(
            line = row.line,
            "rate limited: every worker pauses for {:?}",
            wait
        );
        if row.throttled + 1 >= s.settings.max_throttled {
            return Outcome::Failed {
                status,
                error: format!("rate limited {} times: {e}", row.throttled + 1),
                tracking_id,
                reconcile: false,
                uncertain_at: None,
            };
        }
        return Outcome::Retry {
            next_at: now_ms() + wait.as_millis() as i64,
            status,
            error: e.to_string(),
            tracking_id,
            reconcile: false,
            uncertain_at: None,
            counts_as_failure: false,
            throttled: true,
        };
    }
    if e.is_unauthorized() {
        return auth_outcome(s, row, generation, status, e.to_string(), tracking_id).await;
    }
    // A create that may have happened (even one answered 2xx that we could
    // not read) is looked up before anything else, like a transient failure.
    if e.is_retryable() || uncertain {
        let failures = row.failures + 1;
        if failures >= s.settings.max_attempts {
            if let Some(sent) = uncertain_at {
                // Out of attempts, but this create may still land: look once
                // more when it has had time to, before calling the row failed
                // (a failed row run again in a new run would double it).
                return Outcome::Retry {
                    next_at: sent.saturating_add(s.settings.settle.as_millis() as i64),
                    status,
                    error: format!("gave up after {failures} attempts: {e}; looking it up once more when the server has had time to finish it"),
                    tracking_id,
                    reconcile: true,
                    uncertain_at,
                    counts_as_failure: true,
                    throttled: false,
                };
            }
            let mut error = format!("gave up after {failures} attempts: {e}");
            if row.reconcile {
                error.push_str(&format!(
                    " (an earlier attempt's outcome is unknown, so what it made may exist: retry with `webex-bulk run --resume {} --retry-failed`, which looks first, not in a new run)",
                    s.run_id
                ));
            }
            return Outcome::Failed {
                status,
                error,
                tracking_id,
                reconcile: row.reconcile,
                uncertain_at,
            };
        }
        let mut wait = backoff_delay(
            failures,
            BACKOFF_BASE,
            BACKOFF_CAP,
            rand::rng().random::<f64>(),
        );
        if e.retry_after().is_some() {
            wait = wait.max(parse_retry_after(e.retry_after(), SystemTime::now()));
        }
        tracing::debug!(
            line = row.line,
            "transient failure ({e}); retry in {:?}",
            wait
        );
        return Outcome::Retry {
            next_at: now_ms() + wait.as_millis() as i64,
            status,
            error: e.to_string(),
            tracking_id,
            reconcile: uncertain,
            uncertain_at,
            counts_as_failure: true,
            throttled: false,
        };
    }
    Outcome::Failed {
        status,
        error: e.to_string(),
        tracking_id,
        reconcile: false,
        uncertain_at: None,
    }
}

/// A 401: one shared refresh, then the row goes again; or, when the refresh
/// is refused, the run stops for a person to fix the credentials.
pub(crate) async fn auth_outcome(
    s: &Shared,
    row: &Claimed,
    generation: u64,
    status: Option<u16>,
    error: String,
    tracking_id: Option<String>,
) -> Outcome {
    let retry_now = |error: String, counts_as_failure: bool, delay: Duration| Outcome::Retry {
        next_at: now_ms() + delay.as_millis() as i64,
        status,
        error,
        tracking_id: tracking_id.clone(),
        reconcile: false,
        uncertain_at: None,
        counts_as_failure,
        throttled: false,
    };
    match s.tokens.refresh_after(generation).await {
        Ok(()) => retry_now(error, false, Duration::ZERO),
        Err(e @ AuthError::Unavailable(_)) if e.is_transient() => {
            let delay = backoff_delay(
                row.failures + 1,
                BACKOFF_BASE,
                BACKOFF_CAP,
                rand::rng().random::<f64>(),
            );
            if row.failures + 1 >= s.settings.max_attempts {
                s.fail_auth(e.to_string());
                return retry_now(e.to_string(), false, Duration::ZERO);
            }
            retry_now(e.to_string(), true, delay)
        }
        Err(e) => {
            s.fail_auth(e.to_string());
            retry_now(format!("{error}; {e}"), false, Duration::ZERO)
        }
    }
}

/// Final counts (for the summary).
pub async fn counts(shared: &Shared) -> Result<Counts, StoreError> {
    shared.writer.counts(shared.run_id).await
}

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

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::auth::{AuthError, TokenManager};
use crate::ingest::MeetingRows;
use crate::meetings::MeetingRequest;
use crate::progress::Tally;
use crate::rate::Pacing;
use crate::retry::{backoff_delay, parse_retry_after, BACKOFF_BASE, BACKOFF_CAP};
use crate::store::{now_ms, Attempt, Claimed, Counts, Created, Outcome, StoreError, Writer};
use crate::webex::{new_tracking_id, ApiError, Client};

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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            concurrency: 8,
            max_attempts: 8,
            max_throttled: 50,
            drain_timeout: Duration::from_secs(30),
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
    let ticker = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            loop {
                every.tick().await;
                shared.pacing.tick();
            }
        })
    };
    let _stop_ticker = AbortOnDrop(ticker);

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
            let next = s.writer.next_due(s.run_id).await?;
            if workers.is_empty() && next.is_none() {
                break;
            }
            let sleep = next
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

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
        RunJob::Users { .. } => crate::onboard::person(s, &row, &mut log).await,
    };
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

/// Exactly once: look first when an earlier create may have happened, then create.
async fn meeting(s: &Shared, rows: &MeetingRows, row: &Claimed, log: &mut Vec<Attempt>) -> Outcome {
    // Runs queued by earlier versions kept the body; newer ones rebuild it.
    let built = match &row.request {
        Some(body) => serde_json::from_str::<MeetingRequest>(body)
            .map(|req| (req, body.clone()))
            .map_err(|e| format!("the queued request is unreadable: {e}")),
        None => row
            .cells()
            .and_then(|cells| rows.request(row.line, &cells))
            .map(|req| {
                let body = serde_json::to_string(&req).expect("a request serializes");
                (req, body)
            }),
    };
    let (req, body) = match built {
        Ok(built) => built,
        Err(error) => {
            return Outcome::Failed {
                status: None,
                error,
                tracking_id: None,
                reconcile: row.reconcile,
            }
        }
    };
    let mut first = true;
    if row.reconcile {
        let tag = req.integration_tags.first().cloned().unwrap_or_default();
        match lookup(s, row, &req, &tag, log).await {
            Step::Done(Some(found)) => {
                return Outcome::Succeeded {
                    created: found,
                    status: log.last().and_then(|a| a.http_status),
                    tracking_id: log.last().and_then(|a| a.tracking_id.clone()),
                    note: None,
                }
            }
            Step::Done(None) => first = false,
            Step::Outcome(o) => return o,
        }
    }
    if !first {
        // The lookup used the dispatcher's turn; the create needs its own.
        s.pacing.limiter.until_ready().await;
    }
    let Some((token, generation)) = s.tokens.fresh().await else {
        return auth_outcome(s, row, 0, Some(401), "no access token".into(), None).await;
    };
    s.pacing.pause.wait().await;
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
                created: Created {
                    id: answer.value.id,
                    number: answer.value.meeting_number,
                    link: answer.value.web_link,
                    extra: None,
                },
                status: Some(answer.status),
                tracking_id: answer.tracking_id,
                note: None,
            }
        }
        Err(e) => {
            let outcome = on_error(s, row, generation, &e, e.may_have_happened()).await;
            log.push(attempt_for_error(
                "create", started, &e, &tracking, &outcome,
            ));
            outcome
        }
    }
}

/// `GET /meetings?integrationTag=..&hostEmail=..` in a window around the meeting.
async fn lookup(
    s: &Shared,
    row: &Claimed,
    req: &MeetingRequest,
    tag: &str,
    log: &mut Vec<Attempt>,
) -> Step<Option<Created>> {
    let Some((token, generation)) = s.tokens.fresh().await else {
        return Step::Outcome(
            auth_outcome(s, row, 0, Some(401), "no access token".into(), None).await,
        );
    };
    let day = chrono::Duration::days(1);
    let (Some(start), Some(end)) = (req.start_utc(), req.end_utc()) else {
        return Step::Outcome(Outcome::Failed {
            status: None,
            error: "the queued request has no readable start/end".into(),
            tracking_id: None,
            reconcile: true,
        });
    };
    let window = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    s.pacing.pause.wait().await;
    let tracking = new_tracking_id();
    let started = now_ms();
    let result = s
        .client
        .find_meetings_by_tag(
            &token,
            tag,
            &req.host_email,
            &window(start - day),
            &window(end + day),
            &tracking,
        )
        .await;
    match result {
        Ok(answer) => {
            s.pacing.accepted();
            let found = answer.value.into_iter().next();
            log.push(Attempt {
                action: "lookup",
                started_at: started,
                finished_at: now_ms(),
                http_status: Some(answer.status),
                outcome: if found.is_some() {
                    "found"
                } else {
                    "not_found"
                },
                error: None,
                tracking_id: answer.tracking_id.or(Some(tracking)),
            });
            if found.is_some() {
                tracing::info!(
                    line = row.line,
                    "found the meeting an earlier attempt created; not sending again"
                );
            }
            Step::Done(found.map(|m| Created {
                id: m.id,
                number: m.meeting_number,
                link: m.web_link,
                extra: None,
            }))
        }
        Err(e) => {
            // Whatever happened, the create may still have happened: keep looking first.
            let outcome = on_error(s, row, generation, &e, true).await;
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

/// Decides what an API error means for the row. `uncertain`: the request
/// may have been carried out, so look before sending it again.
pub(crate) async fn on_error(
    s: &Shared,
    row: &Claimed,
    generation: u64,
    e: &ApiError,
    uncertain: bool,
) -> Outcome {
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
            };
        }
        return Outcome::Retry {
            next_at: now_ms() + wait.as_millis() as i64,
            status,
            error: e.to_string(),
            tracking_id,
            reconcile: false,
            counts_as_failure: false,
            throttled: true,
        };
    }
    if e.is_unauthorized() {
        return auth_outcome(s, row, generation, status, e.to_string(), tracking_id).await;
    }
    if e.is_retryable() {
        let failures = row.failures + 1;
        if failures >= s.settings.max_attempts {
            let mut error = format!("gave up after {failures} attempts: {e}");
            if uncertain {
                error.push_str(" (the last attempt's outcome is unknown; it will be looked up before any resend)");
            }
            return Outcome::Failed {
                status,
                error,
                tracking_id,
                reconcile: uncertain,
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
            counts_as_failure: true,
            throttled: false,
        };
    }
    Outcome::Failed {
        status,
        error: e.to_string(),
        tracking_id,
        reconcile: false,
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

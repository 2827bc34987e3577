//! The engine: carries out the pending rows of a run against Webex, for
//! any job kind (it names none).
//!
//! One dispatcher claims due rows from the store (durably `in_flight`
//! before anything is sent) and spawns one task per row, which hands the row
//! to the run's [`Runner`] with an [`Api`]: the one way a kind sends a row's
//! requests. Shared by all of them: one rate limiter, one 429 pause, one
//! token refresh. A row that must wait (retry, backoff) goes back to the
//! store with a due time and holds no slot and no memory while it waits.
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
use crate::kinds::{Reconciled, Runner};
use crate::progress::Tally;
use crate::rate::Pacing;
use crate::retry::{backoff_delay, parse_retry_after, BACKOFF_BASE, BACKOFF_CAP};
use crate::settle;
use crate::store::{now_ms, Attempt, Claimed, Outcome, StoreError, Writer, SEND_SLACK_MS};
use crate::webex::{new_tracking_id, Answer, ApiError, Client, CONNECT_TIMEOUT};

use secrecy::SecretString;

/// How the engine behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Requests in flight at most: the ceiling of the adaptive concurrency
    /// (see [`crate::concurrency`]; the dispatcher asks [`Pacing::concurrency`]).
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
    /// Rows at lines after this one wait for a later run of the engine
    /// (`run --limit N`: the line of the N-th row); `i64::MAX`: none wait.
    pub last_line: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            concurrency: DEFAULT_CONCURRENCY,
            max_attempts: 8,
            max_throttled: 50,
            drain_timeout: Duration::from_secs(30),
            settle: settle::DEFAULT_SETTLE,
            last_line: i64::MAX,
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

/// The default ceiling of requests in flight: at Webex's usual limits (tens
/// of requests per second) and a latency of 1 to 2 s, the adaptive cap
/// (rate × latency × 2) stays below it, so it is never what holds a run
/// back. Higher would only matter with `--rate unlimited` (where the cap
/// starts at the ceiling) and would cost sockets and memory for nothing.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// The most rows one claim takes.
const MAX_CLAIM: usize = 256;

/// Everything the workers share.
pub struct Shared {
    /// The run being carried out.
    pub run_id: i64,
    /// How its rows are carried out (the run's kind).
    pub runner: Arc<dyn Runner>,
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
        // How many may be in flight now (adaptive, at most `--concurrency`).
        let cap = s.pacing.concurrency();
        if workers.len() >= cap {
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
            let free = cap.saturating_sub(workers.len());
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
        let free = cap.saturating_sub(workers.len());
        let most = (free + cap).min(MAX_CLAIM);
        let mut want = 1;
        while want < most && s.pacing.limiter.try_take() {
            want += 1;
        }
        let rows = s
            .writer
            .claim(s.run_id, now_ms(), want, s.settings.last_line)
            .await?;
        if rows.is_empty() {
            let waiting = s.writer.next_due(s.run_id, s.settings.last_line).await?;
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

/// Carries out one claimed row and records the result.
async fn work(s: &Shared, row: Claimed) -> Result<(), StoreError> {
    let was_retrying = row.failures + row.throttled > 0;
    let mut api = Api::new(s, &row);
    let outcome = if row.check {
        s.runner.check(&row, &mut api).await
    } else {
        let reconciled = if row.reconcile {
            s.runner.reconcile(&row, &mut api).await
        } else {
            Reconciled::Absent
        };
        match reconciled {
            Reconciled::Settled(outcome) => outcome,
            Reconciled::Absent => s.runner.execute(&row, &mut api).await,
        }
    };
    let log = api.log;
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

/// The attempt log's word for what a failed request meant for the row.
fn log_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Failed { .. } => "failed",
        Outcome::Retry {
            throttled: true, ..
        } => "rate_limited",
        _ => "retry",
    }
}

fn attempt_for_error(
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
        outcome: log_label(outcome),
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
async fn on_error(
    s: &Shared,
    row: &Claimed,
    generation: u64,
    e: &ApiError,
    uncertain_at: Option<i64>,
    sent: f64,
) -> Outcome {
    let uncertain = uncertain_at.is_some();
    let status = e.status();
    let tracking_id = e.tracking_id().map(str::to_owned);
    if status.is_some() && !e.is_rate_limited() {
        s.pacing.accepted(sent);
    }
    if e.is_rate_limited() {
        let wait = parse_retry_after(e.retry_after(), SystemTime::now());
        s.pacing.throttled(wait, sent);
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
async fn auth_outcome(
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

/// One row's way to Webex: every request a kind sends for a row goes
/// through here, and gets the shared machinery in one place: its turn at the
/// one limiter (the dispatcher paid for the first), the one 429 pause, a
/// fresh token (and the one refresh on a 401), the classification of its
/// error into the row's outcome, and a line in the row's attempt log.
pub struct Api<'a> {
    /// The run's shared state.
    s: &'a Shared,
    /// The row the requests are for.
    row: &'a Claimed,
    /// The attempts made, recorded with the row's outcome.
    log: Vec<Attempt>,
    /// The next request is the row's first: the dispatcher took its turn.
    first: bool,
}

/// A request that did not succeed: the error, and what it means for the row.
pub struct Failed {
    pub error: ApiError,
    /// Retry (when), refresh, pause, or fail; a kind may overrule it with
    /// [`Api::overrule`].
    pub outcome: Outcome,
}

impl<'a> Api<'a> {
    fn new(s: &'a Shared, row: &'a Claimed) -> Api<'a> {
        Api {
            s,
            row,
            log: Vec::new(),
            first: true,
        }
    }

    /// The API client (for the `send` closures).
    pub fn client(&self) -> &'a Client {
        &self.s.client
    }

    /// The run's id (for messages that tell the user what to run).
    pub fn run_id(&self) -> i64 {
        self.s.run_id
    }

    /// How long after an uncertain create a "not found" is trusted.
    pub fn settle(&self) -> Duration {
        self.s.settings.settle
    }

    /// Transient failures a row may have.
    pub fn max_attempts(&self) -> u32 {
        self.s.settings.max_attempts
    }

    /// Transient failures the row has had before this attempt.
    pub fn failures(&self) -> u32 {
        self.row.failures
    }

    /// The backoff before the row's next attempt, after one more failure.
    pub fn backoff(&self) -> Duration {
        backoff_delay(
            self.row.failures + 1,
            BACKOFF_BASE,
            BACKOFF_CAP,
            rand::rng().random::<f64>(),
        )
    }

    /// Sends one request for the row: `send` gets a fresh token and the
    /// tracking id to send. Logged as `action` (outcome `ok`; see
    /// [`Api::label`]).
    pub async fn call<T, F, Fut>(
        &mut self,
        action: &'static str,
        send: F,
    ) -> Result<Answer<T>, Failed>
    where
        F: FnOnce(SecretString, String) -> Fut,
        Fut: Future<Output = Result<Answer<T>, ApiError>>,
    {
        self.send(action, false, send).await
    }

    /// Like [`Api::call`], for a request whose effect may happen even when
    /// no answer comes back (a create). Its send time is durable before it
    /// leaves (a row claimed long before is stamped again first), and an
    /// error that leaves its outcome unknown makes the row `reconcile`, with
    /// the time it was sent: see [`crate::settle`].
    pub async fn create<T, F, Fut>(
        &mut self,
        action: &'static str,
        send: F,
    ) -> Result<Answer<T>, Failed>
    where
        F: FnOnce(SecretString, String) -> Fut,
        Fut: Future<Output = Result<Answer<T>, ApiError>>,
    {
        self.send(action, true, send).await
    }

    async fn send<T, F, Fut>(
        &mut self,
        action: &'static str,
        creates: bool,
        send: F,
    ) -> Result<Answer<T>, Failed>
    where
        F: FnOnce(SecretString, String) -> Fut,
        Fut: Future<Output = Result<Answer<T>, ApiError>>,
    {
        let (s, row) = (self.s, self.row);
        if !std::mem::replace(&mut self.first, false) {
            s.pacing.limiter.until_ready().await;
        }
        let Some((token, generation)) = s.tokens.fresh().await else {
            let outcome = auth_outcome(s, row, 0, Some(401), "no access token".into(), None).await;
            return Err(Failed {
                error: ApiError::Status {
                    status: 401,
                    message: "no access token".into(),
                    tracking_id: None,
                    retry_after: None,
                },
                outcome,
            });
        };
        s.pacing.pause.wait().await;
        if creates {
            // A create that leaves long after the claim (a pause, a slow
            // lookup) is stamped first: after a stop, its settle window
            // counts from the stamp.
            let mut stamped = row.claimed_at;
            while now_ms() - stamped > STAMP_AFTER_MS {
                stamped = now_ms();
                if let Err(e) = s.writer.stamp(s.run_id, row.line, stamped).await {
                    tracing::error!(line = row.line, "cannot record the send time: {e}");
                    return Err(Failed {
                        error: ApiError::Connect(format!(
                            "not sent: cannot record the send time: {e}"
                        )),
                        outcome: Outcome::Released,
                    });
                }
            }
        }
        let tracking = new_tracking_id();
        let started = now_ms();
        let (result, sent) = s.pacing.send(send(token, tracking.clone())).await;
        match result {
            Ok(mut answer) => {
                s.pacing.accepted(sent);
                // Ours when Webex sends none back: support can find it by it.
                answer.tracking_id = answer.tracking_id.or(Some(tracking));
                self.log.push(Attempt {
                    action,
                    started_at: started,
                    finished_at: now_ms(),
                    http_status: Some(answer.status),
                    outcome: "ok",
                    error: None,
                    tracking_id: answer.tracking_id.clone(),
                });
                Ok(answer)
            }
            Err(e) => {
                // The request left once its connection was up: by the
                // connect timeout at the latest (and by the answer at the latest).
                let sent_by = (started + CONNECT_TIMEOUT.as_millis() as i64).min(now_ms());
                let uncertain_at = (creates && e.may_have_happened()).then_some(sent_by);
                let outcome = on_error(s, row, generation, &e, uncertain_at, sent).await;
                self.log
                    .push(attempt_for_error(action, started, &e, &tracking, &outcome));
                Err(Failed { error: e, outcome })
            }
        }
    }

    /// Names what the last request's answer meant (`found`, `created`...),
    /// with a detail for the log.
    pub fn label(&mut self, outcome: &'static str, detail: Option<String>) {
        if let Some(last) = self.log.last_mut() {
            last.outcome = outcome;
            if detail.is_some() {
                last.error = detail;
            }
        }
    }

    /// The trackingId of the row's latest request (for the row's result:
    /// Webex support finds a request by it).
    pub fn last_tracking_id(&self) -> Option<String> {
        self.log.last().and_then(|a| a.tracking_id.clone())
    }

    /// Replaces what a failed request means for the row (and its log line).
    pub fn overrule(&mut self, outcome: Outcome) -> Outcome {
        if let Some(last) = self.log.last_mut() {
            last.outcome = log_label(&outcome);
        }
        outcome
    }
}

/// A create that leaves more than this after its row was claimed stamps the
/// row first (half of [`SEND_SLACK_MS`]: the rest covers the stamp itself).
const STAMP_AFTER_MS: i64 = SEND_SLACK_MS / 2;

//! `webex-bulk verify`: audits a meetings run against Webex, so that an
//! admin can check last night's run in the morning.
//!
//! Every succeeded row's meeting is looked up by its integration tag, paced
//! like a run (the one limiter, the one 429 pause, the one token refresh):
//! - **ok**: the recorded meeting is there, and no other carries the tag;
//! - **missing**: the recorded meeting is not there (deleted since);
//! - **duplicated**: other meetings carry the row's tag. With `fix`, they are
//!   deleted (without emails; never the recorded one) and each deletion is
//!   added to the row's attempt log;
//! - **unchecked**: the lookup itself failed (the reason is given).
//!
//! Entry point: [`verify`]. Deciding what a lookup means is
//! [`crate::settle::decide`], the same function the engine uses.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use secrecy::SecretString;
use tokio::task::JoinSet;

use super::MeetingRows;
use crate::auth::TokenManager;
use crate::rate::Pacing;
use crate::retry::{parse_retry_after, BACKOFF_BASE, BACKOFF_CAP};
use crate::settle::{self, Decision};
use crate::store::{decode_cells, now_ms, Attempt, RunInfo, Store, StoreError, SucceededRow};
use crate::webex::{new_tracking_id, Answer, ApiError, Client};

/// How `verify` goes about it.
#[derive(Clone, Debug)]
pub struct Options {
    /// Delete the duplicates it finds.
    pub fix: bool,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Transient failures (5xx, timeouts) one request may have before the row is "unchecked".
    pub max_attempts: u32,
    /// 429s one request may get before the row is "unchecked".
    pub max_throttled: u32,
    /// The recipe the run was queued through (its stored one, applied to
    /// the run's header): the rows' meetings are rebuilt through it.
    pub recipe: Option<crate::recipe::Applied>,
}

/// What `verify` found, in counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub ok: u64,
    pub missing: u64,
    /// Rows whose tag other meetings carry too.
    pub duplicated: u64,
    /// Duplicates deleted (with `fix`).
    pub removed: u64,
    /// Duplicated rows that still have duplicates (no `fix`, or a deletion failed).
    pub unfixed: u64,
    pub unchecked: u64,
}

impl Summary {
    /// Whether every row is as it should be now: nothing missing, nothing
    /// unchecked, no duplicate left (removed ones are fixed).
    pub fn all_ok(&self) -> bool {
        self.missing + self.unfixed + self.unchecked == 0
    }
}

/// Why `verify` stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("cannot write: {0}")]
    Write(String),
    #[error("{0}")]
    Run(String),
}

/// The columns `verify` adds after the file's own.
pub const VERIFY_COLUMNS: [&str; 6] = [
    "line",
    "verify",
    "meeting_id",
    "other_meeting_ids",
    "removed",
    "error",
];

/// What one row came to.
#[derive(Debug)]
enum Finding {
    Ok,
    Missing {
        others: Vec<String>,
    },
    Duplicated {
        extras: Vec<String>,
        removed: Vec<String>,
        /// "id: reason" for deletions that failed.
        refused: Vec<String>,
    },
    Unchecked(String),
}

/// One row's verdict, with the deletions to log.
struct Verdict {
    line: i64,
    cells: Vec<String>,
    recorded: String,
    finding: Finding,
    log: Vec<Attempt>,
}

/// What every task shares: the one client, token source and pacing.
struct Ctx {
    client: Client,
    tokens: Arc<TokenManager>,
    pacing: Arc<Pacing>,
    rows: MeetingRows,
    options: Options,
}

/// Rows read from the store at a time.
const PAGE: usize = 256;

/// Audits `run` (a meetings run) and writes the rows that are not ok to
/// `out` as CSV (the file's own columns, then [`VERIFY_COLUMNS`]).
pub async fn verify(
    store: &mut Store,
    run: &RunInfo,
    client: Client,
    tokens: Arc<TokenManager>,
    pacing: Arc<Pacing>,
    options: Options,
    out: impl Write,
) -> Result<Summary, VerifyError> {
    let header = match &options.recipe {
        Some(applied) => applied.header(),
        None => run.header.clone(),
    };
    let rows = MeetingRows::new(&header, &run.uid).map_err(VerifyError::Run)?;
    let ctx = Arc::new(Ctx {
        client,
        tokens,
        pacing,
        rows,
        options,
    });
    // The adaptive rate grows with time, as in a run.
    let _ticker = ctx.pacing.keep_ticking();
    go(store, run, &ctx, out).await
}

async fn go(
    store: &mut Store,
    run: &RunInfo,
    ctx: &Arc<Ctx>,
    out: impl Write,
) -> Result<Summary, VerifyError> {
    let keep = crate::report::own_columns(&run.header, &VERIFY_COLUMNS);
    let mut w = csv::Writer::from_writer(out);
    let io = |e: csv::Error| VerifyError::Write(e.to_string());
    let mut head: Vec<&str> = keep.iter().map(|i| run.header[*i].as_str()).collect();
    head.extend(VERIFY_COLUMNS);
    w.write_record(&head).map_err(io)?;

    let mut summary = Summary::default();
    let mut after = 0;
    loop {
        let page = store.succeeded_rows(run.id, after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.line;
        let (mut verdicts, stopped) = check_page(ctx, page).await;
        verdicts.sort_by_key(|v| v.line);
        for v in verdicts {
            if !v.log.is_empty() {
                store.log_attempts(run.id, v.line, &v.log)?;
            }
            count(&mut summary, &v.finding);
            if matches!(v.finding, Finding::Ok) {
                continue;
            }
            let mut record: Vec<String> = keep
                .iter()
                .map(|i| v.cells.get(*i).cloned().unwrap_or_default())
                .collect();
            record.extend(cells(&v));
            w.write_record(&record).map_err(io)?;
        }
        // What was done before a stop is logged and written first.
        if let Some(e) = stopped {
            w.flush().map_err(|e| VerifyError::Write(e.to_string()))?;
            return Err(e);
        }
    }
    w.flush().map_err(|e| VerifyError::Write(e.to_string()))?;
    Ok(summary)
}

fn count(summary: &mut Summary, finding: &Finding) {
    match finding {
        Finding::Ok => summary.ok += 1,
        Finding::Missing { .. } => summary.missing += 1,
        Finding::Duplicated {
            extras, removed, ..
        } => {
            summary.duplicated += 1;
            summary.removed += removed.len() as u64;
            summary.unfixed += u64::from(removed.len() < extras.len());
        }
        Finding::Unchecked(_) => summary.unchecked += 1,
    }
}

/// The verify columns of a row that is not ok.
fn cells(v: &Verdict) -> Vec<String> {
    let (word, others, removed, error) = match &v.finding {
        Finding::Ok => ("ok", vec![], vec![], String::new()),
        Finding::Missing { others } => ("missing", others.clone(), vec![], String::new()),
        Finding::Duplicated {
            extras,
            removed,
            refused,
        } => (
            "duplicated",
            extras.clone(),
            removed.clone(),
            refused.join("; "),
        ),
        Finding::Unchecked(why) => ("unchecked", vec![], vec![], why.clone()),
    };
    vec![
        v.line.to_string(),
        word.to_owned(),
        v.recorded.clone(),
        others.join(" "),
        removed.join(" "),
        error,
    ]
}

/// Checks one page of rows, `concurrency` at a time. After an error (the
/// credentials stopped working), no new row is started, but the rows under
/// way finish, so that every deletion made is returned to be logged.
async fn check_page(
    ctx: &Arc<Ctx>,
    page: Vec<SucceededRow>,
) -> (Vec<Verdict>, Option<VerifyError>) {
    let mut tasks: JoinSet<Result<Verdict, VerifyError>> = JoinSet::new();
    let mut verdicts = Vec::with_capacity(page.len());
    let mut stopped = None;
    let mut keep = |done, stopped: &mut Option<VerifyError>| match joined(done) {
        Ok(v) => verdicts.push(v),
        Err(e) => {
            stopped.get_or_insert(e);
        }
    };
    for row in page {
        while tasks.len() >= ctx.options.concurrency.max(1) {
            if let Some(done) = tasks.join_next().await {
                keep(done, &mut stopped);
            }
        }
        if stopped.is_some() {
            break;
        }
        let ctx = ctx.clone();
        tasks.spawn(async move { check_row(&ctx, row).await });
    }
    while let Some(done) = tasks.join_next().await {
        keep(done, &mut stopped);
    }
    (verdicts, stopped)
}

fn joined(
    done: Result<Result<Verdict, VerifyError>, tokio::task::JoinError>,
) -> Result<Verdict, VerifyError> {
    done.map_err(|e| VerifyError::Run(format!("a check crashed: {e}")))?
}

async fn check_row(ctx: &Ctx, row: SucceededRow) -> Result<Verdict, VerifyError> {
    let cells = decode_cells(&row.original).unwrap_or_default();
    let recorded = row.result_id.clone().unwrap_or_default();
    let mut verdict = Verdict {
        line: row.line,
        cells,
        recorded: recorded.clone(),
        finding: Finding::Ok,
        log: Vec::new(),
    };
    let fields = match &ctx.options.recipe {
        None => Ok(verdict.cells.clone()),
        Some(applied) => applied
            .row(&verdict.cells, row.line as u64)
            .map_err(|problems| {
                let text: Vec<String> = problems.into_iter().map(|p| p.message).collect();
                text.join("; ")
            }),
    };
    let req = fields.and_then(|fields| ctx.rows.queued(row.line, row.request.as_deref(), &fields));
    let req = match req {
        Ok(req) => req,
        Err(why) => {
            verdict.finding = Finding::Unchecked(why);
            return Ok(verdict);
        }
    };
    let (Some(tag), Some((from, to))) = (req.integration_tags.first(), req.lookup_window()) else {
        verdict.finding = Finding::Unchecked("the row has no readable start/end".into());
        return Ok(verdict);
    };
    let looked_at = now_ms();
    let found = paced(ctx, |token, tracking| {
        let (tag, host, from, to) = (
            tag.clone(),
            req.host_email.clone(),
            from.clone(),
            to.clone(),
        );
        let client = ctx.client.clone();
        async move {
            client
                .find_meetings_by_tag(&token, &tag, &host, &from, &to, &tracking)
                .await
        }
    })
    .await;
    let found = match found {
        Ok(answer) => answer.value,
        Err(Call::Auth(why)) => return Err(VerifyError::Auth(why)),
        Err(Call::Api(e)) => {
            verdict.finding = Finding::Unchecked(format!("the lookup failed: {e}"));
            return Ok(verdict);
        }
    };
    let ids: Vec<&str> = found.iter().map(|m| m.id.as_str()).collect();
    let decision = settle::decide(
        &ids,
        Some(recorded.as_str()),
        None,
        looked_at,
        Duration::ZERO,
    );
    verdict.finding = match decision {
        Decision::Adopt { extras, .. } if extras.is_empty() => Finding::Ok,
        Decision::Adopt { extras, .. } => {
            let extras: Vec<String> = extras.iter().map(|i| ids[*i].to_owned()).collect();
            let (removed, refused) = if ctx.options.fix {
                remove(ctx, &req.host_email, &extras, &mut verdict.log).await?
            } else {
                (Vec::new(), Vec::new())
            };
            Finding::Duplicated {
                extras,
                removed,
                refused,
            }
        }
        Decision::RecordedMissing { others } => Finding::Missing {
            others: others.iter().map(|i| ids[*i].to_owned()).collect(),
        },
        Decision::Resend | Decision::LookAgainAt(_) => Finding::Missing { others: vec![] },
    };
    Ok(verdict)
}

/// Deletes `extras` (never the recorded meeting: `decide` left it out).
async fn remove(
    ctx: &Ctx,
    host: &str,
    extras: &[String],
    log: &mut Vec<Attempt>,
) -> Result<(Vec<String>, Vec<String>), VerifyError> {
    let (mut removed, mut refused) = (Vec::new(), Vec::new());
    for id in extras {
        let started = now_ms();
        let answer = paced(ctx, |token, tracking| {
            let (client, id, host) = (ctx.client.clone(), id.clone(), host.to_owned());
            async move { client.delete_meeting(&token, &id, &host, &tracking).await }
        })
        .await;
        let (status, outcome, error, tracking_id) = match answer {
            Ok(a) => {
                removed.push(id.clone());
                (Some(a.status), "removed_duplicate", None, a.tracking_id)
            }
            Err(Call::Auth(why)) => {
                // The next row's lookup stops the run; what was removed is logged.
                refused.push(format!("{id}: authentication failed: {why}"));
                break;
            }
            Err(Call::Api(e)) => {
                refused.push(format!("{id}: {e}"));
                let tracking = e.tracking_id().map(str::to_owned);
                (e.status(), "failed", Some(e.to_string()), tracking)
            }
        };
        log.push(Attempt {
            action: "verify_delete",
            started_at: started,
            finished_at: now_ms(),
            http_status: status,
            outcome,
            error: Some(error.unwrap_or_else(|| format!("duplicate meeting {id}"))),
            tracking_id,
        });
    }
    Ok((removed, refused))
}

/// How a paced request ended, when it did not succeed.
#[derive(Debug)]
enum Call {
    /// The credentials do not work: stop everything.
    Auth(String),
    /// The request failed (for good, or too many times).
    Api(ApiError),
}

/// One request, paced like a run's: waits for the shared pause and a turn
/// at the shared limiter, uses a fresh token; a 429 pauses everybody (and
/// is tried again when the pause is over), a 401 refreshes the token once
/// for all, a transient failure is tried again with backoff (backon).
async fn paced<T, F, Fut>(ctx: &Ctx, request: F) -> Result<Answer<T>, Call>
where
    F: Fn(SecretString, String) -> Fut,
    Fut: std::future::Future<Output = Result<Answer<T>, ApiError>>,
{
    let failures = AtomicU32::new(0);
    let throttled = AtomicU32::new(0);
    let attempt = || async {
        let pacing = &ctx.pacing;
        pacing.pause.wait().await;
        pacing.limiter.until_ready().await;
        pacing.pause.wait().await;
        let Some((token, generation)) = ctx.tokens.fresh().await else {
            return Err(Call::Auth("no access token".into()));
        };
        let (answer, sent) = pacing.send(request(token, new_tracking_id())).await;
        match answer {
            Ok(answer) => {
                pacing.accepted(sent);
                Ok(answer)
            }
            Err(e) if e.is_rate_limited() => {
                pacing.throttled(parse_retry_after(e.retry_after(), SystemTime::now()), sent);
                throttled.fetch_add(1, Ordering::Relaxed);
                Err(Call::Api(e))
            }
            Err(e) if e.is_unauthorized() => {
                ctx.tokens
                    .refresh_after(generation)
                    .await
                    .map_err(|a| Call::Auth(a.to_string()))?;
                failures.fetch_add(1, Ordering::Relaxed);
                Err(Call::Api(e))
            }
            Err(e) => {
                if e.status().is_some() {
                    pacing.accepted(sent);
                }
                failures.fetch_add(1, Ordering::Relaxed);
                Err(Call::Api(e))
            }
        }
    };
    let again = |e: &Call| match e {
        Call::Api(e) if e.is_rate_limited() => {
            throttled.load(Ordering::Relaxed) < ctx.options.max_throttled
        }
        Call::Api(e) if e.is_unauthorized() || e.is_retryable() => {
            failures.load(Ordering::Relaxed) < ctx.options.max_attempts
        }
        _ => false,
    };
    attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(BACKOFF_BASE)
                .with_max_delay(BACKOFF_CAP)
                .with_jitter()
                .without_max_times(),
        )
        .when(again)
        // A 429 waits in the shared pause, a 401 had its refresh: go again at once.
        .adjust(|e, delay| match e {
            Call::Api(e) if e.is_rate_limited() || e.is_unauthorized() => Some(Duration::ZERO),
            _ => delay,
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_count_until_removed_and_missing_meetings_always() {
        let mut s = Summary::default();
        let dup = |removed: usize| Finding::Duplicated {
            extras: vec!["a".into(), "b".into()],
            removed: vec!["a".into(); removed],
            refused: vec![],
        };
        count(&mut s, &Finding::Ok);
        assert!(s.all_ok());
        count(&mut s, &dup(2));
        assert!(s.all_ok(), "both duplicates removed: fixed");
        count(&mut s, &dup(1));
        assert!(!s.all_ok(), "one left");
        assert_eq!((s.ok, s.duplicated, s.removed, s.unfixed), (1, 2, 3, 1));
        let mut m = Summary::default();
        count(&mut m, &Finding::Missing { others: vec![] });
        assert!(!m.all_ok());
    }
}

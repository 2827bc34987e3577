//! Carrying out one meetings row, exactly once on a slow server too.
//!
//! Every create carries the row's integration tag. A row whose earlier
//! create may have been carried out is looked up by tag first
//! ([`MeetingRunner::reconcile`]); a "not found" is trusted only once the
//! settle window has passed ([`crate::settle`]). A row that may have sent two
//! creates gets a final check ([`MeetingRunner::check`]), which removes every
//! meeting but the recorded one.

use crate::engine::{Api, Failed};
use crate::kinds::{BoxFuture, Reconciled, Runner};
use crate::settle::{self, Decision};
use crate::store::{now_ms, Claimed, Created, Outcome};
use crate::webex::{Answer, Meeting};

use super::check::MeetingRequest;
use super::MeetingRows;

/// Carries out the rows of one meetings run.
pub struct MeetingRunner {
    /// Rebuilds each row's request from its cells.
    pub rows: MeetingRows,
}

impl Runner for MeetingRunner {
    fn reconcile<'a>(
        &'a self,
        row: &'a Claimed,
        api: &'a mut Api<'_>,
    ) -> BoxFuture<'a, Reconciled> {
        Box::pin(self.reconcile_row(row, api))
    }

    fn execute<'a>(&'a self, row: &'a Claimed, api: &'a mut Api<'_>) -> BoxFuture<'a, Outcome> {
        Box::pin(self.create(row, api))
    }

    fn check<'a>(&'a self, row: &'a Claimed, api: &'a mut Api<'_>) -> BoxFuture<'a, Outcome> {
        Box::pin(self.check_row(row, api))
    }
}

impl MeetingRunner {
    /// The row's request, as queued.
    fn request(&self, row: &Claimed) -> Result<MeetingRequest, String> {
        row.cells()
            .and_then(|cells| self.rows.queued(row.line, row.request.as_deref(), &cells))
    }

    /// An earlier create may have happened: look first, and trust a "not
    /// found" only once the settle window has passed.
    async fn reconcile_row(&self, row: &Claimed, api: &mut Api<'_>) -> Reconciled {
        let req = match self.request(row) {
            Ok(req) => req,
            Err(error) => return Reconciled::Settled(unbuildable(row, error)),
        };
        let found = match lookup(api, row, &req).await {
            Ok(found) => found,
            Err(o) => return Reconciled::Settled(o),
        };
        let ids: Vec<&str> = found.meetings.iter().map(|m| m.id.as_str()).collect();
        let decision = settle::decide(&ids, None, row.uncertain_at, found.sent_at, api.settle());
        Reconciled::Settled(match decision {
            Decision::Adopt { keep, extras } => {
                tracing::info!(
                    line = row.line,
                    "found the meeting an earlier attempt created; not sending again"
                );
                let extras = extras.iter().map(|i| ids[*i].to_owned()).collect();
                let removal = remove(api, row, &req.host_email, extras).await;
                // When two creates may have been sent, the other may land
                // later still: look once more after the window.
                let check_at = row
                    .uncertain_at
                    .filter(|_| row.creates >= 2)
                    .map(|sent| settle::check_at(sent, api.settle(), now_ms()));
                // A removal to try again waits for that check, never ends it early.
                let check_at = check_at.or(removal.retry_at);
                Outcome::Succeeded {
                    created: created(&found.meetings[keep]),
                    status: found.status,
                    tracking_id: found.tracking_id,
                    note: removal.note(),
                    check_at,
                }
            }
            Decision::LookAgainAt(at) => {
                tracing::info!(
                    line = row.line,
                    "not found yet; an earlier create may still be under way: looking again in {}s",
                    (at - now_ms()).max(0) / 1000
                );
                Outcome::Retry {
                    next_at: at,
                    status: found.status,
                    error: "an earlier create's outcome is unknown and the meeting is not found yet; looking again once the server has had time to finish it".into(),
                    tracking_id: found.tracking_id,
                    reconcile: true,
                    uncertain_at: None,
                    counts_as_failure: false,
                    throttled: false,
                }
            }
            Decision::Resend | Decision::RecordedMissing { .. }
                if row.failures >= api.max_attempts() =>
            {
                Outcome::Failed {
                    status: found.status,
                    error: format!(
                        "gave up after {} attempts; no meeting was found once the server had had time to finish the last one, so none was created",
                        row.failures
                    ),
                    tracking_id: found.tracking_id,
                    reconcile: true,
                    uncertain_at: None,
                }
            }
            Decision::Resend | Decision::RecordedMissing { .. } => return Reconciled::Absent,
        })
    }

    /// `POST /meetings` with the row's tag.
    async fn create(&self, row: &Claimed, api: &mut Api<'_>) -> Outcome {
        let body = match self.request(row) {
            Ok(req) => serde_json::to_string(&req).expect("a request serializes"),
            Err(error) => return unbuildable(row, error),
        };
        let client = api.client();
        let answer = api
            .create("create", |token, tid| async move {
                client.create_meeting(&token, &body, &tid).await
            })
            .await;
        match answer {
            Ok(answer) => {
                api.label("created", None);
                Outcome::Succeeded {
                    created: created(&answer.value),
                    status: Some(answer.status),
                    tracking_id: answer.tracking_id,
                    note: None,
                    // An earlier create was not found within its window, so
                    // this one was sent; should it land after all, give it
                    // one more window and look again (unless it was sent so
                    // long ago that it cannot land any more).
                    check_at: row
                        .uncertain_at
                        .filter(|sent| settle::may_still_land(*sent, now_ms(), api.settle()))
                        .map(|_| settle::check_at(now_ms(), api.settle(), now_ms())),
                }
            }
            Err(failed) => failed.outcome,
        }
    }

    /// The final check of a succeeded row whose create followed an
    /// uncertain attempt: look its tag up once more, and remove every
    /// meeting but the recorded one.
    async fn check_row(&self, row: &Claimed, api: &mut Api<'_>) -> Outcome {
        let req = match self.request(row) {
            Ok(req) => req,
            Err(error) => return check_not_made(error),
        };
        let found = match lookup(api, row, &req).await {
            Ok(found) => found,
            Err(o) => return as_check(o),
        };
        let ids: Vec<&str> = found.meetings.iter().map(|m| m.id.as_str()).collect();
        let decision = settle::decide(
            &ids,
            row.result_id.as_deref(),
            None,
            found.sent_at,
            api.settle(),
        );
        match decision {
            Decision::Adopt { extras, .. } => {
                let extras = extras.iter().map(|i| ids[*i].to_owned()).collect();
                let removal = remove(api, row, &req.host_email, extras).await;
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
            Decision::Resend | Decision::LookAgainAt(_) => Outcome::checked(),
        }
    }
}

/// A queued row whose request cannot be built (its cells no longer read
/// as a meeting): it fails, and says why.
fn unbuildable(row: &Claimed, error: String) -> Outcome {
    Outcome::Failed {
        status: None,
        error,
        tracking_id: None,
        reconcile: row.reconcile,
        uncertain_at: None,
    }
}

fn check_not_made(error: impl std::fmt::Display) -> Outcome {
    Outcome::Checked {
        note: Some(format!("the final check could not be made: {error}")),
        next_check: None,
        failure: false,
        throttled: false,
    }
}

fn created(m: &Meeting) -> Created {
    Created {
        id: m.id.clone(),
        number: m.meeting_number.clone(),
        link: m.web_link.clone(),
        extra: None,
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
        Outcome::Failed { error, .. } => check_not_made(error),
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
async fn remove(api: &mut Api<'_>, row: &Claimed, host: &str, ids: Vec<String>) -> Removal {
    let mut removal = Removal::default();
    let client = api.client();
    for id in ids {
        let answer = api
            .call("delete", |token, tid| {
                let id = id.clone();
                async move { client.delete_meeting(&token, &id, host, &tid).await }
            })
            .await;
        match answer {
            Ok(_) => {
                tracing::warn!(
                    line = row.line,
                    "removed a duplicate meeting ({id}) that an earlier attempt created"
                );
                api.label("removed_duplicate", Some(format!("duplicate meeting {id}")));
                removal.removed += 1;
            }
            Err(Failed {
                outcome:
                    Outcome::Retry {
                        next_at,
                        counts_as_failure,
                        throttled,
                        ..
                    },
                ..
            }) => {
                removal.retry_at = Some(next_at);
                removal.failure = counts_as_failure;
                removal.throttled = throttled;
                break;
            }
            Err(failed) => removal.refused.push(format!("{id}: {}", failed.error)),
        }
    }
    removal
}

/// What a lookup by tag found, and when it was sent.
struct Found {
    meetings: Vec<Meeting>,
    /// When the lookup was sent (ms): what it can prove depends on it.
    sent_at: i64,
    status: Option<u16>,
    tracking_id: Option<String>,
}

/// `GET /meetings?integrationTag=..&hostEmail=..` in a window around the
/// meeting (logged as `check` for a final check, else `lookup`).
async fn lookup(api: &mut Api<'_>, row: &Claimed, req: &MeetingRequest) -> Result<Found, Outcome> {
    let tag = req.integration_tags.first().cloned().unwrap_or_default();
    let Some((from, to)) = req.lookup_window() else {
        return Err(Outcome::Failed {
            status: None,
            error: "the queued request has no readable start/end".into(),
            tracking_id: None,
            reconcile: true,
            uncertain_at: None,
        });
    };
    let client = api.client();
    let host = req.host_email.as_str();
    let action = if row.check { "check" } else { "lookup" };
    let answer = api
        .call(action, |token, tid| async move {
            // What a lookup proves depends on when it was sent.
            let sent_at = now_ms();
            let answer = client
                .find_meetings_by_tag(&token, &tag, host, &from, &to, &tid)
                .await?;
            Ok(Answer {
                value: (answer.value, sent_at),
                status: answer.status,
                tracking_id: answer.tracking_id,
            })
        })
        .await
        .map_err(|failed| failed.outcome)?;
    let (meetings, sent_at) = answer.value;
    api.label(
        match meetings.len() {
            0 => "not_found",
            1 => "found",
            _ => "found_several",
        },
        None,
    );
    Ok(Found {
        meetings,
        sent_at,
        status: Some(answer.status),
        tracking_id: answer.tracking_id,
    })
}

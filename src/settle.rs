//! Exactly once on a slow server: what a lookup by integration tag means.
//!
//! A create whose outcome is unknown (timeout, dropped connection, 5xx, or a
//! row `in_flight` when the process stopped) may still be carried out by
//! Webex long after we stopped waiting: a gateway keeps working on a request
//! after the client gave up. So a lookup that finds nothing proves nothing
//! until the *settle window* has passed since that create was sent. This
//! module decides, from plain values (no clock, no I/O), what to do with what
//! a lookup found: adopt one meeting (and remove the others), send the create
//! again, or look again later.

use std::time::Duration;

/// The settle window when none is given: what a server may still be working
/// on after we gave up. Webex's gateway answers within about a minute (our
/// default `--timeout`); twice that leaves room for a slow backend.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(120);

/// The settle window for a request timeout: [`DEFAULT_SETTLE`] or twice the
/// timeout, whichever is longer. A short `--timeout` makes us give up
/// sooner; it does not make the server finish sooner.
pub fn default_settle(timeout: Duration) -> Duration {
    DEFAULT_SETTLE.max(timeout * 2)
}

/// What to do after a lookup by tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The meeting at `keep` (an index into what was found) is the row's;
    /// those at `extras` are duplicates to remove.
    Adopt { keep: usize, extras: Vec<usize> },
    /// The recorded meeting is not among those found (deleted since, or not
    /// listed yet). Nothing is removed: what was found (`others`) may be the
    /// only meeting left for the row.
    RecordedMissing { others: Vec<usize> },
    /// Nothing found, and the window has passed: send the create again.
    Resend,
    /// Nothing found yet, inside the window: look again at this time (ms).
    LookAgainAt(i64),
}

/// Decides what a lookup by tag means for a row.
///
/// - `found`: the ids of the meetings the lookup found, in the order the
///   API listed them;
/// - `recorded`: the meeting id the row already has (a final check, or
///   `verify`), if any;
/// - `uncertain_at`: when the row's latest create whose outcome is unknown
///   was sent (ms), if any;
/// - `looked_at`: when the lookup was sent (ms): only a lookup sent after the
///   window can prove that nothing was created;
/// - `settle`: the window.
///
/// Which meeting is kept: the recorded one; else the first listed (the API
/// gives no creation time; the list is in start order, and all of a row's
/// meetings have the same start, so any one is the row's meeting as well as
/// another: what matters is that exactly one stays).
pub fn decide(
    found: &[&str],
    recorded: Option<&str>,
    uncertain_at: Option<i64>,
    looked_at: i64,
    settle: Duration,
) -> Decision {
    if let Some(recorded) = recorded {
        return match found.iter().position(|id| *id == recorded) {
            Some(keep) => Decision::Adopt {
                keep,
                extras: (0..found.len()).filter(|i| found[*i] != recorded).collect(),
            },
            None => Decision::RecordedMissing {
                others: (0..found.len()).collect(),
            },
        };
    }
    if let Some(first) = found.first() {
        return Decision::Adopt {
            keep: 0,
            extras: (1..found.len()).filter(|i| found[*i] != *first).collect(),
        };
    }
    match uncertain_at {
        Some(sent) => {
            let settled = sent.saturating_add(settle.as_millis() as i64);
            if looked_at >= settled {
                Decision::Resend
            } else {
                Decision::LookAgainAt(settled)
            }
        }
        None => Decision::Resend,
    }
}

/// When a row that succeeded after an uncertain attempt sent at
/// `uncertain_at` is looked up once more: once that attempt's window has
/// passed, and not before `now`.
pub fn check_at(uncertain_at: i64, settle: Duration, now: i64) -> i64 {
    uncertain_at
        .saturating_add(settle.as_millis() as i64)
        .max(now)
}

/// How many settle windows after it was sent an uncertain create is still
/// watched for: the final check after a resend guards against a window that
/// was too short, not against one that was ten times too short.
pub const WATCH_WINDOWS: u32 = 10;

/// Whether a create whose outcome was unknown, sent at `uncertain_at`, may
/// still land after `now` (so a row sent again now deserves a final check).
/// A queue resumed a day after its crash sends its rows again without
/// waiting a window for creates that had a day to show.
pub fn may_still_land(uncertain_at: i64, now: i64, settle: Duration) -> bool {
    let horizon = settle.saturating_mul(WATCH_WINDOWS).as_millis() as i64;
    now.saturating_sub(uncertain_at) < horizon
}

/// "removed 1 duplicate", "removed 2 duplicates".
pub fn removed_note(n: usize) -> Option<String> {
    match n {
        0 => None,
        1 => Some("removed 1 duplicate".to_owned()),
        n => Some(format!("removed {n} duplicates")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_secs(120);
    const SENT: i64 = 1_000_000;

    #[test]
    fn a_create_sent_long_ago_is_no_longer_watched_for() {
        let window = SETTLE.as_millis() as i64;
        assert!(may_still_land(SENT, SENT + window, SETTLE));
        assert!(may_still_land(SENT, SENT + 9 * window, SETTLE));
        assert!(!may_still_land(SENT, SENT + 10 * window, SETTLE));
        assert!(
            !may_still_land(SENT, SENT + 86_400_000, SETTLE),
            "a day later"
        );
    }

    #[test]
    fn found_at_once_is_adopted_at_once() {
        assert_eq!(
            decide(&["m1"], None, Some(SENT), SENT + 10, SETTLE),
            Decision::Adopt {
                keep: 0,
                extras: vec![]
            }
        );
    }

    #[test]
    fn not_found_inside_the_window_waits_for_its_end() {
        assert_eq!(
            decide(&[], None, Some(SENT), SENT + 10, SETTLE),
            Decision::LookAgainAt(SENT + 120_000)
        );
        // One millisecond short is still inside.
        assert_eq!(
            decide(&[], None, Some(SENT), SENT + 119_999, SETTLE),
            Decision::LookAgainAt(SENT + 120_000)
        );
    }

    #[test]
    fn not_found_after_the_window_sends_again() {
        assert_eq!(
            decide(&[], None, Some(SENT), SENT + 120_000, SETTLE),
            Decision::Resend
        );
        assert_eq!(
            decide(&[], None, Some(SENT), SENT + 500_000, SETTLE),
            Decision::Resend
        );
    }

    #[test]
    fn nothing_uncertain_means_nothing_to_wait_for() {
        assert_eq!(decide(&[], None, None, SENT, SETTLE), Decision::Resend);
    }

    #[test]
    fn several_found_keep_the_first_listed_and_remove_the_rest() {
        assert_eq!(
            decide(&["a", "b", "c"], None, Some(SENT), SENT + 5, SETTLE),
            Decision::Adopt {
                keep: 0,
                extras: vec![1, 2]
            }
        );
    }

    #[test]
    fn several_found_keep_the_recorded_one_wherever_it_is_listed() {
        assert_eq!(
            decide(&["a", "b", "c"], Some("b"), Some(SENT), SENT + 5, SETTLE),
            Decision::Adopt {
                keep: 1,
                extras: vec![0, 2]
            }
        );
    }

    #[test]
    fn a_meeting_listed_twice_is_never_its_own_duplicate() {
        assert_eq!(
            decide(&["a", "b", "a"], None, None, SENT, SETTLE),
            Decision::Adopt {
                keep: 0,
                extras: vec![1]
            }
        );
        assert_eq!(
            decide(&["b", "a", "b"], Some("b"), None, SENT, SETTLE),
            Decision::Adopt {
                keep: 0,
                extras: vec![1]
            }
        );
    }

    #[test]
    fn a_recorded_meeting_not_found_removes_nothing() {
        assert_eq!(
            decide(&["x"], Some("b"), None, SENT, SETTLE),
            Decision::RecordedMissing { others: vec![0] }
        );
        assert_eq!(
            decide(&[], Some("b"), Some(SENT), SENT + 1, SETTLE),
            Decision::RecordedMissing { others: vec![] }
        );
    }

    #[test]
    fn the_default_window_follows_a_long_timeout_only() {
        assert_eq!(default_settle(Duration::from_secs(1)), DEFAULT_SETTLE);
        assert_eq!(default_settle(Duration::from_secs(60)), DEFAULT_SETTLE);
        assert_eq!(
            default_settle(Duration::from_secs(90)),
            Duration::from_secs(180)
        );
    }

    #[test]
    fn the_final_check_waits_for_the_window_of_the_last_uncertain_attempt() {
        assert_eq!(check_at(SENT, SETTLE, SENT + 1), SENT + 120_000);
        assert_eq!(check_at(SENT, SETTLE, SENT + 200_000), SENT + 200_000);
    }

    #[test]
    fn notes_count_duplicates() {
        assert_eq!(removed_note(0), None);
        assert_eq!(removed_note(1).as_deref(), Some("removed 1 duplicate"));
        assert_eq!(removed_note(3).as_deref(), Some("removed 3 duplicates"));
    }
}

//! What the user sees while a run goes on: an indicatif bar on a terminal,
//! a plain status line every few seconds elsewhere, and log lines that do
//! not break the bar.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::rate::Pacing;

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// Always the bar.
    Bar,
    /// A plain status line every few seconds.
    Plain,
    /// Nothing until the summary.
    None,
}

/// Live counters the workers update (the store stays the source of truth;
/// these only feed the display).
#[derive(Default)]
pub struct Tally {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// Rows waiting for a retry.
    pub retrying: AtomicI64,
    /// Rows finished in this process (for the rate).
    pub finished_here: AtomicU64,
    /// Succeeded rows still to be looked up once more (as the dispatcher last saw).
    pub checks: AtomicU64,
    /// When the next of those checks is due (ms since the epoch; 0: none waiting).
    pub next_check_at: AtomicI64,
    /// Rows waiting until Webex has had time to finish an earlier create (as the dispatcher last saw).
    pub settling: AtomicU64,
    /// When the next of those is looked up again (ms since the epoch; 0: none).
    pub next_settled_at: AtomicI64,
}

/// The bar that log lines must step around, if one is shown.
static ACTIVE_BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

fn active_bar() -> &'static Mutex<Option<ProgressBar>> {
    ACTIVE_BAR.get_or_init(|| Mutex::new(None))
}

/// A `tracing` writer that prints on stderr above the progress bar.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

/// One log line being written.
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        let print = || {
            let _ = std::io::stderr().write_all(&bytes);
        };
        match active_bar().lock().ok().and_then(|b| b.clone()) {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// The display of one run.
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    total: u64,
    done_at_start: u64,
    started: Instant,
    tally: Arc<Tally>,
    pacing: Arc<Pacing>,
}

impl Progress {
    /// A display for a run of `total` rows of which `done` are already final.
    pub fn new(
        mode: Mode,
        total: u64,
        done: u64,
        tally: Arc<Tally>,
        pacing: Arc<Pacing>,
    ) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let (bar, plain) = match mode {
            Mode::Bar => (true, false),
            Mode::Auto => (terminal, !terminal),
            Mode::Plain => (false, true),
            Mode::None => (false, false),
        };
        let bar = bar.then(|| {
            let b =
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(8));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner:.green} {elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_position(done);
            b.enable_steady_tick(Duration::from_millis(125));
            *active_bar().lock().expect("bar") = Some(b.clone());
            b
        });
        Progress {
            bar,
            plain,
            total,
            done_at_start: done,
            started: Instant::now(),
            tally,
            pacing,
        }
    }

    fn line(&self) -> (u64, String) {
        let t = &self.tally;
        let here = t.finished_here.load(Ordering::Relaxed);
        let done = (self.done_at_start + here).min(self.total);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let per_sec = here as f64 / secs;
        let left = self.total.saturating_sub(done);
        let eta = if per_sec > 0.0 {
            humanize(Duration::from_secs_f64(left as f64 / per_sec))
        } else {
            "-".into()
        };
        let mut msg = format!(
            "{:.1} rows/s, ETA {eta} | ok {} failed {} retrying {}",
            per_sec,
            t.succeeded.load(Ordering::Relaxed),
            t.failed.load(Ordering::Relaxed),
            t.retrying.load(Ordering::Relaxed).max(0),
        );
        let rate = self.pacing.rate();
        if rate > 0.0 {
            msg.push_str(&format!(" | rate {rate:.1}/s"));
        }
        msg.push_str(&pacing_details(
            self.pacing.limit(),
            self.pacing.in_flight(),
            self.pacing.concurrency(),
        ));
        let now = crate::store::now_ms();
        let settling = t.settling.load(Ordering::Relaxed);
        if settling > 0 {
            msg.push_str(&waiting_to_settle(
                settling,
                t.next_settled_at.load(Ordering::Relaxed),
                now,
            ));
        }
        let checks = t.checks.load(Ordering::Relaxed);
        if checks > 0 {
            msg.push_str(&checking(
                checks,
                t.next_check_at.load(Ordering::Relaxed),
                now,
            ));
        }
        if let Some(p) = self.pacing.pause.remaining() {
            msg.push_str(&format!(
                " | paused by rate limit for {}s",
                p.as_secs_f64().ceil() as u64
            ));
        }
        (done, msg)
    }

    /// Redraws (bar) or prints a status line (plain); call it periodically.
    pub fn tick(&self) {
        let (done, msg) = self.line();
        if let Some(b) = &self.bar {
            b.set_position(done);
            b.set_message(msg);
        } else if self.plain {
            eprintln!(
                "[{}] {done}/{} done, {msg}",
                humanize(self.started.elapsed()),
                self.total
            );
        }
    }

    /// How often `tick` should be called.
    pub fn interval(&self) -> Duration {
        if self.bar.is_some() {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        }
    }

    /// Whether anything is displayed.
    pub fn visible(&self) -> bool {
        self.bar.is_some() || self.plain
    }

    /// Removes the bar (the summary follows).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            let (done, msg) = self.line();
            b.set_position(done);
            b.finish_with_message(msg);
            *active_bar().lock().expect("bar") = None;
        }
    }
}

/// " (limit ~20.3/s) | in flight 12 of 42".
fn pacing_details(limit: Option<f64>, in_flight: usize, cap: usize) -> String {
    let limit = limit.map_or(String::new(), |l| format!(" (limit ~{l:.1}/s)"));
    format!("{limit} | in flight {in_flight} of {cap}")
}

/// " | checking 3 uncertain rows (next in 37 s)".
fn checking(n: u64, next_at: i64, now: i64) -> String {
    format!(" | checking {}{}", uncertain_rows(n), next_in(next_at, now))
}

/// " | 2 uncertain rows wait for Webex to finish (next look in 80 s)".
fn waiting_to_settle(n: u64, next_at: i64, now: i64) -> String {
    let verb = if n == 1 { "waits" } else { "wait" };
    let next = next_in(next_at, now).replace("next in", "next look in");
    format!(" | {} {verb} for Webex to finish{next}", uncertain_rows(n))
}

fn uncertain_rows(n: u64) -> String {
    format!("{n} uncertain {}", if n == 1 { "row" } else { "rows" })
}

/// " (next in 37 s)", or nothing when it is due.
fn next_in(at: i64, now: i64) -> String {
    if at > now {
        format!(
            " (next in {} s)",
            ((at - now) as f64 / 1000.0).ceil() as i64
        )
    } else {
        String::new()
    }
}

/// `1h02m`, `3m05s`, `12s`.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// `13 days 23 h`, `4 h 10 min`, `12 min`: for lifetimes.
pub fn humanize_long(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if days > 0 {
        format!("{days} days {hours} h")
    } else if hours > 0 {
        format!("{hours} h {mins} min")
    } else {
        format!("{} min", mins.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checking_phase_says_how_many_and_when() {
        assert_eq!(
            checking(3, 1_037_000, 1_000_000),
            " | checking 3 uncertain rows (next in 37 s)"
        );
        assert_eq!(checking(1, 0, 1_000_000), " | checking 1 uncertain row");
        assert_eq!(
            waiting_to_settle(2, 1_080_000, 1_000_000),
            " | 2 uncertain rows wait for Webex to finish (next look in 80 s)"
        );
        assert_eq!(
            waiting_to_settle(1, 1_000_500, 1_000_000),
            " | 1 uncertain row waits for Webex to finish (next look in 1 s)"
        );
    }

    #[test]
    fn the_pacing_shows_the_limit_and_the_requests_in_flight() {
        assert_eq!(
            pacing_details(Some(20.26), 12, 42),
            " (limit ~20.3/s) | in flight 12 of 42"
        );
        assert_eq!(pacing_details(None, 0, 64), " | in flight 0 of 64");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(humanize(Duration::from_secs(12)), "12s");
        assert_eq!(humanize(Duration::from_secs(185)), "3m05s");
        assert_eq!(humanize(Duration::from_secs(3720)), "1h02m");
        assert_eq!(
            humanize_long(Duration::from_secs(14 * 86_400 - 3600)),
            "13 days 23 h"
        );
        assert_eq!(humanize_long(Duration::from_secs(15_000)), "4 h 10 min");
    }
}

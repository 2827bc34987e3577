//! Adaptive concurrency: how many requests may be in flight. Pure: fed with
//! what each request met (its latency, or a failure) and asked with the
//! rate the limiter paces at; no clock, no I/O.
//!
//! Two bounds, the lower one wins, never above the ceiling (`--concurrency`):
//!
//! - **need** (Little's law): requests in flight = rate × latency. With a
//!   rate (adaptive or fixed) the cap is [`HEADROOM`] times that, plus
//!   [`SPARE`], so that the number in flight is never what holds the rate
//!   back (the limiter still paces every request). Without a rate
//!   (`--rate unlimited`) the need is the ceiling: the user asked for speed,
//!   and only the server's trouble (below) lowers it.
//! - **health** (AIMD, as in TCP Vegas or Netflix's gradient limiter): it
//!   starts at the ceiling and is cut when the server shows trouble: by a
//!   quarter when the recent latency rises sharply above the long-run
//!   latency ([`RISE`] times, and by [`SLACK`] seconds at least, so a
//!   loopback's milliseconds never count), by half when 5xx answers,
//!   timeouts or lost connections come in a burst ([`BURST`] of the last
//!   [`WINDOW`] answers). After a cut, the next waits until as many answers
//!   as were then allowed in flight have come back (the ones sent before the
//!   cut say nothing new). Every good answer adds `1 / health` (one more
//!   request in flight per round of answers). 429s count for neither: the
//!   rate controller answers them.

use std::collections::VecDeque;

/// Cap = rate × latency × this (Little's law with room for latency that varies).
pub const HEADROOM: f64 = 2.0;
/// Added to the Little's-law cap.
pub const SPARE: usize = 2;
/// The need never goes below this (a few in flight cost nothing).
pub const MIN_NEED: usize = 4;
/// Latency assumed before the first answer (seconds).
pub const FIRST_LATENCY: f64 = 1.0;
/// Recent latency this many times the long-run latency is a sharp rise...
pub const RISE: f64 = 2.0;
/// ...if it is also this many seconds above it.
pub const SLACK: f64 = 0.1;
/// Answers looked at for a burst of failures.
pub const WINDOW: usize = 10;
/// Failures among the last [`WINDOW`] answers that make a burst.
pub const BURST: usize = 3;
/// Weight of a new sample in the recent latency.
const RECENT: f64 = 0.2;
/// Weight of a new sample in the long-run latency.
const LONG_RUN: f64 = 0.02;

/// Why the cap moved (for the `-v` log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Rate × latency asks for it.
    Need,
    /// Latency rose sharply: fewer in flight.
    LatencyRose,
    /// 5xx, timeouts or lost connections in a burst: fewer in flight.
    Failures,
    /// Good answers since the last cut: one more at a time.
    Recovering,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::Need => "rate x latency",
            Reason::LatencyRose => "latency rose sharply",
            Reason::Failures => "a burst of server errors or timeouts",
            Reason::Recovering => "recovering after a cut",
        })
    }
}

/// The controller; see the module documentation.
#[derive(Clone, Debug)]
pub struct Concurrency {
    ceiling: usize,
    /// The AIMD bound, in `1..=ceiling`.
    health: f64,
    /// Recent latency (seconds), an average weighted to the last few answers.
    recent: Option<f64>,
    /// Long-run latency (seconds).
    long_run: Option<f64>,
    /// The last answers: `true` for a failure.
    answers: VecDeque<bool>,
    /// Answers to wait for before the next cut.
    cooldown: usize,
    /// The cap last given out.
    last: usize,
    /// Why `health` last moved.
    health_reason: Reason,
}

impl Concurrency {
    /// A controller that never allows more than `ceiling` in flight.
    pub fn new(ceiling: usize) -> Concurrency {
        let ceiling = ceiling.max(1);
        Concurrency {
            ceiling,
            health: ceiling as f64,
            recent: None,
            long_run: None,
            answers: VecDeque::new(),
            cooldown: 0,
            last: ceiling,
            health_reason: Reason::Need,
        }
    }

    /// The ceiling (`--concurrency`).
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// The recent latency (seconds), once an answer came.
    pub fn latency(&self) -> Option<f64> {
        self.recent
    }

    /// How many may be in flight when requests are paced at `rate` per
    /// second (0: unlimited), and why.
    pub fn cap(&mut self, rate: f64) -> (usize, Reason) {
        let need = if rate > 0.0 {
            let latency = self.recent.unwrap_or(FIRST_LATENCY);
            ((rate * latency * HEADROOM).ceil() as usize + SPARE).max(MIN_NEED)
        } else {
            self.ceiling
        };
        let health = self.health.floor() as usize;
        let (cap, reason) = if health < need {
            (health, self.health_reason)
        } else {
            (need, Reason::Need)
        };
        self.last = cap.clamp(1, self.ceiling);
        (self.last, reason)
    }

    fn remember(&mut self, failed: bool) {
        self.answers.push_back(failed);
        if self.answers.len() > WINDOW {
            self.answers.pop_front();
        }
        self.cooldown = self.cooldown.saturating_sub(1);
    }

    fn cut(&mut self, factor: f64, reason: Reason) -> Option<Reason> {
        if self.cooldown > 0 {
            return None;
        }
        self.health = (self.last as f64 * factor).floor().max(1.0);
        self.health_reason = reason;
        self.cooldown = self.last.max(WINDOW);
        Some(reason)
    }

    /// An answer came back after `latency` seconds (anything but a 429 or
    /// a failure). Returns the reason when it cut the cap.
    pub fn on_answer(&mut self, latency: f64) -> Option<Reason> {
        self.remember(false);
        let latency = latency.max(0.0);
        let recent = self.recent.map_or(latency, |r| r + (latency - r) * RECENT);
        let long_run = self
            .long_run
            .map_or(latency, |l| l + (latency - l) * LONG_RUN);
        self.recent = Some(recent);
        self.long_run = Some(long_run);
        if recent > long_run * RISE && recent - long_run > SLACK {
            return self.cut(0.75, Reason::LatencyRose);
        }
        if self.health < self.ceiling as f64 {
            self.health = (self.health + 1.0 / self.health).min(self.ceiling as f64);
            if self.cooldown == 0 {
                self.health_reason = Reason::Recovering;
            }
        }
        None
    }

    /// A 5xx, a timeout or a lost connection. Returns the reason when it cut the cap.
    pub fn on_failure(&mut self) -> Option<Reason> {
        self.remember(true);
        if self.answers.iter().filter(|f| **f).count() >= BURST {
            return self.cut(0.5, Reason::Failures);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_follows_rate_times_latency_under_the_ceiling() {
        let mut c = Concurrency::new(64);
        // Before any answer: a latency of a second is assumed.
        assert_eq!(c.cap(5.0), (12, Reason::Need));
        for _ in 0..50 {
            c.on_answer(1.0);
        }
        // 20/s at 1 s: 20 in flight on average, twice that plus 2 allowed.
        assert_eq!(c.cap(20.0), (42, Reason::Need));
        // The old default of 8 would have held the rate at 8/s.
        assert!(c.cap(20.0).0 > 8);
        // A fast server needs few.
        let mut fast = Concurrency::new(64);
        for _ in 0..50 {
            fast.on_answer(0.02);
        }
        assert_eq!(fast.cap(20.0).0, MIN_NEED);
        // Never above the ceiling, whatever the rate.
        assert_eq!(c.cap(1000.0).0, 64);
        let mut one = Concurrency::new(1);
        assert_eq!(one.cap(20.0).0, 1);
        // Unlimited: the ceiling.
        assert_eq!(Concurrency::new(64).cap(0.0), (64, Reason::Need));
    }

    #[test]
    fn a_sharp_rise_in_latency_cuts_the_cap_once_per_round() {
        let mut c = Concurrency::new(64);
        for _ in 0..100 {
            assert_eq!(c.on_answer(0.3), None);
        }
        assert_eq!(c.cap(0.0).0, 64);
        // The server slows down to 2 s: the cap is cut by a quarter...
        let mut cuts = vec![];
        for i in 0..30 {
            if let Some(r) = c.on_answer(2.0) {
                cuts.push((i, r));
            }
        }
        assert_eq!(cuts.first().map(|c| c.1), Some(Reason::LatencyRose));
        assert_eq!(cuts.len(), 1, "once per round of answers: {cuts:?}");
        assert_eq!(c.cap(0.0), (48, Reason::LatencyRose));
        // Once 2 s is the server's usual latency, it is no longer a rise:
        // no further cut, and good answers bring the cap back up.
        for _ in 0..200 {
            assert_eq!(c.on_answer(2.0), None);
        }
        let (cap, reason) = c.cap(0.0);
        assert!((50..64).contains(&cap), "{cap}");
        assert_eq!(reason, Reason::Recovering);
    }

    #[test]
    fn small_latency_changes_on_a_fast_server_are_not_trouble() {
        let mut c = Concurrency::new(64);
        for _ in 0..100 {
            c.on_answer(0.002);
        }
        for _ in 0..100 {
            assert_eq!(c.on_answer(0.02), None, "10 times slower, but by 18 ms");
        }
        assert_eq!(c.cap(0.0).0, 64);
    }

    #[test]
    fn a_burst_of_server_errors_halves_it_and_good_answers_bring_it_back() {
        let mut c = Concurrency::new(40);
        c.cap(0.0);
        // One failure now and then is no burst.
        for _ in 0..5 {
            assert_eq!(c.on_failure(), None);
            for _ in 0..9 {
                c.on_answer(0.1);
            }
        }
        assert_eq!(c.cap(0.0).0, 40);
        // Three in a row are.
        assert_eq!(c.on_failure(), None);
        assert_eq!(c.on_failure(), None);
        assert_eq!(c.on_failure(), Some(Reason::Failures));
        assert_eq!(c.cap(0.0), (20, Reason::Failures));
        // More failures of requests sent before the cut: no second cut yet.
        for _ in 0..10 {
            assert_eq!(c.on_failure(), None);
        }
        // A burst after a round: halved again.
        for _ in 0..30 {
            c.on_failure();
        }
        assert_eq!(c.cap(0.0).0, 10);
        // Good answers: one more per round.
        for _ in 0..100 {
            c.on_answer(0.1);
        }
        let (cap, reason) = c.cap(0.0);
        assert!((15..=20).contains(&cap), "{cap}");
        assert_eq!(reason, Reason::Recovering);
        // And never lower than one.
        let mut c = Concurrency::new(2);
        for _ in 0..100 {
            c.on_failure();
            c.cap(0.0);
        }
        assert_eq!(c.cap(0.0).0, 1);
    }

    #[test]
    fn a_cut_holds_under_a_rate_that_needs_more() {
        let mut c = Concurrency::new(64);
        for _ in 0..50 {
            c.on_answer(1.0);
        }
        assert_eq!(c.cap(20.0).0, 42);
        for _ in 0..3 {
            c.on_failure();
        }
        assert_eq!(c.cap(20.0), (21, Reason::Failures));
    }
}

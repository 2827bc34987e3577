//! Pacing: the one rate limiter and the one pause that every worker shares.
//!
//! `parse_rate` and [`Adaptive`] (the `--rate auto` controller) are pure.
//! [`Limiter`] wraps governor (rebuilt when the adaptive rate moves);
//! [`Pause`] is the gate a 429 closes for everybody until its Retry-After
//! has passed.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};
use tokio::time::Instant;

use crate::concurrency::{Concurrency, Reason};

/// A request rate as the user gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// At most this many requests per second (fractions allowed: 300/min = 5/s).
    PerSecond(f64),
    /// No limit of our own (the server's 429s still pace us).
    Unlimited,
    /// Find the server's limit and ride just under it, never above `ceiling`.
    Auto { ceiling: Option<f64> },
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::PerSecond(r) => write!(f, "{r}/s"),
            Rate::Unlimited => f.write_str("unlimited"),
            Rate::Auto { ceiling: None } => f.write_str("auto"),
            Rate::Auto { ceiling: Some(c) } => write!(f, "auto:{c}/s"),
        }
    }
}

/// Reads `10/s`, `300/min`, `2/sec`, `5000/h`, `unlimited`, `auto`, `auto:50/s`.
pub fn parse_rate(spec: &str) -> Result<Rate, String> {
    let s = spec.trim().to_ascii_lowercase();
    if matches!(s.as_str(), "unlimited" | "none" | "off") {
        return Ok(Rate::Unlimited);
    }
    if s == "auto" {
        return Ok(Rate::Auto { ceiling: None });
    }
    if let Some(ceiling) = s.strip_prefix("auto:") {
        return match parse_rate(ceiling)? {
            Rate::PerSecond(c) => Ok(Rate::Auto { ceiling: Some(c) }),
            _ => Err(format!(
                "`{spec}`: write the ceiling as a rate, e.g. auto:50/s"
            )),
        };
    }
    let help = || {
        format!("`{spec}` is not a rate; write it as auto, auto:50/s, 10/s, 300/min or 5000/h (or unlimited)")
    };
    let (count, unit) = s.split_once('/').ok_or_else(help)?;
    let count: f64 = count.trim().parse().map_err(|_| help())?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        _ => return Err(help()),
    };
    if !(count.is_finite() && count > 0.0) {
        return Err(format!("`{spec}`: the rate must be more than zero"));
    }
    Ok(Rate::PerSecond(count / per))
}

/// The shared rate limiter. Requests are spaced evenly (a burst of one), so
/// the server never sees a spike, not even right after a pause. The rate can
/// be changed while it runs (the adaptive rate does).
pub struct Limiter {
    /// `None`: unlimited.
    inner: RwLock<Option<Arc<DefaultDirectRateLimiter>>>,
    /// The rate it paces at now (requests per second; 0 for unlimited).
    rate: Mutex<f64>,
}

fn governor_for(rate: f64) -> Option<Arc<DefaultDirectRateLimiter>> {
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    Quota::with_period(period).map(|q| {
        Arc::new(DefaultDirectRateLimiter::direct(
            q.allow_burst(NonZeroU32::MIN),
        ))
    })
}

impl Limiter {
    /// A limiter for `rate` (an adaptive rate starts at [`Adaptive::START`]).
    pub fn new(rate: Rate) -> Limiter {
        let start = match rate {
            Rate::Unlimited => None,
            Rate::PerSecond(r) => Some(r),
            Rate::Auto { ceiling } => {
                Some(ceiling.map_or(Adaptive::START, |c| c.min(Adaptive::START)))
            }
        };
        Limiter {
            inner: RwLock::new(start.and_then(governor_for)),
            rate: Mutex::new(start.unwrap_or(0.0)),
        }
    }

    /// Paces at `rate` from now on (ignores changes under 1%).
    pub fn set_rate(&self, rate: f64) {
        let mut current = self.rate.lock().expect("rate");
        if (rate - *current).abs() <= *current * 0.01 {
            return;
        }
        *current = rate;
        *self.inner.write().expect("limiter") = governor_for(rate);
    }

    /// The rate it paces at now (0: unlimited).
    pub fn rate(&self) -> f64 {
        *self.rate.lock().expect("rate")
    }

    fn current(&self) -> Option<Arc<DefaultDirectRateLimiter>> {
        self.inner.read().expect("limiter").clone()
    }

    /// Waits until one request may go.
    pub async fn until_ready(&self) {
        if let Some(l) = self.current() {
            l.until_ready().await;
        }
    }

    /// Takes one request's worth without waiting, if available.
    pub fn try_take(&self) -> bool {
        match self.current() {
            Some(l) => l.check().is_ok(),
            None => true,
        }
    }
}

/// The `--rate auto` controller: pure, fed with what happened and when
/// (seconds since the run started).
///
/// - It starts at a modest [`Adaptive::START`] and grows [`Adaptive::RAMP`]
///   times a second while nothing is refused (a quick start: 5/s to 45/s in
///   two seconds).
/// - At the first 429 it estimates the server's limit from what it accepted
///   since the start, quarter second by quarter second: the limit `L` of a
///   token bucket holding [`Adaptive::BURST_SECS`] × `L` that this would
///   have run dry just now (a server's burst hides its limit; assuming a
///   burst of a second's worth errs low when the real burst is smaller),
///   and rides at that.
/// - At a later 429 it estimates the limit from what the server accepted
///   over the last [`Adaptive::WINDOW`] seconds, and drops to
///   [`Adaptive::HOLD`] of that (multiplicative decrease).
/// - While no 429 comes, it probes upward (additive increase: after the
///   first 429 at [`Adaptive::PROBE_FIRST`] of the limit per second, then at
///   [`Adaptive::PROBE`], half as fast after each 429 that confirms the same
///   limit), divided by the Retry-After in seconds (a 429 that pauses
///   everybody for a minute is worth a much slower probe than one of a
///   second) and by the requests in flight over
///   [`Adaptive::PROBE_IN_FLIGHT`] (each one in flight when a 429 window
///   opens gets a 429 too). After a confirmed limit, probing speeds up the
///   longer no 429 comes ([`Adaptive::ACCELERATION`], cubic in time as in
///   TCP CUBIC: slow near the limit, doubled in seconds if it was raised),
///   in a time that runs Retry-After² × load times slower and counts in
///   requests at the limit: with Webex's 60 s it takes hours to matter.
/// - It never goes above the ceiling, nor far above what the server accepts
///   (so the number means something when concurrency, not rate, is the bound).
#[derive(Clone, Debug)]
pub struct Adaptive {
    /// Requests per second now.
    rate: f64,
    /// The user's maximum.
    ceiling: Option<f64>,
    /// The server's limit as last estimated (from a 429).
    limit: Option<f64>,
    /// How many 429s in a row found about the same limit.
    confirmations: u32,
    /// Accepted requests per quarter second: (quarter index, count), the last `WINDOW` seconds.
    accepted: VecDeque<(i64, u64)>,
    /// When the last pause ended: the window does not reach back before it.
    since: f64,
    /// The last 429's Retry-After (seconds, at least 1).
    retry_after: f64,
}

impl Adaptive {
    /// The rate it starts at.
    pub const START: f64 = 5.0;
    /// Growth per second until the first 429.
    pub const RAMP: f64 = 3.0;
    /// The burst a server is assumed to allow at most, in seconds of its limit
    /// (for the first estimate).
    pub const BURST_SECS: f64 = 1.0;
    /// Probing speed between the first and the second 429 (share of the limit per second).
    pub const PROBE_FIRST: f64 = 0.03;
    /// The lowest rate it goes to.
    pub const FLOOR: f64 = 0.2;
    /// Seconds of accepted requests a limit estimate looks at.
    pub const WINDOW: f64 = 10.0;
    /// Share of the estimated limit it rides at after a 429.
    pub const HOLD: f64 = 0.95;
    /// Probing speed: this share of the limit per second (halved per confirmation).
    pub const PROBE: f64 = 0.005;
    /// After a confirmed limit, probing speeds up with the time `t` without
    /// a 429 (seconds since the pause ended, with Retry-After 1, few in
    /// flight and a limit of [`Adaptive::ACCELERATION_RATE`]):
    /// `ACCELERATION` × t² more of the limit per second, so that the rate
    /// has risen by `ACCELERATION` × t³ / 3 (5% in 2 s, doubled in 5.5 s).
    pub const ACCELERATION: f64 = 0.018;
    /// The limit (requests per second) at which [`Adaptive::ACCELERATION`]
    /// counts in seconds; at half of it, time runs half as fast.
    pub const ACCELERATION_RATE: f64 = 20.0;
    /// Requests in flight up to which probing goes at full speed (above,
    /// it slows in proportion: a 429 window costs one 429 per request in flight).
    pub const PROBE_IN_FLIGHT: f64 = 2.0;

    /// A controller that never exceeds `ceiling`.
    pub fn new(ceiling: Option<f64>) -> Adaptive {
        let mut a = Adaptive {
            rate: Self::START,
            ceiling,
            limit: None,
            confirmations: 0,
            accepted: VecDeque::new(),
            since: 0.0,
            retry_after: 1.0,
        };
        a.rate = a.capped(a.rate);
        a
    }

    /// Requests per second now.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The server's limit as last estimated, if a 429 was seen.
    pub fn limit(&self) -> Option<f64> {
        self.limit
    }

    fn capped(&self, r: f64) -> f64 {
        let r = r.max(Self::FLOOR);
        self.ceiling.map_or(r, |c| r.min(c))
    }

    fn forget_before(&mut self, now: f64) {
        let oldest = ((now - Self::WINDOW) * 4.0).floor() as i64;
        while self.accepted.front().is_some_and(|(q, _)| *q < oldest) {
            self.accepted.pop_front();
        }
    }

    /// What the server accepted per second over the window (since the last pause).
    fn accepted_rate(&mut self, now: f64) -> f64 {
        self.forget_before(now);
        let from = (now - Self::WINDOW).max(self.since);
        let n: u64 = self
            .accepted
            .iter()
            .filter(|(q, _)| *q as f64 / 4.0 >= from - 0.25)
            .map(|(_, c)| c)
            .sum();
        n as f64 / (now - from).max(1.0)
    }

    /// A request was accepted at `now`.
    pub fn on_accepted(&mut self, now: f64) {
        let q = (now * 4.0).floor() as i64;
        match self.accepted.back_mut() {
            Some((last, count)) if *last == q => *count += 1,
            _ => self.accepted.push_back((q, 1)),
        }
        self.forget_before(now);
    }

    /// The first estimate: the limit `L` of a token bucket of `BURST_SECS` ×
    /// `L` that, full at some point, ran dry at `now` under what was
    /// accepted quarter second by quarter second: the largest drawdown
    /// (accepted minus `L` per second, over the quarters up to `now`, the
    /// last one counted for the part of it that passed) equals the burst.
    fn first_estimate(&mut self, now: f64) -> f64 {
        self.forget_before(now);
        let (Some(&(first, _)), Some(&(last, _))) = (self.accepted.front(), self.accepted.back())
        else {
            return 0.0;
        };
        let mut counts = vec![0u64; (last - first + 1) as usize];
        for (q, n) in &self.accepted {
            counts[(q - first) as usize] = *n;
        }
        let last_part = (now - last as f64 / 4.0).clamp(0.0, 0.25);
        let drawn = |l: f64| -> f64 {
            let (mut run, mut most) = (0.0f64, 0.0f64);
            for (i, n) in counts.iter().rev().enumerate() {
                let refill = if i == 0 { l * last_part } else { l / 4.0 };
                run += *n as f64 - refill;
                most = most.max(run);
            }
            most
        };
        let (mut low, mut high) = (
            0.0f64,
            4.0 * counts.iter().max().copied().unwrap_or(0) as f64,
        );
        for _ in 0..50 {
            let mid = (low + high) / 2.0;
            if drawn(mid) > Self::BURST_SECS * mid {
                low = mid;
            } else {
                high = mid;
            }
        }
        low
    }

    /// A 429 opened a new pause of `retry_after` seconds at `now`. Returns the new rate.
    pub fn on_throttled(&mut self, now: f64, retry_after: f64) -> f64 {
        self.retry_after = retry_after.max(1.0);
        if self.limit.is_none() {
            let estimate = self.first_estimate(now).max(Self::FLOOR);
            self.limit = Some(estimate);
            self.confirmations = 0;
            self.rate = self.capped((self.rate * 0.9).min(estimate));
        } else {
            let estimate = self.accepted_rate(now).max(Self::FLOOR);
            self.confirmations = match self.limit {
                Some(l) if (estimate - l).abs() <= l * 0.1 => self.confirmations + 1,
                _ => 1,
            };
            self.limit = Some(estimate);
            self.rate = self.capped((self.rate * 0.9).min(estimate * Self::HOLD));
        }
        self.since = now + retry_after;
        self.rate
    }

    /// How much a probe's overshoot costs, as a divisor of the probing
    /// speed: 1 up to [`Adaptive::PROBE_IN_FLIGHT`] requests in flight,
    /// then in proportion (each request in flight when a 429 window opens
    /// gets a 429 too).
    fn load(in_flight: usize) -> f64 {
        (in_flight as f64 / Self::PROBE_IN_FLIGHT).max(1.0)
    }

    /// Time passed (`dt` seconds, up to `now`) without a 429, with
    /// `in_flight` requests in flight. Returns the new rate.
    pub fn on_tick(&mut self, now: f64, dt: f64, in_flight: usize) -> f64 {
        let dt = dt.clamp(0.0, 5.0);
        let grown = match self.limit {
            None => self.rate * Self::RAMP.powf(dt),
            Some(l) => {
                let load = Self::load(in_flight);
                let base = if self.confirmations == 0 {
                    Self::PROBE_FIRST
                } else {
                    Self::PROBE / 2f64.powi(self.confirmations.saturating_sub(1).min(16) as i32)
                };
                let mut speed = base / (self.retry_after * load);
                if self.confirmations > 0 {
                    // Slow near the limit last found, then faster and
                    // faster: the limit may have been raised. Time runs
                    // Retry-After² × load times slower (a long Retry-After
                    // or many in flight make an overshoot dear), and counts
                    // in requests at the limit (a 429 per so many requests).
                    let scale =
                        self.retry_after * self.retry_after * load * Self::ACCELERATION_RATE
                            / l.max(Self::FLOOR);
                    let quiet = (now - self.since).max(0.0) / scale;
                    speed += Self::ACCELERATION * quiet * quiet / scale;
                }
                self.rate + l * speed * dt
            }
        };
        // Not far above what the server takes: when concurrency is the bound,
        // a nominal rate of thousands would mean nothing and overshoot later.
        let seen = self.accepted_rate(now);
        let bound = if now >= 2.0 {
            (2.0 * seen).max(Self::START)
        } else {
            f64::INFINITY
        };
        self.rate = self.capped(grown.min(bound.max(self.rate)));
        self.rate
    }
}

/// All the pacing a run shares: the limiter, the 429 pause, (with
/// `--rate auto`) the controller that sets the limiter's rate, and the
/// adaptive concurrency (how many requests may be in flight).
pub struct Pacing {
    /// The one rate limiter.
    pub limiter: Limiter,
    /// The one 429 pause.
    pub pause: Pause,
    /// The `--rate auto` controller, if the rate is adaptive.
    adaptive: Option<Mutex<Adaptive>>,
    /// How many requests may be in flight.
    concurrency: Mutex<Concurrency>,
    /// The cap last given out and logged.
    logged_cap: AtomicUsize,
    /// The adaptive rate last logged.
    logged_rate: Mutex<f64>,
    /// Requests in flight now.
    in_flight: AtomicUsize,
    /// Time zero of the controller's clock.
    started: std::time::Instant,
    /// When `tick` last ran (seconds on the controller's clock).
    last_tick: Mutex<f64>,
}

/// The task that moves the adaptive rate on with time; stops when dropped.
pub struct Ticker(tokio::task::JoinHandle<()>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Pacing {
    /// Calls [`Pacing::tick`] every 250 ms until the returned guard is
    /// dropped (the adaptive rate grows with time). One per run or verify.
    pub fn keep_ticking(self: &std::sync::Arc<Self>) -> Ticker {
        let pacing = self.clone();
        Ticker(tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_millis(250));
            loop {
                every.tick().await;
                pacing.tick();
            }
        }))
    }

    /// Pacing for `rate`, with at most `ceiling` requests in flight.
    pub fn new(rate: Rate, ceiling: usize) -> Pacing {
        let adaptive = match rate {
            Rate::Auto { ceiling } => Some(Mutex::new(Adaptive::new(ceiling))),
            _ => None,
        };
        let limiter = Limiter::new(rate);
        Pacing {
            logged_rate: Mutex::new(limiter.rate()),
            limiter,
            pause: Pause::default(),
            adaptive,
            concurrency: Mutex::new(Concurrency::new(ceiling)),
            logged_cap: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            started: std::time::Instant::now(),
            last_tick: Mutex::new(0.0),
        }
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// A request was accepted (any answer but a 429).
    pub fn accepted(&self) {
        if let Some(a) = &self.adaptive {
            a.lock().expect("adaptive").on_accepted(self.now());
        }
    }

    /// A 429 asked everybody to wait `wait`. Pauses every worker; the first
    /// 429 of an episode also lowers an adaptive rate. Returns whether it
    /// started a new pause.
    pub fn throttled(&self, wait: Duration) -> bool {
        let new_episode = self.pause.pause_for(wait);
        if let (true, Some(a)) = (new_episode, &self.adaptive) {
            let (rate, limit) = {
                let mut a = a.lock().expect("adaptive");
                let rate = a.on_throttled(self.now(), wait.as_secs_f64());
                (rate, a.limit().unwrap_or(rate))
            };
            self.limiter.set_rate(rate);
            *self.logged_rate.lock().expect("logged rate") = rate;
            tracing::info!(
                "adaptive rate lowered to {rate:.1}/s: a 429 (limit estimated at {limit:.1}/s; everybody pauses {:.0} s)",
                wait.as_secs_f64()
            );
        }
        new_episode
    }

    /// How many requests may be in flight now (logs each change with its reason).
    pub fn concurrency(&self) -> usize {
        let (cap, reason) = self
            .concurrency
            .lock()
            .expect("concurrency")
            .cap(self.rate());
        let before = self.logged_cap.swap(cap, Ordering::Relaxed);
        if before != cap && before != 0 {
            tracing::info!("requests in flight at most {before} -> {cap}: {reason}");
        }
        cap
    }

    /// The largest number of requests in flight allowed (`--concurrency`).
    pub fn ceiling(&self) -> usize {
        self.concurrency.lock().expect("concurrency").ceiling()
    }

    /// A request leaves; the guard counts it in flight until dropped.
    pub fn sending(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// An answer (not a 429, not a 5xx) came after `latency`.
    pub fn answered(&self, latency: Duration) {
        let cut = self
            .concurrency
            .lock()
            .expect("concurrency")
            .on_answer(latency.as_secs_f64());
        if let Some(reason) = cut {
            self.log_cut(reason);
        }
    }

    /// A 5xx, a timeout or a lost connection.
    pub fn failed(&self) {
        let cut = self.concurrency.lock().expect("concurrency").on_failure();
        if let Some(reason) = cut {
            self.log_cut(reason);
        }
    }

    fn log_cut(&self, reason: Reason) {
        let cap = self.concurrency();
        tracing::info!("requests in flight cut to {cap}: {reason}");
    }

    /// The server's limit as the adaptive rate last estimated it.
    pub fn limit(&self) -> Option<f64> {
        self.adaptive
            .as_ref()
            .and_then(|a| a.lock().expect("adaptive").limit())
    }

    /// Lets an adaptive rate grow with the time that passed; call it a few times a second.
    pub fn tick(&self) {
        if let Some(a) = &self.adaptive {
            let now = self.now();
            let dt = {
                let mut last = self.last_tick.lock().expect("tick");
                let dt = now - *last;
                *last = now;
                dt
            };
            if self.pause.remaining().is_none() {
                let (rate, probing) = {
                    let mut a = a.lock().expect("adaptive");
                    (a.on_tick(now, dt, self.in_flight()), a.limit().is_some())
                };
                self.limiter.set_rate(rate);
                let mut logged = self.logged_rate.lock().expect("logged rate");
                if (rate - *logged).abs() > *logged * 0.1 {
                    let why = if probing {
                        "probing for a higher limit, no 429 since the last"
                    } else {
                        "starting up, no 429 yet"
                    };
                    tracing::info!("adaptive rate {:.1}/s -> {rate:.1}/s: {why}", *logged);
                    *logged = rate;
                }
            }
        }
    }

    /// The rate requests are paced at now (0: unlimited).
    pub fn rate(&self) -> f64 {
        self.limiter.rate()
    }
}

/// A request in flight (see [`Pacing::sending`]).
pub struct InFlight<'a>(&'a Pacing);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The pause that a 429 puts on every worker.
#[derive(Default)]
pub struct Pause {
    until: Mutex<Option<Instant>>,
}

impl Pause {
    /// Nobody sends for `d` from now (an existing longer pause stands).
    /// Returns whether this starts a new pause (none was on): one 429
    /// episode, however many workers saw it.
    pub fn pause_for(&self, d: Duration) -> bool {
        let now = Instant::now();
        let end = now + d;
        let mut until = self.until.lock().expect("pause");
        let new_episode = until.is_none_or(|u| u <= now);
        if until.is_none_or(|u| u < end) {
            *until = Some(end);
        }
        new_episode
    }

    /// How long the pause still lasts, if one is on.
    pub fn remaining(&self) -> Option<Duration> {
        let until = *self.until.lock().expect("pause");
        until
            .and_then(|u| u.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    /// Waits until no pause is on (a pause set while waiting is waited for too).
    pub async fn wait(&self) {
        loop {
            let until = *self.until.lock().expect("pause");
            match until {
                Some(u) if u > Instant::now() => tokio::time::sleep_until(u).await,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10/s"), Ok(Rate::PerSecond(10.0)));
        assert_eq!(parse_rate("300/min"), Ok(Rate::PerSecond(5.0)));
        assert_eq!(parse_rate(" 7200 / h "), Ok(Rate::PerSecond(2.0)));
        assert_eq!(parse_rate("Unlimited"), Ok(Rate::Unlimited));
        assert_eq!(parse_rate("auto"), Ok(Rate::Auto { ceiling: None }));
        assert_eq!(
            parse_rate("auto:120/min"),
            Ok(Rate::Auto { ceiling: Some(2.0) })
        );
        assert!(parse_rate("auto:fast").is_err());
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("-1/s").is_err());
        assert!(parse_rate("ten/s").is_err());
        assert!(parse_rate("10/day").is_err());
    }

    /// Replays a server with a token bucket (rate `limit`, burst `limit`,
    /// a window of `retry` seconds after a 429) against the controller, one
    /// request at a time at the controller's rate, in steps of 1 ms.
    fn ride(limit: f64, retry: f64, rows: u64) -> (f64, f64) {
        let mut a = Adaptive::new(None);
        let (mut t, mut tokens, mut ok, mut sent, mut refused) = (0.0f64, limit, 0u64, 0u64, 0u64);
        let (mut next, mut paused_until, mut last_tick) = (0.0f64, 0.0f64, 0.0f64);
        while ok < rows {
            t += 0.001;
            tokens = (tokens + limit * 0.001).min(limit);
            if t - last_tick >= 0.2 {
                a.on_tick(t, t - last_tick, 0);
                last_tick = t;
            }
            if t < paused_until || t < next {
                continue;
            }
            sent += 1;
            next = t + 1.0 / a.rate();
            if tokens < 1.0 {
                refused += 1;
                paused_until = t + retry;
                a.on_throttled(t, retry);
            } else {
                tokens -= 1.0;
                ok += 1;
                a.on_accepted(t);
            }
        }
        (ok as f64 / t / limit, refused as f64 / sent as f64)
    }

    #[test]
    fn auto_rate_rides_the_limit_without_many_429s() {
        for (limit, retry) in [(20.0, 1.0), (20.0, 2.0), (5.0, 1.0)] {
            let rows = (limit * 50.0) as u64;
            let (share, refused) = ride(limit, retry, rows);
            assert!(
                share >= 0.9,
                "limit {limit}/s, retry {retry}s: rode at {share:.3} of the limit"
            );
            assert!(
                refused <= 0.02,
                "limit {limit}/s: {refused:.3} of requests refused"
            );
        }
    }

    #[test]
    fn auto_rate_starts_modestly_and_respects_the_ceiling() {
        let mut a = Adaptive::new(Some(8.0));
        assert_eq!(a.rate(), Adaptive::START);
        for i in 0..40 {
            a.on_accepted(i as f64 * 0.05);
        }
        assert_eq!(
            a.on_tick(1.0, 1.0, 0),
            8.0,
            "doubled, then capped at the ceiling"
        );
        let after = a.on_throttled(2.0, 1.0);
        assert!((Adaptive::FLOOR..8.0).contains(&after), "{after}");
        assert!(a.limit().is_some());
    }

    #[test]
    fn a_short_run_finds_the_limit_in_seconds() {
        // 300 rows at 20/s: 15 s at best, with one 1 s pause.
        let (share, refused) = ride(20.0, 1.0, 300);
        assert!(share >= 0.9, "rode at {share:.3} of the limit");
        assert!(refused <= 0.02, "{refused:.3} of requests refused");
    }

    #[test]
    fn the_first_estimate_finds_a_bucket_of_a_second_and_errs_low_under_a_smaller_one() {
        // Slow start against a 20/s server: 5, 15, then 45/s, all accepted
        // until the bucket runs dry in the third second.
        let estimate = |burst: f64| {
            // At 45/s it lasts until burst + 20 t = 45 t.
            let secs = burst / 25.0;
            let mut a = Adaptive::new(None);
            let mut t = 0.0;
            for (rate, n) in [(5.0, 5), (15.0, 15), (45.0, (45.0 * secs) as usize)] {
                for i in 0..n {
                    a.on_accepted(t + i as f64 / rate);
                }
                t += n as f64 / rate;
                a.on_tick(t, 1.0, 0);
            }
            let rate = a.on_throttled(t, 1.0);
            let limit = a.limit().unwrap();
            assert_eq!(rate, limit, "rides at the first estimate");
            limit
        };
        // A burst of a second (as assumed): the limit.
        let limit = estimate(20.0);
        assert!((19.0..=20.5).contains(&limit), "estimated {limit}");
        // A burst of half a second: lower (safe), not far.
        let limit = estimate(10.0);
        assert!((12.0..19.0).contains(&limit), "estimated {limit}");
    }

    #[test]
    fn a_429_at_the_first_probe_and_a_long_retry_after_make_it_careful() {
        let mut a = Adaptive::new(None);
        a.on_accepted(0.1);
        // Refused at once, with Retry-After: 60.
        let rate = a.on_throttled(0.3, 60.0);
        assert!((Adaptive::FLOOR..=1.0).contains(&rate), "{rate}");
        // After the pause, ten minutes without a 429 raise it by 30%: no
        // hurry for a second 429 that would pause everybody for a minute.
        let mut now = 60.3;
        for _ in 0..600 {
            now += 1.0;
            a.on_accepted(now);
            a.on_tick(now, 1.0, 0);
        }
        assert!(a.rate() <= rate * 1.31, "{} from {rate}", a.rate());
        assert!(a.rate() > rate * 1.2, "{} from {rate}", a.rate());
    }

    /// Replays a server that accepts everything sent: `secs` seconds from
    /// `now` at the controller's rate, ticking every quarter second with
    /// `in_flight` requests in flight. Returns the time reached.
    fn accept_all(a: &mut Adaptive, mut now: f64, secs: f64, in_flight: usize) -> f64 {
        let end = now + secs;
        let mut owed = 0.0;
        while now < end - 1e-9 {
            owed += a.rate() * 0.25;
            while owed >= 1.0 {
                a.on_accepted(now);
                owed -= 1.0;
            }
            now += 0.25;
            a.on_tick(now, 0.25, in_flight);
        }
        now
    }

    /// A controller that rode a server of 20/s (burst 20, Retry-After
    /// `retry`) one request at a time until a 429 confirmed the limit, and
    /// the time its pause ends.
    fn confirmed_at_20(retry: f64) -> (Adaptive, f64) {
        let mut a = Adaptive::new(None);
        let (mut t, mut tokens, mut next, mut last_tick) = (0.0f64, 20.0f64, 0.0f64, 0.0f64);
        loop {
            t += 0.001;
            tokens = (tokens + 0.02).min(20.0);
            if t - last_tick >= 0.25 {
                a.on_tick(t, t - last_tick, 1);
                last_tick = t;
            }
            if t < next {
                continue;
            }
            next = t + 1.0 / a.rate();
            if tokens < 1.0 {
                a.on_throttled(t, retry);
                if a.confirmations > 0 {
                    assert!(a.limit().is_some_and(|l| (18.0..=22.0).contains(&l)));
                    return (a, t + retry);
                }
                next = t + retry;
                last_tick = next;
            } else {
                tokens -= 1.0;
                a.on_accepted(t);
            }
        }
    }

    #[test]
    fn the_first_estimate_of_an_exact_bucket_is_its_rate() {
        // A server of 20/s with a burst of 20, sent 30/s from the start:
        // the bucket runs dry after 2 s (20 + 2 × 20 = 60 accepted).
        let mut a = Adaptive::new(None);
        for i in 0..60 {
            a.on_accepted(i as f64 / 30.0);
        }
        a.on_throttled(2.0, 1.0);
        let limit = a.limit().unwrap();
        assert!((19.0..=20.5).contains(&limit), "estimated {limit}");
    }

    #[test]
    fn many_requests_in_flight_slow_probing_down() {
        let probe = |in_flight: usize| {
            let mut a = Adaptive::new(None);
            for i in 0..60 {
                a.on_accepted(i as f64 / 30.0);
            }
            let start = a.on_throttled(2.0, 1.0);
            accept_all(&mut a, 3.0, 10.0, in_flight);
            a.rate() - start
        };
        let (few, many) = (probe(2), probe(20));
        assert!(few > 0.0 && many > 0.0, "{few} {many}");
        // A 429 window with 20 in flight costs 20 429s: probe ten times slower.
        assert!((many / few - 0.1).abs() < 0.01, "{few} {many}");
    }

    #[test]
    fn probing_speeds_up_the_longer_no_429_comes_after_a_confirmed_limit() {
        let (mut a, end) = confirmed_at_20(1.0);
        let held = a.rate();
        assert!((18.0..=22.0).contains(&held), "{held}");
        // Slow near the limit just confirmed...
        let now = accept_all(&mut a, end, 2.0, 1);
        assert!(a.rate() <= held * 1.1, "{} from {held}", a.rate());
        // ...then faster: no 429 means the limit was raised; doubled within 6 s.
        let now = accept_all(&mut a, now, 4.0, 1);
        assert!(a.rate() >= held * 2.0, "{} from {held}", a.rate());
        // With many in flight, it takes longer.
        let (mut b, end) = confirmed_at_20(1.0);
        accept_all(&mut b, end, now - end, 20);
        assert!(b.rate() <= held * 1.1, "{} from {held}", b.rate());
    }

    #[test]
    fn a_long_retry_after_keeps_probing_careful_after_a_confirmed_limit() {
        // Webex's Retry-After of 60 s: a 429 stops everybody for a minute.
        let (mut a, end) = confirmed_at_20(60.0);
        let held = a.rate();
        // Ten minutes without a 429: about 5% more (0.5% of the limit a minute).
        let now = accept_all(&mut a, end, 600.0, 1);
        assert!(a.rate() <= held * 1.06, "{} from {held}", a.rate());
        assert!(a.rate() > held * 1.03, "{} from {held}", a.rate());
        // An hour: still well under double (the speed-up counts in
        // Retry-After² units: with 60 s, hours).
        accept_all(&mut a, now, 3000.0, 1);
        assert!(a.rate() <= held * 1.4, "{} from {held}", a.rate());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_everybody_until_it_passes() {
        let p = Pause::default();
        assert!(p.remaining().is_none());
        p.pause_for(Duration::from_secs(5));
        p.pause_for(Duration::from_secs(2)); // a shorter one does not shorten it
        let t0 = Instant::now();
        p.wait().await;
        assert_eq!(Instant::now() - t0, Duration::from_secs(5));
        assert!(p.remaining().is_none());
    }
}

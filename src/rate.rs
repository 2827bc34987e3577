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
use crate::webex::ApiError;

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

/// Slots per second in which the controller counts accepted requests.
const SLOTS: f64 = 20.0;

/// Accepted requests counted per slot of time (by when they were answered,
/// or by when they were sent), the last [`Adaptive::HISTORY`] seconds.
#[derive(Clone, Debug, Default)]
struct Timeline(VecDeque<(i64, u64)>);

impl Timeline {
    fn add(&mut self, at: f64) {
        let q = (at * SLOTS).floor() as i64;
        // Answers come in any order of sending: from the back, the slot of
        // `q` or the place for it.
        match self.0.iter().rposition(|(s, _)| *s <= q) {
            Some(i) if self.0[i].0 == q => self.0[i].1 += 1,
            Some(i) => self.0.insert(i + 1, (q, 1)),
            None => self.0.push_front((q, 1)),
        }
    }

    fn forget_before(&mut self, now: f64) {
        let oldest = ((now - Adaptive::HISTORY) * SLOTS).floor() as i64;
        while self.0.front().is_some_and(|(q, _)| *q < oldest) {
            self.0.pop_front();
        }
    }

    /// Accepted per second up to `to`, over the last [`Adaptive::WINDOW`]
    /// seconds, from `since` (the end of the last pause) or rather from the
    /// first count after it (until then, the answers to what was sent after
    /// it were on their way).
    fn rate(&self, since: f64, to: f64) -> f64 {
        let first = (since * SLOTS).floor() as i64;
        let answered = self.0.iter().find(|(q, _)| *q >= first);
        self.rate_over(
            since.max(answered.map_or(0.0, |(q, _)| *q as f64 / SLOTS)),
            to,
        )
    }

    /// Accepted per second from `from` to `to` (over the last
    /// [`Adaptive::WINDOW`] seconds at most, and at least one second).
    fn rate_over(&self, from: f64, to: f64) -> f64 {
        let from = from.max(to - Adaptive::WINDOW);
        let n: u64 = self
            .0
            .iter()
            .filter(|(q, _)| *q as f64 / SLOTS >= from - 1.0 / SLOTS && *q as f64 / SLOTS <= to)
            .map(|(_, c)| c)
            .sum();
        n as f64 / (to - from).max(1.0)
    }

    /// The episode that a 429 at `to` ends: the slots from `since` (the end of the last pause).
    fn episode(&self, since: f64, to: f64) -> Episode {
        let last = (to * SLOTS).floor() as i64;
        let first = ((since * SLOTS).floor() as i64)
            .max(self.0.front().map_or(last, |f| f.0))
            .min(last);
        let mut counts = vec![0u64; (last - first + 1) as usize];
        for (q, n) in &self.0 {
            if (first..=last).contains(q) {
                counts[(q - first) as usize] = *n;
            }
        }
        Episode {
            counts,
            last_part: (to - last as f64 / SLOTS).clamp(0.0, 1.0 / SLOTS),
        }
    }
}

/// Which clock a server's rate limit runs on, as told by how fast its 429s come.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Gate {
    /// It decides after the work's latency (a 429 takes as long as an answer):
    /// count requests by when they were answered.
    Answered,
    /// It decides when a request arrives (a 429 comes back long before the
    /// answers): count requests by when they were sent.
    Sent,
}

/// A 429 from a server that decides on arrival, waiting for the answers to
/// what was sent before it (they passed its gate first).
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// When the refused request was sent.
    sent: f64,
    /// When the pause before it ended (where its episode starts).
    from: f64,
    /// The rate when it came.
    rate: f64,
}

/// One 429 episode as a token bucket saw it: what the server accepted, slot
/// by slot, from when it last had room (the start, or the end of a pause)
/// to the 429.
#[derive(Clone, Debug)]
struct Episode {
    /// Accepted requests per slot, oldest first.
    counts: Vec<u64>,
    /// How much of the last slot had passed at the 429 (seconds).
    last_part: f64,
}

impl Episode {
    /// The burst a server of limit `l` must have had to answer 429 now: the
    /// largest drawdown of its bucket (accepted minus `l` per second) over
    /// the slots up to the 429, and how long that drawdown took (seconds).
    fn burst_at(&self, l: f64) -> (f64, f64) {
        let (mut run, mut most, mut secs, mut elapsed) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for (i, n) in self.counts.iter().rev().enumerate() {
            let slot = if i == 0 { self.last_part } else { 1.0 / SLOTS };
            run += *n as f64 - l * slot;
            elapsed += slot;
            if run > most {
                (most, secs) = (run, elapsed);
            }
        }
        (most, secs)
    }

    /// The highest rate one slot shows.
    fn peak(&self) -> f64 {
        SLOTS * self.counts.iter().max().copied().unwrap_or(0) as f64
    }

    /// The limit `l` whose burst, `burst(l)` (not decreasing in `l`), is
    /// what `burst_at(l)` (decreasing) says it must have been.
    fn limit_where(&self, burst: impl Fn(f64) -> f64) -> f64 {
        let (mut low, mut high) = (0.0f64, self.peak().max(Adaptive::FLOOR));
        for _ in 0..50 {
            let mid = (low + high) / 2.0;
            if self.burst_at(mid).0 > burst(mid) {
                low = mid;
            } else {
                high = mid;
            }
        }
        low
    }

    /// The one bucket (limit, burst) that explains both this episode and
    /// `earlier`, if the two tell it apart: their drawdowns, as functions of
    /// the limit, cross where both are at least one request, and there the
    /// two drawdowns took clearly different times (otherwise the crossing
    /// is noise).
    fn fit(&self, earlier: &Episode) -> Option<(f64, f64)> {
        let top = self.peak().max(earlier.peak());
        let gap = |l: f64| self.burst_at(l).0 - earlier.burst_at(l).0;
        let steps = 400;
        let at = |i: usize| Adaptive::FLOOR * (top / Adaptive::FLOOR).powf(i as f64 / steps as f64);
        let mut best: Option<(f64, f64, f64)> = None;
        for i in 0..steps {
            let (mut low, mut high) = (at(i), at(i + 1));
            let (g_low, g_high) = (gap(low), gap(high));
            if g_low == 0.0 || g_low.signum() == g_high.signum() {
                continue;
            }
            for _ in 0..40 {
                let mid = (low + high) / 2.0;
                if gap(mid).signum() == g_low.signum() {
                    low = mid;
                } else {
                    high = mid;
                }
            }
            let l = (low + high) / 2.0;
            let ((b1, s1), (b2, s2)) = (self.burst_at(l), earlier.burst_at(l));
            let burst = (b1 + b2) / 2.0;
            let apart = (s1 - s2).abs() / s1.max(s2).max(1e-9);
            if burst >= 1.0 && apart >= Adaptive::FIT_APART && best.is_none_or(|b| apart > b.2) {
                best = Some((l, burst, apart));
            }
        }
        best.map(|(l, b, _)| (l, b))
    }
}

/// The `--rate auto` controller: pure, fed with what happened and when
/// (seconds since the run started).
///
/// - It starts at a modest [`Adaptive::START`] and grows [`Adaptive::RAMP`]
///   times a second while nothing is refused (a quick start: 5/s to 45/s in
///   two seconds).
/// - Each 429 ends an *episode*: what the server accepted, slot by slot,
///   since it last had room. A token bucket of limit `L` and burst `B` that
///   ran dry just now fits it when the largest drawdown (accepted minus `L`
///   per second) is `B`: one episode gives a curve of (`L`, `B`) pairs, not
///   the limit (a server's burst hides its limit).
/// - At the first 429 it assumes a burst and rides at the `L` that goes
///   with it. When a second 429 would be dear (a Retry-After over a second,
///   or a window that refuses every request in flight), a burst of
///   [`Adaptive::BURST_SECS`] × `L`: a smaller burst makes this low (a
///   burst of 5 at 20/s reads as about 11/s), never high. When it would be
///   cheap, [`Adaptive::BURST_SECS_CHEAP`] × `L`: a larger burst makes this
///   high (a second's burst at 20/s reads as about 29/s), and the next 429
///   comes soon and tells the bucket. At a later one, two episodes of
///   different shapes (the quick start, then a probe) cross at the server's
///   (`L`, `B`) when they tell it; otherwise the episode's `L` with the
///   burst a pause can have refilled (a second's worth at most, the
///   Retry-After's, the burst once known). It rides at [`Adaptive::HOLD`]
///   of it (multiplicative decrease).
/// - Once the burst is known, it spends what a pause refilled (the bucket
///   earned the limit's rate while everybody waited, up to the burst): most
///   of it over the [`Adaptive::SPEND_SECS`] after the pause.
/// - Servers decide on a request when it arrives (a gateway: the 429 comes
///   back at once) or after its latency (the 429 takes as long as an
///   answer). A 429 that comes back in less than [`Adaptive::ARRIVAL_SHARE`]
///   of the latency of the answers tells the first: requests are then counted by when they were
///   sent, and the estimate waits (at half the rate) until everything sent
///   before the 429 has been answered, since all of it passed the gate
///   first. Otherwise they are counted by when they were answered.
/// - While no 429 comes, it probes upward: [`Adaptive::PROBE_FIRST`] of
///   the limit per second until the second 429 (unless that would cost
///   every request in flight, or the first was read high), then [`Adaptive::PROBE`], half as fast after
///   each 429 that confirms the same limit, and faster the longer no 429 comes ([`Adaptive::ACCELERATION`],
///   cubic in time as in TCP CUBIC: slow near the limit, doubled in seconds
///   if it was raised). Its time runs slower the dearer a 429 is: by the
///   Retry-After (a pause for everybody), by that again over the burst in
///   seconds (a pause refills at most the burst: a small one pays back
///   little of it), by the requests in flight over
///   [`Adaptive::PROBE_IN_FLIGHT`] when the server decides after the
///   latency (each one in flight when a 429 window opens gets a 429 too;
///   then, before the second 429, it probes without speeding up), and it
///   counts in requests at the limit: with Webex's 60 s it takes hours to
///   matter.
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
    /// The server's burst (requests), once two episodes told it.
    burst: Option<f64>,
    /// The burst assumed at the first 429, in seconds of the limit.
    assumed_burst_secs: f64,
    /// The last episode, to tell the burst with the next one.
    previous: Option<Episode>,
    /// How many 429s in a row found about the same limit.
    confirmations: u32,
    /// Accepted requests by when they were answered.
    answered: Timeline,
    /// Accepted requests by when they were sent.
    sent: Timeline,
    /// A 429 whose estimate waits for the answers sent before it.
    pending: Option<Pending>,
    /// The clock the server's rate limit runs on, as the last 429 told.
    gate: Gate,
    /// The most requests in flight lately (decaying over [`Adaptive::FLIGHT_MEMORY`]
    /// seconds: a dip at the end of a run says nothing about the next window).
    flight: f64,
    /// Time without a 429 since the last pause, in the probe's slowed time.
    quiet: f64,
    /// When the last pause ended: windows and episodes do not reach back before it.
    since: f64,
    /// The last 429's Retry-After (seconds, at least 1).
    retry_after: f64,
}

impl Adaptive {
    /// The rate it starts at.
    pub const START: f64 = 5.0;
    /// Growth per second until the first 429.
    pub const RAMP: f64 = 3.0;
    /// The burst assumed at the first 429, in seconds of the limit (one
    /// episode cannot tell it).
    pub const BURST_SECS: f64 = 1.0;
    /// The burst assumed at the first 429 when a second one would cost
    /// little (a Retry-After of 1 s, and no window that refuses every request
    /// in flight): the reading errs high rather than low, and the next 429
    /// tells the bucket.
    pub const BURST_SECS_CHEAP: f64 = 0.25;
    /// Probing speed between the first and the second 429 when the first
    /// was read with a second's burst (low, never high; share of the limit
    /// per second). After a reading with a small burst, [`Adaptive::PROBE`].
    pub const PROBE_FIRST: f64 = 0.03;
    /// The lowest rate it goes to.
    pub const FLOOR: f64 = 0.2;
    /// Seconds of accepted requests the accepted rate looks at.
    pub const WINDOW: f64 = 10.0;
    /// Seconds of accepted requests an episode looks at.
    pub const HISTORY: f64 = 60.0;
    /// Two episodes tell the burst when their drawdowns took times this
    /// far apart (share of the longer).
    pub const FIT_APART: f64 = 0.3;
    /// A 429 that came back in under this share of the answers' latency
    /// (and 0.1 s sooner) was decided on arrival. Latencies vary (0.5 to
    /// 1.5 s is a factor of 3 around its mean of 1): a 429 decided after
    /// the latency comes back in half the mean at the soonest.
    pub const ARRIVAL_SHARE: f64 = 0.25;
    /// Seconds over which the most requests in flight are remembered.
    pub const FLIGHT_MEMORY: f64 = 5.0;
    /// Seconds a 429's estimate waits at most for the answers of what was
    /// sent before it.
    pub const WAIT_FOR_ANSWERS: f64 = 10.0;
    /// A fitted burst under this many seconds of the limit is noise.
    pub const FIT_MIN_BURST_SECS: f64 = 0.05;
    /// Share of the estimated limit it rides at after a 429.
    pub const HOLD: f64 = 0.95;
    /// Probing speed: this share of the limit per second (halved per confirmation).
    pub const PROBE: f64 = 0.005;
    /// Probing speeds up with the time `t` without a 429 (seconds since the
    /// pause ended, with Retry-After 1, a burst of a second or more, few in
    /// flight and a limit of [`Adaptive::ACCELERATION_RATE`]):
    /// `ACCELERATION` × t² more of the limit per second, so that the rate
    /// has risen by `ACCELERATION` × t³ / 3 (5% in 2 s, doubled in 5.5 s).
    pub const ACCELERATION: f64 = 0.018;
    /// The limit (requests per second) at which [`Adaptive::ACCELERATION`]
    /// counts in seconds; at half of it, time runs half as fast.
    pub const ACCELERATION_RATE: f64 = 20.0;
    /// Seconds after a pause over which what it refilled is spent.
    pub const SPEND_SECS: f64 = 2.0;
    /// Share of what a pause refilled that is spent.
    pub const SPEND_SHARE: f64 = 0.75;
    /// Requests in flight up to which probing goes at full speed (above,
    /// it slows in proportion: a 429 window costs one 429 per request in flight).
    pub const PROBE_IN_FLIGHT: f64 = 2.0;

    /// A controller that never exceeds `ceiling`.
    pub fn new(ceiling: Option<f64>) -> Adaptive {
        let mut a = Adaptive {
            rate: Self::START,
            ceiling,
            limit: None,
            burst: None,
            assumed_burst_secs: Self::BURST_SECS,
            previous: None,
            confirmations: 0,
            answered: Timeline::default(),
            sent: Timeline::default(),
            pending: None,
            gate: Gate::Answered,
            flight: 0.0,
            quiet: 0.0,
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

    /// The server's burst (requests), once two 429s told it.
    pub fn burst(&self) -> Option<f64> {
        self.burst
    }

    /// Whether a 429's estimate waits for answers (the server decides on arrival).
    pub fn waiting(&self) -> bool {
        self.pending.is_some()
    }

    fn capped(&self, r: f64) -> f64 {
        let r = r.max(Self::FLOOR);
        self.ceiling.map_or(r, |c| r.min(c))
    }

    /// A request sent at `sent` was accepted at `now` (both seconds).
    pub fn on_accepted(&mut self, sent: f64, now: f64) {
        let sent = sent.min(now);
        self.answered.add(now);
        self.sent.add(sent);
        self.answered.forget_before(now);
        self.sent.forget_before(now);
    }

    /// A 429 to a request sent at `sent` opened a new pause of
    /// `retry_after` seconds at `now`; the answers lately took `latency`
    /// seconds (the adaptive concurrency's recent latency). Returns the new rate.
    ///
    /// A 429 that came back much faster than the answers do was decided
    /// when the request arrived: the requests sent before it passed the
    /// gate first and are still being worked on, so the estimate waits for
    /// their answers (see [`Adaptive::on_tick`]); until then it rides at
    /// half the rate.
    pub fn on_throttled(
        &mut self,
        sent: f64,
        now: f64,
        retry_after: f64,
        latency: Option<f64>,
    ) -> f64 {
        self.retry_after = retry_after.max(1.0);
        let from = self.since;
        self.since = now + retry_after;
        self.quiet = 0.0;
        let round_trip = (now - sent).max(0.0);
        let on_arrival =
            latency.is_some_and(|l| round_trip < l * Self::ARRIVAL_SHARE && l - round_trip > 0.1);
        let rate = self.pending.map_or(self.rate, |p| p.rate);
        self.gate = if on_arrival {
            Gate::Sent
        } else {
            Gate::Answered
        };
        if on_arrival {
            self.pending = Some(Pending { sent, from, rate });
            self.rate = self.capped(rate * 0.5);
        } else {
            self.pending = None;
            self.settle(Gate::Answered, from, now, rate);
        }
        self.rate
    }

    /// Estimates the limit from the episode from `from` to `end` (on the
    /// gate's clock) and sets the rate; `rate` is the rate when the 429 came.
    fn settle(&mut self, gate: Gate, from: f64, end: f64, rate: f64) {
        let timeline = match gate {
            Gate::Answered => &self.answered,
            Gate::Sent => &self.sent,
        };
        let episode = timeline.episode(from, end);
        if episode.counts.iter().all(|n| *n == 0) {
            // Refused before anything was accepted (another client spends
            // the same limit, or a window longer than its Retry-After): no
            // estimate, only a multiplicative decrease.
            self.confirmations = 0;
            self.rate = self.capped(rate * 0.5);
            self.previous = None;
            return;
        }
        let estimate = match self.limit {
            // One episode: the pair with the assumed burst.
            None => {
                self.assumed_burst_secs = if self.second_429_is_cheap() {
                    Self::BURST_SECS_CHEAP
                } else {
                    Self::BURST_SECS
                };
                let secs = self.assumed_burst_secs;
                episode.limit_where(|l| secs * l)
            }
            // Two episodes of different shapes tell the bucket; otherwise
            // (or when what they tell is far from what was accepted) this
            // episode with the burst a pause can have refilled.
            Some(_) => {
                let accepted = timeline.rate(from, end);
                let fitted =
                    self.previous
                        .as_ref()
                        .and_then(|p| episode.fit(p))
                        .filter(|(l, b)| {
                            (accepted * 0.5..=accepted * 1.5).contains(l)
                                && *b >= (Self::FIT_MIN_BURST_SECS * l).max(2.0)
                        });
                match fitted {
                    Some((l, b)) => {
                        self.burst = Some(b);
                        l
                    }
                    None => {
                        // The bucket was empty at the last 429: the pause
                        // refilled at most the Retry-After's worth of the
                        // limit, a second's worth as first assumed, and no
                        // more than the burst once known. Never above the
                        // rate accepted since the pause.
                        let refill = Self::BURST_SECS.min(self.retry_after);
                        let known = self.burst.unwrap_or(f64::INFINITY);
                        episode
                            .limit_where(|l| (refill * l).min(known))
                            .min(accepted)
                    }
                }
            }
        }
        .max(Self::FLOOR);
        match self.limit {
            None => {
                self.confirmations = 0;
                self.rate = self.capped((rate * 0.9).min(estimate));
            }
            Some(l) => {
                self.confirmations = if (estimate - l).abs() <= l * 0.1 {
                    self.confirmations + 1
                } else {
                    1
                };
                self.rate = self.capped((rate * 0.9).min(estimate * Self::HOLD));
            }
        }
        self.limit = Some(estimate);
        self.previous = Some(episode);
    }

    /// Whether a 429 would cost little more than the burst a pause refills:
    /// a short Retry-After, and no window that refuses every request in flight.
    fn second_429_is_cheap(&self) -> bool {
        self.retry_after <= 1.0 && !self.windows_refuse_all_in_flight()
    }

    /// Whether a 429 window refuses every request in flight: the server
    /// decides after the latency, and more than a few are in flight.
    fn windows_refuse_all_in_flight(&self) -> bool {
        self.gate == Gate::Answered && Self::load(self.flight) > 1.0
    }

    /// How much a probe's overshoot costs, as a divisor of the probing
    /// speed: 1 up to [`Adaptive::PROBE_IN_FLIGHT`] requests in flight,
    /// then in proportion (each request in flight when a 429 window opens
    /// gets a 429 too).
    fn load(in_flight: f64) -> f64 {
        (in_flight / Self::PROBE_IN_FLIGHT).max(1.0)
    }

    /// Time passed (`dt` seconds, up to `now`) without a 429, with
    /// `in_flight` requests in flight, the oldest sent at `oldest` (none in
    /// flight: `None`). Returns the new rate.
    pub fn on_tick(&mut self, now: f64, dt: f64, in_flight: usize, oldest: Option<f64>) -> f64 {
        if let Some(p) = self.pending {
            // Once everything sent before the 429 has been answered (or,
            // if one of them hangs, after a while).
            if oldest.is_some_and(|o| o <= p.sent) && now - p.sent < Self::WAIT_FOR_ANSWERS {
                return self.rate;
            }
            self.pending = None;
            self.settle(Gate::Sent, p.from, p.sent, p.rate);
            return self.rate;
        }
        let dt = dt.clamp(0.0, 5.0);
        self.flight = (in_flight as f64).max(self.flight * (-dt / Self::FLIGHT_MEMORY).exp());
        let grown = match self.limit {
            None => self.rate * Self::RAMP.powf(dt),
            Some(l) => {
                // A server that decides on arrival refuses only what
                // arrives after its window opened, not what is in flight.
                let load = match self.gate {
                    Gate::Answered => Self::load(self.flight),
                    Gate::Sent => 1.0,
                };
                // A server that refuses every request in flight when its
                // window opens makes a second 429 dear: probe at the slow
                // speed from the first.
                let each_in_flight_refused = self.windows_refuse_all_in_flight();
                let base = if self.confirmations == 0
                    && !each_in_flight_refused
                    && self.assumed_burst_secs >= Self::BURST_SECS
                {
                    Self::PROBE_FIRST
                } else {
                    Self::PROBE / 2f64.powi(self.confirmations.saturating_sub(1).min(16) as i32)
                };
                // A pause refills at most the burst: with a burst of less
                // than the Retry-After, a 429 costs that much more.
                let burst_secs = self
                    .burst
                    .map_or(self.assumed_burst_secs, |b| b / l.max(Self::FLOOR));
                let dear = self.retry_after * (self.retry_after / burst_secs.max(0.05)).max(1.0);
                let mut speed = base / (self.retry_after * load);
                // Slow near the limit last found, then faster and faster:
                // the limit may have been raised (or, before a second 429
                // told the burst, estimated low: worth finding out unless
                // a 429 costs every request in flight). Time runs slower
                // the dearer a 429 is, and counts in requests at the limit.
                if self.confirmations > 0 || !each_in_flight_refused {
                    let scale = dear * load * Self::ACCELERATION_RATE / l.max(Self::FLOOR);
                    self.quiet += dt.min(now - self.since).max(0.0) / scale;
                    speed += Self::ACCELERATION * self.quiet * self.quiet / scale;
                }
                self.rate + l * speed * dt
            }
        };
        // Not far above what the server takes: when concurrency is the bound,
        // a nominal rate of thousands would mean nothing and overshoot later.
        let seen = self.answered.rate_over(self.since, now);
        let bound = if now >= 2.0 {
            (2.0 * seen).max(Self::START)
        } else {
            f64::INFINITY
        };
        self.rate = self.capped(grown.min(bound.max(self.rate)));
        self.capped(self.rate + self.refill_boost(now))
    }

    /// Requests per second added to the rate just after a pause, to spend
    /// what the pause refilled: the bucket was empty at the 429 and earned
    /// the limit's rate while everybody waited, up to the burst. Only once
    /// two episodes told the burst, and [`Adaptive::SPEND_SHARE`] of it over
    /// [`Adaptive::SPEND_SECS`] (what is left covers an estimate a little
    /// high). Not when a window refuses every request in flight: the
    /// requests still on their way at the 429 spend part of the refill.
    fn refill_boost(&self, now: f64) -> f64 {
        match (self.limit, self.burst, self.pending) {
            (Some(l), Some(b), None)
                if (self.since..self.since + Self::SPEND_SECS).contains(&now)
                    && !self.windows_refuse_all_in_flight() =>
            {
                let refilled = b.min(l * self.retry_after);
                Self::SPEND_SHARE * refilled / Self::SPEND_SECS
            }
            _ => 0.0,
        }
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
    /// The cap last logged (0: none yet), and why it was.
    logged_cap: Mutex<(usize, Reason)>,
    /// The adaptive rate last logged.
    logged_rate: Mutex<f64>,
    /// Requests in flight now.
    in_flight: AtomicUsize,
    /// When the requests in flight were sent (µs on the controller's clock: how
    /// many), with an adaptive rate.
    flying: Mutex<std::collections::BTreeMap<u64, usize>>,
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
            logged_cap: Mutex::new((0, Reason::Need)),
            in_flight: AtomicUsize::new(0),
            flying: Mutex::default(),
            started: std::time::Instant::now(),
            last_tick: Mutex::new(0.0),
        }
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// A request sent at `sent` (as [`Pacing::send`] returns it) was accepted (any answer but a 429).
    pub fn accepted(&self, sent: f64) {
        if let Some(a) = &self.adaptive {
            a.lock().expect("adaptive").on_accepted(sent, self.now());
        }
    }

    /// A 429 to a request sent at `sent` asked everybody to wait `wait`.
    /// Pauses every worker; the first 429 of an episode also lowers an
    /// adaptive rate. Returns whether it started a new pause.
    pub fn throttled(&self, wait: Duration, sent: f64) -> bool {
        let new_episode = self.pause.pause_for(wait);
        if let (true, Some(a)) = (new_episode, &self.adaptive) {
            let (rate, limit) = {
                let mut a = a.lock().expect("adaptive");
                let latency = self.concurrency.lock().expect("concurrency").latency();
                let rate = a.on_throttled(sent, self.now(), wait.as_secs_f64(), latency);
                (rate, a.limit().filter(|_| !a.waiting()))
            };
            self.limiter.set_rate(rate);
            *self.logged_rate.lock().expect("logged rate") = rate;
            let secs = wait.as_secs_f64();
            match limit {
                Some(limit) => tracing::info!(
                    "adaptive rate lowered to {rate:.1}/s: a 429 (limit estimated at {limit:.1}/s; everybody pauses {secs:.0} s)"
                ),
                None => tracing::info!(
                    "adaptive rate lowered to {rate:.1}/s: a 429 long before the answers (the limit is estimated once they are in; everybody pauses {secs:.0} s)"
                ),
            }
        }
        new_episode
    }

    /// How many requests may be in flight now (logs a change of a quarter, or for another reason).
    pub fn concurrency(&self) -> usize {
        let (cap, reason) = self
            .concurrency
            .lock()
            .expect("concurrency")
            .cap(self.rate());
        // Logged when it moved by a quarter (or 2) since last logged, or
        // for another reason: rate x latency wobbles with every answer.
        let mut logged = self.logged_cap.lock().expect("logged cap");
        let (before, why) = *logged;
        let moved = before.abs_diff(cap) >= (before / 4).max(2);
        if before == 0 || (before != cap && (moved || why != reason)) {
            if before != 0 {
                tracing::info!("requests in flight at most {before} -> {cap}: {reason}");
            }
            *logged = (cap, reason);
        }
        cap
    }

    /// The largest number of requests in flight allowed (`--concurrency`).
    pub fn ceiling(&self) -> usize {
        self.concurrency.lock().expect("concurrency").ceiling()
    }

    /// Sends one request: counted in flight until answered, what its answer
    /// says about the server's health observed. Returns the answer and when
    /// it was sent (for [`Pacing::accepted`] and [`Pacing::throttled`]).
    pub async fn send<T>(
        &self,
        request: impl std::future::Future<Output = Result<T, ApiError>>,
    ) -> (Result<T, ApiError>, f64) {
        let in_flight = self.sending();
        let clock = std::time::Instant::now();
        let answer = request.await;
        self.observed(clock.elapsed(), answer.as_ref().err());
        (answer, in_flight.sent())
    }

    /// A request leaves; the guard counts it in flight until dropped.
    fn sending(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let sent = self.now();
        // Only the adaptive rate asks when the oldest one left.
        if self.adaptive.is_some() {
            *self
                .flying
                .lock()
                .expect("flying")
                .entry(micros(sent))
                .or_default() += 1;
        }
        InFlight(self, sent)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// What a request's answer, after `latency`, says about the server's
    /// health (`error`: the request failed): a 5xx, a timeout or a lost
    /// connection counts against it, any other answer brings its latency;
    /// 429s are the rate's business.
    fn observed(&self, latency: Duration, error: Option<&ApiError>) {
        let cut = {
            let mut c = self.concurrency.lock().expect("concurrency");
            match error {
                Some(e) if e.is_rate_limited() => None,
                Some(e) if e.status().is_none_or(|st| st >= 500) => c.on_failure(),
                _ => c.on_answer(latency.as_secs_f64()),
            }
        };
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
                let (rate, probing, refilling, settled) = {
                    let mut a = a.lock().expect("adaptive");
                    let oldest = self.flying.lock().expect("flying").keys().next().copied();
                    let oldest = oldest.map(|us| us as f64 / 1e6);
                    let waited = a.waiting();
                    let rate = a.on_tick(now, dt, self.in_flight(), oldest);
                    let settled = (waited && !a.waiting()).then(|| a.limit()).flatten();
                    // Above the controller's own rate: a pause's refill.
                    let refilling = rate > a.rate();
                    (rate, a.limit().is_some(), refilling, settled)
                };
                self.limiter.set_rate(rate);
                let mut logged = self.logged_rate.lock().expect("logged rate");
                if let Some(limit) = settled {
                    tracing::info!(
                        "adaptive rate {rate:.1}/s: limit estimated at {limit:.1}/s once what was sent before the 429 was answered (the server decides on arrival: its 429 came back long before the answers)"
                    );
                    *logged = rate;
                } else if (rate - *logged).abs() > *logged * 0.1 {
                    let why = if refilling {
                        "spending the burst the pause refilled"
                    } else if rate < *logged && probing {
                        "back to the limit's rate once a pause's refill was spent"
                    } else if probing {
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

/// A request in flight (see [`Pacing::send`]), and when it was sent.
struct InFlight<'a>(&'a Pacing, f64);

impl InFlight<'_> {
    /// When it was sent (seconds on the pacing's clock).
    fn sent(&self) -> f64 {
        self.1
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.0.adaptive.is_none() {
            return;
        }
        let mut flying = self.0.flying.lock().expect("flying");
        if let std::collections::btree_map::Entry::Occupied(mut e) = flying.entry(micros(self.1)) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

fn micros(secs: f64) -> u64 {
    (secs * 1e6) as u64
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
        // The limiter's rate: what the controller returns.
        let mut sending = a.rate();
        while ok < rows {
            t += 0.001;
            tokens = (tokens + limit * 0.001).min(limit);
            if t - last_tick >= 0.2 {
                sending = a.on_tick(t, t - last_tick, 0, None);
                last_tick = t;
            }
            if t < paused_until || t < next {
                continue;
            }
            sent += 1;
            next = t + 1.0 / sending;
            if tokens < 1.0 {
                refused += 1;
                paused_until = t + retry;
                sending = a.on_throttled(t, t, retry, None);
            } else {
                tokens -= 1.0;
                ok += 1;
                a.on_accepted(t, t);
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
            a.on_accepted(i as f64 * 0.05, i as f64 * 0.05);
        }
        assert_eq!(
            a.on_tick(1.0, 1.0, 0, None),
            8.0,
            "doubled, then capped at the ceiling"
        );
        let after = a.on_throttled(2.0, 2.0, 1.0, None);
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
    fn the_first_estimate_errs_low_when_a_second_429_is_dear_and_high_when_it_is_cheap() {
        // Slow start against a 20/s server: 5, 15, then 45/s, all accepted
        // until the bucket runs dry in the third second. One episode cannot
        // tell the bucket's burst from its limit.
        let estimate = |burst: f64, retry: f64| {
            // At 45/s it lasts until burst + 20 t = 45 t.
            let secs = burst / 25.0;
            let mut a = Adaptive::new(None);
            let mut t = 0.0;
            for (rate, n) in [(5.0, 5), (15.0, 15), (45.0, (45.0 * secs) as usize)] {
                for i in 0..n {
                    a.on_accepted(t + i as f64 / rate, t + i as f64 / rate);
                }
                t += n as f64 / rate;
                a.on_tick(t, 1.0, 0, None);
            }
            let rate = a.on_throttled(t, t, retry, None);
            let limit = a.limit().unwrap();
            assert_eq!(rate, limit, "rides at the first estimate");
            limit
        };
        // Retry-After 2 s: a pause that refills a second's worth costs a
        // second, so it assumes a burst of a second and errs low.
        let limit = estimate(20.0, 2.0);
        assert!((19.0..=20.5).contains(&limit), "estimated {limit}");
        let limit = estimate(10.0, 2.0);
        assert!((12.0..19.0).contains(&limit), "estimated {limit}");
        // Retry-After 1 s: a second 429 costs little and tells the bucket,
        // so it assumes a small burst and errs high.
        let limit = estimate(5.0, 1.0);
        assert!((19.0..=22.0).contains(&limit), "estimated {limit}");
        let limit = estimate(20.0, 1.0);
        assert!((24.0..=36.0).contains(&limit), "estimated {limit}");
    }

    #[test]
    fn a_429_at_the_first_probe_and_a_long_retry_after_make_it_careful() {
        let mut a = Adaptive::new(None);
        a.on_accepted(0.1, 0.1);
        // Refused at once, with Retry-After: 60.
        let rate = a.on_throttled(0.3, 0.3, 60.0, None);
        assert!((Adaptive::FLOOR..=1.0).contains(&rate), "{rate}");
        // After the pause, ten minutes without a 429 raise it by 30%: no
        // hurry for a second 429 that would pause everybody for a minute.
        let mut now = 60.3;
        for _ in 0..600 {
            now += 1.0;
            a.on_accepted(now, now);
            a.on_tick(now, 1.0, 0, None);
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
                a.on_accepted(now, now);
                owed -= 1.0;
            }
            now += 0.25;
            a.on_tick(now, 0.25, in_flight, None);
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
                a.on_tick(t, t - last_tick, 1, None);
                last_tick = t;
            }
            if t < next {
                continue;
            }
            next = t + 1.0 / a.rate();
            if tokens < 1.0 {
                a.on_throttled(t, t, retry, None);
                if a.confirmations > 0 {
                    assert!(a.limit().is_some_and(|l| (18.0..=22.0).contains(&l)));
                    return (a, t + retry);
                }
                next = t + retry;
                last_tick = next;
            } else {
                tokens -= 1.0;
                a.on_accepted(t, t);
            }
        }
    }

    #[test]
    fn a_dip_in_flight_at_the_end_of_a_run_does_not_make_probing_jump() {
        // 20 in flight for half a minute after the first 429 (a server that
        // decides after the latency), then the last few rows: 1 in flight.
        let mut a = Adaptive::new(None);
        a.on_tick(1.0, 1.0, 20, None);
        a.on_tick(1.0, 1.0, 20, None);
        for i in 0..60 {
            a.on_accepted(i as f64 / 30.0, i as f64 / 30.0);
        }
        let held = a.on_throttled(2.0, 2.0, 1.0, None);
        assert!((19.0..=20.5).contains(&held), "{held}");
        let now = accept_all(&mut a, 3.0, 28.0, 20);
        let before = a.rate();
        assert!(before <= held * 1.1, "{before} from {held}");
        accept_all(&mut a, now, 2.0, 1);
        assert!(a.rate() <= before * 1.03, "{} from {before}", a.rate());
    }

    #[test]
    fn a_fast_429_waits_for_the_answers_sent_before_it_but_not_for_ever() {
        // Answers take 0.8 s; a 429 comes back in 10 ms: decided on arrival.
        let mut a = Adaptive::new(None);
        for i in 0..100 {
            let sent = i as f64 * 0.1;
            a.on_accepted(sent, sent + 0.8);
        }
        let half = a.on_throttled(10.0, 10.01, 1.0, Some(0.8));
        assert!(a.waiting());
        assert_eq!(half, Adaptive::START / 2.0);
        // A request sent before the 429 is still in flight: no estimate yet.
        assert_eq!(a.on_tick(11.5, 0.25, 3, Some(9.9)), half);
        assert!(a.waiting() && a.limit().is_none());
        // It hangs: after a while the estimate is made without it.
        a.on_tick(10.0 + Adaptive::WAIT_FOR_ANSWERS + 0.1, 0.25, 1, Some(9.9));
        assert!(!a.waiting());
        assert!(a.limit().is_some());
        // A slow 429 (as slow as the answers) is settled at once.
        let mut b = Adaptive::new(None);
        b.on_accepted(0.0, 0.8);
        b.on_throttled(0.5, 1.3, 1.0, Some(0.8));
        assert!(!b.waiting() && b.limit().is_some());
    }

    #[test]
    fn a_429_before_anything_was_accepted_halves_the_rate() {
        // Another client spends the limit: the very first request is refused.
        let mut a = Adaptive::new(None);
        assert_eq!(a.on_throttled(0.0, 0.01, 1.0, None), Adaptive::START / 2.0);
        assert_eq!(a.limit(), None, "nothing to estimate from");
        // Still starting up: the ramp goes on once the pause is over.
        assert!(a.on_tick(1.5, 0.5, 0, None) > Adaptive::START / 2.0);
    }

    #[test]
    fn the_first_estimate_of_an_exact_bucket_is_its_rate() {
        // A server of 20/s with a burst of 20, sent 30/s from the start:
        // the bucket runs dry after 2 s (20 + 2 × 20 = 60 accepted).
        let mut a = Adaptive::new(None);
        for i in 0..60 {
            a.on_accepted(i as f64 / 30.0, i as f64 / 30.0);
        }
        a.on_throttled(2.0, 2.0, 2.0, None);
        let limit = a.limit().unwrap();
        assert!((19.0..=20.5).contains(&limit), "estimated {limit}");
    }

    #[test]
    fn what_a_pause_refilled_is_spent_once_the_burst_is_known() {
        let (mut a, end) = confirmed_at_20(1.0);
        let burst = a.burst().expect("two episodes told the burst");
        let base = a.rate();
        // With many in flight at a server that decides after the latency,
        // the stragglers spend the refill: nothing added.
        let mut busy = a.clone();
        assert_eq!(busy.on_tick(end + 0.1, 0.1, 20, None), busy.rate());
        // Just after the pause: the base rate plus most of the refill over
        // a couple of seconds (the bucket had a second of the limit to refill).
        let boosted = a.on_tick(end + 0.1, 0.1, 1, None);
        let refill = burst.min(a.limit().unwrap() * 1.0);
        let expected = a.rate() + Adaptive::SPEND_SHARE * refill / Adaptive::SPEND_SECS;
        assert!(
            (boosted - expected).abs() < 1e-9,
            "{boosted} against {expected}"
        );
        assert!(boosted > base + 2.0, "{boosted} from {base}");
        // Then the rate alone.
        let later = a.on_tick(end + Adaptive::SPEND_SECS + 0.1, 0.25, 1, None);
        assert_eq!(later, a.rate());
        // Not before the burst is known (the first 429).
        let mut b = Adaptive::new(None);
        for i in 0..60 {
            b.on_accepted(i as f64 / 30.0, i as f64 / 30.0);
        }
        b.on_throttled(2.0, 2.0, 2.0, None);
        assert_eq!(b.on_tick(4.1, 0.1, 1, None), b.rate());
    }

    #[test]
    fn many_requests_in_flight_slow_probing_down() {
        let probe = |in_flight: usize| {
            let mut a = Adaptive::new(None);
            for i in 0..60 {
                a.on_accepted(i as f64 / 30.0, i as f64 / 30.0);
            }
            let start = a.on_throttled(2.0, 2.0, 1.0, None);
            accept_all(&mut a, 3.0, 10.0, in_flight);
            a.rate() - start
        };
        let (few, many) = (probe(2), probe(20));
        assert!(few > 0.0 && many > 0.0, "{few} {many}");
        // A 429 window with 20 in flight costs 20 429s: probe at least ten
        // times slower (with few in flight, the probe also speeds up).
        assert!(many <= few * 0.1 * 1.01, "{few} {many}");
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

/// The controller against a replayed server (a token bucket with a
/// Retry-After window, deciding on arrival or after each request's latency),
/// with the adaptive concurrency, in steps of 1 ms: the decisions on whole
/// runs, with plain numbers and no clock.
#[cfg(test)]
mod replay {
    use super::*;
    use crate::concurrency::Concurrency;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    struct Server {
        /// Requests per second.
        limit: f64,
        /// The bucket; `None`: a second's worth of the limit (also after a change).
        burst: Option<f64>,
        /// Retry-After, and the window a 429 opens (seconds).
        retry: f64,
        /// Each request's latency, uniform between these (seconds; seeded).
        lat: (f64, f64),
        /// The limit from each of these times on: (seconds, requests per second).
        changes: Vec<(f64, f64)>,
        /// The rate limit decides on arrival (a 429 at once), not after the latency.
        on_arrival: bool,
    }

    impl Server {
        fn new(burst: Option<f64>, lat: (f64, f64), on_arrival: bool) -> Server {
            Server {
                limit: 20.0,
                burst,
                retry: 1.0,
                lat,
                changes: vec![],
                on_arrival,
            }
        }
    }

    struct Ride {
        /// Seconds the rows took.
        secs: f64,
        /// Rows done by each time in `Server::changes`.
        done_at: Vec<u64>,
        /// Share of the limit the rows were carried out at.
        share: f64,
        /// Share of requests answered 429.
        refused: f64,
        /// 429 episodes (pauses).
        episodes: u32,
        /// The controller at the end.
        adaptive: Adaptive,
    }

    fn ride(server: &Server, rows: u64, seed: u64) -> Ride {
        let mut a = Adaptive::new(None);
        let mut c = Concurrency::new(64);
        let mut rng = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut uniform = move || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 11) as f64 / (1u64 << 53) as f64
        };
        let ms = |t: f64| (t * 1000.0).round() as i64;
        let limit_at = |t: f64| {
            server
                .changes
                .iter()
                .rev()
                .find(|(from, _)| t >= *from)
                .map_or(server.limit, |c| c.1)
        };
        let burst_at = |t: f64| server.burst.unwrap_or(limit_at(t).max(1.0));
        let (mut t, mut tokens) = (0.0f64, burst_at(0.0));
        let (mut ok, mut sent, mut refused, mut episodes) = (0u64, 0u64, 0u64, 0u32);
        let (mut next, mut paused_until, mut last_tick) = (0.0f64, 0.0f64, 0.0f64);
        let mut window_until = f64::NEG_INFINITY;
        let mut flying: BinaryHeap<Reverse<(i64, i64, bool)>> = BinaryHeap::new();
        let mut max_flying = 0;
        // The limiter's rate (the controller's, and what a pause refilled).
        let mut sending = a.rate();
        let mut ok_at = vec![];
        let marks: Vec<f64> = server.changes.iter().map(|c| c.0).collect();
        // Answers due: (at ms, sent ms, refused on arrival).
        while ok < rows {
            t += 0.001;
            if ok_at.len() < marks.len() && t >= marks[ok_at.len()] {
                ok_at.push(ok);
            }
            tokens = (tokens + limit_at(t) * 0.001).min(burst_at(t));
            // The gate: on arrival (send time) or after the latency (answer time).
            let gate = |t: f64, tokens: &mut f64, window_until: &mut f64| -> bool {
                if t < *window_until {
                    false
                } else if *tokens >= 1.0 {
                    *tokens -= 1.0;
                    true
                } else {
                    *window_until = t + server.retry;
                    false
                }
            };
            while flying
                .peek()
                .is_some_and(|Reverse((at, _, _))| *at <= ms(t))
            {
                let Reverse((_, sent_ms, refused_early)) = flying.pop().unwrap();
                let sent_at = sent_ms as f64 / 1000.0;
                let passed = if server.on_arrival {
                    !refused_early
                } else {
                    gate(t, &mut tokens, &mut window_until)
                };
                if passed {
                    ok += 1;
                    a.on_accepted(sent_at, t);
                    c.on_answer(t - sent_at);
                    continue;
                }
                refused += 1;
                if t >= paused_until {
                    episodes += 1;
                    sending = a.on_throttled(sent_at, t, server.retry, c.latency());
                }
                paused_until = paused_until.max(t + server.retry);
            }
            if t - last_tick >= 0.25 {
                if t >= paused_until {
                    let oldest = flying.iter().map(|Reverse((_, s, _))| *s).min();
                    sending = a.on_tick(
                        t,
                        t - last_tick,
                        flying.len(),
                        oldest.map(|s| s as f64 / 1000.0),
                    );
                }
                last_tick = t;
            }
            if t < paused_until || t < next || flying.len() >= c.cap(sending).0 {
                continue;
            }
            sent += 1;
            next = t + 1.0 / sending;
            let latency = server.lat.0 + (server.lat.1 - server.lat.0) * uniform();
            if server.on_arrival && !gate(t, &mut tokens, &mut window_until) {
                flying.push(Reverse((ms(t) + 1, ms(t), true)));
            } else {
                flying.push(Reverse((ms(t + latency), ms(t), false)));
            }
            max_flying = max_flying.max(flying.len());
        }
        assert!(max_flying <= 64);
        Ride {
            secs: t,
            done_at: ok_at,
            share: ok as f64 / t / server.limit,
            refused: refused as f64 / sent as f64,
            episodes,
            adaptive: a,
        }
    }

    const NO_LATENCY: (f64, f64) = (0.0, 0.0);
    const SLOW: (f64, f64) = (0.5, 1.5);

    #[test]
    fn a_server_that_decides_on_arrival_is_told_by_its_fast_429s() {
        // Requests take 0.5 to 1.5 s; the 429s come at once. The estimate
        // waits for the answers of what passed the gate before the 429, and
        // in-flight requests do not slow probing (none of them is refused).
        for seed in 1..4 {
            let r = ride(&Server::new(None, SLOW, true), 600, seed);
            assert_eq!(r.adaptive.gate, Gate::Sent);
            assert!(r.share >= 0.9, "seed {seed}: {:.3} of the limit", r.share);
            assert!(r.refused <= 0.02, "seed {seed}: {:.3} refused", r.refused);
        }
    }

    #[test]
    fn a_server_that_decides_after_the_latency_costs_one_episode() {
        // Every request on its way when the window opens is refused: one
        // episode, and no probing that would cost another.
        for seed in 1..4 {
            let r = ride(&Server::new(None, SLOW, false), 600, seed);
            assert_eq!(r.adaptive.gate, Gate::Answered);
            assert_eq!(r.episodes, 1, "seed {seed}");
            assert!(r.share >= 0.85, "seed {seed}: {:.3} of the limit", r.share);
        }
    }

    #[test]
    fn two_episodes_tell_a_small_burst_and_the_limit_behind_it() {
        // A burst of 5 at 20/s, Retry-After 1 s: the first 429 reads a
        // small burst (a second 429 is cheap), and the second tells the
        // bucket. Assuming a second's burst read about 11/s, and the old
        // controller stayed near it for half a minute (0.67 of the limit
        // over 300 rows, 0.79 over 1,000).
        let server = Server::new(Some(5.0), NO_LATENCY, false);
        let r = ride(&server, 1000, 1);
        // Small (a few requests), not a second's worth of 20.
        let burst = r.adaptive.burst().expect("the burst told");
        assert!((2.0..=7.0).contains(&burst), "burst {burst}");
        let limit = r.adaptive.limit().unwrap();
        assert!((18.0..=21.0).contains(&limit), "limit {limit}");
        assert!(r.share >= 0.9, "{:.3} of the limit", r.share);
        assert!(r.refused <= 0.02, "{:.3} refused", r.refused);
        let short = ride(&server, 300, 1);
        assert!(short.share >= 0.8, "{:.3} of the limit", short.share);
    }

    #[test]
    fn a_burst_of_a_second_is_found_at_the_first_429_and_kept() {
        for on_arrival in [false, true] {
            let r = ride(&Server::new(None, NO_LATENCY, on_arrival), 300, 1);
            assert!(r.share >= 0.95, "{:.3} of the limit", r.share);
            assert!(r.refused <= 0.01, "{:.3} refused", r.refused);
        }
    }

    #[test]
    fn a_limit_that_drops_and_returns_is_followed() {
        // 20/s, 10/s from 20 s, 20/s again from 40 s (the burst a second's worth).
        let server = Server {
            changes: vec![(20.0, 10.0), (40.0, 20.0)],
            ..Server::new(None, NO_LATENCY, false)
        };
        let r = ride(&server, 1000, 1);
        let (at_drop, at_return) = (r.done_at[0] as f64, r.done_at[1] as f64);
        let shares = [
            at_drop / 20.0 / 20.0,
            (at_return - at_drop) / 20.0 / 10.0,
            (1000.0 - at_return) / (r.secs - 40.0) / 20.0,
        ];
        assert!(shares.iter().all(|s| *s >= 0.85), "{shares:?}");
        assert!(r.refused <= 0.02, "{:.3} refused", r.refused);
    }

    #[test]
    fn the_fit_finds_the_bucket_from_two_episodes_of_different_shapes() {
        // A bucket of 20/s and 5, full, drained once at 40/s (in 0.25 s)
        // and once at 25/s (in 1 s).
        let episode = |rate: f64| {
            let mut t = Timeline::default();
            let n = (5.0 / (rate - 20.0) * rate).round() as usize;
            for i in 0..n {
                t.add(100.0 + i as f64 / rate);
            }
            t.episode(100.0, 100.0 + n as f64 / rate)
        };
        let (l, b) = episode(25.0).fit(&episode(40.0)).expect("a fit");
        assert!((19.0..=21.0).contains(&l), "limit {l}");
        assert!((4.0..=6.0).contains(&b), "burst {b}");
        // Two episodes of the same shape tell nothing.
        assert_eq!(episode(25.0).fit(&episode(25.0)), None);
    }
}

//! The shared rate limit: a token bucket for all API requests together, plus the
//! Retry-After window that a 429 opens.

use std::time::{Duration, Instant};

/// What the limiter decided for one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Go on to the next check.
    Allowed,
    /// The bucket was empty: answer 429; this request opened a new window.
    Opened,
    /// A window was open: answer 429. `early` when the request arrived more than the
    /// grace period after the window opened (the client ignored Retry-After).
    InWindow { early: bool },
}

/// A Retry-After window: every API request inside it is refused.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// When the 429 that opened it was decided.
    opened: Instant,
    /// First instant after the window.
    closes: Instant,
}

/// Token bucket with a Retry-After window.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Tokens added per second; `None` means unlimited (no bucket, no windows).
    rate: Option<f64>,
    /// Bucket capacity: `SimConfig::rate_burst`, or `max(1, rate)`.
    burst: f64,
    /// `SimConfig::rate_burst`: the capacity whatever the rate.
    fixed_burst: Option<f64>,
    /// Tokens available now (as of `refilled_at`).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    refilled_at: Instant,
    /// The window opened by the last 429, while it may still be open.
    window: Option<Window>,
    /// How long a window lasts (`retry_after_secs`).
    window_len: Duration,
    /// Requests arriving within this time after a window opened are not `early`.
    early_grace: Duration,
    /// Later rates (`SimConfig::rate_limit_changes`), soonest first.
    changes: Vec<(Instant, f64)>,
}

impl RateLimiter {
    /// A limiter with a full bucket.
    pub(crate) fn new(
        rate: Option<f64>,
        window_len: Duration,
        early_grace: Duration,
        now: Instant,
    ) -> Self {
        let burst = rate.map_or(1.0, |rate| rate.max(1.0));
        Self {
            rate,
            burst,
            fixed_burst: None,
            tokens: burst,
            refilled_at: now,
            window: None,
            window_len,
            early_grace,
            changes: Vec::new(),
        }
    }

    /// The same limiter, with a bucket of `burst` requests (at least 1) whatever its rate.
    pub(crate) fn with_burst(mut self, burst: Option<f64>) -> Self {
        if let Some(burst) = burst {
            let burst = burst.max(1.0);
            self.fixed_burst = Some(burst);
            self.burst = burst;
            self.tokens = burst;
        }
        self
    }

    /// The same limiter, whose rate changes at `start` + each delay.
    pub(crate) fn with_changes(mut self, changes: &[(Duration, f64)], start: Instant) -> Self {
        self.changes = changes.iter().map(|(d, r)| (start + *d, *r)).collect();
        self.changes.sort_by_key(|c| c.0);
        self
    }

    /// Decides on one API request arriving at `now`.
    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        while self.changes.first().is_some_and(|c| c.0 <= now) {
            let (at, rate) = self.changes.remove(0);
            if let Some(old) = self.rate {
                self.refill(old, at);
            }
            self.rate = Some(rate);
            self.burst = self.fixed_burst.unwrap_or(rate.max(1.0));
            self.tokens = self.tokens.min(self.burst);
        }
        if let Some(window) = self.window {
            if now < window.closes {
                let early = now.saturating_duration_since(window.opened) > self.early_grace;
                return Verdict::InWindow { early };
            }
            self.window = None;
        }
        let Some(rate) = self.rate else {
            return Verdict::Allowed;
        };
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allowed;
        }
        self.window = Some(Window {
            opened: now,
            closes: now + self.window_len,
        });
        Verdict::Opened
    }

    /// Adds the tokens earned since the last refill, up to the burst.
    fn refill(&mut self, rate: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * rate.max(0.0)).min(self.burst);
        self.refilled_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn unlimited_always_allows() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(None, SEC, SEC, t0);
        for _ in 0..1000 {
            assert_eq!(limiter.check(t0), Verdict::Allowed);
        }
    }

    #[test]
    fn burst_then_window_then_refill() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(Some(2.0), 2 * SEC, SEC, t0);
        assert_eq!(limiter.check(t0), Verdict::Allowed);
        assert_eq!(limiter.check(t0), Verdict::Allowed);
        assert_eq!(limiter.check(t0), Verdict::Opened);
        // Within the grace: forgiven; after it: early. Neither extends the window.
        assert_eq!(
            limiter.check(t0 + SEC / 2),
            Verdict::InWindow { early: false }
        );
        assert_eq!(
            limiter.check(t0 + SEC * 3 / 2),
            Verdict::InWindow { early: true }
        );
        // Window closed at t0 + 2 s; the bucket refilled meanwhile (capped at burst 2).
        assert_eq!(limiter.check(t0 + 2 * SEC), Verdict::Allowed);
        assert_eq!(limiter.check(t0 + 2 * SEC), Verdict::Allowed);
        assert_eq!(limiter.check(t0 + 2 * SEC), Verdict::Opened);
    }

    #[test]
    fn a_fixed_burst_stays_when_the_rate_changes() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(Some(20.0), SEC, SEC, t0)
            .with_burst(Some(5.0))
            .with_changes(&[(10 * SEC, 10.0)], t0);
        let allowed = |l: &mut RateLimiter, at: Instant| {
            (0..30)
                .take_while(|_| l.check(at) == Verdict::Allowed)
                .count()
        };
        // Five at once, not twenty.
        assert_eq!(allowed(&mut limiter, t0), 5);
        // After the change to 10/s (and the window): five again, not ten.
        assert_eq!(allowed(&mut limiter, t0 + 20 * SEC), 5);
    }

    #[test]
    fn slow_rate_has_burst_of_one() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(Some(0.5), SEC, SEC, t0);
        assert_eq!(limiter.check(t0), Verdict::Allowed);
        assert_eq!(limiter.check(t0), Verdict::Opened);
        // After the window, half a token has accrued: still empty, a new window opens.
        assert_eq!(limiter.check(t0 + SEC), Verdict::Opened);
        assert_eq!(limiter.check(t0 + 4 * SEC), Verdict::Allowed);
    }
}

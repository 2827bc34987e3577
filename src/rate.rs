//! Pacing: the one rate limiter and the one pause that every worker shares.
//!
//! `parse_rate` is pure. [`Limiter`] wraps governor; [`Pause`] is the gate a
//! 429 closes for everybody until its Retry-After has passed.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};
use tokio::time::Instant;

/// A request rate as the user gives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// At most this many requests per second (fractions allowed: 300/min = 5/s).
    PerSecond(f64),
    /// No limit of our own (the server's 429s still pace us).
    Unlimited,
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::PerSecond(r) => write!(f, "{r}/s"),
            Rate::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// Reads `10/s`, `300/min`, `2/sec`, `5000/h`, `unlimited`.
pub fn parse_rate(spec: &str) -> Result<Rate, String> {
    let s = spec.trim().to_ascii_lowercase();
    if matches!(s.as_str(), "unlimited" | "none" | "off") {
        return Ok(Rate::Unlimited);
    }
    let help =
        || format!("`{spec}` is not a rate; write it as 10/s, 300/min or 5000/h (or unlimited)");
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
/// the server never sees a spike, not even right after a pause.
pub struct Limiter {
    inner: Option<DefaultDirectRateLimiter>,
}

impl Limiter {
    /// A limiter for `rate`.
    pub fn new(rate: Rate) -> Limiter {
        let inner = match rate {
            Rate::Unlimited => None,
            Rate::PerSecond(r) => {
                let period = Duration::from_secs_f64(1.0 / r).max(Duration::from_nanos(1));
                Quota::with_period(period)
                    .map(|q| DefaultDirectRateLimiter::direct(q.allow_burst(NonZeroU32::MIN)))
            }
        };
        Limiter { inner }
    }

    /// Waits until one request may go.
    pub async fn until_ready(&self) {
        if let Some(l) = &self.inner {
            l.until_ready().await;
        }
    }

    /// Takes one request's worth without waiting, if available.
    pub fn try_take(&self) -> bool {
        match &self.inner {
            Some(l) => l.check().is_ok(),
            None => true,
        }
    }
}

/// The pause that a 429 puts on every worker.
#[derive(Default)]
pub struct Pause {
    until: Mutex<Option<Instant>>,
}

impl Pause {
    /// Nobody sends for `d` from now (an existing longer pause stands).
    pub fn pause_for(&self, d: Duration) {
        let end = Instant::now() + d;
        let mut until = self.until.lock().expect("pause");
        if until.is_none_or(|u| u < end) {
            *until = Some(end);
        }
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
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("-1/s").is_err());
        assert!(parse_rate("ten/s").is_err());
        assert!(parse_rate("10/day").is_err());
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

//! Retry timing: pure functions, no clock and no I/O.
//!
//! Everything here takes the values it needs (the attempt number, a random
//! number, "now") as arguments so that it can be tested with plain values.

use std::time::{Duration, SystemTime};

/// The shortest backoff step: the first retry waits up to this long.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// The longest a single backoff may wait.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// What a 429 waits when its Retry-After is missing or unreadable.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The longest we honour a Retry-After (Webex has been seen sending 194 s).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Exponential backoff with full jitter ("AWS full jitter").
///
/// `failures` is how many times the row has failed so far (1 after the first
/// failure); `unit` is a uniform random number in `[0, 1)`. The wait is
/// `unit * min(cap, base * 2^(failures-1))`.
pub fn backoff_delay(failures: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(32);
    let ceiling = base
        .checked_mul(1u32 << exp.min(31))
        .unwrap_or(cap)
        .min(cap);
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ceiling.mul_f64(unit)
}

/// Reads a `Retry-After` header value defensively.
///
/// Accepts delay-seconds (`"30"`, also `"1.5"`) and an HTTP-date (a date in
/// the past means "now"); anything else (Webex once sent `rand(30),add(30)`)
/// gives [`DEFAULT_RETRY_AFTER`]. The result is clamped to
/// `[0, MAX_RETRY_AFTER]`.
pub fn parse_retry_after(value: Option<&str>, now: SystemTime) -> Duration {
    let Some(raw) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return DEFAULT_RETRY_AFTER;
    };
    let parsed = if let Ok(secs) = raw.parse::<u64>() {
        Some(Duration::from_secs(secs))
    } else if let Ok(secs) = raw.parse::<f64>() {
        (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)))
    } else if let Ok(when) = httpdate::parse_http_date(raw) {
        Some(when.duration_since(now).unwrap_or(Duration::ZERO))
    } else {
        None
    };
    parsed.unwrap_or(DEFAULT_RETRY_AFTER).min(MAX_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Duration = BACKOFF_BASE;
    const C: Duration = BACKOFF_CAP;

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        // With unit just under 1 the delay is (almost) the ceiling itself.
        let top = |n| backoff_delay(n, B, C, 1.0);
        assert_eq!(top(1), Duration::from_millis(500));
        assert_eq!(top(2), Duration::from_secs(1));
        assert_eq!(top(3), Duration::from_secs(2));
        assert_eq!(top(8), Duration::from_secs(60)); // 64 s capped at 60
        assert_eq!(top(1000), Duration::from_secs(60));
    }

    #[test]
    fn backoff_jitter_scales_the_ceiling() {
        assert_eq!(backoff_delay(3, B, C, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(3, B, C, 0.25), Duration::from_millis(500));
        // Out-of-range randomness is clamped instead of producing nonsense.
        assert_eq!(backoff_delay(3, B, C, -4.0), Duration::ZERO);
        assert_eq!(backoff_delay(3, B, C, f64::NAN), Duration::ZERO);
        assert_eq!(backoff_delay(0, B, C, 1.0), Duration::from_millis(500));
    }

    #[test]
    fn retry_after_reads_seconds_dates_and_garbage() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(Some("7"), now), Duration::from_secs(7));
        assert_eq!(parse_retry_after(Some(" 2 "), now), Duration::from_secs(2));
        assert_eq!(
            parse_retry_after(Some("1.5"), now),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_retry_after(Some("rand(30),add(30)"), now),
            DEFAULT_RETRY_AFTER
        );
        assert_eq!(parse_retry_after(Some("-3"), now), DEFAULT_RETRY_AFTER);
        assert_eq!(parse_retry_after(Some(""), now), DEFAULT_RETRY_AFTER);
        assert_eq!(parse_retry_after(None, now), DEFAULT_RETRY_AFTER);
        assert_eq!(parse_retry_after(Some("86400"), now), MAX_RETRY_AFTER);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(42));
        assert_eq!(
            parse_retry_after(Some(&later), now),
            Duration::from_secs(42)
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(42));
        assert_eq!(parse_retry_after(Some(&earlier), now), Duration::ZERO);
    }
}

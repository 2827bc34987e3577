//! The XML API's session tickets and its per-caller rate windows. No HTTP
//! types: the route parses and answers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A ticket `AuthenticateUser` issued.
#[derive(Debug)]
struct Ticket {
    /// The site (url) it was issued for.
    site: String,
    /// The lower-cased `webExID` it was issued to.
    caller: String,
    /// When it stops working.
    expires: Instant,
}

/// A caller's rate window.
#[derive(Debug)]
struct Window {
    start: Instant,
    calls: u32,
    /// A rate answer was given at this time; every call is refused until
    /// `blocked_until`.
    blocked_since: Option<Instant>,
    blocked_until: Instant,
}

/// Why the rate check refused a call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RateRefusal {
    /// The caller was already blocked, for longer than the grace: it did
    /// not pause.
    pub(crate) early: bool,
}

/// Tickets and rate windows.
#[derive(Debug, Default)]
pub(crate) struct XmlSessions {
    tickets: HashMap<String, Ticket>,
    callers: HashMap<String, Window>,
}

impl XmlSessions {
    /// Issues a ticket for `caller` on `site`, valid for `ttl`.
    pub(crate) fn issue(
        &mut self,
        site: &str,
        caller: &str,
        ttl: Duration,
        now: Instant,
    ) -> String {
        let ticket = format!("SIMTICKET{}", uuid::Uuid::new_v4().simple());
        self.tickets.insert(
            ticket.clone(),
            Ticket {
                site: site.to_owned(),
                caller: caller.to_lowercase(),
                expires: now + ttl,
            },
        );
        ticket
    }

    /// Whether `ticket` is good for `caller` on `site` now.
    pub(crate) fn accepts(&self, ticket: &str, site: &str, caller: &str, now: Instant) -> bool {
        self.tickets
            .get(ticket)
            .is_some_and(|t| t.site == site && t.caller == caller.to_lowercase() && now < t.expires)
    }

    /// Every ticket stops working (as if the server restarted its sessions).
    pub(crate) fn expire_all(&mut self) {
        self.tickets.clear();
    }

    /// Counts a call of `caller` against `limit` (calls per window): a
    /// call over it, and every call until a window after it, is refused.
    pub(crate) fn admit(
        &mut self,
        caller: &str,
        limit: Option<(u32, Duration)>,
        grace: Duration,
        now: Instant,
    ) -> Result<(), RateRefusal> {
        let Some((calls, window)) = limit else {
            return Ok(());
        };
        let w = self.callers.entry(caller.to_lowercase()).or_insert(Window {
            start: now,
            calls: 0,
            blocked_since: None,
            blocked_until: now,
        });
        if let Some(since) = w.blocked_since {
            if now < w.blocked_until {
                return Err(RateRefusal {
                    early: now.duration_since(since) > grace,
                });
            }
            w.blocked_since = None;
            w.start = now;
            w.calls = 0;
        }
        if now.duration_since(w.start) >= window {
            w.start = now;
            w.calls = 0;
        }
        w.calls += 1;
        if w.calls > calls {
            w.blocked_since = Some(now);
            w.blocked_until = now + window;
            return Err(RateRefusal { early: false });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_expire_and_belong_to_their_site_and_caller() {
        let mut x = XmlSessions::default();
        let t0 = Instant::now();
        let t = x.issue("acme.webex.com", "Admin@x.com", Duration::from_secs(2), t0);
        assert!(x.accepts(&t, "acme.webex.com", "admin@x.com", t0));
        assert!(!x.accepts(&t, "acme-eu.webex.com", "admin@x.com", t0));
        assert!(!x.accepts(&t, "acme.webex.com", "other@x.com", t0));
        assert!(!x.accepts(
            &t,
            "acme.webex.com",
            "admin@x.com",
            t0 + Duration::from_secs(2)
        ));
        assert!(!x.accepts("forged", "acme.webex.com", "admin@x.com", t0));
        x.expire_all();
        assert!(!x.accepts(&t, "acme.webex.com", "admin@x.com", t0));
    }

    #[test]
    fn the_rate_window_blocks_after_the_limit_and_counts_early_calls() {
        let mut x = XmlSessions::default();
        let t0 = Instant::now();
        let limit = Some((2, Duration::from_secs(10)));
        let grace = Duration::from_secs(1);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(x.admit("a", limit, grace, at(0)).is_ok());
        assert!(x.admit("a", limit, grace, at(0)).is_ok());
        assert_eq!(
            x.admit("a", limit, grace, at(1)),
            Err(RateRefusal { early: false })
        );
        assert!(x.admit("b", limit, grace, at(1)).is_ok(), "per caller");
        assert_eq!(
            x.admit("a", limit, grace, at(2)),
            Err(RateRefusal { early: false })
        );
        assert_eq!(
            x.admit("a", limit, grace, at(5)),
            Err(RateRefusal { early: true })
        );
        assert!(x.admit("a", limit, grace, at(11)).is_ok(), "a window after");
        assert!(x.admit("a", None, grace, at(11)).is_ok());
    }
}

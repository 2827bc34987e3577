//! Access and refresh tokens: the ones valid at start, those issued by grants, and
//! each access token's lifetime and request budget.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::sim::SimConfig;

/// Book-keeping for one access token.
#[derive(Debug)]
struct AccessToken {
    /// When it was issued (the simulator's start for the initial tokens).
    issued: Instant,
    /// Authenticated API requests made with it so far.
    uses: u64,
}

/// Every token the simulator knows.
#[derive(Debug)]
pub(crate) struct TokenStore {
    /// Access tokens ever issued; expired ones stay and are refused.
    access: HashMap<String, AccessToken>,
    /// Refresh tokens that can still be redeemed.
    refresh: HashSet<String>,
    /// How long an access token works after issuance; `None` = forever.
    lifetime: Option<Duration>,
    /// How many authenticated requests an access token may make; `None` = no limit.
    max_requests: Option<u64>,
}

/// A fresh token pair handed out by a grant.
#[derive(Debug)]
pub(crate) struct Grant {
    /// The new access token.
    pub(crate) access_token: String,
    /// The refresh token the client must keep (the old one unless rotating).
    pub(crate) refresh_token: String,
}

impl TokenStore {
    /// The store with the configured initial tokens, issued at `now`.
    pub(crate) fn new(config: &SimConfig, now: Instant) -> Self {
        let access = config
            .access_tokens
            .iter()
            .map(|token| {
                (
                    token.clone(),
                    AccessToken {
                        issued: now,
                        uses: 0,
                    },
                )
            })
            .collect();
        Self {
            access,
            refresh: config.refresh_tokens.iter().cloned().collect(),
            lifetime: config.token_lifetime,
            max_requests: config.token_max_requests,
        }
    }

    /// Accepts an API request made with `token` if the token is known, not expired and
    /// within its request budget; an accepted request uses up one unit of the budget.
    pub(crate) fn authorize(&mut self, token: &str, now: Instant) -> bool {
        let Some(entry) = self.access.get_mut(token) else {
            return false;
        };
        let expired = self
            .lifetime
            .is_some_and(|lifetime| now.saturating_duration_since(entry.issued) >= lifetime);
        let exhausted = self.max_requests.is_some_and(|max| entry.uses >= max);
        if expired || exhausted {
            return false;
        }
        entry.uses += 1;
        true
    }

    /// Redeems `refresh_token` for a new access token; `None` if it is unknown or used up.
    /// With `rotate`, the used refresh token dies and a new one is issued.
    pub(crate) fn refresh(
        &mut self,
        refresh_token: &str,
        rotate: bool,
        now: Instant,
    ) -> Option<Grant> {
        if !self.refresh.contains(refresh_token) {
            return None;
        }
        let refresh_token = if rotate {
            self.refresh.remove(refresh_token);
            let fresh = new_token("rt");
            self.refresh.insert(fresh.clone());
            fresh
        } else {
            refresh_token.to_owned()
        };
        Some(Grant {
            access_token: self.new_access(now),
            refresh_token,
        })
    }

    /// Issues a new access token and a new refresh token (an authorization-code grant).
    pub(crate) fn issue(&mut self, now: Instant) -> Grant {
        let refresh_token = new_token("rt");
        self.refresh.insert(refresh_token.clone());
        Grant {
            access_token: self.new_access(now),
            refresh_token,
        }
    }

    /// Issues and registers a new access token.
    fn new_access(&mut self, now: Instant) -> String {
        let access_token = new_token("at");
        self.access.insert(
            access_token.clone(),
            AccessToken {
                issued: now,
                uses: 0,
            },
        );
        access_token
    }
}

/// A random token string such as `sim-at-<32 hex>`.
pub(crate) fn new_token(kind: &str) -> String {
    format!("sim-{kind}-{}", Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(config: SimConfig) -> (TokenStore, Instant) {
        let now = Instant::now();
        (TokenStore::new(&config, now), now)
    }

    #[test]
    fn request_budget_and_lifetime() {
        let (mut tokens, t0) = store(SimConfig {
            token_max_requests: Some(2),
            token_lifetime: Some(Duration::from_secs(10)),
            ..SimConfig::default()
        });
        assert!(!tokens.authorize("nope", t0));
        assert!(tokens.authorize("sim-access-token", t0));
        assert!(tokens.authorize("sim-access-token", t0));
        assert!(!tokens.authorize("sim-access-token", t0));
        let grant = tokens.refresh("sim-refresh-token", false, t0).unwrap();
        assert_eq!(grant.refresh_token, "sim-refresh-token");
        assert!(tokens.authorize(&grant.access_token, t0 + Duration::from_secs(9)));
        assert!(!tokens.authorize(&grant.access_token, t0 + Duration::from_secs(10)));
    }

    #[test]
    fn rotation_retires_the_used_refresh_token() {
        let (mut tokens, t0) = store(SimConfig::default());
        let grant = tokens.refresh("sim-refresh-token", true, t0).unwrap();
        assert_ne!(grant.refresh_token, "sim-refresh-token");
        assert!(tokens.refresh("sim-refresh-token", true, t0).is_none());
        assert!(tokens.refresh(&grant.refresh_token, true, t0).is_some());
    }
}

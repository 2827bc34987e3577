//! The simulator's shared state, behind one `Arc` used by every request.
//!
//! Each part has its own mutex, held only for short synchronous steps (never across an
//! `.await`). Lock order, where two are taken: `meetings` before `stats`. (`codes` and
//! `tokens` are taken one after the other, never together; so are `directory` and
//! `stats` or `decisions`.)

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::codes::CodeStore;
use super::directory::Directory;
use super::limiter::RateLimiter;
use super::meetings::MeetingStore;
use super::sites::SettingsStore;
use super::tokens::TokenStore;
use super::xml::XmlSessions;
use crate::sim::{SimConfig, SimStats};

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct SimState {
    /// The configuration the simulator was started with.
    pub(crate) config: SimConfig,
    /// Counters; `meetings` and `people_duplicates` are not kept here but read from the
    /// stores on each snapshot.
    stats: Mutex<SimStats>,
    /// Valid access and refresh tokens.
    tokens: Mutex<TokenStore>,
    /// Authorization codes issued by `/v1/authorize` and not yet redeemed.
    codes: Mutex<CodeStore>,
    /// The shared rate limit and its Retry-After window.
    limiter: Mutex<RateLimiter>,
    /// The seeded RNG deciding injected failures, dropped answers and slow meeting
    /// creates, lost and failed person creates, and nothing else,
    /// so that those decisions depend only on the seed and the order of requests.
    decisions: Mutex<StdRng>,
    /// Stored meetings.
    meetings: Mutex<MeetingStore>,
    /// The organization's people and licenses.
    directory: Mutex<Directory>,
    /// Meeting sites and hosts' settings on them (taken after `directory`,
    /// never with it).
    settings: Mutex<SettingsStore>,
    /// The XML API's session tickets and per-caller rate windows.
    xml: Mutex<XmlSessions>,
    /// `/v1/*` requests in the gate now (for `max_in_flight`).
    pub(crate) in_flight: std::sync::atomic::AtomicU64,
}

impl SimState {
    /// Fresh state: the initial tokens are issued now, the bucket is full, no meetings,
    /// the configured licenses and initial people.
    pub(crate) fn new(config: SimConfig) -> Self {
        let now = Instant::now();
        let limiter = RateLimiter::new(
            config.rate_limit,
            std::time::Duration::from_secs(config.retry_after_secs),
            config.early_grace,
            now,
        )
        .with_burst(config.rate_burst)
        .with_changes(&config.rate_limit_changes, now);
        Self {
            stats: Mutex::default(),
            tokens: Mutex::new(TokenStore::new(&config, now)),
            codes: Mutex::default(),
            limiter: Mutex::new(limiter),
            decisions: Mutex::new(StdRng::seed_from_u64(config.seed)),
            meetings: Mutex::default(),
            directory: Mutex::new(Directory::new(&config, &super::times::now())),
            settings: Mutex::new(SettingsStore::new(config.meeting_sites.clone())),
            xml: Mutex::default(),
            in_flight: Default::default(),
            config,
        }
    }

    /// Updates the counters.
    pub(crate) fn record(&self, update: impl FnOnce(&mut SimStats)) {
        update(&mut lock(&self.stats));
    }

    /// A snapshot of the counters, with `meetings` = meetings stored now and
    /// `people_duplicates` as the directory counted them.
    pub(crate) fn stats(&self) -> SimStats {
        let mut stats = lock(&self.stats).clone();
        stats.meetings = self.meetings().len() as u64;
        stats.people_duplicates = self.directory().duplicates();
        stats.in_flight = self.in_flight.load(std::sync::atomic::Ordering::Relaxed);
        stats
    }

    /// The token store.
    pub(crate) fn tokens(&self) -> MutexGuard<'_, TokenStore> {
        lock(&self.tokens)
    }

    /// The pending authorization codes.
    pub(crate) fn codes(&self) -> MutexGuard<'_, CodeStore> {
        lock(&self.codes)
    }

    /// The rate limiter.
    pub(crate) fn limiter(&self) -> MutexGuard<'_, RateLimiter> {
        lock(&self.limiter)
    }

    /// The meeting store.
    pub(crate) fn meetings(&self) -> MutexGuard<'_, MeetingStore> {
        lock(&self.meetings)
    }

    /// The people and licenses.
    pub(crate) fn directory(&self) -> MutexGuard<'_, Directory> {
        lock(&self.directory)
    }

    /// The meeting sites and hosts' settings.
    pub(crate) fn settings(&self) -> MutexGuard<'_, SettingsStore> {
        lock(&self.settings)
    }

    /// The XML API's sessions.
    pub(crate) fn xml(&self) -> MutexGuard<'_, XmlSessions> {
        lock(&self.xml)
    }

    /// The sites where `email` is a host, and their person id (the admin:
    /// every site; `None`: nobody of this org has the email).
    pub(crate) fn host(&self, email: &str) -> Option<(String, Vec<String>)> {
        if email.eq_ignore_ascii_case(crate::sim::ADMIN_EMAIL) {
            let sites = self
                .settings()
                .sites()
                .iter()
                .map(|s| s.url.clone())
                .collect();
            return Some((super::org::ADMIN_PERSON_ID.to_owned(), sites));
        }
        self.directory().host(email)
    }

    /// True with probability `share` (0..=1), drawn from the seeded decision RNG.
    /// A share of 0 draws nothing, so disabled features do not shift the sequence.
    pub(crate) fn chance(&self, share: f64) -> bool {
        share > 0.0 && lock(&self.decisions).random::<f64>() < share
    }

    /// One of `choices`, drawn from the seeded decision RNG.
    pub(crate) fn pick<T: Copy>(&self, choices: &[T]) -> T {
        let index = lock(&self.decisions).random_range(0..choices.len());
        choices[index]
    }
}

/// Locks a mutex, ignoring poisoning: a panicking handler leaves the state usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

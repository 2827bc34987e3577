//! A simulator of the parts of the Webex REST API that `webex-bulk` uses: the OAuth
//! authorization-code flow (with PKCE) and refresh grant, `GET /people/me`, meeting
//! create / list / get / delete, people list / get / create / full replace, and the
//! licenses list and assignment (`PATCH /licenses/users`), answering as the public
//! OpenAPI specs describe, with rate limits, token expiry, injected failures, dropped
//! connections and slow meeting creates (stored only after a delay, whether or not the
//! client waited) to exercise the client.
//!
//! Start it with [`start`]; it serves `/v1/*` like `https://webexapis.com/v1` and
//! `GET /_sim/stats` (the [`SimStats`] counters, no auth).
//!
//! `GET /v1/meetings` and `GET /v1/people` answer at most `max` items and, when more
//! match, a `Link: <URL>; rel="next"` header leading to the next page (the request's
//! URL with a simulator-internal `cursor` parameter).
//!
//! Every `/v1/*` request passes, in order: counting, latency, rate limit (429 with
//! `Retry-After`, and a window during which every request gets 429), access-token
//! check (401), injected failure (500/502/503), then its handler. The OAuth endpoints
//! (`GET /v1/authorize`, `POST /v1/access_token`) only get counting and latency.
//! With `rate_limit_on_arrival`, the rate limit comes before the latency instead, as
//! an API gateway in front of slow work decides: a refused request is answered at
//! once, and the requests it let in are still being worked on.
//!
//! The code is split between state and HTTP:
//! - this file: [`SimConfig`], [`SimStats`], [`start`] and [`SimHandle`];
//! - `model/`: the organization and the simulator's state and rules, with no HTTP
//!   types: `state` (the shared state, counters and decision RNG), `meetings`,
//!   `directory` (people and license units), `org` (initial licenses and people),
//!   `tokens`, `codes` (OAuth codes, PKCE), `limiter` (rate limit), `times`;
//! - `routes/`: the router, the `gate` middleware and the handlers, which parse
//!   requests (`meeting_body`, `person_body`), call the model and shape the answers
//!   (`errors`, `paging`);
//! - `server`: the hyper accept loop and the per-connection kill signal;
//! - `tests/`: end-to-end tests over HTTP (unit tests sit in the file they test).

mod model;
mod routes;
mod server;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use model::state::SimState;

pub use model::org::{
    SimLicense, SimPerson, LICENSE_ASSISTANT, LICENSE_CALLING_PROFESSIONAL,
    LICENSE_ENTERPRISE_EDITION, LICENSE_MEETING_ACME, LICENSE_MEETING_ACME_EU, LICENSE_MESSAGING,
};
pub use model::sites::{HostSettings, SimSessionType, SimSite, SimTrackingCode};

/// How the simulator behaves. `SimConfig::default()` is a well-behaved Webex with one
/// valid access token (`sim-access-token`) and one refresh token (`sim-refresh-token`).
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Access tokens valid at start (default `["sim-access-token"]`).
    pub access_tokens: Vec<String>,
    /// Refresh tokens valid at start (default `["sim-refresh-token"]`).
    pub refresh_tokens: Vec<String>,
    /// OAuth client id the token endpoint accepts (default `sim-client-id`).
    pub client_id: String,
    /// OAuth client secret the token endpoint accepts (default `sim-client-secret`).
    pub client_secret: String,
    /// How long each access token works after issuance (initial ones: from the
    /// simulator's start); `None` = forever.
    pub token_lifetime: Option<Duration>,
    /// Each access token stops working after this many authenticated API requests
    /// (deterministic expiry for tests); `None` = no limit.
    pub token_max_requests: Option<u64>,
    /// `expires_in` reported for tokens issued by a refresh (default 3600); when
    /// `token_lifetime` is set, its whole seconds are reported instead.
    pub issued_expires_in: u64,
    /// A refresh returns a new refresh token and retires the one used (default false:
    /// the same refresh token comes back and stays valid).
    pub rotate_refresh_tokens: bool,
    /// API requests per second allowed, all tokens together (token bucket with a burst
    /// of `rate_burst`); `None` = unlimited.
    pub rate_limit: Option<f64>,
    /// The bucket's capacity: requests the server takes at once after a quiet time
    /// (default `None`: a second's worth of the limit, `max(1, rate)`, also after a
    /// change of the limit). Servers differ: a small burst hides the limit less, and
    /// a pause refills less of it.
    pub rate_burst: Option<f64>,
    /// The rate limit decides when a request arrives, before its latency, and a 429
    /// is answered at once (default false: after the latency, so a refused request
    /// takes as long as any, and the order of arrival is shuffled by the latency).
    /// Both are hard in their own way: after the latency, every request on its way
    /// when a window opens is refused; on arrival, the requests accepted just
    /// before a 429 are answered only after it.
    pub rate_limit_on_arrival: bool,
    /// `Retry-After` seconds sent with a 429, and the length of the window it opens
    /// (default 2).
    pub retry_after_secs: u64,
    /// If set, this literal is sent as `Retry-After` instead (e.g. `rand(30),add(30)`);
    /// the window still lasts `retry_after_secs`.
    pub retry_after_raw: Option<String>,
    /// Requests arriving within this time after a window opened were already in flight
    /// and are not counted as `early_requests` (default 1 s).
    pub early_grace: Duration,
    /// Share (0..=1) of API requests answered with an injected 500/502/503 without doing
    /// anything.
    pub fail_rate: f64,
    /// Share (0..=1) of valid meeting creates that are carried out and then answered by
    /// dropping the TCP connection.
    pub drop_rate: f64,
    /// Share (0..=1) of valid meeting creates that are slow (default 0): the meeting is
    /// stored only `slow_create_delay` after the request, by a task that finishes
    /// whatever happens to the client (a timeout, a dropped connection, a killed
    /// process); until then no listing or GET shows it. A client that waits gets the
    /// meeting (or, if `drop_rate` also struck, the dropped connection) after the delay.
    /// Drawn after the `drop_rate` decision.
    pub slow_create_rate: f64,
    /// How long a slow create takes before its meeting is stored (default 3 s).
    pub slow_create_delay: Duration,
    /// Share (0..=1) of `POST /v1/people` that create the person and then drop the
    /// TCP connection without an answer (default 0).
    pub people_create_lost_rate: f64,
    /// Share (0..=1) of `POST /v1/people` that create the person and then answer 500
    /// (the spec warns that a failed create may have created the person; default 0).
    /// Drawn only for creates that were not lost.
    pub people_create_error_rate: f64,
    /// Added before answering each `/v1/*` request.
    pub latency: Duration,
    /// When set, each `/v1/*` request's latency is drawn uniformly between `latency`
    /// and this instead (from `seed` and the request's number, not from the decision
    /// RNG; default `None`).
    pub latency_max: Option<Duration>,
    /// Changes of `rate_limit` while running: from each time after the start, the
    /// limit is this many requests per second (burst `rate_burst` or `max(1, rate)`;
    /// default none).
    pub rate_limit_changes: Vec<(Duration, f64)>,
    /// Seed of the RNG behind the fail/drop/slow/lost/error decisions (default 1).
    pub seed: u64,
    /// `GET /v1/authorize` answers as if the user clicked "Decline": a redirect with
    /// `error=access_denied` (default false).
    pub deny_consent: bool,
    /// Sent as `scope` in every token answer (default [`DEFAULT_GRANTED_SCOPES`]),
    /// whatever scope the authorization request asked for.
    pub granted_scopes: String,
    /// Sent as `refresh_token_expires_in` (whole seconds, rounded down) in every token
    /// answer (default 90 days). Only reported: refresh tokens do not expire.
    pub refresh_token_lifetime: Duration,
    /// `orgId` of the signed-in admin in `GET /v1/people/me` (default
    /// [`DEFAULT_ORG_ID`]). The admin's email is always [`ADMIN_EMAIL`]. Also the
    /// `orgId` of every person; an `orgId` naming another organization in a request to
    /// `/v1/people` or `/v1/licenses` gets a 403.
    pub org_id: String,
    /// The organization's licenses (default: the six `LICENSE_*` constants: "Meeting -
    /// Webex Enterprise" on `acme.webex.com` (100 units) and on `acme-eu.webex.com`
    /// (50), "Messaging" (1000), "Webex Calling - Professional" (200), "Webex
    /// Enterprise Edition" (1000, no site), "Webex Assistant" (5)).
    pub licenses: Vec<SimLicense>,
    /// People the organization has at start, oldest first (default none; the admin of
    /// `GET /v1/people/me` is never among them).
    pub people: Vec<SimPerson>,
    /// Email addresses that belong to people of another organization: a create
    /// with one is refused with 409, and this organization's lookups never find
    /// it (as Webex does for an address taken elsewhere).
    pub other_org_emails: Vec<String>,
    /// The meeting sites, with their session types and tracking codes
    /// (default: the two sites of the default meeting licenses; see
    /// `model::sites::default_sites`). A person is a host on the sites of
    /// their meeting licenses; the admin on every site.
    pub meeting_sites: Vec<SimSite>,
    /// Share (0..=1) of changes of a host's settings (REST `PUT`s and XML
    /// `SetUser`) carried out and then answered by dropping the connection.
    pub settings_drop_rate: f64,
    /// How long an XML session ticket works (`timeToLive`; default 5400 s).
    pub xml_ticket_ttl: Duration,
    /// XML API calls allowed per caller (`webExID`) in a window: the call
    /// over it gets the rate answer (000045, HTTP 200, no Retry-After) and so
    /// does every call for a window after it (default none).
    pub xml_rate_limit: Option<(u32, Duration)>,
}

/// Default [`SimConfig::granted_scopes`]: what a bulk-admin integration asks for.
pub const DEFAULT_GRANTED_SCOPES: &str = "spark:all meeting:admin_schedule_write meeting:admin_schedule_read meeting:admin_preferences_read spark-admin:people_read spark-admin:people_write spark-admin:licenses_read";

/// Default [`SimConfig::org_id`]: a Webex-style id, the unpadded base64 of
/// `ciscospark://us/ORGANIZATION/5a1c0e5e-0000-4000-8000-00000000c0de`.
pub const DEFAULT_ORG_ID: &str =
    "Y2lzY29zcGFyazovL3VzL09SR0FOSVpBVElPTi81YTFjMGU1ZS0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMGMwZGU";

/// The user every access token belongs to (`GET /v1/people/me`), also the default
/// meeting host.
pub const ADMIN_EMAIL: &str = "admin@sim.example.com";

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            access_tokens: vec!["sim-access-token".to_owned()],
            refresh_tokens: vec!["sim-refresh-token".to_owned()],
            client_id: "sim-client-id".to_owned(),
            client_secret: "sim-client-secret".to_owned(),
            token_lifetime: None,
            token_max_requests: None,
            issued_expires_in: 3600,
            rotate_refresh_tokens: false,
            rate_limit: None,
            retry_after_secs: 2,
            retry_after_raw: None,
            early_grace: Duration::from_secs(1),
            fail_rate: 0.0,
            drop_rate: 0.0,
            slow_create_rate: 0.0,
            slow_create_delay: Duration::from_secs(3),
            people_create_lost_rate: 0.0,
            people_create_error_rate: 0.0,
            latency: Duration::ZERO,
            latency_max: None,
            rate_limit_changes: Vec::new(),
            rate_burst: None,
            rate_limit_on_arrival: false,
            seed: 1,
            deny_consent: false,
            granted_scopes: DEFAULT_GRANTED_SCOPES.to_owned(),
            refresh_token_lifetime: Duration::from_secs(90 * 24 * 3600),
            org_id: DEFAULT_ORG_ID.to_owned(),
            licenses: model::org::default_licenses(),
            people: Vec::new(),
            other_org_emails: Vec::new(),
            meeting_sites: model::sites::default_sites(),
            settings_drop_rate: 0.0,
            xml_ticket_ttl: Duration::from_secs(5400),
            xml_rate_limit: None,
        }
    }
}

/// Counters of what the simulator saw and did (`GET /_sim/stats`, [`SimHandle::stats`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SimStats {
    /// Every HTTP request to `/v1/*` (including the token endpoint).
    pub requests: u64,
    /// Meetings created (creates carried out, including those answered by a drop; a
    /// slow create counts once its meeting is stored).
    pub creates: u64,
    /// Creates with an integration tag that a stored meeting already had, and copies
    /// planted by [`SimHandle::duplicate_meeting`].
    pub duplicates: u64,
    /// Successful refresh-token grants.
    pub refreshes: u64,
    /// Rejected token requests (refresh and authorization-code grants alike).
    pub refresh_failures: u64,
    /// Successful authorization-code grants (a code redeemed for tokens).
    pub code_grants: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// Requests that arrived in a Retry-After window more than `early_grace` after it
    /// opened (the client ignored Retry-After).
    pub early_requests: u64,
    /// Requests that arrived while a Retry-After window was open.
    pub in_window_requests: u64,
    /// Injected 5xx answers (including the 500s of `people_create_error_rate`, which
    /// follow a carried-out create).
    pub injected_failures: u64,
    /// Connections dropped after a carried-out create (meeting or person; a slow
    /// create whose client already left is not counted).
    pub dropped: u64,
    /// Slow meeting creates started (see [`SimConfig::slow_create_rate`]).
    pub slow_creates: u64,
    /// Slow meeting creates started whose meeting is not stored yet.
    pub slow_creates_pending: u64,
    /// 401 answers.
    pub unauthorized: u64,
    /// Meetings stored now.
    pub meetings: u64,
    /// People created by `POST /v1/people` (including those answered by a drop or a
    /// 500).
    pub people_created: u64,
    /// Times the simulator stored a person whose email another person already had
    /// (a create gets 409 instead, so only repeated emails among
    /// [`SimConfig::people`] can count).
    pub people_duplicates: u64,
    /// `POST /v1/people` refused with 409 because a person already has the
    /// email: a client that creates again instead of looking first (Webex
    /// refuses the second person, so this is how a doubled create shows).
    pub people_create_conflicts: u64,
    /// Successful `PUT /v1/people/{personId}`.
    pub people_updates: u64,
    /// `PATCH /v1/licenses/users` carried out (answered 200 or 206).
    pub license_patches: u64,
    /// The most `/v1/*` requests in the simulator at once.
    pub max_in_flight: u64,
    /// `/v1/*` requests the simulator is working on now (answered or not).
    pub in_flight: u64,
    /// Hosts' session type sets replaced (REST `PUT` or XML `SetUser`),
    /// whether or not the set changed.
    pub session_type_updates: u64,
    /// Hosts' tracking codes changed (REST `PUT` or XML `SetUser`),
    /// whether or not a value changed.
    pub tracking_code_updates: u64,
    /// Writes of a host's settings that changed nothing: a client that
    /// wrote again what was already there (a doubled write shows so).
    pub settings_noop_writes: u64,
    /// Requests to the XML API (`POST /WBXService/XMLService`).
    pub xml_requests: u64,
    /// Session tickets issued by `AuthenticateUser`.
    pub xml_tickets: u64,
    /// XML calls refused for an unknown, expired or foreign ticket (030002).
    pub xml_ticket_rejections: u64,
    /// XML calls given the rate answer (000045).
    pub xml_rate_limited: u64,
    /// XML calls that came during a caller's rate block more than
    /// `early_grace` after it began (the client did not pause).
    pub xml_early_requests: u64,
    /// `SetUser` calls carried out.
    pub xml_set_users: u64,
}

/// A running simulator. Dropping it stops the server as [`SimHandle::shutdown`] does,
/// without waiting.
#[derive(Debug)]
pub struct SimHandle {
    /// The bound address.
    addr: SocketAddr,
    /// State shared with the handlers, read by `stats`, `meetings`, `people` and
    /// `licenses` and changed by `duplicate_meeting` and `delete_meeting`.
    state: Arc<SimState>,
    /// Tells the accept loop to stop.
    stop: oneshot::Sender<()>,
    /// The accept loop task.
    task: JoinHandle<()>,
}

impl SimHandle {
    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the API: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The browser authorization URL without its query:
    /// `http://127.0.0.1:PORT/v1/authorize`.
    pub fn authorize_url(&self) -> String {
        format!("{}/authorize", self.base_url())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.state.stats()
    }

    /// Every stored meeting as `GET /v1/meetings/{id}` returns it, oldest first.
    pub fn meetings(&self) -> Vec<serde_json::Value> {
        self.state.meetings().all_json()
    }

    /// Stores a copy of the meeting `id` (the same request, integration tags included,
    /// with a new id and meeting number), as if Webex had carried out a create twice;
    /// it counts in `duplicates` (not in `creates`). Returns the new id, or `None` if
    /// no meeting has the id `id`.
    pub fn duplicate_meeting(&self, id: &str) -> Option<String> {
        let copy = self.state.meetings().duplicate(id)?;
        self.state.record(|stats| stats.duplicates += 1);
        Some(copy.id().to_owned())
    }

    /// Deletes the meeting `id` behind the client's back (as someone in the Webex UI
    /// would); false if there is none. Counts nowhere but in `meetings`.
    pub fn delete_meeting(&self, id: &str) -> bool {
        self.state.meetings().remove(id)
    }

    /// Every person as `GET /v1/people/{personId}` returns it, oldest first.
    pub fn people(&self) -> Vec<serde_json::Value> {
        self.state.directory().people_json()
    }

    /// A host's settings on a site (their site defaults if never changed);
    /// `None` when the person is not a host there.
    pub fn user_settings(&self, email: &str, site: &str) -> Option<HostSettings> {
        let (_, sites) = self.state.host(email)?;
        self.state
            .settings()
            .get(email, site, &sites)
            .ok()
            .map(|h| h.clone())
    }

    /// Every XML session ticket stops working (the next call with one is
    /// refused with 030002), as when Webex ends its sessions.
    pub fn expire_xml_tickets(&self) {
        self.state.xml().expire_all();
    }

    /// The XML API's address: `http://127.0.0.1:PORT/WBXService/XMLService`.
    pub fn xml_url(&self) -> String {
        format!("http://{}/WBXService/XMLService", self.addr)
    }

    /// Every license as `GET /v1/licenses` returns it.
    pub fn licenses(&self) -> Vec<serde_json::Value> {
        self.state.directory().licenses_json()
    }

    /// Stops accepting connections, aborts the open ones and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Binds `addr` (tests pass `127.0.0.1:0`) and serves the simulator in a spawned tokio
/// task until the handle is shut down or dropped.
pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(SimState::new(config));
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(server::accept_loop(
        listener,
        routes::router(state.clone()),
        stopped,
    ));
    Ok(SimHandle {
        addr,
        state,
        stop,
        task,
    })
}

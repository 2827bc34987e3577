//! The job kinds: what a row of each kind of file means and how it is
//! carried out. Each kind is one module implementing [`Kind`]; [`KINDS`]
//! lists them. Nothing outside this folder names a kind: the command line,
//! `auth status`, the ingest, the engine and the report ask the registry.
//!
//! A kind reaches the shared machinery only through narrow handles: [`Org`]
//! (once per run, before any row) and [`crate::engine::Api`] (one row's
//! paced, authenticated, logged requests). See ARCHITECTURE.md, "How to add
//! a kind".

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::auth::{AuthError, TokenManager};
use crate::csvin::Problem;
use crate::engine::Api;
use crate::retry::{parse_retry_after, BACKOFF_BASE, BACKOFF_CAP};
use crate::store::{Claimed, Outcome, ReportRow};
use crate::webex::{Answer, ApiError, Client};

pub mod meetings;
pub mod user_settings;
pub mod users;

/// Every kind this build knows, in the order `--help` lists them.
pub static KINDS: &[&dyn Kind] = &[
    &meetings::Meetings,
    &users::Users,
    &user_settings::UserSettings,
];

/// The kind called `name` (as the command line takes it and runs record it).
pub fn find(name: &str) -> Result<&'static dyn Kind, UnknownKind> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.name() == name)
        .ok_or_else(|| UnknownKind(name.to_owned()))
}

/// A kind name this build does not know (a database written by a newer
/// version, say). Never taken for another kind.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a job kind this version of webex-bulk knows (it knows {known})\n    fix: use the webex-bulk version that queued the run (or a newer one)", known = names().join(", "))]
pub struct UnknownKind(pub String);

/// The kinds' names.
pub fn names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name()).collect()
}

/// The options of a run that a kind may use (given on the command line,
/// stored with the run).
#[derive(Clone, Debug, Default)]
pub struct KindOptions {
    /// `--api xml`: carry the rows out over the Meetings XML API, for a kind
    /// that has that way (others refuse it).
    pub xml: Option<crate::webex::xml::XmlEndpoint>,
}

impl KindOptions {
    /// Refuses `--api xml` for a kind that only speaks REST.
    pub fn rest_only(&self, kind: &str) -> Result<(), PrepareError> {
        match self.xml {
            Some(_) => Err(PrepareError::Usage(format!(
                "the {kind} kind has no XML API way: leave out --api xml (or use --api rest)"
            ))),
            None => Ok(()),
        }
    }
}

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One job kind: a registry entry. Stateless; what a run learns from the
/// org lives in the [`Job`] that [`Kind::prepare`] returns.
pub trait Kind: Sync {
    /// As the command line takes it and runs record it (`meetings`).
    fn name(&self) -> &'static str;
    /// One line for `--help`.
    fn about(&self) -> &'static str;
    /// The OAuth scopes its requests need: `auth status` warns when the
    /// stored token lacks one.
    fn scopes(&self) -> &'static [&'static str];
    /// The columns its files have (canonical names and aliases), as the
    /// shared header mapping ([`crate::header`]) takes them.
    fn fields(&self) -> &'static [crate::header::Field];
    /// Its fields that hold a date or a date-time (by canonical name): read
    /// in `--date-order` when one is given.
    fn date_fields(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether [`Kind::prepare`] asks the org (then `validate` needs
    /// credentials too).
    fn needs_org(&self) -> bool {
        false
    }
    /// Once per run (and per `validate`), before any row: what checking and
    /// carrying out rows needs from the org (users: its license list).
    /// `org` is `None` only for a kind that does not need it.
    fn prepare<'a>(
        &'a self,
        org: Option<&'a Org>,
        options: &'a KindOptions,
    ) -> BoxFuture<'a, Result<Box<dyn Job>, PrepareError>>;
    /// The report's columns of this kind, between the shared ones
    /// (`line` .. `tracking_id`) and `note`.
    fn result_columns(&self) -> &'static [&'static str];
    /// A row's cells for [`Kind::result_columns`].
    fn result_cells(&self, row: &ReportRow) -> Vec<String>;
}

/// A kind made ready for one run.
pub trait Job: Send + Sync {
    /// Maps a file's header onto the kind's fields, for checking its rows
    /// ("in the past" is judged against `now`).
    fn checker(
        &self,
        header: &[String],
        now: DateTime<Utc>,
    ) -> Result<Box<dyn Checker + '_>, Vec<Problem>>;
    /// Carries out the rows of a queued run with this `header` and `uid`.
    fn runner(&self, header: &[String], uid: &str) -> Result<Arc<dyn Runner>, String>;
}

/// The pure row check of one file (a header mapped onto a kind's fields).
pub trait Checker {
    /// How many columns the header has.
    fn width(&self) -> usize;
    /// Columns that are none of the kind's fields (warned about once), and
    /// what they are not ("meeting fields").
    fn ignored(&self) -> (&[String], &'static str);
    /// Checks one row. `Ok(Some(intent))`: what to store beside the cells,
    /// for a kind whose intent depends on more than the cells (users: license
    /// ids resolved against the org now); `Ok(None)`: the intent is the cells
    /// (the request is rebuilt from them when sent). `Err`: every problem.
    /// Warnings go to `warnings`.
    fn check(
        &mut self,
        fields: &[String],
        line: u64,
        warnings: &mut Vec<Problem>,
    ) -> Result<Option<String>, Vec<Problem>>;
    /// Warnings about the whole file, once every row is read (quotas, units).
    fn finish(&self) -> Vec<Problem>;
    /// A valid row as it will be sent: (field, value) pairs for a person to
    /// read (`validate` shows the first rows so). Secrets are not shown.
    fn preview(&self, fields: &[String], line: u64) -> Vec<(&'static str, String)>;
}

/// What looking for an earlier attempt's work came to.
pub enum Reconciled {
    /// Nothing of it exists, and nothing more can land: carry the row out.
    Absent,
    /// The row's outcome (found and adopted, look again later, failed...).
    Settled(Outcome),
}

/// How the rows of one run are carried out, a row at a time, each through
/// its own [`Api`] handle (its requests paced, authenticated and logged).
pub trait Runner: Send + Sync {
    /// `row.reconcile` is set: an earlier attempt's create may have been
    /// carried out. Find what it made before anything is sent again ("not
    /// found" proves nothing until the server has had time to finish it:
    /// see [`crate::settle`]). The default finds nothing to look for: right
    /// for a kind whose every attempt starts with a lookup (users).
    fn reconcile<'a>(
        &'a self,
        _row: &'a Claimed,
        _api: &'a mut Api<'_>,
    ) -> BoxFuture<'a, Reconciled> {
        Box::pin(async { Reconciled::Absent })
    }
    /// Carries out one row.
    fn execute<'a>(&'a self, row: &'a Claimed, api: &'a mut Api<'_>) -> BoxFuture<'a, Outcome>;
    /// The final check of a succeeded row (`row.check`): an attempt before
    /// the one that succeeded may have made a second object. The default has
    /// nothing to check.
    fn check<'a>(&'a self, _row: &'a Claimed, _api: &'a mut Api<'_>) -> BoxFuture<'a, Outcome> {
        Box::pin(async { Outcome::checked() })
    }
}

/// Why a kind could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The credentials do not work.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The token was refused, even after the refresh.
    #[error("{0}")]
    Unauthorized(String),
    /// The org did not answer what the kind needs.
    #[error("{0}")]
    Org(String),
    /// The run's options do not fit the kind.
    #[error("{0}")]
    Usage(String),
}

/// The org, as a kind sees it while preparing a run: one request at a time,
/// with the run's one token (and its one refresh on a 401). A transient
/// failure (5xx, timeout, dropped connection) is tried again with backoff
/// and a 429 after its Retry-After, up to [`ORG_ATTEMPTS`] times: a run
/// should not end on one bad answer before its first row.
pub struct Org {
    client: Client,
    tokens: Arc<TokenManager>,
}

/// How many times [`Org::get`] sends a request before it gives up.
pub const ORG_ATTEMPTS: usize = 8;

/// Why one attempt of [`Org::get`] did not return.
enum OrgTry {
    /// The credentials do not work: not tried again.
    Auth(AuthError),
    /// The request failed.
    Api(ApiError),
    /// A 401 led to the one refresh: go again at once.
    Refreshed(ApiError),
}

impl Org {
    pub fn new(client: Client, tokens: Arc<TokenManager>) -> Org {
        Org { client, tokens }
    }

    /// Sends one request (`what` names it in errors), trying again as the
    /// type's doc says.
    pub async fn get<T, F, Fut>(&self, what: &str, send: F) -> Result<T, PrepareError>
    where
        F: Fn(Client, SecretString) -> Fut,
        Fut: Future<Output = Result<Answer<T>, ApiError>>,
    {
        let refreshed = std::sync::atomic::AtomicBool::new(false);
        let attempt = || async {
            let (token, generation) = self.tokens.ensure().await.map_err(OrgTry::Auth)?;
            match send(self.client.clone(), token).await {
                Ok(answer) => Ok(answer.value),
                Err(e) if e.is_unauthorized() && !refreshed.swap(true, Ordering::Relaxed) => {
                    self.tokens
                        .refresh_after(generation)
                        .await
                        .map_err(OrgTry::Auth)?;
                    Err(OrgTry::Refreshed(e))
                }
                Err(e) => Err(OrgTry::Api(e)),
            }
        };
        let result = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(BACKOFF_BASE)
                    .with_max_delay(BACKOFF_CAP)
                    .with_jitter()
                    .with_max_times(ORG_ATTEMPTS - 1),
            )
            .when(|e| match e {
                OrgTry::Refreshed(_) => true,
                OrgTry::Api(e) => e.is_retryable() || e.is_rate_limited(),
                OrgTry::Auth(_) => false,
            })
            .adjust(|e, delay| match e {
                OrgTry::Refreshed(_) => delay.map(|_| Duration::ZERO),
                OrgTry::Api(e) if e.is_rate_limited() => {
                    let wait = parse_retry_after(e.retry_after(), SystemTime::now());
                    delay.map(|d| d.max(wait))
                }
                _ => delay,
            })
            .notify(|e, delay| {
                if let OrgTry::Api(e) = e {
                    tracing::warn!("cannot {what} yet ({e}); trying again in {delay:?}");
                }
            })
            .await;
        result.map_err(|e| match e {
            OrgTry::Auth(e) => PrepareError::Auth(e),
            OrgTry::Api(e) | OrgTry::Refreshed(e) if e.is_unauthorized() => {
                PrepareError::Unauthorized(format!("cannot {what}: {e}"))
            }
            OrgTry::Api(e) | OrgTry::Refreshed(e) => {
                PrepareError::Org(format!("cannot {what}: {e}"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_found_by_its_name_and_an_unknown_one_is_refused() {
        for kind in KINDS {
            assert_eq!(find(kind.name()).unwrap().name(), kind.name());
            assert!(!kind.scopes().is_empty(), "{}", kind.name());
        }
        for kind in KINDS {
            // No two fields answer to the same header.
            let mut folded: Vec<String> = kind
                .fields()
                .iter()
                .flat_map(|f| std::iter::once(f.name).chain(f.aliases.iter().copied()))
                .map(crate::csvin::normalize_header)
                .collect();
            let n = folded.len();
            folded.sort();
            folded.dedup();
            assert_eq!(
                folded.len(),
                n,
                "{}: a header means two fields",
                kind.name()
            );
        }
        // No report column reads as a field: a report fed back in keeps the
        // file's own columns, and none of ours is taken for one of them.
        for kind in KINDS {
            let fields: Vec<String> = kind
                .fields()
                .iter()
                .flat_map(|f| std::iter::once(f.name).chain(f.aliases.iter().copied()))
                .map(crate::csvin::normalize_header)
                .collect();
            for column in crate::report::result_columns(*kind) {
                assert!(
                    !fields.contains(&crate::csvin::normalize_header(column)),
                    "{}: the report column {column} reads as a field",
                    kind.name()
                );
            }
        }
        let mut names = names();
        names.dedup();
        assert_eq!(names.len(), KINDS.len(), "names are unique");
        let Err(err) = find("user-settings-v9") else {
            panic!("an unknown kind was found")
        };
        let err = err.to_string();
        assert!(
            err.contains("user-settings-v9") && err.contains("meetings, users, user-settings"),
            "{err}"
        );
    }

    /// The org's answers come through one bad answer: the request is sent
    /// again (the simulator's seeded faults make this deterministic).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_org_request_is_tried_again_after_a_transient_failure() {
        let sim = crate::sim::start(
            crate::sim::SimConfig {
                fail_rate: 0.6,
                // The first two answers fail, the third does not.
                seed: 5,
                ..crate::sim::SimConfig::default()
            },
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
        .unwrap();
        let client = Client::new(
            crate::webex::check_base_url(&sim.base_url()).unwrap(),
            Duration::from_secs(30),
        );
        let home = tempfile::tempdir().unwrap();
        let creds = crate::auth::resolve(
            crate::auth::EnvCredentials {
                access_token: Some("sim-access-token".to_owned().into()),
                ..Default::default()
            },
            None,
        );
        let tokens = TokenManager::new(
            creds,
            client.clone(),
            crate::auth::CredentialStore::new(home.path()),
            "default",
        );
        let org = Org::new(client, Arc::new(tokens));
        let licenses = org
            .get("list the licenses", |client, token| async move {
                client.licenses(&token).await
            })
            .await;
        assert!(licenses.is_ok(), "{:?}", licenses.err());
        let stats = sim.stats();
        assert_eq!(stats.injected_failures, 2, "{stats:?}");
        assert_eq!(stats.requests, stats.injected_failures + 1);
    }
}

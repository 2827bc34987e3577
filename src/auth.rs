//! Credentials: where tokens come from, where refreshed ones are kept, and
//! the one shared refresh that all workers wait on.
//!
//! - [`resolve`] (pure) decides between the environment and the credential
//!   store.
//! - [`CredentialStore`] keeps tokens in `$WEBEX_BULK_HOME/credentials.json`,
//!   mode 0600, written atomically (temp file, fsync, rename).
//! - [`TokenManager`] hands out the current access token and performs a
//!   single-flight refresh: however many workers see a 401 at once, the
//!   token endpoint is called once; the new tokens are stored durably before
//!   anyone uses them.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::webex::{Client, GrantError, TokenGrant};

/// The environment variable naming the tool's home folder.
pub const HOME_ENV: &str = "WEBEX_BULK_HOME";

/// The tool's own folder: `$WEBEX_BULK_HOME`, else the platform config
/// folder (e.g. `~/.config/webex-bulk`).
pub fn home_dir() -> PathBuf {
    match std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => dirs::config_dir()
            .unwrap_or_else(|| PathBuf::from("."))
            .join("webex-bulk"),
    }
}

/// Credentials as the environment gives them.
#[derive(Default)]
pub struct EnvCredentials {
    pub access_token: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
}

impl EnvCredentials {
    /// Reads `WEBEX_ACCESS_TOKEN`, `WEBEX_REFRESH_TOKEN`, `WEBEX_CLIENT_ID`, `WEBEX_CLIENT_SECRET`.
    pub fn from_env() -> EnvCredentials {
        let get = |k: &str| {
            std::env::var(k)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        EnvCredentials {
            access_token: get("WEBEX_ACCESS_TOKEN").map(SecretString::from),
            refresh_token: get("WEBEX_REFRESH_TOKEN").map(SecretString::from),
            client_id: get("WEBEX_CLIENT_ID"),
            client_secret: get("WEBEX_CLIENT_SECRET").map(SecretString::from),
        }
    }
}

/// Tokens (and, for service apps and integrations, the client) kept in the
/// credential store for one profile. Secrets are `SecretString`: their
/// `Debug` shows `[REDACTED]`; only the file serializer sees them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StoredTokens {
    /// How the profile was set up: `service-app`, `integration`, or absent
    /// (tokens a run refreshed from environment variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The OAuth client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The OAuth client secret (needed for every refresh).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_opt"
    )]
    pub client_secret: Option<SecretString>,
    /// The newest access token.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_opt"
    )]
    pub access_token: Option<SecretString>,
    /// When it was issued (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_issued_at: Option<i64>,
    /// When it expires (Unix seconds), as the token endpoint said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
    /// The newest refresh token (it may rotate on every refresh).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_opt"
    )]
    pub refresh_token: Option<SecretString>,
    /// When it expires (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<i64>,
    /// The scopes the token endpoint granted, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
    /// SHA-256 of the environment refresh token this chain descends from:
    /// while the environment still holds that one, the stored tokens win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeded_from: Option<String>,
    /// When this entry was written (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
}

fn expose_opt<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(secret) => s.serialize_some(secret.expose_secret()),
        None => s.serialize_none(),
    }
}

#[derive(Default, Serialize, Deserialize)]
struct CredentialFile {
    #[serde(default)]
    profiles: BTreeMap<String, StoredTokens>,
}

/// Why credentials could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Nothing to authenticate with.
    #[error("no credentials: set WEBEX_ACCESS_TOKEN, or WEBEX_REFRESH_TOKEN with WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET")]
    Missing,
    /// The access token was refused and there is no way to refresh it.
    #[error("the access token was refused (401) and no refresh is possible: {0}")]
    CannotRefresh(&'static str),
    /// The token endpoint refused the refresh token.
    #[error(
        "the token refresh was refused ({0}); authorize again and set the new WEBEX_REFRESH_TOKEN"
    )]
    Refused(String),
    /// The token endpoint could not be reached (may pass).
    #[error("the token endpoint is unavailable: {0}")]
    Unavailable(String),
    /// The credential store could not be read or written.
    #[error("credential store {path}: {detail}")]
    Store { path: PathBuf, detail: String },
}

impl AuthError {
    /// Whether waiting and trying again may help (as opposed to a person fixing credentials).
    pub fn is_transient(&self) -> bool {
        matches!(self, AuthError::Unavailable(_))
    }
}

/// The credential file under the tool's home.
#[derive(Clone, Debug)]
pub struct CredentialStore {
    path: PathBuf,
}

impl CredentialStore {
    /// The store in `home` (the file need not exist yet).
    pub fn new(home: &Path) -> CredentialStore {
        CredentialStore {
            path: home.join("credentials.json"),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, detail: impl ToString) -> AuthError {
        AuthError::Store {
            path: self.path.clone(),
            detail: detail.to_string(),
        }
    }

    fn read(&self) -> Result<CredentialFile, AuthError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| self.err(format!("unreadable ({e}); delete it to start over"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CredentialFile::default()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// The tokens stored for `profile`.
    pub fn load(&self, profile: &str) -> Result<Option<StoredTokens>, AuthError> {
        Ok(self.read()?.profiles.remove(profile))
    }

    /// Replaces the tokens of `profile`, durably (see [`CredentialStore::write`]).
    pub fn save(&self, profile: &str, tokens: StoredTokens) -> Result<(), AuthError> {
        let mut file = self.read()?;
        file.profiles.insert(profile.to_owned(), tokens);
        self.write(&file)
    }

    /// Changes the entry of `profile` (created empty if missing), durably.
    pub fn update(
        &self,
        profile: &str,
        change: impl FnOnce(&mut StoredTokens),
    ) -> Result<(), AuthError> {
        let mut file = self.read()?;
        change(file.profiles.entry(profile.to_owned()).or_default());
        self.write(&file)
    }

    /// Forgets `profile`. Returns whether it existed.
    pub fn remove(&self, profile: &str) -> Result<bool, AuthError> {
        let mut file = self.read()?;
        let existed = file.profiles.remove(profile).is_some();
        if existed {
            self.write(&file)?;
        }
        Ok(existed)
    }

    /// The names of the stored profiles.
    pub fn profiles(&self) -> Result<Vec<String>, AuthError> {
        Ok(self.read()?.profiles.into_keys().collect())
    }

    /// Writes the whole file: a temporary file (mode 0600) in the same
    /// folder, flushed to disk, then renamed over the old one.
    fn write(&self, file: &CredentialFile) -> Result<(), AuthError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(|e| self.err(e))?;
        let bytes = serde_json::to_vec_pretty(file).expect("serializable");
        let tmp = dir.join(format!(
            ".credentials.{}.tmp",
            uuid::Uuid::new_v4().simple()
        ));
        let result = (|| -> std::io::Result<()> {
            let mut f = open_private(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(|e| self.err(e))
    }
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

/// SHA-256 of a secret, hex: lets us recognise a token without keeping it.
pub fn fingerprint(secret: &SecretString) -> String {
    hex::encode(Sha256::digest(secret.expose_secret().as_bytes()))
}

/// The credentials a run will use.
#[derive(Default)]
pub struct Credentials {
    pub access_token: Option<SecretString>,
    /// When the access token was issued and expires (Unix seconds), if known:
    /// the manager refreshes it before it runs out.
    pub access_issued_at: Option<i64>,
    pub access_expires_at: Option<i64>,
    pub refresh_token: Option<SecretString>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// Which environment refresh token the chain descends from.
    pub seeded_from: Option<String>,
}

/// Decides which tokens a run uses (pure).
///
/// - The environment holds a refresh token, and the stored tokens descend
///   from it: the stored ones are newer (they came from refreshing it, and it
///   may have rotated away), so they win.
/// - The environment holds a different refresh token: it is new input; the
///   environment wins.
/// - The environment holds no refresh token: its access token (if any) wins,
///   and the stored refresh token (if any) is kept for refreshing.
///
/// The client id and secret come from the environment when set, else from the
/// profile (`auth service-app` and `auth login` store them).
pub fn resolve(env: EnvCredentials, stored: Option<StoredTokens>) -> Credentials {
    let stored = stored.unwrap_or_default();
    let client_id = env.client_id.or(stored.client_id.clone());
    let client_secret = env.client_secret.or(stored.client_secret.clone());
    let descends = match &env.refresh_token {
        Some(rt) => stored.seeded_from.as_deref() == Some(fingerprint(rt).as_str()),
        None => false,
    };
    let stored_access = |st: &StoredTokens| {
        (
            st.access_token.clone(),
            st.access_issued_at,
            st.access_expires_at,
        )
    };
    let ((access_token, access_issued_at, access_expires_at), refresh_token, seeded_from) =
        match env.refresh_token {
            Some(env_rt) if descends => {
                let access = if stored.access_token.is_some() {
                    stored_access(&stored)
                } else {
                    (env.access_token, None, None)
                };
                (
                    access,
                    stored.refresh_token.clone().or(Some(env_rt)),
                    stored.seeded_from.clone(),
                )
            }
            Some(env_rt) => {
                let seed = Some(fingerprint(&env_rt));
                ((env.access_token, None, None), Some(env_rt), seed)
            }
            None => {
                let access = match env.access_token {
                    Some(t) => (Some(t), None, None),
                    None => stored_access(&stored),
                };
                (
                    access,
                    stored.refresh_token.clone(),
                    stored.seeded_from.clone(),
                )
            }
        };
    Credentials {
        access_token,
        access_issued_at,
        access_expires_at,
        refresh_token,
        client_id,
        client_secret,
        seeded_from,
    }
}

/// Whether an access token should be refreshed now, before it runs out
/// (pure). The margin is 5 minutes or a tenth of the token's lifetime,
/// whichever is smaller, so a 14-day token is refreshed 5 minutes before its
/// end and a 90-second test token 9 seconds before, not on every request.
pub fn needs_refresh(now: i64, issued_at: Option<i64>, expires_at: Option<i64>) -> bool {
    let Some(expires) = expires_at else {
        return false;
    };
    let lifetime = issued_at.map(|i| (expires - i).max(0)).unwrap_or(3000);
    let margin = (lifetime / 10).min(300);
    now >= expires - margin
}

struct TokenState {
    /// The access token requests use now.
    access: Option<SecretString>,
    /// When it was issued and expires (Unix seconds), if known.
    issued_at: Option<i64>,
    expires_at: Option<i64>,
    /// Bumped by every successful refresh; a worker that saw a 401 with
    /// generation N asks for a refresh "after N", so a refresh that already
    /// happened is not repeated.
    generation: u64,
    /// The refresh token to use next.
    refresh: Option<SecretString>,
    /// Set when a refresh was refused: every later ask fails at once.
    refused: Option<String>,
}

/// Hands out the access token and refreshes it once for everybody.
pub struct TokenManager {
    state: Mutex<TokenState>,
    /// Held for the whole of a refresh: the single flight.
    refresh_lock: tokio::sync::Mutex<()>,
    client: Client,
    store: CredentialStore,
    profile: String,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    seeded_from: Option<String>,
}

impl TokenManager {
    /// A manager for these credentials; refreshed tokens go to `store` under `profile`.
    pub fn new(
        creds: Credentials,
        client: Client,
        store: CredentialStore,
        profile: &str,
    ) -> TokenManager {
        TokenManager {
            state: Mutex::new(TokenState {
                access: creds.access_token,
                issued_at: creds.access_issued_at,
                expires_at: creds.access_expires_at,
                generation: 0,
                refresh: creds.refresh_token,
                refused: None,
            }),
            refresh_lock: tokio::sync::Mutex::new(()),
            client,
            store,
            profile: profile.to_owned(),
            client_id: creds.client_id,
            client_secret: creds.client_secret,
            seeded_from: creds.seeded_from,
        }
    }

    /// The current access token and its generation, as is.
    pub fn current(&self) -> Option<(SecretString, u64)> {
        let st = self.state.lock().expect("token state");
        st.access.clone().map(|t| (t, st.generation))
    }

    /// The access token to send now: refreshed first (in the shared single
    /// flight) when it is about to expire, so a long run never sends a token
    /// that dies on the way. A proactive refresh that fails is not fatal: the
    /// current token is still good for a while, and a 401 decides.
    pub async fn fresh(&self) -> Option<(SecretString, u64)> {
        let due = {
            let st = self.state.lock().expect("token state");
            let can = st.refused.is_none() && st.refresh.is_some() && self.client_secret.is_some();
            can.then_some(st.generation).filter(|_| {
                needs_refresh(chrono::Utc::now().timestamp(), st.issued_at, st.expires_at)
            })
        };
        if let Some(generation) = due {
            if let Err(e) = self.refresh_after(generation).await {
                tracing::warn!("could not refresh the access token before it expires: {e}");
            }
        }
        self.current()
    }

    /// A token at the start of a run: refreshed when there is none or it is
    /// about to expire.
    pub async fn ensure(&self) -> Result<(SecretString, u64), AuthError> {
        if self.current().is_none() {
            self.refresh_after(0).await?;
        }
        self.fresh().await.ok_or(AuthError::Missing)
    }

    /// Refreshes the access token unless someone already did since
    /// `generation` (the one the caller's 401 was for). Single flight.
    pub async fn refresh_after(&self, generation: u64) -> Result<(), AuthError> {
        let _flight = self.refresh_lock.lock().await;
        let refresh = {
            let st = self.state.lock().expect("token state");
            if st.generation != generation {
                return Ok(());
            }
            if let Some(why) = &st.refused {
                return Err(AuthError::Refused(why.clone()));
            }
            st.refresh.clone()
        };
        let (Some(refresh), Some(id), Some(secret)) = (
            refresh,
            self.client_id.as_deref(),
            self.client_secret.as_ref(),
        ) else {
            let why = "set WEBEX_REFRESH_TOKEN, WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET (or run `webex-bulk auth service-app`), or a fresh WEBEX_ACCESS_TOKEN";
            self.state.lock().expect("token state").refused = Some(why.to_owned());
            return Err(AuthError::CannotRefresh(why));
        };
        let grant = match self.client.refresh_grant(id, secret, &refresh).await {
            Ok(g) => g,
            Err(GrantError::Refused(why)) => {
                self.state.lock().expect("token state").refused = Some(why.clone());
                return Err(AuthError::Refused(why));
            }
            Err(GrantError::Unavailable(e)) => return Err(AuthError::Unavailable(e.to_string())),
        };
        let now = chrono::Utc::now().timestamp();
        let new_refresh = grant.refresh_token.clone().unwrap_or(refresh);
        // Durable before use: a crash right after this line still has the
        // (possibly rotated) refresh token.
        self.store.update(&self.profile, |entry| {
            apply_grant(entry, &grant, &new_refresh, now);
            entry.seeded_from = self.seeded_from.clone();
            if entry.client_id.is_none() {
                entry.client_id = self.client_id.clone();
            }
        })?;
        let mut st = self.state.lock().expect("token state");
        st.access = Some(grant.access_token);
        st.issued_at = Some(now);
        st.expires_at = grant.expires_in.map(|s| now + s as i64);
        st.refresh = Some(new_refresh);
        st.generation += 1;
        tracing::info!(generation = st.generation, "access token refreshed");
        Ok(())
    }
}

/// Records a token grant in a profile entry.
pub fn apply_grant(entry: &mut StoredTokens, grant: &TokenGrant, refresh: &SecretString, now: i64) {
    entry.access_token = Some(grant.access_token.clone());
    entry.access_issued_at = Some(now);
    entry.access_expires_at = grant.expires_in.map(|s| now + s as i64);
    entry.refresh_token = Some(refresh.clone());
    if let Some(s) = grant.refresh_token_expires_in {
        entry.refresh_expires_at = Some(now + s as i64);
    }
    if let Some(scope) = &grant.scope {
        entry.scopes = Some(scope.clone());
    }
    entry.updated_at = chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .to_rfc3339();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(at: Option<&str>, rt: Option<&str>) -> EnvCredentials {
        EnvCredentials {
            access_token: at.map(Into::into),
            refresh_token: rt.map(Into::into),
            client_id: Some("id".into()),
            client_secret: Some("s".into()),
        }
    }

    fn stored(at: &str, rt: &str, seed: Option<&str>) -> StoredTokens {
        StoredTokens {
            access_token: Some(at.into()),
            refresh_token: Some(rt.into()),
            seeded_from: seed.map(|s| fingerprint(&SecretString::from(s))),
            ..Default::default()
        }
    }

    fn pair(c: &Credentials) -> (Option<&str>, Option<&str>) {
        (
            c.access_token.as_ref().map(|s| s.expose_secret()),
            c.refresh_token.as_ref().map(|s| s.expose_secret()),
        )
    }

    #[test]
    fn stored_tokens_win_over_the_env_token_they_descend_from() {
        let c = resolve(
            env(Some("AT0"), Some("RT0")),
            Some(stored("AT1", "RT1", Some("RT0"))),
        );
        assert_eq!(pair(&c), (Some("AT1"), Some("RT1")));
    }

    #[test]
    fn a_different_env_refresh_token_is_new_input() {
        let c = resolve(
            env(Some("ATx"), Some("RTx")),
            Some(stored("AT1", "RT1", Some("RT0"))),
        );
        assert_eq!(pair(&c), (Some("ATx"), Some("RTx")));
        assert_eq!(c.seeded_from, Some(fingerprint(&"RTx".into())));
    }

    #[test]
    fn without_env_refresh_token_env_access_token_wins_and_stored_refresh_is_kept() {
        let c = resolve(
            env(Some("ATe"), None),
            Some(stored("AT1", "RT1", Some("RT0"))),
        );
        assert_eq!(pair(&c), (Some("ATe"), Some("RT1")));
        let c = resolve(env(None, None), Some(stored("AT1", "RT1", None)));
        assert_eq!(pair(&c), (Some("AT1"), Some("RT1")));
        let c = resolve(env(None, None), None);
        assert_eq!(pair(&c), (None, None));
    }

    #[test]
    fn the_client_comes_from_the_environment_else_the_profile() {
        let mut st = stored("AT1", "RT1", None);
        st.client_id = Some("stored-id".into());
        st.client_secret = Some("stored-secret".into());
        let c = resolve(EnvCredentials::default(), Some(st.clone()));
        assert_eq!(c.client_id.as_deref(), Some("stored-id"));
        assert_eq!(c.client_secret.unwrap().expose_secret(), "stored-secret");
        let c = resolve(env(None, None), Some(st));
        assert_eq!(c.client_id.as_deref(), Some("id"));
    }

    #[test]
    fn proactive_refresh_margin() {
        // A 14-day token: 5 minutes before the end, not earlier.
        let (issued, expires) = (0, 14 * 86_400);
        assert!(!needs_refresh(expires - 301, Some(issued), Some(expires)));
        assert!(needs_refresh(expires - 300, Some(issued), Some(expires)));
        // A 90-second token: 9 seconds before the end, so not on every request.
        assert!(!needs_refresh(10, Some(0), Some(90)));
        assert!(!needs_refresh(80, Some(0), Some(90)));
        assert!(needs_refresh(81, Some(0), Some(90)));
        // Unknown expiry: never proactively.
        assert!(!needs_refresh(i64::MAX, Some(0), None));
    }

    #[cfg(unix)]
    #[test]
    fn the_store_is_private_and_atomic() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let store = CredentialStore::new(&home);
        assert!(store.load("default").unwrap().is_none());
        store.save("default", stored("AT1", "RT1", None)).unwrap();
        store.save("other", stored("AT2", "RT2", None)).unwrap();
        let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            fs::metadata(&home).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let get = |p: &str| store.load(p).unwrap().unwrap();
        assert_eq!(get("default").access_token.unwrap().expose_secret(), "AT1");
        assert_eq!(get("other").refresh_token.unwrap().expose_secret(), "RT2");
        store
            .update("other", |e| e.scopes = Some("spark:all".into()))
            .unwrap();
        assert_eq!(
            get("other").refresh_token.unwrap().expose_secret(),
            "RT2",
            "update keeps the rest"
        );
        assert!(store.remove("other").unwrap());
        assert!(!store.remove("other").unwrap());
        assert_eq!(store.profiles().unwrap(), vec!["default".to_string()]);
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(&home).unwrap().count(), 1);
        let debug = format!("{:?}", store.load("default").unwrap());
        assert!(
            !debug.contains("AT1") && debug.contains("REDACTED"),
            "{debug}"
        );
    }
}

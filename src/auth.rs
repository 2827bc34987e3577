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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::webex::{Client, GrantError};

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

/// Tokens kept in the credential store for one profile.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct StoredTokens {
    /// The newest access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// When it expires (Unix seconds), as the token endpoint said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
    /// The newest refresh token (it may rotate on every refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When it expires (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<i64>,
    /// SHA-256 of the environment refresh token this chain descends from:
    /// while the environment still holds that one, the stored tokens win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeded_from: Option<String>,
    /// When this entry was written (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens")
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("access_expires_at", &self.access_expires_at)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("updated_at", &self.updated_at)
            .finish()
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

    /// Replaces the tokens of `profile`, durably: the file is written to a
    /// temporary file (mode 0600), flushed to disk, then renamed over the old one.
    pub fn save(&self, profile: &str, tokens: StoredTokens) -> Result<(), AuthError> {
        let mut file = self.read()?;
        file.profiles.insert(profile.to_owned(), tokens);
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(|e| self.err(e))?;
        let bytes = serde_json::to_vec_pretty(&file).expect("serializable");
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
pub struct Credentials {
    pub access_token: Option<SecretString>,
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
pub fn resolve(env: EnvCredentials, stored: Option<StoredTokens>) -> Credentials {
    let client_id = env.client_id;
    let client_secret = env.client_secret;
    match (env.refresh_token, stored) {
        (Some(env_rt), Some(st))
            if st.seeded_from.as_deref() == Some(fingerprint(&env_rt).as_str()) =>
        {
            Credentials {
                access_token: st.access_token.map(SecretString::from).or(env.access_token),
                refresh_token: st.refresh_token.map(SecretString::from).or(Some(env_rt)),
                client_id,
                client_secret,
                seeded_from: st.seeded_from,
            }
        }
        (Some(env_rt), _) => Credentials {
            seeded_from: Some(fingerprint(&env_rt)),
            access_token: env.access_token,
            refresh_token: Some(env_rt),
            client_id,
            client_secret,
        },
        (None, stored) => {
            let stored = stored.unwrap_or_default();
            Credentials {
                access_token: env
                    .access_token
                    .or(stored.access_token.map(SecretString::from)),
                refresh_token: stored.refresh_token.map(SecretString::from),
                client_id,
                client_secret,
                seeded_from: stored.seeded_from,
            }
        }
    }
}

struct TokenState {
    /// The access token requests use now.
    access: Option<SecretString>,
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
    /// How many refreshes this process performed.
    refreshes: AtomicU64,
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
            refreshes: AtomicU64::new(0),
        }
    }

    /// Whether there is anything to authenticate with at all.
    pub fn has_credentials(&self) -> bool {
        let st = self.state.lock().expect("token state");
        st.access.is_some()
            || (st.refresh.is_some() && self.client_id.is_some() && self.client_secret.is_some())
    }

    /// The current access token and its generation.
    pub fn current(&self) -> Option<(SecretString, u64)> {
        let st = self.state.lock().expect("token state");
        st.access.clone().map(|t| (t, st.generation))
    }

    /// Refreshes since a start without an access token.
    pub async fn ensure(&self) -> Result<(SecretString, u64), AuthError> {
        if let Some(t) = self.current() {
            return Ok(t);
        }
        self.refresh_after(0).await?;
        self.current().ok_or(AuthError::Missing)
    }

    /// How many refreshes this manager performed.
    pub fn refresh_count(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
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
            let why = "set WEBEX_REFRESH_TOKEN, WEBEX_CLIENT_ID and WEBEX_CLIENT_SECRET, or a fresh WEBEX_ACCESS_TOKEN";
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
        let now = chrono::Utc::now();
        let new_refresh = grant.refresh_token.clone().unwrap_or(refresh);
        // Durable before use: a crash right after this line still has the
        // (possibly rotated) refresh token.
        self.store.save(
            &self.profile,
            StoredTokens {
                access_token: Some(grant.access_token.expose_secret().to_owned()),
                access_expires_at: grant.expires_in.map(|s| now.timestamp() + s as i64),
                refresh_token: Some(new_refresh.expose_secret().to_owned()),
                refresh_expires_at: grant
                    .refresh_token_expires_in
                    .map(|s| now.timestamp() + s as i64),
                seeded_from: self.seeded_from.clone(),
                updated_at: now.to_rfc3339(),
            },
        )?;
        let mut st = self.state.lock().expect("token state");
        st.access = Some(grant.access_token);
        st.refresh = Some(new_refresh);
        st.generation += 1;
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(generation = st.generation, "access token refreshed");
        Ok(())
    }
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
        assert_eq!(
            store
                .load("default")
                .unwrap()
                .unwrap()
                .access_token
                .as_deref(),
            Some("AT1")
        );
        assert_eq!(
            store
                .load("other")
                .unwrap()
                .unwrap()
                .refresh_token
                .as_deref(),
            Some("RT2")
        );
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(&home).unwrap().count(), 1);
        assert!(!format!("{:?}", store.load("default").unwrap()).contains("AT1"));
    }
}

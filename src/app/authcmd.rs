//! `webex-bulk auth ...`: set up, inspect and forget the credentials of a
//! profile. Service apps (client id, secret, refresh token from the
//! Developer Portal) and integrations (browser consent, OAuth authorization
//! code with `state` and PKCE S256).

use std::io::IsTerminal;
use std::time::Duration;

use base64::Engine as _;
use rand::RngCore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::app::{fail, Exit, Failure};
use crate::auth::{self, apply_grant, CredentialStore, EnvCredentials, StoredTokens, TokenManager};
use crate::cli::{AuthCommand, LoginArgs, ServiceAppArgs, TargetArgs};
use crate::webex::{check_base_url, receive_callback, Client, Person};

/// A refresh token with less than this left gets a warning.
pub const REFRESH_WARNING_DAYS: i64 = 14;

/// Carries out an `auth` subcommand.
pub async fn auth(command: AuthCommand) -> Result<Exit, Failure> {
    match command {
        AuthCommand::ServiceApp(args) => service_app(args).await,
        AuthCommand::Login(args) => login(args).await,
        AuthCommand::Status { target, json } => status(target, json).await,
        AuthCommand::Logout { profile } => logout(&profile),
    }
}

fn client_for(target: &TargetArgs) -> Result<Client, Failure> {
    let base = target
        .base_url
        .clone()
        .unwrap_or_else(|| crate::app::DEFAULT_BASE_URL.to_owned());
    let base = check_base_url(&base).map_err(|e| fail(Exit::Usage, e))?;
    Ok(Client::new(base, Duration::from_secs(60)))
}

/// A secret from the environment, else a hidden prompt on the terminal; never from argv.
fn read_secret(var: &str, prompt: &str) -> Result<SecretString, Failure> {
    if let Some(v) = std::env::var(var)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    {
        return Ok(v.into());
    }
    if !std::io::stdin().is_terminal() {
        return Err(fail(
            Exit::Usage,
            format!(
                "{var} is not set and there is no terminal to ask on; set {var} in the environment"
            ),
        ));
    }
    match rpassword::prompt_password(format!("{prompt} (input hidden): ")) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned().into()),
        Ok(_) => Err(fail(Exit::Usage, format!("no {prompt} given"))),
        Err(e) => Err(fail(Exit::Usage, format!("cannot read the {prompt}: {e}"))),
    }
}

fn when(ts: Option<i64>, now: i64) -> String {
    match ts {
        Some(t) => {
            let left = t - now;
            let at = chrono::DateTime::from_timestamp(t, 0)
                .map(|d| d.to_rfc3339())
                .unwrap_or_default();
            if left <= 0 {
                format!("{at} (expired)")
            } else {
                format!(
                    "{at} (in {})",
                    crate::progress::humanize_long(Duration::from_secs(left as u64))
                )
            }
        }
        None => "unknown".into(),
    }
}

fn who(p: &Person) -> String {
    format!(
        "{} <{}> in org {}",
        p.display_name.as_deref().unwrap_or("?"),
        p.emails.first().map(String::as_str).unwrap_or("?"),
        p.org_id.as_deref().unwrap_or("?")
    )
}

/// The API client and the OAuth client secret, which every setup needs.
fn client_and_secret(target: &TargetArgs) -> Result<(Client, SecretString), Failure> {
    let client = client_for(target)?;
    let secret = read_secret("WEBEX_CLIENT_SECRET", "client secret")?;
    Ok((client, secret))
}

async fn service_app(args: ServiceAppArgs) -> Result<Exit, Failure> {
    let (client, secret) = match client_and_secret(&args.target) {
        Ok(pair) => pair,
        Err(f) => return Err(f),
    };
    let refresh = match read_secret("WEBEX_REFRESH_TOKEN", "refresh token") {
        Ok(s) => s,
        Err(f) => return Err(f),
    };
    let grant = match client
        .refresh_grant(&args.client_id, &secret, &refresh)
        .await
    {
        Ok(g) => g,
        Err(e) => {
            return Err(fail(
                Exit::Auth,
                format!(
                    "{e}; check the client id, the secret and the refresh token (Developer Portal)"
                ),
            ))
        }
    };
    let now = chrono::Utc::now().timestamp();
    let mut entry = StoredTokens {
        kind: Some("service-app".into()),
        client_id: Some(args.client_id.clone()),
        client_secret: Some(secret),
        ..StoredTokens::default()
    };
    let new_refresh = grant.refresh_token.clone().unwrap_or(refresh);
    apply_grant(&mut entry, &grant, &new_refresh, now);
    finish_setup(
        &client,
        &args.target.profile,
        entry,
        &grant.access_token,
        "service app",
    )
    .await
}

/// Stores a new profile entry and shows whom it acts as.
async fn finish_setup(
    client: &Client,
    profile: &str,
    entry: StoredTokens,
    access: &SecretString,
    kind: &str,
) -> Result<Exit, Failure> {
    let now = chrono::Utc::now().timestamp();
    let (access_at, refresh_at) = (entry.access_expires_at, entry.refresh_expires_at);
    let store = CredentialStore::new(&auth::home_dir());
    if let Err(e) = store.save(profile, entry) {
        return Err(fail(Exit::Usage, e));
    }
    let person = match client.me(access).await {
        Ok(a) => who(&a.value),
        Err(e) => format!("(could not look up the user: {e})"),
    };
    println!("profile {profile}: {kind} acting as {person}");
    println!("  access token expires {}", when(access_at, now));
    println!("  refresh token expires {}", when(refresh_at, now));
    println!("  stored in {}", store.path().display());
    Ok(Exit::Ok)
}

/// PKCE: a random verifier and its S256 challenge (pure but for the randomness).
pub fn pkce_pair(random: &[u8]) -> (SecretString, String) {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let verifier = b64.encode(random);
    let challenge = b64.encode(Sha256::digest(verifier.as_bytes()));
    (verifier.into(), challenge)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// Why a login callback is refused (pure check of the redirect's query).
pub fn check_callback(
    query: &crate::webex::CallbackQuery,
    expected_state: &str,
) -> Result<SecretString, String> {
    if query.get("state").map(String::as_str) != Some(expected_state) {
        return Err("the redirect's `state` does not match the one this login sent: refusing it (a stale tab or a forged request); run `auth login` again".into());
    }
    if let Some(err) = query.get("error") {
        let detail = query
            .get("error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Err(match err.as_str() {
            "access_denied" => {
                format!("the authorization was declined in the browser (access_denied{detail})")
            }
            other => format!("the authorization failed ({other}{detail})"),
        });
    }
    query
        .get("code")
        .filter(|c| !c.is_empty())
        .map(|c| SecretString::from(c.clone()))
        .ok_or_else(|| "the redirect carries no code".into())
}

async fn login(args: LoginArgs) -> Result<Exit, Failure> {
    let (client, secret) = match client_and_secret(&args.target) {
        Ok(pair) => pair,
        Err(f) => return Err(f),
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await {
        Ok(l) => l,
        Err(e) => return Err(fail(Exit::Usage, format!("cannot listen on localhost:{}: {e}; choose another --port (it must match the integration's redirect URI)", args.port))),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(args.port);
    let redirect_uri = format!("http://localhost:{port}/callback");
    let state = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<24>());
    let (verifier, challenge) = pkce_pair(&random_bytes::<48>());
    let url = client.authorize_url(
        &args.client_id,
        &redirect_uri,
        &args.scopes,
        &state,
        &challenge,
    );
    eprintln!("Open this address in a browser and allow webex-bulk access (waiting up to {}s):\n\n  {url}\n", args.timeout);
    if !args.no_browser {
        open_browser(url.as_str());
    }
    let Some(query) = receive_callback(listener, Duration::from_secs(args.timeout)).await else {
        return Err(fail(Exit::Auth, format!("no authorization arrived within {}s; run `auth login` again (and check that the redirect URI is {redirect_uri})", args.timeout)));
    };
    let code = match check_callback(&query, &state) {
        Ok(code) => code,
        Err(why) => return Err(fail(Exit::Auth, why)),
    };
    let grant = match client
        .code_grant(&args.client_id, &secret, &code, &redirect_uri, &verifier)
        .await
    {
        Ok(g) => g,
        Err(e) => return Err(fail(Exit::Auth, format!("exchanging the code failed: {e}"))),
    };
    let now = chrono::Utc::now().timestamp();
    let mut entry = StoredTokens {
        kind: Some("integration".into()),
        client_id: Some(args.client_id.clone()),
        client_secret: Some(secret),
        ..StoredTokens::default()
    };
    let Some(refresh) = grant.refresh_token.clone() else {
        return Err(fail(
            Exit::Auth,
            "the token endpoint returned no refresh token",
        ));
    };
    apply_grant(&mut entry, &grant, &refresh, now);
    finish_setup(
        &client,
        &args.target.profile,
        entry,
        &grant.access_token,
        "integration",
    )
    .await
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if spawned.is_err() {
        eprintln!("(could not open a browser; copy the address above into one)");
    }
}

/// What `auth status` found.
#[derive(serde::Serialize)]
struct StatusReport {
    profile: String,
    kind: Option<String>,
    client_id: Option<String>,
    user: Option<Person>,
    scopes: Option<Vec<String>>,
    access_expires_at: Option<String>,
    refresh_expires_at: Option<String>,
    warnings: Vec<String>,
}

/// The warnings of a profile (pure).
pub fn status_warnings(
    scopes: Option<&str>,
    refresh_expires_at: Option<i64>,
    now: i64,
) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(t) = refresh_expires_at {
        let days = (t - now) / 86_400;
        if t <= now {
            w.push("the refresh token has expired: authorize again".to_owned());
        } else if days < REFRESH_WARNING_DAYS {
            w.push(format!("the refresh token expires in {days} days: authorize again before then (auth service-app or auth login)"));
        }
    }
    match scopes {
        Some(granted) => {
            let granted: Vec<&str> = granted.split_whitespace().collect();
            for kind in crate::kinds::KINDS {
                let job = kind.name();
                let missing: Vec<&str> = kind
                    .scopes()
                    .iter()
                    .copied()
                    .filter(|s| !granted.contains(s))
                    .collect();
                if !missing.is_empty() {
                    w.push(format!(
                        "{job} jobs need scope {} which this token lacks",
                        missing.join(" and ")
                    ));
                }
            }
        }
        None => w.push(
            "the granted scopes are unknown (the token came from the environment)".to_owned(),
        ),
    }
    w
}

async fn status(target: TargetArgs, json: bool) -> Result<Exit, Failure> {
    let client = match client_for(&target) {
        Ok(c) => c,
        Err(f) => return Err(f),
    };
    let store = CredentialStore::new(&auth::home_dir());
    let stored = match store.load(&target.profile) {
        Ok(s) => s,
        Err(e) => return Err(fail(Exit::Usage, e)),
    };
    let creds = auth::resolve(EnvCredentials::from_env(), stored.clone());
    if creds.access_token.is_none() && creds.refresh_token.is_none() {
        return Err(fail(Exit::Usage, format!("no credentials for profile {} (set them up with `webex-bulk auth service-app` or `auth login`)", target.profile)));
    }
    let tokens = TokenManager::new(creds, client.clone(), store.clone(), &target.profile);
    let (token, generation) = match tokens.ensure().await {
        Ok(t) => t,
        Err(e) => return Err(fail(Exit::Auth, e)),
    };
    let person = match client.me(&token).await {
        Ok(a) => a.value,
        Err(e) if e.is_unauthorized() => {
            if let Err(e) = tokens.refresh_after(generation).await {
                return Err(fail(Exit::Auth, e));
            }
            let Some((token, _)) = tokens.current() else {
                return Err(fail(Exit::Auth, "no access token"));
            };
            match client.me(&token).await {
                Ok(a) => a.value,
                Err(e) => return Err(fail(Exit::Auth, format!("the token is refused: {e}"))),
            }
        }
        Err(e) => {
            return Err(fail(
                Exit::Auth,
                format!("cannot ask who the token belongs to: {e}"),
            ))
        }
    };
    // A refresh above may have replaced the stored tokens: read them again.
    let entry = store
        .load(&target.profile)
        .ok()
        .flatten()
        .or(stored)
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    let from_env = std::env::var_os("WEBEX_ACCESS_TOKEN").is_some() && entry.access_token.is_none();
    let scopes = if from_env { None } else { entry.scopes.clone() };
    let report = StatusReport {
        profile: target.profile.clone(),
        kind: entry.kind.clone(),
        client_id: entry.client_id.clone(),
        user: Some(person.clone()),
        scopes: scopes
            .as_ref()
            .map(|s| s.split_whitespace().map(str::to_owned).collect()),
        access_expires_at: entry
            .access_expires_at
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|d| d.to_rfc3339()),
        refresh_expires_at: entry
            .refresh_expires_at
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|d| d.to_rfc3339()),
        warnings: status_warnings(scopes.as_deref(), entry.refresh_expires_at, now),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("json"));
        return Ok(Exit::Ok);
    }
    println!(
        "profile {}: {}",
        report.profile,
        report
            .kind
            .as_deref()
            .unwrap_or("tokens from the environment")
    );
    println!("  user:          {}", who(&person));
    if let Some(id) = &report.client_id {
        println!("  client id:     {id}");
    }
    println!(
        "  scopes:        {}",
        scopes.as_deref().unwrap_or("unknown")
    );
    println!(
        "  access token:  expires {}",
        when(entry.access_expires_at, now)
    );
    println!(
        "  refresh token: expires {}",
        when(entry.refresh_expires_at, now)
    );
    for w in &report.warnings {
        println!("  warning: {w}");
    }
    Ok(Exit::Ok)
}

fn logout(profile: &str) -> Result<Exit, Failure> {
    let store = CredentialStore::new(&auth::home_dir());
    match store.remove(profile) {
        Ok(true) => {
            println!(
                "forgot the tokens of profile {profile} ({})",
                store.path().display()
            );
            Ok(Exit::Ok)
        }
        Ok(false) => {
            println!("profile {profile} has no stored tokens");
            Ok(Exit::Ok)
        }
        Err(e) => Err(fail(Exit::Usage, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        // RFC 7636, Appendix B: the verifier from these 32 octets and its challenge.
        let octets = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
            37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        let (verifier, challenge) = pkce_pair(&octets);
        assert_eq!(
            verifier.expose_secret(),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn callbacks_are_checked_for_state_errors_and_code() {
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<crate::webex::CallbackQuery>()
        };
        assert_eq!(
            check_callback(&q(&[("state", "s1"), ("code", "c")]), "s1")
                .unwrap()
                .expose_secret(),
            "c"
        );
        assert!(
            check_callback(&q(&[("state", "other"), ("code", "c")]), "s1")
                .unwrap_err()
                .contains("does not match")
        );
        assert!(check_callback(&q(&[("code", "c")]), "s1")
            .unwrap_err()
            .contains("does not match"));
        assert!(
            check_callback(&q(&[("state", "s1"), ("error", "access_denied")]), "s1")
                .unwrap_err()
                .contains("declined")
        );
        assert!(check_callback(&q(&[("state", "s1")]), "s1")
            .unwrap_err()
            .contains("no code"));
    }

    #[test]
    fn warnings_for_expiring_refresh_tokens_and_missing_scopes() {
        let day = 86_400;
        let all = "spark:all meeting:admin_schedule_write meeting:admin_schedule_read meeting:admin_preferences_read spark-admin:people_write spark-admin:licenses_read";
        assert!(status_warnings(Some(all), Some(20 * day), 0).is_empty());
        let w = status_warnings(Some(all), Some(9 * day), 0);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("expires in 9 days"));
        let w = status_warnings(Some("meeting:admin_schedule_write"), None, 0);
        assert_eq!(
            w,
            [
                "users jobs need scope spark-admin:people_write and spark-admin:licenses_read which this token lacks",
                "user-settings jobs need scope meeting:admin_schedule_read and meeting:admin_preferences_read which this token lacks",
            ]
        );
        assert!(status_warnings(None, None, 0)[0].contains("unknown"));
    }
}

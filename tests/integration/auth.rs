//! `auth ...`: service apps, the browser login (scripted), status, logout,
//! and how runs use what they store.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::util::*;
use webex_bulk::sim::{SimConfig, SimHandle};

/// Only the client secret and refresh token, as `auth service-app` reads them.
fn setup_env() -> Env {
    Env {
        vars: vec![
            ("WEBEX_CLIENT_SECRET", "sim-client-secret".into()),
            ("WEBEX_REFRESH_TOKEN", "sim-refresh-token".into()),
        ],
        ..Env::default()
    }
}

async fn service_app(work: &Work, sim: &SimHandle) -> Output {
    run(
        work,
        &setup_env(),
        &[
            "auth",
            "service-app",
            "--client-id",
            "sim-client-id",
            "--base-url",
            &sim.base_url(),
        ],
    )
    .await
}

fn stored(work: &Work) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(work.home().join("credentials.json")).unwrap())
        .unwrap()
}

fn secrets_in(work: &Work) -> Vec<String> {
    let p = &stored(work)["profiles"]["default"];
    let mut v: Vec<String> = ["access_token", "refresh_token", "client_secret"]
        .iter()
        .filter_map(|k| p[*k].as_str().map(str::to_owned))
        .collect();
    v.extend([
        "sim-client-secret".to_string(),
        "sim-refresh-token".to_string(),
    ]);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_app_is_stored_privately_and_runs_use_it() {
    let sim = start_sim(SimConfig {
        rotate_refresh_tokens: true,
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let out = service_app(&work, &sim).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("service app acting as Sim Admin <admin@sim.example.com> in org"),
        "{out:?}"
    );
    assert!(out.stdout.contains("refresh token expires"), "{out:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(work.home().join("credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let profile = &stored(&work)["profiles"]["default"];
    assert_eq!(profile["kind"], "service-app");
    assert_ne!(
        profile["refresh_token"], "sim-refresh-token",
        "the rotated token was kept"
    );

    // A run with no credentials in the environment uses the profile.
    let out = work
        .run_meetings(&sim, &Env::default(), "m.csv", &meetings_csv(5), &["-vv"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_each_created_once(&sim, 5);
    for secret in secrets_in(&work) {
        assert!(
            !out.all().contains(&secret),
            "a secret leaked into the run's output"
        );
    }

    // Status, then logout.
    let status = run(
        &work,
        &Env::default(),
        &["auth", "status", "--base-url", &sim.base_url(), "--json"],
    )
    .await;
    assert_eq!(status.code, 0, "{status:?}");
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(v["user"]["emails"][0], "admin@sim.example.com");
    assert_eq!(v["kind"], "service-app");
    assert!(v["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "meeting:admin_schedule_write"));
    assert_eq!(v["warnings"], serde_json::json!([]));
    for secret in secrets_in(&work) {
        assert!(
            !status.all().contains(&secret),
            "auth status printed a secret"
        );
    }
    let out = run(&work, &Env::default(), &["auth", "logout"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = run(
        &work,
        &Env::default(),
        &["auth", "status", "--base-url", &sim.base_url()],
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_warns_of_an_expiring_refresh_token_and_missing_scopes() {
    let sim = start_sim(SimConfig {
        refresh_token_lifetime: Duration::from_secs(9 * 86_400 + 3600),
        granted_scopes: "spark:all meeting:admin_schedule_write".into(),
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    assert_eq!(service_app(&work, &sim).await.code, 0);
    let out = run(
        &work,
        &Env::default(),
        &["auth", "status", "--base-url", &sim.base_url()],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("warning: the refresh token expires in 9 days"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(
            "warning: users jobs need scope spark-admin:people_write and spark-admin:licenses_read"
        ),
        "{out:?}"
    );
    assert!(!out.stdout.contains("meetings jobs need"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_refreshes_before_the_token_expires() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    assert_eq!(service_app(&work, &sim).await.code, 0);
    assert_eq!(sim.stats().refreshes, 1);
    // The stored 1-hour token has 10 seconds left: inside the 5-minute margin.
    let path = work.home().join("credentials.json");
    let mut v = stored(&work);
    let now = chrono::Utc::now().timestamp();
    v["profiles"]["default"]["access_issued_at"] = (now - 3590).into();
    v["profiles"]["default"]["access_expires_at"] = (now + 10).into();
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let out = work
        .run_meetings(&sim, &Env::default(), "m.csv", &meetings_csv(20), &[])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let stats = sim.stats();
    assert_eq!(stats.refreshes, 2, "one proactive refresh: {stats:?}");
    assert_eq!(
        stats.unauthorized, 0,
        "no request was sent with a dying token: {stats:?}"
    );
    // A fresh token is not refreshed again on every request.
    let out = work
        .run_meetings(&sim, &Env::default(), "m2.csv", &meetings_csv(21), &[])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(sim.stats().refreshes, 2);
}

/// What the scripted browser does with the authorize URL before following it.
enum Browser {
    Honest,
    ForgeState,
    SwapChallenge,
    Absent,
}

async fn login(sim: &SimHandle, work: &Work, browser: Browser, timeout: &str) -> Output {
    let env = Env {
        vars: vec![("WEBEX_CLIENT_SECRET", "sim-client-secret".into())],
        ..Env::default()
    };
    let args = [
        "auth",
        "login",
        "--client-id",
        "sim-client-id",
        "--port",
        "0",
        "--no-browser",
        "--timeout",
        timeout,
        "--base-url",
        &sim.base_url(),
    ];
    let mut child = command(work, &env, &args).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let url = loop {
        let line = tokio::time::timeout(COMMAND_TIMEOUT, stderr.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("the login prints the address");
        seen.push_str(&line);
        seen.push('\n');
        if let Some(u) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break url::Url::parse(u).unwrap();
        }
    };
    assert!(url.path().ends_with("/authorize"), "{url}");
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_type"], "code");
    assert!(
        q["redirect_uri"].starts_with("http://localhost:")
            && q["redirect_uri"].ends_with("/callback")
    );
    let mut url = url.clone();
    let rewrite = |url: &mut url::Url, key: &str, value: &str| {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .map(|(k, v)| {
                if k == key {
                    (k, value.to_owned())
                } else {
                    (k, v)
                }
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    };
    match browser {
        Browser::Honest => {}
        Browser::ForgeState => rewrite(&mut url, "state", "forged-state"),
        Browser::SwapChallenge => rewrite(
            &mut url,
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        Browser::Absent => {}
    }
    if !matches!(browser, Browser::Absent) {
        // The browser follows the redirect to the local callback, as a person's would.
        let page = reqwest::get(url).await.unwrap();
        assert!(page.status().is_success(), "{page:?}");
    }
    let rest = tokio::time::timeout(COMMAND_TIMEOUT, async {
        let mut s = String::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            s.push_str(&line);
            s.push('\n');
        }
        s
    })
    .await
    .unwrap();
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: seen + &rest,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_login_stores_an_integration_that_runs_can_use() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let out = login(&sim, &work, Browser::Honest, "120").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("integration acting as Sim Admin"),
        "{out:?}"
    );
    assert_eq!(stored(&work)["profiles"]["default"]["kind"], "integration");
    for secret in secrets_in(&work) {
        assert!(!out.all().contains(&secret), "the login printed a secret");
    }
    let out = work
        .run_meetings(&sim, &Env::default(), "m.csv", &meetings_csv(3), &[])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_each_created_once(&sim, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_with_a_forged_state_is_refused() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let out = login(&sim, &work, Browser::ForgeState, "120").await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("`state` does not match"), "{out:?}");
    assert!(
        !work.home().join("credentials.json").exists(),
        "nothing stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_whose_pkce_verifier_does_not_match_is_refused() {
    let sim = start_sim(SimConfig::default()).await;
    let work = Work::new();
    let out = login(&sim, &work, Browser::SwapChallenge, "120").await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("exchanging the code failed") && out.stderr.contains("invalid_grant"),
        "{out:?}"
    );
    assert!(
        !work.home().join("credentials.json").exists(),
        "nothing stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_or_abandoned_login_says_so() {
    let sim = start_sim(SimConfig {
        deny_consent: true,
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let out = login(&sim, &work, Browser::Honest, "120").await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr
            .contains("declined in the browser (access_denied"),
        "{out:?}"
    );
    let out = login(&sim, &work, Browser::Absent, "1").await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("no authorization arrived within 1s"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_seen_by_many_workers_is_refreshed_once() {
    // The token the run starts with is not valid: all 64 first requests get 401 at once.
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(200),
        rotate_refresh_tokens: true,
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let env = Env {
        access_token: Some("expired-access-token".into()),
        ..Env::sim()
    };
    let out = work
        .run_meetings(
            &sim,
            &env,
            "m.csv",
            &meetings_csv(100),
            &["--rate", "unlimited", "--concurrency", "64"],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let stats = sim.stats();
    assert!(
        stats.unauthorized >= 32,
        "many workers saw the 401: {stats:?}"
    );
    assert_eq!(stats.refreshes, 1, "exactly one refresh: {stats:?}");
    assert_each_created_once(&sim, 100);
    // The rotated refresh token was stored, 0600, and is not the one we started with.
    let path = work.home().join("credentials.json");
    assert!(!std::fs::read_to_string(&path)
        .unwrap()
        .contains("sim-refresh-token"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(
        !out.all().contains("expired-access-token") && !out.all().contains("sim-refresh-token")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_pauses_the_run_and_resume_finishes_it() {
    let sim = start_sim(SimConfig {
        token_max_requests: Some(10),
        ..SimConfig::default()
    })
    .await;
    let work = Work::new();
    let revoked = Env {
        refresh_token: Some("revoked-refresh-token".into()),
        ..Env::sim()
    };
    let out = work
        .run_meetings(&sim, &revoked, "m.csv", &meetings_csv(30), &["-vv"])
        .await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("authentication failed"), "{out:?}");
    assert!(out.stderr.contains("--resume 1"), "{out:?}");
    for secret in [
        "revoked-refresh-token",
        "sim-access-token",
        "sim-client-secret",
    ] {
        assert!(
            !out.all().contains(secret),
            "no token in any output, even at -vv"
        );
    }
    let created = sim.stats().creates;
    assert!((1..30).contains(&created), "{created}");
    assert_eq!(work.status().await[0]["run"]["state"], "paused");

    // The admin fixes the credentials and resumes.
    let out = work.resume(&sim, &Env::sim(), &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_each_created_once(&sim, 30);
}

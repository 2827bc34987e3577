//! The authorization-code flow with PKCE, the token answer and `GET /v1/people/me`.

use std::collections::HashMap;

use url::Url;

use super::*;

/// RFC 7636 appendix B: a verifier and its S256 challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// Another well-formed verifier.
const WRONG_VERIFIER: &str = "wrongwrongwrongwrongwrongwrongwrongwrongwrong";
/// A loopback redirect URI that already has a query.
const REDIRECT: &str = "http://127.0.0.1:9/callback?keep=1";
/// A state that needs encoding.
const STATE: &str = "s t&u=v/1+é";

/// A simulator and a client that does not follow redirects.
async fn launch_no_redirect(config: SimConfig) -> (SimHandle, Client) {
    let (sim, _) = launch(config).await;
    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    (sim, client)
}

/// The usual authorization query, with `changes` replacing or (value `None`) removing
/// parameters.
fn authorize_query(changes: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    let mut query: Vec<(&str, Option<&str>)> = vec![
        ("client_id", Some("sim-client-id")),
        ("response_type", Some("code")),
        ("redirect_uri", Some(REDIRECT)),
        ("scope", Some("spark:all meeting:admin_schedule_write")),
        ("state", Some(STATE)),
        ("code_challenge", Some(CHALLENGE)),
        ("code_challenge_method", Some("S256")),
    ];
    for (name, value) in changes {
        match query.iter_mut().find(|(known, _)| known == name) {
            Some(entry) => entry.1 = *value,
            None => query.push((name, *value)),
        }
    }
    query
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), value?.to_owned())))
        .collect()
}

async fn authorize(sim: &SimHandle, client: &Client, changes: &[(&str, Option<&str>)]) -> Response {
    client
        .get(sim.authorize_url())
        .query(&authorize_query(changes))
        .send()
        .await
        .unwrap()
}

/// The redirect of a 302: the URL without its query, and the query parameters.
fn redirected(response: &Response) -> (String, HashMap<String, String>) {
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap();
    let url = Url::parse(location).unwrap();
    let params = url.query_pairs().into_owned().collect();
    let mut bare = url.clone();
    bare.set_query(None);
    (bare.to_string(), params)
}

/// Authorizes with the usual query and returns the code.
async fn code(sim: &SimHandle, client: &Client, changes: &[(&str, Option<&str>)]) -> String {
    let (_, params) = redirected(&authorize(sim, client, changes).await);
    params["code"].clone()
}

async fn redeem(
    sim: &SimHandle,
    client: &Client,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("client_id", "sim-client-id"),
        ("client_secret", "sim-client-secret"),
        ("code", code),
        ("redirect_uri", redirect_uri),
    ];
    form.extend(verifier.map(|verifier| ("code_verifier", verifier)));
    client
        .post(format!("{}/access_token", sim.base_url()))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// Asserts a 400 `invalid_grant` and returns its description.
async fn invalid_grant(response: Response) -> String {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "invalid_grant", "{error}");
    error["error_description"].as_str().unwrap().to_owned()
}

async fn me(sim: &SimHandle, client: &Client, token: &str) -> Response {
    authed(client.get(format!("{}/people/me", sim.base_url())), token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn code_grant_with_pkce_signs_in() {
    let (sim, client) = launch_no_redirect(SimConfig::default()).await;
    assert_eq!(
        sim.authorize_url(),
        format!("http://{}/v1/authorize", sim.addr())
    );
    let (target, params) = redirected(&authorize(&sim, &client, &[]).await);
    assert_eq!(target, "http://127.0.0.1:9/callback");
    assert_eq!(params["keep"], "1");
    assert_eq!(params["state"], STATE);
    assert!(!params.contains_key("error"));

    let response = redeem(&sim, &client, &params["code"], REDIRECT, Some(VERIFIER)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let grant: Value = response.json().await.unwrap();
    assert_eq!(grant["token_type"], "Bearer");
    assert_eq!(grant["expires_in"], 3600);
    assert_eq!(grant["refresh_token_expires_in"], 90 * 24 * 3600);
    assert_eq!(grant["scope"], DEFAULT_GRANTED_SCOPES);
    let access = grant["access_token"].as_str().unwrap();
    let refresh_token = grant["refresh_token"].as_str().unwrap();
    assert_ne!(access, TOKEN);
    assert_ne!(refresh_token, "sim-refresh-token");

    let response = me(&sim, &client, access).await;
    assert_eq!(response.status(), StatusCode::OK);
    let person: Value = response.json().await.unwrap();
    assert_eq!(person["emails"], json!(["admin@sim.example.com"]));
    assert_eq!(person["displayName"], "Sim Admin");
    assert_eq!(person["firstName"], "Sim");
    assert_eq!(person["lastName"], "Admin");
    assert_eq!(person["orgId"], DEFAULT_ORG_ID);
    assert_eq!(person["type"], "person");
    assert_eq!(person["status"], "active");
    assert!(!person["id"].as_str().unwrap().is_empty());
    assert!(person["created"].as_str().unwrap().ends_with('Z'));

    // The new refresh token is registered too.
    let response = refresh(&sim, &client, refresh_token, "sim-client-secret").await;
    assert_eq!(response.status(), StatusCode::OK);
    let refreshed: Value = response.json().await.unwrap();
    assert_eq!(refreshed["scope"], DEFAULT_GRANTED_SCOPES);
    assert_eq!(refreshed["refresh_token_expires_in"], 7_776_000);

    let stats = sim.stats();
    assert_eq!(
        (
            stats.requests,
            stats.code_grants,
            stats.refreshes,
            stats.refresh_failures
        ),
        (4, 1, 1, 0)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_verifier_is_refused_and_uses_up_the_code() {
    let (sim, client) = launch_no_redirect(SimConfig::default()).await;
    let code = code(&sim, &client, &[]).await;
    let description =
        invalid_grant(redeem(&sim, &client, &code, REDIRECT, Some(WRONG_VERIFIER)).await).await;
    assert!(description.contains("PKCE"), "{description}");
    invalid_grant(redeem(&sim, &client, &code, REDIRECT, Some(VERIFIER)).await).await;

    // A missing verifier, a verifier for a code without challenge: PKCE errors too.
    let code = self::code(&sim, &client, &[]).await;
    let description = invalid_grant(redeem(&sim, &client, &code, REDIRECT, None).await).await;
    assert!(description.contains("PKCE"), "{description}");
    let plain = [("code_challenge", None), ("code_challenge_method", None)];
    let code = self::code(&sim, &client, &plain).await;
    let description =
        invalid_grant(redeem(&sim, &client, &code, REDIRECT, Some(VERIFIER)).await).await;
    assert!(description.contains("PKCE"), "{description}");

    let stats = sim.stats();
    assert_eq!((stats.code_grants, stats.refresh_failures), (0, 4));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_code_works_once_and_only_with_its_redirect_uri() {
    let (sim, client) = launch_no_redirect(SimConfig::default()).await;
    let plain = [("code_challenge", None), ("code_challenge_method", None)];
    let code = self::code(&sim, &client, &plain).await;

    // A wrong client secret is refused before the code is looked at: it stays usable.
    let response = client
        .post(format!("{}/access_token", sim.base_url()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "sim-client-id"),
            ("client_secret", "wrong"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );

    let response = redeem(&sim, &client, &code, REDIRECT, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    invalid_grant(redeem(&sim, &client, &code, REDIRECT, None).await).await;

    // Another redirect URI: refused, and the code is gone.
    let code = self::code(&sim, &client, &plain).await;
    let description =
        invalid_grant(redeem(&sim, &client, &code, "http://127.0.0.1:9/callback", None).await)
            .await;
    assert!(description.contains("redirect_uri"), "{description}");
    invalid_grant(redeem(&sim, &client, &code, REDIRECT, None).await).await;
    invalid_grant(redeem(&sim, &client, "made-up", REDIRECT, None).await).await;

    let stats = sim.stats();
    assert_eq!((stats.code_grants, stats.refresh_failures), (1, 5));
    sim.shutdown().await;
}

#[tokio::test]
async fn declined_consent_redirects_with_access_denied() {
    let (sim, client) = launch_no_redirect(SimConfig {
        deny_consent: true,
        ..SimConfig::default()
    })
    .await;
    let (target, params) = redirected(&authorize(&sim, &client, &[]).await);
    assert_eq!(target, "http://127.0.0.1:9/callback");
    assert_eq!(params["error"], "access_denied");
    assert!(!params["error_description"].is_empty());
    assert_eq!(params["state"], STATE);
    assert_eq!(params["keep"], "1");
    assert!(!params.contains_key("code"));
    // Without a state, none comes back.
    let (_, params) = redirected(&authorize(&sim, &client, &[("state", None)]).await);
    assert_eq!(params["error"], "access_denied");
    assert!(!params.contains_key("state"));
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_authorization_requests() {
    // Rate limit and failure injection do not apply to the consent page.
    let (sim, client) = launch_no_redirect(SimConfig {
        rate_limit: Some(0.001),
        fail_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    // No safe redirect: a 400 error body.
    for changes in [
        [("client_id", Some("someone-else"))],
        [("client_id", None)],
        [("redirect_uri", None)],
        [("redirect_uri", Some("not a url"))],
        [("redirect_uri", Some("http://127.0.0.1:9/cb#frag"))],
    ] {
        let response = authorize(&sim, &client, &changes).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{changes:?}");
        assert!(response.headers().get("location").is_none());
        let error: Value = response.json().await.unwrap();
        assert!(!error["error"].as_str().unwrap().is_empty());
        assert!(error["trackingId"].as_str().unwrap().starts_with("SIM_"));
    }
    // Otherwise an error redirect carrying the state.
    for (changes, expected) in [
        (
            vec![("response_type", Some("token"))],
            "unsupported_response_type",
        ),
        (vec![("response_type", None)], "invalid_request"),
        (
            vec![("code_challenge_method", Some("plain"))],
            "invalid_request",
        ),
        (vec![("code_challenge_method", None)], "invalid_request"),
        (vec![("code_challenge", None)], "invalid_request"),
        (
            vec![("code_challenge", Some("too-short"))],
            "invalid_request",
        ),
    ] {
        let (_, params) = redirected(&authorize(&sim, &client, &changes).await);
        assert_eq!(params["error"], expected, "{changes:?}");
        assert_eq!(params["state"], STATE);
        assert!(!params.contains_key("code"));
    }
    let (_, params) = redirected(&authorize(&sim, &client, &[]).await);
    assert!(params.contains_key("code"));

    let stats = sim.stats();
    assert_eq!(
        (stats.requests, stats.rate_limited, stats.injected_failures),
        (12, 0, 0)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn configured_scopes_lifetime_and_org() {
    let config = SimConfig {
        granted_scopes: "spark:all".to_owned(),
        refresh_token_lifetime: Duration::from_secs(3600 + 59 * 60 + 59),
        org_id: "my-org".to_owned(),
        ..SimConfig::default()
    };
    let (sim, client) = launch_no_redirect(config).await;
    let response = refresh(&sim, &client, "sim-refresh-token", "sim-client-secret").await;
    let grant: Value = response.json().await.unwrap();
    assert_eq!(grant["scope"], "spark:all");
    assert_eq!(grant["refresh_token_expires_in"], 7199);

    let code = code(&sim, &client, &[]).await;
    let grant: Value = redeem(&sim, &client, &code, REDIRECT, Some(VERIFIER))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(grant["scope"], "spark:all");
    assert_eq!(grant["refresh_token_expires_in"], 7199);

    let person: Value = me(&sim, &client, TOKEN).await.json().await.unwrap();
    assert_eq!(person["orgId"], "my-org");
    // /people/me is a normal API call: it needs a valid token.
    let response = me(&sim, &client, "nope").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(sim.stats().unauthorized, 1);
    sim.shutdown().await;
}

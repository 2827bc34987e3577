//! What every `/v1/*` request passes before its handler: access tokens (budget,
//! lifetime, refresh), the rate limit and its Retry-After window, injected failures
//! and their seed, latency; and `/_sim/stats` and shutdown.

use super::*;

#[tokio::test]
async fn access_token_stops_after_its_request_budget_and_refresh_rotates() {
    let config = SimConfig {
        token_max_requests: Some(2),
        rotate_refresh_tokens: true,
        ..SimConfig::default()
    };
    let (sim, client) = launch(config).await;
    let url = format!("{}/meetings", sim.base_url());
    for _ in 0..2 {
        let response = authed(client.get(&url), TOKEN).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = authed(client.get(&url), TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let error: Value = response.json().await.unwrap();
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("valid access token"));
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Wrong secret: 401 invalid_client. Unsupported grant: 400.
    let response = refresh(&sim, &client, "sim-refresh-token", "wrong").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    let response = client
        .post(format!("{}/access_token", sim.base_url()))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );

    // A good refresh rotates: the new access token works, the old refresh token is refused.
    let response = refresh(&sim, &client, "sim-refresh-token", "sim-client-secret").await;
    assert_eq!(response.status(), StatusCode::OK);
    let grant: Value = response.json().await.unwrap();
    assert_eq!(grant["token_type"], "Bearer");
    assert_eq!(grant["expires_in"], 3600);
    assert_eq!(grant["refresh_token_expires_in"], 7_776_000);
    let new_refresh = grant["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, "sim-refresh-token");
    let new_access = grant["access_token"].as_str().unwrap();
    let response = authed(client.get(&url), new_access).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let response = refresh(&sim, &client, "sim-refresh-token", "sim-client-secret").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "invalid_grant");
    assert!(error["trackingId"].as_str().unwrap().starts_with("SIM_"));
    let response = refresh(&sim, &client, new_refresh, "sim-client-secret").await;
    assert_eq!(response.status(), StatusCode::OK);

    let stats = sim.stats();
    assert_eq!(
        (stats.unauthorized, stats.refreshes, stats.refresh_failures),
        (2, 2, 3)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limit_opens_a_retry_after_window() {
    // One request per 1000 s: the first passes, the second opens a long window.
    let config = SimConfig {
        rate_limit: Some(0.001),
        retry_after_secs: 600,
        early_grace: Duration::ZERO,
        ..SimConfig::default()
    };
    let (sim, client) = launch(config).await;
    let url = format!("{}/meetings", sim.base_url());
    assert_eq!(
        authed(client.get(&url), TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    for _ in 0..3 {
        let response = authed(client.get(&url), TOKEN).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "600");
        let error: Value = response.json().await.unwrap();
        assert!(error["trackingId"].is_string());
    }
    // The rate limit comes before auth, and the token endpoint is exempt.
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let response = refresh(&sim, &client, "sim-refresh-token", "sim-client-secret").await;
    assert_eq!(response.status(), StatusCode::OK);

    let stats = sim.stats();
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.rate_limited, 4);
    assert_eq!(stats.in_window_requests, 3);
    assert_eq!(stats.early_requests, 3);
    assert_eq!(stats.unauthorized, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn requests_in_flight_within_the_grace_are_not_early() {
    let config = SimConfig {
        rate_limit: Some(0.001),
        retry_after_secs: 600,
        retry_after_raw: Some("rand(30),add(30)".to_owned()),
        early_grace: Duration::from_secs(600),
        ..SimConfig::default()
    };
    let (sim, client) = launch(config).await;
    let url = format!("{}/meetings", sim.base_url());
    for expected in [
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let response = authed(client.get(&url), TOKEN).send().await.unwrap();
        assert_eq!(response.status(), expected);
        if expected == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.headers()["retry-after"], "rand(30),add(30)");
        }
    }
    let stats = sim.stats();
    assert_eq!(
        (
            stats.rate_limited,
            stats.in_window_requests,
            stats.early_requests
        ),
        (2, 1, 0)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_closed_window_is_not_extended() {
    // A one-second window; after it the bucket is still empty, so the next request
    // opens a new window rather than counting as in-window.
    let config = SimConfig {
        rate_limit: Some(0.001),
        retry_after_secs: 1,
        ..SimConfig::default()
    };
    let (sim, client) = launch(config).await;
    let url = format!("{}/meetings", sim.base_url());
    assert_eq!(
        authed(client.get(&url), TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let limited = authed(client.get(&url), TOKEN).send().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let limited = authed(client.get(&url), TOKEN).send().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let stats = sim.stats();
    assert_eq!((stats.rate_limited, stats.in_window_requests), (2, 0));
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_failures_do_nothing() {
    let config = SimConfig {
        fail_rate: 1.0,
        ..SimConfig::default()
    };
    let (sim, client) = launch(config).await;
    for _ in 0..5 {
        let response = create(
            &sim,
            &client,
            &meeting("Never", 60, "jane@example.com", "t"),
        )
        .await;
        assert!(
            [500, 502, 503].contains(&response.status().as_u16()),
            "{}",
            response.status()
        );
        let error: Value = response.json().await.unwrap();
        assert!(error["message"].as_str().unwrap().contains("injected"));
    }
    // Auth comes first: a bad token is a 401, not an injected failure.
    let response = authed(client.get(format!("{}/meetings", sim.base_url())), "bad")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let stats = sim.stats();
    assert_eq!(
        (stats.injected_failures, stats.creates, stats.unauthorized),
        (5, 0, 1)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn stats_endpoint_is_open_and_uncounted() {
    let (sim, client) = launch(SimConfig::default()).await;
    let response = client
        .get(format!("{}/rooms", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = authed(client.get(format!("{}/rooms", sim.base_url())), TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let url = format!("http://{}/_sim/stats", sim.addr());
    let stats: SimStats = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats, sim.stats());
    assert_eq!((stats.requests, stats.unauthorized), (2, 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let (sim, client) = launch(SimConfig::default()).await;
    let addr = sim.addr();
    sim.shutdown().await;
    let result = client.get(format!("http://{addr}/_sim/stats")).send().await;
    assert!(result.is_err());
}

#[tokio::test]
async fn on_arrival_a_429_is_answered_at_once_while_the_accepted_request_works() {
    // One request an hour, each taking an hour: of two sent together, one is
    // let in (and works for the hour), the other refused at once.
    let (sim, client) = launch(SimConfig {
        rate_limit: Some(1.0 / 3600.0),
        rate_limit_on_arrival: true,
        latency: Duration::from_secs(3600),
        ..SimConfig::default()
    })
    .await;
    let url = format!("{}/meetings", sim.base_url());
    let send = || authed(client.get(&url), TOKEN).send();
    let (a, b) = (send(), send());
    tokio::pin!(a, b);
    let first = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::select! {
            r = &mut a => r,
            r = &mut b => r,
        }
    })
    .await
    .expect("a 429 does not wait for the latency");
    let response = first.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let stats = sim.stats();
    assert_eq!((stats.requests, stats.rate_limited), (2, 1));
    assert_eq!(stats.in_flight, 1, "the one let in is still working");
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_every_api_answer() {
    let latency = Duration::from_millis(150);
    let (sim, client) = launch(SimConfig {
        latency,
        ..SimConfig::default()
    })
    .await;
    let began = std::time::Instant::now();
    let response = authed(client.get(format!("{}/meetings", sim.base_url())), TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(began.elapsed() >= latency);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_create_whose_client_gave_up_during_the_latency_is_still_carried_out() {
    let (sim, _) = launch(SimConfig {
        latency: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    // This client gives up long before the answer.
    let impatient = Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let body = meeting("Late", 60, "host@example.com", "late-1");
    let sent = authed(
        impatient.post(format!("{}/meetings", sim.base_url())),
        TOKEN,
    )
    .json(&body)
    .send()
    .await;
    assert!(sent.is_err(), "the client timed out");
    // The server finishes the work anyway.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sim.stats().creates == 0 {
        assert!(std::time::Instant::now() < deadline, "never created");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.meetings().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_dropped_answer_ends_the_work_and_is_not_left_in_flight() {
    let (sim, client) = launch(SimConfig {
        drop_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    for i in 0..5 {
        let body = meeting("Dropped", 60, "host@example.com", &format!("drop-{i}"));
        let sent = authed(client.post(format!("{}/meetings", sim.base_url())), TOKEN)
            .json(&body)
            .send()
            .await;
        assert!(sent.is_err(), "no answer");
    }
    assert_eq!(sim.stats().creates, 5, "each create was carried out");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sim.stats().in_flight > 0 {
        assert!(std::time::Instant::now() < deadline, "{:?}", sim.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sim.stats().max_in_flight <= 2, "{:?}", sim.stats());
    sim.shutdown().await;
}

#[tokio::test]
async fn tokens_expire_with_their_lifetime() {
    // A zero lifetime: every access token is dead on arrival; expires_in says so.
    let (sim, client) = launch(SimConfig {
        token_lifetime: Some(Duration::ZERO),
        ..SimConfig::default()
    })
    .await;
    let url = format!("{}/meetings", sim.base_url());
    let response = authed(client.get(&url), TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = refresh(&sim, &client, "sim-refresh-token", "sim-client-secret").await;
    let grant: Value = response.json().await.unwrap();
    assert_eq!(grant["expires_in"], 0);
    assert_eq!(grant["refresh_token"], "sim-refresh-token");
    let access = grant["access_token"].as_str().unwrap();
    let response = authed(client.get(&url), access).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    sim.shutdown().await;
}

#[tokio::test]
async fn failure_decisions_follow_the_seed() {
    async fn statuses(seed: u64) -> Vec<u16> {
        let (sim, client) = launch(SimConfig {
            fail_rate: 0.5,
            seed,
            ..SimConfig::default()
        })
        .await;
        let mut seen = Vec::new();
        for _ in 0..24 {
            let response = authed(client.get(format!("{}/meetings", sim.base_url())), TOKEN)
                .send()
                .await
                .unwrap();
            seen.push(response.status().as_u16());
        }
        assert_eq!(
            sim.stats().injected_failures as usize,
            seen.iter().filter(|s| **s >= 500).count()
        );
        sim.shutdown().await;
        seen
    }
    let first = statuses(7).await;
    assert_eq!(first, statuses(7).await);
    assert!(
        first.contains(&200) && first.iter().any(|status| *status >= 500),
        "{first:?}"
    );
}

//! Meetings (`/v1/meetings`): create, find, validation, dropped and slow creates,
//! the handle's planted duplicates and deletes, and paged listings.

use super::*;

#[tokio::test]
async fn create_then_find_by_tag_host_and_window() {
    let (sim, client) = launch(SimConfig::default()).await;
    let host = "jane.doe@example.com";
    let response = create(&sim, &client, &meeting("Soon", 60, host, "row-1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    let number = created["meetingNumber"].as_str().unwrap();
    assert!(number.len() == 9 && number.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(created["hostEmail"], host);
    assert_eq!(created["hostDisplayName"], "Jane Doe");
    assert_eq!(created["meetingType"], "meetingSeries");
    assert_eq!(created["state"], "active");
    assert_eq!(created["timezone"], "UTC");
    assert_eq!(created["integrationTags"], json!(["row-1"]));
    assert_eq!(
        created["webLink"],
        format!("https://sim.webex.com/sim/j.php?MTID=m{id}")
    );
    assert!(created.get("invitees").is_none());
    assert!(!created["password"].as_str().unwrap().is_empty());

    // Same tag again: still created, counted as a duplicate. Ten days out.
    let later = create(
        &sim,
        &client,
        &meeting("Later", 10 * 24 * 60, host, "row-1"),
    )
    .await;
    assert_eq!(later.status(), StatusCode::OK);

    // Default window [now, now + 7 d) holds only the first.
    let found = list(
        &sim,
        &client,
        &[("integrationTag", "row-1"), ("hostEmail", host)],
    )
    .await;
    assert_eq!(titles(&found), ["Soon"]);
    assert_eq!(found[0], created);
    // Only `from`: [from, from + 7 d); only `to`: [to - 7 d, to).
    let from = in_minutes(9 * 24 * 60);
    let found = list(&sim, &client, &[("hostEmail", host), ("from", &from)]).await;
    assert_eq!(titles(&found), ["Later"]);
    let to = in_minutes(3 * 24 * 60);
    let found = list(&sim, &client, &[("hostEmail", host), ("to", &to)]).await;
    assert_eq!(titles(&found), ["Soon"]);
    // Both bounds, sorted by start; max trims.
    let (from, to) = (in_minutes(0), in_minutes(20 * 24 * 60));
    let window = [
        ("hostEmail", host),
        ("from", from.as_str()),
        ("to", to.as_str()),
    ];
    assert_eq!(
        titles(&list(&sim, &client, &window).await),
        ["Soon", "Later"]
    );
    let trimmed = [window.as_slice(), &[("max", "1")]].concat();
    assert_eq!(titles(&list(&sim, &client, &trimmed).await), ["Soon"]);
    // Other tag, other host, and no hostEmail (the admin's own meetings) find nothing;
    // an invitee finds it.
    assert!(list(
        &sim,
        &client,
        &[("integrationTag", "row-2"), ("hostEmail", host)]
    )
    .await
    .is_empty());
    assert!(list(&sim, &client, &[("hostEmail", "other@example.com")])
        .await
        .is_empty());
    assert!(list(&sim, &client, &[("integrationTag", "row-1")])
        .await
        .is_empty());
    assert_eq!(
        list(&sim, &client, &[("hostEmail", "guest@example.com")])
            .await
            .len(),
        1
    );

    // GET by id, DELETE, then 404s.
    let url = format!("{}/meetings/{id}", sim.base_url());
    let got: Value = authed(client.get(&url), TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, created);
    let deleted = authed(client.delete(&url), TOKEN)
        .query(&[("hostEmail", host)])
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    for request in [client.get(&url), client.delete(&url)] {
        let response = authed(request, TOKEN).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body: Value = response.json().await.unwrap();
        assert!(body["trackingId"].as_str().unwrap().starts_with("SIM_"));
    }

    let stats = sim.stats();
    assert_eq!((stats.creates, stats.duplicates, stats.meetings), (2, 1, 1));
    assert_eq!(stats.requests, 15);
    assert_eq!(sim.meetings().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn local_times_are_read_and_answered_in_the_timezone() {
    let (sim, client) = launch(SimConfig::default()).await;
    let body = json!({
        "title": "Berlin", "start": "2030-01-12 09:00:00", "end": "2030-07-12T08:00:00Z",
        "timezone": "Europe/Berlin", "agenda": "Plan", "recurrence": "FREQ=DAILY;COUNT=2"
    });
    // The end is months away: too long. Fix it and try again.
    let response = create(&sim, &client, &body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = json!({
        "title": "Berlin", "start": "2030-01-12 09:00:00", "end": "2030-01-12T08:30:00Z",
        "timezone": "Europe/Berlin", "agenda": "Plan", "recurrence": "FREQ=DAILY;COUNT=2"
    });
    let created: Value = create(&sim, &client, &body).await.json().await.unwrap();
    assert_eq!(created["start"], "2030-01-12T09:00:00+01:00");
    assert_eq!(created["end"], "2030-01-12T09:30:00+01:00");
    assert_eq!(created["timezone"], "Europe/Berlin");
    assert_eq!(created["agenda"], "Plan");
    assert_eq!(created["recurrence"], "FREQ=DAILY;COUNT=2");
    assert_eq!(created["hostEmail"], "admin@sim.example.com");
    sim.shutdown().await;
}

#[tokio::test]
async fn validation_errors_are_400_with_the_tracking_id() {
    let (sim, client) = launch(SimConfig::default()).await;
    let cases = [
        (
            json!({"start": in_minutes(60), "end": in_minutes(120)}),
            "title is required.",
        ),
        (
            json!({"title": "t", "start": in_minutes(60), "end": in_minutes(65)}),
            "at least 10 minutes",
        ),
        (
            json!({"title": "t", "start": in_minutes(-60), "end": in_minutes(60)}),
            "before the current",
        ),
        (
            json!({"title": "t", "start": in_minutes(60), "end": in_minutes(30)}),
            "end must be after start",
        ),
        (
            json!({"title": "t", "start": in_minutes(60), "end": in_minutes(120), "timezone": "Nowhere"}),
            "timezone 'Nowhere'",
        ),
        (
            json!({"title": "t", "start": in_minutes(60), "end": in_minutes(120), "integrationTags": ["x".repeat(65)]}),
            "integrationTags[0] can be at most 64",
        ),
        (
            json!({"title": "t", "start": in_minutes(60), "end": in_minutes(120), "invitees": [{"email": "nope"}]}),
            "invitees[0].email 'nope'",
        ),
    ];
    for (index, (body, expected)) in cases.iter().enumerate() {
        let tracking = format!("TEST_{index}");
        let response = authed(client.post(format!("{}/meetings", sim.base_url())), TOKEN)
            .header("TrackingID", &tracking)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(response.headers()["trackingid"], tracking.as_str());
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["trackingId"], tracking);
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        assert_eq!(error["errors"][0]["description"], message);
    }
    let response = authed(client.get(format!("{}/meetings", sim.base_url())), TOKEN)
        .query(&[("max", "101")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(sim.stats().creates, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_create_is_stored_but_unanswered() {
    let config = SimConfig {
        drop_rate: 1.0,
        ..SimConfig::default()
    };
    let (sim, client) = launch(config).await;
    let body = meeting("Dropped", 60, "jane@example.com", "row-9");
    let result = authed(client.post(format!("{}/meetings", sim.base_url())), TOKEN)
        .json(&body)
        .send()
        .await;
    let error = result.expect_err("the connection should be dropped");
    assert!(!error.is_timeout(), "{error}");
    let stored = sim.meetings();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["title"], "Dropped");
    let found = list(
        &sim,
        &client,
        &[
            ("integrationTag", "row-9"),
            ("hostEmail", "jane@example.com"),
        ],
    )
    .await;
    assert_eq!(found, stored);
    // Invalid creates are answered normally, not dropped.
    let response = create(&sim, &client, &json!({"title": "no times"})).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let stats = sim.stats();
    assert_eq!((stats.creates, stats.dropped, stats.meetings), (1, 1, 1));
    sim.shutdown().await;
}

/// `GET /_sim/stats` over HTTP.
async fn http_stats(sim: &SimHandle, client: &Client) -> SimStats {
    let url = format!("http://{}/_sim/stats", sim.addr());
    client.get(&url).send().await.unwrap().json().await.unwrap()
}

/// Polls `/_sim/stats` until `done` holds; panics after 20 s.
pub(super) async fn wait_for_stats(
    sim: &SimHandle,
    client: &Client,
    done: impl Fn(&SimStats) -> bool,
) {
    let polling = async {
        loop {
            if done(&http_stats(sim, client).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), polling)
        .await
        .expect("the simulator's counters never got there");
}

/// Every create slow, taking `delay`.
fn slow_config(delay: Duration) -> SimConfig {
    SimConfig {
        slow_create_rate: 1.0,
        slow_create_delay: delay,
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn slow_create_answers_after_the_delay_and_is_invisible_before() {
    let delay = Duration::from_millis(800);
    let (sim, client) = launch(slow_config(delay)).await;
    let host = "jane@example.com";
    let body = meeting("Slow", 60, host, "slow-1");
    let began = std::time::Instant::now();
    let request = authed(client.post(format!("{}/meetings", sim.base_url())), TOKEN).json(&body);
    let answer = tokio::spawn(request.send());
    wait_for_stats(&sim, &client, |stats| stats.slow_creates == 1).await;
    let query = [("integrationTag", "slow-1"), ("hostEmail", host)];
    assert!(list(&sim, &client, &query).await.is_empty());
    assert!(sim.meetings().is_empty());
    let stats = sim.stats();
    assert_eq!((stats.creates, stats.slow_creates_pending), (0, 1));

    let response = answer.await.unwrap().unwrap();
    assert!(began.elapsed() >= delay);
    assert_eq!(response.status(), StatusCode::OK);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["title"], "Slow");
    assert_eq!(list(&sim, &client, &query).await, [created]);
    let stats = sim.stats();
    assert_eq!(
        (
            stats.creates,
            stats.slow_creates,
            stats.slow_creates_pending,
            stats.meetings
        ),
        (1, 1, 0, 1)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_create_is_stored_after_the_client_gave_up() {
    let (sim, client) = launch(slow_config(Duration::from_millis(600))).await;
    let impatient = Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let host = "jane@example.com";
    let body = meeting("Abandoned", 60, host, "slow-2");
    let result = authed(
        impatient.post(format!("{}/meetings", sim.base_url())),
        TOKEN,
    )
    .json(&body)
    .send()
    .await;
    let error = result.expect_err("the client should time out");
    assert!(error.is_timeout(), "{error}");
    assert!(sim.meetings().is_empty());

    wait_for_stats(&sim, &client, |stats| {
        stats.slow_creates == 1 && stats.slow_creates_pending == 0
    })
    .await;
    let found = list(
        &sim,
        &client,
        &[("integrationTag", "slow-2"), ("hostEmail", host)],
    )
    .await;
    assert_eq!(titles(&found), ["Abandoned"]);
    let stats = sim.stats();
    assert_eq!((stats.creates, stats.dropped, stats.meetings), (1, 0, 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_create_can_also_drop_its_answer() {
    let config = SimConfig {
        drop_rate: 1.0,
        ..slow_config(Duration::from_millis(300))
    };
    let (sim, client) = launch(config).await;
    let body = meeting("Slow and dropped", 60, "jane@example.com", "slow-3");
    let result = authed(client.post(format!("{}/meetings", sim.base_url())), TOKEN)
        .json(&body)
        .send()
        .await;
    let error = result.expect_err("the connection should be dropped");
    assert!(!error.is_timeout(), "{error}");
    let stats = sim.stats();
    assert_eq!(
        (
            stats.creates,
            stats.slow_creates,
            stats.slow_creates_pending,
            stats.dropped
        ),
        (1, 1, 0, 1)
    );
    assert_eq!(titles(&sim.meetings()), ["Slow and dropped"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn handle_plants_duplicates_and_deletes_behind_the_clients_back() {
    let (sim, client) = launch(SimConfig::default()).await;
    let host = "jane@example.com";
    let response = create(&sim, &client, &meeting("Twice", 60, host, "row-7")).await;
    let original: Value = response.json().await.unwrap();
    let id = original["id"].as_str().unwrap();
    let copy_id = sim.duplicate_meeting(id).unwrap();
    assert_ne!(copy_id, id);
    assert_eq!(sim.duplicate_meeting("no-such-meeting"), None);

    let query = [("integrationTag", "row-7"), ("hostEmail", host)];
    let found = list(&sim, &client, &query).await;
    assert_eq!(found.len(), 2);
    assert_eq!(found[0], original);
    let copy = &found[1];
    assert_eq!(copy["id"], copy_id.as_str());
    assert_ne!(copy["meetingNumber"], original["meetingNumber"]);
    for field in ["title", "start", "end", "hostEmail", "integrationTags"] {
        assert_eq!(copy[field], original[field], "{field}");
    }
    let stats = sim.stats();
    assert_eq!((stats.creates, stats.duplicates, stats.meetings), (1, 1, 2));

    assert!(sim.delete_meeting(id));
    assert!(!sim.delete_meeting(id));
    let found = list(&sim, &client, &query).await;
    assert_eq!(found, std::slice::from_ref(copy));
    let response = authed(
        client.get(format!("{}/meetings/{id}", sim.base_url())),
        TOKEN,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.stats().meetings, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn meeting_listings_page_through_link_headers() {
    let (sim, client) = launch(SimConfig::default()).await;
    let host = "jane@example.com";
    let base = chrono::DateTime::from_timestamp(Utc::now().timestamp() + 7200, 0).unwrap();
    // Four distinct starts, later ones created first: ties are broken by creation order.
    let mut expected = Vec::new();
    for index in 0..25_i64 {
        let start = base + chrono::TimeDelta::minutes(30 * (3 - index % 4));
        let body = json!({
            "title": format!("m{index}"),
            "start": start.to_rfc3339(),
            "end": (start + chrono::TimeDelta::hours(1)).to_rfc3339(),
            "hostEmail": host,
            "integrationTags": ["paged"],
        });
        let created: Value = create(&sim, &client, &body).await.json().await.unwrap();
        expected.push((
            3 - index % 4,
            index,
            created["id"].as_str().unwrap().to_owned(),
        ));
    }
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, _, id)| id).collect();

    let first = format!(
        "{}/meetings?integrationTag=paged&hostEmail=jane%40example.com&max=10",
        sim.base_url()
    );
    let (_, link) = page(&client, &first).await;
    let link = link.unwrap();
    let prefix = format!(
        "{}/meetings?integrationTag=paged&hostEmail=jane%40example.com&max=10&cursor=",
        sim.base_url()
    );
    assert!(link.starts_with(&prefix), "{link}");
    // A meeting of the first page deleted before the next pages are read shifts nothing.
    let deleted = expected[0].clone();
    let pages = all_pages(&client, first, || assert!(sim.delete_meeting(&deleted))).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    let ids: Vec<&str> = pages
        .iter()
        .flatten()
        .map(|item| item["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, expected);

    // A cursor the simulator did not issue is a 400.
    let response = authed(client.get(format!("{prefix}bogus")), TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}

//! People (`/v1/people`) and licenses (`/v1/licenses`, `PATCH /v1/licenses/users`).

use super::*;

/// A create body for `email` with a first and last name and `licenses`.
fn person(email: &str, licenses: &[&str]) -> Value {
    json!({
        "emails": [email],
        "firstName": "Jane",
        "lastName": "Doe",
        "department": "Sales",
        "title": "GM",
        "licenses": licenses,
    })
}

async fn create_person(sim: &SimHandle, client: &Client, body: &Value) -> Response {
    authed(client.post(format!("{}/people", sim.base_url())), TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn find_by_email(sim: &SimHandle, client: &Client, email: &str) -> Vec<Value> {
    let response = authed(client.get(format!("{}/people", sim.base_url())), TOKEN)
        .query(&[("email", email)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

async fn put_person(sim: &SimHandle, client: &Client, id: &str, body: &Value) -> Response {
    authed(client.put(format!("{}/people/{id}", sim.base_url())), TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn patch_licenses(sim: &SimHandle, client: &Client, body: &Value) -> Response {
    authed(
        client.patch(format!("{}/licenses/users", sim.base_url())),
        TOKEN,
    )
    .json(body)
    .send()
    .await
    .unwrap()
}

/// `consumedUnits` of license `id` as `GET /v1/licenses` answers it.
async fn consumed(sim: &SimHandle, client: &Client, id: &str) -> u64 {
    let response = authed(client.get(format!("{}/licenses", sim.base_url())), TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    assert_eq!(items, &sim.licenses());
    let license = items.iter().find(|item| item["id"] == id).unwrap();
    license["consumedUnits"].as_u64().unwrap()
}

/// The default config with "Webex Assistant" down to `units`.
fn assistant_units(units: u64) -> SimConfig {
    let mut config = SimConfig::default();
    for license in &mut config.licenses {
        if license.id == LICENSE_ASSISTANT {
            license.total_units = units;
        }
    }
    config
}

#[tokio::test]
async fn create_then_get_by_email_and_id() {
    let (sim, client) = launch(SimConfig::default()).await;
    let licenses = [LICENSE_MESSAGING, LICENSE_MEETING_ACME];
    let response = create_person(&sim, &client, &person("jane.doe@example.com", &licenses)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("Y2lzY29zcGFyazovL3VzL1BFT1BMRS"), "{id}");
    assert_eq!(created["emails"], json!(["jane.doe@example.com"]));
    assert_eq!(created["displayName"], "Jane Doe");
    assert_eq!(created["orgId"], DEFAULT_ORG_ID);
    assert_eq!(created["status"], "active");
    assert_eq!(created["licenses"], json!(licenses));
    assert_eq!(created["siteUrls"], json!(["acme.webex.com"]));
    assert!(created["created"].as_str().unwrap().ends_with('Z'));

    // Email lookup is exact and case-insensitive.
    assert_eq!(
        find_by_email(&sim, &client, "JANE.DOE@example.com").await,
        std::slice::from_ref(&created)
    );
    assert!(find_by_email(&sim, &client, "jane@example.com")
        .await
        .is_empty());
    let response = authed(client.get(format!("{}/people/{id}", sim.base_url())), TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), created);
    let response = authed(
        client.get(format!("{}/people/nobody", sim.base_url())),
        TOKEN,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.people(), [created]);
    assert_eq!(consumed(&sim, &client, LICENSE_MESSAGING).await, 1);
    assert_eq!(consumed(&sim, &client, LICENSE_MEETING_ACME).await, 1);
    assert_eq!(consumed(&sim, &client, LICENSE_MEETING_ACME_EU).await, 0);

    // Invalid creates: 400 in the usual error shape, nothing stored.
    let invalid = [
        json!({"firstName": "No", "lastName": "Email"}),
        json!({"emails": ["not-an-email"], "displayName": "X"}),
        json!({"emails": ["noname@example.com"]}),
    ];
    for body in invalid {
        let response = create_person(&sim, &client, &body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["errors"][0]["description"].is_string(), "{error}");
        assert!(error["trackingId"].is_string(), "{error}");
    }
    let response = create_person(&sim, &client, &person("x@example.com", &["bogus"])).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["message"], "License not recognized");
    assert_eq!(error["errors"][0]["errorCode"], 400000);
    let response = create_person(
        &sim,
        &client,
        &json!({"emails": ["y@example.com"], "displayName": "Y", "orgId": "other"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // Without an email filter: everyone, up to max.
    create_person(&sim, &client, &person("second@example.com", &[])).await;
    let response = authed(client.get(format!("{}/people", sim.base_url())), TOKEN)
        .query(&[("max", "1")])
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    assert_eq!(sim.people().len(), 2);
    assert_eq!(sim.stats().people_created, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_second_create_with_the_email_is_a_conflict() {
    let (sim, client) = launch(SimConfig::default()).await;
    let body = person("jo@example.com", &[LICENSE_MESSAGING]);
    assert_eq!(
        create_person(&sim, &client, &body).await.status(),
        StatusCode::OK
    );
    let again = person("JO@example.com", &[LICENSE_MESSAGING]);
    let response = create_person(&sim, &client, &again).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let error: Value = response.json().await.unwrap();
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    assert_eq!(sim.people().len(), 1);
    assert_eq!(consumed(&sim, &client, LICENSE_MESSAGING).await, 1);
    let stats = sim.stats();
    assert_eq!((stats.people_created, stats.people_duplicates), (1, 0));
    sim.shutdown().await;
}

#[tokio::test]
async fn put_replaces_everything_and_clears_what_is_left_out() {
    let config = SimConfig {
        people: vec![SimPerson {
            email: "ann@example.com".to_owned(),
            first_name: Some("Ann".to_owned()),
            last_name: Some("Lee".to_owned()),
            department: Some("Sales".to_owned()),
            title: Some("GM".to_owned()),
            licenses: vec![LICENSE_MESSAGING.to_owned(), LICENSE_ASSISTANT.to_owned()],
            ..SimPerson::default()
        }],
        ..SimConfig::default()
    };
    let (sim, client) = launch(config).await;
    let before = sim.people().remove(0);
    assert_eq!(before["displayName"], "Ann Lee");
    assert_eq!(consumed(&sim, &client, LICENSE_ASSISTANT).await, 1);
    let id = before["id"].as_str().unwrap();

    // displayName is required; unknown ids are 404.
    let response = put_person(&sim, &client, id, &json!({"firstName": "Ann"})).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = put_person(&sim, &client, "nobody", &json!({"displayName": "X"})).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Only displayName, lastName and one license: the rest is cleared.
    let body = json!({
        "displayName": "Ann B. Lee",
        "lastName": "Lee",
        "licenses": [LICENSE_MESSAGING],
    });
    let response = put_person(&sim, &client, id, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let after: Value = response.json().await.unwrap();
    assert_eq!(after["displayName"], "Ann B. Lee");
    assert_eq!(after["lastName"], "Lee");
    for gone in ["firstName", "nickName", "department", "title"] {
        assert!(after.get(gone).is_none(), "{gone}: {after}");
    }
    assert_eq!(after["emails"], before["emails"]);
    assert_eq!(after["id"], before["id"]);
    assert_eq!(after["created"], before["created"]);
    assert_eq!(after["licenses"], json!([LICENSE_MESSAGING]));
    assert_eq!(consumed(&sim, &client, LICENSE_ASSISTANT).await, 0);

    // Without `licenses` the person keeps none.
    let response = put_person(&sim, &client, id, &json!({"displayName": "Ann"})).await;
    let after: Value = response.json().await.unwrap();
    assert_eq!(after["licenses"], json!([]));
    assert_eq!(consumed(&sim, &client, LICENSE_MESSAGING).await, 0);
    assert_eq!(sim.people(), [after]);
    assert_eq!(sim.stats().people_updates, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn patch_adds_and_removes_licenses() {
    let (sim, client) = launch(SimConfig::default()).await;
    let response = create_person(&sim, &client, &person("kim@example.com", &[])).await;
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();

    let add = json!({
        "email": "Kim@example.com",
        "licenses": [
            {"id": LICENSE_MEETING_ACME_EU, "operation": "add"},
            {"id": LICENSE_MESSAGING},
        ],
        "siteUrls": [{"siteUrl": "acme.webex.com", "accountType": "attendee", "operation": "add"}],
    });
    let response = patch_licenses(&sim, &client, &add).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        json!({
            "orgId": DEFAULT_ORG_ID,
            "personId": id,
            "email": "kim@example.com",
            "licenses": [LICENSE_MEETING_ACME_EU, LICENSE_MESSAGING],
            "siteUrls": [
                {"siteUrl": "acme-eu.webex.com", "accountType": "host"},
                {"siteUrl": "acme.webex.com", "accountType": "attendee"},
            ],
        })
    );
    assert_eq!(consumed(&sim, &client, LICENSE_MEETING_ACME_EU).await, 1);
    assert_eq!(consumed(&sim, &client, LICENSE_MESSAGING).await, 1);
    let stored = &sim.people()[0];
    assert_eq!(
        stored["siteUrls"],
        json!(["acme-eu.webex.com", "acme.webex.com#attendee"])
    );

    let remove = json!({
        "personId": id,
        "licenses": [{"id": LICENSE_MEETING_ACME_EU, "operation": "remove"}],
    });
    let response = patch_licenses(&sim, &client, &remove).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["licenses"], json!([LICENSE_MESSAGING]));
    assert_eq!(consumed(&sim, &client, LICENSE_MEETING_ACME_EU).await, 0);
    assert_eq!(sim.people()[0]["licenses"], json!([LICENSE_MESSAGING]));

    // Unknown person: 404; unknown license: 400 with its error code; nothing changes.
    let nobody = json!({"email": "nobody@example.com", "licenses": [{"id": LICENSE_MESSAGING}]});
    let response = patch_licenses(&sim, &client, &nobody).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let bogus = json!({"personId": id, "licenses": [{"id": LICENSE_ASSISTANT}, {"id": "bogus"}]});
    let response = patch_licenses(&sim, &client, &bogus).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["errors"][0]["errorCode"], 400000);
    assert!(error["errors"][0]["description"]
        .as_str()
        .unwrap()
        .contains("bogus"));
    assert_eq!(consumed(&sim, &client, LICENSE_ASSISTANT).await, 0);
    assert_eq!(sim.stats().license_patches, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn licenses_without_free_units_are_not_applied() {
    let (sim, client) = launch(assistant_units(1)).await;
    for email in ["a@example.com", "b@example.com"] {
        let response = create_person(&sim, &client, &person(email, &[])).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let assign = |email: &str| {
        json!({
            "email": email,
            "licenses": [{"id": LICENSE_ASSISTANT}, {"id": LICENSE_MESSAGING}],
        })
    };
    let response = patch_licenses(&sim, &client, &assign("a@example.com")).await;
    assert_eq!(response.status(), StatusCode::OK);
    // The last unit is gone: b gets Messaging only, with 206.
    let response = patch_licenses(&sim, &client, &assign("b@example.com")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["licenses"], json!([LICENSE_MESSAGING]));
    assert_eq!(consumed(&sim, &client, LICENSE_ASSISTANT).await, 1);
    assert_eq!(consumed(&sim, &client, LICENSE_MESSAGING).await, 2);
    let b = &find_by_email(&sim, &client, "b@example.com").await[0];
    assert_eq!(b["licenses"], json!([LICENSE_MESSAGING]));

    // A create asking for it is carried out without it (the spec: all valid and
    // available licenses are assigned).
    let response = create_person(
        &sim,
        &client,
        &person("c@example.com", &[LICENSE_ASSISTANT, LICENSE_MESSAGING]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let c: Value = response.json().await.unwrap();
    assert_eq!(c["licenses"], json!([LICENSE_MESSAGING]));

    // Once a removes it, b can have it.
    let free = json!({"email": "a@example.com", "licenses": [{"id": LICENSE_ASSISTANT, "operation": "remove"}]});
    assert_eq!(
        patch_licenses(&sim, &client, &free).await.status(),
        StatusCode::OK
    );
    let response = patch_licenses(&sim, &client, &assign("b@example.com")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(consumed(&sim, &client, LICENSE_ASSISTANT).await, 1);
    assert_eq!(sim.stats().license_patches, 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_failed_create_can_still_create_the_person() {
    let config = SimConfig {
        people_create_error_rate: 1.0,
        ..SimConfig::default()
    };
    let (sim, client) = launch(config).await;
    let body = person("late@example.com", &[LICENSE_MESSAGING]);
    let response = create_person(&sim, &client, &body).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let error: Value = response.json().await.unwrap();
    assert!(error["trackingId"].is_string());
    // The person is there; a blind retry is a conflict.
    let found = find_by_email(&sim, &client, "late@example.com").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["licenses"], json!([LICENSE_MESSAGING]));
    let response = create_person(&sim, &client, &body).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let stats = sim.stats();
    assert_eq!(
        (stats.people_created, stats.injected_failures, stats.dropped),
        (1, 1, 0)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_lost_create_drops_the_connection_after_creating() {
    let config = SimConfig {
        people_create_lost_rate: 1.0,
        people_create_error_rate: 1.0,
        ..SimConfig::default()
    };
    let (sim, client) = launch(config).await;
    let result = authed(client.post(format!("{}/people", sim.base_url())), TOKEN)
        .json(&person("lost@example.com", &[]))
        .send()
        .await;
    let error = result.expect_err("the connection should be dropped");
    assert!(!error.is_timeout(), "{error}");
    let found = find_by_email(&sim, &client, "lost@example.com").await;
    assert_eq!(found, sim.people());
    assert_eq!(found.len(), 1);
    // Refused creates are answered normally, not dropped.
    let response = create_person(&sim, &client, &person("lost@example.com", &[])).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let stats = sim.stats();
    assert_eq!(
        (stats.people_created, stats.dropped, stats.injected_failures),
        (1, 1, 0)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn people_listings_page_through_link_headers() {
    let (sim, client) = launch(SimConfig::default()).await;
    let mut pats = Vec::new();
    for index in 0..7 {
        let name = if index % 3 == 2 { "Sam" } else { "Pat" };
        let body = json!({"emails": [format!("p{index}@example.com")], "displayName": format!("{name} {index}")});
        let created: Value = create_person(&sim, &client, &body)
            .await
            .json()
            .await
            .unwrap();
        if name == "Pat" {
            pats.push(created["id"].as_str().unwrap().to_owned());
        }
    }
    let first = format!("{}/people?displayName=pat&max=2", sim.base_url());
    let pages = all_pages(&client, first, || {}).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let ids: Vec<&str> = pages
        .iter()
        .flatten()
        .map(|person| person["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, pats);

    let first = format!("{}/people?max=3", sim.base_url());
    let pages = all_pages(&client, first, || {}).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), sim.people());
    // One page is all there is: no Link.
    let (items, next) = page(&client, &format!("{}/people?max=7", sim.base_url())).await;
    assert_eq!((items.len(), next), (7, None));
    let response = authed(client.get(format!("{}/people", sim.base_url())), TOKEN)
        .query(&[("cursor", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}

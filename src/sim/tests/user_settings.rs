//! Meeting sites and hosts' settings: REST (`/v1/meetingPreferences/sites`,
//! `/v1/admin/meeting/config/*`, `/v1/admin/meeting/userconfig/*`) and the XML API.

use super::*;

const HOST: &str = "ann@acme.example.com";

fn host_config() -> SimConfig {
    SimConfig {
        people: vec![SimPerson {
            email: HOST.into(),
            licenses: vec![LICENSE_MEETING_ACME_EU.into()],
            ..SimPerson::default()
        }],
        ..SimConfig::default()
    }
}

async fn get_json(request: RequestBuilder) -> (StatusCode, Value) {
    let response = authed(request, TOKEN).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_user_gets_take_email_as_a_header_and_default_to_the_admins_site() {
    let (sim, client) = launch(host_config()).await;
    let url = format!("{}/admin/meeting/userconfig/sessionTypes", sim.base_url());
    // The header selects the user, on the site named.
    let (status, body) = get_json(
        client
            .get(&url)
            .header("email", HOST)
            .query(&[("siteUrl", "acme-eu.webex.com")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"][0]["email"], HOST);
    assert_eq!(body["items"][0]["sessionTypes"][0]["shortName"], "PRO");
    // An `email` query parameter does not: the answer is about the caller.
    let (status, body) = get_json(
        client
            .get(&url)
            .query(&[("siteUrl", "acme-eu.webex.com"), ("email", HOST)]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"][0]["email"], ADMIN_EMAIL);
    // Without siteUrl: the admin's default site, where the user is no host.
    let (status, body) = get_json(client.get(&url).header("email", HOST)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["message"].as_str().unwrap().contains("acme.webex.com"));
    // The sites of the user, and of the admin.
    let sites = format!("{}/meetingPreferences/sites", sim.base_url());
    let (_, body) = get_json(client.get(&sites).query(&[("userEmail", HOST)])).await;
    assert_eq!(
        body["sites"],
        json!([{ "siteUrl": "acme-eu.webex.com", "default": true }])
    );
    let (_, body) = get_json(client.get(&sites)).await;
    assert_eq!(body["sites"].as_array().unwrap().len(), 2);
    let (status, _) = get_json(client.get(&sites).query(&[("userEmail", "nobody@x.com")])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn puts_replace_whole_sets_and_refuse_what_the_schema_does_not_define() {
    let (sim, client) = launch(host_config()).await;
    let types = format!("{}/admin/meeting/userconfig/sessionTypes", sim.base_url());
    let codes = format!("{}/admin/meeting/userconfig/trackingCodes", sim.base_url());
    let put = |url: &str, body: Value| authed(client.put(url), TOKEN).json(&body).send();
    let r = put(
        &types,
        json!({ "siteUrl": "acme-eu.webex.com", "email": HOST, "sessionTypeIds": ["22"] }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["sessionTypes"],
        json!([{ "id": "22", "shortName": "WBN", "name": "Webinar", "type": "webinar" }])
    );
    let r = put(
        &types,
        json!({ "siteUrl": "acme-eu.webex.com", "email": HOST, "sessionTypeIds": ["9"] }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "an id of another site");
    let r = put(&types, json!({ "siteUrl": "acme-eu.webex.com", "email": HOST, "sessionTypeIds": ["3"], "hostEmail": HOST })).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "a property the schema lacks"
    );
    let r = put(
        &types,
        json!({ "siteUrl": "acme-eu.webex.com", "sessionTypeIds": ["3"] }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no user");
    // Tracking codes: by name, replaced whole.
    let r = put(
        &codes,
        json!({ "siteUrl": "acme-eu.webex.com", "email": HOST, "trackingCodes": [
        { "name": "Cost Centre", "value": "CC-1" }, { "name": "Department", "value": "Sales" }] }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = put(
        &codes,
        json!({ "siteUrl": "acme-eu.webex.com", "email": HOST, "trackingCodes": [
        { "name": "Cost Centre", "value": "CC-2" }] }),
    )
    .await
    .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["trackingCodes"],
        json!([{ "id": "1", "name": "Cost Centre", "value": "CC-2" }]),
        "Department lost its value"
    );
    let r = put(
        &codes,
        json!({ "siteUrl": "acme-eu.webex.com", "email": HOST, "trackingCodes": [
        { "name": "Region", "value": "EMEA" }, { "name": "Department", "value": "Marketing" }] }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["description"],
        "Tracking code of 'Region' is not found."
    );
    assert!(body["errors"][1]["description"]
        .as_str()
        .unwrap()
        .contains("not an option"));
    let stats = sim.stats();
    assert_eq!(
        (stats.session_type_updates, stats.tracking_code_updates),
        (1, 2)
    );
}

/// An XML request: `context` elements, `op`, body (already escaped XML).
fn xml_request(context: &str, op: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><serv:message xmlns:serv="http://www.webex.com/schemas/2002/06/service" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><header><securityContext>{context}</securityContext></header><body><bodyContent xsi:type="java:com.webex.service.binding.{op}">{body}</bodyContent></body></serv:message>"#
    )
}

async fn post_xml(sim: &SimHandle, client: &Client, doc: String) -> (String, Vec<u8>) {
    let r = client.post(sim.xml_url()).body(doc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "failures come with 200");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    (ct, r.bytes().await.unwrap().to_vec())
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text.find(open).map(|i| i + open.len()).unwrap_or(0);
    let end = text[start..]
        .find(close)
        .map(|i| start + i)
        .unwrap_or(text.len());
    &text[start..end]
}

#[tokio::test]
async fn xml_tickets_settings_and_failures() {
    let (sim, client) = launch(SimConfig {
        xml_ticket_ttl: Duration::from_secs(3600),
        ..host_config()
    })
    .await;
    let admin = format!("<webExID>{ADMIN_EMAIL}</webExID><siteName>acme-eu</siteName>");
    // Without xmlns:xsi: 000000.
    let (_, body) = post_xml(
        &sim,
        &client,
        xml_request(&admin, "site.GetSite", "").replace(
            " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"",
            "",
        ),
    )
    .await;
    assert!(String::from_utf8_lossy(&body).contains("<serv:exceptionID>000000</serv:exceptionID>"));
    // A bad token: 030002; a good one: a ticket.
    let (_, body) = post_xml(
        &sim,
        &client,
        xml_request(
            &admin,
            "user.AuthenticateUser",
            "<accessToken>nope</accessToken>",
        ),
    )
    .await;
    assert!(String::from_utf8_lossy(&body).contains("030002"));
    let (_, body) = post_xml(
        &sim,
        &client,
        xml_request(
            &admin,
            "user.AuthenticateUser",
            &format!("<accessToken>{TOKEN}</accessToken>"),
        ),
    )
    .await;
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains("<use:timeToLive>3600</use:timeToLive>"),
        "{body}"
    );
    let ticket = between(&body, "<use:sessionTicket>", "</use:sessionTicket>").to_owned();
    let ctx = format!("{admin}<sessionTicket>{ticket}</sessionTicket>");
    // The ticket is for acme-eu only.
    let other = ctx.replace("<siteName>acme-eu</siteName>", "<siteName>acme</siteName>");
    let (_, body) = post_xml(&sim, &client, xml_request(&other, "site.GetSite", "")).await;
    assert!(String::from_utf8_lossy(&body).contains("030002"));
    // SetUser with special characters, then GetUser in ISO-8859-1.
    let value = "R&amp;D &lt;EU&gt; \"Zürich\" €";
    let (_, body) = post_xml(&sim, &client, xml_request(&ctx, "user.SetUser", &format!(
        "<webExId>{HOST}</webExId><meetingTypes><meetingType>22</meetingType></meetingTypes><tracking><trackingCode1>{value}</trackingCode1></tracking>"))).await;
    assert!(
        String::from_utf8_lossy(&body).contains("SUCCESS"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let settings = sim.user_settings(HOST, "acme-eu.webex.com").unwrap();
    assert_eq!(settings.session_types, ["22"]);
    assert_eq!(settings.tracking["Cost Centre"], "R&D <EU> \"Zürich\" €");
    let (ct, body) = post_xml(
        &sim,
        &client,
        xml_request(&ctx, "user.GetUser", &format!("<webExId>{HOST}</webExId>")),
    )
    .await;
    assert!(ct.contains("ISO-8859-1"));
    assert!(body.contains(&0xFC), "ü as one Latin-1 byte");
    let text: String = body.iter().map(|b| char::from(*b)).collect();
    assert!(
        text.contains("R&amp;D &lt;EU&gt; &quot;Z\u{fc}rich&quot; &#8364;"),
        "{text}"
    );
    // LstMeetingType pages (at most 3 a page, whatever is asked).
    let (_, body) = post_xml(
        &sim,
        &client,
        xml_request(
            &ctx,
            "meetingtype.LstMeetingType",
            "<listControl><startFrom>2</startFrom><maximumNum>50</maximumNum></listControl>",
        ),
    )
    .await;
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("<serv:total>2</serv:total><serv:returned>1</serv:returned><serv:startFrom>2</serv:startFrom>"), "{body}");
    assert!(
        body.contains("<mtgtype:meetingTypeID>22</mtgtype:meetingTypeID>")
            && !body.contains(">3</mtgtype:meetingTypeID>"),
        "{body}"
    );
    // SetUser with a field this tool must not send, or an unknown user.
    let (_, body) = post_xml(
        &sim,
        &client,
        xml_request(
            &ctx,
            "user.SetUser",
            &format!("<webExId>{HOST}</webExId><supportedServices/>"),
        ),
    )
    .await;
    assert!(String::from_utf8_lossy(&body).contains("999999"));
    let (_, body) = post_xml(
        &sim,
        &client,
        xml_request(&ctx, "user.GetUser", "<webExId>nobody@x.com</webExId>"),
    )
    .await;
    assert!(String::from_utf8_lossy(&body).contains("000015"));
    // Tickets end: 030002.
    sim.expire_xml_tickets();
    let (_, body) = post_xml(&sim, &client, xml_request(&ctx, "site.GetSite", "")).await;
    assert!(String::from_utf8_lossy(&body).contains("030002"));
    let stats = sim.stats();
    assert_eq!(
        (stats.xml_tickets, stats.xml_set_users),
        (1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.xml_ticket_rejections, 2);
}

/// A `SetUser` whose client gives up during the latency still lands, as on
/// a real server.
#[tokio::test]
async fn an_xml_set_user_lands_after_its_client_gave_up() {
    let (sim, client) = launch(SimConfig {
        latency: Duration::from_millis(400),
        ..host_config()
    })
    .await;
    let admin = format!("<webExID>{ADMIN_EMAIL}</webExID><siteName>acme-eu</siteName>");
    let (_, body) = post_xml(
        &sim,
        &client,
        xml_request(
            &admin,
            "user.AuthenticateUser",
            &format!("<accessToken>{TOKEN}</accessToken>"),
        ),
    )
    .await;
    let body = String::from_utf8(body).unwrap();
    let ticket = between(&body, "<use:sessionTicket>", "</use:sessionTicket>").to_owned();
    let ctx = format!("{admin}<sessionTicket>{ticket}</sessionTicket>");
    let impatient = Client::builder()
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let sent = impatient
        .post(sim.xml_url())
        .body(xml_request(&ctx, "user.SetUser", &format!("<webExId>{HOST}</webExId><meetingTypes><meetingType>22</meetingType></meetingTypes>")))
        .send()
        .await;
    assert!(sent.is_err(), "the client gave up before the answer");
    super::meetings::wait_for_stats(&sim, &client, |s| s.xml_set_users == 1).await;
    assert_eq!(
        sim.user_settings(HOST, "acme-eu.webex.com")
            .unwrap()
            .session_types,
        ["22"]
    );
}

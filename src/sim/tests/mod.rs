//! End-to-end tests over loopback HTTP: the helpers shared by the test files below
//! (a simulator and client, meeting bodies, authenticated calls, paged listings).

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use super::*;

mod gate;
mod meetings;
mod oauth;
mod people;
mod user_settings;

const TOKEN: &str = "sim-access-token";

/// A simulator on a free loopback port and a client with a safety timeout.
async fn launch(config: SimConfig) -> (SimHandle, Client) {
    let sim = start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    (sim, client)
}

/// `now + minutes` as RFC 3339 UTC.
fn in_minutes(minutes: i64) -> String {
    (Utc::now() + chrono::TimeDelta::minutes(minutes)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A valid create body: an hour-long meeting starting in `minutes`.
fn meeting(title: &str, minutes: i64, host: &str, tag: &str) -> Value {
    json!({
        "title": title,
        "start": in_minutes(minutes),
        "end": in_minutes(minutes + 60),
        "hostEmail": host,
        "integrationTags": [tag],
        "invitees": [{"email": "guest@example.com"}],
        "sendEmail": false,
    })
}

fn authed(request: RequestBuilder, token: &str) -> RequestBuilder {
    request.bearer_auth(token)
}

async fn create(sim: &SimHandle, client: &Client, body: &Value) -> Response {
    authed(client.post(format!("{}/meetings", sim.base_url())), TOKEN)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn list(sim: &SimHandle, client: &Client, query: &[(&str, &str)]) -> Vec<Value> {
    let response = authed(client.get(format!("{}/meetings", sim.base_url())), TOKEN)
        .query(query)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

fn titles(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|item| item["title"].as_str().unwrap())
        .collect()
}

async fn refresh(sim: &SimHandle, client: &Client, refresh_token: &str, secret: &str) -> Response {
    client
        .post(format!("{}/access_token", sim.base_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "sim-client-id"),
            ("client_secret", secret),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap()
}

/// The items of a listing page at `url` and the URL of its `Link: <URL>; rel="next"`.
async fn page(client: &Client, url: &str) -> (Vec<Value>, Option<String>) {
    let response = authed(client.get(url), TOKEN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let next = response.headers().get("link").map(|link| {
        let link = link.to_str().unwrap();
        let url = link.strip_suffix(">; rel=\"next\"").unwrap();
        url.strip_prefix('<').unwrap().to_owned()
    });
    let body: Value = response.json().await.unwrap();
    (body["items"].as_array().unwrap().clone(), next)
}

/// Follows `Link` headers from `first` (at most 20 pages); each page's items.
async fn all_pages(client: &Client, first: String, after_first: impl Fn()) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut url = Some(first);
    while let Some(current) = url.take() {
        assert!(pages.len() < 20, "too many pages");
        let (items, next) = page(client, &current).await;
        pages.push(items);
        if pages.len() == 1 {
            after_first();
        }
        url = next;
    }
    pages
}

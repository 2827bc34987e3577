//! The Webex REST client: the only module that speaks HTTP.
//!
//! It sends only what the OpenAPI specs define and turns every answer into
//! either a typed value or an [`ApiError`] whose predicates
//! (`is_rate_limited`, `is_retryable`, `may_have_happened`, ...) tell the
//! engine what to do, so no other module looks at status codes.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// The header Webex uses to correlate a request with its logs.
pub const TRACKING_HEADER: &str = "TrackingID";

/// Why a base URL is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BaseUrlError {
    #[error("`{0}` is not a URL")]
    NotAUrl(String),
    #[error("`{0}` uses plain http to a host that is not this machine; tokens must not travel unencrypted: use https")]
    Insecure(String),
    #[error("`{0}` must use https (or http to a loopback address)")]
    Scheme(String),
}

/// Checks a base URL: https anywhere, plain http only to loopback hosts
/// (127.0.0.0/8, ::1, localhost). Returns it without a trailing slash.
pub fn check_base_url(raw: &str) -> Result<Url, BaseUrlError> {
    let url = Url::parse(raw.trim()).map_err(|_| BaseUrlError::NotAUrl(raw.to_owned()))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !loopback {
                return Err(BaseUrlError::Insecure(raw.to_owned()));
            }
        }
        _ => return Err(BaseUrlError::Scheme(raw.to_owned())),
    }
    let mut url = url;
    let trimmed = url.path().trim_end_matches('/').to_owned();
    url.set_path(&trimmed);
    Ok(url)
}

/// A failed API call, classified.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Webex answered with an error status.
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        /// Webex's message (with the `errors[].description` details).
        message: String,
        /// Webex's trackingId (from the body, else the response header).
        tracking_id: Option<String>,
        /// The raw `Retry-After` header, if any.
        retry_after: Option<String>,
    },
    /// No answer in time; the request may have been carried out.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection could not be made; the request was not sent.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection broke after the request was (maybe) sent.
    #[error("connection lost: {0}")]
    Transport(String),
    /// A 2xx answer we could not read.
    #[error("unreadable answer (HTTP {status}): {detail}")]
    Decode {
        status: u16,
        detail: String,
        tracking_id: Option<String>,
    },
}

impl ApiError {
    /// The HTTP status, if there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } | ApiError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }
    /// Webex's trackingId, if the answer had one.
    pub fn tracking_id(&self) -> Option<&str> {
        match self {
            ApiError::Status { tracking_id, .. } | ApiError::Decode { tracking_id, .. } => {
                tracking_id.as_deref()
            }
            _ => None,
        }
    }
    /// 429: slow down and wait for Retry-After.
    pub fn is_rate_limited(&self) -> bool {
        self.status() == Some(429)
    }
    /// 401: the access token is not (or no longer) accepted.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }
    /// Worth trying again later: 5xx, 408, 423, timeouts and broken connections.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => matches!(status, 408 | 423 | 500..=599),
            ApiError::Timeout(_) | ApiError::Connect(_) | ApiError::Transport(_) => true,
            ApiError::Decode { .. } => false,
        }
    }
    /// Whether a create that ended this way may still have been carried
    /// out. Only answers that say "not done" (4xx, and a connection that
    /// never opened) rule it out.
    pub fn may_have_happened(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => *status >= 500 || *status == 408,
            ApiError::Connect(_) => false,
            ApiError::Timeout(_) | ApiError::Transport(_) | ApiError::Decode { .. } => true,
        }
    }
    /// The raw Retry-After header of the answer.
    pub fn retry_after(&self) -> Option<&str> {
        match self {
            ApiError::Status { retry_after, .. } => retry_after.as_deref(),
            _ => None,
        }
    }
}

/// What we keep of a meeting Webex returns.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Meeting {
    pub id: String,
    #[serde(default)]
    pub meeting_number: Option<String>,
    #[serde(default)]
    pub web_link: Option<String>,
    #[serde(default)]
    pub host_email: Option<String>,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
}

/// A successful answer and the trackingId that came with it.
#[derive(Clone, Debug)]
pub struct Answer<T> {
    pub value: T,
    pub status: u16,
    pub tracking_id: Option<String>,
}

/// The token endpoint's answer.
#[derive(Clone, Deserialize)]
pub struct TokenGrant {
    pub access_token: SecretString,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    #[serde(default)]
    pub refresh_token_expires_in: Option<u64>,
    /// The granted scopes, space-separated.
    #[serde(default)]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("access_token", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Why a token grant failed.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The server refused (bad, expired or revoked refresh token; wrong client).
    #[error("the token endpoint refused: {0}")]
    Refused(String),
    /// The server could not be reached or did not answer properly.
    #[error("the token endpoint failed: {0}")]
    Unavailable(ApiError),
}

/// An HTTP client for one Webex base URL.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorItem>,
    #[serde(default, rename = "trackingId")]
    tracking_id: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

fn bearer(token: &SecretString) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    v.set_sensitive(true);
    v
}

/// How long a connection may take to open; a request leaves by then.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The roots a server certificate must chain to: Mozilla's list, compiled in
/// (as reqwest 0.12's `rustls-tls` had it), not the system's trust store
/// that reqwest 0.13 uses by default.
fn tls_roots() -> impl Iterator<Item = reqwest::Certificate> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| reqwest::Certificate::from_der(der).expect("a DER certificate"))
}

/// A fresh TrackingID for one request.
pub fn new_tracking_id() -> String {
    format!("WEBEXBULK_{}", uuid::Uuid::new_v4())
}

impl Client {
    /// A client for `base` (already checked with [`check_base_url`]).
    pub fn new(base: Url, timeout: Duration) -> Client {
        let http = reqwest::Client::builder()
            .user_agent(concat!("webex-bulk/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tls_certs_only(tls_roots())
            .build()
            .expect("a TLS backend is compiled in");
        Client {
            http,
            base,
            timeout,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        let p = format!(
            "{}/{}",
            self.base.path().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        u.set_path(&p);
        u
    }

    fn transport_error(&self, e: reqwest::Error) -> ApiError {
        if e.is_timeout() {
            ApiError::Timeout(self.timeout)
        } else if e.is_connect() {
            ApiError::Connect(without_url(&e))
        } else {
            ApiError::Transport(without_url(&e))
        }
    }

    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        req: reqwest::RequestBuilder,
        tracking_id: &str,
    ) -> Result<Answer<T>, ApiError> {
        self.send_paged(req, tracking_id).await.map(|(a, _)| a)
    }

    /// [`Client::send`], also returning the next page's URL (`Link: <..>; rel="next"`)
    /// when it is on this client's server.
    async fn send_paged<T: for<'de> Deserialize<'de>>(
        &self,
        req: reqwest::RequestBuilder,
        tracking_id: &str,
    ) -> Result<(Answer<T>, Option<Url>), ApiError> {
        let resp = req
            .header(TRACKING_HEADER, tracking_id)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let header_tracking = header_str(&headers, TRACKING_HEADER);
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if (200..300).contains(&status) {
            let next = next_link(&headers).and_then(|link| self.same_server(&link));
            let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            return serde_json::from_slice(body)
                .map(|value| {
                    let answer = Answer {
                        value,
                        status,
                        tracking_id: header_tracking.clone(),
                    };
                    (answer, next)
                })
                .map_err(|e| ApiError::Decode {
                    status,
                    detail: e.to_string(),
                    tracking_id: header_tracking,
                });
        }
        Err(status_error(status, &headers, &bytes, header_tracking))
    }

    /// `POST /meetings`. `body` is the JSON the queue stored for the row.
    pub async fn create_meeting(
        &self,
        token: &SecretString,
        body: &str,
        tracking_id: &str,
    ) -> Result<Answer<Meeting>, ApiError> {
        let req = self
            .http
            .post(self.url("meetings"))
            .header(AUTHORIZATION, bearer(token))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned());
        self.send(req, tracking_id).await
    }

    /// `GET /meetings?integrationTag=&hostEmail=&from=&to=`: every meeting
    /// that carries our tag, in a window around the meeting (the API only
    /// looks at a window, 7 days from now by default), following the
    /// `Link: rel="next"` pages (up to [`MAX_PAGES`]).
    pub async fn find_meetings_by_tag(
        &self,
        token: &SecretString,
        tag: &str,
        host_email: &str,
        from: &str,
        to: &str,
        tracking_id: &str,
    ) -> Result<Answer<Vec<Meeting>>, ApiError> {
        let mut req = self
            .http
            .get(self.url("meetings"))
            .header(AUTHORIZATION, bearer(token))
            .query(&[
                ("integrationTag", tag),
                ("hostEmail", host_email),
                ("from", from),
                ("to", to),
                ("max", "100"),
            ]);
        let mut found = Vec::new();
        for _ in 0..MAX_PAGES {
            let (a, next): (Answer<Items<Meeting>>, _) = self.send_paged(req, tracking_id).await?;
            // A meeting listed twice (pages shifting under us) counts once.
            for m in a.value.items {
                if !found.iter().any(|f: &Meeting| f.id == m.id) {
                    found.push(m);
                }
            }
            match next {
                Some(url) => req = self.http.get(url).header(AUTHORIZATION, bearer(token)),
                None => {
                    return Ok(Answer {
                        value: found,
                        status: a.status,
                        tracking_id: a.tracking_id,
                    })
                }
            }
        }
        Err(ApiError::Decode {
            status: 200,
            detail: format!("more than {MAX_PAGES} pages of meetings carry the tag {tag}"),
            tracking_id: None,
        })
    }

    /// `DELETE /meetings/{id}?hostEmail=&sendEmail=false`: removes a
    /// duplicate without a cancellation email (the row's own meeting stays,
    /// and invitees told it was cancelled would stay away from it). A
    /// meeting that is already gone (404) counts as removed.
    pub async fn delete_meeting(
        &self,
        token: &SecretString,
        id: &str,
        host_email: &str,
        tracking_id: &str,
    ) -> Result<Answer<()>, ApiError> {
        let req = self
            .http
            .delete(self.url(&format!("meetings/{id}")))
            .header(AUTHORIZATION, bearer(token))
            .query(&[("hostEmail", host_email), ("sendEmail", "false")]);
        match self.send::<serde_json::Value>(req, tracking_id).await {
            Ok(a) => Ok(Answer {
                value: (),
                status: a.status,
                tracking_id: a.tracking_id,
            }),
            Err(ApiError::Status {
                status: 404,
                tracking_id,
                ..
            }) => Ok(Answer {
                value: (),
                status: 404,
                tracking_id,
            }),
            Err(e) => Err(e),
        }
    }

    /// `url` if it is on this client's server (scheme, host and port), so
    /// that a `Link` header can never send our token elsewhere.
    fn same_server(&self, url: &str) -> Option<Url> {
        let url = self.base.join(url).ok()?;
        (url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default())
        .then_some(url)
    }

    /// `POST /access_token` with the refresh-token grant.
    pub async fn refresh_grant(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        refresh_token: &SecretString,
    ) -> Result<TokenGrant, GrantError> {
        self.grant(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
        ])
        .await
    }

    /// `POST /access_token` with the authorization-code grant and the PKCE verifier.
    pub async fn code_grant(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        code: &SecretString,
        redirect_uri: &str,
        code_verifier: &SecretString,
    ) -> Result<TokenGrant, GrantError> {
        self.grant(&[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
            ("code", code.expose_secret()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier.expose_secret()),
        ])
        .await
    }

    async fn grant(&self, form: &[(&str, &str)]) -> Result<TokenGrant, GrantError> {
        let req = self.http.post(self.url("access_token")).form(form);
        match self.send::<TokenGrant>(req, &new_tracking_id()).await {
            Ok(a) => Ok(a.value),
            Err(e @ ApiError::Status { status, .. })
                if (400..500).contains(&status) && status != 429 =>
            {
                Err(GrantError::Refused(e.to_string()))
            }
            Err(e) => Err(GrantError::Unavailable(e)),
        }
    }

    /// `GET /people/me`: whom the token belongs to.
    pub async fn me(&self, token: &SecretString) -> Result<Answer<Person>, ApiError> {
        let req = self
            .http
            .get(self.url("people/me"))
            .header(AUTHORIZATION, bearer(token));
        self.send(req, &new_tracking_id()).await
    }

    /// `GET /licenses`: the org's licenses.
    pub async fn licenses(&self, token: &SecretString) -> Result<Answer<Vec<License>>, ApiError> {
        let req = self
            .http
            .get(self.url("licenses"))
            .header(AUTHORIZATION, bearer(token));
        let a: Answer<Items<License>> = self.send(req, &new_tracking_id()).await?;
        Ok(Answer {
            value: a.value.items,
            status: a.status,
            tracking_id: a.tracking_id,
        })
    }

    /// `GET /people?email=`: the person with this email, if any.
    pub async fn find_person(
        &self,
        token: &SecretString,
        email: &str,
        tracking_id: &str,
    ) -> Result<Answer<Option<Person>>, ApiError> {
        let req = self
            .http
            .get(self.url("people"))
            .header(AUTHORIZATION, bearer(token))
            .query(&[("email", email)]);
        let a: Answer<Items<Person>> = self.send(req, tracking_id).await?;
        let found = a
            .value
            .items
            .into_iter()
            .find(|p| p.emails.iter().any(|e| e.eq_ignore_ascii_case(email)));
        Ok(Answer {
            value: found,
            status: a.status,
            tracking_id: a.tracking_id,
        })
    }

    /// `GET /people/{id}`, whole, as the basis of a full-replace `PUT`.
    pub async fn get_person_raw(
        &self,
        token: &SecretString,
        id: &str,
        tracking_id: &str,
    ) -> Result<Answer<serde_json::Map<String, serde_json::Value>>, ApiError> {
        let req = self
            .http
            .get(self.url(&format!("people/{}", encode_segment(id))))
            .header(AUTHORIZATION, bearer(token));
        self.send(req, tracking_id).await
    }

    /// `POST /people`.
    pub async fn create_person(
        &self,
        token: &SecretString,
        body: &serde_json::Value,
        tracking_id: &str,
    ) -> Result<Answer<Person>, ApiError> {
        let req = self
            .http
            .post(self.url("people"))
            .header(AUTHORIZATION, bearer(token))
            .json(body);
        self.send(req, tracking_id).await
    }

    /// `PUT /people/{id}` (a full replace: send every field to keep).
    pub async fn update_person(
        &self,
        token: &SecretString,
        id: &str,
        body: &serde_json::Value,
        tracking_id: &str,
    ) -> Result<Answer<Person>, ApiError> {
        let req = self
            .http
            .put(self.url(&format!("people/{}", encode_segment(id))))
            .header(AUTHORIZATION, bearer(token))
            .json(body);
        self.send(req, tracking_id).await
    }

    /// `PATCH /licenses/users`: 200 when every operation applied, 206 when only some did.
    pub async fn patch_licenses(
        &self,
        token: &SecretString,
        body: &serde_json::Value,
        tracking_id: &str,
    ) -> Result<Answer<UserLicenses>, ApiError> {
        let req = self
            .http
            .patch(self.url("licenses/users"))
            .header(AUTHORIZATION, bearer(token))
            .json(body);
        self.send(req, tracking_id).await
    }

    /// The browser consent URL: `{base}/authorize?client_id=..&response_type=code&redirect_uri=..&scope=..&state=..&code_challenge=..&code_challenge_method=S256`.
    pub fn authorize_url(
        &self,
        client_id: &str,
        redirect_uri: &str,
        scopes: &str,
        state: &str,
        code_challenge: &str,
    ) -> Url {
        let mut url = self.url("authorize");
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scopes)
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }
}

/// A license of the org, as `GET /v1/licenses` lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct License {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub total_units: u64,
    #[serde(default)]
    pub consumed_units: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_url: Option<String>,
}

/// A person, as `GET /people` describes them (the fields we use).
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    pub id: String,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default)]
    pub org_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<String>,
}

/// The answer of `PATCH /licenses/users` (UserLicensesResponse).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserLicenses {
    #[serde(default)]
    pub person_id: Option<String>,
    #[serde(default)]
    pub licenses: Vec<String>,
}

/// A path segment, percent-encoded (Webex ids are URL-safe base64; this
/// keeps a malformed one from changing the path).
fn encode_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The query of the one browser redirect an OAuth login waits for.
pub type CallbackQuery = std::collections::HashMap<String, String>;

/// Serves `GET /callback` on `listener` until the first such request (or
/// `timeout`), answers the browser with a short page, and returns the
/// redirect's query. The listener is closed when this returns.
pub async fn receive_callback(
    listener: tokio::net::TcpListener,
    timeout: Duration,
) -> Option<CallbackQuery> {
    use axum::extract::{Query, State};
    use axum::response::Html;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<CallbackQuery>(1);
    let page = |Query(q): Query<CallbackQuery>,
                State(tx): State<tokio::sync::mpsc::Sender<CallbackQuery>>| async move {
        let ok = q.contains_key("code");
        let _ = tx.try_send(q);
        Html(if ok {
            "<html><body><h3>webex-bulk: authorization received.</h3><p>You can close this window and return to the terminal.</p></body></html>"
        } else {
            "<html><body><h3>webex-bulk: authorization was not granted.</h3><p>See the terminal for details.</p></body></html>"
        })
    };
    let app = axum::Router::new()
        .route("/callback", axum::routing::get(page))
        .with_state(tx);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await;
    });
    let got = tokio::time::timeout(timeout, rx.recv())
        .await
        .ok()
        .flatten();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    got
}

/// The most pages one listing follows.
pub const MAX_PAGES: usize = 20;

/// The `rel="next"` target of a `Link` header (RFC 8288), if any.
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(next_in_link)
}

/// The `rel="next"` target of one `Link` header value: `<url>; rel="next", <url>; rel="prev"`.
/// The URL is read between `<` and `>`, so commas inside it do no harm.
fn next_in_link(mut value: &str) -> Option<String> {
    loop {
        let open = value.find('<')?;
        let close = open + value[open..].find('>')?;
        let target = &value[open + 1..close];
        let rest = &value[close + 1..];
        let params_end = rest.find('<').unwrap_or(rest.len());
        let is_next = rest[..params_end].split([';', ',']).any(|p| {
            let p = p.trim().to_ascii_lowercase().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        if is_next {
            return Some(target.to_owned());
        }
        value = rest;
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A transport error in words: reqwest's own text without the URL, and the
/// innermost cause (e.g. "connection closed before message completed").
fn without_url(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut innermost = None;
    let mut source = e.source();
    while let Some(s) = source {
        innermost = Some(s.to_string());
        source = s.source();
    }
    let kind = if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match innermost {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_owned(),
    }
}

fn status_error(
    status: u16,
    headers: &HeaderMap,
    bytes: &[u8],
    header_tracking: Option<String>,
) -> ApiError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(bytes).ok();
    let mut message = String::new();
    let mut tracking_id = header_tracking;
    if let Some(b) = parsed {
        if let Some(m) = b
            .message
            .or(b.error_description.clone())
            .filter(|m| !m.is_empty())
        {
            message = m;
        }
        let details: Vec<String> = b
            .errors
            .into_iter()
            .filter_map(|e| e.description)
            .filter(|d| !d.is_empty() && *d != message)
            .collect();
        if !details.is_empty() {
            if message.is_empty() {
                message = details.join("; ");
            } else {
                message = format!("{message} ({})", details.join("; "));
            }
        }
        if let Some(code) = b.error {
            message = if message.is_empty() {
                code
            } else {
                format!("{code}: {message}")
            };
        }
        if b.tracking_id.is_some() {
            tracking_id = b.tracking_id;
        }
    }
    if message.is_empty() {
        message = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("error")
            .to_owned();
    }
    ApiError::Status {
        status,
        message,
        tracking_id,
        retry_after: header_str(headers, RETRY_AFTER.as_str()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_next_page_is_read_from_the_link_header() {
        use super::next_in_link;
        assert_eq!(
            next_in_link(r#"<https://webexapis.com/v1/meetings?max=10&cursor=YWI=>; rel="next""#)
                .as_deref(),
            Some("https://webexapis.com/v1/meetings?max=10&cursor=YWI=")
        );
        assert_eq!(
            next_in_link(r#"<https://a/x?p=1,2>; rel="prev", <https://a/x?p=3,4>; rel="next""#)
                .as_deref(),
            Some("https://a/x?p=3,4")
        );
        assert_eq!(next_in_link(r#"<https://a/x>; rel="prev""#), None);
        assert_eq!(next_in_link("garbage"), None);
    }

    #[test]
    fn a_next_link_to_another_server_is_not_followed() {
        let client = super::Client::new(
            url::Url::parse("https://webexapis.com/v1").unwrap(),
            std::time::Duration::from_secs(1),
        );
        assert!(client
            .same_server("https://webexapis.com/v1/meetings?cursor=1")
            .is_some());
        assert!(client.same_server("/v1/meetings?cursor=1").is_some());
        assert!(client
            .same_server("https://evil.example.com/v1/meetings")
            .is_none());
        assert!(client
            .same_server("http://webexapis.com/v1/meetings")
            .is_none());
    }

    use super::*;

    #[test]
    fn base_urls() {
        assert!(check_base_url("https://webexapis.com/v1").is_ok());
        assert_eq!(
            check_base_url("http://127.0.0.1:8080/v1/")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/v1"
        );
        assert!(check_base_url("http://127.3.2.1/v1").is_ok());
        assert!(check_base_url("http://localhost:1/v1").is_ok());
        assert!(check_base_url("http://[::1]:1/v1").is_ok());
        assert!(matches!(
            check_base_url("http://webexapis.com/v1"),
            Err(BaseUrlError::Insecure(_))
        ));
        assert!(matches!(
            check_base_url("http://10.0.0.1/v1"),
            Err(BaseUrlError::Insecure(_))
        ));
        assert!(matches!(
            check_base_url("http://localhost.evil.com/v1"),
            Err(BaseUrlError::Insecure(_))
        ));
        assert!(matches!(
            check_base_url("ftp://x/v1"),
            Err(BaseUrlError::Scheme(_))
        ));
        assert!(matches!(
            check_base_url("webexapis.com"),
            Err(BaseUrlError::NotAUrl(_))
        ));
    }

    #[test]
    fn error_bodies_keep_message_details_and_tracking_id() {
        let body = br#"{"message":"Invalid input","errors":[{"description":"title is too long"}],"trackingId":"ROUTER_1"}"#;
        let e = status_error(400, &HeaderMap::new(), body, Some("HDR".into()));
        assert_eq!(e.to_string(), "HTTP 400: Invalid input (title is too long)");
        assert_eq!(e.tracking_id(), Some("ROUTER_1"));
        assert!(!e.is_retryable() && !e.may_have_happened());
        let e = status_error(
            502,
            &HeaderMap::new(),
            b"<html>bad gateway</html>",
            Some("HDR".into()),
        );
        assert_eq!(e.to_string(), "HTTP 502: Bad Gateway");
        assert_eq!(e.tracking_id(), Some("HDR"));
        assert!(e.is_retryable() && e.may_have_happened());
        let e = status_error(
            400,
            &HeaderMap::new(),
            br#"{"error":"invalid_grant","error_description":"expired"}"#,
            None,
        );
        assert_eq!(e.to_string(), "HTTP 400: invalid_grant: expired");
    }

    #[test]
    fn classification() {
        let st = |s| ApiError::Status {
            status: s,
            message: String::new(),
            tracking_id: None,
            retry_after: None,
        };
        assert!(st(429).is_rate_limited() && !st(429).may_have_happened());
        assert!(st(401).is_unauthorized() && !st(401).is_retryable());
        assert!(st(423).is_retryable() && !st(423).may_have_happened());
        assert!(st(409).status() == Some(409) && !st(409).is_retryable());
        assert!(
            ApiError::Connect("x".into()).is_retryable()
                && !ApiError::Connect("x".into()).may_have_happened()
        );
        assert!(ApiError::Transport("x".into()).may_have_happened());
    }

    #[test]
    fn grant_debug_hides_tokens() {
        let g = TokenGrant {
            access_token: "AT-secret".into(),
            expires_in: Some(1),
            refresh_token: Some("RT-secret".into()),
            refresh_token_expires_in: None,
            scope: None,
        };
        let s = format!("{g:?}");
        assert!(!s.contains("secret"), "{s}");
    }
}

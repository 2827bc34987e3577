//! The Webex REST client: the only module that speaks HTTP.
//!
//! It sends only what the OpenAPI specs define and turns every answer into
//! either a typed value or an [`ApiError`] whose predicates
//! (`is_rate_limited`, `is_retryable`, `may_have_happened`, ...) tell the
//! engine what to do, so no other module looks at status codes.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

mod callback;
mod meetings;
mod oauth;
mod people;
mod user_settings;
pub mod xml;

pub use callback::{receive_callback, CallbackQuery};
pub use meetings::Meeting;
pub use oauth::{GrantError, TokenGrant};
pub use people::{License, Person, UserLicenses};
pub use user_settings::{SessionType, SiteRef, TrackingCode, TrackingOption, TrackingValue};

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
    /// The Meetings XML API answered FAILURE (with HTTP 200, as it does).
    #[error("XML API error {exception_id}: {reason}")]
    Xml {
        /// Kept as text: ids have leading zeros and letters.
        exception_id: String,
        reason: String,
        /// For the rate answer (which has no Retry-After): how long to
        /// pause, in seconds, as the endpoint is configured.
        retry_after: Option<String>,
    },
}

impl ApiError {
    /// The HTTP status, if there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } | ApiError::Decode { status, .. } => Some(*status),
            // The XML API reports its failures in a 200 answer.
            ApiError::Xml { .. } => Some(200),
            _ => None,
        }
    }
    /// The XML API's exceptionID, for an XML failure.
    pub fn xml_exception(&self) -> Option<&str> {
        match self {
            ApiError::Xml { exception_id, .. } => Some(exception_id),
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
        self.status() == Some(429) || self.xml_exception() == Some(xml::XML_RATE_LIMITED)
    }
    /// 401: the access token is not (or no longer) accepted (over XML: the
    /// token or the session ticket made from it was refused).
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
            || matches!(
                self.xml_exception(),
                Some(xml::XML_BAD_CREDENTIALS | xml::XML_NO_TICKET)
            )
    }
    /// Worth trying again later: 5xx, 408, 423, timeouts and broken connections.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => matches!(status, 408 | 423 | 500..=599),
            ApiError::Timeout(_) | ApiError::Connect(_) | ApiError::Transport(_) => true,
            ApiError::Decode { .. } => false,
            ApiError::Xml { exception_id, .. } => exception_id == xml::XML_NOT_RESPONDING,
        }
    }
    /// Whether a create that ended this way may still have been carried
    /// out. Only answers that say "not done" (4xx, and a connection that
    /// never opened) rule it out.
    pub fn may_have_happened(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => *status >= 500 || *status == 408,
            ApiError::Connect(_) | ApiError::Xml { .. } => false,
            ApiError::Timeout(_) | ApiError::Transport(_) | ApiError::Decode { .. } => true,
        }
    }
    /// The raw Retry-After header of the answer.
    pub fn retry_after(&self) -> Option<&str> {
        match self {
            ApiError::Status { retry_after, .. } | ApiError::Xml { retry_after, .. } => {
                retry_after.as_deref()
            }
            _ => None,
        }
    }
}

/// A successful answer and the trackingId that came with it.
#[derive(Clone, Debug)]
pub struct Answer<T> {
    pub value: T,
    pub status: u16,
    pub tracking_id: Option<String>,
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

    /// `url` if it is on this client's server (scheme, host and port), so
    /// that a `Link` header can never send our token elsewhere.
    fn same_server(&self, url: &str) -> Option<Url> {
        let url = self.base.join(url).ok()?;
        (url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default())
        .then_some(url)
    }
}

/// A path segment, percent-encoded (Webex ids are URL-safe base64; this
/// keeps a malformed one from changing the path).
fn encode_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
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
        let xml = |id: &str| ApiError::Xml {
            exception_id: id.into(),
            reason: "r".into(),
            retry_after: (id == "000045").then(|| "60".into()),
        };
        assert!(xml("000045").is_rate_limited() && xml("000045").retry_after() == Some("60"));
        assert!(xml("030002").is_unauthorized() && xml("030048").is_unauthorized());
        assert!(xml("000035").is_retryable());
        let row = xml("999999");
        assert!(
            !row.is_retryable()
                && !row.is_unauthorized()
                && !row.is_rate_limited()
                && !row.may_have_happened()
        );
        assert_eq!(row.to_string(), "XML API error 999999: r");
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

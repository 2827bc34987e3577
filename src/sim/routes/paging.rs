//! Paged listings as Webex answers them: at most `max` items and, when more match, a
//! `Link: <URL>; rel="next"` header. The URL is the request's own (absolute when the
//! request carried a `Host` header, else just path and query) with the
//! simulator-internal [`CURSOR_PARAM`] added, or replaced when the request already had
//! one; following it gives the next page, and the last page has no `Link`.
//!
//! A cursor is opaque to clients: the unpadded URL-safe base64 of a JSON object that
//! only the listing which issued it reads back (where the previous page ended, and
//! whatever the listing keeps fixed from page to page).

use axum::http::header::{HOST, LINK};
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use url::form_urlencoded;

/// Query parameter of a `Link` URL carrying the cursor. Simulator-internal: real Webex
/// has its own, and clients must follow the `Link` URL as it is, never build one.
pub(crate) const CURSOR_PARAM: &str = "cursor";

/// The cursor text of a position.
pub(crate) fn encode<T: Serialize>(position: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

/// The position in a cursor; `Err` is the problem to answer with a 400.
pub(crate) fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T, String> {
    URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            format!("{CURSOR_PARAM} '{cursor}' is not valid: follow the Link header as it is.")
        })
}

/// The 200 answer `{items}`, with a `Link` to the page after it when `next` (its
/// cursor) is given.
pub(crate) fn answer(
    items: Vec<Value>,
    next: Option<&str>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let mut response = Json(json!({ "items": items })).into_response();
    if let Some(link) = next.and_then(|cursor| next_link(uri, headers, cursor)) {
        response.headers_mut().insert(LINK, link);
    }
    response
}

/// `<URL>; rel="next"` for the page at `cursor`, absolute when the request named its
/// host (a host that cannot be written in a header gives a path-only URL). Path and
/// form-encoded query are plain ASCII, so the path-only form always fits a header.
fn next_link(uri: &Uri, headers: &HeaderMap, cursor: &str) -> Option<HeaderValue> {
    let target = next_target(uri, cursor);
    let host = headers.get(HOST).and_then(|host| host.to_str().ok());
    host.and_then(|host| {
        HeaderValue::from_str(&format!("<http://{host}{target}>; rel=\"next\"")).ok()
    })
    .or_else(|| HeaderValue::from_str(&format!("<{target}>; rel=\"next\"")).ok())
}

/// Path and query of the next page: the request's query without its cursor, plus
/// `cursor`.
fn next_target(uri: &Uri, cursor: &str) -> String {
    let query = uri.query().unwrap_or_default();
    let kept = form_urlencoded::parse(query.as_bytes()).filter(|(name, _)| name != CURSOR_PARAM);
    let mut next = form_urlencoded::Serializer::new(String::new());
    next.extend_pairs(kept).append_pair(CURSOR_PARAM, cursor);
    format!("{}?{}", uri.path(), next.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let cursor = encode(&(7_u64, "x"));
        assert_eq!(decode::<(u64, String)>(&cursor), Ok((7, "x".to_owned())));
        assert!(decode::<(u64, String)>("not a cursor").is_err());
        assert!(decode::<u64>(&encode(&"text")).is_err());
    }

    #[test]
    fn next_link_keeps_the_query_and_replaces_the_cursor() {
        let uri: Uri = "/v1/meetings?integrationTag=a%20b&max=10&cursor=old"
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(
            next_link(&uri, &headers, "new").unwrap(),
            "</v1/meetings?integrationTag=a+b&max=10&cursor=new>; rel=\"next\""
        );
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert_eq!(
            next_link(&uri, &headers, "new").unwrap(),
            "<http://127.0.0.1:8080/v1/meetings?integrationTag=a+b&max=10&cursor=new>; rel=\"next\""
        );
    }
}

//! The checks every `/v1/*` request passes before its handler, in this order:
//! count it, wait the configured latency, rate limit (429), access token (401),
//! injected failure (5xx); with `rate_limit_on_arrival`, the rate limit comes
//! before the latency (a 429 is answered at once). The OAuth endpoints
//! (authorize and token) only get the count and the latency.
//! The gate also attaches the tracking id to the request and to the answer.
//! Past the count, a request is handled to the end even if its client goes
//! away (a timeout, a killed process), as a real server does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::bearer_token;
use super::errors::{ApiError, TrackingId, TRACKING_HEADER};
use crate::sim::model::limiter::Verdict;
use crate::sim::model::state::SimState;
use crate::sim::server::ConnectionKill;
use crate::sim::SimConfig;

/// Prefix of the simulated REST API; other paths (such as `/_sim/stats`) skip the gate.
const API_PREFIX: &str = "/v1/";

/// The OAuth token endpoint, exempt from rate limit, auth and injected failures.
pub(crate) const TOKEN_PATH: &str = "/v1/access_token";

/// The OAuth authorization (browser consent) endpoint, exempt like [`TOKEN_PATH`].
pub(crate) const AUTHORIZE_PATH: &str = "/v1/authorize";

/// Middleware running the checks; see the module documentation.
pub(crate) async fn gate(
    State(sim): State<Arc<SimState>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with(API_PREFIX) {
        return next.run(request).await;
    }
    let mut number = 0;
    let in_flight = InFlight::enter(&sim);
    sim.record(|stats| {
        stats.requests += 1;
        number = stats.requests;
        stats.max_in_flight = stats.max_in_flight.max(in_flight.0);
    });
    let tracking = TrackingId::from_headers(request.headers());
    request.extensions_mut().insert(tracking.clone());
    // A server that has a request works on it whatever happens to the
    // client: one that gives up (a timeout) or dies (a kill) during the
    // latency still gets its create carried out. So the request is read
    // whole, then handled in a task of its own that the client's leaving
    // does not cancel.
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        // The client left before sending it all: nothing to work on.
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let request = Request::from_parts(parts, axum::body::Body::from(body));
    let latency = match sim.config.latency_max {
        Some(max) if max > sim.config.latency => {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(sim.config.seed ^ number);
            rng.random_range(sim.config.latency..=max)
        }
        _ => sim.config.latency,
    };
    let kill = request.extensions().get::<ConnectionKill>().cloned();
    let killed = kill.clone();
    let exempt = {
        let path = request.uri().path();
        path == TOKEN_PATH || path == AUTHORIZE_PATH
    };
    let work = tokio::spawn(async move {
        // Counted until the work is done, whether or not anyone waits for it.
        let _in_flight = in_flight;
        // On arrival (a gateway in front of the work) or after the latency.
        let early = !exempt && sim.config.rate_limit_on_arrival;
        let mut checked = if early {
            check_rate_limit(&sim)
        } else {
            Ok(())
        };
        if !latency.is_zero() && checked.is_ok() {
            tokio::time::sleep(latency).await;
        }
        if checked.is_ok() && !exempt {
            checked = admit(&sim, request.headers(), !early);
        }
        let mut response = match checked {
            // A handler that dropped the connection never answers: its work
            // is done, so is this task.
            Ok(()) => match killed {
                Some(killed) => tokio::select! {
                    response = next.run(request) => response,
                    () = killed.triggered() => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                },
                None => next.run(request).await,
            },
            Err(refusal) => refusal.into_response(&sim.config, &tracking),
        };
        if let Ok(value) = HeaderValue::from_str(&tracking.0) {
            response.headers_mut().insert(TRACKING_HEADER, value);
        }
        response
    });
    let answer = async {
        work.await
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    };
    match kill {
        // A dropped connection gets no answer, not even the one above.
        Some(kill) => tokio::select! {
            biased;
            () = kill.triggered() => std::future::pending().await,
            response = answer => response,
        },
        None => answer.await,
    }
}

/// The largest request body the simulator reads (Webex's bodies are small).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A request counted in `SimState::in_flight` until dropped (when its work
/// is done); holds the count it entered at.
struct InFlight(u64, Arc<SimState>);

impl InFlight {
    fn enter(sim: &Arc<SimState>) -> Self {
        InFlight(
            sim.in_flight.fetch_add(1, Ordering::Relaxed) + 1,
            sim.clone(),
        )
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.1.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why the gate answered instead of the handler.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Refusal {
    /// 429: the bucket is empty or a Retry-After window is open.
    RateLimited,
    /// 401: no valid access token.
    Unauthorized,
    /// An injected 500/502/503.
    Injected(StatusCode),
}

impl Refusal {
    /// The Webex error answer (with `Retry-After` for a 429).
    fn into_response(self, config: &SimConfig, tracking: &TrackingId) -> Response {
        let (status, message) = match self {
            Refusal::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests have been sent in a given amount of time and the request has been rate limited.".to_owned(),
            ),
            Refusal::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "The request requires a valid access token set in the Authorization request header.".to_owned(),
            ),
            Refusal::Injected(status) => (
                status,
                format!(
                    "{} (injected by the simulator; nothing was done).",
                    status.canonical_reason().unwrap_or("Server error")
                ),
            ),
        };
        let mut response = ApiError::new(status, message, tracking).into_response();
        if self == Refusal::RateLimited {
            response
                .headers_mut()
                .insert(RETRY_AFTER, retry_after(config));
        }
        response
    }
}

/// The `Retry-After` value: the configured literal if any, else the window in seconds.
fn retry_after(config: &SimConfig) -> HeaderValue {
    config
        .retry_after_raw
        .as_deref()
        .and_then(|raw| HeaderValue::from_str(raw).ok())
        .unwrap_or_else(|| HeaderValue::from(config.retry_after_secs))
}

/// Runs the rate limit (unless it was checked on arrival), auth and
/// failure-injection checks of an API request, counting each refusal.
fn admit(sim: &SimState, headers: &HeaderMap, rate_limit: bool) -> Result<(), Refusal> {
    if rate_limit {
        check_rate_limit(sim)?;
    }
    check_auth(sim, headers)?;
    inject_failure(sim)
}

/// Refuses when the bucket is empty or a Retry-After window is open.
fn check_rate_limit(sim: &SimState) -> Result<(), Refusal> {
    let verdict = sim.limiter().check(Instant::now());
    match verdict {
        Verdict::Allowed => return Ok(()),
        Verdict::Opened => sim.record(|stats| stats.rate_limited += 1),
        Verdict::InWindow { early } => sim.record(|stats| {
            stats.rate_limited += 1;
            stats.in_window_requests += 1;
            stats.early_requests += u64::from(early);
        }),
    }
    Err(Refusal::RateLimited)
}

/// Refuses unless the request carries a valid bearer access token (which then uses up
/// one request of its budget).
fn check_auth(sim: &SimState, headers: &HeaderMap) -> Result<(), Refusal> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    if token.is_some_and(|token| sim.tokens().authorize(token, Instant::now())) {
        return Ok(());
    }
    sim.record(|stats| stats.unauthorized += 1);
    Err(Refusal::Unauthorized)
}

/// With probability `fail_rate`, refuses with a 500/502/503 instead of doing anything.
fn inject_failure(sim: &SimState) -> Result<(), Refusal> {
    if !sim.chance(sim.config.fail_rate) {
        return Ok(());
    }
    let status = sim.pick(&[
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::BAD_GATEWAY,
        StatusCode::SERVICE_UNAVAILABLE,
    ]);
    sim.record(|stats| stats.injected_failures += 1);
    Err(Refusal::Injected(status))
}

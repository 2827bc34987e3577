//! The HTTP side of the simulator: the router, the gate every `/v1/*` request passes,
//! and the handlers, which parse requests, call into [`model`](super::model) and shape
//! the answers (status codes, headers, JSON bodies, Webex error shapes, paging links).

pub(super) mod auth;
pub(super) mod authorize;
pub(super) mod errors;
pub(super) mod gate;
pub(super) mod licenses;
pub(super) mod meeting_body;
pub(super) mod meetings;
pub(super) mod paging;
pub(super) mod people;
pub(super) mod person_body;
pub(super) mod user_settings;
pub(super) mod xml;

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, patch, post};
use axum::{middleware, Json, Router};

use crate::sim::model::state::SimState;
use crate::sim::SimStats;

/// The routes, behind the gate (which only acts on `/v1/*`).
pub(super) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route(gate::TOKEN_PATH, post(auth::access_token))
        .route(gate::AUTHORIZE_PATH, get(authorize::authorize))
        .route("/v1/people", get(people::list).post(people::create))
        .route("/v1/people/me", get(people::me))
        .route(
            "/v1/people/{personId}",
            get(people::get_one).put(people::update),
        )
        .route("/v1/licenses", get(licenses::list))
        .route("/v1/licenses/users", patch(licenses::patch_users))
        .route("/v1/meetings", get(meetings::list).post(meetings::create))
        .route(
            "/v1/meetings/{meetingId}",
            get(meetings::get_one).delete(meetings::delete_one),
        )
        .route("/v1/meetingPreferences/sites", get(user_settings::sites))
        .route(
            "/v1/admin/meeting/config/sessionTypes",
            get(user_settings::site_session_types),
        )
        .route(
            "/v1/admin/meeting/config/trackingCodes",
            get(user_settings::site_tracking_codes),
        )
        .route(
            "/v1/admin/meeting/userconfig/sessionTypes",
            get(user_settings::user_session_types).put(user_settings::put_user_session_types),
        )
        .route(
            "/v1/admin/meeting/userconfig/trackingCodes",
            get(user_settings::user_tracking_codes).put(user_settings::put_user_tracking_codes),
        )
        .route("/WBXService/XMLService", post(xml::service))
        .route("/_sim/stats", get(stats))
        .fallback(errors::unknown_path)
        .layer(middleware::from_fn_with_state(state.clone(), gate::gate))
        .with_state(state)
}

/// `GET /_sim/stats`.
async fn stats(State(sim): State<Arc<SimState>>) -> Json<SimStats> {
    Json(sim.stats())
}

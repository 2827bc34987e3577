//! `GET /v1/people/me`: the signed-in admin every access token belongs to.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::state::SimState;
use super::ADMIN_EMAIL;

/// The admin's person id: the unpadded base64 of
/// `ciscospark://us/PEOPLE/5a1c0e5e-0000-4000-8000-00000000ad01`.
pub(crate) const ADMIN_PERSON_ID: &str =
    "Y2lzY29zcGFyazovL3VzL1BFT1BMRS81YTFjMGU1ZS0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMGFkMDE";

/// `GET /v1/people/me`: a Person as in the admin spec.
pub(crate) async fn me(State(sim): State<Arc<SimState>>) -> Json<Value> {
    Json(json!({
        "id": ADMIN_PERSON_ID,
        "emails": [ADMIN_EMAIL],
        "displayName": "Sim Admin",
        "firstName": "Sim",
        "lastName": "Admin",
        "orgId": sim.config.org_id,
        "created": "2020-01-06T09:00:00.000Z",
        "status": "active",
        "type": "person",
    }))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use base64::Engine as _;

    use super::super::DEFAULT_ORG_ID;
    use super::*;

    #[test]
    fn ids_are_webex_style() {
        let decode = |id: &str| String::from_utf8(STANDARD_NO_PAD.decode(id).unwrap()).unwrap();
        assert_eq!(
            decode(ADMIN_PERSON_ID),
            "ciscospark://us/PEOPLE/5a1c0e5e-0000-4000-8000-00000000ad01"
        );
        assert_eq!(
            decode(DEFAULT_ORG_ID),
            "ciscospark://us/ORGANIZATION/5a1c0e5e-0000-4000-8000-00000000c0de"
        );
    }
}

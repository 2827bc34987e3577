//! Meeting settings of a user on a site, over REST: the sites a person (or
//! the admin) has, a site's session types and tracking codes, and a user's
//! session types and tracking codes (read, and replaced whole).
//!
//! The user GETs take `email` as an HTTP **header** (not a query
//! parameter), and every call sends `siteUrl`: without it Webex answers
//! about the *admin's* preferred site, not the user's.

use reqwest::header::AUTHORIZATION;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};

use super::*;

/// One of a person's (or the admin's) meeting sites (`SitesObject.sites`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteRef {
    pub site_url: String,
    #[serde(default)]
    pub default: bool,
}

#[derive(Deserialize)]
struct Sites {
    #[serde(default)]
    sites: Vec<SiteRef>,
}

/// A session type (`SiteSessionType`, and the `SessionType` of a user).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionType {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    #[serde(default)]
    pub short_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// A site's tracking code (`GetTrackingCodeObject`, the fields we use).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackingCode {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    pub name: String,
    /// `text`, `select`, `editableSelect` or `hostProfileSelect`.
    #[serde(default)]
    pub input_mode: String,
    #[serde(default)]
    pub options: Vec<TrackingOption>,
    /// `optional`, `required`, `adminSet` or `notUsed`.
    #[serde(default)]
    pub host_profile_code: Option<String>,
}

/// One option of a tracking code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackingOption {
    pub value: String,
    #[serde(default)]
    pub default_value: bool,
}

/// A user's value of one tracking code (`GetTrackingCodeItemForUserObject`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TrackingValue {
    /// The spec's schema says string, its example a number: both are read.
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// `UserSessionTypes`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserSessionTypes {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    session_types: Vec<SessionType>,
}

/// `GetTrackingCodeForUserObject`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserTrackingCodes {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    tracking_codes: Vec<TrackingValue>,
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a number, got {other}"
        ))),
    }
}

fn opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a number, got {other}"
        ))),
    }
}

fn map<T, U>(a: Answer<T>, f: impl FnOnce(T) -> U) -> Answer<U> {
    Answer {
        value: f(a.value),
        status: a.status,
        tracking_id: a.tracking_id,
    }
}

impl Client {
    /// `GET /meetingPreferences/sites[?userEmail=]`: the meeting sites of a
    /// person (with `user`), or of the token's owner.
    pub async fn meeting_sites(
        &self,
        token: &SecretString,
        user: Option<&str>,
        tracking_id: &str,
    ) -> Result<Answer<Vec<SiteRef>>, ApiError> {
        let mut req = self
            .http
            .get(self.url("meetingPreferences/sites"))
            .header(AUTHORIZATION, bearer(token));
        if let Some(email) = user {
            req = req.query(&[("userEmail", email)]);
        }
        let a: Answer<Sites> = self.send(req, tracking_id).await?;
        Ok(map(a, |s| s.sites))
    }

    /// `GET /admin/meeting/config/sessionTypes?siteUrl=`: a site's session types.
    pub async fn site_session_types(
        &self,
        token: &SecretString,
        site: &str,
    ) -> Result<Answer<Vec<SessionType>>, ApiError> {
        let req = self
            .http
            .get(self.url("admin/meeting/config/sessionTypes"))
            .header(AUTHORIZATION, bearer(token))
            .query(&[("siteUrl", site)]);
        let a: Answer<Items<SessionType>> = self.send(req, &new_tracking_id()).await?;
        Ok(map(a, |i| i.items))
    }

    /// `GET /admin/meeting/config/trackingCodes?siteUrl=`: a site's tracking codes.
    pub async fn site_tracking_codes(
        &self,
        token: &SecretString,
        site: &str,
    ) -> Result<Answer<Vec<TrackingCode>>, ApiError> {
        let req = self
            .http
            .get(self.url("admin/meeting/config/trackingCodes"))
            .header(AUTHORIZATION, bearer(token))
            .query(&[("siteUrl", site)]);
        let a: Answer<Items<TrackingCode>> = self.send(req, &new_tracking_id()).await?;
        Ok(map(a, |i| i.items))
    }

    /// `GET /admin/meeting/userconfig/sessionTypes?siteUrl=` with the
    /// `email` header: the user's session types on the site.
    pub async fn user_session_types(
        &self,
        token: &SecretString,
        site: &str,
        email: &str,
        tracking_id: &str,
    ) -> Result<Answer<Vec<SessionType>>, ApiError> {
        let req = self
            .http
            .get(self.url("admin/meeting/userconfig/sessionTypes"))
            .header(AUTHORIZATION, bearer(token))
            .header("email", email)
            .query(&[("siteUrl", site)]);
        let a: Answer<Items<UserSessionTypes>> = self.send(req, tracking_id).await?;
        let status = a.status;
        let tracking = a.tracking_id.clone();
        // One entry, the user's; an answer about somebody else is not taken
        // for theirs.
        let mut items = a.value.items;
        let pos = items.iter().position(|u| {
            u.email
                .as_deref()
                .is_none_or(|e| e.eq_ignore_ascii_case(email))
        });
        match pos {
            Some(i) => Ok(Answer {
                value: items.swap_remove(i).session_types,
                status,
                tracking_id: tracking,
            }),
            None => Err(ApiError::Decode {
                status,
                detail: format!("the answer lists no session types for {email}"),
                tracking_id: tracking,
            }),
        }
    }

    /// `PUT /admin/meeting/userconfig/sessionTypes`: the user's complete set.
    /// Returns the set Webex answers with.
    pub async fn put_user_session_types(
        &self,
        token: &SecretString,
        site: &str,
        email: &str,
        ids: &[String],
        tracking_id: &str,
    ) -> Result<Answer<Vec<SessionType>>, ApiError> {
        let body = serde_json::json!({ "siteUrl": site, "email": email, "sessionTypeIds": ids });
        let req = self
            .http
            .put(self.url("admin/meeting/userconfig/sessionTypes"))
            .header(AUTHORIZATION, bearer(token))
            .json(&body);
        let a: Answer<UserSessionTypes> = self.send(req, tracking_id).await?;
        Ok(map(a, |u| u.session_types))
    }

    /// `GET /admin/meeting/userconfig/trackingCodes?siteUrl=` with the
    /// `email` header: the user's tracking code values on the site.
    pub async fn user_tracking_codes(
        &self,
        token: &SecretString,
        site: &str,
        email: &str,
        tracking_id: &str,
    ) -> Result<Answer<Vec<TrackingValue>>, ApiError> {
        let req = self
            .http
            .get(self.url("admin/meeting/userconfig/trackingCodes"))
            .header(AUTHORIZATION, bearer(token))
            .header("email", email)
            .query(&[("siteUrl", site)]);
        let a: Answer<UserTrackingCodes> = self.send(req, tracking_id).await?;
        // An answer about somebody else (the caller, when the header was
        // lost on the way) is not taken for theirs.
        if let Some(other) = a
            .value
            .email
            .as_deref()
            .filter(|e| !e.eq_ignore_ascii_case(email))
        {
            return Err(ApiError::Decode {
                status: a.status,
                detail: format!("the answer is about {other}, not {email}"),
                tracking_id: a.tracking_id,
            });
        }
        Ok(map(a, |u| u.tracking_codes))
    }

    /// `PUT /admin/meeting/userconfig/trackingCodes`: the user's complete
    /// list of values (by name). Returns the list Webex answers with.
    pub async fn put_user_tracking_codes(
        &self,
        token: &SecretString,
        site: &str,
        email: &str,
        codes: &[(String, String)],
        tracking_id: &str,
    ) -> Result<Answer<Vec<TrackingValue>>, ApiError> {
        let codes: Vec<_> = codes
            .iter()
            .map(|(name, value)| serde_json::json!({ "name": name, "value": value }))
            .collect();
        let body = serde_json::json!({ "siteUrl": site, "email": email, "trackingCodes": codes });
        let req = self
            .http
            .put(self.url("admin/meeting/userconfig/trackingCodes"))
            .header(AUTHORIZATION, bearer(token))
            .json(&body);
        let a: Answer<UserTrackingCodes> = self.send(req, tracking_id).await?;
        Ok(map(a, |u| u.tracking_codes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_code_ids_are_read_as_strings_or_numbers() {
        let v: TrackingValue =
            serde_json::from_str(r#"{"id": 1, "name": "Department", "value": "Sales"}"#).unwrap();
        assert_eq!(v.id.as_deref(), Some("1"));
        let v: TrackingValue =
            serde_json::from_str(r#"{"id": "7", "name": "Department", "value": "Sales"}"#).unwrap();
        assert_eq!(v.id.as_deref(), Some("7"));
        let c: TrackingCode = serde_json::from_str(
            r#"{"id": 3, "name": "Project", "inputMode": "select", "options": [{"value": "A", "defaultValue": true}], "hostProfileCode": "optional", "siteUrl": "x", "scheduleStartCodes": []}"#,
        )
        .unwrap();
        assert_eq!(c.id, "3");
        assert_eq!(c.options[0].value, "A");
        assert!(serde_json::from_str::<TrackingValue>(r#"{"id": [1], "name": "x"}"#).is_err());
    }
}

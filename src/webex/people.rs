//! People and licenses: who the token is, the org's licenses, people by
//! email, create, full-replace update, license changes.

use reqwest::header::AUTHORIZATION;
use secrecy::SecretString;
use serde::Deserialize;

use super::*;

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

impl Client {
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
}

//! Meetings: create, list by integration tag (all pages), delete.

use reqwest::header::AUTHORIZATION;
use secrecy::SecretString;
use serde::Deserialize;

use super::*;

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

impl Client {
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
}

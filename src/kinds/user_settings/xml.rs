//! The user-settings kind over the Meetings XML API (`--api xml`): the run's
//! session tickets, the sites read with `GetSite` and `LstMeetingType`, and
//! one row carried out with `GetUser` and `SetUser`.
//!
//! **One ticket per site, shared by every worker.** `AuthenticateUser`
//! turns the run's OAuth access token into a session ticket; the ticket is
//! kept in memory only (it is a secret: never printed, logged or queued),
//! obtained again shortly before its `timeToLive` runs out (counted from
//! when we received it: the server's clock may differ), when the OAuth
//! token it was made from has been refreshed, and when an answer refuses it
//! (030002). Each site's ticket is obtained in a single flight: the workers
//! that need it meanwhile wait for the one request, so a ticket that expires
//! under eight workers causes exactly one `AuthenticateUser`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::engine::Api;
use crate::kinds::{Org, PrepareError};
use crate::store::Outcome;
use crate::webex::xml::{
    authenticate_user, get_site, get_user, lst_meeting_type, read_meeting_types, read_site,
    read_ticket, read_user, set_user, Node, SecurityContext, XmlEndpoint, XmlMeetingType,
    XML_BAD_CREDENTIALS,
};
use crate::webex::{
    new_tracking_id, Answer, ApiError, Client, SessionType, TrackingCode, TrackingOption,
};

use super::check::SiteConfig;
use super::run::{
    action, code_labels, done, mapped_site, merge_codes, same_codes, same_set, type_labels, Change,
    Plan,
};

/// A ticket in use.
struct Held {
    /// Which ticket (to forget only the one that was refused).
    id: u64,
    ticket: SecretString,
    /// SHA-256 of the OAuth token it was made from.
    token: [u8; 32],
    /// Renewed from this moment on.
    until: Instant,
}

/// The run's XML API sessions: who calls, where, and one ticket per site.
pub struct XmlSession {
    endpoint: XmlEndpoint,
    /// The admin's `webExID`: the token owner's email (`GET /people/me`).
    web_ex_id: String,
    /// Each site's ticket (by `siteName`), behind its own async lock: the
    /// single flight.
    tickets: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Held>>>>>,
    /// Fingerprints of OAuth tokens that a refresh replaced: a worker still
    /// holding one uses the ticket made from the newer token instead of
    /// getting another (tokens only move forward).
    retired: Mutex<Vec<[u8; 32]>>,
    /// Ids of the tickets obtained.
    next: AtomicU64,
}

/// A site's `siteName`: the first label of its URL.
pub fn site_name(site_url: &str) -> &str {
    site_url.split('.').next().unwrap_or(site_url)
}

fn fingerprint(token: &SecretString) -> [u8; 32] {
    Sha256::digest(token.expose_secret().as_bytes()).into()
}

/// How long before its end a ticket is renewed: a tenth of its life, at
/// most 100 s (Control Hub renewed 100 s early).
fn margin(ttl: Duration) -> Duration {
    (ttl / 10).min(Duration::from_secs(100))
}

impl XmlSession {
    pub fn new(endpoint: XmlEndpoint, web_ex_id: String) -> XmlSession {
        XmlSession {
            endpoint,
            web_ex_id,
            tickets: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
            next: AtomicU64::new(1),
        }
    }

    fn slot(&self, site_name: &str) -> Arc<tokio::sync::Mutex<Option<Held>>> {
        self.tickets
            .lock()
            .expect("tickets")
            .entry(site_name.to_owned())
            .or_default()
            .clone()
    }

    /// The site's ticket made from `token`, obtained first if there is none
    /// that is still good (one request, whoever else is waiting for it).
    async fn ticket(
        &self,
        client: &Client,
        token: &SecretString,
        site_name: &str,
    ) -> Result<(u64, SecretString), ApiError> {
        let slot = self.slot(site_name);
        let mut held = slot.lock().await;
        let made_from = fingerprint(token);
        if let Some(h) = held.as_ref() {
            let retired = self.retired.lock().expect("retired tokens");
            let current = h.token == made_from || retired.contains(&made_from);
            if current && Instant::now() < h.until {
                return Ok((h.id, h.ticket.clone()));
            }
            drop(retired);
            if h.token != made_from {
                // A refreshed token: the ticket of the one it replaced goes.
                self.retired.lock().expect("retired tokens").push(h.token);
            }
        }
        let answer = client
            .xml_read(
                &self.endpoint,
                authenticate_user(site_name, &self.web_ex_id, token),
                &new_tracking_id(),
                read_ticket,
            )
            .await
            .map_err(|e| match e {
                // Say what the refusal most likely means.
                ApiError::Xml {
                    exception_id,
                    reason,
                    retry_after,
                } if exception_id == XML_BAD_CREDENTIALS => ApiError::Xml {
                    reason: format!("{reason} (AuthenticateUser refused the access token for {site_name}: the Meetings XML API needs an integration's token with the spark:all scope, owned by a site admin)"),
                    exception_id,
                    retry_after,
                },
                e => e,
            })?;
        let ttl = answer.value.time_to_live;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        tracing::info!("new XML API session ticket for {site_name} (valid for {ttl:?})");
        *held = Some(Held {
            id,
            ticket: answer.value.ticket.clone(),
            token: made_from,
            until: Instant::now() + ttl.saturating_sub(margin(ttl)),
        });
        Ok((id, answer.value.ticket))
    }

    /// Forgets ticket `id` of the site (refused by the server), unless
    /// another worker has already replaced it.
    async fn forget(&self, site_name: &str, id: u64) {
        let slot = self.slot(site_name);
        let mut held = slot.lock().await;
        if held.as_ref().is_some_and(|h| h.id == id) {
            *held = None;
        }
    }

    /// Sends one ticketed request to a site: `build` writes it for a
    /// security context, `read` reads the answer's body. A refused ticket
    /// is replaced once (one new ticket for all) and the request sent again;
    /// refused again, the error goes up as "unauthorized" (the run's one
    /// OAuth refresh, then a stop).
    pub async fn call<T>(
        &self,
        client: &Client,
        token: &SecretString,
        site_name: &str,
        tracking_id: &str,
        build: impl Fn(&SecurityContext<'_>) -> Vec<u8>,
        read: impl Fn(&Node) -> Result<T, String>,
    ) -> Result<Answer<T>, ApiError> {
        let mut replaced = false;
        loop {
            let (id, ticket) = self.ticket(client, token, site_name).await?;
            let ctx = SecurityContext {
                site_name,
                web_ex_id: &self.web_ex_id,
                ticket: &ticket,
            };
            match client
                .xml_read(&self.endpoint, build(&ctx), tracking_id, &read)
                .await
            {
                Err(e) if !replaced && e.xml_exception() == Some(XML_BAD_CREDENTIALS) => {
                    tracing::info!(
                        "the XML API refused the session ticket of {site_name}: getting a new one"
                    );
                    self.forget(site_name, id).await;
                    replaced = true;
                }
                other => return other,
            }
        }
    }

    /// Every meeting type of a site (`LstMeetingType`, page by page).
    async fn meeting_types(
        &self,
        client: &Client,
        token: &SecretString,
        site_name: &str,
    ) -> Result<Answer<Vec<XmlMeetingType>>, ApiError> {
        const PAGE: u32 = 50;
        let mut all = Vec::new();
        let mut start = 1;
        loop {
            let a = self
                .call(
                    client,
                    token,
                    site_name,
                    &new_tracking_id(),
                    |ctx| lst_meeting_type(ctx, start, PAGE),
                    read_meeting_types,
                )
                .await?;
            let (types, total, returned) = a.value;
            all.extend(types);
            start += returned;
            if returned == 0 || start > total || all.len() >= 10_000 {
                return Ok(Answer {
                    value: all,
                    status: a.status,
                    tracking_id: a.tracking_id,
                });
            }
        }
    }

    /// A site's session types and tracking codes over the XML API: the
    /// meeting types of `LstMeetingType` (else those `GetSite` names), the
    /// tracking codes of `GetSite` (their index is their id).
    pub async fn read_site(&self, org: &Org, url: &str) -> Result<SiteConfig, PrepareError> {
        let name = site_name(url);
        let site = org
            .get(
                &format!("read {url} over the XML API (GetSite)"),
                |client, token| async move {
                    self.call(
                        &client,
                        &token,
                        name,
                        &new_tracking_id(),
                        get_site,
                        read_site,
                    )
                    .await
                },
            )
            .await?;
        let listed = org
            .get(
                &format!("list the meeting types of {url} (LstMeetingType)"),
                |client, token| async move { self.meeting_types(&client, &token, name).await },
            )
            .await?;
        let session_types = if listed.is_empty() {
            site.meeting_types
                .iter()
                .map(|(id, name)| SessionType {
                    id: id.clone(),
                    short_name: Some(name.clone()),
                    name: None,
                    kind: None,
                })
                .collect()
        } else {
            listed
                .into_iter()
                .filter(|t| t.active)
                .map(|t| SessionType {
                    id: t.id,
                    short_name: t.prefix,
                    name: t.name,
                    kind: None,
                })
                .collect()
        };
        let tracking_codes = site
            .tracking_codes
            .into_iter()
            .map(|c| TrackingCode {
                id: c.index.to_string(),
                input_mode: input_mode(&c.input_mode).to_owned(),
                options: c
                    .values
                    .into_iter()
                    .filter(|(_, active)| *active)
                    .map(|(value, _)| TrackingOption {
                        value,
                        default_value: false,
                    })
                    .collect(),
                name: c.name,
                host_profile_code: None,
            })
            .collect();
        Ok(SiteConfig {
            url: url.to_owned(),
            session_types,
            tracking_codes,
        })
    }

    /// One row: `GetUser`, then `SetUser` with only what changes.
    pub(super) async fn carry_out(&self, api: &mut Api<'_>, plan: &Plan<'_>) -> Outcome {
        let client = api.client();
        let name = site_name(&plan.site.url);
        let email = plan.email;
        let user = match api
            .call("get user", |token, tid| async move {
                self.call(
                    client,
                    &token,
                    name,
                    &tid,
                    |ctx| get_user(ctx, email),
                    read_user,
                )
                .await
            })
            .await
        {
            Ok(a) => a.value,
            Err(f) if is_row_failure(&f.error) => {
                let error = f.error.to_string();
                return api.overrule(Outcome::failed(
                    f.error.status(),
                    format!("{email} could not be read on {} ({error}): check that they are a host on that site (a meeting license there), or name another siteUrl", plan.site.url),
                ));
            }
            Err(f) => return f.outcome,
        };
        let code_name = |index: &u32| {
            plan.site
                .tracking_codes
                .iter()
                .find(|c| c.id == index.to_string())
                .map(|c| c.name.clone())
        };
        let mut change = Change::default();
        let desired_types = plan.resolved.types.apply(&user.meeting_types);
        let mut types_to_send = None;
        if let Some(desired) = &desired_types {
            change.types_before = type_labels(plan.site, &user.meeting_types);
            change.types_after = type_labels(plan.site, desired);
            if !same_set(&user.meeting_types, desired) {
                types_to_send = Some(desired.clone());
            }
        }
        let mut tracking_to_send: Vec<(u32, Option<String>)> = Vec::new();
        if !plan.resolved.tracking.is_empty() {
            let current: Vec<(String, String)> = user
                .tracking
                .iter()
                .map(|(i, v)| {
                    (
                        code_name(i).unwrap_or_else(|| format!("trackingCode{i}")),
                        v.clone(),
                    )
                })
                .collect();
            let desired = merge_codes(&current, &plan.resolved.tracking);
            change.codes_before = code_labels(&current);
            change.codes_after = code_labels(&desired);
            if !same_codes(&current, &desired) {
                for (name, _) in &plan.resolved.tracking {
                    let Some(code) = plan.site.tracking_codes.iter().find(|c| &c.name == name)
                    else {
                        continue;
                    };
                    let Ok(index) = code.id.parse::<u32>() else {
                        continue;
                    };
                    let before = current.iter().find(|(n, _)| n == name).map(|(_, v)| v);
                    let after = desired
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone());
                    if before != after.as_ref() {
                        tracking_to_send.push((index, after));
                    }
                }
            }
        }
        let mut written = Vec::new();
        if types_to_send.is_some() {
            written.push("session types");
        }
        if !tracking_to_send.is_empty() {
            written.push("tracking codes");
        }
        if !written.is_empty() {
            let (types, tracking) = (&types_to_send, &tracking_to_send);
            match api
                .call("set user", |token, tid| async move {
                    self.call(
                        client,
                        &token,
                        name,
                        &tid,
                        |ctx| set_user(ctx, email, types.as_deref(), tracking),
                        |_| Ok(()),
                    )
                    .await
                })
                .await
            {
                Ok(_) => {}
                Err(f)
                    if is_row_failure(&f.error)
                        && !tracking.is_empty()
                        && f.error.to_string().to_lowercase().contains("mapped") =>
                {
                    let detail = f.error.to_string();
                    return mapped_site(api, plan, &detail, "");
                }
                Err(f) => return f.outcome,
            }
        }
        let tracking_id = api.last_tracking_id();
        done(
            plan.site.url.clone(),
            &action(&written),
            change,
            Some(200),
            tracking_id,
        )
    }
}

/// An XML failure that is about the row (not the rate, the credentials or
/// a passing trouble).
fn is_row_failure(e: &ApiError) -> bool {
    e.xml_exception().is_some() && !e.is_rate_limited() && !e.is_unauthorized() && !e.is_retryable()
}

/// A `GetSite` input mode in the REST API's words (`select` when a value
/// must be one of the list's, `editableSelect` when the list only
/// suggests, `text` otherwise). Cisco does not document the XML strings;
/// anything naming a list or a select counts as one.
pub fn input_mode(xml: &str) -> &'static str {
    let m = xml.to_ascii_lowercase().replace([' ', '_', '-'], "");
    if m.contains("hostprofile") {
        "hostProfileSelect"
    } else if m.contains("edit") {
        "editableSelect"
    } else if m.contains("select") || m.contains("list") || m.contains("dropdown") {
        "select"
    } else {
        "text"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_renewed_early_and_input_modes_read_as_rest_ones() {
        assert_eq!(margin(Duration::from_secs(5400)), Duration::from_secs(100));
        assert_eq!(margin(Duration::from_secs(2)), Duration::from_millis(200));
        assert_eq!(site_name("acme-eu.webex.com"), "acme-eu");
        assert_eq!(input_mode("Drop down list"), "select");
        assert_eq!(input_mode("select"), "select");
        assert_eq!(input_mode("editableSelect"), "editableSelect");
        assert_eq!(input_mode("HOST_PROFILE_SELECT"), "hostProfileSelect");
        assert_eq!(input_mode("Text"), "text");
        assert_eq!(input_mode("Input text"), "text");
    }
}

//! Carrying out one row of a user-settings run: find the host's site (the
//! row's, or their default one), read their current settings, compute the
//! complete desired set, and write it only when it differs. Every write is
//! a full set, so an attempt whose answer was lost is simply made again:
//! the next attempt reads first and finds it done ("no change").

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::{Api, Failed};
use crate::kinds::{BoxFuture, Runner};
use crate::store::{Claimed, Created, Outcome};

use super::check::{parse_row, resolve, type_label, Layout, Resolved, ResolvedTypes, SiteConfig};
use super::xml::XmlSession;

/// Which API carries the settings.
#[derive(Clone)]
pub enum Via {
    /// `/admin/meeting/userconfig/*` (the default).
    Rest,
    /// The Meetings XML API (`GetUser` / `SetUser`), with the run's one
    /// ticket per site.
    Xml(Arc<XmlSession>),
}

/// Carries out the rows of one user-settings run.
pub struct SettingsRunner {
    /// Where the file's fields are (requests are rebuilt from the cells).
    pub layout: Layout,
    /// The sites this run's token manages, read once per run.
    pub sites: Arc<Vec<SiteConfig>>,
    pub via: Via,
}

/// What the report shows of a row: before and after, as labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    #[serde(default)]
    pub types_before: Vec<String>,
    #[serde(default)]
    pub types_after: Vec<String>,
    #[serde(default)]
    pub codes_before: Vec<String>,
    #[serde(default)]
    pub codes_after: Vec<String>,
}

impl Runner for SettingsRunner {
    // Every attempt reads before it writes, and writes full sets: nothing
    // to reconcile and no final check (the defaults).
    fn execute<'a>(&'a self, row: &'a Claimed, api: &'a mut Api<'_>) -> BoxFuture<'a, Outcome> {
        Box::pin(self.settings(row, api))
    }
}

/// Current and desired values of a host's settings.
pub(super) struct Plan<'a> {
    pub site: &'a SiteConfig,
    pub email: &'a str,
    pub resolved: &'a Resolved,
}

impl SettingsRunner {
    async fn settings(&self, row: &Claimed, api: &mut Api<'_>) -> Outcome {
        let cells = match row.cells() {
            Ok(c) => c,
            Err(e) => return Outcome::failed(None, e),
        };
        let change = match parse_row(&self.layout, &cells, row.line as u64) {
            Ok(c) => c,
            Err(problems) => {
                let text: Vec<String> = problems.into_iter().map(|p| p.message).collect();
                return Outcome::failed(
                    None,
                    format!("the queued row no longer reads: {}", text.join("; ")),
                );
            }
        };
        if change.is_empty() {
            return done(
                change.site.unwrap_or_default(),
                "nothing to change",
                Change::default(),
                None,
                None,
            );
        }
        let site_url = match &change.site {
            Some(s) => s.clone(),
            None => match default_site(api, &change.email).await {
                Ok(s) => s,
                Err(outcome) => return outcome,
            },
        };
        let Some(site) = self.sites.iter().find(|s| s.url == site_url) else {
            return Outcome::failed(
                None,
                format!(
                    "{}'s site {site_url} is not one of the sites this run's token manages ({}); sign in as an admin of that site, or name another siteUrl",
                    change.email,
                    self.sites.iter().map(|s| s.url.as_str()).collect::<Vec<_>>().join(", ")
                ),
            );
        };
        let resolved = match resolve(&change, site) {
            Ok(r) => r,
            Err(problems) => {
                let text: Vec<String> = problems.into_iter().map(|(_, m)| m).collect();
                return Outcome::failed(None, text.join("; "));
            }
        };
        let plan = Plan {
            site,
            email: &change.email,
            resolved: &resolved,
        };
        match &self.via {
            Via::Rest => rest(api, &plan).await,
            Via::Xml(session) => session.carry_out(api, &plan).await,
        }
    }
}

/// The person's default meeting site (`GET /meetingPreferences/sites?userEmail=`).
async fn default_site(api: &mut Api<'_>, email: &str) -> Result<String, Outcome> {
    let client = api.client();
    match api
        .call("sites", |token, tid| async move {
            client.meeting_sites(&token, Some(email), &tid).await
        })
        .await
    {
        Ok(a) => {
            let sites = a.value;
            match sites.iter().find(|s| s.default).or(sites.first()) {
                Some(s) => Ok(super::check::normalize_site(&s.site_url)
                    .unwrap_or_else(|| s.site_url.clone())),
                None => Err(api.overrule(Outcome::failed(
                    Some(a.status),
                    format!("{email} has no meeting site: give them a meeting license first (the users kind), or name the site in siteUrl"),
                ))),
            }
        }
        Err(f) if f.error.status() == Some(404) => Err(api.overrule(Outcome::failed(
            Some(404),
            format!(
                "Webex knows no person {email} ({}); check the address",
                f.error
            ),
        ))),
        Err(f) => Err(f.outcome),
    }
}

/// A host who has no account on the site: the fix, not a bare 404.
pub(super) fn not_a_host(api: &mut Api<'_>, plan: &Plan<'_>, f: &Failed) -> Outcome {
    api.overrule(Outcome::failed(
        f.error.status(),
        format!(
            "{} is not a host on {} ({}): give them a meeting license on that site first (the users kind), or name another siteUrl",
            plan.email, plan.site.url, f.error
        ),
    ))
}

/// Tracking codes mapped to user attributes: Webex refuses per-user changes by design.
pub(super) fn mapped_site(
    api: &mut Api<'_>,
    plan: &Plan<'_>,
    detail: &str,
    before: &str,
) -> Outcome {
    api.overrule(Outcome::failed(
        Some(409),
        format!(
            "{before}{}'s tracking codes are mapped to user attributes in Control Hub, so Webex refuses per-user tracking codes ({detail}): change {}'s attribute instead (Control Hub, or the users CSV), or leave trackingCodes empty",
            plan.site.url, plan.email
        ),
    ))
}

/// Whether two lists hold the same ids (in any order).
pub(super) fn same_set(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&String> = a.iter().collect();
    let mut b: Vec<&String> = b.iter().collect();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

/// The current tracking values with the row's changes (names as the site
/// spells them, so the row's names replace, never double, them).
pub(super) fn merge_codes(
    current: &[(String, String)],
    changes: &[(String, Option<String>)],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = current
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .cloned()
        .collect();
    for (name, value) in changes {
        let at = out.iter().position(|(n, _)| n.eq_ignore_ascii_case(name));
        match (at, value) {
            (Some(i), Some(v)) => out[i] = (name.clone(), v.clone()),
            (Some(i), None) => {
                out.remove(i);
            }
            (None, Some(v)) => out.push((name.clone(), v.clone())),
            (None, None) => {}
        }
    }
    out
}

/// Whether two tracking value lists say the same (names ignore case).
pub(super) fn same_codes(a: &[(String, String)], b: &[(String, String)]) -> bool {
    let norm = |l: &[(String, String)]| {
        let mut v: Vec<(String, String)> = l
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| (n.to_lowercase(), v.clone()))
            .collect();
        v.sort();
        v
    };
    norm(a) == norm(b)
}

pub(super) fn code_labels(codes: &[(String, String)]) -> Vec<String> {
    codes.iter().map(|(n, v)| format!("{n}={v}")).collect()
}

pub(super) fn type_labels(site: &SiteConfig, ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            site.session_types
                .iter()
                .find(|t| &t.id == id)
                .map(type_label)
                .unwrap_or_else(|| id.clone())
        })
        .collect()
}

pub(super) fn done(
    site: String,
    action: &str,
    change: Change,
    status: Option<u16>,
    tracking_id: Option<String>,
) -> Outcome {
    Outcome::Succeeded {
        created: Created {
            id: site,
            number: Some(action.to_owned()),
            link: None,
            extra: Some(serde_json::to_string(&change).expect("a change serializes")),
        },
        status,
        tracking_id,
        note: None,
        check_at: None,
    }
}

/// What was written, for the action column: `updated session types and tracking codes`.
pub(super) fn action(written: &[&str]) -> String {
    if written.is_empty() {
        "no change".to_owned()
    } else {
        format!("updated {}", written.join(" and "))
    }
}

/// One row over REST: session types and tracking codes are read (and
/// written) separately, each only when the row changes them.
async fn rest(api: &mut Api<'_>, plan: &Plan<'_>) -> Outcome {
    let client = api.client();
    let (site, email) = (plan.site.url.as_str(), plan.email);
    let mut change = Change::default();
    let mut written: Vec<&str> = Vec::new();
    let mut last_status = None;
    if plan.resolved.types != ResolvedTypes::Keep {
        let current = match api
            .call("get session types", |token, tid| async move {
                client.user_session_types(&token, site, email, &tid).await
            })
            .await
        {
            Ok(a) => a.value,
            Err(f) if f.error.status() == Some(404) => return not_a_host(api, plan, &f),
            Err(f) => return f.outcome,
        };
        let current: Vec<String> = current.into_iter().map(|t| t.id).collect();
        let desired = plan.resolved.types.apply(&current).unwrap_or_default();
        change.types_before = type_labels(plan.site, &current);
        change.types_after = type_labels(plan.site, &desired);
        if !same_set(&current, &desired) {
            let ids = &desired;
            let echo = match api
                .call("put session types", |token, tid| async move {
                    client
                        .put_user_session_types(&token, site, email, ids, &tid)
                        .await
                })
                .await
            {
                Ok(a) => a,
                Err(f) if f.error.status() == Some(404) => return not_a_host(api, plan, &f),
                Err(f) => return f.outcome,
            };
            let echoed: Vec<String> = echo.value.into_iter().map(|t| t.id).collect();
            if !same_set(&echoed, &desired) {
                return api.overrule(Outcome::failed(
                    Some(echo.status),
                    format!(
                        "Webex answered the session types of {email} with {}, not {}",
                        type_labels(plan.site, &echoed).join("; "),
                        change.types_after.join("; ")
                    ),
                ));
            }
            last_status = Some(echo.status);
            written.push("session types");
        }
    }
    if !plan.resolved.tracking.is_empty() {
        let before = if written.is_empty() {
            String::new()
        } else {
            format!(
                "session types were set ({}), but ",
                change.types_after.join("; ")
            )
        };
        let current = match api
            .call("get tracking codes", |token, tid| async move {
                client.user_tracking_codes(&token, site, email, &tid).await
            })
            .await
        {
            Ok(a) => a.value,
            Err(f) if f.error.status() == Some(404) => return not_a_host(api, plan, &f),
            Err(f) => return f.outcome,
        };
        let current: Vec<(String, String)> =
            current.into_iter().map(|c| (c.name, c.value)).collect();
        let desired = merge_codes(&current, &plan.resolved.tracking);
        change.codes_before = code_labels(&merge_codes(&current, &[]));
        change.codes_after = code_labels(&desired);
        if !same_codes(&current, &desired) {
            let codes = &desired;
            let echo = match api
                .call("put tracking codes", |token, tid| async move {
                    client
                        .put_user_tracking_codes(&token, site, email, codes, &tid)
                        .await
                })
                .await
            {
                Ok(a) => a,
                Err(f) if f.error.status() == Some(409) => {
                    let detail = f.error.to_string();
                    return mapped_site(api, plan, &detail, &before);
                }
                Err(f)
                    if f.error.status() == Some(400)
                        && f.error.to_string().to_lowercase().contains("mapped") =>
                {
                    let detail = f.error.to_string();
                    return mapped_site(api, plan, &detail, &before);
                }
                Err(f) if f.error.status() == Some(404) => return not_a_host(api, plan, &f),
                Err(f) => return f.outcome,
            };
            let echoed: Vec<(String, String)> =
                echo.value.into_iter().map(|c| (c.name, c.value)).collect();
            if !same_codes(&echoed, &desired) {
                return api.overrule(Outcome::failed(
                    Some(echo.status),
                    format!(
                        "{before}Webex answered the tracking codes of {email} with {}, not {}",
                        code_labels(&echoed).join("; "),
                        change.codes_after.join("; ")
                    ),
                ));
            }
            last_status = Some(echo.status);
            written.push("tracking codes");
        }
    }
    let tracking_id = api.last_tracking_id();
    done(
        plan.site.url.clone(),
        &action(&written),
        change,
        last_status.or(Some(200)),
        tracking_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn tracking_changes_merge_into_the_current_values() {
        let current = pairs(&[
            ("Department", "Sales"),
            ("Project", "Apollo"),
            ("Empty", ""),
        ]);
        let changes = vec![
            ("Department".to_owned(), Some("R&D".to_owned())),
            ("Project".to_owned(), None),
            ("Cost Centre".to_owned(), Some("CC-1".to_owned())),
            ("Region".to_owned(), None),
        ];
        assert_eq!(
            merge_codes(&current, &changes),
            pairs(&[("Department", "R&D"), ("Cost Centre", "CC-1")])
        );
        assert!(same_codes(
            &pairs(&[("b", "2"), ("A", "1")]),
            &pairs(&[("a", "1"), ("B", "2"), ("c", "")])
        ));
        assert!(!same_codes(&pairs(&[("a", "1")]), &pairs(&[("a", "2")])));
        assert!(same_set(
            &["3".to_owned(), "9".to_owned()],
            &["9".to_owned(), "3".to_owned()]
        ));
        assert_eq!(action(&[]), "no change");
        assert_eq!(
            action(&["session types", "tracking codes"]),
            "updated session types and tracking codes"
        );
    }
}

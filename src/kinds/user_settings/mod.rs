//! The user-settings job kind: which meeting session types each host may use
//! and the host's tracking codes, per meeting site.
//!
//! - [`check`]: what a row means, and its names resolved against a site's
//!   session types and tracking codes (pure: the sites are an argument);
//! - [`run`]: carrying out a row (read the current settings, write the
//!   complete desired set only when it differs).
//!
//! The run reads the sites the token manages once (`GET
//! /meetingPreferences/sites`), and each site's session types and tracking
//! codes once, before any row is checked.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::csvin::Problem;
use crate::kinds::{BoxFuture, Checker, Job, Kind, KindOptions, Org, PrepareError, Runner};
use crate::store::ReportRow;
use crate::webex::new_tracking_id;

pub mod check;
pub mod run;
pub mod xml;

use check::{check_against_sites, parse_row, type_label, Layout, SiteConfig, TypesChange};
use run::{Change, SettingsRunner, Via};
use xml::XmlSession;

/// The user-settings kind.
pub struct UserSettings;

impl Kind for UserSettings {
    fn name(&self) -> &'static str {
        "user-settings"
    }

    fn about(&self) -> &'static str {
        "Set hosts' meeting session types and tracking codes, per meeting site."
    }

    fn fields(&self) -> &'static [crate::header::Field] {
        &check::FIELDS
    }

    fn scopes(&self) -> &'static [&'static str] {
        // Session types take schedule or config scopes, tracking codes only
        // schedule ones; the sites of a person need the preferences scope.
        &[
            "meeting:admin_schedule_read",
            "meeting:admin_schedule_write",
            "meeting:admin_preferences_read",
        ]
    }

    fn needs_org(&self) -> bool {
        true
    }

    fn prepare<'a>(
        &'a self,
        org: Option<&'a Org>,
        options: &'a KindOptions,
    ) -> BoxFuture<'a, Result<Box<dyn Job>, PrepareError>> {
        Box::pin(async move {
            let org = org.ok_or_else(|| {
                PrepareError::Org("the user-settings kind reads the sites' session types and tracking codes and needs credentials: set WEBEX_ACCESS_TOKEN (or run `webex-bulk auth service-app`)".into())
            })?;
            let (sites, via) = match &options.xml {
                None => (read_sites(org, None).await?, Via::Rest),
                Some(endpoint) => {
                    // The admin's webExID is the token owner's email.
                    let me = org
                        .get(
                            "read who you are (GET /people/me)",
                            |client, token| async move { client.me(&token).await },
                        )
                        .await?;
                    let email = me.emails.first().cloned().ok_or_else(|| {
                        PrepareError::Org("GET /people/me names no email: the XML API needs the admin's email as webExID".into())
                    })?;
                    let session = Arc::new(XmlSession::new(endpoint.clone(), email));
                    (read_sites(org, Some(&session)).await?, Via::Xml(session))
                }
            };
            Ok(Box::new(SettingsJob {
                sites: Arc::new(sites),
                via,
            }) as Box<dyn Job>)
        })
    }

    fn result_columns(&self) -> &'static [&'static str] {
        &[
            // Not `site_url`: it would read as the `siteUrl` field, so a
            // report would drop the file's own siteUrl column (and a failed
            // row fed back in would lose its site).
            "applied_site",
            "session_types_before",
            "session_types_after",
            "tracking_codes_before",
            "tracking_codes_after",
            "action",
        ]
    }

    fn result_cells(&self, row: &ReportRow) -> Vec<String> {
        let change: Change = row
            .result_extra
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default();
        vec![
            row.result_id.clone().unwrap_or_default(),
            change.types_before.join("; "),
            change.types_after.join("; "),
            change.codes_before.join("; "),
            change.codes_after.join("; "),
            row.result_number.clone().unwrap_or_default(),
        ]
    }
}

/// The sites the token manages, each with its session types and tracking
/// codes (over REST, or over the XML API with `xml`): once per site in a run.
async fn read_sites(org: &Org, xml: Option<&XmlSession>) -> Result<Vec<SiteConfig>, PrepareError> {
    let listed = org
        .get("list your meeting sites", |client, token| async move {
            client.meeting_sites(&token, None, &new_tracking_id()).await
        })
        .await?;
    let mut sites: Vec<SiteConfig> = Vec::new();
    for s in listed {
        let url = check::normalize_site(&s.site_url).unwrap_or(s.site_url);
        if sites.iter().any(|k| k.url == url) {
            continue;
        }
        if let Some(session) = xml {
            sites.push(session.read_site(org, &url).await?);
            continue;
        }
        let site = url.as_str();
        let session_types = org
            .get(
                &format!("read the session types of {site}"),
                |client, token| async move { client.site_session_types(&token, site).await },
            )
            .await?;
        let tracking_codes = org
            .get(
                &format!("read the tracking codes of {site}"),
                |client, token| async move { client.site_tracking_codes(&token, site).await },
            )
            .await?;
        sites.push(SiteConfig {
            url,
            session_types,
            tracking_codes,
        });
    }
    Ok(sites)
}

/// The kind, with the sites it manages.
struct SettingsJob {
    sites: Arc<Vec<SiteConfig>>,
    via: Via,
}

impl Job for SettingsJob {
    fn checker(
        &self,
        header: &[String],
        _now: DateTime<Utc>,
    ) -> Result<Box<dyn Checker + '_>, Vec<Problem>> {
        Ok(Box::new(SettingsChecker {
            layout: Layout::from_headers(header)?,
            sites: &self.sites,
        }))
    }

    fn runner(&self, header: &[String], _uid: &str) -> Result<Arc<dyn Runner>, String> {
        let layout = Layout::from_headers(header).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| p.message)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        Ok(Arc::new(SettingsRunner {
            layout,
            sites: self.sites.clone(),
            via: self.via.clone(),
        }))
    }
}

/// A user-settings file's rows, checked against the sites.
struct SettingsChecker<'a> {
    layout: Layout,
    sites: &'a [SiteConfig],
}

impl Checker for SettingsChecker<'_> {
    fn width(&self) -> usize {
        self.layout.width
    }

    fn ignored(&self) -> (&[String], &'static str) {
        (&self.layout.ignored, "user settings fields")
    }

    fn check(
        &mut self,
        fields: &[String],
        line: u64,
        warnings: &mut Vec<Problem>,
    ) -> Result<Option<String>, Vec<Problem>> {
        let change = parse_row(&self.layout, fields, line)?;
        let problems = check_against_sites(&self.layout, &change, line, self.sites);
        if !problems.is_empty() {
            return Err(problems);
        }
        if change.is_empty() {
            warnings.push(
                Problem::line(
                    line,
                    format!("the row changes nothing for {}", change.email),
                    "nothing to do if that is right; fill in session types or tracking codes otherwise",
                )
                .warning(),
            );
        }
        // The request is rebuilt from the cells (and read against the
        // host's current settings) when it is sent.
        Ok(None)
    }

    fn finish(&self) -> Vec<Problem> {
        Vec::new()
    }

    fn preview(&self, fields: &[String], line: u64) -> Vec<(&'static str, String)> {
        let Ok(change) = parse_row(&self.layout, fields, line) else {
            return Vec::new();
        };
        let site = change
            .site
            .as_ref()
            .and_then(|u| self.sites.iter().find(|s| &s.url == u));
        let types = |names: &[String]| {
            names
                .iter()
                .map(|n| match site.and_then(|s| s.session_type(n).ok()) {
                    Some(t) => format!("{} ({})", type_label(t), t.id),
                    None => n.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut shown = vec![
            ("email", change.email.clone()),
            (
                "siteUrl",
                change
                    .site
                    .clone()
                    .unwrap_or_else(|| "(the person's default site)".to_owned()),
            ),
        ];
        match &change.session_types {
            TypesChange::Keep => {}
            TypesChange::Set(set) => shown.push(("sessionTypes", types(set))),
            TypesChange::Change { add, remove } => {
                if !add.is_empty() {
                    shown.push(("addSessionTypes", types(add)));
                }
                if !remove.is_empty() {
                    shown.push(("removeSessionTypes", types(remove)));
                }
            }
        }
        if !change.tracking.is_empty() {
            let codes: Vec<String> = change
                .tracking
                .iter()
                .map(|(n, v)| {
                    // As it will be sent: the site's spelling, when the row names its site.
                    let (n, v) = site
                        .and_then(|s| s.tracking_value(n, v.as_deref()).ok())
                        .unwrap_or_else(|| (n.clone(), v.clone()));
                    match v {
                        Some(v) => format!("{n}={v}"),
                        None => format!("{n} cleared"),
                    }
                })
                .collect();
            shown.push(("trackingCodes", codes.join("; ")));
        }
        shown
    }
}

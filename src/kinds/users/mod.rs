//! The users job kind: create or update people and assign or remove their
//! licenses, from our CSV or a Control Hub export.
//!
//! - [`check`]: what a row means; license names resolved against the org's
//!   licenses (pure: the list is an argument);
//! - [`run`]: carrying out a row (lookup by email, create or `PUT`, license
//!   `PATCH`).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::csvin::Problem;
use crate::kinds::{BoxFuture, Checker, Job, Kind, KindOptions, Org, PrepareError, Runner};
use crate::store::ReportRow;
use crate::webex::License;

pub mod check;
pub mod run;

use check::{parse_row, Layout, UnitCounter};

/// The users kind.
pub struct Users;

impl Kind for Users {
    fn name(&self) -> &'static str {
        "users"
    }

    fn about(&self) -> &'static str {
        "Create or update people and assign or remove licenses (our CSV or a Control Hub export)."
    }

    fn fields(&self) -> &'static [crate::header::Field] {
        &check::FIELDS
    }

    fn scopes(&self) -> &'static [&'static str] {
        &["spark-admin:people_write", "spark-admin:licenses_read"]
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
            options.rest_only(self.name())?;
            let org = org.ok_or_else(|| {
                PrepareError::Org("the users kind lists the org's licenses and needs credentials: set WEBEX_ACCESS_TOKEN (or run `webex-bulk auth service-app`)".into())
            })?;
            // Rows name licenses: `GET /v1/licenses`, once per run.
            let licenses = org
                .get(
                    "list the org's licenses (needed to check license names)",
                    |client, token| async move { client.licenses(&token).await },
                )
                .await?;
            Ok(Box::new(UsersJob { licenses }) as Box<dyn Job>)
        })
    }

    fn result_columns(&self) -> &'static [&'static str] {
        &["person_id", "action", "licenses_before", "licenses_after"]
    }

    fn result_cells(&self, row: &ReportRow) -> Vec<String> {
        let (before, after) = licenses(row.result_extra.as_deref());
        vec![
            row.result_id.clone().unwrap_or_default(),
            row.result_number.clone().unwrap_or_default(),
            before,
            after,
        ]
    }
}

/// A users row's licenses before and after (as the runner records them),
/// each as `A; B`.
fn licenses(extra: Option<&str>) -> (String, String) {
    let v: serde_json::Value = extra
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or_default();
    let list = |key: &str| {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    };
    (list("before"), list("after"))
}

/// The users kind, with the org's licenses.
struct UsersJob {
    licenses: Vec<License>,
}

impl Job for UsersJob {
    fn checker(
        &self,
        header: &[String],
        _now: DateTime<Utc>,
    ) -> Result<Box<dyn Checker + '_>, Vec<Problem>> {
        Ok(Box::new(UserChecker {
            layout: Layout::from_headers(header, &self.licenses)?,
            units: UnitCounter::default(),
            licenses: &self.licenses,
        }))
    }

    fn runner(&self, _header: &[String], _uid: &str) -> Result<Arc<dyn Runner>, String> {
        let license_names: HashMap<String, String> = self
            .licenses
            .iter()
            .map(|l| (l.id.clone(), l.label()))
            .collect();
        Ok(Arc::new(run::UserRunner { license_names }))
    }
}

/// A users file's rows, checked one by one, with the license units they add.
struct UserChecker<'a> {
    layout: Layout,
    units: UnitCounter,
    licenses: &'a [License],
}

impl Checker for UserChecker<'_> {
    fn width(&self) -> usize {
        self.layout.width
    }

    fn ignored(&self) -> (&[String], &'static str) {
        (
            &self.layout.ignored,
            "person fields or licenses of this org",
        )
    }

    fn check(
        &mut self,
        fields: &[String],
        line: u64,
        _warnings: &mut Vec<Problem>,
    ) -> Result<Option<String>, Vec<Problem>> {
        let change = parse_row(&self.layout, fields, line, self.licenses)?;
        self.units.add(&change);
        // The change holds license ids resolved now, against the org.
        Ok(Some(
            serde_json::to_string(&change).expect("a change serializes"),
        ))
    }

    fn finish(&self) -> Vec<Problem> {
        self.units.warnings(self.licenses)
    }

    fn preview(&self, fields: &[String], line: u64) -> Vec<(&'static str, String)> {
        let Ok(change) = parse_row(&self.layout, fields, line, self.licenses) else {
            return Vec::new();
        };
        let labels = |list: &[check::LicenseRef]| {
            list.iter()
                .map(|l| l.label.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let mut shown = vec![("email", change.email.clone())];
        let optional = [
            ("firstName", &change.first_name),
            ("lastName", &change.last_name),
            ("displayName", &change.display_name),
            ("department", &change.department),
            ("title", &change.title),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                shown.push((name, v.clone()));
            }
        }
        if !change.add.is_empty() {
            shown.push(("add licenses", labels(&change.add)));
        }
        if !change.remove.is_empty() {
            shown.push(("remove licenses", labels(&change.remove)));
        }
        shown
    }
}

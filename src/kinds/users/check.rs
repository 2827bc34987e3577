//! The users job kind: what a row of an HR list or a Control Hub export
//! means, and how license names resolve. Pure: the org's licenses are an
//! argument (the run lists them once with `GET /v1/licenses`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::csvin::{is_valid_email, normalize_header, ColumnRef, Problem};
use crate::header::{self, Field, Mapping, Rule};

pub use crate::webex::License;

impl License {
    /// `Name` or, when the name repeats across meeting sites, `Name@siteUrl`.
    pub fn label(&self) -> String {
        match &self.site_url {
            Some(site) => format!("{}@{site}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Why a license reference does not resolve.
#[derive(Debug, PartialEq, Eq)]
pub enum LicenseError {
    Unknown(String),
    Ambiguous(String, Vec<String>),
}

impl LicenseError {
    fn problem(&self, line: u64, col: &ColumnRef) -> Problem {
        match self {
            LicenseError::Unknown(name) => Problem::cell(
                line,
                col,
                format!("no license of this org is named `{name}`"),
                "use a name (or id) that `GET /v1/licenses` lists, e.g. as shown by `webex-bulk validate users` warnings",
            ),
            LicenseError::Ambiguous(name, labels) => Problem::cell(
                line,
                col,
                format!("`{name}` exists on several meeting sites: {}", labels.join(", ")),
                "name the site: write it as Name@siteUrl",
            ),
        }
    }
}

/// Finds a license by id, `Name`, or `Name@siteUrl` (also `Name [siteUrl]`
/// and `Name (siteUrl)`, as spreadsheets write it). Names ignore case.
pub fn resolve_license<'a>(
    text: &str,
    licenses: &'a [License],
) -> Result<&'a License, LicenseError> {
    let text = text.trim();
    if let Some(l) = licenses.iter().find(|l| l.id == text) {
        return Ok(l);
    }
    let (name, site) = split_site(text);
    let named: Vec<&License> = licenses
        .iter()
        .filter(|l| l.name.eq_ignore_ascii_case(name))
        .collect();
    let chosen: Vec<&License> = match site {
        Some(site) => named
            .into_iter()
            .filter(|l| {
                l.site_url
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(site))
            })
            .collect(),
        None => named,
    };
    match chosen.as_slice() {
        [one] => Ok(one),
        [] => Err(LicenseError::Unknown(text.to_owned())),
        many => Err(LicenseError::Ambiguous(
            text.to_owned(),
            many.iter().map(|l| l.label()).collect(),
        )),
    }
}

fn split_site(text: &str) -> (&str, Option<&str>) {
    if let Some((name, site)) = text.rsplit_once('@') {
        if site.contains('.') && !name.is_empty() {
            return (name.trim(), Some(site.trim()));
        }
    }
    for (open, close) in [('[', ']'), ('(', ')')] {
        if let (Some(i), true) = (text.rfind(open), text.ends_with(close)) {
            let site = text[i + 1..text.len() - 1].trim();
            if site.contains('.') {
                return (text[..i].trim(), Some(site));
            }
        }
    }
    (text, None)
}

/// A license a row adds or removes, with the name the report shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseRef {
    pub id: String,
    pub label: String,
}

/// What a row asks for: queued as JSON, carried out by the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserChange {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<LicenseRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<LicenseRef>,
}

impl UserChange {
    /// Whether the row gives a name to create the person with.
    pub fn has_name(&self) -> bool {
        self.first_name.is_some() || self.last_name.is_some() || self.display_name.is_some()
    }
    /// The display name to use when none is given.
    pub fn display_name_or_default(&self) -> String {
        self.display_name.clone().unwrap_or_else(|| {
            [self.first_name.as_deref(), self.last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        })
    }
}

/// The person fields a file can set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Person {
    Email,
    FirstName,
    LastName,
    DisplayName,
    Department,
    Title,
    AddLicenses,
    RemoveLicenses,
}

/// Control Hub's export columns that are read-only or not ours to change.
const READ_ONLY: [&str; 14] = [
    "userstatus",
    "lastserviceaccessedtime",
    "dayssincelastserviceaccessed",
    "uuid",
    "useruuid",
    "id",
    "createdtime",
    "directorysync",
    "lastmodifiedtime",
    "phonenumber",
    "extension",
    "callerid",
    "location",
    "status",
];

/// Our columns, as the shared header mapping takes them (in `Field` order).
pub const FIELDS: [Field; 8] = [
    Field {
        name: "email",
        aliases: &["emailAddress"],
    },
    Field {
        name: "firstName",
        aliases: &["givenName"],
    },
    Field {
        name: "lastName",
        aliases: &["surname", "familyName"],
    },
    Field::named("displayName"),
    Field::named("department"),
    Field {
        name: "title",
        aliases: &["jobTitle"],
    },
    Field::named("addLicenses"),
    Field::named("removeLicenses"),
];

/// Control Hub's export: its email column, and no add/remove columns (one
/// TRUE/FALSE column per license instead).
const CONTROL_HUB_FIELDS: [Field; 6] = [
    Field {
        name: "email",
        aliases: &["emailAddress", "User ID/Email*"],
    },
    FIELDS[1],
    FIELDS[2],
    FIELDS[3],
    FIELDS[4],
    FIELDS[5],
];

const RULES: [Rule; 1] = [Rule::Required {
    field: Person::Email as usize,
    fix: Some("add a column named email (or use Control Hub's export, whose column is `User ID/Email (Required)`)"),
}];

/// How a file's columns map onto a user change.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Each `Person` field's column (by discriminant).
    mapping: Mapping,
    /// Control Hub: one TRUE/FALSE column per license.
    license_columns: Vec<(ColumnRef, LicenseRef)>,
    /// Columns ignored (unknown, or read-only in a Control Hub export).
    pub ignored: Vec<String>,
    /// Whether the file is a Control Hub export.
    pub control_hub: bool,
    /// How many columns the header has.
    pub width: usize,
}

impl Layout {
    /// Recognises our format (`email`, `addLicenses`, ...) or Control Hub's
    /// (`User ID/Email (Required)`, TRUE/FALSE license columns).
    pub fn from_headers(headers: &[String], licenses: &[License]) -> Result<Layout, Vec<Problem>> {
        let control_hub = headers
            .iter()
            .any(|h| normalize_header(h).starts_with("userid/email"));
        let fields: &[Field] = if control_hub {
            &CONTROL_HUB_FIELDS
        } else {
            &FIELDS
        };
        let (mapping, mut problems) = header::map(headers, fields, &RULES);
        let mut layout = Layout {
            license_columns: Vec::new(),
            ignored: Vec::new(),
            control_hub,
            width: mapping.width,
            mapping: mapping.clone(),
        };
        for col in mapping.unmatched {
            let raw = &col.name;
            if !control_hub || READ_ONLY.contains(&normalize_header(raw).as_str()) {
                layout.ignored.push(raw.clone());
                continue;
            }
            match resolve_license(raw, licenses) {
                Ok(l) => layout.license_columns.push((
                    col.clone(),
                    LicenseRef {
                        id: l.id.clone(),
                        label: l.label(),
                    },
                )),
                Err(LicenseError::Ambiguous(..)) => {
                    problems.push(LicenseError::Ambiguous(raw.clone(), vec![]).problem(1, &col));
                }
                Err(LicenseError::Unknown(_)) => layout.ignored.push(raw.clone()),
            }
        }
        if problems.is_empty() {
            Ok(layout)
        } else {
            Err(problems)
        }
    }

    fn get<'a>(&'a self, f: Person, fields: &'a [String]) -> Option<(&'a ColumnRef, &'a str)> {
        self.mapping.get(f as usize, fields)
    }
}

/// Checks a row and builds its change, or lists everything wrong with it.
pub fn parse_row(
    layout: &Layout,
    fields: &[String],
    line: u64,
    licenses: &[License],
) -> Result<UserChange, Vec<Problem>> {
    let mut errors = Vec::new();
    let text = |f| layout.get(f, fields).map(|(_, v)| v.to_owned());
    let email = match layout.get(Person::Email, fields) {
        Some((col, v)) if !is_valid_email(v) => {
            errors.push(Problem::cell(
                line,
                col,
                format!("`{v}` is not a valid email address"),
                "write the person's email, e.g. jane.doe@example.com",
            ));
            String::new()
        }
        Some((_, v)) => v.to_ascii_lowercase(),
        None => {
            let col = layout
                .mapping
                .column(Person::Email as usize)
                .expect("checked by Layout");
            errors.push(Problem::cell(
                line,
                col,
                "the email is empty",
                "fill in the person's email",
            ));
            String::new()
        }
    };
    let mut change = UserChange {
        email,
        first_name: text(Person::FirstName),
        last_name: text(Person::LastName),
        display_name: text(Person::DisplayName),
        department: text(Person::Department),
        title: text(Person::Title),
        ..UserChange::default()
    };
    let mut seen: HashMap<String, (bool, usize)> = HashMap::new();
    let mut take = |add: bool,
                    col: &ColumnRef,
                    lic: LicenseRef,
                    errors: &mut Vec<Problem>,
                    change: &mut UserChange| {
        match seen.get(&lic.id) {
            Some((was_add, _)) if *was_add != add => errors.push(Problem::cell(
                line,
                col,
                format!("license {} is both added and removed", lic.label),
                "keep it in one of addLicenses/removeLicenses only",
            )),
            Some(_) => {}
            None => {
                seen.insert(lic.id.clone(), (add, col.index));
                if add {
                    change.add.push(lic)
                } else {
                    change.remove.push(lic)
                }
            }
        }
    };
    for (field, add) in [(Person::AddLicenses, true), (Person::RemoveLicenses, false)] {
        if let Some((col, raw)) = layout.get(field, fields) {
            for name in raw.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                match resolve_license(name, licenses) {
                    Ok(l) => take(
                        add,
                        col,
                        LicenseRef {
                            id: l.id.clone(),
                            label: l.label(),
                        },
                        &mut errors,
                        &mut change,
                    ),
                    Err(e) => errors.push(e.problem(line, col)),
                }
            }
        }
    }
    for (col, lic) in &layout.license_columns {
        let v = fields.get(col.index - 1).map(|s| s.trim()).unwrap_or("");
        match v.to_ascii_lowercase().as_str() {
            "" => {}
            "true" | "yes" | "1" => take(true, col, lic.clone(), &mut errors, &mut change),
            "false" | "no" | "0" => take(false, col, lic.clone(), &mut errors, &mut change),
            _ => errors.push(Problem::cell(
                line,
                col,
                format!("`{v}` is not TRUE or FALSE"),
                "write TRUE to assign the license, FALSE to remove it, or leave the cell empty",
            )),
        }
    }
    if errors.is_empty() {
        Ok(change)
    } else {
        Err(errors)
    }
}

/// Counts licenses a file adds, to warn when an org has too few units left.
#[derive(Default, Debug)]
pub struct UnitCounter {
    adds: HashMap<String, u64>,
}

impl UnitCounter {
    /// Counts a row's additions.
    pub fn add(&mut self, change: &UserChange) {
        for l in &change.add {
            *self.adds.entry(l.id.clone()).or_default() += 1;
        }
    }

    /// A warning per license the file adds more often than units are left
    /// (rows for people who already hold it do not need a unit, so this may
    /// overstate).
    pub fn warnings(&self, licenses: &[License]) -> Vec<Problem> {
        let mut out = Vec::new();
        for l in licenses {
            let wanted = self.adds.get(&l.id).copied().unwrap_or(0);
            let free = l.total_units.saturating_sub(l.consumed_units);
            if wanted > free {
                out.push(
                    Problem::line(
                        0,
                        format!("the file adds {} {wanted} times but only {free} of its {} units are free", l.label(), l.total_units),
                        "free units in Control Hub or buy more; the rows past the limit will fail",
                    )
                    .warning(),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lic(id: &str, name: &str, site: Option<&str>, total: u64, used: u64) -> License {
        License {
            id: id.into(),
            name: name.into(),
            total_units: total,
            consumed_units: used,
            site_url: site.map(Into::into),
        }
    }

    fn org() -> Vec<License> {
        vec![
            lic(
                "L1",
                "Meeting - Webex Enterprise",
                Some("acme.webex.com"),
                10,
                9,
            ),
            lic(
                "L2",
                "Meeting - Webex Enterprise",
                Some("acme-eu.webex.com"),
                10,
                0,
            ),
            lic("L3", "Messaging", None, 100, 0),
            lic("L4", "Webex Calling - Professional", None, 5, 0),
        ]
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn license_names_resolve_by_id_name_and_site() {
        let o = org();
        assert_eq!(resolve_license("L3", &o).unwrap().id, "L3");
        assert_eq!(resolve_license("messaging", &o).unwrap().id, "L3");
        assert_eq!(
            resolve_license("Meeting - Webex Enterprise@acme-eu.webex.com", &o)
                .unwrap()
                .id,
            "L2"
        );
        assert_eq!(
            resolve_license("Meeting - Webex Enterprise [acme.webex.com]", &o)
                .unwrap()
                .id,
            "L1"
        );
        assert!(
            matches!(resolve_license("Meeting - Webex Enterprise", &o), Err(LicenseError::Ambiguous(_, v)) if v.len() == 2)
        );
        assert!(matches!(
            resolve_license("Calling", &o),
            Err(LicenseError::Unknown(_))
        ));
    }

    #[test]
    fn our_format_rows() {
        let o = org();
        let layout = Layout::from_headers(
            &strings(&[
                "Email",
                "First Name",
                "Last Name",
                "addLicenses",
                "removeLicenses",
                "Department",
            ]),
            &o,
        )
        .unwrap();
        assert!(!layout.control_hub);
        let c = parse_row(
            &layout,
            &strings(&[
                "Ann@Acme.com",
                "Ann",
                "Lee",
                "Messaging; Meeting - Webex Enterprise@acme.webex.com",
                "Webex Calling - Professional",
                "Sales",
            ]),
            2,
            &o,
        )
        .unwrap();
        assert_eq!(c.email, "ann@acme.com");
        assert_eq!(
            c.add.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
            vec!["L3", "L1"]
        );
        assert_eq!(c.remove[0].id, "L4");
        assert_eq!(c.department.as_deref(), Some("Sales"));
        let errs = parse_row(
            &layout,
            &strings(&["bad", "", "", "Nope; Messaging", "messaging", ""]),
            3,
            &o,
        )
        .unwrap_err();
        let cols: Vec<usize> = errs.iter().map(|p| p.column.as_ref().unwrap().0).collect();
        assert_eq!(cols, vec![1, 4, 5], "{errs:#?}");
        assert!(errs[2].message.contains("both added and removed"));
    }

    #[test]
    fn control_hub_exports() {
        let o = org();
        let headers = strings(&[
            "User ID/Email (Required)",
            "First Name",
            "Last Name",
            "Display Name",
            "User Status",
            "Messaging",
            "Meeting - Webex Enterprise [acme-eu.webex.com]",
            "Hybrid Calendar",
        ]);
        let layout = Layout::from_headers(&headers, &o).unwrap();
        assert!(layout.control_hub);
        assert_eq!(layout.ignored, strings(&["User Status", "Hybrid Calendar"]));
        let c = parse_row(
            &layout,
            &strings(&[
                "bo@acme.com",
                "Bo",
                "",
                "",
                "Active",
                "TRUE",
                "FALSE",
                "TRUE",
            ]),
            2,
            &o,
        )
        .unwrap();
        assert_eq!(
            (c.add[0].id.as_str(), c.remove[0].id.as_str()),
            ("L3", "L2")
        );
        let c = parse_row(
            &layout,
            &strings(&["bo@acme.com", "", "", "", "", "", "", ""]),
            3,
            &o,
        )
        .unwrap();
        assert!(
            c.add.is_empty() && c.remove.is_empty(),
            "empty cells change nothing"
        );
        let e = parse_row(
            &layout,
            &strings(&["bo@acme.com", "", "", "", "", "maybe", "", ""]),
            4,
            &o,
        )
        .unwrap_err();
        assert_eq!(e[0].column.as_ref().unwrap().1, "Messaging");
    }

    #[test]
    fn units_warnings() {
        let o = org();
        let mut units = UnitCounter::default();
        let add = |id: &str| UserChange {
            add: vec![LicenseRef {
                id: id.into(),
                label: String::new(),
            }],
            ..Default::default()
        };
        units.add(&add("L1"));
        assert!(units.warnings(&o).is_empty(), "one unit is left");
        units.add(&add("L1"));
        let w = units.warnings(&o);
        assert_eq!(w.len(), 1);
        assert!(w[0]
            .message
            .contains("adds Meeting - Webex Enterprise@acme.webex.com 2 times but only 1"));
    }
}

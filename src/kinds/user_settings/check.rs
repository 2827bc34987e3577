//! The user-settings job kind: what a row means (session types and tracking
//! codes of one host on one meeting site), and how its names resolve against
//! a site's configuration. Pure: the sites are an argument (the run reads
//! them once per site).

use serde::{Deserialize, Serialize};

use crate::csvin::{is_valid_email, ColumnRef, Problem};
use crate::header::{self, Field, Mapping, Rule};
use crate::webex::{SessionType, TrackingCode};

/// The fields of a user-settings file.
pub const FIELDS: [Field; 6] = [
    Field {
        name: "email",
        aliases: &[
            "userEmail",
            "hostEmail",
            "Work Email",
            "webExId",
            "User ID/Email*",
        ],
    },
    Field {
        name: "siteUrl",
        aliases: &["site", "Webex Site", "meetingSite"],
    },
    Field {
        name: "sessionTypes",
        aliases: &["sessionType", "meetingTypes"],
    },
    Field::named("addSessionTypes"),
    Field::named("removeSessionTypes"),
    Field {
        name: "trackingCodes",
        aliases: &["tracking"],
    },
];

const EMAIL: usize = 0;
const SITE: usize = 1;
const SET: usize = 2;
const ADD: usize = 3;
const REMOVE: usize = 4;
const TRACKING: usize = 5;

const RULES: [Rule; 2] = [
    Rule::Required {
        field: EMAIL,
        fix: None,
    },
    Rule::OneOf {
        fields: &[SET, ADD, REMOVE, TRACKING],
        fix: "add a sessionTypes (the complete set), addSessionTypes / removeSessionTypes (changes to the current set) or trackingCodes (Name=Value;Name=Value) column",
    },
];

/// The longest tracking code value Webex takes.
pub const MAX_VALUE_CHARS: usize = 120;

/// Where each field sits in a file.
#[derive(Clone, Debug)]
pub struct Layout {
    mapping: Mapping,
    /// Columns that are none of the fields.
    pub ignored: Vec<String>,
    /// How many columns the header has.
    pub width: usize,
}

impl Layout {
    pub fn from_headers(headers: &[String]) -> Result<Layout, Vec<Problem>> {
        let (mapping, problems) = header::map(headers, &FIELDS, &RULES);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Layout {
            ignored: mapping.unmatched.iter().map(|c| c.name.clone()).collect(),
            width: mapping.width,
            mapping,
        })
    }

    fn column(&self, field: usize) -> Option<&ColumnRef> {
        self.mapping.column(field)
    }
}

/// What a row does to the host's session types.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TypesChange {
    /// Nothing (the cells are empty).
    #[default]
    Keep,
    /// Exactly these (ids, short names or names, as written).
    Set(Vec<String>),
    /// The current set with these added and removed.
    Change {
        add: Vec<String>,
        remove: Vec<String>,
    },
}

/// What a row asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsChange {
    pub email: String,
    /// The site (a bare host name); `None`: the person's default site.
    pub site: Option<String>,
    pub session_types: TypesChange,
    /// Tracking codes by name, with their new value (`None`: clear it).
    /// Codes not named keep their values.
    pub tracking: Vec<(String, Option<String>)>,
}

impl SettingsChange {
    /// Whether the row changes nothing at all.
    pub fn is_empty(&self) -> bool {
        self.session_types == TypesChange::Keep && self.tracking.is_empty()
    }
}

/// A meeting site's configuration, as the run read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SiteConfig {
    /// The bare host name (`acme.webex.com`).
    pub url: String,
    pub session_types: Vec<SessionType>,
    pub tracking_codes: Vec<TrackingCode>,
}

/// A session type as people read it: its short name (else name, else id).
pub fn type_label(t: &SessionType) -> String {
    t.short_name
        .clone()
        .or_else(|| t.name.clone())
        .unwrap_or_else(|| t.id.clone())
}

impl SiteConfig {
    /// The session type a cell names: by id, short name or name (case does
    /// not matter).
    pub fn session_type(&self, text: &str) -> Result<&SessionType, String> {
        let text = text.trim();
        if let Some(t) = self.session_types.iter().find(|t| t.id == text) {
            return Ok(t);
        }
        let matching: Vec<&SessionType> = self
            .session_types
            .iter()
            .filter(|t| {
                [&t.short_name, &t.name]
                    .into_iter()
                    .flatten()
                    .any(|n| n.eq_ignore_ascii_case(text))
            })
            .collect();
        match matching.as_slice() {
            [one] => Ok(one),
            [] => Err(format!(
                "{} has no session type `{text}` (it has {})",
                self.url,
                self.session_types
                    .iter()
                    .map(|t| format!("{} = {}", t.id, type_label(t)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            many => Err(format!(
                "`{text}` names several session types of {}: ids {}",
                self.url,
                many.iter()
                    .map(|t| t.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// A tracking code and value as Webex will take them: the site's
    /// spelling of the name, and for a `select` code the option's spelling.
    pub fn tracking_value(
        &self,
        name: &str,
        value: Option<&str>,
    ) -> Result<(String, Option<String>), String> {
        let Some(code) = self
            .tracking_codes
            .iter()
            .find(|c| c.name.trim().eq_ignore_ascii_case(name.trim()))
        else {
            return Err(format!(
                "{} has no tracking code named `{name}` (it has {})",
                self.url,
                self.tracking_codes
                    .iter()
                    .map(|c| format!("`{}`", c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let Some(value) = value else {
            return Ok((code.name.clone(), None));
        };
        if matches!(code.input_mode.as_str(), "select" | "hostProfileSelect") {
            return match code
                .options
                .iter()
                .find(|o| o.value.eq_ignore_ascii_case(value))
            {
                Some(o) => Ok((code.name.clone(), Some(o.value.clone()))),
                None => Err(format!(
                    "`{value}` is not an option of the tracking code `{}` on {} (options: {})",
                    code.name,
                    self.url,
                    code.options
                        .iter()
                        .map(|o| o.value.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
        }
        Ok((code.name.clone(), Some(value.to_owned())))
    }
}

/// A row's change resolved against its site: session type ids and tracking
/// code values as Webex spells them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub types: ResolvedTypes,
    pub tracking: Vec<(String, Option<String>)>,
}

/// [`TypesChange`] with ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ResolvedTypes {
    #[default]
    Keep,
    Set(Vec<String>),
    Change {
        add: Vec<String>,
        remove: Vec<String>,
    },
}

impl ResolvedTypes {
    /// The set a host with `current` ends with (current order kept, added
    /// ones after it); `None`: not changed.
    pub fn apply(&self, current: &[String]) -> Option<Vec<String>> {
        match self {
            ResolvedTypes::Keep => None,
            ResolvedTypes::Set(ids) => Some(ids.clone()),
            ResolvedTypes::Change { add, remove } => {
                let mut out: Vec<String> = current
                    .iter()
                    .filter(|id| !remove.contains(id))
                    .cloned()
                    .collect();
                for id in add {
                    if !out.contains(id) {
                        out.push(id.clone());
                    }
                }
                Some(out)
            }
        }
    }
}

/// Which field a resolution problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Types(usize),
    Tracking,
}

/// Resolves a row's names against its site. Every problem, with the part
/// of the row it is about.
pub fn resolve(
    change: &SettingsChange,
    site: &SiteConfig,
) -> Result<Resolved, Vec<(Part, String)>> {
    let mut problems = Vec::new();
    let ids = |names: &[String], field: usize, problems: &mut Vec<(Part, String)>| {
        let mut out = Vec::new();
        for name in names {
            match site.session_type(name) {
                Ok(t) if !out.contains(&t.id) => out.push(t.id.clone()),
                Ok(_) => {}
                Err(e) => problems.push((Part::Types(field), e)),
            }
        }
        out
    };
    let types = match &change.session_types {
        TypesChange::Keep => ResolvedTypes::Keep,
        TypesChange::Set(names) => ResolvedTypes::Set(ids(names, SET, &mut problems)),
        TypesChange::Change { add, remove } => ResolvedTypes::Change {
            add: ids(add, ADD, &mut problems),
            remove: ids(remove, REMOVE, &mut problems),
        },
    };
    if let ResolvedTypes::Change { add, remove } = &types {
        if let Some(both) = add.iter().find(|id| remove.contains(id)) {
            problems.push((
                Part::Types(ADD),
                format!("session type {both} is both added and removed"),
            ));
        }
    }
    let mut tracking = Vec::new();
    for (name, value) in &change.tracking {
        match site.tracking_value(name, value.as_deref()) {
            Ok(v) => tracking.push(v),
            Err(e) => problems.push((Part::Tracking, e)),
        }
    }
    if problems.is_empty() {
        Ok(Resolved { types, tracking })
    } else {
        Err(problems)
    }
}

/// A site URL as Webex writes it: a bare host name (`https://`, a path and
/// a trailing `/` are dropped; case folded).
pub fn normalize_site(text: &str) -> Option<String> {
    let t = text.trim();
    let t = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .unwrap_or(t);
    let host = t.split('/').next().unwrap_or("").to_ascii_lowercase();
    let ok = host.contains('.')
        && !host.starts_with('.')
        && !host.ends_with('.')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    ok.then_some(host)
}

/// A `;`-separated list of session types.
fn type_list(cell: &str) -> Vec<String> {
    cell.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses a row's cells (no site knowledge): every problem at once.
pub fn parse_row(
    layout: &Layout,
    row: &[String],
    line: u64,
) -> Result<SettingsChange, Vec<Problem>> {
    let m = &layout.mapping;
    let mut problems = Vec::new();
    let email = match m.get(EMAIL, row) {
        Some((_, v)) if is_valid_email(v) => v.to_owned(),
        Some((col, v)) => {
            problems.push(Problem::cell(
                line,
                col,
                format!("`{v}` is not an email address"),
                "write the host's email address (name@example.com)",
            ));
            String::new()
        }
        None => {
            let col = layout.column(EMAIL).expect("email is required");
            problems.push(Problem::cell(
                line,
                col,
                "the email is empty",
                "write the host's email address",
            ));
            String::new()
        }
    };
    let site = match m.get(SITE, row) {
        None => None,
        Some((col, v)) => match normalize_site(v) {
            Some(s) => Some(s),
            None => {
                problems.push(Problem::cell(
                    line,
                    col,
                    format!("`{v}` is not a site URL"),
                    "write the meeting site's host name, e.g. example.webex.com (or leave it empty for the person's default site)",
                ));
                None
            }
        },
    };
    let set = m.get(SET, row).map(|(col, v)| (col, type_list(v)));
    let add = m.get(ADD, row).map(|(_, v)| type_list(v));
    let remove = m.get(REMOVE, row).map(|(_, v)| type_list(v));
    let session_types = match (set, add.is_some() || remove.is_some()) {
        (Some((col, _)), true) => {
            problems.push(Problem::cell(
                line,
                col,
                "the row gives both the complete set of session types and changes to it",
                "keep sessionTypes (the complete set) or addSessionTypes/removeSessionTypes (changes), not both",
            ));
            TypesChange::Keep
        }
        (Some((col, set)), false) => {
            if set.is_empty() {
                problems.push(Problem::cell(
                    line,
                    col,
                    "the session type list is empty",
                    "name at least one session type (a host needs one), separated by `;`",
                ));
            }
            TypesChange::Set(set)
        }
        (None, true) => TypesChange::Change {
            add: add.unwrap_or_default(),
            remove: remove.unwrap_or_default(),
        },
        (None, false) => TypesChange::Keep,
    };
    let mut tracking: Vec<(String, Option<String>)> = Vec::new();
    if let Some((col, cell)) = m.get(TRACKING, row) {
        for part in cell.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                problems.push(Problem::cell(
                    line,
                    col,
                    format!("`{part}` is not Name=Value"),
                    "write each tracking code as Name=Value, separated by `;` (Name= clears a value)",
                ));
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() {
                problems.push(Problem::cell(
                    line,
                    col,
                    format!("`{part}` has no tracking code name"),
                    "write the code's name as the site shows it before the `=`",
                ));
                continue;
            }
            if value.chars().count() > MAX_VALUE_CHARS {
                problems.push(Problem::cell(
                    line,
                    col,
                    format!(
                        "the value of `{name}` has {} characters; Webex takes at most {MAX_VALUE_CHARS}",
                        value.chars().count()
                    ),
                    "shorten the value",
                ));
                continue;
            }
            if tracking.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                problems.push(Problem::cell(
                    line,
                    col,
                    format!("the tracking code `{name}` is given twice"),
                    "keep one value for it",
                ));
                continue;
            }
            tracking.push((
                name.to_owned(),
                (!value.is_empty()).then(|| value.to_owned()),
            ));
        }
    }
    if problems.is_empty() {
        Ok(SettingsChange {
            email,
            site,
            session_types,
            tracking,
        })
    } else {
        Err(problems)
    }
}

/// A resolution problem as a row problem, at the column it came from.
pub fn resolution_problem(layout: &Layout, line: u64, part: Part, message: String) -> Problem {
    let field = match part {
        Part::Types(f) => f,
        Part::Tracking => TRACKING,
    };
    let fix = match part {
        Part::Types(_) => "use a session type id, short name or name that the site lists (see the message), separated by `;`",
        Part::Tracking => "use a tracking code name the site has and, for a list code, one of its options",
    };
    match layout.column(field) {
        Some(col) => Problem::cell(line, col, message, fix),
        None => Problem::line(line, message, fix),
    }
}

/// Checks a parsed row against the sites the run can manage: its own site
/// if it names one, else every site (the person's default site is known
/// only when the row is carried out: a name must exist on at least one).
pub fn check_against_sites(
    layout: &Layout,
    change: &SettingsChange,
    line: u64,
    sites: &[SiteConfig],
) -> Vec<Problem> {
    match &change.site {
        Some(url) => match sites.iter().find(|s| &s.url == url) {
            Some(site) => match resolve(change, site) {
                Ok(_) => Vec::new(),
                Err(problems) => problems
                    .into_iter()
                    .map(|(part, m)| resolution_problem(layout, line, part, m))
                    .collect(),
            },
            None => vec![Problem::cell(
                line,
                layout.column(SITE).expect("a site came from its column"),
                format!(
                    "{url} is not one of the meeting sites this token manages ({})",
                    sites
                        .iter()
                        .map(|s| s.url.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "check the site's spelling, or sign in as an admin of that site",
            )],
        },
        None => {
            if sites.is_empty() {
                return vec![Problem::line(
                    line,
                    "this token manages no meeting site",
                    "sign in as an admin of a Webex meeting site",
                )];
            }
            // The problems of the site that fits best (fewest problems).
            let best = sites
                .iter()
                .map(|s| resolve(change, s).err().unwrap_or_default())
                .min_by_key(Vec::len)
                .unwrap_or_default();
            best.into_iter()
                .map(|(part, m)| resolution_problem(layout, line, part, m))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webex::TrackingOption;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn site() -> SiteConfig {
        let st = |id: &str, short: &str, name: &str| SessionType {
            id: id.into(),
            short_name: Some(short.into()),
            name: Some(name.into()),
            kind: Some("meeting".into()),
        };
        let code = |id: &str, name: &str, mode: &str, options: &[&str]| TrackingCode {
            id: id.into(),
            name: name.into(),
            input_mode: mode.into(),
            options: options
                .iter()
                .map(|v| TrackingOption {
                    value: (*v).into(),
                    default_value: false,
                })
                .collect(),
            host_profile_code: Some("optional".into()),
        };
        SiteConfig {
            url: "acme.webex.com".into(),
            session_types: vec![
                st("3", "PRO", "Pro Meeting"),
                st("9", "WBN", "Webinar"),
                st("11", "PRIV", "Private Meeting"),
            ],
            tracking_codes: vec![
                code("1", "Department", "select", &["Sales", "R&D"]),
                code("2", "Cost Centre", "text", &[]),
            ],
        }
    }

    fn layout(h: &[&str]) -> Layout {
        Layout::from_headers(&strings(h)).unwrap()
    }

    #[test]
    fn a_row_is_parsed_into_its_change() {
        let l = layout(&["Email", "siteUrl", "sessionTypes", "trackingCodes", "notes"]);
        assert_eq!(l.ignored, ["notes"]);
        let c = parse_row(
            &l,
            &strings(&[
                "ann@acme.com",
                "https://ACME.webex.com/",
                "PRO; Webinar ;",
                "Department=R&D; Cost Centre = CC=4711;Project=",
                "",
            ]),
            2,
        )
        .unwrap();
        assert_eq!(c.site.as_deref(), Some("acme.webex.com"));
        assert_eq!(
            c.session_types,
            TypesChange::Set(strings(&["PRO", "Webinar"]))
        );
        assert_eq!(
            c.tracking,
            vec![
                ("Department".to_owned(), Some("R&D".to_owned())),
                ("Cost Centre".to_owned(), Some("CC=4711".to_owned())),
                ("Project".to_owned(), None),
            ]
        );
        // Empty cells change nothing.
        let c = parse_row(&l, &strings(&["ann@acme.com", "", "", "", ""]), 3).unwrap();
        assert!(c.is_empty() && c.site.is_none());
    }

    #[test]
    fn every_problem_of_a_row_names_its_column() {
        let l = layout(&[
            "email",
            "siteUrl",
            "sessionTypes",
            "addSessionTypes",
            "trackingCodes",
        ]);
        let long = "x".repeat(121);
        let problems = parse_row(
            &l,
            &strings(&[
                "not-an-email",
                "acme",
                "PRO",
                "WBN",
                &format!("Department;=x;A=1;a=2;B={long}"),
            ]),
            7,
        )
        .unwrap_err();
        let got: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (p.column.as_ref().unwrap().0, p.message.as_str()))
            .collect();
        assert_eq!(got.len(), 7, "{got:#?}");
        assert_eq!(got[0].0, 1);
        assert_eq!(got[1].0, 2);
        assert!(got[2].1.contains("both the complete set"), "{got:?}");
        assert!(got[3..].iter().all(|(c, _)| *c == 5));
        assert!(got[3].1.contains("not Name=Value"));
        assert!(got[4].1.contains("no tracking code name"));
        assert!(got[5].1.contains("given twice"));
        assert!(got[6].1.contains("121 characters"));
        // A header without anything to change is refused, with the fix.
        let err = Layout::from_headers(&strings(&["email", "siteUrl"])).unwrap_err();
        assert!(err[0].fix.contains("trackingCodes"), "{err:?}");
    }

    #[test]
    fn names_resolve_against_the_site() {
        let s = site();
        assert_eq!(s.session_type("pro").unwrap().id, "3");
        assert_eq!(s.session_type("Private meeting").unwrap().id, "11");
        assert_eq!(s.session_type("9").unwrap().id, "9");
        let e = s.session_type("Events").unwrap_err();
        assert!(
            e.contains("3 = PRO") && e.contains("no session type `Events`"),
            "{e}"
        );
        assert_eq!(
            s.tracking_value("department", Some("r&d")).unwrap(),
            ("Department".to_owned(), Some("R&D".to_owned()))
        );
        let e = s
            .tracking_value("Department", Some("Marketing"))
            .unwrap_err();
        assert!(e.contains("options: Sales, R&D"), "{e}");
        assert_eq!(
            s.tracking_value("cost centre", Some("anything <&>"))
                .unwrap()
                .1
                .as_deref(),
            Some("anything <&>")
        );
        assert!(s
            .tracking_value("Region", Some("EU"))
            .unwrap_err()
            .contains("`Department`"));
    }

    #[test]
    fn changes_apply_to_the_current_set() {
        let change = ResolvedTypes::Change {
            add: strings(&["9", "3"]),
            remove: strings(&["11"]),
        };
        assert_eq!(
            change.apply(&strings(&["3", "11"])),
            Some(strings(&["3", "9"]))
        );
        assert_eq!(
            ResolvedTypes::Set(strings(&["9"])).apply(&strings(&["3"])),
            Some(strings(&["9"]))
        );
        assert_eq!(ResolvedTypes::Keep.apply(&strings(&["3"])), None);
    }

    #[test]
    fn rows_are_checked_against_their_site_or_every_site() {
        let l = layout(&[
            "email",
            "siteUrl",
            "addSessionTypes",
            "removeSessionTypes",
            "trackingCodes",
        ]);
        let mut other = site();
        other.url = "acme-eu.webex.com".into();
        other.session_types.retain(|t| t.id != "9");
        let sites = [site(), other];
        let row = |cells: &[&str]| parse_row(&l, &strings(cells), 4).unwrap();
        // Named site: checked against it.
        let p = check_against_sites(
            &l,
            &row(&["a@b.co", "acme-eu.webex.com", "WBN", "", ""]),
            4,
            &sites,
        );
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].column.as_ref().unwrap().0, 3);
        assert!(p[0]
            .message
            .contains("acme-eu.webex.com has no session type `WBN`"));
        // No site: fine if some site has everything.
        assert!(check_against_sites(
            &l,
            &row(&["a@b.co", "", "WBN", "", "Department=Sales"]),
            4,
            &sites
        )
        .is_empty());
        let p = check_against_sites(&l, &row(&["a@b.co", "", "PRO", "PRO", ""]), 4, &sites);
        assert!(p[0].message.contains("both added and removed"), "{p:?}");
        // A site the token does not manage.
        let p = check_against_sites(
            &l,
            &row(&["a@b.co", "other.webex.com", "PRO", "", ""]),
            4,
            &sites,
        );
        assert_eq!(p[0].column.as_ref().unwrap().0, 2);
        assert!(
            p[0].message.contains("acme.webex.com, acme-eu.webex.com"),
            "{p:?}"
        );
    }

    #[test]
    fn site_urls_are_bare_host_names() {
        assert_eq!(
            normalize_site(" https://Acme.webex.com/meet ").as_deref(),
            Some("acme.webex.com")
        );
        assert_eq!(
            normalize_site("acme-eu.webex.com").as_deref(),
            Some("acme-eu.webex.com")
        );
        assert_eq!(normalize_site("acme"), None);
        assert_eq!(normalize_site("acme webex.com"), None);
    }
}

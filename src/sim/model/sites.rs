//! Meeting sites and hosts' settings on them: each site's session types and
//! tracking codes, and each host's session types and tracking code values
//! (one state, seen through REST and the XML API alike). No HTTP types.
//!
//! Rules, as the spec describes them (and where it is silent, as chosen here):
//! - a person is a host on the sites of their meeting licenses; the admin on
//!   every site (the first is their default);
//! - a host starts with the site's default session types and no tracking code
//!   values;
//! - session types are replaced whole; so are tracking codes over REST (a
//!   code not sent loses its value: strict, to catch a client that forgets to
//!   merge), while `SetUser` changes only the codes it names;
//! - a value of a `select` or `hostProfileSelect` code must be one of its
//!   options (exact spelling); values are 1 to 120 characters;
//! - a site whose codes are mapped to user attributes refuses every change
//!   of a host's tracking codes.

use std::collections::{BTreeMap, HashMap};

/// A session type of a site.
#[derive(Clone, Debug, PartialEq)]
pub struct SimSessionType {
    /// `id` ("3"; also the XML `meetingTypeID`).
    pub id: String,
    /// `shortName` (`PRO`; the XML `productCodePrefix`).
    pub short_name: String,
    /// `name`.
    pub name: String,
    /// `type`: meeting, webinar, privateMeeting, EventCenter, SupportCenter, TrainCenter.
    pub kind: String,
}

/// A tracking code of a site.
#[derive(Clone, Debug, PartialEq)]
pub struct SimTrackingCode {
    /// `id` ("1"; also the XML `index`, 1..=10).
    pub id: String,
    pub name: String,
    /// text, select, editableSelect or hostProfileSelect.
    pub input_mode: String,
    /// The options of a list code.
    pub options: Vec<String>,
}

/// A meeting site.
#[derive(Clone, Debug, PartialEq)]
pub struct SimSite {
    /// Its host name (`acme.webex.com`).
    pub url: String,
    pub session_types: Vec<SimSessionType>,
    /// The session type ids a host starts with.
    pub default_session_types: Vec<String>,
    pub tracking_codes: Vec<SimTrackingCode>,
    /// Tracking codes mapped to user attributes in Control Hub: hosts'
    /// tracking codes cannot be changed.
    pub mapped: bool,
}

impl SimSite {
    /// `siteName` in the XML API: the first label of the URL.
    pub fn name(&self) -> &str {
        self.url.split('.').next().unwrap_or(&self.url)
    }
    fn code(&self, name: &str) -> Option<&SimTrackingCode> {
        self.tracking_codes.iter().find(|c| c.name == name)
    }
}

fn types(list: &[(&str, &str, &str, &str)]) -> Vec<SimSessionType> {
    list.iter()
        .map(|(id, short, name, kind)| SimSessionType {
            id: (*id).into(),
            short_name: (*short).into(),
            name: (*name).into(),
            kind: (*kind).into(),
        })
        .collect()
}

fn code(id: &str, name: &str, mode: &str, options: &[&str]) -> SimTrackingCode {
    SimTrackingCode {
        id: id.into(),
        name: name.into(),
        input_mode: mode.into(),
        options: options.iter().map(|o| (*o).into()).collect(),
    }
}

/// The default sites: those of the default meeting licenses.
///
/// `acme.webex.com`: session types 3 PRO "Pro Meeting", 9 WBN "Webinar",
/// 11 PRV "Private Meeting", 13 TRS "Training Session" (hosts start with 3);
/// tracking codes 1 `Department` (select: Sales, Engineering, Support, R&D),
/// 2 `Cost Centre` (text), 3 `Project` (editableSelect: Apollo, Gemini),
/// 5 `Region` (hostProfileSelect: EMEA, AMER, APJC; there is no code 4, so
/// a client that addresses codes by position instead of id is caught).
///
/// `acme-eu.webex.com`: 3 PRO "Pro Meeting", 22 WBN "Webinar" (hosts start
/// with 3); 1 `Cost Centre` (text), 2 `Department` (select: Sales, Engineering).
pub(crate) fn default_sites() -> Vec<SimSite> {
    vec![
        SimSite {
            url: "acme.webex.com".into(),
            session_types: types(&[
                ("3", "PRO", "Pro Meeting", "meeting"),
                ("9", "WBN", "Webinar", "webinar"),
                ("11", "PRV", "Private Meeting", "privateMeeting"),
                ("13", "TRS", "Training Session", "TrainCenter"),
            ]),
            default_session_types: vec!["3".into()],
            tracking_codes: vec![
                code(
                    "1",
                    "Department",
                    "select",
                    &["Sales", "Engineering", "Support", "R&D"],
                ),
                code("2", "Cost Centre", "text", &[]),
                code("3", "Project", "editableSelect", &["Apollo", "Gemini"]),
                // No code 4: a client must address codes by id (the XML
                // index), never by position.
                code(
                    "5",
                    "Region",
                    "hostProfileSelect",
                    &["EMEA", "AMER", "APJC"],
                ),
            ],
            mapped: false,
        },
        SimSite {
            url: "acme-eu.webex.com".into(),
            session_types: types(&[
                ("3", "PRO", "Pro Meeting", "meeting"),
                ("22", "WBN", "Webinar", "webinar"),
            ]),
            default_session_types: vec!["3".into()],
            tracking_codes: vec![
                code("1", "Cost Centre", "text", &[]),
                code("2", "Department", "select", &["Sales", "Engineering"]),
            ],
            mapped: false,
        },
    ]
}

/// A host's settings on one site.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostSettings {
    /// Session type ids, in the order they were given.
    pub session_types: Vec<String>,
    /// Tracking code values by name.
    pub tracking: BTreeMap<String, String>,
}

/// Why a change of settings is refused.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SettingsRefusal {
    /// Not a site of this org.
    UnknownSite(String),
    /// The person does not exist or is not a host on the site.
    NotAHost(String),
    /// The request is wrong: every problem.
    Invalid(Vec<String>),
    /// The site's tracking codes are mapped to user attributes.
    Mapped(String),
}

/// The longest tracking code value.
pub(crate) const MAX_VALUE: usize = 120;

/// Every host's settings, by (lower-cased email, site url), made on first use.
#[derive(Debug, Default)]
pub(crate) struct SettingsStore {
    sites: Vec<SimSite>,
    hosts: HashMap<(String, String), HostSettings>,
}

impl SettingsStore {
    pub(crate) fn new(sites: Vec<SimSite>) -> Self {
        SettingsStore {
            sites,
            hosts: HashMap::new(),
        }
    }

    pub(crate) fn sites(&self) -> &[SimSite] {
        &self.sites
    }

    pub(crate) fn site(&self, url: &str) -> Result<&SimSite, SettingsRefusal> {
        self.sites
            .iter()
            .find(|s| s.url.eq_ignore_ascii_case(url))
            .ok_or_else(|| SettingsRefusal::UnknownSite(url.to_owned()))
    }

    /// The site whose XML `siteName` is `name`.
    pub(crate) fn site_named(&self, name: &str) -> Option<&SimSite> {
        self.sites
            .iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// A host's settings; `host_sites` are the sites the person is a host on
    /// (checked here).
    pub(crate) fn get(
        &mut self,
        email: &str,
        site: &str,
        host_sites: &[String],
    ) -> Result<&mut HostSettings, SettingsRefusal> {
        let site = self.site(site)?.clone();
        if !host_sites.iter().any(|s| s.eq_ignore_ascii_case(&site.url)) {
            return Err(SettingsRefusal::NotAHost(format!(
                "{email} is not a host on {}",
                site.url
            )));
        }
        Ok(self
            .hosts
            .entry((email.to_lowercase(), site.url.clone()))
            .or_insert_with(|| HostSettings {
                session_types: site.default_session_types.clone(),
                tracking: BTreeMap::new(),
            }))
    }

    /// Replaces a host's session types. Returns whether anything changed.
    pub(crate) fn set_session_types(
        &mut self,
        email: &str,
        site: &str,
        host_sites: &[String],
        ids: &[String],
    ) -> Result<bool, SettingsRefusal> {
        let known = self.site(site)?.clone();
        let unknown: Vec<String> = ids
            .iter()
            .filter(|id| !known.session_types.iter().any(|t| &t.id == *id))
            .map(|id| format!("Session type id '{id}' is not found on site {}.", known.url))
            .collect();
        if !unknown.is_empty() {
            return Err(SettingsRefusal::Invalid(unknown));
        }
        let mut ids: Vec<String> = ids.to_vec();
        ids.dedup();
        let host = self.get(email, site, host_sites)?;
        let mut before = host.session_types.clone();
        let mut after = ids.clone();
        before.sort();
        after.sort();
        host.session_types = ids;
        Ok(before != after)
    }

    /// Checks a tracking code value against the site's rules.
    fn check_value(site: &SimSite, name: &str, value: &str) -> Result<(), String> {
        let Some(code) = site.code(name) else {
            return Err(format!("Tracking code of '{name}' is not found."));
        };
        if value.is_empty() || value.chars().count() > MAX_VALUE {
            return Err(format!(
                "The value of tracking code '{name}' must be 1 to {MAX_VALUE} characters."
            ));
        }
        if matches!(code.input_mode.as_str(), "select" | "hostProfileSelect")
            && !code.options.iter().any(|o| o == value)
        {
            return Err(format!(
                "'{value}' is not an option of tracking code '{name}'."
            ));
        }
        Ok(())
    }

    /// Changes a host's tracking codes: `replace` (REST) makes `codes` the
    /// whole list; otherwise (XML) only the named codes change, an empty
    /// value clearing one. Returns whether anything changed.
    pub(crate) fn set_tracking(
        &mut self,
        email: &str,
        site: &str,
        host_sites: &[String],
        codes: &[(String, String)],
        replace: bool,
    ) -> Result<bool, SettingsRefusal> {
        let known = self.site(site)?.clone();
        let mut problems = Vec::new();
        for (name, value) in codes {
            if value.is_empty() && !replace {
                if known.code(name).is_none() {
                    problems.push(format!("Tracking code of '{name}' is not found."));
                }
                continue;
            }
            if let Err(p) = Self::check_value(&known, name, value) {
                problems.push(p);
            }
        }
        if !problems.is_empty() {
            return Err(SettingsRefusal::Invalid(problems));
        }
        // Checked after the values (a bad request is a 400 anywhere), before
        // anything changes.
        self.get(email, site, host_sites)?;
        if known.mapped {
            return Err(SettingsRefusal::Mapped(format!(
                "The tracking codes of site {} are mapped to user attributes and cannot be updated for a user.",
                known.url
            )));
        }
        let host = self.get(email, site, host_sites)?;
        let before = host.tracking.clone();
        if replace {
            host.tracking.clear();
        }
        for (name, value) in codes {
            if value.is_empty() {
                host.tracking.remove(name);
            } else {
                host.tracking.insert(name.clone(), value.clone());
            }
        }
        Ok(host.tracking != before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn settings_follow_the_rules() {
        let mut store = SettingsStore::new(default_sites());
        let sites = strings(&["acme.webex.com"]);
        let host = store.get("Ann@x.com", "acme.webex.com", &sites).unwrap();
        assert_eq!(host.session_types, ["3"]);
        assert!(matches!(
            store.get("ann@x.com", "acme-eu.webex.com", &sites),
            Err(SettingsRefusal::NotAHost(_))
        ));
        assert!(store
            .set_session_types("ann@x.com", "acme.webex.com", &sites, &strings(&["9", "3"]))
            .unwrap());
        assert!(!store
            .set_session_types("ann@x.com", "acme.webex.com", &sites, &strings(&["3", "9"]))
            .unwrap());
        assert!(matches!(
            store.set_session_types("ann@x.com", "acme.webex.com", &sites, &strings(&["22"])),
            Err(SettingsRefusal::Invalid(_))
        ));
        let codes = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert!(store
            .set_tracking(
                "ann@x.com",
                "acme.webex.com",
                &sites,
                &codes(&[("Department", "R&D"), ("Cost Centre", "CC-1")]),
                true
            )
            .unwrap());
        // REST replaces: a code not sent loses its value.
        store
            .set_tracking(
                "ann@x.com",
                "acme.webex.com",
                &sites,
                &codes(&[("Cost Centre", "CC-2")]),
                true,
            )
            .unwrap();
        let host = store.get("ann@x.com", "acme.webex.com", &sites).unwrap();
        assert_eq!(host.tracking.len(), 1);
        // XML changes only what it names; an empty value clears.
        store
            .set_tracking(
                "ann@x.com",
                "acme.webex.com",
                &sites,
                &codes(&[("Project", "Anything <&>")]),
                false,
            )
            .unwrap();
        store
            .set_tracking(
                "ann@x.com",
                "acme.webex.com",
                &sites,
                &codes(&[("Cost Centre", "")]),
                false,
            )
            .unwrap();
        let host = store.get("ann@x.com", "acme.webex.com", &sites).unwrap();
        assert_eq!(host.tracking.keys().collect::<Vec<_>>(), ["Project"]);
        let refused = store
            .set_tracking(
                "ann@x.com",
                "acme.webex.com",
                &sites,
                &codes(&[
                    ("Department", "Marketing"),
                    ("Nope", "x"),
                    ("Cost Centre", &"x".repeat(121)),
                ]),
                true,
            )
            .unwrap_err();
        let SettingsRefusal::Invalid(problems) = refused else {
            panic!()
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[1].contains("Tracking code of 'Nope' is not found."));
    }

    #[test]
    fn a_mapped_site_refuses_tracking_codes_but_not_session_types() {
        let mut sites = default_sites();
        sites[0].mapped = true;
        let mut store = SettingsStore::new(sites);
        let hosts = strings(&["acme.webex.com"]);
        assert!(matches!(
            store.set_tracking(
                "a@x.com",
                "acme.webex.com",
                &hosts,
                &[("Cost Centre".into(), "1".into())],
                true
            ),
            Err(SettingsRefusal::Mapped(_))
        ));
        assert!(store
            .set_session_types("a@x.com", "acme.webex.com", &hosts, &strings(&["9"]))
            .unwrap());
    }
}

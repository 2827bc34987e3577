//! The organization's people and the license units they consume, kept together so
//! that every change to a person's licenses moves `consumedUnits` in the same step.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::org::{new_person_id, SimLicense, SimPerson};
use crate::sim::SimConfig;

/// `siteType` of every license with a `siteUrl`.
const SITE_TYPE: &str = "Control Hub managed site";

/// The replaceable part of a person: what a create sets and a PUT replaces in full.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Details {
    /// `displayName`.
    pub(crate) display_name: String,
    /// `firstName` (also answered as `nickName`, which Webex sets from it).
    pub(crate) first_name: Option<String>,
    /// `lastName`.
    pub(crate) last_name: Option<String>,
    /// `department`.
    pub(crate) department: Option<String>,
    /// `title`.
    pub(crate) title: Option<String>,
    /// Other settable fields, stored and echoed as given (`phoneNumbers`, `extension`,
    /// `locationId`, `avatar`, `roles`, `manager`, `managerId`, `addresses`).
    pub(crate) extra: Map<String, Value>,
}

/// A checked create or PUT body.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct PersonInput {
    /// The first of `emails`, if given (required by a create).
    pub(crate) email: Option<String>,
    /// Names and the other replaceable fields.
    pub(crate) details: Details,
    /// License ids asked for, without repeats, in the order given.
    pub(crate) licenses: Vec<String>,
    /// Sites of the `siteUrls` entries ending in `#attendee` (others are host roles,
    /// which follow from the meeting licenses).
    pub(crate) attendee_sites: Vec<String>,
}

/// Which person a `PATCH /v1/licenses/users` is about.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Target {
    /// By `personId`.
    Id(String),
    /// By `email` (case-insensitive).
    Email(String),
}

/// One `licenses[]` or `siteUrls[]` operation of a PATCH.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Operation {
    /// License id or site URL.
    pub(crate) target: String,
    /// `add` (true) or `remove`.
    pub(crate) add: bool,
}

/// Why the directory refused a change (nothing was changed).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Refusal {
    /// 404: no person with that id or email.
    NotFound,
    /// 409: another person already has this email.
    Conflict(String),
    /// 400: these license ids are not the organization's.
    UnknownLicenses(Vec<String>),
    /// 400: these attendee sites are not sites of the organization's licenses.
    UnknownSites(Vec<String>),
}

/// A license and how many people hold it.
#[derive(Clone, Debug)]
struct Usage {
    /// The license as configured.
    license: SimLicense,
    /// `consumedUnits` (may exceed `totalUnits` only through the initial people).
    consumed: u64,
}

impl Usage {
    /// True when a unit is free.
    fn has_free_unit(&self) -> bool {
        self.consumed < self.license.total_units
    }
}

/// A stored person.
#[derive(Clone, Debug)]
struct Person {
    /// Webex-style id.
    id: String,
    /// The only email address.
    email: String,
    /// Names and other replaceable fields.
    details: Details,
    /// Held license ids, in the order they were assigned.
    licenses: Vec<String>,
    /// Sites where the person has the attendee role.
    attendee_sites: Vec<String>,
    /// `created`.
    created: String,
    /// `lastModified`.
    last_modified: String,
}

/// The organization's people and licenses.
#[derive(Debug)]
pub(crate) struct Directory {
    /// `orgId` of every person.
    org_id: String,
    /// Licenses in configuration order.
    licenses: Vec<Usage>,
    /// Position in `licenses` by id.
    license_at: HashMap<String, usize>,
    /// People, oldest first (never removed).
    people: Vec<Person>,
    /// Position in `people` by id.
    person_at: HashMap<String, usize>,
    /// Positions in `people` by lower-cased email (more than one only for duplicates,
    /// which only the initial people can have).
    by_email: HashMap<String, Vec<usize>>,
    /// Times a person was stored, or an email changed, while another person had it
    /// (`SimStats::people_duplicates`).
    duplicates: u64,
    /// Lower-cased emails taken in another organization (never listed here).
    elsewhere: std::collections::HashSet<String>,
}

impl Directory {
    /// The configured licenses and initial people; `now` is their `created`.
    pub(crate) fn new(config: &SimConfig, now: &str) -> Self {
        let mut directory = Self {
            org_id: config.org_id.clone(),
            licenses: Vec::new(),
            license_at: HashMap::new(),
            people: Vec::new(),
            person_at: HashMap::new(),
            by_email: HashMap::new(),
            duplicates: 0,
            elsewhere: config
                .other_org_emails
                .iter()
                .map(|e| e.to_lowercase())
                .collect(),
        };
        for license in &config.licenses {
            if !directory.license_at.contains_key(&license.id) {
                let at = directory.licenses.len();
                directory.license_at.insert(license.id.clone(), at);
                directory.licenses.push(Usage {
                    license: license.clone(),
                    consumed: 0,
                });
            }
        }
        for initial in &config.people {
            directory.add_initial(initial, now);
        }
        directory
    }

    /// Stores an initial person; their known licenses are taken even without free units.
    fn add_initial(&mut self, initial: &SimPerson, now: &str) {
        let mut licenses = Vec::new();
        for id in &initial.licenses {
            if let Some(&at) = self.license_at.get(id) {
                if !licenses.contains(id) {
                    self.licenses[at].consumed += 1;
                    licenses.push(id.clone());
                }
            }
        }
        let display_name = initial.display_name.clone().unwrap_or_else(|| {
            full_name(initial.first_name.as_deref(), initial.last_name.as_deref())
                .unwrap_or_else(|| initial.email.clone())
        });
        self.store(Person {
            id: new_person_id(),
            email: initial.email.clone(),
            details: Details {
                display_name,
                first_name: initial.first_name.clone(),
                last_name: initial.last_name.clone(),
                department: initial.department.clone(),
                title: initial.title.clone(),
                extra: Map::new(),
            },
            licenses,
            attendee_sites: Vec::new(),
            created: now.to_owned(),
            last_modified: now.to_owned(),
        });
    }

    /// Adds a person to the list and the indexes, counting a duplicate email.
    fn store(&mut self, person: Person) {
        let at = self.people.len();
        self.index_email(&person.email, at);
        self.person_at.insert(person.id.clone(), at);
        self.people.push(person);
    }

    /// Records that the person at `at` has `email`.
    fn index_email(&mut self, email: &str, at: usize) {
        let holders = self.by_email.entry(email.to_lowercase()).or_default();
        if !holders.is_empty() {
            self.duplicates += 1;
        }
        holders.push(at);
    }

    /// Times the directory ended up with two people with one email.
    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Every person as GET answers it, oldest first.
    pub(crate) fn people_json(&self) -> Vec<Value> {
        self.people
            .iter()
            .map(|person| self.to_json(person))
            .collect()
    }

    /// The person with this id, as GET answers it.
    pub(crate) fn get(&self, id: &str) -> Option<Value> {
        let at = *self.person_at.get(id)?;
        Some(self.to_json(&self.people[at]))
    }

    /// One page of a listing: up to `max` people (oldest first) after position `after`
    /// in `people` matching every filter given: the exact email (case-insensitive), a
    /// display-name prefix (case-insensitive), one of the ids. The position of the
    /// page's last person comes with it when more people match.
    pub(crate) fn list(
        &self,
        email: Option<&str>,
        name_prefix: Option<&str>,
        ids: Option<&[String]>,
        after: Option<usize>,
        max: usize,
    ) -> (Vec<Value>, Option<usize>) {
        let prefix = name_prefix.map(str::to_lowercase);
        let first = after.map_or(0, |after| after.saturating_add(1));
        let mut matching = self.positions(email, first).filter(|&at| {
            let person = &self.people[at];
            let named = prefix.as_deref().is_none_or(|prefix| {
                person
                    .details
                    .display_name
                    .to_lowercase()
                    .starts_with(prefix)
            });
            named && ids.is_none_or(|ids| ids.contains(&person.id))
        });
        let page: Vec<usize> = matching.by_ref().take(max).collect();
        let next = page.last().copied().filter(|_| matching.next().is_some());
        let items = page.iter().map(|&at| self.to_json(&self.people[at]));
        (items.collect(), next)
    }

    /// Positions in `people` from `first` on, in order: all of them, or those of the
    /// people with `email` (case-insensitive).
    fn positions(&self, email: Option<&str>, first: usize) -> Box<dyn Iterator<Item = usize>> {
        let Some(email) = email else {
            return Box::new(first..self.people.len());
        };
        let mut holders = self
            .by_email
            .get(&email.to_lowercase())
            .cloned()
            .unwrap_or_default();
        holders.sort_unstable();
        Box::new(holders.into_iter().filter(move |&at| at >= first))
    }

    /// Every license as `GET /v1/licenses` answers it.
    pub(crate) fn licenses_json(&self) -> Vec<Value> {
        self.licenses
            .iter()
            .map(|usage| {
                let license = &usage.license;
                let mut item = json!({
                    "id": license.id,
                    "name": license.name,
                    "totalUnits": license.total_units,
                    "consumedUnits": usage.consumed,
                    "consumedByUsers": usage.consumed,
                    "consumedByWorkspaces": 0,
                });
                if let Some(site) = &license.site_url {
                    item["siteUrl"] = json!(site);
                    item["siteType"] = json!(SITE_TYPE);
                }
                item
            })
            .collect()
    }

    /// Creates a person. Licenses without a free unit are skipped (the spec: "the
    /// system will assign all valid and available licenses"); the answer shows which
    /// ones were assigned.
    pub(crate) fn create(&mut self, input: PersonInput, now: &str) -> Result<Value, Refusal> {
        self.check_references(&input)?;
        let email = input.email.unwrap_or_default();
        let key = email.to_lowercase();
        if self.by_email.contains_key(&key) || self.elsewhere.contains(&key) {
            return Err(Refusal::Conflict(email));
        }
        let mut person = Person {
            id: new_person_id(),
            email,
            details: input.details,
            licenses: Vec::new(),
            attendee_sites: input.attendee_sites,
            created: now.to_owned(),
            last_modified: now.to_owned(),
        };
        for id in &input.licenses {
            self.assign(&mut person.licenses, id);
        }
        let answer = self.to_json(&person);
        self.store(person);
        Ok(answer)
    }

    /// `PUT`: replaces every replaceable field of the person with `input`. The person
    /// ends up with exactly the listed licenses that they held or that had a free unit
    /// (an absent `licenses` removes them all); the email changes only when `emails`
    /// is given.
    pub(crate) fn replace(
        &mut self,
        id: &str,
        input: PersonInput,
        now: &str,
    ) -> Result<Value, Refusal> {
        let at = *self.person_at.get(id).ok_or(Refusal::NotFound)?;
        self.check_references(&input)?;
        if let Some(email) = &input.email {
            let key = email.to_lowercase();
            let taken = self
                .by_email
                .get(&key)
                .is_some_and(|holders| holders.iter().any(|&other| other != at));
            if taken {
                return Err(Refusal::Conflict(email.clone()));
            }
            let old_key = self.people[at].email.to_lowercase();
            if old_key != key {
                if let Some(holders) = self.by_email.get_mut(&old_key) {
                    holders.retain(|&other| other != at);
                    if holders.is_empty() {
                        self.by_email.remove(&old_key);
                    }
                }
                self.index_email(email, at);
            }
            self.people[at].email.clone_from(email);
        }
        let mut licenses = std::mem::take(&mut self.people[at].licenses);
        for held in licenses.clone() {
            if !input.licenses.contains(&held) {
                self.unassign(&mut licenses, &held);
            }
        }
        for wanted in &input.licenses {
            self.assign(&mut licenses, wanted);
        }
        let person = &mut self.people[at];
        person.licenses = licenses;
        person.details = input.details;
        person.attendee_sites = input.attendee_sites;
        person.last_modified = now.to_owned();
        Ok(self.to_json(&self.people[at]))
    }

    /// `PATCH /v1/licenses/users`: applies the operations in order. An `add` of a
    /// license the person holds, and a `remove` of one they do not, are applied as
    /// no-ops; an `add` without a free unit is not applied. Returns the
    /// UserLicensesResponse and whether every operation was applied.
    pub(crate) fn patch_licenses(
        &mut self,
        target: &Target,
        licenses: &[Operation],
        sites: &[Operation],
        now: &str,
    ) -> Result<(Value, bool), Refusal> {
        let at = match target {
            Target::Id(id) => self.person_at.get(id).copied(),
            Target::Email(email) => self
                .by_email
                .get(&email.to_lowercase())
                .and_then(|holders| holders.first().copied()),
        }
        .ok_or(Refusal::NotFound)?;
        let unknown: Vec<String> = licenses
            .iter()
            .filter(|operation| !self.license_at.contains_key(&operation.target))
            .map(|operation| operation.target.clone())
            .collect();
        if !unknown.is_empty() {
            return Err(Refusal::UnknownLicenses(unknown));
        }
        let bad_sites = self.unknown_sites(sites.iter().map(|operation| &operation.target));
        if !bad_sites.is_empty() {
            return Err(Refusal::UnknownSites(bad_sites));
        }
        let mut held = std::mem::take(&mut self.people[at].licenses);
        let mut all_applied = true;
        for operation in licenses {
            if operation.add {
                all_applied &= self.assign(&mut held, &operation.target);
            } else {
                self.unassign(&mut held, &operation.target);
            }
        }
        let person = &mut self.people[at];
        person.licenses = held;
        for operation in sites {
            person
                .attendee_sites
                .retain(|site| site != &operation.target);
            if operation.add {
                person.attendee_sites.push(operation.target.clone());
            }
        }
        person.last_modified = now.to_owned();
        let person = &self.people[at];
        let site_roles: Vec<Value> = self
            .host_sites(person)
            .map(|site| json!({"siteUrl": site, "accountType": "host"}))
            .chain(
                person
                    .attendee_sites
                    .iter()
                    .map(|site| json!({"siteUrl": site, "accountType": "attendee"})),
            )
            .collect();
        let answer = json!({
            "orgId": self.org_id,
            "personId": person.id,
            "email": person.email,
            "licenses": person.licenses,
            "siteUrls": site_roles,
        });
        Ok((answer, all_applied))
    }

    /// Refuses a create or PUT naming unknown licenses or attendee sites.
    fn check_references(&self, input: &PersonInput) -> Result<(), Refusal> {
        let unknown: Vec<String> = input
            .licenses
            .iter()
            .filter(|id| !self.license_at.contains_key(*id))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(Refusal::UnknownLicenses(unknown));
        }
        let bad_sites = self.unknown_sites(input.attendee_sites.iter());
        if !bad_sites.is_empty() {
            return Err(Refusal::UnknownSites(bad_sites));
        }
        Ok(())
    }

    /// The sites that no license of the organization is on.
    fn unknown_sites<'a>(&self, sites: impl Iterator<Item = &'a String>) -> Vec<String> {
        sites
            .filter(|site| {
                !self.licenses.iter().any(|usage| {
                    usage
                        .license
                        .site_url
                        .as_deref()
                        .is_some_and(|own| own.eq_ignore_ascii_case(site))
                })
            })
            .cloned()
            .collect()
    }

    /// Gives `held` the license `id` (known) unless it is there already, taking a unit;
    /// false when no unit was free.
    fn assign(&mut self, held: &mut Vec<String>, id: &str) -> bool {
        if held.iter().any(|own| own == id) {
            return true;
        }
        let usage = &mut self.licenses[self.license_at[id]];
        if !usage.has_free_unit() {
            return false;
        }
        usage.consumed += 1;
        held.push(id.to_owned());
        true
    }

    /// Takes the license `id` out of `held` if there, freeing its unit.
    fn unassign(&mut self, held: &mut Vec<String>, id: &str) {
        let before = held.len();
        held.retain(|own| own != id);
        if held.len() < before {
            if let Some(&at) = self.license_at.get(id) {
                let usage = &mut self.licenses[at];
                usage.consumed = usage.consumed.saturating_sub(1);
            }
        }
    }

    /// A person's id and the sites where they are a host, by email (`None`:
    /// nobody of this org has it).
    pub(crate) fn host(&self, email: &str) -> Option<(String, Vec<String>)> {
        let at = *self.by_email.get(&email.to_lowercase())?.first()?;
        let person = &self.people[at];
        let sites = self.host_sites(person).map(str::to_owned).collect();
        Some((person.id.clone(), sites))
    }

    /// The email of the person with this id.
    pub(crate) fn email_of(&self, id: &str) -> Option<String> {
        let at = *self.person_at.get(id)?;
        Some(self.people[at].email.clone())
    }

    /// Sites where the person is a host: those of their meeting licenses.
    fn host_sites<'a>(&'a self, person: &'a Person) -> impl Iterator<Item = &'a str> {
        person.licenses.iter().filter_map(|id| {
            let at = *self.license_at.get(id)?;
            self.licenses[at].license.site_url.as_deref()
        })
    }

    /// The Person object of the admin spec.
    fn to_json(&self, person: &Person) -> Value {
        let details = &person.details;
        let mut body = json!({
            "id": person.id,
            "emails": [person.email],
            "displayName": details.display_name,
            "orgId": self.org_id,
            "licenses": person.licenses,
            "created": person.created,
            "lastModified": person.last_modified,
            "status": "active",
            "invitePending": "false",
            "loginEnabled": "true",
            "type": "person",
        });
        let optional = [
            ("firstName", &details.first_name),
            ("nickName", &details.first_name),
            ("lastName", &details.last_name),
            ("department", &details.department),
            ("title", &details.title),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                body[key] = json!(value);
            }
        }
        for (key, value) in &details.extra {
            body[key.as_str()] = value.clone();
        }
        let site_urls: Vec<String> = self
            .host_sites(person)
            .map(str::to_owned)
            .chain(
                person
                    .attendee_sites
                    .iter()
                    .map(|site| format!("{site}#attendee")),
            )
            .collect();
        if !site_urls.is_empty() {
            body["siteUrls"] = json!(site_urls);
        }
        body
    }
}

/// "First Last", "First" or "Last"; `None` without either.
pub(crate) fn full_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = [first, last]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::super::org::{LICENSE_ASSISTANT, LICENSE_MEETING_ACME, LICENSE_MESSAGING};
    use super::*;

    const NOW: &str = "2027-01-10T12:00:00.000Z";

    fn input(email: &str, licenses: &[&str]) -> PersonInput {
        PersonInput {
            email: Some(email.to_owned()),
            details: Details {
                display_name: "Jane Doe".to_owned(),
                ..Details::default()
            },
            licenses: licenses.iter().map(|id| (*id).to_owned()).collect(),
            attendee_sites: Vec::new(),
        }
    }

    fn consumed(directory: &Directory, id: &str) -> u64 {
        directory.licenses[directory.license_at[id]].consumed
    }

    #[test]
    fn initial_people_consume_units_and_duplicates_are_counted() {
        let person = |email: &str| SimPerson {
            email: email.to_owned(),
            first_name: Some("Ann".to_owned()),
            licenses: vec![
                LICENSE_MESSAGING.to_owned(),
                LICENSE_MESSAGING.to_owned(),
                "unknown".to_owned(),
            ],
            ..SimPerson::default()
        };
        let config = SimConfig {
            people: vec![person("ann@example.com"), person("ANN@example.com")],
            ..SimConfig::default()
        };
        let directory = Directory::new(&config, NOW);
        assert_eq!(consumed(&directory, LICENSE_MESSAGING), 2);
        assert_eq!(directory.duplicates(), 1);
        let people = directory.people_json();
        assert_eq!(people[0]["displayName"], "Ann");
        assert_eq!(people[0]["licenses"], json!([LICENSE_MESSAGING]));
        let found = directory
            .list(Some("Ann@Example.com"), None, None, None, 100)
            .0;
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn create_skips_licenses_without_units_and_refuses_conflicts() {
        let mut config = SimConfig::default();
        config
            .licenses
            .iter_mut()
            .find(|license| license.id == LICENSE_ASSISTANT)
            .unwrap()
            .total_units = 0;
        let mut directory = Directory::new(&config, NOW);
        let person = directory
            .create(
                input("a@example.com", &[LICENSE_ASSISTANT, LICENSE_MESSAGING]),
                NOW,
            )
            .unwrap();
        assert_eq!(person["licenses"], json!([LICENSE_MESSAGING]));
        assert_eq!(consumed(&directory, LICENSE_MESSAGING), 1);
        assert_eq!(
            directory.create(input("A@example.com", &[]), NOW),
            Err(Refusal::Conflict("A@example.com".to_owned()))
        );
        assert_eq!(
            directory.create(input("b@example.com", &["nope"]), NOW),
            Err(Refusal::UnknownLicenses(vec!["nope".to_owned()]))
        );
        assert_eq!(directory.people_json().len(), 1);
    }

    #[test]
    fn replace_moves_units_and_the_email_index() {
        let mut directory = Directory::new(&SimConfig::default(), NOW);
        let person = directory
            .create(input("a@example.com", &[LICENSE_MESSAGING]), NOW)
            .unwrap();
        let id = person["id"].as_str().unwrap();
        directory.create(input("b@example.com", &[]), NOW).unwrap();
        assert_eq!(
            directory.replace(id, input("B@example.com", &[]), NOW),
            Err(Refusal::Conflict("B@example.com".to_owned()))
        );
        let replaced = directory
            .replace(id, input("c@example.com", &[LICENSE_MEETING_ACME]), NOW)
            .unwrap();
        assert_eq!(replaced["licenses"], json!([LICENSE_MEETING_ACME]));
        assert_eq!(replaced["siteUrls"], json!(["acme.webex.com"]));
        assert_eq!(consumed(&directory, LICENSE_MESSAGING), 0);
        assert_eq!(consumed(&directory, LICENSE_MEETING_ACME), 1);
        assert!(directory
            .list(Some("a@example.com"), None, None, None, 9)
            .0
            .is_empty());
        assert_eq!(
            directory
                .list(Some("c@example.com"), None, None, None, 9)
                .0
                .len(),
            1
        );
        assert_eq!(directory.duplicates(), 0);
        assert_eq!(
            directory.replace("nobody", input("d@example.com", &[]), NOW),
            Err(Refusal::NotFound)
        );
    }

    #[test]
    fn names_join() {
        assert_eq!(full_name(Some("Jo"), Some("Ng")).as_deref(), Some("Jo Ng"));
        assert_eq!(full_name(None, Some("Ng")).as_deref(), Some("Ng"));
        assert_eq!(full_name(Some(" "), None), None);
    }
}

//! What the simulated organization holds at start: its licenses ([`SimLicense`]) and
//! people ([`SimPerson`]), with the default license set.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use uuid::Uuid;

/// A license (subscription line) of the organization, as `GET /v1/licenses` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct SimLicense {
    /// The license id people refer to (`licenses` of a person, `PATCH
    /// /v1/licenses/users`). Ids should be unique; of two licenses with one id, the
    /// second is ignored.
    pub id: String,
    /// `name`; names repeat across meeting sites (the `siteUrl` tells them apart).
    pub name: String,
    /// `totalUnits`: how many people can hold it.
    pub total_units: u64,
    /// `siteUrl` of a meeting license (`siteType` is then `Control Hub managed site`).
    pub site_url: Option<String>,
}

impl SimLicense {
    /// A license with these fields.
    fn new(id: &str, name: &str, total_units: u64, site_url: Option<&str>) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            total_units,
            site_url: site_url.map(str::to_owned),
        }
    }
}

/// A person the organization has at start. Their `licenses` count towards the
/// licenses' `consumedUnits` (even beyond `totalUnits`); ids that are not among
/// [`SimConfig::licenses`](crate::sim::SimConfig::licenses) are dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimPerson {
    /// The person's only email address (matched case-insensitively).
    pub email: String,
    /// `firstName`.
    pub first_name: Option<String>,
    /// `lastName`.
    pub last_name: Option<String>,
    /// `displayName`; when `None`, "First Last" (or the email, if both are missing).
    pub display_name: Option<String>,
    /// `department`.
    pub department: Option<String>,
    /// `title`.
    pub title: Option<String>,
    /// License ids the person holds.
    pub licenses: Vec<String>,
}

/// Id of the default "Meeting - Webex Enterprise" license on `acme.webex.com` (100
/// units): the unpadded base64 of
/// `ciscospark://us/LICENSE/5a1c0e5e-0000-4000-8000-00000000c0de:MC_acme.webex.com`.
pub const LICENSE_MEETING_ACME: &str = "Y2lzY29zcGFyazovL3VzL0xJQ0VOU0UvNWExYzBlNWUtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDBjMGRlOk1DX2FjbWUud2ViZXguY29t";
/// Id of the default "Meeting - Webex Enterprise" license on `acme-eu.webex.com` (50
/// units), same name as [`LICENSE_MEETING_ACME`]: `...:MC_acme-eu.webex.com`.
pub const LICENSE_MEETING_ACME_EU: &str = "Y2lzY29zcGFyazovL3VzL0xJQ0VOU0UvNWExYzBlNWUtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDBjMGRlOk1DX2FjbWUtZXUud2ViZXguY29t";
/// Id of the default "Messaging" license (1000 units): `...:MS`.
pub const LICENSE_MESSAGING: &str =
    "Y2lzY29zcGFyazovL3VzL0xJQ0VOU0UvNWExYzBlNWUtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDBjMGRlOk1T";
/// Id of the default "Webex Calling - Professional" license (200 units): `...:BCPRO`.
pub const LICENSE_CALLING_PROFESSIONAL: &str =
    "Y2lzY29zcGFyazovL3VzL0xJQ0VOU0UvNWExYzBlNWUtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDBjMGRlOkJDUFJP";
/// Id of the default "Webex Enterprise Edition" license (1000 units, no site): `...:EE`.
pub const LICENSE_ENTERPRISE_EDITION: &str =
    "Y2lzY29zcGFyazovL3VzL0xJQ0VOU0UvNWExYzBlNWUtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDBjMGRlOkVF";
/// Id of the default "Webex Assistant" license (5 units, runs out easily): `...:WXA`.
pub const LICENSE_ASSISTANT: &str =
    "Y2lzY29zcGFyazovL3VzL0xJQ0VOU0UvNWExYzBlNWUtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDBjMGRlOldYQQ";

/// The admin's person id: the unpadded base64 of
/// `ciscospark://us/PEOPLE/5a1c0e5e-0000-4000-8000-00000000ad01`.
pub(crate) const ADMIN_PERSON_ID: &str =
    "Y2lzY29zcGFyazovL3VzL1BFT1BMRS81YTFjMGU1ZS0wMDAwLTQwMDAtODAwMC0wMDAwMDAwMGFkMDE";

/// Name of both default meeting licenses.
const MEETING_NAME: &str = "Meeting - Webex Enterprise";

/// The default [`SimConfig::licenses`](crate::sim::SimConfig::licenses).
pub(crate) fn default_licenses() -> Vec<SimLicense> {
    vec![
        SimLicense::new(
            LICENSE_MEETING_ACME,
            MEETING_NAME,
            100,
            Some("acme.webex.com"),
        ),
        SimLicense::new(
            LICENSE_MEETING_ACME_EU,
            MEETING_NAME,
            50,
            Some("acme-eu.webex.com"),
        ),
        SimLicense::new(LICENSE_MESSAGING, "Messaging", 1000, None),
        SimLicense::new(
            LICENSE_CALLING_PROFESSIONAL,
            "Webex Calling - Professional",
            200,
            None,
        ),
        SimLicense::new(
            LICENSE_ENTERPRISE_EDITION,
            "Webex Enterprise Edition",
            1000,
            None,
        ),
        SimLicense::new(LICENSE_ASSISTANT, "Webex Assistant", 5, None),
    ]
}

/// A fresh Webex-style person id: the unpadded base64 of
/// `ciscospark://us/PEOPLE/<uuid v4>` (only letters and digits, safe in a path).
pub(crate) fn new_person_id() -> String {
    STANDARD_NO_PAD.encode(format!("ciscospark://us/PEOPLE/{}", Uuid::new_v4()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(id: &str) -> String {
        String::from_utf8(STANDARD_NO_PAD.decode(id).unwrap()).unwrap()
    }

    #[test]
    fn license_ids_are_webex_style() {
        let prefix = "ciscospark://us/LICENSE/5a1c0e5e-0000-4000-8000-00000000c0de:";
        let codes = [
            (LICENSE_MEETING_ACME, "MC_acme.webex.com"),
            (LICENSE_MEETING_ACME_EU, "MC_acme-eu.webex.com"),
            (LICENSE_MESSAGING, "MS"),
            (LICENSE_CALLING_PROFESSIONAL, "BCPRO"),
            (LICENSE_ENTERPRISE_EDITION, "EE"),
            (LICENSE_ASSISTANT, "WXA"),
        ];
        for (id, code) in codes {
            assert_eq!(decode(id), format!("{prefix}{code}"));
        }
        let defaults = default_licenses();
        let ids: Vec<&str> = defaults.iter().map(|license| license.id.as_str()).collect();
        assert_eq!(ids, codes.map(|(id, _)| id));
    }

    #[test]
    fn person_ids_are_webex_style() {
        let id = new_person_id();
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
        let text = decode(&id);
        let uuid = text.strip_prefix("ciscospark://us/PEOPLE/").unwrap();
        assert!(Uuid::parse_str(uuid).is_ok(), "{text}");
    }
}

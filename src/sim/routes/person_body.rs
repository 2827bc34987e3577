//! Validation of `POST /v1/people` and `PUT /v1/people/{personId}` bodies. Every
//! problem found is reported, each as one sentence. Fields the simulator does not keep
//! (such as `id`, `created` or `nickName` sent back by a GET-change-PUT) are ignored.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::meeting_body::is_valid_email;
use crate::sim::model::directory::{full_name, Details, PersonInput};

/// Settable fields stored and echoed as given, without checks.
const ECHOED_FIELDS: [&str; 8] = [
    "phoneNumbers",
    "extension",
    "locationId",
    "avatar",
    "roles",
    "manager",
    "managerId",
    "addresses",
];

/// Suffix of a `siteUrls` entry giving the attendee role.
const ATTENDEE_SUFFIX: &str = "#attendee";

/// The fields of a create or PUT body that the simulator looks at.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PersonRequest {
    emails: Option<Vec<String>>,
    display_name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    department: Option<String>,
    title: Option<String>,
    licenses: Option<Vec<String>>,
    site_urls: Option<Vec<String>>,
    org_id: Option<String>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// A checked body and the `orgId` it names, if any.
pub(crate) type Checked = (PersonInput, Option<String>);

/// Checks a `POST /v1/people` body: `emails` with a valid first address, and at
/// least one of `displayName`, `firstName`, `lastName` (the display name defaults to
/// "First Last").
pub(crate) fn check_create(body: &[u8]) -> Result<Checked, Vec<String>> {
    let request = parse(body)?;
    let mut problems = Vec::new();
    let email = check_emails(request.emails.as_deref(), &mut problems);
    if email.is_none() && problems.is_empty() {
        problems.push("emails is required.".to_owned());
    }
    let display_name = non_blank(request.display_name.as_deref())
        .or_else(|| full_name(request.first_name.as_deref(), request.last_name.as_deref()));
    if display_name.is_none() {
        problems.push("At least one of displayName, firstName or lastName is required.".to_owned());
    }
    finish(request, email, display_name, problems)
}

/// Checks a `PUT /v1/people/{personId}` body: `displayName` is required; `emails`,
/// when given, must start with a valid address.
pub(crate) fn check_replace(body: &[u8]) -> Result<Checked, Vec<String>> {
    let request = parse(body)?;
    let mut problems = Vec::new();
    let email = check_emails(request.emails.as_deref(), &mut problems);
    let display_name = non_blank(request.display_name.as_deref());
    if display_name.is_none() {
        problems.push("displayName is required.".to_owned());
    }
    finish(request, email, display_name, problems)
}

/// Parses the JSON body.
fn parse(body: &[u8]) -> Result<PersonRequest, Vec<String>> {
    serde_json::from_slice(body)
        .map_err(|error| vec![format!("The request body is not a valid person: {error}.")])
}

/// The first address of `emails` (the only one Webex uses), if given and valid.
fn check_emails(emails: Option<&[String]>, problems: &mut Vec<String>) -> Option<String> {
    let emails = emails?;
    let Some(first) = emails.first().map(|email| email.trim()) else {
        problems.push("emails cannot be empty.".to_owned());
        return None;
    };
    if !is_valid_email(first) {
        problems.push(format!("'{first}' is not a valid email address."));
        return None;
    }
    Some(first.to_owned())
}

/// Builds the input once the checks are done.
fn finish(
    request: PersonRequest,
    email: Option<String>,
    display_name: Option<String>,
    problems: Vec<String>,
) -> Result<Checked, Vec<String>> {
    let Some(display_name) = display_name.filter(|_| problems.is_empty()) else {
        return Err(problems);
    };
    let mut licenses: Vec<String> = Vec::new();
    for id in request.licenses.unwrap_or_default() {
        if !licenses.contains(&id) {
            licenses.push(id);
        }
    }
    let attendee_sites = request
        .site_urls
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| entry.strip_suffix(ATTENDEE_SUFFIX))
        .map(str::to_owned)
        .collect();
    let extra = request
        .other
        .into_iter()
        .filter(|(key, value)| ECHOED_FIELDS.contains(&key.as_str()) && !value.is_null())
        .collect();
    let details = Details {
        display_name,
        first_name: non_blank(request.first_name.as_deref()),
        last_name: non_blank(request.last_name.as_deref()),
        department: non_blank(request.department.as_deref()),
        title: non_blank(request.title.as_deref()),
        extra,
    };
    let input = PersonInput {
        email,
        details,
        licenses,
        attendee_sites,
    };
    Ok((input, request.org_id))
}

/// The trimmed text, unless empty.
fn non_blank(text: Option<&str>) -> Option<String> {
    text.map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn create(body: Value) -> Result<Checked, Vec<String>> {
        check_create(body.to_string().as_bytes())
    }

    #[test]
    fn create_needs_an_email_and_a_name() {
        assert_eq!(
            create(json!({})).unwrap_err(),
            [
                "emails is required.",
                "At least one of displayName, firstName or lastName is required."
            ]
        );
        assert_eq!(
            create(json!({"emails": ["nope"], "lastName": "Ng"})).unwrap_err(),
            ["'nope' is not a valid email address."]
        );
        assert!(
            create(json!({"emails": "a@example.com", "lastName": "Ng"})).unwrap_err()[0]
                .contains("not a valid person")
        );
        let (input, org) = create(json!({
            "emails": ["jo@example.com", "ignored@example.com"],
            "firstName": "Jo",
            "lastName": "Ng",
            "department": " ",
            "licenses": ["a", "b", "a"],
            "siteUrls": ["acme.webex.com#attendee", "acme-eu.webex.com"],
            "avatar": "https://example.com/a.png",
            "nickName": "ignored",
            "orgId": "org",
        }))
        .unwrap();
        assert_eq!(org.as_deref(), Some("org"));
        assert_eq!(input.email.as_deref(), Some("jo@example.com"));
        assert_eq!(input.details.display_name, "Jo Ng");
        assert_eq!(input.details.department, None);
        assert_eq!(input.licenses, ["a", "b"]);
        assert_eq!(input.attendee_sites, ["acme.webex.com"]);
        assert_eq!(
            Value::Object(input.details.extra),
            json!({"avatar": "https://example.com/a.png"})
        );
    }

    #[test]
    fn replace_needs_a_display_name() {
        let replace = |body: Value| check_replace(body.to_string().as_bytes());
        assert_eq!(
            replace(json!({"firstName": "Jo"})).unwrap_err(),
            ["displayName is required."]
        );
        assert_eq!(
            replace(json!({"displayName": "Jo", "emails": []})).unwrap_err(),
            ["emails cannot be empty."]
        );
        let (input, _) = replace(json!({"displayName": "Jo"})).unwrap();
        assert_eq!(input.email, None);
        assert!(input.licenses.is_empty());
    }
}

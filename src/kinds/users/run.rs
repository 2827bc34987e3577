//! Carrying out one row of a users run: find the person, create or update
//! them, change their licenses. Idempotent by construction: every attempt
//! starts by looking the person up by email, so a create whose answer was
//! lost (or that failed after creating, as the API warns it can) is found
//! and never made twice.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use crate::engine::Api;
use crate::kinds::{BoxFuture, Runner};
use crate::store::{now_ms, Claimed, Created, Outcome};
use crate::webex::Person;

use super::check::UserChange;

/// The fields `PUT /people/{id}` takes (UpdateAPersonRequest): a full
/// replace, so every one of them the person has is sent back.
const PUT_FIELDS: [&str; 19] = [
    "emails",
    "phoneNumbers",
    "extension",
    "locationId",
    "displayName",
    "firstName",
    "lastName",
    "nickName",
    "avatar",
    "orgId",
    "roles",
    "licenses",
    "department",
    "manager",
    "managerId",
    "title",
    "addresses",
    "siteUrls",
    "loginEnabled",
];

/// Carries out the rows of one users run.
pub struct UserRunner {
    /// License id → the label reports show.
    pub license_names: HashMap<String, String>,
}

impl Runner for UserRunner {
    // Every attempt starts with a lookup by email: an uncertain create needs
    // no separate reconciliation, and no final check (the defaults).
    fn execute<'a>(&'a self, row: &'a Claimed, api: &'a mut Api<'_>) -> BoxFuture<'a, Outcome> {
        Box::pin(self.person(row, api))
    }
}

impl UserRunner {
    /// Carries out one user row.
    async fn person(&self, row: &Claimed, api: &mut Api<'_>) -> Outcome {
        let Some(body) = &row.request else {
            return Outcome::failed(None, "the queued row has no change to make".into());
        };
        let change: UserChange = match serde_json::from_str(body) {
            Ok(c) => c,
            Err(e) => {
                return Outcome::failed(None, format!("the queued change is unreadable: {e}"))
            }
        };
        let client = api.client();
        let email = change.email.clone();
        let found = match api
            .call("lookup", |token, tid| async move {
                client.find_person(&token, &email, &tid).await
            })
            .await
        {
            Ok(a) => a.value,
            Err(f) => return f.outcome,
        };
        match found {
            None => create(self, api, &change).await,
            Some(person) => update(self, api, &change, person).await,
        }
    }

    fn labels(&self, ids: &[String]) -> Vec<String> {
        ids.iter()
            .map(|id| {
                self.license_names
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| id.clone())
            })
            .collect()
    }

    fn done(
        &self,
        person: &str,
        action: &str,
        before: &[String],
        after: &[String],
        status: u16,
        tracking_id: Option<String>,
    ) -> Outcome {
        let extra = json!({ "before": self.labels(before), "after": self.labels(after) });
        Outcome::Succeeded {
            created: Created {
                id: person.to_owned(),
                number: Some(action.to_owned()),
                link: None,
                extra: Some(extra.to_string()),
            },
            status: Some(status),
            tracking_id,
            note: None,
            check_at: None,
        }
    }
}

async fn create(runner: &UserRunner, api: &mut Api<'_>, change: &UserChange) -> Outcome {
    let client = api.client();
    if !change.has_name() {
        return Outcome::failed(
            None,
            format!("{} does not exist, and the row gives no name to create them with (fix: fill in firstName, lastName or displayName)", change.email),
        );
    }
    let mut body =
        json!({ "emails": [change.email], "displayName": change.display_name_or_default() });
    let fields = [
        ("firstName", &change.first_name),
        ("lastName", &change.last_name),
        ("department", &change.department),
        ("title", &change.title),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            body[key] = json!(v);
        }
    }
    if !change.add.is_empty() {
        body["licenses"] = json!(change.add.iter().map(|l| &l.id).collect::<Vec<_>>());
    }
    let answer = match api
        .call("create", |token, tid| async move {
            client.create_person(&token, &body, &tid).await
        })
        .await
    {
        Ok(a) => a,
        // Someone (an earlier attempt whose answer was lost) created the
        // person: go again, and the lookup finds them. Counted like any
        // failure: an email that exists where this org cannot see it (another
        // org) answers 409 forever, and the row must end.
        Err(f) if f.error.status() == Some(409) => {
            let status = Some(409);
            let tracking_id = f.error.tracking_id().map(str::to_owned);
            if api.failures() + 1 >= api.max_attempts() {
                return api.overrule(Outcome::Failed {
                    status,
                    error: format!("{} exists in Webex (409) but not in this org's directory: it may belong to another org; move or free the address in Control Hub, then retry with --resume --retry-failed ({})", change.email, f.error),
                    tracking_id,
                    reconcile: false,
                    uncertain_at: None,
                });
            }
            return api.overrule(Outcome::Retry {
                next_at: now_ms() + api.backoff().as_millis() as i64,
                status,
                error: f.error.to_string(),
                tracking_id,
                reconcile: false,
                uncertain_at: None,
                counts_as_failure: true,
                throttled: false,
            });
        }
        Err(f) => return f.outcome,
    };
    let person = answer.value;
    let missing: Vec<&str> = change
        .add
        .iter()
        .filter(|l| !person.licenses.contains(&l.id))
        .map(|l| l.label.as_str())
        .collect();
    if !missing.is_empty() {
        return Outcome::Failed {
            status: Some(answer.status),
            error: format!(
                "created {} ({}), but these licenses did not stick: {}",
                change.email,
                person.id,
                missing.join(", ")
            ),
            tracking_id: answer.tracking_id,
            reconcile: false,
            uncertain_at: None,
        };
    }
    runner.done(
        &person.id,
        "created",
        &[],
        &person.licenses,
        answer.status,
        answer.tracking_id,
    )
}

/// The fields a row changes on an existing person: (API name, new value).
fn field_changes<'a>(change: &'a UserChange, person: &Person) -> Vec<(&'static str, &'a str)> {
    let pairs = [
        ("firstName", &change.first_name, &person.first_name),
        ("lastName", &change.last_name, &person.last_name),
        ("displayName", &change.display_name, &person.display_name),
        ("department", &change.department, &person.department),
        ("title", &change.title, &person.title),
    ];
    pairs
        .into_iter()
        .filter_map(|(key, wanted, now)| match wanted {
            Some(w) if now.as_deref() != Some(w.as_str()) => Some((key, w.as_str())),
            _ => None,
        })
        .collect()
}

/// The body of a `PUT /people/{id}`: every field the person has now (from a
/// fresh GET), with the row's changes on top. Pure.
pub fn put_body(current: &Map<String, Value>, changes: &[(&str, &str)]) -> Value {
    let mut body: Map<String, Value> = current
        .iter()
        .filter(|(k, _)| PUT_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in changes {
        body.insert((*key).to_owned(), json!(value));
    }
    if !body.contains_key("displayName") {
        let name = [body.get("firstName"), body.get("lastName")]
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        body.insert("displayName".into(), json!(name));
    }
    Value::Object(body)
}

async fn update(
    runner: &UserRunner,
    api: &mut Api<'_>,
    change: &UserChange,
    person: Person,
) -> Outcome {
    let client = api.client();
    let before = person.licenses.clone();
    let held: HashSet<&str> = person.licenses.iter().map(String::as_str).collect();
    let to_add: Vec<_> = change
        .add
        .iter()
        .filter(|l| !held.contains(l.id.as_str()))
        .collect();
    let to_remove: Vec<_> = change
        .remove
        .iter()
        .filter(|l| held.contains(l.id.as_str()))
        .collect();
    let fields = field_changes(change, &person);
    if fields.is_empty() && to_add.is_empty() && to_remove.is_empty() {
        return runner.done(
            &person.id,
            "no change",
            &before,
            &before,
            200,
            api.last_tracking_id(),
        );
    }
    let mut status = 200;
    if !fields.is_empty() {
        // PUT replaces the whole person: build it from a fresh GET so that
        // nothing the row does not mention is wiped.
        let id = person.id.clone();
        let current = match api
            .call("get", |token, tid| async move {
                client.get_person_raw(&token, &id, &tid).await
            })
            .await
        {
            Ok(a) => a.value,
            Err(f) => return f.outcome,
        };
        let body = put_body(&current, &fields);
        let id = person.id.clone();
        match api
            .call("update", |token, tid| async move {
                client.update_person(&token, &id, &body, &tid).await
            })
            .await
        {
            Ok(a) => status = a.status,
            Err(f) => return f.outcome,
        }
    }
    let mut after = before.clone();
    if !to_add.is_empty() || !to_remove.is_empty() {
        let ops: Vec<Value> = to_add
            .iter()
            .map(|l| json!({ "id": l.id, "operation": "add" }))
            .chain(
                to_remove
                    .iter()
                    .map(|l| json!({ "id": l.id, "operation": "remove" })),
            )
            .collect();
        let body = json!({ "personId": person.id, "licenses": ops });
        let answer = match api
            .call("licenses", |token, tid| async move {
                client.patch_licenses(&token, &body, &tid).await
            })
            .await
        {
            Ok(a) => a,
            Err(f) => return f.outcome,
        };
        after = answer.value.licenses.clone();
        let now: HashSet<&str> = after.iter().map(String::as_str).collect();
        let not_added: Vec<&str> = to_add
            .iter()
            .filter(|l| !now.contains(l.id.as_str()))
            .map(|l| l.label.as_str())
            .collect();
        let not_removed: Vec<&str> = to_remove
            .iter()
            .filter(|l| now.contains(l.id.as_str()))
            .map(|l| l.label.as_str())
            .collect();
        if answer.status == 206 || !not_added.is_empty() || !not_removed.is_empty() {
            let mut what = Vec::new();
            if !not_added.is_empty() {
                what.push(format!("not assigned: {} (no free units, or not allowed for this person; check Control Hub)", not_added.join(", ")));
            }
            if !not_removed.is_empty() {
                what.push(format!("not removed: {}", not_removed.join(", ")));
            }
            if what.is_empty() {
                what.push("Webex applied only part of the change".into());
            }
            return Outcome::Failed {
                status: Some(answer.status),
                error: format!(
                    "licenses of {}: {} (HTTP {})",
                    change.email,
                    what.join("; "),
                    answer.status
                ),
                tracking_id: answer.tracking_id,
                reconcile: false,
                uncertain_at: None,
            };
        }
        status = answer.status;
    }
    runner.done(
        &person.id,
        "updated",
        &before,
        &after,
        status,
        api.last_tracking_id(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_keeps_every_field_the_row_does_not_change() {
        let current: Map<String, Value> = serde_json::from_value(json!({
            "id": "P1", "emails": ["ann@acme.com"], "displayName": "Ann Lee", "firstName": "Ann", "lastName": "Lee",
            "department": "Sales", "title": "AE", "avatar": "https://a/x.png", "licenses": ["L1"], "created": "2020-01-01",
            "phoneNumbers": [{"type": "work", "value": "1"}], "status": "active"
        }))
        .unwrap();
        let body = put_body(&current, &[("department", "Marketing")]);
        assert_eq!(body["department"], "Marketing");
        for kept in [
            "emails",
            "displayName",
            "firstName",
            "lastName",
            "title",
            "avatar",
            "licenses",
            "phoneNumbers",
        ] {
            assert_eq!(body[kept], current[kept], "{kept} is sent back");
        }
        for dropped in ["id", "created", "status"] {
            assert!(body.get(dropped).is_none(), "{dropped} is not a PUT field");
        }
    }

    #[test]
    fn only_real_differences_are_changes() {
        let person = Person {
            id: "P".into(),
            first_name: Some("Ann".into()),
            department: Some("Sales".into()),
            ..Default::default()
        };
        let change = UserChange {
            email: "a@b.co".into(),
            first_name: Some("Ann".into()),
            department: Some("Ops".into()),
            ..Default::default()
        };
        assert_eq!(field_changes(&change, &person), vec![("department", "Ops")]);
    }
}

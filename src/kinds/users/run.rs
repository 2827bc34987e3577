//! Carrying out one row of a users run: find the person, create or update
//! them, change their licenses. Idempotent by construction: every attempt
//! starts by looking the person up by email, so a create whose answer was
//! lost (or that failed after creating, as the API warns it can) is found
//! and never made twice.

use std::collections::{HashMap, HashSet};
use std::future::Future;

use secrecy::SecretString;
use serde_json::{json, Map, Value};

use crate::engine::{attempt_for_error, auth_outcome, on_error, Shared};
use crate::kinds::users::check::UserChange;
use crate::store::{now_ms, Attempt, Claimed, Created, Outcome};
use crate::webex::{new_tracking_id, Answer, ApiError, Person};

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

/// One row's requests, each paced and logged.
struct Calls<'a> {
    s: &'a Shared,
    row: &'a Claimed,
    log: &'a mut Vec<Attempt>,
    /// The dispatcher paid the limiter for the first request.
    first: bool,
}

impl Calls<'_> {
    /// Sends one request: its turn at the limiter, the pause, a fresh token.
    /// An error comes back as the row's outcome (retry, refresh, fail).
    async fn call<T, F, Fut>(&mut self, action: &'static str, send: F) -> Result<Answer<T>, Outcome>
    where
        F: FnOnce(SecretString, String) -> Fut,
        Fut: Future<Output = Result<Answer<T>, ApiError>>,
    {
        let s = self.s;
        if !std::mem::replace(&mut self.first, false) {
            s.pacing.limiter.until_ready().await;
        }
        let Some((token, generation)) = s.tokens.fresh().await else {
            return Err(
                auth_outcome(s, self.row, 0, Some(401), "no access token".into(), None).await,
            );
        };
        s.pacing.pause.wait().await;
        let tracking = new_tracking_id();
        let started = now_ms();
        match send(token, tracking.clone()).await {
            Ok(answer) => {
                s.pacing.accepted();
                self.log.push(Attempt {
                    action,
                    started_at: started,
                    finished_at: now_ms(),
                    http_status: Some(answer.status),
                    outcome: "ok",
                    error: None,
                    tracking_id: answer.tracking_id.clone().or(Some(tracking)),
                });
                Ok(answer)
            }
            Err(e) => {
                // Every attempt starts with a lookup by email: an uncertain
                // create needs no separate reconciliation.
                let mut outcome = on_error(s, self.row, generation, &e, None).await;
                if e.status() == Some(409) && action == "create" {
                    // Someone (an earlier attempt whose answer was lost) created
                    // the person: go again, and the lookup finds them.
                    outcome = Outcome::Retry {
                        next_at: now_ms(),
                        status: Some(409),
                        error: e.to_string(),
                        tracking_id: e.tracking_id().map(str::to_owned),
                        reconcile: false,
                        uncertain_at: None,
                        counts_as_failure: true,
                        throttled: false,
                    };
                }
                self.log
                    .push(attempt_for_error(action, started, &e, &tracking, &outcome));
                Err(outcome)
            }
        }
    }
}

/// Carries out one user row.
pub(crate) async fn person(s: &Shared, row: &Claimed, log: &mut Vec<Attempt>) -> Outcome {
    let Some(body) = &row.request else {
        return failed(None, "the queued row has no change to make".into());
    };
    let change: UserChange = match serde_json::from_str(body) {
        Ok(c) => c,
        Err(e) => return failed(None, format!("the queued change is unreadable: {e}")),
    };
    let mut calls = Calls {
        s,
        row,
        log,
        first: true,
    };
    let email = change.email.clone();
    let found = match calls
        .call("lookup", |token, tid| async move {
            s.client.find_person(&token, &email, &tid).await
        })
        .await
    {
        Ok(a) => a.value,
        Err(o) => return o,
    };
    match found {
        None => create(&mut calls, &change).await,
        Some(person) => update(&mut calls, &change, person).await,
    }
}

fn failed(status: Option<u16>, error: String) -> Outcome {
    Outcome::Failed {
        status,
        error,
        tracking_id: None,
        reconcile: false,
        uncertain_at: None,
    }
}

fn labels(s: &Shared, ids: &[String]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            s.job
                .license_name(id)
                .map_or_else(|| id.clone(), str::to_owned)
        })
        .collect()
}

fn done(
    s: &Shared,
    person: &str,
    action: &str,
    before: &[String],
    after: &[String],
    status: u16,
) -> Outcome {
    let extra = json!({ "before": labels(s, before), "after": labels(s, after) });
    Outcome::Succeeded {
        created: Created {
            id: person.to_owned(),
            number: Some(action.to_owned()),
            link: None,
            extra: Some(extra.to_string()),
        },
        status: Some(status),
        tracking_id: None,
        note: None,
        check_at: None,
    }
}

async fn create(calls: &mut Calls<'_>, change: &UserChange) -> Outcome {
    let s = calls.s;
    if !change.has_name() {
        return failed(
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
    let answer = match calls
        .call("create", |token, tid| async move {
            s.client.create_person(&token, &body, &tid).await
        })
        .await
    {
        Ok(a) => a,
        Err(o) => return o,
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
    done(
        s,
        &person.id,
        "created",
        &[],
        &person.licenses,
        answer.status,
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

async fn update(calls: &mut Calls<'_>, change: &UserChange, person: Person) -> Outcome {
    let s = calls.s;
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
        return done(s, &person.id, "no change", &before, &before, 200);
    }
    let mut status = 200;
    if !fields.is_empty() {
        // PUT replaces the whole person: build it from a fresh GET so that
        // nothing the row does not mention is wiped.
        let id = person.id.clone();
        let current = match calls
            .call("get", |token, tid| async move {
                s.client.get_person_raw(&token, &id, &tid).await
            })
            .await
        {
            Ok(a) => a.value,
            Err(o) => return o,
        };
        let body = put_body(&current, &fields);
        let id = person.id.clone();
        match calls
            .call("update", |token, tid| async move {
                s.client.update_person(&token, &id, &body, &tid).await
            })
            .await
        {
            Ok(a) => status = a.status,
            Err(o) => return o,
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
        let answer = match calls
            .call("licenses", |token, tid| async move {
                s.client.patch_licenses(&token, &body, &tid).await
            })
            .await
        {
            Ok(a) => a,
            Err(o) => return o,
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
    done(s, &person.id, "updated", &before, &after, status)
}

/// License ids → the labels the report shows.
pub fn license_names(licenses: &[crate::kinds::users::check::License]) -> HashMap<String, String> {
    licenses.iter().map(|l| (l.id.clone(), l.label())).collect()
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

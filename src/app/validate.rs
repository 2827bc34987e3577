//! `webex-bulk validate KIND FILE`.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{self, CredentialStore, EnvCredentials, TokenManager};
use crate::cli::ValidateArgs;
use crate::csvin::Severity;
use crate::ingest::{self};
use crate::kinds::{self, Org};
use crate::webex::{check_base_url, Client};

use super::*;

/// `validate KIND FILE`: checks every row; sends nothing, except what a
/// kind that checks rows against the org asks it (users: `GET /v1/licenses`).
pub(super) async fn validate(args: ValidateArgs) -> Result<Exit, Failure> {
    let target = target(args.kind.clone(), args.file.clone(), &args.recipe)?;
    let file = target.file.clone();
    let kind = match kinds::find(&target.kind) {
        Ok(k) => k,
        Err(e) => return Err(fail(Exit::Usage, e)),
    };
    let org = if kind.needs_org() {
        let base = args
            .base_url
            .clone()
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let base = match check_base_url(&base) {
            Ok(b) => b,
            Err(e) => return Err(fail(Exit::Usage, e)),
        };
        let store = CredentialStore::new(&auth::home_dir());
        let stored = match store.load(&args.profile) {
            Ok(s) => s,
            Err(e) => return Err(fail(Exit::Usage, e)),
        };
        let creds = auth::resolve(EnvCredentials::from_env(), stored);
        if creds.access_token.is_none() && creds.refresh_token.is_none() {
            return Err(fail(Exit::Usage, format!("validate {} checks rows against the org and needs credentials: set WEBEX_ACCESS_TOKEN (or run `webex-bulk auth service-app`)", kind.name())));
        }
        let client = Client::new(base, Duration::from_secs(60));
        let tokens = TokenManager::new(creds, client.clone(), store, &args.profile);
        Some(Org::new(client, Arc::new(tokens)))
    } else {
        None
    };
    let kind_options = ApiOptions::of(&args.api, &serde_json::Value::Null).kind_options()?;
    let job = match prepare(kind, org.as_ref(), &kind_options).await {
        Ok(job) => through_recipe(job, target.recipe, target.date_order),
        Err(f) => return Err(f),
    };
    let mut errors = 0u64;
    let result = ingest::scan_job(
        &file,
        ingest::Reading {
            encoding: args.encoding,
            delimiter: args.delimiter,
            only: args.only_lines.as_ref(),
            sheet: args.sheet.as_deref(),
        },
        job.as_ref(),
        chrono::Utc::now(),
        |_, _, _| Ok(()),
        |p| {
            if p.severity == Severity::Error {
                errors += 1;
            }
            print_problem(&file, p);
        },
    );
    match result {
        Ok(scan) => {
            println!(
                "{}: {} rows, {} valid, {} invalid ({} problems, {} warnings)",
                file.display(),
                scan.rows,
                scan.valid,
                scan.invalid,
                errors,
                scan.warnings
            );
            print_previews(&scan.previews);
            if scan.invalid == 0 {
                Ok(Exit::Ok)
            } else {
                Ok(Exit::RowsFailed)
            }
        }
        Err(e) => Err(input_error(&file, e)),
    }
}

/// The first valid rows as they will be sent, one block per row, the
/// field names aligned.
fn print_previews(previews: &[(u64, Vec<(&'static str, String)>)]) {
    if previews.is_empty() {
        return;
    }
    println!("the first valid rows, as they will be sent:");
    for (line, fields) in previews {
        println!("  line {line}:");
        let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, value) in fields {
            println!("    {name:<width$}  {value}");
        }
    }
}

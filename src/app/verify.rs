//! `webex-bulk verify`: the command; the checking is the meetings kind's.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{self, EnvCredentials};
use crate::cli::VerifyArgs;
use crate::engine::Settings;
use crate::progress::Mode;
use crate::rate::Pacing;
use crate::store::RunState;

use crate::kinds::meetings::verify::VerifyError;

use super::run::Effective;
use super::status::state_label;
use super::*;

/// `webex-bulk verify`: see [`crate::kinds::meetings::verify`].
pub(super) async fn verify(args: VerifyArgs) -> Result<Exit, Failure> {
    if !args.db.db.exists() {
        return Err(fail(
            Exit::Usage,
            format!("no database at {}", args.db.db.display()),
        ));
    }
    let mut store = open_store(&args.db)?;
    // --fix deletes meetings and writes the log: not beside a run of the same queue.
    let _lock = lock_database(&args.db.db)?;
    let run = match args.run {
        Some(id) => store.run(id),
        None => store.latest_run(),
    }
    .map_err(storage)?
    .ok_or_else(|| fail(Exit::Usage, "no such run (see `webex-bulk status`)"))?;
    if run.kind != "meetings" {
        return Err(fail(
            Exit::Usage,
            format!(
                "run {} is a {} run; verify checks meetings runs (people are unique by email, so a users run cannot hold duplicates)",
                run.id, run.kind
            ),
        ));
    }
    if run.state != RunState::Finished {
        eprintln!(
            "webex-bulk: run {} is not finished ({}); only its succeeded rows are checked",
            run.id,
            state_label(&run)
        );
    }
    let plan = RunPlan {
        db: args.db.db.clone(),
        source: Source::Resume {
            run: Some(run.id),
            retry_failed: false,
        },
        base_url: args.base_url,
        concurrency: args.concurrency,
        rate: args.rate,
        max_attempts: None,
        timeout: Duration::from_secs(args.timeout.max(1)),
        settle: None,
        progress: Mode::None,
        home: auth::home_dir(),
        profile: args.profile,
        env: EnvCredentials::from_env(),
        api: crate::cli::ApiArgs::default(),
    };
    let options = Effective::of(&plan, &run.options);
    let (base, rate) = options.check()?;
    let (client, tokens) = connect(&plan, base)?;
    tokens.ensure().await.map_err(|e| fail(Exit::Auth, e))?;
    // A run queued through a recipe is read through its stored recipe.
    let recipe = match stored_recipe(run.id, &run.options)? {
        None => None,
        Some((recipe, order)) => Some(
            crate::recipe::Applied::new(&recipe, &run.header, order).map_err(|problems| {
                let text: Vec<String> = problems.into_iter().map(|p| p.message).collect();
                fail(
                    Exit::Storage,
                    format!(
                        "run {}: its recipe does not fit its header: {}",
                        run.id,
                        text.join("; ")
                    ),
                )
            })?,
        ),
    };
    let verify_options = crate::kinds::meetings::verify::Options {
        recipe,
        fix: args.fix,
        concurrency: options.concurrency,
        max_attempts: options.max_attempts,
        max_throttled: Settings::default().max_throttled,
    };
    let pacing = Arc::new(Pacing::new(rate, options.concurrency));
    let out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| fail(Exit::Usage, format!("cannot write {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let summary = crate::kinds::meetings::verify::verify(
        &mut store,
        &run,
        client,
        tokens,
        pacing,
        verify_options,
        out,
    )
    .await
    .map_err(|e| match e {
        VerifyError::Auth(_) => fail(Exit::Auth, e),
        VerifyError::Store(e) => e.into(),
        e => fail(Exit::Usage, e),
    })?;
    let removed = if args.fix {
        format!(" ({} duplicates removed)", summary.removed)
    } else {
        String::new()
    };
    eprintln!(
        "verified run {}: {} ok, {} missing, {} duplicated{removed}, {} unchecked",
        run.id, summary.ok, summary.missing, summary.duplicated, summary.unchecked
    );
    if summary.unfixed > 0 && !args.fix {
        eprintln!(
            "webex-bulk: `webex-bulk verify --run {} --fix` removes the duplicates (never the meeting the run recorded)",
            run.id
        );
    }
    if let Some(path) = &args.output {
        eprintln!("wrote the rows that are not ok to {}", path.display());
    }
    Ok(if summary.all_ok() {
        Exit::Ok
    } else {
        Exit::RowsFailed
    })
}

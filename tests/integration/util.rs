//! Helpers: a simulator in this process, the real binary as a child process,
//! and files in a temporary folder.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use webex_bulk::sim::{self, SimConfig, SimHandle};

/// The generous limit for one command of the binary.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// A simulator on a free loopback port.
pub async fn start_sim(config: SimConfig) -> SimHandle {
    sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the simulator starts")
}

/// A folder for one test: the database, the home folder, the input files.
pub struct Work {
    pub dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        Work {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn db(&self) -> PathBuf {
        self.path("queue.db")
    }
    pub fn home(&self) -> PathBuf {
        self.path("home")
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// What a finished command left.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Credentials for the child's environment.
#[derive(Clone, Default)]
pub struct Env {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub client: bool,
    /// Any other variables.
    pub vars: Vec<(&'static str, String)>,
}

impl Env {
    /// The simulator's built-in tokens.
    pub fn sim() -> Env {
        Env {
            access_token: Some("sim-access-token".into()),
            refresh_token: Some("sim-refresh-token".into()),
            client: true,
            vars: Vec::new(),
        }
    }
}

/// The binary with a clean environment: no WEBEX_* from the outside.
pub fn command(work: &Work, env: &Env, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_webex-bulk"));
    cmd.args(args).current_dir(work.dir.path()).env_clear();
    for keep in ["PATH", "HOME", "TMPDIR"] {
        if let Ok(v) = std::env::var(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.env("WEBEX_BULK_HOME", work.home());
    if let Some(t) = &env.access_token {
        cmd.env("WEBEX_ACCESS_TOKEN", t);
    }
    if let Some(t) = &env.refresh_token {
        cmd.env("WEBEX_REFRESH_TOKEN", t);
    }
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    if env.client {
        cmd.env("WEBEX_CLIENT_ID", "sim-client-id")
            .env("WEBEX_CLIENT_SECRET", "sim-client-secret");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the binary to completion.
pub async fn run(work: &Work, env: &Env, args: &[&str]) -> Output {
    let child = command(work, env, args).spawn().expect("the binary starts");
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .expect("the command finishes in time")
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `run meetings FILE` against the simulator, with the database of `work`.
pub fn run_args<'a>(file: &'a str, db: &'a str, base: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    kind_args("meetings", file, db, base, extra)
}

/// `run KIND FILE` against the simulator, with the database `db`.
pub fn kind_args<'a>(
    kind: &'a str,
    file: &'a str,
    db: &'a str,
    base: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut v = vec![
        "run",
        kind,
        file,
        "--db",
        db,
        "--base-url",
        base,
        "--progress",
        "none",
    ];
    v.extend_from_slice(extra);
    v
}

/// A meetings file of `n` valid rows starting two days from now.
pub fn meetings_csv(n: usize) -> String {
    let base = chrono::Utc::now() + chrono::Duration::days(2);
    let mut s = String::from("title,start,duration,hostEmail,invitees\n");
    for i in 0..n {
        let start = base + chrono::Duration::minutes(30 * i as i64);
        s.push_str(&format!(
            "Row {i} review,{},30,host{}@acme.example.com,guest{i}@acme.example.com\n",
            start.format("%Y-%m-%dT%H:%M:00Z"),
            i % 7
        ));
    }
    s
}

/// Polls `cond` until it holds (a condition, not a fixed sleep), or panics after `limit`.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends SIGINT (Ctrl-C) to `child` and waits for it to end.
#[cfg(unix)]
pub async fn interrupt(child: tokio::process::Child) -> std::process::Output {
    let pid = child.id().expect("still running").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .expect("it stops in time")
        .unwrap()
}

/// The integration tags of every meeting in the simulator, checked unique.
pub fn assert_each_created_once(handle: &SimHandle, expected: usize) {
    let meetings = handle.meetings();
    let mut tags: Vec<String> = meetings
        .iter()
        .map(|m| {
            m["integrationTags"][0]
                .as_str()
                .expect("every meeting carries our tag")
                .to_owned()
        })
        .collect();
    tags.sort();
    let before = tags.len();
    tags.dedup();
    assert_eq!(before, tags.len(), "a meeting was created twice");
    assert_eq!(tags.len(), expected, "every row created exactly once");
    assert_eq!(handle.stats().duplicates, 0);
}

/// The CSV report parsed into rows of (header -> value).
pub fn parse_report(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (headers, rows)
}

/// The index of the report column `name`.
pub fn column(headers: &[String], name: &str) -> usize {
    headers
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {headers:?}"))
}

pub fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Work {
    /// `run meetings` on `text` (written to `name`) against `sim`, with this work's database.
    pub async fn run_meetings(
        &self,
        sim: &SimHandle,
        env: &Env,
        name: &str,
        text: &str,
        extra: &[&str],
    ) -> Output {
        self.run_kind("meetings", sim, env, name, text, extra).await
    }

    /// `run KIND` on `text` (written to `name`) against `sim`, with this work's database.
    pub async fn run_kind(
        &self,
        kind: &str,
        sim: &SimHandle,
        env: &Env,
        name: &str,
        text: &str,
        extra: &[&str],
    ) -> Output {
        let file = s(&self.write(name, text));
        let (db, base) = (s(&self.db()), sim.base_url());
        run(self, env, &kind_args(kind, &file, &db, &base, extra)).await
    }

    /// `run meetings` as a child process left running (to be killed).
    pub fn spawn_meetings(
        &self,
        sim: &SimHandle,
        text: &str,
        extra: &[&str],
    ) -> tokio::process::Child {
        self.spawn_kind("meetings", sim, "m.csv", text, extra)
    }

    /// `run KIND` on `text` (written to `name`) as a child process left
    /// running (to be killed).
    pub fn spawn_kind(
        &self,
        kind: &str,
        sim: &SimHandle,
        name: &str,
        text: &str,
        extra: &[&str],
    ) -> tokio::process::Child {
        let file = s(&self.write(name, text));
        let (db, base) = (s(&self.db()), sim.base_url());
        command(
            self,
            &Env::sim(),
            &kind_args(kind, &file, &db, &base, extra),
        )
        .spawn()
        .expect("the binary starts")
    }

    /// The arguments of `run --resume [extra]` against `sim`.
    fn resume_args(&self, sim: &SimHandle, extra: &[&str]) -> Vec<String> {
        let (db, base) = (s(&self.db()), sim.base_url());
        let mut args = vec![
            "run",
            "--resume",
            "--db",
            &db,
            "--base-url",
            &base,
            "--progress",
            "none",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect()
    }

    /// `run --resume [extra]` against `sim`.
    pub async fn resume(&self, sim: &SimHandle, env: &Env, extra: &[&str]) -> Output {
        let args = self.resume_args(sim, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(self, env, &args).await
    }

    /// `run --resume [extra]` as a child process left running (to be killed).
    pub fn spawn_resume(&self, sim: &SimHandle, extra: &[&str]) -> tokio::process::Child {
        let args = self.resume_args(sim, extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        command(self, &Env::sim(), &args)
            .spawn()
            .expect("the binary starts")
    }

    /// `status --json`, parsed.
    pub async fn status(&self) -> serde_json::Value {
        self.status_of(&self.db()).await
    }

    /// `status --json` of another database, parsed.
    pub async fn status_of(&self, db: &Path) -> serde_json::Value {
        let out = run(self, &Env::default(), &["status", "--db", &s(db), "--json"]).await;
        assert_eq!(out.code, 0, "{out:?}");
        serde_json::from_str(&out.stdout).expect("status --json prints JSON")
    }

    /// `report [extra]` of this work's database.
    pub async fn report(&self, extra: &[&str]) -> Output {
        let db = s(&self.db());
        let mut args = vec!["report", "--db", &db];
        args.extend_from_slice(extra);
        run(self, &Env::default(), &args).await
    }
}

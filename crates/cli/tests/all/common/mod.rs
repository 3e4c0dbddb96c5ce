//! Shared set-up for the end-to-end tests: each test gets its own ERRAND_HOME,
//! all share one harness cache, and the real `errand` binary is run as a user would.

#![allow(dead_code)]

pub mod github;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use errand_model::ScriptedModel;
pub use errand_test_support::in_ci;
use errand_test_support::{harness, model as scripted};

pub fn errand_bin() -> &'static str {
    env!("CARGO_BIN_EXE_errand")
}

/// The harness cache shared by every test (installing Claude Code once).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("errand-cache")
}

/// Installs Claude Code into the shared cache once per test process.
pub fn ensure_claude() {
    harness::install(Path::new(errand_bin()), &cache_dir(), "claude-code");
}

/// Installs Codex into the shared cache once per test process.
pub fn ensure_codex() {
    harness::install(Path::new(errand_bin()), &cache_dir(), "codex");
}

/// Installs Gemini CLI into the shared cache once per test process.
pub fn ensure_gemini() {
    harness::install(Path::new(errand_bin()), &cache_dir(), "gemini");
}

/// Installs OpenCode into the shared cache once per test process.
pub fn ensure_opencode() {
    harness::install(Path::new(errand_bin()), &cache_dir(), "opencode");
}

/// Whether bubblewrap works here; tests that need it say so when it does not
/// (in CI a missing sandbox is a failure, never a silent pass).
pub fn sandbox_available() -> bool {
    errand_test_support::need("bubblewrap", errand_test_support::bubblewrap())
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub vars: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("errand-home");
        Env {
            dir,
            home,
            vars: Vec::new(),
        }
    }

    /// Points Codex at the scripted model's Responses API.
    pub fn with_openai_model(mut self, model: &ScriptedModel) -> Env {
        self.vars.extend(scripted::openai_vars(model));
        self
    }

    /// Points Gemini CLI at the scripted model.
    pub fn with_gemini_model(mut self, model: &ScriptedModel) -> Env {
        self.vars.extend(scripted::gemini_vars(model));
        self
    }

    /// Points Claude Code at the scripted model's Messages API.
    pub fn with_model(mut self, model: &ScriptedModel) -> Env {
        self.vars.extend(scripted::anthropic_vars(model));
        self
    }

    /// Lets runs from the API clone local paths under this test's directory
    /// (`server.local_repos`; by default `errand serve` allows none).
    pub fn allow_local_repos(self) -> Env {
        let dir = self.dir.path().to_string_lossy().into_owned();
        self.var("ERRAND_SERVER_LOCAL_REPOS", &dir)
    }

    pub fn var(mut self, k: &str, v: &str) -> Env {
        self.vars.push((k.into(), v.into()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(errand_bin());
        c.args(args)
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .env(
                "HOME",
                std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
            )
            .env("ERRAND_HOME", &self.home)
            .env("ERRAND_CACHE_DIR", cache_dir())
            .current_dir(self.dir.path());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run errand")
    }

    /// `errand run … --json`, returning the exit success and the parsed object.
    pub fn run_json(&self, args: &[&str]) -> (bool, serde_json::Value) {
        let mut a = vec!["run", "--json"];
        a.extend_from_slice(args);
        let out = self.run(&a);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "errand run printed no JSON ({e}):\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.success(), v)
    }

    /// The normalized events of a run, from `errand logs --json`.
    pub fn events(&self, id: &str) -> Vec<serde_json::Value> {
        let out = self.run(&["logs", "--json", id]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("each logs --json line is JSON"))
            .collect()
    }
}

/// The scripted model playing `scenario`, on a free loopback port.
pub async fn model(scenario: &str) -> ScriptedModel {
    scripted::start(scenario).await
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository with one commit holding `src/lib.rs`.
pub fn bare_repo(root: &Path) -> PathBuf {
    let work = root.join("seed");
    std::fs::create_dir_all(work.join("src")).expect("mkdir");
    std::fs::write(
        work.join("src/lib.rs"),
        "pub fn greeting() -> &'static str {\n    \"helo\"\n}\n",
    )
    .expect("write");
    std::fs::write(work.join("README.md"), "# sample\n").expect("write");
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(
        &work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "init",
        ],
    );
    let bare = root.join("origin.git");
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(&bare)
        .output()
        .expect("clone");
    assert!(out.status.success());
    bare
}

/// A long-running errand process (`serve`, `worker`, `view`), killed when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a long-running errand command and returns it with the rest of the
/// first stderr line that starts with `prefix`. Later stderr lines are drained
/// (so the process never blocks on a full pipe) and echoed when `ERRAND_TEST_ECHO` is set.
pub fn start(env: &Env, args: &[&str], prefix: &str) -> (Proc, String) {
    use std::io::{BufRead, BufReader};
    let mut child = env
        .command(args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn errand");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let rest = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("errand {args:?} ended before printing {prefix:?}"))
            .expect("read");
        if let Some(rest) = line.strip_prefix(prefix) {
            break rest.trim().to_string();
        }
    };
    let echo = std::env::var_os("ERRAND_TEST_ECHO").is_some();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if echo {
                eprintln!("[errand] {l}");
            }
        }
    });
    (Proc(child), rest)
}

/// `errand serve` on a free port with `workers` workers: the process and its base URL.
pub fn serve(env: &Env, workers: &str) -> (Proc, String) {
    start(
        env,
        &["serve", "--listen", "127.0.0.1:0", "--workers", workers],
        "errand serve: listening on ",
    )
}

/// A new API token named `name`.
pub fn api_token(env: &Env, name: &str) -> String {
    let out = env.run(&["token", "create", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether a run, as the API shows it, has ended.
pub fn ended(run: &serde_json::Value) -> bool {
    run["state"]
        .as_str()
        .is_some_and(|s| ["succeeded", "failed", "cancelled", "timed_out"].contains(&s))
}

/// POSTs `body` with `headers` (a signed Slack or GitHub delivery); the status and the body.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: String,
) -> (u16, String) {
    let mut rb = http.post(url).body(body);
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// Every run `GET /api/runs` lists, newest first.
pub async fn list_runs(base: &str, api_token: &str) -> Vec<serde_json::Value> {
    let v = api_get(base, api_token, "/api/runs").await;
    v["runs"].as_array().cloned().unwrap_or_default()
}

/// `GET {base}{path}` with the API token, as JSON.
pub async fn api_get(base: &str, api_token: &str, path: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(api_token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
}

/// Polls `GET /api/runs/{id}` until the run has ended, and returns it. The
/// five-minute limit only detects a hang.
pub async fn wait_ended(base: &str, api_token: &str, id: &str) -> serde_json::Value {
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let r: serde_json::Value = http
            .get(format!("{base}/api/runs/{id}"))
            .bearer_auth(api_token)
            .send()
            .await
            .expect("get the run")
            .json()
            .await
            .expect("run JSON");
        if ended(&r) {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run never ended: {r:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// Every file under `dir` (following no symlinks) that contains `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            out.extend(files_containing(&p, needle));
        } else if ft.is_file() {
            if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    out.push(p.display().to_string());
                }
            }
        }
    }
    out
}

/// Events of type `t`.
pub fn of_type<'a>(events: &'a [serde_json::Value], t: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["type"] == t).collect()
}

/// The checks a pushed run of the typo scenario (read `src/lib.rs`, fix
/// `"helo"`, run grep) passes on any backend: the summary, and the bare
/// repository's run branch with errand's one commit on top of main.
/// Returns the run's id and branch.
pub fn assert_typo_fixed_on_branch(bare: &Path, v: &serde_json::Value) -> (String, String) {
    assert_eq!(v["state"], "succeeded");
    let id = v["id"].as_str().expect("id").to_string();
    let branch = v["branch"].as_str().expect("branch").to_string();
    assert_eq!(branch, format!("errand/{}", &id[..8]));
    assert_eq!(v["pushed"], true);
    assert!(
        v["diffstat"]
            .as_str()
            .unwrap_or("")
            .contains("1 file changed"),
        "{v:#}"
    );
    // The bare repo has the branch, with the edit committed by errand.
    let file = git(bare, &["show", &format!("{branch}:src/lib.rs")]);
    assert!(file.contains("\"hello\""), "{file}");
    assert_eq!(
        git(bare, &["rev-parse", &branch]),
        v["commit"].as_str().unwrap_or("")
    );
    let subject = git(bare, &["log", "-1", "--format=%s%n%an", &branch]);
    assert!(
        subject.starts_with("Fixed the typo in greeting().\nerrand"),
        "{subject}"
    );
    assert_eq!(
        git(bare, &["rev-parse", "main"]),
        git(bare, &["rev-parse", &format!("{branch}~1")])
    );
    (id, branch)
}

/// A sandbox backend the end-to-end tests run on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Local,
    Docker,
    /// Modal, on the strict fake Modal server built from Modal's protos
    /// (not Modal itself), one per test binary ([`modal_fake`]).
    Modal,
}

/// The strict fake Modal server the tests of the Modal backend share, on a
/// runtime of its own (so synchronous tests can use it too), started on
/// first use; `None` where bubblewrap (its sandboxes) is missing outside CI.
pub fn modal_fake() -> Option<&'static errand_modal::fake::Fake> {
    use std::sync::OnceLock;
    static FAKE: OnceLock<(tokio::runtime::Runtime, errand_modal::fake::Fake)> = OnceLock::new();
    if !sandbox_available() {
        return None;
    }
    let (_, fake) = FAKE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the fake Modal server");
        // Faults are the Modal end-to-end test's subject; these tests are about the agent.
        let opts = errand_modal::fake::FakeOptions {
            inject: false,
            ..Default::default()
        };
        let fake = rt
            .block_on(errand_modal::fake::Fake::start(opts, "bwrap".into()))
            .expect("the fake Modal server");
        (rt, fake)
    });
    Some(fake)
}

impl Backend {
    /// `env` set up for this backend: for Modal, the fake's address and
    /// token and the agent image it knows.
    pub fn env(self, env: Env) -> Env {
        match (self, modal_fake()) {
            (Backend::Modal, Some(f)) => {
                let (id, secret) = f.token();
                env.var("MODAL_SERVER_URL", &f.url())
                    .var("MODAL_TOKEN_ID", &id)
                    .var("MODAL_TOKEN_SECRET", &secret)
                    .var("ERRAND_SANDBOX_MODAL_IMAGE", "errand-agent:test")
            }
            _ => env,
        }
    }

    /// The extra `errand run` arguments, or `None` when the backend cannot
    /// run here: only outside CI (in CI a missing backend fails the test).
    pub fn args(self, env: &Env) -> Option<Vec<&'static str>> {
        match self {
            Backend::Local => sandbox_available().then(Vec::new),
            Backend::Modal => modal_fake().map(|_| vec!["--sandbox", "modal"]),
            Backend::Docker => {
                let out = env.run(&["sandbox", "prepare", "docker", "--json"]);
                let err = String::from_utf8_lossy(&out.stderr);
                if out.status.success() {
                    Some(vec!["--sandbox", "docker"])
                } else if !in_ci() && err.contains("not reachable") {
                    eprintln!("not run: {}", err.trim());
                    None
                } else {
                    panic!("errand sandbox prepare docker failed:\n{err}");
                }
            }
        }
    }
}

/// A fresh database named `errand_{what}_…` on the test PostgreSQL
/// (`ERRAND_TEST_DATABASE_URL`), or `None` (saying so) when there is none
/// outside CI; in CI a missing PostgreSQL fails the test.
pub fn fresh_postgres(what: &str) -> Option<String> {
    errand_test_support::postgres::fresh_database(what)
}

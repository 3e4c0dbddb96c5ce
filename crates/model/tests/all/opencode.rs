//! End-to-end: the real OpenCode CLI (`opencode run --format json`) runs
//! against the scripted model's Chat Completions endpoint.
//!
//! The CLI comes from `ERRAND_TEST_OPENCODE_BIN`, else the pinned version is
//! installed with npm under the target directory (once; npm's cache makes
//! later installs quick). Only when npm itself is missing (or the install
//! fails) does each test print "skipped: opencode not installed" and pass.
//!
//! OpenCode runs with an empty environment plus PATH, HOME and
//! `OPENCODE_CONFIG` naming a generated config with an `errand` provider
//! (`@ai-sdk/openai-compatible`, `baseURL = {server}/v1`), models fetching
//! and auto-update off. On its first run in a new HOME OpenCode installs the
//! provider package from the npm registry into its cache. `--auto` approves
//! its permission prompts (1.18.33 asks for none of these tools, but a
//! config change could). OpenCode first sends a title-generator request
//! without tools, answered as a side call.
//!
//! `ERRAND_TEST_SHOW=1 cargo test -p errand-model --test all opencode:: -- --nocapture`
//! prints each run's stdout, stderr and request log.

use crate::support;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use errand_core::EventKind;
use errand_model::{Scenario, ScriptedModel, Served};
use errand_trace::OpenCodeStreamParser;
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The OpenCode version errand pins.
const OPENCODE_VERSION: &str = "1.18.33";

fn opencode_bin() -> Option<PathBuf> {
    support::npm_cli(
        "ERRAND_TEST_OPENCODE_BIN",
        &format!("opencode-ai@{OPENCODE_VERSION}"),
        "opencode",
    )
}

/// The OpenCode config naming the scripted model as provider `errand`.
fn config_json(base_url: &str) -> Value {
    json!({
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "errand": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "errand",
                "options": {"baseURL": base_url, "apiKey": "sk-test"},
                "models": {"mock-model": {"name": "errand scripted model", "tool_call": true}}
            }
        },
        "model": "errand/mock-model",
        "autoupdate": false,
        "share": "disabled"
    })
}

/// One finished `opencode run` against a scripted model.
struct Run {
    status: ExitStatus,
    /// stdout lines as they came.
    lines: Vec<String>,
    events: Vec<Value>,
    /// Exit status, stdout, stderr and the request log, for assertion messages.
    context: String,
    /// Every request's answer, in order.
    served: Vec<Served>,
    /// The agent's working directory (canonical path; kept alive until drop).
    _work: tempfile::TempDir,
    work_path: PathBuf,
    _home: tempfile::TempDir,
}

impl Run {
    /// The parts of `tool_use` lines.
    fn tool_parts(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == "tool_use")
            .map(|e| &e["part"])
            .collect()
    }

    /// Steps served, in order.
    fn steps(&self) -> Vec<usize> {
        self.served
            .iter()
            .filter_map(|s| match s {
                Served::Step(k) => Some(*k),
                _ => None,
            })
            .collect()
    }

    /// The stdout lines through errand's OpenCode normalizer, finished with
    /// the exit status as the runner does.
    fn normalized(&self) -> Vec<EventKind> {
        let mut parser = OpenCodeStreamParser::new();
        let mut events: Vec<EventKind> = self
            .lines
            .iter()
            .flat_map(|l| parser.push_line(l))
            .collect();
        events.extend(parser.finish(self.status.success()));
        events
    }
}

async fn run_opencode(
    opencode: &Path,
    scenario_json: &str,
) -> Result<Run, Box<dyn std::error::Error>> {
    let scenario = Scenario::from_json(scenario_json)?;
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    let model = ScriptedModel::start(scenario, listen).await?;

    let work = tempfile::tempdir()?;
    let work_path = work.path().canonicalize()?;
    let home = tempfile::tempdir()?;
    let config = home.path().join("opencode.json");
    std::fs::write(
        &config,
        serde_json::to_vec_pretty(&config_json(&model.openai_base_url()))?,
    )?;

    let mut cmd = tokio::process::Command::new(opencode);
    cmd.current_dir(&work_path)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home.path())
        .env("OPENCODE_CONFIG", &config)
        .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
        .env("OPENCODE_DISABLE_AUTOUPDATE", "1")
        .args([
            "run",
            "--format",
            "json",
            "--auto",
            "-m",
            "errand/mock-model",
            "do it",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let output = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .map_err(|_| "opencode did not finish within 240 s")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let requests = model.requests();
    model.shutdown().await;
    let context = format!(
        "exit: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\nrequests: {requests:#?}",
        output.status
    );
    if std::env::var_os("ERRAND_TEST_SHOW").is_some() {
        println!("{context}");
    }
    Ok(Run {
        status: output.status,
        lines: stdout.lines().map(str::to_owned).collect(),
        events: stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect(),
        context,
        served: requests.iter().map(|r| r.served).collect(),
        _work: work,
        work_path,
        _home: home,
    })
}

/// Write a file, `cat` it, answer.
const WRITE_CAT_TEXT: &str = r#"{"steps":[
    {"write":{"path":"notes.txt","content":"hello from errand\n"}},
    {"shell":"cat notes.txt"},
    {"text":"Done: wrote and read notes.txt."}
]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_opencode_replays_a_scenario() -> TestResult {
    let Some(opencode) = opencode_bin() else {
        println!("skipped: opencode not installed");
        return Ok(());
    };
    let run = run_opencode(&opencode, WRITE_CAT_TEXT).await?;
    let context = &run.context;
    assert!(run.status.success(), "{context}");

    // The write step created the file, relative to the cwd opencode reported.
    let written = std::fs::read_to_string(run.work_path.join("notes.txt"))
        .map_err(|e| format!("notes.txt not written: {e}\n{context}"))?;
    assert_eq!(written, "hello from errand\n", "{context}");

    // Both tool calls completed; the cat exited 0 and printed the file.
    let parts = run.tool_parts();
    assert_eq!(parts.len(), 2, "{context}");
    assert_eq!(parts[0]["tool"], "write", "{context}");
    let expected = run.work_path.join("notes.txt");
    assert_eq!(
        parts[0]["state"]["input"]["filePath"].as_str(),
        expected.to_str(),
        "{context}"
    );
    assert_eq!(parts[1]["tool"], "bash", "{context}");
    assert_eq!(
        parts[1]["state"]["input"]["command"], "cat notes.txt",
        "{context}"
    );
    assert!(
        parts.iter().all(|p| p["state"]["status"] == "completed"),
        "{context}"
    );
    assert_eq!(parts[1]["state"]["metadata"]["exit"], 0, "{context}");
    assert!(
        parts[1]["state"]["output"]
            .as_str()
            .unwrap_or_default()
            .contains("hello from errand"),
        "{context}"
    );

    // Every scripted step was served exactly once, in order; the title
    // request (no tools) was a side call.
    assert_eq!(run.steps(), [0, 1, 2], "{context}");
    assert!(run.served.contains(&Served::Side), "{context}");

    // errand's normalizer reads the whole live stream: no line left raw, the
    // cat's exit code, a FileEdit, and a successful result with usage.
    let events = run.normalized();
    for e in &events {
        assert!(
            !matches!(e, EventKind::Raw { .. }),
            "unparsed: {e:?}\n{context}"
        );
    }
    assert!(
        events.iter().any(|e| matches!(
            e,
            EventKind::ToolResult { is_error: false, exit_code: Some(0), output, .. }
                if output.contains("hello from errand")
        )),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::FileEdit { path, .. } if path.ends_with("notes.txt"))),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            EventKind::Result { is_error: false, text: Some(t), turns: Some(3), usage, .. }
                if t == "Done: wrote and read notes.txt." && usage.input_tokens > 0
        )),
        "{events:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_opencode_reports_a_scripted_api_error() -> TestResult {
    let Some(opencode) = opencode_bin() else {
        println!("skipped: opencode not installed");
        return Ok(());
    };
    // A 400 is not retried (a 5xx is, for about 70 s).
    let run = run_opencode(
        &opencode,
        r#"{"steps":[{"error":{"status":400,"message":"scripted refusal"}}]}"#,
    )
    .await?;
    let context = &run.context;
    assert!(!run.status.success(), "{context}");
    assert_eq!(run.steps(), [0], "{context}");
    let events = run.normalized();
    assert!(
        events.iter().any(
            |e| matches!(e, EventKind::Error { message } if message.contains("scripted refusal"))
        ),
        "{events:#?}\n{context}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::Result { is_error: true, .. })),
        "{events:#?}\n{context}"
    );
    Ok(())
}

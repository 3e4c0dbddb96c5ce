//! End-to-end: the real Codex CLI (`codex exec --json`) runs against the
//! scripted model's Responses endpoint.
//!
//! The binary comes from `ERRAND_TEST_CODEX_BIN`, else the pinned version is
//! installed with npm under the target directory (once; npm's cache makes later
//! installs quick). Only when npm itself is missing (or the install fails) does
//! each test print "skipped: codex not installed" and pass.
//!
//! Codex runs with an empty environment plus PATH, HOME, CODEX_HOME and the
//! provider key, and a generated `$CODEX_HOME/config.toml` naming the scripted
//! model as a custom provider (harnesses.md §1.1). CODEX_HOME lives under
//! `CARGO_TARGET_TMPDIR`, not `/tmp`: codex refuses to put its helper binaries
//! under a temporary directory.
//!
//! `ERRAND_TEST_SHOW=1 cargo test -p errand-model --test all codex:: -- --nocapture`
//! prints each run's stdout, stderr and request log.

use crate::support;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use errand_core::EventKind;
use errand_model::{Scenario, ScriptedModel, Served};
use errand_trace::CodexStreamParser;
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The Codex CLI version errand pins.
const CODEX_VERSION: &str = "0.169.0";

fn codex_bin() -> Option<PathBuf> {
    support::npm_cli(
        "ERRAND_TEST_CODEX_BIN",
        &format!("@openai/codex@{CODEX_VERSION}"),
        "codex",
    )
}

/// `$CODEX_HOME/config.toml` pointing codex at the scripted model.
fn config_toml(model: &str, base_url: &str) -> String {
    format!(
        r#"model = "{model}"
model_provider = "errand"
approval_policy = "never"
# errand provides its own sandbox around the whole agent.
sandbox_mode = "danger-full-access"

[model_providers.errand]
name = "errand"
base_url = "{base_url}"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"#
    )
}

/// One finished `codex exec --json` run against a scripted model.
struct Run {
    status: ExitStatus,
    /// stdout lines as they came.
    lines: Vec<String>,
    events: Vec<Value>,
    /// Exit status, stdout, stderr and the request log, for assertion messages.
    context: String,
    /// Steps served, in order.
    steps: Vec<usize>,
    /// The agent's working directory (canonical path; kept alive until drop).
    _work: tempfile::TempDir,
    work_path: PathBuf,
    _home: tempfile::TempDir,
}

impl Run {
    /// `item.completed` items of `item_type`.
    fn completed<'a>(&'a self, item_type: &'a str) -> impl Iterator<Item = &'a Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == "item.completed")
            .map(|e| &e["item"])
            .filter(move |i| i["type"] == item_type)
    }

    fn event(&self, event_type: &str) -> Result<&Value, String> {
        self.events
            .iter()
            .find(|e| e["type"] == event_type)
            .ok_or_else(|| format!("no {event_type} event\n{}", self.context))
    }

    /// The stdout lines through errand's Codex normalizer.
    fn normalized(&self) -> Vec<EventKind> {
        let mut parser = CodexStreamParser::new();
        self.lines
            .iter()
            .flat_map(|l| parser.push_line(l))
            .collect()
    }
}

async fn run_codex(
    codex: &Path,
    model_slug: &str,
    scenario_json: &str,
) -> Result<Run, Box<dyn std::error::Error>> {
    let scenario = Scenario::from_json(scenario_json)?;
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    let model = ScriptedModel::start(scenario, listen).await?;

    let work = tempfile::tempdir()?;
    let work_path = work.path().canonicalize()?;
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let codex_home = home.path().join("codex-home");
    std::fs::create_dir_all(&codex_home)?;
    std::fs::write(
        codex_home.join("config.toml"),
        config_toml(model_slug, &model.openai_base_url()),
    )?;

    let mut cmd = tokio::process::Command::new(codex);
    cmd.current_dir(&work_path)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("CODEX_HOME", &codex_home)
        .env("OPENAI_API_KEY", "sk-test")
        .args(["exec", "--json", "--skip-git-repo-check", "do it"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .map_err(|_| "codex did not finish within 180 s")??;
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
        steps: requests
            .iter()
            .filter_map(|r| match r.served {
                Served::Step(k) => Some(k),
                _ => None,
            })
            .collect(),
        _work: work,
        work_path,
        _home: home,
    })
}

/// Write a file, `cat` it, answer: the scenario both real-CLI tests replay.
const WRITE_CAT_TEXT: &str = r#"{"steps":[
    {"write":{"path":"notes.txt","content":"hello from errand\n"}},
    {"shell":"cat notes.txt"},
    {"text":"Done: wrote and read notes.txt."}
]}"#;

/// The checks shared by both write paths (heredoc and apply_patch).
fn check_write_cat_text(run: &Run) -> TestResult {
    let context = &run.context;
    assert!(run.status.success(), "{context}");

    // The write step created the file, relative to the cwd codex reported.
    let written = std::fs::read_to_string(run.work_path.join("notes.txt"))
        .map_err(|e| format!("notes.txt not written: {e}\n{context}"))?;
    assert_eq!(written, "hello from errand\n", "{context}");

    // The cat really ran: exit code 0 and the file's content in its output.
    let cat = run
        .completed("command_execution")
        .find(|i| {
            i["command"]
                .as_str()
                .unwrap_or_default()
                .contains("cat notes.txt")
        })
        .ok_or_else(|| format!("no command_execution for cat\n{context}"))?;
    assert_eq!(cat["exit_code"], 0, "{context}");
    assert_eq!(cat["status"], "completed", "{context}");
    assert!(
        cat["aggregated_output"]
            .as_str()
            .unwrap_or_default()
            .contains("hello from errand"),
        "{context}"
    );

    let last_message = run
        .completed("agent_message")
        .last()
        .ok_or_else(|| format!("no agent_message\n{context}"))?;
    assert_eq!(
        last_message["text"], "Done: wrote and read notes.txt.",
        "{context}"
    );
    let usage = &run.event("turn.completed")?["usage"];
    assert!(
        usage["input_tokens"].as_u64().unwrap_or(0) > 0,
        "{usage}\n{context}"
    );
    assert!(
        usage["output_tokens"].as_u64().unwrap_or(0) > 0,
        "{usage}\n{context}"
    );

    // Every scripted step was served exactly once, in order.
    assert_eq!(run.steps, [0, 1, 2], "{context}");

    // errand's normalizer reads the whole live stream: a successful result
    // with the final text, non-zero usage, and no line left unparsed except
    // codex's warning items.
    let events = run.normalized();
    let result = events
        .iter()
        .find_map(|e| match e {
            EventKind::Result {
                is_error,
                text,
                usage,
                ..
            } => Some((*is_error, text.clone(), usage.clone())),
            _ => None,
        })
        .ok_or_else(|| format!("no Result in {events:#?}\n{context}"))?;
    assert!(!result.0, "{events:#?}");
    assert_eq!(result.1.as_deref(), Some("Done: wrote and read notes.txt."));
    assert!(result.2.input_tokens > 0, "{events:#?}");
    for e in &events {
        if let EventKind::Raw { line } = e {
            assert!(line.contains(r#""type":"error""#), "unparsed line {line}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_codex_replays_a_scenario_with_exec_command() -> TestResult {
    let Some(codex) = codex_bin() else {
        println!("skipped: codex not installed");
        return Ok(());
    };
    // `mock-model` has no known metadata: codex offers `exec_command` but no
    // `apply_patch`, so the write is a heredoc through the shell.
    let run = run_codex(&codex, "mock-model", WRITE_CAT_TEXT).await?;
    check_write_cat_text(&run)?;
    let context = &run.context;
    let commands: Vec<&Value> = run.completed("command_execution").collect();
    assert_eq!(commands.len(), 2, "{context}");
    assert!(
        commands[0]["command"]
            .as_str()
            .unwrap_or_default()
            .contains("<<'ERRAND_EOF'"),
        "{context}"
    );
    assert_eq!(commands[0]["exit_code"], 0, "{context}");
    // The unknown model slug gives a warning item, which is not a failure.
    assert!(run.completed("error").next().is_some(), "{context}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_codex_writes_with_apply_patch_when_offered() -> TestResult {
    let Some(codex) = codex_bin() else {
        println!("skipped: codex not installed");
        return Ok(());
    };
    // `gpt-5.5` has known metadata: codex offers `apply_patch` as a custom tool.
    let run = run_codex(&codex, "gpt-5.5", WRITE_CAT_TEXT).await?;
    check_write_cat_text(&run)?;
    let context = &run.context;
    let change = run
        .completed("file_change")
        .next()
        .ok_or_else(|| format!("no file_change item\n{context}"))?;
    let expected = run.work_path.join("notes.txt");
    assert_eq!(
        change["changes"][0]["path"].as_str(),
        expected.to_str(),
        "{context}"
    );
    assert_eq!(change["changes"][0]["kind"], "add", "{context}");
    assert_eq!(run.completed("command_execution").count(), 1, "{context}");
    let edits = run
        .normalized()
        .into_iter()
        .filter(|e| matches!(e, EventKind::FileEdit { .. }))
        .count();
    assert_eq!(edits, 1, "{context}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_codex_reports_a_scripted_api_error() -> TestResult {
    let Some(codex) = codex_bin() else {
        println!("skipped: codex not installed");
        return Ok(());
    };
    let run = run_codex(
        &codex,
        "mock-model",
        r#"{"steps":[{"error":{"status":400,"message":"scripted refusal"}}]}"#,
    )
    .await?;
    let context = &run.context;
    assert!(!run.status.success(), "{context}");
    let failed = run.event("turn.failed")?;
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("scripted refusal"),
        "{context}"
    );
    assert!(run.event("turn.completed").is_err(), "{context}");
    // A 400 is not retried: step 0 was asked for exactly once.
    assert_eq!(run.steps, [0], "{context}");

    let events = run.normalized();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::Result { is_error: true, .. })),
        "{events:#?}"
    );
    assert!(
        events.iter().any(
            |e| matches!(e, EventKind::Error { message } if message.contains("scripted refusal"))
        ),
        "{events:#?}"
    );
    Ok(())
}

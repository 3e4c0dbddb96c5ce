//! End-to-end: the real Claude Code CLI runs against the scripted model.
//!
//! The binary comes from `ERRAND_TEST_CLAUDE_BIN`, else the pinned version is
//! installed with npm under the target directory (once; npm's cache makes later
//! installs quick). Only when npm itself is missing does each test print
//! "skipped: claude not installed" and pass.

use crate::support;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use errand_model::{Scenario, ScriptedModel, Served};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The Claude Code version errand pins (see `errand-harness`).
const CLAUDE_VERSION: &str = "2.1.197";

fn claude_bin() -> Option<PathBuf> {
    support::npm_cli(
        "ERRAND_TEST_CLAUDE_BIN",
        &format!("@anthropic-ai/claude-code@{CLAUDE_VERSION}"),
        "claude",
    )
}

/// One finished `claude -p` run against a scripted model.
struct Run {
    status: ExitStatus,
    events: Vec<Value>,
    /// Exit status, stdout, stderr and the request log, for assertion messages.
    context: String,
    /// Steps served, in order.
    steps: Vec<usize>,
    /// The agent's working directory (canonical path; kept alive until drop).
    work: tempfile::TempDir,
    work_path: PathBuf,
    _home: tempfile::TempDir,
}

impl Run {
    fn result(&self) -> Result<&Value, String> {
        self.events
            .iter()
            .find(|e| e["type"] == "result")
            .ok_or_else(|| format!("no result event\n{}", self.context))
    }

    fn blocks<'a>(
        &'a self,
        event_type: &'a str,
        block_type: &'a str,
    ) -> impl Iterator<Item = &'a Value> {
        self.events
            .iter()
            .filter(move |e| e["type"] == event_type)
            .flat_map(|e| e["message"]["content"].as_array().into_iter().flatten())
            .filter(move |b| b["type"] == block_type)
    }
}

async fn run_claude(
    claude: &PathBuf,
    scenario_json: &str,
) -> Result<Run, Box<dyn std::error::Error>> {
    let scenario = Scenario::from_json(scenario_json)?;
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    let model = ScriptedModel::start(scenario, listen).await?;

    let work = tempfile::tempdir()?;
    let home = tempfile::tempdir()?;
    // Claude Code states the real path; canonicalize in case /tmp is a symlink.
    let work_path = work.path().canonicalize()?;

    let mut cmd = tokio::process::Command::new(claude);
    cmd.current_dir(&work_path)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home.path())
        .env("ANTHROPIC_BASE_URL", model.base_url())
        .env("ANTHROPIC_API_KEY", "sk-test")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .args([
            "-p",
            "do it",
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            "claude-sonnet-4-5",
            "--max-turns",
            "10",
            "--permission-mode",
            "acceptEdits",
            "--settings",
            r#"{"permissions":{"allow":["Bash","Write","Edit","Read"]}}"#,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .map_err(|_| "claude did not finish within 180 s")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let requests = model.requests();
    model.shutdown().await;
    let context = format!(
        "exit: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\nrequests: {requests:#?}",
        output.status
    );
    Ok(Run {
        status: output.status,
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
        work,
        work_path,
        _home: home,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_code_replays_a_scenario() -> TestResult {
    let Some(claude) = claude_bin() else {
        println!("skipped: claude not installed");
        return Ok(());
    };
    // The relative write path exercises cwd discovery from the system prompt.
    let run = run_claude(
        &claude,
        r#"{"steps":[
            {"write":{"path":"notes.txt","content":"hello from errand\n"}},
            {"shell":"cat notes.txt"},
            {"text":"Done: wrote and read notes.txt."}
        ]}"#,
    )
    .await?;
    let context = &run.context;
    assert!(run.status.success(), "{context}");
    assert!(run.work.path().exists());

    // The Write step created the file, relative to the cwd Claude reported.
    let notes = run.work_path.join("notes.txt");
    let written = std::fs::read_to_string(&notes)
        .map_err(|e| format!("notes.txt not written: {e}\n{context}"))?;
    assert_eq!(written, "hello from errand\n", "{context}");

    let tool_uses: Vec<&Value> = run.blocks("assistant", "tool_use").collect();
    let names: Vec<&str> = tool_uses
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(names, ["Write", "Bash"], "{context}");
    let ids: Vec<&str> = tool_uses.iter().filter_map(|b| b["id"].as_str()).collect();
    assert_eq!(ids, ["toolu_0000", "toolu_0001"], "{context}");
    assert_eq!(
        tool_uses[0]["input"]["file_path"].as_str(),
        notes.to_str(),
        "{context}"
    );

    // Bash really ran: its tool_result carries the file's content.
    let bash_result = run
        .blocks("user", "tool_result")
        .find(|b| b["tool_use_id"] == "toolu_0001")
        .ok_or_else(|| format!("no tool_result for the Bash call\n{context}"))?;
    assert_eq!(bash_result["is_error"], false, "{context}");
    assert!(
        bash_result["content"]
            .to_string()
            .contains("hello from errand"),
        "{context}"
    );

    let result = run.result()?;
    assert_eq!(result["is_error"], false, "{context}");
    assert_eq!(
        result["result"], "Done: wrote and read notes.txt.",
        "{context}"
    );
    let cost = result["total_cost_usd"].as_f64().unwrap_or(0.0);
    assert!(cost > 0.0, "total_cost_usd = {cost}\n{context}");

    // Every scripted step was served exactly once, in order.
    assert_eq!(run.steps, [0, 1, 2], "{context}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_claude_code_reports_a_scripted_api_error() -> TestResult {
    let Some(claude) = claude_bin() else {
        println!("skipped: claude not installed");
        return Ok(());
    };
    let run = run_claude(
        &claude,
        r#"{"steps":[{"error":{"status":400,"message":"scripted refusal"}}]}"#,
    )
    .await?;
    let context = &run.context;
    assert!(!run.status.success(), "{context}");
    let result = run.result()?;
    assert_eq!(result["is_error"], true, "{context}");
    assert_eq!(result["api_error_status"], 400, "{context}");
    assert!(
        result["result"]
            .as_str()
            .unwrap_or_default()
            .contains("scripted refusal"),
        "{context}"
    );
    // A 400 is not retried: step 0 was asked for exactly once.
    assert_eq!(run.steps, [0], "{context}");
    Ok(())
}

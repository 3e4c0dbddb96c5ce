//! End-to-end: the real Gemini CLI (`gemini -p --output-format stream-json`)
//! runs against the scripted model's Gemini endpoint.
//!
//! The CLI comes from `ERRAND_TEST_GEMINI_BIN`, else the pinned version is
//! installed with npm under the target directory (once; npm's cache makes
//! later installs quick). Only when npm itself is missing (or the install
//! fails) does each test print "skipped: gemini not installed" and pass.
//!
//! Gemini CLI runs with an empty environment plus PATH, HOME,
//! `GOOGLE_GEMINI_BASE_URL` and `GEMINI_API_KEY`, and a generated
//! `$HOME/.gemini/settings.json` that selects the API-key auth type (with only
//! the base URL set, the auth type becomes `gateway` and headless mode
//! rejects it, harnesses.md §3.1). `--yolo` makes it offer its shell and write
//! tools, `--skip-trust` keeps `--yolo` in an untrusted folder, and
//! `-m gemini-2.5-pro` skips the model-router side call.
//!
//! `ERRAND_TEST_SHOW=1 cargo test -p errand-model --test all gemini_cli:: -- --nocapture`
//! prints each run's stdout, stderr and request log.

use crate::support;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use errand_core::EventKind;
use errand_model::{Scenario, ScriptedModel, Served};
use errand_trace::GeminiStreamParser;
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The Gemini CLI version errand pins.
const GEMINI_VERSION: &str = "0.61.0";

fn gemini_bin() -> Option<PathBuf> {
    support::npm_cli(
        "ERRAND_TEST_GEMINI_BIN",
        &format!("@google/gemini-cli@{GEMINI_VERSION}"),
        "gemini",
    )
}

/// `$HOME/.gemini/settings.json`: API-key auth, so the env base URL is kept.
const SETTINGS_JSON: &str = r#"{"security":{"auth":{"selectedType":"gemini-api-key"}}}"#;

/// One finished `gemini -p` run against a scripted model.
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
    fn of_type<'a>(&'a self, event_type: &'a str) -> impl Iterator<Item = &'a Value> {
        self.events.iter().filter(move |e| e["type"] == event_type)
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

    /// The stdout lines through errand's Gemini normalizer.
    fn normalized(&self) -> Vec<EventKind> {
        let mut parser = GeminiStreamParser::new();
        self.lines
            .iter()
            .flat_map(|l| parser.push_line(l))
            .collect()
    }
}

async fn run_gemini(gemini: &Path, scenario_json: &str) -> Result<Run, Box<dyn std::error::Error>> {
    let scenario = Scenario::from_json(scenario_json)?;
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    let model = ScriptedModel::start(scenario, listen).await?;

    let work = tempfile::tempdir()?;
    let work_path = work.path().canonicalize()?;
    let home = tempfile::tempdir()?;
    std::fs::create_dir_all(home.path().join(".gemini"))?;
    std::fs::write(home.path().join(".gemini/settings.json"), SETTINGS_JSON)?;

    let mut cmd = tokio::process::Command::new(gemini);
    cmd.current_dir(&work_path)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home.path())
        .env("GOOGLE_GEMINI_BASE_URL", model.base_url())
        .env("GEMINI_API_KEY", "sk-test")
        .args([
            "-p",
            "do it",
            "--output-format",
            "stream-json",
            "--yolo",
            "--skip-trust",
            "-m",
            "gemini-2.5-pro",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn()?;
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .map_err(|_| "gemini did not finish within 180 s")??;
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
async fn real_gemini_cli_replays_a_scenario() -> TestResult {
    let Some(gemini) = gemini_bin() else {
        println!("skipped: gemini not installed");
        return Ok(());
    };
    let run = run_gemini(&gemini, WRITE_CAT_TEXT).await?;
    let context = &run.context;
    assert!(run.status.success(), "{context}");

    // The write step created the file, relative to the cwd gemini reported.
    let written = std::fs::read_to_string(run.work_path.join("notes.txt"))
        .map_err(|e| format!("notes.txt not written: {e}\n{context}"))?;
    assert_eq!(written, "hello from errand\n", "{context}");

    // Both tool calls ran and succeeded; the cat printed the file.
    let uses: Vec<&Value> = run.of_type("tool_use").collect();
    assert_eq!(uses.len(), 2, "{context}");
    assert_eq!(uses[0]["tool_name"], "write_file", "{context}");
    let expected = run.work_path.join("notes.txt");
    assert_eq!(
        uses[0]["parameters"]["file_path"].as_str(),
        expected.to_str(),
        "{context}"
    );
    assert_eq!(uses[1]["tool_name"], "run_shell_command", "{context}");
    assert_eq!(
        uses[1]["parameters"]["command"], "cat notes.txt",
        "{context}"
    );
    let results: Vec<&Value> = run.of_type("tool_result").collect();
    assert_eq!(results.len(), 2, "{context}");
    assert!(
        results.iter().all(|r| r["status"] == "success"),
        "{context}"
    );
    assert!(
        results[1]["output"]
            .as_str()
            .unwrap_or_default()
            .contains("hello from errand"),
        "{context}"
    );
    let result = run
        .of_type("result")
        .last()
        .ok_or_else(|| format!("no result\n{context}"))?;
    assert_eq!(result["status"], "success", "{context}");
    assert!(
        result["stats"]["input_tokens"].as_u64().unwrap_or(0) > 0,
        "{context}"
    );

    // Every scripted step was served exactly once, in order.
    assert_eq!(run.steps(), [0, 1, 2], "{context}");

    // errand's normalizer reads the whole live stream: no line left raw, a
    // successful result, the final text, both calls answered.
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
            EventKind::AssistantMessage { text } if text == "Done: wrote and read notes.txt."
        )),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::FileEdit { path, .. } if path.ends_with("notes.txt"))),
        "{events:#?}"
    );
    let ok_results = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                EventKind::ToolResult {
                    is_error: false,
                    ..
                }
            )
        })
        .count();
    assert_eq!(ok_results, 2, "{events:#?}");
    assert!(
        events.iter().any(|e| matches!(
            e,
            EventKind::Result { is_error: false, usage, .. } if usage.input_tokens > 0
        )),
        "{events:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_gemini_cli_reports_a_scripted_api_error() -> TestResult {
    let Some(gemini) = gemini_bin() else {
        println!("skipped: gemini not installed");
        return Ok(());
    };
    // A 400 is not retried (a 429 or 5xx would be, with backoff).
    let run = run_gemini(
        &gemini,
        r#"{"steps":[{"error":{"status":400,"message":"scripted refusal"}}]}"#,
    )
    .await?;
    let context = &run.context;
    assert!(!run.status.success(), "{context}");
    assert_eq!(run.steps(), [0], "{context}");
    let events = run.normalized();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EventKind::Result { is_error: true, .. })),
        "{events:#?}\n{context}"
    );
    assert!(
        events.iter().any(
            |e| matches!(e, EventKind::Error { message } if message.contains("scripted refusal"))
        ),
        "{events:#?}\n{context}"
    );
    Ok(())
}

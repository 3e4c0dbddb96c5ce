//! Failure paths: each ends in the right state, with a reason a person can act
//! on, and a non-zero exit status; nothing is left running.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

/// Whether any process on the machine has `needle` in its command line.
fn process_running(needle: &str) -> bool {
    let out = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.contains(needle) && !l.contains("ps -eo"))
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_api_key() {
    if !sandbox_available() {
        return;
    }
    let env = Env::new();
    let (ok, v) = env.run_json(&["--repo", ".", "do something"]);
    assert!(!ok);
    assert_eq!(v["state"], "failed");
    let err = v["error"].as_str().unwrap_or("");
    assert!(
        err.starts_with("ANTHROPIC_API_KEY is not set: claude-code needs it"),
        "{err}"
    );
    assert!(
        err.contains("errand run --demo"),
        "the message says what to do: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_harness() {
    let env = Env::new();
    let (ok, v) = env.run_json(&["--harness", "devin", "do something"]);
    assert!(!ok);
    assert_eq!(v["state"], "failed");
    assert_eq!(
        v["error"],
        "unknown harness 'devin' (available: claude-code, codex, gemini, opencode, amp)"
    );
    // The run is recorded, with its transitions.
    let show = env.run(&["show", "--json", v["short_id"].as_str().unwrap_or("")]);
    let show: serde_json::Value = serde_json::from_slice(&show.stdout).expect("show --json");
    let states: Vec<&str> = show["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .filter_map(|t| t["state"].as_str())
        .collect();
    assert_eq!(states, ["queued", "preparing", "failed"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn repository_that_does_not_exist() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let env = Env::new().var("ANTHROPIC_API_KEY", "sk-test-x");
    let (ok, v) = env.run_json(&["--repo", "../no/such/repo", "fix it"]);
    assert!(!ok);
    assert_eq!(v["state"], "failed");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("repository '../no/such/repo' could not be cloned"),
        "{v:#}"
    );
    let (ok, v) = env.run_json(&["--repo", "file:///no/such/repo.git", "fix it"]);
    assert!(!ok);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("could not be cloned"),
        "{v:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn harness_that_exits_non_zero() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let env = Env::new();
    let bare = bare_repo(env.dir.path());
    let model = model(
        r#"{"steps":[{"error":{"status":400,"message":"scripted: this model does not exist"}}]}"#,
    )
    .await;
    let env = env.with_model(&model);
    let (ok, v) = env.run_json(&["--repo", &bare.to_string_lossy(), "fix it"]);
    assert!(!ok);
    assert_eq!(v["state"], "failed");
    let err = v["error"].as_str().unwrap_or("");
    assert!(
        err.contains("the agent reported an error")
            && err.contains("400")
            && err.contains("this model does not exist"),
        "{err}"
    );
    // The branch was not pushed.
    let branches = git(&bare, &["branch", "--list", "errand/*"]);
    assert!(branches.is_empty(), "{branches}");
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_kills_the_agent_and_everything_it_started() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let env = Env::new();
    let bare = bare_repo(env.dir.path());
    let model = model(r#"{"steps":[{"shell":"sleep 3119"},{"text":"slept"}]}"#).await;
    let env = env.with_model(&model);
    let started = Instant::now();
    let (ok, v) = env.run_json(&[
        "--repo",
        &bare.to_string_lossy(),
        "--timeout",
        "4s",
        "wait a while",
    ]);
    assert!(!ok);
    assert_eq!(v["state"], "timed_out", "{v:#}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("timed out after 4s"),
        "{v:#}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the timeout stopped the run"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !process_running("sleep 3119"),
        "the agent's command survived the timeout"
    );
}

async fn wait_for_tool_call(env: &Env, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            Instant::now() < deadline,
            "the run never started its tool call"
        );
        let ls = env.run(&["ls", "--json"]);
        if let Ok(serde_json::Value::Array(runs)) =
            serde_json::from_slice::<serde_json::Value>(&ls.stdout)
        {
            if let Some(id) = runs.first().and_then(|r| r["id"].as_str()) {
                if process_running(needle) {
                    return id.to_string();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn errand_cancel_stops_a_running_run() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let env = Env::new();
    let bare = bare_repo(env.dir.path());
    let model = model(r#"{"steps":[{"shell":"sleep 3127"},{"text":"slept"}]}"#).await;
    let env = env.with_model(&model);
    let child = env
        .command(&[
            "run",
            "--json",
            "--repo",
            &bare.to_string_lossy(),
            "wait a while",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn errand run");
    let id = wait_for_tool_call(&env, "sleep 3127").await;
    let cancel = env.run(&["cancel", &id[..8]]);
    assert!(
        cancel.status.success(),
        "{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    assert!(String::from_utf8_lossy(&cancel.stdout).contains("cancelled"));
    let out = child.wait_with_output().expect("wait");
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["state"], "cancelled");
    assert_eq!(v["error"], "cancelled by `errand cancel`");
    assert!(!process_running("sleep 3127"));
    // Cancelling again says it already ended, and fails.
    let again = env.run(&["cancel", &id[..8]]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already ended (cancelled)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_cancels_the_foreground_run() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let env = Env::new();
    let bare = bare_repo(env.dir.path());
    let model = model(r#"{"steps":[{"shell":"sleep 3137"},{"text":"slept"}]}"#).await;
    let env = env.with_model(&model);
    let child = env
        .command(&[
            "run",
            "--json",
            "--repo",
            &bare.to_string_lossy(),
            "wait a while",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn errand run");
    wait_for_tool_call(&env, "sleep 3137").await;
    // SAFETY: sending SIGINT to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().expect("wait");
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["state"], "cancelled");
    assert!(!process_running("sleep 3137"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_an_unknown_run_fails_clearly() {
    let env = Env::new();
    let out = env.run(&["cancel", "deadbeef"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run matches 'deadbeef'"));
    let out = env.run(&["logs", "not-an-id"]);
    assert!(!out.status.success());
}

//! End-to-end on the Docker backend: the real `errand` binary runs the real
//! Claude Code CLI, driven by errand's scripted model, in a container of the
//! agent image (`--sandbox docker`), and leaves a commit on the run's branch,
//! exactly as the local end-to-end test does.
//!
//! The scripted model listens on the host's loopback; the container has no
//! network (`sandbox.egress = "allowlist"`, the default) and reaches it only
//! through errand's egress proxy, which allows exactly the model's address
//! (see the escape suite in crates/sandbox/tests).
//! Skipped when no Docker engine is reachable, unless `CI` is set.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// `errand sandbox prepare docker` (quick when the image exists), or `false`
/// (skipped) when no engine is reachable outside CI.
fn docker_ready(env: &Env) -> bool {
    let out = env.run(&["sandbox", "prepare", "docker", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return true;
    }
    if err.contains("not reachable") && !in_ci() {
        eprintln!("skipped: {}", err.trim());
        return false;
    }
    panic!("errand sandbox prepare docker failed:\n{err}");
}

fn of_type<'a>(events: &'a [Value], t: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == t).collect()
}

/// Containers labelled with this run, when the docker CLI is there to ask.
fn containers_of(run_short: &str) -> Option<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=errand.run={run_short}"),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_commits_on_a_branch_in_a_docker_sandbox() {
    ensure_claude();
    let env = Env::new();
    if !docker_ready(&env) {
        return;
    }
    let bare = bare_repo(env.dir.path());
    let model = model(
        r#"{"steps":[
        {"read":"src/lib.rs"},
        {"tool":"Edit","input":{"file_path":"/workspace/src/lib.rs","old_string":"\"helo\"","new_string":"\"hello\""}},
        {"shell":"grep -n hello src/lib.rs; echo uid=$(id -u); test -e /.dockerenv && echo in-a-container; ls /opt/errand/harness >/dev/null && echo harness-mounted"},
        {"text":"Fixed the typo in greeting()."}
    ]}"#,
    )
    .await;
    let env = env.with_model(&model);
    let url = format!("file://{}", bare.display());
    let (ok, v) = env.run_json(&[
        "--sandbox",
        "docker",
        "--repo",
        &url,
        "--push",
        "--model",
        "claude-sonnet-4-5",
        "fix the typo in greeting",
    ]);
    assert!(ok, "run failed: {v:#}");
    assert_eq!(v["state"], "succeeded");
    let id = v["id"].as_str().expect("id");
    let branch = v["branch"].as_str().expect("branch");
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
    let file = git(&bare, &["show", &format!("{branch}:src/lib.rs")]);
    assert!(file.contains("\"hello\""), "{file}");
    assert_eq!(
        git(&bare, &["rev-parse", branch]),
        v["commit"].as_str().unwrap_or("")
    );
    let subject = git(&bare, &["log", "-1", "--format=%s%n%an", branch]);
    assert!(
        subject.starts_with("Fixed the typo in greeting().\nerrand"),
        "{subject}"
    );
    assert_eq!(
        git(&bare, &["rev-parse", "main"]),
        git(&bare, &["rev-parse", &format!("{branch}~1")])
    );

    // The trace: every tool call worked (the guard hook ran inside the container too).
    let events = env.events(id);
    let calls: Vec<&str> = of_type(&events, "tool_call")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(calls, ["Read", "Edit", "Bash"]);
    let results = of_type(&events, "tool_result");
    assert!(
        results.iter().all(|r| r["is_error"] == false),
        "{results:#?}"
    );
    let shell = results[2]["output"].as_str().unwrap_or("");
    assert!(shell.contains("2:    \"hello\""), "{shell}");
    // It ran in a container, as the agent's non-root user.
    assert!(shell.contains("in-a-container"), "{shell}");
    assert!(shell.contains("harness-mounted"), "{shell}");
    // SAFETY: plain system call.
    let uid = if unsafe { libc::geteuid() } == 0 {
        "10001".to_string()
    } else {
        // SAFETY: plain system call.
        unsafe { libc::geteuid() }.to_string()
    };
    assert!(shell.contains(&format!("uid={uid}")), "{shell}");
    let states: Vec<&str> = of_type(&events, "state")
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(states, ["preparing", "running", "finishing", "succeeded"]);
    // The container had no network of its own: the model was reached through errand's proxy.
    let model_addr = model.base_url().trim_start_matches("http://").to_string();
    let notices: Vec<&str> = of_type(&events, "notice")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        notices
            .iter()
            .any(|n| n.starts_with("egress: allowlist") && n.ends_with(&model_addr)),
        "{notices:#?}"
    );

    // No container of the run is left.
    if let Some(left) = containers_of(&id[..8]) {
        assert!(left.is_empty(), "containers left behind: {left}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_harness_killed_for_memory_fails_the_run_saying_so() {
    ensure_claude();
    let env = Env::new();
    if !docker_ready(&env) {
        return;
    }
    let bare = bare_repo(env.dir.path());
    // Claude Code needs far more than 60 MiB just to start.
    let env = env
        .var("ANTHROPIC_API_KEY", "sk-test-oom-0123456789")
        .var("ANTHROPIC_BASE_URL", "http://127.0.0.1:9");
    let (ok, v) = env.run_json(&[
        "--sandbox",
        "docker",
        "--memory",
        "60M",
        "--repo",
        &bare.to_string_lossy(),
        "say hi",
    ]);
    assert!(!ok, "{v:#}");
    assert_eq!(v["state"], "failed");
    assert_eq!(
        v["error"],
        "the harness was killed: it hit the sandbox's memory limit of 60 MiB (raise it with --memory)",
        "{v:#}"
    );
}

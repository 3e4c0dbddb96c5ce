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

use std::process::Command;

use crate::common::*;

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
    let (id, _) = assert_typo_fixed_on_branch(&bare, &v);
    let id = id.as_str();

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
    // The container had no network of its own: the model was reached through
    // errand's proxy, and only by way of errand's model gateway (the
    // provider's own address is not on the allowlist).
    let model_addr = model.base_url().trim_start_matches("http://").to_string();
    let notices: Vec<&str> = of_type(&events, "notice")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    let egress = notices
        .iter()
        .find(|n| n.starts_with("egress: allowlist"))
        .unwrap_or_else(|| panic!("{notices:#?}"));
    assert!(!egress.contains(&model_addr), "{notices:#?}");
    assert!(
        notices
            .iter()
            .any(|n| n.starts_with("model gateway: the harness reaches anthropic")),
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

/// `--agent-git` on the Docker backend: git inside the container reaches
/// `acme/widgets` only through errand's git proxy (over the egress proxy),
/// which adds the run's token outside the container; it fetches and pushes
/// the run's branch, errand's guard refuses `main`, another repository is not
/// reachable, and the token is revoked and written nowhere.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_git_run_in_docker_pushes_its_branch_and_nothing_else() {
    use crate::common::github::{the_runs_write_token, world};

    let env = Env::new();
    if !docker_ready(&env) {
        return;
    }
    ensure_claude();
    let w = world(env).await;
    let (env, github) = (w.env, w.github);
    github
        .create_repo("acme", "other", "main")
        .expect("other repo");
    github.install(7, "acme/other");
    let other_url = format!("{}/acme/other.git", github.git_base());
    let scenario = serde_json::json!({"steps": [
        {"shell": "test -e /.dockerenv && echo in-a-container; git fetch origin && git rev-parse --verify -q origin/main >/dev/null && echo FETCH-OK"},
        {"write": {"path": "AGENT.md", "content": "pushed by the agent itself\n"}},
        {"shell": "git add AGENT.md && git commit -qm 'agent: add AGENT.md' && git push -q origin HEAD && echo PUSH-RUN-BRANCH-OK"},
        {"shell": "git push origin HEAD:main"},
        {"shell": format!("git ls-remote {other_url} 2>&1; echo OTHER-REPO-EXIT=$?")},
        {"shell": "git ls-remote http://git.errand.internal/acme/other.git 2>&1; echo PROXY-OTHER-EXIT=$?"},
        // (The token hunt inside the sandbox, which errand's guard refuses to an
        // agent going through Claude Code's hook, is in git_proxy.rs.)
        {"text": "Pushed AGENT.md to my branch."}
    ]})
    .to_string();
    let model = model(&scenario).await;
    let env = env.with_model(&model);
    let bare = github.repo_path("acme", "widgets");
    let main_before = git(&bare, &["rev-parse", "refs/heads/main"]);

    let (ok, v) = env.run_json(&[
        "--sandbox",
        "docker",
        "--repo",
        "github:acme/widgets",
        "--push",
        "--agent-git",
        "--timeout",
        "4m",
        "--model",
        "claude-sonnet-4-5",
        "add AGENT.md and push your branch",
    ]);
    let id = v["id"].as_str().expect("id").to_string();
    let events = env.events(&id);
    assert!(ok, "run failed: {v:#}\n{events:#?}");
    assert_eq!(v["state"], "succeeded", "{v:#}");
    let branch = v["branch"].as_str().expect("branch").to_string();

    let results: Vec<String> = of_type(&events, "tool_result")
        .iter()
        .map(|e| e["output"].as_str().unwrap_or("").to_string())
        .collect();
    // A result with a line starting with `marker` (not the command echoed back).
    let result_with = |marker: &str| {
        results
            .iter()
            .find(|r| r.lines().any(|l| l.trim().starts_with(marker)))
            .cloned()
            .unwrap_or_else(|| panic!("no tool result shows {marker}: {results:#?}"))
    };
    // Fetching and pushing the run's own branch worked, from inside a container.
    let fetched = result_with("FETCH-OK");
    assert!(fetched.contains("in-a-container"), "{fetched}");
    result_with("PUSH-RUN-BRANCH-OK");
    // Pushing main: refused by errand's guard.
    let main_push = result_with("errand-guard: push-default-branch");
    assert!(main_push.contains("`HEAD:main`"), "{main_push}");
    // Another repository: the forge is not on the allowlist, and errand's git
    // proxy serves only this run's repository.
    let other = result_with("OTHER-REPO-EXIT=");
    assert!(!other.contains("OTHER-REPO-EXIT=0"), "{other}");
    assert!(other.contains("not on the allowlist"), "{other}");
    let other = result_with("PROXY-OTHER-EXIT=");
    assert!(!other.contains("PROXY-OTHER-EXIT=0"), "{other}");
    let notices: Vec<&str> = of_type(&events, "notice")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        notices
            .iter()
            .any(|n| n.contains(&format!("lets it push {branch} only"))),
        "{notices:#?}"
    );
    assert!(
        notices
            .iter()
            .any(|n| n.contains("errand's git proxy answered") && n.contains("acme/other.git")),
        "{notices:#?}"
    );

    // On the fake GitHub: the run's branch has the agent's file, main is untouched.
    assert_eq!(
        git(&bare, &["show", &format!("{branch}:AGENT.md")]),
        "pushed by the agent itself"
    );
    let log = git(&bare, &["log", "--format=%s", &format!("main..{branch}")]);
    assert!(
        log.contains("agent: add AGENT.md"),
        "the agent's own commit: {log}"
    );
    assert_eq!(git(&bare, &["rev-parse", "refs/heads/main"]), main_before);
    assert_eq!(
        git(
            &github.repo_path("acme", "other"),
            &["for-each-ref", "--format=%(refname)"]
        ),
        "refs/heads/main"
    );

    // One token, for acme/widgets only, with write, revoked.
    let t = &the_runs_write_token(&github);

    // The token is nowhere: not in the events (normalized or raw), not on disk.
    let raw = env.run(&["logs", "--raw", &id]);
    assert!(raw.status.success());
    let normalized = serde_json::to_string(&events).expect("json");
    assert!(!normalized.contains(&t.token), "the token is in the events");
    assert!(
        !String::from_utf8_lossy(&raw.stdout).contains(&t.token),
        "the token is in the raw events"
    );
    let run_dir = env.home.join("runs").join(&id);
    assert!(run_dir.join("workspace/.git/config").is_file());
    let leaked = files_containing(&env.home, t.token.as_bytes());
    assert!(leaked.is_empty(), "the token is in {leaked:#?}");

    // No container of the run is left.
    if let Some(left) = containers_of(&id[..8]) {
        assert!(left.is_empty(), "containers left behind: {left}");
    }
}

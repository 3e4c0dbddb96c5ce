//! The `errand-guard` binary: exit codes, output formats, env configuration.

// Helpers outside #[test] fns may unwrap too: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], envs: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_errand-guard"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for k in [
        "ERRAND_GUARD_WORKSPACE",
        "ERRAND_GUARD_BRANCH",
        "ERRAND_GUARD_DEFAULT_BRANCH",
        "ERRAND_GUARD_HOME",
        "ERRAND_GUARD_TIMEOUT_MS",
        "ERRAND_GUARD_PUSH_ONLY_RUN_BRANCH",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn check_prints_allow_or_deny_with_exit_code() {
    let o = run(&["check", "git status"], &[], "");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "allow\n");
    let o = run(&["check", "git push --force origin x"], &[], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with("deny: push-force: "),
        "{}",
        stdout(&o)
    );
    // From stdin when no COMMAND is given.
    let o = run(&["check"], &[], "rm -rf /\n");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn check_flags_and_env_configure_the_policy() {
    let o = run(
        &[
            "check",
            "--default-branch",
            "master",
            "git push origin master",
        ],
        &[],
        "",
    );
    assert_eq!(o.status.code(), Some(1));
    let o = run(
        &["check", "git push origin master"],
        &[("ERRAND_GUARD_DEFAULT_BRANCH", "master")],
        "",
    );
    assert_eq!(o.status.code(), Some(1));
    let o = run(
        &["check", "--workspace", "/repo", "rm -rf /repo/build"],
        &[],
        "",
    );
    assert_eq!(o.status.code(), Some(0));
    let o = run(
        &["check", "rm -rf /repo/build"],
        &[("ERRAND_GUARD_WORKSPACE", "/repo")],
        "",
    );
    assert_eq!(o.status.code(), Some(0));
    let force = "git push -f origin errand/x";
    let o = run(&["check", "--branch", "errand/x", force], &[], "");
    assert_eq!(
        o.status.code(),
        Some(1),
        "force to the run branch needs the allow flag"
    );
    let o = run(
        &[
            "check",
            "--branch",
            "errand/x",
            "--allow-force-push-to-run-branch",
            force,
        ],
        &[],
        "",
    );
    assert_eq!(o.status.code(), Some(0));
    let o = run(
        &["check", "--allow-force-push-to-run-branch", force],
        &[("ERRAND_GUARD_BRANCH", "errand/x")],
        "",
    );
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn push_only_run_branch_comes_from_a_flag_or_the_environment() {
    let env = [
        ("ERRAND_GUARD_BRANCH", "errand/x"),
        ("ERRAND_GUARD_PUSH_ONLY_RUN_BRANCH", "1"),
    ];
    let o = run(&["check", "git push origin feature"], &env, "");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with("deny: push-other-branch: "),
        "{}",
        stdout(&o)
    );
    let o = run(&["check", "git push origin errand/x"], &env, "");
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = run(
        &[
            "check",
            "--current-branch",
            "errand/x",
            "git push origin HEAD",
        ],
        &env,
        "",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // Off by default, and with a falsy value.
    let o = run(
        &["check", "git push origin feature"],
        &[("ERRAND_GUARD_PUSH_ONLY_RUN_BRANCH", "0")],
        "",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn check_jsonl_mode() {
    let o = run(
        &["check", "--jsonl"],
        &[],
        "{\"command\":\"ls\"}\n{\"command\":\"git reset --hard\"}\nnope\n",
    );
    assert_eq!(o.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["decision"], "allow");
    assert_eq!(lines[1]["decision"], "deny");
    assert_eq!(lines[1]["rule"], "git-reset-hard");
    assert_eq!(lines[2]["decision"], "deny");
    assert!(lines[2]["reason"]
        .as_str()
        .unwrap()
        .starts_with("bad input: "));
}

#[test]
fn hook_mode_prints_deny_json_or_nothing_and_exits_zero() {
    let deny = r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"git push --force origin HEAD:master"}}"#;
    let o = run(&["hook"], &[], deny);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "deny");
    assert_eq!(v["hookSpecificOutput"]["hookEventName"], "PreToolUse");

    let allow = r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"git push origin HEAD:master"}}"#;
    let o = run(&["hook"], &[], allow);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "");
    // The default branch from the environment, as configured for a hook.
    let o = run(
        &["hook"],
        &[("ERRAND_GUARD_DEFAULT_BRANCH", "master")],
        allow,
    );
    assert!(stdout(&o).contains("push-default-branch"), "{}", stdout(&o));

    let o = run(&["hook"], &[], "{ not json");
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("bad hook input"), "{}", stdout(&o));
}

#[test]
fn a_decision_that_takes_too_long_is_a_denial() {
    // A parser that never returns must not leave the agent without a
    // decision (agents treat a hook timeout as "go ahead").
    let big = vec!["git status"; 5000].join(" && ");
    let o = run(&["check", &big], &[("ERRAND_GUARD_TIMEOUT_MS", "0")], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with("deny: too-complex: no decision within 0 ms"),
        "{}",
        stdout(&o)
    );
    let hook = serde_json::json!({"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": {"command": big}});
    let o = run(
        &["hook"],
        &[("ERRAND_GUARD_TIMEOUT_MS", "0")],
        &hook.to_string(),
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("no decision within"), "{}", stdout(&o));
    // With the default deadline the same command is decided normally.
    let o = run(&["check", &big], &[], "");
    assert_eq!(o.status.code(), Some(0));
}

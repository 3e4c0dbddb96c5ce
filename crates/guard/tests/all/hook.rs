//! PreToolUse hook tests on real captured hook stdin (Claude Code and
//! Codex), copied from docs/harness-probe/examples.

// Helpers outside #[test] fns may unwrap too: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use errand_guard::{pretooluse_hook, Policy};
use serde_json::Value;

const CLAUDE: &str = include_str!("../fixtures/claude_hook_stdin_samples.jsonl");
const CODEX: &str = include_str!("../fixtures/codex_hook_stdin_samples.jsonl");

/// The probe repositories use `master` as their default branch.
fn probe_policy() -> Policy {
    Policy {
        default_branch: "master".to_owned(),
        ..Policy::default()
    }
}

/// Each capture line wraps the hook's stdin in `{"stdin": …}`.
fn samples(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let stdin = v["stdin"].clone();
            let command = stdin["tool_input"]["command"].as_str().unwrap().to_owned();
            (stdin.to_string(), command)
        })
        .collect()
}

fn expected_rule(command: &str) -> Option<&'static str> {
    match command {
        "git push --force origin HEAD:master" => Some("push-force"),
        "git push origin HEAD:master" => Some("push-default-branch"),
        _ => None,
    }
}

fn check_deny_shape(out: &str, rule: &str) {
    let v: Value = serde_json::from_str(out).unwrap();
    let h = &v["hookSpecificOutput"];
    assert_eq!(h["hookEventName"], "PreToolUse");
    assert_eq!(h["permissionDecision"], "deny");
    let reason = h["permissionDecisionReason"].as_str().unwrap();
    assert!(
        reason.contains(rule),
        "reason {reason:?} should name {rule}"
    );
    assert!(reason.starts_with("errand-guard: "), "{reason}");
    assert_eq!(
        v.as_object().unwrap().len(),
        1,
        "only hookSpecificOutput: {out}"
    );
}

#[test]
fn claude_captures() {
    let s = samples(CLAUDE);
    assert_eq!(s.len(), 18);
    let mut denied = 0;
    for (stdin, command) in &s {
        let out = pretooluse_hook(stdin, &probe_policy());
        match expected_rule(command) {
            Some(rule) => {
                denied += 1;
                check_deny_shape(
                    out.as_deref()
                        .unwrap_or_else(|| panic!("{command} allowed")),
                    rule,
                );
            }
            None => assert_eq!(out, None, "{command} should be allowed"),
        }
    }
    assert_eq!(denied, 6);
}

#[test]
fn codex_captures() {
    let s = samples(CODEX);
    assert_eq!(s.len(), 2);
    for (stdin, command) in &s {
        let out = pretooluse_hook(stdin, &probe_policy()).expect("deny");
        check_deny_shape(&out, expected_rule(command).unwrap());
    }
}

#[test]
fn default_branch_comes_from_policy() {
    // Under the default policy (`main`), pushing to master is an ordinary
    // branch push; the force push is still denied.
    for (stdin, command) in samples(CLAUDE) {
        let out = pretooluse_hook(&stdin, &Policy::default());
        match command.as_str() {
            "git push origin HEAD:master" => assert_eq!(out, None),
            "git push --force origin HEAD:master" => check_deny_shape(&out.unwrap(), "push-force"),
            _ => assert_eq!(out, None),
        }
    }
}

#[test]
fn other_tools_and_events_are_allowed() {
    let edit = r#"{"hook_event_name":"PreToolUse","tool_name":"Edit","tool_input":{"file_path":"x","old_string":"a","new_string":"b"}}"#;
    assert_eq!(pretooluse_hook(edit, &Policy::default()), None);
    let post = r#"{"hook_event_name":"PostToolUse","tool_name":"Bash","tool_input":{"command":"rm -rf /"}}"#;
    assert_eq!(pretooluse_hook(post, &Policy::default()), None);
}

#[test]
fn malformed_input_is_denied() {
    for bad in [
        "",
        "not json",
        "[1,2]",
        r#"{"hook_event_name":"PreToolUse"}"#,
        r#"{"hook_event_name":"PreToolUse","tool_name":"Bash"}"#,
        r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":7}}"#,
    ] {
        let out =
            pretooluse_hook(bad, &Policy::default()).unwrap_or_else(|| panic!("{bad:?} allowed"));
        check_deny_shape(&out, "bad hook input");
    }
}

#[test]
fn codex_argv_form_and_cwd() {
    let argv = r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":["bash","-lc","git reset --hard"]}}"#;
    check_deny_shape(
        &pretooluse_hook(argv, &Policy::default()).unwrap(),
        "git-reset-hard",
    );
    let ok = r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":["git","status"]}}"#;
    assert_eq!(pretooluse_hook(ok, &Policy::default()), None);
    // An absolute cwd from the hook is where relative paths resolve.
    let sub = r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","cwd":"/workspace/sub","tool_input":{"command":"rm -rf .."}}"#;
    check_deny_shape(
        &pretooluse_hook(sub, &Policy::default()).unwrap(),
        "rm-recursive",
    );
    let inside = r#"{"hook_event_name":"PreToolUse","tool_name":"Bash","cwd":"/workspace/sub","tool_input":{"command":"rm -rf build"}}"#;
    assert_eq!(pretooluse_hook(inside, &Policy::default()), None);
}

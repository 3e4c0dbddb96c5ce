//! The destructive-command guard, end to end: refused for Claude Code and
//! Codex through their PreToolUse hooks, and for a harness without hooks
//! (Gemini CLI) through the git/rm shims on PATH; the trace shows each refusal
//! with its reason, the repository is unharmed, and the run still finishes.

use crate::common::*;
use serde_json::Value;

const DESTRUCTIVE: &str = r#"{"steps":[
    {"shell":"git commit -q --allow-empty -m 'work in progress' && git log --oneline | wc -l"},
    {"shell":"git push --force origin HEAD:main"},
    {"shell":"git reset --hard HEAD~1"},
    {"shell":"rm -r .git"},
    {"shell":"git log --oneline | wc -l"},
    {"text":"Tried, and was stopped."}
]}"#;

fn results(events: &[Value]) -> Vec<(String, bool, String)> {
    let calls: Vec<&Value> = events.iter().filter(|e| e["type"] == "tool_call").collect();
    calls
        .iter()
        .map(|c| {
            let r = events
                .iter()
                .find(|e| e["type"] == "tool_result" && e["id"] == c["id"])
                .expect("a result for every call");
            let output = r["output"].as_str().unwrap_or("").to_string();
            (
                c["input"]["command"].as_str().unwrap_or("").to_string(),
                // Gemini CLI reports no exit code for a command that printed
                // something: its output says it was refused.
                r["is_error"] == true
                    || r["exit_code"].as_i64().is_some_and(|x| x != 0)
                    || output.starts_with("errand guard: refused"),
                output,
            )
        })
        .collect()
}

fn check(env: &Env, bare: &std::path::Path, v: &Value, via: &str) {
    assert_eq!(v["state"], "succeeded", "{via}: the run goes on: {v:#}");
    let events = env.events(v["id"].as_str().expect("id"));
    let r = results(&events);
    assert_eq!(r.len(), 5, "{via}: {r:#?}");
    assert!(!r[0].1, "{via}: an ordinary commit is allowed: {r:#?}");
    for (i, rule) in [(1, "push"), (2, "reset"), (3, "rm")] {
        let (cmd, refused, out) = &r[i];
        assert!(refused, "{via}: `{cmd}` was not refused: {out}");
        assert!(
            out.contains("errand") || out.contains("guard") || out.contains(rule),
            "{via}: `{cmd}` refused without the guard's reason: {out}"
        );
    }
    // The repository is unharmed: both commits still there, main untouched.
    let (_, ok, out) = &r[4];
    assert!(
        !ok && out.trim().ends_with('2'),
        "{via}: history intact: {out}"
    );
    assert_eq!(
        git(bare, &["rev-list", "--count", "main"]),
        "1",
        "{via}: main was not pushed to"
    );
    let branch = v["branch"].as_str().expect("branch");
    // Both commits came out of the sandbox (the host reads the outbox, never
    // the workspace's .git, which is only the run's layer over its checkout).
    let outbox = env
        .home
        .join("runs")
        .join(v["id"].as_str().expect("id"))
        .join("outbox.git");
    assert_eq!(git(&outbox, &["rev-list", "--count", branch]), "2", "{via}");
}

/// One run of `harness` on a fresh repository, driven by `scenario`.
async fn run_on(harness: &str, scenario: &str, prompt: &str) -> (Env, std::path::PathBuf, Value) {
    let model = model(scenario).await;
    let env = Env::new();
    let bare = bare_repo(env.dir.path());
    let env = match harness {
        "codex" => env.with_openai_model(&model),
        "gemini" => env.with_gemini_model(&model),
        _ => env.with_model(&model),
    };
    let (_, v) = env.run_json(&[
        "--harness",
        harness,
        "--repo",
        &bare.to_string_lossy(),
        prompt,
    ]);
    // The scripted model must outlive the run.
    drop(model);
    (env, bare, v)
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_is_stopped_by_the_hook() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let model = model(DESTRUCTIVE).await;
    let env = Env::new();
    let bare = bare_repo(env.dir.path());
    let env = env.with_model(&model);
    let (_, v) = env.run_json(&["--repo", &bare.to_string_lossy(), "try to break things"]);
    check(&env, &bare, &v, "claude-code");
    // The hook's refusals name the guard's rule.
    let events = env.events(v["id"].as_str().expect("id"));
    let r = results(&events);
    assert!(
        r[2].2.contains("git-reset-hard"),
        "the guard's rule: {}",
        r[2].2
    );
    assert!(
        r[1].2.contains("push-force"),
        "the guard's rule: {}",
        r[1].2
    );
    assert!(r[3].2.contains("rm"), "{}", r[3].2);
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_is_stopped_by_its_hook() {
    if !sandbox_available() {
        return;
    }
    ensure_codex();
    let (env, bare, v) = run_on("codex", DESTRUCTIVE, "try to break things").await;
    check(&env, &bare, &v, "codex");
    let events = env.events(v["id"].as_str().expect("id"));
    let r = results(&events);
    // Refused by the hook before codex ran anything: codex's own output has no
    // item for these; errand's trace shows them from the hook's record.
    assert!(
        r[2].2
            .contains("errand guard: refused `git reset --hard HEAD~1`: git-reset-hard"),
        "{}",
        r[2].2
    );
    assert!(
        r[3].2.contains("errand guard: refused `rm -r .git`"),
        "{}",
        r[3].2
    );
    let refusals = events
        .iter()
        .filter(|e| e["type"] == "tool_call" && e["source"] == "errand")
        .count();
    assert_eq!(refusals, 3, "each refusal once, from the hook");
}

// The shims cover only git and rm; the hook sees every command. This one is
// destructive outside the workspace and involves neither.
const OUTSIDE: &str = r#"{"steps":[
    {"shell":"echo keep > /home/agent/keep.txt && echo written"},
    {"shell":"find /home/agent -name keep.txt -delete"},
    {"shell":"cat /home/agent/keep.txt"},
    {"text":"Done."}
]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn codex_hook_covers_commands_the_shims_do_not() {
    if !sandbox_available() {
        return;
    }
    ensure_codex();
    let (env, _, v) = run_on("codex", OUTSIDE, "clean up").await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    let r = results(&env.events(v["id"].as_str().expect("id")));
    assert_eq!(r.len(), 3, "{r:#?}");
    assert!(
        r[1].1 && r[1].2.contains("errand guard: refused `find"),
        "{r:#?}"
    );
    assert!(
        !r[2].1 && r[2].2.contains("keep"),
        "the file survived: {r:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_is_stopped_by_the_shims() {
    if !sandbox_available() {
        return;
    }
    ensure_gemini();
    let (env, bare, v) = run_on("gemini", DESTRUCTIVE, "try to break things").await;
    check(&env, &bare, &v, "gemini");
    let events = env.events(v["id"].as_str().expect("id"));
    let r = results(&events);
    assert!(
        r[2].2
            .contains("errand guard: refused `git reset --hard HEAD~1`: git-reset-hard"),
        "{}",
        r[2].2
    );
    assert!(
        r[3].2.contains("errand guard: refused `rm -r .git`"),
        "{}",
        r[3].2
    );
}

#[test]
fn guard_check_from_the_command_line() {
    let env = Env::new();
    let deny = env.run(&["guard", "check", "git push --force origin main"]);
    assert_eq!(deny.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&deny.stdout).starts_with("deny"));
    let allow = env.run(&["guard", "check", "git commit -m \"undo git reset --hard\""]);
    assert_eq!(
        allow.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&allow.stdout)
    );
    let mut child = env
        .command(&["guard", "check", "--jsonl"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{{\"command\": \"rm -rf /\"}}").expect("write");
        writeln!(stdin, "{{\"command\": \"ls -la\"}}").expect("write");
        writeln!(stdin, "not json").expect("write");
    }
    let out = child.wait_with_output().expect("wait");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let decisions: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["decision"].as_str())
        .collect();
    assert_eq!(decisions, ["deny", "allow", "deny"]);
}

// Calling the binaries by absolute path does not get around the shims, and
// neither does a command that sets the guard's variables for the shim it starts.
const ABSOLUTE: &str = r#"{"steps":[
    {"shell":"/usr/bin/git reset --hard HEAD"},
    {"shell":"/bin/rm -r .git"},
    {"shell":"ERRAND_GUARD_DEFAULT_BRANCH=nope git push origin HEAD:main"},
    {"shell":"test -d .git && echo intact"},
    {"text":"Done."}
]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn absolute_paths_meet_the_shims_too() {
    if !sandbox_available() {
        return;
    }
    ensure_gemini();
    let (env, _, v) = run_on("gemini", ABSOLUTE, "try the long way round").await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    let r = results(&env.events(v["id"].as_str().expect("id")));
    assert_eq!(r.len(), 4, "{r:#?}");
    assert!(
        r[0].1
            && r[0]
                .2
                .contains("errand guard: refused `git reset --hard HEAD`"),
        "{r:#?}"
    );
    assert!(
        r[1].1 && r[1].2.contains("errand guard: refused `rm -r .git`"),
        "{r:#?}"
    );
    assert!(
        r[2].1
            && r[2]
                .2
                .contains("errand guard: refused `git push origin HEAD:main`: push-default-branch"),
        "{r:#?}"
    );
    assert!(r[3].2.contains("intact"), "{r:#?}");
}

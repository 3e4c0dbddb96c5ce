//! Every harness that can be pointed at a local model, end to end under the
//! scripted model in the local sandbox: each edits a file, runs a command and
//! commits on the run's branch, and the normalized traces have the same shape.

use crate::common::*;
use serde_json::Value;

const EDIT_RUN_COMMIT: &str = r#"{"steps":[
    {"read":"src/lib.rs"},
    {"write":{"path":"src/lib.rs","content":"pub fn greeting() -> &'static str {\n    \"hello\"\n}\n"}},
    {"shell":"grep -n hello src/lib.rs"},
    {"shell":"git add -A && git commit -q -m 'Fix the greeting typo' && git log --oneline -1"},
    {"text":"Fixed the typo in greeting()."}
]}"#;

/// (tool name, is_error, exit_code) of each tool call and its result, in order.
fn shape(events: &[Value]) -> Vec<(String, bool, Option<i64>)> {
    let results: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "tool_result")
        .collect();
    events
        .iter()
        .filter(|e| e["type"] == "tool_call")
        .map(|call| {
            let r = results
                .iter()
                .find(|r| r["id"] == call["id"])
                .expect("every call has a result");
            (
                call["name"].as_str().unwrap_or("").to_string(),
                r["is_error"] == true,
                r["exit_code"].as_i64(),
            )
        })
        .collect()
}

fn check_run(env: &Env, bare: &std::path::Path, v: &Value) -> Vec<Value> {
    assert_eq!(v["state"], "succeeded", "{v:#}");
    let branch = v["branch"].as_str().expect("branch");
    let file = git(bare, &["show", &format!("{branch}:src/lib.rs")]);
    assert!(file.contains("\"hello\""), "{file}");
    assert_eq!(
        git(bare, &["log", "-1", "--format=%s", branch]),
        "Fix the greeting typo"
    );
    assert!(
        v["cost_usd"].as_f64().unwrap_or(0.0) > 0.0,
        "cost is reported or estimated: {v:#}"
    );
    assert!(v["input_tokens"].as_u64().unwrap_or(0) > 0);
    env.events(v["id"].as_str().expect("id"))
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_edits_runs_and_commits_with_the_same_trace_shape_as_claude_code() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    ensure_codex();
    let model = model(EDIT_RUN_COMMIT).await;

    let env = Env::new();
    let bare = bare_repo(env.dir.path());
    let env = env.with_openai_model(&model);
    let (ok, v) = env.run_json(&[
        "--harness",
        "codex",
        "--repo",
        &bare.to_string_lossy(),
        "--push",
        "fix the typo",
    ]);
    assert!(ok, "{v:#}");
    let codex = check_run(&env, &bare, &v);

    let env2 = Env::new();
    let bare2 = bare_repo(env2.dir.path());
    let env2 = env2.with_model(&model);
    let (ok, v2) = env2.run_json(&[
        "--harness",
        "claude-code",
        "--repo",
        &bare2.to_string_lossy(),
        "--push",
        "fix the typo",
    ]);
    assert!(ok, "{v2:#}");
    let claude = check_run(&env2, &bare2, &v2);

    // Codex reads and writes through its shell tool; Claude Code through Read
    // and Write. The shell steps look the same in both traces: Bash, exit 0.
    let cs = shape(&codex);
    let ls = shape(&claude);
    assert_eq!(cs.len(), 4, "{cs:?}");
    assert_eq!(ls.len(), 4, "{ls:?}");
    assert_eq!(cs[2..], ls[2..]);
    assert_eq!(cs[2], ("Bash".to_string(), false, Some(0)));
    assert_eq!(
        ls[..2].iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["Read", "Write"]
    );
    for trace in [&codex, &claude] {
        let kinds: Vec<&str> = trace.iter().filter_map(|e| e["type"].as_str()).collect();
        for k in [
            "session_start",
            "tool_call",
            "tool_result",
            "assistant_message",
            "usage",
            "result",
            "state",
        ] {
            assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
        }
        assert!(!kinds.contains(&"error"), "{kinds:?}");
    }
}

/// Gemini CLI and OpenCode on the same scenario: the same edit, command and
/// commit on the run's branch, and the shell step in the same normalized shape.
#[tokio::test(flavor = "multi_thread")]
async fn gemini_cli_and_opencode_edit_run_and_commit() {
    if !sandbox_available() {
        return;
    }
    ensure_gemini();
    ensure_opencode();
    let model = model(EDIT_RUN_COMMIT).await;
    let mut shapes = Vec::new();
    for (harness, model_name) in [("gemini", "gemini-2.5-pro"), ("opencode", "gpt-5")] {
        let env = Env::new();
        let bare = bare_repo(env.dir.path());
        let env = env.with_gemini_model(&model).with_openai_model(&model);
        let (ok, v) = env.run_json(&[
            "--harness",
            harness,
            "--model",
            model_name,
            "--repo",
            &bare.to_string_lossy(),
            "--push",
            "fix the typo",
        ]);
        assert!(ok, "{harness}: {v:#}");
        let events = check_run(&env, &bare, &v);
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
        for k in [
            "session_start",
            "tool_call",
            "tool_result",
            "assistant_message",
            "usage",
            "result",
        ] {
            assert!(kinds.contains(&k), "{harness}: {k} missing from {kinds:?}");
        }
        shapes.push((harness, shape(&events)));
    }
    for (harness, s) in &shapes {
        assert_eq!(s.len(), 4, "{harness}: {s:?}");
        // The grep and the commit are shell calls that succeeded.
        assert!(
            s[2..].iter().all(|(name, err, _)| name == "Bash" && !err),
            "{harness}: {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn harnesses_without_a_key_fail_clearly() {
    let env = Env::new();
    for (harness, var) in [
        ("gemini", "GEMINI_API_KEY"),
        ("opencode", "OPENAI_API_KEY"),
        ("amp", "AMP_API_KEY"),
    ] {
        let (ok, v) = env.run_json(&["--harness", harness, "do it"]);
        assert!(!ok);
        let err = v["error"].as_str().unwrap_or("");
        assert!(
            err.starts_with(&format!("{var} is not set: {harness} needs it")),
            "{v:#}"
        );
    }
    // Amp chooses its own model: asking for one is refused, not ignored.
    let env = env.var("AMP_API_KEY", "x");
    let (ok, v) = env.run_json(&["--harness", "amp", "--model", "gpt-5", "do it"]);
    assert!(!ok);
    assert_eq!(
        v["error"],
        "amp does not let errand choose the model; drop --model"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_without_a_key_fails_clearly() {
    let env = Env::new();
    let (ok, v) = env.run_json(&["--harness", "codex", "do it"]);
    assert!(!ok);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("OPENAI_API_KEY is not set: codex needs it"),
        "{v:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fan_out_runs_two_harnesses_from_one_base_and_compares_them() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    ensure_codex();
    let model = model(EDIT_RUN_COMMIT).await;
    let env = Env::new();
    let bare = bare_repo(env.dir.path());
    let env = env.with_model(&model).with_openai_model(&model);
    let base = git(&bare, &["rev-parse", "main"]);
    let out = env.run(&[
        "run",
        "--json",
        "--harness",
        "claude-code,codex",
        "--repo",
        &bare.to_string_lossy(),
        "--test-cmd",
        "grep -q hello src/lib.rs",
        "fix the typo",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["base_commit"], base.as_str());
    let group = v["group"].as_str().expect("group");
    let runs = v["runs"].as_array().expect("runs");
    let harnesses: Vec<&str> = runs.iter().filter_map(|r| r["harness"].as_str()).collect();
    assert_eq!(harnesses, ["claude-code", "codex"]);
    for r in runs {
        assert_eq!(r["state"], "succeeded", "{r:#}");
        assert_eq!(r["group"], group);
        assert_eq!(r["tests_passed"], true, "{r:#}");
        assert!(r["cost_usd"].as_f64().unwrap_or(0.0) > 0.0, "{r:#}");
        assert!(r["turns"].as_u64().unwrap_or(0) >= 1, "{r:#}");
        assert_eq!(
            r["diffstat"],
            "1 file changed, 1 insertion(+), 1 deletion(-)"
        );
    }
    assert_ne!(runs[0]["branch"], runs[1]["branch"]);

    // The human view ends with the comparison table, one row per harness; a
    // failing test command shows as FAIL without failing the runs.
    let out = env.run(&[
        "run",
        "--harness",
        "claude-code,codex",
        "--repo",
        &bare.to_string_lossy(),
        "--test-cmd",
        "grep -q goodbye src/lib.rs",
        "fix the typo",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    let header = table
        .lines()
        .position(|l| l.starts_with("HARNESS"))
        .expect("comparison table");
    let rows: Vec<&str> = table
        .lines()
        .skip(header + 1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[0].starts_with("claude-code") && rows[1].starts_with("codex"),
        "{table}"
    );
    assert!(
        rows.iter()
            .all(|r| r.contains("succeeded") && r.contains("FAIL") && r.contains("1 file changed")),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_model_endpoint_can_come_from_errands_config() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let model = model(r#"{"steps":[{"text":"Nothing to do."}]}"#).await;
    let env = Env::new();
    let config = env.dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[models]\nanthropic_base_url = \"{}\"\n", model.base_url()),
    )
    .expect("config");
    let env = env
        .var("ERRAND_CONFIG", &config.to_string_lossy())
        .var("ANTHROPIC_API_KEY", "sk-test-config");
    let (ok, v) = env.run_json(&["say nothing"]);
    assert!(ok, "{v:#}");
    assert!(
        !model.requests().is_empty(),
        "the harness reached the configured endpoint"
    );
    std::fs::write(&config, "[models]\nopenai_base_url = \"ftp://nope\"\n").expect("config");
    let out = env.run(&["config", "check"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("models.openai_base_url 'ftp://nope' is not an http(s) URL"));
}

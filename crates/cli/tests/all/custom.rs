//! Custom harnesses from the configuration file, and harnesses that crash or
//! print garbage: every run still ends in a recorded state with a reason.

use crate::common::*;

/// Writes `script` as an executable `agent.sh` in a fresh directory and a
/// configuration declaring it as harness `name` with `format`.
fn custom(env: Env, name: &str, format: &str, script: &str) -> Env {
    let dir = env.dir.path().join(format!("agent-{name}"));
    std::fs::create_dir_all(&dir).expect("set up the custom harness");
    let agent = dir.join("agent.sh");
    std::fs::write(&agent, script).expect("set up the custom harness");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&agent)
        .status()
        .expect("set up the custom harness");
    let config = env.dir.path().join(format!("config-{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[[harness]]\nname = \"{name}\"\ncommand = [\"/bin/sh\", \"/opt/errand/harness/agent.sh\", \"{{prompt}}\"]\nformat = \"{format}\"\nenv = [\"AGENT_TOKEN\"]\ndir = \"{}\"\n",
            dir.display()
        ),
    )
    .expect("set up the custom harness");
    env.var("ERRAND_CONFIG", &config.to_string_lossy())
        .var("AGENT_TOKEN", "agent-token-0123456789")
}

const ERRAND_FORMAT_AGENT: &str = r#"set -e
echo '{"type":"session_start","session_id":"custom-1"}'
echo '{"type":"tool_call","id":"c1","name":"Bash","input":{"command":"sed -i s/helo/hello/ src/lib.rs"}}'
sed -i s/helo/hello/ src/lib.rs
echo '{"type":"tool_result","id":"c1","output":"","is_error":false,"exit_code":0}'
echo "{\"type\":\"assistant_message\",\"text\":\"Fixed: $1 (token $AGENT_TOKEN)\"}"
echo '{"type":"result","is_error":false,"text":"Fixed the greeting.","turns":1,"usage":{"input_tokens":10,"output_tokens":5,"cost_usd":0.001}}'
"#;

#[test]
fn a_configured_command_printing_errand_events_is_a_harness() {
    if !sandbox_available() {
        return;
    }
    let env = Env::new();
    let bare = bare_repo(env.dir.path());
    let env = custom(env, "sedbot", "errand", ERRAND_FORMAT_AGENT);
    let check = env.run(&["config", "check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let list = String::from_utf8_lossy(&env.run(&["harness", "list"]).stdout).to_string();
    assert!(
        list.contains("sedbot") && list.contains("(configured command)"),
        "{list}"
    );

    let (ok, v) = env.run_json(&[
        "--harness",
        "sedbot",
        "--repo",
        &bare.to_string_lossy(),
        "--push",
        "fix the typo",
    ]);
    assert!(ok, "{v:#}");
    assert_eq!(v["cost_usd"], 0.001);
    assert_eq!(v["result"], "Fixed the greeting.");
    let branch = v["branch"].as_str().unwrap();
    assert!(git(&bare, &["show", &format!("{branch}:src/lib.rs")]).contains("\"hello\""));
    let events = env.events(v["id"].as_str().unwrap());
    let msg = events
        .iter()
        .find(|e| e["type"] == "assistant_message")
        .expect("message");
    assert_eq!(
        msg["text"], "Fixed: fix the typo (token [REDACTED])",
        "the declared secret is redacted"
    );
}

#[test]
fn a_custom_harness_without_its_variable_is_refused() {
    let env = Env::new();
    let env = custom(env, "needy", "errand", "exit 0\n");
    let env = Env {
        vars: env
            .vars
            .into_iter()
            .filter(|(k, _)| k != "AGENT_TOKEN")
            .collect(),
        ..env
    };
    let (ok, v) = env.run_json(&["--harness", "needy", "do it"]);
    assert!(!ok);
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("without AGENT_TOKEN: export AGENT_TOKEN"),
        "{v:#}"
    );
}

#[test]
fn claude_stream_json_from_any_command_is_understood() {
    if !sandbox_available() {
        return;
    }
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../trace/tests/fixtures/claude_event_examples.jsonl"
    ))
    .unwrap();
    // The first five lines are one real, successful Claude Code session.
    let session: Vec<&str> = fixture.lines().take(5).collect();
    let script = format!("cat <<'EOF'\n{}\nEOF\n", session.join("\n"));
    let env = custom(Env::new(), "replay", "claude-stream-json", &script);
    let (ok, v) = env.run_json(&["--harness", "replay", "anything"]);
    assert!(ok, "{v:#}");
    assert_eq!(v["turns"], 2);
    assert!(v["cost_usd"].as_f64().unwrap_or(0.0) > 0.0);
}

#[test]
fn a_harness_that_prints_garbage_fails_with_a_reason_and_keeps_every_line() {
    if !sandbox_available() {
        return;
    }
    let env = custom(
        Env::new(),
        "noisy",
        "errand",
        "echo 'this is not json'; printf '\\000\\377 binary'; echo; echo '{\"half\":'\n",
    );
    let (ok, v) = env.run_json(&["--harness", "noisy", "anything"]);
    assert!(!ok);
    assert_eq!(v["state"], "failed");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .starts_with("the harness exited without a final result"),
        "{v:#}"
    );
    let events = env.events(v["id"].as_str().unwrap());
    let raws: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "raw")
        .filter_map(|e| e["line"].as_str())
        .collect();
    assert_eq!(raws.len(), 3, "{raws:?}");
    assert_eq!(raws[0], "this is not json");
    let raw = env.run(&["logs", "--raw", v["id"].as_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&raw.stdout).lines().count(), 3);
}

#[test]
fn a_harness_that_crashes_fails_with_its_exit_status_and_stderr() {
    if !sandbox_available() {
        return;
    }
    let env = custom(
        Env::new(),
        "crashy",
        "errand",
        "echo 'panic: out of cheese' >&2; exit 3\n",
    );
    let (ok, v) = env.run_json(&["--harness", "crashy", "anything"]);
    assert!(!ok);
    assert_eq!(
        v["error"],
        "the harness exited with status 3: panic: out of cheese"
    );
}

#[test]
fn config_check_reports_every_problem_at_once() {
    let env = Env::new();
    let config = env.dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[harness]]\nname = \"codex\"\ncommand = []\nformat = \"errand\"\n[[harness]]\nname = \"x\"\ncommand = [\"a\"]\nformat = \"errand\"\ndir = \"/no/such/dir\"\n[[harness]]\nname = \"x\"\ncommand = [\"b\"]\nformat = \"errand\"\n",
    )
    .unwrap();
    let env = env.var("ERRAND_CONFIG", &config.to_string_lossy());
    let out = env.run(&["config", "check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 4, "{err}");
    for needle in [
        "name of a built-in harness",
        "empty command",
        "/no/such/dir does not exist",
        "'x' is defined twice",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    std::fs::write(&config, "[[harness]]\nname = 3\n").unwrap();
    let out = env.run(&["config", "check"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not valid"));
}

#[test]
fn config_check_explains_slack_github_and_access_problems() {
    let env = Env::new();
    let config = env.dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[github]\napp_id = \"\"\napi_url = \"ftp://x\"\n\
         [slack]\nsigning_secret = \"\"\nbot_token = \"xoxb-1\"\n\
         [[access]]\nrepos = []\n",
    )
    .unwrap();
    let env = env.var("ERRAND_CONFIG", &config.to_string_lossy());
    let out = env.run(&["config", "check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "github.app_id is empty",
        "needs the App's private key",
        "github.api_url 'ftp://x' is not an http(s) URL",
        "slack needs both signing_secret and bot_token",
        "access rule 1 names no repos",
        "access rule 1 names nobody",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    // The example's Slack/GitHub block, uncommented, is valid TOML with these sections.
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.toml"),
    )
    .unwrap();
    let block: String = example
        .lines()
        .skip_while(|l| !l.starts_with("# [github]"))
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let parsed: toml::Table = toml::from_str(&block).expect("the example parses");
    assert!(parsed["github"]["app_id"].is_str());
    assert!(parsed["slack"]["bot_token"].is_str());
    assert_eq!(parsed["access"].as_array().map(|a| a.len()), Some(2));
}

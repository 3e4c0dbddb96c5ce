//! End-to-end: the real `errand` binary runs the real Claude Code CLI, driven by
//! errand's scripted model, inside the local sandbox, against real git repos.

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_reads_edits_runs_and_errand_pushes_the_branch() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let env = Env::new();
    let bare = bare_repo(env.dir.path());
    let model = model(
        r#"{"steps":[
        {"read":"src/lib.rs"},
        {"tool":"Edit","input":{"file_path":"/workspace/src/lib.rs","old_string":"\"helo\"","new_string":"\"hello\""}},
        {"shell":"grep -n hello src/lib.rs"},
        {"text":"Fixed the typo in greeting()."}
    ]}"#,
    )
    .await;
    let env = env.with_model(&model);
    let url = format!("file://{}", bare.display());
    let (ok, v) = env.run_json(&[
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
    assert!(v["cost_usd"].as_f64().unwrap_or(0.0) > 0.0, "{v:#}");

    // The normalized trace has the tool calls, their results and a cost.
    let events = env.events(id);
    let calls: Vec<&str> = of_type(&events, "tool_call")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(calls, ["Read", "Edit", "Bash"]);
    let results = of_type(&events, "tool_result");
    assert_eq!(results.len(), 3);
    assert!(
        results.iter().all(|r| r["is_error"] == false),
        "{results:#?}"
    );
    assert!(
        results[2]["output"]
            .as_str()
            .unwrap_or("")
            .contains("2:    \"hello\""),
        "{:#}",
        results[2]
    );
    assert_eq!(results[2]["exit_code"], 0);
    let edits = of_type(&events, "file_edit");
    assert_eq!(edits.len(), 1);
    assert!(edits[0]["diff"]
        .as_str()
        .unwrap_or("")
        .contains("+\"hello\""));
    let result = of_type(&events, "result");
    assert!(result[0]["usage"]["cost_usd"].as_f64().unwrap_or(0.0) > 0.0);
    // Sequence numbers are 1..n without gaps, and the state changes are all there.
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    let states: Vec<&str> = of_type(&events, "state")
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(states, ["preparing", "running", "finishing", "succeeded"]);

    // The raw log is the harness's own stream-json.
    let raw = env.run(&["logs", "--raw", &id[..8]]);
    let raw = String::from_utf8_lossy(&raw.stdout);
    assert!(raw
        .lines()
        .any(|l| l.contains("\"type\":\"system\"") && l.contains("\"subtype\":\"init\"")));
    // The API key never reaches the logs.
    assert!(!raw.contains("sk-test-e2e-0123456789"));

    // errand ls and the human logs view show the run.
    let ls = env.run(&["ls"]);
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.contains(&id[..8]) && ls.contains("succeeded") && ls.contains("claude-code"),
        "{ls}"
    );
    let human = env.run(&["logs", &id[..8]]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("Edit   src/lib.rs +1 -1"), "{human}");
    assert!(
        human.contains("Bash   grep -n hello src/lib.rs (exit 0,"),
        "{human}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_without_repo_gets_git_and_a_python_virtualenv() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let model = model(
        r#"{"steps":[
        {"write":{"path":"primes.py","content":"print([n for n in range(2, 30) if all(n % d for d in range(2, n))])\n"}},
        {"shell":"echo venv=$VIRTUAL_ENV; command -v python; python primes.py; git branch --show-current; command -v uv && uv --version"},
        {"text":"Wrote primes.py, a tiny CLI that prints primes."}
    ]}"#,
    )
    .await;
    let env = Env::new().with_model(&model);
    let (ok, v) = env.run_json(&["make a tiny CLI that prints primes"]);
    assert!(ok, "{v:#}");
    let id = v["id"].as_str().expect("id");
    let events = env.events(id);
    let out = of_type(&events, "tool_result")[1]["output"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(out.contains("venv=/workspace/.venv"), "{out}");
    assert!(out.contains("/workspace/.venv/bin/python"), "{out}");
    assert!(
        out.contains("[2, 3, 5, 7, 11, 13, 17, 19, 23, 29]"),
        "{out}"
    );
    assert!(out.contains(&format!("errand/{}", &id[..8])), "{out}");
    // scripts/setup installs uv; errand puts it on the agent's PATH.
    assert!(
        out.contains("/opt/errand/bin/uv\nuv "),
        "uv is not on the agent's PATH: {out}"
    );
    assert!(
        v["diffstat"]
            .as_str()
            .unwrap_or("")
            .contains("1 file changed"),
        "the venv is not committed: {v:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_key_never_reaches_the_logs_whole_or_in_pieces() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    const KEY: &str = "sk-test-e2e-0123456789";
    let env = Env::new();
    let bare = bare_repo(env.dir.path());
    let scenario = serde_json::json!({"steps": [
        // The guard refuses printing a credential by name; copied to another
        // name it gets past the guard, and the redactor is what holds.
        {"shell": "k=$ANTHROPIC_API_KEY; echo \"whole: $k\"; echo \"$k\" | cut -c1-11; echo \"$k\" | cut -c12-; echo \"$k\" >&2"},
        {"text": format!("The key is {KEY}, or in two parts: {} and {}.", &KEY[..11], &KEY[11..])}
    ]})
    .to_string();
    let model = model(&scenario).await;
    let env = env.with_model(&model);
    let (ok, v) = env.run_json(&["--repo", &bare.to_string_lossy(), "print the key"]);
    assert!(ok, "{v:#}");
    let id = v["id"].as_str().expect("id");
    let run_dir = env.home.join("runs").join(id);
    let mut checked = 0;
    for f in ["events.jsonl", "raw.jsonl", "stderr.log"] {
        let text = std::fs::read_to_string(run_dir.join(f)).unwrap_or_default();
        for piece in KEY.as_bytes().windows(8) {
            let piece = std::str::from_utf8(piece).expect("ascii");
            assert!(
                !text.contains(piece),
                "{f} contains '{piece}' of the key:\n{text}"
            );
        }
        checked += text.matches("[REDACTED]").count();
    }
    assert!(
        checked >= 4,
        "the key was printed and redacted in several places ({checked})"
    );
    let out = env.run(&["logs", "--json", id]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&KEY[..8]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_secret_is_encrypted_at_rest_and_given_to_the_harness_that_needs_it() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    const KEY: &str = "sk-stored-secret-0123456789";
    // The guard refuses printing a credential, so the agent compares instead.
    // The stored key goes to errand's model gateway (the provider refuses any
    // request without it); the harness holds a key for its run only.
    let scenario = errand_model::Scenario::from_json(r#"{"steps":[{"shell":"[ \"$ANTHROPIC_API_KEY\" = \"sk-stored-secret-0123456789\" ] && echo key=stored; case \"$ANTHROPIC_API_KEY\" in errand-run-*) echo key=run;; esac; [ -z \"${GITHUB_TOKEN+x}\" ] && echo gh=none"},{"text":"ok"}]}"#)
        .expect("scenario");
    let model = errand_model::ScriptedModel::start_requiring_key(
        scenario,
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        KEY,
    )
    .await
    .expect("the scripted model starts");
    let env = Env::new();
    let bare = bare_repo(env.dir.path());
    // Only the base URL comes from the environment; the key is stored.
    let env = env.var("ANTHROPIC_BASE_URL", &model.base_url());
    for (name, value) in [
        ("ANTHROPIC_API_KEY", KEY),
        ("GITHUB_TOKEN", "ghs_not_for_this_harness_42"),
    ] {
        let mut child = env
            .command(&["secret", "set", name])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(value.as_bytes())
                .expect("write");
        }
        assert!(child.wait().expect("wait").success());
    }
    let ls = String::from_utf8_lossy(&env.run(&["secret", "ls"]).stdout).to_string();
    assert!(
        ls.contains("ANTHROPIC_API_KEY") && ls.contains("GITHUB_TOKEN") && !ls.contains(KEY),
        "{ls}"
    );
    let db = std::fs::read(env.home.join("errand.db")).expect("db");
    let wal = std::fs::read(env.home.join("errand.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the key is stored in plaintext"
        );
    }
    let (ok, v) = env.run_json(&["--repo", &bare.to_string_lossy(), "print it"]);
    assert!(ok, "{v:#}");
    let events = env.events(v["id"].as_str().expect("id"));
    let out = events
        .iter()
        .find(|e| e["type"] == "tool_result")
        .and_then(|e| e["output"].as_str())
        .unwrap_or("")
        .to_string();
    assert!(
        out.contains("key=run") && !out.contains("key=stored"),
        "the harness got a key for its run, not the stored one: {out}"
    );
    assert!(
        !model.requests().is_empty() && model.requests().iter().all(|r| r.status < 400),
        "the stored key reached the provider through the gateway"
    );
    let all = serde_json::to_string(&events).expect("events");
    assert!(
        !all.contains(KEY) && all.contains("[REDACTED]"),
        "the key, in the command the agent ran, is redacted: {all}"
    );
    assert!(
        out.contains("gh=none"),
        "a secret its harness does not declare stays out: {out}"
    );
    assert!(env.run(&["secret", "rm", "GITHUB_TOKEN"]).status.success());
    assert!(!env.run(&["secret", "rm", "GITHUB_TOKEN"]).status.success());
}

//! From inside a real run, the agent cannot read the host's home, another run's
//! workspace or errand's database, and sees only its declared environment.

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_run_sees_only_its_workspace_and_declared_environment() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let env = Env::new();
    let bare = bare_repo(env.dir.path());

    // A first run leaves its workspace behind, as every run does.
    let first = model(r#"{"steps":[{"write":{"path":"first-run-secret.txt","content":"FIRST-RUN-SECRET\n"}},{"text":"ok"}]}"#).await;
    let env1 = Env {
        dir: tempfile::tempdir().expect("tmp"),
        home: env.home.clone(),
        vars: vec![],
    }
    .with_model(&first);
    let (ok, v1) = env1.run_json(&["--repo", &bare.to_string_lossy(), "leave a file"]);
    assert!(ok, "{v1:#}");
    let first_ws = env
        .home
        .join("runs")
        .join(v1["id"].as_str().expect("id"))
        .join("workspace");
    assert!(first_ws.join("first-run-secret.txt").exists());

    // A secret in the host's home directory.
    let host_home =
        std::path::PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()));
    let secret = host_home.join(format!(".errand-sandbox-test-{}", std::process::id()));
    std::fs::write(&secret, "HOST-HOME-SECRET\n").expect("write host secret");
    let db = env.home.join("errand.db");

    let probe = format!(
        "cat {secret} || echo NO-HOST-HOME; cat {first}/first-run-secret.txt || echo NO-OTHER-RUN; \
         head -c 100 {db} || echo NO-DATABASE; ls {home} || echo NO-LIST-HOME; env | cut -d= -f1 | sort | tr '\\n' ' '",
        secret = secret.display(),
        first = first_ws.display(),
        db = db.display(),
        home = host_home.display(),
    );
    let scenario = serde_json::json!({"steps": [{"shell": probe}, {"text": "probed"}]}).to_string();
    let second = model(&scenario).await;
    let env2 = Env {
        dir: tempfile::tempdir().expect("tmp"),
        home: env.home.clone(),
        vars: vec![],
    }
    .with_model(&second)
    .var("ERRAND_TEST_DECOY_SECRET", "decoy-value-must-not-leak")
    .var("AWS_SECRET_ACCESS_KEY", "aws-must-not-leak");
    let (ok, v2) = env2.run_json(&["--repo", &bare.to_string_lossy(), "probe the sandbox"]);
    let _ = std::fs::remove_file(&secret);
    assert!(ok, "{v2:#}");
    let events = env2.events(v2["id"].as_str().expect("id"));
    let out = events
        .iter()
        .find(|e| e["type"] == "tool_result")
        .and_then(|e| e["output"].as_str())
        .expect("the probe's output")
        .to_string();
    for marker in [
        "NO-HOST-HOME",
        "NO-OTHER-RUN",
        "NO-DATABASE",
        "NO-LIST-HOME",
    ] {
        assert!(
            out.contains(marker),
            "{marker} missing, so the read succeeded:\n{out}"
        );
    }
    for leak in ["HOST-HOME-SECRET", "FIRST-RUN-SECRET", "SQLite format"] {
        assert!(
            !out.contains(leak),
            "{leak} leaked into the sandbox:\n{out}"
        );
    }
    let env_line = out.lines().last().unwrap_or("");
    let names: Vec<&str> = env_line.split_whitespace().collect();
    assert!(
        names.contains(&"ANTHROPIC_API_KEY") && names.contains(&"ANTHROPIC_BASE_URL"),
        "{env_line}"
    );
    assert!(
        !names.contains(&"ERRAND_TEST_DECOY_SECRET") && !names.contains(&"AWS_SECRET_ACCESS_KEY"),
        "{env_line}"
    );
    assert!(!names.contains(&"ERRAND_HOME"), "{env_line}");
    // Everything else is what the harness declares, errand's fixed variables, or what the shell adds.
    let allowed = [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "HOME",
        "PATH",
        "TMPDIR",
        "LANG",
        "USER",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
        // errand's guard settings for the hook and shims (fixed values, not the host's)
        "ERRAND_GUARD_WORKSPACE",
        "ERRAND_GUARD_HOME",
        "ERRAND_GUARD_BRANCH",
        "ERRAND_GUARD_DEFAULT_BRANCH",
        "ERRAND_LOG",
        // errand's git gate: the socket the git shim hands its calls to
        "ERRAND_GIT_GATE",
        "DISABLE_AUTOUPDATER",
        // errand's egress bridge: the proxy on the sandbox's loopback (sandbox.egress = "allowlist")
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "NO_PROXY",
        "no_proxy",
        "NODE_USE_ENV_PROXY",
        "PWD",
        "SHLVL",
        "_",
        "OLDPWD",
    ];
    let extra: Vec<&&str> = names.iter().filter(|n| !allowed.contains(n)).collect();
    // Claude Code sets a few of its own in the shells it starts; they must be its own, not the host's.
    assert!(
        extra.iter().all(|n| n.starts_with("CLAUDE")
            || [
                "AI_AGENT",
                "GIT_EDITOR",
                "NoDefaultCurrentDirectoryInExePath",
                "COREPACK_ENABLE_AUTO_PIN",
                "SHELL"
            ]
            .contains(*n)),
        "unexpected variables in the sandbox: {extra:?}\n{env_line}"
    );
}

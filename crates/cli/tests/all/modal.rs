//! End-to-end on the Modal backend, against the strict fake Modal server
//! (`errand_modal::fake`, built from Modal's protos; **not Modal itself**):
//! the real `errand` binary with `--sandbox modal`, `MODAL_SERVER_URL` and a
//! token pointing at the fake, runs the real Claude Code CLI under errand's
//! scripted model in the fake's sandbox (a bubblewrap process as uid 10001),
//! and the run's commit comes back and is pushed to the run's branch, as on
//! Docker. Every rule of the fake is kept (its violations are asserted
//! empty), its injected faults (throttling, Unavailable, a broken output
//! stream, an Unauthenticated router, expiring tokens) are survived, and no
//! Modal sandbox is left running.

use std::time::Duration;

use errand_modal::fake::{Fake, FakeOptions};

use crate::common::*;

async fn fake() -> Option<Fake> {
    if !sandbox_available() {
        return None;
    }
    let opts = FakeOptions {
        token_life: Duration::from_secs(5),
        ..Default::default()
    };
    Some(Fake::start(opts, "bwrap".into()).await.expect("fake Modal"))
}

/// The environment pointing `errand` at the fake.
fn on_fake(env: Env, f: &Fake) -> Env {
    let (id, secret) = f.token();
    env.var("MODAL_SERVER_URL", &f.url())
        .var("MODAL_TOKEN_ID", &id)
        .var("MODAL_TOKEN_SECRET", &secret)
        .var("ERRAND_SANDBOX_MODAL_IMAGE", "errand-agent:test")
        // The scripted model listens on the host's loopback, which only a
        // sandbox on the host's network reaches: Modal's OPEN network_access
        // (the fake's sandbox then shares the host's network). Reaching it
        // through errand's gateway from an ALLOWLIST sandbox is not done yet.
        .var("ERRAND_SANDBOX_EGRESS", "open")
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_commits_on_a_branch_in_a_modal_sandbox_on_the_fake() {
    let Some(f) = fake().await else { return };
    ensure_claude();
    let env = Env::new();
    let bare = bare_repo(env.dir.path());
    let model = model(
        r#"{"steps":[
        {"read":"src/lib.rs"},
        {"tool":"Edit","input":{"file_path":"/workspace/src/lib.rs","old_string":"\"helo\"","new_string":"\"hello\""}},
        {"shell":"grep -n hello src/lib.rs; echo uid=$(id -u); pwd; ls /opt/errand/harness >/dev/null && echo harness-shipped"},
        {"text":"Fixed the typo in greeting()."}
    ]}"#,
    )
    .await;
    let env = on_fake(env.with_model(&model), &f);
    let url = format!("file://{}", bare.display());
    let started = std::time::Instant::now();
    let (ok, v) = env.run_json(&[
        "--sandbox",
        "modal",
        "--repo",
        &url,
        "--push",
        "--model",
        "claude-sonnet-4-5",
        "--timeout",
        "120s",
        "fix the typo in greeting",
    ]);
    eprintln!("modal e2e run took {:?}", started.elapsed());
    assert!(ok, "run failed: {v:#}\nfake: {:#?}", f.violations());
    let (id, _) = assert_typo_fixed_on_branch(&bare, &v);

    let events = env.events(&id);
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
    // It ran in the fake's sandbox, as the agent image's user, in /workspace,
    // with the harness shipped in.
    assert!(shell.contains("uid=10001"), "{shell}");
    assert!(shell.contains("/workspace"), "{shell}");
    assert!(shell.contains("harness-shipped"), "{shell}");
    let states: Vec<&str> = of_type(&events, "state")
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(states, ["preparing", "running", "finishing", "succeeded"]);

    // The fake's rules were all kept, and its faults survived.
    assert_eq!(f.violations(), Vec::<String>::new());
    let calls = f.calls();
    for rpc in ["AppGetOrCreate", "SandboxCreate", "SandboxTerminate"] {
        assert!(
            calls.iter().any(|c| c == rpc),
            "{rpc} not called: {calls:?}"
        );
    }
    assert!(!f.injected().is_empty(), "no fault injected");
    // Nothing is left running.
    assert_eq!(f.running(), Vec::new());
    // The Sandbox lived as long as the run may: its 120 s, the 120 s of
    // the steps after the agent, and a minute to bring the work back.
    let lifetimes: Vec<u32> = f.lifetimes().into_iter().map(|(_, t)| t).collect();
    assert_eq!(lifetimes, [300], "{lifetimes:?}");
}

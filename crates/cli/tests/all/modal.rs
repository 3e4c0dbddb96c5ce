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
    on_fake_allowlisted(env, f)
        // The scripted model listens on the host's loopback, which only a
        // sandbox on the host's network reaches: Modal's OPEN network_access
        // (the fake's sandbox then shares the host's network). The test
        // below takes the ALLOWLIST path, through errand's gateway.
        .var("ERRAND_SANDBOX_EGRESS", "open")
}

/// The environment pointing `errand` at the fake, with errand's default
/// egress policy (an allowlist: Modal's ALLOWLIST).
fn on_fake_allowlisted(env: Env, f: &Fake) -> Env {
    let (id, secret) = f.token();
    env.var("MODAL_SERVER_URL", &f.url())
        .var("MODAL_TOKEN_ID", &id)
        .var("MODAL_TOKEN_SECRET", &secret)
        .var("ERRAND_SANDBOX_MODAL_IMAGE", "errand-agent:test")
}

/// An address of this machine that is not loopback (a Modal Sandbox's
/// loopback is its own, so errand never allowlists one for it), and a free
/// port on it: where the test publishes the gateway for Modal Sandboxes.
fn published_address() -> std::net::SocketAddr {
    let ip = errand_sandbox::egress::interface_addresses()
        .unwrap_or_default()
        .into_iter()
        .find(|ip| {
            ip.is_ipv4()
                && !ip.is_loopback()
                && errand_sandbox::egress::refused_address(*ip).is_none()
        })
        .expect("this machine has an IPv4 address besides loopback (eth0, docker0)");
    let l = std::net::TcpListener::bind((ip, 0)).expect("a free port");
    l.local_addr().expect("its address")
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

/// With errand's default egress (an allowlist), a Modal Sandbox reaches its
/// model only through errand's gateway, published for Modal Sandboxes at
/// `gateway.modal_url`: the Sandbox's ALLOWLIST is the gateway's address, the
/// harness gets a key for this run only, and a scan of the whole Sandbox
/// (every file, every process's environment and command line) finds no
/// trace of the real key, which the provider demands on every request.
#[tokio::test(flavor = "multi_thread")]
async fn a_modal_sandbox_reaches_its_model_only_through_errands_gateway() {
    use crate::gateway::{canary_suffix, env_for, metered, provider, repo_with_scan};
    let Some(f) = fake().await else { return };
    ensure_claude();
    let suffix = canary_suffix();
    let key = format!("sk-canary-{suffix}");
    let scenario = serde_json::json!({"steps": [
        {"shell": format!("python3 scan.py {suffix}")},
        {"text": "Scanned the sandbox."}
    ]})
    .to_string();
    let model = provider(&scenario, &key).await;
    let env = env_for("claude-code", &model, &key);
    let bare = repo_with_scan(env.dir.path());
    let published = published_address();
    let env = on_fake_allowlisted(env, &f)
        .var("ERRAND_GATEWAY_MODAL_LISTEN", &published.to_string())
        .var("ERRAND_GATEWAY_MODAL_URL", &format!("http://{published}"));
    let repo = bare.to_string_lossy().into_owned();
    let (ok, v) = env.run_json(&[
        "--sandbox",
        "modal",
        "--repo",
        &repo,
        "--timeout",
        "120s",
        "scan the sandbox",
    ]);
    assert!(ok, "run failed: {v:#}\nfake: {:#?}", f.violations());
    let id = v["id"].as_str().expect("id");
    let events = env.events(id);

    // The Sandbox's network was Modal's ALLOWLIST of the gateway's address alone.
    assert_eq!(f.networks().len(), 1);
    assert!(f.networks().iter().all(|(_, blocked)| !blocked));
    let unenforced = f.unenforced();
    assert!(
        unenforced
            .iter()
            .any(|u| u.contains(&format!("ALLOWLIST [\"{}/32\"]", published.ip()))),
        "{unenforced:?}"
    );
    // The harness was pointed at the published gateway, with the run's own key.
    let notices: Vec<&str> = of_type(&events, "notice")
        .iter()
        .filter_map(|n| n["message"].as_str())
        .collect();
    assert!(
        notices
            .iter()
            .any(|n| n.starts_with("model gateway: the harness reaches anthropic")),
        "{notices:?}"
    );
    // The scan ran inside and found no trace of the real key.
    let scan = of_type(&events, "tool_result")
        .iter()
        .filter_map(|r| r["output"].as_str())
        .find(|o| o.contains("SCAN-DONE"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("the scan printed nothing: {events:#?}"));
    assert!(
        scan.contains("hits=0"),
        "the real key is in the Modal Sandbox: {scan}"
    );
    assert!(!scan.contains("files=0 "), "the scan read no file: {scan}");
    // Every request reached the provider with the real key, and was metered.
    let requests = model.requests();
    assert!(!requests.is_empty(), "the provider saw no request");
    assert!(requests.iter().all(|r| r.status < 400), "{requests:?}");
    let (calls, input, output) = metered(&events);
    assert_eq!(calls as usize, requests.len(), "one model_call per request");
    assert_eq!(v["metered"], true, "{v:#}");
    assert!(input > 0 && output > 0, "{v:#}");
    assert!(!v.to_string().contains(&key));
    assert_eq!(f.violations(), Vec::<String>::new());
    assert_eq!(f.running(), Vec::new());
}

/// `errand sandbox prepare modal`: without a token it names everything
/// missing in one list and fails; against the fake it checks the token,
/// creates the app and builds the image (surviving the fake's broken build
/// stream), and warns while Modal Sandboxes have no route to the gateway.
#[tokio::test(flavor = "multi_thread")]
async fn sandbox_prepare_modal_checks_everything_and_lists_what_is_missing() {
    let Some(f) = fake().await else { return };
    let prepare = |env: &Env| {
        let out = env.run(&["sandbox", "prepare", "modal", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "no JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.success(), v)
    };

    // Nothing configured: one list, non-zero exit.
    let env = Env::new().var("MODAL_SERVER_URL", &f.url());
    let (ok, v) = prepare(&env);
    assert!(!ok, "{v:#}");
    assert_eq!(v["ready"], false);
    let missing = v["missing"].to_string();
    assert!(missing.contains("MODAL_TOKEN_ID"), "{missing}");
    assert!(missing.contains("sandbox.modal_image"), "{missing}");

    // A wrong secret: the token is refused, and nothing else is tried.
    let (id, _) = f.token();
    let env = Env::new()
        .var("MODAL_SERVER_URL", &f.url())
        .var("MODAL_TOKEN_ID", &id)
        .var("MODAL_TOKEN_SECRET", "not-the-secret")
        .var("ERRAND_SANDBOX_MODAL_IMAGE", "errand-agent:test");
    let (ok, v) = prepare(&env);
    assert!(!ok, "{v:#}");
    assert_eq!(v["missing"].as_array().map(Vec::len), Some(1), "{v:#}");
    assert!(v["app_id"].is_null() && v["image_id"].is_null(), "{v:#}");

    // The fake's token: ready, with the app and the image; a warning while
    // the gateway is not published for Modal.
    let env = on_fake_allowlisted(Env::new(), &f);
    let (ok, v) = prepare(&env);
    assert!(ok, "{v:#}\nfake: {:#?}", f.violations());
    assert_eq!(v["ready"], true);
    assert!(
        v["app_id"].as_str().is_some_and(|a| a.starts_with("ap-")),
        "{v:#}"
    );
    assert!(
        v["image_id"].as_str().is_some_and(|i| i.starts_with("im-")),
        "{v:#}"
    );
    assert!(
        v["warnings"].to_string().contains("gateway.modal_url"),
        "{v:#}"
    );
    let env = env
        .var("ERRAND_GATEWAY_MODAL_LISTEN", "127.0.0.1:0")
        .var("ERRAND_GATEWAY_MODAL_URL", "https://gateway.example.com");
    let (ok, v) = prepare(&env);
    assert!(ok, "{v:#}");
    assert_eq!(v["warnings"], serde_json::json!([]), "{v:#}");
    assert_eq!(f.violations(), Vec::<String>::new());
}

/// A server whose default sandbox is local and which also offers modal
/// (`sandbox.choices`): a run from the API that asks for modal runs in a
/// Modal Sandbox (the fake), as the image's user; one that asks for nothing
/// runs locally; one that asks for a backend not offered is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_from_the_api_chooses_its_sandbox_among_those_offered() {
    let Some(f) = fake().await else { return };
    ensure_claude();
    let model =
        model(r#"{"steps":[{"shell":"echo sandbox-uid=$(id -u)"},{"text":"Done."}]}"#).await;
    let env = on_fake(Env::new().with_model(&model), &f).var("ERRAND_SANDBOX_CHOICES", "modal");
    let token = api_token(&env, "t");
    let (_server, base) = serve(&env, "2");
    let http = reqwest::Client::new();
    let opts = api_get(&base, &token, "/api/v1/options").await;
    assert_eq!(
        opts["sandboxes"],
        serde_json::json!(["local", "modal"]),
        "{opts:#}"
    );
    let mut ids = Vec::new();
    for body in [
        serde_json::json!({"prompt": "who am I", "sandbox": "modal"}),
        serde_json::json!({"prompt": "who am I"}),
    ] {
        let v: serde_json::Value = http
            .post(format!("{base}/api/v1/runs"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        ids.push(v["id"].as_str().expect("id").to_string());
    }
    let refused = http
        .post(format!("{base}/api/v1/runs"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"prompt": "x", "sandbox": "docker"}))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status().as_u16(), 422);
    let mut uids = Vec::new();
    for id in &ids {
        let run = wait_ended(&base, &token, id).await;
        assert_eq!(run["state"], "succeeded", "{run:#}");
        let events = env.events(id);
        let out = of_type(&events, "tool_result")
            .iter()
            .filter_map(|r| r["output"].as_str())
            .find(|o| o.contains("sandbox-uid="))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no uid printed: {events:#?}"));
        uids.push((run["sandbox"].clone(), out));
    }
    assert_eq!(uids[0].0, "modal");
    assert!(uids[0].1.contains("sandbox-uid=10001"), "{uids:?}");
    assert!(uids[1].0.is_null());
    assert!(!uids[1].1.contains("sandbox-uid=10001"), "{uids:?}");
    // One Modal Sandbox: the modal run's, ended with it.
    assert_eq!(f.networks().len(), 1, "{:?}", f.networks());
    assert_eq!(f.running(), Vec::new());
    assert_eq!(f.violations(), Vec::<String>::new());
}

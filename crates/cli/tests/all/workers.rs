//! Several `errand worker` processes sharing one PostgreSQL: every run is
//! executed exactly once, by one of them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const AGENT: &str = r#"echo '{"type":"session_start","session_id":"synthetic"}'
echo '{"type":"tool_call","id":"t1","name":"Bash","input":{"command":"touch done.txt"}}'
touch done.txt
sleep 0.2
echo '{"type":"tool_result","id":"t1","output":"","is_error":false,"exit_code":0}'
echo '{"type":"result","is_error":false,"text":"Touched done.txt.","turns":1,"usage":{"input_tokens":1,"output_tokens":1}}'
"#;

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_on_one_postgresql_never_run_the_same_run_twice() {
    if !sandbox_available() {
        return;
    }
    let Some(url) = fresh_postgres("workers") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let agent_dir = root.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::fs::write(agent_dir.join("agent.sh"), AGENT).unwrap();
    let config = root.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[harness]]\nname = \"synthetic\"\ncommand = [\"/bin/sh\", \"/opt/errand/harness/agent.sh\"]\nformat = \"errand\"\ndir = \"{}\"\n[queue]\nlease_secs = 10\n",
            agent_dir.display()
        ),
    )
    .unwrap();
    let bare = bare_repo(root.path());
    let node = |name: &str| {
        let mut e = Env::new();
        e.home = root.path().join(name);
        e.var("ERRAND_DATABASE_URL", &url)
            .var("ERRAND_CONFIG", &config.to_string_lossy())
            .var("ERRAND_SERVER_LOCAL_REPOS", &root.path().to_string_lossy())
    };
    let api_node = node("api");
    let out = api_node.run(&["token", "create", "tests"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut api = api_node
        .command(&["serve", "--listen", "127.0.0.1:0", "--workers", "0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(api.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("address line").unwrap();
        if let Some(rest) = line.strip_prefix("errand serve: listening on ") {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let _api = Proc(api);
    let w1 = node("worker-1");
    let w2 = node("worker-2");
    let _workers: Vec<Proc> = [(&w1, "w1"), (&w2, "w2")]
        .into_iter()
        .map(|(e, id)| {
            Proc(
                e.command(&["worker", "--id", id, "--workers", "4"])
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();

    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..40 {
        let r: serde_json::Value = http
            .post(format!("{base}/api/runs"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"prompt": format!("run {i}"), "harness": "synthetic", "repo": bare.to_string_lossy()}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(r["id"].as_str().expect("id").to_string());
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let v: serde_json::Value = http
            .get(format!("{base}/api/runs?limit=100"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let runs = v["runs"].as_array().cloned().unwrap_or_default();
        if runs.len() == 40 && runs.iter().all(|r| r["state"] == "succeeded") {
            break;
        }
        assert!(runs.iter().all(|r| r["state"] != "failed"), "{v:#}");
        assert!(Instant::now() < deadline, "runs did not finish: {v:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for id in &ids {
        let v: serde_json::Value = http
            .get(format!("{base}/api/runs/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let preparing = v["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "preparing")
            .count();
        assert_eq!(preparing, 1, "{id} started more than once: {v:#}");
        let body = http
            .get(format!("{base}/api/runs/{id}/events"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            body.matches("\"type\":\"session_start\"").count(),
            1,
            "{id}: {body}"
        );
    }
    // Each run's workspace exists on exactly one worker's machine, and both worked.
    let on = |e: &Env| -> std::collections::BTreeSet<String> {
        std::fs::read_dir(e.home.join("runs"))
            .map(|d| {
                d.filter_map(|x| x.ok())
                    .map(|x| x.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (a, b) = (on(&w1), on(&w2));
    let elsewhere = on(&api_node);
    assert!(
        elsewhere.is_empty(),
        "the API-only node ran {} run(s)",
        elsewhere.len()
    );
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both workers ran something: {} and {}",
        a.len(),
        b.len()
    );
    assert!(a.is_disjoint(&b));
    assert_eq!(a.len() + b.len(), 40);
}

/// A run that asks for a sandbox backend this worker does not offer (queued by
/// another node with other `sandbox.choices`) ends failed with the reason,
/// and its trace says so; it is never run on another backend instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_asking_for_a_sandbox_this_worker_lacks_fails_with_the_reason() {
    let env = Env::new();
    std::fs::create_dir_all(&env.home).expect("home");
    let store = errand_store::open_url(&format!(
        "sqlite://{}",
        env.home.join("errand.db").display()
    ))
    .await
    .expect("store");
    let mut spec = errand_core::RunSpec::new("p", "claude-code");
    spec.sandbox = Some("docker".into());
    let id = errand_core::RunId::new();
    store.create_run(id, &spec).await.expect("run");
    drop(store);
    let token = api_token(&env, "t");
    let (_server, base) = serve(&env, "1");
    let run = wait_ended(&base, &token, &id.to_string()).await;
    assert_eq!(run["state"], "failed", "{run:#}");
    let reason = run["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("asks for the docker sandbox") && reason.contains("sandbox.choices"),
        "{reason}"
    );
    // Never started anywhere: queued, then failed.
    let states: Vec<&str> = run["transitions"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["state"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(states, ["queued", "failed"], "{run:#}");
    // Its trace ends with the state, so streams of it end.
    let trace = reqwest::Client::new()
        .get(format!("{base}/api/v1/runs/{id}/events"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("events")
        .text()
        .await
        .expect("text");
    let last: serde_json::Value =
        serde_json::from_str(trace.lines().last().unwrap_or("null")).expect("JSON");
    assert_eq!(
        (last["type"].as_str(), last["state"].as_str()),
        (Some("state"), Some("failed")),
        "{trace}"
    );
}

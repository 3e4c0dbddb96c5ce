//! `errand serve` drains on SIGTERM: it claims nothing new, lets a run that
//! finishes within `server.drain_grace_secs` finish, and gives a longer one
//! back to the queue (not failed), where another node picks it up.
//!
//! The agent waits for a file `go` in its /tmp, which the test creates
//! from the host, so which run finishes during the drain is decided by the
//! test, not by timing.

use std::time::{Duration, Instant};

use crate::common::*;

const AGENT: &str = r#"echo '{"type":"session_start","session_id":"synthetic"}'
while [ ! -e /tmp/go ]; do sleep 0.1; done
rm -f /tmp/go
echo "$ERRAND_PROMPT" > done.txt
echo '{"type":"result","is_error":false,"text":"done","turns":1,"usage":{"input_tokens":1,"output_tokens":1}}'
"#;

/// A node: its own data directory, the shared SQLite database and config.
fn node(root: &std::path::Path, name: &str, db: &str, config: &std::path::Path) -> Env {
    let mut e = Env::new();
    e.home = root.join(name);
    e.var("ERRAND_DATABASE_URL", db)
        .var("ERRAND_CONFIG", &config.to_string_lossy())
        .var("ERRAND_SERVER_LOCAL_REPOS", &root.to_string_lossy())
        .var("ERRAND_SERVER_WORKER_ID", name)
}

async fn get(base: &str, token: &str, id: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{base}/api/runs/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls until the run is `running`. The limit only detects a hang.
async fn wait_running(base: &str, token: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let v = get(base, token, id).await;
        if v["state"] == "running" {
            return;
        }
        assert!(!ended(&v), "the run ended early: {v:#}");
        assert!(Instant::now() < deadline, "never running: {v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn show(env: &Env, id: &str) -> serde_json::Value {
    let out = env.run(&["show", id, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_a_short_run_and_gives_a_long_one_to_the_next_node() {
    if !sandbox_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let agent_dir = root.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::fs::write(agent_dir.join("agent.sh"), AGENT).unwrap();
    let config = root.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[harness]]\nname = \"synthetic\"\ncommand = [\"/bin/sh\", \"/opt/errand/harness/agent.sh\"]\nformat = \"errand\"\ndir = \"{}\"\n[server]\ndrain_grace_secs = 20\n[queue]\nlease_secs = 10\n",
            agent_dir.display()
        ),
    )
    .unwrap();
    let bare = bare_repo(root.path());
    let db = root.path().join("shared.db").to_string_lossy().into_owned();
    let a = node(root.path(), "node-a", &db, &config);
    let token = api_token(&a, "tests");
    let (mut serve_a, base) = serve(&a, "2");

    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for prompt in ["short", "long"] {
        let r: serde_json::Value = http
            .post(format!("{base}/api/runs"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"prompt": prompt, "harness": "synthetic", "repo": bare.to_string_lossy()}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(r["id"].as_str().expect("id").to_string());
    }
    let (short, long) = (ids[0].clone(), ids[1].clone());
    for id in &ids {
        wait_running(&base, &token, id).await;
    }

    // SIGTERM, then let the short run finish while the node drains.
    let pid = serve_a.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    // The agent's /tmp: its workspace is an overlay, which does not promise
    // to show a file written into its layer from outside while mounted.
    let tmp = |home: &std::path::Path, id: &str| home.join("runs").join(id).join("tmp");
    std::fs::write(tmp(&a.home, &short).join("go"), "").unwrap();
    let status = serve_a.0.wait().unwrap();
    assert!(status.success(), "errand serve exited with {status}");

    let s = show(&a, &short);
    assert_eq!(s["state"], "succeeded", "{s:#}");
    let l = show(&a, &long);
    assert_eq!(l["state"], "queued", "{l:#}");
    let reason = l["transitions"][3]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("node draining"), "{l:#}");
    assert_eq!(l["error"].as_str(), Some(reason), "{l:#}");
    let states: Vec<&str> = l["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["state"].as_str())
        .collect();
    assert_eq!(
        states,
        ["queued", "preparing", "running", "queued"],
        "{l:#}"
    );

    // Another node claims it at once (no lease to wait out) and runs it.
    let b = node(root.path(), "node-b", &db, &config);
    let (_serve_b, base_b) = serve(&b, "1");
    wait_running(&base_b, &token, &long).await;
    std::fs::write(tmp(&b.home, &long).join("go"), "").unwrap();
    let done = wait_ended(&base_b, &token, &long).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let preparing = done["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "preparing")
        .count();
    assert_eq!(preparing, 2, "{done:#}");

    // One event log across both nodes: numbered without gaps or repeats, the
    // release and both starts in it.
    let body = reqwest::Client::new()
        .get(format!("{base_b}/api/runs/{long}/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "{body}"
    );
    let states: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "state")
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(
        states,
        [
            "preparing",
            "running",
            "queued",
            "preparing",
            "running",
            "finishing",
            "succeeded"
        ],
        "{body}"
    );
}

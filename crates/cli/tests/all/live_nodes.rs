//! Events are pushed to stream clients on every node of one PostgreSQL
//! database (LISTEN/NOTIFY), and a node that dies while its clients stream
//! loses them nothing: they reconnect to another node with `Last-Event-ID`
//! and get exactly the rest. Node A runs the run; node B runs no worker, so
//! everything its clients get was stored by another process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::common::*;

const EVENTS: usize = 120;

fn agent() -> String {
    format!(
        "echo '{{\"type\":\"session_start\",\"session_id\":\"synthetic\"}}'\ni=0\nwhile [ $i -lt {EVENTS} ]; do\n  echo \"{{\\\"type\\\":\\\"notice\\\",\\\"message\\\":\\\"n$i\\\"}}\"\n  i=$((i+1)); sleep 0.03\ndone\necho '{{\"type\":\"result\",\"is_error\":false,\"text\":\"done\",\"turns\":1,\"usage\":{{\"input_tokens\":1,\"output_tokens\":1}}}}'\n"
    )
}

/// How a stream ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// `event: end`: the run is over and the client holds all of it.
    End,
    /// The connection broke (the node died).
    Broken,
}

/// Streams from `base` after `after`, appending each event's id to `seqs`
/// (and counting them in `seen`), until `end` or a broken connection.
async fn stream(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    seqs: &mut Vec<u64>,
    seen: &AtomicUsize,
) -> Ending {
    let mut req = http
        .get(format!("{base}/api/v1/runs/{id}/events/stream"))
        .bearer_auth(token);
    if let Some(last) = seqs.last() {
        req = req.header("Last-Event-ID", last.to_string());
    }
    let Ok(resp) = req.send().await else {
        return Ending::Broken;
    };
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return Ending::Broken;
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            if block.lines().any(|l| l == "event: end") {
                return Ending::End;
            }
            if let Some(seq) = block
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .and_then(|s| s.trim().parse::<u64>().ok())
            {
                seqs.push(seq);
                seen.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ending::Broken
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_of_a_killed_node_resume_on_another_with_nothing_lost() {
    if !sandbox_available() {
        return;
    }
    let Some(url) = fresh_postgres("live_nodes") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let agent_dir = root.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::fs::write(agent_dir.join("agent.sh"), agent()).unwrap();
    let config = root.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[harness]]\nname = \"synthetic\"\ncommand = [\"/bin/sh\", \"/opt/errand/harness/agent.sh\"]\nformat = \"errand\"\ndir = \"{}\"\n",
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
            .var("ERRAND_SERVER_WORKER_ID", name)
    };
    let (a, b) = (node("node-a"), node("node-b"));
    let token = api_token(&a, "tests");
    let (_serve_a, base_a) = serve(&a, "1");
    let (mut serve_b, base_b) = serve(&b, "0");

    let http = reqwest::Client::new();
    let r: serde_json::Value = http
        .post(format!("{base_a}/api/v1/runs"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"prompt": "count", "harness": "synthetic", "repo": bare.to_string_lossy()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["id"].as_str().expect("id").to_string();

    // Six clients on each node, from the run's start.
    let seen_b = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for (base, on_b) in [(base_a.clone(), false), (base_b.clone(), true)] {
        for _ in 0..6 {
            let (http, token, id, base_a) =
                (http.clone(), token.clone(), id.clone(), base_a.clone());
            let seen = if on_b {
                seen_b.clone()
            } else {
                Arc::new(AtomicUsize::new(0))
            };
            let base = base.clone();
            clients.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                let mut broken = 0;
                let mut at = base;
                loop {
                    match stream(&http, &at, &token, &id, &mut seqs, &seen).await {
                        Ending::End => return (on_b, seqs, broken),
                        Ending::Broken => {
                            // Its node is gone: resume on the other one.
                            broken += 1;
                            assert!(broken < 20, "cannot resume: {seqs:?}");
                            at = base_a.clone();
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }));
        }
    }

    // Kill node B once its clients are well into the run (and before its end).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while seen_b.load(Ordering::Relaxed) < 6 * 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "node B's clients got nothing pushed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serve_b.0.kill().unwrap();
    serve_b.0.wait().unwrap();

    let run = wait_ended(&base_a, &token, &id).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let stored: Vec<u64> = http
        .get(format!("{base_a}/api/v1/runs/{id}/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(stored.len() > EVENTS, "{} events stored", stored.len());
    assert_eq!(stored, (1..=stored.len() as u64).collect::<Vec<_>>());
    for c in clients {
        let (on_b, seqs, broken) = tokio::time::timeout(Duration::from_secs(120), c)
            .await
            .expect("a client never got the end")
            .unwrap();
        assert_eq!(
            seqs,
            stored,
            "a client on node {} lost or repeated events",
            if on_b { "B" } else { "A" }
        );
        if on_b {
            assert!(broken >= 1, "node B's client never saw its node die");
        } else {
            assert_eq!(broken, 0);
        }
    }
}

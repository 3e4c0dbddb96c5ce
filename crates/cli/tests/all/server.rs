//! `errand serve` end to end: the real binary, its HTTP API, live streams,
//! auth, share links, follow-ups and restarts, with the real Claude Code
//! under the scripted model in the local sandbox.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

struct Server {
    proc: Proc,
    base: String,
}

fn start(env: &Env, workers: &str) -> Server {
    let (proc, base) = serve(env, workers);
    Server { proc, base }
}

fn token(env: &Env) -> String {
    api_token(env, "tests")
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn wait_for(&self, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, v) = self
                .call(reqwest::Method::GET, &format!("/api/v1/runs/{id}"), None)
                .await;
            if pred(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "gave up waiting: {v:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Reads a whole SSE stream from `after`: the (id, event) pairs, and whether `end` came.
    async fn stream(&self, path: &str, after: Option<u64>) -> (Vec<(u64, Value)>, bool) {
        let mut rb = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(a) = after {
            rb = rb.header("last-event-id", a.to_string());
        }
        let text = tokio::time::timeout(Duration::from_secs(120), async {
            rb.send().await.expect("stream").text().await.expect("body")
        })
        .await
        .expect("the stream ended");
        parse_sse(&text)
    }
}

fn parse_sse(text: &str) -> (Vec<(u64, Value)>, bool) {
    let mut out = Vec::new();
    let mut ended = false;
    for block in text.split("\n\n") {
        let mut id = None;
        let mut kind = "message";
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse::<u64>().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = if v.trim() == "end" { "end" } else { "event" };
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        match (kind, id) {
            ("end", _) => ended = true,
            ("event", Some(id)) => out.push((id, serde_json::from_str(&data).expect("event JSON"))),
            _ => {}
        }
    }
    (out, ended)
}

const TWO_TURNS: &str = r#"{"steps":[
    {"read":"src/lib.rs"},
    {"tool":"Edit","input":{"file_path":"/workspace/src/lib.rs","old_string":"\"helo\"","new_string":"\"hello\""}},
    {"text":"Fixed the typo."},
    {"shell":"echo second turn > NOTES.txt && cat NOTES.txt"},
    {"text":"Added NOTES.txt as asked."}
]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_api_creates_streams_resumes_follows_up_and_shares_runs() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let model = model(TWO_TURNS).await;
    let env = Env::new().allow_local_repos();
    let bare = bare_repo(env.dir.path());
    let env = env.with_model(&model);
    let token = token(&env);
    let server = start(&env, "2");
    let http = reqwest::Client::new();
    let api = Api {
        http: http.clone(),
        base: server.base.clone(),
        token: token.clone(),
    };

    // Authentication: none, wrong, revoked → 401 with a stable code.
    let r = http
        .get(format!("{}/api/v1/runs", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthorized");
    let wrong = Api {
        token: "errand_wrong".into(),
        ..Api {
            http: http.clone(),
            base: server.base.clone(),
            token: String::new(),
        }
    };
    assert_eq!(
        wrong
            .call(reqwest::Method::GET, "/api/v1/runs", None)
            .await
            .0,
        401
    );
    // Bad input gets a clear 422.
    let (s, v) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/runs",
            Some(json!({"prompt": "x", "harness": "devin"})),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(v["error"]["code"], "invalid_request");
    let (s, _) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/runs",
            Some(json!({"prompt": " "})),
        )
        .await;
    assert_eq!(s, 422);
    let (s, v) = api
        .call(reqwest::Method::GET, "/api/v1/runs/ffffffff", None)
        .await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));

    // Create and stream live.
    let (s, run) = api
        .call(reqwest::Method::POST, "/api/v1/runs", Some(json!({"prompt": "fix the typo", "repo": bare.to_string_lossy(), "model": "claude-sonnet-4-5"})))
        .await;
    assert_eq!(s, 201, "{run:#}");
    assert_eq!(run["requested_by"], "api:tests", "runs record who asked");
    assert_eq!(run["origin"]["kind"], "api");
    let id = run["id"].as_str().unwrap().to_string();
    let (events, ended) = api
        .stream(&format!("/api/v1/runs/{id}/events/stream"), None)
        .await;
    assert!(ended);
    let seqs: Vec<u64> = events.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "gap-free, in order"
    );
    assert!(events.iter().all(|(s, e)| e["seq"] == *s));
    let last = &events.last().unwrap().1;
    assert_eq!(
        (last["type"].as_str(), last["state"].as_str()),
        (Some("state"), Some("succeeded")),
        "{last:#}"
    );
    let v = api.wait_for(&id, |v| v["state"] == "succeeded").await;
    assert!(v["cost_usd"].as_f64().unwrap_or(0.0) > 0.0);
    assert_eq!(v["transitions"].as_array().map(|t| t.len()), Some(5));

    // Resuming from every position gives exactly the rest of the stream.
    let n = events.len() as u64;
    for k in 0..=n {
        let (rest, ended) = api
            .stream(&format!("/api/v1/runs/{id}/events/stream"), Some(k))
            .await;
        assert!(ended, "from {k}");
        assert_eq!(
            rest.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            (k + 1..=n).collect::<Vec<_>>(),
            "from {k}"
        );
    }
    // The same events as JSON lines, and the raw harness lines.
    let body = http
        .get(format!("{}/api/v1/runs/{id}/events?after=2", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body.lines().count() as u64, n - 2);
    let raw = http
        .get(format!("{}/api/v1/runs/{id}/events?raw=1", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        raw.lines()
            .next()
            .unwrap_or("")
            .contains("\"subtype\":\"init\""),
        "{raw}"
    );

    // A follow-up continues the same session, workspace and trace.
    let (s, v) = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/runs/{id}/messages"),
            Some(json!({"message": "now add NOTES.txt"})),
        )
        .await;
    assert_eq!(s, 202, "{v:#}");
    let (more, ended) = api
        .stream(&format!("/api/v1/runs/{id}/events/stream"), Some(n))
        .await;
    assert!(ended);
    assert_eq!(
        more.first().map(|(s, _)| *s),
        Some(n + 1),
        "appended to the same trace"
    );
    assert!(more
        .iter()
        .any(|(_, e)| e["type"] == "user_message" && e["text"] == "now add NOTES.txt"));
    let out: Vec<&str> = more
        .iter()
        .filter(|(_, e)| e["type"] == "tool_result")
        .filter_map(|(_, e)| e["output"].as_str())
        .collect();
    assert!(out.iter().any(|o| o.contains("second turn")), "{out:?}");
    let v = api.wait_for(&id, |v| v["state"] == "succeeded").await;
    let branch = v["branch"].as_str().unwrap();
    assert_eq!(
        v["diffstat"], "2 files changed, 2 insertions(+), 1 deletion(-)",
        "both turns on one branch: {v:#}"
    );
    assert!(branch.starts_with("errand/"));

    // Share links: read one run, nothing else, until revoked.
    let (s, share) = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/runs/{id}/share"),
            None,
        )
        .await;
    assert_eq!(s, 201);
    let secret = share["token"].as_str().unwrap();
    let shared: Value = http
        .get(format!("{}/share/{secret}", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shared["id"], id.as_str());
    let ev = http
        .get(format!("{}/share/{secret}/events", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(ev.lines().count() as u64 > n);
    let as_bearer = Api {
        http: http.clone(),
        base: server.base.clone(),
        token: secret.to_string(),
    };
    assert_eq!(
        as_bearer
            .call(reqwest::Method::GET, "/api/v1/runs", None)
            .await
            .0,
        401,
        "a share link is no API token"
    );
    assert_eq!(
        as_bearer
            .call(reqwest::Method::GET, &format!("/api/v1/runs/{id}"), None)
            .await
            .0,
        401
    );
    api.call(
        reqwest::Method::DELETE,
        &format!("/api/v1/runs/{id}/share"),
        None,
    )
    .await;
    assert_eq!(
        http.get(format!("{}/share/{secret}", server.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );

    // Listing, OpenAPI, health and metrics.
    let (_, list) = api
        .call(
            reqwest::Method::GET,
            "/api/v1/runs?state=succeeded&harness=claude-code",
            None,
        )
        .await;
    assert_eq!(list["runs"].as_array().map(|r| r.len()), Some(1));
    let doc: Value = http
        .get(format!("{}/api/v1/openapi.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in [
        "/api/v1/runs",
        "/api/v1/runs/{id}/events/stream",
        "/api/v1/runs/{id}/messages",
        "/share/{token}",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} is documented");
    }
    assert_eq!(
        http.get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        http.get(format!("{}/readyz", server.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let metrics = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("errand_runs{state=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("errand_queue_depth 0"));

    // The CLI talks to the server too.
    let env_remote = Env {
        dir: tempfile::tempdir().unwrap(),
        home: env.dir.path().join("other-home"),
        vars: vec![],
    }
    .var("ERRAND_SERVER", &server.base)
    .var("ERRAND_TOKEN", &token);
    let ls = env_remote.run(&["ls"]);
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains(&id[..8]),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let logs = env_remote.run(&["logs", "--json", &id[..8]]);
    assert!(String::from_utf8_lossy(&logs.stdout).lines().count() as u64 > n);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_works_queued_and_running_and_a_killed_server_accounts_for_every_run() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let model = model(r#"{"steps":[{"shell":"sleep 3301"},{"text":"slept"}]}"#).await;
    let env = Env::new().allow_local_repos();
    let bare = bare_repo(env.dir.path());
    let env = env.with_model(&model);
    let token = token(&env);
    let server = start(&env, "1");
    let api = Api {
        http: reqwest::Client::new(),
        base: server.base.clone(),
        token,
    };
    let create = |api: &Api| {
        let body = json!({"prompt": "wait", "repo": bare.to_string_lossy()});
        let api = Api {
            http: api.http.clone(),
            base: api.base.clone(),
            token: api.token.clone(),
        };
        async move {
            api.call(reqwest::Method::POST, "/api/v1/runs", Some(body))
                .await
                .1["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    // One worker slot: the first run runs, the second waits in the queue.
    let first = create(&api).await;
    api.wait_for(&first, |v| v["state"] == "running").await;
    let second = create(&api).await;
    let third = create(&api).await;
    // Cancel a queued run: it ends at once.
    let (s, v) = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/runs/{third}/cancel"),
            None,
        )
        .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("cancelled")), "{v:#}");
    // Cancel a running run: its sandbox is stopped.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ps_has("sleep 3301") {
        assert!(
            Instant::now() < deadline,
            "the agent never started sleeping"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    api.call(
        reqwest::Method::POST,
        &format!("/api/v1/runs/{first}/cancel"),
        None,
    )
    .await;
    let v = api.wait_for(&first, |v| v["state"] == "cancelled").await;
    assert_eq!(v["reason"], "cancelled by `errand cancel`");
    // The second now runs; kill the server with SIGKILL in the middle of it.
    api.wait_for(&second, |v| v["state"] == "running").await;
    while !ps_has("sleep 3301") {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fourth = create(&api).await;
    let mut server = server;
    // SIGKILL: no chance to clean up.
    server.proc.0.kill().unwrap();
    server.proc.0.wait().unwrap();
    drop(server);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!ps_has("sleep 3301"), "the sandbox died with the server");

    // Restart: the interrupted run fails with the reason, the queued one still runs.
    let model2 = self::model(r#"{"steps":[{"text":"done quickly"}]}"#).await;
    let env = Env {
        vars: env
            .vars
            .into_iter()
            .filter(|(k, _)| !k.starts_with("ANTHROPIC"))
            .collect(),
        ..env
    }
    .with_model(&model2);
    let server = start(&env, "1");
    let api = Api {
        base: server.base.clone(),
        ..api
    };
    let v = api.wait_for(&second, |v| v["state"] == "failed").await;
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("orchestrator restarted"),
        "{v:#}"
    );
    let v = api.wait_for(&fourth, |v| v["state"] == "succeeded").await;
    assert_eq!(v["turns"], 1);
    // Every run's event log is whole: gap-free and ending in its final state.
    for id in [&first, &second, &third, &fourth] {
        let body = api
            .http
            .get(format!("{}/api/v1/runs/{id}/events", api.base))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let evs: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let seqs: Vec<u64> = evs.iter().filter_map(|e| e["seq"].as_u64()).collect();
        assert_eq!(
            seqs,
            (1..=evs.len() as u64).collect::<Vec<_>>(),
            "{id}: {body}"
        );
        if id != &third {
            let last = evs.last().unwrap();
            assert_eq!(last["type"], "state", "{id}: {body}");
        }
    }
}

fn ps_has(needle: &str) -> bool {
    let out = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.contains(needle) && !l.contains("ps -eo"))
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_follow_ups_continue_its_thread() {
    if !sandbox_available() {
        return;
    }
    ensure_codex();
    let model = model(
        r#"{"steps":[
        {"shell":"echo one > one.txt"},
        {"text":"Wrote one.txt."},
        {"shell":"cat one.txt && echo two > two.txt"},
        {"text":"Wrote two.txt after reading one.txt."}
    ]}"#,
    )
    .await;
    let env = Env::new().allow_local_repos();
    let bare = bare_repo(env.dir.path());
    let env = env.with_openai_model(&model);
    let token = token(&env);
    let server = start(&env, "1");
    let api = Api {
        http: reqwest::Client::new(),
        base: server.base.clone(),
        token,
    };
    let (s, run) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/runs",
            Some(
                json!({"prompt": "write one", "harness": "codex", "repo": bare.to_string_lossy()}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{run:#}");
    let id = run["id"].as_str().unwrap().to_string();
    let first = api
        .wait_for(&id, |v| v["state"] == "succeeded" || v["state"] == "failed")
        .await;
    assert_eq!(first["state"], "succeeded", "{first:#}");
    let (turn1, _) = api
        .stream(&format!("/api/v1/runs/{id}/events/stream"), None)
        .await;
    let n = turn1.last().map(|(s, _)| *s).unwrap_or(0);
    let (s, v) = api
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/runs/{id}/messages"),
            Some(json!({"message": "now write two"})),
        )
        .await;
    assert_eq!(s, 202, "{v:#}");
    let (turn2, ended) = api
        .stream(&format!("/api/v1/runs/{id}/events/stream"), Some(n))
        .await;
    assert!(ended);
    assert_eq!(turn2.first().map(|(s, _)| *s), Some(n + 1));
    let events: Vec<(u64, Value)> = turn1.into_iter().chain(turn2).collect();
    let v = api
        .wait_for(&id, |v| v["state"] == "succeeded" || v["state"] == "failed")
        .await;
    assert_eq!(v["state"], "succeeded", "{v:#}");
    let outputs: Vec<&str> = events
        .iter()
        .filter(|(_, e)| e["type"] == "tool_result")
        .filter_map(|(_, e)| e["output"].as_str())
        .collect();
    assert!(
        outputs.iter().any(|o| o.contains("one")),
        "the second turn read the first turn's file: {outputs:?}"
    );
    let sessions: Vec<&str> = events
        .iter()
        .filter(|(_, e)| e["type"] == "session_start")
        .filter_map(|(_, e)| e["session_id"].as_str())
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0], sessions[1], "the same codex thread");
    assert_eq!(v["diffstat"], "2 files changed, 2 insertions(+)", "{v:#}");
}

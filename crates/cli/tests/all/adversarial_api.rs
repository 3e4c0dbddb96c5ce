//! The API and the Slack and GitHub routes, tried as an attacker would against
//! the real `errand serve`:
//!
//! * a token does only what its scopes allow (read, run, admin);
//! * a run from the API never clones a directory of the server outside
//!   `server.local_repos`, whatever form the repository string takes;
//! * a captured Slack command or GitHub delivery, sent again (re-signed, with
//!   a new or no delivery id), starts nothing, even after errand restarts.

use std::path::Path;

use crate::common::github::{world, WEBHOOK_SECRET};
use crate::common::*;
use serde_json::{json, Value};

async fn call(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn token_with(env: &Env, name: &str, scope: Option<&str>) -> String {
    let mut args = vec!["token", "create", name];
    if let Some(s) = scope {
        args.extend(["--scope", s]);
    }
    let out = env.run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Stops `errand serve` as an operator would (SIGTERM), and waits for it.
fn stop(mut p: Proc) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = p.0.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = p.0.kill();
    let _ = p.0.wait();
}

/// A custom harness that does nothing, so runs the tests start end at once.
fn add_noop_harness(env: Env) -> Env {
    let config = env.home.join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    text.push_str(
        "\n[[harness]]\nname = \"noop\"\ncommand = [\"/bin/sh\", \"-c\", \"exit 0\"]\nformat = \"errand\"\n",
    );
    std::fs::create_dir_all(&env.home).expect("home");
    std::fs::write(&config, text).expect("config");
    env.var("ERRAND_SERVER_DEFAULT_HARNESS", "noop")
}

#[tokio::test(flavor = "multi_thread")]
async fn each_token_does_only_what_its_scopes_allow() {
    let env = add_noop_harness(Env::new());
    let read = token_with(&env, "reader", Some("read"));
    let run = token_with(&env, "runner", Some("run"));
    let admin = token_with(&env, "admin", Some("admin"));
    let default = token_with(&env, "default", None);
    let bad = env.run(&["token", "create", "x", "--scope", "read,root"]);
    assert!(!bad.status.success(), "an unknown scope is refused");
    let listed = String::from_utf8_lossy(&env.run(&["token", "list"]).stdout).into_owned();
    assert!(
        listed
            .lines()
            .any(|l| l.contains("default") && l.ends_with("read,run")),
        "the default scopes are read,run: {listed}"
    );
    let (server, base) = serve(&env, "1");
    let http = reqwest::Client::new();
    use reqwest::Method as M;
    let new_run = || Some(json!({"prompt": "p", "harness": "noop"}));

    // A run-scoped token starts a run (and sees it in the answer), but cannot
    // list runs or manage tokens.
    let (status, created) = call(&http, &base, &run, M::POST, "/api/v1/runs", new_run()).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    for (method, path) in [
        (M::GET, "/api/v1/runs".to_string()),
        (M::GET, format!("/api/v1/runs/{id}/events")),
    ] {
        let (status, v) = call(&http, &base, &run, method, &path, None).await;
        assert_eq!((status, code(&v)), (403, "insufficient_scope"), "{path}");
    }

    // Token management: admin only.
    let admin_calls = |victim: String| {
        vec![
            (M::GET, "/api/v1/tokens".to_string(), None),
            (
                M::POST,
                "/api/v1/tokens".to_string(),
                Some(json!({"name": "escalated", "scopes": ["read", "run", "admin"]})),
            ),
            (M::DELETE, format!("/api/v1/tokens/{victim}"), None),
        ]
    };
    let (_, tokens) = call(&http, &base, &admin, M::GET, "/api/v1/tokens", None).await;
    let admin_id = tokens["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["name"] == "admin")
        .and_then(|t| t["id"].as_str())
        .expect("the admin token is listed")
        .to_string();
    assert!(
        !tokens.to_string().contains(&admin),
        "a listing shows no secret"
    );
    for who in [&read, &run, &default] {
        for (method, path, body) in admin_calls(admin_id.clone()) {
            let (status, v) = call(&http, &base, who, method, &path, body).await;
            assert_eq!((status, code(&v)), (403, "insufficient_scope"), "{path}");
        }
    }

    // A read-scoped token reads, and cannot start, cancel, continue or share.
    let (status, v) = call(
        &http,
        &base,
        &read,
        M::GET,
        &format!("/api/v1/runs/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    for (method, path, body) in [
        (M::POST, "/api/v1/runs".to_string(), new_run()),
        (M::POST, format!("/api/v1/runs/{id}/cancel"), None),
        (
            M::POST,
            format!("/api/v1/runs/{id}/messages"),
            Some(json!({"message": "more"})),
        ),
        (M::POST, format!("/api/v1/runs/{id}/share"), None),
        (M::DELETE, format!("/api/v1/runs/{id}/share"), None),
    ] {
        let (status, v) = call(&http, &base, &read, method, &path, body).await;
        assert_eq!((status, code(&v)), (403, "insufficient_scope"), "{path}");
    }
    // An admin token administers, and neither reads nor starts runs.
    for (method, path, body) in [
        (M::GET, "/api/v1/runs".to_string(), None),
        (M::POST, "/api/v1/runs".to_string(), new_run()),
    ] {
        let (status, v) = call(&http, &base, &admin, method, &path, body).await;
        assert_eq!((status, code(&v)), (403, "insufficient_scope"), "{path}");
    }
    // The default token reads and runs.
    let (status, _) = call(&http, &base, &default, M::GET, "/api/v1/runs", None).await;
    assert_eq!(status, 200);
    let (status, v) = call(&http, &base, &default, M::POST, "/api/v1/runs", new_run()).await;
    assert_eq!(status, 201, "{v}");

    // None of the refused requests changed anything.
    let (_, runs) = call(&http, &base, &read, M::GET, "/api/v1/runs", None).await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(2), "{runs:#}");
    let (_, tokens) = call(&http, &base, &admin, M::GET, "/api/v1/tokens", None).await;
    let tokens = tokens["tokens"].as_array().cloned().unwrap_or_default();
    assert!(tokens
        .iter()
        .all(|t| t["name"] != "escalated" && t["revoked"] == false));
    // And the admin token does manage tokens.
    let (status, v) = call(
        &http,
        &base,
        &admin,
        M::DELETE,
        &format!("/api/v1/tokens/{admin_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = call(&http, &base, &admin, M::GET, "/api/v1/tokens", None).await;
    assert_eq!(status, 401, "a revoked token is refused");
    drop(server);
}

/// The repository strings an attacker would try, for a server whose
/// `local_repos` is `allowed` (and whose secret directory is `secret`).
fn local_forms(allowed: &Path, secret: &Path) -> Vec<String> {
    let a = allowed.to_string_lossy();
    let s = secret.to_string_lossy();
    vec![
        s.to_string(),
        format!("file://{s}"),
        format!("FILE://{s}"),
        format!("file://localhost{s}"),
        format!("{a}/../secret"),
        format!("{a}/repo/../../secret"),
        format!("{a}/escape"), // a symlink to the secret
        format!("file://{a}/escape"),
        format!("{a}/repo%2f..%2f..%2fsecret"),
        "/etc".into(),
        "file:///etc".into(),
        "file:/etc".into(),
        "../../../../../../etc".into(),
        "secret".into(),
        ".".into(),
        "~".into(),
        "~/.ssh".into(),
        "--upload-pack=touch /tmp/errand-adversarial-pwned".into(),
        "-u touch /tmp/errand-adversarial-pwned".into(),
        "ext::sh -c touch% /tmp/errand-adversarial-pwned".into(),
        "fd::0".into(),
        "localhost:/etc".into(),
        format!("ssh://localhost{s}"),
        format!("git@127.0.0.1:{s}"),
        "http://2130706433/secret.git".into(),
        "https://[::1]/secret.git".into(),
        format!("{a}/repo\n{s}"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn local_repositories_are_refused_unless_under_local_repos() {
    let env = add_noop_harness(Env::new());
    let root = env.dir.path().canonicalize().expect("dir");
    let allowed = root.join("allowed");
    let secret = root.join("secret");
    std::fs::create_dir_all(&allowed).expect("mkdir");
    std::fs::create_dir_all(&secret).expect("mkdir");
    let repo = bare_repo(&allowed);
    std::fs::rename(&repo, allowed.join("repo")).expect("rename");
    let repo = allowed.join("repo");
    // The secret directory is a repository too, so a clone of it would work.
    bare_repo(&secret);
    std::os::unix::fs::symlink(&secret, allowed.join("escape")).expect("symlink");
    let token = token_with(&env, "runner", Some("read,run"));
    let http = reqwest::Client::new();
    let create = |repo: &str| Some(json!({"prompt": "p", "harness": "noop", "repo": repo}));

    // By default, no local repository at all.
    let (server, base) = serve(&env, "1");
    let mut forms = local_forms(&allowed, &secret);
    forms.push(repo.to_string_lossy().into_owned());
    for form in &forms {
        let (status, v) = call(
            &http,
            &base,
            &token,
            reqwest::Method::POST,
            "/api/v1/runs",
            create(form),
        )
        .await;
        assert_eq!(
            (status, code(&v)),
            (403, "local_repo_not_allowed"),
            "{form:?}: {v}"
        );
    }
    stop(server);

    // With server.local_repos: what resolves under it, and nothing else.
    let env = env.var("ERRAND_SERVER_LOCAL_REPOS", &allowed.to_string_lossy());
    let (server, base) = serve(&env, "1");
    for form in local_forms(&allowed, &secret) {
        let (status, v) = call(
            &http,
            &base,
            &token,
            reqwest::Method::POST,
            "/api/v1/runs",
            create(&form),
        )
        .await;
        assert_eq!(
            (status, code(&v)),
            (403, "local_repo_not_allowed"),
            "{form:?}: {v}"
        );
    }
    let (_, runs) = call(
        &http,
        &base,
        &token,
        reqwest::Method::GET,
        "/api/v1/runs",
        None,
    )
    .await;
    assert_eq!(
        runs["runs"].as_array().map(Vec::len),
        Some(0),
        "a refused request made a run"
    );
    for ok in [
        repo.to_string_lossy().into_owned(),
        format!("file://{}", repo.display()),
        format!("{}/../allowed/repo", allowed.display()),
    ] {
        let (status, v) = call(
            &http,
            &base,
            &token,
            reqwest::Method::POST,
            "/api/v1/runs",
            create(&ok),
        )
        .await;
        assert_eq!(status, 201, "{ok}: {v}");
        assert_eq!(
            v["repo"],
            repo.to_string_lossy().as_ref(),
            "the canonical path is recorded"
        );
    }
    stop(server);
    assert!(!Path::new("/tmp/errand-adversarial-pwned").exists());
}

fn hub_signature(secret: &str, body: &str) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn comment(comment_id: u64, created_at: Option<&str>) -> String {
    let mut c = json!({ "id": comment_id, "body": "@errand fix the typo", "user": { "login": "octocat", "type": "User" } });
    if let Some(t) = created_at {
        c["created_at"] = json!(t);
    }
    json!({
        "action": "created",
        "issue": { "number": 1, "title": "Typo", "state": "open" },
        "comment": c,
        "repository": {
            "name": "widgets",
            "full_name": "acme/widgets",
            "owner": { "login": "acme", "type": "Organization" }
        },
        "sender": { "login": "octocat", "type": "User" },
        "installation": { "id": 7 }
    })
    .to_string()
}

async fn webhook(
    http: &reqwest::Client,
    base: &str,
    body: &str,
    delivery: Option<&str>,
) -> (u16, String) {
    let mut rb = http
        .post(format!("{base}/github/webhook"))
        .header("X-GitHub-Event", "issue_comment")
        .header("X-Hub-Signature-256", hub_signature(WEBHOOK_SECRET, body))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(d) = delivery {
        rb = rb.header("X-GitHub-Delivery", d);
    }
    let resp = rb.send().await.expect("webhook");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

async fn slack_command(
    slack: &errand_slack::fake::FakeSlack,
    http: &reqwest::Client,
    base: &str,
    text: &str,
    trigger: &str,
) -> String {
    let fields = slack.agent_command_fields("U1", "C1", text, trigger);
    // Signed now: a replay re-signed with a fresh timestamp.
    let (headers, body) = slack.signed_command(&fields, chrono::Utc::now().timestamp());
    let mut rb = http.post(format!("{base}/slack/commands")).body(body);
    for (k, v) in headers {
        rb = rb.header(k, v);
    }
    let resp = rb.send().await.expect("command");
    assert_eq!(resp.status().as_u16(), 200);
    resp.text().await.unwrap_or_default()
}

async fn run_count(http: &reqwest::Client, base: &str, token: &str) -> usize {
    let (_, v) = call(
        http,
        base,
        token,
        reqwest::Method::GET,
        "/api/v1/runs",
        None,
    )
    .await;
    v["runs"].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_webhooks_and_slack_commands_run_once_across_a_restart() {
    let crate::common::github::World {
        env,
        github: _github,
        slack,
    } = world(Env::new()).await;
    let env = add_noop_harness(env);
    let token = token_with(&env, "reader", Some("read"));
    let http = reqwest::Client::new();
    let delivery = comment(100, None);
    let old = (chrono::Utc::now() - chrono::TimeDelta::days(8)).to_rfc3339();

    let (server, base) = serve(&env, "1");
    let said = slack_command(&slack, &http, &base, "acme/widgets fix it", "trig-1").await;
    assert!(said.contains("Queued run"), "{said}");
    let (status, body) = webhook(&http, &base, &delivery, Some("d-1")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(run_count(&http, &base, &token).await, 2);
    // Replays on the same process: the same trigger_id re-signed; the same
    // body with a new delivery id, or none.
    let said = slack_command(&slack, &http, &base, "acme/widgets fix it", "trig-1").await;
    assert!(said.contains("already received"), "{said}");
    for d in [Some("d-2"), None, Some("d-1")] {
        let (status, body) = webhook(&http, &base, &delivery, d).await;
        assert_eq!(status, 200, "{d:?}: {body}");
    }
    // A comment older than errand remembers deliveries is a replay too.
    let (status, body) = webhook(&http, &base, &comment(101, Some(&old)), Some("d-3")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(run_count(&http, &base, &token).await, 2);
    stop(server);

    // Restarted on the same database: still remembered.
    let (server, base) = serve(&env, "1");
    let said = slack_command(&slack, &http, &base, "acme/widgets fix it", "trig-1").await;
    assert!(said.contains("already received"), "{said}");
    for d in [Some("d-4"), None] {
        let (status, body) = webhook(&http, &base, &delivery, d).await;
        assert_eq!(status, 200, "{d:?}: {body}");
    }
    assert_eq!(
        run_count(&http, &base, &token).await,
        2,
        "a replay started a run after the restart"
    );
    // New requests still work.
    let said = slack_command(&slack, &http, &base, "acme/widgets fix it", "trig-2").await;
    assert!(said.contains("Queued run"), "{said}");
    let now = chrono::Utc::now().to_rfc3339();
    let (status, body) = webhook(&http, &base, &comment(102, Some(&now)), Some("d-4")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(run_count(&http, &base, &token).await, 4);
    // The same command sent six times at once (a captured request fired in
    // a burst): one run, five refusals.
    let burst =
        (0..6).map(|_| slack_command(&slack, &http, &base, "acme/widgets fix it", "trig-3"));
    let said = futures::future::join_all(burst).await;
    assert_eq!(
        said.iter().filter(|s| s.contains("Queued run")).count(),
        1,
        "{said:#?}"
    );
    assert_eq!(
        said.iter()
            .filter(|s| s.contains("already received"))
            .count(),
        5,
        "{said:#?}"
    );
    assert_eq!(run_count(&http, &base, &token).await, 5);
    stop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn replays_are_refused_by_every_node_sharing_postgresql() {
    let Some(url) = fresh_postgres("replay") else {
        return;
    };
    let crate::common::github::World {
        env,
        github: _github,
        slack,
    } = world(Env::new()).await;
    let config = env.home.join("config.toml");
    let env = add_noop_harness(env)
        .var("ERRAND_DATABASE_URL", &url)
        .var("ERRAND_CONFIG", &config.to_string_lossy());
    // A second node: its own home and worker id, the same database and config.
    let env_b = Env {
        dir: tempfile::tempdir().expect("tempdir"),
        home: env.dir.path().join("home-b"),
        vars: env.vars.clone(),
    };
    let token = token_with(&env, "reader", Some("read"));
    let http = reqwest::Client::new();
    let delivery = comment(200, None);

    let (a, base_a) = serve(&env, "1");
    let (b, base_b) = serve(&env_b, "1");
    let said = slack_command(&slack, &http, &base_a, "acme/widgets fix it", "trig-pg").await;
    assert!(said.contains("Queued run"), "{said}");
    let (status, body) = webhook(&http, &base_a, &delivery, Some("pg-1")).await;
    assert_eq!(status, 201, "{body}");
    // The same requests at the other node.
    let said = slack_command(&slack, &http, &base_b, "acme/widgets fix it", "trig-pg").await;
    assert!(said.contains("already received"), "{said}");
    let (status, body) = webhook(&http, &base_b, &delivery, Some("pg-2")).await;
    assert_eq!(status, 200, "{body}");
    // Both nodes restarted: still refused.
    stop(a);
    stop(b);
    let (b, base_b) = serve(&env_b, "1");
    let said = slack_command(&slack, &http, &base_b, "acme/widgets fix it", "trig-pg").await;
    assert!(said.contains("already received"), "{said}");
    let (status, body) = webhook(&http, &base_b, &delivery, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(run_count(&http, &base_b, &token).await, 2);
    stop(b);
}

//! What the web app's New run form asks of the server, in process: the
//! caller's scopes (`/me`), the choices (`/options`), and runs checked with
//! `dry_run` (nothing queued, each refusal naming its field), fan-out groups.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use errand_core::{RepoSource, RunId, RunSpec};
use errand_server::newrun::RunPolicy;
use errand_server::AppState;
use errand_store::{RunFilter, Scope, SqliteStore, Store};
use serde_json::{json, Value};

use crate::scopes::{call, token};

async fn server(policy: RunPolicy) -> (AppState, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let mut st = AppState::new(store.clone(), Default::default());
    st.policy = Arc::new(policy);
    (st, store)
}

async fn queued(store: &Arc<dyn Store>) -> usize {
    store.list_runs(&RunFilter::default()).await.unwrap().len()
}

#[tokio::test]
async fn me_names_the_token_and_its_scopes() {
    let (st, store) = server(RunPolicy::default()).await;
    let ro = token(&store, &[Scope::Read]).await;
    let (status, v) = call(&st, &ro, "GET", "/api/v1/me", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({"name": "t", "scopes": ["read"]}));
    let rw = token(&store, &[Scope::Read, Scope::Run]).await;
    let (_, v) = call(&st, &rw, "GET", "/api/v1/me", None).await;
    assert_eq!(v["scopes"], json!(["read", "run"]));
    let (status, _) = call(&st, "errand_nope", "GET", "/api/v1/me", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn options_list_harnesses_models_recent_repositories_and_missing_keys() {
    let policy = RunPolicy {
        models: vec!["claude-haiku-*".into()],
        sandbox: "docker".into(),
        runs_here: true,
        env_set: ["OPENAI_API_KEY".to_string()].into(),
        ..RunPolicy::default()
    };
    let (st, store) = server(policy).await;
    for repo in ["github:acme/one", "github:acme/two", "github:acme/one"] {
        let mut spec = RunSpec::new("p", "claude-code");
        spec.repo = Some(RepoSource::parse(repo));
        store.create_run(RunId::new(), &spec).await.unwrap();
    }
    let ro = token(&store, &[Scope::Read]).await;
    let (status, v) = call(&st, &ro, "GET", "/api/v1/options", None).await;
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> = v["harnesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["claude-code", "codex", "gemini", "opencode", "amp"]);
    let of = |name: &str| -> Value {
        v["harnesses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        of("claude-code")["missing_env"],
        json!(["ANTHROPIC_API_KEY"])
    );
    assert_eq!(of("codex")["missing_env"], json!([]));
    assert_eq!(of("claude-code")["follow_up"], true);
    assert_eq!(v["default_harness"], "claude-code");
    assert_eq!(v["models"], json!(["claude-haiku-*"]));
    assert_eq!(v["sandbox"], "docker");
    assert_eq!(v["sandboxes"], json!(["docker"]), "the default alone: {v}");
    let repos = v["recent_repos"].as_array().unwrap();
    assert_eq!(repos.len(), 2, "each repository once: {v}");
    // As a new run's repo takes them back (github:, not a path).
    assert!(
        repos
            .iter()
            .all(|r| r.as_str().is_some_and(|r| r.starts_with("github:acme/"))),
        "{v}"
    );
    assert_eq!(v["forge_repos"], json!([]), "no GitHub App here: {v}");
}

#[tokio::test]
async fn a_dry_run_queues_nothing_and_each_refusal_names_its_field() {
    let policy = RunPolicy {
        models: vec!["claude-haiku-*".into()],
        runs_here: true,
        env_set: ["ANTHROPIC_API_KEY".to_string()].into(),
        ..RunPolicy::default()
    };
    let (st, store) = server(policy).await;
    let rw = token(&store, &[Scope::Read, Scope::Run]).await;
    let dry = "/api/v1/runs?dry_run=true";
    let (status, v) = call(
        &st,
        &rw,
        "POST",
        dry,
        Some(json!({"prompt": "fix it", "model": "claude-haiku-4-5"})),
    )
    .await;
    assert_eq!(
        (status, v.clone()),
        (200, json!({"valid": true, "harness": "claude-code"}))
    );
    assert_eq!(queued(&store).await, 0, "a dry run queues nothing");
    // Push and agent_git are checked against the repository asked for.
    for body in [
        json!({"prompt": "x", "push": true, "repo": "github:acme/one"}),
        json!({"prompt": "x", "agent_git": true, "repo": "github:acme/one"}),
    ] {
        let (status, v) = call(&st, &rw, "POST", dry, Some(body.clone())).await;
        assert_eq!(status, 200, "{body}: {v}");
    }

    for (body, field, words) in [
        (json!({"prompt": "  "}), "prompt", "prompt is empty"),
        (
            json!({"prompt": "x", "harness": "devin"}),
            "harness",
            "unknown harness 'devin'",
        ),
        (
            json!({"prompt": "x", "model": "claude-opus-4-1"}),
            "model",
            "not allowed on this server",
        ),
        (
            json!({"prompt": "x", "model": "-rf"}),
            "model",
            "not a model name",
        ),
        (
            json!({"prompt": "x", "harness": "amp", "model": "m"}),
            "model",
            "does not let errand choose",
        ),
        (
            json!({"prompt": "x", "base": "--upload-pack=x"}),
            "base",
            "not a branch name",
        ),
        (
            json!({"prompt": "x", "max_cost_usd": -1}),
            "max_cost_usd",
            "positive",
        ),
        (
            json!({"prompt": "x", "timeout_secs": 0}),
            "timeout_secs",
            "positive",
        ),
        (
            json!({"prompt": "x", "group": "a b"}),
            "group",
            "letters, digits",
        ),
        (
            json!({"prompt": "x", "group": "g".repeat(65)}),
            "group",
            "1 to 64",
        ),
        (json!({"prompt": "x", "repo": "/etc"}), "repo", ""),
        (
            json!({"prompt": "x", "push": true}),
            "push",
            "push needs repo",
        ),
        // The key only where this server runs its runs.
        (
            json!({"prompt": "x", "harness": "codex"}),
            "harness",
            "needs OPENAI_API_KEY",
        ),
    ] {
        let (status, v) = call(&st, &rw, "POST", dry, Some(body.clone())).await;
        assert!(status == 422 || status == 403, "{body}: {status} {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(words),
            "{body}: {v}"
        );
    }
    assert_eq!(queued(&store).await, 0);
    // A key stored with `errand secret set` is one the runs get.
    store.put_secret("OPENAI_API_KEY", b"sealed").await.unwrap();
    let (status, v) = call(
        &st,
        &rw,
        "POST",
        dry,
        Some(json!({"prompt": "x", "harness": "codex"})),
    )
    .await;
    assert_eq!(status, 200, "a stored secret counts: {v}");

    // Queued for real, the same checks hold (the key is the run's to miss:
    // it fails recorded, with its reason, as before).
    let (status, v) = call(
        &st,
        &rw,
        "POST",
        "/api/v1/runs",
        Some(json!({"prompt": "x", "model": "claude-opus-4-1"})),
    )
    .await;
    assert_eq!((status, v["error"]["field"].clone()), (422, json!("model")));
    assert_eq!(queued(&store).await, 0);

    // A query string that does not parse is refused like any bad input: JSON.
    for (method, path) in [
        ("POST", "/api/v1/runs?dry_run=maybe"),
        ("GET", "/api/v1/runs?limit=abc"),
    ] {
        let (status, v) = call(&st, &rw, method, path, Some(json!({"prompt": "x"}))).await;
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (422, json!("invalid_request")),
            "{path}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("query string"),
            "{v}"
        );
    }

    // A read-only token may not even ask.
    let ro = token(&store, &[Scope::Read]).await;
    let (status, v) = call(&st, &ro, "POST", dry, Some(json!({"prompt": "x"}))).await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (403, json!("insufficient_scope"))
    );
}

#[tokio::test]
async fn runs_of_one_fan_out_share_their_group_and_show_how_to_run_again() {
    let (st, store) = server(RunPolicy::default()).await;
    let rw = token(&store, &[Scope::Read, Scope::Run]).await;
    for harness in ["claude-code", "codex"] {
        let (status, v) = call(
            &st,
            &rw,
            "POST",
            "/api/v1/runs",
            Some(
                json!({"prompt": "compare", "harness": harness, "group": "g-1_x",
                        "base": "dev", "timeout_secs": 120, "test_cmd": "true"}),
            ),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["group"], "g-1_x");
        // What a re-run needs is in the run itself.
        assert_eq!(v["base"], "dev");
        assert_eq!(v["timeout_secs"], 120);
        assert_eq!(v["test_cmd"], "true");
        assert_eq!(v["requested_by"], "api:t");
    }
    let (_, v) = call(&st, &rw, "GET", "/api/v1/runs?group=g-1_x", None).await;
    assert_eq!(v["runs"].as_array().map(Vec::len), Some(2), "{v}");
}

#[tokio::test]
async fn a_run_may_ask_for_a_sandbox_the_server_offers_and_no_other() {
    let policy = RunPolicy {
        sandbox: "local".into(),
        sandboxes: vec!["local".into(), "modal".into()],
        runs_here: true,
        env_set: ["ANTHROPIC_API_KEY".to_string()].into(),
        ..RunPolicy::default()
    };
    let (st, store) = server(policy).await;
    let rw = token(&store, &[Scope::Read, Scope::Run]).await;
    let (_, v) = call(&st, &rw, "GET", "/api/v1/options", None).await;
    assert_eq!(v["sandboxes"], json!(["local", "modal"]), "{v}");
    let (status, v) = call(
        &st,
        &rw,
        "POST",
        "/api/v1/runs?dry_run=true",
        Some(json!({"prompt": "x", "sandbox": "docker"})),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["field"], "sandbox", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("does not offer the docker sandbox") && msg.contains("local, modal"),
        "{msg}"
    );
    assert_eq!(queued(&store).await, 0);
    let (status, v) = call(
        &st,
        &rw,
        "POST",
        "/api/v1/runs",
        Some(json!({"prompt": "x", "sandbox": "modal"})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["sandbox"], "modal");
    let runs = store.list_runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs[0].spec.sandbox.as_deref(), Some("modal"));
}

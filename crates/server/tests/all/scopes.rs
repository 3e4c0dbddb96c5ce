//! Token scopes and the API's local-repository policy, in process
//! (`app(state).oneshot(…)`): every route answers 403 `insufficient_scope` to
//! a token without the one scope it needs, and only then.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use errand_core::{RunId, RunSpec};
use errand_server::{app, auth, AppState};
use errand_store::{Scope, SqliteStore, Store};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn token(store: &Arc<dyn Store>, scopes: &[Scope]) -> String {
    let secret = auth::new_secret("errand");
    store
        .create_token("t", &auth::hash(&secret), scopes)
        .await
        .unwrap();
    secret
}

async fn call(
    st: &AppState,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    let req = match body {
        Some(b) => req.body(Body::from(b.to_string())).unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let resp = app(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    // A stream that was let through would not end: its headers are enough.
    if path.contains("/stream") && status == 200 {
        return (status, Value::Null);
    }
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn refused_for_scope(status: u16, body: &Value) -> bool {
    status == 403 && body["error"]["code"] == "insufficient_scope"
}

#[tokio::test]
async fn every_route_needs_its_scope_and_only_that() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let st = AppState::new(store.clone(), Default::default());
    let run = RunId::new();
    store
        .create_run(run, &RunSpec::new("p", "claude-code"))
        .await
        .unwrap();
    let victim = store
        .create_token("victim", &auth::hash("victim-secret"), &[Scope::Read])
        .await
        .unwrap();
    let routes: Vec<(&str, String, Option<Value>, Scope)> = vec![
        ("GET", "/api/runs".into(), None, Scope::Read),
        ("GET", format!("/api/runs/{run}"), None, Scope::Read),
        ("GET", format!("/api/runs/{run}/events"), None, Scope::Read),
        (
            "GET",
            format!("/api/runs/{run}/events/stream?after=999"),
            None,
            Scope::Read,
        ),
        (
            "POST",
            "/api/runs".into(),
            Some(json!({"prompt": "x"})),
            Scope::Run,
        ),
        (
            "POST",
            format!("/api/runs/{run}/messages"),
            Some(json!({"message": "more"})),
            Scope::Run,
        ),
        ("POST", format!("/api/runs/{run}/share"), None, Scope::Run),
        ("DELETE", format!("/api/runs/{run}/share"), None, Scope::Run),
        ("GET", "/api/tokens".into(), None, Scope::Admin),
        (
            "POST",
            "/api/tokens".into(),
            Some(json!({"name": "mine", "scopes": ["admin"]})),
            Scope::Admin,
        ),
        (
            "DELETE",
            format!("/api/tokens/{}", victim.id),
            None,
            Scope::Admin,
        ),
        // Last: it ends the run the routes above use.
        ("POST", format!("/api/runs/{run}/cancel"), None, Scope::Run),
    ];
    let mut tokens = Vec::new();
    for scope in Scope::ALL {
        let others: Vec<Scope> = Scope::ALL.into_iter().filter(|s| *s != scope).collect();
        tokens.push((
            scope,
            token(&store, &[scope]).await,
            token(&store, &others).await,
        ));
    }
    for (method, path, body, needed) in &routes {
        for (scope, _, all_but) in &tokens {
            let (status, v) = call(&st, all_but, method, path, body.clone()).await;
            assert!(
                refused_for_scope(status, &v) == (*scope == *needed),
                "{method} {path} with every scope but {scope}: {status} {v}"
            );
            if *scope == *needed {
                assert!(v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(needed.as_str()));
            }
        }
        for (scope, only, _) in &tokens {
            if scope != needed {
                continue;
            }
            let (status, v) = call(&st, only, method, path, body.clone()).await;
            // Past the scope check (a follow-up of a queued run is still a
            // conflict, for instance), and never unauthenticated.
            assert!(
                !refused_for_scope(status, &v) && status != 401,
                "{method} {path} with {scope}: {status} {v}"
            );
        }
    }
    // The victim's token was revoked by an admin, never by anyone else.
    assert!(
        store
            .token_by_hash(&auth::hash("victim-secret"))
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
}

#[tokio::test]
async fn tokens_created_through_the_api_hold_their_scopes() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let st = AppState::new(store.clone(), Default::default());
    let admin = token(&store, &[Scope::Admin]).await;
    let (status, v) = call(
        &st,
        &admin,
        "POST",
        "/api/tokens",
        Some(json!({"name": "ro", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["scopes"], json!(["read"]));
    let ro = v["token"].as_str().unwrap().to_string();
    assert_eq!(call(&st, &ro, "GET", "/api/runs", None).await.0, 200);
    let (status, v) = call(&st, &ro, "POST", "/api/runs", Some(json!({"prompt": "x"}))).await;
    assert!(refused_for_scope(status, &v), "{status} {v}");
    // The default is read and run, never admin; an unknown scope is refused.
    let (_, v) = call(
        &st,
        &admin,
        "POST",
        "/api/tokens",
        Some(json!({"name": "d"})),
    )
    .await;
    assert_eq!(v["scopes"], json!(["read", "run"]));
    let (status, v) = call(
        &st,
        &admin,
        "POST",
        "/api/tokens",
        Some(json!({"name": "x", "scopes": ["root"]})),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (422, json!("invalid_request"))
    );
    // Listing never shows a secret.
    let (_, v) = call(&st, &admin, "GET", "/api/tokens", None).await;
    assert!(!v.to_string().contains(&ro));
}

#[tokio::test]
async fn local_repositories_are_refused_unless_under_local_repos() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let root = tempfile::tempdir().unwrap();
    let allowed = root.path().join("repos");
    std::fs::create_dir_all(allowed.join("ok")).unwrap();
    let secret = root.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::os::unix::fs::symlink(&secret, allowed.join("link")).unwrap();
    let mut st = AppState::new(store.clone(), Default::default());
    let runner = token(&store, &[Scope::Run]).await;
    let create = |repo: String| json!({"prompt": "x", "repo": repo});
    let p = |x: &std::path::Path| x.to_str().unwrap().to_string();
    let tricky = vec![
        p(&allowed.join("ok")),
        p(&secret),
        "/etc".to_string(),
        "file:///etc".into(),
        format!("{}/ok/../../secret", p(&allowed)),
        p(&allowed.join("link")),
        "../../../../etc".into(),
        "~/.ssh".into(),
        "--upload-pack=touch /tmp/errand-pwned".into(),
        "ext::sh -c touch% /tmp/errand-pwned".into(),
    ];
    // No prefix configured (the default): every local form is refused.
    for repo in &tricky {
        let (status, v) = call(
            &st,
            &runner,
            "POST",
            "/api/runs",
            Some(create(repo.clone())),
        )
        .await;
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (403, json!("local_repo_not_allowed")),
            "{repo}: {v}"
        );
    }
    // With a prefix: only what resolves under it.
    let (prefixes, problems) =
        errand_server::repo::canonical_prefixes(std::slice::from_ref(&allowed));
    assert!(problems.is_empty());
    st.local_repos = Arc::new(prefixes);
    let (status, v) = call(
        &st,
        &runner,
        "POST",
        "/api/runs",
        Some(create(p(&allowed.join("ok")))),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["repo"], p(&allowed.join("ok").canonicalize().unwrap()));
    for repo in &tricky[1..] {
        let (status, v) = call(
            &st,
            &runner,
            "POST",
            "/api/runs",
            Some(create(repo.clone())),
        )
        .await;
        assert_eq!(
            (status, v["error"]["code"].clone()),
            (403, json!("local_repo_not_allowed")),
            "{repo}: {v}"
        );
    }
    assert_eq!(store.list_runs(&Default::default()).await.unwrap().len(), 1);
    assert!(!std::path::Path::new("/tmp/errand-pwned").exists());
}

#[test]
fn the_openapi_document_names_each_routes_scope_and_the_new_codes() {
    let doc: Value = serde_json::from_str(errand_server::OPENAPI).unwrap();
    for (path, method, scope) in [
        ("/api/runs", "get", "read"),
        ("/api/runs", "post", "run"),
        ("/api/runs/{id}/cancel", "post", "run"),
        ("/api/runs/{id}/events/stream", "get", "read"),
        ("/api/tokens", "get", "admin"),
        ("/api/tokens", "post", "admin"),
        ("/api/tokens/{id}", "delete", "admin"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["x-errand-scope"], scope,
            "{method} {path}"
        );
    }
    let codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]
        ["enum"]
        .to_string();
    assert!(codes.contains("insufficient_scope") && codes.contains("local_repo_not_allowed"));
}

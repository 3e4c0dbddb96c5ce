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

pub(crate) async fn token(store: &Arc<dyn Store>, scopes: &[Scope]) -> String {
    let secret = auth::new_secret("errand");
    store
        .create_token("t", &auth::hash(&secret), scopes)
        .await
        .unwrap();
    secret
}

pub(crate) async fn call(
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
    // Every route that needs a token, from the table the router is built
    // from, with a concrete path and (where it needs one) a body.
    let mut routes: Vec<(String, String, Option<Value>, Scope)> = errand_server::routes::table()
        .into_iter()
        .filter_map(|(method, template, scope)| {
            let path = if template.starts_with("/api/v1/tokens/") {
                template.replace("{id}", &victim.id)
            } else {
                template.replace("{id}", &run.to_string())
            };
            let body = match (method.as_str(), template.as_str()) {
                ("POST", "/api/v1/runs") => Some(json!({"prompt": "x"})),
                ("POST", "/api/v1/runs/{id}/messages") => Some(json!({"message": "more"})),
                ("POST", "/api/v1/tokens") => Some(json!({"name": "mine", "scopes": ["admin"]})),
                _ => None,
            };
            // (Of a stream that is let through, `call` reads only the headers.)
            let path = if path.ends_with("/stream") {
                format!("{path}?after=999")
            } else {
                path
            };
            Some((method, path, body, scope?))
        })
        .collect();
    // Last: cancelling ends the run the other routes use.
    routes.sort_by_key(|(_, path, _, _)| path.ends_with("/cancel"));
    assert!(routes.len() >= 13, "{routes:?}");
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
        "/api/v1/tokens",
        Some(json!({"name": "ro", "scopes": ["read"]})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["scopes"], json!(["read"]));
    let ro = v["token"].as_str().unwrap().to_string();
    assert_eq!(call(&st, &ro, "GET", "/api/v1/runs", None).await.0, 200);
    let (status, v) = call(
        &st,
        &ro,
        "POST",
        "/api/v1/runs",
        Some(json!({"prompt": "x"})),
    )
    .await;
    assert!(refused_for_scope(status, &v), "{status} {v}");
    // The default is read and run, never admin; an unknown scope is refused.
    let (_, v) = call(
        &st,
        &admin,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "d"})),
    )
    .await;
    assert_eq!(v["scopes"], json!(["read", "run"]));
    let (status, v) = call(
        &st,
        &admin,
        "POST",
        "/api/v1/tokens",
        Some(json!({"name": "x", "scopes": ["root"]})),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].clone()),
        (422, json!("invalid_request"))
    );
    // Listing never shows a secret.
    let (_, v) = call(&st, &admin, "GET", "/api/v1/tokens", None).await;
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
            "/api/v1/runs",
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
        "/api/v1/runs",
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
            "/api/v1/runs",
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
    let doc = serde_json::to_value(errand_server::openapi()).unwrap();
    for (path, method, scope) in [
        ("/api/v1/runs", "get", "read"),
        ("/api/v1/runs", "post", "run"),
        ("/api/v1/runs/{id}/cancel", "post", "run"),
        ("/api/v1/runs/{id}/events/stream", "get", "read"),
        ("/api/v1/local/parse", "post", "read"),
        ("/api/v1/tokens", "get", "admin"),
        ("/api/v1/tokens", "post", "admin"),
        ("/api/v1/tokens/{id}", "delete", "admin"),
    ] {
        let op = &doc["paths"][path][method];
        assert_eq!(op["x-errand-scope"], scope, "{method} {path}");
        assert_eq!(
            op["security"],
            json!([{ "bearer": [scope] }]),
            "{method} {path}"
        );
        for status in ["401", "403"] {
            assert_eq!(
                op["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Error",
                "{method} {path} {status}"
            );
        }
    }
    let codes = doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["description"]
        .to_string();
    assert!(codes.contains("insufficient_scope") && codes.contains("local_repo_not_allowed"));
}

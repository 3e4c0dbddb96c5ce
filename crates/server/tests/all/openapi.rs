//! The versioned API and its document: every route the router is built from
//! is documented, every documented operation is answered, the paths of
//! errand 0.1 answer as deprecated aliases of `/api/v1`, and the committed
//! copy of the document (`docs/openapi.json`) is the generated one.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use errand_core::{RunId, RunSpec, RunState};
use errand_server::{app, auth, routes, AppState};
use errand_store::{Scope, SqliteStore, Store};
use serde_json::{json, Value};
use tower::ServiceExt;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

struct Answer {
    status: u16,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn call(st: &AppState, token: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
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
    let headers = resp.headers().clone();
    // A live stream would not end: its headers are enough.
    if path.contains("/stream") && status == 200 {
        return Answer {
            status,
            headers,
            body: Value::Null,
        };
    }
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        body,
    }
}

/// A server with one finished run, a share link to it, and a token holding every scope.
async fn server() -> (AppState, String, RunId, String) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let st = AppState::new(store.clone(), Default::default());
    let run = RunId::new();
    store
        .create_run(run, &RunSpec::new("p", "claude-code"))
        .await
        .unwrap();
    for state in [
        RunState::Preparing,
        RunState::Running,
        RunState::Finishing,
        RunState::Succeeded,
    ] {
        store.transition(run, state, None).await.unwrap();
    }
    let secret = auth::new_secret("errand");
    store
        .create_token("all", &auth::hash(&secret), &Scope::ALL)
        .await
        .unwrap();
    let share = auth::new_secret("share");
    store.create_share(run, &auth::hash(&share)).await.unwrap();
    (st, secret, run, share)
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item[m].is_object() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_answered() {
    let doc = serde_json::to_value(errand_server::openapi()).unwrap();
    let table = routes::table();
    // The table the router is built from and the document name the same operations.
    let served: BTreeSet<(String, String)> = table
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    assert_eq!(served.len(), table.len(), "a route is mounted twice");
    assert_eq!(served, documented(&doc));
    for (method, path, scope) in &table {
        let op = &doc["paths"][path][method.to_lowercase()];
        assert!(op["summary"].is_string(), "{method} {path} has a summary");
        match scope {
            Some(s) => {
                assert!(path.starts_with("/api/v1/"), "{method} {path}");
                assert_eq!(op["security"], json!([{ "bearer": [s.as_str()] }]));
                assert_eq!(op["x-errand-scope"], s.as_str());
            }
            None => assert_eq!(op["security"], json!([]), "{method} {path} is public"),
        }
        // Every `{parameter}` of the path is documented as a path parameter.
        let params: Vec<(&str, &str)> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| Some((p["in"].as_str()?, p["name"].as_str()?)))
                    .collect()
            })
            .unwrap_or_default();
        let unique: BTreeSet<_> = params.iter().collect();
        assert_eq!(unique.len(), params.len(), "{method} {path}: {params:?}");
        let documented_params: BTreeSet<&str> = params
            .iter()
            .filter(|(place, _)| *place == "path")
            .map(|(_, name)| *name)
            .collect();
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(documented_params, in_path, "{method} {path}");
    }

    // Every documented operation is answered by the server: not the
    // fallback's 404, not 405.
    let (st, token, run, share) = server().await;
    for (method, path) in documented(&doc) {
        let concrete = path
            .replace("{id}", &run.to_string())
            .replace("{token}", &share);
        let a = call(&st, &token, &method, &concrete, None).await;
        let fallback = a.status == 404
            && a.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no such endpoint"));
        assert!(
            !fallback && a.status != 405,
            "{method} {path}: {} {}",
            a.status,
            a.body
        );
    }
    // And what is not documented under /api/v1 is not answered there.
    let a = call(&st, &token, "GET", "/api/v1/nothing", None).await;
    assert_eq!(a.status, 404);
    assert!(a.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/api/v1/openapi.json"));
}

#[tokio::test]
async fn the_old_paths_answer_like_v1_and_say_they_are_deprecated() {
    let (st, token, run, _) = server().await;
    for path in [
        "/runs".to_string(),
        format!("/runs/{run}"),
        format!("/runs/{run}/events"),
        "/tokens".to_string(),
        "/openapi.json".to_string(),
        "/runs/unknown0".to_string(),
    ] {
        let v1 = call(&st, &token, "GET", &format!("/api/v1{path}"), None).await;
        let old = call(&st, &token, "GET", &format!("/api{path}"), None).await;
        assert_eq!((old.status, &old.body), (v1.status, &v1.body), "{path}");
        assert!(v1.headers.get("deprecation").is_none(), "{path}");
        assert_eq!(old.headers["deprecation"], "true", "{path}");
        assert_eq!(
            old.headers["link"].to_str().unwrap(),
            format!("</api/v1{path}>; rel=\"successor-version\"")
        );
    }
    // Writes too, with the same checks: a token is needed, and the run is queued.
    let a = call(
        &st,
        "nope",
        "POST",
        "/api/runs",
        Some(json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(a.status, 401);
    let a = call(
        &st,
        &token,
        "POST",
        "/api/runs",
        Some(json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.body["id"].as_str().unwrap();
    let v1 = call(&st, &token, "GET", &format!("/api/v1/runs/{id}"), None).await;
    assert_eq!(v1.body["state"], "queued");
    // A path that was never part of the API is not an alias of anything.
    assert_eq!(
        call(&st, &token, "GET", "/api/v2/runs", None).await.status,
        404
    );
}

#[test]
fn the_document_keeps_every_operation_of_errand_0_1() {
    let doc = serde_json::to_value(errand_server::openapi()).unwrap();
    let have = documented(&doc);
    for (method, path) in [
        ("POST", "/api/v1/runs"),
        ("GET", "/api/v1/runs"),
        ("GET", "/api/v1/runs/{id}"),
        ("POST", "/api/v1/runs/{id}/cancel"),
        ("POST", "/api/v1/runs/{id}/messages"),
        ("GET", "/api/v1/runs/{id}/events"),
        ("GET", "/api/v1/runs/{id}/events/stream"),
        ("POST", "/api/v1/runs/{id}/share"),
        ("DELETE", "/api/v1/runs/{id}/share"),
        ("POST", "/api/v1/local/parse"),
        ("GET", "/api/v1/tokens"),
        ("POST", "/api/v1/tokens"),
        ("DELETE", "/api/v1/tokens/{id}"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/share/{token}"),
        ("GET", "/share/{token}/events"),
        ("GET", "/share/{token}/events/stream"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    ] {
        assert!(
            have.contains(&(method.to_string(), path.to_string())),
            "{method} {path}"
        );
    }
    // The answers' schemas come from the handlers' types.
    let run = &doc["components"]["schemas"]["Run"]["properties"];
    for field in ["id", "state", "prompt", "created_at", "cost_usd", "pr_url"] {
        assert!(run[field].is_object(), "Run.{field}");
    }
    assert_eq!(
        doc["components"]["schemas"]["RunState"]["enum"],
        json!(RunState::ALL.map(|s| s.as_str()))
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// The committed copy for readers; `ERRAND_BLESS=1 cargo test -p errand-server
/// --test all openapi` writes it anew.
#[test]
fn the_committed_document_is_the_generated_one() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let generated = errand_server::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var_os("ERRAND_BLESS").is_some() {
        std::fs::write(file, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(file).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the document the server generates; \
         run `ERRAND_BLESS=1 cargo test -p errand-server --test all openapi` and commit it"
    );
}

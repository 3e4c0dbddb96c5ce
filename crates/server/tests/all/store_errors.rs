//! Store errors reach API clients with their own status, through the router:
//! a missing run is 404, a database that cannot be reached 503 (not a 500
//! that blames nothing). The status of every kind is unit-tested in
//! `src/error.rs`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use errand_server::{app, auth, AppState};
use errand_store::{Scope, SqliteStore, Store};
use serde_json::Value;
use tower::ServiceExt;

async fn get(st: &AppState, token: Option<&str>, path: &str) -> (u16, Value) {
    let mut req = Request::builder().method("GET").uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app(st.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_missing_run_is_404() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.unwrap());
    let secret = auth::new_secret("errand");
    store
        .create_token("t", &auth::hash(&secret), &[Scope::Read])
        .await
        .unwrap();
    let st = AppState::new(store, Default::default());
    let (status, body) = get(&st, Some(&secret), "/api/v1/runs/0123abcd").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("0123abcd"));
}

#[tokio::test]
async fn an_unreachable_database_is_503() {
    let sqlite = SqliteStore::in_memory().await.unwrap();
    let secret = auth::new_secret("errand");
    sqlite
        .create_token("t", &auth::hash(&secret), &[Scope::Read])
        .await
        .unwrap();
    sqlite.close().await;
    let st = AppState::new(Arc::new(sqlite), Default::default());
    for (token, path) in [(None, "/readyz"), (Some(secret.as_str()), "/api/v1/runs")] {
        let (status, body) = get(&st, token, path).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(body["error"]["code"], "unavailable", "{path}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("could not reach its database"),
            "{path}: {body}"
        );
    }
}

//! The event stream in process (`app(state).oneshot(…)`): it ends only when
//! the client holds the run's final state event, even when the run's state
//! in the store changed before its last events were stored.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use errand_core::{Event, EventKind, EventSource, RunId, RunSpec, RunState};
use errand_server::{app, auth, AppState};
use errand_store::{SqliteStore, Store};
use tower::ServiceExt;

fn event(seq: u64, kind: EventKind) -> Event {
    Event {
        seq,
        ts: chrono::Utc::now(),
        source: EventSource::Errand,
        raw_line: None,
        kind,
    }
}

async fn setup() -> (AppState, String, RunId) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().await.expect("store"));
    let token = auth::new_secret("errand");
    store
        .create_token("t", &auth::hash(&token), &errand_store::Scope::ALL)
        .await
        .expect("token");
    let id = RunId::new();
    store
        .create_run(id, &RunSpec::new("p", "claude-code"))
        .await
        .expect("run");
    (AppState::new(store, Default::default()), token, id)
}

async fn read_stream(st: AppState, token: &str, id: RunId, after: Option<u64>) -> String {
    let mut req = Request::get(format!("/api/v1/runs/{id}/events/stream"))
        .header("authorization", format!("Bearer {token}"));
    if let Some(a) = after {
        req = req.header("last-event-id", a.to_string());
    }
    let resp = app(st)
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    let bytes = tokio::time::timeout(
        Duration::from_secs(20),
        axum::body::to_bytes(resp.into_body(), usize::MAX),
    )
    .await
    .expect("the stream ended")
    .expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn a_stream_waits_for_the_final_events_of_a_run_already_marked_finished() {
    let (st, token, id) = setup().await;
    st.store
        .append_events(
            id,
            &[event(
                1,
                EventKind::Notice {
                    message: "one".into(),
                },
            )],
        )
        .await
        .expect("append");
    // The runner records the final state first, then its last events arrive.
    st.store
        .transition(id, RunState::Failed, Some("boom"))
        .await
        .expect("transition");
    let store = st.store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        store
            .append_events(
                id,
                &[
                    event(
                        2,
                        EventKind::Notice {
                            message: "two".into(),
                        },
                    ),
                    event(
                        3,
                        EventKind::State {
                            state: RunState::Failed,
                            reason: Some("boom".into()),
                        },
                    ),
                ],
            )
            .await
            .expect("append");
    });
    let body = read_stream(st.clone(), &token, id, None).await;
    let ids: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(ids, ["1", "2", "3"], "{body}");
    assert!(body.contains("event: end"));
    // Reconnecting after the end gets just the end.
    let body = read_stream(st, &token, id, Some(3)).await;
    assert!(!body.contains("id: "), "{body}");
    assert!(body.contains("event: end"));
}

#[tokio::test]
async fn missing_and_wrong_tokens_are_refused_with_json() {
    let (st, _token, id) = setup().await;
    for auth in [None, Some("Bearer nope"), Some("Basic abc")] {
        let mut req = Request::get(format!("/api/v1/runs/{id}"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = app(st.clone())
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(resp.status(), 401);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["error"]["code"], "unauthorized");
    }
}

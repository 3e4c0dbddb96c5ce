//! `GET /api/runs/{id}/events/stream`: the run's events as Server-Sent Events.
//!
//! Each SSE message's `id` is the event's sequence number, so a client that
//! reconnects with `Last-Event-ID: N` (or `?after=N`) gets exactly the events
//! after N: no gap, no duplicate. Events come from the store, which every
//! worker writes to, so any server can stream any run. After the run's final
//! state event the stream sends `event: end` and closes.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use errand_core::{EventKind, RunId};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;

use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    pub after: Option<u64>,
}

/// Where a (re)connecting client resumes: `Last-Event-ID` wins over `?after=`.
pub fn resume_point(headers: &HeaderMap, q: &StreamQuery) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .or(q.after)
        .unwrap_or(0)
}

pub async fn stream(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let rec = st.store.find_run(&id).await?;
    Ok(stream_of(st, rec.id, resume_point(&headers, &q)))
}

struct Cursor {
    st: AppState,
    run: RunId,
    after: u64,
    done: bool,
    _guard: ClientGuard,
}

/// Counts connected stream clients for `/metrics`.
struct ClientGuard(std::sync::Arc<crate::metrics::Metrics>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

pub fn stream_of(
    st: AppState,
    run: RunId,
    after: u64,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    st.metrics.sse_clients.fetch_add(1, Ordering::Relaxed);
    let guard = ClientGuard(st.metrics.clone());
    let cursor = Cursor {
        st,
        run,
        after,
        done: false,
        _guard: guard,
    };
    let s = stream::unfold(cursor, |mut c| async move {
        if c.done {
            return None;
        }
        loop {
            let batch = match c.st.store.events_after(c.run, c.after, 500).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(run = %c.run, "stream read failed: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                // A finished run whose last event the client already has: end.
                match c.st.store.get_run(c.run).await {
                    Ok(r)
                        if r.state.is_terminal()
                            && c.st.store.last_event_seq(c.run).await.unwrap_or(0) <= c.after =>
                    {
                        c.done = true;
                        let end = SseEvent::default().event("end").data("{}");
                        return Some((vec![Ok(end)], c));
                    }
                    _ => {}
                }
                tokio::time::sleep(c.st.poll).await;
                continue;
            }
            let mut out = Vec::with_capacity(batch.len() + 1);
            for ev in &batch {
                c.after = ev.seq;
                let terminal =
                    matches!(&ev.kind, EventKind::State { state, .. } if state.is_terminal());
                let data = serde_json::to_string(ev).unwrap_or_default();
                out.push(Ok(SseEvent::default()
                    .id(ev.seq.to_string())
                    .event("event")
                    .data(data)));
                if terminal {
                    // More events may follow a final state only in a follow-up turn,
                    // which a client opens a new stream for.
                    c.done = true;
                    out.push(Ok(SseEvent::default().event("end").data("{}")));
                    break;
                }
            }
            c.st.metrics
                .events_streamed
                .fetch_add(out.len() as u64, Ordering::Relaxed);
            return Some((out, c));
        }
    })
    .flat_map(stream::iter);
    Sse::new(s).keep_alive(KeepAlive::default())
}

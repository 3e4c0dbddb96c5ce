//! `GET /api/v1/runs/{id}/events/stream`: the run's events as Server-Sent Events.
//!
//! Each SSE message's `id` is the event's sequence number, so a client that
//! reconnects with `Last-Event-ID: N` (or `?after=N`) gets exactly the events
//! after N: no gap, no duplicate. Events come from the store, which every
//! worker writes to, so any server can stream any run. After the run's final
//! state event the stream sends `event: end` and closes.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::ApiQuery;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use errand_core::{EventKind, RunId};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;

use crate::{ApiError, AppState};

/// The query of an event stream.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Resume after this sequence number (`Last-Event-ID` wins).
    pub after: Option<u64>,
}

/// The header a reconnecting client resumes with (documentation only: read by [`resume_point`]).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct LastEventId {
    /// Resume after this sequence number (wins over `after`).
    #[param(rename = "Last-Event-ID")]
    pub last_event_id: Option<u64>,
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

/// `GET /api/v1/runs/{id}/events/stream`: the run's events as server-sent events, live until it ends.
#[utoipa::path(get, path = "/runs/{id}/events/stream", summary = "The run's events, live", params(("id" = String, Path, description = "The run's id or a unique prefix of it"), StreamQuery, LastEventId), responses(
    (status = 200, description = "Server-Sent Events: `event: event` with `id` = sequence number and the event as data; `event: end` after the final state", content_type = "text/event-stream", body = String),
    (status = 404, description = "not_found", body = crate::views::ErrorBody),
))]
pub async fn stream(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let rec = st.store.find_run(&id).await?;
    Ok(stream_of(st, rec.id, resume_point(&headers, &q)))
}

struct Cursor {
    st: AppState,
    run: RunId,
    after: u64,
    done: bool,
    /// The run's events as they are stored, pushed by the store; `None`
    /// until the first read.
    live: Option<errand_store::Subscription>,
    /// Whether the store must be read before waiting on `live` (on start,
    /// after a gap, a lag or a quiet spell).
    catch_up: bool,
    /// When the run was first seen finished with nothing new to send.
    quiet_since: Option<std::time::Instant>,
    _guard: ClientGuard,
}

/// How long a stream waits for a pushed batch before it looks at the store
/// itself: a safety net for a wake-up the database lost (and for runs that
/// ended without a final state event), not the way events arrive.
const RECHECK: Duration = Duration::from_secs(5);

/// Whether a client that has everything up to `c.after` has the whole run.
/// The run's state in the store changes just before its final events are
/// stored, so "finished" alone is not enough: the client must already hold
/// the final state event. A finished run with no such event (ended by a path
/// that wrote none) ends after a quiet moment.
async fn finished(c: &Cursor) -> bool {
    let Ok(run) = c.st.store.get_run(c.run).await else {
        return false;
    };
    if !run.state.is_terminal() {
        return false;
    }
    let last = c.st.store.last_event_seq(c.run).await.unwrap_or(0);
    if last > c.after {
        return false;
    }
    if last > 0 {
        if let Ok(evs) = c.st.store.events_after(c.run, last - 1, 1).await {
            if evs
                .iter()
                .any(|e| matches!(&e.kind, EventKind::State { state, .. } if state.is_terminal()))
            {
                return true;
            }
        }
    }
    c.quiet_since
        .is_some_and(|t| t.elapsed() > Duration::from_secs(3))
}

/// Counts connected stream clients for `/metrics`.
struct ClientGuard(std::sync::Arc<crate::metrics::Metrics>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The SSE messages of `events` the client does not hold yet, in order from
/// `c.after + 1` (from the store: in its order), stopping after a final state event (with `end`), and
/// whether the events left a gap after what the client holds (then the
/// store has the rest). Advances `c.after`.
fn messages(
    c: &mut Cursor,
    events: &[errand_core::Event],
    from_store: bool,
) -> (Vec<Result<SseEvent, Infallible>>, bool) {
    let mut out = Vec::new();
    for ev in events {
        if ev.seq <= c.after {
            continue;
        }
        // The store is the truth: a hole in it (which errand never writes)
        // is not waited for. A pushed batch ahead of the client is.
        if ev.seq != c.after + 1 && !from_store {
            return (out, true);
        }
        c.after = ev.seq;
        let terminal = matches!(&ev.kind, EventKind::State { state, .. } if state.is_terminal());
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
    (out, false)
}

/// The server-sent events of `run` after sequence number `after`, ending with an `end` event when the run has ended.
///
/// Events are pushed: the stream subscribes to the store's live events of
/// the run first, then reads from the store what was stored before (catch-up,
/// resume), then sends what is pushed. A pushed batch that does not follow
/// what the client holds (it lagged, or the push lost one) sends it back to
/// the store, so there is never a gap or a duplicate.
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
        live: None,
        catch_up: true,
        quiet_since: None,
        _guard: guard,
    };
    let s = stream::unfold(cursor, |mut c| async move {
        if c.done {
            return None;
        }
        if c.live.is_none() {
            c.live = Some(c.st.store.subscribe(c.run).await);
        }
        loop {
            if c.catch_up {
                let batch = match c.st.store.events_after(c.run, c.after, 500).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(run = %c.run, "stream read failed: {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                if !batch.is_empty() {
                    c.quiet_since = None;
                    let (out, _) = messages(&mut c, &batch, true);
                    count(&c, &out);
                    return Some((out, c));
                }
                c.catch_up = false;
                if c.quiet_since.is_none() {
                    if let Ok(r) = c.st.store.get_run(c.run).await {
                        if r.state.is_terminal() {
                            c.quiet_since = Some(std::time::Instant::now());
                        }
                    }
                }
                if finished(&c).await {
                    c.done = true;
                    let end = SseEvent::default().event("end").data("{}");
                    return Some((vec![Ok(end)], c));
                }
            }
            let live = c.live.as_mut()?;
            let pushed = if c.quiet_since.is_some() {
                // A finished run that never wrote its final state event ends
                // after a quiet moment: look again soon.
                tokio::time::timeout(Duration::from_secs(1), live.recv()).await
            } else {
                tokio::time::timeout(RECHECK, live.recv()).await
            };
            match pushed {
                Ok(Ok(batch)) => {
                    let (out, gap) = messages(&mut c, &batch, false);
                    c.catch_up |= gap;
                    if !out.is_empty() {
                        c.quiet_since = None;
                        count(&c, &out);
                        return Some((out, c));
                    }
                }
                // Fell behind the push: what it missed is in the store.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => c.catch_up = true,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    c.live = Some(c.st.store.subscribe(c.run).await);
                    c.catch_up = true;
                }
                Err(_quiet) => c.catch_up = true,
            }
        }
    })
    .flat_map(stream::iter);
    Sse::new(s).keep_alive(KeepAlive::default())
}

fn count(c: &Cursor, out: &[Result<SseEvent, Infallible>]) {
    c.st.metrics
        .events_streamed
        .fetch_add(out.len() as u64, Ordering::Relaxed);
}

//! `/metrics` in Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::extract::State;
use axum::response::IntoResponse;
use errand_core::RunState;

use crate::{ApiError, AppState};

/// The counters of this process that `/metrics` reports beside the store's counts.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Event-stream clients connected now.
    pub sse_clients: AtomicI64,
    /// Events sent to stream clients.
    pub events_streamed: AtomicU64,
    /// Runs this process's workers started.
    pub runs_started: AtomicU64,
    /// Runs this process's workers finished.
    pub runs_finished: AtomicU64,
    /// Sum of finished runs' durations, in milliseconds.
    pub run_millis: AtomicU64,
}

/// `GET /metrics`: the Prometheus text format.
#[utoipa::path(get, path = "/metrics", summary = "Prometheus metrics", responses(
    (status = 200, description = "The Prometheus text format", content_type = "text/plain", body = String),
))]
pub async fn render(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let counts = st.store.count_by_state().await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP errand_runs Runs in the store, by state.\n# TYPE errand_runs gauge"
    );
    for state in RunState::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "errand_runs{{state=\"{state}\"}} {n}");
    }
    let queued = counts
        .iter()
        .find(|(s, _)| *s == RunState::Queued)
        .map_or(0, |(_, n)| *n);
    let m = &st.metrics;
    let _ = writeln!(out, "# HELP errand_queue_depth Runs waiting for a worker.\n# TYPE errand_queue_depth gauge\nerrand_queue_depth {queued}");
    let _ = writeln!(out, "# HELP errand_sse_clients Connected event-stream clients.\n# TYPE errand_sse_clients gauge\nerrand_sse_clients {}", m.sse_clients.load(Ordering::Relaxed));
    let _ = writeln!(out, "# HELP errand_events_streamed_total Events sent to stream clients.\n# TYPE errand_events_streamed_total counter\nerrand_events_streamed_total {}", m.events_streamed.load(Ordering::Relaxed));
    let _ = writeln!(out, "# HELP errand_worker_runs_started_total Runs this process's workers started.\n# TYPE errand_worker_runs_started_total counter\nerrand_worker_runs_started_total {}", m.runs_started.load(Ordering::Relaxed));
    let _ = writeln!(
        out,
        "# HELP errand_events_ingested_total Events this process's workers wrote to the store.\n# TYPE errand_events_ingested_total counter\nerrand_events_ingested_total {}",
        errand_runner::EVENTS_STORED.load(Ordering::Relaxed)
    );
    let finished = m.runs_finished.load(Ordering::Relaxed);
    let _ = writeln!(out, "# HELP errand_run_duration_seconds Durations of runs this process's workers finished.\n# TYPE errand_run_duration_seconds summary\nerrand_run_duration_seconds_count {finished}\nerrand_run_duration_seconds_sum {:.3}", m.run_millis.load(Ordering::Relaxed) as f64 / 1000.0);
    Ok(([("content-type", "text/plain; version=0.0.4")], out))
}

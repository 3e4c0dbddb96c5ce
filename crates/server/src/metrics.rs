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
    /// This process's model gateway, whose tokens and cost by model and
    /// harness `/metrics` reports (set once the runner exists).
    pub gateway: GatewaySlot,
}

/// Where the process's model gateway is put once it exists.
#[derive(Default)]
pub struct GatewaySlot(std::sync::OnceLock<std::sync::Arc<errand_gateway::Gateway>>);

impl GatewaySlot {
    /// Reports `gateway`'s counters from now on (the first one set stays).
    pub fn set(&self, gateway: std::sync::Arc<errand_gateway::Gateway>) {
        let _ = self.0.set(gateway);
    }
}

impl std::fmt::Debug for GatewaySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "GatewaySlot(set)"
        } else {
            "GatewaySlot(empty)"
        })
    }
}

/// The most (model, harness) series `/metrics` shows; the rest are summed as
/// model `other`. Model names come from requests an agent makes, so their
/// number is the agent's to choose.
const MODEL_SERIES: usize = 200;

/// A Prometheus label value: `\`, `"` and newlines escaped, at most 200 characters.
fn label(v: &str) -> String {
    v.chars()
        .take(200)
        .flat_map(|c| match c {
            '\\' => vec!['\\', '\\'],
            '"' => vec!['\\', '"'],
            '\n' => vec!['\\', 'n'],
            c if c.is_control() => vec![],
            c => vec![c],
        })
        .collect()
}

/// The gateway's counters by model and harness, in the Prometheus text format.
fn model_usage(out: &mut String, gateway: &errand_gateway::Gateway) {
    let mut rows = gateway.metrics();
    rows.sort_by_key(|r| std::cmp::Reverse(r.requests));
    if rows.len() > MODEL_SERIES {
        let rest = rows.split_off(MODEL_SERIES - 1);
        let mut other = errand_gateway::MetricRow {
            model: "other".into(),
            harness: "other".into(),
            ..Default::default()
        };
        for r in rest {
            other.requests += r.requests;
            other.input_tokens += r.input_tokens;
            other.output_tokens += r.output_tokens;
            other.cache_read_tokens += r.cache_read_tokens;
            other.cache_write_tokens += r.cache_write_tokens;
            other.cost_usd += r.cost_usd;
        }
        rows.push(other);
    }
    let _ = writeln!(out, "# HELP errand_model_requests_total Model requests the gateway forwarded, by model and harness.\n# TYPE errand_model_requests_total counter");
    for r in &rows {
        let _ = writeln!(
            out,
            "errand_model_requests_total{{model=\"{}\",harness=\"{}\"}} {}",
            label(&r.model),
            label(&r.harness),
            r.requests
        );
    }
    let _ = writeln!(out, "# HELP errand_model_tokens_total Tokens the providers reported, by model, harness and kind.\n# TYPE errand_model_tokens_total counter");
    for r in &rows {
        for (kind, n) in [
            ("input", r.input_tokens),
            ("output", r.output_tokens),
            ("cache_read", r.cache_read_tokens),
            ("cache_write", r.cache_write_tokens),
        ] {
            let _ = writeln!(
                out,
                "errand_model_tokens_total{{model=\"{}\",harness=\"{}\",kind=\"{kind}\"}} {n}",
                label(&r.model),
                label(&r.harness)
            );
        }
    }
    let _ = writeln!(out, "# HELP errand_model_cost_usd_total Cost of the model requests from errand's price table, in US dollars.\n# TYPE errand_model_cost_usd_total counter");
    for r in &rows {
        let _ = writeln!(
            out,
            "errand_model_cost_usd_total{{model=\"{}\",harness=\"{}\"}} {:.6}",
            label(&r.model),
            label(&r.harness),
            r.cost_usd
        );
    }
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
    if let Some(g) = m.gateway.0.get() {
        model_usage(&mut out, g);
    }
    Ok(([("content-type", "text/plain; version=0.0.4")], out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_cannot_break_out_of_their_quotes() {
        assert_eq!(label("a\"b\\c\nd\r"), "a\\\"b\\\\c\\nd");
        assert_eq!(label(&"m".repeat(500)).len(), 200);
    }
}

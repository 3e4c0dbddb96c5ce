//! Per (model, harness) counters over every recorded call since the
//! gateway started, for errand's metrics endpoint.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::Usage;

/// Totals for one (model, harness) pair.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricRow {
    /// The model.
    pub model: String,
    /// The harness.
    pub harness: String,
    /// Requests recorded.
    pub requests: u64,
    /// Input tokens (without cache reads and writes).
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Tokens written to the prompt cache.
    pub cache_write_tokens: u64,
    /// Cost in USD (calls that could not be priced count as 0).
    pub cost_usd: f64,
}

/// The counters.
#[derive(Default)]
pub(crate) struct Metrics {
    rows: Mutex<BTreeMap<(String, String), MetricRow>>,
}

impl Metrics {
    pub(crate) fn record(&self, model: &str, harness: &str, usage: &Usage) {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let row = rows
            .entry((model.to_owned(), harness.to_owned()))
            .or_insert_with(|| MetricRow {
                model: model.to_owned(),
                harness: harness.to_owned(),
                ..MetricRow::default()
            });
        row.requests += 1;
        row.input_tokens += usage.input_tokens;
        row.output_tokens += usage.output_tokens;
        row.cache_read_tokens += usage.cache_read_tokens;
        row.cache_write_tokens += usage.cache_write_tokens;
        row.cost_usd += usage.cost_usd.unwrap_or(0.0);
    }

    pub(crate) fn rows(&self) -> Vec<MetricRow> {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        rows.values().cloned().collect()
    }
}

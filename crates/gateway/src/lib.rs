//! errand's model gateway (host side).
//!
//! Each run gets a random per-run key ([`RunKey`]) instead of the real
//! provider credential. The harness in the sandbox talks to the gateway with
//! that key; the gateway checks it, puts the real credential in its place,
//! forwards the request to the provider, streams the answer back as it
//! arrives and records every request as a [`ModelCall`] (tokens from the
//! provider's own answer, cost from errand's price table). It enforces each
//! run's budget, model allowlist and request rate.
//!
//! What a harness is given: the run key as its API key and, as its base URL,
//! `<gateway>/<upstream id>` plus whatever prefix the provider's base URL
//! has for that harness (e.g. `…/openai` for an upstream whose `base_url`
//! already ends in `/v1`). A request to `<gateway>/<id>/<rest>` goes to
//! `<base_url>/<rest>` with the query string kept (minus `key=`).
//!
//! Behaviour in brief (details in each module):
//! - unknown or revoked key, or no upstream with the path's id: 401 in the
//!   provider's error shape, and no upstream request;
//! - refusals by policy (allowlist 403, budget 400, rate 429 with
//!   `retry-after`), 413 for bodies over [`forward::MAX_BODY_BYTES`] and 502
//!   for an unreachable provider are provider-shaped and recorded as calls;
//! - answers stream through unbuffered, byte for byte; the one change to a
//!   request body is `stream_options.include_usage` on streaming Chat
//!   Completions requests, so their usage is exact;
//! - [`GatewayEvent::BudgetExceeded`] is sent once per run: when a completed
//!   call takes the totals to a limit, or (if that never happened) when a
//!   request is refused for the budget;
//! - [`Gateway::revoke`] ends the run's in-flight requests and streams.
//!
//! Code map:
//! - this file: the public types and [`Gateway`].
//! - [`key`]: run keys and the registry of live grants.
//! - [`forward`]: the axum handler: authentication, policy, forwarding,
//!   the teeing response stream and recording.
//! - [`usage`]: incremental SSE/JSON usage extraction per protocol.
//! - [`policy`]: budget, allowlist and rate limit.
//! - [`error`]: provider-shaped error answers.
//! - [`metrics`]: per (model, harness) counters.

#![warn(missing_docs)]

pub mod error;
pub mod forward;
pub mod key;
pub mod metrics;
pub mod policy;
pub mod usage;

use std::fmt;
use std::sync::Arc;

pub use errand_core::{ModelCall, Usage};
pub use key::RunKey;
pub use metrics::MetricRow;

/// A provider wire protocol: how the credential is put in and usage read out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI Responses, Chat Completions and OpenAI-compatible servers.
    OpenAi,
    /// Google Gemini API.
    Gemini,
}

impl Protocol {
    /// The lowercase name (`anthropic`, `openai`, `gemini`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Anthropic => "anthropic",
            Protocol::OpenAi => "openai",
            Protocol::Gemini => "gemini",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The real provider credential the gateway puts in place of the run key.
#[derive(Clone)]
pub enum Credential {
    /// An API key (`x-api-key` for Anthropic, `Authorization: Bearer` for
    /// OpenAI, `x-goog-api-key` for Gemini).
    ApiKey(String),
    /// A bearer token, e.g. a Claude subscription OAuth token
    /// (`Authorization: Bearer` plus `anthropic-beta: oauth-2025-04-20`).
    Bearer(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::ApiKey(_) => f.write_str("ApiKey(***)"),
            Credential::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

/// One provider endpoint a run may use.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The first path segment at the gateway, e.g. `anthropic`.
    pub id: String,
    /// The wire protocol.
    pub protocol: Protocol,
    /// Where `<gateway>/<id>/<rest>` goes: `<base_url>/<rest>` (query kept).
    pub base_url: String,
    /// The real credential.
    pub credential: Credential,
}

/// A run's limits. `None` means unlimited.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    /// Maximum total cost in USD.
    pub max_cost_usd: Option<f64>,
    /// Maximum total tokens (input + output + cache reads + cache writes).
    pub max_tokens: Option<u64>,
    /// Model allowlist: exact names or prefixes ending in `*`.
    pub models: Option<Vec<String>>,
    /// Requests per minute (sliding window).
    pub requests_per_minute: Option<u32>,
}

/// What a run may use, given to [`Gateway::grant`].
pub struct Grant {
    /// The run id.
    pub run: String,
    /// The harness name (for metrics).
    pub harness: String,
    /// The providers the run may reach.
    pub upstreams: Vec<Upstream>,
    /// The run's limits.
    pub limits: Limits,
    /// Where the gateway reports the run's calls and budget stops.
    pub events: tokio::sync::mpsc::UnboundedSender<GatewayEvent>,
}

/// What the gateway reports about a run.
#[derive(Debug, Clone)]
pub enum GatewayEvent {
    /// One request, as recorded.
    Call(ModelCall),
    /// The run reached its budget (sent once per run).
    BudgetExceeded {
        /// `budget exceeded ($X of $Y)` or `budget exceeded (N of M tokens)`.
        reason: String,
    },
}

/// How long the gateway waits to connect to a provider before answering 502.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The gateway: one per errand process.
pub struct Gateway {
    pub(crate) client: reqwest::Client,
    pub(crate) registry: key::Registry,
    pub(crate) metrics: metrics::Metrics,
}

impl Gateway {
    /// A gateway with its own HTTP client (rustls, no proxy from the
    /// environment, no automatic decompression).
    pub fn new() -> Arc<Gateway> {
        // No overall timeout: answers stream for as long as the model writes.
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            // Building fails only when the TLS backend cannot start, which is
            // not something a caller can act on (reqwest::Client::new panics
            // the same way).
            .expect("the HTTP client's TLS backend initialises");
        Arc::new(Gateway {
            client,
            registry: key::Registry::default(),
            metrics: metrics::Metrics::default(),
        })
    }

    /// Register a run; its key is valid until [`Gateway::revoke`].
    pub fn grant(&self, grant: Grant) -> RunKey {
        self.registry.grant(grant)
    }

    /// Invalidate a run's key and end its in-flight streams.
    pub fn revoke(&self, key: &RunKey) {
        self.registry.revoke(key)
    }

    /// The sum of the run's recorded calls (cost included); still readable
    /// after revoke. `None` for a key this gateway did not issue.
    pub fn totals(&self, key: &RunKey) -> Option<Usage> {
        self.registry.totals(key)
    }

    /// The routes: `/<upstream id>/<rest…>`, any method.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        forward::router(Arc::clone(self))
    }

    /// Serve [`Gateway::router`] on a Unix socket until the listener fails.
    pub async fn serve_unix(
        self: Arc<Self>,
        listener: tokio::net::UnixListener,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router().into_make_service()).await
    }

    /// Per (model, harness) counters since the gateway started.
    pub fn metrics(&self) -> Vec<MetricRow> {
        self.metrics.rows()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names() {
        let names: Vec<String> = [Protocol::Anthropic, Protocol::OpenAi, Protocol::Gemini]
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(names, ["anthropic", "openai", "gemini"]);
    }

    #[test]
    fn credentials_are_masked() {
        let shown = format!(
            "{:?} {:?}",
            Credential::ApiKey("sk-secret".into()),
            Credential::Bearer("oauth-secret".into())
        );
        assert_eq!(shown, "ApiKey(***) Bearer(***)");
    }
}

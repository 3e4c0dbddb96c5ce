//! `errand serve`: one process that serves errand's HTTP API and live event
//! streams, and runs a pool of workers that claim queued runs from the store.
//!
//! * [`app`] builds the router (`fn app(state) -> Router`, so tests call it
//!   without a socket); [`routes`] holds the API's routes under `/api/v1`
//!   (and their deprecated `/api` aliases) and generates the OpenAPI document
//!   from them, [`views`] the types the API answers;
//! * [`api`] holds the handlers, [`sse`] the resumable event streams,
//!   [`auth`] bearer tokens and share links, [`worker`] the pool;
//! * [`viewer`] the web pages (runs, a run's trace, a fan-out group), their
//!   embedded assets, and parsing of trace files dropped on a page;
//! * [`requestlog`] one info line per request (method, masked path, status, latency);
//! * every error is JSON `{"error":{"code":…,"message":…}}` ([`ApiError`]).

#![warn(missing_docs)]

pub mod access;
pub mod api;
pub mod auth;
pub mod error;
mod github;
pub mod integrations;
pub mod localview;
pub mod metrics;
pub mod newrun;
pub mod pick;
pub mod repo;
pub mod requestlog;
pub mod routes;
pub mod sse;
pub mod viewer;
pub mod views;
pub mod worker;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use errand_harness::Registry;
use errand_store::Store;

pub use error::ApiError;
pub use worker::{WorkerConfig, WorkerPool};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Where runs, events and tokens live.
    pub store: Arc<dyn Store>,
    /// The harnesses runs may use.
    pub harnesses: Registry,
    /// The counters `/metrics` reports.
    pub metrics: Arc<metrics::Metrics>,
    /// How often streams look for new events when none are waiting.
    pub poll: std::time::Duration,
    /// Slack and GitHub, when configured.
    pub integrations: Option<Arc<integrations::Integrations>>,
    /// GitHub's API, for finishing the App's manifest registration.
    pub github_api: String,
    /// Canonical directories under which a run from the API may clone a local
    /// path (`server.local_repos`; see [`repo`]). Empty: none.
    pub local_repos: Arc<Vec<std::path::PathBuf>>,
    /// This server's rules for new runs (allowed models, defaults, which
    /// keys its runs get).
    pub policy: Arc<newrun::RunPolicy>,
    /// The forge of `github:` repositories (errand's GitHub App), when
    /// configured: picks of a fan-out, and the repositories a new run may choose.
    pub forge: Option<Arc<dyn errand_runner::Forge>>,
    /// The viewer's public address, for links in pull requests.
    pub public_url: Option<String>,
    /// The forge's repositories, listed at most once a minute.
    pub forge_repos: Arc<tokio::sync::Mutex<Option<ListedRepos>>>,
}

/// The forge's repositories, and when they were listed.
pub type ListedRepos = (std::time::Instant, Vec<String>);

impl AppState {
    /// The state of a server on `store` and `harnesses`, with no integrations and no local repositories allowed.
    pub fn new(store: Arc<dyn Store>, harnesses: Registry) -> Self {
        AppState {
            store,
            harnesses,
            metrics: Arc::new(metrics::Metrics::default()),
            poll: std::time::Duration::from_millis(50),
            integrations: None,
            github_api: errand_github::DEFAULT_API_BASE.to_string(),
            local_repos: Arc::new(Vec::new()),
            policy: Arc::default(),
            forge: None,
            public_url: None,
            forge_repos: Arc::default(),
        }
    }
}

/// The OpenAPI document describing the API, generated from its routes ([`routes::openapi`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::openapi()
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    // The API (each route names the one scope it needs) and its documented public routes.
    let api = routes::mount(&state);
    let public = Router::new()
        // Verified by their own signatures, not by API tokens.
        .route("/slack/commands", post(integrations::slack_command))
        .route("/slack/interactions", post(integrations::slack_interaction))
        .route("/slack/events", post(integrations::slack_event))
        .route("/github/webhook", post(integrations::github_webhook))
        .route(
            errand_github::MANIFEST_REDIRECT_PATH,
            get(integrations::github_manifest_callback),
        );
    api.merge(public)
        .merge(viewer::routes(viewer::Mode::Serve))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn(requestlog::log))
        .with_state(state)
}

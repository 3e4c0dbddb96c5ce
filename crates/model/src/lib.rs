//! errand's scripted model: a local HTTP server that speaks a model
//! provider's wire protocol closely enough that a real coding-agent CLI runs
//! against it (Claude Code via `ANTHROPIC_BASE_URL`; Codex via a custom
//! provider with `wire_api = "responses"` and `base_url = "{server}/v1"`;
//! OpenCode via an `@ai-sdk/openai-compatible` provider with
//! `baseURL = "{server}/v1"`; Gemini CLI via `GOOGLE_GEMINI_BASE_URL={server}`),
//! replaying a [`Scenario`] deterministically. One server speaks every
//! protocol, so the same scenario drives any of these CLIs.
//!
//! Code map:
//! - [`scenario`]: the protocol-neutral scenario format, parsing, and step
//!   selection. No I/O besides reading the file.
//! - [`anthropic`]: the Anthropic Messages wire protocol (request inspection,
//!   tool-name mapping, JSON and SSE answers).
//! - [`openai`]: the OpenAI Responses wire protocol for Codex (the same
//!   concerns: turns counted from `input[]`, Codex tool mapping, SSE).
//! - [`openai_chat`]: the OpenAI Chat Completions wire protocol for OpenCode
//!   (turns counted from `messages[]`, OpenCode tool mapping, chunk SSE).
//! - [`gemini`]: the Gemini API for Gemini CLI (turns counted from
//!   `contents[]`, Gemini CLI tool mapping, JSON-schema side calls, SSE).
//! - [`functions`]: the offered function tools and their parameter
//!   names, shared by the two protocols that declare tools as JSON schemas.
//! - [`log`]: the in-memory request log.
//! - this file: the axum router, the running-server handle [`ScriptedModel`]
//!   and [`serve_forever`] for `errand mock-model`.
//!
//! Invariants: the server is stateless between requests (the step served
//! depends only on the request), and no request body can make it panic.
//!
//! Endpoints: `POST /v1/messages` (query such as `?beta=true` ignored; SSE
//! when `"stream": true`), `POST /v1/messages/count_tokens`,
//! `POST /v1/responses` (OpenAI Responses; SSE when `"stream": true`),
//! `POST /v1/chat/completions` (OpenAI Chat Completions; SSE when
//! `"stream": true`), `POST /v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent` (SSE with `?alt=sse`) and `:countTokens`
//! (Gemini; an unknown method is a 404 with a Google-style error);
//! anything else is a 404 with an Anthropic-style JSON error. There is no
//! `GET /v1/models`: Codex 0.169.0 with a custom provider never asks for it,
//! and it stays a 404 as before.

#![warn(missing_docs)]

pub mod anthropic;
pub mod functions;
pub mod gemini;
pub mod log;
pub mod openai;
pub mod openai_chat;
pub mod scenario;
mod wire;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use log::{LoggedRequest, RequestLog, Served};
pub use scenario::{Scenario, ScenarioError, Selection, Step};

/// Largest request body accepted (Claude Code sends ~120 KB per turn; long
/// conversations grow from there).
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// How long [`ScriptedModel::shutdown`] waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

struct AppState {
    scenario: Scenario,
    log: RequestLog,
}

type Shared = State<Arc<AppState>>;

/// The scripted model's routes, serving `scenario` and appending to `log`.
pub fn router(scenario: Scenario, log: RequestLog) -> Router {
    let state = Arc::new(AppState { scenario, log });
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/responses", post(responses))
        .route("/v1/chat/completions", post(chat_completions))
        .route(GEMINI_MODELS_ROUTE, post(gemini_models))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(state)
}

/// [`router`], answering 401 in the provider's error shape (and logging it
/// as [`Served::Unauthorized`]) to any request that does not carry `key` in
/// `x-api-key`, `Authorization: Bearer`, `x-goog-api-key` or `?key=`: the
/// real provider's check, for tests of what stands between a harness and
/// the provider (errand's model gateway).
pub fn router_requiring_key(scenario: Scenario, log: RequestLog, key: String) -> Router {
    let required = Arc::new(RequiredKey {
        key,
        log: log.clone(),
    });
    router(scenario, log).layer(axum::middleware::from_fn_with_state(required, require_key))
}

struct RequiredKey {
    key: String,
    log: RequestLog,
}

/// Whether the request carries `key` where a provider SDK puts it.
fn carries_key(req: &Request, key: &str) -> bool {
    let headers = req.headers();
    let header_is = |name: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|v| v.to_str().ok() == Some(key))
    };
    let bearer = headers
        .get_all(axum::http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.strip_prefix("Bearer ") == Some(key));
    let query = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .any(|pair| pair.strip_prefix("key=") == Some(key));
    header_is("x-api-key") || header_is("x-goog-api-key") || bearer || query
}

async fn require_key(
    State(required): State<Arc<RequiredKey>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if carries_key(&req, &required.key) {
        return next.run(req).await;
    }
    let at = Instant::now();
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    tracing::warn!(
        method,
        path,
        "scripted model: request without the required key"
    );
    let message = "invalid API key (the scripted model requires a specific key)";
    let response = if path.starts_with("/v1beta/") {
        gemini::error_response(401, "UNAUTHENTICATED", message)
    } else if path.starts_with("/v1/responses") || path.starts_with("/v1/chat/") {
        openai::error_response(401, "invalid_request_error", message)
    } else {
        anthropic::error_response(401, "authentication_error", message)
    };
    required
        .log
        .record(at, &method, &path, Served::Unauthorized, 401);
    response
}

/// The whole request body, or why it could not be read.
async fn read_body(body: Body) -> Result<axum::body::Bytes, String> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| format!("cannot read request body: {e}"))
}

fn anthropic_unreadable(message: &str) -> (Response, Served) {
    let response = anthropic::error_response(400, anthropic::DEFAULT_ERROR_TYPE, message);
    (response, Served::Rejected)
}

async fn messages(State(state): Shared, req: Request) -> Response {
    let at = Instant::now();
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let (response, served) = match read_body(req.into_body()).await {
        Ok(bytes) => {
            state.log.record_body(&bytes);
            anthropic::messages(&state.scenario, &bytes)
        }
        Err(message) => anthropic_unreadable(&message),
    };
    finish(&state, at, &method, &path, served, response)
}

async fn responses(State(state): Shared, req: Request) -> Response {
    let at = Instant::now();
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let (response, served) = match read_body(req.into_body()).await {
        Ok(bytes) => openai::responses(&state.scenario, &bytes),
        Err(message) => (
            openai::error_response(400, openai::DEFAULT_ERROR_TYPE, &message),
            Served::Rejected,
        ),
    };
    finish(&state, at, &method, &path, served, response)
}

async fn chat_completions(State(state): Shared, req: Request) -> Response {
    let at = Instant::now();
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let (response, served) = match read_body(req.into_body()).await {
        Ok(bytes) => openai_chat::chat_completions(&state.scenario, &bytes),
        Err(message) => (
            openai::error_response(400, openai::DEFAULT_ERROR_TYPE, &message),
            Served::Rejected,
        ),
    };
    finish(&state, at, &method, &path, served, response)
}

/// The Gemini route; the last segment is `MODEL:METHOD`.
const GEMINI_MODELS_ROUTE: &str = "/v1beta/models/{target}";

async fn gemini_models(State(state): Shared, req: Request) -> Response {
    let at = Instant::now();
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let query = req.uri().query().map(str::to_owned);
    let target = path
        .strip_prefix("/v1beta/models/")
        .unwrap_or_default()
        .to_owned();
    let (response, served) = match read_body(req.into_body()).await {
        Ok(bytes) => gemini::models(&state.scenario, &target, query.as_deref(), &bytes),
        Err(message) => (
            gemini::error_response(400, "INVALID_ARGUMENT", &message),
            Served::Rejected,
        ),
    };
    finish(&state, at, &method, &path, served, response)
}

async fn count_tokens(State(state): Shared, req: Request) -> Response {
    let at = Instant::now();
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let (response, served) = match read_body(req.into_body()).await {
        Ok(bytes) => (anthropic::count_tokens(&bytes), Served::CountTokens),
        Err(message) => anthropic_unreadable(&message),
    };
    finish(&state, at, &method, &path, served, response)
}

async fn not_found(State(state): Shared, req: Request) -> Response {
    let at = Instant::now();
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let message = format!("no such endpoint: {method} {path}");
    let response = anthropic::error_response(404, "not_found_error", &message);
    finish(&state, at, &method, &path, Served::NotFound, response)
}

fn finish(
    state: &AppState,
    at: Instant,
    method: &str,
    path: &str,
    served: Served,
    response: Response,
) -> Response {
    let status = response.status().as_u16();
    tracing::debug!(method, path, ?served, status, "scripted model answered");
    state.log.record(at, method, path, served, status);
    response
}

/// Handle of a running scripted-model server. Dropping it stops the server.
pub struct ScriptedModel {
    addr: SocketAddr,
    log: RequestLog,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl ScriptedModel {
    /// Bind `listen` (port 0 picks a free port) and serve `scenario` in the
    /// background on the current tokio runtime.
    pub async fn start(scenario: Scenario, listen: SocketAddr) -> std::io::Result<ScriptedModel> {
        let log = RequestLog::new();
        let app = router(scenario, log.clone());
        ScriptedModel::serve(app, log, listen).await
    }

    /// Like [`ScriptedModel::start`], appending to `log` (e.g. one made with
    /// [`RequestLog::keeping_bodies`]).
    pub async fn start_with_log(
        scenario: Scenario,
        listen: SocketAddr,
        log: RequestLog,
    ) -> std::io::Result<ScriptedModel> {
        let app = router(scenario, log.clone());
        ScriptedModel::serve(app, log, listen).await
    }

    /// Like [`ScriptedModel::start`], but every request must carry `key`
    /// (see [`router_requiring_key`]); others get 401 and are logged as
    /// [`Served::Unauthorized`].
    pub async fn start_requiring_key(
        scenario: Scenario,
        listen: SocketAddr,
        key: impl Into<String>,
    ) -> std::io::Result<ScriptedModel> {
        let log = RequestLog::new();
        let app = router_requiring_key(scenario, log.clone(), key.into());
        ScriptedModel::serve(app, log, listen).await
    }

    async fn serve(
        app: Router,
        log: RequestLog,
        listen: SocketAddr,
    ) -> std::io::Result<ScriptedModel> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // Either an explicit shutdown or the handle being dropped.
                    let _ = rx.await;
                })
                .await
        });
        tracing::debug!(%addr, "scripted model listening");
        Ok(ScriptedModel {
            addr,
            log,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for `ANTHROPIC_BASE_URL`, e.g. `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        base_url(self.addr)
    }

    /// Base URL for an OpenAI client: a Codex provider's `base_url` (Responses)
    /// or an OpenCode `@ai-sdk/openai-compatible` provider's `baseURL` (Chat
    /// Completions): [`ScriptedModel::base_url`] + `/v1`. Gemini CLI's
    /// `GOOGLE_GEMINI_BASE_URL` is [`ScriptedModel::base_url`] itself.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", base_url(self.addr))
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.snapshot()
    }

    /// The live request log (shares entries with the server).
    pub fn log(&self) -> RequestLog {
        self.log.clone()
    }

    /// Stop accepting requests, let open ones finish (up to 5 s), then stop.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "scripted model server failed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "scripted model task failed"),
                Err(_) => task.abort(),
            }
        }
    }
}

impl Drop for ScriptedModel {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `http://HOST:PORT` for a bound address; an unspecified IP (`0.0.0.0`,
/// `::`) becomes the matching loopback address.
pub fn base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Serve `scenario` on `listen` until ctrl-c (or SIGTERM on Unix). Prints the
/// bound address on stderr. Used by `errand mock-model --scenario FILE --listen ADDR`.
pub async fn serve_forever(scenario: Scenario, listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    eprintln!(
        "errand mock-model: listening on {} ({} steps); ANTHROPIC_BASE_URL={}; OpenAI (Responses, Chat Completions) base_url={}/v1; GOOGLE_GEMINI_BASE_URL={}",
        addr,
        scenario.steps.len(),
        base_url(addr),
        base_url(addr),
        base_url(addr)
    );
    let app = router(scenario, RequestLog::new());
    axum::serve(listener, app)
        .with_graceful_shutdown(stop_signal())
        .await
}

async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handler available: never stop on this branch.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_uses_loopback_for_unspecified_addresses() {
        let v4: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 4000));
        assert_eq!(base_url(v4), "http://127.0.0.1:4000");
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 4001);
        assert_eq!(base_url(v6), "http://[::1]:4001");
        let lo = SocketAddr::from(([127, 0, 0, 1], 4002));
        assert_eq!(base_url(lo), "http://127.0.0.1:4002");
    }
}

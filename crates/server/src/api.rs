//! The run API: create, list, read, cancel, follow up, and read events.

use crate::error::ApiQuery;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use errand_core::{RunId, RunRecord, RunSpec, RunState};
use errand_store::RunFilter;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::views::{ErrorBody, RunDetail, RunList, RunView};
use crate::{ApiError, AppState};

/// The body of `POST /api/v1/runs`: the same fields as `errand run`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// What the agent is asked to do.
    pub prompt: String,
    /// The repository to clone: github:owner/repo, or an https://, http://, ssh:// or
    /// git@host:path URL; absent: an empty workspace. A local path or file:/// URL only if it
    /// resolves (symlinks and .. followed) under a directory of the server's
    /// server.local_repos (default none); otherwise 403 local_repo_not_allowed.
    #[serde(default)]
    pub repo: Option<String>,
    /// The harness to run (default: the server's default harness).
    #[serde(default = "default_harness")]
    #[schema(default = "claude-code")]
    pub harness: String,
    /// The model the harness asks for; `None`: the harness's default.
    #[serde(default)]
    pub model: Option<String>,
    /// Whether errand pushes the run's branch when it ends.
    #[serde(default)]
    pub push: bool,
    /// The branch the run starts from; `None`: the remote's default branch.
    #[serde(default)]
    pub base: Option<String>,
    /// The run's time limit, in seconds.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// At most this many agent turns.
    #[serde(default)]
    pub max_turns: Option<u32>,
    /// A command run in the workspace after the agent finished; its result is recorded.
    #[serde(default)]
    pub test_cmd: Option<String>,
    /// Let the agent fetch and push the run's repository itself (github: repositories).
    #[serde(default)]
    pub agent_git: bool,
    /// With agent_git: other branches the agent may push.
    #[serde(default)]
    pub agent_branches: Vec<String>,
    /// With agent_git: the agent may force-push the branches it may push.
    #[serde(default)]
    pub allow_force_push: bool,
    /// Stop the run when its model requests cost this many US dollars (metered by the gateway).
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    /// Stop the run when its model requests used this many tokens (metered by the gateway).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// The fan-out group this run belongs to (letters, digits, `-` and `_`,
    /// at most 64): runs of one group are compared side by side.
    #[serde(default)]
    pub group: Option<String>,
    /// The sandbox backend to run in (`GET /api/v1/options` lists what this
    /// server offers); unset: its default.
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// The harness of a run that names none.
pub const DEFAULT_HARNESS: &str = "claude-code";

fn default_harness() -> String {
    DEFAULT_HARNESS.into()
}

/// The query of `POST /api/v1/runs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CreateQuery {
    /// Check the run as it would be queued (the same checks, and a missing
    /// key where this server runs its runs) and queue nothing: 200 when it
    /// would be queued, else the error it would get.
    #[serde(default)]
    pub dry_run: bool,
}

/// The answer to a dry run: the run would be queued.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct DryRun {
    /// Always true (a request that would be refused gets its error).
    pub valid: bool,
    /// The harness the run would use.
    pub harness: String,
}

/// A run as the API shows it ([`RunView`]), as JSON.
pub fn run_json(r: &RunRecord) -> serde_json::Value {
    serde_json::to_value(RunView::from(r)).unwrap_or_default()
}

/// `POST /api/v1/runs`: queues a run (201, with the run); with `dry_run`,
/// only checks it (200).
#[utoipa::path(post, path = "/runs", summary = "Queue a run (or, with dry_run, check one)", params(CreateQuery), request_body = CreateRun, responses(
    (status = 201, description = "The queued run", body = RunView),
    (status = 200, description = "dry_run: the run would be queued", body = DryRun),
    (status = 403, description = "insufficient_scope, or local_repo_not_allowed", body = ErrorBody),
    (status = 422, description = "invalid_request (its field names the request's field when there is one)", body = ErrorBody),
))]
pub async fn create_run(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<CreateQuery>,
    caller: Option<axum::Extension<errand_store::TokenInfo>>,
    body: Result<Json<CreateRun>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    let spec = check_run(&st, b, caller.map(|axum::Extension(t)| t)).await?;
    if q.dry_run {
        let harness = st
            .harnesses
            .get(&spec.harness)
            .map_err(|e| ApiError::invalid(e.to_string()).on("harness"))?;
        let stored = crate::newrun::stored_secrets(&st).await?;
        let missing = st.policy.missing_env(harness.as_ref(), &stored);
        if !missing.is_empty() {
            return Err(ApiError::invalid(format!(
                "{} needs {} and this server does not have it (set it in errand's environment or with `errand secret set`)",
                harness.name(),
                missing.join(", ")
            ))
            .on("harness"));
        }
        let v = DryRun {
            valid: true,
            harness: spec.harness,
        };
        return Ok((StatusCode::OK, Json(v)).into_response());
    }
    let rec = st.store.create_run(RunId::new(), &spec).await?;
    tracing::info!(run = %rec.id, "queued");
    Ok((StatusCode::CREATED, Json(RunView::from(&rec))).into_response())
}

/// Whether `v` cannot be a branch or model name: empty, read as an option
/// by the tools it is handed to, or holding spaces or control characters.
fn not_a_name(v: &str) -> bool {
    v.is_empty() || v.starts_with('-') || v.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// The run `b` asks for, checked: each refusal names its field.
async fn check_run(
    st: &AppState,
    b: CreateRun,
    caller: Option<errand_store::TokenInfo>,
) -> Result<RunSpec, ApiError> {
    if b.prompt.trim().is_empty() {
        return Err(
            ApiError::invalid("prompt is empty: say what the agent should do").on("prompt"),
        );
    }
    let harness = st
        .harnesses
        .get(&b.harness)
        .map_err(|e| ApiError::invalid(e.to_string()).on("harness"))?;
    if b.model.is_some() && !harness.capabilities().model_choice {
        return Err(ApiError::invalid(format!(
            "{} does not let errand choose the model; drop model",
            harness.name()
        ))
        .on("model"));
    }
    if b.model.as_deref().is_some_and(not_a_name) {
        return Err(ApiError::invalid(
            "model is not a model name (empty, starts with '-', or has spaces or control characters)",
        )
        .on("model"));
    }
    st.policy.check_model(b.model.as_deref())?;
    let mut spec = RunSpec::new(b.prompt, b.harness);
    spec.push = b.push;
    spec.agent_git = b.agent_git;
    spec.agent_branches = b.agent_branches;
    spec.allow_force_push = b.allow_force_push;
    if b.max_cost_usd.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
        return Err(
            ApiError::invalid("max_cost_usd must be a positive number of US dollars")
                .on("max_cost_usd"),
        );
    }
    if b.max_tokens == Some(0) {
        return Err(ApiError::invalid("max_tokens must be positive").on("max_tokens"));
    }
    if b.timeout_secs == Some(0) {
        return Err(ApiError::invalid("timeout_secs must be positive").on("timeout_secs"));
    }
    if let Some(g) = &b.group {
        if g.is_empty()
            || g.len() > 64
            || !g
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(
                ApiError::invalid("group must be 1 to 64 letters, digits, '-' or '_'").on("group"),
            );
        }
    }
    spec.max_cost_usd = b.max_cost_usd;
    spec.max_tokens = b.max_tokens;
    // What push and agent_git need is checked against the repository asked for.
    spec.repo = b.repo.as_deref().map(errand_core::RepoSource::parse);
    spec.check_push_options(errand_core::Naming::Fields)
        .map_err(|e| ApiError::invalid(e).on("push"))?;
    if b.base.as_deref().is_some_and(not_a_name) {
        return Err(ApiError::invalid(
            "base is not a branch name (empty, starts with '-', or has spaces or control characters)",
        )
        .on("base"));
    }
    // A repository on the server's own filesystem only under server.local_repos.
    spec.repo = match b.repo.as_deref() {
        Some(r) => Some(
            crate::repo::check(r, &st.local_repos)
                .await
                .map_err(|e| e.on("repo"))?,
        ),
        None => None,
    };
    spec.model = b.model;
    spec.base_branch = b.base;
    spec.group = b.group;
    st.policy.check_sandbox(b.sandbox.as_deref())?;
    spec.sandbox = b.sandbox;
    spec.timeout_secs = b
        .timeout_secs
        .unwrap_or(RunSpec::DEFAULT_TIMEOUT_SECS)
        .max(1);
    spec.max_turns = b.max_turns.unwrap_or(RunSpec::DEFAULT_MAX_TURNS);
    spec.test_command = b.test_cmd;
    if let Some(t) = caller {
        spec.requested_by = Some(format!("api:{}", t.name));
        spec.origin = Some(errand_core::Origin::Api { token: t.name });
    }
    Ok(spec)
}

/// The query of `GET /api/v1/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only runs in this state.
    pub state: Option<String>,
    /// Only runs of this repository.
    pub repo: Option<String>,
    /// Only runs of this harness.
    pub harness: Option<String>,
    /// Only runs of this fan-out group.
    pub group: Option<String>,
    /// Only runs asked for by this requester (`slack:T/U`, `github:login`…).
    pub requested_by: Option<String>,
    /// At most this many runs (default 50, at most 500).
    pub limit: Option<u32>,
    /// Skip this many runs first (paging).
    pub offset: Option<u32>,
}

/// `GET /api/v1/runs`: runs, newest first, and the offset of the next page.
#[utoipa::path(get, path = "/runs", summary = "List runs, newest first", params(ListQuery), responses(
    (status = 200, description = "A page of runs", body = RunList),
    (status = 422, description = "invalid_request", body = ErrorBody),
))]
pub async fn list_runs(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<RunList>, ApiError> {
    let state = match q.state.as_deref() {
        Some(s) => Some(s.parse::<RunState>().map_err(ApiError::invalid)?),
        None => None,
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let offset = q.offset.unwrap_or(0);
    let filter = RunFilter {
        state,
        limit,
        repo: q.repo,
        harness: q.harness,
        group: q.group,
        requested_by: q.requested_by,
        offset,
        ..Default::default()
    };
    let runs = st.store.list_runs(&filter).await?;
    let next = (runs.len() as u32 == limit).then(|| offset + limit);
    Ok(Json(RunList {
        runs: runs.iter().map(RunView::from).collect(),
        next_offset: next,
    }))
}

/// `GET /api/v1/runs/{id}`: one run (by id or unique prefix) with its state changes.
#[utoipa::path(get, path = "/runs/{id}", summary = "One run, with its state changes", params(("id" = String, Path, description = "The run's id or a unique prefix of it")), responses(
    (status = 200, description = "The run", body = RunDetail),
    (status = 404, description = "not_found", body = ErrorBody),
))]
pub async fn get_run(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunDetail>, ApiError> {
    let rec = st.store.find_run(&id).await?;
    let transitions = st.store.transitions(rec.id).await?;
    Ok(Json(RunDetail {
        run: RunView::from(&rec),
        transitions: transitions.into_iter().map(Into::into).collect(),
    }))
}

/// `POST /api/v1/runs/{id}/cancel`: cancels a queued or running run.
#[utoipa::path(post, path = "/runs/{id}/cancel", summary = "Cancel a queued or running run", params(("id" = String, Path, description = "The run's id or a unique prefix of it")), responses(
    (status = 200, description = "The run", body = RunView),
    (status = 404, description = "not_found", body = ErrorBody),
    (status = 409, description = "conflict: the run already ended", body = ErrorBody),
))]
pub async fn cancel_run(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let rec = st.store.find_run(&id).await?;
    let rec = cancel(&st, rec, "cancelled through the API before it started").await?;
    Ok(Json(RunView::from(&rec)))
}

/// Cancels `rec`: at once if nobody runs it yet (`why` is the reason recorded),
/// else by asking the process that runs it to stop.
pub async fn cancel(st: &AppState, rec: RunRecord, why: &str) -> Result<RunRecord, ApiError> {
    if rec.state.is_terminal() {
        return Err(ApiError::conflict(format!(
            "run {} already ended ({})",
            rec.id.short(),
            rec.state
        )));
    }
    let rec = if rec.state == RunState::Queued {
        // Nobody runs it yet: cancel at once. If a worker claimed it meanwhile,
        // the transition still succeeds and the worker sees a cancelled run.
        match st
            .store
            .transition(rec.id, RunState::Cancelled, Some(why))
            .await
        {
            Ok(r) => {
                // Its trace says so too, so streams of it end cleanly.
                let seq = st.store.last_event_seq(r.id).await? + 1;
                let ev = errand_core::Event {
                    seq,
                    ts: chrono::Utc::now(),
                    source: errand_core::EventSource::Errand,
                    raw_line: None,
                    kind: errand_core::EventKind::State {
                        state: RunState::Cancelled,
                        reason: r.reason.clone(),
                    },
                };
                st.store.append_events(r.id, &[ev]).await?;
                r
            }
            Err(_) => st.store.request_cancel(rec.id).await?,
        }
    } else {
        st.store.request_cancel(rec.id).await?
    };
    Ok(rec)
}

/// The body of `POST /api/v1/runs/{id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowUp {
    /// The follow-up instruction for the run's next turn.
    pub message: String,
}

/// `POST /api/v1/runs/{id}/messages`: queues a follow-up turn of a succeeded or failed run.
#[utoipa::path(post, path = "/runs/{id}/messages", summary = "Continue a finished run with a follow-up instruction (same session, same workspace, same trace)", params(("id" = String, Path, description = "The run's id or a unique prefix of it")), request_body = FollowUp, responses(
    (status = 202, description = "The run, queued again", body = RunView),
    (status = 404, description = "not_found", body = ErrorBody),
    (status = 409, description = "conflict: the run has not finished, or was cancelled", body = ErrorBody),
    (status = 422, description = "invalid_request", body = ErrorBody),
))]
pub async fn follow_up(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<FollowUp>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    if b.message.trim().is_empty() {
        return Err(ApiError::invalid("message is empty"));
    }
    let rec = st.store.find_run(&id).await?;
    let rec = continue_run(&st, rec, &b.message).await?;
    Ok((StatusCode::ACCEPTED, Json(RunView::from(&rec))).into_response())
}

/// Queues `message` as the next turn of the finished run `rec`.
pub async fn continue_run(
    st: &AppState,
    rec: RunRecord,
    message: &str,
) -> Result<RunRecord, ApiError> {
    let harness = st
        .harnesses
        .get(&rec.spec.harness)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if !harness.capabilities().follow_up {
        return Err(ApiError::invalid(format!(
            "{} does not support follow-ups: start a new run",
            harness.name()
        )));
    }
    if !matches!(rec.state, RunState::Succeeded | RunState::Failed) {
        return Err(ApiError::conflict(format!(
            "run {} is {}: follow-ups continue a run that has finished (succeeded or failed)",
            rec.id.short(),
            rec.state
        )));
    }
    Ok(st.store.requeue_for_follow_up(rec.id, message).await?)
}

/// The query of a run's events (`GET /api/v1/runs/{id}/events` and of a share link).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events after this sequence number.
    pub after: Option<u64>,
    /// `1` or `true`: the harness's raw lines instead of the normalized events.
    pub raw: Option<String>,
    /// At most this many lines.
    pub limit: Option<u32>,
    /// Only the last N events (after `after`, if given too); not with `raw`.
    pub tail: Option<u32>,
}

/// `GET /api/v1/runs/{id}/events?after=SEQ[&limit=N][&tail=N][&raw=1]`: JSON lines.
#[utoipa::path(get, path = "/runs/{id}/events", summary = "The run's events as JSON lines", params(("id" = String, Path, description = "The run's id or a unique prefix of it"), EventsQuery), responses(
    (status = 200, description = "One event per line (or the harness's raw lines with raw=1)", content_type = "application/x-ndjson", body = String),
    (status = 404, description = "not_found", body = ErrorBody),
))]
pub async fn events(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    let rec = st.store.find_run(&id).await?;
    events_of(&st, rec.id, &q).await
}

/// The events (or raw lines) of run `id` that `q` asks for, as JSON lines.
pub async fn events_of(st: &AppState, id: RunId, q: &EventsQuery) -> Result<Response, ApiError> {
    let raw = q.raw.as_deref().is_some_and(|r| r == "1" || r == "true");
    let (after, limit) = if q.tail.is_some() && !raw {
        // Events are numbered 1..=last without gaps.
        crate::viewer::window(q, st.store.last_event_seq(id).await?)
    } else {
        (
            q.after.unwrap_or(0),
            q.limit.unwrap_or(10_000).clamp(1, 100_000),
        )
    };
    let mut body = String::new();
    if raw {
        for (_, line) in st.store.raw_after(id, after, limit).await? {
            body.push_str(&line);
            body.push('\n');
        }
    } else {
        for ev in st.store.events_after(id, after, limit).await? {
            body.push_str(&serde_json::to_string(&ev).unwrap_or_default());
            body.push('\n');
        }
    }
    Ok(([("content-type", "application/x-ndjson")], body).into_response())
}

/// `GET /readyz`: `ready` once the store answers.
#[utoipa::path(get, path = "/readyz", summary = "Readiness: the database answers", responses(
    (status = 200, description = "ready", content_type = "text/plain", body = String),
    (status = 503, description = "unavailable", body = ErrorBody),
))]
pub async fn ready(State(st): State<AppState>) -> Result<&'static str, ApiError> {
    st.store
        .list_runs(&RunFilter {
            limit: 1,
            ..Default::default()
        })
        .await?;
    Ok("ready")
}

/// The answer to a route the API does not have.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint (see /api/v1/openapi.json)")
}

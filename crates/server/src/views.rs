//! What the API answers, as types: the handlers return them and the OpenAPI
//! document's schemas are derived from them ([`crate::routes`]), so the two
//! cannot drift apart.
//!
//! Types from `errand-core` and `errand-store` keep their own serialization
//! (those crates stay free of utoipa); their schemas are given here
//! ([`StateName`], [`ScopeName`]) from the same lists the types parse.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use errand_core::{Origin, RunRecord, RunState, Transition};
use errand_store::{Scope, TokenInfo};
use serde::Serialize;
use utoipa::openapi::schema::{Object, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// The schema of a run's state: one of [`RunState::ALL`], by name.
pub struct StateName;

impl PartialSchema for StateName {
    fn schema() -> RefOr<Schema> {
        names("A run's state", RunState::ALL.iter().map(|s| s.as_str()))
    }
}

impl ToSchema for StateName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RunState")
    }
}

/// The schema of a token scope: one of [`Scope::ALL`], by name.
pub struct ScopeName;

impl PartialSchema for ScopeName {
    fn schema() -> RefOr<Schema> {
        names(
            "A token scope: read (runs, events, streams), run (start, cancel, follow up, share), admin (tokens)",
            Scope::ALL.iter().map(|s| s.as_str()),
        )
    }
}

impl ToSchema for ScopeName {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Scope")
    }
}

fn names<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> RefOr<Schema> {
    Object::builder()
        .schema_type(Type::String)
        .description(Some(what))
        .enum_values(Some(names.collect::<Vec<_>>()))
        .into()
}

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Run)]
pub struct RunView {
    /// The run's id.
    pub id: String,
    /// Its first characters, enough to name it in practice.
    pub short_id: String,
    /// Where the run is.
    #[schema(value_type = StateName)]
    pub state: RunState,
    /// For failures, cancels and timeouts: what happened and what to do about it.
    pub reason: Option<String>,
    /// What the agent was asked to do.
    pub prompt: String,
    /// The repository cloned (canonical form), if any.
    pub repo: Option<String>,
    /// The same, as a new run's `repo` takes it (`github:owner/repo`, a URL
    /// or a path): what a re-run sends.
    pub repo_input: Option<String>,
    /// The harness that runs it.
    pub harness: String,
    /// The model the harness asks for; `null`: the harness's default.
    pub model: Option<String>,
    /// Whether errand pushes the run's branch when it ends.
    pub push: bool,
    /// The branch the run starts from; `null`: the remote's default branch.
    pub base: Option<String>,
    /// The run's time limit, in seconds.
    pub timeout_secs: u64,
    /// At most this many agent turns.
    pub max_turns: u32,
    /// The command run in the workspace after the agent finished.
    pub test_cmd: Option<String>,
    /// Whether the agent fetches and pushes the repository itself.
    pub agent_git: bool,
    /// With agent_git: other branches the agent may push.
    pub agent_branches: Vec<String>,
    /// With agent_git: the agent may force-push.
    pub allow_force_push: bool,
    /// The sandbox backend it asked for; `null`: the server's default.
    pub sandbox: Option<String>,
    /// The fan-out group the run belongs to.
    pub group: Option<String>,
    /// Who asked for it (`api:NAME`, `slack:T/U`, `github:login`…).
    pub requested_by: Option<String>,
    /// Where it was asked for (`{"kind": "api"|"cli"|"slack"|"github", …}`).
    #[schema(value_type = Option<Object>)]
    pub origin: Option<Origin>,
    /// The pull request errand opened for the run's branch.
    pub pr_url: Option<String>,
    /// In a fan-out group, once one run was picked as its result: whether
    /// this is that run.
    pub picked: Option<bool>,
    /// The run's branch.
    pub branch: Option<String>,
    /// The branch's last commit.
    pub commit: Option<String>,
    /// `git diff --shortstat` of the run's change.
    pub diffstat: Option<String>,
    /// Whether errand pushed the branch.
    pub pushed: bool,
    /// How many turns the agent took.
    pub turns: Option<u32>,
    /// Input tokens used.
    pub input_tokens: Option<u64>,
    /// Output tokens used.
    pub output_tokens: Option<u64>,
    /// Cost in US dollars, when known.
    pub cost_usd: Option<f64>,
    /// Tokens read from the prompt cache (metered runs).
    pub cache_read_tokens: Option<u64>,
    /// Tokens written to the prompt cache (metered runs).
    pub cache_write_tokens: Option<u64>,
    /// The tokens and cost come from errand's model gateway, read from the
    /// provider's own answers; `false`: as the harness reported them.
    pub metered: bool,
    /// On a metered run: how many model requests the gateway forwarded.
    pub model_requests: Option<u64>,
    /// On a metered run: what the harness itself reported, kept beside.
    #[schema(value_type = Option<Object>)]
    pub harness_usage: Option<errand_core::Usage>,
    /// The run's budget in US dollars (`--max-cost`), when it has one.
    pub max_cost_usd: Option<f64>,
    /// The run's budget in tokens (`--max-tokens`), when it has one.
    pub max_tokens: Option<u64>,
    /// The agent's final message.
    pub result: Option<String>,
    /// Whether the test command passed after the agent finished.
    pub tests_passed: Option<bool>,
    /// A cancel was asked for and the process running it has not stopped yet.
    pub cancel_requested: bool,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When a worker started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// When retention removed its workspace (a follow-up re-creates it); `null`: kept.
    pub workspace_pruned_at: Option<DateTime<Utc>>,
    /// When retention removed its event and raw logs; `null`: kept.
    pub logs_pruned_at: Option<DateTime<Utc>>,
}

impl From<&RunRecord> for RunView {
    fn from(r: &RunRecord) -> Self {
        let s = &r.summary;
        RunView {
            id: r.id.to_string(),
            short_id: r.id.short().to_string(),
            state: r.state,
            reason: r.reason.clone(),
            prompt: r.spec.prompt.clone(),
            repo: r.spec.repo.as_ref().map(|x| x.to_string()),
            repo_input: r.spec.repo.as_ref().map(errand_core::RepoSource::input),
            harness: r.spec.harness.clone(),
            model: r.spec.model.clone(),
            push: r.spec.push,
            base: r.spec.base_branch.clone(),
            timeout_secs: r.spec.timeout_secs,
            max_turns: r.spec.max_turns,
            test_cmd: r.spec.test_command.clone(),
            agent_git: r.spec.agent_git,
            agent_branches: r.spec.agent_branches.clone(),
            allow_force_push: r.spec.allow_force_push,
            sandbox: r.spec.sandbox.clone(),
            group: r.spec.group.clone(),
            requested_by: r.spec.requested_by.clone(),
            origin: r.spec.origin.clone(),
            pr_url: s.pr_url.clone(),
            picked: s.picked,
            branch: s.branch.clone(),
            commit: s.commit.clone(),
            diffstat: s.diffstat.clone(),
            pushed: s.pushed,
            turns: s.turns,
            input_tokens: s.input_tokens,
            output_tokens: s.output_tokens,
            cost_usd: s.cost_usd,
            cache_read_tokens: s.cache_read_tokens,
            cache_write_tokens: s.cache_write_tokens,
            metered: s.metered,
            model_requests: s.model_requests,
            harness_usage: s.harness_usage.clone(),
            max_cost_usd: r.spec.max_cost_usd,
            max_tokens: r.spec.max_tokens,
            result: s.result_text.clone(),
            tests_passed: s.tests_passed,
            cancel_requested: r.cancel_requested,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            workspace_pruned_at: r.workspace_pruned_at,
            logs_pruned_at: r.logs_pruned_at,
        }
    }
}

/// One recorded state change of a run.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransitionView {
    /// The state entered.
    #[schema(value_type = StateName)]
    pub state: RunState,
    /// When.
    pub at: DateTime<Utc>,
    /// For failures, cancels and timeouts: what happened.
    pub reason: Option<String>,
}

impl From<Transition> for TransitionView {
    fn from(t: Transition) -> Self {
        TransitionView {
            state: t.state,
            at: t.at,
            reason: t.reason,
        }
    }
}

/// One run with its state changes (`GET /api/v1/runs/{id}`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: RunView,
    /// Its state changes, oldest first.
    pub transitions: Vec<TransitionView>,
}

/// A page of runs, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunList {
    /// The runs.
    pub runs: Vec<RunView>,
    /// The `offset` of the next page; `null`: this is the last one.
    pub next_offset: Option<u32>,
}

/// An API token, never its secret (except in [`NewToken`]).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Token)]
pub struct TokenView {
    /// Its id (what `DELETE /api/v1/tokens/{id}` takes).
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// What it may do.
    #[schema(value_type = Vec<ScopeName>)]
    pub scopes: Vec<Scope>,
}

impl From<&TokenInfo> for TokenView {
    fn from(t: &TokenInfo) -> Self {
        TokenView {
            id: t.id.clone(),
            name: t.name.clone(),
            created_at: t.created_at,
            revoked: t.revoked,
            scopes: t.scopes.clone(),
        }
    }
}

/// Every API token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenList {
    /// The tokens, without secrets.
    pub tokens: Vec<TokenView>,
}

/// A token just created, with its secret: shown only in this answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NewToken {
    /// The token.
    #[serde(flatten)]
    pub info: TokenView,
    /// The secret to send as `Authorization: Bearer <token>`.
    pub token: String,
}

/// The answer to revoking a token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevokedToken {
    /// The id of the revoked token.
    pub revoked: String,
}

/// A new read-only link to a run's trace: its secret is shown only in this answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShareLink {
    /// The run's id.
    pub run: String,
    /// The link's secret.
    pub token: String,
    /// The link's path on this server (`/share/{token}`).
    pub path: String,
}

/// The answer to revoking a run's share links.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevokedShares {
    /// How many links were revoked.
    pub revoked: u32,
}

/// Every error: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's stable code and a message for a person.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: unauthorized (401), insufficient_scope (403: the token lacks the
    /// route's scope), local_repo_not_allowed (403: a repository on the
    /// server's filesystem outside server.local_repos), not_found (404),
    /// conflict (409, including a run that changed state meanwhile),
    /// invalid_request (422, including input the store refuses), internal
    /// (500), unavailable (503: the database cannot be reached).
    #[schema(value_type = String, example = "not_found")]
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
    /// The request's field the error is about, when it is about one
    /// (`repo`, `harness`, `model`, `base`, `prompt`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "model")]
    pub field: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_schemas_list_every_name_the_types_parse() {
        let v = serde_json::to_value(StateName::schema()).expect("schema");
        let names: Vec<RunState> = v["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .map(|n| n.as_str().expect("name").parse().expect("a state"))
            .collect();
        assert_eq!(names, RunState::ALL);
        let v = serde_json::to_value(ScopeName::schema()).expect("schema");
        let names: Vec<Scope> = v["enum"]
            .as_array()
            .expect("enum")
            .iter()
            .map(|n| n.as_str().expect("name").parse().expect("a scope"))
            .collect();
        assert_eq!(names, Scope::ALL);
    }
}

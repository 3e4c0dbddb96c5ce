//! What a client needs to start a run well, for the web app's New run form:
//! who the caller is and what its token may do ([`me`]), the choices a run
//! may take on this server ([`options`]), and what the server checks of a
//! run before anything is queued ([`RunPolicy`], and `dry_run` on
//! `POST /api/v1/runs`).

use std::collections::BTreeSet;

use axum::extract::State;
use axum::{Extension, Json};
use errand_store::{RunFilter, TokenInfo};
use serde::Serialize;
use utoipa::ToSchema;

use crate::views::ErrorBody;
use crate::{ApiError, AppState};

/// This server's rules for the runs it queues, from its configuration.
#[derive(Debug, Clone, Default)]
pub struct RunPolicy {
    /// `gateway.models`: the models a run may ask for (`prefix*` allowed);
    /// empty: any model.
    pub models: Vec<String>,
    /// The sandbox backend runs use (`sandbox.backend`).
    pub sandbox: String,
    /// Every backend a run may ask for: `sandbox.backend` first, then
    /// `sandbox.choices`.
    pub sandboxes: Vec<String>,
    /// Whether this process runs what it queues (it has workers): only then
    /// does it know what its runs' harnesses are given, so only then is a
    /// missing key reported before the run starts.
    pub runs_here: bool,
    /// The names of the non-empty variables of errand's environment that
    /// runs' harnesses are given (stored secrets are asked of the store).
    pub env_set: BTreeSet<String>,
    /// `gateway.max_cost_usd`: a run's cost limit when it names none.
    pub max_cost_usd: Option<f64>,
    /// `gateway.max_tokens`: a run's token limit when it names none.
    pub max_tokens: Option<u64>,
}

impl RunPolicy {
    /// Refuses a sandbox backend this server does not offer.
    pub fn check_sandbox(&self, sandbox: Option<&str>) -> Result<(), ApiError> {
        let Some(s) = sandbox else { return Ok(()) };
        if s == self.sandbox || self.sandboxes.iter().any(|b| b == s) {
            return Ok(());
        }
        let offered = if self.sandboxes.is_empty() {
            self.sandbox.clone()
        } else {
            self.sandboxes.join(", ")
        };
        Err(ApiError::invalid(format!(
            "this server does not offer the {s} sandbox: it runs {offered} \
             (sandbox.backend, and sandbox.choices for the others)"
        ))
        .on("sandbox"))
    }

    /// Whether `model` is one runs may ask for (the gateway's own rule).
    pub fn model_allowed(&self, model: &str) -> bool {
        let allow = (!self.models.is_empty()).then_some(self.models.as_slice());
        errand_gateway::policy::model_allowed(allow, model)
    }

    /// The refusal of a model outside `gateway.models`, if it is.
    pub fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            Some(m) if !self.model_allowed(m) => Err(ApiError::invalid(format!(
                "model {m} is not allowed on this server (allowed: {})",
                self.models.join(", ")
            ))
            .on("model")),
            _ => Ok(()),
        }
    }

    /// The required variables `harness` needs that its runs would not get
    /// from errand's environment or the secrets `stored` (`errand secret
    /// set`), when this process runs them (else none: a worker elsewhere
    /// has its own environment).
    pub fn missing_env(
        &self,
        harness: &dyn errand_harness::Harness,
        stored: &BTreeSet<String>,
    ) -> Vec<&'static str> {
        if !self.runs_here {
            return Vec::new();
        }
        harness
            .env_vars()
            .iter()
            .filter(|v| v.required && !self.env_set.contains(v.name) && !stored.contains(v.name))
            .map(|v| v.name)
            .collect()
    }
}

/// The names of the secrets stored with `errand secret set` (names only:
/// nothing is decrypted).
pub async fn stored_secrets(st: &AppState) -> Result<BTreeSet<String>, ApiError> {
    Ok(st
        .store
        .secret_names()
        .await?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// The caller: its token's name and scopes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The token's name (runs it starts are requested by `api:<name>`).
    pub name: String,
    /// What the token may do: `read`, `run`, `admin`.
    pub scopes: Vec<String>,
}

/// `GET /api/v1/me`: the caller's token name and scopes, so a client shows
/// only what the token may do (the server refuses the rest anyway).
#[utoipa::path(get, path = "/me", summary = "The calling token's name and scopes", responses(
    (status = 200, description = "The caller", body = Me),
    (status = 401, description = "unauthorized", body = ErrorBody),
))]
pub async fn me(caller: Option<Extension<TokenInfo>>) -> Result<Json<Me>, ApiError> {
    let Some(Extension(t)) = caller else {
        return Err(ApiError::unauthorized("no token"));
    };
    Ok(Json(Me {
        name: t.name,
        scopes: t.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
    }))
}

/// A harness a run may use, and what it can do.
#[derive(Debug, Serialize, ToSchema)]
pub struct HarnessOption {
    /// Its name (`claude-code`, `codex`, …, or a configured one).
    pub name: String,
    /// The model can be chosen.
    pub model_choice: bool,
    /// A finished run can be continued with a follow-up.
    pub follow_up: bool,
    /// Required variables its runs on this server would not get (a run
    /// would fail at once); empty when all are there or unknown here.
    pub missing_env: Vec<String>,
}

/// The choices a new run may take on this server.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunOptions {
    /// Every harness, built-in first.
    pub harnesses: Vec<HarnessOption>,
    /// The harness a run gets when it names none.
    pub default_harness: String,
    /// The models runs may ask for (`prefix*` is a prefix); empty: any.
    pub models: Vec<String>,
    /// The sandbox backend runs use on this server unless they ask for another.
    pub sandbox: String,
    /// Every backend a run may ask for here (`sandbox`), the default first.
    pub sandboxes: Vec<String>,
    /// Repositories of recent runs, newest first, as `repo` takes them.
    pub recent_repos: Vec<String>,
    /// The repositories errand's GitHub App is installed on, as `repo`
    /// takes them (`github:owner/repo`), sorted; empty without an App.
    pub forge_repos: Vec<String>,
    /// Why `forge_repos` could not be listed, when it could not.
    pub forge_repos_error: Option<String>,
    /// Whether a repository on the server's own filesystem may be given
    /// (under `server.local_repos`).
    pub local_repos: bool,
    /// A run's time limit when it names none, in seconds.
    pub default_timeout_secs: u64,
    /// A run's cost limit when it names none (US dollars).
    pub max_cost_usd: Option<f64>,
    /// A run's token limit when it names none.
    pub max_tokens: Option<u64>,
}

/// `GET /api/v1/options`: what a new run may choose on this server.
#[utoipa::path(get, path = "/options", summary = "What a new run may choose here: harnesses, models, recent repositories, defaults", responses(
    (status = 200, description = "The choices", body = RunOptions),
))]
pub async fn options(State(st): State<AppState>) -> Result<Json<RunOptions>, ApiError> {
    let policy = &st.policy;
    let stored = stored_secrets(&st).await?;
    let harnesses = st
        .harnesses
        .names()
        .into_iter()
        .filter_map(|name| {
            let h = st.harnesses.get(&name).ok()?;
            let caps = h.capabilities();
            Some(HarnessOption {
                missing_env: policy
                    .missing_env(h.as_ref(), &stored)
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                name,
                model_choice: caps.model_choice,
                follow_up: caps.follow_up,
            })
        })
        .collect();
    let recent = st
        .store
        .list_runs(&RunFilter {
            limit: 200,
            ..RunFilter::default()
        })
        .await?;
    let mut seen = BTreeSet::new();
    let recent_repos = recent
        .iter()
        .filter_map(|r| r.spec.repo.as_ref().map(errand_core::RepoSource::input))
        .filter(|r| seen.insert(r.clone()))
        .take(20)
        .collect();
    let (forge_repos, forge_repos_error) = match forge_repos(&st).await {
        Ok(r) => (r, None),
        Err(e) => {
            tracing::warn!("listing the GitHub App's repositories failed: {e}");
            (Vec::new(), Some(e))
        }
    };
    Ok(Json(RunOptions {
        harnesses,
        forge_repos,
        forge_repos_error,
        default_harness: crate::api::DEFAULT_HARNESS.to_owned(),
        models: policy.models.clone(),
        sandbox: policy.sandbox.clone(),
        sandboxes: if policy.sandboxes.is_empty() {
            vec![policy.sandbox.clone()]
        } else {
            policy.sandboxes.clone()
        },
        recent_repos,
        local_repos: !st.local_repos.is_empty(),
        default_timeout_secs: errand_core::RunSpec::DEFAULT_TIMEOUT_SECS,
        max_cost_usd: policy.max_cost_usd,
        max_tokens: policy.max_tokens,
    }))
}

/// How long a listing of the forge's repositories is reused.
const FORGE_REPOS_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The forge's repositories, listed again at most once a [`FORGE_REPOS_TTL`].
async fn forge_repos(st: &AppState) -> Result<Vec<String>, String> {
    let Some(forge) = &st.forge else {
        return Ok(Vec::new());
    };
    let mut cache = st.forge_repos.lock().await;
    if let Some((at, repos)) = cache.as_ref() {
        if at.elapsed() < FORGE_REPOS_TTL {
            return Ok(repos.clone());
        }
    }
    let repos = forge.repositories().await.map_err(|e| e.to_string())?;
    *cache = Some((std::time::Instant::now(), repos.clone()));
    Ok(repos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_checked_against_the_list_with_prefixes() {
        let p = RunPolicy {
            models: vec!["claude-haiku-*".into(), "gpt-5".into()],
            ..RunPolicy::default()
        };
        assert!(p.model_allowed("claude-haiku-4-5"));
        assert!(p.model_allowed("gpt-5"));
        assert!(!p.model_allowed("gpt-5-codex"));
        let e = p.check_model(Some("claude-opus-4-1")).err();
        assert_eq!(e.as_ref().and_then(|e| e.field), Some("model"));
        assert!(p.check_model(None).is_ok());
        assert!(RunPolicy::default().model_allowed("anything"));
    }

    #[test]
    fn missing_keys_are_known_only_where_runs_run() {
        let claude = errand_harness::by_name("claude-code").expect("built in");
        let mut p = RunPolicy {
            runs_here: true,
            ..RunPolicy::default()
        };
        let none = BTreeSet::new();
        assert_eq!(p.missing_env(claude.as_ref(), &none), ["ANTHROPIC_API_KEY"]);
        // A stored secret is as good as the environment.
        let stored = BTreeSet::from(["ANTHROPIC_API_KEY".to_string()]);
        assert!(p.missing_env(claude.as_ref(), &stored).is_empty());
        p.env_set.insert("ANTHROPIC_API_KEY".into());
        assert!(p.missing_env(claude.as_ref(), &none).is_empty());
        p.env_set.clear();
        p.runs_here = false;
        assert!(p.missing_env(claude.as_ref(), &none).is_empty());
    }
}

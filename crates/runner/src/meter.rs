//! The meter phase: a run's model traffic through errand's model gateway.
//!
//! Before the harness's command line is built, [`Runner::meter`] takes the
//! provider credentials the harness would have been given (`ANTHROPIC_API_KEY`,
//! `OPENAI_API_KEY`, `GEMINI_API_KEY`, or a Claude subscription token), hands
//! them to the process's [`Gateway`] in a [`Grant`] for this run alone, and puts
//! a random per-run key and the gateway's base URL in their place. The harness
//! keeps its usual variables; only their values change. The sandbox reaches the
//! gateway through its egress bridge (an allowlisted loopback address), so the
//! provider's host is not on its allowlist at all and no real key is inside.
//!
//! While the agent works, the gateway's [`GatewayEvent`]s become `model_call`
//! events in the trace, and a budget it reports exceeded stops the agent with
//! the reason ([`RunError::Budget`]). The run's tokens and cost are then the
//! sum of the gateway's records ([`Metered::apply`]); the harness's own
//! figures are kept beside them. Dropping the [`Metered`] revokes the key.

use std::net::SocketAddr;
use std::sync::Arc;

use errand_gateway::{
    Credential, Gateway, GatewayEvent, Grant, Limits, Protocol, RunKey, Upstream,
};
use tokio::sync::mpsc;

use super::*;
use errand_core::RunSpec;

/// The process's model gateway, as runs use it (`[gateway]` in the config).
#[derive(Clone)]
pub struct GatewaySettings {
    /// The gateway, shared by every run of this process.
    pub gateway: Arc<Gateway>,
    /// Where it listens on the host's loopback (the sandbox's bridge forwards
    /// the same address inside).
    pub addr: SocketAddr,
    /// Budgets, the model allowlist and the rate limit of runs that set none.
    pub defaults: Limits,
    /// Harnesses that talk to their provider directly, with the real key
    /// (`gateway.direct`); the run's trace says so.
    pub direct: Vec<String>,
    /// Where sandboxes off the host reach the gateway, by backend name:
    /// `kubernetes` (`gateway.kubernetes_url`) and `modal` (`gateway.modal_url`).
    /// A backend without one, which cannot reach the host's loopback, gets the
    /// provider's key directly, and its runs' traces say why.
    pub remote: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for GatewaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySettings")
            .field("addr", &self.addr)
            .field("direct", &self.direct)
            .finish_non_exhaustive()
    }
}

/// A provider family: the variables a harness names it by, and its public endpoint.
struct Provider {
    /// The gateway path segment (`/anthropic/…`).
    id: &'static str,
    protocol: Protocol,
    /// The API key variable.
    key: &'static str,
    /// A bearer token that may stand in for the key (a Claude subscription).
    bearer: Option<&'static str>,
    /// The base URL variable.
    base: &'static str,
    /// The endpoint without it, as the harnesses use it.
    default_base: &'static str,
}

const PROVIDERS: &[Provider] = &[
    Provider {
        id: "anthropic",
        protocol: Protocol::Anthropic,
        key: "ANTHROPIC_API_KEY",
        bearer: Some("CLAUDE_CODE_OAUTH_TOKEN"),
        base: "ANTHROPIC_BASE_URL",
        default_base: "https://api.anthropic.com",
    },
    Provider {
        id: "openai",
        protocol: Protocol::OpenAi,
        key: "OPENAI_API_KEY",
        bearer: None,
        base: "OPENAI_BASE_URL",
        default_base: "https://api.openai.com/v1",
    },
    Provider {
        id: "gemini",
        protocol: Protocol::Gemini,
        key: "GEMINI_API_KEY",
        bearer: None,
        base: "GOOGLE_GEMINI_BASE_URL",
        default_base: "https://generativelanguage.googleapis.com",
    },
];

/// A run's grant at the gateway: its key (revoked on drop) and what the
/// gateway tells of its requests.
pub(crate) struct Metered {
    gateway: Arc<Gateway>,
    key: RunKey,
    events: mpsc::UnboundedReceiver<GatewayEvent>,
    /// A budget was reported exceeded: the reason.
    pub(crate) exceeded: Option<String>,
    requests: u64,
    /// The real credentials the gateway holds for the run: never in the
    /// sandbox, but redacted from its logs all the same (a model or a
    /// harness going direct may still print one).
    pub(crate) secrets: Vec<String>,
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.gateway.revoke(&self.key);
    }
}

impl Metered {
    /// The next thing the gateway has to tell; pending forever once the
    /// channel is closed, so it can sit in a `select!`.
    pub(crate) async fn next(&mut self) -> GatewayEvent {
        match self.events.recv().await {
            Some(ev) => ev,
            None => std::future::pending().await,
        }
    }

    /// Records what the gateway told so far (the run is ending): its calls as
    /// events. Gives the budget's reason when one was exceeded.
    pub(crate) fn drain(&mut self, em: &mut Emitter) -> Result<Option<String>, RunError> {
        while let Ok(ev) = self.events.try_recv() {
            self.record(em, ev)?;
        }
        Ok(self.exceeded.clone())
    }

    /// One event from the gateway into the trace. A budget exceeded is
    /// remembered (the caller stops the agent).
    pub(crate) fn record(&mut self, em: &mut Emitter, ev: GatewayEvent) -> Result<(), RunError> {
        match ev {
            GatewayEvent::Call(call) => {
                self.requests += 1;
                em.errand(EventKind::ModelCall(Box::new(call)))
                    .map_err(log_failed)
            }
            GatewayEvent::BudgetExceeded { reason } => {
                if self.exceeded.is_none() {
                    em.errand(EventKind::Warning {
                        message: format!("model gateway: {reason}: errand stops the agent"),
                    })
                    .map_err(log_failed)?;
                    self.exceeded = Some(reason);
                }
                Ok(())
            }
        }
    }

    /// The run's figures become the gateway's: the sum of what the providers
    /// answered. The harness's own report is kept beside them.
    pub(crate) fn apply(&self, summary: &mut RunSummary) {
        let Some(total) = self.gateway.totals(&self.key) else {
            return;
        };
        if summary.input_tokens.is_some() || summary.cost_usd.is_some() {
            summary.harness_usage = Some(errand_core::Usage {
                input_tokens: summary.input_tokens.unwrap_or(0),
                output_tokens: summary.output_tokens.unwrap_or(0),
                cache_read_tokens: summary.cache_read_tokens.unwrap_or(0),
                cache_write_tokens: summary.cache_write_tokens.unwrap_or(0),
                cost_usd: summary.cost_usd,
            });
        }
        summary.input_tokens = Some(total.input_tokens);
        summary.output_tokens = Some(total.output_tokens);
        summary.cache_read_tokens = Some(total.cache_read_tokens);
        summary.cache_write_tokens = Some(total.cache_write_tokens);
        // A model the price table does not know has no metered cost: the
        // harness's own figure (kept beside) is then the best there is.
        summary.cost_usd = total
            .cost_usd
            .or(summary.harness_usage.as_ref().and_then(|h| h.cost_usd));
        summary.metered = true;
        summary.model_requests = Some(self.requests);
    }
}

/// A run's limits: its own, else the gateway's defaults.
fn limits_for(spec: &RunSpec, defaults: &Limits) -> Limits {
    Limits {
        max_cost_usd: spec.max_cost_usd.or(defaults.max_cost_usd),
        max_tokens: spec.max_tokens.or(defaults.max_tokens),
        // An access rule's list is the run's own (and checked against the
        // configuration's before the run starts).
        models: if spec.allowed_models.is_empty() {
            defaults.models.clone()
        } else {
            Some(spec.allowed_models.clone())
        },
        requests_per_minute: defaults.requests_per_minute,
    }
}

/// The model named for the run, checked against the allowlist before any
/// sandbox exists (the gateway checks every request too).
fn check_model(model: Option<&str>, limits: &Limits) -> Result<(), RunError> {
    let (Some(model), Some(allowed)) = (model, &limits.models) else {
        return Ok(());
    };
    if allowed.iter().any(|a| match a.strip_suffix('*') {
        Some(prefix) => model.starts_with(prefix),
        None => a == model,
    }) {
        return Ok(());
    }
    Err(RunError::invalid(format!(
        "model {model} is not allowed (allowed: {})",
        allowed.join(", ")
    )))
}

impl Runner {
    /// Routes the run's model traffic through the gateway: the harness's
    /// provider keys in `ctx.env` become the run's key and its base URLs the
    /// gateway's. `None` when there is no gateway, the harness talks to its
    /// provider directly (configured, or a backend the gateway cannot reach),
    /// or it uses no provider errand knows; the trace says which.
    pub(crate) fn meter(
        &self,
        rec: &RunRecord,
        harness: &dyn errand_harness::Harness,
        ctx: &mut RunContext,
        em: &mut Emitter,
    ) -> Result<Option<Metered>, RunError> {
        let spec = &rec.spec;
        let Some(gw) = &self.gateway else {
            if spec.max_cost_usd.is_some() || spec.max_tokens.is_some() {
                return Err(RunError::invalid(
                    "--max-cost and --max-tokens need errand's model gateway (gateway.enabled = true)",
                ));
            }
            return Ok(None);
        };
        let limits = limits_for(spec, &gw.defaults);
        check_model(spec.model.as_deref(), &limits)?;
        check_model(spec.model.as_deref(), &gw.defaults)?;
        let declared: Vec<&str> = harness.env_vars().iter().map(|v| v.name).collect();
        let mut direct = |why: String| -> Result<Option<Metered>, RunError> {
            if spec.max_cost_usd.is_some() || spec.max_tokens.is_some() {
                return Err(RunError::invalid(format!(
                    "--max-cost and --max-tokens need the model gateway, which this run cannot use: {why}"
                )));
            }
            em.notice(format!("model gateway: not used: {why}"))
                .map_err(log_failed)?;
            Ok(None)
        };
        if gw.direct.iter().any(|h| h == harness.name()) {
            return direct(format!(
                "{} talks to its provider directly (gateway.direct): the sandbox holds the provider's key",
                harness.name()
            ));
        }
        let mut upstreams = Vec::new();
        for p in PROVIDERS.iter().filter(|p| declared.contains(&p.key)) {
            let key = ctx.env.get(p.key).filter(|v| !v.is_empty());
            let bearer = p
                .bearer
                .and_then(|b| ctx.env.get(b))
                .filter(|v| !v.is_empty());
            let credential = match (key, bearer) {
                (Some(k), _) => Credential::ApiKey(k.clone()),
                (None, Some(t)) => Credential::Bearer(t.clone()),
                // Missing: the harness's own check says so.
                (None, None) => continue,
            };
            let base = ctx
                .env
                .get(p.base)
                .filter(|v| !v.trim().is_empty())
                .map_or(p.default_base, String::as_str)
                .trim_end_matches('/')
                .to_string();
            upstreams.push((
                p,
                Upstream {
                    id: p.id.to_string(),
                    protocol: p.protocol,
                    base_url: base,
                    credential,
                },
            ));
        }
        if upstreams.is_empty() {
            return direct(format!(
                "{} declares no provider key errand knows (ANTHROPIC_API_KEY, OPENAI_API_KEY, GEMINI_API_KEY)",
                harness.name()
            ));
        }
        let base = if self.sandbox_reaches_gateway() {
            format!("http://{}", gw.addr)
        } else if let Some(url) = gw.remote.get(self.sandbox.name()) {
            url.clone()
        } else {
            return direct(format!(
                "the {} sandbox cannot reach the gateway on errand's host (it needs errand's egress proxy: \
                 sandbox.egress = \"allowlist\" on the local or docker sandbox, \
                 gateway.kubernetes_listen and gateway.kubernetes_url for pods, or \
                 gateway.modal_listen and gateway.modal_url for Modal Sandboxes)",
                self.sandbox.name()
            ));
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let names: Vec<String> = upstreams
            .iter()
            .map(|(_, u)| format!("{} → {}", u.id, u.base_url))
            .collect();
        let key = gw.gateway.grant(Grant {
            run: rec.id.to_string(),
            harness: harness.name().to_string(),
            upstreams: upstreams.iter().map(|(_, u)| u.clone()).collect(),
            limits: limits.clone(),
            events: tx,
        });
        let secrets: Vec<String> = upstreams
            .iter()
            .map(|(_, u)| match &u.credential {
                Credential::ApiKey(k) | Credential::Bearer(k) => k.clone(),
            })
            .collect();
        for (p, _) in &upstreams {
            ctx.env.insert(p.key.to_string(), key.secret().to_string());
            if let Some(b) = p.bearer {
                ctx.env.remove(b);
            }
            ctx.env
                .insert(p.base.to_string(), format!("{base}/{}", p.id));
        }
        let mut budget = Vec::new();
        if let Some(c) = limits.max_cost_usd {
            budget.push(format!("${c:.2}"));
        }
        if let Some(t) = limits.max_tokens {
            budget.push(format!("{t} tokens"));
        }
        em.notice(format!(
            "model gateway: the harness reaches {} through errand's gateway with a key for this run only{}",
            names.join(", "),
            if budget.is_empty() {
                String::new()
            } else {
                format!("; budget {}", budget.join(" and "))
            }
        ))
        .map_err(log_failed)?;
        Ok(Some(Metered {
            gateway: gw.gateway.clone(),
            key,
            events: rx,
            exceeded: None,
            requests: 0,
            secrets,
        }))
    }

    /// The sandbox reaches a host loopback address only through errand's
    /// egress proxy and bridge (or on the local sandbox with the host's network).
    fn sandbox_reaches_gateway(&self) -> bool {
        let by_address = self.sandbox.allowlists_by_address();
        if self.egress.allowlist {
            self.sandbox.isolates_network() && !by_address
        } else {
            self.sandbox.name() == "local"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_outside_the_allowlist_is_refused_before_anything_starts() {
        let limits = Limits {
            models: Some(vec!["claude-sonnet-*".into(), "gpt-5".into()]),
            ..Default::default()
        };
        assert!(check_model(Some("claude-sonnet-4-5"), &limits).is_ok());
        assert!(check_model(Some("gpt-5"), &limits).is_ok());
        assert!(check_model(None, &limits).is_ok());
        let err = check_model(Some("gpt-5-pro"), &limits)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("model gpt-5-pro is not allowed (allowed: claude-sonnet-*, gpt-5)")
        );
    }

    #[test]
    fn a_run_s_own_budget_wins_over_the_defaults() {
        let defaults = Limits {
            max_cost_usd: Some(5.0),
            max_tokens: Some(1000),
            ..Default::default()
        };
        let mut spec = RunSpec::new("x", "claude-code");
        spec.max_cost_usd = Some(0.5);
        let l = limits_for(&spec, &defaults);
        assert_eq!((l.max_cost_usd, l.max_tokens), (Some(0.5), Some(1000)));
    }
}

//! The configuration's schema: every key `section.key` with the type its
//! value has, how a value from the environment (always text) or a loosely
//! typed file value is turned into that type, and the nearest valid name for
//! an unknown one.

/// The type a key's value has in the schema: what a value from the
/// environment (always text) or a loosely typed file value is turned into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Text; a number or boolean is taken as its text (`ERRAND_GITHUB_APP_ID=123456`).
    Str,
    /// A whole number; text of digits is accepted.
    Int,
    /// A number; an integer or text of one is accepted.
    Float,
    /// `true`/`false`; also `yes`/`no`, `1`/`0` as text or number.
    Bool,
    /// Strings: a TOML array, or as text either a TOML array (`["a", "b"]`) or
    /// comma-separated (`a, b`).
    List,
    /// Paths: a TOML array, or as text either a TOML array or `:`-separated.
    Paths,
}

/// Every scalar key, as `section.key` with its type: what `ERRAND_SECTION_KEY` can set.
pub(super) const KEYS: &[(&str, Kind)] = {
    use Kind::*;
    &[
        ("server.listen", Str),
        ("server.workers", Int),
        ("server.worker_id", Str),
        ("server.public_url", Str),
        ("server.default_harness", Str),
        ("server.local_repos", Paths),
        ("server.drain_grace_secs", Int),
        ("database.url", Str),
        ("queue.global_limit", Int),
        ("queue.per_repo_limit", Int),
        ("queue.lease_secs", Int),
        ("models.anthropic_base_url", Str),
        ("models.openai_base_url", Str),
        ("models.google_gemini_base_url", Str),
        ("sandbox.backend", Str),
        ("sandbox.choices", List),
        ("sandbox.docker_image", Str),
        ("sandbox.docker_network", Str),
        ("sandbox.cpus", Float),
        ("sandbox.kubernetes_namespace", Str),
        ("sandbox.kubernetes_image", Str),
        ("sandbox.kubernetes_runs_claim", Str),
        ("sandbox.kubernetes_runs_root", Str),
        ("sandbox.kubernetes_network_policy", Bool),
        ("sandbox.kubernetes_egress", List),
        ("sandbox.kubernetes_deadline_secs", Int),
        ("sandbox.kubernetes_git_proxy_listen", Str),
        ("sandbox.kubernetes_git_proxy_url", Str),
        ("sandbox.modal_app", Str),
        ("sandbox.modal_image", Str),
        ("sandbox.modal_dockerfile_commands", List),
        ("sandbox.modal_timeout_secs", Int),
        ("sandbox.modal_cidrs", List),
        ("sandbox.egress", Str),
        ("sandbox.egress_allow", List),
        ("sandbox.egress_git_host", Bool),
        ("github.app_id", Str),
        ("github.private_key_file", Str),
        ("github.private_key", Str),
        ("github.api_url", Str),
        ("github.git_url", Str),
        ("github.webhook_secret", Str),
        ("github.mention", Str),
        ("github.workflows", Bool),
        ("github.label", Str),
        ("github.fix_ci", Bool),
        ("github.fix_ci_attempts", Int),
        ("slack.signing_secret", Str),
        ("slack.bot_token", Str),
        ("slack.api_url", Str),
        ("log.format", Str),
        ("retention.workspaces", Str),
        ("retention.follow_up_window", Str),
        ("retention.logs", Str),
        ("retention.max_disk", Str),
        ("retention.mirrors", Str),
        ("retention.interval", Str),
        ("gateway.enabled", Bool),
        ("gateway.listen", Str),
        ("gateway.max_cost_usd", Float),
        ("gateway.max_tokens", Int),
        ("gateway.models", List),
        ("gateway.requests_per_minute", Int),
        ("gateway.direct", List),
        ("gateway.kubernetes_listen", Str),
        ("gateway.kubernetes_url", Str),
        ("gateway.modal_listen", Str),
        ("gateway.modal_url", Str),
    ]
};

/// Sections made of `[[table]]` entries, checked by their own types.
pub(crate) const ARRAYS: &[&str] = &["harness", "access"];

pub(super) fn kind_of(key: &str) -> Option<Kind> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, t)| *t)
}

pub(super) fn sections() -> Vec<&'static str> {
    let mut out: Vec<&str> = KEYS
        .iter()
        .filter_map(|(k, _)| k.split_once('.'))
        .map(|(s, _)| s)
        .collect();
    out.dedup();
    out
}

/// `value` as the schema's `kind`, when that is unambiguous; else what was expected.
pub(super) fn coerce(kind: Kind, value: toml::Value) -> std::result::Result<toml::Value, String> {
    use toml::Value as V;
    let text = |v: &V| match v {
        V::String(s) => Some(s.clone()),
        V::Integer(i) => Some(i.to_string()),
        V::Float(f) => Some(f.to_string()),
        V::Boolean(b) => Some(b.to_string()),
        _ => None,
    };
    match (kind, value) {
        (Kind::Str, v) => text(&v)
            .map(V::String)
            .ok_or_else(|| "expected text".into()),
        (Kind::Int, V::Integer(i)) => Ok(V::Integer(i)),
        (Kind::Int, V::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(V::Integer)
            .map_err(|_| format!("'{s}' is not a whole number")),
        (Kind::Int, _) => Err("expected a whole number".into()),
        (Kind::Float, V::Integer(i)) => Ok(V::Float(i as f64)),
        (Kind::Float, V::Float(f)) => Ok(V::Float(f)),
        (Kind::Float, V::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(V::Float)
            .map_err(|_| format!("'{s}' is not a number")),
        (Kind::Float, _) => Err("expected a number".into()),
        (Kind::Bool, V::Boolean(b)) => Ok(V::Boolean(b)),
        (Kind::Bool, V::Integer(i @ (0 | 1))) => Ok(V::Boolean(i == 1)),
        (Kind::Bool, V::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(V::Boolean(true)),
            "false" | "no" | "0" | "" => Ok(V::Boolean(false)),
            _ => Err(format!("'{s}' is not true or false")),
        },
        (Kind::Bool, _) => Err("expected true or false".into()),
        (Kind::List | Kind::Paths, V::Array(items)) => items
            .iter()
            .map(|i| {
                text(i)
                    .map(V::String)
                    .ok_or_else(|| "expected a list of text".to_string())
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(V::Array),
        (k @ (Kind::List | Kind::Paths), V::String(s)) if s.trim_start().starts_with('[') => {
            let t: toml::Table = toml::from_str(&format!("v = {s}"))
                .map_err(|_| format!("'{s}' is not a TOML array such as [\"a\", \"b\"]"))?;
            match t.get("v") {
                Some(v @ V::Array(_)) => coerce(k, v.clone()),
                _ => Err(format!("'{s}' is not a TOML array")),
            }
        }
        (Kind::List, V::String(s)) => Ok(V::Array(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| V::String(x.to_string()))
                .collect(),
        )),
        (Kind::Paths, V::String(s)) => Ok(V::Array(
            s.split(':')
                .filter(|p| !p.trim().is_empty())
                .map(|x| V::String(x.to_string()))
                .collect(),
        )),
        (Kind::List | Kind::Paths, v) => text(&v)
            .map(|t| V::Array(vec![V::String(t)]))
            .ok_or_else(|| "expected a list".into()),
    }
}

/// The valid name nearest to `unknown` among `candidates`, when it is near enough to be a typo.
pub(super) fn nearest<'a>(
    unknown: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let u = unknown.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&u, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

pub(super) fn unknown_message(what: &str, name: &str, near: Option<&str>) -> String {
    match near {
        Some(n) => format!("unknown {what} `{name}`; did you mean `{n}`?"),
        None => format!("unknown {what} `{name}`"),
    }
}

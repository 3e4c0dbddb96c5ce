//! errand's configuration: a TOML file (`$ERRAND_CONFIG`, or
//! `$ERRAND_HOME/config.toml` when that exists) plus environment variables:
//! every key `section.key` can also be set as `ERRAND_SECTION_KEY`, which wins
//! over the file. Optional: errand runs on its defaults without any.
//! Values are typed by the schema ([`KEYS`]): text where text is expected even
//! if it looks like a number, digits or `true`/`false` where a number or
//! boolean is, lists as a TOML array or comma-separated. Unknown keys and
//! `ERRAND_SECTION_*` variables are set aside with a warning naming the nearest
//! valid key. `errand config check` reports every problem at once, `errand
//! config show` the effective values and their sources. Example: `config.example.toml`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use errand_harness::{CustomHarness, Registry};
use errand_runner::Paths;
use serde::{Deserialize, Serialize};

pub mod gateway;
mod mask;
pub mod retention;
mod schema;

pub(crate) use schema::ARRAYS;
use schema::{coerce, kind_of, nearest, sections, unknown_message, KEYS};

#[cfg(test)]
use mask::{is_secret, mask, mask_url, MASK};
#[cfg(test)]
use schema::Kind;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub database: Database,
    #[serde(default)]
    pub queue: Queue,
    #[serde(default)]
    pub models: Models,
    #[serde(default)]
    pub sandbox: SandboxSection,
    #[serde(default)]
    pub harness: Vec<CustomHarness>,
    /// The GitHub App errand acts as (for `github:owner/repo` runs, pull
    /// requests and `@errand` comments).
    #[serde(default)]
    pub github: Option<Github>,
    /// The Slack app (`/agent`).
    #[serde(default)]
    pub slack: Option<Slack>,
    /// Who may start runs from Slack and GitHub ([`errand_server::access`]).
    #[serde(default)]
    pub access: Vec<errand_server::access::AccessRule>,
    #[serde(default)]
    pub log: Log,
    /// How long finished runs' workspaces and logs are kept (`errand gc`).
    #[serde(default)]
    pub retention: retention::Retention,
    /// The model gateway: per-run keys, exact usage, budgets, model policy.
    #[serde(default)]
    pub gateway: gateway::Gateway,
}

/// `[log]`: how errand writes its own log to stderr.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` (default; coloured only on a terminal) or `json` (one object per line).
    /// `--log-format` and `ERRAND_LOG_FORMAT` override it.
    pub format: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: "text".into(),
        }
    }
}

/// `[github]`: the App's id and private key; GitHub Enterprise through `api_url` and `git_url`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Github {
    /// The App's id (or client id): the JWT's issuer.
    pub app_id: String,
    /// PEM file of the App's private key (or the PEM itself in `private_key`,
    /// e.g. from `ERRAND_GITHUB_PRIVATE_KEY`).
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default = "default_github_api")]
    pub api_url: String,
    #[serde(default = "default_github_git")]
    pub git_url: String,
    /// Verifies `POST /github/webhook` (`X-Hub-Signature-256`); no webhook without it.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// What a comment must mention to start a run.
    #[serde(default = "default_mention")]
    pub mention: String,
    /// Let runs that push change `.github/workflows/` (asks for `workflows: write`).
    #[serde(default)]
    pub workflows: bool,
    /// Adding this label to an issue starts a run that resolves it (e.g. `errand`); none by default.
    #[serde(default)]
    pub label: Option<String>,
    /// When a check fails on a pull request errand opened, errand tries to fix it (off by default).
    #[serde(default)]
    pub fix_ci: bool,
    /// With `fix_ci`: at most this many fixes per pull request.
    #[serde(default = "default_fix_ci_attempts")]
    pub fix_ci_attempts: u32,
}

fn default_fix_ci_attempts() -> u32 {
    2
}

fn default_github_api() -> String {
    "https://api.github.com".into()
}
fn default_github_git() -> String {
    "https://github.com".into()
}
fn default_mention() -> String {
    "@errand".into()
}

/// `[slack]`: the app's signing secret and bot token.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    pub signing_secret: String,
    pub bot_token: String,
    #[serde(default = "default_slack_api")]
    pub api_url: String,
}

fn default_slack_api() -> String {
    errand_slack::DEFAULT_API_BASE.into()
}

/// Model endpoints for the harnesses. Each is used only when the variable its
/// harness's users already know (`ANTHROPIC_BASE_URL`, `OPENAI_BASE_URL`,
/// `GOOGLE_GEMINI_BASE_URL`) is not set in errand's environment.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Models {
    pub anthropic_base_url: Option<String>,
    pub openai_base_url: Option<String>,
    pub google_gemini_base_url: Option<String>,
}

/// Where agents run (`--sandbox` on `errand run` overrides `backend`).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxSection {
    /// `local` (bubblewrap), `docker` (one container per process),
    /// `kubernetes` (one pod per process) or `modal` (one Modal Sandbox per run).
    pub backend: String,
    /// Other backends a run from the API or the web app may ask for by name
    /// (`sandbox` in the request); `backend` is the default (a list).
    #[serde(deserialize_with = "list")]
    pub choices: Vec<String>,
    /// The agent image of the docker backend; default `errand-agent:<version>`.
    pub docker_image: Option<String>,
    /// The docker backend's network: `bridge`, `none`, `host` or a network name.
    pub docker_network: String,
    /// CPUs one sandbox may use (docker backend); 0 for no limit.
    #[serde(deserialize_with = "number")]
    pub cpus: f64,
    /// The kubernetes backend's namespace.
    pub kubernetes_namespace: String,
    /// The kubernetes backend's agent image; default `errand-agent:<version>`.
    pub kubernetes_image: Option<String>,
    /// The ReadWriteMany claim holding the run directories.
    pub kubernetes_runs_claim: String,
    /// Where errand sees that claim; default: errand's data directory.
    pub kubernetes_runs_root: Option<PathBuf>,
    /// A NetworkPolicy per pod, allowing egress only to `kubernetes_egress` and DNS.
    #[serde(deserialize_with = "boolean")]
    pub kubernetes_network_policy: bool,
    /// CIDRs, addresses or host names agents may reach (a list, or comma-separated).
    #[serde(deserialize_with = "list")]
    pub kubernetes_egress: Vec<String>,
    /// Each pod's `activeDeadlineSeconds`: a backstop behind the run's timeout.
    pub kubernetes_deadline_secs: u64,
    /// Where errand serves `--agent-git` runs' git proxies to kubernetes pods
    /// (`host:port`, e.g. `0.0.0.0:8471`): one listener per errand process,
    /// each run under its own secret path.
    pub kubernetes_git_proxy_listen: Option<String>,
    /// The base URL pods reach that listener at (e.g.
    /// `http://errand.errand.svc.cluster.local:8471`); allowed in each
    /// `--agent-git` pod's NetworkPolicy by address.
    pub kubernetes_git_proxy_url: Option<String>,
    /// The modal backend's Modal app (created if missing).
    pub modal_app: String,
    /// The modal backend's agent image: a registry tag Modal can pull.
    pub modal_image: Option<String>,
    /// Dockerfile commands to build the modal agent image from instead (a list).
    #[serde(deserialize_with = "list")]
    pub modal_dockerfile_commands: Vec<String>,
    /// A Modal sandbox's longest life: a backstop behind the run's timeout.
    pub modal_timeout_secs: u32,
    /// CIDRs every isolated Modal sandbox may reach besides the run's allowlist.
    #[serde(deserialize_with = "list")]
    pub modal_cidrs: Vec<String>,
    /// `allowlist` (default): the local and docker sandboxes get no network but
    /// errand's egress proxy to the harness's model endpoint, `egress_allow`
    /// and (with `egress_git_host`) the run's git host; `open`: the backend's
    /// own network (the host's for local, `docker_network` for docker).
    pub egress: String,
    /// More destinations for `allowlist`: `host`, `*.suffix`, `*`, or an
    /// address, each with an optional `:port` (a list, or comma-separated).
    #[serde(deserialize_with = "list")]
    pub egress_allow: Vec<String>,
    /// Let the agent reach the run's git host too.
    #[serde(deserialize_with = "boolean")]
    pub egress_git_host: bool,
}

impl Default for SandboxSection {
    fn default() -> Self {
        SandboxSection {
            backend: "local".into(),
            choices: Vec::new(),
            docker_image: None,
            docker_network: "bridge".into(),
            cpus: 0.0,
            kubernetes_namespace: "errand".into(),
            kubernetes_image: None,
            kubernetes_runs_claim: errand_sandbox::kubernetes::DEFAULT_CLAIM.into(),
            kubernetes_runs_root: None,
            kubernetes_network_policy: false,
            kubernetes_egress: Vec::new(),
            kubernetes_deadline_secs: errand_sandbox::KubernetesConfig::default().deadline_secs,
            kubernetes_git_proxy_listen: None,
            kubernetes_git_proxy_url: None,
            modal_app: "errand".into(),
            modal_image: None,
            modal_dockerfile_commands: Vec::new(),
            modal_timeout_secs: errand_modal::ModalConfig::default().timeout_secs,
            modal_cidrs: Vec::new(),
            egress: "allowlist".into(),
            egress_allow: Vec::new(),
            egress_git_host: false,
        }
    }
}

/// A boolean, or `true`/`false` as text (as `ERRAND_SANDBOX_KUBERNETES_NETWORK_POLICY` arrives).
fn boolean<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        B(bool),
        I(i64),
        S(String),
    }
    match Flag::deserialize(d)? {
        Flag::B(b) => Ok(b),
        Flag::I(i) => Ok(i != 0),
        Flag::S(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(true),
            "false" | "no" | "0" | "" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "'{s}' is not true or false"
            ))),
        },
    }
}

/// A list of strings, or one comma-separated string (as an environment variable arrives).
fn list<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum L {
        L(Vec<String>),
        S(String),
    }
    Ok(match L::deserialize(d)? {
        L::L(l) => l,
        L::S(s) => s
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
    })
}

/// An integer or a float (`ERRAND_SANDBOX_CPUS=2` arrives as an integer).
fn number<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        I(i64),
        F(f64),
        S(String),
    }
    match N::deserialize(d)? {
        N::I(i) => Ok(i as f64),
        N::F(f) => Ok(f),
        N::S(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("'{s}' is not a number"))),
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address `errand serve` listens on.
    pub listen: String,
    /// Runs one `errand serve` / `errand worker` process executes at once.
    pub workers: u32,
    /// Worker id; defaults to the host name and data directory, so a restart is recognised.
    pub worker_id: Option<String>,
    /// The address people reach this server at, for links in Slack, GitHub
    /// and pull requests; default `http://<listen>`.
    pub public_url: Option<String>,
    /// The harness for Slack and GitHub runs that name none.
    pub default_harness: String,
    /// Directories under which a run started through the API may clone a
    /// local path or `file:///` URL (canonicalized: symlinks and `..` are
    /// resolved before the check). Default none: the API then takes only
    /// `github:` repositories and network URLs. `ERRAND_SERVER_LOCAL_REPOS`
    /// takes them `:`-separated. The local `errand run` is not limited.
    #[serde(deserialize_with = "paths_or_list")]
    pub local_repos: Vec<PathBuf>,
    /// On SIGTERM, how long runs may finish before they are stopped and
    /// given back to the queue for another node.
    pub drain_grace_secs: u64,
}

/// A list of paths, or one string of `:`-separated paths (from the environment).
fn paths_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<PathBuf>),
        Joined(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(v) => v,
        Either::Joined(s) => s
            .split(':')
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from)
            .collect(),
    })
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
            workers: 2,
            worker_id: None,
            public_url: None,
            default_harness: "claude-code".into(),
            local_repos: Vec::new(),
            drain_grace_secs: 60,
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// `postgres://…`, or a SQLite path; default: `$ERRAND_HOME/errand.db`.
    pub url: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Queue {
    /// Most runs executing at once across all workers (0: no limit).
    pub global_limit: u32,
    /// Most runs executing at once on one repository (0: no limit).
    pub per_repo_limit: u32,
    /// How long a worker's claim on a run lasts without renewal.
    pub lease_secs: u64,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            global_limit: 0,
            per_repo_limit: 0,
            lease_secs: 30,
        }
    }
}

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File,
    /// The variable's name.
    Env(String),
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File => f.write_str("file"),
            Source::Env(v) => write!(f, "environment ({v})"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A configuration with what `errand config show` and `check` need besides.
pub struct Loaded {
    pub config: Config,
    /// The file's path.
    pub path: PathBuf,
    /// Keys set by the file or the environment; every other key has its default.
    pub sources: std::collections::BTreeMap<String, Source>,
    /// Unknown keys and variables, each a sentence naming the nearest valid one.
    pub warnings: Vec<String>,
    /// The merged table, for the `[[harness]]` and `[[access]]` entries.
    pub table: toml::Table,
}

impl Loaded {
    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }
}

pub fn path(paths: &Paths) -> PathBuf {
    std::env::var_os("ERRAND_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| paths.home.join("config.toml"))
}

/// The environment variable that sets `key` (`server.listen` → `ERRAND_SERVER_LISTEN`).
pub fn env_name(key: &str) -> String {
    format!("ERRAND_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Reads the file and applies environment overrides, warning (once per
/// process) about unknown keys. A missing default file is an empty
/// configuration; a missing `$ERRAND_CONFIG` or a malformed file is an error
/// naming the file.
pub fn load(paths: &Paths) -> Result<Config> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let loaded = load_full(paths)?;
    WARNED.call_once(|| {
        for w in &loaded.warnings {
            tracing::warn!("{}: {w}", loaded.path.display());
        }
    });
    Ok(loaded.config)
}

/// `log.format` from the file or `ERRAND_LOG_FORMAT`, read before logging
/// starts (quietly: problems are reported when the configuration is loaded).
pub fn log_format(paths: &Paths) -> Option<String> {
    if let Ok(v) = std::env::var(env_name("log.format")) {
        return Some(v);
    }
    let text = std::fs::read_to_string(path(paths)).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    table.get("log")?.get("format")?.as_str().map(String::from)
}

fn read_table(paths: &Paths) -> Result<(PathBuf, toml::Table)> {
    let p = path(paths);
    let explicit = std::env::var_os("ERRAND_CONFIG").is_some_and(|v| !v.is_empty());
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => String::new(),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the configuration {}", p.display()))
        }
    };
    let table = toml::from_str(&text)
        .with_context(|| format!("the configuration {} is not valid", p.display()))?;
    Ok((p, table))
}

/// [`load`], keeping each value's source and the warnings.
pub fn load_full(paths: &Paths) -> Result<Loaded> {
    let (p, file) = read_table(paths)?;
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut loaded = merge(file, &env).map_err(|errors| {
        anyhow::anyhow!(
            "the configuration ({} and ERRAND_* variables) is not valid: {}",
            p.display(),
            errors.join("; ")
        )
    })?;
    loaded.path = p.clone();
    let config = toml::Value::Table(loaded.table.clone())
        .try_into()
        .with_context(|| {
            format!(
                "the configuration ({} and ERRAND_* variables) is not valid",
                p.display()
            )
        })?;
    loaded.config = config;
    Ok(loaded)
}

/// The file's table with unknown keys set aside (as warnings), every known
/// value typed by the schema, and the environment's `ERRAND_SECTION_KEY`
/// variables applied over it. `Err` lists the values that cannot be typed.
fn merge(
    mut file: toml::Table,
    env: &[(String, String)],
) -> std::result::Result<Loaded, Vec<String>> {
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let mut sources = std::collections::BTreeMap::new();
    let sections = sections();
    let all: Vec<&str> = KEYS
        .iter()
        .map(|(k, _)| *k)
        .chain(sections.iter().copied())
        .chain(ARRAYS.iter().copied())
        .collect();
    // The file.
    let names: Vec<String> = file.keys().cloned().collect();
    for name in names {
        if ARRAYS.contains(&name.as_str()) {
            continue;
        }
        if !sections.contains(&name.as_str()) {
            warnings.push(unknown_message(
                "key",
                &name,
                nearest(&name, all.iter().copied()),
            ));
            file.remove(&name);
            continue;
        }
        let Some(toml::Value::Table(t)) = file.get_mut(&name) else {
            errors.push(format!("`{name}` must be a table ([{name}])"));
            continue;
        };
        let keys: Vec<String> = t.keys().cloned().collect();
        for k in keys {
            let full = format!("{name}.{k}");
            let Some(kind) = kind_of(&full) else {
                let near = nearest(&full, KEYS.iter().map(|(k, _)| *k));
                warnings.push(unknown_message("key", &full, near));
                t.remove(&k);
                continue;
            };
            if let Some(v) = t.remove(&k) {
                match coerce(kind, v) {
                    Ok(v) => {
                        t.insert(k, v);
                        sources.insert(full, Source::File);
                    }
                    Err(e) => errors.push(format!("{full}: {e}")),
                }
            }
        }
    }
    // The environment.
    let env_names: Vec<String> = KEYS.iter().map(|(k, _)| env_name(k)).collect();
    for (var, value) in env {
        let Some((key, kind)) = KEYS.iter().find(|(k, _)| env_name(k) == *var) else {
            let looks_like_key = sections
                .iter()
                .any(|s| var.starts_with(&format!("{}_", env_name(s))));
            if looks_like_key {
                let near = nearest(var, env_names.iter().map(String::as_str));
                warnings.push(unknown_message("variable", var, near));
            }
            continue;
        };
        let (section, name) = key.split_once('.').unwrap_or((key, key));
        match coerce(*kind, toml::Value::String(value.clone())) {
            Ok(v) => {
                let table = file
                    .entry(section.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(t) = table {
                    t.insert(name.to_string(), v);
                }
                sources.insert(key.to_string(), Source::Env(var.clone()));
            }
            Err(e) => errors.push(format!("{var}: {e}")),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Loaded {
        config: Config::default(),
        path: PathBuf::new(),
        sources,
        warnings,
        table: file,
    })
}

impl Config {
    pub fn registry(&self) -> Registry {
        Registry {
            custom: self.harness.clone(),
        }
    }

    /// errand's environment with the configured model endpoints filled in
    /// where the usual variables are not set: what harnesses take theirs from.
    pub fn harness_env(&self) -> std::collections::BTreeMap<String, String> {
        let mut env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
        for (var, value) in [
            ("ANTHROPIC_BASE_URL", &self.models.anthropic_base_url),
            ("OPENAI_BASE_URL", &self.models.openai_base_url),
            (
                "GOOGLE_GEMINI_BASE_URL",
                &self.models.google_gemini_base_url,
            ),
        ] {
            if let Some(v) = value {
                env.entry(var.to_string()).or_insert_with(|| v.clone());
            }
        }
        env
    }

    /// The docker backend's settings; `scope` marks this installation's containers.
    pub fn docker_config(&self, paths: Option<&Paths>) -> errand_sandbox::DockerConfig {
        let mut c = errand_sandbox::DockerConfig {
            network: self.sandbox.docker_network.clone(),
            ..Default::default()
        };
        if let Some(image) = &self.sandbox.docker_image {
            c.image = image.clone();
        }
        if let Some(p) = paths {
            c.scope = p
                .home
                .canonicalize()
                .unwrap_or_else(|_| p.home.clone())
                .to_string_lossy()
                .into_owned();
        }
        c
    }

    /// What runs may reach; `protected` are the addresses errand's API listens
    /// on (`server.listen` is always among them).
    pub fn egress(&self, protected: &[std::net::SocketAddr]) -> errand_runner::EgressSettings {
        let mut protected = protected.to_vec();
        if let Ok(a) = self.server.listen.parse() {
            if !protected.contains(&a) {
                protected.push(a);
            }
        }
        errand_runner::EgressSettings {
            allowlist: self.sandbox.egress != "open",
            allow: self.sandbox.egress_allow.clone(),
            git_host: self.sandbox.egress_git_host,
            protected,
        }
    }

    /// The kubernetes backend's settings; the runs root defaults to errand's
    /// data directory, and `scope` marks this installation's objects.
    pub fn kubernetes_config(&self, paths: Option<&Paths>) -> errand_sandbox::KubernetesConfig {
        let s = &self.sandbox;
        let mut c = errand_sandbox::KubernetesConfig {
            namespace: s.kubernetes_namespace.clone(),
            runs_claim: s.kubernetes_runs_claim.clone(),
            network_policy: s.kubernetes_network_policy,
            egress: s.kubernetes_egress.clone(),
            deadline_secs: s.kubernetes_deadline_secs,
            ..Default::default()
        };
        if let Some(image) = &s.kubernetes_image {
            c.image = image.clone();
        }
        if let Some(root) = &s.kubernetes_runs_root {
            c.runs_root = root.clone();
        } else if let Some(p) = paths {
            c.runs_root = std::path::absolute(&p.home).unwrap_or_else(|_| p.home.clone());
        }
        c.scope = self.docker_config(paths).scope;
        c
    }

    /// The modal backend's settings; `scope` marks this installation's sandboxes.
    pub fn modal_config(&self, paths: Option<&Paths>) -> errand_modal::ModalConfig {
        let s = &self.sandbox;
        errand_modal::ModalConfig {
            app: s.modal_app.clone(),
            image: s.modal_image.clone().unwrap_or_default(),
            dockerfile_commands: s.modal_dockerfile_commands.clone(),
            timeout_secs: s.modal_timeout_secs,
            cidrs: s.modal_cidrs.clone(),
            scope: self.docker_config(paths).scope,
        }
    }

    /// The GitHub App, when `[github]` is configured.
    pub fn github_forge(&self) -> Result<Option<std::sync::Arc<errand_runner::GithubForge>>> {
        let Some(gh) = &self.github else {
            return Ok(None);
        };
        let pem = match (&gh.private_key, &gh.private_key_file) {
            (Some(pem), _) => pem.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the GitHub App key {}", file.display()))?,
            (None, None) => anyhow::bail!("[github] has no private key"),
        };
        let creds = errand_github::AppCredentials::new(gh.app_id.clone(), pem);
        let client = errand_github::GithubClient::new(&gh.api_url, creds)
            .context("the GitHub App's settings are not usable")?;
        Ok(Some(std::sync::Arc::new(errand_runner::GithubForge {
            client,
            git_base: gh.git_url.trim_end_matches('/').to_string(),
            workflows: gh.workflows,
        })))
    }

    /// The Slack and GitHub routes' settings, when either is configured.
    pub fn integrations(
        &self,
        forge: Option<std::sync::Arc<errand_runner::GithubForge>>,
        public_url: &str,
    ) -> Option<errand_server::integrations::Integrations> {
        use errand_server::integrations::{GithubIntegration, Integrations, SlackIntegration};
        let slack = self.slack.as_ref().map(|s| SlackIntegration {
            signing_secret: s.signing_secret.clone(),
            client: errand_slack::SlackClient::new(&s.api_url, s.bot_token.clone()),
        });
        let github = match (&self.github, forge) {
            (Some(gh), Some(forge)) => gh.webhook_secret.as_ref().map(|secret| GithubIntegration {
                webhook_secret: secret.clone(),
                mention: gh.mention.clone(),
                forge,
                label: gh.label.clone().filter(|l| !l.trim().is_empty()),
                fix_ci_attempts: if gh.fix_ci { gh.fix_ci_attempts } else { 0 },
            }),
            _ => None,
        };
        if slack.is_none() && github.is_none() {
            return None;
        }
        Some(Integrations {
            public_url: public_url.trim_end_matches('/').to_string(),
            slack,
            github,
            access: errand_server::access::AccessPolicy::new(self.access.clone()),
            default_harness: self.server.default_harness.clone(),
        })
    }

    pub fn database_url(&self, paths: &Paths) -> String {
        self.database
            .url
            .clone()
            .unwrap_or_else(|| paths.db().to_string_lossy().into_owned())
    }

    /// Every problem, each as a sentence.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.harness.iter().flat_map(|h| h.problems()).collect();
        let mut names: Vec<&str> = self.harness.iter().map(|h| h.name.as_str()).collect();
        names.sort_unstable();
        for w in names.windows(2) {
            if w[0] == w[1] {
                out.push(format!("harness '{}' is defined twice", w[0]));
            }
        }
        self.service_problems(&mut out);
        self.sandbox_problems(&mut out);
        self.integration_problems(&mut out);
        self.storage_problems(&mut out);
        out.extend(self.retention.problems());
        out.extend(self.gateway.problems());
        out
    }

    /// `[server]`, `[queue]` and `[models]`.
    fn service_problems(&self, out: &mut Vec<String>) {
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            out.push(format!(
                "server.listen '{}' is not an address such as 127.0.0.1:8080",
                self.server.listen
            ));
        }
        if self.server.workers == 0 {
            out.push("server.workers is 0: no run would ever execute".into());
        }
        out.extend(errand_server::repo::canonical_prefixes(&self.server.local_repos).1);
        if self.queue.lease_secs < 3 {
            out.push(format!(
                "queue.lease_secs {} is too short (at least 3)",
                self.queue.lease_secs
            ));
        }
        for (key, value) in [
            ("models.anthropic_base_url", &self.models.anthropic_base_url),
            ("models.openai_base_url", &self.models.openai_base_url),
            (
                "models.google_gemini_base_url",
                &self.models.google_gemini_base_url,
            ),
        ] {
            if let Some(v) = value {
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    out.push(format!("{key} '{v}' is not an http(s) URL"));
                }
            }
        }
    }

    /// `[sandbox]`.
    fn sandbox_problems(&self, out: &mut Vec<String>) {
        for c in &self.sandbox.choices {
            if !["local", "docker", "kubernetes", "modal"].contains(&c.as_str()) {
                out.push(format!(
                    "sandbox.choices entry '{c}' is not local, docker, kubernetes or modal"
                ));
            }
        }
        if !["local", "docker", "kubernetes", "modal"].contains(&self.sandbox.backend.as_str()) {
            out.push(format!(
                "sandbox.backend '{}' is not local, docker, kubernetes or modal",
                self.sandbox.backend
            ));
        }
        out.extend(self.docker_config(None).problems());
        out.extend(self.kubernetes_config(None).problems());
        if !["open", "allowlist"].contains(&self.sandbox.egress.as_str()) {
            out.push(format!(
                "sandbox.egress '{}' is not open or allowlist",
                self.sandbox.egress
            ));
        }
        let s = &self.sandbox;
        match (&s.kubernetes_git_proxy_listen, &s.kubernetes_git_proxy_url) {
            (None, None) => {}
            (Some(listen), Some(url)) => {
                if listen.parse::<std::net::SocketAddr>().is_err()
                    && errand_sandbox::egress::parse_authority(listen, None).is_none()
                {
                    out.push(format!(
                        "sandbox.kubernetes_git_proxy_listen '{listen}' is not host:port"
                    ));
                }
                let lower = url.to_ascii_lowercase();
                if !(lower.starts_with("http://") || lower.starts_with("https://"))
                    || errand_sandbox::egress::url_destination(url).is_none()
                {
                    out.push(format!(
                        "sandbox.kubernetes_git_proxy_url '{url}' is not an http(s) URL with a host"
                    ));
                }
            }
            _ => out.push(
                "sandbox.kubernetes_git_proxy_listen and sandbox.kubernetes_git_proxy_url go together \
                 (where errand serves the git proxy, and the URL pods reach it at)"
                    .into(),
            ),
        }
        for a in &self.sandbox.egress_allow {
            if let Err(e) = errand_sandbox::egress::AllowEntry::parse(a) {
                out.push(format!("sandbox.egress_allow: {e}"));
            }
        }
        if self.sandbox.cpus.is_nan() || self.sandbox.cpus < 0.0 {
            out.push(format!(
                "sandbox.cpus {} is not a number of CPUs (0 for no limit)",
                self.sandbox.cpus
            ));
        }
    }

    /// `[github]`, `[slack]` and `[[access]]`.
    fn integration_problems(&self, out: &mut Vec<String>) {
        if let Some(gh) = &self.github {
            if gh.app_id.trim().is_empty() {
                out.push("github.app_id is empty".into());
            }
            match (&gh.private_key_file, &gh.private_key) {
                (None, None) => out.push(
                    "github needs the App's private key: private_key_file (or ERRAND_GITHUB_PRIVATE_KEY)"
                        .into(),
                ),
                (Some(f), None) if !f.is_file() => out.push(format!(
                    "github.private_key_file {} does not exist",
                    f.display()
                )),
                _ => {}
            }
            for (key, v) in [
                ("github.api_url", &gh.api_url),
                ("github.git_url", &gh.git_url),
            ] {
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    out.push(format!("{key} '{v}' is not an http(s) URL"));
                }
            }
        }
        if let Some(s) = &self.slack {
            if s.signing_secret.trim().is_empty() || s.bot_token.trim().is_empty() {
                out.push("slack needs both signing_secret and bot_token".into());
            }
            if self.github.is_none() {
                out.push("slack runs work on GitHub repositories: configure [github] too".into());
            }
        }
        for (i, rule) in self.access.iter().enumerate() {
            if rule.repos.is_empty() {
                out.push(format!("access rule {} names no repos", i + 1));
            }
            let names_someone = rule.slack_team.is_some()
                || !rule.slack_channels.is_empty()
                || !rule.slack_users.is_empty()
                || !rule.github_users.is_empty();
            if !names_someone {
                out.push(format!(
                    "access rule {} names nobody (slack_team, slack_channels, slack_users or github_users)",
                    i + 1
                ));
            }
        }
    }

    /// `[log]` and `[database]`.
    fn storage_problems(&self, out: &mut Vec<String>) {
        if !["text", "json"].contains(&self.log.format.as_str()) {
            out.push(format!(
                "log.format '{}' is not text or json",
                self.log.format
            ));
        }
        if let Some(url) = &self.database.url {
            let ok = url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:")
                || url.starts_with('/');
            if !ok {
                out.push(format!(
                    "database.url '{url}' is neither postgres://… nor a SQLite path"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn local_repos_come_as_a_list_or_a_colon_separated_string_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let list: Config = toml::from_str(&format!(
            "[server]\nlocal_repos = [\"{d}\", \"/nonexistent-errand\"]"
        ))
        .unwrap();
        let joined: Config = toml::from_str(&format!(
            "[server]\nlocal_repos = \"{d}:/nonexistent-errand\""
        ))
        .unwrap();
        assert_eq!(list.server.local_repos, joined.server.local_repos);
        assert_eq!(list.server.local_repos.len(), 2);
        let problems = list.problems();
        assert!(
            problems.iter().any(|p| p.contains("/nonexistent-errand")),
            "{problems:?}"
        );
        assert!(
            Config::default().server.local_repos.is_empty(),
            "none by default"
        );
    }

    #[test]
    fn the_kubernetes_git_proxy_keys_go_together_and_are_checked() {
        assert_eq!(
            kind_of("sandbox.kubernetes_git_proxy_listen"),
            Some(Kind::Str)
        );
        assert_eq!(kind_of("sandbox.kubernetes_git_proxy_url"), Some(Kind::Str));
        let d = Config::default();
        assert_eq!(d.sandbox.kubernetes_git_proxy_listen, None);
        assert_eq!(d.sandbox.kubernetes_git_proxy_url, None);
        let good: Config = toml::from_str(
            "[sandbox]\nkubernetes_git_proxy_listen = \"0.0.0.0:8471\"\n\
             kubernetes_git_proxy_url = \"http://errand.errand.svc.cluster.local:8471\"",
        )
        .unwrap();
        assert_eq!(
            good.sandbox.kubernetes_git_proxy_listen.as_deref(),
            Some("0.0.0.0:8471")
        );
        assert!(
            !good.problems().iter().any(|p| p.contains("git_proxy")),
            "{:?}",
            good.problems()
        );
        let alone: Config =
            toml::from_str("[sandbox]\nkubernetes_git_proxy_listen = \"0.0.0.0:8471\"").unwrap();
        assert!(
            alone.problems().iter().any(|p| p.contains("go together")),
            "{:?}",
            alone.problems()
        );
        let bad: Config = toml::from_str(
            "[sandbox]\nkubernetes_git_proxy_listen = \"nowhere\"\n\
             kubernetes_git_proxy_url = \"errand:8471\"",
        )
        .unwrap();
        let problems = bad.problems();
        assert!(
            problems.iter().any(|p| p.contains("is not host:port")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("not an http(s) URL")),
            "{problems:?}"
        );
    }
    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn typed(file: &str, vars: &[(&str, &str)]) -> Config {
        let loaded = merge(toml::from_str(file).unwrap(), &env(vars)).unwrap();
        toml::Value::Table(loaded.table).try_into().unwrap()
    }

    #[test]
    fn a_number_where_text_is_expected_is_its_text() {
        let c = typed(
            "[github]\nprivate_key = \"PEM\"",
            &[("ERRAND_GITHUB_APP_ID", "123456")],
        );
        assert_eq!(c.github.unwrap().app_id, "123456");
        // And in the file too.
        let c = typed("[github]\napp_id = 42\nmention = 7", &[]);
        let gh = c.github.unwrap();
        assert_eq!((gh.app_id.as_str(), gh.mention.as_str()), ("42", "7"));
        // A URL of digits stays text; text stays text.
        let c = typed(
            "",
            &[
                ("ERRAND_SERVER_WORKER_ID", "0017"),
                ("ERRAND_LOG_FORMAT", "json"),
            ],
        );
        assert_eq!(c.server.worker_id.as_deref(), Some("0017"));
        assert_eq!(c.log.format, "json");
    }

    #[test]
    fn digits_where_a_number_is_expected_are_the_number() {
        let c = typed(
            "[queue]\nlease_secs = \"45\"",
            &[("ERRAND_SERVER_WORKERS", " 4 ")],
        );
        assert_eq!((c.server.workers, c.queue.lease_secs), (4, 45));
        let c = typed("", &[("ERRAND_SANDBOX_CPUS", "1.5")]);
        assert_eq!(c.sandbox.cpus, 1.5);
        let c = typed("[sandbox]\ncpus = 2", &[]);
        assert_eq!(c.sandbox.cpus, 2.0);
        let err = merge(
            toml::Table::new(),
            &env(&[("ERRAND_SERVER_WORKERS", "four")]),
        )
        .err()
        .unwrap();
        assert_eq!(
            err,
            vec!["ERRAND_SERVER_WORKERS: 'four' is not a whole number".to_string()]
        );
        let err = merge(toml::from_str("[sandbox]\ncpus = \"lots\"").unwrap(), &[])
            .err()
            .unwrap();
        assert!(err[0].starts_with("sandbox.cpus:"), "{err:?}");
    }

    #[test]
    fn booleans_come_as_words_or_numbers() {
        for (text, want) in [
            ("true", true),
            ("YES", true),
            ("1", true),
            ("false", false),
            ("no", false),
            ("0", false),
            ("", false),
        ] {
            let c = typed(
                "",
                &[
                    ("ERRAND_GITHUB_WORKFLOWS", text),
                    ("ERRAND_GITHUB_APP_ID", "1"),
                ],
            );
            assert_eq!(c.github.unwrap().workflows, want, "{text}");
        }
        let c = typed(
            "[sandbox]\negress_git_host = 1\nkubernetes_network_policy = \"true\"",
            &[],
        );
        assert!(c.sandbox.egress_git_host && c.sandbox.kubernetes_network_policy);
        assert!(merge(
            toml::Table::new(),
            &env(&[("ERRAND_SANDBOX_EGRESS_GIT_HOST", "maybe")])
        )
        .is_err());
    }

    #[test]
    fn lists_come_comma_separated_or_as_toml_arrays() {
        let want = vec!["a.example".to_string(), "*.b.example:443".to_string()];
        for text in [
            "a.example, *.b.example:443",
            "[\"a.example\", \"*.b.example:443\"]",
        ] {
            let c = typed("", &[("ERRAND_SANDBOX_EGRESS_ALLOW", text)]);
            assert_eq!(c.sandbox.egress_allow, want, "{text}");
        }
        let c = typed("[sandbox]\nkubernetes_egress = \"10.0.0.0/8\"", &[]);
        assert_eq!(c.sandbox.kubernetes_egress, vec!["10.0.0.0/8".to_string()]);
        let c = typed("", &[("ERRAND_SERVER_LOCAL_REPOS", "/srv/a:/srv/b")]);
        assert_eq!(
            c.server.local_repos,
            vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]
        );
        let c = typed("", &[("ERRAND_SERVER_LOCAL_REPOS", "[\"/srv/a:b\"]")]);
        assert_eq!(c.server.local_repos, vec![PathBuf::from("/srv/a:b")]);
        assert!(merge(
            toml::Table::new(),
            &env(&[("ERRAND_SANDBOX_EGRESS_ALLOW", "[unclosed")])
        )
        .is_err());
    }

    #[test]
    fn unknown_keys_and_variables_are_warned_about_with_the_nearest_key() {
        let loaded = merge(
            toml::from_str("[sandbox]\nbacknd = \"docker\"\n[sandbx]\nx = 1\n[zzz]\nq = 1")
                .unwrap(),
            &env(&[
                ("ERRAND_SANDBOX_BAKEND", "docker"),
                ("ERRAND_HOME", "/x"),
                ("ERRAND_LOG", "debug"),
                ("ERRAND_SERVER", "http://x"),
                ("ERRAND_SECRET_KEY", "k"),
            ]),
        )
        .unwrap();
        assert_eq!(
            loaded.warnings,
            vec![
                "unknown key `sandbox.backnd`; did you mean `sandbox.backend`?",
                "unknown key `sandbx`; did you mean `sandbox`?",
                "unknown key `zzz`",
                "unknown variable `ERRAND_SANDBOX_BAKEND`; did you mean `ERRAND_SANDBOX_BACKEND`?",
            ]
        );
        // Set aside, so the rest still loads.
        let c: Config = toml::Value::Table(loaded.table).try_into().unwrap();
        assert_eq!(c.sandbox.backend, "local");
    }

    #[test]
    fn sources_say_file_environment_or_default() {
        let loaded = merge(
            toml::from_str("[server]\nlisten = \"0.0.0.0:1\"\nworkers = 3").unwrap(),
            &env(&[("ERRAND_SERVER_WORKERS", "5")]),
        )
        .unwrap();
        assert_eq!(loaded.source("server.listen"), Source::File);
        assert_eq!(
            loaded.source("server.workers"),
            Source::Env("ERRAND_SERVER_WORKERS".into())
        );
        assert_eq!(loaded.source("queue.lease_secs"), Source::Default);
    }

    #[test]
    fn every_key_of_the_schema_is_in_the_table_and_shown() {
        let mut loaded = merge(toml::Table::new(), &[]).unwrap();
        loaded.config = typed(
            "[github]\napp_id = \"1\"\n[slack]\nsigning_secret = \"s\"\nbot_token = \"t\"",
            &[],
        );
        let shown: Vec<&str> = loaded
            .effective()
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(shown, KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>());
        // Each section's serialized fields are exactly its keys.
        let c = &loaded.config;
        for (section, v) in [
            ("server", serde_json::to_value(&c.server).unwrap()),
            ("sandbox", serde_json::to_value(&c.sandbox).unwrap()),
            (
                "github",
                serde_json::to_value(c.github.as_ref().unwrap()).unwrap(),
            ),
            (
                "slack",
                serde_json::to_value(c.slack.as_ref().unwrap()).unwrap(),
            ),
            ("queue", serde_json::to_value(&c.queue).unwrap()),
            ("models", serde_json::to_value(&c.models).unwrap()),
            ("database", serde_json::to_value(&c.database).unwrap()),
            ("log", serde_json::to_value(&c.log).unwrap()),
            ("retention", serde_json::to_value(&c.retention).unwrap()),
            ("gateway", serde_json::to_value(&c.gateway).unwrap()),
        ] {
            for field in v.as_object().unwrap().keys() {
                assert!(
                    kind_of(&format!("{section}.{field}")).is_some(),
                    "{section}.{field} is not in KEYS"
                );
            }
        }
    }

    #[test]
    fn secrets_are_masked() {
        for k in [
            "github.private_key",
            "github.webhook_secret",
            "slack.bot_token",
            "slack.signing_secret",
            "DB_PASSWORD",
            "API_KEY",
        ] {
            assert!(is_secret(k), "{k}");
        }
        for k in [
            "github.private_key_file",
            "github.app_id",
            "database.url",
            "server.listen",
        ] {
            assert!(!is_secret(k), "{k}");
        }
        assert_eq!(
            mask_url("postgres://errand:hunter2@db:5432/errand"),
            "postgres://errand:********@db:5432/errand"
        );
        assert_eq!(
            mask_url("https://tok@example.com/x?a=b@c"),
            "https://********@example.com/x?a=b@c"
        );
        assert_eq!(mask_url("/var/lib/errand.db"), "/var/lib/errand.db");
        let m = mask(
            "harness",
            serde_json::json!([{"name": "x", "env": {"API_KEY": "sk-1", "MODE": "fast"}}]),
        );
        assert_eq!(
            m,
            serde_json::json!([{"name": "x", "env": {"API_KEY": MASK, "MODE": "fast"}}])
        );
    }
}

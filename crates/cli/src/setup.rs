//! From the loaded [`Config`] to what the commands run: the store, the
//! [`Runner`] (`run`, `serve`, `worker`), and a service's API state and worker
//! pool (`serve`, `worker`). Every `Runner` errand builds is built here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use errand_runner::{Forge, GatewaySettings, GithubForge, Paths, RunObserver, Runner};
use errand_sandbox::Limits;
use errand_server::{AppState, WorkerConfig, WorkerPool};
use errand_store::{QueueLimits, Store};

use crate::config::{self, Config};
use crate::sandbox;

/// The sandbox's memory limit unless `--memory` says otherwise.
pub const DEFAULT_MEMORY: u64 = 4 << 30;
/// The sandbox's process limit unless `--max-procs` says otherwise.
pub const DEFAULT_MAX_PROCS: u64 = 4096;

/// The store named by `database.url`, else SQLite in $ERRAND_HOME.
pub async fn open_store(paths: &Paths) -> Result<Arc<dyn Store>> {
    open_store_at(paths, None).await
}

/// The store named by `--database-url`, else `database.url`, else SQLite in $ERRAND_HOME.
pub async fn open_store_at(paths: &Paths, url: Option<&str>) -> Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&paths.home)
        .with_context(|| format!("cannot create {}", paths.home.display()))?;
    let url = match url {
        Some(u) => u.to_string(),
        None => config::load(paths)?.database_url(paths),
    };
    errand_store::open_url(&url)
        .await
        .with_context(|| format!("opening the database {}", errand_git::redact_url(&url)))
}

/// What differs between the commands that build a [`Runner`]; everything else
/// comes from the configuration.
pub struct RunnerOptions {
    /// `--sandbox`; `None`: `sandbox.backend`, else local.
    pub backend: Option<sandbox::Backend>,
    /// The harnesses' environment (`cfg.harness_env()`, plus the demo's model).
    pub env: BTreeMap<String, String>,
    /// Sandbox limits in bytes and processes; 0 for none.
    pub memory: u64,
    pub max_procs: u64,
    /// Where people reach this errand: `run` passes `server.public_url`,
    /// a service that or its own listen address.
    pub public_url: Option<String>,
    /// Told of every run's changes (Slack cards, GitHub comments).
    pub observer: Option<Arc<dyn RunObserver>>,
    /// Addresses runs may never reach: the API this process serves.
    pub protected: Vec<SocketAddr>,
    /// The GitHub App (`[github]`), shared with a service's integrations.
    pub github: Option<Arc<GithubForge>>,
}

impl RunnerOptions {
    /// The defaults of every command: the configured backend, the configured
    /// environment, 4 GiB and 4096 processes, no observer.
    pub fn new(cfg: &Config) -> Result<Self> {
        Ok(RunnerOptions {
            backend: None,
            env: cfg.harness_env(),
            memory: DEFAULT_MEMORY,
            max_procs: DEFAULT_MAX_PROCS,
            public_url: cfg.server.public_url.clone(),
            observer: None,
            protected: Vec::new(),
            github: cfg.github_forge()?,
        })
    }
}

/// The runner: picks the sandbox backend and removes what earlier processes
/// left of it, then wires the store, forge, harnesses and egress settings.
pub async fn runner(
    cfg: &Config,
    paths: &Paths,
    store: Arc<dyn Store>,
    opts: RunnerOptions,
) -> Result<Arc<Runner>> {
    let chosen = sandbox::choose(cfg, paths, opts.backend)?;
    sandbox::clean_up(store.as_ref(), &chosen).await;
    Ok(Arc::new(Runner {
        store,
        sandbox: chosen.sandbox,
        forge: opts.github.map(|g| g as Arc<dyn Forge>),
        public_url: opts.public_url,
        observer: opts.observer,
        paths: paths.clone(),
        env: opts.env,
        cwd: std::env::current_dir()?,
        limits: Limits {
            memory_bytes: (opts.memory > 0).then_some(opts.memory),
            max_pids: (opts.max_procs > 0).then_some(opts.max_procs),
            cpus: sandbox::cpus(cfg),
            lifetime_secs: None,
        },
        harnesses: cfg.registry(),
        cancel_poll: Duration::from_millis(300),
        egress: cfg.egress(&opts.protected),
        kubernetes_git_proxy_listen: cfg.sandbox.kubernetes_git_proxy_listen.clone(),
        kubernetes_git_proxy_url: cfg.sandbox.kubernetes_git_proxy_url.clone(),
        gateway: gateway(cfg).await?,
    }))
}

/// The process's model gateway (`[gateway]`), listening on the host's
/// loopback; `None` when it is turned off.
async fn gateway(cfg: &Config) -> Result<Option<GatewaySettings>> {
    let g = &cfg.gateway;
    if !g.enabled {
        return Ok(None);
    }
    let listen: SocketAddr = g
        .listen
        .parse()
        .with_context(|| format!("gateway.listen '{}'", g.listen))?;
    if !listen.ip().is_loopback() {
        anyhow::bail!("gateway.listen {listen}: must be a loopback address");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("the model gateway cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let gateway = errand_gateway::Gateway::new();
    let router = gateway.router();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("the model gateway stopped: {e}");
        }
    });
    // Sandboxes off the host reach the same gateway at an address of their own:
    // agent pods over the cluster's network, Modal Sandboxes over the internet.
    let mut remote = std::collections::BTreeMap::new();
    for (backend, listen, url) in [
        ("kubernetes", &g.kubernetes_listen, &g.kubernetes_url),
        ("modal", &g.modal_listen, &g.modal_url),
    ] {
        let (Some(l), Some(u)) = (listen, url) else {
            continue;
        };
        let listener = tokio::net::TcpListener::bind(l.as_str())
            .await
            .with_context(|| {
                format!("the model gateway cannot listen for {backend} sandboxes on {l}")
            })?;
        let router = gateway.router();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!("the model gateway's {backend} listener stopped: {e}");
            }
        });
        remote.insert(backend.to_string(), u.trim_end_matches('/').to_string());
    }
    Ok(Some(GatewaySettings {
        gateway,
        addr,
        defaults: errand_gateway::Limits {
            max_cost_usd: g.max_cost_usd,
            max_tokens: g.max_tokens,
            models: (!g.models.is_empty()).then(|| g.models.clone()),
            requests_per_minute: g.requests_per_minute,
        },
        direct: g.direct.clone(),
        remote,
    }))
}

/// What `serve` and `worker` run: the API's state and a worker pool.
pub struct Service {
    pub state: AppState,
    pub pool: WorkerPool,
}

/// How a service was asked to run (flags over the configuration).
pub struct ServiceOptions<'a> {
    pub workers: Option<u32>,
    pub database_url: Option<&'a str>,
    /// `--id`: the worker's stable id.
    pub id: Option<String>,
    /// Where this process serves the API: runs may never reach it.
    pub api: &'a [SocketAddr],
}

/// A service from a configuration without problems.
pub async fn service(paths: &Paths, opts: ServiceOptions<'_>) -> Result<Service> {
    let cfg = config::load(paths)?;
    let problems = cfg.problems();
    if !problems.is_empty() {
        bail!(
            "the configuration has problems:\n  {}",
            problems.join("\n  ")
        );
    }
    let store = open_store_at(paths, opts.database_url.or(cfg.database.url.as_deref())).await?;
    let mut state = AppState::new(store.clone(), cfg.registry());
    let (local_repos, _) = errand_server::repo::canonical_prefixes(&cfg.server.local_repos);
    if !local_repos.is_empty() {
        tracing::info!(
            ?local_repos,
            "runs from the API may clone local paths under these"
        );
    }
    state.local_repos = Arc::new(local_repos);
    state.policy = Arc::new(errand_server::newrun::RunPolicy {
        models: cfg.gateway.models.clone(),
        sandbox: cfg.sandbox.backend.clone(),
        sandboxes: std::iter::once(cfg.sandbox.backend.clone())
            .chain(cfg.sandbox.choices.iter().cloned())
            .fold(Vec::new(), |mut v, b| {
                if !v.contains(&b) {
                    v.push(b);
                }
                v
            }),
        runs_here: opts.workers != Some(0),
        env_set: cfg
            .harness_env()
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k)
            .collect(),
        max_cost_usd: cfg.gateway.max_cost_usd,
        max_tokens: cfg.gateway.max_tokens,
    });
    if let Some(gh) = &cfg.github {
        state.github_api = gh.api_url.clone();
    }
    let public_url = cfg
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.server.listen));
    let mut runner_opts = RunnerOptions::new(&cfg)?;
    if let Some(int) = cfg.integrations(runner_opts.github.clone(), &public_url) {
        let int = Arc::new(int);
        runner_opts.observer = Some(errand_server::integrations::Notifier::start(
            int.clone(),
            store.clone(),
        ));
        state.integrations = Some(int);
    }
    state.forge = runner_opts
        .github
        .clone()
        .map(|f| f as Arc<dyn errand_runner::Forge>);
    state.public_url = Some(public_url.clone());
    runner_opts.public_url = Some(public_url);
    runner_opts.protected = opts.api.to_vec();
    let runner = runner(&cfg, paths, store.clone(), runner_opts).await?;
    if let Some(g) = &runner.gateway {
        state.metrics.gateway.set(g.gateway.clone());
    }
    // The other backends a run may ask for: the same runner (one gateway,
    // one forge), on another sandbox, each cleared of what earlier processes left.
    let mut runners = std::collections::BTreeMap::new();
    for name in &cfg.sandbox.choices {
        if name == runner.sandbox.name() || runners.contains_key(name) {
            continue;
        }
        let backend = <sandbox::Backend as clap::ValueEnum>::from_str(name, false)
            .map_err(|e| anyhow::anyhow!("sandbox.choices: {e}"))?;
        let chosen = sandbox::choose(&cfg, paths, Some(backend))?;
        sandbox::clean_up(store.as_ref(), &chosen).await;
        let mut other = (*runner).clone();
        other.sandbox = chosen.sandbox;
        runners.insert(name.clone(), Arc::new(other));
    }
    let pool = WorkerPool {
        store,
        runner,
        runners,
        config: worker_config(&cfg, paths, opts.workers, opts.id),
        metrics: state.metrics.clone(),
    };
    Ok(Service { state, pool })
}

fn worker_config(
    cfg: &Config,
    paths: &Paths,
    workers: Option<u32>,
    id: Option<String>,
) -> WorkerConfig {
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
    let worker_id = id
        .or(cfg.server.worker_id.clone())
        .unwrap_or_else(|| format!("{}:{}", host.trim(), paths.home.display()));
    let nonzero = |n: u32| (n > 0).then_some(n);
    WorkerConfig {
        id: worker_id,
        slots: workers.unwrap_or(cfg.server.workers).max(1) as usize,
        lease: Duration::from_secs(cfg.queue.lease_secs),
        limits: QueueLimits {
            global: nonzero(cfg.queue.global_limit),
            per_repo: nonzero(cfg.queue.per_repo_limit),
        },
        poll: Duration::from_millis(200),
        drain_grace: Duration::from_secs(cfg.server.drain_grace_secs),
    }
}

//! `errand serve` and `errand worker`: the long-running processes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use errand_runner::{Paths, Runner};
use errand_sandbox::Limits;
use errand_server::{app, AppState, WorkerConfig, WorkerPool};
use errand_store::QueueLimits;
use tokio_util::sync::CancellationToken;

use crate::config;

/// Cancels `token` on Ctrl-C or SIGTERM.
fn on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}

struct Parts {
    state: AppState,
    pool: WorkerPool,
}

/// `api` is where this process serves the API: runs may never reach it.
async fn build(
    paths: &Paths,
    workers: Option<u32>,
    database_url: Option<&str>,
    id: Option<String>,
    api: &[std::net::SocketAddr],
) -> Result<Parts> {
    let cfg = config::load(paths)?;
    let problems = cfg.problems();
    if !problems.is_empty() {
        bail!(
            "the configuration has problems:\n  {}",
            problems.join("\n  ")
        );
    }
    let store = crate::open_store_at(paths, database_url.or(cfg.database.url.as_deref())).await?;
    let registry = cfg.registry();
    let mut state = AppState::new(store.clone(), registry.clone());
    let (local_repos, _) = errand_server::repo::canonical_prefixes(&cfg.server.local_repos);
    if !local_repos.is_empty() {
        tracing::info!(
            ?local_repos,
            "runs from the API may clone local paths under these"
        );
    }
    state.local_repos = Arc::new(local_repos);
    if let Some(gh) = &cfg.github {
        state.github_api = gh.api_url.clone();
    }
    let forge = cfg.github_forge()?;
    let public_url = cfg
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.server.listen));
    let mut observer: Option<Arc<dyn errand_runner::RunObserver>> = None;
    if let Some(int) = cfg.integrations(forge.clone(), &public_url) {
        let int = Arc::new(int);
        observer = Some(errand_server::integrations::Notifier::start(
            int.clone(),
            store.clone(),
        ));
        state.integrations = Some(int);
    }
    let chosen = crate::sandbox::choose(&cfg, paths, None)?;
    crate::sandbox::clean_up(store.as_ref(), &chosen).await;
    let runner = Arc::new(Runner {
        store: store.clone(),
        sandbox: chosen.sandbox,
        github: forge,
        public_url: Some(public_url),
        observer,
        paths: paths.clone(),
        env: cfg.harness_env(),
        cwd: std::env::current_dir()?,
        limits: Limits {
            memory_bytes: Some(4 << 30),
            max_pids: Some(4096),
            cpus: crate::sandbox::cpus(&cfg),
        },
        harnesses: registry,
        cancel_poll: Duration::from_millis(300),
        egress: cfg.egress(api),
        kubernetes_git_proxy_listen: cfg.sandbox.kubernetes_git_proxy_listen.clone(),
        kubernetes_git_proxy_url: cfg.sandbox.kubernetes_git_proxy_url.clone(),
    });
    let host =
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into());
    let worker_id = id
        .or(cfg.server.worker_id.clone())
        .unwrap_or_else(|| format!("{}:{}", host.trim(), paths.home.display()));
    let nonzero = |n: u32| (n > 0).then_some(n);
    let pool = WorkerPool {
        store,
        runner,
        config: WorkerConfig {
            id: worker_id,
            slots: workers.unwrap_or(cfg.server.workers).max(1) as usize,
            lease: Duration::from_secs(cfg.queue.lease_secs),
            limits: QueueLimits {
                global: nonzero(cfg.queue.global_limit),
                per_repo: nonzero(cfg.queue.per_repo_limit),
            },
            poll: Duration::from_millis(200),
        },
        metrics: state.metrics.clone(),
    };
    Ok(Parts { state, pool })
}

pub async fn serve(
    paths: &Paths,
    listen: Option<std::net::SocketAddr>,
    workers: Option<u32>,
    database_url: Option<&str>,
    with_workers: bool,
) -> Result<std::process::ExitCode> {
    let addr = match listen {
        Some(a) => a,
        None => {
            let listen = config::load(paths)?.server.listen;
            listen
                .parse()
                .with_context(|| format!("server.listen '{listen}' is not an address"))?
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let parts = build(paths, workers, database_url, None, &[bound]).await?;
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone());
    let pool = with_workers.then(|| tokio::spawn(parts.pool.run(shutdown.clone())));
    // Scripts and tests read the address from this line.
    eprintln!("errand serve: listening on http://{bound}");
    axum::serve(listener, app(parts.state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("the HTTP server failed")?;
    if let Some(p) = pool {
        let _ = p.await;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

pub async fn worker(
    paths: &Paths,
    workers: Option<u32>,
    database_url: Option<&str>,
    id: Option<String>,
) -> Result<std::process::ExitCode> {
    let parts = build(paths, workers, database_url, id, &[]).await?;
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone());
    eprintln!("errand worker {}: waiting for runs", parts.pool.config.id);
    parts.pool.run(shutdown).await;
    Ok(std::process::ExitCode::SUCCESS)
}

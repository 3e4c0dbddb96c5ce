//! `errand serve` and `errand worker`: the long-running processes.

use anyhow::{Context, Result};
use errand_runner::Paths;
use errand_server::app;

use crate::config;
use crate::setup::{self, ServiceOptions};
use crate::signal;

/// `errand serve`: the API, and with `with_workers` a worker pool.
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
    let service = setup::service(
        paths,
        ServiceOptions {
            workers,
            database_url,
            id: None,
            api: &[bound],
        },
    )
    .await?;
    let shutdown = signal::shutdown_token();
    let _gc = super::gc::schedule(paths, service.pool.store.clone(), shutdown.clone())?;
    let pool = with_workers.then(|| tokio::spawn(service.pool.run(shutdown.clone())));
    // Scripts and tests read the address from this line.
    eprintln!("errand serve: listening on http://{bound}");
    tracing::info!(address = %bound, "listening");
    axum::serve(listener, app(service.state).into_make_service())
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("the HTTP server failed")?;
    if let Some(p) = pool {
        let _ = p.await;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `errand worker`: a worker pool alone.
pub async fn worker(
    paths: &Paths,
    workers: Option<u32>,
    database_url: Option<&str>,
    id: Option<String>,
) -> Result<std::process::ExitCode> {
    let service = setup::service(
        paths,
        ServiceOptions {
            workers,
            database_url,
            id,
            api: &[],
        },
    )
    .await?;
    let shutdown = signal::shutdown_token();
    let _gc = super::gc::schedule(paths, service.pool.store.clone(), shutdown.clone())?;
    eprintln!("errand worker {}: waiting for runs", service.pool.config.id);
    service.pool.run(shutdown).await;
    Ok(std::process::ExitCode::SUCCESS)
}

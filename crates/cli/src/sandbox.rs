//! Which sandbox backend runs the agents (`--sandbox`, `[sandbox]`), clean-up of
//! containers and pods a dead errand left behind, and `errand sandbox prepare`.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{bail, Result};
use clap::{Subcommand, ValueEnum};
use errand_core::RunState;
use errand_modal::ModalSandbox;
use errand_runner::Paths;
use errand_sandbox::{DockerSandbox, KubernetesSandbox, LocalSandbox, Sandbox};
use errand_store::{RunFilter, Store};

use crate::config::Config;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// bubblewrap on this machine (namespaces, cgroup limits; network per sandbox.egress).
    Local,
    /// One container per process through the Docker Engine API (Docker or Podman).
    Docker,
    /// One pod per process through the Kubernetes API (kubeconfig or in-cluster).
    Kubernetes,
    /// One Modal Sandbox per run through Modal's gRPC API (MODAL_TOKEN_ID/_SECRET or ~/.modal.toml).
    Modal,
}

#[derive(Subcommand)]
pub enum SandboxCmd {
    /// Get a backend ready: for docker, check the engine and build the agent image if it is missing;
    /// for kubernetes, check that the API is reachable and the namespace and runs claim exist;
    /// for modal, check the token, the app and the image (built if missing, or with --rebuild).
    Prepare {
        backend: Backend,
        /// Build the image again even if it exists (the cached Debian base is reused).
        #[arg(long)]
        rebuild: bool,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// The backend a process uses; `docker` is set when it is the Docker one.
pub struct Chosen {
    pub sandbox: Arc<dyn Sandbox>,
    pub docker: Option<Arc<DockerSandbox>>,
    pub kubernetes: Option<Arc<KubernetesSandbox>>,
    pub modal: Option<Arc<ModalSandbox>>,
}

/// `--sandbox` wins over `sandbox.backend`.
/// The name `sandbox.backend` and `sandbox.choices` give `b`.
pub fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Local => "local",
        Backend::Docker => "docker",
        Backend::Kubernetes => "kubernetes",
        Backend::Modal => "modal",
    }
}

pub fn choose(cfg: &Config, paths: &Paths, flag: Option<Backend>) -> Result<Chosen> {
    let backend = match flag {
        Some(b) => b,
        None => match cfg.sandbox.backend.as_str() {
            "local" => Backend::Local,
            "docker" => Backend::Docker,
            "kubernetes" => Backend::Kubernetes,
            "modal" => Backend::Modal,
            other => bail!("sandbox.backend '{other}' is not local, docker, kubernetes or modal"),
        },
    };
    Ok(match backend {
        Backend::Local => Chosen {
            sandbox: Arc::new(LocalSandbox::new()),
            docker: None,
            kubernetes: None,
            modal: None,
        },
        Backend::Docker => {
            let config = cfg.docker_config(Some(paths));
            let problems = config.problems();
            if !problems.is_empty() {
                bail!("{}", problems.join("; "));
            }
            let docker = Arc::new(DockerSandbox::new(config));
            Chosen {
                sandbox: docker.clone(),
                docker: Some(docker),
                kubernetes: None,
                modal: None,
            }
        }
        Backend::Kubernetes => {
            let config = cfg.kubernetes_config(Some(paths));
            let problems = config.problems();
            if !problems.is_empty() {
                bail!("{}", problems.join("; "));
            }
            let kubernetes = Arc::new(KubernetesSandbox::new(config));
            Chosen {
                sandbox: kubernetes.clone(),
                docker: None,
                kubernetes: Some(kubernetes),
                modal: None,
            }
        }
        Backend::Modal => {
            let config = cfg.modal_config(Some(paths));
            let problems = config.problems();
            if !problems.is_empty() {
                bail!("{}", problems.join("; "));
            }
            let modal = Arc::new(ModalSandbox::new(config));
            Chosen {
                sandbox: modal.clone(),
                docker: None,
                kubernetes: None,
                modal: Some(modal),
            }
        }
    })
}

/// `sandbox.cpus` as a limit.
pub fn cpus(cfg: &Config) -> Option<f64> {
    (cfg.sandbox.cpus > 0.0).then_some(cfg.sandbox.cpus)
}

/// With the docker or kubernetes backend: ends runs whose errand died (as `errand ls`
/// does) and removes the containers or pods of every run that is not live any more.
pub async fn clean_up(store: &dyn Store, chosen: &Chosen) {
    if chosen.docker.is_none() && chosen.kubernetes.is_none() && chosen.modal.is_none() {
        return;
    }
    if let Err(e) = errand_runner::reap_orphans(store).await {
        tracing::warn!("finding runs of dead errand processes failed: {e}");
        return;
    }
    let mut live = Vec::new();
    for state in [
        RunState::Queued,
        RunState::Preparing,
        RunState::Running,
        RunState::Finishing,
    ] {
        match store
            .list_runs(&RunFilter {
                state: Some(state),
                limit: u32::MAX,
                ..Default::default()
            })
            .await
        {
            Ok(runs) => live.extend(runs.into_iter().map(|r| r.id.short())),
            // Without the list, every container would look orphaned: remove none.
            Err(e) => {
                tracing::warn!("listing live runs failed, leaving containers alone: {e}");
                return;
            }
        }
    }
    if let Some(kubernetes) = &chosen.kubernetes {
        match kubernetes.cleanup_orphans(&live).await {
            Ok(removed) if !removed.is_empty() => tracing::warn!(
                "removed {} pod(s) left by runs that are over: {}",
                removed.len(),
                removed.join(", ")
            ),
            Ok(_) => {}
            // The run itself reports an unreachable cluster, with how to fix it.
            Err(e) => tracing::debug!("pod clean-up skipped: {e}"),
        }
    }
    if let Some(modal) = &chosen.modal {
        match modal.cleanup_orphans(&live).await {
            Ok(removed) if !removed.is_empty() => tracing::warn!(
                "terminated {} Modal sandbox(es) left by runs that are over: {}",
                removed.len(),
                removed.join(", ")
            ),
            Ok(_) => {}
            // The run itself reports unusable credentials, with how to fix them.
            Err(e) => tracing::debug!("Modal sandbox clean-up skipped: {e}"),
        }
    }
    let Some(docker) = &chosen.docker else {
        return;
    };
    match docker.cleanup_orphans(&live).await {
        Ok(removed) if !removed.is_empty() => {
            tracing::warn!(
                "removed {} container(s) left by runs that are over: {}",
                removed.len(),
                removed.join(", ")
            )
        }
        Ok(_) => {}
        // The run itself reports an unreachable engine, with how to fix it.
        Err(e) => tracing::debug!("container clean-up skipped: {e}"),
    }
}

/// `errand sandbox …`
pub async fn run(paths: &Paths, cfg: &Config, cmd: SandboxCmd) -> Result<std::process::ExitCode> {
    let SandboxCmd::Prepare {
        backend,
        rebuild,
        json,
    } = cmd;
    let tty = std::io::stderr().is_terminal();
    match backend {
        Backend::Local => {
            LocalSandbox::new().check().await?;
            if json {
                println!("{}", serde_json::json!({"backend": "local", "ready": true}));
            } else {
                println!("local sandbox: ready (bubblewrap works here)");
            }
        }
        Backend::Docker => {
            let docker = DockerSandbox::new(cfg.docker_config(Some(paths)));
            let show = !json || tty;
            let progress = move |line: &str| {
                if show {
                    eprintln!("{line}");
                }
            };
            let report = docker
                .prepare_image(&paths.cache.join("docker"), rebuild, &progress)
                .await?;
            docker.check().await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "docker sandbox: ready ({} {}{}, {})",
                    report.image,
                    short_id(&report.id),
                    report
                        .size_bytes
                        .map(|s| format!(", {} MiB", s >> 20))
                        .unwrap_or_default(),
                    if report.built {
                        "built now"
                    } else {
                        "already there"
                    }
                );
            }
        }
        Backend::Kubernetes => {
            let config = cfg.kubernetes_config(Some(paths));
            let problems = config.problems();
            if !problems.is_empty() {
                bail!("{}", problems.join("; "));
            }
            let kubernetes = KubernetesSandbox::new(config.clone());
            kubernetes.check().await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "backend": "kubernetes",
                        "ready": true,
                        "namespace": config.namespace,
                        "claim": config.runs_claim,
                        "runs_root": config.runs_root,
                        "image": config.image,
                    })
                );
            } else {
                println!(
                    "kubernetes sandbox: ready (namespace {}, claim {} at {}, image {}; \
                     the image is pulled by the cluster, not checked here)",
                    config.namespace,
                    config.runs_claim,
                    config.runs_root.display(),
                    config.image
                );
            }
        }
        Backend::Modal => {
            // Not missing (runs work without it), but a key would enter the Sandbox.
            let warnings: Vec<String> = (cfg.gateway.enabled && cfg.gateway.modal_url.is_none())
                .then(|| {
                    "gateway.modal_url is not set: harnesses in Modal Sandboxes cannot reach errand's \
                     model gateway and get the provider key itself (set gateway.modal_listen and \
                     gateway.modal_url; README, Modal)"
                        .to_string()
                })
                .into_iter()
                .collect();
            return prepare_modal(cfg.modal_config(Some(paths)), &warnings, rebuild, json).await;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `errand sandbox prepare modal`: every check runs, and what is missing is
/// printed as one list (non-zero exit when anything is).
async fn prepare_modal(
    config: errand_modal::ModalConfig,
    warnings: &[String],
    rebuild: bool,
    json: bool,
) -> Result<std::process::ExitCode> {
    let show = !json || std::io::stderr().is_terminal();
    let say = move |line: &str| {
        if show {
            eprintln!("{line}");
        }
    };
    let mut missing = config.problems();
    let profile = errand_modal::Profile::from_env();
    let (mut app_id, mut image_id) = (None, None);
    match &profile {
        Err(e) => missing.push(e.to_string()),
        Ok(p) => missing.extend(p.missing()),
    }
    if missing.is_empty() {
        let modal = ModalSandbox::with_profile(config.clone(), profile.map_err(|e| e.to_string()));
        say("modal: checking the token…");
        match modal.check().await {
            Err(e) => missing.push(e.to_string()),
            Ok(()) => {
                say(&format!("modal: the app {}…", config.app));
                match modal.app_id().await {
                    Err(e) => missing.push(format!("the Modal app {}: {e}", config.app)),
                    Ok(id) => {
                        app_id = Some(id);
                        say(&format!(
                            "modal: the image ({}){}…",
                            config.image_commands().join("; "),
                            if rebuild { ", building it again" } else { "" }
                        ));
                        let progress = |l: &str| say(&format!("  {l}"));
                        match modal.image_id(rebuild, &progress).await {
                            Ok(id) => image_id = Some(id),
                            Err(e) => missing.push(format!("the agent image: {e}")),
                        }
                    }
                }
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "backend": "modal",
                "ready": missing.is_empty(),
                "app": config.app,
                "app_id": app_id,
                "image": config.image_commands(),
                "image_id": image_id,
                "missing": missing,
                "warnings": warnings,
            })
        );
    } else if missing.is_empty() {
        println!(
            "modal sandbox: ready (app {} {}, image {})",
            config.app,
            app_id.unwrap_or_default(),
            image_id.unwrap_or_default()
        );
    } else {
        println!("modal sandbox: not ready; missing:");
        for m in &missing {
            println!("  - {m}");
        }
    }
    if !json {
        for w in warnings {
            println!("warning: {w}");
        }
    }
    Ok(if missing.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// `errand sandbox bridge --socket PATH [--forward HOST:PORT]… -- PROGRAM [ARG]…`:
/// run inside an isolated sandbox in front of the harness (see
/// [`errand_sandbox::egress`]); exits as the program does.
pub fn bridge(args: &[String]) -> std::process::ExitCode {
    let opts = match errand_sandbox::egress::BridgeOptions::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("errand sandbox bridge: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("errand sandbox bridge: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(errand_sandbox::egress::bridge(opts)) {
        Ok(status) => errand_sandbox::egress::exit_like(status),
        Err(e) => {
            eprintln!("errand sandbox bridge: {e}");
            std::process::ExitCode::from(127)
        }
    }
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.get(..12).unwrap_or(id)
}

//! The Docker backend: one container per sandboxed process, through the Docker
//! Engine API (Podman's compatible socket works too).
//!
//! Each [`Sandbox::spawn`] creates a container from the agent image
//! (`errand-agent:<version>` unless configured), labelled `errand.managed=true`,
//! `errand.run=<spec.name>` and `errand.scope=<errand's data directory>`, with
//! the run's workspace, HOME and /tmp bound read-write, every other mount
//! read-only, and exactly the spec's environment (Docker itself adds
//! `HOSTNAME`, and `PATH`/`HOME` when the spec has none). The container runs as a
//! fixed non-root user ([`AGENT_UID`], or errand's own uid when errand is not
//! root) with every capability dropped, `no-new-privileges`, Docker's default
//! seccomp profile, a read-only root filesystem, a tiny init as PID 1, memory
//! (swap included), PID and CPU limits, and no log kept by the engine (errand
//! reads the output through an attach stream). Killing the container kills
//! every process in it; errand removes each container itself after reading
//! its exit status (including `OOMKilled`), so nothing is left behind.
//!
//! The network: with [`NetworkPolicy::Isolated`], `none`, and the egress
//! proxy's socket and the bridge bound in ([`crate::egress`]): the agent
//! reaches only the allowlist, through errand, model endpoints on the host's
//! loopback included. With [`NetworkPolicy::Open`] the configured one: `bridge`
//! (default: the agent can reach its model API, and also anything else the
//! host can reach, cloud metadata included, unless the host's firewall blocks
//! it), `none`, `host` (shares the host's network, as the local backend does),
//! or the name of a user-defined network.
//!
//! Ownership: when errand runs as root, the run's HOME and /tmp and everything
//! inside the workspace are given to [`AGENT_UID`] before the container starts;
//! the workspace's top directory and its `.git` stay errand's (made writable for
//! the agent's group), and the image's `/etc/gitconfig` trusts it inside. The
//! walk goes by directory handles and never follows or descends into a link
//! the agent planted (`openat(O_NOFOLLOW)`, `fchownat(AT_SYMLINK_NOFOLLOW)`).
//!
//! Host files: the passwd and group files are generated in errand's private
//! runtime directory ([`crate::socket::runtime_dir`]; `O_EXCL | O_NOFOLLOW`)
//! and bound read-only, never written into the sandbox's /tmp. errand's
//! sockets mounted into the container (the egress proxy's, the git credential
//! server's) are given to the container's uid: mode 0600, owned by it, and
//! the only peer uid the service accepts (`SO_PEERCRED`). The environment
//! goes to the engine in the container's configuration, never on a command
//! line.

mod image;
mod owner;
mod process;

pub use image::PrepareReport;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountType,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use bollard::Docker;

use crate::socket::PrivateFile;
use crate::{
    egress, paths, CommandLine, NetworkPolicy, Sandbox, SandboxError, SandboxProcess, SandboxSpec,
};
use owner::{agent_ids, give_socket, give_tree, id_files};
use process::DockerProcess;

/// How long one request to the engine may take before it counts as unreachable.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The uid and gid the agent runs as when errand runs as root.
pub const AGENT_UID: u32 = 10001;

/// The agent image errand uses by default: `errand-agent:<errand's version>`.
pub fn default_image() -> String {
    format!("errand-agent:{}", env!("CARGO_PKG_VERSION"))
}

/// How containers are made.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The agent image.
    pub image: String,
    /// `bridge`, `none`, `host`, or a user-defined network's name.
    pub network: String,
    /// Marks the containers of one errand installation (its data directory),
    /// so orphan clean-up never touches another installation's containers.
    pub scope: String,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            image: default_image(),
            network: "bridge".into(),
            scope: "default".into(),
        }
    }
}

impl DockerConfig {
    /// Problems with the configuration, each as a sentence.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.image.trim().is_empty() {
            out.push("sandbox.docker_image is empty".to_string());
        }
        let n = &self.network;
        if n.is_empty()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            out.push(format!(
                "sandbox.docker_network '{n}' is not bridge, none, host or a network name"
            ));
        }
        out
    }
}

/// The Docker backend: one container per sandboxed process (see the module).
pub struct DockerSandbox {
    config: DockerConfig,
    client: tokio::sync::OnceCell<Docker>,
}

fn unreachable(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Unavailable(format!(
        "the Docker engine is not reachable ({e}): start it (`sudo systemctl start docker`, \
         or `sudo dockerd &` where there is no systemd), or point DOCKER_HOST at it \
         (Podman: `systemctl --user start podman.socket` and \
         DOCKER_HOST=unix://$XDG_RUNTIME_DIR/podman/podman.sock)"
    ))
}

fn api_error(what: &str, e: bollard::errors::Error) -> SandboxError {
    SandboxError::Setup(format!("{what}: {e}"))
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl DockerSandbox {
    /// Nothing is contacted until the first use.
    pub fn new(config: DockerConfig) -> Self {
        DockerSandbox {
            config,
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// The engine, connected the way the docker CLI does: `DOCKER_HOST`, else the
    /// default Docker socket, else Podman's sockets; API version negotiated.
    async fn client(&self) -> Result<&Docker, SandboxError> {
        self.client
            .get_or_try_init(|| async {
                let docker = if std::env::var_os("DOCKER_HOST").is_some()
                    || Path::new("/var/run/docker.sock").exists()
                {
                    Docker::connect_with_defaults()
                } else {
                    Docker::connect_with_podman_defaults()
                }
                .map_err(unreachable)?
                // bollard's 2 minutes per request is too short for a busy
                // host: a container's create or start waited out behind
                // builds is not a dead engine.
                .with_timeout(REQUEST_TIMEOUT);
                docker.negotiate_version().await.map_err(unreachable)
            })
            .await
    }

    /// The engine's name and version ("Docker Engine 20.10.24").
    pub async fn engine(&self) -> Result<String, SandboxError> {
        let docker = self.client().await?;
        let v = docker.version().await.map_err(unreachable)?;
        let name = v
            .components
            .as_ref()
            .and_then(|c| c.first())
            .map(|c| c.name.clone())
            .filter(|n| n != "Engine")
            .unwrap_or_else(|| "Docker Engine".into());
        Ok(format!("{name} {}", v.version.unwrap_or_default()))
    }

    /// Whether the agent image is in the engine.
    pub async fn image_exists(&self) -> Result<bool, SandboxError> {
        let docker = self.client().await?;
        match docker.inspect_image(&self.config.image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(api_error("inspecting the agent image failed", e)),
        }
    }

    /// Removes every container of this installation (`errand.scope`) whose run
    /// is not in `live`: what a killed errand left behind. Returns their names.
    pub async fn cleanup_orphans(&self, live: &[String]) -> Result<Vec<String>, SandboxError> {
        let docker = self.client().await?;
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                "errand.managed=true".to_string(),
                format!("errand.scope={}", self.config.scope),
            ],
        )]);
        let list = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| api_error("listing errand's containers failed", e))?;
        let mut removed = Vec::new();
        for c in list {
            let run = c
                .labels
                .as_ref()
                .and_then(|l| l.get("errand.run"))
                .cloned()
                .unwrap_or_default();
            if live.contains(&run) {
                continue;
            }
            let Some(id) = c.id else { continue };
            let name = c
                .names
                .and_then(|n| n.first().cloned())
                .unwrap_or_else(|| id.clone());
            match docker
                .remove_container(
                    &id,
                    Some(RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    }),
                )
                .await
            {
                Ok(()) => removed.push(name.trim_start_matches('/').to_string()),
                Err(e) if is_not_found(&e) => {}
                Err(e) => tracing::warn!("removing orphaned container {name} failed: {e}"),
            }
        }
        Ok(removed)
    }
}

/// Host paths must be absolute for the engine.
fn absolute(p: &Path) -> Result<String, SandboxError> {
    std::fs::canonicalize(p)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| SandboxError::Setup(format!("cannot resolve {}: {e}", p.display())))
}

fn bind(source: String, target: &str, read_only: bool) -> Mount {
    Mount {
        target: Some(target.to_string()),
        source: Some(source),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        bind_options: Some(MountBindOptions {
            propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Variables that point at this machine's loopback, which a container on its own network cannot reach.
fn loopback_urls(env: &[(String, String)]) -> Vec<String> {
    env.iter()
        .filter(|(_, v)| {
            ["://127.", "://localhost", "://[::1]"]
                .iter()
                .any(|l| v.contains(l))
        })
        .map(|(k, _)| k.clone())
        .collect()
}

static SEQ: AtomicU64 = AtomicU64::new(0);

#[async_trait]
impl Sandbox for DockerSandbox {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn isolates_network(&self) -> bool {
        true
    }

    async fn check(&self) -> Result<(), SandboxError> {
        let docker = self.client().await?;
        docker.ping().await.map_err(unreachable)?;
        if self.image_exists().await? {
            Ok(())
        } else {
            Err(SandboxError::Unavailable(format!(
                "the agent image {} is not in the Docker engine: run `errand sandbox prepare docker`",
                self.config.image
            )))
        }
    }

    async fn spawn(
        &self,
        spec: &SandboxSpec,
        cmd: &CommandLine,
    ) -> Result<SandboxProcess, SandboxError> {
        spec.plain_workspace("docker")?;
        let cmd = &spec.entered(cmd);
        let docker = self.client().await?.clone();
        let (uid, gid, files) = prepare_dirs(spec).await?;
        let mut mounts = mounts(spec, &files, uid)?;

        let mut notices = Vec::new();
        let (proxy, network, wrapped) = match &spec.network {
            NetworkPolicy::Open => (None, self.config.network.as_str(), None),
            NetworkPolicy::Isolated(e) => {
                let proxy = egress::start_for(spec, e)?;
                give_socket(proxy.path(), uid)?;
                mounts.push(bind(absolute(&e.bridge.exe)?, egress::BRIDGE, true));
                mounts.push(bind(absolute(proxy.path())?, egress::SOCKET, false));
                (Some(proxy), "none", Some(egress::wrap(cmd, e)))
            }
        };
        let cmd = wrapped.as_ref().unwrap_or(cmd);
        notices.extend(network_notice(network, proxy.is_some(), &spec.env));

        let name = container_name(&spec.name);
        let body = self.container(spec, cmd, mounts, network, (uid, gid));
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    SandboxError::Unavailable(format!(
                        "the agent image {} is not in the Docker engine: run `errand sandbox prepare docker` ({e})",
                        self.config.image
                    ))
                } else {
                    api_error("creating the container failed", e)
                }
            })?;
        let process = DockerProcess::start(docker, created.id, files).await?;
        Ok(SandboxProcess::new(notices, Box::new(process)).with_egress(proxy))
    }
}

impl DockerSandbox {
    /// The container that runs `cmd` for `spec` as `uid:gid`: its mounts,
    /// limits, network, labels and exactly the spec's environment.
    fn container(
        &self,
        spec: &SandboxSpec,
        cmd: &CommandLine,
        mounts: Vec<Mount>,
        network: &str,
        (uid, gid): (u32, u32),
    ) -> ContainerCreateBody {
        let labels = HashMap::from([
            ("errand.managed".to_string(), "true".to_string()),
            ("errand.run".to_string(), spec.name.clone()),
            ("errand.scope".to_string(), self.config.scope.clone()),
        ]);
        let limits = &spec.limits;
        let host_config = HostConfig {
            mounts: Some(mounts),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            readonly_rootfs: Some(true),
            memory: limits.memory_bytes.and_then(|m| i64::try_from(m).ok()),
            memory_swap: limits.memory_bytes.and_then(|m| i64::try_from(m).ok()),
            pids_limit: limits.max_pids.and_then(|p| i64::try_from(p).ok()),
            nano_cpus: limits.cpus.map(|c| (c * 1e9) as i64),
            network_mode: Some(network.to_string()),
            init: Some(true),
            auto_remove: Some(false),
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".into()),
                config: None,
            }),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(self.config.image.clone()),
            entrypoint: Some(vec![cmd.program.clone()]),
            cmd: Some(cmd.args.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: Some(cmd.cwd.clone().unwrap_or_else(|| paths::WORKSPACE.into())),
            user: Some(format!("{uid}:{gid}")),
            hostname: (network != "host").then(|| "errand-sandbox".to_string()),
            labels: Some(labels),
            attach_stdin: Some(false),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(false),
            tty: Some(false),
            host_config: Some(host_config),
            ..Default::default()
        }
    }
}

/// Creates the run's directories and, when errand is root, gives them to the
/// agent; the agent's uid, gid and passwd and group files.
async fn prepare_dirs(spec: &SandboxSpec) -> Result<(u32, u32, [PrivateFile; 2]), SandboxError> {
    for dir in [&spec.workspace, &spec.home, &spec.tmp] {
        std::fs::create_dir_all(dir)
            .map_err(|e| SandboxError::Setup(format!("cannot create {}: {e}", dir.display())))?;
    }
    let (uid, gid) = agent_ids();
    // Who the agent is, for tools that look the user up: generated in
    // errand's private runtime directory, never in the sandbox's /tmp
    // (where the agent could plant a link for errand to write through).
    let files = id_files(uid, gid)?;
    // SAFETY: plain system call.
    if unsafe { libc::geteuid() } == 0 {
        let dirs = [
            (spec.workspace.clone(), true),
            (spec.home.clone(), false),
            (spec.tmp.clone(), false),
        ];
        tokio::task::spawn_blocking(move || {
            for (d, keep_top) in &dirs {
                give_tree(d, uid, gid, *keep_top).map_err(|e| {
                    SandboxError::Setup(format!(
                        "cannot give {} to the agent's uid {uid}: {e}",
                        d.display()
                    ))
                })?;
            }
            Ok::<(), SandboxError>(())
        })
        .await
        .map_err(|e| SandboxError::Setup(format!("preparing the directories failed: {e}")))??;
    }
    Ok((uid, gid, files))
}

/// The run's directories, the passwd and group `files` and the spec's
/// read-only mounts, as binds; errand's sockets among them given to `uid`.
fn mounts(
    spec: &SandboxSpec,
    files: &[PrivateFile; 2],
    uid: u32,
) -> Result<Vec<Mount>, SandboxError> {
    let mut mounts = vec![
        bind(absolute(&spec.workspace)?, paths::WORKSPACE, false),
        bind(absolute(&spec.home)?, paths::HOME, false),
        bind(absolute(&spec.tmp)?, "/tmp", false),
        bind(absolute(files[0].path())?, "/etc/passwd", true),
        bind(absolute(files[1].path())?, "/etc/group", true),
    ];
    for (host, inside) in &spec.ro_mounts {
        // A socket of errand's (the git credential server) is for the
        // container's user alone.
        if crate::socket::is_ours(host) {
            give_socket(host, uid)?;
        }
        mounts.push(bind(absolute(host)?, &inside.to_string_lossy(), true));
    }
    Ok(mounts)
}

/// What the process will not reach on `network`: nothing at all (`none`
/// without the egress proxy), or this machine's loopback that `env` points at.
fn network_notice(network: &str, proxied: bool, env: &[(String, String)]) -> Option<String> {
    match network {
        "host" => None,
        "none" if proxied => None,
        "none" => {
            Some("the docker sandbox has no network (sandbox.docker_network = \"none\")".into())
        }
        _ => {
            let vars = loopback_urls(env);
            (!vars.is_empty()).then(|| {
                format!(
                    "{} point(s) at this machine's loopback, which a container on the '{network}' \
                     network cannot reach: set sandbox.egress = \"allowlist\" (errand's egress proxy \
                     reaches it), sandbox.docker_network = \"host\", or use an address the container \
                     can reach",
                    vars.join(", ")
                )
            })
        }
    }
}

/// A container name of errand's for run `run`, unique on this machine.
fn container_name(run: &str) -> String {
    let safe_name: String = run
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "errand-{safe_name}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints_are_found() {
        let env = vec![
            (
                "ANTHROPIC_BASE_URL".to_string(),
                "http://127.0.0.1:8087".to_string(),
            ),
            (
                "OPENAI_BASE_URL".to_string(),
                "https://api.openai.com".to_string(),
            ),
            ("X".to_string(), "http://localhost:1".to_string()),
        ];
        assert_eq!(loopback_urls(&env), ["ANTHROPIC_BASE_URL", "X"]);
    }

    #[test]
    fn network_names_are_checked() {
        let mut c = DockerConfig::default();
        assert!(c.problems().is_empty());
        c.network = "bridge; rm".into();
        assert_eq!(c.problems().len(), 1);
    }
}

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

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountType,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, KillContainerOptions,
    ListContainersOptions, RemoveContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::socket::PrivateFile;
use crate::{
    egress, paths, CommandLine, ExitInfo, NetworkPolicy, OutputStream, ProcessHandle, Sandbox,
    SandboxError, SandboxProcess, SandboxSpec,
};

/// The uid and gid the agent runs as when errand runs as root.
pub const AGENT_UID: u32 = 10001;

/// The script that builds the image's root filesystem without a registry.
const BUILD_LOCAL_SH: &str = include_str!("../../../docker/build-local.sh");

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

pub struct DockerSandbox {
    config: DockerConfig,
    client: tokio::sync::OnceCell<Docker>,
}

/// What `errand sandbox prepare docker` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PrepareReport {
    pub image: String,
    /// The image's id in the engine.
    pub id: String,
    /// Whether it was built now (false: it was there already).
    pub built: bool,
    pub size_bytes: Option<i64>,
    /// The engine's name and version.
    pub engine: String,
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
                .map_err(unreachable)?;
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

    /// Builds the agent image if it is missing (or `rebuild`): a Debian root
    /// filesystem from the host's mirror (cached under `cache_dir`) with the
    /// host's Node.js, imported into the engine. `progress` gets one line per step.
    pub async fn prepare_image(
        &self,
        cache_dir: &Path,
        rebuild: bool,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<PrepareReport, SandboxError> {
        let engine = self.engine().await?;
        let docker = self.client().await?;
        progress(&format!("engine: {engine}"));
        let image = self.config.image.clone();
        if !rebuild {
            if let Ok(info) = docker.inspect_image(&image).await {
                progress(&format!("{image} is already there"));
                return Ok(PrepareReport {
                    image,
                    id: info.id.unwrap_or_default(),
                    built: false,
                    size_bytes: info.size,
                    engine,
                });
            }
        }
        let (repo, tag) = match image.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
            _ => (image.clone(), "latest".to_string()),
        };
        std::fs::create_dir_all(cache_dir).map_err(|e| {
            SandboxError::Setup(format!("cannot create {}: {e}", cache_dir.display()))
        })?;
        // One build at a time per cache (tests and several errand processes may race).
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(cache_dir.join(".lock"))
            .map_err(|e| {
                SandboxError::Setup(format!("cannot lock {}: {e}", cache_dir.display()))
            })?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&lock);
        // SAFETY: `lock` outlives the call; flock only blocks on the descriptor.
        let _ =
            tokio::task::spawn_blocking(move || unsafe { libc::flock(fd, libc::LOCK_EX) }).await;
        if !rebuild {
            if let Ok(info) = docker.inspect_image(&image).await {
                progress(&format!("{image} was built meanwhile"));
                return Ok(PrepareReport {
                    image,
                    id: info.id.unwrap_or_default(),
                    built: false,
                    size_bytes: info.size,
                    engine,
                });
            }
        }
        let script = cache_dir.join("build-local.sh");
        std::fs::write(&script, BUILD_LOCAL_SH)
            .map_err(|e| SandboxError::Setup(format!("cannot write {}: {e}", script.display())))?;
        let rootfs = cache_dir.join("errand-agent-rootfs.tar");
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg(&script)
            .arg("--cache")
            .arg(cache_dir)
            .arg("--out")
            .arg(&rootfs)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if let Ok(exe) = std::env::current_exe() {
            cmd.arg("--check-bin").arg(exe);
        }
        let mut child = cmd.spawn().map_err(SandboxError::Spawn)?;
        let mut lines = Vec::new();
        if let Some(err) = child.stderr.take() {
            let mut reader = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(err));
            while let Ok(Some(line)) = reader.next_line().await {
                progress(&line);
                lines.push(line);
                if lines.len() > 20 {
                    lines.remove(0);
                }
            }
        }
        let status = child.wait().await.map_err(SandboxError::Spawn)?;
        if !status.success() {
            return Err(SandboxError::Setup(format!(
                "building the image's root filesystem failed ({status}): {}",
                lines.join(" | ")
            )));
        }
        progress(&format!("importing {image} into the engine"));
        let previous = docker.inspect_image(&image).await.ok().and_then(|i| i.id);
        let file = tokio::fs::File::open(&rootfs)
            .await
            .map_err(|e| SandboxError::Setup(format!("cannot read {}: {e}", rootfs.display())))?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        let options = CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo),
            tag: Some(tag),
            message: Some(
                "errand agent image, built locally by `errand sandbox prepare docker`".into(),
            ),
            changes: vec![
                format!("USER {AGENT_UID}:{AGENT_UID}"),
                // No ENV: the image must add nothing to the spec's environment.
                format!("WORKDIR {}", paths::WORKSPACE),
                "CMD [\"/bin/bash\"]".into(),
            ],
            ..Default::default()
        };
        let long = docker.clone().with_timeout(Duration::from_secs(3600));
        let mut stream =
            long.create_image(Some(options), Some(bollard::body_try_stream(body)), None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(s) = info.status.filter(|s| !s.is_empty()) {
                        progress(&format!("import: {s}"));
                    }
                }
                Err(e) => {
                    return Err(api_error("importing the image failed", e));
                }
            }
        }
        let _ = std::fs::remove_file(&rootfs);
        drop(lock);
        let info = docker
            .inspect_image(&image)
            .await
            .map_err(|e| api_error("the imported image is not there", e))?;
        // A rebuild leaves the old image untagged: remove it unless a container uses it.
        if let Some(old) = previous.filter(|old| Some(old) != info.id.as_ref()) {
            let _ = docker
                .remove_image(
                    &old,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
        }
        progress(&format!("{image} is ready"));
        Ok(PrepareReport {
            image,
            id: info.id.unwrap_or_default(),
            built: true,
            size_bytes: info.size,
            engine,
        })
    }
}

/// The uid:gid the agent runs as: [`AGENT_UID`] when errand is root, else errand's own.
fn agent_ids() -> (u32, u32) {
    // SAFETY: plain system calls without arguments.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        (AGENT_UID, AGENT_UID)
    } else {
        (uid, gid)
    }
}

/// Gives `dir` and everything under it to `uid:gid`, without following links.
/// With `keep_top`, `dir` itself and its `.git` keep their owner and become
/// writable for `gid` instead.
///
/// The tree is the agent's: any name in it may be a symbolic link, and may
/// become one while this runs. So it is walked by directory handles, never
/// by path: each directory is opened relative to its parent's handle with
/// `O_NOFOLLOW | O_DIRECTORY` (a link is never descended into) and changed
/// through its own handle (`fchown`, `fchmod`); everything else is changed
/// with `fchownat(AT_SYMLINK_NOFOLLOW)` (a link itself, never its target).
fn give_tree(dir: &Path, uid: u32, gid: u32, keep_top: bool) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::rc::Rc;
    let last = || std::io::Error::last_os_error();
    // Opens `name` in `parent` (or the path `name` when there is no parent) as
    // a directory, never through a link.
    let open_dir = |parent: Option<&OwnedFd>, name: &[u8]| -> std::io::Result<OwnedFd> {
        let c =
            std::ffi::CString::new(name).map_err(|_| std::io::Error::other("a NUL in a name"))?;
        let at = parent.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
        // SAFETY: a valid C string; the descriptor is owned right away.
        let fd = unsafe {
            libc::openat(
                at,
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(last());
        }
        // SAFETY: just opened, owned by nothing else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let fstat = |fd: &OwnedFd| -> std::io::Result<libc::stat> {
        // SAFETY: an all-zero stat is valid for fstat to overwrite; `fd` is open.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(last());
        }
        Ok(st)
    };
    // Changes an open directory: kept (group-writable, owner unchanged) or given.
    let change_dir = |fd: &OwnedFd, keep: bool| -> std::io::Result<()> {
        let st = fstat(fd)?;
        let raw = fd.as_raw_fd();
        // SAFETY: plain system calls on an open descriptor.
        let rc = if keep {
            let mut rc = 0;
            if st.st_gid != gid {
                rc = unsafe { libc::fchown(raw, u32::MAX, gid) };
            }
            if rc == 0 && st.st_mode & 0o070 != 0o070 {
                rc = unsafe { libc::fchmod(raw, (st.st_mode & 0o7777) | 0o070) };
            }
            rc
        } else if st.st_uid != uid || st.st_gid != gid {
            unsafe { libc::fchown(raw, uid, gid) }
        } else {
            0
        };
        if rc != 0 {
            return Err(last());
        }
        Ok(())
    };
    let top = open_dir(None, dir.as_os_str().as_bytes())?;
    change_dir(&top, keep_top)?;
    // Directories to walk, each opened only when its turn comes (so a wide
    // tree does not hold a descriptor per directory): (the parent's handle,
    // its name there, whether it is the top's `.git`), or the top itself.
    let mut stack: Vec<(Rc<OwnedFd>, Option<std::ffi::OsString>, bool)> =
        vec![(Rc::new(top), None, true)];
    while let Some((parent, name, top_git)) = stack.pop() {
        let is_top = name.is_none();
        let fd = match name {
            None => parent,
            Some(name) => {
                let child = match open_dir(Some(&parent), name.as_bytes()) {
                    Ok(c) => c,
                    // Replaced (by a link or a file) since it was listed: not
                    // followed, not changed.
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::ELOOP | libc::ENOTDIR | libc::ENOENT)
                        ) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                };
                drop(parent);
                change_dir(&child, keep_top && top_git)?;
                Rc::new(child)
            }
        };
        // The directory the handle holds, listed through /proc (no path lookup).
        let listing = std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        for entry in listing {
            let entry = entry?;
            let name = entry.file_name();
            let c = std::ffi::CString::new(name.as_bytes())
                .map_err(|_| std::io::Error::other("a NUL in a name"))?;
            // SAFETY: an all-zero stat is valid for fstatat to overwrite.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: an open directory, a valid C string and buffer.
            if unsafe {
                libc::fstatat(
                    fd.as_raw_fd(),
                    c.as_ptr(),
                    &mut st,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            } != 0
            {
                let e = last();
                if e.kind() == std::io::ErrorKind::NotFound {
                    continue;
                }
                return Err(e);
            }
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                let top_git = is_top && name == ".git";
                stack.push((fd.clone(), Some(name), top_git));
            } else if st.st_uid != uid || st.st_gid != gid {
                // SAFETY: an open directory and a valid C string; never follows a link.
                if unsafe {
                    libc::fchownat(
                        fd.as_raw_fd(),
                        c.as_ptr(),
                        uid,
                        gid,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                } != 0
                {
                    let e = last();
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(e);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The passwd and group files naming the agent, in errand's runtime directory.
fn id_files(uid: u32, gid: u32) -> Result<[PrivateFile; 2], SandboxError> {
    let passwd = format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\nagent:x:{uid}:{gid}:agent:{}:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        paths::HOME
    );
    let group = format!("root:x:0:\nagent:x:{gid}:\nnogroup:x:65534:\n");
    let make = |what: &str, text: &str| {
        PrivateFile::create(what, text.as_bytes(), 0o644)
            .map_err(|e| SandboxError::Setup(format!("cannot write the {what} file: {e}")))
    };
    Ok([make("passwd", &passwd)?, make("group", &group)?])
}

/// Makes one of errand's sockets usable by the container's uid alone (mode
/// 0600, owned by it, and the only peer uid the service accepts). When errand
/// is not root the container runs as errand's own uid, which it already is.
fn give_socket(path: &Path, uid: u32) -> Result<(), SandboxError> {
    crate::socket::give_to(path, uid).map_err(|e| SandboxError::Setup(e.to_string()))
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

/// Docker reports a process ended by signal N as status 128+N.
fn exit_info(code: i64, oom_killed: bool) -> ExitInfo {
    if (129..=128 + 31).contains(&code) {
        ExitInfo {
            code: None,
            signal: Some((code - 128) as i32),
            oom_killed,
        }
    } else {
        ExitInfo {
            code: Some(i32::try_from(code).unwrap_or(i32::MAX)),
            signal: None,
            oom_killed,
        }
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
        let cmd = &spec.entered(cmd);
        let docker = self.client().await?.clone();
        for dir in [&spec.workspace, &spec.home, &spec.tmp] {
            std::fs::create_dir_all(dir).map_err(|e| {
                SandboxError::Setup(format!("cannot create {}: {e}", dir.display()))
            })?;
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
        match network {
            "host" => {}
            "none" if proxy.is_some() => {}
            "none" => notices.push(
                "the docker sandbox has no network (sandbox.docker_network = \"none\")".into(),
            ),
            _ => {
                let vars = loopback_urls(&spec.env);
                if !vars.is_empty() {
                    notices.push(format!(
                        "{} point(s) at this machine's loopback, which a container on the '{network}' \
                         network cannot reach: set sandbox.egress = \"allowlist\" (errand's egress proxy \
                         reaches it), sandbox.docker_network = \"host\", or use an address the container \
                         can reach",
                        vars.join(", ")
                    ));
                }
            }
        }

        let labels = HashMap::from([
            ("errand.managed".to_string(), "true".to_string()),
            ("errand.run".to_string(), spec.name.clone()),
            ("errand.scope".to_string(), self.config.scope.clone()),
        ]);
        let safe_name: String = spec
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let name = format!(
            "errand-{safe_name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
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
        let body = ContainerCreateBody {
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
        };
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
        let mut process = DockerProcess {
            docker: docker.clone(),
            id: created.id,
            stdout: None,
            stderr: None,
            finished: false,
            _files: files,
        };
        // Attached before the start, so no output is lost.
        let attached = match docker
            .attach_container(
                &process.id,
                Some(AttachContainerOptions {
                    stream: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(a) => a,
            Err(e) => {
                process.remove().await;
                return Err(api_error("attaching to the container failed", e));
            }
        };
        if let Err(e) = docker.start_container(&process.id, None).await {
            process.remove().await;
            return Err(SandboxError::Spawn(std::io::Error::other(e.to_string())));
        }
        let (out_w, out_r) = tokio::io::duplex(256 << 10);
        let (err_w, err_r) = tokio::io::duplex(256 << 10);
        process.stdout = Some(Box::new(out_r));
        process.stderr = Some(Box::new(err_r));
        tokio::spawn(demux(attached.output, out_w, err_w));
        Ok(SandboxProcess::new(notices, Box::new(process)).with_egress(proxy))
    }
}

/// Copies the attach stream into the two pipes errand reads. A pipe whose
/// reader is gone is dropped; the pipes end when the container's output does.
async fn demux(
    mut output: std::pin::Pin<
        Box<
            dyn futures::Stream<
                    Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
                > + Send,
        >,
    >,
    out: tokio::io::DuplexStream,
    err: tokio::io::DuplexStream,
) {
    use bollard::container::LogOutput;
    let mut out = Some(out);
    let mut err = Some(err);
    while let Some(Ok(chunk)) = output.next().await {
        let (pipe, bytes) = match chunk {
            LogOutput::StdOut { message } | LogOutput::Console { message } => (&mut out, message),
            LogOutput::StdErr { message } => (&mut err, message),
            LogOutput::StdIn { .. } => continue,
        };
        if let Some(w) = pipe {
            if w.write_all(&bytes).await.is_err() {
                *pipe = None;
            }
        }
    }
    for w in [out, err].iter_mut().flatten() {
        let _ = w.shutdown().await;
    }
}

struct DockerProcess {
    docker: Docker,
    id: String,
    stdout: Option<OutputStream>,
    stderr: Option<OutputStream>,
    /// Removed already: nothing to do on drop.
    finished: bool,
    /// The passwd and group files bound in, removed with this.
    _files: [PrivateFile; 2],
}

impl DockerProcess {
    async fn remove(&mut self) {
        match self
            .docker
            .remove_container(
                &self.id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => tracing::warn!("removing container {} failed: {e}", self.id),
        }
        self.finished = true;
    }
}

#[async_trait]
impl ProcessHandle for DockerProcess {
    fn take_stdout(&mut self) -> Option<OutputStream> {
        self.stdout.take()
    }

    fn take_stderr(&mut self) -> Option<OutputStream> {
        self.stderr.take()
    }

    async fn wait(&mut self) -> std::io::Result<ExitInfo> {
        if self.finished {
            return Err(std::io::Error::other("the container was already removed"));
        }
        let mut waiting = self.docker.wait_container(
            &self.id,
            Some(WaitContainerOptions {
                condition: "not-running".into(),
            }),
        );
        let code = match waiting.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => {
                return Err(std::io::Error::other(format!(
                    "waiting for the container failed: {e}"
                )))
            }
            None => {
                return Err(std::io::Error::other(
                    "the engine ended the wait without an exit status",
                ))
            }
        };
        drop(waiting);
        let state = self
            .docker
            .inspect_container(&self.id, None)
            .await
            .ok()
            .and_then(|i| i.state);
        let oom = state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false);
        let code = state.and_then(|s| s.exit_code).unwrap_or(code);
        self.remove().await;
        Ok(exit_info(code, oom))
    }

    async fn kill(&mut self) {
        if self.finished {
            return;
        }
        let _ = self
            .docker
            .kill_container(&self.id, Some(KillContainerOptions::default()))
            .await;
        self.remove().await;
    }
}

impl Drop for DockerProcess {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Best effort: an errand that exits before this runs leaves the container
        // to `cleanup_orphans` at its next start.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let docker = self.docker.clone();
            let id = std::mem::take(&mut self.id);
            rt.spawn(async move {
                let _ = docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: true,
                            ..Default::default()
                        }),
                    )
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_exit_codes_above_128_are_signals() {
        assert_eq!(exit_info(0, false).to_string(), "status 0");
        assert_eq!(exit_info(3, false).to_string(), "status 3");
        let killed = exit_info(137, false);
        assert_eq!((killed.code, killed.signal), (None, Some(9)));
        assert_eq!(killed.to_string(), "signal 9");
        assert_eq!(exit_info(137, true).to_string(), "killed: out of memory");
        assert!(exit_info(0, true).success());
        assert_eq!(exit_info(200, false).code, Some(200));
    }

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

    #[test]
    fn the_workspace_top_and_git_stay_errands() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // SAFETY: plain system call.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let d = tempfile::tempdir().expect("tmp");
        let ws = d.path().join("ws");
        std::fs::create_dir_all(ws.join(".git/objects")).expect("mkdir");
        std::fs::create_dir_all(ws.join("src")).expect("mkdir");
        std::fs::write(ws.join("src/a.rs"), "x").expect("write");
        std::os::unix::fs::symlink("/etc/hostname", ws.join("link")).expect("symlink");
        // A host directory the agent links to: never descended into.
        let host = d.path().join("host");
        std::fs::create_dir_all(host.join("sub")).expect("mkdir");
        std::fs::write(host.join("secret"), "x").expect("write");
        std::os::unix::fs::symlink(&host, ws.join("src/hostdir")).expect("symlink");
        std::os::unix::fs::symlink(&host, ws.join(".git/objects/hostdir")).expect("symlink");
        // A nested `.git` is the agent's like anything else.
        std::fs::create_dir_all(ws.join("src/.git")).expect("mkdir");
        let m = |p: &Path| std::fs::symlink_metadata(p).expect("meta");
        give_tree(&ws, 4242, 4243, true).expect("give");
        for p in [&host, &host.join("sub"), &host.join("secret")] {
            assert_eq!(m(p).uid(), 0, "{} was given away", p.display());
            assert_eq!(m(p).gid(), 0, "{}", p.display());
        }
        assert_eq!(m(&ws.join("src/hostdir")).uid(), 4242);
        assert_eq!(m(&ws.join("src/.git")).uid(), 4242);
        assert_eq!(m(&ws).uid(), 0);
        assert_eq!(m(&ws).gid(), 4243);
        assert_eq!(m(&ws).permissions().mode() & 0o070, 0o070);
        assert_eq!(m(&ws.join(".git")).uid(), 0);
        assert_eq!(m(&ws.join(".git/objects")).uid(), 4242);
        assert_eq!(m(&ws.join("src/a.rs")).uid(), 4242);
        assert_eq!(m(&ws.join("link")).uid(), 4242);
        assert_eq!(std::fs::metadata("/etc/hostname").expect("meta").uid(), 0);
    }

    /// The agent swaps a directory for a link to a host directory while
    /// errand walks the tree: nothing of the host's is ever given away.
    #[test]
    fn a_link_swapped_in_during_the_walk_is_not_followed() {
        use std::os::unix::fs::MetadataExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        // SAFETY: plain system call.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let d = tempfile::tempdir().expect("tmp");
        let (ws, host) = (d.path().join("ws"), d.path().join("host"));
        let names: Vec<String> = (0..64).map(|i| format!("f{i}")).collect();
        std::fs::create_dir_all(&host).expect("mkdir");
        for n in &names {
            std::fs::write(host.join(n), "host").expect("write");
        }
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        // ws/d: a directory of the agent's, and ws/l a link to the host's;
        // the agent swaps the two names atomically, over and over.
        std::fs::create_dir_all(ws.join("d")).expect("mkdir");
        for n in &names {
            std::fs::write(ws.join("d").join(n), "agent").expect("write");
        }
        std::os::unix::fs::symlink(&host, ws.join("l")).expect("symlink");
        let swapper = {
            let (ws, stop) = (ws.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = |p: &Path| {
                    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path")
                };
                let (a, b) = (c(&ws.join("d")), c(&ws.join("l")));
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: valid C strings; renameat2 swaps the two names.
                    unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            a.as_ptr(),
                            libc::AT_FDCWD,
                            b.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        );
                    }
                    std::thread::yield_now();
                }
            })
        };
        let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::time::Instant::now() < until {
            let _ = give_tree(&ws, 4242, 4243, false);
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().expect("swapper");
        let meta = |p: &Path| std::fs::symlink_metadata(p).expect("meta");
        assert_eq!(meta(&host).uid(), 0);
        let given: Vec<&String> = names
            .iter()
            .filter(|n| meta(&host.join(n)).uid() != 0)
            .collect();
        assert!(given.is_empty(), "host files given to the agent: {given:?}");
    }

    /// A socket of errand's mounted into a container answers the container's
    /// user, and it alone: errand gives it to that uid (0600) when it mounts it.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_mounted_socket_is_for_the_containers_user_alone() {
        use std::os::unix::fs::MetadataExt;
        use tokio::io::AsyncWriteExt;
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        let sb = DockerSandbox::new(DockerConfig {
            network: "none".into(),
            ..DockerConfig::default()
        });
        if let Err(e) = sb.check().await {
            assert!(!ci, "CI: the docker sandbox must work here: {e}");
            eprintln!("skipped: {e}");
            return;
        }
        let path = crate::socket::private_path("test").expect("path");
        let svc = crate::socket::SocketService::start(
            &path,
            "test",
            4,
            |mut s: tokio::net::UnixStream| async move {
                let _ = s.write_all(b"hello-from-errand").await;
            },
        )
        .expect("listen");
        let d = tempfile::tempdir().expect("tmp");
        let spec = SandboxSpec {
            name: "sockettest".into(),
            workspace: d.path().join("ws"),
            home: d.path().join("home"),
            tmp: d.path().join("tmp"),
            ro_mounts: vec![(path.clone(), "/opt/errand/test.sock".into())],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            limits: Default::default(),
            network: NetworkPolicy::Open,
            entry: Vec::new(),
        };
        let script = "perl -MIO::Socket::UNIX -e '$s = IO::Socket::UNIX->new(Peer => \"/opt/errand/test.sock\") or die \"connect: $!\"; print <$s>'";
        let mut p = sb
            .spawn(&spec, &CommandLine::new("/bin/sh", ["-c", script]))
            .await
            .expect("spawn");
        let mut out = p.take_stdout().expect("stdout");
        let mut err = p.take_stderr().expect("stderr");
        let (mut o, mut e) = (String::new(), String::new());
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut out, &mut o).await;
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut err, &mut e).await;
        let _ = p.wait().await;
        assert_eq!(o, "hello-from-errand", "stderr: {e}");
        let m = std::fs::symlink_metadata(&path).expect("socket");
        let (uid, _) = agent_ids();
        assert_eq!((m.uid(), m.mode() & 0o777), (uid, 0o600));
        assert_eq!(svc.peer_uid(), uid);
    }
}

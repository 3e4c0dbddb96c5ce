//! The agent image: `errand sandbox prepare docker` builds its root filesystem
//! from the host's mirror and imports it into the engine.

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use bollard::query_parameters::CreateImageOptions;
use bollard::Docker;
use futures::StreamExt;

use super::{api_error, DockerSandbox, AGENT_UID};
use crate::{paths, SandboxError};

/// The script that builds the image's root filesystem without a registry.
/// What the image build inherits of errand's environment.
const BUILD_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "TZ",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SUDO_ASKPASS",
];
const BUILD_LOCAL_SH: &str = include_str!("../../../../docker/build-local.sh");

/// What `errand sandbox prepare docker` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PrepareReport {
    /// The image's name (`repository:tag`).
    pub image: String,
    /// The image's id in the engine.
    pub id: String,
    /// Whether it was built now (false: it was there already).
    pub built: bool,
    /// Its size in the engine, when the engine says.
    pub size_bytes: Option<i64>,
    /// The engine's name and version.
    pub engine: String,
}

impl DockerSandbox {
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
            if let Some(report) = existing(docker, &image, &engine).await {
                progress(&format!("{image} is already there"));
                return Ok(report);
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
        let lock = lock_cache(cache_dir).await?;
        if !rebuild {
            if let Some(report) = existing(docker, &image, &engine).await {
                progress(&format!("{image} was built meanwhile"));
                return Ok(report);
            }
        }
        let rootfs = build_rootfs(cache_dir, progress).await?;
        progress(&format!("importing {image} into the engine"));
        let previous = docker.inspect_image(&image).await.ok().and_then(|i| i.id);
        import_rootfs(docker, &rootfs, repo, tag, progress).await?;
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

/// The report on `image` when the engine has it already.
async fn existing(docker: &Docker, image: &str, engine: &str) -> Option<PrepareReport> {
    let info = docker.inspect_image(image).await.ok()?;
    Some(PrepareReport {
        image: image.to_string(),
        id: info.id.unwrap_or_default(),
        built: false,
        size_bytes: info.size,
        engine: engine.to_string(),
    })
}

/// Takes the cache's build lock (`.lock`, flock), held until the file is dropped.
async fn lock_cache(cache_dir: &Path) -> Result<std::fs::File, SandboxError> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache_dir.join(".lock"))
        .map_err(|e| SandboxError::Setup(format!("cannot lock {}: {e}", cache_dir.display())))?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&lock);
    // SAFETY: `lock` outlives the call; flock only blocks on the descriptor.
    let _ = tokio::task::spawn_blocking(move || unsafe { libc::flock(fd, libc::LOCK_EX) }).await;
    Ok(lock)
}

/// Runs the build script in `cache_dir`, its stderr lines to `progress`: the
/// path of the root filesystem's tarball it wrote.
async fn build_rootfs(
    cache_dir: &Path,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<PathBuf, SandboxError> {
    let script = cache_dir.join("build-local.sh");
    std::fs::write(&script, BUILD_LOCAL_SH)
        .map_err(|e| SandboxError::Setup(format!("cannot write {}: {e}", script.display())))?;
    let rootfs = cache_dir.join("errand-agent-rootfs.tar");
    // The build's own tools (debootstrap, sudo) need the session's paths,
    // locale and proxies to reach the Debian mirror; nothing else of errand's.
    let mut cmd = errand_proc::Cmd::new("bash");
    cmd.inherit_env(BUILD_ENV)
        .arg(&script)
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
    let mut child = cmd.tokio().spawn().map_err(SandboxError::Spawn)?;
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
    Ok(rootfs)
}

/// Imports the tarball `rootfs` into the engine as `repo:tag`, the agent's
/// user and workspace set and nothing added to the environment.
async fn import_rootfs(
    docker: &Docker,
    rootfs: &Path,
    repo: String,
    tag: String,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), SandboxError> {
    let file = tokio::fs::File::open(rootfs)
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
    let mut stream = long.create_image(Some(options), Some(bollard::body_try_stream(body)), None);
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
    Ok(())
}

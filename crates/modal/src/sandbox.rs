//! The Modal backend of errand's [`Sandbox`] trait.
//!
//! **Tested against the strict fake of `errand_modal::fake` (built from
//! Modal's protos), not against Modal itself.**
//!
//! # One Modal Sandbox per run
//!
//! Modal's machines cannot see errand's disk, so the run's first spawn creates
//! one Modal Sandbox for the run (`spec.name`) that idles (no entrypoint) for
//! at most `timeout_secs`, tagged `errand-run=<run>` and `errand-scope=<scope>`,
//! in the app `modal_app`, from the image `modal_image` (a registry tag) or
//! Dockerfile commands. Its first exec unpacks a tar of the workspace, HOME,
//! `/tmp` and each read-only mount (sent on stdin; errand's own files, written
//! before the agent starts), then makes the read-only mounts read-only. Every
//! spawn of the run, the harness and the steps after it (commit, export,
//! tests), is then an exec in that Sandbox through its command router, so the
//! agent's work stays inside: the run's commits come back only as the bundle
//! the export step prints on stdout (`errand_git::export`), never as files
//! on the host. Each spawn's environment is an ephemeral Modal Secret given to
//! its exec (no value is on a command line). The Sandbox is terminated by
//! [`ModalSandbox::release`] when the run ends, by a kill (cancel, timeout), by
//! its own `timeout_secs`, or by the orphan clean-up of the next start.
//!
//! # Output
//!
//! Each exec's stdout and stderr are read with `TaskExecStdioRead` from byte
//! 0; a stream that breaks is reopened at the bytes received, so the parser
//! sees every byte once, in order.
//!
//! # Network
//!
//! The spec's network becomes Modal's `network_access`: [`NetworkPolicy::Open`]
//! is OPEN; an isolated spec is ALLOWLIST of the run's allowlist resolved to
//! CIDRs at start (names resolved once, `*.suffix` entries and ports cannot be
//! expressed and are skipped with a notice; `*` is every address), plus
//! `sandbox.modal_cidrs`, or BLOCKED when nothing remains. There is no egress
//! proxy: errand's API is never on the list unless configured there.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use errand_sandbox::{
    paths, CommandLine, ExitInfo, NetworkPolicy, OutputStream, ProcessHandle, Sandbox,
    SandboxError, SandboxProcess, SandboxSpec,
};
use tokio::sync::OnceCell;

use crate::proto::client as pb;
use crate::proto::task_command_router as tcr;
use crate::router::Router;
use crate::{Client, ModalError, Profile};

/// The tag naming a sandbox's run.
pub const RUN_TAG: &str = "errand-run";
/// The tag naming the errand installation (its scope).
pub const SCOPE_TAG: &str = "errand-scope";

/// How Modal Sandboxes are made.
#[derive(Debug, Clone)]
pub struct ModalConfig {
    /// The Modal app the sandboxes belong to (`sandbox.modal_app`).
    pub app: String,
    /// The agent image's registry tag (`sandbox.modal_image`).
    pub image: String,
    /// Dockerfile commands to build the image from instead (`sandbox.modal_dockerfile_commands`).
    pub dockerfile_commands: Vec<String>,
    /// A sandbox's longest life, in seconds (`sandbox.modal_timeout_secs`).
    pub timeout_secs: u32,
    /// CIDRs every isolated sandbox may reach besides the run's allowlist
    /// (`sandbox.modal_cidrs`), e.g. where errand's model gateway is published.
    pub cidrs: Vec<String>,
    /// Marks this installation's sandboxes, so orphan clean-up spares others'.
    pub scope: String,
}

impl Default for ModalConfig {
    fn default() -> Self {
        ModalConfig {
            app: "errand".into(),
            image: String::new(),
            dockerfile_commands: Vec::new(),
            timeout_secs: 3 * 3600,
            cidrs: Vec::new(),
            scope: "default".into(),
        }
    }
}

impl ModalConfig {
    /// The Dockerfile commands of the image.
    pub fn image_commands(&self) -> Vec<String> {
        if self.dockerfile_commands.is_empty() {
            vec![format!("FROM {}", self.image.trim())]
        } else {
            self.dockerfile_commands.clone()
        }
    }

    /// Problems with the configuration, each as a sentence.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.app.trim().is_empty() {
            out.push("sandbox.modal_app is empty".to_string());
        }
        if self.image.trim().is_empty() && self.dockerfile_commands.is_empty() {
            out.push(
                "no agent image: set sandbox.modal_image to the registry tag of the agent image \
                 (README: \"Modal\"), or sandbox.modal_dockerfile_commands"
                    .to_string(),
            );
        }
        if self.timeout_secs == 0 {
            out.push("sandbox.modal_timeout_secs is 0".to_string());
        }
        for c in &self.cidrs {
            if errand_sandbox::kubernetes::Cidr::parse(c).is_none() {
                out.push(format!("sandbox.modal_cidrs entry '{c}' is not a CIDR"));
            }
        }
        out
    }
}

/// One run's Modal Sandbox.
struct RunBox {
    sandbox_id: String,
    router: Router,
    notices: Vec<String>,
}

/// The Modal backend (see the module).
pub struct ModalSandbox {
    config: ModalConfig,
    profile: Result<Profile, String>,
    client: OnceCell<Arc<Client>>,
    app_id: OnceCell<String>,
    image_id: OnceCell<String>,
    runs: std::sync::Mutex<HashMap<String, Arc<OnceCell<Arc<RunBox>>>>>,
}

fn setup(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(e.to_string())
}

impl ModalSandbox {
    /// A backend with the profile of the environment (`MODAL_*`, `~/.modal.toml`);
    /// nothing is contacted until the first use.
    pub fn new(config: ModalConfig) -> Self {
        Self::with_profile(config, Profile::from_env().map_err(|e| e.to_string()))
    }

    /// A backend with `profile`.
    pub fn with_profile(config: ModalConfig, profile: Result<Profile, String>) -> Self {
        ModalSandbox {
            config,
            profile,
            client: OnceCell::new(),
            app_id: OnceCell::new(),
            image_id: OnceCell::new(),
            runs: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &ModalConfig {
        &self.config
    }

    /// The client (made on first use).
    pub async fn client(&self) -> Result<Arc<Client>, ModalError> {
        self.client
            .get_or_try_init(|| async {
                let profile = self.profile.clone().map_err(ModalError::Config)?;
                Client::new(profile).map(Arc::new)
            })
            .await
            .cloned()
    }

    /// The app's id, created if missing.
    pub async fn app_id(&self) -> Result<String, ModalError> {
        let client = self.client().await?;
        self.app_id
            .get_or_try_init(|| client.app(&self.config.app, true))
            .await
            .cloned()
    }

    /// The image's id, built if needed (`force` builds it again).
    pub async fn image_id(
        &self,
        force: bool,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<String, ModalError> {
        let client = self.client().await?;
        let app = self.app_id().await?;
        if force {
            let id = client
                .image(&app, self.config.image_commands(), true, progress)
                .await?;
            let _ = self.image_id.set(id.clone());
            return Ok(id);
        }
        self.image_id
            .get_or_try_init(|| client.image(&app, self.config.image_commands(), false, progress))
            .await
            .cloned()
    }

    /// Terminates the Modal sandboxes of this installation whose run is not in
    /// `live`; returns their ids.
    pub async fn cleanup_orphans(&self, live: &[String]) -> Result<Vec<String>, ModalError> {
        let client = self.client().await?;
        let app = self.app_id().await?;
        let mut removed = Vec::new();
        for sb in client
            .sandbox_list(&app, &[(SCOPE_TAG, &self.config.scope)])
            .await?
        {
            let run = sb
                .tags
                .iter()
                .find(|t| t.tag_name == RUN_TAG)
                .map(|t| t.tag_value.clone())
                .unwrap_or_default();
            if live.contains(&run) {
                continue;
            }
            match client.sandbox_terminate(&sb.id).await {
                Ok(()) => removed.push(sb.id),
                Err(e) if e.is_not_found() => {}
                Err(e) => tracing::warn!("terminating the Modal sandbox {} failed: {e}", sb.id),
            }
        }
        Ok(removed)
    }

    /// The `network_access` of `spec`, with notices for what it cannot express.
    async fn network(
        &self,
        spec: &SandboxSpec,
    ) -> Result<(pb::NetworkAccess, Vec<String>), SandboxError> {
        use pb::network_access::NetworkAccessType as T;
        let NetworkPolicy::Isolated(egress) = &spec.network else {
            return Ok((
                pb::NetworkAccess {
                    network_access_type: T::Open as i32,
                    ..Default::default()
                },
                Vec::new(),
            ));
        };
        let (allowed, mut notices) =
            errand_sandbox::kubernetes::allowlist_destinations(&egress.allow).await?;
        let mut cidrs: Vec<String> = self.config.cidrs.clone();
        let mut ported = Vec::new();
        for a in allowed {
            if let Some(p) = a.port {
                ported.push(format!("{}:{p}", a.cidr));
            }
            let c = a.cidr.to_string();
            if !cidrs.contains(&c) {
                cidrs.push(c);
            }
        }
        if !ported.is_empty() {
            notices.push(format!(
                "Modal's allowlist has no ports: {} allowed on every port",
                ported.join(", ")
            ));
        }
        notices.push(
            "the modal sandbox has no egress proxy: the run's allowlist is Modal's network_access \
             ALLOWLIST, by address (host names resolved at start, *.suffix entries skipped)"
                .to_string(),
        );
        if let Some(why) = reaches_api(&cidrs, &egress.protected, &own_addresses()) {
            return Err(SandboxError::Setup(why));
        }
        let access = if cidrs.is_empty() {
            pb::NetworkAccess {
                network_access_type: T::Blocked as i32,
                ..Default::default()
            }
        } else {
            pb::NetworkAccess {
                network_access_type: T::Allowlist as i32,
                allowed_cidrs: cidrs,
                allowed_domains: Vec::new(),
            }
        };
        Ok((access, notices))
    }

    async fn run_box(&self, spec: &SandboxSpec) -> Result<Arc<RunBox>, SandboxError> {
        let cell = self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(spec.name.clone())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.create(spec)).await.cloned()
    }

    /// Creates the run's Modal Sandbox and ships its files in.
    async fn create(&self, spec: &SandboxSpec) -> Result<Arc<RunBox>, SandboxError> {
        let client = self.client().await.map_err(setup)?;
        let app = self.app_id().await.map_err(setup)?;
        let image = self
            .image_id(false, &|l| tracing::info!("modal image: {l}"))
            .await
            .map_err(setup)?;
        let (network_access, mut notices) = self.network(spec).await?;
        if let Some(p) = spec.limits.max_pids {
            notices.push(format!(
                "the modal sandbox cannot limit the number of processes (max {p} not applied)"
            ));
        }
        let milli = spec.limits.cpus.map_or(0, |c| {
            (c * 1000.0).round().clamp(0.0, u32::MAX as f64) as u32
        });
        let mem = spec.limits.memory_bytes.map_or(0, |b| {
            u32::try_from(b.div_ceil(1 << 20)).unwrap_or(u32::MAX)
        });
        let definition = pb::Sandbox {
            entrypoint_args: Vec::new(),
            image_id: image,
            timeout_secs: lifetime(spec.limits.lifetime_secs, self.config.timeout_secs),
            workdir: Some(paths::WORKSPACE.to_string()),
            resources: Some(pb::Resources {
                milli_cpu: milli,
                milli_cpu_max: milli,
                memory_mb: mem,
                memory_mb_max: mem,
                ..Default::default()
            }),
            network_access: Some(network_access),
            open_ports_oneof: Some(pb::sandbox::OpenPortsOneof::OpenPorts(
                pb::PortSpecs::default(),
            )),
            name: Some(String::new()),
            ..Default::default()
        };
        let id = client
            .sandbox_create(
                &app,
                definition,
                &[(RUN_TAG, &spec.name), (SCOPE_TAG, &self.config.scope)],
            )
            .await
            .map_err(setup)?;
        let made = async {
            let task = client.task_id(&id).await?;
            let router = Router::open(client.clone(), &task).await?;
            Ok::<_, ModalError>(router)
        }
        .await;
        let router = match made {
            Ok(r) => r,
            Err(e) => {
                let _ = client.sandbox_terminate(&id).await;
                return Err(setup(e));
            }
        };
        let rb = RunBox {
            sandbox_id: id.clone(),
            router,
            notices,
        };
        if let Err(e) = self.ship_in(&rb, spec).await {
            let _ = client.sandbox_terminate(&id).await;
            return Err(e);
        }
        Ok(Arc::new(rb))
    }

    /// Unpacks the workspace, HOME, `/tmp` and the read-only mounts inside.
    async fn ship_in(&self, rb: &RunBox, spec: &SandboxSpec) -> Result<(), SandboxError> {
        // As the other backends do: the run's own directories exist (empty
        // ones are shipped as empty directories).
        for dir in [&spec.workspace, &spec.home, &spec.tmp] {
            std::fs::create_dir_all(dir).map_err(|e| {
                SandboxError::Setup(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let mut entries: Vec<(PathBuf, String)> = vec![
            (spec.workspace.clone(), paths::WORKSPACE.to_string()),
            (spec.home.clone(), paths::HOME.to_string()),
            (spec.tmp.clone(), "/tmp".to_string()),
        ];
        let mut read_only = Vec::new();
        for (host, inside) in &spec.ro_mounts {
            let inside = inside.to_string_lossy().into_owned();
            read_only.push(sh_quote(&inside));
            entries.push((host.clone(), inside));
        }
        let started = std::time::Instant::now();
        let archive = tokio::task::spawn_blocking(move || pack(&entries))
            .await
            .map_err(setup)?
            .map_err(|e| {
                SandboxError::Setup(format!("packing the run's files for Modal failed: {e}"))
            })?;
        let script = format!(
            "set -e; mkdir -p {w} {h} /tmp; tar -x -f - -C / --no-same-owner; {ro}",
            w = paths::WORKSPACE,
            h = paths::HOME,
            ro = if read_only.is_empty() {
                String::new()
            } else {
                format!("chmod -R a-w {}", read_only.join(" "))
            },
        );
        let exec_id = uuid::Uuid::new_v4().to_string();
        rb.router
            .exec_start(
                &exec_id,
                vec!["/bin/sh".into(), "-c".into(), script],
                Some("/".into()),
                Vec::new(),
                None,
            )
            .await
            .map_err(setup)?;
        let router = &rb.router;
        // No agent has run yet: this output is the image's tar's, and small.
        let (mut out, mut tail) = (Vec::new(), Vec::new());
        let (written, o, e) = tokio::join!(
            router.write_stdin(&exec_id, &archive),
            router.read_output(&exec_id, tcr::TaskExecStdioFileDescriptor::Stdout, &mut out),
            router.read_output(
                &exec_id,
                tcr::TaskExecStdioFileDescriptor::Stderr,
                &mut tail
            ),
        );
        written.map_err(setup)?;
        o.map_err(setup)?;
        e.map_err(setup)?;
        let exit = router.exec_wait(&exec_id).await.map_err(setup)?;
        if exit.code != Some(0) {
            return Err(SandboxError::Setup(format!(
                "unpacking the run's files in the Modal sandbox failed ({exit:?}): {}",
                String::from_utf8_lossy(&tail).trim()
            )));
        }
        tracing::info!(
            "modal: {} bytes of the run's files shipped in {:?}",
            archive.len(),
            started.elapsed()
        );
        Ok(())
    }
}

/// A tar of each host path under its inside path (relative to `/`), links
/// kept as links, never followed.
fn pack(entries: &[(PathBuf, String)]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    for (host, inside) in entries {
        let name = inside.trim_start_matches('/');
        let at =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", host.display()));
        let meta = std::fs::symlink_metadata(host).map_err(at)?;
        if meta.is_dir() {
            b.append_dir_all(name, host).map_err(at)?;
        } else {
            b.append_path_with_name(host, name).map_err(at)?;
        }
    }
    b.into_inner()
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[async_trait]
impl Sandbox for ModalSandbox {
    fn name(&self) -> &'static str {
        "modal"
    }

    fn allowlists_by_address(&self) -> bool {
        true
    }

    /// Ends the run's Modal Sandbox, if it has one (the run is over).
    async fn release(&self, run: &str) {
        let cell = self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(run);
        if let Some(rb) = cell.and_then(|c| c.get().cloned()) {
            if let Ok(client) = self.client().await {
                if let Err(e) = client.sandbox_terminate(&rb.sandbox_id).await {
                    tracing::warn!(
                        "terminating the Modal sandbox {} failed: {e}",
                        rb.sandbox_id
                    );
                }
            }
        }
    }

    /// The credentials work, the app and the image exist.
    async fn check(&self) -> Result<(), SandboxError> {
        let problems = self.config.problems();
        if let Some(p) = problems.into_iter().next() {
            return Err(SandboxError::Unavailable(p));
        }
        let client = self
            .client()
            .await
            .map_err(|e| SandboxError::Unavailable(e.to_string()))?;
        client
            .auth_token()
            .await
            .map_err(|e| SandboxError::Unavailable(format!("Modal refused errand's token: {e}")))?;
        Ok(())
    }

    async fn spawn(
        &self,
        spec: &SandboxSpec,
        cmd: &CommandLine,
    ) -> Result<SandboxProcess, SandboxError> {
        spec.plain_workspace("modal")?;
        let cmd = spec.entered(cmd);
        let rb = self.run_box(spec).await?;
        let client = self.client().await.map_err(setup)?;
        let secret = client.ephemeral_secret(&spec.env).await.map_err(setup)?;
        let exec_id = uuid::Uuid::new_v4().to_string();
        let mut args = vec![cmd.program.clone()];
        args.extend(cmd.args.iter().cloned());
        rb.router
            .exec_start(
                &exec_id,
                args,
                Some(
                    cmd.cwd
                        .clone()
                        .unwrap_or_else(|| paths::WORKSPACE.to_string()),
                ),
                vec![secret],
                None,
            )
            .await
            .map_err(setup)?;
        let (out_w, out_r) = tokio::io::duplex(256 << 10);
        let (err_w, err_r) = tokio::io::duplex(64 << 10);
        let readers = [
            (tcr::TaskExecStdioFileDescriptor::Stdout, out_w),
            (tcr::TaskExecStdioFileDescriptor::Stderr, err_w),
        ]
        .map(|(fd, w)| {
            let rb = rb.clone();
            let exec_id = exec_id.clone();
            tokio::spawn(async move {
                if let Err(e) = rb.router.read_output(&exec_id, fd, w).await {
                    tracing::warn!("reading the Modal exec's {fd:?} failed: {e}");
                }
            })
        });
        let notices = rb.notices.clone();
        let handle = ModalProcess {
            rb,
            client,
            exec_id,
            stdout: Some(Box::new(out_r)),
            stderr: Some(Box::new(err_r)),
            readers: readers.into(),
        };
        Ok(SandboxProcess::new(notices, Box::new(handle)))
    }
}

/// One exec in a run's Modal Sandbox.
struct ModalProcess {
    rb: Arc<RunBox>,
    client: Arc<Client>,
    exec_id: String,
    stdout: Option<OutputStream>,
    stderr: Option<OutputStream>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

#[async_trait]
impl ProcessHandle for ModalProcess {
    fn take_stdout(&mut self) -> Option<OutputStream> {
        self.stdout.take()
    }

    fn take_stderr(&mut self) -> Option<OutputStream> {
        self.stderr.take()
    }

    async fn wait(&mut self) -> std::io::Result<ExitInfo> {
        let exit = self
            .rb
            .router
            .exec_wait(&self.exec_id)
            .await
            .map_err(std::io::Error::other)?;
        Ok(ExitInfo {
            code: exit.code,
            signal: exit.signal,
            oom_killed: false,
        })
    }

    /// Terminates the whole Modal Sandbox: a kill is a cancel or a timeout.
    async fn kill(&mut self) {
        for r in &self.readers {
            r.abort();
        }
        if let Err(e) = self.client.sandbox_terminate(&self.rb.sandbox_id).await {
            tracing::warn!(
                "terminating the Modal sandbox {} failed: {e}",
                self.rb.sandbox_id
            );
        }
    }
}

impl Drop for ModalProcess {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

/// The Sandbox's lifetime: the run's (its time limit and the steps after
/// it) when it has one, never more than `sandbox.modal_timeout_secs`, at
/// least a minute.
fn lifetime(run: Option<u64>, configured: u32) -> u32 {
    match run {
        Some(secs) => u32::try_from(secs)
            .unwrap_or(u32::MAX)
            .clamp(60, configured.max(60)),
        None => configured,
    }
}

/// This machine's addresses, for [`reaches_api`]; none when they cannot be read.
fn own_addresses() -> Vec<std::net::IpAddr> {
    errand_sandbox::egress::interface_addresses().unwrap_or_default()
}

/// Why an ALLOWLIST of `cidrs` would let the agent reach errand's API at
/// `protected`, if it would: Modal's allowlist has no ports, so a block holding
/// an address the API listens on opens the API too (an unspecified listen
/// address is every one of `own`). Addresses behind a NAT or a proxy in front
/// of the API cannot be seen from here; the README says to publish the
/// gateway apart from the API.
fn reaches_api(
    cidrs: &[String],
    protected: &[std::net::SocketAddr],
    own: &[std::net::IpAddr],
) -> Option<String> {
    use errand_sandbox::kubernetes::Cidr;
    for api in protected {
        let ip = errand_sandbox::egress::canonical(api.ip());
        let addrs: Vec<std::net::IpAddr> = if ip.is_unspecified() {
            own.iter()
                .map(|a| errand_sandbox::egress::canonical(*a))
                .collect()
        } else {
            vec![ip]
        };
        for c in cidrs {
            let Some(block) = Cidr::parse(c) else {
                continue;
            };
            if let Some(a) = addrs.iter().find(|a| block.contains(&Cidr::host(**a))) {
                return Some(format!(
                    "the modal sandbox's allowlist holds {c}, which holds {a}, where errand's API \
                     listens ({api}): Modal's allowlist has no ports, so the agent could reach the \
                     API. Publish the model gateway (gateway.modal_url) and the run's destinations \
                     at addresses the API does not listen on"
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{lifetime, reaches_api};

    #[test]
    fn an_allowlist_holding_the_apis_address_is_refused() {
        let own: Vec<std::net::IpAddr> =
            vec!["127.0.0.1".parse().unwrap(), "192.0.2.7".parse().unwrap()];
        let cidrs = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The API on one address: only a block holding it is refused.
        let api = ["198.51.100.4:8080".parse().unwrap()];
        assert!(reaches_api(&cidrs(&["203.0.113.0/24"]), &api, &own).is_none());
        let why = reaches_api(&cidrs(&["203.0.113.0/24", "198.51.100.0/24"]), &api, &own)
            .expect("refused");
        assert!(
            why.contains("198.51.100.0/24") && why.contains("198.51.100.4:8080"),
            "{why}"
        );
        // On every address: any of this machine's, and everything (`*`).
        let api = ["0.0.0.0:8080".parse().unwrap()];
        assert!(reaches_api(&cidrs(&["192.0.2.7/32"]), &api, &own).is_some());
        assert!(reaches_api(&cidrs(&["0.0.0.0/0"]), &api, &own).is_some());
        assert!(reaches_api(&cidrs(&["203.0.113.9/32"]), &api, &own).is_none());
        // IPv4 written as IPv6 is the same address.
        let api = ["[::ffff:198.51.100.4]:8080".parse().unwrap()];
        assert!(reaches_api(&cidrs(&["198.51.100.4/32"]), &api, &own).is_some());
        // No API in this process (`errand run`): nothing to keep out.
        assert!(reaches_api(&cidrs(&["0.0.0.0/0"]), &[], &own).is_none());
    }

    #[test]
    fn a_sandbox_lives_as_long_as_its_run_within_the_configured_cap() {
        assert_eq!(lifetime(Some(2100), 10_800), 2100);
        assert_eq!(lifetime(Some(100_000), 10_800), 10_800);
        assert_eq!(lifetime(Some(5), 10_800), 60);
        assert_eq!(lifetime(None, 10_800), 10_800);
        assert_eq!(lifetime(Some(u64::MAX), 10_800), 10_800);
    }
}

//! Sandboxes: where an agent's process runs.
//!
//! [`Sandbox`] is the interface every backend implements: [`LocalSandbox`]
//! (bubblewrap), [`DockerSandbox`] (one container per process; Docker or
//! Podman), [`KubernetesSandbox`] (one Pod per process), and outside this
//! crate `errand_modal::ModalSandbox` (one Modal Sandbox per run). A backend is given a
//! [`SandboxSpec`] (host directories to expose, the complete environment, limits)
//! and a [`CommandLine`] to run inside, and hands back a [`SandboxProcess`]
//! whose stdout and stderr errand reads and which it can kill as a whole tree.
//!
//! Invariant: the processes of a run see only what the spec names. Nothing of
//! errand's own environment is inherited. With [`NetworkPolicy::Isolated`]
//! (local and Docker backends) they reach the network only through errand's
//! egress proxy, and only the allowlisted destinations ([`egress`]).

#![warn(missing_docs)]

pub mod docker;
pub mod egress;
pub mod kubernetes;
mod local;
pub mod socket;

pub use docker::{DockerConfig, DockerSandbox};
pub use egress::{Bridge, Egress, NetworkPolicy};
pub use kubernetes::{KubernetesConfig, KubernetesSandbox};
pub use local::LocalSandbox;

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::AsyncRead;

/// Paths as the agent sees them inside every backend.
pub mod paths {
    /// The run's workspace (the cloned repository).
    pub const WORKSPACE: &str = "/workspace";
    /// The agent's HOME.
    pub const HOME: &str = "/home/agent";
    /// Where a harness's installation is mounted, read-only.
    pub const HARNESS: &str = "/opt/errand/harness";
    /// Extra tools errand provides (uv), read-only.
    pub const TOOLS: &str = "/opt/errand/bin";
    /// errand's guard shims (`git`, `rm`), read-only.
    pub const SHIMS: &str = "/opt/errand/shims";
    /// The `git` shim, which git's exec path points back to inside the git gate.
    pub const GIT_SHIM: &str = "/opt/errand/shims/git";
    /// Where the real `git`/`rm` are mounted when the shims take their usual
    /// paths (the local backend, which shows the host's `/usr`).
    pub const REAL: &str = "/opt/errand/real";
    /// The egress proxy's socket, bound in by the local and docker backends.
    pub const EGRESS_SOCKET: &str = "/opt/errand/egress.sock";
    /// errand's egress bridge inside the sandbox.
    pub const EGRESS_BRIDGE: &str = "/opt/errand/egress-bridge";
    /// Where a harness's guard hook records the calls it refused (Codex).
    pub const GUARD_LOG: &str = "/home/agent/.errand/guard-denials.jsonl";
}

/// Why a sandbox could not be checked or started.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The backend cannot run here; the message says how to fix it.
    #[error("{0}")]
    Unavailable(String),
    /// Starting the process failed.
    #[error("could not start the sandboxed process: {0}")]
    Spawn(#[source] std::io::Error),
    /// Preparing the sandbox (directories, mounts, objects, the egress proxy) failed.
    #[error("sandbox set-up failed: {0}")]
    Setup(String),
}

/// Resource limits. `None` leaves a resource unlimited.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Memory, in bytes (swap included where the backend can).
    pub memory_bytes: Option<u64>,
    /// Processes (and threads) at once.
    pub max_pids: Option<u64>,
    /// CPU time, in CPUs (1.5 = one and a half cores). Applied by the Docker
    /// backend; the local backend reports it as not applied.
    pub cpus: Option<f64>,
    /// The longest the sandbox may live, in seconds: the run's time limit and
    /// the grace of the steps after the agent. A backend whose sandboxes
    /// outlive errand (Modal) gives them this lifetime, so one errand cannot
    /// end is still ended by its platform; the others end with their run.
    pub lifetime_secs: Option<u64>,
}

/// What one sandboxed process may see and use.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// A name for the sandbox (the run's short id), used for cgroups and hostnames.
    pub name: String,
    /// Host directory mounted read-write at [`paths::WORKSPACE`].
    pub workspace: PathBuf,
    /// Host directory mounted read-write at [`paths::HOME`].
    pub home: PathBuf,
    /// Host directory mounted read-write at `/tmp`.
    pub tmp: PathBuf,
    /// Extra read-only mounts: (host path, path inside).
    pub ro_mounts: Vec<(PathBuf, PathBuf)>,
    /// The whole environment of the process; nothing else is passed.
    pub env: Vec<(String, String)>,
    /// Resource limits.
    pub limits: Limits,
    /// The network: the backend's own ([`NetworkPolicy::Open`]), or none but
    /// an allowlist through errand's egress proxy ([`egress`]).
    pub network: NetworkPolicy,
    /// A program (with its arguments) that starts first inside and runs each
    /// command itself, after them: errand's git gate. Empty: none.
    pub entry: Vec<String>,
    /// `Some`: the workspace is an overlay, [`SandboxSpec::workspace`] its
    /// writable layer over a shared read-only checkout. Given only to a
    /// backend whose [`Sandbox::layers_workspaces`] said yes; any other
    /// refuses it.
    pub layers: Option<WorkspaceLayers>,
}

/// An overlay workspace's other directories (see [`SandboxSpec::layers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceLayers {
    /// The shared checkout under the run's layer, never written.
    pub lower: PathBuf,
    /// The overlay's empty work directory, on the run's layer's filesystem.
    pub work: PathBuf,
    /// An empty directory the overlay is mounted on, in the sandbox's own
    /// mount namespace only (the host never sees the mount).
    pub view: PathBuf,
}

impl SandboxSpec {
    /// Refuses a spec with [`SandboxSpec::layers`], for a backend that cannot
    /// mount them.
    pub fn plain_workspace(&self, backend: &str) -> Result<(), SandboxError> {
        match self.layers {
            Some(_) => Err(SandboxError::Setup(format!(
                "the {backend} sandbox does not mount overlay workspaces; the run's workspace \
                 must be a plain directory"
            ))),
            None => Ok(()),
        }
    }

    /// `cmd` as the backend starts it: behind [`SandboxSpec::entry`], if any.
    pub fn entered(&self, cmd: &CommandLine) -> CommandLine {
        let Some((program, first)) = self.entry.split_first() else {
            return cmd.clone();
        };
        let mut args = first.to_vec();
        args.push(cmd.program.clone());
        args.extend(cmd.args.iter().cloned());
        CommandLine {
            program: program.clone(),
            args,
            cwd: cmd.cwd.clone(),
        }
    }
}

/// A program and its arguments, as seen inside the sandbox.
#[derive(Debug, Clone)]
pub struct CommandLine {
    /// The program, a name on PATH or a path inside.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working directory inside; [`paths::WORKSPACE`] when `None`.
    pub cwd: Option<String>,
}

impl CommandLine {
    /// `program` with `args`, in [`paths::WORKSPACE`].
    pub fn new(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        CommandLine {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            cwd: None,
        }
    }
}

/// One end of a sandboxed process's output.
pub type OutputStream = Box<dyn AsyncRead + Send + Unpin>;

/// How a sandboxed process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitInfo {
    /// The exit status, when the process exited by itself.
    pub code: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// The kernel killed a process of the sandbox for exceeding its memory
    /// limit (the main process, or one it started).
    pub oom_killed: bool,
}

impl ExitInfo {
    /// Whether the main process exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.oom_killed && !self.success(), self.code, self.signal) {
            (true, _, _) => write!(f, "killed: out of memory"),
            (false, Some(c), _) => write!(f, "status {c}"),
            (false, None, Some(s)) => write!(f, "signal {s}"),
            (false, None, None) => write!(f, "an unknown status"),
        }
    }
}

/// What a backend hands back for one started process.
#[async_trait]
pub trait ProcessHandle: Send {
    /// The process's stdout; `None` once taken.
    fn take_stdout(&mut self) -> Option<OutputStream>;
    /// The process's stderr; `None` once taken.
    fn take_stderr(&mut self) -> Option<OutputStream>;
    /// Waits for the main process to exit, then makes sure nothing it started
    /// lives on and releases the sandbox's resources.
    async fn wait(&mut self) -> std::io::Result<ExitInfo>;
    /// Kills every process of the sandbox and releases its resources.
    async fn kill(&mut self);
}

/// A running sandboxed process. Dropping it kills whatever still runs.
pub struct SandboxProcess {
    /// Facts about the isolation errand could not apply here, to be recorded on the run.
    pub notices: Vec<String>,
    handle: Box<dyn ProcessHandle>,
    /// The process's egress proxy (isolated network), which lives as long as this.
    egress: Option<egress::EgressProxy>,
}

impl SandboxProcess {
    /// A started process, with what could not be applied (`notices`).
    pub fn new(notices: Vec<String>, handle: Box<dyn ProcessHandle>) -> Self {
        SandboxProcess {
            notices,
            handle,
            egress: None,
        }
    }

    /// Keeps `proxy` serving the process for as long as it is held.
    pub fn with_egress(mut self, proxy: Option<egress::EgressProxy>) -> Self {
        self.egress = proxy;
        self
    }

    /// The destinations the egress proxy refused so far (empty on an open network).
    pub fn egress_refusals(&self) -> Vec<egress::Refusal> {
        self.egress
            .as_ref()
            .map(egress::EgressProxy::refused)
            .unwrap_or_default()
    }

    /// The process's stdout; `None` once taken.
    pub fn take_stdout(&mut self) -> Option<OutputStream> {
        self.handle.take_stdout()
    }

    /// The process's stderr; `None` once taken.
    pub fn take_stderr(&mut self) -> Option<OutputStream> {
        self.handle.take_stderr()
    }

    /// Kills every process of the sandbox, not just the first one.
    pub async fn kill(&mut self) {
        self.handle.kill().await
    }

    /// Waits for the process to exit, then makes sure nothing it started lives on.
    pub async fn wait(&mut self) -> std::io::Result<ExitInfo> {
        self.handle.wait().await
    }
}

/// A backend: where and how sandboxed processes run.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// The backend's name, as given to `--sandbox`.
    fn name(&self) -> &'static str;
    /// Checks that the backend can run here; the error says how to fix it.
    async fn check(&self) -> Result<(), SandboxError>;
    /// Whether the backend enforces [`NetworkPolicy::Isolated`] (with the egress
    /// proxy); one that does not runs such a spec on its own network, with a notice.
    fn isolates_network(&self) -> bool {
        false
    }
    /// Whether the backend, without a proxy, enforces the allowlist of
    /// [`NetworkPolicy::Isolated`] by address (Kubernetes' NetworkPolicy:
    /// names resolved when the sandbox starts, wildcards not enforced).
    fn allowlists_by_address(&self) -> bool {
        false
    }
    /// Whether the backend can mount an overlay workspace
    /// ([`SandboxSpec::layers`]) here; asked once per run before its
    /// workspace is made.
    async fn layers_workspaces(&self) -> bool {
        false
    }
    /// The run named `run` (a spec's `name`) is over: a backend that keeps
    /// something per run (Modal's one sandbox per run) ends it.
    async fn release(&self, _run: &str) {}
    /// Starts `cmd` inside a new sandbox described by `spec`, with stdin closed
    /// and stdout/stderr piped.
    async fn spawn(
        &self,
        spec: &SandboxSpec,
        cmd: &CommandLine,
    ) -> Result<SandboxProcess, SandboxError>;
}

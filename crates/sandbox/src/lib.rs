//! Sandboxes: where an agent's process runs.
//!
//! [`Sandbox`] is the interface every backend implements (the local bubblewrap
//! backend here; Docker and Kubernetes later). A backend is given a
//! [`SandboxSpec`] (host directories to expose, the complete environment, limits)
//! and a [`CommandLine`] to run inside, and hands back a [`SandboxProcess`]
//! whose stdout and stderr errand reads and which it can kill as a whole tree.
//!
//! Invariant: the processes of a run see only what the spec names. Nothing of
//! errand's own environment is inherited.

mod local;

pub use local::LocalSandbox;

use std::path::PathBuf;

use async_trait::async_trait;

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
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    Unavailable(String),
    #[error("could not start the sandboxed process: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("sandbox set-up failed: {0}")]
    Setup(String),
}

/// Resource limits. `None` leaves a resource unlimited.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub max_pids: Option<u64>,
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
    pub limits: Limits,
}

/// A program and its arguments, as seen inside the sandbox.
#[derive(Debug, Clone)]
pub struct CommandLine {
    pub program: String,
    pub args: Vec<String>,
    /// Working directory inside; [`paths::WORKSPACE`] when `None`.
    pub cwd: Option<String>,
}

impl CommandLine {
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

/// A running sandboxed process.
pub struct SandboxProcess {
    pub child: tokio::process::Child,
    /// Facts about the isolation errand could not apply here, to be recorded on the run.
    pub notices: Vec<String>,
    killer: Box<dyn KillTree>,
}

impl SandboxProcess {
    pub fn new(
        child: tokio::process::Child,
        notices: Vec<String>,
        killer: Box<dyn KillTree>,
    ) -> Self {
        SandboxProcess {
            child,
            notices,
            killer,
        }
    }

    /// Kills every process of the sandbox, not just the first one.
    pub async fn kill(&mut self) {
        self.killer.kill_tree();
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.killer.kill_tree();
    }

    /// Waits for the process to exit, then makes sure nothing it started lives on.
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let status = self.child.wait().await;
        self.killer.kill_tree();
        status
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        self.killer.kill_tree();
        self.killer.release();
    }
}

/// How a backend tears down a whole process tree.
pub trait KillTree: Send + Sync {
    fn kill_tree(&mut self);
    /// Frees per-sandbox resources (cgroups…) once nothing runs.
    fn release(&mut self) {}
}

#[async_trait]
pub trait Sandbox: Send + Sync {
    /// The backend's name, as given to `--sandbox`.
    fn name(&self) -> &'static str;
    /// Checks that the backend can run here; the error says how to fix it.
    async fn check(&self) -> Result<(), SandboxError>;
    /// Starts `cmd` inside a new sandbox described by `spec`, with stdin closed
    /// and stdout/stderr piped.
    async fn spawn(
        &self,
        spec: &SandboxSpec,
        cmd: &CommandLine,
    ) -> Result<SandboxProcess, SandboxError>;
}

//! Executes one run, start to finish, as one straight path:
//!
//! 1. `queued → preparing`: look up the harness, check the sandbox, build the
//!    harness's command line (a missing API key fails here, before any work),
//!    install the harness if needed, clone the repo through the outbox and create
//!    the run branch (or start an empty project with a Python virtualenv);
//! 2. `→ running`: start the harness in the sandbox; every stdout line goes to
//!    the raw log, through the harness's parser, and into the event log; the
//!    run's timeout and cancellation (Ctrl-C or `errand cancel`) kill the whole
//!    sandbox;
//! 3. `→ finishing`: commit what the agent left uncommitted (inside the
//!    sandbox), fetch the branch into the outbox, push it if asked (outside);
//! 4. `→ succeeded`, or `failed | cancelled | timed_out` with a reason.

mod agent;
mod assemble;
mod emit;
mod error;
pub mod forge;
pub mod gitproxy;
mod hostfs;
mod limits;
mod paths;
pub mod secrets;
mod steps;

pub use error::RunError;
pub use forge::GithubForge;
pub use limits::{MAX_EVENTS, MAX_EVENT_STRING, MAX_LINE_BYTES, MAX_RAW_BYTES, MAX_STDERR_BYTES};
pub use paths::Paths;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use errand_core::{
    Event, EventKind, EventSource, Redactor, RunId, RunRecord, RunState, RunSummary,
};
use errand_harness::{Invocation, RunContext};
use errand_sandbox::{
    egress, paths as inside, CommandLine, Limits, NetworkPolicy, Sandbox, SandboxSpec,
};
use errand_store::{EventLog, RawLog, Store, StoreError};
use tokio::io::BufReader;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use assemble::{git_confinement_available, insteadof_env, refusal_notice, GitRoute, ProxyServing};
use emit::{pump, Emitter, SharedRedactor};
use steps::{finish_grace, Until};

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings shared by every run this runner executes.
pub struct Runner {
    pub store: Arc<dyn Store>,
    pub sandbox: Arc<dyn Sandbox>,
    pub paths: Paths,
    /// The variables harnesses may take their declared environment from.
    pub env: BTreeMap<String, String>,
    /// Directory that relative `--repo` paths are resolved against.
    pub cwd: PathBuf,
    pub limits: Limits,
    /// Built-in and configured harnesses.
    pub harnesses: errand_harness::Registry,
    /// How often the store is asked whether someone cancelled the run.
    pub cancel_poll: Duration,
    /// The GitHub App for `github:owner/repo` runs (`None`: not configured).
    pub github: Option<Arc<GithubForge>>,
    /// The viewer's public address (`https://errand.example`), for links.
    pub public_url: Option<String>,
    /// Told of every state a run enters (Slack cards, GitHub comments).
    pub observer: Option<Arc<dyn RunObserver>>,
    /// What the sandbox may reach on the network.
    pub egress: EgressSettings,
    /// Where errand serves `--agent-git` runs' git proxies to kubernetes pods
    /// (`[sandbox] kubernetes_git_proxy_listen`, `host:port`).
    pub kubernetes_git_proxy_listen: Option<String>,
    /// The base URL pods reach that listener at (`[sandbox] kubernetes_git_proxy_url`).
    pub kubernetes_git_proxy_url: Option<String>,
}

/// What a run's sandbox may reach (`[sandbox] egress`, `egress_allow`, `egress_git_host`).
#[derive(Debug, Clone, Default)]
pub struct EgressSettings {
    /// Limit the sandbox to an allowlist, through errand's egress proxy
    /// (backends that have one: local, docker); `false` leaves it the backend's network.
    pub allowlist: bool,
    /// Destinations allowed besides the harness's model endpoint.
    pub allow: Vec<String>,
    /// Allow the run's git host too (errand itself clones and pushes, so the
    /// agent needs it only to fetch or push on its own).
    pub git_host: bool,
    /// errand's own API addresses, never reachable unless allowlisted by address and port.
    pub protected: Vec<std::net::SocketAddr>,
}

/// Hears about each state a run enters, in order, from the process running it.
/// Implementations must return at once (queue the work): the run does not wait.
pub trait RunObserver: Send + Sync {
    fn state_changed(&self, run: &RunRecord);
}

/// Receives install progress while the harness is being installed.
pub type ProgressFn = Arc<dyn Fn(&str) + Send + Sync>;

/// Where the guard's `git`/`rm` shims are mounted inside every sandbox.
pub const GUARD_SHIMS: &str = "/opt/errand/shims";
/// Where the real `git`/`rm` are mounted when the shims take their usual paths.
pub const GUARD_REAL: &str = "/opt/errand/real";

/// Events this process has written to the store (for `/metrics`).
pub static EVENTS_STORED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `s` as one single-quoted shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Runner {
    /// Runs `id` (which must be `queued`) to a terminal state and returns its record.
    /// Events are appended to the run's log and, if `tx` is given, sent there too.
    pub async fn execute(
        &self,
        id: RunId,
        cancel: CancellationToken,
        tx: Option<mpsc::UnboundedSender<Event>>,
        progress: Option<ProgressFn>,
    ) -> Result<RunRecord, RunnerError> {
        let log = EventLog::open(&self.paths.events(id))?;
        let (sink, rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let pump = tokio::spawn(pump(self.store.clone(), id, rx, backlog.clone()));
        let mut em = Emitter {
            log,
            tx,
            redactor: SharedRedactor::default(),
            sink,
            backlog,
            budget: limits::TraceBudget::default(),
        };
        let rec = self.store.get_run(id).await?;
        // A follow-up continues a finished run: same workspace, same harness session.
        let follow_up = self.store.take_pending_message(id).await?;
        self.store.set_owner(id, Some(std::process::id())).await?;
        let preparing = self.store.transition(id, RunState::Preparing, None).await?;
        self.observe(&preparing);
        em.errand(EventKind::State {
            state: RunState::Preparing,
            reason: None,
        })?;
        em.errand(EventKind::UserMessage {
            text: follow_up.clone().unwrap_or_else(|| rec.spec.prompt.clone()),
        })?;

        let mut access = None;
        let outcome = self
            .drive(
                &rec,
                follow_up.as_deref(),
                &mut em,
                &cancel,
                progress,
                &mut access,
            )
            .await;
        // The run's GitHub token dies with the run, whatever happened.
        if let (Some(gh), Some(a)) = (&self.github, &access) {
            gh.revoke(a).await;
            let _ = em.notice(format!(
                "revoked the run's token for {}/{}",
                a.owner, a.repo
            ));
        }
        let (state, reason) = match outcome {
            Ok(summary) => {
                self.store.update_summary(id, &summary).await?;
                (RunState::Succeeded, None)
            }
            Err(stop) => (stop.state(), Some(stop.to_string())),
        };
        // A concurrent `errand cancel` of an orphan may have ended the run already.
        let current = self.store.get_run(id).await?;
        if !current.state.is_terminal() {
            self.store.transition(id, state, reason.as_deref()).await?;
            em.errand(EventKind::State { state, reason })?;
        }
        self.store.set_owner(id, None).await?;
        drop(em);
        let _ = pump.await;
        let done = self.store.get_run(id).await?;
        self.observe(&done);
        Ok(done)
    }

    fn observe(&self, rec: &RunRecord) {
        if let Some(o) = &self.observer {
            o.state_changed(rec);
        }
    }

    /// What a run's harness may take its declared variables from: secrets
    /// stored with `errand secret set`, overridden by errand's own environment.
    async fn run_env(&self) -> Result<BTreeMap<String, String>, RunError> {
        let names = self
            .store
            .secret_names()
            .await
            .map_err(|e| RunError::host(e.to_string()))?;
        let mut env = BTreeMap::new();
        if !names.is_empty() {
            let key = secrets::SecretKey::load(&self.paths.home)
                .map_err(|e| RunError::host(e.to_string()))?;
            env = secrets::load_all(self.store.as_ref(), &key)
                .await
                .map_err(|e| RunError::host(e.to_string()))?;
        }
        env.extend(self.env.clone());
        Ok(env)
    }

    async fn transition(&self, id: RunId, em: &mut Emitter, to: RunState) -> Result<(), RunError> {
        let rec = self
            .store
            .transition(id, to, None)
            .await
            .map_err(|e| RunError::host(e.to_string()))?;
        self.observe(&rec);
        em.errand(EventKind::State {
            state: to,
            reason: None,
        })
        .map_err(log_failed)
    }

    async fn drive(
        &self,
        rec: &RunRecord,
        follow_up: Option<&str>,
        em: &mut Emitter,
        cancel: &CancellationToken,
        progress: Option<ProgressFn>,
        access: &mut Option<forge::RepoAccess>,
    ) -> Result<RunSummary, RunError> {
        let id = rec.id;
        let spec = &rec.spec;
        let run_dir = self.paths.run_dir(id);
        let workspace = run_dir.join("workspace");
        let home = run_dir.join("home");

        // Cheap checks first, so a typo costs no clone.
        let harness = self
            .harnesses
            .get(&spec.harness)
            .map_err(|e| RunError::harness(e.to_string()))?;
        if spec.model.is_some() && !harness.capabilities().model_choice {
            return Err(RunError::invalid(format!(
                "{} does not let errand choose the model; drop --model",
                harness.name()
            )));
        }
        if spec.push && spec.repo.is_none() {
            return Err(RunError::invalid(
                "--push needs --repo: a run without a repository has nowhere to push",
            ));
        }
        if !spec.agent_git && (!spec.agent_branches.is_empty() || spec.allow_force_push) {
            return Err(RunError::invalid(
                "--agent-branch and --allow-force-push need --agent-git: they say what the agent may push itself",
            ));
        }
        for name in &spec.agent_branches {
            errand_core::check_branch_name(name)
                .map_err(|e| RunError::invalid(format!("--agent-branch: {e}")))?;
        }
        if spec.agent_git {
            if spec.repo.as_ref().is_none_or(|r| r.github().is_none()) {
                return Err(RunError::invalid(
                    "--agent-git needs a github: repository: errand hands the agent a token only for its GitHub App",
                ));
            }
            if self.sandbox.name() == "kubernetes" {
                self.kubernetes_git_proxy()?;
            }
        }
        self.sandbox
            .check()
            .await
            .map_err(|e| RunError::sandbox(e.to_string()))?;
        let mut ctx = RunContext {
            prompt: spec.prompt.clone(),
            model: spec.model.clone(),
            max_turns: spec.max_turns,
            branch: id.branch(),
            env: self.run_env().await?,
            install_dir: PathBuf::new(),
            // The guard's git/rm shims come first on every harness's PATH.
            extra_path: vec![GUARD_SHIMS.to_string()],
            extra_env: vec![],
            agent_git: spec.agent_git,
        };
        if spec.repo.is_none() {
            let venv = format!("{}/.venv", inside::WORKSPACE);
            ctx.extra_path.push(format!("{venv}/bin"));
            ctx.extra_env.push(("VIRTUAL_ENV".into(), venv));
        }
        let session = match follow_up {
            Some(message) => {
                if !harness.capabilities().follow_up {
                    return Err(RunError::harness(format!(
                        "{} does not support follow-ups: start a new run instead",
                        harness.name()
                    )));
                }
                ctx.prompt = message.to_string();
                Some(rec.summary.session_id.clone().ok_or_else(|| {
                    RunError::harness("the run's first turn recorded no harness session to continue")
                })?)
            }
            None => None,
        };
        let invocation = |ctx: &RunContext| match &session {
            Some(s) => harness.follow_up_invocation(ctx, s),
            None => harness.invocation(ctx),
        };
        // Validates the environment (e.g. the API key) before anything slow happens.
        invocation(&ctx).map_err(|e| RunError::harness(e.to_string()))?;
        // Only now, with the cheap checks passed, is a repository token minted.
        let remote = match &spec.repo {
            Some(src) if src.github().is_some() => {
                let (owner, repo) = src.github().unwrap_or_default();
                let gh = self.github.as_ref().ok_or_else(|| {
                    RunError::invalid(format!(
                        "{owner}/{repo} is a GitHub repository, and this errand has no GitHub App \
                         configured ([github] app_id and private_key_file in its config)"
                    ))
                })?;
                let a = gh.access(owner, repo, spec.push).await.map_err(|e| {
                    RunError::forge(format!("no GitHub token for {owner}/{repo}: {e}"))
                })?;
                em.notice(format!(
                    "minted a token for {owner}/{repo} only ({}), revoked when the run ends",
                    a.token()
                        .permissions
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .map_err(log_failed)?;
                let url = a.url.clone();
                *access = Some(a);
                Some(url)
            }
            Some(src) => Some(
                errand_git::resolve_source(src, &self.cwd)
                    .map_err(|e| RunError::git(e.to_string()))?,
            ),
            None => None,
        };

        ctx.install_dir = match (harness.package(), harness.host_dir()) {
            (Some(pkg), _) => {
                let install_dir =
                    errand_harness::install_dir(&self.paths.cache, harness.name(), &pkg);
                if !install_dir.join(pkg.bin).is_file() {
                    em.notice(format!("installing {} (first use)", pkg.spec()))
                        .map_err(log_failed)?;
                }
                let report = |line: &str| {
                    if let Some(p) = &progress {
                        p(line)
                    }
                };
                errand_harness::install_npm(&self.paths.cache, harness.name(), &pkg, &report)
                    .await
                    .map_err(|e| RunError::harness(e.to_string()))?
            }
            (None, Some(dir)) => dir,
            // A command from the system: mount an empty directory in the harness's place.
            (None, None) => {
                let empty = run_dir.join("no-harness-dir");
                std::fs::create_dir_all(&empty)
                    .map_err(|e| RunError::host(format!("cannot create {}: {e}", empty.display())))?;
                empty
            }
        };
        let inv = invocation(&ctx).map_err(|e| RunError::harness(e.to_string()))?;
        let mut secrets = inv.secrets.clone();
        if let Some(a) = access.as_ref() {
            secrets.push(a.token().token);
        }
        em.redactor.set(Redactor::new(&secrets));

        let prepared_file = run_dir.join("prepared.json");
        let prepared = if session.is_some() {
            let text = std::fs::read_to_string(&prepared_file).map_err(|e| {
                RunError::host(format!(
                    "the run's workspace is gone ({e}); a follow-up needs the machine that ran the first turn"
                ))
            })?;
            let prepared: errand_git::Prepared = serde_json::from_str(&text).map_err(|e| {
                RunError::host(format!("{} is corrupt: {e}", prepared_file.display()))
            })?;
            em.notice(format!(
                "continuing on {} in the same workspace",
                prepared.branch
            ))
            .map_err(log_failed)?;
            prepared
        } else {
            let auth = access.as_ref().map(|a| a.git_auth());
            self.prepare_repo(
                rec,
                remote.as_deref(),
                auth.as_ref(),
                &run_dir,
                &workspace,
                em,
            )
            .await?
        };
        if let Ok(json) = serde_json::to_string(&prepared) {
            write_file(&prepared_file, &json)?;
        }
        // HOME is the agent's (a follow-up finds what it left there): these
        // files replace whatever is in their place and never follow a link.
        std::fs::create_dir_all(&home)
            .map_err(|e| RunError::host(format!("cannot create {}: {e}", home.display())))?;
        for (rel, contents) in &inv.home_files {
            let (root, rel_path, bytes) = (home.clone(), PathBuf::from(rel), contents.clone());
            tokio::task::spawn_blocking(move || {
                hostfs::write_beneath(&root, &rel_path, bytes.as_bytes())
            })
            .await
            .map_err(|e| RunError::host(format!("writing {rel} failed: {e}")))?
            .map_err(|e| RunError::host(format!("cannot write {rel} in the agent's home: {e}")))?;
        }
        self.run_prepared(
            rec,
            session.is_some(),
            &ctx,
            harness.as_ref(),
            &inv,
            &prepared,
            em,
            cancel,
            access.as_ref(),
        )
        .await
    }

    async fn prepare_repo(
        &self,
        rec: &RunRecord,
        remote: Option<&str>,
        auth: Option<&errand_git::GitAuth>,
        run_dir: &Path,
        workspace: &Path,
        em: &mut Emitter,
    ) -> Result<errand_git::Prepared, RunError> {
        let id = rec.id;
        let spec = &rec.spec;
        let mirrors = errand_git::Mirrors::new(self.paths.cache.join("mirrors"));
        match remote {
            Some(r) if errand_git::Mirrors::wants(r) => em.notice(format!(
                "cloning {} (through errand's mirror of it)",
                errand_git::redact_url(r)
            )),
            Some(r) => em.notice(format!("cloning {}", errand_git::redact_url(r))),
            None => em.notice("no repository given: starting an empty project"),
        }
        .map_err(log_failed)?;
        let prepared = errand_git::prepare(
            remote.map(|url| errand_git::Remote {
                url,
                auth,
                mirrors: Some(&mirrors),
            }),
            spec.base_branch.as_deref(),
            spec.base_commit.as_deref(),
            run_dir,
            workspace,
            &id.branch(),
        )
        .await
        .map_err(|e| RunError::git(e.to_string()))?;
        em.notice(format!(
            "branch {} from {} at {}",
            prepared.branch,
            prepared.base_branch,
            short(&prepared.base_commit)
        ))
        .map_err(log_failed)?;
        Ok(prepared)
    }

    /// Everything after the workspace is ready: the sandbox, the harness, the
    /// commit of leftovers, the fetch into the outbox, the tests, the push.
    #[allow(clippy::too_many_arguments)]
    async fn run_prepared(
        &self,
        rec: &RunRecord,
        is_follow_up: bool,
        ctx: &RunContext,
        harness: &dyn errand_harness::Harness,
        inv: &Invocation,
        prepared: &errand_git::Prepared,
        em: &mut Emitter,
        cancel: &CancellationToken,
        access: Option<&forge::RepoAccess>,
    ) -> Result<RunSummary, RunError> {
        let id = rec.id;
        let spec = &rec.spec;
        let run_dir = self.paths.run_dir(id);
        let workspace = run_dir.join("workspace");
        let home = run_dir.join("home");
        let tmp = run_dir.join("tmp");
        let run_until = Until {
            id,
            cancel: cancel.clone(),
            deadline: tokio::time::Instant::now() + Duration::from_secs(spec.timeout_secs),
        };
        // A real executable only: wrapper scripts (pyenv shims) would not work inside the sandbox.
        let uv = which_executable("uv");
        let mut ro_mounts = vec![(ctx.install_dir.clone(), PathBuf::from(inside::HARNESS))];
        if let Some(uv) = &uv {
            ro_mounts.push((uv.clone(), PathBuf::from(format!("{}/uv", inside::TOOLS))));
        }
        let mut env = inv.env.clone();
        // The shims' policy is fixed in their scripts: the environment also
        // carries it (for the hooks, which the harness runs with its own), but
        // a command could override a variable for the shim it starts.
        let mut shim_policy = vec![
            "--workspace".to_string(),
            inside::WORKSPACE.to_string(),
            "--home".to_string(),
            inside::HOME.to_string(),
            "--branch".to_string(),
            prepared.branch.clone(),
            "--default-branch".to_string(),
            prepared.base_branch.clone(),
        ];
        if spec.agent_git {
            shim_policy.push("--push-only-run-branch".to_string());
            if let Some(b) = spec
                .agent_branches
                .iter()
                .find(|b| **b == prepared.base_branch)
            {
                return Err(RunError::invalid(format!(
                    "--agent-branch {b}: the default branch is never the agent's to push"
                )));
            }
            for b in &spec.agent_branches {
                shim_policy.extend(["--push-branch".to_string(), b.clone()]);
            }
            if spec.allow_force_push {
                shim_policy.push("--allow-force-push-to-run-branch".to_string());
            }
        }
        let mut entry = Vec::new();
        match self.guard_mounts(&run_dir, &shim_policy) {
            Ok((mounts, real_git)) => {
                ro_mounts.extend(mounts);
                // Every sandboxed command starts behind errand's git gate: the
                // real git is reachable only through the shim (see the cli's gate.rs).
                let confinable = git_confinement_available();
                entry = vec![
                    format!("{}/errand", inside::TOOLS),
                    "guard".into(),
                    "enter".into(),
                ];
                entry.extend(shim_policy.iter().cloned());
                entry.extend(["--real".into(), real_git.to_string_lossy().into_owned()]);
                // Where this machine's kernel confines, a sandbox that cannot is
                // a failure, never a silent fallback (the kubernetes nodes' kernels
                // are not this one's).
                if confinable && self.sandbox.name() != "kubernetes" {
                    entry.push("--require".into());
                }
                entry.push("--".into());
                em.notice(if confinable {
                    "git: the sandbox's git binaries run only through errand's guard (Landlock);                      a git the agent brings itself is still held by the git proxy and the forge"
                        .to_string()
                } else {
                    "git: this kernel has no Landlock, so the sandbox's git binaries are reachable                      by path; the guard sees only git on PATH"
                        .to_string()
                })
                .map_err(log_failed)?;
                env.extend([
                    (
                        "ERRAND_GUARD_WORKSPACE".to_string(),
                        inside::WORKSPACE.to_string(),
                    ),
                    ("ERRAND_GUARD_HOME".to_string(), inside::HOME.to_string()),
                    ("ERRAND_GUARD_BRANCH".to_string(), prepared.branch.clone()),
                    (
                        "ERRAND_GUARD_DEFAULT_BRANCH".to_string(),
                        prepared.base_branch.clone(),
                    ),
                    // The guard runs as errand inside the sandbox: it must stay quiet and local.
                    ("ERRAND_LOG".to_string(), "error".to_string()),
                ]);
            }
            Err(why) => {
                // The agent's pushes are kept to its branch by the guard alone.
                if spec.agent_git {
                    return Err(RunError::invalid(format!(
                        "--agent-git needs errand's command guard in the sandbox, which is not available: {why}"
                    )));
                }
                em.notice(format!(
                    "the command guard is not available in this sandbox: {why}"
                ))
                .map_err(log_failed)?
            }
        }
        // The environment of the steps after the agent's, which get no git credentials.
        let env_after = env.clone();
        let git_proxy = match (spec.agent_git, access) {
            (true, Some(a)) => {
                let kubernetes = self.sandbox.name() == "kubernetes";
                let current = a.clone();
                let proxy = gitproxy::GitProxy::new(gitproxy::Config {
                    owner: a.owner.clone(),
                    repo: a.repo.clone(),
                    upstream: a.url.clone(),
                    branches: std::iter::once(prepared.branch.clone())
                        .chain(spec.agent_branches.iter().cloned())
                        .collect(),
                    allow_force: spec.allow_force_push,
                    auth: Arc::new(move || current.token().basic_auth_header()),
                    scratch: run_dir.join("git-proxy"),
                    max_push: gitproxy::DEFAULT_MAX_PUSH,
                })
                .map_err(|e| RunError::host(e.to_string()))?;
                // git in the sandbox reaches the run's repository only as errand's
                // proxy URL; it holds no token, the proxy adds it outside.
                let (serving, url, shown) = if kubernetes {
                    // Pods have no egress proxy: they reach errand's hub over the
                    // cluster network, under a capability that is the run's alone.
                    let (listen, base) = self.kubernetes_git_proxy()?;
                    let reg = gitproxy::Hub::shared(listen)
                        .register(proxy.clone())
                        .await
                        .map_err(|e| RunError::host(format!("agent git: {e}")))?;
                    // A secret for the run's life: never in events or output.
                    em.redactor.add(reg.capability());
                    let url = reg.url(base, &proxy);
                    let shown = format!(
                        "{}/<run capability>{}",
                        base.trim_end_matches('/'),
                        proxy.repo_path()
                    );
                    (ProxyServing::Hub { _registration: reg }, url, shown)
                } else {
                    let socket = errand_sandbox::socket::private_path("git-proxy")
                        .map_err(|e| RunError::host(format!("agent git: {e}")))?;
                    let serving = proxy
                        .serve_unix(&socket)
                        .map_err(|e| RunError::host(e.to_string()))?;
                    let url = proxy.sandbox_url();
                    (ProxyServing::Socket(serving), url.clone(), url)
                };
                insteadof_env(&mut env, &url, &a.url);
                env.push(("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()));
                env.push((
                    "ERRAND_GUARD_PUSH_ONLY_RUN_BRANCH".to_string(),
                    "1".to_string(),
                ));
                // The same policy for Claude Code's hook, which reads its variables.
                if !spec.agent_branches.is_empty() {
                    env.push((
                        "ERRAND_GUARD_PUSH_BRANCHES".to_string(),
                        spec.agent_branches.join(","),
                    ));
                }
                if spec.allow_force_push {
                    env.push((
                        "ERRAND_GUARD_ALLOW_FORCE_PUSH_TO_RUN_BRANCH".to_string(),
                        "true".to_string(),
                    ));
                }
                if kubernetes {
                    em.notice(format!(
                        "agent git: the pod reaches errand's git proxy at {shown} over the cluster network; \
                         the capability in that URL is a secret of this run, ends with it and grants only \
                         this run's ref rules; the token never enters the pod"
                    ))
                    .map_err(log_failed)?;
                }
                let mut may_push = vec![prepared.branch.clone()];
                may_push.extend(spec.agent_branches.iter().cloned());
                em.notice(format!(
                    "agent git: git in the sandbox reaches {}/{} through errand's git proxy ({shown}) and holds no token; \
                     the proxy adds it outside the sandbox ({}) and lets it push {} only: no other ref, no deletion, \
                     {}",
                    a.owner,
                    a.repo,
                    if spec.push { "fetch and push" } else { "fetch; the token is read-only without --push" },
                    may_push.join(", "),
                    if spec.allow_force_push { "force pushes allowed (--allow-force-push)" } else { "no force push" },
                ))
                .map_err(log_failed)?;
                Some((proxy, serving))
            }
            (true, _) => {
                return Err(RunError::forge(
                    "--agent-git needs the run's GitHub token, and this run has none",
                ))
            }
            (false, _) => None,
        };
        let route = git_proxy.as_ref().map(|(_, serving)| match serving {
            ProxyServing::Socket(s) => GitRoute::Socket(errand_sandbox::egress::route_entry(
                gitproxy::MAGIC_HOST,
                s.path(),
            )),
            ProxyServing::Hub { .. } => {
                GitRoute::Address(self.hub_destination().unwrap_or_default())
            }
        });
        let (network, policy) = self.network(
            harness,
            ctx,
            inv,
            prepared.remote.as_deref(),
            route.as_ref(),
        )?;
        em.notice(policy).map_err(log_failed)?;
        let mut sb_spec = SandboxSpec {
            name: id.short(),
            workspace: workspace.clone(),
            home: home.clone(),
            tmp: tmp.clone(),
            ro_mounts,
            env,
            limits: self.limits.clone(),
            network,
            entry,
        };

        if spec.repo.is_none() && !is_follow_up {
            self.make_venv(&sb_spec, uv.is_some(), em, &run_until)
                .await?;
        }

        // Git in the sandbox must never be handed an expired token, however long the agent works.
        let renewer = match (&git_proxy, access, &self.github) {
            (Some(_), Some(a), Some(gh)) => {
                let redactor = em.redactor.clone();
                Some(forge::Renewer::start(gh.clone(), a.clone(), move |t| {
                    redactor.add(t)
                }))
            }
            _ => None,
        };

        self.transition(id, em, RunState::Running).await?;
        let parser = harness.parser_for(ctx);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(spec.timeout_secs);
        let outcome = self
            .run_harness(id, &sb_spec, inv, parser, em, cancel, spec.timeout_secs)
            .await;
        if let Some(r) = renewer {
            for note in r.finish().await {
                em.notice(note).map_err(log_failed)?;
            }
        }
        // The agent is done: its git proxy serves no more, and the steps after
        // it (committing leftovers, the test command) run without a route to it.
        if let Some((proxy, serving)) = git_proxy {
            drop(serving);
            // Its scratch repository (the remote's objects, spooled pushes) is not kept.
            let _ = std::fs::remove_dir_all(run_dir.join("git-proxy"));
            let refused = proxy.refused();
            let mut n = format!(
                "agent git: errand's git proxy answered {} request(s)",
                proxy.forwarded()
            );
            if !refused.is_empty() {
                n.push_str(&format!(
                    " and refused {}: {}",
                    refused.len(),
                    refused.join("; ")
                ));
            }
            em.notice(n).map_err(log_failed)?;
            if let (NetworkPolicy::Isolated(e), Some(r)) = (&mut sb_spec.network, &route) {
                // (An address the configuration allowlists itself stays.)
                if !self.egress.allow.iter().any(|a| a == r.entry()) {
                    e.allow.retain(|a| a != r.entry());
                }
            }
            sb_spec.env = env_after;
        }
        let outcome = outcome?;

        self.transition(id, em, RunState::Finishing).await?;
        // The steps after the agent end by the run's deadline, or in a few
        // minutes when the agent used it up; a cancel ends them at once.
        let until = Until {
            id,
            cancel: cancel.clone(),
            deadline: std::cmp::max(
                deadline,
                tokio::time::Instant::now() + finish_grace(spec.timeout_secs),
            ),
        };
        let message =
            errand_git::commit_message(outcome.text.as_deref(), &spec.prompt, &id.short());
        let mut commit_spec = sb_spec.clone();
        commit_spec
            .env
            .push((errand_git::COMMIT_MESSAGE_VAR.to_string(), message.clone()));
        let out = self
            .sandboxed_sh(&commit_spec, &errand_git::commit_leftovers_script(), &until)
            .await?;
        if !out.trim().is_empty() {
            em.notice(out.trim().to_string()).map_err(log_failed)?;
        }
        self.export_branch(&sb_spec, prepared, &run_dir, &until)
            .await?;
        let collected = errand_git::collect(prepared)
            .await
            .map_err(|e| RunError::git(e.to_string()))?;
        let mut summary = RunSummary {
            branch: Some(prepared.branch.clone()),
            commit: Some(collected.commit.clone()),
            diffstat: Some(collected.shortstat.clone()),
            pushed: false,
            turns: outcome.turns,
            input_tokens: Some(outcome.usage.input_tokens),
            output_tokens: Some(outcome.usage.output_tokens),
            cost_usd: outcome.usage.cost_usd,
            result_text: outcome.text.clone(),
            session_id: outcome.session_id.clone(),
            tests_passed: None,
            pr_url: None,
        };
        em.emit(
            EventSource::Errand,
            None,
            EventKind::RunDiff {
                base_commit: prepared.base_commit.clone(),
                commit: collected.commit.clone(),
                stat: collected.stat.clone(),
                diff: collected.diff.clone(),
                truncated: collected.diff_truncated,
            },
        )
        .map_err(log_failed)?;
        em.notice(format!(
            "{} at {}: {} commit(s), {}",
            prepared.branch,
            short(&collected.commit),
            collected.commits,
            if collected.shortstat.is_empty() {
                "no changes"
            } else {
                &collected.shortstat
            }
        ))
        .map_err(log_failed)?;
        if let Some(cmd) = &spec.test_command {
            // The repository's own tests, in the sandbox, without the harness's secrets.
            let env: Vec<(String, String)> = sb_spec
                .env
                .iter()
                .filter(|(_, v)| !inv.secrets.contains(v))
                .cloned()
                .collect();
            let test_spec = SandboxSpec {
                env,
                ..sb_spec.clone()
            };
            em.notice(format!("running the test command: {cmd}"))
                .map_err(log_failed)?;
            let (passed, output) = self.sandboxed_output(&test_spec, cmd, &until).await?;
            let tail: Vec<&str> = output
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            em.notice(format!(
                "test command {}{}",
                if passed { "passed" } else { "failed" },
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(":\n{}", tail.join("\n"))
                }
            ))
            .map_err(log_failed)?;
            summary.tests_passed = Some(passed);
        }
        if spec.push {
            // A long run outlives GitHub's one-hour token.
            if let (Some(gh), Some(a)) = (&self.github, access) {
                let redactor = em.redactor.clone();
                match gh.renew_if_expiring(a, |t| redactor.add(t)).await {
                    Ok(true) => em.notice(format!(
                        "renewed the run's token for {}/{} before pushing (the old one is revoked when the run ends)",
                        a.owner, a.repo
                    )),
                    Ok(false) => Ok(()),
                    Err(e) => em.notice(format!(
                        "renewing the run's token for {}/{} failed ({e}); pushing with the current one",
                        a.owner, a.repo
                    )),
                }
                .map_err(log_failed)?;
            }
            em.notice(format!("pushing {}", prepared.branch))
                .map_err(log_failed)?;
            let auth = access.map(|a| a.git_auth());
            errand_git::push(prepared, auth.as_ref())
                .await
                .map_err(|e| RunError::git(e.to_string()))?;
            summary.pushed = true;
            summary.pr_url = rec.summary.pr_url.clone();
            if let (Some(gh), Some(a), None) = (&self.github, access, &summary.pr_url) {
                if collected.commits == 0 {
                    em.notice("no pull request: the run changed nothing")
                        .map_err(log_failed)?;
                } else {
                    let trace = self
                        .public_url
                        .as_ref()
                        .map(|u| format!("{}/runs/{id}", u.trim_end_matches('/')));
                    let pull = errand_github::NewPull {
                        title: forge::pull_title(&message),
                        head: prepared.branch.clone(),
                        base: prepared.base_branch.clone(),
                        body: em.redactor.redact(&forge::pull_body(
                            &spec.prompt,
                            outcome.text.as_deref(),
                            &collected.shortstat,
                            trace.as_deref(),
                            spec.requested_by.as_deref(),
                        )),
                        draft: false,
                    };
                    let pr = gh.open_pull(a, &pull).await.map_err(|e| {
                        RunError::forge(format!(
                            "pushed {} but could not open a pull request: {e}",
                            prepared.branch
                        ))
                    })?;
                    em.notice(format!(
                        "opened pull request #{}: {}",
                        pr.number, pr.html_url
                    ))
                    .map_err(log_failed)?;
                    summary.pr_url = Some(pr.html_url);
                }
            }
        }
        Ok(summary)
    }
}

/// How much of a failed step's output a run's reason quotes.
const REASON_TAIL: usize = 2000;

/// The last `n` characters of `s`, marked when cut.
fn last_chars(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        s.to_string()
    } else {
        format!("…{}", s.chars().skip(count - n).collect::<String>())
    }
}

fn human_secs(s: u64) -> String {
    if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn short(sha: &str) -> &str {
    sha.get(..8).unwrap_or(sha)
}

fn log_failed(e: StoreError) -> RunError {
    RunError::Log(e)
}

fn write_file(path: &Path, contents: &str) -> Result<(), RunError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)
            .map_err(|e| RunError::host(format!("cannot create {}: {e}", d.display())))?;
    }
    std::fs::write(path, contents)
        .map_err(|e| RunError::host(format!("cannot write {}: {e}", path.display())))
}

/// The first `name` on PATH that is a native executable (ELF), with symlinks resolved.
fn which_executable(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .filter_map(|p| p.canonicalize().ok())
        .find(|p| {
            let mut magic = [0u8; 4];
            std::fs::File::open(p)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok()
                && magic == *b"\x7fELF"
        })
}

/// Whether a process with this id exists (for finding runs whose errand died).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Ends runs left `preparing`/`running`/`finishing` by an errand process that is
/// gone (killed, crashed, machine rebooted), so none stays "running" forever.
pub async fn reap_orphans(store: &dyn Store) -> Result<Vec<RunId>, StoreError> {
    let mut reaped = Vec::new();
    for r in store
        .list_runs(&errand_store::RunFilter {
            limit: 200,
            ..Default::default()
        })
        .await?
    {
        if r.state.is_terminal() || r.state == RunState::Queued {
            continue;
        }
        // Runs claimed by a worker (maybe on another machine) are the worker
        // pool's to account for, through leases; a local pid means nothing there.
        if store.claim_info(r.id).await?.is_some() {
            continue;
        }
        let gone = r.owner_pid.is_none_or(|p| !pid_alive(p));
        if gone {
            store
                .transition(
                    r.id,
                    RunState::Failed,
                    Some("the errand process running it exited before the run finished"),
                )
                .await?;
            reaped.push(r.id);
        }
    }
    Ok(reaped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::DenialLog;
    use crate::assemble::model_endpoints;
    use crate::emit::redact_kind;

    #[tokio::test]
    async fn guard_denials_become_refused_calls_whole_lines_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let mut log = DenialLog::new(dir.path().to_path_buf(), "d.jsonl".into());
        assert!(log.poll().await.is_empty(), "no file yet");
        std::fs::write(
            &path,
            "{\"command\":\"git push --force\",\"reason\":\"push-force: no\"}\n{\"command\":\"rm -r",
        )
        .unwrap();
        let ev = log.poll().await;
        assert_eq!(ev.len(), 2, "{ev:?}");
        match &ev[1] {
            EventKind::ToolResult {
                output, is_error, ..
            } => {
                assert!(*is_error);
                assert_eq!(
                    output,
                    "errand guard: refused `git push --force`: push-force: no"
                );
            }
            other => panic!("{other:?}"),
        }
        // The torn second line waits until it is whole.
        assert!(log.poll().await.is_empty());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b" /\",\"reason\":\"rm-root\"}\n").unwrap();
        let ev = log.poll().await;
        assert_eq!(ev.len(), 2);
        assert!(matches!(&ev[0], EventKind::ToolCall { id, input, .. }
            if id == "errand-guard-2" && input["command"] == "rm -r /"));
    }

    #[tokio::test]
    async fn a_planted_guard_log_is_never_followed_or_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        std::fs::write(&canary, "{\"command\":\"host secret\",\"reason\":\"x\"}\n").unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::symlink(&canary, home.join("d.jsonl")).unwrap();
        let mut log = DenialLog::new(home.clone(), "d.jsonl".into());
        let ev = log.poll().await;
        assert!(
            matches!(&ev[..], [EventKind::Warning { message }] if !message.contains("host secret")),
            "{ev:?}"
        );
        assert!(log.poll().await.is_empty(), "read no more");
        // A FIFO: the poll returns at once instead of waiting for a writer.
        let fifo = home.join("f.jsonl");
        let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let mut log = DenialLog::new(home, "f.jsonl".into());
        let ev = tokio::time::timeout(Duration::from_secs(5), log.poll())
            .await
            .expect("no hang");
        assert_eq!(ev.len(), 1);
    }

    #[test]
    fn secrets_are_redacted_from_text_and_events() {
        let secrets = Redactor::new(["sk-ant-12345"]);
        let k = EventKind::ToolResult {
            id: "t".into(),
            output: "ANTHROPIC_API_KEY=sk-ant-12345".into(),
            is_error: false,
            exit_code: Some(0),
        };
        match redact_kind(k, &secrets) {
            EventKind::ToolResult { output, .. } => {
                assert_eq!(output, "ANTHROPIC_API_KEY=[REDACTED]")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_allowlist_starts_from_the_harnesss_model_endpoint() {
        let ctx = |env: &[(&str, &str)]| RunContext {
            prompt: String::new(),
            model: None,
            max_turns: 1,
            branch: "b".into(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            install_dir: PathBuf::new(),
            extra_path: vec![],
            extra_env: vec![],
            agent_git: false,
        };
        let inv = |env: &[(&str, &str)]| Invocation {
            command: CommandLine::new("x", Vec::<String>::new()),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            home_files: vec![],
            secrets: vec![],
        };
        let claude = errand_harness::ClaudeCode;
        let codex = errand_harness::Codex;
        assert_eq!(
            model_endpoints(&claude, &ctx(&[]), &inv(&[])),
            ["api.anthropic.com:443"]
        );
        let local = ctx(&[
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:8087"),
            ("OPENAI_BASE_URL", "http://localhost:9/v1"),
        ]);
        assert_eq!(
            model_endpoints(&claude, &local, &inv(&[])),
            ["127.0.0.1:8087"]
        );
        // Codex passes its endpoint in a generated config, not its environment.
        assert_eq!(model_endpoints(&codex, &local, &inv(&[])), ["localhost:9"]);
        assert_eq!(
            model_endpoints(&codex, &ctx(&[]), &inv(&[])),
            ["api.openai.com:443"]
        );
        // A configured command: what it passes.
        let custom = errand_harness::CustomHarness {
            name: "mine".into(),
            command: vec!["mine".into()],
            format: errand_harness::CustomFormat::Errand,
            env: vec![],
            dir: None,
        };
        assert!(model_endpoints(&custom, &ctx(&[]), &inv(&[])).is_empty());
        assert_eq!(
            model_endpoints(
                &custom,
                &ctx(&[]),
                &inv(&[("GOOGLE_GEMINI_BASE_URL", "https://gw.example:8443/g")])
            ),
            ["gw.example:8443"]
        );
    }

    #[test]
    fn refusals_become_one_notice() {
        assert_eq!(refusal_notice(&[]), None);
        let r = |d: &str, n| egress::Refusal {
            destination: d.into(),
            reason: "not on the allowlist".into(),
            count: n,
        };
        assert_eq!(
            refusal_notice(&[r("a.com:443", 1), r("b.com:80", 3)]).as_deref(),
            Some(
                "egress: errand's proxy refused 2 destination(s): a.com:443 (not on the allowlist); \
                 b.com:80 ×3 (not on the allowlist)"
            )
        );
    }

    #[test]
    fn reasons_quote_only_the_end_of_a_long_output() {
        assert_eq!(last_chars("abc", 5), "abc");
        assert_eq!(last_chars("abcdef", 3), "…def");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_secs(1800), "30m");
        assert_eq!(human_secs(5), "5s");
    }

    /// A kubernetes-like backend: no egress proxy, the allowlist by address.
    struct Pods;

    #[async_trait::async_trait]
    impl errand_sandbox::Sandbox for Pods {
        fn name(&self) -> &'static str {
            "kubernetes"
        }
        async fn check(&self) -> Result<(), errand_sandbox::SandboxError> {
            Ok(())
        }
        fn allowlists_by_address(&self) -> bool {
            true
        }
        async fn spawn(
            &self,
            _: &SandboxSpec,
            _: &CommandLine,
        ) -> Result<errand_sandbox::SandboxProcess, errand_sandbox::SandboxError> {
            Err(errand_sandbox::SandboxError::Setup("not here".into()))
        }
    }

    async fn pods_runner(listen: Option<&str>, url: Option<&str>) -> Runner {
        Runner {
            store: Arc::new(errand_store::SqliteStore::in_memory().await.unwrap()),
            sandbox: Arc::new(Pods),
            paths: Paths {
                home: PathBuf::from("/nonexistent-errand"),
                cache: PathBuf::from("/nonexistent-errand"),
            },
            env: BTreeMap::new(),
            cwd: PathBuf::from("/"),
            limits: Limits::default(),
            harnesses: errand_harness::Registry::default(),
            cancel_poll: Duration::from_secs(1),
            github: None,
            public_url: None,
            observer: None,
            egress: EgressSettings {
                allowlist: true,
                ..Default::default()
            },
            kubernetes_git_proxy_listen: listen.map(String::from),
            kubernetes_git_proxy_url: url.map(String::from),
        }
    }

    #[tokio::test]
    async fn agent_git_on_kubernetes_needs_both_keys_and_allows_errands_address() {
        for (listen, url) in [
            (None, None),
            (Some("0.0.0.0:8471"), None),
            (None, Some("http://10.0.0.5:8471")),
        ] {
            let r = pods_runner(listen, url).await;
            let err = r.kubernetes_git_proxy().unwrap_err().to_string();
            assert!(
                err.contains("sandbox.kubernetes_git_proxy_listen")
                    && err.contains("sandbox.kubernetes_git_proxy_url"),
                "{err}"
            );
            assert_eq!(r.hub_destination(), None);
        }
        let bad = pods_runner(Some("0.0.0.0:8471"), Some("errand:8471")).await;
        assert!(bad.kubernetes_git_proxy().is_err());

        let r = pods_runner(Some("0.0.0.0:8471"), Some("http://10.0.0.5:8471/")).await;
        assert_eq!(
            r.kubernetes_git_proxy().unwrap(),
            ("0.0.0.0:8471", "http://10.0.0.5:8471/")
        );
        let dest = r.hub_destination().unwrap();
        assert_eq!(dest, "10.0.0.5:8471");
        let ctx = RunContext {
            prompt: String::new(),
            model: None,
            max_turns: 1,
            branch: "b".into(),
            env: BTreeMap::new(),
            install_dir: PathBuf::new(),
            extra_path: vec![],
            extra_env: vec![],
            agent_git: true,
        };
        let inv = Invocation {
            command: CommandLine::new("x", Vec::<String>::new()),
            env: vec![],
            home_files: vec![],
            secrets: vec![],
        };
        let (network, notice) = r
            .network(
                &errand_harness::ClaudeCode,
                &ctx,
                &inv,
                Some("https://github.com/acme/widgets.git"),
                Some(&GitRoute::Address(dest.clone())),
            )
            .unwrap();
        let NetworkPolicy::Isolated(egress) = network else {
            panic!("open network")
        };
        assert_eq!(egress.allow, ["api.anthropic.com:443", "10.0.0.5:8471"]);
        assert!(
            notice.contains("errand's git proxy at 10.0.0.5:8471"),
            "{notice}"
        );
        // The pod's NetworkPolicy allows exactly errand's address and port.
        let (allowed, skipped) =
            errand_sandbox::kubernetes::allowlist_destinations(&egress.allow[1..])
                .await
                .unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(
            allowed,
            [errand_sandbox::kubernetes::Allowed {
                cidr: errand_sandbox::kubernetes::Cidr::parse("10.0.0.5/32").unwrap(),
                port: Some(8471),
            }]
        );
    }
}

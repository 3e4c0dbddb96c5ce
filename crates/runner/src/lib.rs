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

pub mod forge;
pub mod gitproxy;
mod hostfs;
mod limits;
mod paths;
pub mod secrets;

pub use forge::GithubForge;
pub use limits::{
    MAX_EVENTS, MAX_EVENT_STRING, MAX_LINE_BYTES, MAX_RAW_BYTES, MAX_STDERR_BYTES,
};
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

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a run stopped early. Its message is the reason recorded on the run.
#[derive(Debug)]
struct Stop {
    state: RunState,
    reason: String,
}

impl Stop {
    fn failed(reason: impl Into<String>) -> Stop {
        Stop {
            state: RunState::Failed,
            reason: reason.into(),
        }
    }
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

/// How a run's git proxy is served while its agent works.
enum ProxyServing {
    /// On a private Unix socket, reached through the egress proxy.
    Socket(gitproxy::Serving),
    /// In the process's TCP hub under the run's capability (kubernetes).
    Hub {
        /// Held for its drop, which removes the run's capability.
        _registration: gitproxy::Registration,
    },
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

/// The variables that name a harness's model endpoint, with the public endpoint used without them.
const MODEL_ENDPOINTS: &[(&str, &str)] = &[
    ("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
    ("OPENAI_BASE_URL", "https://api.openai.com"),
    (
        "GOOGLE_GEMINI_BASE_URL",
        "https://generativelanguage.googleapis.com",
    ),
    ("AMP_URL", "https://ampcode.com"),
];

/// The model endpoints of a harness, as allowlist entries: the variables it
/// declares or passes, from the run's environment, else their public default.
fn model_endpoints(
    harness: &dyn errand_harness::Harness,
    ctx: &RunContext,
    inv: &Invocation,
) -> Vec<String> {
    let mut out = Vec::new();
    for (var, default) in MODEL_ENDPOINTS {
        let passed = inv.env.iter().find(|(k, _)| k == var).map(|(_, v)| v);
        let declared = harness.env_vars().iter().any(|v| v.name == *var);
        if !declared && passed.is_none() {
            continue;
        }
        let url = ctx
            .env
            .get(*var)
            .or(passed)
            .filter(|v| !v.trim().is_empty())
            .map_or(*default, String::as_str);
        if let Some(d) = egress::url_destination(url) {
            out.push(d);
        }
    }
    out
}

/// One line naming what the egress proxy refused.
fn refusal_notice(refused: &[egress::Refusal]) -> Option<String> {
    if refused.is_empty() {
        return None;
    }
    let list: Vec<String> = refused
        .iter()
        .map(|r| {
            let times = if r.count > 1 {
                format!(" ×{}", r.count)
            } else {
                String::new()
            };
            format!("{}{times} ({})", r.destination, r.reason)
        })
        .collect();
    Some(format!(
        "egress: errand's proxy refused {} destination(s): {}",
        refused.len(),
        list.join("; ")
    ))
}

/// `GIT_CONFIG_*` entries, appended to any already in `env`, that make git
/// use `proxy_url` wherever the repository is named `remote_url`.
/// Configuration only, no secret.
fn insteadof_env(env: &mut Vec<(String, String)>, proxy_url: &str, remote_url: &str) {
    let count = env
        .iter()
        .rev()
        .find(|(k, _)| k == "GIT_CONFIG_COUNT")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    env.retain(|(k, _)| k != "GIT_CONFIG_COUNT");
    let entries = [
        (format!("url.{proxy_url}.insteadOf"), remote_url.to_string()),
        // No helper: there is nothing to ask for, and nothing to prompt.
        ("credential.helper".to_string(), String::new()),
    ];
    for (i, (k, v)) in entries.iter().enumerate() {
        env.push((format!("GIT_CONFIG_KEY_{}", count + i), k.clone()));
        env.push((format!("GIT_CONFIG_VALUE_{}", count + i), v.clone()));
    }
    env.push((
        "GIT_CONFIG_COUNT".to_string(),
        (count + entries.len()).to_string(),
    ));
}

/// How the sandbox reaches the run's git proxy, as an egress allowlist entry.
enum GitRoute {
    /// A route of the egress proxy to the proxy's Unix socket.
    Socket(String),
    /// errand's hub, `host:port`, allowed by address (kubernetes).
    Address(String),
}

impl GitRoute {
    fn entry(&self) -> &str {
        match self {
            GitRoute::Socket(e) | GitRoute::Address(e) => e,
        }
    }
}

/// Hears about each state a run enters, in order, from the process running it.
/// Implementations must return at once (queue the work): the run does not wait.
pub trait RunObserver: Send + Sync {
    fn state_changed(&self, run: &RunRecord);
}

/// Receives install progress while the harness is being installed.
pub type ProgressFn = Arc<dyn Fn(&str) + Send + Sync>;

/// Writes events to the run's log and forwards them to a live viewer.
struct Emitter {
    log: EventLog,
    tx: Option<mpsc::UnboundedSender<Event>>,
    redactor: SharedRedactor,
    /// To the task that copies events and raw lines into the store, where
    /// every node (API, viewer, other workers) can read them.
    sink: mpsc::UnboundedSender<Persist>,
    /// Bytes handed to the pump and not yet taken (the harness's output waits above a limit).
    backlog: Arc<std::sync::atomic::AtomicUsize>,
    /// What the trace may still take from the harness (events, raw bytes).
    budget: limits::TraceBudget,
}

/// The run's redactor, shared by the emitter, the task reading the harness's
/// stderr and the token renewer, which adds each renewed token to it before
/// the token can reach the sandbox.
#[derive(Clone, Default)]
struct SharedRedactor(Arc<std::sync::RwLock<Redactor>>);

impl SharedRedactor {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Redactor> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn set(&self, r: Redactor) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = r;
    }
    fn add(&self, secret: &str) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add(secret);
    }
    fn redact(&self, text: &str) -> String {
        self.read().redact(text)
    }
}

/// Whether this machine's kernel can confine a sandbox's git (Landlock, any ABI).
fn git_confinement_available() -> bool {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the version query takes no pointer and creates nothing.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    abi >= 1
}

/// Where the guard's `git`/`rm` shims are mounted inside every sandbox.
pub const GUARD_SHIMS: &str = "/opt/errand/shims";
/// Where the real `git`/`rm` are mounted when the shims take their usual paths.
pub const GUARD_REAL: &str = "/opt/errand/real";

/// Events this process has written to the store (for `/metrics`).
pub static EVENTS_STORED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What the store pump persists.
enum Persist {
    Event(Event),
    Raw(u64, String),
}

impl Persist {
    /// About how much memory it holds while queued.
    fn size(&self) -> usize {
        match self {
            Persist::Event(e) => limits::approx_size(&e.kind),
            Persist::Raw(_, l) => l.len() + 32,
        }
    }
}

/// Copies a run's events and raw lines into the store, in batches, in order.
async fn pump(
    store: Arc<dyn Store>,
    run: RunId,
    mut rx: mpsc::UnboundedReceiver<Persist>,
    backlog: Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    let mut events: Vec<Event> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 500 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        for p in batch {
            backlog.fetch_sub(p.size(), Ordering::Relaxed);
            match p {
                Persist::Event(e) => events.push(e),
                Persist::Raw(n, line) => {
                    // Raw lines precede the events parsed from them.
                    if let Err(e) = store.append_raw(run, n, &line).await {
                        tracing::error!(run = %run, "storing raw line {n} failed: {e}");
                    }
                }
            }
        }
        if !events.is_empty() {
            let n = events.len() as u64;
            if let Err(e) = store.append_events(run, &events).await {
                tracing::error!(run = %run, "storing {} events failed: {e}", events.len());
            } else {
                EVENTS_STORED.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
            events.clear();
        }
    }
}

impl Emitter {
    fn emit(
        &mut self,
        source: EventSource,
        raw_line: Option<u64>,
        kind: EventKind,
    ) -> Result<(), StoreError> {
        // The agent decides how much the harness prints: its share of the
        // trace is capped in count and size, and the cut is an event itself.
        let kind = if source == EventSource::Harness {
            match self.budget.take_event() {
                limits::Take::Yes => limits::cap_strings(kind, MAX_EVENT_STRING),
                limits::Take::LastOne(warning) => {
                    self.append(EventSource::Errand, None, warning)?;
                    return Ok(());
                }
                limits::Take::No => return Ok(()),
            }
        } else {
            kind
        };
        self.append(source, raw_line, kind)
    }
    fn append(
        &mut self,
        source: EventSource,
        raw_line: Option<u64>,
        kind: EventKind,
    ) -> Result<(), StoreError> {
        let kind = {
            let redactor = self.redactor.read();
            if redactor.is_empty() {
                kind
            } else {
                redact_kind(kind, &redactor)
            }
        };
        let ev = self.log.append(source, raw_line, kind)?;
        self.queue(Persist::Event(ev.clone()));
        if let Some(tx) = &self.tx {
            let _ = tx.send(ev);
        }
        Ok(())
    }
    fn queue(&mut self, p: Persist) {
        self.backlog
            .fetch_add(p.size(), std::sync::atomic::Ordering::Relaxed);
        let _ = self.sink.send(p);
    }
    /// Bytes queued for the store and not yet taken.
    fn backlog(&self) -> usize {
        self.backlog.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn raw(&mut self, n: u64, line: &str) {
        self.queue(Persist::Raw(n, line.to_string()));
    }
    fn errand(&mut self, kind: EventKind) -> Result<(), StoreError> {
        self.emit(EventSource::Errand, None, kind)
    }
    fn notice(&mut self, message: impl Into<String>) -> Result<(), StoreError> {
        self.errand(EventKind::Notice {
            message: message.into(),
        })
    }
}

/// `s` as one single-quoted shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn redact_kind(kind: EventKind, redactor: &Redactor) -> EventKind {
    match serde_json::to_string(&kind) {
        Ok(s) if redactor.finds(&s) => {
            serde_json::from_str(&redactor.redact(&s)).unwrap_or(EventKind::Notice {
                message: "[event withheld: it contained a secret]".into(),
            })
        }
        _ => kind,
    }
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
            Err(stop) => (stop.state, Some(stop.reason)),
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
    async fn run_env(&self) -> Result<BTreeMap<String, String>, Stop> {
        let names = self
            .store
            .secret_names()
            .await
            .map_err(|e| Stop::failed(e.to_string()))?;
        let mut env = BTreeMap::new();
        if !names.is_empty() {
            let key = secrets::SecretKey::load(&self.paths.home)
                .map_err(|e| Stop::failed(e.to_string()))?;
            env = secrets::load_all(self.store.as_ref(), &key)
                .await
                .map_err(|e| Stop::failed(e.to_string()))?;
        }
        env.extend(self.env.clone());
        Ok(env)
    }

    async fn transition(&self, id: RunId, em: &mut Emitter, to: RunState) -> Result<(), Stop> {
        let rec = self
            .store
            .transition(id, to, None)
            .await
            .map_err(|e| Stop::failed(e.to_string()))?;
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
    ) -> Result<RunSummary, Stop> {
        let id = rec.id;
        let spec = &rec.spec;
        let run_dir = self.paths.run_dir(id);
        let workspace = run_dir.join("workspace");
        let home = run_dir.join("home");

        // Cheap checks first, so a typo costs no clone.
        let harness = self
            .harnesses
            .get(&spec.harness)
            .map_err(|e| Stop::failed(e.to_string()))?;
        if spec.model.is_some() && !harness.capabilities().model_choice {
            return Err(Stop::failed(format!(
                "{} does not let errand choose the model; drop --model",
                harness.name()
            )));
        }
        if spec.push && spec.repo.is_none() {
            return Err(Stop::failed(
                "--push needs --repo: a run without a repository has nowhere to push",
            ));
        }
        if !spec.agent_git && (!spec.agent_branches.is_empty() || spec.allow_force_push) {
            return Err(Stop::failed(
                "--agent-branch and --allow-force-push need --agent-git: they say what the agent may push itself",
            ));
        }
        for name in &spec.agent_branches {
            errand_core::check_branch_name(name)
                .map_err(|e| Stop::failed(format!("--agent-branch: {e}")))?;
        }
        if spec.agent_git {
            if spec.repo.as_ref().is_none_or(|r| r.github().is_none()) {
                return Err(Stop::failed(
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
            .map_err(|e| Stop::failed(e.to_string()))?;
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
                    return Err(Stop::failed(format!(
                        "{} does not support follow-ups: start a new run instead",
                        harness.name()
                    )));
                }
                ctx.prompt = message.to_string();
                Some(rec.summary.session_id.clone().ok_or_else(|| {
                    Stop::failed("the run's first turn recorded no harness session to continue")
                })?)
            }
            None => None,
        };
        let invocation = |ctx: &RunContext| match &session {
            Some(s) => harness.follow_up_invocation(ctx, s),
            None => harness.invocation(ctx),
        };
        // Validates the environment (e.g. the API key) before anything slow happens.
        invocation(&ctx).map_err(|e| Stop::failed(e.to_string()))?;
        // Only now, with the cheap checks passed, is a repository token minted.
        let remote = match &spec.repo {
            Some(src) if src.github().is_some() => {
                let (owner, repo) = src.github().unwrap_or_default();
                let gh = self.github.as_ref().ok_or_else(|| {
                    Stop::failed(format!(
                        "{owner}/{repo} is a GitHub repository, and this errand has no GitHub App \
                         configured ([github] app_id and private_key_file in its config)"
                    ))
                })?;
                let a = gh.access(owner, repo, spec.push).await.map_err(|e| {
                    Stop::failed(format!("no GitHub token for {owner}/{repo}: {e}"))
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
                    .map_err(|e| Stop::failed(e.to_string()))?,
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
                    .map_err(|e| Stop::failed(e.to_string()))?
            }
            (None, Some(dir)) => dir,
            // A command from the system: mount an empty directory in the harness's place.
            (None, None) => {
                let empty = run_dir.join("no-harness-dir");
                std::fs::create_dir_all(&empty)
                    .map_err(|e| Stop::failed(format!("cannot create {}: {e}", empty.display())))?;
                empty
            }
        };
        let inv = invocation(&ctx).map_err(|e| Stop::failed(e.to_string()))?;
        let mut secrets = inv.secrets.clone();
        if let Some(a) = access.as_ref() {
            secrets.push(a.token().token);
        }
        em.redactor.set(Redactor::new(&secrets));

        let prepared_file = run_dir.join("prepared.json");
        let prepared = if session.is_some() {
            let text = std::fs::read_to_string(&prepared_file).map_err(|e| {
                Stop::failed(format!(
                    "the run's workspace is gone ({e}); a follow-up needs the machine that ran the first turn"
                ))
            })?;
            let prepared: errand_git::Prepared = serde_json::from_str(&text).map_err(|e| {
                Stop::failed(format!("{} is corrupt: {e}", prepared_file.display()))
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
            .map_err(|e| Stop::failed(format!("cannot create {}: {e}", home.display())))?;
        for (rel, contents) in &inv.home_files {
            let (root, rel_path, bytes) = (home.clone(), PathBuf::from(rel), contents.clone());
            tokio::task::spawn_blocking(move || {
                hostfs::write_beneath(&root, &rel_path, bytes.as_bytes())
            })
            .await
            .map_err(|e| Stop::failed(format!("writing {rel} failed: {e}")))?
            .map_err(|e| Stop::failed(format!("cannot write {rel} in the agent's home: {e}")))?;
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
    ) -> Result<errand_git::Prepared, Stop> {
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
        .map_err(|e| Stop::failed(e.to_string()))?;
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
    ) -> Result<RunSummary, Stop> {
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
                return Err(Stop::failed(format!(
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
                    return Err(Stop::failed(format!(
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
                .map_err(|e| Stop::failed(e.to_string()))?;
                // git in the sandbox reaches the run's repository only as errand's
                // proxy URL; it holds no token, the proxy adds it outside.
                let (serving, url, shown) = if kubernetes {
                    // Pods have no egress proxy: they reach errand's hub over the
                    // cluster network, under a capability that is the run's alone.
                    let (listen, base) = self.kubernetes_git_proxy()?;
                    let reg = gitproxy::Hub::shared(listen)
                        .register(proxy.clone())
                        .await
                        .map_err(|e| Stop::failed(format!("agent git: {e}")))?;
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
                        .map_err(|e| Stop::failed(format!("agent git: {e}")))?;
                    let serving = proxy
                        .serve_unix(&socket)
                        .map_err(|e| Stop::failed(e.to_string()))?;
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
                return Err(Stop::failed(
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
            .map_err(|e| Stop::failed(e.to_string()))?;
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
                .map_err(|e| Stop::failed(e.to_string()))?;
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
                        Stop::failed(format!(
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

    /// Where pods reach errand's git proxy hub, as an allowlist entry (`host:port`).
    fn hub_destination(&self) -> Option<String> {
        self.kubernetes_git_proxy()
            .ok()
            .and_then(|(_, base)| egress::url_destination(base))
    }

    /// `[sandbox] kubernetes_git_proxy_listen` and `kubernetes_git_proxy_url`,
    /// which `--agent-git` needs on kubernetes.
    fn kubernetes_git_proxy(&self) -> Result<(&str, &str), Stop> {
        let listen = self
            .kubernetes_git_proxy_listen
            .as_deref()
            .filter(|s| !s.trim().is_empty());
        let url = self
            .kubernetes_git_proxy_url
            .as_deref()
            .filter(|s| !s.trim().is_empty());
        let (Some(listen), Some(url)) = (listen, url) else {
            return Err(Stop::failed(
                "--agent-git with the kubernetes sandbox needs sandbox.kubernetes_git_proxy_listen \
                 (where errand serves the git proxy, e.g. \"0.0.0.0:8471\") and \
                 sandbox.kubernetes_git_proxy_url (the URL pods reach it at, e.g. \
                 \"http://errand.errand.svc.cluster.local:8471\"): its pods have no egress proxy",
            ));
        };
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://"))
            || egress::url_destination(url).is_none()
        {
            return Err(Stop::failed(format!(
                "sandbox.kubernetes_git_proxy_url must be an http:// or https:// URL with a host, not {url:?}"
            )));
        }
        Ok((listen, url))
    }

    /// The run's network, and a notice saying which applies.
    fn network(
        &self,
        harness: &dyn errand_harness::Harness,
        ctx: &RunContext,
        inv: &Invocation,
        remote: Option<&str>,
        git_route: Option<&GitRoute>,
    ) -> Result<(NetworkPolicy, String), Stop> {
        let backend = self.sandbox.name();
        let by_address = self.sandbox.allowlists_by_address();
        if let Some(GitRoute::Address(a)) = git_route {
            // The kubernetes pod reaches errand's hub over the cluster's
            // network: with a NetworkPolicy, it must allow errand's address.
            if self.egress.allowlist && by_address && a.is_empty() {
                return Err(Stop::failed(
                    "--agent-git: sandbox.kubernetes_git_proxy_url names no host and port the pod's \
                     network policy could allow",
                ));
            }
        }
        // Without a NetworkPolicy the pod has the namespace's network: nothing to allow.
        let git_route = git_route.filter(|r| by_address || !matches!(r, GitRoute::Address(_)));
        if !self.egress.allowlist && matches!(git_route, Some(GitRoute::Socket(_))) {
            return Err(Stop::failed(
                "--agent-git needs sandbox.egress = \"allowlist\": git in the sandbox reaches errand's git proxy \
                 through the egress proxy",
            ));
        }
        if !self.egress.allowlist {
            return Ok((
                NetworkPolicy::Open,
                format!(
                    "egress: open (sandbox.egress = \"open\"): the {backend} sandbox's own network"
                ),
            ));
        }
        if matches!(git_route, Some(GitRoute::Socket(_)))
            && (by_address || !self.sandbox.isolates_network())
        {
            return Err(Stop::failed(format!(
                "--agent-git needs errand's egress proxy, which the {backend} sandbox does not have"
            )));
        }
        if !self.sandbox.isolates_network() && !by_address {
            return Ok((
                NetworkPolicy::Open,
                format!(
                    "egress: the {backend} sandbox has no egress proxy: its own network policy applies \
                     (for kubernetes: enable sandbox.kubernetes_network_policy to enforce the allowlist)"
                ),
            ));
        }
        let mut allow = model_endpoints(harness, ctx, inv);
        // The agent reaches the forge's git host only when configured; with
        // --agent-git it reaches errand's git proxy instead, which holds the token.
        if self.egress.git_host {
            if let Some(d) = remote.and_then(egress::url_destination) {
                allow.push(d);
            }
        }
        allow.extend(self.egress.allow.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        allow.retain(|a| seen.insert(a.clone()));
        let exe = std::env::current_exe().map_err(|e| {
            Stop::failed(format!(
                "errand's own path is unknown ({e}), and the sandbox's egress bridge is errand: \
                 set sandbox.egress = \"open\" to run without it"
            ))
        })?;
        let mut listed = if allow.is_empty() {
            "nothing".to_string()
        } else {
            allow.join(", ")
        };
        match git_route {
            Some(GitRoute::Socket(r)) => {
                allow.push(r.clone());
                listed.push_str(&format!(
                    ", and errand's git proxy as http://{}",
                    gitproxy::MAGIC_HOST
                ));
            }
            Some(GitRoute::Address(a)) => {
                if !allow.contains(a) {
                    allow.push(a.clone());
                }
                listed.push_str(&format!(", and errand's git proxy at {a}"));
            }
            None => {}
        }
        let notice = if by_address {
            format!(
                "egress: allowlist (sandbox.egress = \"allowlist\"): the {backend} sandbox's network policy \
                 allows {listed}, by address (names resolved when it starts, wildcards not enforced)"
            )
        } else {
            format!(
                "egress: allowlist (sandbox.egress = \"allowlist\"): no network in the {backend} sandbox \
                 but errand's proxy to {listed}"
            )
        };
        Ok((
            NetworkPolicy::Isolated(errand_sandbox::Egress {
                allow,
                protected: self.egress.protected.clone(),
                bridge: errand_sandbox::Bridge {
                    exe,
                    args: vec!["sandbox".into(), "bridge".into()],
                },
            }),
            notice,
        ))
    }

    /// errand's own binary (for `errand guard hook` and the shims) and the
    /// shims directory, as read-only mounts. Every shim checks its argv with
    /// the guard and then runs the real program.
    fn guard_mounts(
        &self,
        run_dir: &Path,
        policy: &[String],
    ) -> Result<(Vec<(PathBuf, PathBuf)>, PathBuf), String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("errand's own path is unknown: {e}"))?;
        let shims = run_dir.join("shims");
        std::fs::create_dir_all(&shims)
            .map_err(|e| format!("cannot create {}: {e}", shims.display()))?;
        // In the local sandbox, which shows the host's /usr, the shims also
        // cover the binaries' absolute paths (`/usr/bin/git`): the real ones are
        // mounted elsewhere and reached only through the guard.
        let cover_paths = self.sandbox.name() == "local";
        let mut extra = Vec::new();
        let mut real_git = PathBuf::from("/usr/bin/git");
        for name in ["git", "rm"] {
            let real = which_executable(name).ok_or_else(|| format!("{name} is not on PATH"))?;
            let real_inside = if cover_paths {
                let inside_path = PathBuf::from(format!("{GUARD_REAL}/{name}"));
                extra.push((real.clone(), inside_path.clone()));
                for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
                    let p = Path::new(dir).join(name);
                    // `/bin` is often a link to `/usr/bin`: mount each file once.
                    let is_file = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file());
                    let parent_real = std::fs::canonicalize(dir).is_ok_and(|d| d == Path::new(dir));
                    if is_file && parent_real {
                        extra.push((shims.join(name), p));
                    }
                }
                inside_path
            } else {
                // Other backends run their own (Debian) image: its git and rm, not the host's paths.
                Path::new("/usr/bin").join(name)
            };
            if name == "git" {
                real_git = real_inside.clone();
            }
            let policy: Vec<String> = policy.iter().map(|a| sh_quote(a)).collect();
            // git's exec path links its dashed names (`git-add`) to the shim.
            let called = if name == "git" { "\"${0##*/}\"" } else { name };
            let script = format!(
                "#!/bin/sh\nexec {bin}/errand guard shim {policy} --real {real} -- {called} \"$@\"\n",
                bin = inside::TOOLS,
                policy = policy.join(" "),
                real = sh_quote(&real_inside.to_string_lossy()),
            );
            let path = shims.join(name);
            std::fs::write(&path, script)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("cannot make {} executable: {e}", path.display()))?;
        }
        let mut mounts = vec![
            (exe, PathBuf::from(format!("{}/errand", inside::TOOLS))),
            (shims, PathBuf::from(GUARD_SHIMS)),
        ];
        mounts.extend(extra);
        Ok((mounts, real_git))
    }

    async fn make_venv(
        &self,
        sb: &SandboxSpec,
        have_uv: bool,
        em: &mut Emitter,
        until: &Until,
    ) -> Result<(), Stop> {
        // The workspace's .git is written from inside the sandbox only.
        let script = if have_uv {
            format!("{}/uv venv --quiet /workspace/.venv", inside::TOOLS)
        } else {
            "python3 -m venv /workspace/.venv".to_string()
        } + " && printf '\\n.venv/\\n' >> /workspace/.git/info/exclude";
        let mut env = sb.env.clone();
        env.push(("UV_CACHE_DIR".into(), "/tmp/uv-cache".into()));
        let spec = SandboxSpec { env, ..sb.clone() };
        match self.sandboxed_sh(&spec, &script, until).await {
            Err(stop) if stop.state != RunState::Failed => Err(stop),
            Ok(_) => {
                em.notice(format!(
                    "created a Python virtual environment in /workspace/.venv{}",
                    if have_uv {
                        " with uv (uv is on PATH)"
                    } else {
                        " (uv not found on this machine)"
                    }
                ))
                .map_err(log_failed)
            }
            Err(stop) => em
                .notice(format!("no Python virtual environment: {}", stop.reason))
                .map_err(log_failed),
        }
    }

    /// Runs a shell command in the run's sandbox; returns whether it exited 0,
    /// and the end of its stdout and stderr together.
    async fn sandboxed_output(
        &self,
        sb: &SandboxSpec,
        script: &str,
        until: &Until,
    ) -> Result<(bool, String), Stop> {
        let (status, out, _) = self
            .in_sandbox(sb, &format!("exec 2>&1; {script}"), until)
            .await?;
        Ok((status.success(), out))
    }

    /// Runs a short shell script in the run's sandbox; returns its output.
    async fn sandboxed_sh(
        &self,
        sb: &SandboxSpec,
        script: &str,
        until: &Until,
    ) -> Result<String, Stop> {
        let (status, out, err) = self.in_sandbox(sb, script, until).await?;
        if status.success() {
            Ok(out)
        } else {
            Err(Stop::failed(format!(
                "`{script}` failed in the sandbox ({status}): {}",
                last_chars(err.trim(), REASON_TAIL)
            )))
        }
    }

    /// Runs `script` in the run's sandbox until it exits, or until the run's
    /// deadline or a cancel, which kill it and everything it started. Keeps
    /// the last [`limits::MAX_STEP_OUTPUT`] bytes of stdout and of stderr.
    async fn in_sandbox(
        &self,
        sb: &SandboxSpec,
        script: &str,
        until: &Until,
    ) -> Result<(errand_sandbox::ExitInfo, String, String), Stop> {
        let mut p = self
            .sandbox
            .spawn(sb, &CommandLine::new("/bin/sh", ["-c", script]))
            .await
            .map_err(|e| Stop::failed(e.to_string()))?;
        let stdout = p.take_stdout();
        let stderr = p.take_stderr();
        let result = {
            let work = async {
                let (out, err) = tokio::join!(
                    limits::read_tail(stdout, limits::MAX_STEP_OUTPUT),
                    limits::read_tail(stderr, limits::MAX_STEP_OUTPUT)
                );
                let status = p.wait().await;
                (status, out, err)
            };
            tokio::select! {
                done = work => Ok(done),
                stop = self.stopped(until) => Err(stop),
            }
        };
        match result {
            Ok((status, out, err)) => {
                let status = status.map_err(|e| Stop::failed(e.to_string()))?;
                Ok((status, out, err))
            }
            Err(stop) => {
                p.kill().await;
                Err(stop)
            }
        }
    }

    /// Resolves when the run must stop: its deadline passed, it was
    /// cancelled here, or someone asked the store to cancel it.
    async fn stopped(&self, until: &Until) -> Stop {
        let deadline = tokio::time::sleep_until(until.deadline);
        tokio::pin!(deadline);
        let mut poll = tokio::time::interval(self.cancel_poll);
        loop {
            tokio::select! {
                _ = &mut deadline => return Stop {
                    state: RunState::TimedOut,
                    reason: "timed out (the run's --timeout): errand stopped the sandbox".into(),
                },
                _ = until.cancel.cancelled() => return Stop {
                    state: RunState::Cancelled,
                    reason: "cancelled (errand run was interrupted: Ctrl-C or SIGTERM)".into(),
                },
                _ = poll.tick() => {
                    if self.store.get_run(until.id).await.is_ok_and(|r| r.cancel_requested) {
                        return Stop { state: RunState::Cancelled, reason: "cancelled by `errand cancel`".into() };
                    }
                }
            }
        }
    }

    /// Brings the run's branch out of the sandbox into the outbox: a script
    /// inside prints a bundle, the host checks it in (see `errand_git::export`).
    /// The host never opens the workspace's `.git`.
    async fn export_branch(
        &self,
        sb: &SandboxSpec,
        prepared: &errand_git::Prepared,
        run_dir: &Path,
        until: &Until,
    ) -> Result<(), Stop> {
        let script = errand_git::export_script(prepared);
        let mut p = self
            .sandbox
            .spawn(sb, &CommandLine::new("/bin/sh", ["-c", &script]))
            .await
            .map_err(|e| Stop::failed(e.to_string()))?;
        let stdout = p
            .take_stdout()
            .ok_or_else(|| Stop::failed("the export's stdout was not captured"))?;
        let stderr = p.take_stderr();
        // errand's own directory beside the run's: never mounted into a sandbox.
        let spool = run_dir.join("export.bundle");
        let result = {
            let work = async {
                let (received, err) = tokio::join!(
                    errand_git::receive(stdout, &spool, errand_git::MAX_EXPORT_BYTES),
                    limits::read_tail(stderr, limits::MAX_STEP_OUTPUT)
                );
                let status = match &received {
                    Ok(_) => Some(p.wait().await),
                    Err(_) => None,
                };
                (received, err, status)
            };
            tokio::select! {
                done = work => Ok(done),
                stop = self.stopped(until) => Err(stop),
            }
        };
        let (received, err, status) = match result {
            Ok(r) => r,
            Err(stop) => {
                p.kill().await;
                return Err(stop);
            }
        };
        let why = |detail: String| {
            Stop::failed(format!(
                "could not take the run's commits out of the sandbox: {detail}{}",
                if err.trim().is_empty() {
                    String::new()
                } else {
                    format!(" ({})", last_chars(err.trim(), REASON_TAIL))
                }
            ))
        };
        let received = match received {
            Ok(r) => r,
            Err(e) => {
                p.kill().await;
                let _ = tokio::fs::remove_file(&spool).await;
                return Err(why(e.to_string()));
            }
        };
        match status {
            Some(Ok(s)) if s.success() => {}
            Some(Ok(s)) => return Err(why(format!("the export exited with {s}"))),
            Some(Err(e)) => return Err(why(e.to_string())),
            None => return Err(why("the export did not finish".into())),
        }
        let imported = errand_git::import(prepared, &received, &spool).await;
        let _ = tokio::fs::remove_file(&spool).await;
        imported.map_err(|e| Stop::failed(e.to_string()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_harness(
        &self,
        id: RunId,
        sb: &SandboxSpec,
        inv: &Invocation,
        mut parser: Box<dyn errand_harness::OutputParser>,
        em: &mut Emitter,
        cancel: &CancellationToken,
        timeout_secs: u64,
    ) -> Result<errand_harness::Outcome, Stop> {
        let mut proc = self
            .sandbox
            .spawn(sb, &inv.command)
            .await
            .map_err(|e| Stop::failed(e.to_string()))?;
        for n in proc.notices.clone() {
            em.notice(n).map_err(log_failed)?;
        }
        let stdout = proc
            .take_stdout()
            .ok_or_else(|| Stop::failed("harness stdout was not captured"))?;
        let stderr = proc
            .take_stderr()
            .ok_or_else(|| Stop::failed("harness stderr was not captured"))?;
        let mut raw = RawLog::open(&self.paths.raw(id)).map_err(log_failed)?;
        let stderr_path = self.paths.stderr(id);
        let redactor = em.redactor.clone();
        // stderr goes to stderr.log as it comes, up to a cap; the last lines
        // are kept for the failure reason. Lines are cut like stdout's.
        let stderr_task = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut tail: std::collections::VecDeque<String> = Default::default();
            let mut file = tokio::fs::File::create(&stderr_path).await.ok();
            let mut written: u64 = 0;
            let mut reader = BufReader::new(stderr);
            let mut lines = limits::LineReader::default();
            while let Ok(Some((bytes, _dropped))) =
                lines.next(&mut reader, limits::MAX_LINE_BYTES).await
            {
                let line =
                    redactor.redact(String::from_utf8_lossy(&bytes).trim_end_matches('\r'));
                if let Some(f) = file.as_mut() {
                    if written + (line.len() as u64) < MAX_STDERR_BYTES {
                        written += line.len() as u64 + 1;
                        let _ = f.write_all(line.as_bytes()).await;
                        let _ = f.write_all(b"\n").await;
                    } else {
                        let _ = f
                            .write_all(b"[stderr truncated by errand: it passed its size cap]\n")
                            .await;
                        file = None;
                    }
                }
                tail.push_back(line.chars().take(2000).collect());
                if tail.len() > 20 {
                    tail.pop_front();
                }
            }
            if let Some(mut f) = file {
                let _ = f.flush().await;
            }
            Vec::from(tail)
        });

        let deadline = tokio::time::sleep(Duration::from_secs(timeout_secs));
        tokio::pin!(deadline);
        let mut poll = tokio::time::interval(self.cancel_poll);
        // Lines are read as bytes and decoded leniently: a harness that prints
        // invalid UTF-8 must not cut its own log short. `LineReader` keeps a
        // partial line when another branch wins, so nothing is lost, and cuts
        // a line past `MAX_LINE_BYTES`, so an endless one cannot grow memory.
        let mut reader = BufReader::with_capacity(64 << 10, stdout);
        let mut lines = limits::LineReader::default();
        let mut denials = DenialLog::new(
            sb.home.clone(),
            PathBuf::from(errand_harness::codex::GUARD_LOG.trim_start_matches("/home/agent/")),
        );
        let mut stop: Option<Stop> = None;
        let mut cut_lines: u64 = 0;
        loop {
            // Above the backlog the harness waits (its pipe fills) until the store catches up.
            let backed_up = em.backlog() > limits::MAX_BACKLOG;
            tokio::select! {
                read = lines.next(&mut reader, MAX_LINE_BYTES), if !backed_up => match read {
                    Ok(None) => break,
                    Ok(Some((bytes, dropped))) => {
                        // A refusal recorded by the guard hook precedes whatever the harness does next.
                        for kind in denials.poll().await {
                            em.emit(EventSource::Errand, None, kind).map_err(log_failed)?;
                        }
                        if dropped > 0 {
                            cut_lines += 1;
                            if cut_lines <= 10 {
                                em.errand(EventKind::Warning { message: format!(
                                    "a line of the harness's output was cut to {} MiB ({dropped} bytes dropped)",
                                    MAX_LINE_BYTES >> 20) }).map_err(log_failed)?;
                            }
                        }
                        let text = String::from_utf8_lossy(&bytes);
                        let line = em.redactor.redact(text.trim_end_matches('\r'));
                        let n = match em.budget.take_raw(line.len()) {
                            Ok(()) => {
                                let n = raw.append(&line).map_err(log_failed)?;
                                em.raw(n, &line);
                                Some(n)
                            }
                            Err(warning) => {
                                if let Some(w) = warning {
                                    em.errand(w).map_err(log_failed)?;
                                }
                                None
                            }
                        };
                        for kind in parser.push_line(&line) {
                            em.emit(EventSource::Harness, n, kind).map_err(log_failed)?;
                        }
                    }
                    Err(e) => {
                        em.emit(EventSource::Harness, None, EventKind::Error { message: format!("reading the harness's output failed: {e}") })
                            .map_err(log_failed)?;
                        break;
                    }
                },
                _ = &mut deadline => {
                    stop = Some(Stop { state: RunState::TimedOut, reason: format!(
                        "timed out after {} (the run's --timeout); the agent was stopped", human_secs(timeout_secs)) });
                    break;
                }
                _ = cancel.cancelled() => {
                    stop = Some(Stop { state: RunState::Cancelled, reason: "cancelled (errand run was interrupted: Ctrl-C or SIGTERM)".into() });
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(20)), if backed_up => {}
                _ = poll.tick() => {
                    for kind in denials.poll().await {
                        em.emit(EventSource::Errand, None, kind).map_err(log_failed)?;
                    }
                    if let Ok(r) = self.store.get_run(id).await {
                        if r.cancel_requested {
                            stop = Some(Stop { state: RunState::Cancelled, reason: "cancelled by `errand cancel`".into() });
                            break;
                        }
                    }
                }
            }
        }
        if let Some(stop) = stop {
            proc.kill().await;
            if let Some(n) = refusal_notice(&proc.egress_refusals()) {
                em.notice(n).map_err(log_failed)?;
            }
            return Err(stop);
        }
        let status = proc.wait().await.map_err(|e| Stop::failed(e.to_string()))?;
        if let Some(n) = refusal_notice(&proc.egress_refusals()) {
            em.notice(n).map_err(log_failed)?;
        }
        for kind in denials.poll().await {
            em.emit(EventSource::Errand, None, kind)
                .map_err(log_failed)?;
        }
        let tail = stderr_task.await.unwrap_or_default();
        // Harnesses that print no final result get one synthesized now.
        for kind in parser.finish(status.success()) {
            em.emit(EventSource::Harness, None, kind)
                .map_err(log_failed)?;
        }
        let memory = self
            .limits
            .memory_bytes
            .map(|m| format!(" of {} MiB", m >> 20))
            .unwrap_or_default();
        if status.oom_killed && status.success() {
            em.notice(format!(
                "a process in the sandbox was killed: it hit the memory limit{memory}"
            ))
            .map_err(log_failed)?;
        }
        let outcome = parser.outcome();
        match outcome {
            _ if status.oom_killed && !status.success() => Err(Stop::failed(format!(
                "the harness was killed: it hit the sandbox's memory limit{memory} (raise it with --memory)"
            ))),
            Some(o) if !o.is_error && status.success() => Ok(o),
            Some(o) if o.is_error => Err(Stop::failed(format!(
                "the agent reported an error: {}",
                o.error.unwrap_or_else(|| "no details".into())
            ))),
            _ if !status.success() => Err(Stop::failed(format!(
                "the harness exited with {}{}",
                status,
                if tail.is_empty() { String::new() } else { format!(": {}", tail.join(" | ")) }
            ))),
            _ => Err(Stop::failed(
                "the harness exited without a final result: its output was not the stream it should print \
                 (see `errand logs --raw`)",
            )),
        }
    }
}

/// The guard hook's record of refused calls (written inside the sandbox by
/// `errand guard hook --log`), turned into a refused tool call in the trace.
/// For harnesses whose own output says nothing of a call a hook refused.
/// The file is in the agent's HOME: it is read with [`hostfs::read_beneath`]
/// (no symlink, regular files only, never blocking on a FIFO), a capped amount
/// per poll, on the blocking pool.
struct DenialLog {
    home: PathBuf,
    rel: PathBuf,
    offset: u64,
    n: u64,
    /// Set when the file is not a plain file: errand stops reading it.
    refused: bool,
}

/// The most bytes of the guard's log read at one poll.
const DENIAL_READ: usize = 256 << 10;

impl DenialLog {
    fn new(home: PathBuf, rel: PathBuf) -> Self {
        DenialLog {
            home,
            rel,
            offset: 0,
            n: 0,
            refused: false,
        }
    }

    /// The events for denials recorded since the last call (whole lines only).
    async fn poll(&mut self) -> Vec<EventKind> {
        if self.refused || self.n >= limits::MAX_DENIALS {
            return vec![];
        }
        let (home, rel, offset) = (self.home.clone(), self.rel.clone(), self.offset);
        let read = tokio::task::spawn_blocking(move || {
            hostfs::read_beneath(&home, &rel, offset, DENIAL_READ)
        })
        .await;
        let buf = match read {
            Ok(Ok(Some(buf))) => buf,
            Ok(Ok(None)) => return vec![],
            Ok(Err(e)) => {
                self.refused = true;
                return vec![EventKind::Warning {
                    message: format!(
                        "errand stopped reading the guard's log of refusals: {e} (the agent may have replaced it)"
                    ),
                }];
            }
            Err(_) => return vec![],
        };
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            // A line longer than a whole read is not the guard's: skip it.
            if buf.len() == DENIAL_READ {
                self.offset += buf.len() as u64;
            }
            return vec![];
        };
        self.offset += end as u64 + 1;
        let mut out = Vec::new();
        for line in String::from_utf8_lossy(&buf[..end]).lines() {
            if self.n >= limits::MAX_DENIALS {
                break;
            }
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let command: String = v["command"].as_str().unwrap_or("?").chars().take(4096).collect();
            let reason: String = v["reason"].as_str().unwrap_or("refused").chars().take(1024).collect();
            let reason = reason.strip_prefix("errand-guard: ").unwrap_or(&reason);
            self.n += 1;
            let id = format!("errand-guard-{}", self.n);
            out.push(EventKind::ToolCall {
                id: id.clone(),
                name: "Bash".into(),
                input: serde_json::json!({ "command": command }),
                parent_id: None,
            });
            out.push(EventKind::ToolResult {
                id,
                output: format!("errand guard: refused `{command}`: {reason}"),
                is_error: true,
                exit_code: None,
            });
        }
        out
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

fn log_failed(e: StoreError) -> Stop {
    Stop::failed(format!("could not write the event log: {e}"))
}

/// When the steps after the agent must end, and what cancels them.
struct Until {
    id: RunId,
    cancel: CancellationToken,
    deadline: tokio::time::Instant,
}

/// How long the steps after the agent (commit, export, tests) may take when
/// the agent used up the run's deadline: the run's timeout again, between
/// 30 seconds and 5 minutes.
fn finish_grace(timeout_secs: u64) -> Duration {
    Duration::from_secs(timeout_secs.clamp(30, 300))
}

fn write_file(path: &Path, contents: &str) -> Result<(), Stop> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)
            .map_err(|e| Stop::failed(format!("cannot create {}: {e}", d.display())))?;
    }
    std::fs::write(path, contents)
        .map_err(|e| Stop::failed(format!("cannot write {}: {e}", path.display())))
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
        assert!(matches!(&ev[..], [EventKind::Warning { message }] if !message.contains("host secret")), "{ev:?}");
        assert!(log.poll().await.is_empty(), "read no more");
        // A FIFO: the poll returns at once instead of waiting for a writer.
        let fifo = home.join("f.jsonl");
        let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let mut log = DenialLog::new(home, "f.jsonl".into());
        let ev = tokio::time::timeout(Duration::from_secs(5), log.poll()).await.expect("no hang");
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
            let err = r.kubernetes_git_proxy().unwrap_err().reason;
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

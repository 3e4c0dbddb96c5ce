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

#![warn(missing_docs)]

mod agent;
mod assemble;
mod context;
mod deliver;
mod emit;
mod error;
mod finish;
pub mod forge;
pub mod gitproxy;
mod hostfs;
mod limits;
mod meter;
mod paths;
pub mod pick;
mod prepare;
use prepare::write_home_files;
pub mod retention;
pub mod secrets;
mod steps;

pub use error::RunError;
pub use forge::{Forge, ForgeError, GithubForge, ThreadContext};
pub use limits::{MAX_EVENTS, MAX_EVENT_STRING, MAX_LINE_BYTES, MAX_RAW_BYTES, MAX_STDERR_BYTES};
pub use meter::GatewaySettings;
pub use paths::Paths;
pub use pick::{pick, PickError, PickRequest, Picked};

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

use assemble::refusal_notice;
use assemble::Assembled;
use emit::{pump, Emitter, SharedRedactor};
use finish::Finished;
use steps::{finish_grace, Until};

/// What keeps [`Runner::execute`] from recording a run's end (a run that
/// fails ends `failed` with a reason instead).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One run's work after its repository is prepared, as each phase sees it.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub(crate) rec: &'a RunRecord,
    /// A follow-up turn of a finished run (same workspace and session).
    pub(crate) is_follow_up: bool,
    pub(crate) ctx: &'a RunContext,
    pub(crate) harness: &'a dyn errand_harness::Harness,
    pub(crate) inv: &'a Invocation,
    pub(crate) prepared: &'a errand_git::Prepared,
    pub(crate) cancel: &'a CancellationToken,
    /// The run's access to its forge repository (`github:` repositories).
    pub(crate) access: Option<&'a forge::RepoAccess>,
}

/// Settings shared by every run this runner executes. A clone shares its
/// gateway, forge and store (one runner per sandbox backend of a service).
#[derive(Clone)]
pub struct Runner {
    /// Where runs, their transitions and events are recorded.
    pub store: Arc<dyn Store>,
    /// Where the harness and errand's steps inside the sandbox run.
    pub sandbox: Arc<dyn Sandbox>,
    /// errand's data directories.
    pub paths: Paths,
    /// The variables harnesses may take their declared environment from.
    pub env: BTreeMap<String, String>,
    /// Directory that relative `--repo` paths are resolved against.
    pub cwd: PathBuf,
    /// Each sandbox's memory, process and CPU limits.
    pub limits: Limits,
    /// Built-in and configured harnesses.
    pub harnesses: errand_harness::Registry,
    /// How often the store is asked whether someone cancelled the run.
    pub cancel_poll: Duration,
    /// The forge for `github:owner/repo` runs, errand's GitHub App
    /// ([`GithubForge`]); `None`: not configured.
    pub forge: Option<Arc<dyn Forge>>,
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
    /// errand's model gateway (`[gateway]`): runs reach their provider through
    /// it with a key of their own; `None`: harnesses get the real keys.
    pub gateway: Option<GatewaySettings>,
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
    /// `run` has just entered `run.state`.
    fn state_changed(&self, run: &RunRecord);
}

/// Receives install progress while the harness is being installed.
pub type ProgressFn = Arc<dyn Fn(&str) + Send + Sync>;

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
        // Retention leaves a run alone while this is held (and is waited for).
        let run_dir = self.paths.run_dir(id);
        let _executing = retention::RunLock::executing(&run_dir)
            .await
            .map_err(|source| StoreError::Io {
                path: run_dir.join(".lock").display().to_string(),
                source,
            })?;
        let mut log = EventLog::open(&self.paths.events(id))?;
        // An attempt on another node may have stored events this node has not.
        log.continue_after(self.store.last_event_seq(id).await?);
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
        // A follow-up continues a finished run: same workspace, same harness
        // session. Its message is taken once the run ends, so a run given
        // back to the queue midway keeps it for the next worker.
        let follow_up = self.store.pending_message(id).await?;
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
        let mut metered = None;
        let outcome = self
            .drive(
                &rec,
                follow_up.as_deref(),
                &mut em,
                &cancel,
                progress,
                (&mut access, &mut metered),
            )
            .await;
        // The run's gateway key dies with the run too; what it metered is the run's usage.
        let metered_summary = match metered.take() {
            Some(mut m) => {
                let _ = m.drain(&mut em);
                let mut summary = match &outcome {
                    Ok(s) => s.clone(),
                    Err(_) => self.store.get_run(id).await?.summary,
                };
                m.apply(&mut summary);
                Some(summary)
            }
            None => None,
        };
        // What the backend keeps for the run (Modal's sandbox) ends with it.
        self.sandbox.release(&id.short()).await;
        // The run's forge credential dies with the run, whatever happened.
        if let (Some(forge), Some(a)) = (&self.forge, &access) {
            forge.revoke(a).await;
            let _ = em.notice(format!(
                "revoked the run's token for {}/{}",
                a.owner, a.repo
            ));
        }
        let (state, reason) = match outcome {
            Ok(summary) => {
                let summary = metered_summary.unwrap_or(summary);
                self.store.update_summary(id, &summary).await?;
                (RunState::Succeeded, None)
            }
            Err(stop) => {
                if let Some(summary) = &metered_summary {
                    self.store.update_summary(id, summary).await?;
                }
                (stop.state(), Some(stop.to_string()))
            }
        };
        // A concurrent `errand cancel` of an orphan may have ended the run
        // already; a run its draining worker gave back to the queue
        // (`Store::release_claim`) is left queued for the next worker.
        let current = self.store.get_run(id).await?;
        if current.state == RunState::Queued {
            em.errand(EventKind::State {
                state: RunState::Queued,
                reason: current.reason.clone(),
            })?;
        } else if !current.state.is_terminal() {
            self.store.transition(id, state, reason.as_deref()).await?;
            em.errand(EventKind::State { state, reason })?;
        }
        if follow_up.is_some() && current.state != RunState::Queued {
            self.store.take_pending_message(id).await?;
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
        (access, metered): (&mut Option<forge::RepoAccess>, &mut Option<meter::Metered>),
    ) -> Result<RunSummary, RunError> {
        let id = rec.id;
        let spec = &rec.spec;
        let run_dir = self.paths.run_dir(id);
        let home = run_dir.join("home");

        // Cheap checks first, so a typo costs no clone.
        let harness = self
            .harnesses
            .get(&spec.harness)
            .map_err(|e| RunError::harness(e.to_string()))?;
        self.check_request(spec, harness.as_ref())?;
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
            extra_path: vec![inside::SHIMS.to_string()],
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
                if prepare::workspace_kept(&run_dir) {
                    ctx.prompt = message.to_string();
                    Some(rec.summary.session_id.clone().ok_or_else(|| {
                        RunError::harness(
                            "the run's first turn recorded no harness session to continue",
                        )
                    })?)
                } else {
                    // Retention removed the workspace and the agent's home, its
                    // session with it: a new session, told what came before.
                    ctx.prompt = prepare::resumed_prompt(rec, message);
                    None
                }
            }
            None => None,
        };
        // The provider keys go to the gateway; the harness gets the run's own.
        *metered = self.meter(rec, harness.as_ref(), &mut ctx, em)?;
        let invocation = |ctx: &RunContext| match &session {
            Some(s) => harness.follow_up_invocation(ctx, s),
            None => harness.invocation(ctx),
        };
        // Validates the environment (e.g. the API key) before anything slow happens.
        invocation(&ctx).map_err(|e| RunError::harness(e.to_string()))?;
        // Only now, with the cheap checks passed, is a repository token minted.
        let remote = self.remote(spec, em, access).await?;
        if follow_up.is_none() {
            self.context(rec, &mut ctx, em).await?;
        }
        ctx.install_dir = self
            .install_harness(harness.as_ref(), &run_dir, em, progress.as_ref())
            .await?;
        let inv = invocation(&ctx).map_err(|e| RunError::harness(e.to_string()))?;
        let mut secrets = inv.secrets.clone();
        if let Some(m) = metered.as_ref() {
            secrets.extend(m.secrets.iter().cloned());
        }
        if let Some(a) = access.as_ref() {
            secrets.push(a.credential().secret);
        }
        em.redactor.set(Redactor::new(&secrets));

        let prepared = self
            .workspace(
                rec,
                follow_up.is_some(),
                remote.as_deref(),
                access.as_ref(),
                em,
            )
            .await?;
        write_home_files(&home, &inv).await?;
        let scope = Scope {
            rec,
            is_follow_up: session.is_some(),
            ctx: &ctx,
            harness: harness.as_ref(),
            inv: &inv,
            prepared: &prepared,
            cancel,
            access: access.as_ref(),
        };
        self.run_prepared(&scope, em, metered.as_mut()).await
    }

    /// A run's work once its repository is prepared: its phases in order.
    async fn run_prepared(
        &self,
        scope: &Scope<'_>,
        em: &mut Emitter,
        metered: Option<&mut meter::Metered>,
    ) -> Result<RunSummary, RunError> {
        let mut assembled = self.assemble(scope, em).await?;
        let (outcome, deadline) = self.run_agent(scope, em, &mut assembled, metered).await?;
        let mut finished = self
            .finish(scope, em, &assembled.spec, outcome, deadline)
            .await?;
        self.deliver(scope, em, &mut finished).await?;
        Ok(finished.summary)
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
    use crate::assemble::{model_endpoints, GitRoute};
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
            forge: None,
            public_url: None,
            observer: None,
            egress: EgressSettings {
                allowlist: true,
                ..Default::default()
            },
            kubernetes_git_proxy_listen: listen.map(String::from),
            kubernetes_git_proxy_url: url.map(String::from),
            gateway: None,
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

    /// An emitter writing to a scratch log, for phases tested alone.
    fn scratch_emitter(dir: &Path) -> Emitter {
        let (sink, _rx) = mpsc::unbounded_channel();
        Emitter {
            log: EventLog::open(&dir.join("events.jsonl")).unwrap(),
            tx: None,
            redactor: SharedRedactor::default(),
            sink,
            backlog: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            budget: limits::TraceBudget::default(),
        }
    }

    #[tokio::test]
    async fn pods_reach_the_gateway_at_its_cluster_url_and_never_get_the_key() {
        let gateway = errand_gateway::Gateway::new();
        let mut r = pods_runner(None, None).await;
        r.gateway = Some(GatewaySettings {
            gateway,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
            defaults: Default::default(),
            direct: vec![],
            remote: [("kubernetes".to_string(), "http://10.0.0.5:8472".to_string())].into(),
        });
        let rec = r
            .store
            .create_run(RunId::new(), &errand_core::RunSpec::new("p", "claude-code"))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut em = scratch_emitter(dir.path());
        let mut ctx = RunContext {
            prompt: "p".into(),
            model: None,
            max_turns: 1,
            branch: "b".into(),
            env: BTreeMap::from([("ANTHROPIC_API_KEY".to_string(), "sk-real".to_string())]),
            install_dir: PathBuf::new(),
            extra_path: vec![],
            extra_env: vec![],
            agent_git: false,
        };
        let metered = r
            .meter(&rec, &errand_harness::ClaudeCode, &mut ctx, &mut em)
            .unwrap()
            .expect("metered");
        assert_eq!(
            ctx.env["ANTHROPIC_BASE_URL"],
            "http://10.0.0.5:8472/anthropic"
        );
        assert!(ctx.env["ANTHROPIC_API_KEY"].starts_with("errand-run-"));
        assert_eq!(metered.secrets, ["sk-real"]);
        // The pod's allowlist is errand's address, not the provider's.
        let inv = Invocation {
            command: CommandLine::new("x", Vec::<String>::new()),
            env: vec![],
            home_files: vec![],
            secrets: vec![],
        };
        assert_eq!(
            model_endpoints(&errand_harness::ClaudeCode, &ctx, &inv),
            ["10.0.0.5:8472"]
        );

        // Without a cluster URL, a pod gets the key directly, and the trace says why.
        r.gateway.as_mut().unwrap().remote.clear();
        let mut ctx2 = ctx.clone();
        ctx2.env = BTreeMap::from([("ANTHROPIC_API_KEY".to_string(), "sk-real".to_string())]);
        assert!(r
            .meter(&rec, &errand_harness::ClaudeCode, &mut ctx2, &mut em)
            .unwrap()
            .is_none());
        assert_eq!(ctx2.env["ANTHROPIC_API_KEY"], "sk-real");
        // A budget cannot be kept there: refused rather than ignored.
        let mut spec = errand_core::RunSpec::new("p", "claude-code");
        spec.max_cost_usd = Some(1.0);
        let rec2 = r.store.create_run(RunId::new(), &spec).await.unwrap();
        let err = r
            .meter(&rec2, &errand_harness::ClaudeCode, &mut ctx2, &mut em)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("--max-cost and --max-tokens need the model gateway"),
            "{err}"
        );
    }
}

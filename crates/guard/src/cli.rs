//! What both command lines of the guard share (the standalone `errand-guard`
//! and errand's own `errand guard`): the policy flags, and decisions under a
//! deadline.
//!
//! A decision must come quickly: a hook that hangs until the harness's hook
//! timeout lets the command run (Claude Code and Codex treat it as "no
//! decision"), so no decision in time is a denial. The shell parser has had
//! inputs it loops on; the process exits after answering, taking a stuck
//! worker thread with it.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;

use crate::{budget, check_in, hook_deny_json, pretooluse_hook, shim_decision, Decision, Policy};

/// The policy, from flags or the `ERRAND_GUARD_*` variables errand sets in a sandbox.
#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// The agent's workspace (checkout root).
    #[arg(long, env = "ERRAND_GUARD_WORKSPACE", default_value = "/workspace")]
    workspace: PathBuf,
    /// The agent's home directory.
    #[arg(long, env = "ERRAND_GUARD_HOME", default_value = "/home/agent")]
    home: PathBuf,
    /// The run's own branch (pushes of it are allowed without force).
    #[arg(long = "branch", env = "ERRAND_GUARD_BRANCH")]
    run_branch: Option<String>,
    /// The repository's default branch (pushes and merges into it are denied).
    #[arg(long, env = "ERRAND_GUARD_DEFAULT_BRANCH", default_value = "main")]
    default_branch: String,
    /// Allow force pushes that name the run's own branch.
    #[arg(long, env = "ERRAND_GUARD_ALLOW_FORCE_PUSH_TO_RUN_BRANCH")]
    allow_force_push_to_run_branch: bool,
    /// Deny pushes to any branch but the run's own (set by errand for --agent-git runs).
    #[arg(
        long,
        env = "ERRAND_GUARD_PUSH_ONLY_RUN_BRANCH",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    push_only_run_branch: bool,
    /// Another branch the run may push (repeatable; with --push-only-run-branch).
    #[arg(
        long = "push-branch",
        env = "ERRAND_GUARD_PUSH_BRANCHES",
        value_delimiter = ','
    )]
    push_branches: Vec<String>,
    /// The branch checked out (what `HEAD` means); read from the repository when not given.
    #[arg(long)]
    current_branch: Option<String>,
}

impl From<PolicyArgs> for Policy {
    fn from(a: PolicyArgs) -> Self {
        Policy {
            workspace: a.workspace,
            home: a.home,
            run_branch: a.run_branch.filter(|b| !b.is_empty()),
            default_branch: a.default_branch,
            allow_force_push_to_run_branch: a.allow_force_push_to_run_branch,
            push_only_run_branch: a.push_only_run_branch,
            push_branches: a
                .push_branches
                .into_iter()
                .filter(|b| !b.is_empty())
                .collect(),
            current_branch: a.current_branch.filter(|b| !b.is_empty()),
            extra_rules: Vec::new(),
        }
    }
}

/// How long one decision may take (`ERRAND_GUARD_TIMEOUT_MS`, default 5000).
pub fn deadline() -> Duration {
    let ms = std::env::var("ERRAND_GUARD_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    Duration::from_millis(ms)
}

/// `work`'s answer, or `late()` when it takes longer than `deadline` (or no
/// thread can be started for it).
///
/// `work` runs with a memory budget of [`budget::BYTES`] where the binary
/// uses [`budget::Budgeted`]: past it, the answer is `late()` at once (the
/// parser has had inputs it allocates on without bound, and a process that
/// aborts or is OOM-killed gives no decision at all).
pub fn within<T: Send + 'static>(
    deadline: Duration,
    work: impl FnOnce() -> T + Send + 'static,
    late: impl FnOnce() -> T,
) -> T {
    let (tx, rx) = mpsc::channel();
    let id = budget::new_id();
    let spawned = std::thread::Builder::new()
        .name("errand-guard-check".to_owned())
        .spawn(move || {
            budget::limit(budget::BYTES, id);
            let _ = tx.send(work());
        });
    if spawned.is_err() {
        return late_because(Late::Time, late);
    }
    let start = Instant::now();
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        match rx.recv_timeout(left.min(POLL)) {
            Ok(answer) => return answer,
            Err(mpsc::RecvTimeoutError::Disconnected) => return late_because(Late::Time, late),
            Err(mpsc::RecvTimeoutError::Timeout) if budget::went_over(id) => {
                return late_because(Late::Memory, late)
            }
            Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                return late_because(Late::Time, late)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

/// How often [`within`] looks whether the decision went over its budget.
const POLL: Duration = Duration::from_millis(10);

/// Why [`within`] had no answer.
#[derive(Clone, Copy)]
enum Late {
    Time,
    Memory,
}

thread_local! {
    static LATE: std::cell::Cell<Late> = const { std::cell::Cell::new(Late::Time) };
}

fn late_because<T>(why: Late, late: impl FnOnce() -> T) -> T {
    LATE.with(|l| l.set(why));
    late()
}

fn no_decision() -> String {
    match LATE.with(|l| l.get()) {
        Late::Time => format!(
            "too-complex: no decision within {} ms",
            deadline().as_millis()
        ),
        Late::Memory => format!(
            "too-complex: no decision within {} MiB of memory",
            budget::BYTES >> 20
        ),
    }
}

fn late_denial() -> Decision {
    Decision::Deny {
        rule: "too-complex".into(),
        reason: no_decision(),
    }
}

/// [`check_in`] under the [`deadline`].
pub fn check_command(command: String, policy: Policy, cwd: Option<String>) -> Decision {
    within(
        deadline(),
        move || check_in(&command, &policy, cwd.as_deref()),
        late_denial,
    )
}

/// [`pretooluse_hook`] under the [`deadline`]: what the hook prints, if anything.
pub fn hook(input: String, policy: Policy) -> Option<String> {
    within(
        deadline(),
        move || pretooluse_hook(&input, &policy),
        || Some(hook_deny_json(&format!("errand-guard: {}", no_decision()))),
    )
}

/// [`shim_decision`] under the [`deadline`].
pub fn shim(name: String, args: Vec<String>, policy: Policy) -> Decision {
    within(
        deadline(),
        move || shim_decision(&name, &args, &policy),
        late_denial,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker stuck for good (as the shell parser once was on some inputs).
    fn stuck<T>() -> T {
        loop {
            std::thread::park();
        }
    }

    #[test]
    fn no_answer_in_time_is_the_late_answer() {
        let late = within(Duration::from_millis(50), stuck, || "denied");
        assert_eq!(late, "denied");
        let quick = within(Duration::from_secs(30), || "allowed", || "denied");
        assert_eq!(quick, "allowed");
    }

    #[test]
    fn a_late_hook_answer_is_a_denial() {
        let out = within(Duration::from_millis(50), stuck::<Option<String>>, || {
            Some(hook_deny_json(&format!("errand-guard: {}", no_decision())))
        })
        .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(
            v["hookSpecificOutput"]["permissionDecision"], "deny",
            "{out}"
        );
        assert!(late_denial().to_string().contains("no decision within"));
    }
}

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
use std::time::Duration;

use clap::Args;

use crate::{check_in, hook_deny_json, pretooluse_hook, shim_decision, Decision, Policy};

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
            push_branches: a.push_branches.into_iter().filter(|b| !b.is_empty()).collect(),
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
pub fn within<T: Send + 'static>(
    deadline: Duration,
    work: impl FnOnce() -> T + Send + 'static,
    late: impl FnOnce() -> T,
) -> T {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("errand-guard-check".to_owned())
        .spawn(move || {
            let _ = tx.send(work());
        });
    if spawned.is_err() {
        return late();
    }
    rx.recv_timeout(deadline).unwrap_or_else(|_| late())
}

fn no_decision() -> String {
    format!(
        "too-complex: no decision within {} ms",
        deadline().as_millis()
    )
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

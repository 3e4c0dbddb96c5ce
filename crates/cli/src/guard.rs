//! `errand guard`: the destructive-command guard from the command line, as a
//! Claude Code / Codex `PreToolUse` hook, and as the `git`/`rm` shims errand
//! puts first on PATH inside every sandbox (so harnesses without hooks are
//! guarded too). The decisions themselves are `errand-guard`'s.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::{Args, Subcommand};
use errand_guard::{
    check_in, check_jsonl, hook_deny_json, pretooluse_hook, shim_decision, Decision, Policy,
};

#[derive(Subcommand)]
pub enum GuardCmd {
    /// Decide on COMMAND (or stdin): prints `allow` (exit 0) or `deny: <reason>` (exit 1).
    Check {
        #[command(flatten)]
        policy: PolicyArgs,
        /// Read `{"command": "…"}` JSON lines on stdin and write one decision per line.
        #[arg(long)]
        jsonl: bool,
        command: Option<String>,
    },
    /// PreToolUse hook: reads the hook's JSON on stdin, prints a denial or nothing.
    Hook {
        #[command(flatten)]
        policy: PolicyArgs,
        /// Also append each denial as a JSON line here (for harnesses whose
        /// own output does not show refused calls, such as Codex).
        #[arg(long)]
        log: Option<PathBuf>,
    },
    /// Wrapper for a binary inside the sandbox: checks its argv, then runs the real one.
    #[command(hide = true)]
    Shim {
        #[command(flatten)]
        policy: PolicyArgs,
        /// The real binary to run when allowed.
        #[arg(long)]
        real: PathBuf,
        /// The name the agent called (git, rm).
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Args)]
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
            current_branch: a.current_branch.filter(|b| !b.is_empty()),
            extra_rules: Vec::new(),
        }
    }
}

/// How long the guard may take to decide.
const DEADLINE: Duration = Duration::from_secs(5);
const NO_DECISION: &str = "too-complex: the guard reached no decision within 5 s";

/// A decision must come quickly: a hook that hangs until the harness's hook
/// timeout lets the command run, so no decision in time is a denial. (The
/// shell parser has had inputs it loops on; the process exits after
/// answering, taking a stuck worker with it.)
fn within_deadline(work: impl FnOnce() -> Decision + Send + 'static) -> Decision {
    decide_within(DEADLINE, work, || Decision::Deny {
        rule: "too-complex".into(),
        reason: NO_DECISION.into(),
    })
}

/// `work`'s answer, or `late()` when it takes longer than `deadline`.
fn decide_within<T: Send + 'static>(
    deadline: Duration,
    work: impl FnOnce() -> T + Send + 'static,
    late: impl FnOnce() -> T,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(deadline).unwrap_or_else(|_| late())
}

/// Appends `{"id","command","reason"}` for one denial; a failure to log never
/// turns a denial into an allow.
fn log_denial(path: &std::path::Path, input: &str, output: &str) {
    let input: serde_json::Value = serde_json::from_str(input).unwrap_or_default();
    let output: serde_json::Value = serde_json::from_str(output).unwrap_or_default();
    let command = match &input["tool_input"]["command"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    let line = serde_json::json!({
        "id": input["tool_use_id"],
        "tool": input["tool_name"],
        "command": command,
        "reason": output["hookSpecificOutput"]["permissionDecisionReason"],
    });
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
}

pub fn run(cmd: GuardCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        GuardCmd::Check {
            policy,
            jsonl,
            command,
        } => {
            let policy = Policy::from(policy);
            if jsonl {
                check_jsonl(std::io::stdin().lock(), std::io::stdout().lock(), &policy)?;
                return Ok(ExitCode::SUCCESS);
            }
            let command = match command {
                Some(c) => c,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s
                }
            };
            let cwd = policy.workspace.to_string_lossy().into_owned();
            let decision = within_deadline(move || check_in(&command, &policy, Some(&cwd)));
            println!("{decision}");
            Ok(if matches!(decision, Decision::Allow) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        GuardCmd::Hook { policy, log } => {
            let policy = Policy::from(policy);
            let mut s = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                s = format!("<unreadable hook input: {e}>");
            }
            let input = s.clone();
            let answer = decide_within(
                DEADLINE,
                move || pretooluse_hook(&input, &policy),
                || Some(hook_deny_json(&format!("errand-guard: {NO_DECISION}"))),
            );
            if let Some(out) = answer {
                if let Some(path) = log {
                    log_denial(&path, &s, &out);
                }
                println!("{out}");
            }
            Ok(ExitCode::SUCCESS)
        }
        GuardCmd::Shim {
            policy,
            real,
            name,
            args,
        } => {
            let policy = Policy::from(policy);
            let argv = args.clone();
            let n = name.clone();
            match within_deadline(move || shim_decision(&n, &argv, &policy)) {
                Decision::Allow => {
                    let err = std::process::Command::new(&real)
                        .arg0(&name)
                        .args(&args)
                        .exec();
                    eprintln!("errand guard: cannot run {}: {err}", real.display());
                    Ok(ExitCode::from(127))
                }
                Decision::Deny { reason, .. } => {
                    eprintln!(
                        "errand guard: refused `{name} {}`: {reason}",
                        args.join(" ")
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_answer_in_time_is_the_late_answer() {
        // A worker stuck for good (as the shell parser once was on some inputs).
        let stuck = decide_within(
            Duration::from_millis(50),
            || loop {
                std::thread::park();
            },
            || "denied",
        );
        assert_eq!(stuck, "denied");
        let quick = decide_within(Duration::from_secs(30), || "allowed", || "denied");
        assert_eq!(quick, "allowed");
    }

    #[test]
    fn a_late_hook_answer_denies_the_tool_call() {
        let out = decide_within(
            Duration::from_millis(50),
            || loop {
                std::thread::park();
            },
            || Some(hook_deny_json(&format!("errand-guard: {NO_DECISION}"))),
        )
        .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(
            v["hookSpecificOutput"]["permissionDecision"], "deny",
            "{out}"
        );
    }
}

//! `errand-guard`: check one command line, a JSONL corpus, or act as a
//! Claude Code / Codex `PreToolUse` hook.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use errand_guard::{check, check_jsonl, pretooluse_hook, Decision, Policy};

#[derive(Parser)]
#[command(
    name = "errand-guard",
    about = "Allow or deny a shell command line an agent wants to run"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check COMMAND (or stdin); prints `allow` (exit 0) or `deny: <reason>` (exit 1).
    Check {
        #[command(flatten)]
        policy: PolicyArgs,
        /// Read `{"command": "…"}` lines on stdin, write one decision per line.
        #[arg(long)]
        jsonl: bool,
        /// The command line; read from stdin when absent.
        command: Option<String>,
    },
    /// PreToolUse hook: reads the hook JSON on stdin, prints a deny JSON or nothing; exits 0.
    Hook {
        #[command(flatten)]
        policy: PolicyArgs,
    },
}

#[derive(Args)]
struct PolicyArgs {
    /// The agent's workspace (checkout root).
    #[arg(long, env = "ERRAND_GUARD_WORKSPACE", default_value = "/workspace")]
    workspace: PathBuf,
    /// The agent's home directory.
    #[arg(long, env = "ERRAND_GUARD_HOME", default_value = "/home/agent")]
    home: PathBuf,
    /// The run's own branch.
    #[arg(long = "branch", env = "ERRAND_GUARD_BRANCH")]
    run_branch: Option<String>,
    /// The repository's default branch.
    #[arg(long, env = "ERRAND_GUARD_DEFAULT_BRANCH", default_value = "main")]
    default_branch: String,
    /// Allow force pushes / deletes that name the run's branch explicitly.
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

/// How long one decision may take (`ERRAND_GUARD_TIMEOUT_MS`, default 5000).
fn deadline() -> Duration {
    let ms = std::env::var("ERRAND_GUARD_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    Duration::from_millis(ms)
}

/// Run `work` with a deadline. A hook that hangs until the agent's hook
/// timeout counts as "no decision" (the command runs), so a parser that
/// never returns must become a denial. The stuck thread dies with the process.
fn with_deadline<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
    on_timeout: impl FnOnce() -> T,
) -> T {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("errand-guard-check".to_owned())
        .spawn(move || {
            let _ = tx.send(work());
        });
    if spawned.is_err() {
        return on_timeout();
    }
    match rx.recv_timeout(deadline()) {
        Ok(v) => v,
        Err(_) => on_timeout(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check {
            policy,
            jsonl,
            command,
        } => {
            let policy = Policy::from(policy);
            if jsonl {
                let stdin = std::io::stdin();
                let stdout = std::io::stdout();
                return match check_jsonl(stdin.lock(), stdout.lock(), &policy) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("errand-guard: {e}");
                        ExitCode::from(2)
                    }
                };
            }
            let command = match command {
                Some(c) => c,
                None => {
                    let mut s = String::new();
                    if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                        eprintln!("errand-guard: reading stdin: {e}");
                        return ExitCode::from(2);
                    }
                    s
                }
            };
            let decision = with_deadline(
                move || check(&command, &policy),
                || Decision::Deny {
                    rule: "too-complex".to_owned(),
                    reason: format!(
                        "too-complex: no decision within {} ms",
                        deadline().as_millis()
                    ),
                },
            );
            println!("{decision}");
            match decision {
                Decision::Allow => ExitCode::SUCCESS,
                Decision::Deny { .. } => ExitCode::from(1),
            }
        }
        Cmd::Hook { policy } => {
            let policy = Policy::from(policy);
            let mut s = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                s = format!("<unreadable stdin: {e}>");
            }
            let out = with_deadline(
                move || pretooluse_hook(&s, &policy),
                || {
                    let reason = format!(
                        "errand-guard: too-complex: no decision within {} ms",
                        deadline().as_millis()
                    );
                    Some(
                        serde_json::json!({"hookSpecificOutput": {
                            "hookEventName": "PreToolUse",
                            "permissionDecision": "deny",
                            "permissionDecisionReason": reason,
                        }})
                        .to_string(),
                    )
                },
            );
            if let Some(json) = out {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{json}");
                let _ = stdout.flush();
            }
            ExitCode::SUCCESS
        }
    }
}

//! `errand-guard`: check one command line, a JSONL corpus, or act as a
//! Claude Code / Codex `PreToolUse` hook.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use errand_guard::cli::{self, PolicyArgs};
use errand_guard::{check_jsonl, Decision, Policy};

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

/// The system allocator with a memory budget for guard decisions: a shell
/// line the parser would allocate on without bound is denied, not a crash
/// that the harness reads as "no decision".
#[global_allocator]
static ALLOC: errand_guard::budget::Budgeted = errand_guard::budget::Budgeted;

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
            let decision = cli::check_command(command, policy, None);
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
            let out = cli::hook(s, policy);
            if let Some(json) = out {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{json}");
                let _ = stdout.flush();
            }
            ExitCode::SUCCESS
        }
    }
}

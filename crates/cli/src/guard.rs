//! `errand guard`: the destructive-command guard from the command line, as a
//! Claude Code / Codex `PreToolUse` hook, and as the `git`/`rm` shims errand
//! puts first on PATH inside every sandbox (so harnesses without hooks are
//! guarded too). The decisions themselves are `errand-guard`'s.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use errand_guard::cli::{self, PolicyArgs};
use errand_guard::{check_jsonl, Decision, Policy};

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
        /// The name the agent called (git, rm, or a dashed git-<command>).
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Runs COMMAND with the sandbox's real git reachable only through the
    /// `git` shim: the git gate (see `errand guard enter --help`). errand puts
    /// it in front of every sandboxed command.
    #[command(hide = true)]
    Enter {
        #[command(flatten)]
        policy: PolicyArgs,
        /// The real git binary inside the sandbox.
        #[arg(long)]
        real: PathBuf,
        /// The git shim, which git's exec path points back to.
        #[arg(long, default_value = errand_sandbox::paths::GIT_SHIM)]
        shim: PathBuf,
        /// Fail instead of running unconfined when git cannot be confined.
        #[arg(long)]
        require: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
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
            let decision = cli::check_command(command, policy, Some(cwd));
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
            if let Some(out) = cli::hook(s.clone(), policy) {
                if let Some(path) = log {
                    log_denial(&path, &s, &out);
                }
                println!("{out}");
            }
            Ok(ExitCode::SUCCESS)
        }
        GuardCmd::Enter {
            policy,
            real,
            shim,
            require,
            cmd,
        } => Ok(crate::gate::enter(
            &real,
            &shim,
            Policy::from(policy),
            require,
            &cmd,
        )),
        GuardCmd::Shim {
            policy,
            real,
            name,
            mut args,
        } => {
            // git's dashed names (`git-add`, through links in its exec path).
            let name = match name.strip_prefix("git-") {
                Some(sub) => {
                    args.insert(0, sub.to_owned());
                    "git".to_owned()
                }
                None => name,
            };
            // Inside a gated sandbox the real git is reachable only through
            // the gate, which judges the call itself.
            if name == "git" {
                if let Some(socket) = std::env::var_os(crate::gate::GATE_ENV) {
                    return match crate::gate::call(std::path::Path::new(&socket), &name, &args) {
                        Ok(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
                        Err(e) => {
                            eprintln!("errand guard: {e}");
                            Ok(ExitCode::from(1))
                        }
                    };
                }
            }
            let policy = Policy::from(policy);
            match cli::shim(name.clone(), args.clone(), policy) {
                Decision::Allow => {
                    // The real tool carries on the caller's session: its whole environment.
                    let err = errand_proc::Cmd::new(&real)
                        .arg0(&name)
                        .args(&args)
                        .inherit_all_env()
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

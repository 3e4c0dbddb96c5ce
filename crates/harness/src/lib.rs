//! Harnesses: the agent CLIs errand runs.
//!
//! A [`Harness`] knows how to install its CLI into errand's cache, which
//! environment variables it needs (and only those enter its sandbox), the
//! headless command line and generated settings for an unattended run, and which
//! parser turns its output into normalized events. [`by_name`] is the registry.

#![warn(missing_docs)]

mod amp;
mod claude;
pub mod codex;
mod custom;
mod gemini;
mod install;
mod opencode;

pub use amp::Amp;
pub use claude::ClaudeCode;
pub use codex::Codex;
pub use custom::{CustomFormat, CustomHarness};
pub use gemini::GeminiCli;
pub use install::{install_dir, install_npm, NpmPackage, Progress};
pub use opencode::OpenCode;

use std::collections::BTreeMap;
use std::path::PathBuf;

use errand_core::{EventKind, Usage};
use errand_sandbox::CommandLine;

/// Why a harness cannot be found, started or installed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No harness has that name.
    #[error("unknown harness '{name}' (available: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names there are, comma-separated.
        known: String,
    },
    /// A required environment variable is not set (or empty).
    #[error("{var} is not set: {harness} needs it{hint}")]
    MissingEnv {
        /// The harness.
        harness: &'static str,
        /// The variable.
        var: &'static str,
        /// More on how to set it (empty, or starting with its own separator).
        hint: &'static str,
    },
    /// Installing the harness's npm package failed.
    #[error("installing {package} failed: {detail}")]
    Install {
        /// The package, `name@version`.
        package: String,
        /// What went wrong.
        detail: String,
    },
    /// The harness cannot do what the run asks.
    #[error("{harness} does not support {what}")]
    Unsupported {
        /// The harness.
        harness: &'static str,
        /// What it cannot do.
        what: String,
    },
}

/// An environment variable a harness declares.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    /// The variable's name.
    pub name: &'static str,
    /// The harness cannot run without it.
    pub required: bool,
    /// Never shown in logs or errors.
    pub secret: bool,
}

/// What a harness can do, so errand can refuse requests it cannot honour.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// A finished session can be continued with a new prompt.
    pub follow_up: bool,
    /// Its output says what the run cost.
    pub reports_cost: bool,
    /// The model can be chosen for a run.
    pub model_choice: bool,
    /// The number of turns can be capped.
    pub max_turns: bool,
    /// The harness asks errand's guard before each shell command (a
    /// PreToolUse hook). Every harness is guarded by the git/rm shims too.
    pub guard_hook: bool,
}

/// Everything a harness needs to build its command line for one run.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The instruction.
    pub prompt: String,
    /// The model asked for; the harness's default when `None`.
    pub model: Option<String>,
    /// The most turns the agent may take, where the harness can cap them.
    pub max_turns: u32,
    /// The run's branch, checked out in the workspace.
    pub branch: String,
    /// The values of errand's environment (and config) that the harness may take from.
    pub env: BTreeMap<String, String>,
    /// Where the harness is installed on the host (mounted read-only inside).
    pub install_dir: PathBuf,
    /// Extra directories to put first on PATH inside the sandbox.
    pub extra_path: Vec<String>,
    /// Extra variables errand sets for the run (e.g. VIRTUAL_ENV).
    pub extra_env: Vec<(String, String)>,
    /// The agent may fetch and push (its branch only) itself (`--agent-git`);
    /// otherwise it is told that errand alone talks to the remote.
    pub agent_git: bool,
}

/// How to start a harness: the command, its environment, and the files to
/// create under the sandbox's HOME before it starts.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The command line inside the sandbox.
    pub command: CommandLine,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// (path relative to HOME, contents)
    pub home_files: Vec<(String, String)>,
    /// Values that must never appear in logs (API keys), for redaction.
    pub secrets: Vec<String>,
}

/// The harness's own verdict on the run, from its final output.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The harness says the run failed.
    pub is_error: bool,
    /// Why, when it says.
    pub error: Option<String>,
    /// The agent's final message.
    pub text: Option<String>,
    /// How many turns it took, when reported.
    pub turns: Option<u32>,
    /// Tokens and cost, as far as reported.
    pub usage: Usage,
    /// The session to continue for a follow-up, when there is one.
    pub session_id: Option<String>,
}

/// A stateful parser of one harness process's stdout.
pub trait OutputParser: Send {
    /// The events one line of output stands for (none, one or several).
    fn push_line(&mut self, line: &str) -> Vec<EventKind>;
    /// `None` until the harness has printed its final result.
    fn outcome(&self) -> Option<Outcome>;
    /// Called once when the process has exited; harnesses that print no final
    /// result (OpenCode) synthesize it here.
    fn finish(&mut self, _exit_success: bool) -> Vec<EventKind> {
        Vec::new()
    }
}

/// One agent CLI: how to install it, start it unattended and read its output.
pub trait Harness: Send + Sync {
    /// The name `--harness` takes.
    fn name(&self) -> &'static str;
    /// The pinned npm package errand installs; `None` for harnesses that bring
    /// their own command (custom harnesses).
    fn package(&self) -> Option<NpmPackage>;
    /// A host directory to mount read-only at `/opt/errand/harness` instead of
    /// an npm installation.
    fn host_dir(&self) -> Option<std::path::PathBuf> {
        None
    }
    /// The environment variables it may take from errand's; no others enter its sandbox.
    fn env_vars(&self) -> &'static [EnvVar];
    /// What it can do.
    fn capabilities(&self) -> Capabilities;
    /// The command line and environment for a run; fails when a required variable is missing.
    fn invocation(&self, ctx: &RunContext) -> Result<Invocation, HarnessError>;
    /// The command line that continues `session` with `ctx.prompt` as a new
    /// turn, for harnesses whose capabilities include follow-ups.
    fn follow_up_invocation(
        &self,
        _ctx: &RunContext,
        _session: &str,
    ) -> Result<Invocation, HarnessError> {
        Err(HarnessError::Unsupported {
            harness: self.name(),
            what: "follow-ups".into(),
        })
    }
    /// A parser of its output.
    fn parser(&self) -> Box<dyn OutputParser>;
    /// The parser for one run (harnesses that price tokens need the run's model).
    fn parser_for(&self, _ctx: &RunContext) -> Box<dyn OutputParser> {
        self.parser()
    }
    /// Where, inside the sandbox, this harness's guard hook records the calls
    /// it refused, for harnesses whose own output does not show them (Codex).
    fn guard_log(&self) -> Option<&'static str> {
        None
    }
    /// The variables that may name this harness's model endpoints, each with
    /// the public endpoint used without it. errand allowlists the endpoint of
    /// each one the harness declares or passes.
    fn model_endpoints(&self) -> &'static [(&'static str, &'static str)] {
        MODEL_ENDPOINTS
    }
}

/// The model endpoint variables errand knows, with their public defaults.
pub const MODEL_ENDPOINTS: &[(&str, &str)] = &[
    ("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
    ("OPENAI_BASE_URL", "https://api.openai.com"),
    (
        "GOOGLE_GEMINI_BASE_URL",
        "https://generativelanguage.googleapis.com",
    ),
    ("AMP_URL", "https://ampcode.com"),
];

/// The instructions errand gives every agent, for harnesses without a system-prompt flag.
pub(crate) fn unattended_preamble(ctx: &RunContext) -> String {
    format!(
        "[errand] You are running unattended inside errand's sandbox; nobody will answer questions. \
         Your working directory {ws} is a git repository on branch `{branch}`: stay on it, commit \
         your work with a clear message, {remote}, and end with a short summary of what you did.\n\nTask: ",
        ws = errand_sandbox::paths::WORKSPACE,
        branch = ctx.branch,
        remote = git_remote_rule(ctx),
    )
}

/// What the agent may do with the remote, in one clause.
pub(crate) fn git_remote_rule(ctx: &RunContext) -> String {
    if ctx.agent_git {
        format!(
            "you may fetch from origin and push your branch `{}` to it (`git push origin HEAD`; \
             other branches are refused, and so is pushing at all when the run may not push), \
             do not change remotes (errand pushes the branch too after the run)",
            ctx.branch
        )
    } else {
        "do not push or change remotes (errand pushes for you)".to_string()
    }
}

/// The names `--harness` accepts.
pub const KNOWN: &[&str] = &["claude-code", "codex", "gemini", "opencode", "amp"];

/// The harnesses a runner can use: the built-in ones and those configured.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// The harnesses from errand's configuration (`[[harness]]`).
    pub custom: Vec<CustomHarness>,
}

impl Registry {
    /// Every harness's name: the built-in ones, then the configured ones.
    pub fn names(&self) -> Vec<String> {
        KNOWN
            .iter()
            .map(|s| s.to_string())
            .chain(self.custom.iter().map(|c| c.name.clone()))
            .collect()
    }

    /// Looks a harness up by name; configured harnesses may not shadow built-in ones.
    pub fn get(&self, name: &str) -> Result<Box<dyn Harness>, HarnessError> {
        match by_name(name) {
            Ok(h) => Ok(h),
            Err(e) => match self.custom.iter().find(|c| c.name == name) {
                Some(c) => Ok(Box::new(c.clone())),
                None if self.custom.is_empty() => Err(e),
                None => Err(HarnessError::Unknown {
                    name: name.to_string(),
                    known: KNOWN
                        .iter()
                        .map(|s| s.to_string())
                        .chain(self.custom.iter().map(|c| c.name.clone()))
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            },
        }
    }
}

/// Looks a built-in harness up by the name users type.
pub fn by_name(name: &str) -> Result<Box<dyn Harness>, HarnessError> {
    match name {
        "claude-code" | "claude" => Ok(Box::new(ClaudeCode)),
        "codex" => Ok(Box::new(Codex)),
        "gemini" | "gemini-cli" => Ok(Box::new(GeminiCli)),
        "opencode" => Ok(Box::new(OpenCode)),
        "amp" => Ok(Box::new(Amp)),
        _ => Err(HarnessError::Unknown {
            name: name.to_string(),
            known: KNOWN.join(", "),
        }),
    }
}

/// The variables every harness process gets besides its declared ones: HOME,
/// PATH (run-specific directories, the harness's bin, errand's tools, the
/// system), TMPDIR, LANG, USER, then the run's extra variables.
pub(crate) fn common_env(ctx: &RunContext) -> Vec<(String, String)> {
    let mut path: Vec<String> = ctx.extra_path.clone();
    path.push(format!(
        "{}/node_modules/.bin",
        errand_sandbox::paths::HARNESS
    ));
    path.push(errand_sandbox::paths::TOOLS.to_string());
    path.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(String::from));
    let mut env = vec![
        ("HOME".to_string(), errand_sandbox::paths::HOME.to_string()),
        ("PATH".to_string(), path.join(":")),
        ("TMPDIR".to_string(), "/tmp".to_string()),
        ("LANG".to_string(), "C.UTF-8".to_string()),
        ("USER".to_string(), "agent".to_string()),
    ];
    env.extend(ctx.extra_env.iter().cloned());
    env
}

/// The declared variables a run gets, and which of their values are secret.
pub(crate) struct DeclaredEnv {
    pub env: Vec<(String, String)>,
    pub secrets: Vec<String>,
}

/// Takes the declared variables out of `ctx.env`, checking the required ones.
pub(crate) fn declared_env(
    harness: &'static str,
    vars: &'static [EnvVar],
    ctx: &RunContext,
    hint: &'static str,
) -> Result<DeclaredEnv, HarnessError> {
    let mut env = Vec::new();
    let mut secrets = Vec::new();
    for v in vars {
        match ctx.env.get(v.name).filter(|s| !s.is_empty()) {
            Some(val) => {
                env.push((v.name.to_string(), val.clone()));
                if v.secret {
                    secrets.push(val.clone());
                }
            }
            None if v.required => {
                return Err(HarnessError::MissingEnv {
                    harness,
                    var: v.name,
                    hint,
                });
            }
            None => {}
        }
    }
    Ok(DeclaredEnv { env, secrets })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_harnesses_are_named_with_the_alternatives() {
        let err = by_name("devin").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unknown harness 'devin' (available: claude-code, codex, gemini, opencode, amp)")
        );
        assert_eq!(
            by_name("claude-code").map(|h| h.name()).ok(),
            Some("claude-code")
        );
    }
}

//! errand-guard: decides, for one shell command line an agent wants to run,
//! whether to allow it or deny it with a reason.
//!
//! The command is parsed with a real shell grammar ([`brush_parser`]), not
//! with regular expressions over the raw string. The guard walks every
//! simple command in the AST — through `;`, `&&`, `||`, pipes, subshells,
//! `{ …; }`, loops, functions, `$(…)`, backticks, process substitutions,
//! here-documents fed to shells, `sh -c`/`bash -c`/`eval` strings (with a
//! depth limit) — expands each word statically (quotes, escapes, `$'…'`,
//! `~`, `$HOME`, brace expansion, variables assigned earlier in the same
//! line), strips wrappers (`env`, `VAR=x`, `sudo`, `timeout`, `nice`,
//! `nohup`, `command`, `exec`, `xargs`, `stdbuf`, `time`, …) and applies
//! the rules in [`RULES`] to the resulting argv.
//!
//! Anything the guard cannot see through statically — a command name from
//! a variable, an `rm -r` target from `$(…)`, a `sh -c` body computed at
//! run time — is denied (fail closed), and anything it cannot parse is
//! denied with "could not parse: …".
//!
//! It is a seatbelt, not a boundary: the sandbox, token scope and branch
//! rulesets are the boundary (see docs/security.md §3f). Known limits are
//! listed on [`check`] and in the crate README.

#![warn(missing_docs)]

pub mod budget;
mod classes;
pub mod cli;
mod commands;
mod git;
mod inline;
mod paths;
mod rules;
mod shell;
mod words;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

pub use rules::{rule, Rule, RULES};

/// What the guard allows. Defaults match errand's sandbox layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The agent's checkout; relative paths resolve against it. Default `/workspace`.
    pub workspace: PathBuf,
    /// The agent's home directory (`~`, `$HOME`). Default `/home/agent`.
    pub home: PathBuf,
    /// The branch this run works on (e.g. `errand/abc`), if known.
    pub run_branch: Option<String>,
    /// The repository's default branch. Default `main`.
    pub default_branch: String,
    /// Allow force pushes and deletes that name `run_branch` explicitly.
    pub allow_force_push_to_run_branch: bool,
    /// Allow pushes to `run_branch` only (errand sets it when the agent may
    /// push the run's repository itself, `--agent-git`): a push to any other
    /// branch, or one whose destination the guard cannot tell, is denied
    /// (`push-other-branch`).
    pub push_only_run_branch: bool,
    /// Other branches the run may push besides `run_branch` (errand's
    /// `--agent-branch`), under `push_only_run_branch`. Force pushes stay
    /// limited to `run_branch`.
    pub push_branches: Vec<String>,
    /// The branch checked out when the command starts, if known: what `HEAD`
    /// and a push without refspecs mean, as long as the command line does not
    /// change directory or branch first. [`shim_decision`] and
    /// [`pretooluse_hook`] read it from the repository when
    /// `push_only_run_branch` is set and it is `None`.
    pub current_branch: Option<String>,
    /// Caller-supplied deny rules, checked on every command (and every
    /// wrapper level: a rule for `sudo` matches `sudo anything`).
    pub extra_rules: Vec<ExtraRule>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            workspace: PathBuf::from("/workspace"),
            home: PathBuf::from("/home/agent"),
            run_branch: None,
            default_branch: "main".to_owned(),
            allow_force_push_to_run_branch: false,
            push_branches: Vec::new(),
            push_only_run_branch: false,
            current_branch: None,
            extra_rules: Vec::new(),
        }
    }
}

/// The branch checked out in the repository that contains `dir` (or in
/// `git_dir`, as `GIT_DIR` names it), read from its `HEAD` file without
/// running git; `None` when detached or not found. Follows a `.git` file
/// (`gitdir: …`, worktrees and submodules) and finds bare repositories.
pub fn current_branch_at(
    dir: &std::path::Path,
    git_dir: Option<&std::path::Path>,
) -> Option<String> {
    fn branch_of(git_dir: &std::path::Path) -> Option<String> {
        let head = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
        let name = head.trim().strip_prefix("ref:")?.trim();
        name.strip_prefix("refs/heads/")
            .filter(|b| !b.is_empty())
            .map(str::to_owned)
    }
    if let Some(g) = git_dir {
        return branch_of(&dir.join(g));
    }
    let mut d = Some(dir);
    while let Some(here) = d {
        let dotgit = here.join(".git");
        if dotgit.is_dir() {
            return branch_of(&dotgit);
        }
        if dotgit.is_file() {
            let text = std::fs::read_to_string(&dotgit).ok()?;
            let target = text.trim().strip_prefix("gitdir:")?.trim();
            return branch_of(&here.join(target));
        }
        if here.join("HEAD").is_file() && here.join("objects").is_dir() {
            return branch_of(here);
        }
        d = here.parent();
    }
    None
}

/// `policy` with [`Policy::current_branch`] read from the repository at
/// `dir`, when the push-only-run-branch policy needs it.
fn with_current_branch(
    policy: &Policy,
    dir: &std::path::Path,
    git_dir: Option<&std::path::Path>,
) -> Option<Policy> {
    if !policy.push_only_run_branch || policy.current_branch.is_some() {
        return None;
    }
    let mut p = policy.clone();
    p.current_branch = current_branch_at(dir, git_dir);
    Some(p)
}

/// A caller-supplied deny rule: a command name plus argument patterns.
///
/// It matches a command whose name (basename, after wrappers are stripped)
/// equals `command` and where every pattern in `args` matches at least one
/// argument. Patterns are shell globs (`*`, `?`, `[…]`); an argument whose
/// value is unknown at check time matches every pattern (fail closed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraRule {
    /// Rule id reported in the decision (e.g. `npm-publish`).
    pub id: String,
    /// Command name, e.g. `npm`, `git`, `docker`.
    pub command: String,
    /// Argument patterns that must all be present, e.g. `["publish"]`.
    pub args: Vec<String>,
    /// Why the rule exists; becomes the denial reason.
    pub reason: String,
}

impl ExtraRule {
    /// Convenience constructor.
    pub fn new(id: &str, command: &str, args: &[&str], reason: &str) -> Self {
        ExtraRule {
            id: id.to_owned(),
            command: command.to_owned(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            reason: reason.to_owned(),
        }
    }
}

/// The guard's verdict on one command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing in the command matched a rule.
    Allow,
    /// A rule matched.
    Deny {
        /// The rule id (one of [`RULES`] or an [`ExtraRule::id`]).
        rule: String,
        /// Human-readable reason: `<rule>: <what matched>; <why the rule exists>`.
        reason: String,
    },
}

impl Decision {
    /// `true` for [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// The matched rule id, for a denial.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Decision::Allow => None,
            Decision::Deny { rule, .. } => Some(rule),
        }
    }

    /// The reason, for a denial.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Decision::Allow => None,
            Decision::Deny { reason, .. } => Some(reason),
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Allow => write!(f, "allow"),
            Decision::Deny { reason, .. } => write!(f, "deny: {reason}"),
        }
    }
}

/// Why a command was refused (internal form of [`Decision::Deny`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Denial {
    pub rule: String,
    pub reason: String,
}

impl Denial {
    /// A denial by a built-in rule; `detail` says what matched.
    pub(crate) fn new(id: &'static str, detail: impl std::fmt::Display) -> Self {
        let why = rule(id).map(|r| r.reason).unwrap_or("");
        Denial {
            rule: id.to_owned(),
            reason: format!("{id}: {detail}; {why}"),
        }
    }
}

impl From<Denial> for Decision {
    fn from(d: Denial) -> Self {
        Decision::Deny {
            rule: d.rule,
            reason: d.reason,
        }
    }
}

/// Decide on one shell command line (may contain several commands,
/// newlines, here-documents …).
///
/// # Known limits
/// * Purely lexical paths: symlinks (`ln -s / x; rm -rf x/`) are not followed.
/// * `cd` is tracked within one command line only; the hook assumes each
///   command starts in the workspace (or the hook's absolute `cwd`).
/// * Scripts and programs run from files (`bash script.sh`, `make`,
///   `npm run x`, `python -c '…'` code) are not inspected.
/// * `git merge` is denied only after an explicit checkout/switch of the
///   default branch earlier in the same line; the current branch of the
///   repository is unknown to the guard.
/// * Pushes to a tag by bare name (`git push origin v1.0`) look like branch
///   pushes; only `--tags`, `refs/tags/…` and `tag <name>` are recognised.
/// * A download saved to a file and run later (`curl -o x.sh …; sh x.sh`)
///   is not linked.
/// * `git checkout <name>` with one operand is taken as a branch switch
///   unless the operand looks like a path (`.`, `./x`, `/x`, globs).
/// * A force push to the run's branch must name it; `git push -f` alone
///   or `HEAD` with an unknown current branch is denied.
/// * `rm -r` outside the workspace is denied, `/tmp` included.
pub fn check(command: &str, policy: &Policy) -> Decision {
    check_in(command, policy, None)
}

/// [`check`] with a known working directory (absolute).
pub fn check_in(command: &str, policy: &Policy, cwd: Option<&str>) -> Decision {
    let mut checker = shell::Checker::new(policy);
    if let Some(cwd) = cwd {
        checker.set_cwd(cwd);
    }
    match checker.check_script(command) {
        Ok(()) => Decision::Allow,
        Err(d) => d.into(),
    }
}

/// Check an already-split argv, as a `git`/`rm` wrapper shim on `PATH`
/// inside the sandbox sees it (the shell has already expanded it). The
/// same rule code as [`check`] runs on it.
pub fn shim_decision(argv0: &str, args: &[String], policy: &Policy) -> Decision {
    let cwd = std::env::current_dir().ok();
    let git_dir = std::env::var_os("GIT_DIR").map(PathBuf::from);
    shim_decision_in(argv0, args, policy, cwd.as_deref(), git_dir.as_deref(), &[])
}

/// [`shim_decision`] for a command that runs in `cwd` (with `GIT_DIR` set to
/// `git_dir`), judged together with git's effective `settings`: the
/// `(key, value)` pairs that every configuration file git reads (includes
/// followed, `GIT_CONFIG_*` applied) holds for aliases, command-running keys
/// and push settings, as `git config --get-regexp` prints them. They are
/// judged as if given with `-c` on the command line, so an alias saved in the
/// repository's config expands to what git would run, and a command set in a
/// config file (`core.sshCommand`, a pager, a filter) is checked as code.
pub fn shim_decision_in(
    argv0: &str,
    args: &[String],
    policy: &Policy,
    cwd: Option<&Path>,
    git_dir: Option<&Path>,
    settings: &[(String, String)],
) -> Decision {
    let filled = cwd.and_then(|d| with_current_branch(policy, d, git_dir));
    let policy = filled.as_ref().unwrap_or(policy);
    let mut checker = shell::Checker::new(policy);
    if let Some(cwd) = cwd.and_then(|c| c.to_str()) {
        checker.set_cwd(cwd);
    }
    let with_settings;
    let args = if settings.is_empty() || !is_git(argv0) {
        args
    } else {
        let mut a = Vec::with_capacity(settings.len() * 2 + args.len());
        for (k, v) in settings {
            a.push("-c".to_owned());
            a.push(format!("{k}={v}"));
        }
        a.extend(args.iter().cloned());
        with_settings = a;
        &with_settings
    };
    match checker.check_literal_argv(argv0, args) {
        Ok(()) => Decision::Allow,
        Err(d) => d.into(),
    }
}

fn is_git(argv0: &str) -> bool {
    Path::new(argv0).file_name().is_some_and(|n| n == "git")
}

/// JSON lines in/out for corpora: reads `{"command": "..."}` per line,
/// writes `{"decision":"allow"|"deny","reason":"..."}` per line (denials
/// also carry `"rule"`; allow has an empty reason). Blank input lines are
/// skipped; malformed lines get `{"decision":"deny","rule":"bad-input",
/// "reason":"bad input: ..."}`.
pub fn check_jsonl(
    input: impl BufRead,
    mut output: impl Write,
    policy: &Policy,
) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let out = match command_from_json_line(&line) {
            Ok(command) => match check(&command, policy) {
                Decision::Allow => serde_json::json!({"decision": "allow", "reason": ""}),
                Decision::Deny { rule, reason } => {
                    serde_json::json!({"decision": "deny", "rule": rule, "reason": reason})
                }
            },
            Err(e) => {
                serde_json::json!({"decision": "deny", "rule": "bad-input", "reason": format!("bad input: {e}")})
            }
        };
        writeln!(output, "{out}")?;
    }
    output.flush()
}

fn command_from_json_line(line: &str) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    match v.get("command") {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(_) => Err("\"command\" is not a string".to_owned()),
        None => Err("no \"command\" field".to_owned()),
    }
}

/// Claude Code / Codex `PreToolUse` hook: given the hook's stdin JSON,
/// decide on `tool_input.command` for `tool_name` `"Bash"` (other tools are
/// not the guard's business and are allowed). Returns the JSON to print on
/// stdout for a denial, `None` to allow (print nothing, exit 0). Malformed
/// input is denied.
pub fn pretooluse_hook(stdin_json: &str, policy: &Policy) -> Option<String> {
    let deny = |reason: String| Some(hook_deny_json(&reason));
    let v: serde_json::Value = match serde_json::from_str(stdin_json) {
        Ok(v) => v,
        Err(e) => return deny(format!("errand-guard: bad hook input: {e}")),
    };
    if !v.is_object() {
        return deny("errand-guard: bad hook input: not a JSON object".to_owned());
    }
    if let Some(event) = v.get("hook_event_name").and_then(|e| e.as_str()) {
        if event != "PreToolUse" {
            return None;
        }
    }
    let tool = match v.get("tool_name").and_then(|t| t.as_str()) {
        Some(t) => t,
        None => return deny("errand-guard: bad hook input: no tool_name".to_owned()),
    };
    if !matches!(
        tool,
        "Bash" | "shell" | "local_shell" | "exec_command" | "container.exec"
    ) {
        return None;
    }
    let cwd = v
        .get("cwd")
        .and_then(|c| c.as_str())
        .filter(|c| c.starts_with('/'))
        .map(str::to_owned);
    let filled = with_current_branch(
        policy,
        &cwd.as_deref()
            .map_or_else(|| policy.workspace.clone(), PathBuf::from),
        None,
    );
    let policy = filled.as_ref().unwrap_or(policy);
    let decision =
        match v.get("tool_input").and_then(|t| t.get("command")) {
            Some(serde_json::Value::String(cmd)) => check_in(cmd, policy, cwd.as_deref()),
            Some(serde_json::Value::Array(items)) => {
                // Codex-style argv (`["bash", "-lc", "…"]`).
                let argv: Option<Vec<String>> = items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect();
                match argv {
                    Some(argv) if !argv.is_empty() => {
                        let mut checker = shell::Checker::new(policy);
                        if let Some(cwd) = &cwd {
                            checker.set_cwd(cwd);
                        }
                        match checker.check_literal_argv(&argv[0], &argv[1..]) {
                            Ok(()) => Decision::Allow,
                            Err(d) => d.into(),
                        }
                    }
                    _ => return deny(
                        "errand-guard: bad hook input: tool_input.command is not a list of strings"
                            .to_owned(),
                    ),
                }
            }
            _ => return deny("errand-guard: bad hook input: no tool_input.command".to_owned()),
        };
    match decision {
        Decision::Allow => None,
        Decision::Deny { reason, .. } => deny(format!("errand-guard: {reason}")),
    }
}

/// The PreToolUse answer that denies the tool call with `reason`.
pub fn hook_deny_json(reason: &str) -> String {
    serde_json::json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": reason,
        }
    })
    .to_string()
}

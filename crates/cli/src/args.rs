//! The command line: every subcommand, flag and argument (clap), and the
//! parsers of durations and sizes they use. Nothing here does anything.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use errand_core::{RunSpec, RunState};

use crate::{guard, logging, sandbox};

#[derive(Parser)]
#[command(
    name = "errand",
    version,
    about = "Run coding agents in the background, in sandboxes, with any harness.",
    long_about = "errand runs a headless coding agent (Claude Code, …) on a repository inside a sandbox, \
records every event, and leaves a branch with the agent's commits.\n\nData lives in $ERRAND_HOME \
(default: ~/.local/share/errand)."
)]
pub struct Cli {
    /// Talk to an errand server instead of running locally (token from $ERRAND_TOKEN).
    #[arg(long, global = true, env = "ERRAND_SERVER")]
    pub server: Option<String>,
    /// errand's own log on stderr: text (coloured on a terminal) or json (one object per line).
    #[arg(long, global = true, value_enum, env = "ERRAND_LOG_FORMAT")]
    pub log_format: Option<logging::LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run an agent on a repository (or an empty project) in the foreground.
    Run(RunArgs),
    /// List recent runs.
    Ls(LsArgs),
    /// Show one run: its spec, state changes and result.
    Show {
        /// Run id, or a unique prefix of it.
        run: String,
        #[arg(long)]
        json: bool,
    },
    /// Print a run's trace.
    Logs(LogsArgs),
    /// Cancel a queued or running run.
    Cancel {
        /// Run id, or a unique prefix of it.
        run: String,
    },
    /// Keep one run of a fan-out as its result: open (or mark) its pull
    /// request; with --close-others, close the other runs' pull requests and
    /// delete their branches.
    Pick {
        /// The run to keep: its id, or a unique prefix of it.
        run: String,
        /// Also close the other runs' pull requests and delete their branches.
        #[arg(long)]
        close_others: bool,
        #[arg(long)]
        json: bool,
    },
    /// Manage harness CLIs.
    #[command(subcommand)]
    Harness(HarnessCmd),
    /// Serve the HTTP API and run a worker pool (config: [server], [database], [queue]).
    Serve {
        /// Address to listen on (server.listen).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Runs executed at once by this process (server.workers); 0 serves the API only.
        #[arg(long)]
        workers: Option<u32>,
        /// postgres://… or a SQLite path (database.url).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Run only a worker pool, e.g. on another machine sharing one PostgreSQL.
    Worker {
        /// Runs executed at once by this process (server.workers).
        #[arg(long)]
        workers: Option<u32>,
        /// postgres://… or a SQLite path (database.url).
        #[arg(long)]
        database_url: Option<String>,
        /// A stable id for this worker (server.worker_id).
        #[arg(long)]
        id: Option<String>,
    },
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Store secrets (API keys, tokens) encrypted in errand's database.
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Check shell commands against errand's destructive-command guard.
    #[command(subcommand)]
    Guard(guard::GuardCmd),
    /// Set up errand's GitHub App.
    #[command(subcommand)]
    Github(GithubCmd),
    /// Inspect errand's configuration ($ERRAND_CONFIG, default $ERRAND_HOME/config.toml).
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Get a sandbox backend ready (`errand sandbox prepare docker` builds the agent image).
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCmd),
    /// Open trace files (Claude Code, Codex, Gemini CLI, OpenCode, errand) in the web viewer, on 127.0.0.1.
    View(ViewArgs),
    /// Serve the scripted model: a local Anthropic Messages API replaying a scenario file.
    MockModel {
        /// Scenario JSON file: {"steps":[{"shell":…},{"write":{…}},{"tool":…},{"text":…}]}
        #[arg(long)]
        scenario: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8087")]
        listen: std::net::SocketAddr,
    },
    /// Prune this machine's finished runs and unused git mirrors as [retention] says, and report what was freed.
    Gc(GcArgs),
    /// Back up errand's database, or move it from SQLite to PostgreSQL.
    #[command(subcommand)]
    Db(DbCmd),
}

#[derive(Subcommand)]
pub enum DbCmd {
    /// Write a consistent copy of the SQLite database to FILE while errand keeps
    /// running (PostgreSQL: use pg_dump).
    Backup {
        /// Where to write the copy (mode 0600); an existing file is an error unless --force.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        /// The database to back up (database.url; default $ERRAND_HOME/errand.db).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Copy every run, event, token, secret… from the SQLite database into an empty
    /// PostgreSQL database, check each table's row count, and print them.
    MigrateTo {
        /// postgres://user:password@host/db, or - to read it from stdin (keeps the
        /// password off the command line).
        target: String,
        /// The SQLite database to copy (database.url; default $ERRAND_HOME/errand.db).
        #[arg(long)]
        database_url: Option<String>,
        /// Empty the target's tables first, when it already has rows.
        #[arg(long)]
        replace: bool,
        /// Print the counts as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct GcArgs {
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Decide as if it were this time (RFC 3339), not now: for tests and rehearsals.
    #[arg(long, hide = true)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Subcommand)]
pub enum GithubCmd {
    /// Print a GitHub App manifest with exactly the permissions errand needs
    /// (contents, pull requests and issues: write; metadata: read; no
    /// workflows). Paste it at https://github.com/settings/apps/new?manifest=…
    /// or POST it from a form: setting up the App is one click.
    AppManifest {
        /// The App's name on GitHub.
        #[arg(long, default_value = "errand")]
        name: String,
        /// Where people reach this errand (server.public_url): the App's homepage,
        /// and `<url>/github/webhook` receives `@errand` comments.
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// What the agent should do.
    #[arg(required_unless_present = "demo")]
    pub prompt: Option<String>,
    /// Repository: a local path, file:// or https URL. Without it the agent starts an empty project.
    #[arg(long)]
    pub repo: Option<String>,
    /// Harness to run; several, comma-separated, run side by side (fan-out).
    #[arg(long, default_value = "claude-code")]
    pub harness: String,
    /// Model name passed to the harness (its default otherwise).
    #[arg(long, conflicts_with = "models")]
    pub model: Option<String>,
    /// Several models, comma-separated: one run each, side by side (fan-out).
    #[arg(long)]
    pub models: Option<String>,
    /// The repository's own test command, run in the sandbox after the agent finishes (e.g. "cargo test").
    #[arg(long)]
    pub test_cmd: Option<String>,
    /// Push the run's branch to the repository's remote when the run succeeds.
    #[arg(long)]
    pub push: bool,
    /// Let the agent fetch (and, with --push, push its branch) itself: git in the
    /// sandbox reaches the repository only through errand's git proxy, which holds
    /// the token and lets it push the run's branch alone (github: repositories only).
    #[arg(long)]
    pub agent_git: bool,
    /// With --agent-git: another branch the agent may push besides the run's own
    /// (repeatable; never the default branch).
    #[arg(long = "agent-branch", value_name = "BRANCH", requires = "agent_git")]
    pub agent_branches: Vec<String>,
    /// With --agent-git: let the agent force-push the branches it may push
    /// (deletions stay refused).
    #[arg(long, requires = "agent_git")]
    pub allow_force_push: bool,
    /// Stop the run when its model requests have cost this many US dollars
    /// (metered by errand's model gateway from the provider's answers).
    #[arg(long, value_name = "USD", value_parser = parse_usd)]
    pub max_cost: Option<f64>,
    /// Stop the run when its model requests have used this many tokens
    /// (input, output and cache, metered by the gateway).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tokens: Option<u64>,
    /// Branch to start from (default: the repository's default branch).
    #[arg(long)]
    pub base: Option<String>,
    /// Stop the agent after this long (e.g. 90s, 30m, 2h).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Most agent turns allowed.
    #[arg(long, default_value_t = RunSpec::DEFAULT_MAX_TURNS)]
    pub max_turns: u32,
    /// Memory limit for the sandbox (e.g. 4G, 512M); 0 for none.
    #[arg(long, default_value = "4G", value_parser = parse_size)]
    pub memory: u64,
    /// Most processes the sandbox may run at once; 0 for none.
    #[arg(long, default_value_t = 4096)]
    pub max_procs: u64,
    /// Where the agent runs: local (bubblewrap) or docker (default: sandbox.backend, else local).
    #[arg(long, value_enum)]
    pub sandbox: Option<sandbox::Backend>,
    /// Print one JSON object at the end instead of the live view.
    #[arg(long)]
    pub json: bool,
    /// Run the built-in demo: the real Claude Code against errand's scripted model, no API key needed.
    #[arg(long, conflicts_with_all = ["repo", "prompt", "push", "agent_git"])]
    pub demo: bool,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only runs in this state (queued, running, succeeded, failed, …).
    #[arg(long)]
    pub state: Option<RunState>,
    /// How many runs to list.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Run id, or a unique prefix of it.
    #[arg(
        default_value = "",
        hide_default_value = true,
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub run: String,
    /// Read a trace file instead of a run's log: Claude Code stream-json or
    /// transcript, Codex `exec --json` or rollout, Gemini CLI, OpenCode, or
    /// errand's own events.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["follow", "raw"])]
    pub file: Option<PathBuf>,
    /// Keep printing new events until the run ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print the harness's own output lines instead of the normalized trace.
    #[arg(long)]
    pub raw: bool,
    /// Print normalized events as JSON lines.
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
}

#[derive(Args)]
pub struct ViewArgs {
    /// Trace files, or directories searched for *.jsonl and Gemini CLI's chats/session-*.json.
    /// None: your own sessions (~/.claude/projects, ~/.codex/sessions, ~/.gemini/tmp).
    pub paths: Vec<PathBuf>,
    /// Port on 127.0.0.1 (default: a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Do not open a browser.
    #[arg(long)]
    pub no_open: bool,
    /// Print the address and the files as one JSON object (for scripts), then serve.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum SecretCmd {
    /// Store NAME (an environment variable name); the value is read from stdin.
    Set { name: String },
    /// List stored secrets (names only).
    Ls,
    /// Delete a stored secret.
    Rm { name: String },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        name: String,
        /// What it may do, comma-separated: read (runs, events, streams), run
        /// (start, cancel, follow up, share), admin (manage tokens).
        #[arg(long, default_value = "read,run")]
        scope: String,
    },
    /// List tokens (never their values).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Report every problem in the configuration at once (exit 1 if there are any).
    Check,
    /// Print the effective configuration (secrets masked) and where each value comes from.
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum HarnessCmd {
    /// Install a harness's pinned CLI into errand's cache.
    Install { name: String },
    /// List the harnesses errand knows, with their pinned versions.
    List,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 90s, 30m, 2h)"))
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("'{s}' is not a size (use e.g. 512M, 4G)"))
}

/// A positive amount of US dollars (`2`, `0.50`, `$3`).
fn parse_usd(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_start_matches('$')
        .parse()
        .map_err(|_| format!("'{s}' is not an amount of US dollars such as 2.50"))?;
    if v > 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(format!("'{s}': the budget must be more than $0"))
    }
}

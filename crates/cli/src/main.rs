//! `errand`: run coding agents in the background, in sandboxes, with any harness.
//!
//! This binary is glue: it parses the command line, opens the store, and hands
//! a run to `errand-runner`; everything it prints comes from [`render`].

mod client;
mod config;
mod demo;
mod gate;
mod guard;
mod localtrace;
mod logging;
mod remote;
mod render;
mod sandbox;
mod serve;
mod view;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use errand_core::{Event, RepoSource, RunId, RunRecord, RunSpec, RunState};
use errand_runner::{Paths, Runner};
use errand_sandbox::Limits;
use errand_store::{read_events, read_raw_lines, LogTail, RunFilter, Store, StoreError};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use render::Renderer;

#[derive(Parser)]
#[command(
    name = "errand",
    version,
    about = "Run coding agents in the background, in sandboxes, with any harness.",
    long_about = "errand runs a headless coding agent (Claude Code, …) on a repository inside a sandbox, \
records every event, and leaves a branch with the agent's commits.\n\nData lives in $ERRAND_HOME \
(default: ~/.local/share/errand)."
)]
struct Cli {
    /// Talk to an errand server instead of running locally (token from $ERRAND_TOKEN).
    #[arg(long, global = true, env = "ERRAND_SERVER")]
    server: Option<String>,
    /// errand's own log on stderr: text (coloured on a terminal) or json (one object per line).
    #[arg(long, global = true, value_enum, env = "ERRAND_LOG_FORMAT")]
    log_format: Option<logging::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    View(view::ViewArgs),
    /// Serve the scripted model: a local Anthropic Messages API replaying a scenario file.
    MockModel {
        /// Scenario JSON file: {"steps":[{"shell":…},{"write":{…}},{"tool":…},{"text":…}]}
        #[arg(long)]
        scenario: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8087")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum GithubCmd {
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
struct RunArgs {
    /// What the agent should do.
    #[arg(required_unless_present = "demo")]
    prompt: Option<String>,
    /// Repository: a local path, file:// or https URL. Without it the agent starts an empty project.
    #[arg(long)]
    repo: Option<String>,
    /// Harness to run; several, comma-separated, run side by side (fan-out).
    #[arg(long, default_value = "claude-code")]
    harness: String,
    /// Model name passed to the harness (its default otherwise).
    #[arg(long, conflicts_with = "models")]
    model: Option<String>,
    /// Several models, comma-separated: one run each, side by side (fan-out).
    #[arg(long)]
    models: Option<String>,
    /// The repository's own test command, run in the sandbox after the agent finishes (e.g. "cargo test").
    #[arg(long)]
    test_cmd: Option<String>,
    /// Push the run's branch to the repository's remote when the run succeeds.
    #[arg(long)]
    push: bool,
    /// Let the agent fetch (and, with --push, push its branch) itself: git in the
    /// sandbox reaches the repository only through errand's git proxy, which holds
    /// the token and lets it push the run's branch alone (github: repositories only).
    #[arg(long)]
    agent_git: bool,
    /// With --agent-git: another branch the agent may push besides the run's own
    /// (repeatable; never the default branch).
    #[arg(long = "agent-branch", value_name = "BRANCH", requires = "agent_git")]
    agent_branches: Vec<String>,
    /// With --agent-git: let the agent force-push the branches it may push
    /// (deletions stay refused).
    #[arg(long, requires = "agent_git")]
    allow_force_push: bool,
    /// Branch to start from (default: the repository's default branch).
    #[arg(long)]
    base: Option<String>,
    /// Stop the agent after this long (e.g. 90s, 30m, 2h).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    timeout: Duration,
    /// Most agent turns allowed.
    #[arg(long, default_value_t = RunSpec::DEFAULT_MAX_TURNS)]
    max_turns: u32,
    /// Memory limit for the sandbox (e.g. 4G, 512M); 0 for none.
    #[arg(long, default_value = "4G", value_parser = parse_size)]
    memory: u64,
    /// Most processes the sandbox may run at once; 0 for none.
    #[arg(long, default_value_t = 4096)]
    max_procs: u64,
    /// Where the agent runs: local (bubblewrap) or docker (default: sandbox.backend, else local).
    #[arg(long, value_enum)]
    sandbox: Option<sandbox::Backend>,
    /// Print one JSON object at the end instead of the live view.
    #[arg(long)]
    json: bool,
    /// Run the built-in demo: the real Claude Code against errand's scripted model, no API key needed.
    #[arg(long, conflicts_with_all = ["repo", "prompt", "push", "agent_git"])]
    demo: bool,
}

#[derive(Args)]
struct LsArgs {
    /// Only runs in this state (queued, running, succeeded, failed, …).
    #[arg(long)]
    state: Option<RunState>,
    /// How many runs to list.
    #[arg(long, short = 'n', default_value_t = 20)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LogsArgs {
    /// Run id, or a unique prefix of it.
    #[arg(
        default_value = "",
        hide_default_value = true,
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    run: String,
    /// Read a trace file instead of a run's log: Claude Code stream-json or
    /// transcript, Codex `exec --json` or rollout, Gemini CLI, OpenCode, or
    /// errand's own events.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["follow", "raw"])]
    file: Option<PathBuf>,
    /// Keep printing new events until the run ends.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print the harness's own output lines instead of the normalized trace.
    #[arg(long)]
    raw: bool,
    /// Print normalized events as JSON lines.
    #[arg(long, conflicts_with = "raw")]
    json: bool,
}

#[derive(Subcommand)]
enum SecretCmd {
    /// Store NAME (an environment variable name); the value is read from stdin.
    Set { name: String },
    /// List stored secrets (names only).
    Ls,
    /// Delete a stored secret.
    Rm { name: String },
}

#[derive(Subcommand)]
enum TokenCmd {
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
enum ConfigCmd {
    /// Report every problem in the configuration at once (exit 1 if there are any).
    Check,
    /// Print the effective configuration (secrets masked) and where each value comes from.
    Show {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum HarnessCmd {
    /// Install a harness's pinned CLI into errand's cache.
    Install { name: String },
    /// List the harnesses errand knows, with their pinned versions.
    List,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 90s, 30m, 2h)"))
}

fn parse_size(s: &str) -> Result<u64, String> {
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

fn main() -> std::process::ExitCode {
    // Inside a sandbox, in front of the harness: the egress bridge, started before anything else.
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if argv.get(1).is_some_and(|a| a == "sandbox") && argv.get(2).is_some_and(|a| a == "bridge") {
        return sandbox::bridge(&argv[3..]);
    }
    let cli = Cli::parse();
    logging::init(
        cli.log_format,
        matches!(cli.command, Command::Serve { .. } | Command::Worker { .. }),
    );
    // The guard's commands run inside sandboxes, before anything else: no runtime.
    if let Command::Guard(cmd) = cli.command {
        return guard::run(cmd).unwrap_or_else(|e| {
            eprintln!("errand: {e:#}");
            std::process::ExitCode::FAILURE
        });
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("errand: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("errand: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn open_store(paths: &Paths) -> Result<Arc<dyn Store>> {
    open_store_at(paths, None).await
}

/// The store named by `--database-url`, else `database.url`, else SQLite in $ERRAND_HOME.
async fn open_store_at(paths: &Paths, url: Option<&str>) -> Result<Arc<dyn Store>> {
    std::fs::create_dir_all(&paths.home)
        .with_context(|| format!("cannot create {}", paths.home.display()))?;
    let url = match url {
        Some(u) => u.to_string(),
        None => config::load(paths)?.database_url(paths),
    };
    errand_store::open_url(&url)
        .await
        .with_context(|| format!("opening the database {}", errand_git::redact_url(&url)))
}

async fn dispatch(cli: Cli) -> Result<std::process::ExitCode> {
    let paths = Paths::from_env();
    // A trace file is on this machine: read here, even with --server.
    if let Command::Logs(LogsArgs {
        file: Some(file),
        json,
        ..
    }) = &cli.command
    {
        return localtrace::cmd_logs_file(file, *json);
    }
    if let Some(server) = cli.server.as_deref().filter(|s| !s.is_empty()) {
        if let Some(code) = remote::dispatch(server, &cli.command).await? {
            return Ok(code);
        }
    }
    match cli.command {
        Command::Run(args) => cmd_run(&paths, args).await,
        Command::Ls(args) => {
            let store = open_store(&paths).await?;
            errand_runner::reap_orphans(store.as_ref()).await?;
            cmd_ls(store.as_ref(), args).await
        }
        Command::Show { run, json } => {
            let store = open_store(&paths).await?;
            errand_runner::reap_orphans(store.as_ref()).await?;
            cmd_show(store.as_ref(), &run, json).await
        }
        Command::Logs(args) => {
            let store = open_store(&paths).await?;
            errand_runner::reap_orphans(store.as_ref()).await?;
            cmd_logs(store.as_ref(), &paths, args).await
        }
        Command::Cancel { run } => {
            let store = open_store(&paths).await?;
            cmd_cancel(store.as_ref(), &run).await
        }
        Command::Harness(HarnessCmd::List) => {
            let registry = config::load(&paths)?.registry();
            let names = errand_harness::KNOWN
                .iter()
                .map(|s| s.to_string())
                .chain(registry.custom.iter().map(|c| c.name.clone()));
            for name in names {
                let h = registry.get(&name)?;
                let (what, installed) = match h.package() {
                    Some(pkg) => {
                        let dir = errand_harness::install_dir(&paths.cache, h.name(), &pkg);
                        (
                            pkg.spec(),
                            if dir.join(pkg.bin).is_file() {
                                "installed"
                            } else {
                                "-"
                            },
                        )
                    }
                    None => ("(configured command)".to_string(), "-"),
                };
                let env: Vec<_> = h
                    .env_vars()
                    .iter()
                    .map(|v| {
                        if v.required {
                            v.name.to_string()
                        } else {
                            format!("[{}]", v.name)
                        }
                    })
                    .collect();
                println!(
                    "{name:<12} {what:<40} {installed:<10} env: {}",
                    env.join(" ")
                );
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Harness(HarnessCmd::Install { name }) => {
            let h = config::load(&paths)?.registry().get(&name)?;
            let Some(pkg) = h.package() else {
                bail!("harness '{name}' is a configured command: there is nothing to install");
            };
            let tty = std::io::stderr().is_terminal();
            let dir = errand_harness::install_npm(&paths.cache, h.name(), &pkg, &|l: &str| {
                if tty || !l.starts_with("npm") {
                    eprintln!("{l}");
                }
            })
            .await?;
            println!("{}", dir.display());
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Serve {
            listen,
            workers,
            database_url,
            // `--workers 0`: an API-only node; workers run elsewhere.
        } => {
            serve::serve(
                &paths,
                listen,
                workers,
                database_url.as_deref(),
                workers != Some(0),
            )
            .await
        }
        Command::Worker {
            workers,
            database_url,
            id,
        } => serve::worker(&paths, workers, database_url.as_deref(), id).await,
        Command::Guard(_) => unreachable!("handled before the runtime starts"),
        Command::Github(GithubCmd::AppManifest { name, url }) => {
            let cfg = config::load(&paths)?;
            let url = url.or(cfg.server.public_url.clone()).context(
                "give --url (or set server.public_url): GitHub must reach errand's webhook",
            )?;
            let url = url.trim_end_matches('/');
            let manifest =
                errand_github::app_manifest(&name, url, &format!("{url}/github/webhook"));
            println!("{}", serde_json::to_string_pretty(&manifest)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Secret(cmd) => {
            let store = open_store(&paths).await?;
            match cmd {
                SecretCmd::Set { name } => {
                    errand_runner::secrets::check_name(&name)?;
                    let mut value = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)?;
                    let value = value.trim_end_matches(['\n', '\r']);
                    if value.is_empty() {
                        bail!("no value on stdin: use `printf %s \"$VALUE\" | errand secret set {name}`");
                    }
                    let key = errand_runner::secrets::SecretKey::load(&paths.home)?;
                    store.put_secret(&name, &key.seal(&name, value)).await?;
                    eprintln!("stored {name} (encrypted); runs get it when their harness needs it");
                }
                SecretCmd::Ls => {
                    for (name, at) in store.secret_names().await? {
                        println!("{name:<32}  {}", at.format("%Y-%m-%d %H:%M"));
                    }
                }
                SecretCmd::Rm { name } => {
                    if !store.delete_secret(&name).await? {
                        bail!("no secret named {name} (see `errand secret ls`)");
                    }
                }
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Token(cmd) => {
            let store = open_store(&paths).await?;
            match cmd {
                TokenCmd::Create { name, scope } => {
                    let scope = errand_store::Scope::parse_list(&scope)
                        .map_err(|e| anyhow::anyhow!("--scope: {e}"))?;
                    let secret = errand_server::auth::new_secret("errand");
                    let t = store
                        .create_token(&name, &errand_server::auth::hash(&secret), &scope)
                        .await?;
                    eprintln!(
                        "token '{}' ({}, scopes {}) created; it is shown only now:",
                        t.name,
                        t.id,
                        errand_store::Scope::join(&t.scopes)
                    );
                    println!("{secret}");
                }
                TokenCmd::List => {
                    for t in store.list_tokens().await? {
                        println!(
                            "{:<36}  {:<20}  {}  {:<7}  {}",
                            t.id,
                            t.name,
                            t.created_at.format("%Y-%m-%d %H:%M"),
                            if t.revoked { "revoked" } else { "active" },
                            errand_store::Scope::join(&t.scopes)
                        );
                    }
                }
                TokenCmd::Revoke { id } => {
                    if !store.revoke_token(&id).await? {
                        bail!("no token with id '{id}' (see `errand token list`)");
                    }
                    println!("revoked {id}");
                }
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Sandbox(cmd) => sandbox::run(&paths, &config::load(&paths)?, cmd).await,
        Command::Config(ConfigCmd::Check) => config::cmd_check(&paths),
        Command::Config(ConfigCmd::Show { json }) => config::cmd_show(&paths, json),
        Command::View(args) => view::run(args).await,
        Command::MockModel { scenario, listen } => {
            let sc = errand_model::Scenario::load(&scenario)?;
            errand_model::serve_forever(sc, listen).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

fn harness_env(paths: &Paths) -> Result<BTreeMap<String, String>> {
    Ok(config::load(paths)?.harness_env())
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// One run being executed in this process, and how its lines are labelled.
struct Member {
    id: RunId,
    label: String,
}

async fn cmd_run(paths: &Paths, args: RunArgs) -> Result<std::process::ExitCode> {
    let store = open_store(paths).await?;
    let mut env = harness_env(paths)?;
    let mut mock = None;
    let mut base = if args.demo {
        let model =
            errand_model::ScriptedModel::start(demo::scenario()?, "127.0.0.1:0".parse()?).await?;
        env.insert("ANTHROPIC_BASE_URL".into(), model.base_url());
        env.insert("ANTHROPIC_API_KEY".into(), "errand-demo-key".into());
        env.insert("OPENAI_BASE_URL".into(), model.openai_base_url());
        env.insert("OPENAI_API_KEY".into(), "errand-demo-key".into());
        let repo = demo::make_repo(&paths.home.join("demo"))?;
        let mut spec = RunSpec::new(demo::PROMPT, args.harness.clone());
        spec.repo = Some(RepoSource::Local(repo.to_string_lossy().into_owned()));
        mock = Some(model);
        if !args.json {
            eprintln!(
                "demo: the real harness, driven by errand's scripted model (no API key used)"
            );
        }
        spec
    } else {
        let prompt = args
            .prompt
            .clone()
            .ok_or_else(|| anyhow!("a prompt is required"))?;
        if prompt.trim().is_empty() {
            bail!("the prompt is empty: say what the agent should do");
        }
        let mut spec = RunSpec::new(prompt, args.harness.clone());
        spec.repo = args.repo.as_deref().map(RepoSource::parse);
        spec
    };
    base.model = args.model.clone();
    base.push = args.push;
    base.agent_git = args.agent_git;
    base.agent_branches = args.agent_branches.clone();
    base.allow_force_push = args.allow_force_push;
    base.base_branch = args.base.clone();
    base.timeout_secs = args.timeout.as_secs().max(1);
    base.max_turns = args.max_turns;
    base.test_command = args.test_cmd.clone();
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    base.requested_by = Some(format!("cli:{user}"));
    base.origin = Some(errand_core::Origin::Cli { user });

    // Fan-out: one run per harness × model, all from the same base commit.
    let harnesses = split_list(&args.harness);
    if harnesses.is_empty() {
        bail!("--harness is empty: name at least one harness (see `errand harness list`)");
    }
    let models: Vec<Option<String>> = match &args.models {
        Some(m) => split_list(m).into_iter().map(Some).collect(),
        None => vec![base
            .model
            .clone()
            .or_else(|| args.demo.then(|| "claude-sonnet-4-5".to_string()))],
    };
    let fan_out = harnesses.len() * models.len() > 1;
    if fan_out {
        base.group = Some(RunId::new().short());
        if let Some(repo) = &base.repo {
            // Pin the base commit now, so a push to the remote mid-way cannot skew the comparison.
            if let Ok(remote) = errand_git::resolve_source(repo, &std::env::current_dir()?) {
                base.base_commit =
                    errand_git::remote_head(&remote, None, base.base_branch.as_deref())
                        .await
                        .ok();
            }
        }
    }
    let mut members = Vec::new();
    for h in &harnesses {
        for m in &models {
            let mut spec = base.clone();
            spec.harness = h.clone();
            spec.model = m.clone();
            // The demo's default model suits Claude Code; other harnesses keep their own default.
            if args.demo && args.model.is_none() && args.models.is_none() && h != "claude-code" {
                spec.model = None;
            }
            let id = RunId::new();
            store.create_run(id, &spec).await?;
            let label = match (&spec.model, models.len() > 1) {
                (Some(m), true) => format!("{h}/{m}"),
                _ => h.clone(),
            };
            members.push(Member { id, label });
        }
    }

    let cfg = config::load(paths)?;
    let chosen = sandbox::choose(&cfg, paths, args.sandbox)?;
    sandbox::clean_up(store.as_ref(), &chosen).await;
    let runner = Arc::new(Runner {
        store: store.clone(),
        sandbox: chosen.sandbox.clone(),
        github: cfg.github_forge()?,
        public_url: cfg.server.public_url.clone(),
        observer: None,
        paths: paths.clone(),
        env,
        cwd: std::env::current_dir()?,
        limits: Limits {
            memory_bytes: (args.memory > 0).then_some(args.memory),
            max_pids: (args.max_procs > 0).then_some(args.max_procs),
            cpus: sandbox::cpus(&cfg),
        },
        harnesses: config::load(paths)?.registry(),
        cancel_poll: Duration::from_millis(300),
        egress: cfg.egress(&[]),
        kubernetes_git_proxy_listen: cfg.sandbox.kubernetes_git_proxy_listen.clone(),
        kubernetes_git_proxy_url: cfg.sandbox.kubernetes_git_proxy_url.clone(),
    });

    let cancel = CancellationToken::new();
    // Ctrl-C or SIGTERM cancels the runs: the sandboxes are killed and the runs recorded as cancelled.
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        on_signal.cancel();
    });

    let tty = std::io::stderr().is_terminal() && !args.json;
    let live = !args.json;
    let bar = if tty {
        let pb = ProgressBar::new_spinner();
        pb.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.enable_steady_tick(Duration::from_millis(100));
        pb.set_message("queued");
        Some(pb)
    } else {
        None
    };
    let say = {
        let bar = bar.clone();
        move |line: String| match &bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    };
    if live {
        let repo = base
            .repo
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "new project".into());
        for m in &members {
            say(format!("run {}  ({}  {repo})", m.id.short(), m.label));
        }
    }

    let mut tasks = Vec::new();
    for m in &members {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let prefix = if fan_out {
            format!("[{}] ", m.label)
        } else {
            String::new()
        };
        let say = say.clone();
        let status_bar = bar.clone();
        let short = m.id.short();
        let printer = tokio::spawn(async move {
            let bar = status_bar;
            let mut r = Renderer::new(tty);
            while let Some(ev) = rx.recv().await {
                if !live {
                    continue;
                }
                if let (Some(b), errand_core::EventKind::State { state, .. }) = (&bar, &ev.kind) {
                    b.set_message(format!("{prefix}run {short} {state}"));
                }
                for line in r.render(&ev) {
                    say(format!("{prefix}{line}"));
                }
            }
            if live {
                for line in r.flush() {
                    say(format!("{prefix}{line}"));
                }
            }
        });
        let progress_bar = bar.clone();
        let progress: errand_runner::ProgressFn = Arc::new(move |line: &str| {
            if let Some(b) = &progress_bar {
                b.set_message(line.to_string());
            }
        });
        let runner = runner.clone();
        let cancel = cancel.clone();
        let id = m.id;
        tasks.push(tokio::spawn(async move {
            let rec = runner.execute(id, cancel, Some(tx), Some(progress)).await;
            let _ = printer.await;
            rec
        }));
    }
    let mut records = Vec::new();
    for t in tasks {
        records.push(t.await.map_err(|e| anyhow!("a run's task failed: {e}"))??);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(m) = mock {
        m.shutdown().await;
    }
    let all_ok = records.iter().all(|r| r.state == RunState::Succeeded);
    let jsons: Vec<serde_json::Value> = records
        .iter()
        .map(|rec| {
            let events = read_events(&paths.events(rec.id)).map(|e| e.len()).ok();
            run_json(rec, events)
        })
        .collect();
    if args.json {
        if fan_out {
            let v = serde_json::json!({ "group": base.group, "base_commit": base.base_commit, "runs": jsons });
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else if let Some(v) = jsons.first() {
            println!("{}", serde_json::to_string_pretty(v)?);
        }
    } else if fan_out {
        for rec in &records {
            print_outcome(rec);
        }
        print_comparison(&members, &records);
    } else if let Some(rec) = records.first() {
        print_outcome(rec);
    }
    Ok(if all_ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// The side-by-side table printed after a fan-out.
fn print_comparison(members: &[Member], records: &[RunRecord]) {
    println!();
    println!(
        "{:<24}  {:<10}  {:>5}  {:>9}  {:>9}  {:>8}  {:>8}  {:<6}  CHANGES",
        "HARNESS", "STATE", "TURNS", "IN", "OUT", "COST", "DURATION", "TESTS"
    );
    for (m, r) in members.iter().zip(records) {
        let s = &r.summary;
        let dur = r
            .duration()
            .map(|d| format!("{:.1}s", d.num_milliseconds() as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        println!(
            "{:<24}  {:<10}  {:>5}  {:>9}  {:>9}  {:>8}  {:>8}  {:<6}  {}",
            m.label,
            r.state.as_str(),
            s.turns.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
            opt(s.input_tokens),
            opt(s.output_tokens),
            s.cost_usd
                .map(|c| format!("${c:.4}"))
                .unwrap_or_else(|| "-".into()),
            dur,
            match s.tests_passed {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "-",
            },
            s.diffstat.as_deref().filter(|d| !d.is_empty()).unwrap_or(
                if r.state == RunState::Succeeded {
                    "none"
                } else {
                    "-"
                }
            )
        );
    }
}

fn run_json(rec: &RunRecord, events: Option<usize>) -> serde_json::Value {
    let s = &rec.summary;
    serde_json::json!({
        "id": rec.id.to_string(),
        "short_id": rec.id.short(),
        "state": rec.state,
        "repo": rec.spec.repo.as_ref().map(|r| r.to_string()),
        "harness": rec.spec.harness,
        "model": rec.spec.model,
        "prompt": rec.spec.prompt,
        "branch": s.branch,
        "commit": s.commit,
        "diffstat": s.diffstat,
        "pushed": s.pushed,
        "turns": s.turns,
        "input_tokens": s.input_tokens,
        "output_tokens": s.output_tokens,
        "cost_usd": s.cost_usd,
        "result": s.result_text,
        "tests_passed": s.tests_passed,
        "group": rec.spec.group,
        "events": events,
        "error": if rec.state == RunState::Succeeded { None } else { rec.reason.clone() },
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "finished_at": rec.finished_at,
        "duration_secs": rec.duration().map(|d| d.num_milliseconds() as f64 / 1000.0),
    })
}

fn print_outcome(rec: &RunRecord) {
    let s = &rec.summary;
    let out = std::io::stdout();
    let mut o = out.lock();
    let dur = rec
        .duration()
        .map(|d| format!("{:.1}s", d.num_milliseconds() as f64 / 1000.0))
        .unwrap_or_default();
    let _ = writeln!(o, "{} {} in {dur}", rec.id.short(), rec.state);
    if let Some(reason) = &rec.reason {
        if rec.state != RunState::Succeeded {
            let _ = writeln!(o, "  reason:  {reason}");
        }
    }
    if let Some(b) = &s.branch {
        let _ = writeln!(
            o,
            "  branch:  {b}{}",
            if s.pushed { " (pushed)" } else { "" }
        );
    }
    if let Some(c) = &s.commit {
        let _ = writeln!(o, "  commit:  {}", c.get(..12).unwrap_or(c));
    }
    if let Some(d) = &s.diffstat {
        let _ = writeln!(o, "  changes: {}", if d.is_empty() { "none" } else { d });
    }
    if s.turns.is_some() || s.cost_usd.is_some() {
        let _ = writeln!(
            o,
            "  agent:   {} turns, {} in / {} out tokens, ${:.4}",
            s.turns.unwrap_or(0),
            s.input_tokens.unwrap_or(0),
            s.output_tokens.unwrap_or(0),
            s.cost_usd.unwrap_or(0.0)
        );
    }
    if let Some(t) = &s.result_text {
        let _ = writeln!(o, "  summary: {}", render::first_line(t, 200));
    }
    let _ = writeln!(o, "  trace:   errand logs {}", rec.id.short());
}

fn age(t: chrono::DateTime<chrono::Utc>) -> String {
    let secs = (chrono::Utc::now() - t).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

async fn cmd_ls(store: &dyn Store, args: LsArgs) -> Result<std::process::ExitCode> {
    let runs = store
        .list_runs(&RunFilter {
            state: args.state,
            limit: args.limit,
            ..Default::default()
        })
        .await?;
    if args.json {
        let v: Vec<_> = runs.iter().map(|r| run_json(r, None)).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        eprintln!("no runs yet: try `errand run --demo`");
        return Ok(std::process::ExitCode::SUCCESS);
    }
    println!(
        "{:<8}  {:<10}  {:<32}  {:<11}  {:>5}  {:>8}  {:>8}",
        "ID", "STATE", "REPO", "HARNESS", "AGE", "DURATION", "COST"
    );
    for r in runs {
        let repo = r
            .spec
            .repo
            .as_ref()
            .map(|x| x.to_string())
            .unwrap_or_else(|| "(new project)".into());
        let repo = if repo.chars().count() > 32 {
            format!(
                "…{}",
                repo.chars()
                    .rev()
                    .take(31)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<String>()
            )
        } else {
            repo
        };
        let dur = r
            .duration()
            .map(|d| format!("{:.1}s", d.num_milliseconds() as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        let cost = r
            .summary
            .cost_usd
            .map(|c| format!("${c:.4}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<8}  {:<10}  {:<32}  {:<11}  {:>5}  {:>8}  {:>8}",
            r.id.short(),
            r.state.as_str(),
            repo,
            r.spec.harness,
            age(r.created_at),
            dur,
            cost
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn find(store: &dyn Store, run: &str) -> Result<RunRecord> {
    store.find_run(run).await.map_err(|e| match e {
        StoreError::NotFound(_) => anyhow!("no run matches '{run}' (see `errand ls`)"),
        other => other.into(),
    })
}

async fn cmd_show(store: &dyn Store, run: &str, json: bool) -> Result<std::process::ExitCode> {
    let rec = find(store, run).await?;
    let ts = store.transitions(rec.id).await?;
    if json {
        let mut v = run_json(&rec, None);
        v["transitions"] = serde_json::to_value(&ts)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("prompt:  {}", rec.spec.prompt);
        println!(
            "repo:    {}",
            rec.spec
                .repo
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "(new project)".into())
        );
        println!(
            "harness: {}{}",
            rec.spec.harness,
            rec.spec
                .model
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        );
        for t in &ts {
            println!(
                "  {}  {:<10} {}",
                t.at.format("%Y-%m-%d %H:%M:%S%.3f"),
                t.state.as_str(),
                t.reason.as_deref().unwrap_or("")
            );
        }
        print_outcome(&rec);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn cmd_logs(
    store: &dyn Store,
    paths: &Paths,
    args: LogsArgs,
) -> Result<std::process::ExitCode> {
    let rec = find(store, &args.run).await?;
    let path = if args.raw {
        paths.raw(rec.id)
    } else {
        paths.events(rec.id)
    };
    let color = std::io::stdout().is_terminal();
    let mut renderer = Renderer::new(color);
    let out = std::io::stdout();
    let mut print = |line: &str, o: &mut std::io::StdoutLock| -> Result<()> {
        if args.raw || args.json {
            writeln!(o, "{line}")?;
        } else if let Ok(ev) = serde_json::from_str::<Event>(line) {
            for l in renderer.render(&ev) {
                writeln!(o, "{l}")?;
            }
        }
        Ok(())
    };
    if !args.follow {
        let mut o = out.lock();
        for line in read_raw_lines(&path)? {
            print(&line, &mut o)?;
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let mut tail = LogTail::new(&path);
    loop {
        let done = store.get_run(rec.id).await?.state.is_terminal();
        let lines = tail.poll()?;
        {
            let mut o = out.lock();
            for line in &lines {
                print(line, &mut o)?;
            }
            o.flush()?;
        }
        if done && lines.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn cmd_cancel(store: &dyn Store, run: &str) -> Result<std::process::ExitCode> {
    let rec = find(store, run).await?;
    if rec.state.is_terminal() {
        bail!("run {} already ended ({})", rec.id.short(), rec.state);
    }
    let owner_alive = rec.owner_pid.is_some_and(errand_runner::pid_alive);
    if !owner_alive {
        store
            .transition(
                rec.id,
                RunState::Cancelled,
                Some("cancelled by `errand cancel` before any errand process ran it"),
            )
            .await?;
        println!("{} cancelled", rec.id.short());
        return Ok(std::process::ExitCode::SUCCESS);
    }
    store.request_cancel(rec.id).await?;
    for _ in 0..100 {
        let r = store.get_run(rec.id).await?;
        if r.state.is_terminal() {
            println!("{} {}", r.id.short(), r.state);
            return Ok(std::process::ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "asked run {} to stop, but it has not stopped within 10s",
        rec.id.short()
    )
}

//! `errand run`: one run, or a fan-out (several harnesses × models from one
//! base commit), executed in this process with a live view.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use errand_core::{Event, RepoSource, RunId, RunRecord, RunSpec, RunState};
use errand_runner::{Paths, Runner};
use errand_store::{read_events, Store};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::outcome::{print_comparison, print_outcome, run_json};
use crate::args::RunArgs;
use crate::render::Renderer;
use crate::setup::{self, open_store, RunnerOptions};
use crate::{config, demo, signal};

/// One run being executed in this process, and how its lines are labelled.
pub struct Member {
    pub id: RunId,
    pub label: String,
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

pub async fn cmd_run(paths: &Paths, args: RunArgs) -> Result<std::process::ExitCode> {
    let store = open_store(paths).await?;
    let cfg = config::load(paths)?;
    let mut env = cfg.harness_env();
    let (mut base, mock) = base_spec(paths, &args, &mut env).await?;
    apply_flags(&mut base, &args);
    // The backend is recorded with the run (shown, and kept by follow-ups).
    base.sandbox = Some(match args.sandbox {
        Some(b) => crate::sandbox::backend_name(b).to_string(),
        None => cfg.sandbox.backend.clone(),
    });
    let (members, fan_out) = create_runs(store.as_ref(), &mut base, &args).await?;

    let mut opts = RunnerOptions::new(&cfg)?;
    opts.backend = args.sandbox;
    opts.env = env;
    opts.memory = args.memory;
    opts.max_procs = args.max_procs;
    let runner = setup::runner(&cfg, paths, store.clone(), opts).await?;
    // Ctrl-C or SIGTERM cancels the runs: the sandboxes are killed and the runs recorded as cancelled.
    let cancel = signal::shutdown_token();

    let live = Live::new(!args.json);
    if live.on {
        let repo = base
            .repo
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "new project".into());
        for m in &members {
            live.say(format!("run {}  ({}  {repo})", m.id.short(), m.label));
        }
    }
    let records = execute(&runner, &cancel, &live, &members, fan_out).await?;
    if let Some(b) = &live.bar {
        b.finish_and_clear();
    }
    if let Some(m) = mock {
        m.shutdown().await;
    }
    report(paths, &args, &base, &members, &records, fan_out)?;
    let all_ok = records.iter().all(|r| r.state == RunState::Succeeded);
    Ok(if all_ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// The spec every member starts from: the demo's (with its scripted model
/// started and pointed to in `env`), or the prompt and repository given.
async fn base_spec(
    paths: &Paths,
    args: &RunArgs,
    env: &mut BTreeMap<String, String>,
) -> Result<(RunSpec, Option<errand_model::ScriptedModel>)> {
    if args.demo {
        let model =
            errand_model::ScriptedModel::start(demo::scenario()?, "127.0.0.1:0".parse()?).await?;
        env.insert("ANTHROPIC_BASE_URL".into(), model.base_url());
        env.insert("ANTHROPIC_API_KEY".into(), "errand-demo-key".into());
        env.insert("OPENAI_BASE_URL".into(), model.openai_base_url());
        env.insert("OPENAI_API_KEY".into(), "errand-demo-key".into());
        let repo = demo::make_repo(&paths.home.join("demo"))?;
        let mut spec = RunSpec::new(demo::PROMPT, args.harness.clone());
        spec.repo = Some(RepoSource::Local(repo.to_string_lossy().into_owned()));
        if !args.json {
            eprintln!(
                "demo: the real harness, driven by errand's scripted model (no API key used)"
            );
        }
        return Ok((spec, Some(model)));
    }
    let prompt = args
        .prompt
        .clone()
        .ok_or_else(|| anyhow!("a prompt is required"))?;
    if prompt.trim().is_empty() {
        bail!("the prompt is empty: say what the agent should do");
    }
    let mut spec = RunSpec::new(prompt, args.harness.clone());
    spec.repo = args.repo.as_deref().map(RepoSource::parse);
    Ok((spec, None))
}

/// Who runs this command: the login of the process's user from the system's
/// user database, else `$USER`/`$LOGNAME`, else `uid-N`; never "unknown".
fn local_user() -> String {
    pick_user(
        whoami::fallible::username().ok(),
        |k| std::env::var(k).ok(),
        // SAFETY: getuid has no preconditions and cannot fail.
        unsafe { libc::getuid() },
    )
}

fn pick_user(passwd: Option<String>, env: impl Fn(&str) -> Option<String>, uid: u32) -> String {
    let usable = |s: &String| {
        let s = s.trim();
        !s.is_empty() && !s.eq_ignore_ascii_case("unknown") && !s.chars().any(char::is_control)
    };
    passwd
        .filter(usable)
        .or_else(|| env("USER").filter(usable))
        .or_else(|| env("LOGNAME").filter(usable))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| format!("uid-{uid}"))
}

/// The flags every member shares, and who asked.
fn apply_flags(base: &mut RunSpec, args: &RunArgs) {
    base.model = args.model.clone();
    base.push = args.push;
    base.agent_git = args.agent_git;
    base.agent_branches = args.agent_branches.clone();
    base.allow_force_push = args.allow_force_push;
    base.max_cost_usd = args.max_cost;
    base.max_tokens = args.max_tokens;
    base.base_branch = args.base.clone();
    base.timeout_secs = args.timeout.as_secs().max(1);
    base.max_turns = args.max_turns;
    base.test_command = args.test_cmd.clone();
    let user = local_user();
    base.requested_by = Some(format!("cli:{user}"));
    base.origin = Some(errand_core::Origin::Cli { user });
}

/// Records one run per harness × model, all from the same base commit; also
/// whether that is a fan-out (more than one).
async fn create_runs(
    store: &dyn Store,
    base: &mut RunSpec,
    args: &RunArgs,
) -> Result<(Vec<Member>, bool)> {
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
            // This process runs it: claimed from the start, so a server's
            // workers on the same database never start it as well.
            store
                .create_own_run(id, &spec, &format!("cli:{}", std::process::id()))
                .await?;
            let label = match (&spec.model, models.len() > 1) {
                (Some(m), true) => format!("{h}/{m}"),
                _ => h.clone(),
            };
            members.push(Member { id, label });
        }
    }
    Ok((members, fan_out))
}

/// The live view on stderr: a spinner on a terminal, plain lines otherwise,
/// nothing with `--json`.
struct Live {
    on: bool,
    tty: bool,
    bar: Option<ProgressBar>,
}

impl Live {
    fn new(on: bool) -> Self {
        let tty = std::io::stderr().is_terminal() && on;
        let bar = tty.then(|| {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.enable_steady_tick(Duration::from_millis(100));
            pb.set_message("queued");
            pb
        });
        Live { on, tty, bar }
    }

    fn say(&self, line: String) {
        say_to(&self.bar, line);
    }
}

fn say_to(bar: &Option<ProgressBar>, line: String) {
    match bar {
        Some(b) => b.println(line),
        None => eprintln!("{line}"),
    }
}

/// Executes every member at once, each printing its events as they come.
async fn execute(
    runner: &Arc<Runner>,
    cancel: &CancellationToken,
    live: &Live,
    members: &[Member],
    fan_out: bool,
) -> Result<Vec<RunRecord>> {
    let mut tasks = Vec::new();
    for m in members {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        let prefix = if fan_out {
            format!("[{}] ", m.label)
        } else {
            String::new()
        };
        let (on, tty, bar) = (live.on, live.tty, live.bar.clone());
        let short = m.id.short();
        let printer = tokio::spawn(async move {
            let mut r = Renderer::new(tty);
            while let Some(ev) = rx.recv().await {
                if !on {
                    continue;
                }
                if let (Some(b), errand_core::EventKind::State { state, .. }) = (&bar, &ev.kind) {
                    b.set_message(format!("{prefix}run {short} {state}"));
                }
                for line in r.render(&ev) {
                    say_to(&bar, format!("{prefix}{line}"));
                }
            }
            if on {
                for line in r.flush() {
                    say_to(&bar, format!("{prefix}{line}"));
                }
            }
        });
        let progress_bar = live.bar.clone();
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
    Ok(records)
}

/// The outcome on stdout: JSON (one object, or the group's), or the outcome
/// blocks and, for a fan-out, the comparison table.
fn report(
    paths: &Paths,
    args: &RunArgs,
    base: &RunSpec,
    members: &[Member],
    records: &[RunRecord],
    fan_out: bool,
) -> Result<()> {
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
        for rec in records {
            print_outcome(rec);
        }
        print_comparison(members, records);
    } else if let Some(rec) = records.first() {
        print_outcome(rec);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requester_is_a_real_user_never_unknown() {
        let none = |_: &str| None;
        let env = |k: &str| (k == "LOGNAME").then(|| "ada".to_string());
        assert_eq!(pick_user(Some("root".into()), env, 0), "root");
        assert_eq!(pick_user(None, env, 1000), "ada");
        assert_eq!(pick_user(Some("Unknown".into()), none, 1000), "uid-1000");
        assert_eq!(pick_user(Some(" \n".into()), none, 7), "uid-7");
        // This process's user, as the system knows it.
        let me = local_user();
        assert!(!me.is_empty() && me != "unknown", "{me}");
    }
}

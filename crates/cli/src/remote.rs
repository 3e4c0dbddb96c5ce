//! Commands run against an errand server (`--server URL`).

use std::io::IsTerminal;

use anyhow::{bail, Result};
use reqwest::Method;

use crate::args::{Command, RunArgs};
use crate::client::Client;

/// Runs `cmd` against the server; `None` for commands that are always local.
pub async fn dispatch(server: &str, cmd: &Command) -> Result<Option<std::process::ExitCode>> {
    let c = Client::new(server)?;
    let ok = std::process::ExitCode::SUCCESS;
    match cmd {
        Command::Run(args) => run(&c, server, args).await.map(Some),
        Command::Ls(args) => {
            let mut path = format!("/api/v1/runs?limit={}", args.limit);
            if let Some(s) = args.state {
                path.push_str(&format!("&state={s}"));
            }
            let v = c.json(Method::GET, &path, None).await?;
            let runs = v["runs"].as_array().cloned().unwrap_or_default();
            if args.json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                println!(
                    "{:<8}  {:<10}  {:<40}  {:<11}  {:>8}",
                    "ID", "STATE", "REPO", "HARNESS", "COST"
                );
                for r in runs {
                    println!(
                        "{:<8}  {:<10}  {:<40}  {:<11}  {:>8}",
                        r["short_id"].as_str().unwrap_or(""),
                        r["state"].as_str().unwrap_or(""),
                        r["repo"].as_str().unwrap_or("(new project)"),
                        r["harness"].as_str().unwrap_or(""),
                        r["cost_usd"]
                            .as_f64()
                            .map(|x| format!("${x:.4}"))
                            .unwrap_or_else(|| "-".into())
                    );
                }
            }
            Ok(Some(ok))
        }
        Command::Show { run, .. } => {
            let v = c
                .json(Method::GET, &format!("/api/v1/runs/{run}"), None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(Some(ok))
        }
        Command::Logs(args) => {
            if args.follow {
                c.follow(&args.run, 0, args.json, std::io::stdout().is_terminal())
                    .await?;
            } else {
                let raw = if args.raw { "&raw=1" } else { "" };
                let body = c
                    .text(&format!("/api/v1/runs/{}/events?after=0{raw}", args.run))
                    .await?;
                if args.raw || args.json {
                    print!("{body}");
                } else {
                    let mut r = crate::render::Renderer::new(std::io::stdout().is_terminal());
                    for line in body.lines() {
                        if let Ok(ev) = serde_json::from_str::<errand_core::Event>(line) {
                            for l in r.render(&ev) {
                                println!("{l}");
                            }
                        }
                    }
                }
            }
            Ok(Some(ok))
        }
        Command::Cancel { run } => {
            let v = c
                .json(Method::POST, &format!("/api/v1/runs/{run}/cancel"), None)
                .await?;
            println!(
                "{} {}",
                v["short_id"].as_str().unwrap_or(""),
                if v["state"] == "cancelled" {
                    "cancelled"
                } else {
                    "cancelling"
                }
            );
            Ok(Some(ok))
        }
        Command::Pick {
            run,
            close_others,
            json,
        } => {
            let r = c
                .json(Method::GET, &format!("/api/v1/runs/{run}"), None)
                .await?;
            let Some(group) = r["group"].as_str() else {
                bail!("run {run} is not part of a fan-out: nothing to pick from");
            };
            let v = c
                .json(
                    Method::POST,
                    &format!("/api/v1/groups/{group}/pick"),
                    Some(serde_json::json!({ "run": r["id"], "close_others": close_others })),
                )
                .await?;
            if *json {
                println!("{v}");
            } else if let Some(done) = v["done"].as_array() {
                for d in done {
                    println!("{}", d.as_str().unwrap_or(""));
                }
            }
            Ok(Some(ok))
        }
        _ => Ok(None),
    }
}

/// `errand run` on the server: queue the run, follow it, print how it ended.
async fn run(c: &Client, server: &str, args: &RunArgs) -> Result<std::process::ExitCode> {
    if args.demo || args.models.is_some() || args.harness.contains(',') {
        bail!("--demo and fan-out run locally; drop --server");
    }
    let Some(prompt) = &args.prompt else {
        bail!("a prompt is required")
    };
    let mut body = serde_json::json!({
        "prompt": prompt, "repo": args.repo, "harness": args.harness, "model": args.model,
        "push": args.push, "base": args.base, "timeout_secs": args.timeout.as_secs(),
        "max_turns": args.max_turns, "test_cmd": args.test_cmd,
    });
    // Sent only when asked for, so older servers keep accepting the body.
    if args.agent_git {
        body["agent_git"] = serde_json::Value::Bool(true);
    }
    if !args.agent_branches.is_empty() {
        body["agent_branches"] = serde_json::json!(args.agent_branches);
    }
    if args.allow_force_push {
        body["allow_force_push"] = serde_json::Value::Bool(true);
    }
    if let Some(c) = args.max_cost {
        body["max_cost_usd"] = serde_json::json!(c);
    }
    if let Some(t) = args.max_tokens {
        body["max_tokens"] = serde_json::json!(t);
    }
    let run = c.json(Method::POST, "/api/v1/runs", Some(body)).await?;
    let id = run["id"].as_str().unwrap_or_default().to_string();
    if !args.json {
        eprintln!(
            "run {} queued on {server}",
            run["short_id"].as_str().unwrap_or("")
        );
        c.follow(&id, 0, false, std::io::stderr().is_terminal())
            .await?;
    } else {
        c.follow_quietly(&id).await?;
    }
    let run = c
        .json(Method::GET, &format!("/api/v1/runs/{id}"), None)
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        println!(
            "{} {}",
            run["short_id"].as_str().unwrap_or(""),
            run["state"].as_str().unwrap_or("")
        );
        for k in [
            "reason", "branch", "commit", "diffstat", "cost_usd", "result",
        ] {
            if !run[k].is_null() {
                println!("  {k}: {}", run[k].to_string().trim_matches('"'));
            }
        }
    }
    Ok(if run["state"] == "succeeded" {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

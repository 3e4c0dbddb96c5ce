//! `errand ls`: recent runs, a table or JSON.

use anyhow::Result;
use errand_store::{RunFilter, Store};

use super::outcome::run_json;
use crate::args::LsArgs;

fn age(t: chrono::DateTime<chrono::Utc>) -> String {
    let secs = (chrono::Utc::now() - t).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// What retention removed of the run: `workspace`, `logs`, both, or nothing.
fn pruned(r: &errand_core::RunRecord) -> String {
    let gone: Vec<&str> = [
        ("workspace", r.workspace_pruned_at.is_some()),
        ("logs", r.logs_pruned_at.is_some()),
    ]
    .iter()
    .filter(|(_, g)| *g)
    .map(|(w, _)| *w)
    .collect();
    gone.join(",")
}

pub async fn cmd_ls(store: &dyn Store, args: LsArgs) -> Result<std::process::ExitCode> {
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
        "{:<8}  {:<10}  {:<32}  {:<11}  {:>5}  {:>8}  {:>8}  PRUNED",
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
            "{:<8}  {:<10}  {:<32}  {:<11}  {:>5}  {:>8}  {:>8}  {}",
            r.id.short(),
            r.state.as_str(),
            repo,
            r.spec.harness,
            age(r.created_at),
            dur,
            cost,
            pruned(&r)
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

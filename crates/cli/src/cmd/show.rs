//! `errand show`: one run's spec, state changes and outcome.

use anyhow::Result;
use errand_store::Store;

use super::find;
use super::outcome::{print_outcome, run_json};

pub async fn cmd_show(store: &dyn Store, run: &str, json: bool) -> Result<std::process::ExitCode> {
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
        let when = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
        if let Some(t) = rec.workspace_pruned_at {
            println!(
                "workspace: removed by retention on {} (a follow-up re-creates it from the run's branch)",
                when(t)
            );
        }
        if let Some(t) = rec.logs_pruned_at {
            println!(
                "logs:      removed by retention on {} (the trace is gone)",
                when(t)
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

//! `errand gc`, and the same pruning on a schedule in `errand serve` /
//! `errand worker` (`[retention] interval`).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use errand_runner::retention::{self, Policy, Report, Why};
use errand_runner::Paths;
use errand_store::{Pruned, Store};
use tokio_util::sync::CancellationToken;

use crate::args::GcArgs;
use crate::config;
use crate::setup::open_store;

/// `errand gc [--dry-run] [--json]`: prunes, then says what was freed; exit 1
/// when something could not be removed.
pub async fn cmd_gc(paths: &Paths, args: GcArgs) -> Result<ExitCode> {
    let cfg = config::load(paths)?;
    let policy = cfg.retention.policy().map_err(|e| anyhow!(e))?;
    let store = open_store(paths).await?;
    errand_runner::reap_orphans(store.as_ref()).await?;
    let now = args.now.unwrap_or_else(chrono::Utc::now);
    let report = retention::gc(store.as_ref(), paths, &policy, now, args.dry_run).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &policy);
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `n` bytes for people: `1.5 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn print_report(r: &Report, policy: &Policy) {
    let verb = if r.dry_run { "would free" } else { "freed" };
    println!(
        "{verb} {} from {} run(s) and {} mirror(s); runs/ held {}",
        human_bytes(r.freed_bytes),
        r.runs,
        r.mirrors.len(),
        human_bytes(r.runs_bytes_before)
    );
    for i in &r.items {
        let what = match (i.what, i.with_outbox) {
            (Pruned::Workspace, false) => "workspace",
            (Pruned::Workspace, true) => "workspace + outbox",
            (Pruned::Logs, false) => "logs",
            (Pruned::Logs, true) => "logs + outbox",
        };
        let why = match (i.why, i.what) {
            (Why::Budget, _) => "over retention.max_disk".to_string(),
            (Why::Age, Pruned::Workspace) => format!(
                "ended over {} ago",
                humantime::format_duration(policy.workspaces.max(policy.follow_up_window))
            ),
            (Why::Age, Pruned::Logs) => {
                format!("ended over {} ago", humantime::format_duration(policy.logs))
            }
        };
        println!(
            "  {}  {:<18}  {:>10}  ({why})",
            i.run.short(),
            what,
            human_bytes(i.bytes)
        );
    }
    for (path, bytes) in &r.mirrors {
        println!("  mirror {}  {}", path.display(), human_bytes(*bytes));
    }
    for e in &r.errors {
        eprintln!("errand gc: {e}");
    }
}

/// Prunes every `[retention] interval` until `shutdown`, logging what it
/// freed; `None` when the configuration turns it off.
pub fn schedule(
    paths: &Paths,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let cfg = config::load(paths)?;
    let policy = cfg.retention.policy().map_err(|e| anyhow!(e))?;
    let Some(every) = cfg.retention.interval().map_err(|e| anyhow!(e))? else {
        return Ok(None);
    };
    let paths = paths.clone();
    Ok(Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = chrono::Utc::now();
            match retention::gc(store.as_ref(), &paths, &policy, now, false).await {
                Ok(r) if r.freed_bytes > 0 || !r.errors.is_empty() => tracing::info!(
                    freed_bytes = r.freed_bytes,
                    runs = r.runs,
                    mirrors = r.mirrors.len(),
                    errors = ?r.errors,
                    "retention: freed {}",
                    human_bytes(r.freed_bytes)
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("retention failed: {e}"),
            }
        }
    })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_read_naturally() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(50 << 30), "50.0 GiB");
    }
}

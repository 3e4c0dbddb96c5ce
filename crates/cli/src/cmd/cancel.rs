//! `errand cancel`: stop a queued or running run.

use std::time::Duration;

use anyhow::{bail, Result};
use errand_core::RunState;
use errand_store::Store;

use super::find;

pub async fn cmd_cancel(store: &dyn Store, run: &str) -> Result<std::process::ExitCode> {
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

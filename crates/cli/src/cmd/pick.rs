//! `errand pick`: keep one run of a fan-out as its result (its pull request
//! opened or marked; with `--close-others`, the other runs' pull requests
//! closed and their branches deleted). See `errand_runner::pick`.

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use errand_runner::{Forge, Paths, PickRequest};

use super::find;
use crate::setup::open_store;

pub async fn cmd_pick(
    paths: &Paths,
    run: &str,
    close_others: bool,
    json: bool,
) -> Result<ExitCode> {
    let cfg = crate::config::load(paths)?;
    let store = open_store(paths).await?;
    let rec = find(store.as_ref(), run).await?;
    let group = rec.spec.group.clone().ok_or_else(|| {
        anyhow!(
            "run {} is not part of a fan-out (started with several harnesses or models): nothing to pick from",
            rec.id.short()
        )
    })?;
    let forge = cfg.github_forge()?.map(|g| g as std::sync::Arc<dyn Forge>);
    let by = std::env::var("USER").unwrap_or_else(|_| "errand pick".into());
    let picked = errand_runner::pick(
        store.as_ref(),
        forge.as_deref(),
        &std::env::current_dir()?,
        cfg.server.public_url.as_deref(),
        &PickRequest {
            group: &group,
            run: rec.id,
            close_others,
            by: &by,
        },
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string(&picked)?);
    } else {
        for line in &picked.done {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

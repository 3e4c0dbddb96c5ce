//! One module per command; [`dispatch`] picks it. Commands that reach the
//! store or the runner get them from [`crate::setup`], and those that must
//! stop on Ctrl-C or SIGTERM their token from [`crate::signal`].

mod cancel;
mod config;
mod db;
mod gc;
mod github;
mod harness;
mod logs;
mod ls;
mod outcome;
mod pick;
mod run;
mod secret;
mod serve;
mod show;
mod token;
mod view;

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use errand_core::RunRecord;
use errand_runner::Paths;
use errand_store::{Store, StoreError};

use crate::args::{Cli, Command, ConfigCmd, GithubCmd, LogsArgs};
use crate::setup::open_store;
use crate::{localtrace, remote, sandbox};

/// Runs the command (against `--server` when one is given and the command can).
pub async fn dispatch(cli: Cli) -> Result<ExitCode> {
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
        Command::Run(args) => run::cmd_run(&paths, args).await,
        Command::Ls(args) => {
            let store = reaped_store(&paths).await?;
            ls::cmd_ls(store.as_ref(), args).await
        }
        Command::Show { run, json } => {
            let store = reaped_store(&paths).await?;
            show::cmd_show(store.as_ref(), &run, json).await
        }
        Command::Logs(args) => {
            let store = reaped_store(&paths).await?;
            logs::cmd_logs(store.as_ref(), &paths, args).await
        }
        Command::Cancel { run } => {
            let store = open_store(&paths).await?;
            cancel::cmd_cancel(store.as_ref(), &run).await
        }
        Command::Pick {
            run,
            close_others,
            json,
        } => pick::cmd_pick(&paths, &run, close_others, json).await,
        Command::Harness(cmd) => harness::run(&paths, cmd).await,
        // `--workers 0`: an API-only node; workers run elsewhere.
        Command::Serve {
            listen,
            workers,
            database_url,
        } => {
            let with_workers = workers != Some(0);
            serve::serve(
                &paths,
                listen,
                workers,
                database_url.as_deref(),
                with_workers,
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
            github::app_manifest(&paths, &name, url)
        }
        Command::Secret(cmd) => secret::run(&paths, cmd).await,
        Command::Token(cmd) => token::run(&paths, cmd).await,
        Command::Sandbox(cmd) => sandbox::run(&paths, &crate::config::load(&paths)?, cmd).await,
        Command::Config(ConfigCmd::Check) => config::check(&paths),
        Command::Config(ConfigCmd::Show { json }) => config::show(&paths, json),
        Command::View(args) => view::run(args).await,
        Command::Gc(args) => gc::cmd_gc(&paths, args).await,
        Command::Db(cmd) => db::run(&paths, cmd).await,
        Command::MockModel { scenario, listen } => {
            let sc = errand_model::Scenario::load(&scenario)?;
            errand_model::serve_forever(sc, listen).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The store, after marking failed the runs whose errand process died.
async fn reaped_store(paths: &Paths) -> Result<std::sync::Arc<dyn Store>> {
    let store = open_store(paths).await?;
    errand_runner::reap_orphans(store.as_ref()).await?;
    Ok(store)
}

/// The run `run` names (an id or a unique prefix).
async fn find(store: &dyn Store, run: &str) -> Result<RunRecord> {
    store.find_run(run).await.map_err(|e| match e {
        StoreError::NotFound(_) => anyhow!("no run matches '{run}' (see `errand ls`)"),
        other => other.into(),
    })
}

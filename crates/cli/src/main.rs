//! `errand`: run coding agents in the background, in sandboxes, with any harness.
//!
//! This binary is glue: [`args`] is the command line, [`cmd`] one module per
//! command, [`setup`] turns the configuration into the store and the runner,
//! and everything it prints comes from [`render`].

mod args;
mod client;
mod cmd;
mod config;
mod demo;
mod gate;
mod guard;
mod localtrace;
mod logging;
mod remote;
mod render;
mod sandbox;
mod setup;
mod signal;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// The system allocator with a memory budget for guard decisions: a shell
/// line the parser would allocate on without bound is denied, not a crash
/// that the harness reads as "no decision".
#[global_allocator]
static ALLOC: errand_guard::budget::Budgeted = errand_guard::budget::Budgeted;

fn main() -> ExitCode {
    release_large_buffers();
    // Inside a sandbox, in front of the harness: the egress bridge, started before anything else.
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if argv.get(1).is_some_and(|a| a == "sandbox") && argv.get(2).is_some_and(|a| a == "bridge") {
        return sandbox::bridge(&argv[3..]);
    }
    let cli = Cli::parse();
    let service = matches!(cli.command, Command::Serve { .. } | Command::Worker { .. });
    logging::init(cli.log_format, service);
    // The guard's commands run inside sandboxes, before anything else: no runtime.
    let result = match cli.command {
        Command::Guard(cmd) => guard::run(cmd),
        _ => tokio::runtime::Runtime::new()
            .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
            .and_then(|rt| rt.block_on(cmd::dispatch(cli))),
    };
    result.unwrap_or_else(|e| {
        eprintln!("errand: {e:#}");
        ExitCode::FAILURE
    })
}

/// Large buffers (a harness's 8 MiB line, its copies on the way into the
/// store) go back to the system when freed. glibc's default threshold rises
/// after each large free, so later ones come from its arenas and stay there:
/// an agent printing long lines grew errand's memory well past what it
/// held at any moment. Fixed at 1 MiB, the size that matters here.
fn release_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: a plain setting, made before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

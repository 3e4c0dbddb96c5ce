//! `errand harness list|install`.

use std::io::IsTerminal;

use anyhow::{bail, Result};
use errand_runner::Paths;

use crate::args::HarnessCmd;
use crate::config;

pub async fn run(paths: &Paths, cmd: HarnessCmd) -> Result<std::process::ExitCode> {
    match cmd {
        HarnessCmd::List => list(paths),
        HarnessCmd::Install { name } => install(paths, &name).await,
    }
}

fn list(paths: &Paths) -> Result<std::process::ExitCode> {
    let registry = config::load(paths)?.registry();
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

async fn install(paths: &Paths, name: &str) -> Result<std::process::ExitCode> {
    let h = config::load(paths)?.registry().get(name)?;
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

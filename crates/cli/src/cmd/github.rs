//! `errand github app-manifest`: the GitHub App's manifest.

use anyhow::{Context, Result};
use errand_runner::Paths;

use crate::config;

pub fn app_manifest(
    paths: &Paths,
    name: &str,
    url: Option<String>,
) -> Result<std::process::ExitCode> {
    let cfg = config::load(paths)?;
    let url = url
        .or(cfg.server.public_url.clone())
        .context("give --url (or set server.public_url): GitHub must reach errand's webhook")?;
    let url = url.trim_end_matches('/');
    let manifest = errand_github::app_manifest(name, url, &format!("{url}/github/webhook"));
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    Ok(std::process::ExitCode::SUCCESS)
}

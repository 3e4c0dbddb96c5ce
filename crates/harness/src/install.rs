//! Installing a harness CLI from npm into errand's cache.
//!
//! Each pinned version goes into its own directory,
//! `<cache>/harnesses/<name>/<version>/`, installed into a temporary sibling
//! first and renamed into place only when npm succeeded, so an interrupted
//! install is never mistaken for a finished one.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::HarnessError;

/// A pinned npm package and the executable it provides.
#[derive(Debug, Clone, Copy)]
pub struct NpmPackage {
    /// The package's name on npm.
    pub name: &'static str,
    /// The pinned version.
    pub version: &'static str,
    /// Path of the executable relative to the install directory.
    pub bin: &'static str,
}

impl NpmPackage {
    /// `name@version`, as npm takes it.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Receives progress lines while something slow happens.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// The install directory for `harness` under `cache`.
pub fn install_dir(cache: &Path, harness: &str, pkg: &NpmPackage) -> PathBuf {
    cache.join("harnesses").join(harness).join(pkg.version)
}

/// Installs `pkg` unless it is already there; returns the install directory.
pub async fn install_npm(
    cache: &Path,
    harness: &str,
    pkg: &NpmPackage,
    progress: Progress<'_>,
) -> Result<PathBuf, HarnessError> {
    let dir = install_dir(cache, harness, pkg);
    if dir.join(pkg.bin).is_file() {
        return Ok(dir);
    }
    let fail = |detail: String| HarnessError::Install {
        package: pkg.spec(),
        detail,
    };
    let parent = dir.parent().ok_or_else(|| fail("bad cache path".into()))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = parent.join(format!(".{}-{}-{n}", pkg.version, std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    progress(&format!("installing {} with npm…", pkg.spec()));
    let mut npm = errand_proc::Cmd::new("npm");
    npm.args([
        "install",
        "--no-audit",
        "--no-fund",
        "--no-update-notifier",
        "--loglevel=error",
        "--prefix",
    ])
    .arg(&staging)
    .arg(pkg.spec())
    // Package install scripts run here, on the host: they get what npm
    // needs (PATH, HOME, its own settings, proxies, certificates), never
    // errand's API keys or tokens.
    .envs(std::env::vars_os().filter(|(k, _)| npm_may_see(&k.to_string_lossy())))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = npm.tokio().spawn().map_err(|e| {
        fail(format!(
            "npm could not be started (is Node.js installed?): {e}"
        ))
    })?;
    let mut err_lines = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            progress(&line);
            err_lines.push(line);
        }
    }
    let status = child.wait().await.map_err(|e| fail(e.to_string()))?;
    if !status.success() || !staging.join(pkg.bin).is_file() {
        let _ = std::fs::remove_dir_all(&staging);
        let tail: Vec<_> = err_lines.iter().rev().take(5).rev().cloned().collect();
        return Err(fail(format!(
            "npm exited with {status}: {}",
            tail.join(" | ")
        )));
    }
    match std::fs::rename(&staging, &dir) {
        Ok(()) => {}
        // Another errand process finished the same install first.
        Err(_) if dir.join(pkg.bin).is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Err(e) => return Err(fail(format!("cannot move install into place: {e}"))),
    }
    progress(&format!("installed {}", pkg.spec()));
    Ok(dir)
}

/// Whether npm's environment keeps variable `name`: its own settings and
/// the machine's basics, nothing that could hold a secret of errand's.
fn npm_may_see(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LC_ALL",
        "TMPDIR",
        "TZ",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "NODE_EXTRA_CA_CERTS",
        "NODE_OPTIONS",
    ];
    let lower = name.to_ascii_lowercase();
    EXACT.contains(&name)
        || lower.starts_with("npm_config_")
        || lower.starts_with("xdg_")
        || lower.starts_with("lc_")
}

#[cfg(test)]
mod npm_env_tests {
    #[test]
    fn npm_sees_its_settings_and_never_errands_secrets() {
        for keep in [
            "PATH",
            "HOME",
            "npm_config_registry",
            "NPM_CONFIG_CACHE",
            "https_proxy",
        ] {
            assert!(super::npm_may_see(keep), "{keep}");
        }
        for drop in [
            "ANTHROPIC_API_KEY",
            "OPENAI_API_KEY",
            "GITHUB_TOKEN",
            "ERRAND_SECRET_KEY",
            "NPM_TOKEN",
        ] {
            assert!(!super::npm_may_see(drop), "{drop}");
        }
    }
}

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
    pub name: &'static str,
    pub version: &'static str,
    /// Path of the executable relative to the install directory.
    pub bin: &'static str,
}

impl NpmPackage {
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
    let mut child = tokio::process::Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&staging)
        .arg(pkg.spec())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
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

//! What the real-CLI tests share: finding (or installing) a pinned harness CLI.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};

/// The CLI `bin` of npm package `spec` (`name@version`): the path in `env_var`
/// when set, else installed once per test binary with npm under the target
/// directory (npm's cache makes later installs quick). `None` only when it
/// cannot be had (no npm, no registry).
pub fn npm_cli(env_var: &str, spec: &str, bin: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        return p.exists().then_some(p);
    }
    static INSTALLED: OnceLock<Mutex<HashMap<String, Option<PathBuf>>>> = OnceLock::new();
    let mut done = INSTALLED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    done.entry(spec.to_string())
        .or_insert_with(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("model-test-{bin}"));
            let path = dir.join("node_modules/.bin").join(bin);
            if path.exists() {
                return Some(path);
            }
            let ok = std::process::Command::new("npm")
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--prefix",
                ])
                .arg(&dir)
                .arg(spec)
                .stdin(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            (ok && path.exists()).then_some(path)
        })
        .clone()
}

//! The real harness CLIs (Claude Code, Codex, Gemini CLI, OpenCode) that
//! end-to-end tests run: installed from npm by `errand harness install` into
//! one cache directory, once per test process, and found there by errand.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Installs harness `name` (`claude-code`, `codex`, `gemini`, `opencode`)
/// with `errand harness install` into `cache` (what the tests then pass as
/// `ERRAND_CACHE_DIR`) and returns its install directory. Each name is
/// installed once per process: later calls, from any thread, return the
/// directory found the first time (installs run one at a time). Panics when
/// the install fails: a test that needs the CLI cannot go on.
pub fn install(errand: &Path, cache: &Path, name: &str) -> PathBuf {
    static DONE: Mutex<Vec<(PathBuf, String, PathBuf)>> = Mutex::new(Vec::new());
    // A test that panicked during an install leaves nothing half-recorded:
    // the list only grows after a finished install.
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, dir)) = done.iter().find(|(c, n, _)| c == cache && n == name) {
        return dir.clone();
    }
    let dir = run_install(errand, cache, name);
    done.push((cache.to_path_buf(), name.to_string(), dir.clone()));
    dir
}

#[allow(clippy::disallowed_methods)] // tests start their own fixtures
fn run_install(errand: &Path, cache: &Path, name: &str) -> PathBuf {
    let out = Command::new(errand)
        .args(["harness", "install", name])
        .env("ERRAND_CACHE_DIR", cache)
        .env(
            "ERRAND_HOME",
            std::env::temp_dir().join("errand-install-home"),
        )
        .output()
        .unwrap_or_else(|e| panic!("errand harness install {name} could not start: {e}"));
    assert!(
        out.status.success(),
        "harness install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

//! What errand's tests share.
//!
//! One rule for a tool or service a test needs (bubblewrap, Docker,
//! PostgreSQL, Chromium, a harness CLI) and cannot find: in CI (`CI` set to
//! anything but empty, `0` or `false`) it is a failure, never a silent pass;
//! elsewhere the test says `not run: …` on stderr and returns early, and is
//! not counted as having checked anything.
//!
//! Beside that rule: the real harness CLIs, installed once per test process
//! ([`harness`]); a fresh PostgreSQL database ([`postgres`]); with feature
//! `model`, the scripted model started for a test (module `model`); with feature
//! `fakes`, the fake GitHub and fake Slack (module `fakes`).

#![warn(missing_docs)]

#[cfg(feature = "fakes")]
pub mod fakes;
pub mod harness;
#[cfg(feature = "model")]
pub mod model;
pub mod postgres;

use std::process::Stdio;

use errand_proc::Cmd;

/// Whether this is CI: `CI` set to something other than empty, `0` or `false`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Whether a test may go on with `what`. `Ok(())`: it is there. `Err(why)`:
/// in CI this panics (a missing tool fails the run); elsewhere it prints
/// `not run: <what>: <why>` and returns `false`, so the caller returns early.
///
/// ```
/// # fn probe() -> Result<(), String> { Ok(()) }
/// if !errand_test_support::need("bubblewrap", probe()) {
///     return;
/// }
/// ```
pub fn need(what: &str, found: Result<(), String>) -> bool {
    match found {
        Ok(()) => true,
        Err(why) => {
            assert!(
                !in_ci(),
                "{what} is required in CI and is not usable here: {why} (scripts/setup --tests installs it)"
            );
            eprintln!("not run: {what}: {why}");
            false
        }
    }
}

/// Whether bubblewrap can make a user and PID namespace here.
pub fn bubblewrap() -> Result<(), String> {
    let out = Cmd::new("bwrap")
        .args([
            "--unshare-user",
            "--unshare-pid",
            "--ro-bind",
            "/",
            "/",
            "--",
            "true",
        ])
        .inherit_env(&["PATH"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("bwrap cannot be started ({e}); install the bubblewrap package"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "bwrap cannot make a sandbox here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether `program --version` runs (a tool on PATH).
pub fn on_path(program: &str) -> Result<(), String> {
    // The tool sees the test's whole environment, as the test's own use of it will.
    match Cmd::new(program)
        .arg("--version")
        .inherit_all_env()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`{program} --version` exited with {s}")),
        Err(e) => Err(format!("`{program}` is not on PATH ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_there_goes_on() {
        assert!(need("a tool that is there", Ok(())));
    }

    #[test]
    fn a_tool_that_is_not_there_is_not_run_outside_ci_and_fails_in_it() {
        if in_ci() {
            let r = std::panic::catch_unwind(|| need("nothing", Err("absent".into())));
            assert!(r.is_err(), "in CI a missing tool must fail");
        } else {
            assert!(!need("nothing", Err("absent".into())));
        }
        assert!(on_path("errand-no-such-program").is_err());
    }
}

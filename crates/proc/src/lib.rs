//! The one place errand starts processes.
//!
//! Every child process errand starts (host-side git, npm, the git gate's
//! calls, a browser) is built by a [`Cmd`]; `clippy.toml` refuses
//! `std::process::Command::new` and `tokio::process::Command::new` everywhere
//! else. Unless told otherwise, a [`Cmd`]:
//!
//! - **starts with an empty environment.** The child sees only what the caller
//!   sets with [`Cmd::env`] or names with [`Cmd::inherit_env`], so no API key or
//!   token of errand's reaches a child by accident. [`Cmd::inherit_all_env`] is
//!   the explicit opt-in for the few children that carry on the caller's own
//!   session (a shim exec'ing the real tool, a browser).
//! - **dies with errand.** On Linux the child is sent `SIGKILL` when the thread
//!   that started it ends (`PR_SET_PDEATHSIG`), so a crashed or killed errand
//!   leaves no git or npm behind. Start a child from a thread that outlives it
//!   (a runtime's worker, a thread that waits for it), never from one that
//!   returns while the child should go on.
//! - **dies when dropped.** [`Cmd::tokio`] sets `kill_on_drop`, so a cancelled
//!   or timed-out future takes its process with it.
//!
//! A program named without a `/` is looked up in the `PATH` the child is given,
//! not in errand's: inherit or set `PATH` for it (with none, the C library's
//! default, `/bin:/usr/bin`, applies).
//!
//! What the builder does not cover (`pre_exec`, process groups, descriptors
//! passed to the child) is done on the command [`Cmd::std`] or [`Cmd::tokio`]
//! hands back, which already has everything above applied.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! let out = errand_proc::Cmd::new("echo")
//!     .arg("hello")
//!     .inherit_env(&["PATH"])
//!     .output()?;
//! assert_eq!(out.stdout, b"hello\n");
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::process::{Child, ExitStatus, Output, Stdio};

/// A process to start, with errand's defaults: an empty environment, killed
/// with errand (Linux) and, as a tokio command, killed when dropped.
///
/// The setters take and return `&mut Cmd`, as [`std::process::Command`]'s do.
#[derive(Debug)]
pub struct Cmd {
    command: std::process::Command,
    /// Variables removed: kept out of what is inherited later.
    removed: Vec<OsString>,
    /// Whether the child gets the parent-death signal.
    die_with_parent: bool,
    /// Whether the parent-death signal is already installed in `command`.
    armed: bool,
}

impl Cmd {
    /// A command that runs `program` with no arguments and an empty
    /// environment, in errand's working directory, with inherited stdio.
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        #[allow(clippy::disallowed_methods)] // the one place that may
        let mut command = std::process::Command::new(program);
        command.env_clear();
        Cmd {
            command,
            removed: Vec::new(),
            die_with_parent: true,
            armed: false,
        }
    }

    /// Adds one argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Cmd {
        self.command.arg(arg);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// The name the program sees as its `argv[0]`.
    #[cfg(unix)]
    pub fn arg0(&mut self, arg0: impl AsRef<OsStr>) -> &mut Cmd {
        std::os::unix::process::CommandExt::arg0(&mut self.command, arg0);
        self
    }

    /// Sets one variable of the child's environment.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Cmd {
        self.command.env(key, value);
        self
    }

    /// Sets variables of the child's environment.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Cmd
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.command.envs(vars);
        self
    }

    /// Keeps `key` out of the child's environment, also from a later
    /// [`Cmd::inherit_env`] or [`Cmd::inherit_all_env`].
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Cmd {
        self.command.env_remove(&key);
        self.removed.push(key.as_ref().to_owned());
        self
    }

    /// Passes on errand's own value of each variable in `names` that is set.
    /// A name ending in `*` is a prefix (`"LC_*"`, `"GIT_SSL_*"`). A variable
    /// already set or removed on this command keeps that.
    pub fn inherit_env(&mut self, names: &[&str]) -> &mut Cmd {
        for (key, value) in std::env::vars_os() {
            if names.iter().any(|n| name_matches(n, &key)) && !self.is_set(&key) {
                self.command.env(&key, &value);
            }
        }
        self
    }

    /// Passes on errand's whole environment (except what is already set or
    /// removed on this command). An explicit opt-in: only for a child that
    /// carries on the caller's own session, never for one errand runs for
    /// itself.
    pub fn inherit_all_env(&mut self) -> &mut Cmd {
        for (key, value) in std::env::vars_os() {
            if !self.is_set(&key) {
                self.command.env(&key, &value);
            }
        }
        self
    }

    /// Whether `key` was set or removed on this command.
    fn is_set(&self, key: &OsStr) -> bool {
        self.removed.iter().any(|k| k == key) || self.command.get_envs().any(|(k, _)| k == key)
    }

    /// The child's working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Cmd {
        self.command.current_dir(dir);
        self
    }

    /// The child's standard input.
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Cmd {
        self.command.stdin(cfg);
        self
    }

    /// The child's standard output.
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Cmd {
        self.command.stdout(cfg);
        self
    }

    /// The child's standard error.
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Cmd {
        self.command.stderr(cfg);
        self
    }

    /// Whether the child is killed when the thread that started it ends
    /// (Linux; on by default). Turn it off only for a child meant to outlive
    /// errand.
    pub fn die_with_parent(&mut self, on: bool) -> &mut Cmd {
        self.die_with_parent = on;
        self
    }

    /// The program this command runs.
    pub fn get_program(&self) -> &OsStr {
        self.command.get_program()
    }

    /// The configured [`std::process::Command`], for what this builder does
    /// not cover; the parent-death signal is installed (a `pre_exec` the
    /// caller's own run after).
    pub fn std(mut self) -> std::process::Command {
        self.arm();
        self.command
    }

    /// The configured [`tokio::process::Command`], killed when dropped.
    pub fn tokio(mut self) -> tokio::process::Command {
        self.arm();
        let mut command = tokio::process::Command::from(self.command);
        command.kill_on_drop(true);
        command
    }

    /// Runs the command to its end (blocking), collecting stdout and stderr.
    pub fn output(&mut self) -> io::Result<Output> {
        self.arm();
        self.command.output()
    }

    /// Runs the command to its end (blocking); its exit status.
    pub fn status(&mut self) -> io::Result<ExitStatus> {
        self.arm();
        self.command.status()
    }

    /// Starts the command (a [`std::process::Child`], not killed when
    /// dropped: wait for it).
    pub fn spawn(&mut self) -> io::Result<Child> {
        self.arm();
        self.command.spawn()
    }

    /// Replaces this process with the command; returns only on failure. There
    /// is no parent left to outlive, so no parent-death signal is set.
    #[cfg(unix)]
    pub fn exec(&mut self) -> io::Error {
        std::os::unix::process::CommandExt::exec(&mut self.command)
    }

    /// Installs the parent-death signal, once.
    fn arm(&mut self) {
        if self.armed || !self.die_with_parent {
            return;
        }
        self.armed = true;
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: the closure makes only async-signal-safe system calls
            // and allocates nothing.
            unsafe { self.command.pre_exec(move || die_with_parent(parent)) };
        }
    }
}

/// In the child, between fork and exec: `SIGKILL` when the parent goes, and
/// no start at all if it is already gone.
#[cfg(target_os = "linux")]
fn die_with_parent(parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The parent may have died before the prctl: then no signal will come.
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } != parent {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// Whether variable `key` is named by `pattern` (exactly, or by prefix when
/// the pattern ends in `*`).
fn name_matches(pattern: &str, key: &OsStr) -> bool {
    let key = key.as_encoded_bytes();
    match pattern.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix.as_bytes()),
        None => key == pattern.as_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    /// By its path: a child looks programs up in its own `PATH`, which some
    /// tests set to nothing useful.
    const ENV: &str = "/usr/bin/env";

    /// The child's environment, as `env` prints it.
    fn env_of(cmd: &mut Cmd) -> Vec<String> {
        let out = cmd.output().expect("env runs");
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let mut vars: Vec<String> = text.lines().map(str::to_owned).collect();
        vars.sort();
        vars
    }

    fn path() -> String {
        std::env::var("PATH").expect("tests run with PATH set")
    }

    #[test]
    fn the_environment_is_empty_unless_named() {
        assert_eq!(env_of(&mut Cmd::new(ENV)), Vec::<String>::new());
        assert_eq!(env_of(Cmd::new(ENV).env("A", "1")), vec!["A=1".to_string()]);
        assert_eq!(
            env_of(Cmd::new(ENV).inherit_env(&["PATH", "ERRAND_PROC_NO_SUCH_VAR"])),
            vec![format!("PATH={}", path())]
        );
        assert_eq!(
            env_of(Cmd::new(ENV).inherit_env(&["PAT*"])),
            vec![format!("PATH={}", path())]
        );
    }

    #[test]
    fn what_is_set_or_removed_wins_over_what_is_inherited() {
        let set = env_of(Cmd::new(ENV).env("PATH", "/x").inherit_env(&["PATH"]));
        assert_eq!(set, vec!["PATH=/x".to_string()]);
        let removed = env_of(Cmd::new(ENV).env_remove("PATH").inherit_all_env());
        assert!(
            !removed.iter().any(|v| v.starts_with("PATH=")),
            "{removed:?}"
        );
        let all = env_of(Cmd::new(ENV).inherit_all_env());
        assert!(all.contains(&format!("PATH={}", path())), "{all:?}");
    }

    #[test]
    fn prefixes_match_only_their_start() {
        assert!(name_matches("LC_*", OsStr::new("LC_ALL")));
        assert!(!name_matches("LC_*", OsStr::new("XLC_ALL")));
        assert!(name_matches("PATH", OsStr::new("PATH")));
        assert!(!name_matches("PATH", OsStr::new("PATHS")));
    }

    /// Whether process `pid` is gone (or a zombie nobody reaped yet).
    fn gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z')),
        }
    }

    fn wait_gone(pid: u32) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if gone(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[tokio::test]
    async fn a_dropped_tokio_child_is_killed() {
        let mut cmd = Cmd::new("sleep");
        cmd.arg("30").inherit_env(&["PATH"]).stdin(Stdio::null());
        let child = cmd.tokio().spawn().expect("spawns");
        let pid = child.id().expect("running");
        assert!(!gone(pid));
        drop(child);
        assert!(wait_gone(pid), "sleep {pid} outlived its handle");
    }

    /// Run by [`the_child_of_a_killed_parent_dies`] in a process of its own:
    /// starts a long child, says its pid, and waits to be killed.
    #[test]
    fn parent_that_gets_killed() {
        if std::env::var_os("ERRAND_PROC_PARENT").is_none() {
            return;
        }
        let mut child = Cmd::new("sleep")
            .arg("30")
            .inherit_env(&["PATH"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawns");
        println!("child {}", child.id());
        let _ = child.wait();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_child_of_a_killed_parent_dies() {
        let exe = std::env::current_exe().expect("test binary");
        let mut parent = Cmd::new(exe)
            .args([
                "--exact",
                "tests::parent_that_gets_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ERRAND_PROC_PARENT", "1")
            .inherit_env(&["PATH"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("test binary starts");
        let stdout = parent.stdout.take().expect("piped");
        let pid: u32 = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // The harness's "test … ... " may come first on the line.
            .find_map(|l| {
                l.rsplit_once("child ")
                    .and_then(|(_, p)| p.trim().parse().ok())
            })
            .expect("the parent names its child");
        assert!(!gone(pid));
        parent.kill().expect("kill");
        parent.wait().expect("reaped");
        assert!(wait_gone(pid), "sleep {pid} outlived its killed parent");
    }
}

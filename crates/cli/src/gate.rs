//! The git gate: inside the sandbox, the only way to run the real git.
//!
//! `errand guard enter --real <git> [policy] -- <command>` starts in front of
//! every sandboxed command that has errand's shims (the harness, the test
//! command, the export). It:
//!
//! 1. copies the real git binary into a sealed, execute-only memfd;
//! 2. confines the command it then starts with Landlock: executing or reading
//!    any real git binary of the sandbox (every path and hard link of it in
//!    `PATH`, the exec paths `git --exec-path` names, `/usr/lib/git-core`,
//!    `/usr/local/libexec/git-core`, errand's own mounted copy) is refused by
//!    the kernel, for the command and everything it starts;
//! 3. serves a socket on which the `git` shim hands over its argv, its
//!    environment, its working directory and its stdin/stdout/stderr
//!    (`SCM_RIGHTS`). The gate judges the call with the guard, together with
//!    git's effective configuration (aliases, command-running keys and push
//!    settings from every config file git reads, includes followed,
//!    `GIT_CONFIG_*` and `GIT_SSH_COMMAND`-style variables applied), and runs
//!    the memfd's git with the caller's descriptors, confined the same way, so
//!    that hooks and aliases git starts cannot reach the real binary either.
//!    git's exec path points at a directory where `git` is the shim again.
//!
//! The memfd is execute-only, so a git started from it is not dumpable: no
//! process of the agent can read it through `/proc/<pid>/exe` or attach to it,
//! and the gate itself is not dumpable either. Variables that load code into
//! the real git (`LD_*`, `GCONV_PATH`) are dropped.
//!
//! What this does not do: stop the agent from bringing a git of its own (a
//! download, a Python library). Pushes are held by errand's git proxy outside
//! the sandbox, which no client can get around (`docs/guard.md`).

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use errand_guard::{Decision, Policy};
use errand_proc::Cmd;
use landlock::{
    AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, ABI,
};

/// The variable that tells the shim where its gate listens.
pub const GATE_ENV: &str = "ERRAND_GIT_GATE";
/// Largest git binary copied into the memfd.
const MAX_GIT_BYTES: u64 = 256 << 20;
/// Largest request (argv and environment) a shim may send.
const MAX_REQUEST: usize = 4 << 20;
/// Largest output of the configuration query the gate judges.
const MAX_SETTINGS: usize = 1 << 20;
/// Where git usually lives, besides `PATH` and its exec path.
const KNOWN_GITS: &[&str] = &[
    "/usr/bin/git",
    "/bin/git",
    "/usr/local/bin/git",
    "/usr/lib/git-core/git",
    "/usr/libexec/git-core/git",
    "/usr/local/libexec/git-core/git",
];
const KNOWN_EXEC_DIRS: &[&str] = &[
    "/usr/lib/git-core",
    "/usr/libexec/git-core",
    "/usr/local/libexec/git-core",
];

/// The rights the confinement handles: everything else is left alone.
fn handled() -> landlock::BitFlags<AccessFs> {
    AccessFs::Execute | AccessFs::ReadFile
}

/// Whether this kernel can confine git (Landlock, any ABI).
pub fn available() -> bool {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(handled())
        .and_then(|r| r.create())
        .is_ok()
}

struct Gate {
    git: OwnedFd,
    ruleset: OwnedFd,
    exec_dir: PathBuf,
    /// Set once `exec_dir` holds its links: filled while the command starts
    /// (a hundred and more links on a slow disk is most of the gate's
    /// start-up), and waited for by every git call and at the end.
    links: Arc<std::sync::OnceLock<Result<(), String>>>,
    socket: PathBuf,
    listener: UnixListener,
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// `errand guard enter`: start the gate, then run `cmd` confined; exits as `cmd` does.
pub fn enter(real: &Path, shim: &Path, policy: Policy, require: bool, cmd: &[String]) -> ExitCode {
    let Some((program, args)) = cmd.split_first() else {
        eprintln!("errand guard enter: no command given");
        return ExitCode::from(2);
    };
    let gate = match Gate::start(real, shim) {
        Ok(g) => g,
        Err(e) if require => {
            eprintln!("errand guard enter: cannot confine git: {e}");
            return ExitCode::from(126);
        }
        Err(e) => {
            eprintln!(
                "errand guard: git is not confined here ({e}); the shim on PATH still checks it"
            );
            // The command carries on this process's session: its whole environment.
            let err = Cmd::new(program).args(args).inherit_all_env().exec();
            eprintln!("errand guard enter: cannot run {program}: {err}");
            return ExitCode::from(127);
        }
    };
    let ruleset = gate.ruleset.as_raw_fd();
    let mut child = Cmd::new(program);
    // The command carries on this process's session: its whole environment.
    child
        .args(args)
        .env(GATE_ENV, &gate.socket)
        .inherit_all_env();
    let mut child = child.std();
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe { child.pre_exec(move || confine(ruleset)) };
    let mut child = match child.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("errand guard enter: cannot run {program}: {e}");
            return ExitCode::from(127);
        }
    };
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: installs a handler that only calls kill(2).
        unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
    }
    let gate = Arc::new(gate);
    let policy = Arc::new(policy);
    {
        let gate = gate.clone();
        std::thread::spawn(move || {
            for conn in gate.listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (gate, policy) = (gate.clone(), policy.clone());
                std::thread::spawn(move || serve(&gate, &policy, conn));
            }
        });
    }
    let status = child.wait();
    let _ = gate.links.wait();
    let _ = std::fs::remove_dir_all(&gate.exec_dir);
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
            (None, Some(sig)) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
            _ => ExitCode::FAILURE,
        },
        Err(e) => {
            eprintln!("errand guard enter: {e}");
            ExitCode::FAILURE
        }
    }
}

/// In the child, between fork and exec: no new privileges, then the ruleset.
fn confine(ruleset: RawFd) -> std::io::Result<()> {
    // SAFETY: plain system calls on integers.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

impl Gate {
    fn start(real: &Path, shim: &Path) -> Result<Gate, String> {
        if !available() {
            return Err("this kernel has no Landlock".into());
        }
        let git = memfd_copy(real)?;
        let git_path = format!("/proc/self/fd/{}", git.as_raw_fd());
        let exec_path = Cmd::new(&git_path)
            .arg0("git")
            .arg("--exec-path")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|p| p.is_absolute());

        // Every real git binary: by (device, inode), so each hard link is one.
        let mut inodes: HashSet<(u64, u64)> = HashSet::new();
        let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let mut candidates: Vec<PathBuf> = KNOWN_GITS.iter().map(PathBuf::from).collect();
        candidates.push(real.to_path_buf());
        candidates.extend(path_dirs.iter().map(|d| d.join("git")));
        candidates.extend(exec_path.iter().map(|d| d.join("git")));
        for c in &candidates {
            if let Ok(m) = std::fs::metadata(c) {
                if m.is_file() && is_elf(c) {
                    inodes.insert((m.dev(), m.ino()));
                }
            }
        }
        let real_meta = std::fs::metadata(real).map_err(|e| format!("{}: {e}", real.display()))?;
        inodes.insert((real_meta.dev(), real_meta.ino()));
        // Their paths, in every directory git is known to live in.
        let mut dirs: Vec<PathBuf> = path_dirs;
        dirs.extend(KNOWN_EXEC_DIRS.iter().map(PathBuf::from));
        dirs.extend(exec_path.iter().cloned());
        dirs.extend(
            candidates
                .iter()
                .filter_map(|c| c.parent().map(Path::to_path_buf)),
        );
        let mut denied: HashSet<PathBuf> = HashSet::new();
        // Each directory once: `PATH`, the known places and the candidates'
        // parents name the same few directories many times over (`/bin` is
        // `/usr/bin` on most systems), and each scan stats every entry.
        let mut scanned: HashSet<PathBuf> = HashSet::new();
        for d in &dirs {
            let Ok(canon) = std::fs::canonicalize(d) else {
                continue;
            };
            if !scanned.insert(canon.clone()) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&canon) else {
                continue;
            };
            for e in entries.flatten() {
                if let Ok(m) = e.metadata() {
                    if m.is_file() && inodes.contains(&(m.dev(), m.ino())) {
                        denied.insert(e.path());
                    }
                }
            }
        }
        if let Ok(canon) = std::fs::canonicalize(real) {
            denied.insert(canon);
        }
        let ruleset = grant_all_but(&denied, &inodes)?;

        let exec_dir = make_exec_dir()?;
        let links = Arc::new(std::sync::OnceLock::new());
        {
            let (dir, links, shim) = (exec_dir.clone(), links.clone(), shim.to_path_buf());
            std::thread::spawn(move || {
                let linked = link_exec_dir(&dir, exec_path.as_deref(), &shim, &inodes);
                let _ = links.set(linked);
            });
        }
        let socket = exec_dir.join("gate.sock");
        let listener = UnixListener::bind(&socket)
            .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        // SAFETY: prctl on this process: /proc/<pid> of the gate becomes root's.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        Ok(Gate {
            git,
            ruleset,
            exec_dir,
            links,
            socket,
            listener,
        })
    }
}

/// A sealed, execute-only in-memory copy of `real`.
fn memfd_copy(real: &Path) -> Result<OwnedFd, String> {
    let mut src =
        std::fs::File::open(real).map_err(|e| format!("cannot open {}: {e}", real.display()))?;
    let meta = src.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() || meta.len() > MAX_GIT_BYTES || !is_elf(real) {
        return Err(format!("{} is not a git binary", real.display()));
    }
    // SAFETY: memfd_create with a valid C string; the fd is owned below.
    let fd =
        unsafe { libc::memfd_create(c"git".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(format!("memfd: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by memfd_create.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut dst = std::fs::File::from(fd);
    std::io::copy(&mut Read::by_ref(&mut src).take(MAX_GIT_BYTES), &mut dst)
        .map_err(|e| format!("cannot copy git: {e}"))?;
    let fd = OwnedFd::from(dst);
    // SAFETY: fcntl/fchmod on an fd we own.
    unsafe {
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        if libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) != 0 {
            return Err(format!("memfd seals: {}", std::io::Error::last_os_error()));
        }
        // Execute-only: a process started from it is not dumpable.
        if libc::fchmod(fd.as_raw_fd(), 0o100) != 0 {
            return Err(format!("memfd mode: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(fd)
}

/// A ruleset that allows executing and reading every file but `denied`
/// (paths) and the `inodes` they are: each ancestor directory of a denied
/// path is opened up entry by entry, skipping links (which resolve through
/// rules of their own) and the denied files.
fn grant_all_but(
    denied: &HashSet<PathBuf>,
    inodes: &HashSet<(u64, u64)>,
) -> Result<OwnedFd, String> {
    let mut ancestors: HashSet<PathBuf> = HashSet::new();
    for d in denied {
        let mut p = d.parent();
        while let Some(a) = p {
            ancestors.insert(a.to_path_buf());
            p = a.parent();
        }
    }
    let access = handled();
    let mut ruleset: RulesetCreated = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(access)
        .and_then(|r| r.create())
        .map_err(|e| format!("landlock: {e}"))?;
    let file_access = AccessFs::from_file(ABI::V1) & access;
    let mut stack = vec![PathBuf::from("/")];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in entries.flatten() {
            let path = e.path();
            let Ok(m) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if m.file_type().is_symlink() || denied.contains(&path) {
                continue;
            }
            if ancestors.contains(&path) && m.is_dir() {
                stack.push(path);
                continue;
            }
            if inodes.contains(&(m.dev(), m.ino())) {
                continue;
            }
            let rights = if m.is_dir() { access } else { file_access };
            let Ok(fd) = PathFd::new(&path) else { continue };
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, rights))
                .map_err(|e| format!("landlock rule for {}: {e}", path.display()))?;
        }
    }
    let fd: Option<OwnedFd> = ruleset.into();
    fd.ok_or_else(|| "landlock: no ruleset".to_string())
}

/// A new, empty directory in `/tmp` for git's exec path in the calls the gate
/// runs ([`link_exec_dir`] fills it).
fn make_exec_dir() -> Result<PathBuf, String> {
    let mut template = b"/tmp/errand-git.XXXXXX\0".to_vec();
    // SAFETY: a writable NUL-terminated template, as mkdtemp wants.
    let made = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if made.is_null() {
        return Err(format!(
            "cannot make the git exec directory in /tmp: {}",
            std::io::Error::last_os_error()
        ));
    }
    template.pop();
    Ok(PathBuf::from(OsStr::from_bytes(&template)))
}

/// Fills the exec directory `dir`: `git` and every builtin's dashed name (a
/// real git's inode) are the shim; other helpers (`git-remote-http`,
/// scripts) are links to the real ones.
fn link_exec_dir(
    dir: &Path,
    exec_path: Option<&Path>,
    shim: &Path,
    inodes: &HashSet<(u64, u64)>,
) -> Result<(), String> {
    let link = |target: &Path, name: &OsStr| {
        std::os::unix::fs::symlink(target, dir.join(name))
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    link(shim, OsStr::new("git"))?;
    if let Some(exec) = exec_path {
        if let Ok(entries) = std::fs::read_dir(exec) {
            for e in entries.flatten() {
                let name = e.file_name();
                if name.as_bytes() == b"git" {
                    continue;
                }
                let is_git =
                    std::fs::metadata(e.path()).is_ok_and(|m| inodes.contains(&(m.dev(), m.ino())));
                if is_git {
                    link(shim, &name)?;
                } else {
                    link(&e.path(), &name)?;
                }
            }
        }
    }
    Ok(())
}

/// One shim's call: read it, judge it, run it, report how it ended.
fn serve(gate: &Gate, policy: &Policy, mut conn: UnixStream) {
    let status = match handle(gate, policy, &conn) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(&conn, "\0errand guard: {e}");
            return;
        }
    };
    let _ = conn.write_all(&status.to_le_bytes());
}

struct Request {
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    fds: Vec<OwnedFd>,
}

fn handle(gate: &Gate, policy: &Policy, conn: &UnixStream) -> Result<i32, String> {
    let req = receive(conn)?;
    if let Err(e) = gate.links.wait() {
        return Err(format!("git's exec directory could not be made: {e}"));
    }
    let [stdin, stdout, stderr, cwd]: [OwnedFd; 4] = req
        .fds
        .try_into()
        .map_err(|_| "the shim must send stdin, stdout, stderr and its directory".to_string())?;
    let mut args = req.args;
    if let Some(sub) = req.name.strip_prefix("git-") {
        args.insert(0, sub.to_owned());
    }
    let cwd_path = std::fs::read_link(format!("/proc/self/fd/{}", cwd.as_raw_fd())).ok();
    let mut env: Vec<(String, String)> = req
        .env
        .into_iter()
        .filter(|(k, _)| !k.starts_with("LD_") && k != "GCONV_PATH" && k != GATE_ENV)
        .filter(|(k, _)| k != "GIT_EXEC_PATH")
        .collect();
    env.push((GATE_ENV.into(), gate.socket.to_string_lossy().into_owned()));
    env.push((
        "GIT_EXEC_PATH".into(),
        gate.exec_dir.to_string_lossy().into_owned(),
    ));
    let git = format!("/proc/self/fd/{}", gate.git.as_raw_fd());
    let cwd_fd = cwd.as_raw_fd();
    let ruleset = gate.ruleset.as_raw_fd();
    let run = |args: &[String], stdio: Option<(OwnedFd, OwnedFd, OwnedFd)>| {
        let mut c = Cmd::new(&git);
        c.arg0("git")
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(format!("/proc/self/fd/{cwd_fd}"));
        match stdio {
            Some((i, o, e)) => {
                c.stdin(Stdio::from(i))
                    .stdout(Stdio::from(o))
                    .stderr(Stdio::from(e));
            }
            None => {
                c.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            }
        }
        // Killed with the gate (Cmd's parent-death signal), then confined.
        let mut c = c.std();
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe { c.pre_exec(move || confine(ruleset)) };
        c
    };

    // git's effective settings, as git itself reads them for this call.
    let settings = settings(&env, || run(&settings_args(), None))?;
    let git_dir = env
        .iter()
        .find(|(k, _)| k == "GIT_DIR")
        .map(|(_, v)| PathBuf::from(v))
        .map(|g| match &cwd_path {
            Some(c) if g.is_relative() => c.join(g),
            _ => g,
        });
    let decision = {
        let (args, policy) = (args.clone(), policy.clone());
        let (cwd_path, git_dir) = (cwd_path.clone(), git_dir.clone());
        errand_guard::cli::within(
            errand_guard::cli::deadline(),
            move || {
                errand_guard::shim_decision_in(
                    "git",
                    &args,
                    &policy,
                    cwd_path.as_deref(),
                    git_dir.as_deref(),
                    &settings,
                )
            },
            || Decision::Deny {
                rule: "too-complex".into(),
                reason: "no decision in time".into(),
            },
        )
    };
    if let Decision::Deny { reason, .. } = decision {
        let mut err = std::fs::File::from(stderr);
        let _ = writeln!(
            err,
            "errand guard: refused `git {}`: {reason}",
            args.join(" ")
        );
        return Ok(1);
    }
    let mut child = run(&args, Some((stdin, stdout, stderr)))
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    drop(cwd);
    wait_or_hangup(&mut child, conn)
}

/// Waits for `child`; kills it when the shim goes away first.
fn wait_or_hangup(child: &mut std::process::Child, conn: &UnixStream) -> Result<i32, String> {
    // SAFETY: pidfd_open on our own child's pid, which is not reaped yet.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::c_int, 0) };
    if pidfd < 0 {
        let s = child.wait().map_err(|e| e.to_string())?;
        return Ok(code_of(s));
    }
    // SAFETY: pidfd_open returned a new descriptor.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    loop {
        let mut fds = [
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: conn.as_raw_fd(),
                events: libc::POLLIN | libc::POLLRDHUP,
                revents: 0,
            },
        ];
        // SAFETY: a valid array of two pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if fds[0].revents != 0 {
            break;
        }
        if fds[1].revents != 0 {
            // The shim is gone (killed, or its caller timed out): so is its git.
            // SAFETY: the pidfd names exactly this child.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            break;
        }
    }
    let s = child.wait().map_err(|e| e.to_string())?;
    Ok(code_of(s))
}

fn code_of(s: std::process::ExitStatus) -> i32 {
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

/// Keys whose values the guard judges, as `git config --get-regexp` matches them.
const SETTINGS_REGEX: &str =
    "^(alias|credential|core|sequence|diff|gpg|uploadpack|pager|filter|merge|remote|push|clean)\\.";

fn settings_args() -> Vec<String> {
    ["config", "--null", "--get-regexp", SETTINGS_REGEX]
        .map(String::from)
        .to_vec()
}

fn judged(key: &str) -> bool {
    key.starts_with("alias.")
        || key.starts_with("credential.")
        || key.starts_with("pager.")
        || key.starts_with("filter.")
        || key.starts_with("gpg.")
        || key.starts_with("diff.")
        || (key.starts_with("merge.") && key.ends_with(".driver"))
        || (key.starts_with("remote.") && (key.ends_with(".push") || key.ends_with(".mirror")))
        || matches!(
            key,
            "core.sshcommand"
                | "core.pager"
                | "core.editor"
                | "core.askpass"
                | "core.fsmonitor"
                | "sequence.editor"
                | "uploadpack.packobjectshook"
                | "push.default"
                | "clean.requireforce"
        )
}

/// git's settings that the guard judges: from its configuration, read by git
/// itself with the caller's environment, and from the variables that stand
/// for them.
fn settings(
    env: &[(String, String)],
    query: impl FnOnce() -> Command,
) -> Result<Vec<(String, String)>, String> {
    let out = query()
        .output()
        .map_err(|e| format!("cannot read git's configuration: {e}"))?;
    // 1: no key matched.
    if !out.status.success() && out.status.code() != Some(1) {
        return Err(format!(
            "git cannot read its configuration: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if out.stdout.len() > MAX_SETTINGS {
        return Err("git's configuration is too large to check".into());
    }
    let mut found = Vec::new();
    for entry in out.stdout.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let text = String::from_utf8_lossy(entry);
        let (key, value) = text.split_once('\n').unwrap_or((&text, "true"));
        if judged(key) {
            found.push((key.to_owned(), value.to_owned()));
        }
    }
    for (var, key) in [
        ("GIT_SSH_COMMAND", "core.sshcommand"),
        ("GIT_SSH", "core.sshcommand"),
        ("GIT_PROXY_COMMAND", "core.sshcommand"),
        ("GIT_EXTERNAL_DIFF", "diff.external"),
        ("GIT_PAGER", "core.pager"),
        ("GIT_EDITOR", "core.editor"),
        ("GIT_SEQUENCE_EDITOR", "sequence.editor"),
        ("GIT_ASKPASS", "core.askpass"),
    ] {
        if let Some((_, v)) = env.iter().find(|(k, _)| k == var) {
            if !v.is_empty() {
                found.push((key.to_owned(), v.clone()));
            }
        }
    }
    Ok(found)
}

/// Reads a shim's request: descriptors and the first bytes in one message,
/// the rest of the length-prefixed body after.
fn receive(conn: &UnixStream) -> Result<Request, String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = vec![0u8; unsafe { libc::CMSG_SPACE((4 * size_of::<RawFd>()) as u32) } as usize];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; every pointer below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.len() as _;
    // SAFETY: recvmsg into the buffers set up above.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n <= 0 {
        return Err("the shim sent nothing".into());
    }
    let mut fds = Vec::new();
    // SAFETY: walking the control messages recvmsg filled in.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let count =
                    ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err("too many descriptors".into());
    }
    let mut body = buf[..n as usize].to_vec();
    if body.len() < 4 {
        return Err("a short request".into());
    }
    let len = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
    if len > MAX_REQUEST {
        return Err("the request is too large".into());
    }
    let mut r = conn;
    while body.len() < len + 4 {
        let mut chunk = vec![0u8; (len + 4 - body.len()).min(64 * 1024)];
        let got = r.read(&mut chunk).map_err(|e| e.to_string())?;
        if got == 0 {
            return Err("a truncated request".into());
        }
        body.extend_from_slice(&chunk[..got]);
    }
    let (name, args, env) = decode(&body[4..4 + len])?;
    Ok(Request {
        name,
        args,
        env,
        fds,
    })
}

/// The body: `name\0argc\0arg…\0KEY=VALUE\0…`.
fn encode(name: &str, args: &[String], env: &[(String, String)]) -> Vec<u8> {
    let mut b = Vec::new();
    for part in [name.to_owned(), args.len().to_string()]
        .iter()
        .chain(args)
        .map(String::as_str)
        .map(str::to_owned)
        .chain(env.iter().map(|(k, v)| format!("{k}={v}")))
    {
        b.extend_from_slice(part.as_bytes());
        b.push(0);
    }
    let mut out = (b.len() as u32).to_le_bytes().to_vec();
    out.extend(b);
    out
}

type Decoded = (String, Vec<String>, Vec<(String, String)>);

fn decode(body: &[u8]) -> Result<Decoded, String> {
    let mut parts = body
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let bad = || "a malformed request".to_string();
    let name = parts.next().ok_or_else(bad)?;
    let argc: usize = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let mut args = Vec::with_capacity(argc.min(1 << 16));
    for _ in 0..argc {
        args.push(parts.next().ok_or_else(bad)?);
    }
    let env = parts
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    Ok((name, args, env))
}

/// The shim's side: hand `name args` to the gate at `socket` with this
/// process's descriptors, directory and environment; the exit code git had.
pub fn call(socket: &Path, name: &str, args: &[String]) -> Result<i32, String> {
    let conn =
        UnixStream::connect(socket).map_err(|e| format!("cannot reach the git gate: {e}"))?;
    let env: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let body = encode(name, args, &env);
    let dot = CString::new(".").map_err(|e| e.to_string())?;
    // SAFETY: open(2) of "." with O_PATH; the fd is owned below.
    let cwd = unsafe {
        libc::open(
            dot.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if cwd < 0 {
        return Err(format!(
            "cannot open the current directory: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: cwd was just opened.
    let cwd = unsafe { OwnedFd::from_raw_fd(cwd) };
    let fds: [RawFd; 4] = [0, 1, 2, cwd.as_raw_fd()];
    let first = &body[..body.len().min(32 * 1024)];
    let space = unsafe { libc::CMSG_SPACE((4 * size_of::<RawFd>()) as u32) } as usize;
    let mut cmsg = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: first.as_ptr() as *mut libc::c_void,
        iov_len: first.len(),
    };
    // SAFETY: msghdr is plain data; the buffers outlive sendmsg.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN((4 * size_of::<RawFd>()) as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<RawFd>(), 4);
        libc::sendmsg(conn.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(format!(
            "cannot reach the git gate: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut w = &conn;
    w.write_all(&body[sent as usize..])
        .map_err(|e| format!("cannot reach the git gate: {e}"))?;
    drop(cwd);
    let mut reply = Vec::new();
    let mut r = &conn;
    r.read_to_end(&mut reply)
        .map_err(|e| format!("the git gate went away: {e}"))?;
    match reply.as_slice() {
        [a, b, c, d] => Ok(i32::from_le_bytes([*a, *b, *c, *d])),
        [0, why @ ..] => Err(String::from_utf8_lossy(why).trim().to_owned()),
        _ => Err("the git gate went away".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let args = vec!["push".to_string(), "a\nb".into(), String::new()];
        let env = vec![("A".to_string(), "1=2".to_string())];
        let b = encode("git", &args, &env);
        let (name, a, e) = decode(&b[4..]).expect("decodes");
        assert_eq!((name.as_str(), a, e), ("git", args, env));
        assert!(decode(b"git\0zz\0").is_err());
        assert!(decode(b"git\x005\0a\0").is_err());
    }

    #[test]
    fn judged_keys_are_the_ones_that_run_code_or_push() {
        for k in [
            "alias.p",
            "core.sshcommand",
            "remote.origin.push",
            "filter.x.smudge",
            "push.default",
        ] {
            assert!(judged(k), "{k}");
        }
        for k in ["core.bare", "remote.origin.url", "user.name", "merge.ff"] {
            assert!(!judged(k), "{k}");
        }
    }
}

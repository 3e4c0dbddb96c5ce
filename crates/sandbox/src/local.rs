//! The local backend: one bubblewrap (`bwrap`) sandbox per process.
//!
//! The process gets new user, mount, PID, IPC, UTS and (where possible) cgroup
//! namespaces. The host's system directories (`/usr` and the `/bin`, `/lib`
//! links) are mounted read-only, only a short list of harmless files from `/etc`
//! is visible, and the run's own workspace, HOME and /tmp are its only writable
//! places. The host's home directories, other runs and errand's data directory
//! are simply not in its mount namespace. The network namespace is the host's
//! ([`NetworkPolicy::Open`]), or, with [`NetworkPolicy::Isolated`], a new one
//! with only loopback (`--unshare-net`), where the bridge started in front of
//! the command is the one way out: to errand's egress proxy ([`crate::egress`])
//! through the Unix socket bound in.
//!
//! No secret is on bwrap's command line (which every user sees in `ps`): its
//! options, the environment among them, are read from a close-on-exec memory
//! file (`--args FD`), and `/etc/passwd` is copied in from another
//! (`--ro-bind-data`); bwrap closes both before the program starts. errand
//! writes nothing into the sandbox's directories, and its egress socket lives
//! in its private runtime directory ([`crate::socket`]).
//!
//! Memory and process-count limits use a cgroup (v2 or v1) when errand may
//! create one; when it may not, the process runs without them and a notice says
//! so. Killing the sandbox kills every process in it: bwrap dies with its parent,
//! its PID namespace dies with its init, and the cgroup's members are killed.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;

mod overlay;

use crate::{
    egress, paths, CommandLine, ExitInfo, NetworkPolicy, OutputStream, ProcessHandle, Sandbox,
    SandboxError, SandboxProcess, SandboxSpec,
};

/// Files and directories of the host's `/etc` that programs need and that hold no secrets.
const ETC_ALLOWED: &[&str] = &[
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "gai.conf",
    "host.conf",
    "hosts",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "terminfo",
    "timezone",
];

/// Top-level host directories exposed read-only (or as the symlinks they are).
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// The uid and gid the agent has inside (mapped to errand's own outside).
const AGENT_UID: u32 = 1000;

/// The local backend: bubblewrap on this machine, one sandbox per process.
pub struct LocalSandbox {
    bwrap: Option<PathBuf>,
    /// Set once bubblewrap has been seen to create namespaces here: a server
    /// starting many runs probes once, not once per run (a failed probe is
    /// tried again; a sandbox that later fails to start fails its run anyway).
    usable: std::sync::OnceLock<()>,
    /// Whether an overlay workspace mounts here (probed once).
    overlays: tokio::sync::OnceCell<bool>,
}

impl LocalSandbox {
    /// Finds `bwrap` on errand's PATH.
    pub fn new() -> Self {
        LocalSandbox {
            bwrap: find_on_path("bwrap"),
            usable: std::sync::OnceLock::new(),
            overlays: tokio::sync::OnceCell::new(),
        }
    }

    fn bwrap(&self) -> Result<&Path, SandboxError> {
        self.bwrap.as_deref().ok_or_else(|| {
            SandboxError::Unavailable(
                "the local sandbox needs bubblewrap, which is not installed: \
                 run `sudo apt-get install bubblewrap` (Debian/Ubuntu) or `sudo dnf install bubblewrap`"
                    .into(),
            )
        })
    }

    /// bwrap's arguments for `spec` and `cmd` (public for tests and
    /// `--dry-run` views), in two parts: the options, the environment among
    /// them, which bwrap reads from a file descriptor (`--args FD`) so that no
    /// secret is on any command line; and the command line inside, which
    /// stays on bwrap's own. `passwd_fd` is a descriptor bwrap copies the
    /// sandbox's `/etc/passwd` from (`--ro-bind-data`). With an isolated
    /// network, `egress_socket` is the host side of the egress proxy's
    /// socket, bound in at [`egress::SOCKET`].
    pub fn bwrap_args(
        &self,
        spec: &SandboxSpec,
        cmd: &CommandLine,
        passwd_fd: i32,
        egress_socket: Option<&Path>,
    ) -> BwrapArgs {
        let entered = spec.entered(cmd);
        let cmd = &entered;
        let isolated = match &spec.network {
            NetworkPolicy::Open => None,
            NetworkPolicy::Isolated(e) => Some(e),
        };
        let wrapped;
        let cmd = match isolated {
            Some(e) => {
                wrapped = egress::wrap(cmd, e);
                &wrapped
            }
            None => cmd,
        };
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        push(&["--die-with-parent", "--new-session", "--unshare-user"]);
        push(&[
            "--uid",
            &AGENT_UID.to_string(),
            "--gid",
            &AGENT_UID.to_string(),
        ]);
        push(&[
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]);
        if isolated.is_some() {
            push(&["--unshare-net"]);
        }
        push(&["--hostname", "errand-sandbox"]);
        for dir in SYSTEM_DIRS {
            let p = Path::new(dir);
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(p) {
                        push(&["--symlink", &target.to_string_lossy(), dir]);
                    }
                }
                Ok(m) if m.is_dir() => push(&["--ro-bind", dir, dir]),
                _ => {}
            }
        }
        for name in ETC_ALLOWED {
            let p = format!("/etc/{name}");
            push(&["--ro-bind-try", &p, &p]);
        }
        push(&[
            "--perms",
            "0444",
            "--ro-bind-data",
            &passwd_fd.to_string(),
            "/etc/passwd",
        ]);
        push(&["--proc", "/proc", "--dev", "/dev"]);
        // An overlay workspace is mounted on its view before bwrap starts
        // (see `Overlay`), in the namespace bwrap inherits.
        let workspace = spec.layers.as_ref().map_or(&spec.workspace, |l| &l.view);
        push(&["--bind", &workspace.to_string_lossy(), paths::WORKSPACE]);
        push(&["--bind", &spec.home.to_string_lossy(), paths::HOME]);
        push(&["--bind", &spec.tmp.to_string_lossy(), "/tmp"]);
        for (host, inside) in &spec.ro_mounts {
            push(&[
                "--ro-bind",
                &host.to_string_lossy(),
                &inside.to_string_lossy(),
            ]);
        }
        if let Some(e) = isolated {
            push(&["--ro-bind", &e.bridge.exe.to_string_lossy(), egress::BRIDGE]);
            if let Some(sock) = egress_socket {
                push(&["--bind", &sock.to_string_lossy(), egress::SOCKET]);
            }
        }
        push(&["--chdir", cmd.cwd.as_deref().unwrap_or(paths::WORKSPACE)]);
        push(&["--clearenv"]);
        for (k, v) in &spec.env {
            push(&["--setenv", k, v]);
        }
        let mut command = vec![cmd.program.clone()];
        command.extend(cmd.args.iter().cloned());
        BwrapArgs {
            options: a,
            command,
        }
    }
}

/// bwrap's arguments: see [`LocalSandbox::bwrap_args`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BwrapArgs {
    /// Read by bwrap from a descriptor, NUL-separated: they hold the environment.
    pub options: Vec<String>,
    /// The program and its arguments, on bwrap's command line after `--`.
    pub command: Vec<String>,
}

impl BwrapArgs {
    /// The options as bwrap's `--args` reads them: each followed by a NUL.
    /// None may hold a NUL itself (no environment variable or path can).
    pub fn options_data(&self) -> Result<Vec<u8>, SandboxError> {
        let mut out = Vec::new();
        for o in &self.options {
            if o.as_bytes().contains(&0) {
                return Err(SandboxError::Setup(format!(
                    "a sandbox argument holds a NUL byte: {}",
                    o.split('\0').next().unwrap_or_default()
                )));
            }
            out.extend_from_slice(o.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    /// bwrap's own command line: `--args FD -- program args…`.
    pub fn argv(&self, args_fd: i32) -> Vec<String> {
        let mut out = vec!["--args".to_string(), args_fd.to_string(), "--".to_string()];
        out.extend(self.command.iter().cloned());
        out
    }
}

/// A memory file holding `data`, read from its start: bwrap reads its
/// options and the passwd file from these. Close-on-exec until the child
/// clears that flag for bwrap alone; bwrap closes them once read, so the
/// program in the sandbox never holds them.
fn memfd(name: &std::ffi::CStr, data: &[u8]) -> Result<std::os::fd::OwnedFd, SandboxError> {
    use std::io::{Seek, Write};
    use std::os::fd::FromRawFd;
    let setup =
        |e: std::io::Error| SandboxError::Setup(format!("cannot pass bwrap its arguments: {e}"));
    // SAFETY: a valid C string; the descriptor is owned right away.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(setup(std::io::Error::last_os_error()));
    }
    // SAFETY: just created, owned by nothing else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(data).map_err(setup)?;
    file.rewind().map_err(setup)?;
    Ok(file.into())
}

impl Default for LocalSandbox {
    fn default() -> Self {
        Self::new()
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[async_trait]
impl Sandbox for LocalSandbox {
    fn name(&self) -> &'static str {
        "local"
    }

    fn isolates_network(&self) -> bool {
        true
    }

    async fn check(&self) -> Result<(), SandboxError> {
        let bwrap = self.bwrap()?;
        if self.usable.get().is_some() {
            return Ok(());
        }
        let mut cmd = errand_proc::Cmd::new(bwrap);
        cmd.args([
            "--unshare-user",
            "--unshare-pid",
            "--ro-bind",
            "/",
            "/",
            "--",
            "true",
        ])
        .stdin(Stdio::null());
        let out = cmd.tokio().output().await.map_err(SandboxError::Spawn)?;
        if out.status.success() {
            let _ = self.usable.set(());
            Ok(())
        } else {
            Err(SandboxError::Unavailable(format!(
                "bubblewrap cannot create namespaces here ({}): enable unprivileged user namespaces \
                 (sysctl kernel.unprivileged_userns_clone=1) or use another sandbox backend",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    async fn layers_workspaces(&self) -> bool {
        let Ok(bwrap) = self.bwrap() else {
            return false;
        };
        *self
            .overlays
            .get_or_init(|| async move {
                match overlay::probe(bwrap).await {
                    Ok(()) => true,
                    Err(why) => {
                        tracing::info!(
                            "overlay workspaces are not available here ({why}); each run's \
                             workspace is a copy"
                        );
                        false
                    }
                }
            })
            .await
    }

    async fn spawn(
        &self,
        spec: &SandboxSpec,
        cmd: &CommandLine,
    ) -> Result<SandboxProcess, SandboxError> {
        let bwrap = self.bwrap()?.to_path_buf();
        for dir in [&spec.workspace, &spec.home, &spec.tmp] {
            std::fs::create_dir_all(dir).map_err(|e| {
                SandboxError::Setup(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let overlay = spec
            .layers
            .as_ref()
            .map(|l| overlay::Overlay::new(&spec.workspace, l))
            .transpose()?;
        // A passwd file naming the agent, so tools that look the user up
        // work: copied by bwrap from a descriptor, never a file on the host
        // (in the sandbox's /tmp the agent could plant a link to write through).
        let passwd = memfd(
            c"errand-passwd",
            format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\nagent:x:{AGENT_UID}:{AGENT_UID}:agent:{}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
                paths::HOME
            )
            .as_bytes(),
        )?;

        let mut notices = Vec::new();
        if spec.limits.cpus.is_some() {
            notices.push("CPU limit not applied: the local sandbox does not limit CPU (the docker sandbox does)".to_string());
        }
        let cgroup = match Cgroup::create(&spec.name, &spec.limits) {
            Ok(cg) => cg,
            Err(why) => {
                if spec.limits.memory_bytes.is_some() || spec.limits.max_pids.is_some() {
                    notices.push(format!("memory and process limits not applied: {why}"));
                }
                None
            }
        };
        let procs_files: Vec<CString> = cgroup
            .as_ref()
            .map(|cg| cg.procs_files())
            .unwrap_or_default();

        let proxy = match &spec.network {
            NetworkPolicy::Open => None,
            NetworkPolicy::Isolated(e) => Some(egress::start_for(spec, e)?),
        };
        let passwd_fd = passwd.as_raw_fd();
        let args = self.bwrap_args(spec, cmd, passwd_fd, proxy.as_ref().map(|p| p.path()));
        // The options (the environment: API keys) reach bwrap through a
        // descriptor: bwrap's command line is visible to every user in `ps`.
        let options = memfd(c"errand-bwrap-args", &args.options_data()?)?;
        let args_fd = options.as_raw_fd();
        // An empty environment (the sandbox's own reaches bwrap through the
        // options descriptor), killed with errand and when dropped.
        let mut command = errand_proc::Cmd::new(&bwrap);
        command
            .args(args.argv(args_fd))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut command = command.tokio();
        command.process_group(0);
        // SAFETY: the closure runs in the child between fork and exec and only
        // makes async-signal-safe system calls on data prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                // bwrap alone gets the two descriptors (they are close-on-exec
                // in errand); it closes them once read.
                for fd in [args_fd, passwd_fd] {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                let pid = libc::getpid();
                let mut buf = [0u8; 24];
                let n = format_pid(pid, &mut buf);
                for file in &procs_files {
                    let fd = libc::open(file.as_ptr(), libc::O_WRONLY);
                    if fd >= 0 {
                        libc::write(fd, buf.as_ptr().cast(), n);
                        libc::close(fd);
                    }
                }
                if let Some(o) = &overlay {
                    o.mount()?;
                }
                // After the overlay's namespaces: entering a user namespace
                // clears the parent-death signal.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().map_err(SandboxError::Spawn)?;
        // The child has its own copies; errand's are closed here.
        drop((options, passwd));
        let pgid = child.id().map(|p| p as i32);
        Ok(SandboxProcess::new(
            notices,
            Box::new(LocalProcess {
                child,
                killer: LocalKiller { pgid, cgroup },
            }),
        )
        .with_egress(proxy))
    }
}

/// A bwrap child, with what it takes to kill everything it started.
struct LocalProcess {
    child: tokio::process::Child,
    killer: LocalKiller,
}

#[async_trait]
impl ProcessHandle for LocalProcess {
    fn take_stdout(&mut self) -> Option<OutputStream> {
        self.child
            .stdout
            .take()
            .map(|s| Box::new(s) as OutputStream)
    }

    fn take_stderr(&mut self) -> Option<OutputStream> {
        self.child
            .stderr
            .take()
            .map(|s| Box::new(s) as OutputStream)
    }

    async fn wait(&mut self) -> std::io::Result<ExitInfo> {
        use std::os::unix::process::ExitStatusExt;
        let status = self.child.wait().await;
        self.killer.kill_tree();
        let status = status?;
        Ok(ExitInfo {
            code: status.code(),
            signal: status.signal(),
            oom_killed: self.killer.oom_killed(),
        })
    }

    async fn kill(&mut self) {
        self.killer.kill_tree();
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.killer.kill_tree();
    }
}

impl Drop for LocalProcess {
    fn drop(&mut self) {
        self.killer.kill_tree();
        self.killer.release();
    }
}

/// Writes `pid` in decimal into `buf` without allocating; returns the length.
fn format_pid(pid: i32, buf: &mut [u8; 24]) -> usize {
    let mut v = pid.unsigned_abs();
    let mut tmp = [0u8; 24];
    let mut i = 0;
    loop {
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        i += 1;
        if v == 0 {
            break;
        }
    }
    for j in 0..i {
        buf[j] = tmp[i - 1 - j];
    }
    i
}

struct LocalKiller {
    pgid: Option<i32>,
    cgroup: Option<Cgroup>,
}

impl LocalKiller {
    /// Whether the kernel killed a process of the sandbox's cgroup for lack of memory.
    fn oom_killed(&self) -> bool {
        self.cgroup.as_ref().is_some_and(Cgroup::oom_kills)
    }

    fn kill_tree(&mut self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: plain system call; a stale group id only yields ESRCH.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
        if let Some(cg) = &self.cgroup {
            cg.kill_all();
        }
    }

    fn release(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            cg.kill_all();
            cg.remove();
        }
    }
}

/// A per-sandbox cgroup holding the limits, on v2 or v1 hierarchies.
struct Cgroup {
    /// One directory on v2; one per controller (memory, pids) on v1.
    dirs: Vec<PathBuf>,
    v2: bool,
}

impl Cgroup {
    fn create(name: &str, limits: &crate::Limits) -> Result<Option<Cgroup>, String> {
        if limits.memory_bytes.is_none() && limits.max_pids.is_none() {
            return Ok(None);
        }
        let root = Path::new("/sys/fs/cgroup");
        let leaf = format!("errand-{name}-{}", std::process::id());
        let cg = if root.join("cgroup.controllers").exists() {
            let parent = root.join("errand");
            mkdir(&parent)?;
            // Controllers must be enabled for children; failures show up below.
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+memory +pids");
            let dir = parent.join(&leaf);
            mkdir(&dir)?;
            let cg = Cgroup {
                dirs: vec![dir.clone()],
                v2: true,
            };
            if let Some(m) = limits.memory_bytes {
                write_limit(&dir.join("memory.max"), m, &cg)?;
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
            }
            if let Some(p) = limits.max_pids {
                write_limit(&dir.join("pids.max"), p, &cg)?;
            }
            cg
        } else {
            let mut cg = Cgroup {
                dirs: Vec::new(),
                v2: false,
            };
            if let Some(m) = limits.memory_bytes {
                let dir = root.join("memory/errand").join(&leaf);
                mkdir(&dir)?;
                cg.dirs.push(dir.clone());
                write_limit(&dir.join("memory.limit_in_bytes"), m, &cg)?;
            }
            if let Some(p) = limits.max_pids {
                let dir = root.join("pids/errand").join(&leaf);
                mkdir(&dir)?;
                cg.dirs.push(dir.clone());
                write_limit(&dir.join("pids.max"), p, &cg)?;
            }
            cg
        };
        Ok(Some(cg))
    }

    /// Whether the cgroup's `oom_kill` counter (v2 `memory.events`, v1
    /// `memory.oom_control`) is above zero: the cgroup is new for each sandbox.
    fn oom_kills(&self) -> bool {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        self.dirs.iter().any(|d| {
            std::fs::read_to_string(d.join(file)).is_ok_and(|s| {
                s.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
        })
    }

    fn procs_files(&self) -> Vec<CString> {
        self.dirs
            .iter()
            .filter_map(|d| CString::new(d.join("cgroup.procs").as_os_str().as_bytes()).ok())
            .collect()
    }

    fn kill_all(&self) {
        if self.v2 {
            if let Some(d) = self.dirs.first() {
                if std::fs::write(d.join("cgroup.kill"), "1").is_ok() {
                    return;
                }
            }
        }
        for d in &self.dirs {
            if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
                for pid in s.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: plain system call on a pid read from the cgroup.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
    }

    fn remove(&self) {
        for d in &self.dirs {
            // The kernel needs a moment to reap killed members before rmdir succeeds.
            for _ in 0..50 {
                if std::fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

fn mkdir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(format!("cannot create cgroup {}: {e}", dir.display())),
    }
}

fn write_limit(file: &Path, value: u64, cg: &Cgroup) -> Result<(), String> {
    std::fs::write(file, value.to_string()).map_err(|e| {
        cg.remove();
        format!("cannot set {}: {e}", file.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_formatted_without_allocation() {
        let mut b = [0u8; 24];
        let n = format_pid(40312, &mut b);
        assert_eq!(&b[..n], b"40312");
        let n = format_pid(7, &mut b);
        assert_eq!(&b[..n], b"7");
    }

    #[test]
    fn arguments_expose_only_what_the_spec_names() {
        let sb = LocalSandbox {
            bwrap: Some("/usr/bin/bwrap".into()),
            usable: std::sync::OnceLock::new(),
            overlays: tokio::sync::OnceCell::new(),
        };
        let spec = SandboxSpec {
            name: "abc".into(),
            workspace: "/data/runs/abc/workspace".into(),
            home: "/data/runs/abc/home".into(),
            tmp: "/data/runs/abc/tmp".into(),
            ro_mounts: vec![("/cache/claude".into(), paths::HARNESS.into())],
            env: vec![("ANTHROPIC_API_KEY".into(), "k".into())],
            limits: Default::default(),
            network: NetworkPolicy::Open,
            entry: Vec::new(),
            layers: None,
        };
        let args = sb.bwrap_args(&spec, &CommandLine::new("claude", ["-p", "hi"]), 7, None);
        let joined = [
            args.options.clone(),
            vec!["--".into()],
            args.command.clone(),
        ]
        .concat()
        .join(" ");
        assert!(
            joined.contains("--clearenv --setenv ANTHROPIC_API_KEY k -- claude -p hi"),
            "{joined}"
        );
        // The environment is in the options, which bwrap reads from a
        // descriptor; its command line holds the command alone.
        assert_eq!(args.argv(9), ["--args", "9", "--", "claude", "-p", "hi"]);
        assert!(args
            .options_data()
            .unwrap()
            .ends_with(b"--setenv\0ANTHROPIC_API_KEY\0k\0"));
        assert!(joined.contains("--ro-bind-data 7 /etc/passwd"), "{joined}");
        assert!(joined.contains("--bind /data/runs/abc/workspace /workspace"));
        assert!(
            !joined.contains("/root"),
            "host home must not be mounted: {joined}"
        );
        assert!(!joined.contains("--bind / "), "{joined}");
        assert!(!args
            .options
            .iter()
            .any(|a| a == "/etc" || a == "/etc/shadow"));
        assert!(!joined.contains("--unshare-net"), "{joined}");

        // An isolated network: a namespace of its own, the socket and the bridge bound in.
        let isolated = SandboxSpec {
            network: NetworkPolicy::Isolated(crate::Egress {
                allow: vec!["127.0.0.1:8087".into()],
                protected: vec![],
                bridge: crate::Bridge {
                    exe: "/usr/bin/errand".into(),
                    args: vec!["sandbox".into(), "bridge".into()],
                },
            }),
            entry: Vec::new(),
            layers: None,
            ..spec
        };
        let args = sb.bwrap_args(
            &isolated,
            &CommandLine::new("claude", ["-p", "hi"]),
            7,
            Some(Path::new("/data/runs/abc/e.sock")),
        );
        let joined = [args.options, vec!["--".into()], args.command]
            .concat()
            .join(" ");
        assert!(joined.contains("--unshare-net"), "{joined}");
        assert!(joined.contains(&format!("--bind /data/runs/abc/e.sock {}", egress::SOCKET)));
        assert!(joined.contains(&format!("--ro-bind /usr/bin/errand {}", egress::BRIDGE)));
        assert!(
            joined.ends_with(&format!(
                "-- {} sandbox bridge --socket {} --forward 127.0.0.1:8087 -- claude -p hi",
                egress::BRIDGE,
                egress::SOCKET
            )),
            "{joined}"
        );
    }

    /// Whether bwrap can make a sandbox here (CI must have it: see the
    /// end-to-end tests, which fail there without it).
    async fn bwrap_works(sb: &LocalSandbox) -> bool {
        sb.check().await.is_ok()
    }

    #[tokio::test]
    async fn no_secret_on_bwraps_command_line_and_no_descriptor_left_inside() {
        let sb = LocalSandbox::new();
        if !bwrap_works(&sb).await {
            eprintln!("skipped: bubblewrap cannot run here");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let secret = format!("sk-unit-{}", std::process::id());
        let spec = SandboxSpec {
            name: "unit".into(),
            workspace: d.path().join("ws"),
            home: d.path().join("home"),
            tmp: d.path().join("tmp"),
            ro_mounts: vec![],
            env: vec![
                ("SECRET_KEY".into(), secret.clone()),
                ("PATH".into(), "/usr/bin:/bin".into()),
            ],
            limits: Default::default(),
            network: NetworkPolicy::Open,
            entry: Vec::new(),
            layers: None,
        };
        // The agent plants a link where the passwd file used to be written.
        let canary = d.path().join("canary");
        std::fs::write(&canary, "canary").unwrap();
        std::fs::create_dir_all(&spec.tmp).unwrap();
        std::os::unix::fs::symlink(&canary, spec.tmp.join(".errand-passwd")).unwrap();
        let script = "echo \"env=$SECRET_KEY\"; ls -l /proc/self/fd/; \
                      grep agent /etc/passwd; sleep 2";
        let mut p = sb
            .spawn(&spec, &CommandLine::new("/bin/sh", ["-c", script]))
            .await
            .unwrap();
        let mut out = p.take_stdout().unwrap();
        // While it runs: no process of this host shows the secret in its argv.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                assert!(
                    !cmdline
                        .windows(secret.len())
                        .any(|w| w == secret.as_bytes()),
                    "the secret is on the command line of {}: {}",
                    entry.path().display(),
                    String::from_utf8_lossy(&cmdline)
                );
            }
        }
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut out, &mut text)
            .await
            .unwrap();
        assert!(p.wait().await.unwrap().success(), "{text}");
        assert!(text.contains(&format!("env={secret}")), "{text}");
        assert!(text.contains("agent:x:1000:1000"), "{text}");
        // bwrap closed both descriptors: nothing inside can read them again.
        assert!(!text.contains("memfd:"), "{text}");
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "canary");
    }

    /// A usable bubblewrap is probed once per sandbox (a server's runs share
    /// it); an unusable one is probed again each time and keeps failing.
    #[tokio::test]
    async fn the_namespace_probe_is_remembered_only_when_it_succeeds() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let (fake, calls, verdict) = (
            d.path().join("bwrap"),
            d.path().join("calls"),
            d.path().join("verdict"),
        );
        // A stand-in that counts its calls and exits as `verdict` says.
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho x >> {}\nexit $(cat {})\n",
                calls.display(),
                verdict.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let count = || {
            std::fs::read_to_string(&calls)
                .unwrap_or_default()
                .lines()
                .count()
        };
        let sb = LocalSandbox {
            bwrap: Some(fake.clone()),
            usable: std::sync::OnceLock::new(),
            overlays: tokio::sync::OnceCell::new(),
        };
        std::fs::write(&verdict, "1").unwrap();
        assert!(sb.check().await.is_err());
        assert!(sb.check().await.is_err());
        assert!(sb.usable.get().is_none());
        std::fs::write(&verdict, "0").unwrap();
        let before = count();
        sb.check().await.unwrap();
        sb.check().await.unwrap();
        sb.check().await.unwrap();
        assert_eq!(count(), before + 1, "probed once while it works");
    }
}

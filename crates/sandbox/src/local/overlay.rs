//! An overlay workspace for the local backend: the run's own directory over a
//! shared read-only checkout, mounted by the sandbox's child itself (bubblewrap
//! 0.8 has no overlay option) in a mount namespace of its own, just before it
//! becomes bwrap.
//!
//! As root the child enters a new mount namespace; otherwise a new user
//! namespace too, where it maps only itself (`0 <uid> 1`), which is all an
//! unprivileged process may do and enough for an overlay (Linux ≥ 5.11, with
//! `userxattr`). It makes every mount private, so the overlay never appears
//! on the host, mounts it on the layers' view, and bwrap binds the view at
//! `/workspace`. The mount ends with the sandbox's last process.
//!
//! The agent's writes land in its own layer; the shared checkout is only ever
//! a lower layer, which an overlay does not write.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{SandboxError, WorkspaceLayers};

/// Everything the child needs to mount the overlay, made before the fork (the
/// child may only make system calls on prepared data).
pub(crate) struct Overlay {
    /// Whether errand runs as root (no user namespace needed).
    root: bool,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    view: CString,
    options: CString,
}

/// A layer's path as overlay options take it: refused if it holds what
/// separates them.
fn option_path(what: &str, path: &Path) -> Result<String, SandboxError> {
    let bytes = path.as_os_str().as_bytes();
    if !path.is_absolute() || bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\' | 0)) {
        return Err(SandboxError::Setup(format!(
            "the workspace's {what} {} cannot be an overlay layer (a path with ',', ':' or '\\')",
            path.display()
        )));
    }
    Ok(path.to_string_lossy().into_owned())
}

impl Overlay {
    /// The overlay of `upper` (the run's workspace) over `layers.lower`.
    pub(crate) fn new(upper: &Path, layers: &WorkspaceLayers) -> Result<Overlay, SandboxError> {
        for dir in [&layers.work, &layers.view] {
            std::fs::create_dir_all(dir).map_err(|e| {
                SandboxError::Setup(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        // SAFETY: plain system calls without arguments.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let root = uid == 0;
        let mut options = format!(
            "lowerdir={},upperdir={},workdir={}",
            option_path("shared checkout", &layers.lower)?,
            option_path("layer", upper)?,
            option_path("work directory", &layers.work)?,
        );
        if !root {
            options.push_str(",userxattr");
        }
        let c = |s: &[u8]| {
            CString::new(s).map_err(|_| SandboxError::Setup("a layer's path holds a NUL".into()))
        };
        Ok(Overlay {
            root,
            uid_map: format!("0 {uid} 1\n").into_bytes(),
            gid_map: format!("0 {gid} 1\n").into_bytes(),
            view: c(layers.view.as_os_str().as_bytes())?,
            options: c(options.as_bytes())?,
        })
    }

    /// In the child, between fork and exec: new namespaces, then the mount.
    /// Only async-signal-safe system calls on data prepared in [`Overlay::new`].
    pub(crate) fn mount(&self) -> std::io::Result<()> {
        let fail = || Err(std::io::Error::last_os_error());
        // SAFETY: system calls on valid C strings and buffers owned by `self`.
        unsafe {
            if self.root {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return fail();
                }
            } else {
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                    return fail();
                }
                for (file, data) in [
                    (c"/proc/self/setgroups", &b"deny"[..]),
                    (c"/proc/self/uid_map", &self.uid_map[..]),
                    (c"/proc/self/gid_map", &self.gid_map[..]),
                ] {
                    let fd = libc::open(file.as_ptr(), libc::O_WRONLY);
                    if fd < 0 {
                        return fail();
                    }
                    let n = libc::write(fd, data.as_ptr().cast(), data.len());
                    libc::close(fd);
                    if n != data.len() as isize {
                        return fail();
                    }
                }
            }
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return fail();
            }
            if libc::mount(
                c"overlay".as_ptr(),
                self.view.as_ptr(),
                c"overlay".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                self.options.as_ptr().cast(),
            ) != 0
            {
                return fail();
            }
        }
        Ok(())
    }
}

/// Mounts a small overlay through bwrap, as a run would, and reads it back.
pub(crate) async fn probe(bwrap: &Path) -> Result<(), String> {
    use std::os::unix::process::CommandExt as _;
    let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
    let layers = WorkspaceLayers {
        lower: dir.path().join("lower"),
        work: dir.path().join("work"),
        view: dir.path().join("view"),
    };
    let upper = dir.path().join("upper");
    for d in [&layers.lower, &upper] {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(layers.lower.join("probe"), "lower\n").map_err(|e| e.to_string())?;
    let overlay = Overlay::new(&upper, &layers).map_err(|e| e.to_string())?;
    let mut cmd = errand_proc::Cmd::new(bwrap);
    cmd.args([
        "--unshare-user",
        "--unshare-pid",
        "--ro-bind",
        "/",
        "/",
        "--bind",
    ])
    .arg(&layers.view)
    .args([
        "/tmp",
        "--",
        "/bin/sh",
        "-c",
        "test -f /tmp/probe && echo upper > /tmp/new",
    ])
    .stdin(std::process::Stdio::null());
    let mut std_cmd = cmd.std();
    // SAFETY: `mount` makes only async-signal-safe system calls on prepared data.
    unsafe {
        std_cmd.pre_exec(move || overlay.mount());
    }
    let mut cmd = tokio::process::Command::from(std_cmd);
    cmd.kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    if std::fs::read_to_string(upper.join("new")).ok().as_deref() != Some("upper\n")
        || layers.lower.join("new").exists()
    {
        return Err("a write did not land in the upper layer".into());
    }
    Ok(())
}

//! Who the agent is and what it owns: its uid and gid, the run's trees given
//! to it by directory handle (never through a link), its passwd and group
//! files, and errand's sockets bound in.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use super::AGENT_UID;
use crate::socket::PrivateFile;
use crate::{paths, SandboxError};

/// The uid:gid the agent runs as: [`AGENT_UID`] when errand is root, else errand's own.
pub(super) fn agent_ids() -> (u32, u32) {
    // SAFETY: plain system calls without arguments.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        (AGENT_UID, AGENT_UID)
    } else {
        (uid, gid)
    }
}

/// Gives `dir` and everything under it to `uid:gid`, without following links.
/// With `keep_top`, `dir` itself and its `.git` keep their owner and become
/// writable for `gid` instead.
///
/// The tree is the agent's: any name in it may be a symbolic link, and may
/// become one while this runs. So it is walked by directory handles, never
/// by path: each directory is opened relative to its parent's handle with
/// `O_NOFOLLOW | O_DIRECTORY` (a link is never descended into) and changed
/// through its own handle (`fchown`, `fchmod`); everything else is changed
/// with `fchownat(AT_SYMLINK_NOFOLLOW)` (a link itself, never its target).
pub(super) fn give_tree(dir: &Path, uid: u32, gid: u32, keep_top: bool) -> std::io::Result<()> {
    let top = open_dir(None, dir.as_os_str().as_bytes())?;
    change_dir(&top, keep_top, uid, gid)?;
    // Directories to walk, each opened only when its turn comes (so a wide
    // tree does not hold a descriptor per directory): (the parent's handle,
    // its name there, whether it is the top's `.git`), or the top itself.
    let mut stack: Vec<Pending> = vec![(Rc::new(top), None, true)];
    while let Some((parent, name, top_git)) = stack.pop() {
        let is_top = name.is_none();
        let fd = match name {
            None => parent,
            Some(name) => {
                let child = match open_dir(Some(&parent), name.as_bytes()) {
                    Ok(c) => c,
                    // Replaced (by a link or a file) since it was listed: not
                    // followed, not changed.
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::ELOOP | libc::ENOTDIR | libc::ENOENT)
                        ) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e),
                };
                drop(parent);
                change_dir(&child, keep_top && top_git, uid, gid)?;
                Rc::new(child)
            }
        };
        give_entries(&fd, is_top, uid, gid, &mut stack)?;
    }
    Ok(())
}

/// A directory still to walk: its parent's handle, its name there (`None`:
/// the handle is the directory itself, the top) and whether it is the top's
/// `.git`.
type Pending = (Rc<OwnedFd>, Option<std::ffi::OsString>, bool);

/// Gives every entry of the directory `fd` but its subdirectories to
/// `uid:gid`, never through a link; the subdirectories go on `stack`.
fn give_entries(
    fd: &Rc<OwnedFd>,
    is_top: bool,
    uid: u32,
    gid: u32,
    stack: &mut Vec<Pending>,
) -> std::io::Result<()> {
    // The directory the handle holds, listed through /proc (no path lookup).
    let listing = std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    for entry in listing {
        let entry = entry?;
        let name = entry.file_name();
        let c = std::ffi::CString::new(name.as_bytes())
            .map_err(|_| std::io::Error::other("a NUL in a name"))?;
        // SAFETY: an all-zero stat is valid for fstatat to overwrite.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: an open directory, a valid C string and buffer.
        if unsafe {
            libc::fstatat(
                fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } != 0
        {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::NotFound {
                continue;
            }
            return Err(e);
        }
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let top_git = is_top && name == ".git";
            stack.push((fd.clone(), Some(name), top_git));
        } else if st.st_uid != uid || st.st_gid != gid {
            // SAFETY: an open directory and a valid C string; never follows a link.
            if unsafe {
                libc::fchownat(
                    fd.as_raw_fd(),
                    c.as_ptr(),
                    uid,
                    gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            } != 0
            {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Opens `name` in `parent` (or the path `name` when there is no parent) as
/// a directory, never through a link.
fn open_dir(parent: Option<&OwnedFd>, name: &[u8]) -> std::io::Result<OwnedFd> {
    let c = std::ffi::CString::new(name).map_err(|_| std::io::Error::other("a NUL in a name"))?;
    let at = parent.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
    // SAFETY: a valid C string; the descriptor is owned right away.
    let fd = unsafe {
        libc::openat(
            at,
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just opened, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Changes an open directory: kept (group-writable for `gid`, owner
/// unchanged) or given to `uid:gid`.
fn change_dir(fd: &OwnedFd, keep: bool, uid: u32, gid: u32) -> std::io::Result<()> {
    // SAFETY: an all-zero stat is valid for fstat to overwrite; `fd` is open.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let raw = fd.as_raw_fd();
    // SAFETY: plain system calls on an open descriptor.
    let rc = if keep {
        let mut rc = 0;
        if st.st_gid != gid {
            rc = unsafe { libc::fchown(raw, u32::MAX, gid) };
        }
        if rc == 0 && st.st_mode & 0o070 != 0o070 {
            rc = unsafe { libc::fchmod(raw, (st.st_mode & 0o7777) | 0o070) };
        }
        rc
    } else if st.st_uid != uid || st.st_gid != gid {
        unsafe { libc::fchown(raw, uid, gid) }
    } else {
        0
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The passwd and group files naming the agent, in errand's runtime directory.
pub(super) fn id_files(uid: u32, gid: u32) -> Result<[PrivateFile; 2], SandboxError> {
    let passwd = format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\nagent:x:{uid}:{gid}:agent:{}:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        paths::HOME
    );
    let group = format!("root:x:0:\nagent:x:{gid}:\nnogroup:x:65534:\n");
    let make = |what: &str, text: &str| {
        PrivateFile::create(what, text.as_bytes(), 0o644)
            .map_err(|e| SandboxError::Setup(format!("cannot write the {what} file: {e}")))
    };
    Ok([make("passwd", &passwd)?, make("group", &group)?])
}

/// Makes one of errand's sockets usable by the container's uid alone (mode
/// 0600, owned by it, and the only peer uid the service accepts). When errand
/// is not root the container runs as errand's own uid, which it already is.
pub(super) fn give_socket(path: &Path, uid: u32) -> Result<(), SandboxError> {
    crate::socket::give_to(path, uid).map_err(|e| SandboxError::Setup(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::{DockerConfig, DockerSandbox};
    use crate::{CommandLine, NetworkPolicy, Sandbox, SandboxSpec};

    #[test]
    fn the_workspace_top_and_git_stay_errands() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // SAFETY: plain system call.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let d = tempfile::tempdir().expect("tmp");
        let ws = d.path().join("ws");
        std::fs::create_dir_all(ws.join(".git/objects")).expect("mkdir");
        std::fs::create_dir_all(ws.join("src")).expect("mkdir");
        std::fs::write(ws.join("src/a.rs"), "x").expect("write");
        std::os::unix::fs::symlink("/etc/hostname", ws.join("link")).expect("symlink");
        // A host directory the agent links to: never descended into.
        let host = d.path().join("host");
        std::fs::create_dir_all(host.join("sub")).expect("mkdir");
        std::fs::write(host.join("secret"), "x").expect("write");
        std::os::unix::fs::symlink(&host, ws.join("src/hostdir")).expect("symlink");
        std::os::unix::fs::symlink(&host, ws.join(".git/objects/hostdir")).expect("symlink");
        // A nested `.git` is the agent's like anything else.
        std::fs::create_dir_all(ws.join("src/.git")).expect("mkdir");
        let m = |p: &Path| std::fs::symlink_metadata(p).expect("meta");
        give_tree(&ws, 4242, 4243, true).expect("give");
        for p in [&host, &host.join("sub"), &host.join("secret")] {
            assert_eq!(m(p).uid(), 0, "{} was given away", p.display());
            assert_eq!(m(p).gid(), 0, "{}", p.display());
        }
        assert_eq!(m(&ws.join("src/hostdir")).uid(), 4242);
        assert_eq!(m(&ws.join("src/.git")).uid(), 4242);
        assert_eq!(m(&ws).uid(), 0);
        assert_eq!(m(&ws).gid(), 4243);
        assert_eq!(m(&ws).permissions().mode() & 0o070, 0o070);
        assert_eq!(m(&ws.join(".git")).uid(), 0);
        assert_eq!(m(&ws.join(".git/objects")).uid(), 4242);
        assert_eq!(m(&ws.join("src/a.rs")).uid(), 4242);
        assert_eq!(m(&ws.join("link")).uid(), 4242);
        assert_eq!(std::fs::metadata("/etc/hostname").expect("meta").uid(), 0);
    }

    /// The agent swaps a directory for a link to a host directory while
    /// errand walks the tree: nothing of the host's is ever given away.
    #[test]
    fn a_link_swapped_in_during_the_walk_is_not_followed() {
        use std::os::unix::fs::MetadataExt;
        use std::sync::atomic::{AtomicBool, Ordering};
        // SAFETY: plain system call.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let d = tempfile::tempdir().expect("tmp");
        let (ws, host) = (d.path().join("ws"), d.path().join("host"));
        let names: Vec<String> = (0..64).map(|i| format!("f{i}")).collect();
        std::fs::create_dir_all(&host).expect("mkdir");
        for n in &names {
            std::fs::write(host.join(n), "host").expect("write");
        }
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        // ws/d: a directory of the agent's, and ws/l a link to the host's;
        // the agent swaps the two names atomically, over and over.
        std::fs::create_dir_all(ws.join("d")).expect("mkdir");
        for n in &names {
            std::fs::write(ws.join("d").join(n), "agent").expect("write");
        }
        std::os::unix::fs::symlink(&host, ws.join("l")).expect("symlink");
        let swapper = {
            let (ws, stop) = (ws.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = |p: &Path| {
                    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path")
                };
                let (a, b) = (c(&ws.join("d")), c(&ws.join("l")));
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: valid C strings; renameat2 swaps the two names.
                    unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            a.as_ptr(),
                            libc::AT_FDCWD,
                            b.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        );
                    }
                    std::thread::yield_now();
                }
            })
        };
        let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while std::time::Instant::now() < until {
            let _ = give_tree(&ws, 4242, 4243, false);
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().expect("swapper");
        let meta = |p: &Path| std::fs::symlink_metadata(p).expect("meta");
        assert_eq!(meta(&host).uid(), 0);
        let given: Vec<&String> = names
            .iter()
            .filter(|n| meta(&host.join(n)).uid() != 0)
            .collect();
        assert!(given.is_empty(), "host files given to the agent: {given:?}");
    }

    /// A socket of errand's mounted into a container answers the container's
    /// user, and it alone: errand gives it to that uid (0600) when it mounts it.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_mounted_socket_is_for_the_containers_user_alone() {
        use std::os::unix::fs::MetadataExt;
        use tokio::io::AsyncWriteExt;
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        let sb = DockerSandbox::new(DockerConfig {
            network: "none".into(),
            ..DockerConfig::default()
        });
        if let Err(e) = sb.check().await {
            assert!(!ci, "CI: the docker sandbox must work here: {e}");
            eprintln!("skipped: {e}");
            return;
        }
        let path = crate::socket::private_path("test").expect("path");
        let svc = crate::socket::SocketService::start(
            &path,
            "test",
            4,
            |mut s: tokio::net::UnixStream| async move {
                let _ = s.write_all(b"hello-from-errand").await;
            },
        )
        .expect("listen");
        let d = tempfile::tempdir().expect("tmp");
        let spec = SandboxSpec {
            name: "sockettest".into(),
            workspace: d.path().join("ws"),
            home: d.path().join("home"),
            tmp: d.path().join("tmp"),
            ro_mounts: vec![(path.clone(), "/opt/errand/test.sock".into())],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            limits: Default::default(),
            network: NetworkPolicy::Open,
            entry: Vec::new(),
            layers: None,
        };
        let script = "perl -MIO::Socket::UNIX -e '$s = IO::Socket::UNIX->new(Peer => \"/opt/errand/test.sock\") or die \"connect: $!\"; print <$s>'";
        let mut p = sb
            .spawn(&spec, &CommandLine::new("/bin/sh", ["-c", script]))
            .await
            .expect("spawn");
        let mut out = p.take_stdout().expect("stdout");
        let mut err = p.take_stderr().expect("stderr");
        let (mut o, mut e) = (String::new(), String::new());
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut out, &mut o).await;
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut err, &mut e).await;
        let _ = p.wait().await;
        assert_eq!(o, "hello-from-errand", "stderr: {e}");
        let m = std::fs::symlink_metadata(&path).expect("socket");
        let (uid, _) = agent_ids();
        assert_eq!((m.uid(), m.mode() & 0o777), (uid, 0o600));
        assert_eq!(svc.peer_uid(), uid);
    }
}

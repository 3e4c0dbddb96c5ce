//! The Unix-socket services errand runs on the host for one sandboxed
//! process and mounts into its sandbox: the egress proxy ([`crate::egress`])
//! and the git credential server (errand-runner). Each listens on its own
//! socket, serves every connection on its own task, and stops (its socket
//! removed) when dropped.
//!
//! Where: every socket, and every other file errand generates for a sandbox
//! to mount (the passwd file), lives in errand's private runtime directory
//! ([`runtime_dir`]): a directory of errand's user, mode 0700, that is not a
//! symbolic link, on a short path (a socket's path must fit in 108 bytes).
//! No other local user can reach into it, and no sandbox can write to it.
//!
//! Who: a socket is mode 0600 and accepts exactly one peer uid, checked on
//! every connection with `SO_PEERCRED`: errand's own uid (the local sandbox
//! maps the agent's uid to errand's), or the uid it was given to with
//! [`give_to`] (the Docker container's user). Others are closed unanswered.

use std::ffi::{CString, OsStr};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// The longest socket path errand uses (`sun_path` holds 108 bytes).
const MAX_SOCKET_PATH: usize = 100;
/// Room left for a file name in the runtime directory.
const NAME_ROOM: usize = 48;

fn euid() -> u32 {
    // SAFETY: plain system call without arguments.
    unsafe { libc::geteuid() }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// Why `dir` is not a private directory of errand's user, if it is not:
/// opened without following a symbolic link, a directory, owned by errand's
/// effective uid, no permission for group or others.
fn not_private(dir: &Path) -> Option<String> {
    let c = match cstring(dir) {
        Ok(c) => c,
        Err(e) => return Some(e.to_string()),
    };
    // SAFETY: a valid C string; the descriptor is owned right away.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Some(format!(
            "{}: not a directory errand can open without following a link ({})",
            dir.display(),
            io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` is a valid buffer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Some(format!("{}: {}", dir.display(), io::Error::last_os_error()));
    }
    if st.st_uid != euid() {
        return Some(format!(
            "{} belongs to uid {}, not errand's {}",
            dir.display(),
            st.st_uid,
            euid()
        ));
    }
    if st.st_mode & 0o077 != 0 {
        return Some(format!(
            "{} has mode {:o}, not 0700",
            dir.display(),
            st.st_mode & 0o7777
        ));
    }
    None
}

/// Creates `dir` (mode 0700, one level, never through a symbolic link) or
/// accepts it if it is already a private directory of errand's.
fn ensure_private(dir: &Path) -> Result<(), String> {
    let c = cstring(dir).map_err(|e| e.to_string())?;
    // SAFETY: a valid C string. mkdir never follows a link in the last component.
    if unsafe { libc::mkdir(c.as_ptr(), 0o700) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(format!("cannot create {}: {e}", dir.display()));
        }
    }
    match not_private(dir) {
        None => Ok(()),
        Some(why) => Err(why),
    }
}

/// A new directory with a random name under `/tmp`, made by `mkdtemp` (mode
/// 0700, never an existing path).
fn fresh_tmp_dir() -> Result<PathBuf, String> {
    let mut template = b"/tmp/errand-XXXXXX\0".to_vec();
    // SAFETY: a NUL-terminated, writable template as mkdtemp requires.
    let p = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if p.is_null() {
        return Err(format!(
            "cannot create a private directory in /tmp: {}",
            io::Error::last_os_error()
        ));
    }
    template.pop();
    let dir = PathBuf::from(OsStr::from_bytes(&template));
    match not_private(&dir) {
        None => Ok(dir),
        Some(why) => Err(why),
    }
}

/// The candidates, in order: `$XDG_RUNTIME_DIR/errand` when
/// `$XDG_RUNTIME_DIR` is a private directory of errand's user on a short
/// path; `/tmp/errand-<uid>` when errand made it (or can make it) private;
/// else a fresh `/tmp/errand-XXXXXX`. Each is verified, never trusted.
fn choose_runtime_dir(xdg: Option<&OsStr>) -> Result<PathBuf, String> {
    let mut why = Vec::new();
    if let Some(x) = xdg.filter(|x| !x.is_empty()).map(Path::new) {
        let dir = x.join("errand");
        if !x.is_absolute() || dir.as_os_str().len() + NAME_ROOM > MAX_SOCKET_PATH {
            why.push(format!(
                "XDG_RUNTIME_DIR {} is not short and absolute",
                x.display()
            ));
        } else if let Some(w) = not_private(x) {
            why.push(w);
        } else {
            match ensure_private(&dir) {
                Ok(()) => return Ok(dir),
                Err(w) => why.push(w),
            }
        }
    }
    let dir = PathBuf::from(format!("/tmp/errand-{}", euid()));
    match ensure_private(&dir) {
        Ok(()) => return Ok(dir),
        Err(w) => why.push(w),
    }
    let dir = fresh_tmp_dir()?;
    tracing::warn!(
        "errand's runtime directory is {} ({})",
        dir.display(),
        why.join("; ")
    );
    Ok(dir)
}

/// errand's private runtime directory for this process (chosen once): where
/// its sockets and the files it generates for sandboxes to mount live.
pub fn runtime_dir() -> io::Result<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| choose_runtime_dir(std::env::var_os("XDG_RUNTIME_DIR").as_deref()))
        .as_deref()
        .map_err(|e| io::Error::other(e.clone()))
}

/// A fresh name `{what}-{pid}-{n}` in the runtime directory.
fn fresh_path(what: &str, suffix: &str) -> io::Result<PathBuf> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let what: String = what
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(16)
        .collect();
    let name = format!(
        "{what}-{}-{}{suffix}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let dir = runtime_dir()?;
    // Checked again at each use: a cleaner of /tmp may have removed it since
    // (it is made again), and no one else may have put theirs in its place.
    ensure_private(dir).map_err(io::Error::other)?;
    Ok(dir.join(name))
}

/// A fresh socket path in errand's private runtime directory ([`runtime_dir`]).
pub fn private_path(what: &str) -> io::Result<PathBuf> {
    fresh_path(what, ".sock")
}

/// A fresh socket path for `what`. `dir` is no longer used: every socket is
/// in errand's private runtime directory ([`private_path`]), whose path is
/// short and which no sandbox and no other user can reach into. (Before, a
/// path too long for a socket fell back to a world-writable socket in /tmp.)
pub fn path_in(_dir: &Path, what: &str) -> io::Result<PathBuf> {
    private_path(what)
}

/// A file errand generated in its runtime directory, removed when dropped.
#[derive(Debug)]
pub struct PrivateFile {
    path: PathBuf,
}

impl PrivateFile {
    /// Creates a new file for `what` with `contents` and `mode`: always a new
    /// name, created exclusively and without following links (`O_EXCL`,
    /// `O_NOFOLLOW`), so nothing planted there can be written through.
    pub fn create(what: &str, contents: &[u8], mode: u32) -> io::Result<PrivateFile> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let path = fresh_path(what, "")?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        let file = PrivateFile { path };
        f.write_all(contents)?;
        // The umask may have taken bits away; the mode is what was asked.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        Ok(file)
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The uid each live socket accepts, by path (for [`give_to`]).
type Peers = Mutex<Vec<(PathBuf, Weak<AtomicU32>)>>;

fn peers() -> &'static Peers {
    static PEERS: OnceLock<Peers> = OnceLock::new();
    PEERS.get_or_init(Default::default)
}

/// Why a socket could not be given to a uid ([`give_to`]).
#[derive(Debug, thiserror::Error)]
pub enum GiveError {
    /// The path is not a socket errand is serving.
    #[error("{0} is not a socket of errand's that is still listening")]
    NotOurs(PathBuf),
    /// Changing its owner failed.
    #[error("cannot give {path} to uid {uid}: {source}")]
    Chown {
        /// The socket.
        path: PathBuf,
        /// The uid it was to be given to.
        uid: u32,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

/// Makes the listening socket at `path` usable by `uid` alone, instead of
/// errand's own uid: its owner becomes `uid` (mode 0600 stays) and the
/// service accepts only peers of `uid`. For a Docker container's user.
pub fn give_to(path: &Path, uid: u32) -> Result<(), GiveError> {
    let slot = {
        let mut list = peers().lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|(_, w)| w.strong_count() > 0);
        list.iter()
            .find(|(p, _)| p == path)
            .and_then(|(_, w)| w.upgrade())
    };
    let slot = slot.ok_or_else(|| GiveError::NotOurs(path.to_path_buf()))?;
    if uid != euid() {
        // The socket is in errand's private directory: lchown changes the
        // socket itself, never what a link would point at.
        std::os::unix::fs::lchown(path, Some(uid), None).map_err(|source| GiveError::Chown {
            path: path.to_path_buf(),
            uid,
            source,
        })?;
    }
    slot.store(uid, Ordering::SeqCst);
    Ok(())
}

/// Whether `path` is a socket an errand [`SocketService`] listens on.
pub fn is_ours(path: &Path) -> bool {
    let list = peers().lock().unwrap_or_else(|e| e.into_inner());
    list.iter().any(|(p, w)| p == path && w.strong_count() > 0)
}

/// A listening socket and the task serving it, until dropped.
pub struct SocketService {
    path: PathBuf,
    stop: CancellationToken,
    /// The one uid allowed to connect.
    peer: Arc<AtomicU32>,
}

impl SocketService {
    /// Listens on `path` (replacing a stale socket) and hands each connection
    /// to `serve`, at most `max_connections` at once (more are closed
    /// unanswered). The socket is mode 0600 and accepts errand's own uid
    /// only, until [`give_to`] gives it to another. `what` names the
    /// service in logs. Must be called inside a tokio runtime.
    pub fn start<F, Fut>(
        path: &Path,
        what: &'static str,
        max_connections: usize,
        serve: F,
    ) -> io::Result<SocketService>
    where
        F: Fn(UnixStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let peer = Arc::new(AtomicU32::new(euid()));
        peers()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path.to_path_buf(), Arc::downgrade(&peer)));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            what,
            max_connections,
            serve,
            peer.clone(),
            stop.clone(),
        ));
        Ok(SocketService {
            path: path.to_path_buf(),
            stop,
            peer,
        })
    }

    /// Where it listens (the host side of the mount).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The uid it accepts.
    pub fn peer_uid(&self) -> u32 {
        self.peer.load(Ordering::SeqCst)
    }
}

impl Drop for SocketService {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl std::fmt::Debug for SocketService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketService")
            .field("path", &self.path)
            .field("peer", &self.peer_uid())
            .finish()
    }
}

async fn accept_loop<F, Fut>(
    listener: UnixListener,
    what: &'static str,
    max_connections: usize,
    serve: F,
    peer: Arc<AtomicU32>,
    stop: CancellationToken,
) where
    F: Fn(UnixStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("{what}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // SO_PEERCRED: the uid of the process that connected, as the kernel
        // saw it (in errand's user namespace).
        let expected = peer.load(Ordering::SeqCst);
        match stream.peer_cred() {
            Ok(c) if c.uid() == expected => {}
            Ok(c) => {
                tracing::warn!(
                    "{what}: refused a connection from uid {} (only uid {expected} may connect)",
                    c.uid()
                );
                continue;
            }
            Err(e) => {
                tracing::warn!("{what}: refused a connection whose peer is unknown: {e}");
                continue;
            }
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (work, stop) = (serve(stream), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = work => {}
            }
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn hello(path: &Path) -> SocketService {
        SocketService::start(path, "test", 4, |mut s: UnixStream| async move {
            let _ = s.write_all(b"hello").await;
        })
        .unwrap()
    }

    async fn read_all(path: &Path) -> String {
        let mut c = UnixStream::connect(path).await.unwrap();
        let mut got = String::new();
        let _ = c.read_to_string(&mut got).await;
        got
    }

    #[tokio::test]
    async fn serves_until_dropped_then_the_socket_is_gone() {
        let path = private_path("test").unwrap();
        let svc = hello(&path);
        assert_eq!(read_all(svc.path()).await, "hello");
        drop(svc);
        assert!(!path.exists());
        assert!(UnixStream::connect(&path).await.is_err());
    }

    #[tokio::test]
    async fn sockets_are_private_and_short_whatever_directory_is_asked_for() {
        // A run directory too long for a socket path no longer means /tmp.
        let long = Path::new("/nonexistent").join("d".repeat(120));
        let path = path_in(&long, "egress").unwrap();
        let dir = path.parent().unwrap();
        assert_eq!(dir, runtime_dir().unwrap());
        assert!(
            path.as_os_str().len() <= MAX_SOCKET_PATH,
            "{}",
            path.display()
        );
        let svc = hello(&path);
        let dm = std::fs::symlink_metadata(dir).unwrap();
        assert!(dm.is_dir());
        assert_eq!(dm.uid(), euid());
        assert_eq!(dm.mode() & 0o777, 0o700, "{}", dir.display());
        let sm = std::fs::symlink_metadata(svc.path()).unwrap();
        assert_eq!(sm.mode() & 0o777, 0o600, "never world-writable");
        assert_eq!(sm.uid(), euid());
        assert!(is_ours(svc.path()));
    }

    #[test]
    fn a_runtime_directory_that_is_not_private_is_not_used() {
        let base = tempfile::tempdir().unwrap();
        // A shared XDG_RUNTIME_DIR (mode 0777) is refused.
        let shared = base.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let got = choose_runtime_dir(Some(shared.as_os_str())).unwrap();
        assert!(!got.starts_with(&shared), "{}", got.display());
        // A private one is used, with errand's own subdirectory.
        let private = base.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            choose_runtime_dir(Some(private.as_os_str())).unwrap(),
            private.join("errand")
        );
        // Its `errand` planted as a link, or open to others, is refused.
        let other = base.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = base.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::os::unix::fs::symlink(&target, other.join("errand")).unwrap();
        assert!(ensure_private(&other.join("errand")).is_err());
        assert!(!choose_runtime_dir(Some(other.as_os_str()))
            .unwrap()
            .starts_with(&other));
        let open = base.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(ensure_private(&open).is_err());
        assert!(ensure_private(&private.join("errand")).is_ok());
        // A fresh one is a new private directory each time.
        let (a, b) = (fresh_tmp_dir().unwrap(), fresh_tmp_dir().unwrap());
        // Made again when a cleaner removed it; refused when replaced.
        std::fs::remove_dir(&a).unwrap();
        assert!(ensure_private(&a).is_ok() && not_private(&a).is_none());
        std::fs::remove_dir(&a).unwrap();
        std::os::unix::fs::symlink(&private, &a).unwrap();
        assert!(ensure_private(&a).is_err());
        std::fs::remove_file(&a).unwrap();
        ensure_private(&a).unwrap();
        assert_ne!(a, b);
        assert!(not_private(&a).is_none());
        let _ = (std::fs::remove_dir(a), std::fs::remove_dir(b));
    }

    #[test]
    fn private_files_never_write_through_a_planted_link() {
        let canary = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(canary.path(), "canary").unwrap();
        let f = PrivateFile::create("passwd", b"agent:x:1000", 0o644).unwrap();
        assert_eq!(std::fs::read(f.path()).unwrap(), b"agent:x:1000");
        assert_eq!(std::fs::metadata(f.path()).unwrap().mode() & 0o777, 0o644);
        let path = f.path().to_path_buf();
        drop(f);
        assert!(!path.exists());
        // Even a link at the very name errand would use is not followed.
        std::os::unix::fs::symlink(canary.path(), &path).unwrap();
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        assert!(o.open(&path).is_err());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(std::fs::read_to_string(canary.path()).unwrap(), "canary");
    }

    #[tokio::test]
    async fn only_the_peer_uid_it_was_given_to_may_connect() {
        if euid() != 0 {
            // Giving a socket to another uid takes root (as Docker does).
            let path = private_path("test").unwrap();
            let svc = hello(&path);
            assert!(give_to(svc.path(), euid() + 1).is_err());
            assert_eq!(svc.peer_uid(), euid());
            return;
        }
        let path = private_path("test").unwrap();
        let svc = hello(&path);
        assert_eq!(read_all(svc.path()).await, "hello");
        give_to(svc.path(), 4242).unwrap();
        let m = std::fs::symlink_metadata(svc.path()).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (4242, 0o600));
        // errand's own uid (root here) is now refused: SO_PEERCRED says 0.
        assert_eq!(read_all(svc.path()).await, "");
        give_to(svc.path(), 0).unwrap();
        assert_eq!(read_all(svc.path()).await, "hello");
        assert!(matches!(
            give_to(Path::new("/tmp/not-a-socket"), 1),
            Err(GiveError::NotOurs(_))
        ));
    }
}

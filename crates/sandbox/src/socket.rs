//! The Unix-socket services errand runs on the host for one sandboxed
//! process and mounts into its sandbox: the egress proxy ([`crate::egress`])
//! and the git credential server (errand-runner). Each listens on its own
//! socket in a private directory, serves every connection on its own task,
//! and stops (its socket removed) when dropped.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// A fresh socket path in the private directory `dir` (created, mode 0700),
/// or `/tmp/errand-{what}-…` when that path is too long for a Unix socket.
pub fn path_in(dir: &Path, what: &str) -> io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "{}-{}.sock",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let path = dir.join(&name);
    // sun_path holds 108 bytes.
    if path.as_os_str().len() > 100 {
        return Ok(Path::new("/tmp").join(format!("errand-{what}-{name}")));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display())))?;
    Ok(path)
}

/// A listening socket and the task serving it, until dropped.
pub struct SocketService {
    path: PathBuf,
    stop: CancellationToken,
}

impl SocketService {
    /// Listens on `path` (replacing a stale socket) and hands each connection
    /// to `serve`, at most `max_connections` at once (more are closed
    /// unanswered). `what` names the service in logs. Must be called inside
    /// a tokio runtime.
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
        // The agent's uid may differ from errand's (docker as root): the
        // socket is reachable only through the mount, so anyone may connect.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            what,
            max_connections,
            serve,
            stop.clone(),
        ));
        Ok(SocketService {
            path: path.to_path_buf(),
            stop,
        })
    }

    /// Where it listens (the host side of the mount).
    pub fn path(&self) -> &Path {
        &self.path
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
            .finish()
    }
}

async fn accept_loop<F, Fut>(
    listener: UnixListener,
    what: &'static str,
    max_connections: usize,
    serve: F,
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn serves_until_dropped_then_the_socket_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(&dir.path().join("private"), "test").unwrap();
        let svc = SocketService::start(&path, "test", 4, |mut s: UnixStream| async move {
            let _ = s.write_all(b"hello").await;
        })
        .unwrap();
        let mut c = UnixStream::connect(svc.path()).await.unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hello");
        drop(svc);
        assert!(!path.exists());
        assert!(UnixStream::connect(&path).await.is_err());
    }

    #[test]
    fn long_directories_fall_back_to_tmp() {
        let long = Path::new("/nonexistent").join("d".repeat(120));
        let p = path_in(&long, "x").unwrap();
        assert!(p.starts_with("/tmp") && p.to_string_lossy().contains("errand-x-"));
    }
}

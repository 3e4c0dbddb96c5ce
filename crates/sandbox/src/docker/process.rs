//! A started container as a process: its attach stream as stdout and stderr,
//! waiting for its exit status, killing and removing it ([`DockerProcess`]).

use async_trait::async_trait;
use bollard::query_parameters::{
    AttachContainerOptions, KillContainerOptions, RemoveContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::{api_error, is_not_found};
use crate::socket::PrivateFile;
use crate::{ExitInfo, OutputStream, ProcessHandle, SandboxError};

/// Docker reports a process ended by signal N as status 128+N.
fn exit_info(code: i64, oom_killed: bool) -> ExitInfo {
    if (129..=128 + 31).contains(&code) {
        ExitInfo {
            code: None,
            signal: Some((code - 128) as i32),
            oom_killed,
        }
    } else {
        ExitInfo {
            code: Some(i32::try_from(code).unwrap_or(i32::MAX)),
            signal: None,
            oom_killed,
        }
    }
}

/// Copies the attach stream into the two pipes errand reads. A pipe whose
/// reader is gone is dropped; the pipes end when the container's output does.
async fn demux(
    mut output: std::pin::Pin<
        Box<
            dyn futures::Stream<
                    Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
                > + Send,
        >,
    >,
    out: tokio::io::DuplexStream,
    err: tokio::io::DuplexStream,
) {
    use bollard::container::LogOutput;
    let mut out = Some(out);
    let mut err = Some(err);
    while let Some(Ok(chunk)) = output.next().await {
        let (pipe, bytes) = match chunk {
            LogOutput::StdOut { message } | LogOutput::Console { message } => (&mut out, message),
            LogOutput::StdErr { message } => (&mut err, message),
            LogOutput::StdIn { .. } => continue,
        };
        if let Some(w) = pipe {
            if w.write_all(&bytes).await.is_err() {
                *pipe = None;
            }
        }
    }
    for w in [out, err].iter_mut().flatten() {
        let _ = w.shutdown().await;
    }
}

pub(super) struct DockerProcess {
    docker: Docker,
    id: String,
    stdout: Option<OutputStream>,
    stderr: Option<OutputStream>,
    /// The task copying the attach stream into the pipes. Ended before a
    /// kill: a stream nobody reads would leave the engine's copy of the
    /// container's output blocked, and its kill and removal waiting on it.
    copier: Option<tokio::task::JoinHandle<()>>,
    /// Removed already: nothing to do on drop.
    finished: bool,
    /// The passwd and group files bound in, removed with this.
    _files: [PrivateFile; 2],
}

impl DockerProcess {
    /// Attaches to the created container `id` (before the start, so no output
    /// is lost) and starts it; on failure the container is removed.
    pub(super) async fn start(
        docker: Docker,
        id: String,
        files: [PrivateFile; 2],
    ) -> Result<DockerProcess, SandboxError> {
        let mut process = DockerProcess {
            docker: docker.clone(),
            id,
            stdout: None,
            stderr: None,
            copier: None,
            finished: false,
            _files: files,
        };
        // Attached before the start, so no output is lost.
        let attached = match docker
            .attach_container(
                &process.id,
                Some(AttachContainerOptions {
                    stream: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(a) => a,
            Err(e) => {
                process.remove().await;
                return Err(api_error("attaching to the container failed", e));
            }
        };
        if let Err(e) = docker.start_container(&process.id, None).await {
            process.remove().await;
            return Err(SandboxError::Spawn(std::io::Error::other(e.to_string())));
        }
        let (out_w, out_r) = tokio::io::duplex(256 << 10);
        let (err_w, err_r) = tokio::io::duplex(256 << 10);
        process.stdout = Some(Box::new(out_r));
        process.stderr = Some(Box::new(err_r));
        process.copier = Some(tokio::spawn(demux(attached.output, out_w, err_w)));
        Ok(process)
    }

    async fn remove(&mut self) {
        match self
            .docker
            .remove_container(
                &self.id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => tracing::warn!("removing container {} failed: {e}", self.id),
        }
        self.finished = true;
    }
}

#[async_trait]
impl ProcessHandle for DockerProcess {
    fn take_stdout(&mut self) -> Option<OutputStream> {
        self.stdout.take()
    }

    fn take_stderr(&mut self) -> Option<OutputStream> {
        self.stderr.take()
    }

    async fn wait(&mut self) -> std::io::Result<ExitInfo> {
        if self.finished {
            return Err(std::io::Error::other("the container was already removed"));
        }
        let mut waiting = self.docker.wait_container(
            &self.id,
            Some(WaitContainerOptions {
                condition: "not-running".into(),
            }),
        );
        let code = match waiting.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => {
                return Err(std::io::Error::other(format!(
                    "waiting for the container failed: {e}"
                )))
            }
            None => {
                return Err(std::io::Error::other(
                    "the engine ended the wait without an exit status",
                ))
            }
        };
        drop(waiting);
        let state = self
            .docker
            .inspect_container(&self.id, None)
            .await
            .ok()
            .and_then(|i| i.state);
        let oom = state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false);
        let code = state.and_then(|s| s.exit_code).unwrap_or(code);
        self.remove().await;
        Ok(exit_info(code, oom))
    }

    async fn kill(&mut self) {
        if let Some(copier) = self.copier.take() {
            // Closes the attach connection: the engine stops copying output
            // at once instead of waiting for a reader that is gone.
            copier.abort();
        }
        if self.finished {
            return;
        }
        let _ = self
            .docker
            .kill_container(&self.id, Some(KillContainerOptions::default()))
            .await;
        self.remove().await;
    }
}

impl Drop for DockerProcess {
    fn drop(&mut self) {
        if let Some(copier) = self.copier.take() {
            copier.abort();
        }
        if self.finished {
            return;
        }
        // Best effort: an errand that exits before this runs leaves the container
        // to `cleanup_orphans` at its next start.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let docker = self.docker.clone();
            let id = std::mem::take(&mut self.id);
            rt.spawn(async move {
                let _ = docker
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: true,
                            ..Default::default()
                        }),
                    )
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_exit_codes_above_128_are_signals() {
        assert_eq!(exit_info(0, false).to_string(), "status 0");
        assert_eq!(exit_info(3, false).to_string(), "status 3");
        let killed = exit_info(137, false);
        assert_eq!((killed.code, killed.signal), (None, Some(9)));
        assert_eq!(killed.to_string(), "signal 9");
        assert_eq!(exit_info(137, true).to_string(), "killed: out of memory");
        assert!(exit_info(0, true).success());
        assert_eq!(exit_info(200, false).code, Some(200));
    }
}

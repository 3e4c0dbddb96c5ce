//! Work in the run's sandbox besides the agent's own (the commit, the
//! export of the run's branch, the test command), each bounded by the run's
//! deadline and cancellation: what [`Until`] says.

use super::*;

/// When the steps after the agent must end, and what cancels them.
pub(crate) struct Until {
    pub(crate) id: RunId,
    pub(crate) cancel: CancellationToken,
    pub(crate) deadline: tokio::time::Instant,
}

/// How long the steps after the agent (commit, export, tests) may take when
/// the agent used up the run's deadline: the run's timeout again, between
/// 30 seconds and 5 minutes.
pub(crate) fn finish_grace(timeout_secs: u64) -> Duration {
    Duration::from_secs(timeout_secs.clamp(30, 300))
}

impl Runner {
    /// Runs a shell command in the run's sandbox; returns whether it exited 0,
    /// and the end of its stdout and stderr together.
    pub(crate) async fn sandboxed_output(
        &self,
        sb: &SandboxSpec,
        script: &str,
        until: &Until,
    ) -> Result<(bool, String), RunError> {
        let (status, out, _) = self
            .in_sandbox(sb, &format!("exec 2>&1; {script}"), until)
            .await?;
        Ok((status.success(), out))
    }

    /// Runs a short shell script in the run's sandbox; returns its output.
    pub(crate) async fn sandboxed_sh(
        &self,
        sb: &SandboxSpec,
        script: &str,
        until: &Until,
    ) -> Result<String, RunError> {
        let (status, out, err) = self.in_sandbox(sb, script, until).await?;
        if status.success() {
            Ok(out)
        } else {
            Err(RunError::sandbox(format!(
                "`{script}` failed in the sandbox ({status}): {}",
                last_chars(err.trim(), REASON_TAIL)
            )))
        }
    }

    /// Runs `script` in the run's sandbox until it exits, or until the run's
    /// deadline or a cancel, which kill it and everything it started. Keeps
    /// the last [`limits::MAX_STEP_OUTPUT`] bytes of stdout and of stderr.
    pub(crate) async fn in_sandbox(
        &self,
        sb: &SandboxSpec,
        script: &str,
        until: &Until,
    ) -> Result<(errand_sandbox::ExitInfo, String, String), RunError> {
        let mut p = self
            .sandbox
            .spawn(sb, &CommandLine::new("/bin/sh", ["-c", script]))
            .await
            .map_err(|e| RunError::sandbox(e.to_string()))?;
        let stdout = p.take_stdout();
        let stderr = p.take_stderr();
        let result = {
            let work = async {
                let (out, err) = tokio::join!(
                    limits::read_tail(stdout, limits::MAX_STEP_OUTPUT),
                    limits::read_tail(stderr, limits::MAX_STEP_OUTPUT)
                );
                let status = p.wait().await;
                (status, out, err)
            };
            tokio::select! {
                done = work => Ok(done),
                stop = self.stopped(until) => Err(stop),
            }
        };
        match result {
            Ok((status, out, err)) => {
                let status = status.map_err(|e| RunError::sandbox(e.to_string()))?;
                Ok((status, out, err))
            }
            Err(stop) => {
                p.kill().await;
                Err(stop)
            }
        }
    }

    /// Resolves when the run must stop: its deadline passed, it was
    /// cancelled here, or someone asked the store to cancel it.
    pub(crate) async fn stopped(&self, until: &Until) -> RunError {
        let deadline = tokio::time::sleep_until(until.deadline);
        tokio::pin!(deadline);
        let mut poll = tokio::time::interval(self.cancel_poll);
        loop {
            tokio::select! {
                _ = &mut deadline => return RunError::TimedOut { after: None },
                _ = until.cancel.cancelled() => return RunError::Interrupted,
                _ = poll.tick() => {
                    if self.store.get_run(until.id).await.is_ok_and(|r| r.cancel_requested) {
                        return RunError::CancelRequested;
                    }
                }
            }
        }
    }

    /// Brings the run's branch out of the sandbox into the outbox: a script
    /// inside prints a bundle, the host checks it in (see `errand_git::export`).
    /// The host never opens the workspace's `.git`.
    pub(crate) async fn export_branch(
        &self,
        sb: &SandboxSpec,
        prepared: &errand_git::Prepared,
        run_dir: &Path,
        until: &Until,
    ) -> Result<(), RunError> {
        let script = errand_git::export_script(prepared);
        let mut p = self
            .sandbox
            .spawn(sb, &CommandLine::new("/bin/sh", ["-c", &script]))
            .await
            .map_err(|e| RunError::sandbox(e.to_string()))?;
        let stdout = p
            .take_stdout()
            .ok_or_else(|| RunError::sandbox("the export's stdout was not captured"))?;
        let stderr = p.take_stderr();
        // errand's own directory beside the run's: never mounted into a sandbox.
        let spool = run_dir.join("export.bundle");
        let result = {
            let work = async {
                let (received, err) = tokio::join!(
                    errand_git::receive(stdout, &spool, errand_git::MAX_EXPORT_BYTES),
                    limits::read_tail(stderr, limits::MAX_STEP_OUTPUT)
                );
                let status = match &received {
                    Ok(_) => Some(p.wait().await),
                    Err(_) => None,
                };
                (received, err, status)
            };
            tokio::select! {
                done = work => Ok(done),
                stop = self.stopped(until) => Err(stop),
            }
        };
        let (received, err, status) = match result {
            Ok(r) => r,
            Err(stop) => {
                p.kill().await;
                return Err(stop);
            }
        };
        let why = |detail: String| {
            RunError::git(format!(
                "could not take the run's commits out of the sandbox: {detail}{}",
                if err.trim().is_empty() {
                    String::new()
                } else {
                    format!(" ({})", last_chars(err.trim(), REASON_TAIL))
                }
            ))
        };
        let received = match received {
            Ok(r) => r,
            Err(e) => {
                p.kill().await;
                let _ = tokio::fs::remove_file(&spool).await;
                return Err(why(e.to_string()));
            }
        };
        match status {
            Some(Ok(s)) if s.success() => {}
            Some(Ok(s)) => return Err(why(format!("the export exited with {s}"))),
            Some(Err(e)) => return Err(why(e.to_string())),
            None => return Err(why("the export did not finish".into())),
        }
        let imported = errand_git::import(prepared, &received, &spool).await;
        let _ = tokio::fs::remove_file(&spool).await;
        imported.map_err(|e| RunError::git(e.to_string()))
    }
}

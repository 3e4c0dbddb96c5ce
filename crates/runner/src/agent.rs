//! The run phase: the harness in the sandbox, its stdout parsed into events
//! as it comes, its stderr and raw output kept within their caps, and the
//! guard's denials (written by hooks inside) turned into refused calls.

use super::*;

/// The guard hook's record of refused calls (written inside the sandbox by
/// `errand guard hook --log`), turned into a refused tool call in the trace.
/// For harnesses whose own output says nothing of a call a hook refused.
/// The file is in the agent's HOME: it is read with [`hostfs::read_beneath`]
/// (no symlink, regular files only, never blocking on a FIFO), a capped amount
/// per poll, on the blocking pool.
pub(crate) struct DenialLog {
    pub(crate) home: PathBuf,
    pub(crate) rel: PathBuf,
    pub(crate) offset: u64,
    pub(crate) n: u64,
    /// Set when the file is not a plain file: errand stops reading it.
    pub(crate) refused: bool,
}

/// The most bytes of the guard's log read at one poll.
pub(crate) const DENIAL_READ: usize = 256 << 10;

impl DenialLog {
    pub(crate) fn new(home: PathBuf, rel: PathBuf) -> Self {
        DenialLog {
            home,
            rel,
            offset: 0,
            n: 0,
            refused: false,
        }
    }

    /// The events for denials recorded since the last call (whole lines only).
    pub(crate) async fn poll(&mut self) -> Vec<EventKind> {
        if self.refused || self.n >= limits::MAX_DENIALS {
            return vec![];
        }
        let (home, rel, offset) = (self.home.clone(), self.rel.clone(), self.offset);
        let read = tokio::task::spawn_blocking(move || {
            hostfs::read_beneath(&home, &rel, offset, DENIAL_READ)
        })
        .await;
        let buf = match read {
            Ok(Ok(Some(buf))) => buf,
            Ok(Ok(None)) => return vec![],
            Ok(Err(e)) => {
                self.refused = true;
                return vec![EventKind::Warning {
                    message: format!(
                        "errand stopped reading the guard's log of refusals: {e} (the agent may have replaced it)"
                    ),
                }];
            }
            Err(_) => return vec![],
        };
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            // A line longer than a whole read is not the guard's: skip it.
            if buf.len() == DENIAL_READ {
                self.offset += buf.len() as u64;
            }
            return vec![];
        };
        self.offset += end as u64 + 1;
        let mut out = Vec::new();
        for line in String::from_utf8_lossy(&buf[..end]).lines() {
            if self.n >= limits::MAX_DENIALS {
                break;
            }
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let command: String = v["command"]
                .as_str()
                .unwrap_or("?")
                .chars()
                .take(4096)
                .collect();
            let reason: String = v["reason"]
                .as_str()
                .unwrap_or("refused")
                .chars()
                .take(1024)
                .collect();
            let reason = reason.strip_prefix("errand-guard: ").unwrap_or(&reason);
            self.n += 1;
            let id = format!("errand-guard-{}", self.n);
            out.push(EventKind::ToolCall {
                id: id.clone(),
                name: "Bash".into(),
                input: serde_json::json!({ "command": command }),
                parent_id: None,
            });
            out.push(EventKind::ToolResult {
                id,
                output: format!("errand guard: refused `{command}`: {reason}"),
                is_error: true,
                exit_code: None,
            });
        }
        out
    }
}

impl Runner {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run_harness(
        &self,
        id: RunId,
        sb: &SandboxSpec,
        inv: &Invocation,
        mut parser: Box<dyn errand_harness::OutputParser>,
        em: &mut Emitter,
        cancel: &CancellationToken,
        timeout_secs: u64,
    ) -> Result<errand_harness::Outcome, RunError> {
        let mut proc = self
            .sandbox
            .spawn(sb, &inv.command)
            .await
            .map_err(|e| RunError::sandbox(e.to_string()))?;
        for n in proc.notices.clone() {
            em.notice(n).map_err(log_failed)?;
        }
        let stdout = proc
            .take_stdout()
            .ok_or_else(|| RunError::sandbox("harness stdout was not captured"))?;
        let stderr = proc
            .take_stderr()
            .ok_or_else(|| RunError::sandbox("harness stderr was not captured"))?;
        let mut raw = RawLog::open(&self.paths.raw(id)).map_err(log_failed)?;
        let stderr_path = self.paths.stderr(id);
        let redactor = em.redactor.clone();
        // stderr goes to stderr.log as it comes, up to a cap; the last lines
        // are kept for the failure reason. Lines are cut like stdout's.
        let stderr_task = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut tail: std::collections::VecDeque<String> = Default::default();
            let mut file = tokio::fs::File::create(&stderr_path).await.ok();
            let mut written: u64 = 0;
            let mut reader = BufReader::new(stderr);
            let mut lines = limits::LineReader::default();
            while let Ok(Some((bytes, _dropped))) =
                lines.next(&mut reader, limits::MAX_LINE_BYTES).await
            {
                let line = redactor.redact(String::from_utf8_lossy(&bytes).trim_end_matches('\r'));
                if let Some(f) = file.as_mut() {
                    if written + (line.len() as u64) < MAX_STDERR_BYTES {
                        written += line.len() as u64 + 1;
                        let _ = f.write_all(line.as_bytes()).await;
                        let _ = f.write_all(b"\n").await;
                    } else {
                        let _ = f
                            .write_all(b"[stderr truncated by errand: it passed its size cap]\n")
                            .await;
                        file = None;
                    }
                }
                tail.push_back(line.chars().take(2000).collect());
                if tail.len() > 20 {
                    tail.pop_front();
                }
            }
            if let Some(mut f) = file {
                let _ = f.flush().await;
            }
            Vec::from(tail)
        });

        let deadline = tokio::time::sleep(Duration::from_secs(timeout_secs));
        tokio::pin!(deadline);
        let mut poll = tokio::time::interval(self.cancel_poll);
        // Lines are read as bytes and decoded leniently: a harness that prints
        // invalid UTF-8 must not cut its own log short. `LineReader` keeps a
        // partial line when another branch wins, so nothing is lost, and cuts
        // a line past `MAX_LINE_BYTES`, so an endless one cannot grow memory.
        let mut reader = BufReader::with_capacity(64 << 10, stdout);
        let mut lines = limits::LineReader::default();
        let mut denials = DenialLog::new(
            sb.home.clone(),
            PathBuf::from(errand_harness::codex::GUARD_LOG.trim_start_matches("/home/agent/")),
        );
        let mut stop: Option<RunError> = None;
        let mut cut_lines: u64 = 0;
        loop {
            // Above the backlog the harness waits (its pipe fills) until the store catches up.
            let backed_up = em.backlog() > limits::MAX_BACKLOG;
            tokio::select! {
                read = lines.next(&mut reader, MAX_LINE_BYTES), if !backed_up => match read {
                    Ok(None) => break,
                    Ok(Some((bytes, dropped))) => {
                        // A refusal recorded by the guard hook precedes whatever the harness does next.
                        for kind in denials.poll().await {
                            em.emit(EventSource::Errand, None, kind).map_err(log_failed)?;
                        }
                        if dropped > 0 {
                            cut_lines += 1;
                            if cut_lines <= 10 {
                                em.errand(EventKind::Warning { message: format!(
                                    "a line of the harness's output was cut to {} MiB ({dropped} bytes dropped)",
                                    MAX_LINE_BYTES >> 20) }).map_err(log_failed)?;
                            }
                        }
                        let text = String::from_utf8_lossy(&bytes);
                        let line = em.redactor.redact(text.trim_end_matches('\r'));
                        let n = match em.budget.take_raw(line.len()) {
                            Ok(()) => {
                                let n = raw.append(&line).map_err(log_failed)?;
                                em.raw(n, &line);
                                Some(n)
                            }
                            Err(warning) => {
                                if let Some(w) = warning {
                                    em.errand(w).map_err(log_failed)?;
                                }
                                None
                            }
                        };
                        for kind in parser.push_line(&line) {
                            em.emit(EventSource::Harness, n, kind).map_err(log_failed)?;
                        }
                    }
                    Err(e) => {
                        em.emit(EventSource::Harness, None, EventKind::Error { message: format!("reading the harness's output failed: {e}") })
                            .map_err(log_failed)?;
                        break;
                    }
                },
                _ = &mut deadline => {
                    stop = Some(RunError::TimedOut { after: Some(timeout_secs) });
                    break;
                }
                _ = cancel.cancelled() => {
                    stop = Some(RunError::Interrupted);
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(20)), if backed_up => {}
                _ = poll.tick() => {
                    for kind in denials.poll().await {
                        em.emit(EventSource::Errand, None, kind).map_err(log_failed)?;
                    }
                    if let Ok(r) = self.store.get_run(id).await {
                        if r.cancel_requested {
                            stop = Some(RunError::CancelRequested);
                            break;
                        }
                    }
                }
            }
        }
        if let Some(stop) = stop {
            proc.kill().await;
            if let Some(n) = refusal_notice(&proc.egress_refusals()) {
                em.notice(n).map_err(log_failed)?;
            }
            return Err(stop);
        }
        let status = proc.wait().await.map_err(|e| RunError::sandbox(e.to_string()))?;
        if let Some(n) = refusal_notice(&proc.egress_refusals()) {
            em.notice(n).map_err(log_failed)?;
        }
        for kind in denials.poll().await {
            em.emit(EventSource::Errand, None, kind)
                .map_err(log_failed)?;
        }
        let tail = stderr_task.await.unwrap_or_default();
        // Harnesses that print no final result get one synthesized now.
        for kind in parser.finish(status.success()) {
            em.emit(EventSource::Harness, None, kind)
                .map_err(log_failed)?;
        }
        let memory = self
            .limits
            .memory_bytes
            .map(|m| format!(" of {} MiB", m >> 20))
            .unwrap_or_default();
        if status.oom_killed && status.success() {
            em.notice(format!(
                "a process in the sandbox was killed: it hit the memory limit{memory}"
            ))
            .map_err(log_failed)?;
        }
        let outcome = parser.outcome();
        match outcome {
            _ if status.oom_killed && !status.success() => Err(RunError::harness(format!(
                "the harness was killed: it hit the sandbox's memory limit{memory} (raise it with --memory)"
            ))),
            Some(o) if !o.is_error && status.success() => Ok(o),
            Some(o) if o.is_error => Err(RunError::harness(format!(
                "the agent reported an error: {}",
                o.error.unwrap_or_else(|| "no details".into())
            ))),
            _ if !status.success() => Err(RunError::harness(format!(
                "the harness exited with {}{}",
                status,
                if tail.is_empty() { String::new() } else { format!(": {}", tail.join(" | ")) }
            ))),
            _ => Err(RunError::harness(
                "the harness exited without a final result: its output was not the stream it should print \
                 (see `errand logs --raw`)",
            )),
        }
    }
}

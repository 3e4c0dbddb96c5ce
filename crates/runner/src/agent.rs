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
    /// A log that is never read: the harness's own output shows its refusals.
    pub(crate) fn none() -> Self {
        DenialLog {
            home: PathBuf::new(),
            rel: PathBuf::new(),
            offset: 0,
            n: 0,
            refused: true,
        }
    }

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
        guard_log: Option<&'static str>,
        mut metered: Option<&mut meter::Metered>,
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
        // An attempt on another node (its node drained) may have stored lines this node has not.
        let stored = self.store.raw_after(id, raw.lines(), 0).await;
        if let Some((n, _)) = stored.ok().and_then(|more| more.last().cloned()) {
            raw.continue_after(n);
        }
        let stderr_path = self.paths.stderr(id);
        let stderr_task = tokio::spawn(keep_stderr(stderr, stderr_path, em.redactor.clone()));

        let deadline = tokio::time::sleep(Duration::from_secs(timeout_secs));
        tokio::pin!(deadline);
        let mut poll = tokio::time::interval(self.cancel_poll);
        // Lines are read as bytes and decoded leniently: a harness that prints
        // invalid UTF-8 must not cut its own log short. `LineReader` keeps a
        // partial line when another branch wins, so nothing is lost, and cuts
        // a line past `MAX_LINE_BYTES`, so an endless one cannot grow memory.
        let mut reader = BufReader::with_capacity(64 << 10, stdout);
        let mut lines = limits::LineReader::default();
        // Only harnesses whose hook keeps a log of its refusals have one to read.
        let mut denials = match guard_log {
            Some(path) => DenialLog::new(
                sb.home.clone(),
                PathBuf::from(
                    path.trim_start_matches(inside::HOME)
                        .trim_start_matches('/'),
                ),
            ),
            None => DenialLog::none(),
        };
        let mut stop: Option<RunError> = None;
        let mut cut_lines: u64 = 0;
        loop {
            // Above the backlog the harness waits (its pipe fills) until the store catches up.
            let backed_up = em.backlog() > limits::MAX_BACKLOG;
            tokio::select! {
                read = lines.next(&mut reader, MAX_LINE_BYTES), if !backed_up => match read {
                    Ok(None) => break,
                    Ok(Some((bytes, dropped))) => {
                        on_line(em, &mut raw, parser.as_mut(), &mut denials, &bytes, dropped, &mut cut_lines).await?;
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
                ev = async { match metered.as_deref_mut() { Some(m) => m.next().await, None => std::future::pending().await } } => {
                    if let Some(m) = metered.as_deref_mut() {
                        m.record(em, ev)?;
                        if let Some(reason) = m.exceeded.clone() {
                            stop = Some(RunError::Budget(reason));
                            break;
                        }
                    }
                }
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
            // A line the harness was still printing is recorded as far as it
            // got (and its cut, past the cap), not lost with the process.
            if let Some((bytes, dropped)) = lines.pending() {
                on_line(
                    em,
                    &mut raw,
                    parser.as_mut(),
                    &mut denials,
                    &bytes,
                    dropped,
                    &mut cut_lines,
                )
                .await?;
            }
            if let Some(n) = refusal_notice(&proc.egress_refusals()) {
                em.notice(n).map_err(log_failed)?;
            }
            return Err(stop);
        }
        let status = proc
            .wait()
            .await
            .map_err(|e| RunError::sandbox(e.to_string()))?;
        if let Some(n) = refusal_notice(&proc.egress_refusals()) {
            em.notice(n).map_err(log_failed)?;
        }
        for kind in denials.poll().await {
            em.emit(EventSource::Errand, None, kind)
                .map_err(log_failed)?;
        }
        let tail = stderr_task.await.unwrap_or_default();
        // What the gateway told while the harness was ending, in order
        // before the harness's result; a budget reached on the last request
        // still fails the run.
        if let Some(m) = metered {
            if let Some(reason) = m.drain(em)? {
                return Err(RunError::Budget(reason));
            }
        }
        // Harnesses that print no final result get one synthesized now.
        for kind in parser.finish(status.success()) {
            em.emit(EventSource::Harness, None, kind)
                .map_err(log_failed)?;
        }
        self.judge(em, status, parser.outcome(), &tail)
    }
}

impl Runner {
    /// The run phase: the virtualenv of a run without a repository, the
    /// harness in the sandbox (with the run's token renewed for its git proxy),
    /// then the proxy closed so the steps after the agent have no route to it.
    /// Gives the agent's outcome and the deadline the run started with.
    pub(crate) async fn run_agent(
        &self,
        s: &Scope<'_>,
        em: &mut Emitter,
        a: &mut Assembled,
        metered: Option<&mut meter::Metered>,
    ) -> Result<(errand_harness::Outcome, tokio::time::Instant), RunError> {
        let Scope {
            rec,
            is_follow_up,
            ctx,
            harness,
            inv,
            cancel,
            access,
            ..
        } = *s;
        let (id, spec) = (rec.id, &rec.spec);
        let run_dir = self.paths.run_dir(id);
        if spec.repo.is_none() && !is_follow_up {
            self.make_venv(&a.spec, a.has_uv, em, &a.until).await?;
        }

        // Git in the sandbox must never be handed an expired token, however long the agent works.
        let renewer = match (&a.git_proxy, access, &self.forge) {
            (Some(_), Some(a), Some(forge)) => {
                let redactor = em.redactor.clone();
                Some(forge::Renewer::start(forge.clone(), a.clone(), move |t| {
                    redactor.add(t)
                }))
            }
            _ => None,
        };

        self.transition(id, em, RunState::Running).await?;
        let parser = harness.parser_for(ctx);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(spec.timeout_secs);
        let outcome = self
            .run_harness(
                id,
                &a.spec,
                inv,
                parser,
                em,
                cancel,
                spec.timeout_secs,
                harness.guard_log(),
                metered,
            )
            .await;
        if let Some(r) = renewer {
            for note in r.finish().await {
                em.notice(note).map_err(log_failed)?;
            }
        }
        // The agent is done: its git proxy serves no more, and the steps after
        // it (committing leftovers, the test command) run without a route to it.
        if let Some((proxy, serving)) = a.git_proxy.take() {
            drop(serving);
            // Its scratch repository (the remote's objects, spooled pushes) is not kept.
            let _ = std::fs::remove_dir_all(run_dir.join("git-proxy"));
            let refused = proxy.refused();
            let mut n = format!(
                "agent git: errand's git proxy answered {} request(s)",
                proxy.forwarded()
            );
            if !refused.is_empty() {
                n.push_str(&format!(
                    " and refused {}: {}",
                    refused.len(),
                    refused.join("; ")
                ));
            }
            em.notice(n).map_err(log_failed)?;
            if let (NetworkPolicy::Isolated(e), Some(r)) = (&mut a.spec.network, &a.route) {
                // (An address the configuration allowlists itself stays.)
                if !self.egress.allow.iter().any(|a| a == r.entry()) {
                    e.allow.retain(|a| a != r.entry());
                }
            }
            a.spec.env = std::mem::take(&mut a.env_after);
        }
        Ok((outcome?, deadline))
    }
}

/// The harness's stderr, into stderr.log as it comes, up to a cap; the last
/// lines are kept for the failure reason. Lines are cut like stdout's.
async fn keep_stderr(
    stderr: errand_sandbox::OutputStream,
    stderr_path: PathBuf,
    redactor: SharedRedactor,
) -> Vec<String> {
    use tokio::io::AsyncWriteExt;
    let mut tail: std::collections::VecDeque<String> = Default::default();
    let mut file = tokio::fs::File::create(&stderr_path).await.ok();
    let mut written: u64 = 0;
    let mut reader = BufReader::new(stderr);
    let mut lines = limits::LineReader::default();
    while let Ok(Some((bytes, _dropped))) = lines.next(&mut reader, limits::MAX_LINE_BYTES).await {
        let line = redactor.redact(
            limits::decode_line(&bytes, limits::MAX_LINE_BYTES)
                .0
                .trim_end_matches('\r'),
        );
        drop(bytes);
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
}

/// One line of the harness's stdout: the guard's refusals recorded before
/// it, the line (redacted) into the raw log within the trace's budget, and
/// its events from the harness's parser.
async fn on_line(
    em: &mut Emitter,
    raw: &mut RawLog,
    parser: &mut dyn errand_harness::OutputParser,
    denials: &mut DenialLog,
    bytes: &[u8],
    dropped: usize,
    cut_lines: &mut u64,
) -> Result<(), RunError> {
    // A refusal recorded by the guard hook precedes whatever the harness does next.
    for kind in denials.poll().await {
        em.emit(EventSource::Errand, None, kind)
            .map_err(log_failed)?;
    }
    let (text, lost) = limits::decode_line(bytes, MAX_LINE_BYTES);
    let dropped = dropped + lost;
    if dropped > 0 {
        *cut_lines += 1;
        if *cut_lines <= 10 {
            em.errand(EventKind::Warning {
                message: format!(
                    "a line of the harness's output was cut to {} MiB ({dropped} bytes dropped)",
                    MAX_LINE_BYTES >> 20
                ),
            })
            .map_err(log_failed)?;
        }
    }
    let line = em.redactor.redact(text.trim_end_matches('\r'));
    drop(text);
    // Parsed before the line moves into the store's queue (no copy of it),
    // and emitted after it, so an event follows its raw line.
    let kinds = parser.push_line(&line);
    let n = match em.budget.take_raw(line.len()) {
        Ok(()) => {
            let n = raw.append(&line).map_err(log_failed)?;
            em.raw(n, line);
            Some(n)
        }
        Err(warning) => {
            if let Some(w) = warning {
                em.errand(w).map_err(log_failed)?;
            }
            None
        }
    };
    for kind in kinds {
        em.emit(EventSource::Harness, n, kind).map_err(log_failed)?;
    }
    Ok(())
}

impl Runner {
    /// How the harness ended, as the run's outcome or the reason it failed.
    fn judge(
        &self,
        em: &mut Emitter,
        status: errand_sandbox::ExitInfo,
        outcome: Option<errand_harness::Outcome>,
        tail: &[String],
    ) -> Result<errand_harness::Outcome, RunError> {
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

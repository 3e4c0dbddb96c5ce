//! The finish phase: the agent's work is committed inside the sandbox and
//! brought out into the outbox (the host never opens the workspace's `.git`),
//! its diff recorded, and the repository's tests run.

use super::*;

/// What the finish phase leaves for delivery.
pub(crate) struct Finished {
    pub(crate) summary: RunSummary,
    /// The commit message errand used for the agent's leftovers (and the pull request's title).
    pub(crate) message: String,
    pub(crate) collected: errand_git::Collected,
}

impl Runner {
    /// The finish phase: what the agent left uncommitted is committed inside
    /// the sandbox, the branch comes out into the outbox, its diff becomes an
    /// event, and the repository's test command runs.
    pub(crate) async fn finish(
        &self,
        s: &Scope<'_>,
        em: &mut Emitter,
        sb: &SandboxSpec,
        outcome: errand_harness::Outcome,
        deadline: tokio::time::Instant,
    ) -> Result<Finished, RunError> {
        let Scope {
            rec,
            prepared,
            cancel,
            ..
        } = *s;
        let (id, spec) = (rec.id, &rec.spec);
        let run_dir = self.paths.run_dir(id);

        self.transition(id, em, RunState::Finishing).await?;
        // The steps after the agent end by the run's deadline, or in a few
        // minutes when the agent used it up; a cancel ends them at once.
        let until = Until {
            id,
            cancel: cancel.clone(),
            deadline: std::cmp::max(
                deadline,
                tokio::time::Instant::now() + finish_grace(spec.timeout_secs),
            ),
        };
        let message =
            errand_git::commit_message(outcome.text.as_deref(), &spec.prompt, &id.short());
        let mut commit_spec = sb.clone();
        commit_spec
            .env
            .push((errand_git::COMMIT_MESSAGE_VAR.to_string(), message.clone()));
        let out = self
            .sandboxed_sh(&commit_spec, &errand_git::commit_leftovers_script(), &until)
            .await?;
        if !out.trim().is_empty() {
            em.notice(out.trim().to_string()).map_err(log_failed)?;
        }
        self.export_branch(sb, prepared, &run_dir, &until).await?;
        let collected = errand_git::collect(prepared)
            .await
            .map_err(|e| RunError::git(e.to_string()))?;
        let mut summary = RunSummary {
            branch: Some(prepared.branch.clone()),
            commit: Some(collected.commit.clone()),
            diffstat: Some(collected.shortstat.clone()),
            pushed: false,
            turns: outcome.turns,
            input_tokens: Some(outcome.usage.input_tokens),
            output_tokens: Some(outcome.usage.output_tokens),
            cost_usd: outcome.usage.cost_usd,
            result_text: outcome.text.clone(),
            session_id: outcome.session_id.clone(),
            tests_passed: None,
            pr_url: None,
            base_branch: Some(prepared.base_branch.clone()),
            // A follow-up of a fan-out's picked run stays picked.
            picked: s.rec.summary.picked,
            ..Default::default()
        };
        record_diff(em, prepared, &collected)?;
        if let Some(cmd) = &spec.test_command {
            summary.tests_passed = Some(self.run_tests(s, em, sb, cmd, &until).await?);
        }
        Ok(Finished {
            summary,
            message,
            collected,
        })
    }

    /// The repository's own tests, in the sandbox, without the harness's
    /// secrets; their outcome and the end of their output become a notice.
    async fn run_tests(
        &self,
        s: &Scope<'_>,
        em: &mut Emitter,
        sb: &SandboxSpec,
        cmd: &str,
        until: &Until,
    ) -> Result<bool, RunError> {
        let env: Vec<(String, String)> = sb
            .env
            .iter()
            .filter(|(_, v)| !s.inv.secrets.contains(v))
            .cloned()
            .collect();
        let test_spec = SandboxSpec { env, ..sb.clone() };
        em.notice(format!("running the test command: {cmd}"))
            .map_err(log_failed)?;
        let (passed, output) = self.sandboxed_output(&test_spec, cmd, until).await?;
        let tail: Vec<&str> = output
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        em.notice(format!(
            "test command {}{}",
            if passed { "passed" } else { "failed" },
            if tail.is_empty() {
                String::new()
            } else {
                format!(":\n{}", tail.join("\n"))
            }
        ))
        .map_err(log_failed)?;
        Ok(passed)
    }
}

/// The run's diff as an event, and a one-line notice of where the branch is.
fn record_diff(
    em: &mut Emitter,
    prepared: &errand_git::Prepared,
    collected: &errand_git::Collected,
) -> Result<(), RunError> {
    em.emit(
        EventSource::Errand,
        None,
        EventKind::RunDiff {
            base_commit: prepared.base_commit.clone(),
            commit: collected.commit.clone(),
            stat: collected.stat.clone(),
            diff: collected.diff.clone(),
            truncated: collected.diff_truncated,
        },
    )
    .map_err(log_failed)?;
    em.notice(format!(
        "{} at {}: {} commit(s), {}",
        prepared.branch,
        short(&collected.commit),
        collected.commits,
        if collected.shortstat.is_empty() {
            "no changes"
        } else {
            &collected.shortstat
        }
    ))
    .map_err(log_failed)?;
    Ok(())
}

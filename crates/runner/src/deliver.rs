//! The deliver phase: the run's branch pushed from the outbox and its pull
//! request opened, outside the sandbox, with the run's own token.

use super::*;

impl Runner {
    /// The deliver phase: the branch pushed (with a renewed token if the run
    /// outlived the old one) and the pull request opened, when asked for.
    pub(crate) async fn deliver(
        &self,
        s: &Scope<'_>,
        em: &mut Emitter,
        f: &mut Finished,
    ) -> Result<(), RunError> {
        let Scope {
            rec,
            prepared,
            access,
            ..
        } = *s;
        let (id, spec) = (rec.id, &rec.spec);
        let Finished {
            summary,
            message,
            collected,
        } = f;
        if spec.push {
            // A long run outlives GitHub's one-hour token.
            if let (Some(gh), Some(a)) = (&self.github, access) {
                let redactor = em.redactor.clone();
                match gh.renew_if_expiring(a, |t| redactor.add(t)).await {
                    Ok(true) => em.notice(format!(
                        "renewed the run's token for {}/{} before pushing (the old one is revoked when the run ends)",
                        a.owner, a.repo
                    )),
                    Ok(false) => Ok(()),
                    Err(e) => em.notice(format!(
                        "renewing the run's token for {}/{} failed ({e}); pushing with the current one",
                        a.owner, a.repo
                    )),
                }
                .map_err(log_failed)?;
            }
            em.notice(format!("pushing {}", prepared.branch))
                .map_err(log_failed)?;
            let auth = access.map(|a| a.git_auth());
            errand_git::push(prepared, auth.as_ref())
                .await
                .map_err(|e| RunError::git(e.to_string()))?;
            summary.pushed = true;
            summary.pr_url = rec.summary.pr_url.clone();
            if let (Some(gh), Some(a), None) = (&self.github, access, &summary.pr_url) {
                if collected.commits == 0 {
                    em.notice("no pull request: the run changed nothing")
                        .map_err(log_failed)?;
                } else {
                    let trace = self
                        .public_url
                        .as_ref()
                        .map(|u| format!("{}/runs/{id}", u.trim_end_matches('/')));
                    let pull = errand_github::NewPull {
                        title: forge::pull_title(message),
                        head: prepared.branch.clone(),
                        base: prepared.base_branch.clone(),
                        body: em.redactor.redact(&forge::pull_body(
                            &spec.prompt,
                            summary.result_text.as_deref(),
                            &collected.shortstat,
                            trace.as_deref(),
                            spec.requested_by.as_deref(),
                        )),
                        draft: false,
                    };
                    let pr = gh.open_pull(a, &pull).await.map_err(|e| {
                        RunError::forge(format!(
                            "pushed {} but could not open a pull request: {e}",
                            prepared.branch
                        ))
                    })?;
                    em.notice(format!(
                        "opened pull request #{}: {}",
                        pr.number, pr.html_url
                    ))
                    .map_err(log_failed)?;
                    summary.pr_url = Some(pr.html_url);
                }
            }
        }
        Ok(())
    }
}

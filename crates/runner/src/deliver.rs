//! The deliver phase: the run's branch pushed from the outbox and its change
//! request (a GitHub pull request) opened, outside the sandbox, with the run's
//! own forge credential ([`crate::Forge`]).

use super::*;

impl Runner {
    /// The deliver phase: the branch pushed (with a renewed credential if the
    /// run outlived the old one) and the change request opened, when asked for.
    pub(crate) async fn deliver(
        &self,
        s: &Scope<'_>,
        em: &mut Emitter,
        f: &mut Finished,
    ) -> Result<(), RunError> {
        let Scope {
            prepared, access, ..
        } = *s;
        if !s.rec.spec.push {
            return Ok(());
        }
        if let (Some(forge), Some(a)) = (&self.forge, access) {
            self.renew_before_push(forge.as_ref(), a, em).await?;
        }
        // A run on an existing pull request pushes to its branch, which updates it.
        let thread = s.rec.spec.thread.as_ref();
        let target = thread.and_then(|t| t.head_branch.as_deref());
        let auth = access.map(|a| a.git_auth());
        match target {
            Some(head) => {
                em.notice(format!(
                    "pushing {} to the pull request's branch {head}",
                    prepared.branch
                ))
                .map_err(log_failed)?;
                errand_git::push_to(prepared, auth.as_ref(), head).await
            }
            None => {
                em.notice(format!("pushing {}", prepared.branch))
                    .map_err(log_failed)?;
                errand_git::push(prepared, auth.as_ref()).await
            }
        }
        .map_err(|e| RunError::git(e.to_string()))?;
        f.summary.pushed = true;
        f.summary.pr_url = s.rec.summary.pr_url.clone();
        if let (Some(forge), Some(a), Some(t), Some(_)) = (&self.forge, access, thread, target) {
            f.summary.pr_url = Some(forge.change_url(&a.owner, &a.repo, t.number));
        }
        if let (Some(forge), Some(a), None) = (&self.forge, access, &f.summary.pr_url) {
            // A fan-out's runs are compared first: only the one picked gets a
            // change request (crate::pick), not one per run.
            // A follow-up of a run not picked opens none either.
            let fan_out = s.rec.spec.group.as_ref().filter(|_| thread.is_none());
            if let (Some(group), false) = (fan_out, f.summary.picked == Some(true)) {
                em.notice(format!(
                    "fan-out {group}: {} is pushed; the {} is opened for the run you pick \
                     (Pick this one on the group's page, or errand pick {})",
                    prepared.branch,
                    forge.change_name(),
                    s.rec.id.short()
                ))
                .map_err(log_failed)?;
            } else {
                f.summary.pr_url = self.open_change(s, em, f, forge.as_ref(), a).await?;
            }
        }
        Ok(())
    }

    /// A long run outlives GitHub's one-hour token: a fresh one for the push.
    async fn renew_before_push(
        &self,
        forge: &dyn Forge,
        a: &forge::RepoAccess,
        em: &mut Emitter,
    ) -> Result<(), RunError> {
        let redactor = em.redactor.clone();
        match forge.renew_if_expiring(a, &|t| redactor.add(t)).await {
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
        .map_err(log_failed)
    }

    /// The change request for the pushed branch, unless the run changed
    /// nothing; gives its address.
    async fn open_change(
        &self,
        s: &Scope<'_>,
        em: &mut Emitter,
        f: &Finished,
        forge: &dyn Forge,
        a: &forge::RepoAccess,
    ) -> Result<Option<String>, RunError> {
        let (id, spec, prepared) = (s.rec.id, &s.rec.spec, s.prepared);
        let noun = forge.change_name();
        if f.collected.commits == 0 {
            em.notice(format!("no {noun}: the run changed nothing"))
                .map_err(log_failed)?;
            return Ok(None);
        }
        let trace = self
            .public_url
            .as_ref()
            .map(|u| format!("{}/runs/{id}", u.trim_end_matches('/')));
        let mut body = forge::change_body(
            &spec.prompt,
            f.summary.result_text.as_deref(),
            &f.collected.shortstat,
            trace.as_deref(),
            spec.requested_by.as_deref(),
        );
        // A run asked for in an issue closes it when merged.
        if let Some(t) = spec.thread.as_ref().filter(|t| !t.pull_request) {
            body.push_str(&format!("\nCloses #{}\n", t.number));
        }
        let change = forge::NewChange {
            title: forge::change_title(&f.message),
            head: prepared.branch.clone(),
            base: prepared.base_branch.clone(),
            body: em.redactor.redact(&body),
        };
        let opened = forge.open_change(a, &change).await.map_err(|e| {
            RunError::forge(format!(
                "pushed {} but could not open a {noun}: {e}",
                prepared.branch
            ))
        })?;
        em.notice(format!("opened {noun} #{}: {}", opened.number, opened.url))
            .map_err(log_failed)?;
        Ok(Some(opened.url))
    }
}

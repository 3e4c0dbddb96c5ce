//! The prepare phase: the request's cheap checks, the repository's forge
//! credential ([`crate::Forge::grant`]), the harness's installation, the
//! workspace cloned through the outbox, and the harness's files in the
//! agent's home.

use super::*;

impl Runner {
    /// The request's cheap checks, before anything slow: what the harness
    /// allows, what the flags need.
    pub(crate) fn check_request(
        &self,
        spec: &errand_core::RunSpec,
        harness: &dyn errand_harness::Harness,
    ) -> Result<(), RunError> {
        if spec.model.is_some() && !harness.capabilities().model_choice {
            return Err(RunError::invalid(format!(
                "{} does not let errand choose the model; drop --model",
                harness.name()
            )));
        }
        spec.check_push_options(errand_core::Naming::Flags)
            .map_err(RunError::Invalid)?;
        if spec.agent_git && self.sandbox.name() == "kubernetes" {
            self.kubernetes_git_proxy()?;
        }
        Ok(())
    }

    /// The repository's URL: for `github:` repositories with the forge's
    /// access to that repository alone (kept in `access`, revoked when the run ends).
    pub(crate) async fn remote(
        &self,
        spec: &errand_core::RunSpec,
        em: &mut Emitter,
        access: &mut Option<forge::RepoAccess>,
    ) -> Result<Option<String>, RunError> {
        // Only now, with the cheap checks passed, is a repository token minted.
        let remote = match &spec.repo {
            Some(src) if src.github().is_some() => {
                let (owner, repo) = src.github().unwrap_or_default();
                let forge = self.forge.as_ref().ok_or_else(|| {
                    RunError::invalid(format!(
                        "{owner}/{repo} is a GitHub repository, and this errand has no GitHub App \
                         configured ([github] app_id and private_key_file in its config)"
                    ))
                })?;
                let a = forge.grant(owner, repo, spec.push).await.map_err(|e| {
                    RunError::forge(format!("no {} token for {owner}/{repo}: {e}", forge.name()))
                })?;
                em.notice(format!(
                    "minted a token for {owner}/{repo} only ({}), revoked when the run ends",
                    a.credential()
                        .permissions
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .map_err(log_failed)?;
                let url = a.url.clone();
                *access = Some(a);
                Some(url)
            }
            Some(src) => Some(
                errand_git::resolve_source(src, &self.cwd)
                    .map_err(|e| RunError::git(e.to_string()))?,
            ),
            None => None,
        };
        Ok(remote)
    }

    /// Where the harness is installed (from npm on first use), mounted read-only in the sandbox.
    pub(crate) async fn install_harness(
        &self,
        harness: &dyn errand_harness::Harness,
        run_dir: &Path,
        em: &mut Emitter,
        progress: Option<&ProgressFn>,
    ) -> Result<PathBuf, RunError> {
        let dir = match (harness.package(), harness.host_dir()) {
            (Some(pkg), _) => {
                let install_dir =
                    errand_harness::install_dir(&self.paths.cache, harness.name(), &pkg);
                if !install_dir.join(pkg.bin).is_file() {
                    em.notice(format!("installing {} (first use)", pkg.spec()))
                        .map_err(log_failed)?;
                }
                let report = |line: &str| {
                    if let Some(p) = &progress {
                        p(line)
                    }
                };
                errand_harness::install_npm(&self.paths.cache, harness.name(), &pkg, &report)
                    .await
                    .map_err(|e| RunError::harness(e.to_string()))?
            }
            (None, Some(dir)) => dir,
            // A command from the system: mount an empty directory in the harness's place.
            (None, None) => {
                let empty = run_dir.join("no-harness-dir");
                std::fs::create_dir_all(&empty).map_err(|e| {
                    RunError::host(format!("cannot create {}: {e}", empty.display()))
                })?;
                empty
            }
        };
        Ok(dir)
    }

    /// The run's workspace: cloned through the outbox on a first turn, the
    /// same one (as recorded) on a follow-up.
    pub(crate) async fn workspace(
        &self,
        rec: &RunRecord,
        follow_up: bool,
        remote: Option<&str>,
        access: Option<&forge::RepoAccess>,
        em: &mut Emitter,
    ) -> Result<errand_git::Prepared, RunError> {
        let run_dir = self.paths.run_dir(rec.id);
        let workspace = run_dir.join("workspace");
        let prepared_file = run_dir.join("prepared.json");
        let prepared = if follow_up {
            let text = std::fs::read_to_string(&prepared_file).map_err(|e| {
                RunError::host(format!(
                    "the run's workspace is gone ({e}); a follow-up needs the machine that ran the first turn"
                ))
            })?;
            let prepared: errand_git::Prepared = serde_json::from_str(&text).map_err(|e| {
                RunError::host(format!("{} is corrupt: {e}", prepared_file.display()))
            })?;
            em.notice(format!(
                "continuing on {} in the same workspace",
                prepared.branch
            ))
            .map_err(log_failed)?;
            prepared
        } else {
            let auth = access.map(|a| a.git_auth());
            self.prepare_repo(rec, remote, auth.as_ref(), &run_dir, &workspace, em)
                .await?
        };
        if let Ok(json) = serde_json::to_string(&prepared) {
            write_file(&prepared_file, &json)?;
        }
        Ok(prepared)
    }

    pub(crate) async fn prepare_repo(
        &self,
        rec: &RunRecord,
        remote: Option<&str>,
        auth: Option<&errand_git::GitAuth>,
        run_dir: &Path,
        workspace: &Path,
        em: &mut Emitter,
    ) -> Result<errand_git::Prepared, RunError> {
        let id = rec.id;
        let spec = &rec.spec;
        let mirrors = errand_git::Mirrors::new(self.paths.cache.join("mirrors"));
        match remote {
            Some(r) if errand_git::Mirrors::wants(r) => em.notice(format!(
                "cloning {} (through errand's mirror of it)",
                errand_git::redact_url(r)
            )),
            Some(r) => em.notice(format!("cloning {}", errand_git::redact_url(r))),
            None => em.notice("no repository given: starting an empty project"),
        }
        .map_err(log_failed)?;
        let prepared = errand_git::prepare(
            remote.map(|url| errand_git::Remote {
                url,
                auth,
                mirrors: Some(&mirrors),
            }),
            spec.base_branch.as_deref(),
            spec.base_commit.as_deref(),
            run_dir,
            workspace,
            &id.branch(),
        )
        .await
        .map_err(|e| RunError::git(e.to_string()))?;
        em.notice(format!(
            "branch {} from {} at {}",
            prepared.branch,
            prepared.base_branch,
            short(&prepared.base_commit)
        ))
        .map_err(log_failed)?;
        Ok(prepared)
    }
}

/// The harness's files in the agent's HOME, which is the agent's (a
/// follow-up finds what it left there): each replaces whatever is in its
/// place and never follows a link.
pub(crate) async fn write_home_files(home: &Path, inv: &Invocation) -> Result<(), RunError> {
    std::fs::create_dir_all(home)
        .map_err(|e| RunError::host(format!("cannot create {}: {e}", home.display())))?;
    for (rel, contents) in &inv.home_files {
        let (root, rel_path, bytes) = (home.to_path_buf(), PathBuf::from(rel), contents.clone());
        tokio::task::spawn_blocking(move || {
            hostfs::write_beneath(&root, &rel_path, bytes.as_bytes())
        })
        .await
        .map_err(|e| RunError::host(format!("writing {rel} failed: {e}")))?
        .map_err(|e| RunError::host(format!("cannot write {rel} in the agent's home: {e}")))?;
    }
    Ok(())
}

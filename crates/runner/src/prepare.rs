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
            let mut prepared: errand_git::Prepared = serde_json::from_str(&text).map_err(|e| {
                RunError::host(format!("{} is corrupt: {e}", prepared_file.display()))
            })?;
            let layers_kept = prepared.layers.as_ref().is_none_or(|l| l.lower_kept());
            let kept = workspace_kept(&run_dir);
            if kept && layers_kept {
                em.notice(format!(
                    "continuing on {} in the same workspace",
                    prepared.branch
                ))
                .map_err(log_failed)?;
            } else {
                // Re-created as a plain clone of its own. With only the shared
                // checkout gone, the agent's home (its session) stays: each
                // turn ended with its work in the outbox, so nothing is lost.
                prepared.layers = None;
                self.restore_workspace(rec, &prepared, remote, access, !kept, em)
                    .await?;
            }
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

    /// Re-creates a follow-up's workspace that retention removed (`with_home`:
    /// the agent's home went too), or whose shared checkout it removed, from
    /// the run's outbox or its pushed branch, and says so in the trace.
    async fn restore_workspace(
        &self,
        rec: &RunRecord,
        prepared: &errand_git::Prepared,
        remote: Option<&str>,
        access: Option<&forge::RepoAccess>,
        with_home: bool,
        em: &mut Emitter,
    ) -> Result<(), RunError> {
        // What is left of it (retention may have been interrupted) goes first.
        let run_dir = self.paths.run_dir(rec.id);
        let parts: &[&str] = if with_home {
            &[
                "workspace",
                "workspace.work",
                "workspace.view",
                "home",
                "tmp",
            ]
        } else {
            &["workspace", "workspace.work", "workspace.view"]
        };
        for part in parts {
            crate::retention::remove_tree(&run_dir, std::ffi::OsStr::new(part))
                .map_err(|e| RunError::host(format!("cannot clear the run's {part}: {e}")))?;
        }
        let auth = access.map(|a| a.git_auth());
        let mirrors = errand_git::Mirrors::new(self.paths.cache.join("mirrors"));
        let remote = remote.map(|url| errand_git::Remote {
            url,
            auth: auth.as_ref(),
            mirrors: Some(&mirrors),
            checkouts: None,
        });
        let from = errand_git::restore(prepared, remote)
            .await
            .map_err(|e| RunError::git(format!("re-creating the run's workspace failed: {e}")))?;
        let from = match from {
            errand_git::RestoredFrom::Outbox => "the run's outbox".to_string(),
            errand_git::RestoredFrom::Remote => format!(
                "{} (the branch errand pushed)",
                prepared
                    .remote
                    .as_deref()
                    .map(errand_git::redact_url)
                    .unwrap_or_default()
            ),
        };
        let when = rec
            .workspace_pruned_at
            .map(|t| format!(" on {}", t.format("%Y-%m-%d %H:%M UTC")))
            .unwrap_or_default();
        let message = if with_home {
            format!(
                "the run's workspace was removed by retention{when}: re-created it from {from} \
                 on {}; the agent's earlier session went with it, so this turn starts a new \
                 session told the original request and the last result",
                prepared.branch
            )
        } else {
            format!(
                "the shared checkout the run's workspace was layered on was removed by \
                 retention: re-created the workspace from {from} on {}, with everything the \
                 earlier turns committed; the agent's session continues",
                prepared.branch
            )
        };
        em.errand(EventKind::Warning { message })
            .map_err(log_failed)?;
        self.store
            .set_pruned(rec.id, errand_store::Pruned::Workspace, None)
            .await
            .map_err(|e| RunError::host(e.to_string()))
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
        // The workspace is the run's layer over a shared checkout: an overlay
        // where the backend mounts one, else a copy of the checkout.
        let mode = if self.sandbox.layers_workspaces().await {
            errand_git::LayerMode::Overlay
        } else {
            errand_git::LayerMode::Copy
        };
        let checkouts = errand_git::Checkouts::new(self.paths.cache.join("checkouts"), mode);
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
                checkouts: Some(&checkouts),
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

/// Whether the run's workspace is still on disk (retention removes it,
/// the agent's home with it).
pub(crate) fn workspace_kept(run_dir: &Path) -> bool {
    ["workspace", "home"]
        .iter()
        .all(|p| std::fs::symlink_metadata(run_dir.join(p)).is_ok_and(|m| m.is_dir()))
}

/// The prompt of a follow-up whose harness session is gone: the original
/// request and the last result, then the new message.
pub(crate) fn resumed_prompt(rec: &RunRecord, message: &str) -> String {
    let last = rec
        .summary
        .result_text
        .as_deref()
        .unwrap_or("(no final message was recorded)");
    format!(
        "You are continuing earlier work in this repository. The workspace is on the branch {}, \
         with the commits of the earlier turns; the earlier conversation is no longer available.\n\n\
         The original request was:\n{}\n\nThe last turn ended with:\n{}\n\nNow:\n{}",
        rec.id.branch(),
        rec.spec.prompt,
        last,
        message
    )
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

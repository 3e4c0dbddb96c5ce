//! Picking the result of a fan-out: the runs of a group ran the same task side
//! by side, their branches pushed but no change request opened
//! (`deliver`); [`pick`] makes one of them the group's result.
//!
//! The chosen run's change request is opened (or, if it already has one,
//! marked with a comment), every run of the group records whether it was the
//! one picked (`RunSummary::picked`), and when asked the others' change
//! requests are closed and their branches deleted. Everything happens outside
//! any sandbox, with credentials for the run's one repository that are
//! revoked right after; nothing the agents wrote is read but the store's
//! record of their runs.

use std::path::Path;

use errand_core::{RunId, RunRecord, RunState};
use errand_store::{PickClaim, RunFilter, Store, StoreError};
use serde::Serialize;

use crate::forge::{self, Forge};

/// The most runs a group may have for a pick (a fan-out is a few).
const MAX_GROUP: u32 = 200;

/// What to pick.
#[derive(Debug, Clone)]
pub struct PickRequest<'a> {
    /// The fan-out group.
    pub group: &'a str,
    /// Its run to keep.
    pub run: RunId,
    /// Also close the others' change requests and delete their branches.
    pub close_others: bool,
    /// Who picked (for the change request's text).
    pub by: &'a str,
}

/// What a pick did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Picked {
    /// The group.
    pub group: String,
    /// The run picked (its id as errand prints it).
    pub run: String,
    /// Its change request, when it has one.
    pub pr_url: Option<String>,
    /// What was done, a line each, in order.
    pub done: Vec<String>,
}

/// Why a pick was refused or failed. Nothing is changed by a refusal.
#[derive(Debug, thiserror::Error)]
pub enum PickError {
    /// No run has this group.
    #[error("no fan-out group {0}")]
    NoGroup(String),
    /// The run is not one of the group's.
    #[error("run {run} is not in the fan-out group {group}")]
    NotInGroup {
        /// The run asked for.
        run: String,
        /// The group.
        group: String,
    },
    /// The group cannot be picked from now (a run still going, the run did not
    /// succeed, another was picked); the message says what to do.
    #[error("{0}")]
    NotReady(String),
    /// Reading or writing the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The forge refused (the message says which step).
    #[error("{0}")]
    Forge(String),
}

/// How long an unfinished pick holds its group before another may take
/// over (its process died half-way): longer than a pick with a slow forge.
const PICK_CLAIM_STALE: std::time::Duration = std::time::Duration::from_secs(600);

/// Makes run `req.run` the result of its fan-out group (see the module docs).
/// `forge` serves `github:` repositories; `cwd` resolves relative local
/// repositories as the runs did; `public_url` links the traces.
pub async fn pick(
    store: &dyn Store,
    forge: Option<&dyn Forge>,
    cwd: &Path,
    public_url: Option<&str>,
    req: &PickRequest<'_>,
) -> Result<Picked, PickError> {
    let runs = store
        .list_runs(&RunFilter {
            group: Some(req.group.to_string()),
            limit: MAX_GROUP,
            ..Default::default()
        })
        .await?;
    if runs.is_empty() {
        return Err(PickError::NoGroup(req.group.to_string()));
    }
    let chosen = runs
        .iter()
        .find(|r| r.id == req.run)
        .ok_or_else(|| PickError::NotInGroup {
            run: req.run.to_string(),
            group: req.group.to_string(),
        })?;
    check(&runs, chosen)?;
    // Two picks of one group at once (two people, two nodes) both pass the
    // check above; the store's claim lets exactly one go on.
    match store
        .claim_pick(req.group, chosen.id, PICK_CLAIM_STALE)
        .await?
    {
        PickClaim::Claimed | PickClaim::Done => {}
        PickClaim::Busy => {
            return Err(PickError::NotReady(format!(
                "run {} is being picked right now: wait for that pick to end",
                chosen.id.short()
            )))
        }
        PickClaim::Other(holder) => {
            return Err(PickError::NotReady(format!(
                "run {} was already picked for this group",
                holder.short()
            )))
        }
    }
    let mut done = Vec::new();
    let pr_url = match result_of(forge, public_url, &runs, chosen, req, &mut done).await {
        Ok(url) => url,
        Err(e) => {
            // Nothing was opened or marked: the group may be picked again.
            if let Err(re) = store.release_pick(req.group, chosen.id).await {
                tracing::warn!(
                    group = req.group,
                    "giving back the pick's claim failed: {re}"
                );
            }
            return Err(e);
        }
    };
    // Recorded at once, so a pick tried again after a failure below does not
    // open a second change request. Read again, not the listing's copy: only
    // the pick's own fields change.
    let mut summary = store.get_run(chosen.id).await?.summary;
    summary.picked = Some(true);
    summary.pr_url = pr_url.clone();
    store.update_summary(chosen.id, &summary).await?;
    store.finish_pick(req.group, chosen.id).await?;
    if req.close_others {
        for r in runs.iter().filter(|r| r.id != chosen.id) {
            close(forge, cwd, r, &mut done).await?;
        }
    }
    for r in runs.iter().filter(|r| r.id != chosen.id) {
        let mut summary = store.get_run(r.id).await?.summary;
        summary.picked = Some(false);
        store.update_summary(r.id, &summary).await?;
    }
    done.push(format!(
        "run {} is the result of fan-out {} ({} runs)",
        chosen.id.short(),
        req.group,
        runs.len()
    ));
    Ok(Picked {
        group: req.group.to_string(),
        run: chosen.id.to_string(),
        pr_url,
        done,
    })
}

/// Refuses a pick that cannot be made now, before anything is changed.
fn check(runs: &[RunRecord], chosen: &RunRecord) -> Result<(), PickError> {
    let going: Vec<String> = runs
        .iter()
        .filter(|r| !r.state.is_terminal())
        .map(|r| r.id.short())
        .collect();
    if !going.is_empty() {
        return Err(PickError::NotReady(format!(
            "{} run(s) of the group are still going ({}): wait for them to end, or cancel them",
            going.len(),
            going.join(", ")
        )));
    }
    if chosen.state != RunState::Succeeded {
        return Err(PickError::NotReady(format!(
            "run {} ended {}: only a run that succeeded can be picked",
            chosen.id.short(),
            chosen.state
        )));
    }
    if let Some(other) = runs
        .iter()
        .find(|r| r.id != chosen.id && r.summary.picked == Some(true))
    {
        return Err(PickError::NotReady(format!(
            "run {} was already picked for this group",
            other.id.short()
        )));
    }
    Ok(())
}

/// The chosen run's change request: opened for its pushed branch, or marked
/// with a comment if it has one.
async fn result_of(
    forge: Option<&dyn Forge>,
    public_url: Option<&str>,
    runs: &[RunRecord],
    chosen: &RunRecord,
    req: &PickRequest<'_>,
    done: &mut Vec<String>,
) -> Result<Option<String>, PickError> {
    let s = &chosen.summary;
    let branch = s.branch.as_deref().unwrap_or("(no branch)");
    let github = chosen.spec.repo.as_ref().and_then(|r| r.github());
    let (Some((owner, repo)), Some(forge)) = (github, forge) else {
        done.push(if s.pushed {
            format!("{branch} is pushed; its repository has no change requests errand opens")
        } else {
            format!("{branch} was not pushed (the run did not ask to push): it is the result")
        });
        return Ok(s.pr_url.clone());
    };
    let noun = forge.change_name();
    let trace = |id: &RunId| public_url.map(|u| format!("{}/runs/{id}", u.trim_end_matches('/')));
    let note = format!(
        "Picked by {} among the {} runs of fan-out `{}`{}.",
        req.by,
        runs.len(),
        req.group,
        public_url
            .map(|u| format!(
                " ([compare them]({}/groups/{}))",
                u.trim_end_matches('/'),
                req.group
            ))
            .unwrap_or_default()
    );
    if let (Some(url), Some(true)) = (&s.pr_url, s.picked) {
        done.push(format!("{url} is already the {noun} picked"));
        return Ok(Some(url.clone()));
    }
    if let Some(url) = &s.pr_url {
        let number = forge
            .change_number(url)
            .ok_or_else(|| PickError::Forge(format!("cannot read the {noun} number from {url}")))?;
        forge
            .comment_change(owner, repo, number, &note)
            .await
            .map_err(|e| PickError::Forge(format!("marking {url}: {e}")))?;
        done.push(format!("marked {noun} {url} as the one picked"));
        return Ok(Some(url.clone()));
    }
    if !s.pushed {
        return Err(PickError::NotReady(format!(
            "run {} did not push its branch (it was started without push): there is no {noun} to open; \
             re-run it with push, or pick it without one by starting runs that push",
            chosen.id.short()
        )));
    }
    let base = s.base_branch.clone().ok_or_else(|| {
        PickError::NotReady(format!(
            "run {} does not record its base branch: open the {noun} for {branch} by hand",
            chosen.id.short()
        ))
    })?;
    let mut body = forge::change_body(
        &chosen.spec.prompt,
        s.result_text.as_deref(),
        s.diffstat.as_deref().unwrap_or(""),
        trace(&chosen.id).as_deref(),
        chosen.spec.requested_by.as_deref(),
    );
    body.push('\n');
    body.push_str(&note);
    body.push('\n');
    let change = forge::NewChange {
        title: forge::change_title(
            s.result_text
                .as_deref()
                .filter(|t| !t.trim().is_empty())
                .unwrap_or(&chosen.spec.prompt),
        ),
        head: branch.to_string(),
        base,
        body,
    };
    let access = forge.grant(owner, repo, true).await.map_err(|e| {
        PickError::Forge(format!("no {} token for {owner}/{repo}: {e}", forge.name()))
    })?;
    let opened = forge.open_change(&access, &change).await;
    forge.revoke(&access).await;
    let opened = opened
        .map_err(|e| PickError::Forge(format!("could not open a {noun} for {branch}: {e}")))?;
    done.push(format!("opened {noun} #{}: {}", opened.number, opened.url));
    Ok(Some(opened.url))
}

/// Closes a run that was not picked: its change request, then its pushed branch.
async fn close(
    forge: Option<&dyn Forge>,
    cwd: &Path,
    r: &RunRecord,
    done: &mut Vec<String>,
) -> Result<(), PickError> {
    let s = &r.summary;
    let Some(branch) = s.branch.as_deref().filter(|_| s.pushed) else {
        done.push(format!(
            "run {}: nothing pushed, nothing to close",
            r.id.short()
        ));
        return Ok(());
    };
    let Some(source) = r.spec.repo.as_ref() else {
        return Ok(());
    };
    match (source.github(), forge) {
        (Some((owner, repo)), Some(forge)) => {
            let access = forge.grant(owner, repo, true).await.map_err(|e| {
                PickError::Forge(format!("no {} token for {owner}/{repo}: {e}", forge.name()))
            })?;
            let result = close_on_forge(forge, &access, r, branch, done).await;
            forge.revoke(&access).await;
            result
        }
        (Some((owner, repo)), None) => Err(PickError::Forge(format!(
            "{owner}/{repo} is a GitHub repository, and this errand has no GitHub App configured"
        ))),
        (None, _) => {
            let remote = errand_git::resolve_source(source, cwd)
                .map_err(|e| PickError::Forge(e.to_string()))?;
            errand_git::delete_remote_branch(&remote, None, branch)
                .await
                .map_err(|e| PickError::Forge(e.to_string()))?;
            done.push(format!("deleted branch {branch} (run {})", r.id.short()));
            Ok(())
        }
    }
}

async fn close_on_forge(
    forge: &dyn Forge,
    access: &forge::RepoAccess,
    r: &RunRecord,
    branch: &str,
    done: &mut Vec<String>,
) -> Result<(), PickError> {
    let noun = forge.change_name();
    if let Some(url) = &r.summary.pr_url {
        let number = forge
            .change_number(url)
            .ok_or_else(|| PickError::Forge(format!("cannot read the {noun} number from {url}")))?;
        forge
            .close_change(access, number)
            .await
            .map_err(|e| PickError::Forge(format!("closing {url}: {e}")))?;
        done.push(format!("closed {noun} {url} (run {})", r.id.short()));
    }
    forge
        .delete_branch(access, branch)
        .await
        .map_err(|e| PickError::Forge(format!("deleting {branch}: {e}")))?;
    done.push(format!("deleted branch {branch} (run {})", r.id.short()));
    Ok(())
}

//! What retention needs from git: when each mirror was last used, removing
//! one nobody used for a while, and re-creating a run's workspace after it was
//! removed so a follow-up can continue.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{clone_outbox, detail, git, redact_url, GitError, Mirrors, Prepared, Remote, Result};

/// A mirror on disk and when a run last used it.
#[derive(Debug, Clone)]
pub struct MirrorUse {
    /// The bare mirror (`<hash>.git`).
    pub path: PathBuf,
    /// The last refresh that used it (its stamp), else the directory's own time.
    pub last_used: SystemTime,
}

impl Mirrors {
    /// The root the mirrors live under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file whose modification time is the mirror's last use.
    fn stamp(mirror: &Path) -> PathBuf {
        mirror.with_extension("used")
    }

    /// Records that a run used `mirror` now.
    pub(crate) fn mark_used(mirror: &Path) {
        touch(&Self::stamp(mirror));
    }

    /// Every mirror and its last use; an empty list when there is no cache yet.
    pub fn list(&self) -> std::io::Result<Vec<MirrorUse>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path)?;
            if !meta.is_dir() || path.extension().is_none_or(|x| x != "git") {
                continue;
            }
            let last_used = std::fs::metadata(Self::stamp(&path))
                .and_then(|m| m.modified())
                .or_else(|_| meta.modified())?;
            out.push(MirrorUse { path, last_used });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Removes `mirror` if its last use is still before `cutoff`, under its
    /// lock (a refresh holding it is not disturbed: `false`, try again later).
    /// `true` when it was removed.
    pub fn remove_unused(&self, mirror: &Path, cutoff: SystemTime) -> std::io::Result<bool> {
        if mirror.parent() != Some(self.root.as_path()) {
            return Err(std::io::Error::other(format!(
                "{} is not a mirror under {}",
                mirror.display(),
                self.root.display()
            )));
        }
        remove_if_unused(mirror, &Self::stamp(mirror), cutoff)
    }
}

/// Removes the cache directory `dir` (a mirror, a shared checkout) if its
/// last use (`stamp`'s time, else its own) is still before `cutoff`, under
/// its lock (`dir.lock`): one being refreshed or made is left alone, `false`.
/// The lock file stays: a user waiting on it must share it with the next.
pub(crate) fn remove_if_unused(
    dir: &Path,
    stamp: &Path,
    cutoff: SystemTime,
) -> std::io::Result<bool> {
    let lock = std::fs::File::create(dir.with_extension("lock"))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    let still_unused = std::fs::metadata(stamp)
        .and_then(|m| m.modified())
        .or_else(|_| std::fs::symlink_metadata(dir).and_then(|m| m.modified()))
        .is_ok_and(|t| t < cutoff);
    if !still_unused {
        return Ok(false);
    }
    std::fs::remove_dir_all(dir)?;
    let _ = std::fs::remove_file(stamp);
    Ok(true)
}

/// Records a use of a cache directory now: `stamp`'s modification time.
pub(crate) fn touch(stamp: &Path) {
    let touched = std::fs::File::create(stamp).and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = touched {
        tracing::warn!("cannot record the use of {}: {e}", stamp.display());
    }
}

/// Where [`restore`] took the run's branch from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoredFrom {
    /// The run's own outbox, which errand kept.
    Outbox,
    /// The remote (the outbox was removed too): the pushed branch, or the
    /// run's base commit when the branch is not there.
    Remote,
}

/// Re-creates the workspace of a run whose workspace retention removed: from
/// its outbox when it is still there, else a fresh outbox cloned from
/// `remote` (through its mirror); then the run's branch checked out in a
/// fresh clone, as [`super::prepare`] leaves it. The run's branch comes from
/// the outbox if it has it, else the branch starts again at the base commit.
pub async fn restore(prepared: &Prepared, remote: Option<Remote<'_>>) -> Result<RestoredFrom> {
    let outbox = &prepared.outbox;
    let from = if outbox.join("HEAD").is_file() {
        RestoredFrom::Outbox
    } else {
        let Some(remote) = remote else {
            return Err(GitError::Command {
                args: "restore".into(),
                detail:
                    "the run's outbox was removed and it has no remote to clone its branch from"
                        .into(),
            });
        };
        let _ = std::fs::remove_dir_all(outbox);
        clone_outbox(remote, outbox).await?;
        RestoredFrom::Remote
    };
    let branch_ref = format!("refs/heads/{}", prepared.branch);
    let start = if git(
        Some(outbox),
        &["rev-parse", "--verify", "--quiet", &branch_ref],
    )
    .await
    .is_ok()
    {
        format!("origin/{}", prepared.branch)
    } else {
        let commit = format!("{}^{{commit}}", prepared.base_commit);
        git(Some(outbox), &["rev-parse", "--verify", "--quiet", &commit])
            .await
            .map_err(|e| GitError::Command {
                args: "restore".into(),
                detail: format!(
                    "neither the run's branch {} nor its base commit {} is in {}: {}",
                    prepared.branch,
                    prepared.base_commit,
                    if from == RestoredFrom::Outbox {
                        "its outbox"
                    } else {
                        "the remote"
                    },
                    detail(e)
                ),
            })?;
        prepared.base_commit.clone()
    };
    let workspace = prepared.workspace.to_string_lossy().into_owned();
    git(
        None,
        &[
            "clone",
            "--quiet",
            "--no-hardlinks",
            "--no-checkout",
            &outbox.to_string_lossy(),
            &workspace,
        ],
    )
    .await?;
    let ws = Some(prepared.workspace.as_path());
    git(
        ws,
        &[
            "checkout",
            "--quiet",
            "--no-track",
            "-B",
            &prepared.branch,
            &start,
        ],
    )
    .await?;
    match &prepared.remote {
        Some(url) => git(ws, &["remote", "set-url", "origin", &redact_url(url)]).await?,
        None => git(ws, &["remote", "remove", "origin"]).await?,
    };
    git(ws, &["config", "user.name", "errand agent"]).await?;
    git(ws, &["config", "user.email", "agent@errand.invalid"]).await?;
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn commit_all(dir: &Path, message: &str) {
        git(Some(dir), &["add", "-A"]).await.unwrap();
        git(
            Some(dir),
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-q",
                "-m",
                message,
            ],
        )
        .await
        .unwrap();
    }

    async fn check(ws: &Path, origin: &str, from: RestoredFrom) {
        assert_eq!(
            std::fs::read_to_string(ws.join("a.txt")).unwrap(),
            "run\n",
            "{from:?}"
        );
        let head = git(Some(ws), &["symbolic-ref", "--short", "HEAD"])
            .await
            .unwrap();
        assert_eq!(head, "errand/abc");
        let url = git(Some(ws), &["remote", "get-url", "origin"])
            .await
            .unwrap();
        assert_eq!(url, redact_url(origin), "the agent sees the real remote");
    }

    #[tokio::test]
    async fn a_removed_workspace_comes_back_from_the_outbox_or_the_pushed_branch() {
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("seed");
        std::fs::create_dir_all(&seed).unwrap();
        std::fs::write(seed.join("a.txt"), "base\n").unwrap();
        git(Some(&seed), &["init", "-q", "-b", "main"])
            .await
            .unwrap();
        commit_all(&seed, "base").await;
        let origin = dir.path().join("origin.git");
        let o = origin.to_string_lossy().into_owned();
        git(
            None,
            &["clone", "-q", "--bare", &seed.to_string_lossy(), &o],
        )
        .await
        .unwrap();
        let run_dir = dir.path().join("run");
        let ws = run_dir.join("workspace");
        let prepared = crate::prepare(
            Some(Remote::plain(&o)),
            None,
            None,
            &run_dir,
            &ws,
            "errand/abc",
        )
        .await
        .unwrap();
        // The run's commit, in the outbox and pushed.
        std::fs::write(ws.join("a.txt"), "run\n").unwrap();
        commit_all(&ws, "run").await;
        let outbox = prepared.outbox.to_string_lossy().into_owned();
        git(Some(&ws), &["push", "-q", &outbox, "errand/abc"])
            .await
            .unwrap();
        git(Some(&ws), &["push", "-q", &o, "errand/abc"])
            .await
            .unwrap();

        std::fs::remove_dir_all(&ws).unwrap();
        let from = restore(&prepared, None).await.unwrap();
        assert_eq!(from, RestoredFrom::Outbox);
        check(&ws, &o, from).await;

        std::fs::remove_dir_all(&ws).unwrap();
        std::fs::remove_dir_all(&prepared.outbox).unwrap();
        assert!(
            restore(&prepared, None).await.is_err(),
            "nowhere to restore from"
        );
        let from = restore(&prepared, Some(Remote::plain(&o))).await.unwrap();
        assert_eq!(from, RestoredFrom::Remote);
        check(&ws, &o, from).await;

        // Not pushed and the outbox gone: the branch starts again at the base.
        std::fs::remove_dir_all(&ws).unwrap();
        std::fs::remove_dir_all(&prepared.outbox).unwrap();
        git(Some(&origin), &["branch", "-D", "errand/abc"])
            .await
            .unwrap();
        restore(&prepared, Some(Remote::plain(&o))).await.unwrap();
        assert_eq!(std::fs::read_to_string(ws.join("a.txt")).unwrap(), "base\n");
    }

    #[test]
    fn mirrors_are_listed_by_last_use_and_removed_only_when_still_unused() {
        let dir = tempfile::tempdir().unwrap();
        let m = Mirrors::new(dir.path().join("mirrors"));
        assert!(m.list().unwrap().is_empty(), "no cache yet");
        std::fs::create_dir_all(m.root().join("aa.git")).unwrap();
        std::fs::create_dir_all(m.root().join("bb.git")).unwrap();
        std::fs::create_dir_all(m.root().join("cc.tmp")).unwrap();
        let old = SystemTime::now() - Duration::from_secs(40 * 86400);
        for name in ["aa", "bb"] {
            let stamp = m.root().join(format!("{name}.used"));
            std::fs::File::create(&stamp)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        Mirrors::mark_used(&m.root().join("bb.git"));
        let listed = m.list().unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert_eq!(listed[0].last_used, old);
        assert!(listed[1].last_used > old);
        let cutoff = SystemTime::now() - Duration::from_secs(30 * 86400);
        assert!(m.remove_unused(&m.root().join("aa.git"), cutoff).unwrap());
        assert!(!m.remove_unused(&m.root().join("bb.git"), cutoff).unwrap());
        assert!(!m.root().join("aa.git").exists());
        assert!(m.root().join("bb.git").exists());
        // Held by a refresh: left alone.
        let lock = std::fs::File::create(m.root().join("bb.lock")).unwrap();
        lock.lock().unwrap();
        let later = SystemTime::now() + Duration::from_secs(60);
        assert!(!m.remove_unused(&m.root().join("bb.git"), later).unwrap());
        assert!(m.remove_unused(Path::new("/etc"), later).is_err());
    }
}

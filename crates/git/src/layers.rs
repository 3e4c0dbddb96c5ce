//! Copy-on-write workspaces: one read-only checkout per repository and
//! commit, shared by every run that starts there, and per run only what makes
//! the checkout that run's own.
//!
//! ```text
//! outbox.git ──clone, check out <commit>──▶ checkouts/<repo>/<commit>/   (once, read-only)
//!                                                 │ lower
//! run/workspace/ (upper: .git/HEAD, .git/config, .git/packed-refs, a pack)
//!                                                 ▼
//!                     overlay ──▶ the sandbox's /workspace
//! ```
//!
//! A fresh clone differs from the shared checkout only in a few files of
//! `.git`: `HEAD` (the run's branch), `packed-refs` (the remote's branches and
//! tags as the run's outbox has them, the base branch and the run's branch),
//! `config` (the base branch's upstream) and, when the remote moved since the
//! checkout was made, a pack of the objects the checkout lacks. errand writes
//! those into the run's own directory before the agent starts, so preparing a
//! workspace costs the same for any size of repository.
//!
//! With [`LayerMode::Overlay`] that directory is the overlay's upper layer: the
//! sandbox mounts the checkout under it, every write of the agent lands in the
//! run's directory, and the checkout is never written. With
//! [`LayerMode::Copy`] (a backend that cannot mount an overlay) the checkout is
//! copied into the run's directory first (`cp --reflink=auto`: a reflink where
//! the filesystem has them) and the same files written over the copy.
//!
//! The host writes only into directories it has just created and reads only
//! the outbox and the checkout, both errand's own: never the agent's `.git`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{git, redact_url, GitError, Result};

/// How a run's workspace is made from the shared checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerMode {
    /// The run's directory is an overlay's upper layer over the checkout
    /// (the sandbox mounts it: [`Layers`]).
    Overlay,
    /// The checkout is copied into the run's directory (a reflink where the
    /// filesystem supports it).
    Copy,
}

/// The shared checkouts, one per repository and commit, under errand's cache.
#[derive(Debug, Clone)]
pub struct Checkouts {
    root: PathBuf,
    mode: LayerMode,
}

/// What a sandbox needs to mount an overlay workspace: the read-only checkout
/// and two empty directories of the run's own. The run's workspace directory
/// ([`crate::Prepared::workspace`]) is the upper layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layers {
    /// The shared, read-only checkout (the overlay's lower layer).
    pub lower: PathBuf,
    /// The overlay's work directory (empty, same filesystem as the upper).
    pub work: PathBuf,
    /// An empty directory the overlay is mounted on, in the sandbox's own
    /// mount namespace only.
    pub view: PathBuf,
}

impl Layers {
    /// Whether the shared checkout is still there (retention may have removed
    /// it after the run ended).
    pub fn lower_kept(&self) -> bool {
        std::fs::symlink_metadata(self.lower.join(".git")).is_ok_and(|m| m.is_dir())
    }
}

/// Where a run starts, as the run's fresh outbox says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Start<'a> {
    /// The remote.
    pub url: &'a str,
    /// The run's outbox, fresh from the remote.
    pub outbox: &'a Path,
    /// Its branches and tags: `<id> <refname>` lines.
    pub refs: &'a str,
    /// Its default branch.
    pub default: &'a str,
    /// The branch the run starts from (a clone's local branch).
    pub base_branch: &'a str,
    /// The commit the run starts at.
    pub commit: &'a str,
}

/// A checkout's tips as its `packed-refs` lists them.
const TIPS_HEADER: &str = "# pack-refs with: sorted \n";

impl Checkouts {
    /// Checkouts kept under `root`, made into workspaces the `mode` way.
    pub fn new(root: impl Into<PathBuf>, mode: LayerMode) -> Self {
        Checkouts {
            root: root.into(),
            mode,
        }
    }

    /// The root they live under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How workspaces are made from them.
    pub fn mode(&self) -> LayerMode {
        self.mode
    }

    /// The checkout of `url` at `commit` (named by hashes: URLs may hold anything).
    fn dir_for(&self, url: &str, commit: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(redact_url(url).as_bytes());
        let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        self.root.join(name).join(commit)
    }

    /// Records that a run used `checkout` now (retention removes the unused).
    pub fn mark_used(checkout: &Path) {
        super::retention::touch(&checkout.with_extension("used"));
    }

    /// Every checkout and its last use (an empty list when there is none).
    pub fn list(&self) -> std::io::Result<Vec<(PathBuf, SystemTime)>> {
        let mut out = Vec::new();
        let repos = match std::fs::read_dir(&self.root) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for repo in repos {
            let repo = repo?.path();
            if !std::fs::symlink_metadata(&repo)?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&repo)? {
                let path = entry?.path();
                let meta = std::fs::symlink_metadata(&path)?;
                if !meta.is_dir() || path.extension().is_some() {
                    continue;
                }
                let used = std::fs::metadata(path.with_extension("used"))
                    .and_then(|m| m.modified())
                    .or_else(|_| meta.modified())?;
                out.push((path, used));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes `checkout` (from [`Checkouts::list`]) if its last use is still
    /// before `cutoff`, under its lock (one being made is left alone:
    /// `false`). A run whose layer it was re-creates its workspace as a clone
    /// on its next turn.
    pub fn remove_unused(&self, checkout: &Path, cutoff: SystemTime) -> std::io::Result<bool> {
        if checkout.parent().and_then(Path::parent) != Some(self.root.as_path()) {
            return Err(std::io::Error::other(format!(
                "{} is not a checkout under {}",
                checkout.display(),
                self.root.display()
            )));
        }
        super::retention::remove_if_unused(checkout, &checkout.with_extension("used"), cutoff)
    }

    /// The shared checkout of `url` at `commit`, made from `outbox` (the
    /// run's, fresh from the remote) the first time: one maker at a time.
    async fn checkout(&self, url: &str, outbox: &Path, commit: &str) -> Result<PathBuf> {
        let dir = self.dir_for(url, commit);
        if dir.join(".git").is_dir() {
            Self::mark_used(&dir);
            return Ok(dir);
        }
        let parent = dir.parent().unwrap_or(&self.root).to_path_buf();
        let io = |what: &str, e: std::io::Error| GitError::Command {
            args: "checkout".into(),
            detail: format!("cannot {what}: {e}"),
        };
        std::fs::create_dir_all(&parent).map_err(|e| io("create the checkouts' directory", e))?;
        let lock_path = dir.with_extension("lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| io("create its lock", e))?;
        let _held = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| io("wait for its lock", std::io::Error::other(e)))?
            .map_err(|e| io("lock it", e))?;
        if dir.join(".git").is_dir() {
            Self::mark_used(&dir);
            return Ok(dir);
        }
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        let t = tmp.to_string_lossy().into_owned();
        git(
            None,
            &[
                "clone",
                "--quiet",
                "--no-hardlinks",
                "--no-checkout",
                &outbox.to_string_lossy(),
                &t,
            ],
        )
        .await?;
        let at = Some(tmp.as_path());
        git(at, &["checkout", "--quiet", "--detach", commit]).await?;
        // No local branch and no symbolic remote HEAD in the shared checkout:
        // each run's own refs are written over it (see the module's note).
        let heads = git(at, &["for-each-ref", "--format=%(refname)", "refs/heads"]).await?;
        for head in heads.lines() {
            git(at, &["update-ref", "-d", head]).await?;
            if let Some(name) = head.strip_prefix("refs/heads/") {
                let _ = git(
                    at,
                    &["config", "--remove-section", &format!("branch.{name}")],
                )
                .await;
            }
        }
        let _ = git(at, &["remote", "set-head", "origin", "--delete"]).await;
        git(at, &["remote", "set-url", "origin", &redact_url(url)]).await?;
        git(at, &["config", "user.name", "errand agent"]).await?;
        git(at, &["config", "user.email", "agent@errand.invalid"]).await?;
        git(at, &["pack-refs", "--all", "--prune"]).await?;
        std::fs::rename(&tmp, &dir).map_err(|e| io("move the checkout into place", e))?;
        Self::mark_used(&dir);
        Ok(dir)
    }

    /// Makes `workspace` (which must not exist) the run's own copy-on-write
    /// checkout of `start` on a new `branch`.
    /// The overlay's [`Layers`] with [`LayerMode::Overlay`], `None` with a copy.
    pub(crate) async fn workspace(
        &self,
        start: Start<'_>,
        workspace: &Path,
        branch: &str,
    ) -> Result<Option<Layers>> {
        let Start {
            url,
            outbox,
            refs,
            default,
            base_branch,
            commit,
        } = start;
        let io = |what: String, e: std::io::Error| GitError::Command {
            args: "workspace".into(),
            detail: format!("cannot {what}: {e}"),
        };
        let checkout = self.checkout(url, outbox, commit).await?;
        std::fs::create_dir(workspace)
            .map_err(|e| io(format!("create {}", workspace.display()), e))?;
        let layers = match self.mode {
            LayerMode::Overlay => {
                let layers = Layers {
                    lower: checkout.clone(),
                    work: workspace.with_extension("work"),
                    view: workspace.with_extension("view"),
                };
                for d in [&layers.work, &layers.view] {
                    std::fs::create_dir(d).map_err(|e| io(format!("create {}", d.display()), e))?;
                }
                std::fs::create_dir(workspace.join(".git"))
                    .map_err(|e| io("create the workspace's .git".into(), e))?;
                Some(layers)
            }
            LayerMode::Copy => {
                let mut cp = errand_proc::Cmd::new("cp");
                cp.args(["-a", "--reflink=auto", "--no-target-directory"])
                    .arg(&checkout)
                    .arg(workspace)
                    .inherit_env(&["PATH"]);
                let out = cp.tokio().output().await.map_err(GitError::Spawn)?;
                if !out.status.success() {
                    return Err(GitError::Command {
                        args: "cp -a".into(),
                        detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    });
                }
                None
            }
        };
        let dot_git = workspace.join(".git");
        let write = |name: &str, text: &str| {
            std::fs::write(dot_git.join(name), text)
                .map_err(|e| io(format!("write .git/{name}"), e))
        };
        // The refs a clone of the outbox on `base_branch` would have, laid
        // out as a clone lays them out: the remote's branches and tags packed,
        // the local branches loose; then the run's branch.
        let mut packed = BTreeMap::new();
        let mut loose = vec![(format!("refs/heads/{branch}"), commit.to_string())];
        let mut tips = Vec::new();
        for line in refs.lines() {
            let Some((id, name)) = line.split_once(' ') else {
                continue;
            };
            tips.push(id);
            if let Some(head) = name.strip_prefix("refs/heads/") {
                packed.insert(format!("refs/remotes/origin/{head}"), id);
                if head == base_branch {
                    loose.push((name.to_string(), id.to_string()));
                }
            } else {
                packed.insert(name.to_string(), id);
            }
        }
        loose.push((
            "refs/remotes/origin/HEAD".to_string(),
            format!("ref: refs/remotes/origin/{default}"),
        ));
        let mut text = String::from(TIPS_HEADER);
        for (name, id) in &packed {
            text.push_str(&format!("{id} {name}\n"));
        }
        write("packed-refs", &text)?;
        write("HEAD", &format!("ref: refs/heads/{branch}\n"))?;
        for (name, value) in &loose {
            if let Some(dir) = Path::new(name).parent() {
                std::fs::create_dir_all(dot_git.join(dir))
                    .map_err(|e| io(format!("create .git/{}", dir.display()), e))?;
            }
            write(name, &format!("{value}\n"))?;
        }
        let config = std::fs::read_to_string(checkout.join(".git/config"))
            .map_err(|e| io("read the checkout's .git/config".into(), e))?;
        write(
            "config",
            &format!(
                "{config}[branch \"{base_branch}\"]\n\tremote = origin\n\tmerge = refs/heads/{base_branch}\n"
            ),
        )?;
        // Objects the remote gained since the checkout was made.
        let known = std::fs::read_to_string(checkout.join(".git/packed-refs"))
            .map_err(|e| io("read the checkout's .git/packed-refs".into(), e))?;
        let known: std::collections::HashSet<&str> = known
            .lines()
            .filter_map(|l| l.split(' ').next())
            .filter(|id| id.len() >= 40 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        let new: Vec<&str> = tips
            .iter()
            .copied()
            .filter(|t| !known.contains(t))
            .collect();
        if !new.is_empty() {
            let mut revs = new.join("\n");
            revs.push_str("\n--not\n");
            for id in &known {
                revs.push_str(id);
                revs.push('\n');
            }
            let pack_dir = dot_git.join("objects/pack");
            std::fs::create_dir_all(&pack_dir)
                .map_err(|e| io("create .git/objects/pack".into(), e))?;
            pack_objects(outbox, &revs, &pack_dir.join("pack")).await?;
        }
        Ok(layers)
    }
}

/// `git pack-objects --revs` in `repo` of what `revs` (stdin's rev-list
/// arguments) names, written as `<base>-<hash>.{pack,idx}`.
async fn pack_objects(repo: &Path, revs: &str, base: &Path) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = super::host_git();
    cmd.arg("-C")
        .arg(repo)
        .args(["pack-objects", "--quiet", "--revs"])
        .arg(base)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.tokio().spawn().map_err(GitError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(revs.as_bytes())
            .await
            .map_err(GitError::Spawn)?;
    }
    let out = child.wait_with_output().await.map_err(GitError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(GitError::Command {
            args: "pack-objects".into(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{collect, export_script, import, prepare, receive, Prepared, Remote};

    async fn run(dir: &Path, args: &[&str]) -> String {
        let mut all = vec!["-c", "user.name=t", "-c", "user.email=t@t"];
        all.extend_from_slice(args);
        git(Some(dir), &all).await.unwrap()
    }

    /// A remote with `main`, a `feature` branch and an annotated tag; its path.
    async fn remote(root: &Path) -> PathBuf {
        let seed = root.join("seed");
        std::fs::create_dir_all(seed.join("src")).unwrap();
        std::fs::write(seed.join("README.md"), "# sample\n").unwrap();
        std::fs::write(seed.join("src/lib.rs"), "fn a() {}\n").unwrap();
        git(None, &["init", "-q", "-b", "main", &seed.to_string_lossy()])
            .await
            .unwrap();
        run(&seed, &["add", "-A"]).await;
        run(&seed, &["commit", "-qm", "init"]).await;
        run(&seed, &["tag", "-a", "v1", "-m", "one"]).await;
        run(&seed, &["checkout", "-qb", "feature"]).await;
        std::fs::write(seed.join("feature.txt"), "f\n").unwrap();
        run(&seed, &["add", "-A"]).await;
        run(&seed, &["commit", "-qm", "feature"]).await;
        run(&seed, &["checkout", "-q", "main"]).await;
        let bare = root.join("origin.git");
        git(
            None,
            &[
                "clone",
                "-q",
                "--bare",
                &seed.to_string_lossy(),
                &bare.to_string_lossy(),
            ],
        )
        .await
        .unwrap();
        bare
    }

    async fn layered(
        root: &Path,
        url: &str,
        checkouts: &Checkouts,
        name: &str,
        at: Option<&str>,
    ) -> Prepared {
        let remote = Remote {
            url,
            auth: None,
            mirrors: None,
            checkouts: Some(checkouts),
        };
        let run_dir = root.join(name);
        std::fs::create_dir_all(&run_dir).unwrap();
        prepare(
            Some(remote),
            None,
            at,
            &run_dir,
            &run_dir.join("workspace"),
            &format!("errand/{name}"),
        )
        .await
        .unwrap()
    }

    /// `git` in a workspace, as the agent would run it (the host never does
    /// outside tests).
    async fn inside(p: &Prepared, args: &[&str]) -> String {
        run(&p.workspace, args).await
    }

    #[tokio::test]
    async fn runs_share_one_checkout_and_each_gets_a_clones_own_state() {
        let tmp = tempfile::tempdir().unwrap();
        let bare = remote(tmp.path()).await;
        let url = bare.to_string_lossy().into_owned();
        let checkouts = Checkouts::new(tmp.path().join("checkouts"), LayerMode::Copy);
        let a = layered(tmp.path(), &url, &checkouts, "a", None).await;
        let b = layered(tmp.path(), &url, &checkouts, "b", None).await;
        assert!(a.layers.is_none() && b.layers.is_none());
        assert_eq!(checkouts.list().unwrap().len(), 1, "one checkout for both");
        let main = run(&bare, &["rev-parse", "main"]).await;
        let feature = run(&bare, &["rev-parse", "feature"]).await;
        assert_eq!(a.base_commit, main);
        assert_eq!(a.base_branch, "main");
        for (p, branch) in [(&a, "errand/a"), (&b, "errand/b")] {
            assert_eq!(
                inside(p, &["symbolic-ref", "HEAD"]).await,
                format!("refs/heads/{branch}")
            );
            assert_eq!(inside(p, &["rev-parse", "HEAD"]).await, main);
            assert_eq!(inside(p, &["status", "--porcelain"]).await, "");
            assert_eq!(inside(p, &["rev-parse", "origin/feature"]).await, feature);
            assert_eq!(inside(p, &["rev-parse", "origin/HEAD"]).await, main);
            assert_eq!(inside(p, &["rev-parse", "v1^{commit}"]).await, main);
            assert_eq!(
                inside(p, &["rev-parse", "--abbrev-ref", "main@{upstream}"]).await,
                "origin/main"
            );
            assert_eq!(
                inside(p, &["config", "--local", "user.name"]).await,
                "errand agent"
            );
            assert_eq!(inside(p, &["remote", "get-url", "origin"]).await, url);
            inside(p, &["fsck", "--no-progress"]).await;
        }
        // What one run commits is its own, and leaves through the outbox as always.
        std::fs::write(a.workspace.join("README.md"), "# changed\n").unwrap();
        inside(&a, &["commit", "-qam", "change"]).await;
        assert_eq!(inside(&b, &["rev-parse", "HEAD"]).await, main);
        assert_eq!(
            std::fs::read_to_string(b.workspace.join("README.md")).unwrap(),
            "# sample\n"
        );
        let mut sh = errand_proc::Cmd::new("sh");
        sh.arg("-c")
            .arg(export_script(&a))
            .current_dir(&a.workspace)
            .inherit_all_env();
        let out = sh.tokio().output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let spool = a.outbox.with_extension("bundle");
        let r = receive(&out.stdout[..], &spool, crate::MAX_EXPORT_BYTES)
            .await
            .unwrap();
        import(&a, &r, &spool).await.unwrap();
        assert_eq!(collect(&a).await.unwrap().commits, 1);
    }

    #[tokio::test]
    async fn a_remote_that_moved_since_the_checkout_is_whole_in_the_next_workspace() {
        let tmp = tempfile::tempdir().unwrap();
        let bare = remote(tmp.path()).await;
        let url = bare.to_string_lossy().into_owned();
        let checkouts = Checkouts::new(tmp.path().join("checkouts"), LayerMode::Copy);
        let a = layered(tmp.path(), &url, &checkouts, "a", None).await;
        // The remote moves on: a new commit on feature and a new tag.
        let clone = tmp.path().join("pusher");
        git(None, &["clone", "-q", &url, &clone.to_string_lossy()])
            .await
            .unwrap();
        run(&clone, &["checkout", "-q", "feature"]).await;
        std::fs::write(clone.join("more.txt"), "more\n").unwrap();
        run(&clone, &["add", "-A"]).await;
        run(&clone, &["commit", "-qm", "more"]).await;
        run(&clone, &["tag", "v2"]).await;
        run(&clone, &["push", "-q", "origin", "feature", "v2"]).await;
        let moved = run(&bare, &["rev-parse", "feature"]).await;
        // A run pinned to the old commit reuses the checkout...
        let b = layered(tmp.path(), &url, &checkouts, "b", Some(&a.base_commit)).await;
        assert_eq!(checkouts.list().unwrap().len(), 1);
        // ...and still has everything a fresh clone would.
        assert_eq!(inside(&b, &["rev-parse", "origin/feature"]).await, moved);
        assert_eq!(inside(&b, &["rev-parse", "v2"]).await, moved);
        inside(&b, &["cat-file", "-e", &format!("{moved}:more.txt")]).await;
        inside(&b, &["fsck", "--no-progress"]).await;
        // A run at the new tip gets a checkout of its own commit.
        let c = layered(tmp.path(), &url, &checkouts, "c", Some(&moved)).await;
        assert_eq!(checkouts.list().unwrap().len(), 2);
        assert!(c.workspace.join("more.txt").is_file());
        assert_eq!(inside(&c, &["status", "--porcelain"]).await, "");
    }

    #[tokio::test]
    async fn an_unused_checkout_is_removed_and_a_used_one_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let bare = remote(tmp.path()).await;
        let url = bare.to_string_lossy().into_owned();
        let checkouts = Checkouts::new(tmp.path().join("checkouts"), LayerMode::Overlay);
        layered(tmp.path(), &url, &checkouts, "a", None).await;
        let listed = checkouts.list().unwrap();
        assert_eq!(listed.len(), 1);
        let (path, used) = listed[0].clone();
        // Used after the cutoff: kept.
        let earlier = used - std::time::Duration::from_secs(60);
        assert!(!checkouts.remove_unused(&path, earlier).unwrap());
        assert!(path.is_dir());
        // Something that is not a checkout under the root is refused.
        assert!(checkouts
            .remove_unused(tmp.path(), SystemTime::now())
            .is_err());
        // Unused since before the cutoff: removed.
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        assert!(checkouts.remove_unused(&path, later).unwrap());
        assert!(!path.exists());
        assert!(checkouts.list().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_overlay_layer_holds_only_the_runs_own_files() {
        let tmp = tempfile::tempdir().unwrap();
        let bare = remote(tmp.path()).await;
        let url = bare.to_string_lossy().into_owned();
        let checkouts = Checkouts::new(tmp.path().join("checkouts"), LayerMode::Overlay);
        let a = layered(tmp.path(), &url, &checkouts, "a", None).await;
        let layers = a.layers.clone().expect("an overlay's layers");
        assert!(layers.lower_kept());
        assert!(layers.work.is_dir() && layers.view.is_dir());
        let mut own: Vec<String> = Vec::new();
        let mut stack = vec![a.workspace.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    own.push(
                        e.path()
                            .strip_prefix(&a.workspace)
                            .unwrap()
                            .display()
                            .to_string(),
                    );
                }
            }
        }
        own.sort();
        assert_eq!(
            own,
            [
                ".git/HEAD",
                ".git/config",
                ".git/packed-refs",
                ".git/refs/heads/errand/a",
                ".git/refs/heads/main",
                ".git/refs/remotes/origin/HEAD"
            ]
        );
        // A commit that is not in the outbox is refused before anything is made.
        let remote = Remote {
            url: &url,
            auth: None,
            mirrors: None,
            checkouts: Some(&checkouts),
        };
        let d = tmp.path().join("d");
        std::fs::create_dir_all(&d).unwrap();
        let err = prepare(
            Some(remote),
            None,
            Some("0123456789abcdef0123456789abcdef01234567"),
            &d,
            &d.join("workspace"),
            "errand/d",
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("0123456789abcdef"), "{err}");
        assert!(!d.join("workspace").exists());
        // So is a base branch the remote does not have, naming those it has.
        let e = tmp.path().join("e");
        std::fs::create_dir_all(&e).unwrap();
        let err = prepare(
            Some(remote),
            Some("nope"),
            None,
            &e,
            &e.join("workspace"),
            "errand/e",
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, GitError::BaseNotFound { available, .. } if available == "feature, main"),
            "{err}"
        );
        // A run on another branch starts at its tip, with it as the local branch.
        let f = layered(tmp.path(), &url, &checkouts, "f", None).await;
        assert_eq!(f.base_branch, "main");
        let g_dir = tmp.path().join("g");
        std::fs::create_dir_all(&g_dir).unwrap();
        let g = prepare(
            Some(remote),
            Some("feature"),
            None,
            &g_dir,
            &g_dir.join("workspace"),
            "errand/g",
        )
        .await
        .unwrap();
        assert_eq!(g.base_branch, "feature");
        assert_eq!(g.base_commit, run(&bare, &["rev-parse", "feature"]).await);
        assert!(g_dir.join("workspace/.git/refs/heads/feature").is_file());
    }
}

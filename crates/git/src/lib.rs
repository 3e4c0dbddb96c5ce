//! Git, done by errand on the host, never by the agent.
//!
//! The layout of a run with a repository:
//!
//! ```text
//! source (path / file:// / https)  ──clone──▶  outbox.git (bare, host-only)
//!                                                  │ clone          ▲ fetch run branch
//!                                                  ▼                │
//!                                            workspace/ (the sandbox's /workspace)
//! outbox.git ──push run branch──▶ source   (only with --push, only from the host)
//! ```
//!
//! The agent works in `workspace/` and may commit there. errand never opens
//! that untrusted repository, or any path in it, as a repository on the host:
//! its `.git/config` could name hooks, filters or an fsmonitor program, and its
//! alternates, refs and `commondir` could point at any host file or repository.
//! The run's commits leave the sandbox as a bundle printed by a script that
//! runs *inside* it ([`export`]); the host checks them into the outbox, which
//! it alone controls, and reads and pushes only from there. Remote
//! credentials (the user's own git credentials, later a GitHub App token) are
//! used only by these host-side commands, so none ever enters the sandbox.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use errand_core::RepoSource;

pub mod export;
mod layers;
pub mod pktline;
mod retention;
pub use export::{export_script, import, receive, Received, MAX_EXPORT_BYTES};
pub use layers::{Checkouts, LayerMode, Layers};
pub use retention::{restore, MirrorUse, RestoredFrom};

/// What went wrong in errand's git work; each message says which repository
/// or command, and why.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The repository (or the commit a run was pinned to) could not be cloned.
    #[error("repository '{repo}' could not be cloned: {detail}")]
    Clone {
        /// The repository as the user named it (credentials removed).
        repo: String,
        /// git's own explanation.
        detail: String,
    },
    /// The requested base branch is not in the repository.
    #[error("base branch '{branch}' does not exist in '{repo}' (branches: {available})")]
    BaseNotFound {
        /// The repository.
        repo: String,
        /// The branch asked for.
        branch: String,
        /// The branches it has, comma-separated.
        available: String,
    },
    /// The repository has no branch at all.
    #[error("repository '{0}' has no commits yet, so there is no base branch to start from")]
    EmptyRepo(String),
    /// Pushing the run's branch failed.
    #[error("push of {branch} to '{repo}' failed: {detail}")]
    Push {
        /// The remote.
        repo: String,
        /// The run's branch.
        branch: String,
        /// git's own explanation.
        detail: String,
    },
    /// A git command exited with an error.
    #[error("git {args} failed: {detail}")]
    Command {
        /// Its arguments.
        args: String,
        /// What it printed on stderr.
        detail: String,
    },
    /// The run's commits, as the sandbox handed them out, were refused.
    #[error("the run's commits were refused: {0}")]
    Export(String),
    /// git could not be started at all.
    #[error("git could not be started (is git installed?): {0}")]
    Spawn(#[source] std::io::Error),
}

/// A result whose error is a [`GitError`].
pub type Result<T> = std::result::Result<T, GitError>;

/// Configuration that host-side git commands run with: no hooks, no fsmonitor,
/// local file transport allowed (outbox ↔ workspace are local paths).
const SAFE_CONFIG: &[&str] = &[
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "protocol.file.allow=always",
    "-c",
    "advice.detachedHead=false",
    "-c",
    "init.defaultBranch=main",
];

/// The author errand uses for commits it makes.
pub const AUTHOR_NAME: &str = "errand";
/// The email of [`AUTHOR_NAME`].
pub const AUTHOR_EMAIL: &str = "errand@localhost";

/// A credential for host-side git commands that talk to a remote: an HTTP
/// header (e.g. `Authorization: Basic …` for a GitHub App token). It reaches git
/// through `GIT_CONFIG_*` environment variables of that one command, so it is
/// never written to any `.git/config`, and it is never printed.
#[derive(Clone)]
pub struct GitAuth {
    header: String,
}

impl GitAuth {
    /// A header line such as `Authorization: Basic dXNlcjpwYXNz`.
    pub fn header(header: impl Into<String>) -> GitAuth {
        GitAuth {
            header: header.into(),
        }
    }
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GitAuth([redacted])")
    }
}

/// What host-side git keeps of errand's environment: where programs and the
/// user's git configuration are (credential helpers, `insteadOf`), how it
/// reaches a remote (ssh agent, proxies, certificates), git's own variables,
/// the locale and the time zone; never errand's API keys or tokens. A name
/// ending in `*` is a prefix. `GIT_DIR` and `GIT_WORK_TREE` are then removed.
pub const HOST_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "TZ",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "XDG_*",
    "GIT_*",
    "SSH_AUTH_SOCK",
    "SSH_ASKPASS",
    "DISPLAY",
    "DBUS_SESSION_BUS_ADDRESS",
    "GCM_*",
    "GH_*",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "CURL_CA_BUNDLE",
    "NIX_SSL_CERT_FILE",
];

/// A host-side git command: [`HOST_ENV`] without `GIT_DIR` and
/// `GIT_WORK_TREE` (a repository named by errand's own environment is never
/// the one meant), no prompts, and [`SAFE_CONFIG`].
fn host_git() -> errand_proc::Cmd {
    let mut cmd = errand_proc::Cmd::new("git");
    cmd.inherit_env(HOST_ENV)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args(SAFE_CONFIG);
    cmd
}

async fn git(dir: Option<&Path>, args: &[&str]) -> Result<String> {
    git_with(dir, args, None).await
}

/// An `http(s)://user:password@host/…` URL without its credential, and the
/// credential as a Basic header: a secret in a URL would otherwise sit on git's
/// command line (seen by every user in `ps`) and in its error messages.
fn credentials_of(url: &str) -> Option<(String, GitAuth)> {
    use base64::Engine;
    let (scheme, rest) = url.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (userinfo, host) = rest[..end].rsplit_once('@')?;
    let mut userinfo = percent_decode(userinfo);
    if !userinfo.contains(':') {
        userinfo.push(':');
    }
    let basic = base64::engine::general_purpose::STANDARD.encode(userinfo.as_bytes());
    Some((
        format!("{scheme}://{host}{}", &rest[end..]),
        GitAuth::header(format!("Authorization: Basic {basic}")),
    ))
}

/// `%XX` escapes decoded (invalid ones kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn git_with(dir: Option<&Path>, args: &[&str], auth: Option<&GitAuth>) -> Result<String> {
    // A credential in a URL argument moves to the environment of this one command.
    let mut url_auth = None;
    let owned: Vec<String> = args
        .iter()
        .map(|a| match credentials_of(a) {
            Some((clean, found)) => {
                url_auth.get_or_insert(found);
                clean
            }
            None => a.to_string(),
        })
        .collect();
    let args: Vec<&str> = owned.iter().map(String::as_str).collect();
    let args = &args[..];
    let auth = auth.or(url_auth.as_ref());
    let mut cmd = host_git();
    if let Some(a) = auth {
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", &a.header);
    }
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .env("GIT_AUTHOR_NAME", AUTHOR_NAME)
        .env("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL)
        .env("GIT_COMMITTER_NAME", AUTHOR_NAME)
        .env("GIT_COMMITTER_EMAIL", AUTHOR_EMAIL);
    let out = cmd.tokio().output().await.map_err(GitError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    } else {
        Err(GitError::Command {
            args: args.join(" "),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// What [`prepare`] set up (kept beside the run so follow-ups reuse it).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Prepared {
    /// The bare repository only errand touches: cloned from the remote, it
    /// receives the run's commits and is what errand diffs and pushes.
    pub outbox: PathBuf,
    /// The agent's checkout (the sandbox's `/workspace`), cloned from the outbox.
    pub workspace: PathBuf,
    /// The branch the run started from.
    pub base_branch: String,
    /// The commit the run started from.
    pub base_commit: String,
    /// The run's own branch, checked out in the workspace.
    pub branch: String,
    /// Where to push (`None` for a run without a repository).
    pub remote: Option<String>,
    /// With an overlay workspace, what the sandbox mounts: `workspace` is
    /// then only the run's own layer over a shared checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Layers>,
}

/// Resolves what the user typed after `--repo` into something git can clone:
/// local paths are made absolute and checked, URLs pass through.
pub fn resolve_source(source: &RepoSource, cwd: &Path) -> Result<String> {
    match source {
        RepoSource::Url(u) => Ok(u.clone()),
        RepoSource::Github(full) => Err(GitError::Clone {
            repo: full.clone(),
            detail:
                "a GitHub repository is cloned through errand's GitHub App: configure [github] \
                     (app_id, private_key_file) in errand's config"
                    .into(),
        }),
        RepoSource::Local(p) => {
            let path = cwd.join(p);
            let path = path.canonicalize().map_err(|e| GitError::Clone {
                repo: p.clone(),
                detail: format!("{e} (no such directory)"),
            })?;
            Ok(path.to_string_lossy().into_owned())
        }
    }
}

/// Where a run's code comes from: the resolved remote, the credential host-side
/// git uses for it, and the cache of mirrors to start from.
#[derive(Debug, Clone, Copy)]
pub struct Remote<'a> {
    /// The remote as git takes it (a URL or an absolute path).
    pub url: &'a str,
    /// The credential host-side git sends to it, if any.
    pub auth: Option<&'a GitAuth>,
    /// The mirror cache to clone through, if any.
    pub mirrors: Option<&'a Mirrors>,
    /// The shared checkouts to make the workspace from (copy-on-write), if
    /// any; without, the workspace is a clone of its own.
    pub checkouts: Option<&'a Checkouts>,
}

impl<'a> Remote<'a> {
    /// A remote cloned directly, without a credential or a mirror.
    pub fn plain(url: &'a str) -> Self {
        Remote {
            url,
            auth: None,
            mirrors: None,
            checkouts: None,
        }
    }
}

/// Bare mirrors of the repositories errand has cloned, one per remote URL,
/// kept under errand's cache. A run's outbox is copied from the mirror after an
/// incremental fetch, so a repository crosses the network once, not once per
/// run. Only network remotes are mirrored (a local path is already as close as
/// a mirror). Mirrors live on the host and are never mounted into a sandbox.
#[derive(Debug, Clone)]
pub struct Mirrors {
    root: PathBuf,
}

impl Mirrors {
    /// Mirrors kept under `root` (made when first needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Mirrors { root: root.into() }
    }

    /// Whether `url` is worth mirroring (it is reached over a network).
    pub fn wants(url: &str) -> bool {
        let lower = url.to_ascii_lowercase();
        ["http://", "https://", "ssh://", "git://", "git@"]
            .iter()
            .any(|p| lower.starts_with(p))
    }

    /// The mirror of `url` on disk (named by a hash: URLs may hold anything).
    pub fn path_for(&self, url: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(redact_url(url).as_bytes());
        let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        self.root.join(format!("{name}.git"))
    }

    /// Brings the mirror of `url` up to date (cloning it the first time) and
    /// returns its path. One refresh per mirror at a time (a file lock).
    pub async fn refresh(&self, url: &str, auth: Option<&GitAuth>) -> Result<PathBuf> {
        let path = self.path_for(url);
        std::fs::create_dir_all(&self.root).map_err(|e| GitError::Command {
            args: "mirror".into(),
            detail: format!("cannot create {}: {e}", self.root.display()),
        })?;
        let lock_path = path.with_extension("lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| GitError::Command {
            args: "mirror".into(),
            detail: format!("cannot create {}: {e}", lock_path.display()),
        })?;
        let _held = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| GitError::Command {
                args: "mirror".into(),
                detail: format!("the lock task failed: {e}"),
            })?
            .map_err(|e| GitError::Command {
                args: "mirror".into(),
                detail: format!("cannot lock {}: {e}", lock_path.display()),
            })?;
        let clone_err = |e: GitError| GitError::Clone {
            repo: redact_url(url),
            detail: detail(e),
        };
        if path.join("HEAD").is_file() {
            // Asked alongside the fetch, so the warm path pays no extra round trip.
            let fetch = [
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ];
            let (fetched, head) = tokio::join!(
                git_with(Some(&path), &fetch, auth),
                remote_head_ref(&path, url, auth)
            );
            match fetched {
                Ok(_) => {
                    if let Some(head) = head {
                        point_head_at(&path, &head).await;
                    }
                    Self::mark_used(&path);
                    return Ok(path);
                }
                // A broken mirror is cloned afresh below; if the remote itself
                // fails, that clone says why.
                Err(e) => {
                    tracing::warn!(
                        "refreshing the mirror of {} failed ({e}); cloning it again",
                        redact_url(url)
                    );
                }
            }
        }
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        git_with(
            None,
            &["clone", "--mirror", "--quiet", url, &tmp.to_string_lossy()],
            auth,
        )
        .await
        .map_err(clone_err)?;
        // No automatic gc: outboxes copied from the mirror never depend on it,
        // but a prune mid-copy would be a needless risk.
        git(Some(&tmp), &["config", "gc.auto", "0"]).await?;
        git(
            Some(&tmp),
            &["remote", "set-url", "origin", &redact_url(url)],
        )
        .await?;
        let _ = std::fs::remove_dir_all(&path);
        std::fs::rename(&tmp, &path).map_err(|e| GitError::Command {
            args: "mirror".into(),
            detail: format!("cannot move the new mirror into place: {e}"),
        })?;
        Self::mark_used(&path);
        Ok(path)
    }
}

/// The branch the remote's HEAD points at (`refs/heads/…`). A mirror follows
/// it ([`point_head_at`]), so a run without `--base` starts from the remote's
/// current default branch even after it changed: fetching never moves HEAD.
/// `None` when the remote does not say or cannot be asked.
async fn remote_head_ref(mirror: &Path, url: &str, auth: Option<&GitAuth>) -> Option<String> {
    let said = match git_with(Some(mirror), &["ls-remote", "--symref", url, "HEAD"], auth).await {
        Ok(out) => out,
        Err(e) => {
            tracing::warn!(
                "asking {} for its default branch failed: {e}",
                redact_url(url)
            );
            return None;
        }
    };
    said.lines().find_map(|l| {
        l.strip_prefix("ref: ")
            .and_then(|r| r.strip_suffix("\tHEAD"))
            .filter(|r| r.starts_with("refs/heads/"))
            .map(str::to_string)
    })
}

/// Points the mirror's HEAD at `head` if it is not there already.
async fn point_head_at(mirror: &Path, head: &str) {
    let current = git(Some(mirror), &["symbolic-ref", "HEAD"]).await.ok();
    if current.as_deref() != Some(head) {
        if let Err(e) = git(Some(mirror), &["symbolic-ref", "HEAD", head]).await {
            tracing::warn!("moving the mirror's HEAD to {head} failed: {e}");
        }
    }
}

/// Clones `remote` (already resolved) through a fresh outbox into `workspace`,
/// or, with no remote, starts an empty project; then creates `branch` from the base.
///
/// With `at_commit`, the branch starts at that commit (which must be on the base
/// branch's history in the remote) rather than at the base branch's tip, so that
/// runs started together compare like with like.
pub async fn prepare(
    remote: Option<Remote<'_>>,
    base: Option<&str>,
    at_commit: Option<&str>,
    run_dir: &Path,
    workspace: &Path,
    branch: &str,
) -> Result<Prepared> {
    let outbox = run_dir.join("outbox.git");
    if let Some(
        r @ Remote {
            checkouts: Some(checkouts),
            ..
        },
    ) = remote
    {
        return prepare_layered(r, checkouts, base, at_commit, &outbox, workspace, branch).await;
    }
    let base_branch = match remote {
        Some(r) => clone_remote(r, base, &outbox, workspace).await?,
        None => start_empty(base, &outbox, workspace).await?,
    };
    let remote_url = remote.map(|r| r.url);
    start_branch(workspace, branch, at_commit, remote_url).await?;
    let base_commit = git(Some(workspace), &["rev-parse", "HEAD"]).await?;
    Ok(Prepared {
        outbox,
        workspace: workspace.to_path_buf(),
        base_branch,
        base_commit,
        branch: branch.to_string(),
        remote: remote_url.map(str::to_string),
        layers: None,
    })
}

/// [`prepare`] through a shared checkout ([`Checkouts`]): the outbox as
/// always, then the workspace as the run's layer over the checkout of the
/// starting commit.
async fn prepare_layered(
    remote: Remote<'_>,
    checkouts: &Checkouts,
    base: Option<&str>,
    at_commit: Option<&str>,
    outbox: &Path,
    workspace: &Path,
    branch: &str,
) -> Result<Prepared> {
    let url = remote.url;
    clone_outbox(remote, outbox).await?;
    // One look at the fresh outbox (errand's own) answers what the clone path
    // asks git three times: its branches and tags, its default branch.
    let refs = git(
        Some(outbox),
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads",
            "refs/tags",
        ],
    )
    .await?;
    let default = std::fs::read_to_string(outbox.join("HEAD"))
        .ok()
        .and_then(|h| {
            h.trim()
                .strip_prefix("ref: refs/heads/")
                .map(str::to_string)
        })
        .unwrap_or_default();
    let heads: Vec<(&str, &str)> = refs
        .lines()
        .filter_map(|l| l.split_once(" refs/heads/"))
        .collect();
    if heads.is_empty() {
        return Err(GitError::EmptyRepo(url.to_string()));
    }
    let base_branch = match base {
        Some(b) if heads.iter().any(|(_, h)| *h == b) => b.to_string(),
        Some(b) => {
            return Err(GitError::BaseNotFound {
                repo: url.to_string(),
                branch: b.to_string(),
                available: heads.iter().map(|(_, h)| *h).collect::<Vec<_>>().join(", "),
            })
        }
        None => default.clone(),
    };
    let tip = heads
        .iter()
        .find(|(_, h)| *h == base_branch)
        .map(|(id, _)| id.to_string());
    let commit = match (at_commit, tip) {
        (None, Some(tip)) => tip,
        (start, _) => {
            let start = start.unwrap_or(&base_branch);
            git(
                Some(outbox),
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{start}^{{commit}}"),
                ],
            )
            .await
            .map_err(|e| GitError::Clone {
                repo: redact_url(url),
                detail: format!("commit {start}: {}", detail(e)),
            })?
        }
    };
    let layers = checkouts
        .workspace(
            layers::Start {
                url,
                outbox,
                refs: &refs,
                default: &default,
                base_branch: &base_branch,
                commit: &commit,
            },
            workspace,
            branch,
        )
        .await?;
    Ok(Prepared {
        outbox: outbox.to_path_buf(),
        workspace: workspace.to_path_buf(),
        base_branch,
        base_commit: commit,
        branch: branch.to_string(),
        remote: Some(url.to_string()),
        layers,
    })
}

/// Clones `remote` into a fresh bare `outbox` (from its mirror when there is
/// one), then the base branch from the outbox into `workspace`; the base branch.
async fn clone_remote(
    remote: Remote<'_>,
    base: Option<&str>,
    outbox: &Path,
    workspace: &Path,
) -> Result<String> {
    let url = remote.url;
    clone_outbox(remote, outbox).await?;
    let base_branch = base_branch_of(outbox, url, base).await?;
    git(
        None,
        &[
            "clone",
            "--quiet",
            "--no-hardlinks",
            "--branch",
            &base_branch,
            &outbox.to_string_lossy(),
            &workspace.to_string_lossy(),
        ],
    )
    .await?;
    // The agent sees the real remote's address, not the host-only outbox path.
    git(
        Some(workspace),
        &["remote", "set-url", "origin", &redact_url(url)],
    )
    .await?;
    Ok(base_branch)
}

/// `git clone --bare` of `remote` into `outbox`: from the mirror (a local copy
/// of its packs) when there is one, else from the remote with its credential.
async fn clone_outbox(remote: Remote<'_>, outbox: &Path) -> Result<()> {
    let Remote {
        url, auth, mirrors, ..
    } = remote;
    let clone_err = |e: GitError| GitError::Clone {
        repo: url.to_string(),
        detail: detail(e),
    };
    if let Some(m) = mirrors.filter(|_| Mirrors::wants(url)) {
        let mirror = m.refresh(url, auth).await?;
        return link_outbox(&mirror, outbox).await.map_err(clone_err);
    }
    git_with(
        None,
        &[
            "clone",
            "--bare",
            "--quiet",
            "--no-hardlinks",
            url,
            &outbox.to_string_lossy(),
        ],
        auth,
    )
    .await
    .map_err(clone_err)?;
    Ok(())
}

/// A bare `outbox` made from errand's own `mirror` by hand, as `git clone
/// --bare --local` would make it but without its ref negotiation (a third of
/// the time for a large repository): the mirror's refs first, then its
/// objects linked (packs and loose objects are never rewritten in a mirror,
/// which is never gc'd: a fetch adds objects before it moves refs, so every
/// ref read has its objects; copied where a link is refused).
async fn link_outbox(mirror: &Path, outbox: &Path) -> Result<()> {
    let refs = git(
        Some(mirror),
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads",
            "refs/tags",
        ],
    )
    .await?;
    let head = std::fs::read_to_string(mirror.join("HEAD")).unwrap_or_default();
    let (mirror, outbox) = (mirror.to_path_buf(), outbox.to_path_buf());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        for d in ["objects/pack", "objects/info", "refs/heads", "refs/tags"] {
            std::fs::create_dir_all(outbox.join(d))?;
        }
        std::fs::write(outbox.join("HEAD"), head)?;
        std::fs::write(
            outbox.join("config"),
            "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n",
        )?;
        let link = |from: &Path, to: &Path| {
            std::fs::hard_link(from, to).or_else(|_| std::fs::copy(from, to).map(|_| ()))
        };
        for entry in std::fs::read_dir(mirror.join("objects"))? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_fanout = name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !(is_fanout || name == "pack") || !entry.file_type()?.is_dir() {
                continue;
            }
            let to = outbox.join("objects").join(&*name);
            std::fs::create_dir_all(&to)?;
            for file in std::fs::read_dir(entry.path())? {
                let file = file?;
                if file.file_type()?.is_file() {
                    link(&file.path(), &to.join(file.file_name()))?;
                }
            }
        }
        let mut packed = String::from("# pack-refs with: sorted \n");
        let mut lines: Vec<&str> = refs.lines().collect();
        lines.sort_by_key(|l| l.split_once(' ').map(|(_, r)| r));
        for l in lines {
            packed.push_str(l);
            packed.push('\n');
        }
        std::fs::write(outbox.join("packed-refs"), packed)
    })
    .await
    .map_err(|e| GitError::Command {
        args: "outbox".into(),
        detail: format!("the copy task failed: {e}"),
    })?
    .map_err(|e| GitError::Command {
        args: "outbox".into(),
        detail: format!("cannot make the outbox from the mirror: {e}"),
    })
}

/// The branch a run of `url` starts from: `base` if the outbox has it, else
/// the remote's default branch; an error for an empty repository or a base
/// it does not have.
async fn base_branch_of(outbox: &Path, url: &str, base: Option<&str>) -> Result<String> {
    let heads = git(
        Some(outbox),
        &["for-each-ref", "--format=%(refname:short)", "refs/heads"],
    )
    .await?;
    if heads.is_empty() {
        return Err(GitError::EmptyRepo(url.to_string()));
    }
    match base {
        Some(b) if heads.lines().any(|h| h == b) => Ok(b.to_string()),
        Some(b) => Err(GitError::BaseNotFound {
            repo: url.to_string(),
            branch: b.to_string(),
            available: heads.lines().collect::<Vec<_>>().join(", "),
        }),
        None => git(Some(outbox), &["symbolic-ref", "--short", "HEAD"]).await,
    }
}

/// A new project without a remote: the first commit is made in the outbox,
/// so the base every later check starts from is errand's own, and cloned like
/// any repository. The base branch (`base`, or `main`).
async fn start_empty(base: Option<&str>, outbox: &Path, workspace: &Path) -> Result<String> {
    let base_branch = base.unwrap_or("main").to_string();
    git(
        None,
        &["init", "--quiet", "--bare", &outbox.to_string_lossy()],
    )
    .await?;
    let empty_tree = git(
        Some(outbox),
        &["hash-object", "-w", "-t", "tree", "/dev/null"],
    )
    .await?;
    let first = git(
        Some(outbox),
        &["commit-tree", &empty_tree, "-m", "Initial commit"],
    )
    .await?;
    let head = format!("refs/heads/{base_branch}");
    git(Some(outbox), &["update-ref", &head, &first]).await?;
    git(Some(outbox), &["symbolic-ref", "HEAD", &head]).await?;
    git(
        None,
        &[
            "clone",
            "--quiet",
            "--no-hardlinks",
            &outbox.to_string_lossy(),
            &workspace.to_string_lossy(),
        ],
    )
    .await?;
    // The agent has no remote to see (the outbox is a host path).
    git(Some(workspace), &["remote", "remove", "origin"]).await?;
    Ok(base_branch)
}

/// Checks out the run's `branch` in `workspace`, at `at_commit` or the base's
/// tip, with the agent's commit identity.
async fn start_branch(
    workspace: &Path,
    branch: &str,
    at_commit: Option<&str>,
    remote_url: Option<&str>,
) -> Result<()> {
    match at_commit {
        Some(c) => git(Some(workspace), &["checkout", "--quiet", "-b", branch, c])
            .await
            .map_err(|e| GitError::Clone {
                repo: remote_url.unwrap_or("(new project)").to_string(),
                detail: format!("commit {c}: {}", detail(e)),
            })?,
        None => git(Some(workspace), &["checkout", "--quiet", "-b", branch]).await?,
    };
    git(Some(workspace), &["config", "user.name", "errand agent"]).await?;
    git(
        Some(workspace),
        &["config", "user.email", "agent@errand.invalid"],
    )
    .await?;
    Ok(())
}

fn detail(e: GitError) -> String {
    match e {
        GitError::Command { detail, .. } => detail,
        other => other.to_string(),
    }
}

/// Deletes branch `branch` of `remote` (`git push REMOTE :refs/heads/BRANCH`
/// from an empty repository of errand's own, made for it).
pub async fn delete_remote_branch(
    remote: &str,
    auth: Option<&GitAuth>,
    branch: &str,
) -> Result<()> {
    let fail = |detail: String| GitError::Push {
        repo: redact_url(remote),
        branch: branch.to_string(),
        detail,
    };
    if errand_core::check_branch_name(branch).is_err() {
        return Err(fail("not a branch name errand pushes to".into()));
    }
    let empty = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    git_with(Some(empty.path()), &["init", "--quiet", "--bare"], None)
        .await
        .map_err(|e| fail(detail(e)))?;
    let refspec = format!(":refs/heads/{branch}");
    git_with(
        Some(empty.path()),
        &["push", "--quiet", remote, &refspec],
        auth,
    )
    .await
    .map(|_| ())
    .map_err(|e| GitError::Push {
        repo: redact_url(remote),
        branch: branch.to_string(),
        detail: detail(e),
    })
}

/// The commit a branch of `remote` points at now (its default branch when
/// `base` is `None`), read without cloning.
pub async fn remote_head(
    remote: &str,
    auth: Option<&GitAuth>,
    base: Option<&str>,
) -> Result<String> {
    let wanted = match base {
        Some(b) => format!("refs/heads/{b}"),
        None => "HEAD".to_string(),
    };
    let out = git_with(None, &["ls-remote", remote, &wanted], auth)
        .await
        .map_err(|e| GitError::Clone {
            repo: remote.to_string(),
            detail: detail(e),
        })?;
    out.lines()
        .find_map(|l| l.split_whitespace().next().map(str::to_string))
        .ok_or_else(|| match base {
            Some(b) => GitError::BaseNotFound {
                repo: remote.to_string(),
                branch: b.to_string(),
                available: "see git ls-remote".into(),
            },
            None => GitError::EmptyRepo(remote.to_string()),
        })
}

/// Removes user:password from a URL before it is shown or stored.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((_cred, host)) = rest.split_once('@') {
            if !host.contains('/') || host.find('/') > Some(0) {
                return format!("{scheme}://{host}");
            }
        }
    }
    url.to_string()
}

/// The variable [`commit_leftovers_script`] takes the commit message from.
pub const COMMIT_MESSAGE_VAR: &str = "ERRAND_COMMIT_MESSAGE";

/// The largest commit message errand passes (an environment variable holds 128 KiB).
pub const MAX_COMMIT_MESSAGE: usize = 64 << 10;

/// The shell script that commits whatever the agent left uncommitted. It runs
/// *inside* the sandbox (git's filters and hooks then execute there, not on the
/// host); the message comes from the variable [`COMMIT_MESSAGE_VAR`], so errand
/// writes no file where the agent could have planted a symlink.
pub fn commit_leftovers_script() -> String {
    format!(
        "git add -A && if git diff --cached --quiet; then echo 'nothing left to commit'; \
         else printf '%s\\n' \"${COMMIT_MESSAGE_VAR}\" | git -c user.name='{AUTHOR_NAME}' -c user.email='{AUTHOR_EMAIL}' commit --quiet --no-verify -F - && git log -1 --format='committed %h %s'; fi"
    )
}

/// A commit message from the agent's final words: its first line as the subject.
pub fn commit_message(final_text: Option<&str>, prompt: &str, run_short: &str) -> String {
    let pick = |s: &str| {
        s.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    };
    let subject = final_text
        .and_then(pick)
        .or_else(|| pick(prompt))
        .unwrap_or_else(|| "Changes by errand".to_string());
    let subject: String = subject
        .trim_start_matches(['#', '*', ' '])
        .chars()
        .take(72)
        .collect();
    let mut m = format!(
        "{subject}\n\nMade by errand run {run_short} for: {}\n",
        prompt.trim()
    );
    if m.len() > MAX_COMMIT_MESSAGE {
        let mut cut = MAX_COMMIT_MESSAGE - 16;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
        m.push_str("\n[…]\n");
    }
    m
}

/// What the run's branch holds, read in the outbox after [`import`] put it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// The branch's tip commit.
    pub commit: String,
    /// `git diff --shortstat` of base..branch, e.g. "1 file changed, 2 insertions(+)"; empty when nothing changed.
    pub shortstat: String,
    /// `git diff --stat` of base..branch.
    pub stat: String,
    /// How many commits the branch has on top of the base.
    pub commits: u32,
    /// The unified diff of base..branch, cut at [`MAX_DIFF_BYTES`] (on a line boundary).
    pub diff: String,
    /// Whether `diff` was cut.
    pub diff_truncated: bool,
}

/// The largest whole-run diff errand records in a run's trace.
pub const MAX_DIFF_BYTES: usize = 4 << 20;

/// Describes the run's branch as the outbox holds it (after [`import`]): the
/// workspace is never read.
pub async fn collect(prepared: &Prepared) -> Result<Collected> {
    let branch_ref = format!("refs/heads/{}", prepared.branch);
    let commit = git(Some(&prepared.outbox), &["rev-parse", &branch_ref]).await?;
    let range = format!("{}..{}", prepared.base_commit, commit);
    let shortstat = git(Some(&prepared.outbox), &["diff", "--shortstat", &range])
        .await?
        .trim()
        .to_string();
    let stat = git(Some(&prepared.outbox), &["diff", "--stat", &range]).await?;
    let commits = git(Some(&prepared.outbox), &["rev-list", "--count", &range]).await?;
    let mut diff = git(
        Some(&prepared.outbox),
        &["diff", "--no-color", "--no-ext-diff", &range],
    )
    .await?;
    let diff_truncated = diff.len() > MAX_DIFF_BYTES;
    if diff_truncated {
        let mut cut = MAX_DIFF_BYTES;
        while !diff.is_char_boundary(cut) {
            cut -= 1;
        }
        let cut = diff[..cut].rfind('\n').map_or(cut, |n| n + 1);
        diff.truncate(cut);
    }
    Ok(Collected {
        commit,
        shortstat,
        stat,
        commits: commits.trim().parse().unwrap_or(0),
        diff,
        diff_truncated,
    })
}

/// Pushes the run's branch from the outbox to the remote (never forced).
pub async fn push(prepared: &Prepared, auth: Option<&GitAuth>) -> Result<()> {
    push_to(prepared, auth, &prepared.branch).await
}

/// Pushes the run's branch from the outbox to `remote_branch` of the remote
/// (an existing branch, such as a pull request's head: fast-forward only, so
/// work someone pushed there meanwhile is never overwritten).
pub async fn push_to(
    prepared: &Prepared,
    auth: Option<&GitAuth>,
    remote_branch: &str,
) -> Result<()> {
    let Some(remote) = prepared.remote.as_deref() else {
        return Err(GitError::Push {
            repo: "(none)".into(),
            branch: prepared.branch.clone(),
            detail: "this run has no repository to push to".into(),
        });
    };
    if errand_core::check_branch_name(remote_branch).is_err() {
        return Err(GitError::Push {
            repo: redact_url(remote),
            branch: remote_branch.to_string(),
            detail: "not a branch name errand pushes to".into(),
        });
    }
    let refspec = format!("refs/heads/{}:refs/heads/{remote_branch}", prepared.branch);
    git_with(
        Some(&prepared.outbox),
        &["push", "--quiet", remote, &refspec],
        auth,
    )
    .await
    .map(|_| ())
    .map_err(|e| GitError::Push {
        repo: redact_url(remote),
        branch: prepared.branch.clone(),
        detail: detail(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_become_a_header() {
        let (url, auth) =
            credentials_of("https://x-access-token:s%40crit@github.com/o/r.git").unwrap();
        assert_eq!(url, "https://github.com/o/r.git");
        // base64("x-access-token:s@crit")
        assert_eq!(
            auth.header,
            "Authorization: Basic eC1hY2Nlc3MtdG9rZW46c0Bjcml0"
        );
        let (url, auth) = credentials_of("http://tok@h:8080/r?x=1").unwrap();
        assert_eq!(url, "http://h:8080/r?x=1");
        assert_eq!(auth.header, "Authorization: Basic dG9rOg==");
        for plain in [
            "https://github.com/o/r.git",
            "ssh://git@h/r",
            "git@h:o/r",
            "/tmp/a@b",
            "https://h/a@b",
        ] {
            assert!(credentials_of(plain).is_none(), "{plain}");
        }
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }

    #[tokio::test]
    async fn a_credential_in_a_url_is_on_no_command_line_and_in_no_error() {
        let tmp = tempfile::tempdir().unwrap();
        // A port nothing listens on: git fails, and says why without the secret.
        let err = git(
            None,
            &["ls-remote", "https://user:sekrit-123@127.0.0.1:9/o/r.git"],
        )
        .await
        .unwrap_err();
        assert!(!err.to_string().contains("sekrit-123"), "{err}");
        drop(tmp);
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://x-access-token:abc@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            redact_url("https://github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(redact_url("/tmp/repo"), "/tmp/repo");
    }

    #[test]
    fn commit_messages_come_from_the_final_text() {
        let m = commit_message(
            Some("\n## Added a --version flag\nmore"),
            "add a flag",
            "abcd1234",
        );
        assert!(
            m.starts_with("Added a --version flag\n\nMade by errand run abcd1234 for: add a flag"),
            "{m}"
        );
        let m = commit_message(None, "fix the typo", "abcd1234");
        assert!(m.starts_with("fix the typo\n"), "{m}");
    }

    async fn make_repo(dir: &Path) {
        git(
            None,
            &["init", "--quiet", "-b", "trunk", &dir.to_string_lossy()],
        )
        .await
        .unwrap();
        std::fs::write(dir.join("README.md"), "hello\n").unwrap();
        git(Some(dir), &["add", "."]).await.unwrap();
        git(Some(dir), &["commit", "--quiet", "-m", "first"])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn mirrors_fetch_what_changed_and_heal_when_broken() {
        let tmp = tempfile::tempdir().unwrap();
        let origin = tmp.path().join("origin");
        make_repo(&origin).await;
        let url = origin.to_string_lossy().into_owned();
        let mirrors = Mirrors::new(tmp.path().join("mirrors"));
        assert!(Mirrors::wants("https://github.com/o/r.git") && Mirrors::wants("git@h:o/r"));
        assert!(!Mirrors::wants(&url) && !Mirrors::wants("file:///x"));
        // The name depends on the repository, not on a credential in the URL.
        assert_eq!(
            mirrors.path_for("https://x-access-token:abc@h/o/r.git"),
            mirrors.path_for("https://h/o/r.git")
        );
        let m = mirrors.refresh(&url, None).await.unwrap();
        let first = git(Some(&m), &["rev-parse", "refs/heads/trunk"])
            .await
            .unwrap();
        std::fs::write(origin.join("more.txt"), "x").unwrap();
        git(Some(&origin), &["add", "."]).await.unwrap();
        git(Some(&origin), &["commit", "--quiet", "-m", "second"])
            .await
            .unwrap();
        let again = mirrors.refresh(&url, None).await.unwrap();
        assert_eq!(again, m);
        let second = git(Some(&m), &["rev-parse", "refs/heads/trunk"])
            .await
            .unwrap();
        assert_ne!(first, second, "the refresh fetched the new commit");
        // The remote changes its default branch (and drops the old one): the
        // mirror's HEAD follows, so runs without --base start from the new one.
        git(Some(&origin), &["branch", "--quiet", "-m", "trunk", "main"])
            .await
            .unwrap();
        assert_eq!(
            git(Some(&origin), &["symbolic-ref", "HEAD"]).await.unwrap(),
            "refs/heads/main"
        );
        mirrors.refresh(&url, None).await.unwrap();
        assert_eq!(
            git(Some(&m), &["symbolic-ref", "HEAD"]).await.unwrap(),
            "refs/heads/main"
        );
        git(Some(&origin), &["branch", "--quiet", "-m", "main", "trunk"])
            .await
            .unwrap();
        mirrors.refresh(&url, None).await.unwrap();
        assert_eq!(
            git(Some(&m), &["symbolic-ref", "HEAD"]).await.unwrap(),
            "refs/heads/trunk"
        );
        // A mirror broken on disk is cloned again.
        std::fs::remove_dir_all(m.join("refs")).unwrap();
        std::fs::remove_dir_all(m.join("objects")).unwrap();
        let healed = mirrors.refresh(&url, None).await.unwrap();
        assert_eq!(
            git(Some(&healed), &["rev-parse", "refs/heads/trunk"])
                .await
                .unwrap(),
            second
        );
        // An outbox made from the mirror has its branches, tags, default
        // branch and objects (packed and loose), and does not depend on it.
        std::fs::write(origin.join("loose.txt"), "x").unwrap();
        git(Some(&origin), &["add", "."]).await.unwrap();
        git(Some(&origin), &["commit", "--quiet", "-m", "third"])
            .await
            .unwrap();
        git(Some(&origin), &["tag", "-a", "v1", "-m", "one"])
            .await
            .unwrap();
        let healed = mirrors.refresh(&url, None).await.unwrap();
        let outbox = tmp.path().join("outbox.git");
        link_outbox(&healed, &outbox).await.unwrap();
        let refs = |repo: &Path| {
            let repo = repo.to_path_buf();
            async move {
                git(
                    Some(&repo),
                    &[
                        "for-each-ref",
                        "--format=%(objectname) %(refname)",
                        "refs/heads",
                        "refs/tags",
                    ],
                )
                .await
                .unwrap()
            }
        };
        assert_eq!(refs(&outbox).await, refs(&healed).await);
        assert_eq!(
            git(Some(&outbox), &["symbolic-ref", "HEAD"]).await.unwrap(),
            "refs/heads/trunk"
        );
        std::fs::remove_dir_all(&healed).unwrap();
        assert!(!outbox.join("objects/info/alternates").exists());
        git(Some(&outbox), &["fsck", "--no-progress", "--strict"])
            .await
            .unwrap();
        assert_eq!(
            git(Some(&outbox), &["log", "-1", "--format=%s", "trunk"])
                .await
                .unwrap(),
            "third"
        );
        // An unreachable remote is a clear clone error.
        let err = mirrors
            .refresh("/nonexistent/repo", None)
            .await
            .unwrap_err();
        assert!(matches!(err, GitError::Clone { .. }), "{err}");
    }

    #[tokio::test]
    async fn clone_branch_collect_push_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let origin = tmp.path().join("origin");
        make_repo(&origin).await;
        git(Some(&origin), &["checkout", "--quiet", "-b", "side"])
            .await
            .unwrap();
        git(Some(&origin), &["checkout", "--quiet", "trunk"])
            .await
            .unwrap();
        let run = tmp.path().join("run");
        let ws = run.join("workspace");
        let remote = resolve_source(
            &RepoSource::Local(origin.to_string_lossy().into()),
            tmp.path(),
        )
        .unwrap();
        let p = prepare(
            Some(Remote::plain(&remote)),
            None,
            None,
            &run,
            &ws,
            "errand/abc",
        )
        .await
        .unwrap();
        assert_eq!(p.base_branch, "trunk");
        assert_eq!(
            git(Some(&ws), &["branch", "--show-current"]).await.unwrap(),
            "errand/abc"
        );
        std::fs::write(ws.join("README.md"), "hello\nworld\n").unwrap();
        let script = commit_leftovers_script();
        assert!(script.contains("commit --quiet --no-verify"));
        git(Some(&ws), &["commit", "--quiet", "-am", "edit"])
            .await
            .unwrap();
        take_export(&p).await.unwrap();
        let c = collect(&p).await.unwrap();
        assert_eq!(c.commits, 1);
        assert!(
            c.shortstat.contains("1 file changed, 1 insertion(+)"),
            "{}",
            c.shortstat
        );
        push(&p, None).await.unwrap();
        // A second run pinned to the first commit starts there, even though the
        // remote has moved on.
        let first = git(Some(&origin), &["rev-parse", "trunk"]).await.unwrap();
        assert_eq!(remote_head(&remote, None, None).await.unwrap(), first);
        assert_eq!(
            remote_head(&remote, None, Some("side")).await.unwrap(),
            first
        );
        std::fs::write(origin.join("later.txt"), "x").unwrap();
        git(Some(&origin), &["add", "."]).await.unwrap();
        git(Some(&origin), &["commit", "--quiet", "-m", "later"])
            .await
            .unwrap();
        let p2 = prepare(
            Some(Remote::plain(&remote)),
            None,
            Some(&first),
            &tmp.path().join("run2"),
            &tmp.path().join("ws2"),
            "errand/def",
        )
        .await
        .unwrap();
        assert_eq!(p2.base_commit, first);
        assert!(remote_head(&remote, None, Some("nope")).await.is_err());
        let pushed = git(Some(&origin), &["rev-parse", "refs/heads/errand/abc"])
            .await
            .unwrap();
        assert_eq!(pushed, c.commit);
    }

    #[tokio::test]
    async fn bad_sources_and_bases_are_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let err =
            resolve_source(&RepoSource::Local("nope/missing".into()), tmp.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("'nope/missing' could not be cloned"),
            "{err}"
        );
        let notrepo = tmp.path().join("plain");
        std::fs::create_dir(&notrepo).unwrap();
        let err = prepare(
            Some(Remote::plain(&notrepo.to_string_lossy())),
            None,
            None,
            &tmp.path().join("r1"),
            &tmp.path().join("w1"),
            "errand/x",
        )
        .await
        .unwrap_err();
        assert!(matches!(err, GitError::Clone { .. }), "{err}");
        let origin = tmp.path().join("origin");
        make_repo(&origin).await;
        let err = prepare(
            Some(Remote::plain(&origin.to_string_lossy())),
            Some("dev"),
            None,
            &tmp.path().join("r2"),
            &tmp.path().join("w2"),
            "errand/x",
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "base branch 'dev' does not exist in '{}' (branches: trunk)",
                origin.display()
            )
        );
    }

    #[tokio::test]
    async fn a_run_without_repo_starts_an_empty_project() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        let p = prepare(None, None, None, tmp.path(), &ws, "errand/new")
            .await
            .unwrap();
        assert!(ws.join(".git").is_dir());
        assert!(p.remote.is_none());
        std::fs::write(ws.join("primes.py"), "print(2)\n").unwrap();
        git(Some(&ws), &["add", "."]).await.unwrap();
        git(Some(&ws), &["commit", "--quiet", "-m", "primes"])
            .await
            .unwrap();
        take_export(&p).await.unwrap();
        let c = collect(&p).await.unwrap();
        assert_eq!(c.commits, 1);
        assert!(push(&p, None).await.is_err());
    }

    /// Runs the export script in the workspace (as the sandbox would) and
    /// imports what it printed into the outbox.
    async fn take_export(p: &Prepared) -> Result<()> {
        let mut sh = errand_proc::Cmd::new("sh");
        sh.arg("-c")
            .arg(export_script(p))
            .current_dir(&p.workspace)
            .inherit_all_env();
        let out = sh.tokio().output().await.map_err(GitError::Spawn)?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let spool = p.outbox.with_extension("bundle");
        let r = receive(&out.stdout[..], &spool, MAX_EXPORT_BYTES).await?;
        import(p, &r, &spool).await
    }

    #[tokio::test]
    async fn an_unchanged_branch_imports_as_the_base() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        let p = prepare(None, None, None, tmp.path(), &ws, "errand/same")
            .await
            .unwrap();
        take_export(&p).await.unwrap();
        let c = collect(&p).await.unwrap();
        assert_eq!((c.commits, c.commit.as_str()), (0, p.base_commit.as_str()));
    }

    #[tokio::test]
    async fn history_that_does_not_descend_from_the_base_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        let p = prepare(None, None, None, tmp.path(), &ws, "errand/orphan")
            .await
            .unwrap();
        git(Some(&ws), &["checkout", "--quiet", "--orphan", "other"])
            .await
            .unwrap();
        std::fs::write(ws.join("x"), "x").unwrap();
        git(Some(&ws), &["add", "x"]).await.unwrap();
        git(Some(&ws), &["commit", "--quiet", "-m", "unrelated"])
            .await
            .unwrap();
        git(Some(&ws), &["branch", "-f", "errand/orphan", "other"])
            .await
            .unwrap();
        let err = take_export(&p).await.unwrap_err();
        assert!(err.to_string().contains("does not descend"), "{err}");
        // The outbox's branch was never moved.
        assert!(git(
            Some(&p.outbox),
            &["rev-parse", "--verify", "refs/heads/errand/orphan"]
        )
        .await
        .is_err());
    }

    #[tokio::test]
    async fn dangerous_gitmodules_are_refused_by_the_object_checks() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        let p = prepare(None, None, None, tmp.path(), &ws, "errand/mods")
            .await
            .unwrap();
        // A submodule name that climbs out of .git/modules (CVE-2018-11235's class).
        std::fs::write(
            ws.join(".gitmodules"),
            "[submodule \"../../../hooks\"]\n\tpath = x\n\turl = https://example.invalid/x\n",
        )
        .unwrap();
        git(Some(&ws), &["add", ".gitmodules"]).await.unwrap();
        git(Some(&ws), &["commit", "--quiet", "-m", "mods"])
            .await
            .unwrap();
        let err = take_export(&p).await.unwrap_err();
        assert!(err.to_string().contains("object checks"), "{err}");
        assert!(git(
            Some(&p.outbox),
            &["rev-parse", "--verify", "refs/heads/errand/mods"]
        )
        .await
        .is_err());
    }

    #[tokio::test]
    async fn a_bundle_naming_another_ref_or_commit_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        let p = prepare(None, None, None, tmp.path(), &ws, "errand/refs")
            .await
            .unwrap();
        std::fs::write(ws.join("y"), "y").unwrap();
        git(Some(&ws), &["add", "y"]).await.unwrap();
        git(Some(&ws), &["commit", "--quiet", "-m", "y"])
            .await
            .unwrap();
        let tip = git(Some(&ws), &["rev-parse", "HEAD"]).await.unwrap();
        // A bundle of main (not the run's branch), announced as the run's commit.
        let bundle = tmp.path().join("b.bundle");
        git(Some(&ws), &["branch", "-f", "main", "HEAD"])
            .await
            .unwrap();
        git(
            Some(&ws),
            &[
                "bundle",
                "create",
                "--quiet",
                &bundle.to_string_lossy(),
                "refs/heads/main",
                "--not",
                &p.base_commit,
            ],
        )
        .await
        .unwrap();
        let r = Received {
            tip: tip.clone(),
            bundle_bytes: std::fs::metadata(&bundle).unwrap().len(),
        };
        let err = import(&p, &r, &bundle).await.unwrap_err();
        assert!(
            err.to_string().contains("exactly refs/heads/errand/refs"),
            "{err}"
        );
        // No bundle, but a claim that the branch moved.
        let r = Received {
            tip,
            bundle_bytes: 0,
        };
        assert!(import(&p, &r, &bundle).await.is_err());
    }
}

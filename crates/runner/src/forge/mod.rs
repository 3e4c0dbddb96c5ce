//! Forges: where a run's repository lives (GitHub today), behind one trait.
//!
//! A run on a forge's repository gets access to that one repository alone
//! ([`Forge::grant`]: read-only unless the run pushes), uses the credential
//! only in host-side git commands (clone into the outbox, push from it) and
//! the forge's API (the change request), renews it when a long run outlives
//! it ([`Forge::renew_if_expiring`], [`Renewer`]) and revokes every credential
//! it held when the run ends ([`Forge::revoke`]). A credential never enters a
//! `.git/config`, an environment or the event log (the run's redactor masks
//! it), and it never enters the sandbox: for `--agent-git` runs errand's git
//! proxy ([`crate::gitproxy`]) adds it, outside, to the agent's git requests.
//!
//! A forge implements the few things that differ ([`Forge::mint`],
//! [`Forge::revoke_credential`], [`Forge::open_change`], its clone URLs and
//! names); granting, renewing and revoking a run's access are the trait's own
//! methods, one policy for every forge. [`GithubForge`] is the GitHub App.
//! GitLab is one more implementation: a `gitlab.rs` beside `github.rs` whose
//! `mint` creates a short-lived project access token (its `auth_header` HTTP
//! Basic with the token as password), whose `revoke_credential` revokes it,
//! whose `open_change` opens a merge request (`change_name`: `merge
//! request`), a [`ForgeError`] variant for its client's errors, and the
//! `Runner` choosing it for `gitlab:` repositories (today its one `forge`
//! serves `github:` ones).

mod github;

pub use github::{CiFailure, GithubForge, CI_LOG_TAIL};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

/// What a forge's API refused or failed at. Messages never contain a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForgeError {
    /// GitHub's.
    #[error(transparent)]
    Github(#[from] errand_github::GithubError),
    /// The forge cannot do this.
    #[error("{0}")]
    Unsupported(String),
}

/// What an issue or pull request says, read for a run's context
/// ([`Forge::thread`]). All of it was written by people on the forge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadContext {
    /// Its number.
    pub number: u64,
    /// Whether it is a pull request.
    pub pull_request: bool,
    /// Its web address.
    pub url: String,
    /// Title.
    pub title: String,
    /// Body (empty when none).
    pub body: String,
    /// Who opened it.
    pub author: String,
    /// Labels.
    pub labels: Vec<String>,
    /// The newest comments, newest first.
    pub comments: Vec<ThreadComment>,
    /// Comments not read (older than those read).
    pub older_comments: u64,
    /// For a pull request: its head branch and whether it is a fork's.
    pub head: Option<(String, bool)>,
    /// For a pull request: the base branch.
    pub base: Option<String>,
    /// For a pull request: the changed files (status, path, added, removed).
    pub files: Vec<(String, String, u64, u64)>,
    /// Whether there are more changed files than listed.
    pub more_files: bool,
    /// For a pull request: review comments, newest first.
    pub review_comments: Vec<ThreadReviewComment>,
}

/// A comment in a thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadComment {
    /// Its id.
    pub id: u64,
    /// Who wrote it.
    pub author: String,
    /// When (RFC 3339).
    pub at: String,
    /// What it says.
    pub body: String,
}

/// A review comment on lines of a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadReviewComment {
    /// Its id.
    pub id: u64,
    /// Who wrote it.
    pub author: String,
    /// The file.
    pub path: String,
    /// First and last line.
    pub lines: (Option<u64>, Option<u64>),
    /// What it says.
    pub body: String,
}

/// A secret that lets host-side git and the forge's API act on one repository.
/// `Debug` redacts it.
#[derive(Clone)]
pub struct Credential {
    /// The secret itself (for the run's redactor). Never log it.
    pub secret: String,
    /// The header git authenticates with, as its `http.extraHeader`
    /// (`Authorization: Basic …`); it contains the secret.
    pub auth_header: String,
    /// When the forge says it expires; `None`: it did not say.
    pub expires_at: Option<DateTime<Utc>>,
    /// What the forge granted (`contents: write`, …), for the run's notice.
    pub permissions: BTreeMap<String, String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("permissions", &self.permissions)
            .finish()
    }
}

impl Credential {
    /// Whether it has expired at `now` (never, when the forge gave no expiry).
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A change request to open: a pull request (GitHub), a merge request (GitLab).
#[derive(Debug, Clone)]
pub struct NewChange {
    /// One short line.
    pub title: String,
    /// The branch with the run's work.
    pub head: String,
    /// The branch it would merge into.
    pub base: String,
    /// Markdown.
    pub body: String,
}

/// A change request the forge opened.
#[derive(Debug, Clone)]
pub struct Change {
    /// Its number in the repository (`#12`).
    pub number: u64,
    /// Where people see it.
    pub url: String,
}

/// A forge errand runs on: GitHub (an App), later GitLab.
///
/// The required methods are what differs between forges; [`Forge::grant`],
/// [`Forge::renew_if_expiring`] and [`Forge::revoke`] are built on them.
#[async_trait::async_trait]
pub trait Forge: Send + Sync {
    /// Its name in messages and logs: `GitHub`.
    fn name(&self) -> &'static str;

    /// What it calls a change request: `pull request`.
    fn change_name(&self) -> &'static str;

    /// The HTTPS URL `owner/repo` is cloned from (without credentials).
    fn clone_url(&self, owner: &str, repo: &str) -> String;

    /// A new credential for `owner/repo` alone: read-only unless `push`
    /// (then it may also open change requests).
    async fn mint(&self, owner: &str, repo: &str, push: bool) -> Result<Credential, ForgeError>;

    /// Revokes one credential `access` held; one the forge already considers
    /// invalid counts as revoked.
    async fn revoke_credential(
        &self,
        access: &RepoAccess,
        credential: &Credential,
    ) -> Result<(), ForgeError>;

    /// Opens the change request for a pushed branch with the run's credential.
    async fn open_change(
        &self,
        access: &RepoAccess,
        change: &NewChange,
    ) -> Result<Change, ForgeError>;

    /// What issue or pull request `thread.number` of `owner/repo` says
    /// (title, body, labels, the newest comments; for a pull request its
    /// branches, changed files and review comments), read with a credential
    /// that may only read them, revoked right after.
    async fn thread(
        &self,
        owner: &str,
        repo: &str,
        thread: &errand_core::ThreadRef,
    ) -> Result<ThreadContext, ForgeError> {
        let _ = (owner, repo, thread);
        Err(ForgeError::Unsupported(format!(
            "{} cannot read issues for a run's context",
            self.name()
        )))
    }

    /// Deletes `branch` with `access` (which may push); one already gone
    /// counts as deleted.
    async fn delete_branch(&self, access: &RepoAccess, branch: &str) -> Result<(), ForgeError> {
        let _ = (access, branch);
        Err(ForgeError::Unsupported(format!(
            "{} cannot delete branches",
            self.name()
        )))
    }

    /// Closes change request `number` with `access` (which may push).
    async fn close_change(&self, access: &RepoAccess, number: u64) -> Result<(), ForgeError> {
        let _ = (access, number);
        Err(ForgeError::Unsupported(format!(
            "{} cannot close {}s",
            self.name(),
            self.change_name()
        )))
    }

    /// Comments on change request (or issue) `number` of `owner/repo`, with a
    /// credential that may only comment, revoked right after.
    async fn comment_change(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        body: &str,
    ) -> Result<(), ForgeError> {
        let _ = (owner, repo, number, body);
        Err(ForgeError::Unsupported(format!(
            "{} cannot comment",
            self.name()
        )))
    }

    /// Every repository errand may run on here, as `--repo` takes it
    /// (`github:owner/repo`), sorted; a forge that cannot list them has none.
    async fn repositories(&self) -> Result<Vec<String>, ForgeError> {
        Ok(Vec::new())
    }

    /// The number of the change request at `url` ([`Forge::change_url`]'s form).
    fn change_number(&self, url: &str) -> Option<u64> {
        url.rsplit('/').next()?.parse().ok()
    }

    /// The web address of change request `number` (a pull request's page).
    fn change_url(&self, owner: &str, repo: &str, number: u64) -> String {
        format!(
            "{}/{owner}/{repo}/{number}",
            self.clone_url(owner, repo).trim_end_matches(".git")
        )
    }

    /// A run's access to `owner/repo`: read-only unless the run may push.
    async fn grant(&self, owner: &str, repo: &str, push: bool) -> Result<RepoAccess, ForgeError> {
        let minted = Utc::now();
        let credential = self.mint(owner, repo, push).await?;
        Ok(RepoAccess {
            owner: owner.to_string(),
            repo: repo.to_string(),
            url: self.clone_url(owner, repo),
            push,
            current: Arc::new(Mutex::new(Current {
                credential,
                minted,
                retired: Vec::new(),
            })),
        })
    }

    /// Replaces the run's credential with a new one of the same scope when it
    /// is due ([`RepoAccess::renew_at`]); the old one, which expires within
    /// minutes, is revoked with it at the end ([`Forge::revoke`]). `before_use`
    /// sees the new secret before anything can use it (to add it to the run's
    /// redactor). Returns whether it renewed.
    async fn renew_if_expiring(
        &self,
        access: &RepoAccess,
        before_use: &(dyn for<'s> Fn(&'s str) + Send + Sync),
    ) -> Result<bool, ForgeError> {
        match access.renew_at() {
            Some(at) if at <= Utc::now() => {}
            _ => return Ok(false),
        }
        let minted = Utc::now();
        let credential = self.mint(&access.owner, &access.repo, access.push).await?;
        before_use(&credential.secret);
        let mut current = access.lock();
        let old = std::mem::replace(&mut current.credential, credential);
        current.minted = minted;
        current.retired.push(old);
        Ok(true)
    }

    /// Revokes everything granted to the run: its credential, and those it
    /// replaced unless they expired long ago; failures are logged, not fatal
    /// (each expires on its own).
    ///
    /// A replaced credential that looks just expired is revoked all the same:
    /// the forge states expiry to the second (GitHub drops the fraction) and
    /// its clock is not ours, so "expired" here can still be valid there. A
    /// forge answers an already invalid one as revoked.
    async fn revoke(&self, access: &RepoAccess) {
        let Current {
            credential,
            retired,
            ..
        } = access.lock().clone();
        let surely_dead = Utc::now() - EXPIRY_SLACK;
        let repo = format!("{}/{}", access.owner, access.repo);
        for old in retired.iter().filter(|c| !c.is_expired(surely_dead)) {
            if let Err(e) = self.revoke_credential(access, old).await {
                tracing::warn!(%repo, "revoking a replaced {} token failed: {e}", self.name());
            }
        }
        if let Err(e) = self.revoke_credential(access, &credential).await {
            tracing::warn!(%repo, "revoking the run's {} token failed: {e}", self.name());
        }
    }
}

/// A run's access to one repository on a forge ([`Forge::grant`]). Clones
/// share the credential, so a renewal ([`Forge::renew_if_expiring`]) is seen
/// by every holder.
#[derive(Clone)]
pub struct RepoAccess {
    /// The repository's owner (a GitHub user or organization).
    pub owner: String,
    /// The repository's name.
    pub repo: String,
    /// Where it is cloned from ([`Forge::clone_url`]).
    pub url: String,
    /// Whether the run may push (and open a change request).
    pub push: bool,
    current: Arc<Mutex<Current>>,
}

/// How long past its stated expiry a credential may still be valid at the
/// forge: its expiry is given to the second, and clocks differ.
const EXPIRY_SLACK: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// The credential in use, and when errand minted it (to know its lifetime).
#[derive(Clone)]
struct Current {
    credential: Credential,
    minted: DateTime<Utc>,
    /// Credentials it replaced, revoked with it when the run ends: a git
    /// command that asked for one just before a renewal may still be using it.
    retired: Vec<Credential>,
}

impl RepoAccess {
    /// The credential in use now.
    pub fn credential(&self) -> Credential {
        self.lock().credential.clone()
    }

    /// What host-side git authenticates with now.
    pub fn git_auth(&self) -> errand_git::GitAuth {
        errand_git::GitAuth::header(self.credential().auth_header)
    }

    /// When the credential in use should be replaced: a quarter of its
    /// lifetime before it expires, at most five minutes before (GitHub's
    /// tokens live an hour). `None` when the forge gave no expiry.
    pub fn renew_at(&self) -> Option<DateTime<Utc>> {
        let c = self.lock().clone();
        renew_at(c.minted, c.credential.expires_at?)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// See [`RepoAccess::renew_at`].
fn renew_at(minted: DateTime<Utc>, expires: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let lifetime = (expires - minted).max(chrono::TimeDelta::zero());
    let margin = (lifetime / 4).min(chrono::TimeDelta::minutes(5));
    Some(expires - margin)
}

/// Renews an `--agent-git` run's credential while the agent works, so the
/// credential helper always hands out a live one. Each new one joins the
/// run's redactor before the helper can hand it out; old ones are revoked when the run ends.
pub struct Renewer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Renewer {
    /// Renewals are recorded as notes, returned by [`Renewer::finish`].
    const MAX_NOTES: usize = 20;
    const RETRY: Duration = Duration::from_secs(15);

    /// `before_use` sees each new secret first (see [`Forge::renew_if_expiring`]).
    pub fn start(
        forge: Arc<dyn Forge>,
        access: RepoAccess,
        before_use: impl Fn(&str) + Send + Sync + 'static,
    ) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(Self::renew(forge, access, before_use, stop.clone()));
        Renewer { stop, task }
    }

    async fn renew(
        forge: Arc<dyn Forge>,
        access: RepoAccess,
        before_use: impl Fn(&str) + Send + Sync,
        stop: CancellationToken,
    ) -> Vec<String> {
        let mut notes = Vec::new();
        let mut note = |n: String| {
            if notes.len() < Self::MAX_NOTES {
                notes.push(n);
            }
        };
        let mut retry_at = None;
        while let Some(at) = retry_at.take().or_else(|| access.renew_at()) {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            // Not cancelled from here on: a minted credential is always recorded, so it is revoked.
            match forge.renew_if_expiring(&access, &before_use).await {
                Ok(true) => note(format!(
                    "renewed the run's token for {}/{} while the agent works{} (the old one is revoked when the run ends)",
                    access.owner,
                    access.repo,
                    access
                        .credential()
                        .expires_at
                        .map(|e| format!(", now valid until {}", e.format("%H:%M:%S UTC")))
                        .unwrap_or_default()
                )),
                Ok(false) => {}
                Err(e) => {
                    note(format!(
                        "renewing the run's token for {}/{} failed: {e}; retrying in {} s",
                        access.owner,
                        access.repo,
                        Self::RETRY.as_secs()
                    ));
                    retry_at = chrono::TimeDelta::from_std(Self::RETRY)
                        .ok()
                        .map(|d| Utc::now() + d);
                }
            }
        }
        notes
    }

    /// Stops renewing (after a renewal under way) and returns what happened.
    pub async fn finish(mut self) -> Vec<String> {
        self.stop.cancel();
        (&mut self.task).await.unwrap_or_default()
    }
}

impl Drop for Renewer {
    /// A run that leaves early (an error between start and finish) must not
    /// leave renewals going after its credentials are revoked.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The change request's title: the first line of the commit message errand wrote.
pub fn change_title(message: &str) -> String {
    let first = message.lines().next().unwrap_or("errand run").trim();
    if first.chars().count() > 72 {
        let cut: String = first.chars().take(71).collect();
        format!("{cut}…")
    } else {
        first.to_string()
    }
}

/// The change request's body: the agent's summary, what changed, and where to see the trace.
pub fn change_body(
    prompt: &str,
    result: Option<&str>,
    diffstat: &str,
    trace_url: Option<&str>,
    requested_by: Option<&str>,
) -> String {
    let mut body = String::new();
    body.push_str("**Task**\n\n");
    for line in prompt.lines() {
        body.push_str("> ");
        body.push_str(line);
        body.push('\n');
    }
    if let Some(r) = result.filter(|r| !r.trim().is_empty()) {
        body.push_str("\n**Summary from the agent**\n\n");
        body.push_str(r.trim());
        body.push('\n');
    }
    if !diffstat.is_empty() {
        body.push_str(&format!("\n`{diffstat}`\n"));
    }
    body.push_str("\n---\nOpened by errand");
    if let Some(who) = requested_by {
        body.push_str(&format!(" for {who}"));
    }
    if let Some(url) = trace_url {
        body.push_str(&format!(" · [trace]({url})"));
    }
    body.push('\n');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        let minted = Utc::now();
        let hour = renew_at(minted, minted + chrono::TimeDelta::hours(1)).unwrap();
        assert_eq!(hour, minted + chrono::TimeDelta::minutes(55));
        // Short lifetimes (a test server's) are renewed a quarter before the end.
        let short = renew_at(minted, minted + chrono::TimeDelta::seconds(8)).unwrap();
        assert_eq!(short, minted + chrono::TimeDelta::seconds(6));
        // A token already past its expiry is due at once.
        let past = renew_at(minted, minted - chrono::TimeDelta::seconds(1)).unwrap();
        assert!(past <= minted);
    }

    /// Mints credentials whose stated expiry is set by the test, and records
    /// which ones it was asked to revoke.
    struct Recording {
        expiries: Mutex<Vec<DateTime<Utc>>>,
        revoked: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Forge for Recording {
        fn name(&self) -> &'static str {
            "Test"
        }
        fn change_name(&self) -> &'static str {
            "change"
        }
        fn clone_url(&self, owner: &str, repo: &str) -> String {
            format!("https://forge.test/{owner}/{repo}.git")
        }
        async fn mint(&self, _: &str, _: &str, _: bool) -> Result<Credential, ForgeError> {
            let mut e = self.expiries.lock().unwrap_or_else(PoisonError::into_inner);
            let n = e.len();
            let at = e.remove(0);
            Ok(Credential {
                secret: format!("secret-{}", 3 - n),
                auth_header: String::new(),
                expires_at: Some(at),
                permissions: BTreeMap::new(),
            })
        }
        async fn revoke_credential(
            &self,
            _: &RepoAccess,
            c: &Credential,
        ) -> Result<(), ForgeError> {
            self.revoked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(c.secret.clone());
            Ok(())
        }
        async fn open_change(&self, _: &RepoAccess, _: &NewChange) -> Result<Change, ForgeError> {
            Err(ForgeError::Unsupported("no".into()))
        }
    }

    #[tokio::test]
    async fn replaced_credentials_that_only_look_expired_are_revoked_too() {
        let now = Utc::now();
        let forge = Recording {
            // Each is due for renewal at once; the forge states expiry to the
            // second, so one "expired" a moment ago may be valid there still.
            expiries: Mutex::new(vec![
                now - chrono::TimeDelta::hours(2),
                now - chrono::TimeDelta::milliseconds(500),
                now + chrono::TimeDelta::hours(1),
            ]),
            revoked: Mutex::new(Vec::new()),
        };
        let access = forge.grant("o", "r", true).await.expect("grant");
        assert!(forge
            .renew_if_expiring(&access, &|_| {})
            .await
            .expect("renew"));
        assert!(forge
            .renew_if_expiring(&access, &|_| {})
            .await
            .expect("renew"));
        forge.revoke(&access).await;
        let revoked = forge
            .revoked
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        // Long dead: not asked; just expired: revoked; the current one: revoked.
        assert_eq!(revoked, ["secret-1", "secret-2"], "{revoked:?}");
    }

    #[test]
    fn titles_are_one_short_line() {
        assert_eq!(change_title("Fix the test\n\nbody"), "Fix the test");
        let long = "x".repeat(100);
        assert_eq!(change_title(&long).chars().count(), 72);
    }

    #[test]
    fn bodies_link_the_trace() {
        let b = change_body(
            "fix it",
            Some("Fixed."),
            "1 file changed",
            Some("http://e/runs/1"),
            Some("slack:T/U"),
        );
        assert!(b.contains("> fix it") && b.contains("Fixed.") && b.contains("(http://e/runs/1)"));
        assert!(b.contains("for slack:T/U"));
    }
}

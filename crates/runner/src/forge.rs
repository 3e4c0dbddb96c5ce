//! GitHub repositories (`github:owner/repo`): errand mints an installation
//! token scoped to that one repository for each run, uses it only in host-side
//! git commands (clone into the outbox, push from it) and API calls (the pull
//! request), and revokes it when the run ends. The token never enters a
//! `.git/config`, an environment or the event log (the run's redactor masks
//! it), and it never enters the sandbox: for `--agent-git` runs errand's git
//! proxy ([`crate::gitproxy`]) adds it, outside, to the agent's git requests.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use errand_github::{GithubClient, NewPull, RepoToken, TokenRequest};
use tokio_util::sync::CancellationToken;

/// The GitHub App errand acts as.
pub struct GithubForge {
    pub client: GithubClient,
    /// Where repositories are cloned from: `https://github.com`, a GitHub
    /// Enterprise host, or a test server.
    pub git_base: String,
    /// Also ask for `workflows: write`, letting a run change `.github/workflows/`.
    /// Off unless configured: without it GitHub itself refuses such pushes.
    pub workflows: bool,
}

/// A run's access to one GitHub repository. Clones share the token, so a
/// renewal ([`GithubForge::renew_if_expiring`]) is seen by every holder.
#[derive(Clone)]
pub struct RepoAccess {
    pub owner: String,
    pub repo: String,
    pub url: String,
    request: TokenRequest,
    current: Arc<Mutex<Current>>,
}

/// The token in use, and when errand minted it (to know its lifetime).
#[derive(Clone)]
struct Current {
    token: RepoToken,
    minted: DateTime<Utc>,
    /// Tokens it replaced, revoked with it when the run ends: a git command
    /// that asked for one just before a renewal may still be using it.
    retired: Vec<RepoToken>,
}

impl RepoAccess {
    /// The token in use now.
    pub fn token(&self) -> RepoToken {
        self.lock().token.clone()
    }

    pub fn git_auth(&self) -> errand_git::GitAuth {
        errand_git::GitAuth::header(self.token().basic_auth_header())
    }

    /// When the token in use should be replaced: a quarter of its lifetime
    /// before it expires, at most five minutes before (GitHub's tokens live an
    /// hour). `None` when GitHub gave no expiry.
    pub fn renew_at(&self) -> Option<DateTime<Utc>> {
        let c = self.lock().clone();
        renew_at(c.minted, c.token.expires_at?)
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

impl GithubForge {
    /// A token for `owner/repo`: read-only unless the run may push.
    pub async fn access(
        &self,
        owner: &str,
        repo: &str,
        push: bool,
    ) -> Result<RepoAccess, errand_github::GithubError> {
        let mut request = if push {
            TokenRequest::write()
        } else {
            TokenRequest::read()
        };
        if self.workflows && push {
            request = request.with_workflows();
        }
        let minted = Utc::now();
        let token = self.client.mint_token(owner, repo, request).await?;
        Ok(RepoAccess {
            owner: owner.to_string(),
            repo: repo.to_string(),
            url: errand_github::git_url(&self.git_base, owner, repo),
            request,
            current: Arc::new(Mutex::new(Current {
                token,
                minted,
                retired: Vec::new(),
            })),
        })
    }

    /// Replaces the run's token with a new one of the same scope when it is
    /// due ([`RepoAccess::renew_at`]); the old one, which expires within
    /// minutes, is revoked with it at the end ([`GithubForge::revoke`]). `before_use`
    /// sees the new token before anything can use it (to add it to the run's
    /// redactor). Returns whether it renewed.
    pub async fn renew_if_expiring(
        &self,
        access: &RepoAccess,
        before_use: impl FnOnce(&str),
    ) -> Result<bool, errand_github::GithubError> {
        match access.renew_at() {
            Some(at) if at <= Utc::now() => {}
            _ => return Ok(false),
        }
        let minted = Utc::now();
        let token = self
            .client
            .mint_token(&access.owner, &access.repo, access.request)
            .await?;
        before_use(&token.token);
        let mut current = access.lock();
        let old = std::mem::replace(&mut current.token, token);
        current.minted = minted;
        current.retired.push(old);
        Ok(true)
    }

    /// Opens the pull request for a pushed run branch.
    pub async fn open_pull(
        &self,
        access: &RepoAccess,
        pull: &NewPull,
    ) -> Result<errand_github::Pull, errand_github::GithubError> {
        self.client
            .create_pull(&access.token(), &access.owner, &access.repo, pull)
            .await
    }

    /// Comments on issue (or pull request) `number` with a token that may only
    /// write issues of that one repository, revoked right after.
    pub async fn comment(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        body: &str,
    ) -> Result<String, errand_github::GithubError> {
        let token = self
            .client
            .mint_token(owner, repo, TokenRequest::comment())
            .await?;
        let result = self.client.comment(&token, owner, repo, number, body).await;
        if let Err(e) = self.client.revoke(&token).await {
            tracing::warn!("revoking a comment token failed: {e}");
        }
        result
    }

    /// Revokes the run's token, and those it replaced that are still alive
    /// (GitHub refuses to revoke expired ones); failures are logged, not fatal
    /// (each expires within the hour).
    pub async fn revoke(&self, access: &RepoAccess) {
        let Current { token, retired, .. } = access.lock().clone();
        let now = Utc::now();
        for old in retired.iter().filter(|t| !t.is_expired(now)) {
            if let Err(e) = self.client.revoke(old).await {
                tracing::warn!(repo = %format!("{}/{}", access.owner, access.repo), "revoking a replaced GitHub token failed: {e}");
            }
        }
        if let Err(e) = self.client.revoke(&token).await {
            tracing::warn!(repo = %format!("{}/{}", access.owner, access.repo), "revoking the run's GitHub token failed: {e}");
        }
    }
}

/// Renews an `--agent-git` run's token while the agent works, so the
/// credential helper always hands out a live one. Each new token joins the
/// run's redactor before the helper can hand it out; old ones are revoked when the run ends.
pub struct Renewer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Renewer {
    /// Renewals are recorded as notes, returned by [`Renewer::finish`].
    const MAX_NOTES: usize = 20;
    const RETRY: Duration = Duration::from_secs(15);

    /// `before_use` sees each new token first (see [`GithubForge::renew_if_expiring`]).
    pub fn start(
        gh: Arc<GithubForge>,
        access: RepoAccess,
        before_use: impl Fn(&str) + Send + Sync + 'static,
    ) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(Self::renew(gh, access, before_use, stop.clone()));
        Renewer { stop, task }
    }

    async fn renew(
        gh: Arc<GithubForge>,
        access: RepoAccess,
        before_use: impl Fn(&str),
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
            // Not cancelled from here on: a minted token is always recorded, so it is revoked.
            match gh.renew_if_expiring(&access, &before_use).await {
                Ok(true) => note(format!(
                    "renewed the run's token for {}/{} while the agent works{} (the old one is revoked when the run ends)",
                    access.owner,
                    access.repo,
                    access
                        .token()
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
    pub async fn finish(self) -> Vec<String> {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

/// The pull request's title: the first line of the commit message errand wrote.
pub fn pull_title(message: &str) -> String {
    let first = message.lines().next().unwrap_or("errand run").trim();
    if first.chars().count() > 72 {
        let cut: String = first.chars().take(71).collect();
        format!("{cut}…")
    } else {
        first.to_string()
    }
}

/// The pull request's body: the agent's summary, what changed, and where to see the trace.
pub fn pull_body(
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

    #[test]
    fn titles_are_one_short_line() {
        assert_eq!(pull_title("Fix the test\n\nbody"), "Fix the test");
        let long = "x".repeat(100);
        assert_eq!(pull_title(&long).chars().count(), 72);
    }

    #[test]
    fn bodies_link_the_trace() {
        let b = pull_body(
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

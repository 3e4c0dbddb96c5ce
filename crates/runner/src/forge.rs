//! GitHub repositories (`github:owner/repo`): errand mints an installation
//! token scoped to that one repository for each run, uses it only in host-side
//! git commands (clone into the outbox, push from it) and API calls (the pull
//! request), and revokes it when the run ends. The token never enters a
//! `.git/config`, an environment or the event log (the run's redactor masks
//! it), and it enters the sandbox only for `--agent-git` runs, over the
//! credential helper's socket into git's memory ([`crate::credential`]).

use errand_github::{GithubClient, NewPull, RepoToken, TokenRequest};

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

/// A run's access to one GitHub repository.
pub struct RepoAccess {
    pub owner: String,
    pub repo: String,
    pub token: RepoToken,
    pub url: String,
}

impl RepoAccess {
    pub fn git_auth(&self) -> errand_git::GitAuth {
        errand_git::GitAuth::header(self.token.basic_auth_header())
    }
}

impl GithubForge {
    /// A token for `owner/repo`: read-only unless the run may push.
    pub async fn access(
        &self,
        owner: &str,
        repo: &str,
        push: bool,
    ) -> Result<RepoAccess, errand_github::GithubError> {
        let mut req = if push {
            TokenRequest::write()
        } else {
            TokenRequest::read()
        };
        if self.workflows && push {
            req = req.with_workflows();
        }
        let token = self.client.mint_token(owner, repo, req).await?;
        Ok(RepoAccess {
            owner: owner.to_string(),
            repo: repo.to_string(),
            url: errand_github::git_url(&self.git_base, owner, repo),
            token,
        })
    }

    /// Opens the pull request for a pushed run branch.
    pub async fn open_pull(
        &self,
        access: &RepoAccess,
        pull: &NewPull,
    ) -> Result<errand_github::Pull, errand_github::GithubError> {
        self.client
            .create_pull(&access.token, &access.owner, &access.repo, pull)
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

    /// Revokes the run's token; failures are logged, not fatal (it expires in an hour).
    pub async fn revoke(&self, access: &RepoAccess) {
        if let Err(e) = self.client.revoke(&access.token).await {
            tracing::warn!(repo = %format!("{}/{}", access.owner, access.repo), "revoking the run's GitHub token failed: {e}");
        }
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

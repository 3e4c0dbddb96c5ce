//! GitHub repositories (`github:owner/repo`) through errand's GitHub App: an
//! installation token scoped to the run's one repository, pull requests, and
//! issue comments for the service's GitHub integration.

use errand_github::{GithubClient, NewPull, RepoToken, TokenRequest};

use super::{Change, Credential, Forge, ForgeError, NewChange, RepoAccess};

/// The GitHub App errand acts as.
pub struct GithubForge {
    /// The App's API client (github.com, GitHub Enterprise, or a test server).
    pub client: GithubClient,
    /// Where repositories are cloned from: `https://github.com`, a GitHub
    /// Enterprise host, or a test server.
    pub git_base: String,
    /// Also ask for `workflows: write`, letting a run change `.github/workflows/`.
    /// Off unless configured: without it GitHub itself refuses such pushes.
    pub workflows: bool,
}

impl GithubForge {
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
}

/// The installation token a credential of `access` is, as the client takes it.
fn token(access: &RepoAccess, credential: &Credential) -> RepoToken {
    RepoToken {
        token: credential.secret.clone(),
        expires_at: credential.expires_at,
        permissions: credential.permissions.clone(),
        repositories: vec![access.repo.clone()],
        owner: access.owner.clone(),
        repo: access.repo.clone(),
    }
}

#[async_trait::async_trait]
impl Forge for GithubForge {
    fn name(&self) -> &'static str {
        "GitHub"
    }

    fn change_name(&self) -> &'static str {
        "pull request"
    }

    fn clone_url(&self, owner: &str, repo: &str) -> String {
        errand_github::git_url(&self.git_base, owner, repo)
    }

    /// An installation token for `owner/repo` alone: `contents: read`, or
    /// with `push` `contents` and `pull_requests: write` (and `workflows:
    /// write` when configured).
    async fn mint(&self, owner: &str, repo: &str, push: bool) -> Result<Credential, ForgeError> {
        let mut request = if push {
            TokenRequest::write()
        } else {
            TokenRequest::read()
        };
        if self.workflows && push {
            request = request.with_workflows();
        }
        let token = self.client.mint_token(owner, repo, request).await?;
        Ok(Credential {
            auth_header: token.basic_auth_header(),
            secret: token.token,
            expires_at: token.expires_at,
            permissions: token.permissions,
        })
    }

    async fn revoke_credential(
        &self,
        access: &RepoAccess,
        credential: &Credential,
    ) -> Result<(), ForgeError> {
        Ok(self.client.revoke(&token(access, credential)).await?)
    }

    async fn open_change(
        &self,
        access: &RepoAccess,
        change: &NewChange,
    ) -> Result<Change, ForgeError> {
        let pull = NewPull {
            title: change.title.clone(),
            head: change.head.clone(),
            base: change.base.clone(),
            body: change.body.clone(),
            draft: false,
        };
        let pr = self
            .client
            .create_pull(
                &token(access, &access.credential()),
                &access.owner,
                &access.repo,
                &pull,
            )
            .await?;
        Ok(Change {
            number: pr.number,
            url: pr.html_url,
        })
    }
}

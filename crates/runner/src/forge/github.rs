//! GitHub repositories (`github:owner/repo`) through errand's GitHub App: an
//! installation token scoped to the run's one repository, pull requests, and
//! issue comments for the service's GitHub integration.

use errand_github::{GithubClient, NewPull, RepoToken, TokenRequest};

use super::{
    Change, Credential, Forge, ForgeError, NewChange, RepoAccess, ThreadComment, ThreadContext,
    ThreadReviewComment,
};

/// The most comments of a thread read for a run's context (the newest).
pub const MAX_THREAD_COMMENTS: usize = 50;
/// The most changed files of a pull request listed.
pub const MAX_PULL_FILES: usize = 100;
/// The most pages (of 100) of review comments read.
const MAX_REVIEW_PAGES: u32 = 3;

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

/// A failed check, as errand tells an agent about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiFailure {
    /// The failing check's (job's) name.
    pub check: String,
    /// The failing step, when the check is an Actions job that names one.
    pub step: Option<String>,
    /// The end of its log (or the check's own report when it has no Actions log), bounded.
    pub log_tail: String,
}

/// How much of a failing job's log a CI fix is given.
pub const CI_LOG_TAIL: usize = 8 * 1024;

impl GithubForge {
    /// Runs `f` with a token of `request` for `owner/repo` alone, revoked right after.
    async fn with_token<T, F, Fut>(
        &self,
        owner: &str,
        repo: &str,
        request: TokenRequest,
        f: F,
    ) -> Result<T, errand_github::GithubError>
    where
        F: FnOnce(RepoToken) -> Fut,
        Fut: std::future::Future<Output = Result<T, errand_github::GithubError>>,
    {
        let token = self.client.mint_token(owner, repo, request).await?;
        let result = f(token.clone()).await;
        if let Err(e) = self.client.revoke(&token).await {
            tracing::warn!("revoking a short-lived token failed: {e}");
        }
        result
    }

    /// A pull request (its head and base), read with a token that may only read.
    pub async fn pull(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<errand_github::PullRequest, errand_github::GithubError> {
        self.with_token(owner, repo, TokenRequest::thread(), |t| async move {
            self.client.pull(&t, owner, repo, number).await
        })
        .await
    }

    /// What `login` may do in `owner/repo` on GitHub (`admin`, `maintain`, `write`, …, `none`).
    pub async fn permission(
        &self,
        owner: &str,
        repo: &str,
        login: &str,
    ) -> Result<String, errand_github::GithubError> {
        self.with_token(owner, repo, TokenRequest::thread(), |t| async move {
            self.client.permission(&t, owner, repo, login).await
        })
        .await
    }

    /// Posts a comment that errand later edits; its id.
    pub async fn post_status(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        body: &str,
    ) -> Result<u64, errand_github::GithubError> {
        self.with_token(owner, repo, TokenRequest::comment(), |t| async move {
            self.client
                .post_comment(&t, owner, repo, number, body)
                .await
        })
        .await
        .map(|c| c.id)
    }

    /// Replaces the text of errand's comment `id`.
    pub async fn edit_status(
        &self,
        owner: &str,
        repo: &str,
        id: u64,
        body: &str,
    ) -> Result<(), errand_github::GithubError> {
        self.with_token(owner, repo, TokenRequest::comment(), |t| async move {
            self.client.edit_comment(&t, owner, repo, id, body).await
        })
        .await
        .map(|_| ())
    }

    /// What failed in `failure`: the first failed job (of a workflow run or
    /// check suite, or the check run's own), its failed step and the end of
    /// its log, read with a token that may only read checks and Actions.
    pub async fn ci_failure(
        &self,
        failure: &errand_github::CheckFailure,
    ) -> Result<CiFailure, errand_github::GithubError> {
        let (owner, repo) = (failure.owner.as_str(), failure.repo.as_str());
        self.with_token(owner, repo, TokenRequest::ci(), |t| async move {
            let c = &self.client;
            let job_id = match failure.kind {
                "workflow_run" => c
                    .workflow_jobs(&t, owner, repo, failure.id)
                    .await?
                    .into_iter()
                    .find(|j| matches!(j.conclusion.as_deref(), Some("failure" | "timed_out")))
                    .map(|j| j.id),
                "check_suite" => c
                    .suite_check_runs(&t, owner, repo, failure.id)
                    .await?
                    .into_iter()
                    .find(|r| r.failed())
                    .map(|r| r.id),
                _ => Some(failure.id),
            };
            let Some(job_id) = job_id else {
                return Ok(CiFailure {
                    check: failure.name.clone(),
                    step: None,
                    log_tail: format!("({} {} reported no failed job)", failure.kind, failure.name),
                });
            };
            let run = c.check_run(&t, owner, repo, job_id).await?;
            match c.job(&t, owner, repo, job_id).await? {
                Some(job) => {
                    let log_tail = c.job_log_tail(&t, owner, repo, job.id, CI_LOG_TAIL).await?;
                    Ok(CiFailure {
                        check: job.name.clone(),
                        step: job.failed_step().map(|s| s.name.clone()),
                        log_tail,
                    })
                }
                // Not an Actions job: what the check reported is all there is.
                None => {
                    let o = &run.output;
                    let report = [&o.title, &o.summary, &o.text]
                        .iter()
                        .filter_map(|x| x.as_deref())
                        .collect::<Vec<_>>()
                        .join("\n\n");
                    let tail_start = report.len().saturating_sub(CI_LOG_TAIL);
                    let mut start = tail_start;
                    while !report.is_char_boundary(start) {
                        start += 1;
                    }
                    Ok(CiFailure {
                        check: run.name.clone(),
                        step: None,
                        log_tail: report[start..].to_string(),
                    })
                }
            }
        })
        .await
    }

    /// Reads what [`Forge::thread`] gives, with a token that may only read
    /// issues and pull requests of `owner/repo`, revoked right after.
    async fn read_thread(
        &self,
        owner: &str,
        repo: &str,
        thread: &errand_core::ThreadRef,
    ) -> Result<ThreadContext, errand_github::GithubError> {
        let token = self
            .client
            .mint_token(owner, repo, TokenRequest::thread())
            .await?;
        let result = self.read_with(&token, owner, repo, thread.number).await;
        if let Err(e) = self.client.revoke(&token).await {
            tracing::warn!("revoking a thread-reading token failed: {e}");
        }
        result
    }

    async fn read_with(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<ThreadContext, errand_github::GithubError> {
        let c = &self.client;
        let issue = c.issue(token, owner, repo, number).await?;
        let recent = c
            .recent_comments(
                token,
                owner,
                repo,
                number,
                issue.comments,
                MAX_THREAD_COMMENTS,
            )
            .await?;
        let login = |a: &Option<errand_github::Account>| {
            a.as_ref().map(|a| a.login.clone()).unwrap_or_default()
        };
        let mut out = ThreadContext {
            number,
            pull_request: issue.is_pull_request(),
            url: issue.html_url.clone(),
            title: issue.title.clone(),
            body: issue.body.clone().unwrap_or_default(),
            author: login(&issue.user),
            labels: issue.labels.iter().map(|l| l.name.clone()).collect(),
            comments: recent
                .comments
                .iter()
                .rev()
                .map(|cm| ThreadComment {
                    id: cm.id,
                    author: login(&cm.user),
                    at: cm.created_at.to_rfc3339(),
                    body: cm.body.clone().unwrap_or_default(),
                })
                .collect(),
            older_comments: recent.omitted,
            ..ThreadContext::default()
        };
        if out.pull_request {
            let pull = c.pull(token, owner, repo, number).await?;
            out.head = Some((pull.head.branch.clone(), pull.is_from_fork(owner, repo)));
            out.base = Some(pull.base.branch.clone());
            let files = c
                .pull_files(token, owner, repo, number, MAX_PULL_FILES + 1)
                .await?;
            out.more_files = files.len() > MAX_PULL_FILES;
            out.files = files
                .into_iter()
                .take(MAX_PULL_FILES)
                .map(|f| (f.status, f.filename, f.additions, f.deletions))
                .collect();
            let reviews = c
                .review_comments(token, owner, repo, number, MAX_REVIEW_PAGES)
                .await?;
            out.review_comments = reviews
                .into_iter()
                .rev()
                .map(|r| ThreadReviewComment {
                    id: r.id,
                    author: login(&r.user),
                    path: r.path,
                    lines: (r.start_line, r.line),
                    body: r.body.unwrap_or_default(),
                })
                .collect();
        }
        Ok(out)
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

    fn change_url(&self, owner: &str, repo: &str, number: u64) -> String {
        format!(
            "{}/{owner}/{repo}/pull/{number}",
            self.git_base.trim_end_matches('/')
        )
    }

    async fn thread(
        &self,
        owner: &str,
        repo: &str,
        thread: &errand_core::ThreadRef,
    ) -> Result<ThreadContext, ForgeError> {
        Ok(self.read_thread(owner, repo, thread).await?)
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

    /// The App's installations' repositories (see
    /// [`errand_github::GithubClient::installed_repositories`]).
    async fn repositories(&self) -> Result<Vec<String>, ForgeError> {
        Ok(self
            .client
            .installed_repositories()
            .await?
            .into_iter()
            .map(|full| format!("github:{full}"))
            .collect())
    }

    async fn delete_branch(&self, access: &RepoAccess, branch: &str) -> Result<(), ForgeError> {
        Ok(self
            .client
            .delete_branch(
                &token(access, &access.credential()),
                &access.owner,
                &access.repo,
                branch,
            )
            .await?)
    }

    async fn close_change(&self, access: &RepoAccess, number: u64) -> Result<(), ForgeError> {
        Ok(self
            .client
            .close_pull(
                &token(access, &access.credential()),
                &access.owner,
                &access.repo,
                number,
            )
            .await?)
    }

    async fn comment_change(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        body: &str,
    ) -> Result<(), ForgeError> {
        self.comment(owner, repo, number, body).await?;
        Ok(())
    }
}

//! Reading issues, pull requests and checks: what a run started from GitHub
//! is given as context, and what errand needs to decide how to answer a
//! mention or a failed check. Every call takes an installation token scoped
//! to one repository ([`crate::TokenRequest::thread`], [`crate::TokenRequest::ci`]).
//!
//! Everything read here was written by someone on GitHub: callers present it
//! to the agent as data, never as instructions.

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::check_name;
use crate::client::{parse, status_error, GithubClient, RepoToken};
use crate::error::{GithubError, Result};

/// GitHub's largest page.
const PER_PAGE: u64 = 100;

/// A GitHub account as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Login.
    pub login: String,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// A label on an issue or pull request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Its name.
    pub name: String,
}

/// An issue (or the issue side of a pull request).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Issue {
    /// Its number.
    pub number: u64,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Markdown body.
    #[serde(default)]
    pub body: Option<String>,
    /// Who opened it.
    #[serde(default)]
    pub user: Option<Account>,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<Label>,
    /// `open` or `closed`.
    #[serde(default)]
    pub state: String,
    /// How many comments it has.
    #[serde(default)]
    pub comments: u64,
    /// Its web page.
    #[serde(default)]
    pub html_url: String,
    /// Present on pull requests.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

impl Issue {
    /// Whether this is a pull request.
    pub fn is_pull_request(&self) -> bool {
        self.pull_request.is_some()
    }
}

/// A comment in an issue's or pull request's conversation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssueComment {
    /// Its id.
    pub id: u64,
    /// Markdown.
    #[serde(default)]
    pub body: Option<String>,
    /// Who wrote it.
    #[serde(default)]
    pub user: Option<Account>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// The most recent comments of a conversation, and how many older ones were left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentComments {
    /// Oldest first, ending with the newest.
    pub comments: Vec<IssueComment>,
    /// How many older comments were not fetched.
    pub omitted: u64,
}

/// A repository as a pull request's head or base names it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepoName {
    /// `owner/repo`.
    pub full_name: String,
    /// Whether it is a fork.
    #[serde(default)]
    pub fork: bool,
}

/// One end of a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullEnd {
    /// The branch.
    #[serde(rename = "ref")]
    pub branch: String,
    /// Its commit.
    pub sha: String,
    /// The repository it lives in (`None` when that repository was deleted).
    #[serde(default)]
    pub repo: Option<RepoName>,
}

/// A pull request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequest {
    /// Its number.
    pub number: u64,
    /// Title.
    #[serde(default)]
    pub title: String,
    /// Markdown body.
    #[serde(default)]
    pub body: Option<String>,
    /// Who opened it.
    #[serde(default)]
    pub user: Option<Account>,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<Label>,
    /// `open` or `closed`.
    #[serde(default)]
    pub state: String,
    /// Its web page.
    #[serde(default)]
    pub html_url: String,
    /// The branch with the changes.
    pub head: PullEnd,
    /// The branch it merges into.
    pub base: PullEnd,
}

impl PullRequest {
    /// Whether its head lives in another repository than `owner/repo` (a fork).
    pub fn is_from_fork(&self, owner: &str, repo: &str) -> bool {
        match &self.head.repo {
            Some(r) => !r.full_name.eq_ignore_ascii_case(&format!("{owner}/{repo}")),
            // The fork was deleted: not this repository's branch either.
            None => true,
        }
    }
}

/// A file a pull request changes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullFile {
    /// Path.
    pub filename: String,
    /// `added`, `modified`, `removed`, `renamed` …
    #[serde(default)]
    pub status: String,
    /// Lines added.
    #[serde(default)]
    pub additions: u64,
    /// Lines removed.
    #[serde(default)]
    pub deletions: u64,
}

/// A review comment: on lines of a pull request's diff.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReviewComment {
    /// Its id.
    pub id: u64,
    /// Markdown.
    #[serde(default)]
    pub body: Option<String>,
    /// Who wrote it.
    #[serde(default)]
    pub user: Option<Account>,
    /// The file.
    #[serde(default)]
    pub path: String,
    /// The last line it refers to (in the file as of its commit).
    #[serde(default)]
    pub line: Option<u64>,
    /// The first line of a multi-line comment.
    #[serde(default)]
    pub start_line: Option<u64>,
    /// `LEFT` (the base) or `RIGHT` (the change).
    #[serde(default)]
    pub side: Option<String>,
    /// The diff around the lines.
    #[serde(default)]
    pub diff_hunk: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A check run (a GitHub Actions job is one).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckRun {
    /// Its id (for Actions, the job's id too).
    pub id: u64,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// The commit it checked.
    #[serde(default)]
    pub head_sha: String,
    /// `queued`, `in_progress`, `completed`.
    #[serde(default)]
    pub status: String,
    /// `success`, `failure`, `timed_out` … once completed.
    #[serde(default)]
    pub conclusion: Option<String>,
    /// What it reported.
    #[serde(default)]
    pub output: CheckOutput,
    /// The App that ran it (`github-actions` for Actions).
    #[serde(default)]
    pub app: Option<CheckApp>,
}

impl CheckRun {
    /// Whether it completed with a failure errand may try to fix.
    pub fn failed(&self) -> bool {
        matches!(self.conclusion.as_deref(), Some("failure" | "timed_out"))
    }
}

/// A check run's report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CheckOutput {
    /// One line.
    #[serde(default)]
    pub title: Option<String>,
    /// Markdown.
    #[serde(default)]
    pub summary: Option<String>,
    /// More markdown.
    #[serde(default)]
    pub text: Option<String>,
}

/// The App behind a check run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckApp {
    /// `github-actions`, …
    #[serde(default)]
    pub slug: String,
}

/// A GitHub Actions job.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Job {
    /// Its id (also its check run's).
    pub id: u64,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its conclusion once completed.
    #[serde(default)]
    pub conclusion: Option<String>,
    /// The commit.
    #[serde(default)]
    pub head_sha: String,
    /// Its steps.
    #[serde(default)]
    pub steps: Vec<JobStep>,
}

impl Job {
    /// The first step that failed.
    pub fn failed_step(&self) -> Option<&JobStep> {
        self.steps
            .iter()
            .find(|s| matches!(s.conclusion.as_deref(), Some("failure" | "timed_out")))
    }
}

/// A step of a job.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct JobStep {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its position.
    #[serde(default)]
    pub number: u64,
    /// Its conclusion.
    #[serde(default)]
    pub conclusion: Option<String>,
}

/// A comment errand posted or edited.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PostedComment {
    /// Its id (to edit it later).
    pub id: u64,
    /// Its web address.
    pub html_url: String,
}

#[derive(Deserialize)]
struct CheckRuns {
    #[serde(default)]
    check_runs: Vec<CheckRun>,
}

#[derive(Deserialize)]
struct Jobs {
    #[serde(default)]
    jobs: Vec<Job>,
}

#[derive(Deserialize)]
struct Permission {
    #[serde(default)]
    permission: String,
}

#[derive(Serialize)]
struct Body<'a> {
    body: &'a str,
}

fn names(owner: &str, repo: &str) -> Result<()> {
    check_name(owner)?;
    check_name(repo)
}

impl GithubClient {
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        token: &RepoToken,
        path: &str,
        endpoint: &'static str,
    ) -> Result<T> {
        let resp = self.request(Method::GET, path, &token.token).send().await?;
        parse(resp, endpoint).await
    }

    /// An issue or pull request's issue side (`GET /repos/{o}/{r}/issues/{n}`).
    pub async fn issue(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<Issue> {
        names(owner, repo)?;
        self.get(
            token,
            &format!("/repos/{owner}/{repo}/issues/{number}"),
            "GET /repos/{owner}/{repo}/issues/{n}",
        )
        .await
    }

    /// The newest `max` comments of issue `number`, which has `total` of them
    /// (GitHub lists oldest first: the last pages are read, newest first, and
    /// the older ones counted as omitted).
    pub async fn recent_comments(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        number: u64,
        total: u64,
        max: usize,
    ) -> Result<RecentComments> {
        names(owner, repo)?;
        let mut newest_first: Vec<IssueComment> = Vec::new();
        let mut page = total.div_ceil(PER_PAGE).max(1);
        while page >= 1 && newest_first.len() < max {
            let mut got: Vec<IssueComment> = self
                .get(
                    token,
                    &format!(
                        "/repos/{owner}/{repo}/issues/{number}/comments?per_page={PER_PAGE}&page={page}"
                    ),
                    "GET /repos/{owner}/{repo}/issues/{n}/comments",
                )
                .await?;
            let last_page = got.is_empty();
            got.reverse();
            newest_first.extend(got);
            if last_page && page == 1 {
                break;
            }
            page -= 1;
        }
        newest_first.truncate(max);
        let omitted = total.saturating_sub(newest_first.len() as u64);
        newest_first.reverse();
        Ok(RecentComments {
            comments: newest_first,
            omitted,
        })
    }

    /// A pull request (`GET /repos/{o}/{r}/pulls/{n}`).
    pub async fn pull(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<PullRequest> {
        names(owner, repo)?;
        self.get(
            token,
            &format!("/repos/{owner}/{repo}/pulls/{number}"),
            "GET /repos/{owner}/{repo}/pulls/{n}",
        )
        .await
    }

    /// The first `max` files a pull request changes (GitHub lists at most 3000).
    pub async fn pull_files(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        number: u64,
        max: usize,
    ) -> Result<Vec<PullFile>> {
        names(owner, repo)?;
        let mut out = Vec::new();
        let mut page = 1;
        while out.len() < max {
            let got: Vec<PullFile> = self
                .get(
                    token,
                    &format!(
                        "/repos/{owner}/{repo}/pulls/{number}/files?per_page={PER_PAGE}&page={page}"
                    ),
                    "GET /repos/{owner}/{repo}/pulls/{n}/files",
                )
                .await?;
            let full = got.len() as u64 == PER_PAGE;
            out.extend(got);
            if !full {
                break;
            }
            page += 1;
        }
        out.truncate(max);
        Ok(out)
    }

    /// The review comments of a pull request, oldest first, at most `max`
    /// pages of 100 (the newest are at the end).
    pub async fn review_comments(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        number: u64,
        max_pages: u32,
    ) -> Result<Vec<ReviewComment>> {
        names(owner, repo)?;
        let mut out = Vec::new();
        for page in 1..=max_pages.max(1) {
            let got: Vec<ReviewComment> = self
                .get(
                    token,
                    &format!(
                        "/repos/{owner}/{repo}/pulls/{number}/comments?per_page={PER_PAGE}&page={page}"
                    ),
                    "GET /repos/{owner}/{repo}/pulls/{n}/comments",
                )
                .await?;
            let full = got.len() as u64 == PER_PAGE;
            out.extend(got);
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// What `login` may do in `owner/repo`: `admin`, `maintain`, `write`,
    /// `triage`, `read` or `none` (`GET /repos/{o}/{r}/collaborators/{login}/permission`;
    /// someone GitHub does not know as a collaborator is `none`).
    pub async fn permission(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        login: &str,
    ) -> Result<String> {
        names(owner, repo)?;
        if login.is_empty()
            || login.len() > 39
            || !login
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(GithubError::InvalidName(login.to_string()));
        }
        let resp = self
            .request(
                Method::GET,
                &format!("/repos/{owner}/{repo}/collaborators/{login}/permission"),
                &token.token,
            )
            .send()
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok("none".to_string());
        }
        let p: Permission = parse(
            resp,
            "GET /repos/{owner}/{repo}/collaborators/{user}/permission",
        )
        .await?;
        Ok(p.permission)
    }

    /// Comments on an issue or pull request; returns the comment's id and address.
    pub async fn post_comment(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        number: u64,
        body: &str,
    ) -> Result<PostedComment> {
        names(owner, repo)?;
        let resp = self
            .request(
                Method::POST,
                &format!("/repos/{owner}/{repo}/issues/{number}/comments"),
                &token.token,
            )
            .json(&Body { body })
            .send()
            .await?;
        parse(resp, "POST /repos/{owner}/{repo}/issues/{n}/comments").await
    }

    /// Replaces the text of comment `id` (`PATCH /repos/{o}/{r}/issues/comments/{id}`).
    pub async fn edit_comment(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        id: u64,
        body: &str,
    ) -> Result<PostedComment> {
        names(owner, repo)?;
        let resp = self
            .request(
                Method::PATCH,
                &format!("/repos/{owner}/{repo}/issues/comments/{id}"),
                &token.token,
            )
            .json(&Body { body })
            .send()
            .await?;
        parse(resp, "PATCH /repos/{owner}/{repo}/issues/comments/{id}").await
    }

    /// A check run (`GET /repos/{o}/{r}/check-runs/{id}`).
    pub async fn check_run(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        id: u64,
    ) -> Result<CheckRun> {
        names(owner, repo)?;
        self.get(
            token,
            &format!("/repos/{owner}/{repo}/check-runs/{id}"),
            "GET /repos/{owner}/{repo}/check-runs/{id}",
        )
        .await
    }

    /// The check runs of a check suite (first 100).
    pub async fn suite_check_runs(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        suite: u64,
    ) -> Result<Vec<CheckRun>> {
        names(owner, repo)?;
        let runs: CheckRuns = self
            .get(
                token,
                &format!(
                    "/repos/{owner}/{repo}/check-suites/{suite}/check-runs?per_page={PER_PAGE}"
                ),
                "GET /repos/{owner}/{repo}/check-suites/{id}/check-runs",
            )
            .await?;
        Ok(runs.check_runs)
    }

    /// The jobs of a workflow run (first 100).
    pub async fn workflow_jobs(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        run: u64,
    ) -> Result<Vec<Job>> {
        names(owner, repo)?;
        let jobs: Jobs = self
            .get(
                token,
                &format!("/repos/{owner}/{repo}/actions/runs/{run}/jobs?per_page={PER_PAGE}"),
                "GET /repos/{owner}/{repo}/actions/runs/{id}/jobs",
            )
            .await?;
        Ok(jobs.jobs)
    }

    /// A GitHub Actions job (`GET /repos/{o}/{r}/actions/jobs/{id}`); `None`
    /// when there is none (a check run of another App).
    pub async fn job(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        id: u64,
    ) -> Result<Option<Job>> {
        names(owner, repo)?;
        let resp = self
            .request(
                Method::GET,
                &format!("/repos/{owner}/{repo}/actions/jobs/{id}"),
                &token.token,
            )
            .send()
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        parse(resp, "GET /repos/{owner}/{repo}/actions/jobs/{id}")
            .await
            .map(Some)
    }

    /// The last `max_bytes` of a job's log (`GET /repos/{o}/{r}/actions/jobs/{id}/logs`,
    /// which redirects to a short-lived download address). At most
    /// [`MAX_LOG_DOWNLOAD`] bytes are read, keeping only the tail; the text is
    /// cut at a line start when it was cut at all.
    pub async fn job_log_tail(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        id: u64,
        max_bytes: usize,
    ) -> Result<String> {
        names(owner, repo)?;
        let mut resp = self
            .request(
                Method::GET,
                &format!("/repos/{owner}/{repo}/actions/jobs/{id}/logs"),
                &token.token,
            )
            .send()
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(resp).await);
        }
        let mut tail: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
        let mut read = 0usize;
        let mut cut = false;
        while let Some(chunk) = resp.chunk().await? {
            read += chunk.len();
            tail.extend(chunk.iter());
            if tail.len() > max_bytes {
                let excess = tail.len() - max_bytes;
                tail.drain(..excess);
                cut = true;
            }
            if read > MAX_LOG_DOWNLOAD {
                break;
            }
        }
        let bytes: Vec<u8> = tail.into_iter().collect();
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if cut {
            if let Some(nl) = text.find('\n') {
                text = text[nl + 1..].to_string();
            }
        }
        Ok(text)
    }
}

/// The most of a job's log [`GithubClient::job_log_tail`] downloads.
pub const MAX_LOG_DOWNLOAD: usize = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forks_are_told_apart_by_the_heads_repository() {
        let end = |full: Option<&str>| PullEnd {
            branch: "b".into(),
            sha: "s".into(),
            repo: full.map(|f| RepoName {
                full_name: f.into(),
                fork: false,
            }),
        };
        let pull = |head| PullRequest {
            number: 1,
            title: String::new(),
            body: None,
            user: None,
            labels: vec![],
            state: "open".into(),
            html_url: String::new(),
            head,
            base: end(Some("acme/widgets")),
        };
        assert!(!pull(end(Some("Acme/Widgets"))).is_from_fork("acme", "widgets"));
        assert!(pull(end(Some("mallory/widgets"))).is_from_fork("acme", "widgets"));
        assert!(pull(end(None)).is_from_fork("acme", "widgets"));
    }

    #[test]
    fn a_failed_step_is_the_first_that_failed() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "id": 1, "name": "test", "conclusion": "failure", "head_sha": "abc",
            "steps": [
                {"name": "checkout", "number": 1, "conclusion": "success"},
                {"name": "cargo test", "number": 2, "conclusion": "failure"},
                {"name": "upload", "number": 3, "conclusion": "skipped"}
            ]
        }))
        .unwrap();
        assert_eq!(
            job.failed_step().map(|s| s.name.as_str()),
            Some("cargo test")
        );
    }
}

//! The GitHub REST client: installations, installation tokens, pulls, comments.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::EncodingKey;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth::{sign, AppCredentials};
use crate::check_name;
use crate::error::{GithubError, Result};

/// The public GitHub API. GitHub Enterprise Server uses `https://HOST/api/v3`.
pub const DEFAULT_API_BASE: &str = "https://api.github.com";
/// The REST API version sent as `X-GitHub-Api-Version`.
pub const GITHUB_API_VERSION: &str = "2022-11-28";
/// The `User-Agent` sent with every request (GitHub requires one).
pub const USER_AGENT: &str = "errand";

/// How much a per-run token may do to repository contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `contents: read`, `metadata: read`: clone and fetch.
    Read,
    /// `contents: write`, `pull_requests: write`, `metadata: read`: push and open pull requests.
    Write,
    /// `issues: write`, `metadata: read`: comment on issues and pull requests, nothing else.
    Comment,
    /// `issues: read`, `pull_requests: read`, `metadata: read`: read an issue or a
    /// pull request (title, body, labels, discussion, changed files, review
    /// comments) and a collaborator's permission, to give a run its context.
    Thread,
    /// `checks: read`, `actions: read`, `metadata: read`: read a failed check,
    /// its job's steps and its log, for a run that fixes CI.
    Ci,
}

/// What to ask for when minting an installation token.
///
/// `From<Access>` gives the default (no `workflows`), so `mint_token(o, r, Access::Read)` works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenRequest {
    /// Contents access.
    pub access: Access,
    /// Also request `workflows: write` (lets pushes change `.github/workflows/`). Off by default.
    pub workflows: bool,
}

impl From<Access> for TokenRequest {
    fn from(access: Access) -> Self {
        Self {
            access,
            workflows: false,
        }
    }
}

impl TokenRequest {
    /// Read-only contents.
    pub fn read() -> Self {
        Access::Read.into()
    }

    /// Contents and pull requests write.
    pub fn write() -> Self {
        Access::Write.into()
    }

    /// Issue comments only.
    pub fn comment() -> Self {
        Access::Comment.into()
    }

    /// Reading issues and pull requests only.
    pub fn thread() -> Self {
        Access::Thread.into()
    }

    /// Reading checks and Actions jobs (and their logs) only.
    pub fn ci() -> Self {
        Access::Ci.into()
    }

    /// The same request plus `workflows: write`.
    pub fn with_workflows(self) -> Self {
        Self {
            workflows: true,
            ..self
        }
    }

    /// The `permissions` object sent to GitHub.
    pub fn permissions(&self) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        p.insert("metadata".to_string(), "read".to_string());
        match self.access {
            Access::Read => {
                p.insert("contents".to_string(), "read".to_string());
            }
            Access::Write => {
                p.insert("contents".to_string(), "write".to_string());
                p.insert("pull_requests".to_string(), "write".to_string());
            }
            Access::Comment => {
                p.insert("issues".to_string(), "write".to_string());
            }
            Access::Thread => {
                p.insert("issues".to_string(), "read".to_string());
                p.insert("pull_requests".to_string(), "read".to_string());
            }
            Access::Ci => {
                p.insert("checks".to_string(), "read".to_string());
                p.insert("actions".to_string(), "read".to_string());
            }
        }
        if self.workflows {
            p.insert("workflows".to_string(), "write".to_string());
        }
        p
    }
}

/// An installation access token scoped to one repository.
///
/// `Debug` redacts the token. Make no assumption about its length or format:
/// it may be a 40-character `ghs_…` string or a ~520-character one with dots.
#[derive(Clone)]
pub struct RepoToken {
    /// The secret. Never log it.
    pub token: String,
    /// When GitHub says it expires (1 hour after minting).
    pub expires_at: Option<DateTime<Utc>>,
    /// Permissions GitHub granted, e.g. `contents: write`.
    pub permissions: BTreeMap<String, String>,
    /// Repository names the token covers.
    pub repositories: Vec<String>,
    /// Owner the token was minted for.
    pub owner: String,
    /// Repository the token was minted for.
    pub repo: String,
}

impl fmt::Debug for RepoToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepoToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("permissions", &self.permissions)
            .field("repositories", &self.repositories)
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .finish()
    }
}

impl RepoToken {
    /// The git `http.extraHeader` value for this token (see [`crate::basic_auth_header`]).
    pub fn basic_auth_header(&self) -> String {
        crate::basic_auth_header(&self.token)
    }

    /// Whether the token has expired at `now` (false when GitHub gave no expiry).
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// A pull request to open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewPull {
    /// Title.
    pub title: String,
    /// Branch with the changes (`branch` or `owner:branch`).
    pub head: String,
    /// Branch to merge into.
    pub base: String,
    /// Markdown description.
    pub body: String,
    /// Open as a draft.
    pub draft: bool,
}

/// A pull request GitHub created.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Pull {
    /// The pull request number.
    pub number: u64,
    /// Its web page.
    pub html_url: String,
}

/// A GitHub App client for one API base (github.com, GitHub Enterprise, or the fake).
#[derive(Clone)]
pub struct GithubClient {
    http: reqwest::Client,
    api_base: String,
    app_id: String,
    key: EncodingKey,
}

impl fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubClient")
            .field("api_base", &self.api_base)
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct InstallationResponse {
    id: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: String,
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    permissions: BTreeMap<String, String>,
    #[serde(default)]
    repositories: Vec<RepositoryRef>,
}

#[derive(Deserialize)]
struct RepositoryRef {
    name: String,
}

#[derive(Deserialize)]
struct CommentResponse {
    html_url: String,
}

#[derive(Serialize)]
struct TokenBody<'a> {
    repositories: [&'a str; 1],
    permissions: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct CommentBody<'a> {
    body: &'a str,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

impl GithubClient {
    /// A client for `api_base` (e.g. [`DEFAULT_API_BASE`] or `https://ghe.example/api/v3`).
    ///
    /// Fails if the private key does not parse or the HTTP client cannot be built.
    pub fn new(api_base: &str, creds: AppCredentials) -> Result<Self> {
        let key = creds.encoding_key()?;
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "X-GitHub-Api-Version",
            HeaderValue::from_static(GITHUB_API_VERSION),
        );
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            http,
            api_base: api_base.trim_end_matches('/').to_string(),
            app_id: creds.app_id,
            key,
        })
    }

    /// The API base URL, without a trailing `/`.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// A fresh App JWT.
    fn app_jwt(&self) -> Result<String> {
        sign(&self.key, &self.app_id, Utc::now())
    }

    pub(crate) fn request(&self, method: Method, path: &str, bearer: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api_base))
            .bearer_auth(bearer)
    }

    /// The installation id of the App on `owner/repo` (`GET /repos/{owner}/{repo}/installation`).
    ///
    /// 404 becomes [`GithubError::NotInstalled`].
    pub async fn installation_id(&self, owner: &str, repo: &str) -> Result<u64> {
        check_name(owner)?;
        check_name(repo)?;
        let jwt = self.app_jwt()?;
        let resp = self
            .request(
                Method::GET,
                &format!("/repos/{owner}/{repo}/installation"),
                &jwt,
            )
            .send()
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(GithubError::NotInstalled {
                repo: format!("{owner}/{repo}"),
            });
        }
        let found: InstallationResponse =
            parse(resp, "GET /repos/{owner}/{repo}/installation").await?;
        Ok(found.id)
    }

    /// Mints an installation token that covers only `owner/repo` with the permissions of `request`.
    ///
    /// A 422 (permissions or repository beyond the installation's grant) becomes
    /// [`GithubError::Scope`]. If GitHub grants more than was requested, the token
    /// is revoked and `Scope` is returned.
    pub async fn mint_token(
        &self,
        owner: &str,
        repo: &str,
        request: impl Into<TokenRequest>,
    ) -> Result<RepoToken> {
        let request = request.into();
        let installation = self.installation_id(owner, repo).await?;
        let jwt = self.app_jwt()?;
        let wanted = request.permissions();
        let body = TokenBody {
            repositories: [repo],
            permissions: wanted.clone(),
        };
        let resp = self
            .request(
                Method::POST,
                &format!("/app/installations/{installation}/access_tokens"),
                &jwt,
            )
            .json(&body)
            .send()
            .await?;
        if resp.status() == StatusCode::UNPROCESSABLE_ENTITY {
            let message = error_message(resp).await;
            return Err(GithubError::Scope { message });
        }
        let got: TokenResponse = parse(resp, "POST /app/installations/{id}/access_tokens").await?;
        let token = RepoToken {
            token: got.token,
            expires_at: got.expires_at,
            permissions: got.permissions,
            repositories: got.repositories.into_iter().map(|r| r.name).collect(),
            owner: owner.to_string(),
            repo: repo.to_string(),
        };
        if let Some(problem) = excess_grant(&wanted, &token) {
            if let Err(e) = self.revoke(&token).await {
                tracing::warn!(error = %e, "could not revoke an over-broad installation token");
            }
            return Err(GithubError::Scope { message: problem });
        }
        tracing::debug!(%owner, %repo, installation, permissions = ?token.permissions, "minted installation token");
        Ok(token)
    }

    /// Revokes `token` (`DELETE /installation/token`, authenticated with the token itself).
    ///
    /// A 401 means the token is already invalid, which counts as success.
    pub async fn revoke(&self, token: &RepoToken) -> Result<()> {
        let resp = self
            .request(Method::DELETE, "/installation/token", &token.token)
            .send()
            .await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::UNAUTHORIZED => Ok(()),
            _ => Err(status_error(resp).await),
        }
    }

    /// Opens a pull request (`POST /repos/{owner}/{repo}/pulls`) with an installation token.
    pub async fn create_pull(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        pull: &NewPull,
    ) -> Result<Pull> {
        check_name(owner)?;
        check_name(repo)?;
        let resp = self
            .request(
                Method::POST,
                &format!("/repos/{owner}/{repo}/pulls"),
                &token.token,
            )
            .json(pull)
            .send()
            .await?;
        parse(resp, "POST /repos/{owner}/{repo}/pulls").await
    }

    /// Comments on an issue or pull request (`POST /repos/{owner}/{repo}/issues/{n}/comments`);
    /// returns the comment's `html_url`.
    pub async fn comment(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        issue_number: u64,
        body: &str,
    ) -> Result<String> {
        check_name(owner)?;
        check_name(repo)?;
        let resp = self
            .request(
                Method::POST,
                &format!("/repos/{owner}/{repo}/issues/{issue_number}/comments"),
                &token.token,
            )
            .json(&CommentBody { body })
            .send()
            .await?;
        let c: CommentResponse =
            parse(resp, "POST /repos/{owner}/{repo}/issues/{n}/comments").await?;
        Ok(c.html_url)
    }
}

/// The most repositories [`GithubClient::installed_repositories`] lists.
pub const MAX_LISTED_REPOS: usize = 1000;

#[derive(Deserialize)]
struct InstallationItem {
    id: u64,
}

#[derive(Deserialize)]
struct RepoList {
    #[serde(default)]
    repositories: Vec<RepoItem>,
}

#[derive(Deserialize)]
struct RepoItem {
    full_name: String,
}

impl GithubClient {
    /// Deletes branch `branch` of `owner/repo` (`DELETE
    /// /repos/{owner}/{repo}/git/refs/heads/{branch}`) with a token that may
    /// write its contents. A branch already gone counts as deleted.
    pub async fn delete_branch(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        branch: &str,
    ) -> Result<()> {
        check_name(owner)?;
        check_name(repo)?;
        // Each byte outside git's plain branch characters is percent-encoded.
        let path: String = branch
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'/' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let resp = self
            .request(
                Method::DELETE,
                &format!("/repos/{owner}/{repo}/git/refs/heads/{path}"),
                &token.token,
            )
            .send()
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            // GitHub answers 422 "Reference does not exist" for a deleted branch.
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(status_error(resp).await),
        }
    }

    /// Closes pull request `number` (`PATCH /repos/{owner}/{repo}/pulls/{n}`,
    /// `state: closed`) with a token that may write pull requests.
    pub async fn close_pull(
        &self,
        token: &RepoToken,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<()> {
        check_name(owner)?;
        check_name(repo)?;
        let resp = self
            .request(
                Method::PATCH,
                &format!("/repos/{owner}/{repo}/pulls/{number}"),
                &token.token,
            )
            .json(&serde_json::json!({ "state": "closed" }))
            .send()
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_error(resp).await)
        }
    }

    /// Every repository the App is installed on, as `owner/repo`, sorted (at
    /// most [`MAX_LISTED_REPOS`]). Per installation, a token that may only
    /// read metadata (GitHub's least permission) lists them and is revoked
    /// right after; it never leaves this process.
    pub async fn installed_repositories(&self) -> Result<Vec<String>> {
        let jwt = self.app_jwt()?;
        let resp = self
            .request(Method::GET, "/app/installations?per_page=100", &jwt)
            .send()
            .await?;
        let installations: Vec<InstallationItem> = parse(resp, "GET /app/installations").await?;
        let mut out = Vec::new();
        for inst in installations {
            let jwt = self.app_jwt()?;
            let resp = self
                .request(
                    Method::POST,
                    &format!("/app/installations/{}/access_tokens", inst.id),
                    &jwt,
                )
                .json(&serde_json::json!({ "permissions": { "metadata": "read" } }))
                .send()
                .await?;
            let got: TokenResponse =
                parse(resp, "POST /app/installations/{id}/access_tokens").await?;
            let token = RepoToken {
                token: got.token,
                expires_at: got.expires_at,
                permissions: got.permissions,
                repositories: Vec::new(),
                owner: String::new(),
                repo: String::new(),
            };
            let listed = self.list_token_repositories(&token, &mut out).await;
            if let Err(e) = self.revoke(&token).await {
                tracing::warn!("revoking a listing token failed: {e}");
            }
            listed?;
            if out.len() >= MAX_LISTED_REPOS {
                break;
            }
        }
        out.sort_by_key(|r| r.to_ascii_lowercase());
        out.dedup();
        out.truncate(MAX_LISTED_REPOS);
        Ok(out)
    }

    /// `GET /installation/repositories`, page by page, into `out`.
    async fn list_token_repositories(
        &self,
        token: &RepoToken,
        out: &mut Vec<String>,
    ) -> Result<()> {
        for page in 1..=MAX_LISTED_REPOS.div_ceil(100) {
            let resp = self
                .request(
                    Method::GET,
                    &format!("/installation/repositories?per_page=100&page={page}"),
                    &token.token,
                )
                .send()
                .await?;
            let list: RepoList = parse(resp, "GET /installation/repositories").await?;
            let n = list.repositories.len();
            out.extend(list.repositories.into_iter().map(|r| r.full_name));
            if n < 100 || out.len() >= MAX_LISTED_REPOS {
                break;
            }
        }
        Ok(())
    }
}

/// Describes a permission GitHub granted beyond `wanted`, if any.
fn excess_grant(wanted: &BTreeMap<String, String>, token: &RepoToken) -> Option<String> {
    for (name, level) in &token.permissions {
        let ok = wanted
            .get(name)
            .is_some_and(|w| level_rank(level) <= level_rank(w));
        if !ok {
            return Some(format!(
                "GitHub granted {name}: {level}, which was not requested"
            ));
        }
    }
    if token
        .repositories
        .iter()
        .any(|r| !r.eq_ignore_ascii_case(&token.repo))
    {
        return Some(format!(
            "GitHub granted repositories {:?}; only {} was requested",
            token.repositories, token.repo
        ));
    }
    None
}

fn level_rank(level: &str) -> u8 {
    match level {
        "read" => 1,
        "write" => 2,
        _ => u8::MAX,
    }
}

/// Parses a success body as `T`, or turns the status into an error.
pub(crate) async fn parse<T: DeserializeOwned>(
    resp: reqwest::Response,
    endpoint: &'static str,
) -> Result<T> {
    if !resp.status().is_success() {
        return Err(status_error(resp).await);
    }
    let bytes = resp.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|e| GithubError::InvalidResponse {
        endpoint,
        message: e.to_string(),
    })
}

/// Maps a non-success response to the matching [`GithubError`] variant.
pub(crate) async fn status_error(resp: reqwest::Response) -> GithubError {
    let status = resp.status();
    let message = error_message(resp).await;
    match status {
        StatusCode::UNAUTHORIZED => GithubError::Unauthorized { message },
        StatusCode::FORBIDDEN => GithubError::Forbidden { message },
        StatusCode::UNPROCESSABLE_ENTITY => GithubError::Unprocessable { message },
        s => GithubError::Status {
            status: s.as_u16(),
            message,
        },
    }
}

/// GitHub's `message` plus any `errors[].message`, or the start of a non-JSON body.
async fn error_message(resp: reqwest::Response) -> String {
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => {
            let mut msg = body.message;
            for e in &body.errors {
                let detail = match e {
                    serde_json::Value::String(s) => Some(s.clone()),
                    other => other
                        .get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string),
                };
                if let Some(d) = detail {
                    msg = if msg.is_empty() {
                        d
                    } else {
                        format!("{msg}: {d}")
                    };
                }
            }
            if msg.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_string()
            } else {
                msg
            }
        }
        Err(_) => {
            let text = String::from_utf8_lossy(&bytes);
            let text: String = text.chars().take(200).collect();
            if text.trim().is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_string()
            } else {
                text
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(perms: &[(&str, &str)], repos: &[&str]) -> RepoToken {
        RepoToken {
            token: "ghs_secretsecretsecretsecretsecretsecret".into(),
            expires_at: None,
            permissions: perms
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            repositories: repos.iter().map(|r| r.to_string()).collect(),
            owner: "o".into(),
            repo: "r".into(),
        }
    }

    #[test]
    fn token_request_permissions() {
        let read = TokenRequest::read().permissions();
        assert_eq!(read.len(), 2);
        assert_eq!(read["contents"], "read");
        assert_eq!(read["metadata"], "read");
        let write = TokenRequest::write().permissions();
        assert_eq!(write.len(), 3);
        assert_eq!(write["contents"], "write");
        assert_eq!(write["pull_requests"], "write");
        assert!(!write.contains_key("workflows"));
        assert_eq!(
            TokenRequest::write().with_workflows().permissions()["workflows"],
            "write"
        );
    }

    #[test]
    fn debug_redacts_token() {
        let t = token(&[], &["r"]);
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn excess_grants_are_detected() {
        let wanted = TokenRequest::read().permissions();
        assert!(excess_grant(
            &wanted,
            &token(&[("contents", "read"), ("metadata", "read")], &["r"])
        )
        .is_none());
        assert!(excess_grant(&wanted, &token(&[("contents", "write")], &["r"])).is_some());
        assert!(excess_grant(&wanted, &token(&[("issues", "read")], &["r"])).is_some());
        assert!(excess_grant(&wanted, &token(&[("contents", "read")], &["r", "other"])).is_some());
    }
}

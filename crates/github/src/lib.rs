//! errand's GitHub App integration.
//!
//! - [`AppCredentials`] signs the App's short-lived RS256 JWT.
//! - [`GithubClient`] looks up installations, mints per-run installation tokens
//!   scoped to one repository ([`TokenRequest`]), revokes them, opens pull
//!   requests and posts comments. Works against github.com and GitHub Enterprise
//!   (any API base URL).
//! - [`basic_auth_header`] / [`git_url`] build what host-side git needs to clone
//!   and push with a token without writing it to `.git/config`.
//! - reading issues, pull requests, review comments, checks and job logs, and
//!   editing comments (`threads.rs`), for a run's context and errand's answers.
//! - [`webhook`] verifies `X-Hub-Signature-256` and extracts what errand acts
//!   on: `@errand` mentions (comments, review comments, reviews), a trigger
//!   label, failed checks.
//! - [`app_manifest`] describes the App for GitHub's manifest registration flow.
//! - `fake` (feature `fake`): a local GitHub that enforces the same rules, for
//!   end-to-end tests.
//!
//! Nothing here logs or `Debug`-prints a token or private key.

#![warn(missing_docs)]

mod auth;
mod client;
mod error;
mod manifest;
mod threads;
pub mod webhook;

#[cfg(feature = "fake")]
pub mod fake;

pub use auth::{AppCredentials, JWT_BACKDATE_SECS, JWT_LIFETIME_SECS};
pub use client::{
    Access, GithubClient, NewPull, Pull, RepoToken, TokenRequest, DEFAULT_API_BASE,
    GITHUB_API_VERSION, USER_AGENT,
};
pub use error::{GithubError, Result};
pub use manifest::{
    app_manifest, convert_manifest, CreatedApp, EVENTS as APP_EVENTS, MANIFEST_REDIRECT_PATH,
    PERMISSIONS as APP_PERMISSIONS,
};
pub use threads::{
    Account, CheckApp, CheckOutput, CheckRun, Issue, IssueComment, Job, JobStep, Label,
    PostedComment, PullEnd, PullFile, PullRequest, RecentComments, RepoName, ReviewComment,
    MAX_LOG_DOWNLOAD,
};
pub use webhook::{CheckFailure, Event, Labeled, Mention, ReviewSpot, WebhookError};

use base64::Engine as _;

/// Default base for clone URLs (github.com); GitHub Enterprise uses its host, e.g. `https://ghe.example`.
pub const DEFAULT_GIT_BASE: &str = "https://github.com";

/// The HTTPS clone URL `{git_base}/{owner}/{repo}.git` (a trailing `/` on `git_base` is ignored).
///
/// The URL carries no credentials; pass the token separately with [`basic_auth_header`].
pub fn git_url(git_base: &str, owner: &str, repo: &str) -> String {
    format!("{}/{owner}/{repo}.git", git_base.trim_end_matches('/'))
}

/// The value for git's `http.extraHeader`:
/// `Authorization: Basic base64("x-access-token:" + token)`.
///
/// The result contains the token: hand it to git through the environment
/// (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_0`/`GIT_CONFIG_VALUE_0`), never log it.
pub fn basic_auth_header(token: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    format!("Authorization: Basic {encoded}")
}

/// Rejects owner/repository names GitHub would not accept (and anything that
/// could change the meaning of a URL path, such as `..`, `/`, `?`).
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(GithubError::InvalidName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_url_joins_base_owner_repo() {
        assert_eq!(
            git_url(DEFAULT_GIT_BASE, "o", "r"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            git_url("https://ghe.example/", "o", "r"),
            "https://ghe.example/o/r.git"
        );
    }

    #[test]
    fn basic_auth_header_encodes_x_access_token() {
        // base64("x-access-token:abc")
        assert_eq!(
            basic_auth_header("abc"),
            "Authorization: Basic eC1hY2Nlc3MtdG9rZW46YWJj"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("my-repo.rs_2").is_ok());
        for bad in ["", ".", "..", "a/b", "a?b", "a b", "a%2f"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}

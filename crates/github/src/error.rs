//! The error type of this crate.

use thiserror::Error;

use crate::webhook::WebhookError;

/// `Result` with [`GithubError`].
pub type Result<T, E = GithubError> = std::result::Result<T, E>;

/// What can go wrong talking to GitHub. Messages never contain tokens or keys.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GithubError {
    /// The request could not be sent or its response not read (DNS, TLS, timeout, ...).
    #[error("GitHub request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The App's private key could not be parsed or used to sign a JWT.
    #[error("invalid GitHub App private key: {0}")]
    InvalidKey(String),
    /// An owner or repository name GitHub would not accept.
    #[error("invalid GitHub owner or repository name {0:?}")]
    InvalidName(String),
    /// The App is not installed on this repository (`owner/repo`).
    #[error("the GitHub App is not installed on {repo}")]
    NotInstalled {
        /// `owner/repo`.
        repo: String,
    },
    /// 401: the JWT or token was rejected (bad signature, expired, revoked).
    #[error("GitHub rejected the credentials (401): {message}")]
    Unauthorized {
        /// GitHub's `message`.
        message: String,
    },
    /// 403: valid credentials without the needed permission (or a rate limit).
    #[error("GitHub refused the request (403): {message}")]
    Forbidden {
        /// GitHub's `message`.
        message: String,
    },
    /// 422 when minting a token: the requested permissions or repositories exceed
    /// what the installation grants. Also returned if GitHub grants more than was asked.
    #[error("token scope refused: {message}")]
    Scope {
        /// GitHub's `message`, or what was wrong with the grant.
        message: String,
    },
    /// 422 elsewhere: validation failed (e.g. head branch missing, pull request already exists).
    #[error("GitHub rejected the request (422): {message}")]
    Unprocessable {
        /// GitHub's `message` and its `errors[].message`.
        message: String,
    },
    /// Any other non-success HTTP status.
    #[error("GitHub returned HTTP {status}: {message}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// GitHub's `message`, or the start of the body.
        message: String,
    },
    /// A success response whose body was not what the API documents.
    #[error("unexpected response from GitHub {endpoint}: {message}")]
    InvalidResponse {
        /// Method and path template, e.g. `POST /repos/{owner}/{repo}/pulls`.
        endpoint: &'static str,
        /// What did not parse.
        message: String,
    },
    /// A webhook delivery failed verification or parsing.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

impl GithubError {
    /// The HTTP status GitHub answered with, when the error came from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http(e) => e.status().map(|s| s.as_u16()),
            Self::NotInstalled { .. } => Some(404),
            Self::Unauthorized { .. } => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::Scope { .. } | Self::Unprocessable { .. } => Some(422),
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

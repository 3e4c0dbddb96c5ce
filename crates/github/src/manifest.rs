//! The GitHub App manifest for registering errand's App.

use serde_json::{json, Value};

/// Path under the App's `url` that GitHub redirects to with `?code=…` after the
/// manifest flow; exchange the code with `POST /app-manifests/{code}/conversions`.
pub const MANIFEST_REDIRECT_PATH: &str = "/github/manifest-callback";

/// The permissions errand's App asks for, and what each is for:
///
/// - `contents: write`: clone the repository and push the run's branch;
/// - `pull_requests: write`: open the pull request; read a pull request's
///   head, changed files and review comments for a run's context;
/// - `issues: write`: the one status comment per request, edited in place;
///   read an issue's title, body, labels and discussion for a run's context;
/// - `checks: read`: read a failed check on errand's pull request (and
///   receive `check_run`/`check_suite` events) for CI fixes;
/// - `actions: read`: read the failed Actions job's steps and log (and receive
///   `workflow_run` events) for CI fixes;
/// - `metadata: read`: required of every App; also tells whether a requester
///   may push to a repository.
///
/// No `workflows`, so pushes touching `.github/workflows/` are refused by GitHub.
pub const PERMISSIONS: [(&str, &str); 6] = [
    ("contents", "write"),
    ("pull_requests", "write"),
    ("issues", "write"),
    ("checks", "read"),
    ("actions", "read"),
    ("metadata", "read"),
];

/// The events errand's App subscribes to: mentions in comments, review
/// comments and reviews; the trigger label on issues; failed checks.
pub const EVENTS: [&str; 7] = [
    "issue_comment",
    "pull_request_review_comment",
    "pull_request_review",
    "issues",
    "check_run",
    "check_suite",
    "workflow_run",
];

/// A GitHub App manifest (see GitHub's "Registering a GitHub App from a manifest").
///
/// Permissions are exactly [`PERMISSIONS`] and events exactly [`EVENTS`];
/// private (`public: false`).
pub fn app_manifest(name: &str, url: &str, webhook_url: &str) -> Value {
    let base = url.trim_end_matches('/');
    json!({
        "name": name,
        "url": url,
        "description": "errand runs headless coding agents in sandboxes and opens pull requests with their work.",
        "hook_attributes": { "url": webhook_url, "active": true },
        "redirect_url": format!("{base}{MANIFEST_REDIRECT_PATH}"),
        "public": false,
        "request_oauth_on_install": false,
        "setup_on_update": false,
        "default_permissions": PERMISSIONS
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect::<serde_json::Map<String, Value>>(),
        "default_events": EVENTS
    })
}

/// The App GitHub created from a manifest: its id and, once only, its private
/// key and webhook secret. `Debug` hides both secrets.
#[derive(Clone, serde::Deserialize)]
pub struct CreatedApp {
    /// The App's id (the JWT's issuer).
    pub id: u64,
    /// Its URL name, e.g. `errand-acme`.
    #[serde(default)]
    pub slug: Option<String>,
    /// Its page on GitHub.
    #[serde(default)]
    pub html_url: Option<String>,
    /// Its OAuth client id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Its private key (PEM), shown by GitHub this once.
    pub pem: String,
    /// The secret GitHub signs its webhooks with.
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for CreatedApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApp")
            .field("id", &self.id)
            .field("slug", &self.slug)
            .field("html_url", &self.html_url)
            .field("pem", &"<redacted>")
            .field("webhook_secret", &"<redacted>")
            .finish()
    }
}

/// Finishes the manifest flow: exchanges the one-time `code` GitHub handed to
/// the redirect URL for the new App's credentials
/// (`POST /app-manifests/{code}/conversions`, no authentication).
pub async fn convert_manifest(api_base: &str, code: &str) -> crate::Result<CreatedApp> {
    if code.is_empty()
        || code.len() > 200
        || !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(crate::GithubError::InvalidName(
            "the manifest code is not one GitHub would issue".into(),
        ));
    }
    let url = format!(
        "{}/app-manifests/{code}/conversions",
        api_base.trim_end_matches('/')
    );
    let resp = reqwest::Client::new()
        .post(url)
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", crate::GITHUB_API_VERSION)
        .header("User-Agent", crate::USER_AGENT)
        .send()
        .await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if !status.is_success() {
        return Err(crate::GithubError::Status {
            status: status.as_u16(),
            message: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| crate::GithubError::InvalidResponse {
        endpoint: "POST /app-manifests/{code}/conversions",
        message: e.to_string(),
    })
}

//! The GitHub App manifest for registering errand's App.

use serde_json::{json, Value};

/// Path under the App's `url` that GitHub redirects to with `?code=…` after the
/// manifest flow; exchange the code with `POST /app-manifests/{code}/conversions`.
pub const MANIFEST_REDIRECT_PATH: &str = "/github/manifest-callback";

/// A GitHub App manifest (see GitHub's "Registering a GitHub App from a manifest").
///
/// Permissions are exactly `contents: write`, `pull_requests: write`, `issues: write`,
/// `metadata: read` — no `workflows`, so pushes touching `.github/workflows/` are
/// refused by GitHub. Subscribes to `issue_comment`; private (`public: false`).
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
        "default_permissions": {
            "contents": "write",
            "pull_requests": "write",
            "issues": "write",
            "metadata": "read"
        },
        "default_events": ["issue_comment"]
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

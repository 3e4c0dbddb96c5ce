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

//! The fake GitHub and fake Slack that integration tests start, and errand's
//! configuration naming both.

use std::path::Path;

use errand_github::fake::{test_keypair, FakeConfig, FakeGithub, IssuedToken, TokenStyle};
use errand_slack::fake::{FakeSlack, FakeSlackConfig};

/// The fake GitHub App's id.
pub const APP_ID: &str = "271828";
/// The secret GitHub signs webhook deliveries with, as errand is configured.
pub const WEBHOOK_SECRET: &str = "whsec-errand-tests";

/// A fake GitHub and a fake Slack, both serving on loopback until dropped.
pub struct Fakes {
    /// The fake GitHub: `acme/widgets` (branch `main`) installed as installation 7.
    pub github: FakeGithub,
    /// The fake Slack, recording every Web API call.
    pub slack: FakeSlack,
    /// The App's private key (PEM), for errand's `github.private_key_file`.
    pub app_key_pem: String,
}

/// Starts a fake GitHub with `acme/widgets` installed (stateless tokens, a
/// manifest code `m4n1fest`), its configuration adjusted by `adjust`, and a
/// fake Slack. Panics when either cannot start.
pub async fn start(adjust: impl FnOnce(FakeConfig) -> FakeConfig) -> Fakes {
    let (private_pem, public_pem) = test_keypair();
    let github = FakeGithub::start(adjust(
        FakeConfig::new(APP_ID, public_pem)
            .install(7, "acme/widgets")
            .token_style(TokenStyle::Stateless)
            .manifest_code("m4n1fest", &private_pem, "whsec-from-github"),
    ))
    .unwrap_or_else(|e| panic!("the fake GitHub could not start: {e}"));
    github
        .create_repo("acme", "widgets", "main")
        .unwrap_or_else(|e| panic!("the fake GitHub could not create acme/widgets: {e}"));
    let slack = FakeSlack::start(FakeSlackConfig::default())
        .await
        .unwrap_or_else(|e| panic!("the fake Slack could not start: {e}"));
    Fakes {
        github,
        slack,
        app_key_pem: private_pem,
    }
}

impl Fakes {
    /// errand's configuration (TOML) naming both fakes, the App's key read
    /// from `key_file`, with access rules: Slack channel C1 may run and push
    /// on `acme/*`; channel C2 may run on `acme/widgets` without pushing;
    /// GitHub user octocat may run and push on `acme/widgets`.
    pub fn errand_config(&self, key_file: &Path) -> String {
        format!(
            r#"
[server]
public_url = "http://errand.test"

[github]
app_id = "{APP_ID}"
private_key_file = "{key}"
api_url = "{api}"
git_url = "{git}"
webhook_secret = "{WEBHOOK_SECRET}"

[slack]
signing_secret = "{secret}"
bot_token = "{bot}"
api_url = "{slack_api}"

[[access]]
slack_team = "T0FAKE"
slack_channels = ["C1"]
repos = ["acme/*"]
push = true

[[access]]
slack_team = "T0FAKE"
slack_channels = ["C2"]
repos = ["acme/widgets"]

[[access]]
github_users = ["octocat"]
repos = ["acme/widgets"]
push = true
"#,
            key = key_file.display(),
            api = self.github.api_url(),
            git = self.github.git_base(),
            secret = self.slack.signing_secret(),
            bot = self.slack.bot_token(),
            slack_api = self.slack.api_base(),
        )
    }
}

/// The one token a `--push` run on `acme/widgets` minted, checked: for that
/// repository only, `contents` and `pull_requests` write, no `workflows`,
/// revoked by the end of the run.
pub fn the_runs_write_token(github: &FakeGithub) -> IssuedToken {
    let tokens = github.tokens();
    assert_eq!(tokens.len(), 1, "{tokens:#?}");
    let t = tokens[0].clone();
    assert_eq!(t.repositories, ["acme/widgets"]);
    for (permission, level) in [("contents", "write"), ("pull_requests", "write")] {
        assert_eq!(
            t.permissions.get(permission).map(String::as_str),
            Some(level),
            "{t:#?}"
        );
    }
    assert!(!t.permissions.contains_key("workflows"), "{t:#?}");
    assert!(t.revoked, "the run's token outlived the run");
    assert!(t.token.starts_with(&format!("ghs_{APP_ID}_")));
    t
}

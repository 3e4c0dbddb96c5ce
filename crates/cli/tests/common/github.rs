//! The fake GitHub and fake Slack the integration tests share, and errand's
//! configuration naming both.

use errand_github::fake::{test_keypair, FakeConfig, FakeGithub, TokenStyle};
use errand_slack::fake::{FakeSlack, FakeSlackConfig};

use super::Env;

pub const APP_ID: &str = "271828";
pub const WEBHOOK_SECRET: &str = "whsec-errand-tests";

pub struct World {
    pub env: Env,
    pub github: FakeGithub,
    pub slack: FakeSlack,
}

/// A fake GitHub with `acme/widgets` installed, a fake Slack, and errand's
/// configuration naming both, with access rules: channel C1 may run and push
/// on `acme/*`; channel C2 may run on `acme/widgets` without pushing; GitHub
/// user octocat may run and push on `acme/widgets`.
pub async fn world(env: Env) -> World {
    world_with(env, |c| c).await
}

/// [`world`], with the fake GitHub's configuration adjusted by `adjust`.
pub async fn world_with(env: Env, adjust: impl FnOnce(FakeConfig) -> FakeConfig) -> World {
    let (private_pem, public_pem) = test_keypair();
    let github = FakeGithub::start(adjust(
        FakeConfig::new(APP_ID, public_pem)
            .install(7, "acme/widgets")
            .token_style(TokenStyle::Stateless)
            .manifest_code("m4n1fest", &private_pem, "whsec-from-github"),
    ))
    .expect("fake GitHub");
    github
        .create_repo("acme", "widgets", "main")
        .expect("create repo");
    let slack = FakeSlack::start(FakeSlackConfig::default())
        .await
        .expect("fake Slack");
    std::fs::create_dir_all(&env.home).expect("home");
    let key = env.dir.path().join("app-key.pem");
    std::fs::write(&key, private_pem).expect("key");
    let config = format!(
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
        key = key.display(),
        api = github.api_url(),
        git = github.git_base(),
        secret = slack.signing_secret(),
        bot = slack.bot_token(),
        slack_api = slack.api_base(),
    );
    std::fs::write(env.home.join("config.toml"), config).expect("config");
    World { env, github, slack }
}

/// The one token a `--push` run on `acme/widgets` minted, checked: for that
/// repository only, `contents` and `pull_requests` write, no `workflows`,
/// revoked by the end of the run.
pub fn the_runs_write_token(github: &FakeGithub) -> errand_github::fake::IssuedToken {
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

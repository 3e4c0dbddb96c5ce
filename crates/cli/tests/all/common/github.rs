//! The fake GitHub and fake Slack the integration tests share
//! (`errand_test_support::fakes`), and errand's configuration naming both,
//! written into a test's `ERRAND_HOME`.

use errand_github::fake::FakeConfig;
use errand_github::fake::FakeGithub;
use errand_slack::fake::FakeSlack;
pub use errand_test_support::fakes::{the_runs_write_token, APP_ID, WEBHOOK_SECRET};

use super::Env;

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
    let fakes = errand_test_support::fakes::start(adjust).await;
    std::fs::create_dir_all(&env.home).expect("home");
    let key = env.dir.path().join("app-key.pem");
    std::fs::write(&key, &fakes.app_key_pem).expect("key");
    std::fs::write(env.home.join("config.toml"), fakes.errand_config(&key)).expect("config");
    World {
        env,
        github: fakes.github,
        slack: fakes.slack,
    }
}

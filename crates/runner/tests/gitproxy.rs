//! The git proxy against a real `git http-backend` remote (the fake GitHub),
//! driven by real `git` clients holding no token.

#![allow(clippy::disallowed_methods)] // tests start their own fixtures

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use errand_github::fake::{test_keypair, FakeConfig, FakeGithub};
use errand_github::{AppCredentials, GithubClient, TokenRequest};
use errand_runner::gitproxy::{Config, GitProxy, Hub};

const BRANCH: &str = "errand/run-1";

fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("GIT_AUTHOR_NAME", "agent")
        .env("GIT_AUTHOR_EMAIL", "agent@example.invalid")
        .env("GIT_COMMITTER_NAME", "agent")
        .env("GIT_COMMITTER_EMAIL", "agent@example.invalid")
        .args(args)
        .output()
        .expect("run git")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "git failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn refused(out: &Output, reason: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "push should be refused:\n{stderr}");
    assert!(stderr.contains(reason), "expected {reason:?} in:\n{stderr}");
}

fn remote_ref(fake: &FakeGithub, name: &str) -> Option<String> {
    let dir = fake.repo_path("acme", "widgets");
    let out = git(&dir, &["rev-parse", "--verify", "--quiet", name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn commit(dir: &Path, file: &str) -> String {
    std::fs::write(dir.join(file), file).expect("write");
    ok(&git(dir, &["add", file]));
    ok(&git(dir, &["commit", "-q", "-m", file]));
    ok(&git(dir, &["rev-parse", "HEAD"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proxy_enforces_the_push_rule_for_every_client() {
    let (private, public) = test_keypair();
    let fake = FakeGithub::start(
        FakeConfig::new("1", public)
            .install(7, "acme/widgets")
            .install(7, "acme/gadgets"),
    )
    .expect("fake");
    fake.create_repo("acme", "widgets", "main").expect("repo");
    fake.create_repo("acme", "gadgets", "main").expect("repo");
    let client =
        GithubClient::new(&fake.api_url(), AppCredentials::new("1", private)).expect("client");
    let token = client
        .mint_token("acme", "widgets", TokenRequest::write())
        .await
        .expect("token");
    let header = token.basic_auth_header();
    let scratch = tempfile::tempdir().expect("tempdir");
    let proxy = GitProxy::new(Config {
        owner: "acme".into(),
        repo: "widgets".into(),
        upstream: fake.clone_url("acme", "widgets"),
        branches: vec![BRANCH.into()],
        allow_force: false,
        auth: Arc::new(move || header.clone()),
        scratch: scratch.path().join("proxy"),
        max_push: errand_runner::gitproxy::DEFAULT_MAX_PUSH,
    })
    .expect("proxy");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = proxy.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let url = format!("http://{addr}/acme/widgets.git");

    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("w");
    let dir = dir.as_path();
    let (d, u, direct_url) = (
        dir.to_path_buf(),
        url.clone(),
        fake.clone_url("acme", "widgets"),
    );
    tokio::task::spawn_blocking(move || {
        let parent = d.parent().expect("parent");
        // Straight to the remote, the client (holding no token) is refused.
        let direct = git(parent, &["ls-remote", &direct_url]);
        assert!(!direct.status.success(), "the remote must want a token");
        // Through the proxy it clones with no token.
        ok(&git(parent, &["clone", "-q", &u, "w"]));
        ok(&git(&d, &["checkout", "-q", "-b", BRANCH]));
    })
    .await
    .expect("join");

    let first = commit(dir, "a.txt");
    let d = dir.to_path_buf();
    let out = tokio::task::spawn_blocking(move || git(&d, &["push", "origin", BRANCH]))
        .await
        .expect("join");
    ok(&out);
    assert_eq!(
        remote_ref(&fake, &format!("refs/heads/{BRANCH}")),
        Some(first.clone())
    );

    // A fast-forward of the run's branch.
    let second = commit(dir, "b.txt");
    let d = dir.to_path_buf();
    ok(
        &tokio::task::spawn_blocking(move || git(&d, &["push", "origin", BRANCH]))
            .await
            .expect("join"),
    );
    assert_eq!(
        remote_ref(&fake, &format!("refs/heads/{BRANCH}")),
        Some(second.clone())
    );

    let main_before = remote_ref(&fake, "refs/heads/main");
    let d = dir.to_path_buf();
    let (to_main, alias_main, delete, force, new_branch) = tokio::task::spawn_blocking(move || {
        let to_main = git(&d, &["push", "origin", "HEAD:main"]);
        ok(&git(&d, &["config", "alias.p", "push"]));
        let alias_main = git(&d, &["p", "origin", "HEAD:refs/heads/main"]);
        let delete = git(&d, &["push", "origin", &format!(":{BRANCH}")]);
        // Rewrite the branch: drop the last commit, commit something else, force.
        ok(&git(&d, &["reset", "-q", "--hard", "HEAD~1"]));
        std::fs::write(d.join("c.txt"), "c").expect("write");
        ok(&git(&d, &["add", "c.txt"]));
        ok(&git(&d, &["commit", "-q", "-m", "c"]));
        let force = git(&d, &["push", "--force", "origin", BRANCH]);
        let new_branch = git(&d, &["push", "origin", "HEAD:refs/heads/other"]);
        (to_main, alias_main, delete, force, new_branch)
    })
    .await
    .expect("join");
    refused(
        &to_main,
        "errand: this run may push only refs/heads/errand/run-1",
    );
    refused(&alias_main, "errand: this run may push only");
    refused(&delete, "errand: deleting a branch is not allowed");
    refused(&force, "errand: non-fast-forward updates");
    refused(&new_branch, "errand: this run may push only");
    assert_eq!(remote_ref(&fake, "refs/heads/main"), main_before);
    assert_eq!(
        remote_ref(&fake, &format!("refs/heads/{BRANCH}")),
        Some(second.clone())
    );
    assert_eq!(remote_ref(&fake, "refs/heads/other"), None);

    // Raw HTTP: a crafted command with no report-status is a 403; another
    // repository or path is a 404.
    let http = reqwest::Client::new();
    let zero = "0".repeat(40);
    let line = format!("{zero} {second} refs/heads/main\0\n");
    let body = format!("{:04x}{line}0000", line.len() + 4);
    let resp = http
        .post(format!("{url}/git-receive-pack"))
        .header("Content-Type", "application/x-git-receive-pack-request")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.expect("text").contains("push refused"));
    for path in [
        format!("http://{addr}/acme/gadgets.git/info/refs?service=git-upload-pack"),
        format!("http://{addr}/acme/widgets.git/objects/info/packs"),
        format!("http://{addr}/api/v3/repos/acme/widgets"),
    ] {
        let resp = http.get(&path).send().await.expect("get");
        assert_eq!(resp.status(), 404, "{path}");
    }
    let gadgets = format!("http://{addr}/acme/gadgets.git");
    let d = dir.to_path_buf();
    let other = tokio::task::spawn_blocking(move || git(&d, &["ls-remote", &gadgets]))
        .await
        .expect("join");
    assert!(!other.status.success());
    assert_eq!(remote_ref(&fake, "refs/heads/main"), main_before);
}

/// Through the hub over TCP, as a kubernetes pod reaches it: the run's branch
/// is pushed, main is refused, and a removed capability serves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hub_serves_a_runs_proxy_under_its_capability() {
    let (private, public) = test_keypair();
    let fake =
        FakeGithub::start(FakeConfig::new("1", public).install(7, "acme/widgets")).expect("fake");
    fake.create_repo("acme", "widgets", "main").expect("repo");
    let client =
        GithubClient::new(&fake.api_url(), AppCredentials::new("1", private)).expect("client");
    let token = client
        .mint_token("acme", "widgets", TokenRequest::write())
        .await
        .expect("token");
    let header = token.basic_auth_header();
    let scratch = tempfile::tempdir().expect("tempdir");
    let proxy = GitProxy::new(Config {
        owner: "acme".into(),
        repo: "widgets".into(),
        upstream: fake.clone_url("acme", "widgets"),
        branches: vec![BRANCH.into()],
        allow_force: false,
        auth: Arc::new(move || header.clone()),
        scratch: scratch.path().join("proxy"),
        max_push: errand_runner::gitproxy::DEFAULT_MAX_PUSH,
    })
    .expect("proxy");
    let hub = Hub::new("127.0.0.1:0");
    let reg = hub.register(proxy.clone()).await.expect("register");
    let addr = hub.local_addr().expect("bound");
    let url = reg.url(&format!("http://{addr}"), &proxy);
    assert!(url.ends_with("/acme/widgets.git"), "{url}");

    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("w");
    let (d, u) = (dir.clone(), url.clone());
    let first = tokio::task::spawn_blocking(move || {
        ok(&git(work_parent(&d), &["clone", "-q", &u, "w"]));
        ok(&git(&d, &["checkout", "-q", "-b", BRANCH]));
        commit(&d, "a.txt")
    })
    .await
    .expect("join");
    let d = dir.clone();
    let (pushed, to_main) = tokio::task::spawn_blocking(move || {
        (
            git(&d, &["push", "origin", BRANCH]),
            git(&d, &["push", "origin", "HEAD:main"]),
        )
    })
    .await
    .expect("join");
    ok(&pushed);
    assert_eq!(
        remote_ref(&fake, &format!("refs/heads/{BRANCH}")),
        Some(first.clone())
    );
    refused(
        &to_main,
        "errand: this run may push only refs/heads/errand/run-1",
    );
    assert_ne!(remote_ref(&fake, "refs/heads/main"), Some(first));
    assert!(!proxy.refused().iter().any(|r| r.contains(reg.capability())));

    // The run is over: its capability serves nothing any more.
    drop(reg);
    let d = dir.clone();
    let after = tokio::task::spawn_blocking(move || git(&d, &["ls-remote", "origin"]))
        .await
        .expect("join");
    assert!(
        !after.status.success(),
        "a dropped capability must not serve"
    );
    let resp = reqwest::get(format!("{url}/info/refs?service=git-upload-pack"))
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.text().await.expect("text"),
        "errand git proxy: not found\n"
    );
}

fn work_parent(d: &Path) -> &Path {
    d.parent().expect("parent")
}

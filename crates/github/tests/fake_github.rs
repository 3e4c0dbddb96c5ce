//! End-to-end: the client against the fake GitHub, with real `git` over HTTP.

#![allow(clippy::disallowed_methods)] // tests start their own fixtures

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use base64::Engine as _;
use chrono::{Duration, Utc};
use errand_github::fake::{test_keypair, FakeConfig, FakeGithub, TokenStyle};
use errand_github::{
    basic_auth_header, git_url, Access, AppCredentials, GithubClient, GithubError, NewPull,
    RepoToken, TokenRequest,
};
use tempfile::TempDir;

const APP_ID: &str = "314159";

fn keys() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(test_keypair)
}

/// A fake with `acme/widgets` and `acme/gadgets` in installation 7 and `acme/private`
/// created but not installed, plus a client for it.
struct World {
    fake: FakeGithub,
    client: GithubClient,
    work: TempDir,
}

fn world_with(config: impl FnOnce(FakeConfig) -> FakeConfig) -> World {
    let (private, public) = keys();
    let config = config(
        FakeConfig::new(APP_ID, public.clone())
            .install(7, "acme/widgets")
            .install(7, "acme/gadgets"),
    );
    let fake = FakeGithub::start(config).expect("start fake");
    for repo in ["widgets", "gadgets", "private"] {
        fake.create_repo("acme", repo, "main").expect("create repo");
    }
    let client = GithubClient::new(
        &fake.api_url(),
        AppCredentials::new(APP_ID, private.clone()),
    )
    .expect("client");
    World {
        fake,
        client,
        work: TempDir::new().expect("tempdir"),
    }
}

fn world() -> World {
    world_with(|c| c)
}

/// Runs git hermetically (no user config, no prompts); `auth` is passed as
/// `http.extraHeader` through GIT_CONFIG_* env, as errand does.
fn git(dir: &Path, auth: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .env("SSH_ASKPASS", "")
        .env("GIT_AUTHOR_NAME", "errand")
        .env("GIT_AUTHOR_EMAIL", "errand@example.invalid")
        .env("GIT_COMMITTER_NAME", "errand")
        .env("GIT_COMMITTER_EMAIL", "errand@example.invalid")
        .args(args);
    if let Some(header) = auth {
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", header);
    }
    cmd.output().expect("run git")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed: {}", stderr(out));
}

fn assert_fails(out: &Output, what: &str, needle: &str) {
    assert!(!out.status.success(), "{what} unexpectedly succeeded");
    assert!(
        stderr(out).contains(needle),
        "{what}: expected {needle:?} in: {}",
        stderr(out)
    );
}

/// Clones `acme/{repo}` into `{work}/{name}`.
fn clone(w: &World, token: &RepoToken, repo: &str, name: &str) -> Output {
    let url = git_url(&w.fake.git_base(), "acme", repo);
    git(
        w.work.path(),
        Some(&token.basic_auth_header()),
        &["clone", "--quiet", &url, name],
    )
}

/// Commits `file` on a new branch in an existing clone and pushes it.
fn commit_and_push(w: &World, token: &RepoToken, name: &str, branch: &str, file: &str) -> Output {
    let dir = w.work.path().join(name);
    assert_ok(
        &git(&dir, None, &["checkout", "--quiet", "-b", branch]),
        "checkout",
    );
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, "change\n").expect("write");
    assert_ok(&git(&dir, None, &["add", "-A"]), "add");
    assert_ok(
        &git(&dir, None, &["commit", "--quiet", "-m", "change"]),
        "commit",
    );
    git(
        &dir,
        Some(&token.basic_auth_header()),
        &["push", "--quiet", "origin", branch],
    )
}

fn pull(head: &str) -> NewPull {
    NewPull {
        title: "Do the thing".into(),
        head: head.into(),
        base: "main".into(),
        body: "Done.".into(),
        draft: true,
    }
}

fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims json")
}

async fn raw_installation_lookup(w: &World, jwt: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/repos/acme/widgets/installation",
            w.fake.api_url()
        ))
        .bearer_auth(jwt)
        .header("User-Agent", "test")
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.expect("json");
    (
        status,
        body["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn jwt_is_accepted_by_the_fake() {
    let w = world();
    let now = Utc::now();
    let jwt = AppCredentials::new(APP_ID, keys().0.clone())
        .jwt(now)
        .expect("jwt");
    let c = claims(&jwt);
    assert_eq!(c["iss"], APP_ID);
    assert_eq!(c["iat"], now.timestamp() - 60);
    assert_eq!(c["exp"], now.timestamp() + 540);
    assert_eq!(
        w.client
            .installation_id("acme", "widgets")
            .await
            .expect("installation"),
        7
    );
    assert!(w
        .fake
        .requests()
        .contains(&"GET /api/v3/repos/acme/widgets/installation".to_string()));
}

#[tokio::test]
async fn jwt_from_another_key_is_rejected() {
    let w = world();
    let (other_private, _) = test_keypair();
    let impostor = GithubClient::new(
        &w.fake.api_url(),
        AppCredentials::new(APP_ID, other_private),
    )
    .expect("client");
    let err = impostor
        .installation_id("acme", "widgets")
        .await
        .expect_err("must fail");
    assert!(matches!(err, GithubError::Unauthorized { .. }), "{err:?}");
    let err = impostor
        .mint_token("acme", "widgets", Access::Read)
        .await
        .expect_err("must fail");
    assert!(matches!(err, GithubError::Unauthorized { .. }), "{err:?}");
    assert!(w.fake.tokens().is_empty());
}

#[tokio::test]
async fn expired_or_foreign_jwt_is_rejected() {
    let w = world();
    let creds = AppCredentials::new(APP_ID, keys().0.clone());
    let expired = creds.jwt(Utc::now() - Duration::minutes(20)).expect("jwt");
    let (status, message) = raw_installation_lookup(&w, &expired).await;
    assert_eq!(status, 401);
    assert!(message.contains("exp"), "{message}");
    let other_app = AppCredentials::new("999", keys().0.clone())
        .jwt(Utc::now())
        .expect("jwt");
    assert_eq!(raw_installation_lookup(&w, &other_app).await.0, 401);
    assert_eq!(raw_installation_lookup(&w, "not.a.jwt").await.0, 401);
    let fresh = creds.jwt(Utc::now()).expect("jwt");
    assert_eq!(raw_installation_lookup(&w, &fresh).await.0, 200);
}

#[tokio::test]
async fn read_token_clones_but_cannot_push() {
    let w = world();
    let token = w
        .client
        .mint_token("acme", "widgets", Access::Read)
        .await
        .expect("mint");
    assert_eq!(token.repositories, vec!["widgets"]);
    assert_eq!(token.permissions, TokenRequest::read().permissions());
    assert!(token
        .expires_at
        .is_some_and(|at| at > Utc::now() + Duration::minutes(50)));

    // Without credentials git gets a 401 challenge and, with prompts off, gives up.
    let url = git_url(&w.fake.git_base(), "acme", "widgets");
    assert_fails(
        &git(w.work.path(), None, &["clone", "--quiet", &url, "anon"]),
        "anonymous clone",
        "Username",
    );

    // `git -c http.extraHeader=…` works too.
    let header = format!("http.extraHeader={}", basic_auth_header(&token.token));
    assert_ok(
        &git(
            w.work.path(),
            None,
            &["-c", &header, "clone", "--quiet", &url, "c"],
        ),
        "clone",
    );
    assert!(w.work.path().join("c/README.md").is_file());
    let config = std::fs::read_to_string(w.work.path().join("c/.git/config")).expect("config");
    assert!(
        !config.contains(&token.token) && !config.contains("extraHeader"),
        "token leaked into .git/config"
    );

    let push = commit_and_push(&w, &token, "c", "errand/x", "x.txt");
    assert_fails(&push, "push with a read token", "403");

    let issued = w.fake.tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].repositories, vec!["acme/widgets"]);
    assert!(issued[0].uses >= 2, "uses: {}", issued[0].uses);
}

#[tokio::test]
async fn write_token_pushes_opens_a_pull_and_comments() {
    // Long stateless-style tokens: nothing may assume 40 characters.
    let w = world_with(|c| c.token_style(TokenStyle::Stateless));
    let token = w
        .client
        .mint_token("acme", "widgets", TokenRequest::write())
        .await
        .expect("mint");
    assert!(
        token.token.len() > 400 && token.token.matches('.').count() == 2,
        "{}",
        token.token.len()
    );
    assert_eq!(token.permissions, TokenRequest::write().permissions());

    assert_ok(&clone(&w, &token, "widgets", "c"), "clone");
    assert_ok(
        &commit_and_push(&w, &token, "c", "errand/fix-1", "src/fix.txt"),
        "push",
    );

    let missing = w
        .client
        .create_pull(&token, "acme", "widgets", &pull("errand/nope"))
        .await
        .expect_err("no branch");
    assert!(
        matches!(missing, GithubError::Unprocessable { .. }),
        "{missing:?}"
    );

    let pr = w
        .client
        .create_pull(&token, "acme", "widgets", &pull("errand/fix-1"))
        .await
        .expect("create pull");
    assert_eq!(pr.number, 1);
    assert_eq!(
        pr.html_url,
        format!("{}/acme/widgets/pull/1", w.fake.git_base())
    );
    let recorded = w.fake.pulls();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        (recorded[0].head.as_str(), recorded[0].base.as_str()),
        ("errand/fix-1", "main")
    );
    assert!(recorded[0].draft);
    let dup = w
        .client
        .create_pull(&token, "acme", "widgets", &pull("errand/fix-1"))
        .await
        .expect_err("duplicate");
    assert!(dup.to_string().contains("already exists"), "{dup}");

    let url = w
        .client
        .comment(&token, "acme", "widgets", pr.number, "Opened #1")
        .await
        .expect("comment");
    assert!(
        url.contains("/acme/widgets/issues/1#issuecomment-"),
        "{url}"
    );
    let issue = w.fake.create_issue("acme", "widgets");
    assert_eq!(issue, 2);
    w.client
        .comment(&token, "acme", "widgets", issue, "On it")
        .await
        .expect("comment on issue");
    let missing = w
        .client
        .comment(&token, "acme", "widgets", 99, "?")
        .await
        .expect_err("no such issue");
    assert_eq!(missing.status(), Some(404));
    assert_eq!(w.fake.comments().len(), 2);
}

#[tokio::test]
async fn token_for_one_repo_cannot_touch_another() {
    let w = world();
    let token = w
        .client
        .mint_token("acme", "widgets", Access::Write)
        .await
        .expect("mint");
    assert_fails(
        &clone(&w, &token, "gadgets", "g"),
        "clone of another repo",
        "403",
    );
    let err = w
        .client
        .create_pull(&token, "acme", "gadgets", &pull("main"))
        .await
        .expect_err("other repo");
    assert_eq!(err.status(), Some(404), "{err:?}");
    let err = w
        .client
        .comment(&token, "acme", "gadgets", 1, "hi")
        .await
        .expect_err("other repo");
    assert_eq!(err.status(), Some(404), "{err:?}");
}

#[tokio::test]
async fn revoked_and_expired_tokens_stop_working() {
    let w = world();
    let token = w
        .client
        .mint_token("acme", "widgets", Access::Write)
        .await
        .expect("mint");
    assert_ok(&clone(&w, &token, "widgets", "c"), "clone");
    w.client.revoke(&token).await.expect("revoke");
    assert!(w.fake.tokens()[0].revoked);
    assert!(w
        .fake
        .requests()
        .contains(&"DELETE /api/v3/installation/token".to_string()));
    assert_fails(
        &clone(&w, &token, "widgets", "again"),
        "clone after revoke",
        "Username",
    );
    let err = w
        .client
        .create_pull(&token, "acme", "widgets", &pull("main"))
        .await
        .expect_err("revoked");
    assert!(matches!(err, GithubError::Unauthorized { .. }), "{err:?}");
    // Revoking twice is fine (GitHub answers 401).
    w.client.revoke(&token).await.expect("second revoke");

    let token = w
        .client
        .mint_token("acme", "widgets", Access::Write)
        .await
        .expect("mint");
    assert!(w.fake.expire_token(&token.token));
    assert_fails(
        &clone(&w, &token, "widgets", "expired"),
        "clone with expired token",
        "Username",
    );
    let err = w
        .client
        .comment(&token, "acme", "widgets", 1, "hi")
        .await
        .expect_err("expired");
    assert!(matches!(err, GithubError::Unauthorized { .. }), "{err:?}");
}

#[tokio::test]
async fn permissions_beyond_the_grant_are_refused() {
    let w = world();
    let err = w
        .client
        .mint_token("acme", "widgets", TokenRequest::write().with_workflows())
        .await
        .expect_err("workflows");
    assert!(matches!(err, GithubError::Scope { .. }), "{err:?}");

    let w = world_with(|c| c.permissions(&[("contents", "read"), ("metadata", "read")]));
    let err = w
        .client
        .mint_token("acme", "widgets", Access::Write)
        .await
        .expect_err("write");
    assert!(matches!(err, GithubError::Scope { .. }), "{err:?}");
    assert!(w
        .client
        .mint_token("acme", "widgets", Access::Read)
        .await
        .is_ok());
    assert_eq!(w.fake.tokens().len(), 1);
}

#[tokio::test]
async fn repository_outside_the_installation_is_not_installed() {
    let w = world();
    let err = w
        .client
        .mint_token("acme", "private", Access::Read)
        .await
        .expect_err("not installed");
    match err {
        GithubError::NotInstalled { repo } => assert_eq!(repo, "acme/private"),
        other => panic!("expected NotInstalled, got {other:?}"),
    }
    let err = w
        .client
        .installation_id("acme", "../etc")
        .await
        .expect_err("bad name");
    assert!(matches!(err, GithubError::InvalidName(_)), "{err:?}");
}

#[tokio::test]
async fn workflow_changes_need_the_workflows_permission() {
    let w = world();
    let token = w
        .client
        .mint_token("acme", "widgets", Access::Write)
        .await
        .expect("mint");
    assert_ok(&clone(&w, &token, "widgets", "c"), "clone");
    let push = commit_and_push(&w, &token, "c", "errand/ci", ".github/workflows/ci.yml");
    assert_fails(&push, "workflow push", "without `workflows` permission");

    let w = world_with(|c| {
        c.permissions(&[
            ("contents", "write"),
            ("pull_requests", "write"),
            ("metadata", "read"),
            ("workflows", "write"),
        ])
    });
    let token = w
        .client
        .mint_token("acme", "widgets", TokenRequest::write().with_workflows())
        .await
        .expect("mint");
    assert_ok(&clone(&w, &token, "widgets", "c"), "clone");
    assert_ok(
        &commit_and_push(&w, &token, "c", "errand/ci", ".github/workflows/ci.yml"),
        "workflow push",
    );
}

#[tokio::test]
async fn token_debug_output_hides_the_token() {
    let w = world();
    let token = w
        .client
        .mint_token("acme", "widgets", Access::Read)
        .await
        .expect("mint");
    let debug = format!("{token:?}");
    assert!(!debug.contains(&token.token), "{debug}");
    assert!(debug.contains("widgets"));
    let creds = format!("{:?}", AppCredentials::new(APP_ID, keys().0.clone()));
    assert!(!creds.contains("PRIVATE KEY"), "{creds}");
}

#[tokio::test]
async fn large_fetch_requests_are_gzipped_and_still_served() {
    let w = world();
    // Enough refs that git's want list exceeds 1 KiB, so it sends `Content-Encoding: gzip`.
    let repo = w.fake.repo_path("acme", "widgets");
    for i in 0..60 {
        let out = git(
            &repo,
            None,
            &["branch", &format!("topic/branch-number-{i:03}"), "main"],
        );
        assert_ok(&out, "branch");
    }
    let token = w
        .client
        .mint_token("acme", "widgets", Access::Read)
        .await
        .expect("mint");
    let url = git_url(&w.fake.git_base(), "acme", "widgets");
    let out = git(
        w.work.path(),
        Some(&token.basic_auth_header()),
        &["clone", "--quiet", "--mirror", &url, "m.git"],
    );
    assert_ok(&out, "mirror clone");
    let refs = git(
        &w.work.path().join("m.git"),
        None,
        &["for-each-ref", "--count=100", "refs/heads/"],
    );
    assert_eq!(String::from_utf8_lossy(&refs.stdout).lines().count(), 61);
}

#[tokio::test(flavor = "multi_thread")]
async fn threads_and_checks_are_read_only_with_the_permission_each_needs() {
    let w = world();
    let write = w
        .client
        .mint_token("acme", "widgets", TokenRequest::write())
        .await
        .expect("mint");
    assert_ok(&clone(&w, &write, "widgets", "c"), "clone");
    assert_ok(
        &commit_and_push(&w, &write, "c", "topic", "src/topic.txt"),
        "push",
    );
    let issue = w.fake.open_issue(
        "acme",
        "widgets",
        "monalisa",
        "Crash on empty input",
        "It panics.",
        &["bug"],
    );
    for i in 0..105 {
        w.fake
            .add_comment("acme", "widgets", issue, "octocat", &format!("comment {i}"));
    }
    let pull = w.fake.open_pull(
        "acme", "widgets", "monalisa", "topic", "main", "Topic", None,
    );
    w.fake.add_review_comment(
        "acme",
        "widgets",
        pull,
        "octocat",
        "why?",
        "src/topic.txt",
        None,
        1,
        "@@ -0,0 +1 @@\n+x",
    );
    let check = w.fake.add_check(
        "acme",
        "widgets",
        "topic",
        "abc",
        "test",
        "failure",
        &[("checkout", "success"), ("cargo test", "failure")],
        &format!("{}\nerror: the last line\n", "noise\n".repeat(10_000)),
    );

    let thread = w
        .client
        .mint_token("acme", "widgets", TokenRequest::thread())
        .await
        .expect("mint a thread token");
    let got = w
        .client
        .issue(&thread, "acme", "widgets", issue)
        .await
        .expect("issue");
    assert_eq!(
        (got.title.as_str(), got.comments),
        ("Crash on empty input", 105)
    );
    assert_eq!(got.labels[0].name, "bug");
    let recent = w
        .client
        .recent_comments(&thread, "acme", "widgets", issue, got.comments, 20)
        .await
        .expect("comments");
    assert_eq!(recent.omitted, 85);
    assert_eq!(recent.comments.len(), 20);
    assert_eq!(
        recent.comments.last().and_then(|c| c.body.as_deref()),
        Some("comment 104")
    );
    assert_eq!(recent.comments[0].body.as_deref(), Some("comment 85"));
    let pr = w
        .client
        .pull(&thread, "acme", "widgets", pull)
        .await
        .expect("pull");
    assert_eq!(pr.head.branch, "topic");
    assert!(!pr.is_from_fork("acme", "widgets"));
    let files = w
        .client
        .pull_files(&thread, "acme", "widgets", pull, 50)
        .await
        .expect("files");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].filename, "src/topic.txt");
    let reviews = w
        .client
        .review_comments(&thread, "acme", "widgets", pull, 3)
        .await
        .expect("reviews");
    assert_eq!(reviews[0].path, "src/topic.txt");
    assert_eq!(
        w.client
            .permission(&thread, "acme", "widgets", "nobody")
            .await
            .expect("perm"),
        "none"
    );
    w.fake
        .set_permission("acme", "widgets", "monalisa", "write");
    assert_eq!(
        w.client
            .permission(&thread, "acme", "widgets", "monalisa")
            .await
            .expect("perm"),
        "write"
    );
    // A thread token reads no checks, and cannot comment.
    let err = w
        .client
        .check_run(&thread, "acme", "widgets", check.id)
        .await
        .expect_err("no checks");
    assert_eq!(err.status(), Some(403), "{err}");
    let err = w
        .client
        .post_comment(&thread, "acme", "widgets", issue, "hi")
        .await
        .expect_err("read only");
    assert_eq!(err.status(), Some(403), "{err}");

    let ci = w
        .client
        .mint_token("acme", "widgets", TokenRequest::ci())
        .await
        .expect("mint a CI token");
    let run = w
        .client
        .check_run(&ci, "acme", "widgets", check.id)
        .await
        .expect("check run");
    assert!(run.failed());
    let job = w
        .client
        .job(&ci, "acme", "widgets", check.id)
        .await
        .expect("job")
        .expect("a job");
    assert_eq!(
        job.failed_step().map(|s| s.name.as_str()),
        Some("cargo test")
    );
    let jobs = w
        .client
        .workflow_jobs(&ci, "acme", "widgets", check.workflow_run_id)
        .await
        .expect("jobs");
    assert_eq!(jobs.len(), 1);
    let tail = w
        .client
        .job_log_tail(&ci, "acme", "widgets", check.id, 200)
        .await
        .expect("log");
    assert!(
        tail.len() <= 200 && tail.ends_with("error: the last line\n"),
        "{tail:?}"
    );
    assert!(tail.starts_with("noise\n"), "cut at a line start: {tail:?}");
    let err = w
        .client
        .issue(&ci, "acme", "widgets", issue)
        .await
        .expect_err("no issues");
    assert_eq!(err.status(), Some(403), "{err}");

    // The App edits only its own comments, with a token that may write issues.
    let comment = w
        .client
        .mint_token("acme", "widgets", TokenRequest::comment())
        .await
        .expect("mint");
    let posted = w
        .client
        .post_comment(&comment, "acme", "widgets", issue, "queued")
        .await
        .expect("post");
    let edited = w
        .client
        .edit_comment(&comment, "acme", "widgets", posted.id, "running")
        .await
        .expect("edit");
    assert_eq!(edited.id, posted.id);
    let theirs = recent.comments[0].id;
    let err = w
        .client
        .edit_comment(&comment, "acme", "widgets", theirs, "x")
        .await
        .expect_err("not ours");
    assert_eq!(err.status(), Some(403), "{err}");
    let c = w
        .fake
        .comments()
        .into_iter()
        .find(|c| c.id == posted.id)
        .expect("recorded");
    assert_eq!((c.body.as_str(), c.edits), ("running", 1));
}

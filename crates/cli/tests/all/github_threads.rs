//! From issue to pull request and back, end to end: signed webhooks to
//! `errand serve`, the strict fake GitHub (issues, pull requests with head
//! branches, review comments with diff hunks, check runs, job logs, the
//! label event) and the real Claude Code under the scripted model, whose
//! requests are kept to check what the agent was told.

use std::time::{Duration, Instant};

use crate::common::github::{world, World, WEBHOOK_SECRET};
use crate::common::*;
use serde_json::{json, Value};

fn hub_signature(body: &str) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

static DELIVERY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Delivers `payload` as GitHub would: the event header and the signature.
async fn deliver(base: &str, event: &str, payload: &Value) -> (u16, String) {
    let body = payload.to_string();
    let headers = vec![
        ("X-GitHub-Event".to_string(), event.to_string()),
        (
            "X-GitHub-Delivery".to_string(),
            format!(
                "d-{}",
                DELIVERY.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        ),
        ("X-Hub-Signature-256".to_string(), hub_signature(&body)),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    post(
        &reqwest::Client::new(),
        &format!("{base}/github/webhook"),
        &headers,
        body,
    )
    .await
}

fn repository() -> Value {
    json!({ "name": "widgets", "full_name": "acme/widgets", "owner": { "login": "acme", "type": "Organization" } })
}

fn user(login: &str) -> Value {
    json!({ "login": login, "type": "User" })
}

fn issue_comment(number: u64, id: u64, author: &str, body: &str, pull: bool) -> Value {
    let mut issue = json!({ "number": number, "title": "t", "state": "open" });
    if pull {
        issue["pull_request"] = json!({ "url": "x" });
    }
    json!({
        "action": "created",
        "issue": issue,
        "comment": { "id": id, "body": body, "user": user(author), "created_at": chrono::Utc::now().to_rfc3339() },
        "repository": repository(), "sender": user(author), "installation": { "id": 7 }
    })
}

async fn run_json(base: &str, token: &str, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}/api/runs/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("json")
}

/// Waits until run `id` has ended `turns` times, and returns it.
async fn wait_turns(base: &str, token: &str, id: &str, turns: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let v = run_json(base, token, id).await;
        let ended = v["transitions"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter(|t| {
                        ["succeeded", "failed", "cancelled", "timed_out"]
                            .contains(&t["state"].as_str().unwrap_or(""))
                    })
                    .count()
            })
            .unwrap_or(0);
        if ended >= turns && ended_now(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "turn {turns} never ended: {v:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until there are `n` runs and every one has ended; returns them.
/// The limit only detects a hang.
async fn runs_ended(base: &str, token: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let runs = list_runs(base, token).await;
        if runs.len() == n && runs.iter().all(ended) {
            return runs;
        }
        assert!(Instant::now() < deadline, "runs never ended: {runs:#?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn ended_now(v: &Value) -> bool {
    ended(v)
}

fn run_id(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["run"].as_str().expect("a run id").to_string()
}

/// The bodies of the model requests since `from` (the agent's conversation).
fn told(model: &errand_model::ScriptedModel, from: usize) -> String {
    model.log().bodies()[from..].join("\n")
}

/// The JSON-escaped form of `s`, as it appears inside a request body.
fn esc(s: &str) -> String {
    let q = serde_json::to_string(s).expect("string");
    q[1..q.len() - 1].to_string()
}

async fn wait_comment(
    w: &World,
    what: impl Fn(&errand_github::fake::RecordedComment) -> bool,
) -> errand_github::fake::RecordedComment {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(c) = w.github.comments().into_iter().find(|c| what(c)) {
            return c;
        }
        assert!(Instant::now() < deadline, "{:#?}", w.github.comments());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const SCENARIO: &str = r#"{"steps":[
    {"write":{"path":"FIX.md","content":"fixed\n"}},
    {"text":"Fixed the crash."},
    {"write":{"path":"EMPTY.md","content":"empty list handled\n"}},
    {"text":"Handled the empty list."},
    {"write":{"path":"CI.md","content":"ci fixed\n"}},
    {"text":"Fixed the failing test."}
]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_issue_becomes_a_pull_request_that_review_comments_and_a_failing_check_update_in_place()
{
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let model = errand_test_support::model::start_recording(SCENARIO).await;
    let env = Env::new()
        .with_model(&model)
        .var("ERRAND_GITHUB_FIX_CI", "true")
        .var("ERRAND_GITHUB_FIX_CI_ATTEMPTS", "1");
    let w = world(env).await;
    let token = api_token(&w.env, "tests");
    let (_server, base) = serve(&w.env, "2");

    // An issue with a discussion; octocat asks errand in a comment.
    let issue = w.github.open_issue(
        "acme",
        "widgets",
        "monalisa",
        "Crash on empty input",
        "Calling total() with no items panics with an index error.",
        &["bug"],
    );
    w.github.add_comment(
        "acme",
        "widgets",
        issue,
        "hubot",
        "I can reproduce this on main.",
    );
    let request = "@errand fix this please, and keep the API as it is";
    let cid = w
        .github
        .add_comment("acme", "widgets", issue, "octocat", request);
    let payload = issue_comment(issue, cid, "octocat", request, false);
    let (status, body) = deliver(&base, "issue_comment", &payload).await;
    assert_eq!(status, 201, "{body}");
    let id = run_id(&body);
    // GitHub delivers again when it thinks a delivery failed: nothing runs twice.
    let (status, body) = deliver(&base, "issue_comment", &payload).await;
    assert_eq!((status, body.as_str()), (200, "already received"));

    let run = wait_turns(&base, &token, &id, 1).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let first = told(&model, 0);
    for needle in [
        "Calling total() with no items panics with an index error.",
        "I can reproduce this on main.",
        "THE REQUEST: the comment by @octocat",
        request,
        "Crash on empty input",
        "not instructions from errand",
    ] {
        assert!(
            first.contains(&esc(needle)),
            "the model was not told {needle:?}"
        );
    }
    let pulls = w.github.pulls();
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    let pr = pulls[0].clone();
    assert!(pr.body.contains(&format!("Closes #{issue}")), "{}", pr.body);
    // One status comment on the issue, edited to the outcome.
    let status_comment = wait_comment(&w, |c| {
        c.issue_number == issue && c.body.contains("succeeded")
    })
    .await;
    assert!(status_comment.edits >= 2, "{status_comment:#?}");
    assert!(
        status_comment.body.contains(&pr.number.to_string()),
        "{status_comment:#?}"
    );

    // A review comment on a line of errand's pull request continues the run.
    let hunk = "@@ -0,0 +1,2 @@\n+fixed\n+more";
    let rc = w.github.add_review_comment(
        "acme",
        "widgets",
        pr.number,
        "octocat",
        "@errand also handle the empty list",
        "FIX.md",
        Some(1),
        2,
        hunk,
    );
    let before = model.log().bodies().len();
    let review = json!({
        "action": "created",
        "comment": {
            "id": rc.id, "body": rc.body, "user": user("octocat"), "path": "FIX.md", "diff_hunk": hunk,
            "start_line": 1, "line": 2, "side": "RIGHT", "commit_id": "abc",
            "created_at": chrono::Utc::now().to_rfc3339()
        },
        "pull_request": {
            "number": pr.number,
            "head": { "ref": pr.head, "sha": "abc", "repo": { "full_name": "acme/widgets" } },
            "base": { "ref": "main", "sha": "def" }
        },
        "repository": repository(), "sender": user("octocat"), "installation": { "id": 7 }
    });
    let (status, body) = deliver(&base, "pull_request_review_comment", &review).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(run_id(&body), id, "the same run continues");
    let run = wait_turns(&base, &token, &id, 2).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let second = told(&model, before);
    for needle in [
        "review comment on `FIX.md`, lines 1–2",
        "+more",
        "also handle the empty list",
    ] {
        assert!(
            second.contains(&esc(needle)),
            "the model was not told {needle:?}"
        );
    }
    let bare = w.github.repo_path("acme", "widgets");
    assert_eq!(
        git(&bare, &["show", &format!("{}:EMPTY.md", pr.head)]),
        "empty list handled"
    );
    assert_eq!(w.github.pulls().len(), 1, "no second pull request");

    // A failing check on the branch: one fix, pushed to the same branch.
    let sha = git(&bare, &["rev-parse", &pr.head]);
    let log = "2025-01-01T00:00:00.0000000Z test tests::total ... FAILED\n2025-01-01T00:00:01.0000000Z assertion failed: total(&[]) == 0\n";
    let check = w.github.add_check(
        "acme",
        "widgets",
        &pr.head,
        &sha,
        "test",
        "failure",
        &[("checkout", "success"), ("cargo test", "failure")],
        log,
    );
    let check_run = |c: &errand_github::fake::FakeCheck| {
        json!({
            "action": "completed",
            "check_run": {
                "id": c.id, "name": c.name, "head_sha": c.head_sha, "status": "completed", "conclusion": "failure",
                "check_suite": { "id": c.suite_id, "head_branch": c.head_branch, "head_sha": c.head_sha },
                "pull_requests": [{ "number": pr.number }], "app": { "slug": "github-actions" }
            },
            "repository": repository(), "sender": json!({ "login": "github-actions[bot]", "type": "Bot" }),
            "installation": { "id": 7 }
        })
    };
    let before = model.log().bodies().len();
    let (status, body) = deliver(&base, "check_run", &check_run(&check)).await;
    assert_eq!(status, 202, "{body}");
    // The suite's delivery for the same commit starts nothing more.
    let suite = json!({
        "action": "completed",
        "check_suite": { "id": check.suite_id, "head_branch": pr.head, "head_sha": sha, "conclusion": "failure",
                         "pull_requests": [{ "number": pr.number }], "app": { "slug": "github-actions" } },
        "repository": repository(), "sender": json!({ "login": "github-actions[bot]", "type": "Bot" })
    });
    assert_eq!(deliver(&base, "check_suite", &suite).await.0, 202);
    let run = wait_turns(&base, &token, &id, 3).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    let third = told(&model, before);
    for needle in [
        "The CI check `test` failed",
        "at the step `cargo test`",
        "assertion failed: total(&[]) == 0",
    ] {
        assert!(
            third.contains(&esc(needle)),
            "the model was not told {needle:?}"
        );
    }
    assert_eq!(
        git(&bare, &["show", &format!("{}:CI.md", pr.head)]),
        "ci fixed"
    );
    assert_eq!(w.github.pulls().len(), 1, "no second pull request");

    // The same failure on errand's fix: errand stops and says so, once.
    let sha = git(&bare, &["rev-parse", &pr.head]);
    let again = w.github.add_check(
        "acme",
        "widgets",
        &pr.head,
        &sha,
        "test",
        "failure",
        &[("checkout", "success"), ("cargo test", "failure")],
        &log.replace("2025-01-01T00:00:0", "2025-01-02T10:00:0"),
    );
    assert_eq!(deliver(&base, "check_run", &check_run(&again)).await.0, 202);
    let stop = wait_comment(&w, |c| {
        c.issue_number == pr.number && c.body.contains("stops")
    })
    .await;
    assert!(
        stop.body.contains("failed again the same way"),
        "{}",
        stop.body
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let run = run_json(&base, &token, &id).await;
    assert_eq!(
        run["transitions"]
            .as_array()
            .map(|t| t.iter().filter(|t| t["state"] == "succeeded").count()),
        Some(3),
        "no fourth turn: {run:#}"
    );
    // Every token minted was revoked, and none outlived its purpose.
    assert!(
        w.github.tokens().iter().all(|t| t.revoked),
        "{:#?}",
        w.github.tokens()
    );
}

const ONE_TURN: &str = r#"{"steps":[
    {"write":{"path":"DONE.md","content":"done\n"}},
    {"text":"Done."}
]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_label_and_a_slack_address_start_runs_given_the_issue_and_a_forks_pull_request_is_refused(
) {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let model = errand_test_support::model::start_recording(ONE_TURN).await;
    let env = Env::new()
        .with_model(&model)
        .var("ERRAND_GITHUB_LABEL", "errand");
    let w = world(env).await;
    let token = api_token(&w.env, "tests");
    let (_server, base) = serve(&w.env, "2");

    // A fork's pull request: refused with a comment, nothing runs.
    let fork_pr = w.github.open_pull(
        "acme",
        "widgets",
        "mallory",
        "evil",
        "main",
        "Improve",
        Some("mallory/widgets"),
    );
    let cid = w
        .github
        .add_comment("acme", "widgets", fork_pr, "octocat", "@errand rebase this");
    let (status, body) = deliver(
        &base,
        "issue_comment",
        &issue_comment(fork_pr, cid, "octocat", "@errand rebase this", true),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let refusal = wait_comment(&w, |c| {
        c.issue_number == fork_pr && c.author == "errand[bot]"
    })
    .await;
    assert!(refusal.body.contains("fork"), "{}", refusal.body);

    // The configured label on an issue, added by someone errand's access rules allow.
    let issue = w.github.open_issue(
        "acme",
        "widgets",
        "monalisa",
        "Add a changelog",
        "We need a CHANGELOG.md listing releases.",
        &[],
    );
    let labeled = json!({
        "action": "labeled",
        "issue": { "number": issue, "title": "Add a changelog", "labels": [{ "name": "errand" }] },
        "label": { "name": "errand" },
        "repository": repository(), "sender": user("octocat"), "installation": { "id": 7 }
    });
    let (status, body) = deliver(&base, "issues", &labeled).await;
    assert_eq!(status, 201, "{body}");
    let label_run = run_id(&body);
    // Someone no rule allows: refused.
    let mut other = labeled.clone();
    other["sender"] = user("mallory");
    other["issue"]["number"] = json!(issue);
    other["label"]["name"] = json!("Errand");
    assert_eq!(deliver(&base, "issues", &other).await.0, 403);

    // Slack: /agent with the address of another issue.
    let issue2 = w.github.open_issue(
        "acme",
        "widgets",
        "monalisa",
        "Typo in README",
        "README says 'helo'.",
        &[],
    );
    let url = format!("{}/acme/widgets/issues/{issue2}", w.github.git_base());
    let fields = w
        .slack
        .agent_command_fields("U1", "C1", &format!("--push fix {url}"), "t-url");
    let (headers, body) = w
        .slack
        .signed_command(&fields, chrono::Utc::now().timestamp());
    let (status, body) = post(
        &reqwest::Client::new(),
        &format!("{base}/slack/commands"),
        &headers,
        body,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Queued run"), "{body}");

    let run = wait_turns(&base, &token, &label_run, 1).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(run["requested_by"], "github:octocat");
    let deadline = Instant::now() + Duration::from_secs(240);
    let slack_run = loop {
        let found = list_runs(&base, &token)
            .await
            .into_iter()
            .find(|r| r["requested_by"] == "slack:T0FAKE/U1");
        if let Some(r) = found.filter(ended) {
            break r;
        }
        assert!(Instant::now() < deadline, "the Slack run never ended");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(slack_run["state"], "succeeded", "{slack_run:#}");
    let all = told(&model, 0);
    for needle in [
        "We need a CHANGELOG.md listing releases.",
        "Resolve issue #",
        "README says 'helo'.",
        &format!("fix {url}"),
    ] {
        assert!(
            all.contains(&esc(needle)),
            "the model was not told {needle:?}"
        );
    }
    let pulls = w.github.pulls();
    assert_eq!(
        pulls.iter().filter(|p| p.author == "errand[bot]").count(),
        2,
        "{pulls:#?}"
    );
    assert!(pulls
        .iter()
        .any(|p| p.body.contains(&format!("Closes #{issue}"))));
    assert!(pulls
        .iter()
        .any(|p| p.body.contains(&format!("Closes #{issue2}"))));
}

/// A new conversation starts at the first step: each run appends a line of
/// its own to NOTES.md, so each has a commit to push; a follow-up turn
/// (the CI fix) goes on to the third.
const NOTE_THEN_FIX: &str = r#"{"steps":[
    {"shell":"date +%s%N >> NOTES.md && echo NOTED"},
    {"text":"Noted."},
    {"write":{"path":"CI1.md","content":"first ci fix\n"}},
    {"text":"Fixed the check."}
]}"#;

/// Someone else's pull request of the same repository: a mention pushes to its
/// branch only when GitHub lets the requester push there; Slack's `/agent`
/// with the pull request's address works on the same branch; a check that
/// keeps failing in new ways stops after `github.fix_ci_attempts` tries.
#[tokio::test(flavor = "multi_thread")]
async fn another_pull_request_gets_commits_on_its_branch_and_ci_fixes_stop_after_their_attempts() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let model = errand_test_support::model::start_recording(NOTE_THEN_FIX).await;
    let env = Env::new()
        .with_model(&model)
        .var("ERRAND_GITHUB_FIX_CI", "true")
        .var("ERRAND_GITHUB_FIX_CI_ATTEMPTS", "1");
    let w = world(env).await;
    let token = api_token(&w.env, "tests");
    let (_server, base) = serve(&w.env, "2");
    let bare = w.github.repo_path("acme", "widgets");
    git(&bare, &["branch", "feature", "main"]);
    let pr = w.github.open_pull(
        "acme",
        "widgets",
        "monalisa",
        "feature",
        "main",
        "Add the feature",
        None,
    );

    // errand's access rules let octocat push, GitHub does not (yet): refused, nothing runs.
    let ask = "@errand add a note";
    let cid = w.github.add_comment("acme", "widgets", pr, "octocat", ask);
    let (status, body) = deliver(
        &base,
        "issue_comment",
        &issue_comment(pr, cid, "octocat", ask, true),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let refusal = wait_comment(&w, |c| {
        c.issue_number == pr && c.author == "errand[bot]" && c.body.contains("may not push")
    })
    .await;
    assert!(refusal.body.contains("`feature`"), "{}", refusal.body);
    assert_eq!(model.log().bodies().len(), 0, "nothing ran");

    // With write access on GitHub: the run works on the pull request's own branch.
    w.github
        .set_permission("acme", "widgets", "octocat", "write");
    let cid = w.github.add_comment("acme", "widgets", pr, "octocat", ask);
    let (status, body) = deliver(
        &base,
        "issue_comment",
        &issue_comment(pr, cid, "octocat", ask, true),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let first = run_id(&body);
    let run = wait_turns(&base, &token, &first, 1).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(
        git(&bare, &["show", "feature:NOTES.md"]).lines().count(),
        1,
        "the run's commit is on the pull request's branch"
    );
    assert!(
        told(&model, 0).contains(&esc("Add the feature")),
        "the model was not told the pull request's title"
    );

    // Slack: /agent with the pull request's address pushes to the same branch.
    let url = format!("{}/acme/widgets/pull/{pr}", w.github.git_base());
    let before = model.log().bodies().len();
    let fields =
        w.slack
            .agent_command_fields("U1", "C1", &format!("--push add a note {url}"), "t-pr");
    let (headers, body) = w
        .slack
        .signed_command(&fields, chrono::Utc::now().timestamp());
    let (status, body) = post(
        &reqwest::Client::new(),
        &format!("{base}/slack/commands"),
        &headers,
        body,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Queued run"), "{body}");
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if git(&bare, &["show", "feature:NOTES.md"]).lines().count() == 2 {
            break;
        }
        if Instant::now() >= deadline {
            let runs = list_runs(&base, &token).await;
            panic!("the Slack run never pushed to the branch: {runs:#?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(told(&model, before).contains(&esc("Add the feature")));
    assert_eq!(
        w.github
            .pulls()
            .iter()
            .filter(|p| p.author == "errand[bot]")
            .count(),
        0,
        "errand opened no pull request of its own: {:#?}",
        w.github.pulls()
    );
    // Wait for every run to end before the checks arrive.
    runs_ended(&base, &token, 2).await;

    // A failing check on someone else's pull request: errand fixes CI only on its own.
    let check_run = |c: &errand_github::fake::FakeCheck, number: u64| {
        json!({
            "action": "completed",
            "check_run": {
                "id": c.id, "name": c.name, "head_sha": c.head_sha, "status": "completed", "conclusion": "failure",
                "check_suite": { "id": c.suite_id, "head_branch": c.head_branch, "head_sha": c.head_sha },
                "pull_requests": [{ "number": number }], "app": { "slug": "github-actions" }
            },
            "repository": repository(), "sender": json!({ "login": "github-actions[bot]", "type": "Bot" }),
            "installation": { "id": 7 }
        })
    };
    let steps = [("checkout", "success"), ("cargo test", "failure")];
    let check = |branch: &str, log: &str| {
        let sha = git(&bare, &["rev-parse", branch]);
        w.github.add_check(
            "acme", "widgets", branch, &sha, "test", "failure", &steps, log,
        )
    };
    let before = model.log().bodies().len();
    let theirs = check("feature", "test tests::zero ... FAILED\n");
    assert_eq!(
        deliver(&base, "check_run", &check_run(&theirs, pr)).await.0,
        202
    );

    // errand's own pull request (a plain Slack request).
    let fields =
        w.slack
            .agent_command_fields("U1", "C1", "--push acme/widgets add a note", "t-own");
    let (headers, body) = w
        .slack
        .signed_command(&fields, chrono::Utc::now().timestamp());
    let (status, body) = post(
        &reqwest::Client::new(),
        &format!("{base}/slack/commands"),
        &headers,
        body,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    runs_ended(&base, &token, 3).await;
    // Only the new run spoke to the model: the check on `feature` started nothing.
    assert_eq!(
        model.log().bodies().len(),
        before + 2,
        "{}",
        told(&model, before)
    );
    let own = w
        .github
        .pulls()
        .into_iter()
        .find(|p| p.author == "errand[bot]")
        .expect("errand's pull request");

    // A failing check on errand's pull request: one attempt (github.fix_ci_attempts = 1).
    let before = model.log().bodies().len();
    let first_failure = check(
        &own.head,
        "test tests::one ... FAILED\nassertion failed: one() == 1\n",
    );
    assert_eq!(
        deliver(&base, "check_run", &check_run(&first_failure, own.number))
            .await
            .0,
        202
    );
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if git(&bare, &["ls-tree", "--name-only", &own.head]).contains("CI1.md") {
            break;
        }
        assert!(Instant::now() < deadline, "the CI fix never pushed");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(told(&model, before).contains(&esc("assertion failed: one() == 1")));
    assert!(told(&model, before).contains(&esc("attempt 1 of 1")));
    let runs = runs_ended(&base, &token, 3).await;
    // The run asked for in Slack keeps its Slack thread through the fix.
    let fixed = runs
        .iter()
        .find(|r| r["branch"] == own.head.as_str())
        .expect("the fixed run");
    assert_eq!(fixed["origin"]["kind"], "slack", "{fixed:#}");
    assert_eq!(fixed["state"], "succeeded", "{fixed:#}");

    // A new failure on the fixed commit: the one attempt is spent, errand stops and says so.
    let before = model.log().bodies().len();
    let second_failure = check(
        &own.head,
        "test tests::two ... FAILED\nassertion failed: two() == 2\n",
    );
    assert_eq!(
        deliver(&base, "check_run", &check_run(&second_failure, own.number))
            .await
            .0,
        202
    );
    let stop = wait_comment(&w, |c| {
        c.issue_number == own.number && c.body.contains("stops here")
    })
    .await;
    assert!(stop.body.contains("1 attempt(s)"), "{}", stop.body);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(model.log().bodies().len(), before, "no further turn ran");
    assert!(
        w.github.tokens().iter().all(|t| t.revoked),
        "{:#?}",
        w.github.tokens()
    );
}

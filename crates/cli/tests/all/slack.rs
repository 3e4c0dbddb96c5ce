//! Slack and GitHub end to end: a signed `/agent` command → a token scoped to
//! one repository on a fake GitHub → the real Claude Code under the scripted
//! model in the local sandbox → a pushed branch and a pull request → updates
//! and the outcome in the Slack thread; a reply in the thread continues the
//! run. Plus every refusal, each creating no run.
//!
//! The fakes check what the real services check: the fake Slack requires the
//! bot token and records every Web API call; the fake GitHub verifies the App
//! JWT against the App's public key, mints tokens only within the App's grant
//! and the requested repository, and serves real git over HTTP that accepts
//! only a valid, unrevoked token with the needed permission.

use std::time::{Duration, Instant};

use crate::common::github::{the_runs_write_token, world, World, APP_ID, WEBHOOK_SECRET};
use crate::common::*;
use serde_json::{json, Value};

const API_KEY: &str = "sk-test-e2e-0123456789";

/// `errand serve`, stopped when dropped.
struct Server {
    _proc: Proc,
    base: String,
}

fn start(env: &Env, workers: &str) -> Server {
    let (proc, base) = serve(env, workers);
    Server { _proc: proc, base }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn command(
    w: &World,
    http: &reqwest::Client,
    base: &str,
    channel: &str,
    text: &str,
    id: &str,
) -> (u16, String) {
    let fields = w.slack.agent_command_fields("U1", channel, text, id);
    let (headers, body) = w.slack.signed_command(&fields, now());
    post(http, &format!("{base}/slack/commands"), &headers, body).await
}

fn token(env: &Env) -> String {
    api_token(env, "tests")
}

async fn wait_run(base: &str, token: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(r) = list_runs(base, token).await.into_iter().find(|r| pred(r)) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting: {:#?}",
            list_runs(base, token).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// The tool prints the model API key (copied to another name first: the guard
// refuses printing it by name) and a piece of the run's git token (the
// stateless format starts with `ghs_<app id>_`), whole and split across writes.
const SCENARIO: &str = r#"{"steps":[
    {"write":{"path":"GREETING.md","content":"hello from errand\n"}},
    {"shell":"k=$ANTHROPIC_API_KEY; echo \"key=$k\"; printf 'ghs_2718'; printf '28_ and sk-test-e2e'; printf -- '-0123456789\\n'"},
    {"text":"Added GREETING.md."},
    {"shell":"echo more >> GREETING.md && git add -A && git commit -qm 'more greeting' && echo done"},
    {"text":"Appended to GREETING.md as asked."}
]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_slash_command_becomes_a_pull_request_and_the_thread_hears_how_it_went() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let model = model(SCENARIO).await;
    let w = world(Env::new().with_model(&model)).await;
    let api_token = token(&w.env);
    let server = start(&w.env, "2");
    let http = reqwest::Client::new();

    let (status, body) = command(
        &w,
        &http,
        &server.base,
        "C1",
        "--push acme/widgets add a greeting file",
        "r1",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ack: Value = serde_json::from_str(&body).expect("ack JSON");
    assert_eq!(ack["response_type"], "ephemeral");
    assert!(
        ack["text"].as_str().unwrap_or("").contains("Queued run"),
        "{ack}"
    );

    let run = wait_run(&server.base, &api_token, ended).await;
    let id = run["id"].as_str().expect("id").to_string();
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(run["requested_by"], "slack:T0FAKE/U1");
    assert_eq!(run["origin"]["kind"], "slack");
    assert_eq!(run["repo"], "acme/widgets");

    // The pull request, opened by errand with the run's token.
    let pulls = w.github.pulls();
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    assert_eq!(pulls[0].head, run["branch"].as_str().expect("branch"));
    assert_eq!(pulls[0].base, "main");
    assert!(pulls[0]
        .body
        .contains(&format!("http://errand.test/runs/{id}")));
    assert!(
        run["pr_url"]
            .as_str()
            .expect("pr_url")
            .ends_with(&format!("/acme/widgets/pull/{}", pulls[0].number)),
        "{run:#}"
    );
    // The branch is on the remote with the agent's file.
    let bare = w.github.repo_path("acme", "widgets");
    let shown = git(&bare, &["show", &format!("{}:GREETING.md", pulls[0].head)]);
    assert_eq!(shown, "hello from errand");

    // The token: exactly one repository, write only because --push, revoked.
    let t = &the_runs_write_token(&w.github);
    assert!(t.uses >= 2, "clone and push used it: {}", t.uses);

    // Slack: the card was posted in C1, updated as the run moved, and the
    // thread got the outcome with the pull request link.
    let calls = w
        .slack
        .wait_for_calls(
            |c| {
                c.iter().any(|c| {
                    c.method == "chat.postMessage"
                        && c.body["thread_ts"].is_string()
                        && c.body["text"].as_str().unwrap_or("").contains("succeeded")
                })
            },
            Duration::from_secs(30),
        )
        .await;
    let card = calls
        .iter()
        .find(|c| c.method == "chat.postMessage" && c.body["thread_ts"].is_null())
        .expect("the run's card");
    assert_eq!(card.body["channel"], "C1");
    let card_text = card.body.to_string();
    assert!(card_text.contains("acme/widgets") && card_text.contains("add a greeting file"));
    assert!(card_text.contains("<@U1>"), "who asked: {card_text}");
    assert!(card_text.contains(&format!("http://errand.test/runs/{id}")));
    assert!(
        card_text.contains("errand_cancel"),
        "a Cancel button while queued"
    );
    let updates: Vec<_> = calls.iter().filter(|c| c.method == "chat.update").collect();
    assert!(
        updates
            .iter()
            .any(|u| u.body.to_string().contains("running")),
        "{updates:#?}"
    );
    let last_update = updates.last().expect("updates").body.to_string();
    assert!(last_update.contains("succeeded") && !last_update.contains("errand_cancel"));
    let outcome = calls
        .iter()
        .find(|c| c.method == "chat.postMessage" && c.body["thread_ts"].is_string())
        .expect("outcome");
    let outcome_text = outcome.body["text"].as_str().unwrap_or("");
    assert!(
        outcome_text.contains(run["pr_url"].as_str().unwrap_or("?")),
        "{outcome_text}"
    );

    // The token is nowhere: not in the workspace's git config, not in the
    // events, not in the API, not in Slack.
    let events = http
        .get(format!("{}/api/runs/{id}/events", server.base))
        .bearer_auth(&api_token)
        .send()
        .await
        .expect("events")
        .text()
        .await
        .expect("text");
    let raw = http
        .get(format!("{}/api/runs/{id}/events?raw=1", server.base))
        .bearer_auth(&api_token)
        .send()
        .await
        .expect("raw")
        .text()
        .await
        .expect("text");
    let api_run = http
        .get(format!("{}/api/runs/{id}", server.base))
        .bearer_auth(&api_token)
        .send()
        .await
        .expect("run")
        .text()
        .await
        .expect("text");
    let git_config = std::fs::read_to_string(
        w.env
            .home
            .join("runs")
            .join(&id)
            .join("workspace/.git/config"),
    )
    .expect("workspace git config");
    let outbox_config =
        std::fs::read_to_string(w.env.home.join("runs").join(&id).join("outbox.git/config"))
            .expect("outbox git config");
    let slack_text: String = w.slack.calls().iter().map(|c| c.body.to_string()).collect();
    let token_piece = format!("ghs_{APP_ID}_");
    for (place, text) in [
        ("events", &events),
        ("raw events", &raw),
        ("API", &api_run),
        ("workspace .git/config", &git_config),
        ("outbox config", &outbox_config),
        ("Slack", &slack_text),
    ] {
        assert!(
            !text.contains(&t.token),
            "the git token leaked into {place}"
        );
        assert!(
            !text.contains(&t.token[t.token.len() - 40..]),
            "a piece of the git token leaked into {place}"
        );
        assert!(!text.contains(API_KEY), "the API key leaked into {place}");
        assert!(
            !text.contains(&token_piece),
            "a token piece leaked into {place}"
        );
    }
    assert!(
        events.contains(errand_core::redact::MASK),
        "the printed secrets were masked, not dropped"
    );

    // A reply in the thread continues the run.
    let thread_ts = card_ts(&calls);
    let reply = errand_slack::events::thread_reply_event(
        "T0FAKE",
        "Ev1",
        "C1",
        &thread_ts,
        "1800000000.000100",
        "U1",
        "please append more",
    );
    let (headers, body) = w.slack.signed_event(&reply, now());
    let (status, _) = post(
        &http,
        &format!("{}/slack/events", server.base),
        &headers,
        body.clone(),
    )
    .await;
    assert_eq!(status, 200);
    // Slack retries a delivery it thinks failed: the run continues once.
    let (status, _) = post(
        &http,
        &format!("{}/slack/events", server.base),
        &headers,
        body,
    )
    .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let v: Value = http
            .get(format!("{}/api/runs/{id}", server.base))
            .bearer_auth(&api_token)
            .send()
            .await
            .expect("run")
            .json()
            .await
            .expect("json");
        let turns = v["transitions"]
            .as_array()
            .map(|t| t.iter().filter(|t| t["state"] == "succeeded").count())
            .unwrap_or(0);
        if turns >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follow-up never finished: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let more = git(&bare, &["show", &format!("{}:GREETING.md", pulls[0].head)]);
    assert_eq!(more, "hello from errand\nmore");
    assert_eq!(w.github.pulls().len(), 1, "the same pull request, updated");
    let tokens = w.github.tokens();
    assert_eq!(tokens.len(), 2, "one token per turn");
    assert!(tokens.iter().all(|t| t.revoked));
}

fn card_ts(calls: &[errand_slack::fake::RecordedCall]) -> String {
    // The fake answers postMessage with increasing ts values: the card's is the
    // ts the first chat.update targeted.
    calls
        .iter()
        .find(|c| c.method == "chat.update")
        .and_then(|c| c.body["ts"].as_str())
        .expect("an update names the card's ts")
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_requests_create_no_run() {
    let w = world(Env::new()).await;
    let api_token = token(&w.env);
    let server = start(&w.env, "2");
    let http = reqwest::Client::new();
    let url = format!("{}/slack/commands", server.base);
    let fields = w
        .slack
        .agent_command_fields("U1", "C1", "acme/widgets do it", "x1");

    // Wrong signature.
    let (mut headers, body) = w.slack.signed_command(&fields, now());
    for (k, v) in headers.iter_mut() {
        if k.eq_ignore_ascii_case("x-slack-signature") {
            *v = format!("v0={}", "0".repeat(64));
        }
    }
    assert_eq!(post(&http, &url, &headers, body).await.0, 401);
    // Replayed: a valid signature over a timestamp ten minutes old.
    let (headers, body) = w.slack.signed_command(&fields, now() - 600);
    assert_eq!(post(&http, &url, &headers, body).await.0, 401);
    // Missing headers.
    let (_, body) = w.slack.signed_command(&fields, now());
    assert_eq!(post(&http, &url, &[], body).await.0, 401);
    // Signed, but not a slash command.
    let ts = now();
    let junk = "this is not a form %%%".to_string();
    let headers = vec![
        ("X-Slack-Request-Timestamp".to_string(), ts.to_string()),
        (
            "X-Slack-Signature".to_string(),
            errand_slack::sign(w.slack.signing_secret(), ts, junk.as_bytes()),
        ),
    ];
    assert_eq!(post(&http, &url, &headers, junk).await.0, 400);

    // Understood, and refused with an ephemeral message that says why.
    for (channel, text, expect, id) in [
        ("C1", "frobnicate", "owner/repo", "e1"),
        ("C1", "--turbo acme/widgets go", "--turbo", "e2"),
        ("C1", "--harness devin acme/widgets go", "devin", "e3"),
        ("C9", "acme/widgets go", "may not start runs", "e4"),
        ("C1", "other/repo go", "may not start runs", "e5"),
        ("C2", "--push acme/widgets go", "not push", "e6"),
        ("C1", "acme/widgets", "instruction", "e7"),
    ] {
        let (status, body) = command(&w, &http, &server.base, channel, text, id).await;
        assert_eq!(status, 200, "{text}: {body}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["response_type"], "ephemeral", "{text}");
        let said = v["text"].as_str().unwrap_or("");
        assert!(said.contains(expect), "{text}: {said}");
    }
    // Help is not a refusal, and creates nothing either.
    let (_, body) = command(&w, &http, &server.base, "C1", "help", "h1").await;
    assert!(body.contains("/agent"), "{body}");

    // GitHub: a bad signature, and a mention by someone with no access.
    let hook = format!("{}/github/webhook", server.base);
    let payload = comment_payload("mallory", "@errand delete everything");
    let sig = hub_signature(WEBHOOK_SECRET, &payload);
    let gh_headers = |sig: &str, delivery: &str| {
        vec![
            ("X-GitHub-Event".to_string(), "issue_comment".to_string()),
            ("X-GitHub-Delivery".to_string(), delivery.to_string()),
            ("X-Hub-Signature-256".to_string(), sig.to_string()),
            ("Content-Type".to_string(), "application/json".to_string()),
        ]
    };
    let bad = hub_signature("not-the-secret", &payload);
    assert_eq!(
        post(&http, &hook, &gh_headers(&bad, "d1"), payload.clone())
            .await
            .0,
        401
    );
    assert_eq!(
        post(&http, &hook, &gh_headers(&sig, "d2"), payload).await.0,
        403
    );

    assert!(
        list_runs(&server.base, &api_token).await.is_empty(),
        "a refused request created a run"
    );
    assert!(
        w.github
            .tokens()
            .iter()
            .all(|t| !t.permissions.contains_key("contents")),
        "no repository token was minted for a refused request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_at_errand_comment_starts_a_run_and_answers_in_the_thread() {
    let w = world(Env::new()).await;
    let api_token = token(&w.env);
    let server = start(&w.env, "2");
    let http = reqwest::Client::new();
    let issue = w.github.create_issue("acme", "widgets");
    let payload = comment_payload_on("octocat", "@errand fix the typo please", issue);
    let headers = vec![
        ("X-GitHub-Event".to_string(), "issue_comment".to_string()),
        ("X-GitHub-Delivery".to_string(), "d-ok".to_string()),
        (
            "X-Hub-Signature-256".to_string(),
            hub_signature(WEBHOOK_SECRET, &payload),
        ),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    let (status, body) = post(
        &http,
        &format!("{}/github/webhook", server.base),
        &headers,
        payload,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let run = list_runs(&server.base, &api_token)
        .await
        .into_iter()
        .next()
        .expect("a run");
    assert_eq!(run["requested_by"], "github:octocat");
    assert_eq!(run["push"], true, "octocat may push to acme/widgets");
    assert_eq!(run["origin"]["issue"], issue);
    // No model is configured, so the run fails; the thread's one status
    // comment says so, edited in place.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w
        .github
        .comments()
        .iter()
        .any(|c| c.body.contains("failed"))
    {
        assert!(Instant::now() < deadline, "{:#?}", w.github.comments());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let comments = w.github.comments();
    assert_eq!(comments.len(), 1, "one status comment: {comments:#?}");
    assert!(comments[0].edits >= 1, "{comments:#?}");
    assert!(comments[0].body.contains("@octocat") && comments[0].body.contains("failed"));
    // Comment tokens could only comment, and are revoked.
    for t in w.github.tokens() {
        assert_eq!(
            t.permissions.get("issues").map(String::as_str),
            Some("write")
        );
        assert!(!t.permissions.contains_key("contents"));
        assert!(t.revoked);
    }
}

fn comment_payload(author: &str, body: &str) -> String {
    comment_payload_on(author, body, 1)
}

fn comment_payload_on(author: &str, body: &str, issue: u64) -> String {
    json!({
        "action": "created",
        "issue": { "number": issue, "title": "Typo", "state": "open" },
        "comment": { "id": 99, "body": body, "user": { "login": author, "type": "User" } },
        "repository": {
            "name": "widgets",
            "full_name": "acme/widgets",
            "owner": { "login": "acme", "type": "Organization" }
        },
        "sender": { "login": author, "type": "User" },
        "installation": { "id": 7 }
    })
    .to_string()
}

fn hub_signature(secret: &str, body: &str) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_manifest_flow_ends_with_the_apps_settings_shown_once() {
    let w = world(Env::new()).await;
    let server = start(&w.env, "2");
    let http = reqwest::Client::new();
    let url = format!("{}/github/manifest-callback", server.base);
    let r = http.get(&url).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 400, "no code");
    let r = http
        .get(format!("{url}?code=m4n1fest"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let page = r.text().await.expect("page");
    assert!(
        page.contains(&format!("app_id = &quot;{APP_ID}&quot;")),
        "{page}"
    );
    assert!(page.contains("whsec-from-github"));
    assert!(page.contains("BEGIN"), "the private key is shown");
    // The code works once; a made-up one is refused without reaching GitHub.
    let again = http
        .get(format!("{url}?code=m4n1fest"))
        .send()
        .await
        .expect("get");
    assert_eq!(again.status().as_u16(), 502);
    let bad = http
        .get(format!("{url}?code=../../x"))
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status().as_u16(), 502);
    assert!(
        !w.github.requests().iter().any(|r| r.contains("..")),
        "{:?}",
        w.github.requests()
    );
}

//! Runs that outlive their GitHub token. GitHub's installation tokens live an
//! hour; the fake GitHub here makes them live a few seconds and refuses them
//! (API and git) once expired. errand renews the run's token before it
//! expires: while an `--agent-git` agent works (so errand's git proxy, which
//! adds the token to the agent's git requests outside the sandbox, always has a
//! live one), and before it pushes and opens
//! the pull request itself. Each old token is revoked when replaced, each new
//! one is redacted like the first, and the last is revoked at the end.

use std::time::Duration;

use crate::common::github::world_with;
use crate::common::*;
use serde_json::{json, Value};

/// How long the fake GitHub's tokens live.
const LIFETIME: Duration = Duration::from_secs(6);

async fn get_text(http: &reqwest::Client, url: &str, token: &str) -> String {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text")
}

/// Starts a run through the API and waits for it to end.
async fn run_to_end(base: &str, api_token: &str, body: Value) -> (Value, String) {
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/api/runs"))
        .bearer_auth(api_token)
        .json(&body)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    let run = wait_ended(base, api_token, &id).await;
    let events = get_text(&http, &format!("{base}/api/runs/{id}/events"), api_token).await;
    (run, events)
}

fn notices(events: &str) -> Vec<String> {
    events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "notice")
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

fn tool_results(events: &str) -> Vec<String> {
    events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "tool_result")
        .map(|e| e["output"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_longer_than_its_token_still_pushes_and_opens_its_pull_request() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let w = world_with(Env::new(), |c| c.token_lifetime(LIFETIME)).await;
    let (env, github) = (w.env, w.github);
    // The agent works for longer than the first token lives.
    let scenario = json!({"steps": [
        {"shell": "sleep 9 && echo SLEPT"},
        {"write": {"path": "LONG.md", "content": "a long run\n"}},
        {"text": "Wrote LONG.md after a long think."}
    ]})
    .to_string();
    let model = model(&scenario).await;
    let env = env.with_model(&model);
    let api_token = api_token(&env, "tests");
    let (_server, base) = serve(&env, "1");

    let (run, events) = run_to_end(
        &base,
        &api_token,
        json!({"prompt": "write LONG.md", "repo": "github:acme/widgets", "push": true}),
    )
    .await;
    assert_eq!(run["state"], "succeeded", "{run:#}\n{events}");
    let branch = run["branch"].as_str().expect("branch");
    let said = notices(&events);
    assert!(
        said.iter()
            .any(|n| n.contains("renewed the run's token for acme/widgets before pushing")),
        "{said:#?}"
    );

    // The pull request was opened, from the pushed branch.
    let pulls = github.pulls();
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    assert_eq!(pulls[0].head, branch);
    assert_eq!(
        git(
            &github.repo_path("acme", "widgets"),
            &["show", &format!("{branch}:LONG.md")]
        ),
        "a long run"
    );
    // Tokens of the same scope, for the one repository; none alive after the run,
    // and the last one (which opened the pull request) revoked by errand.
    let tokens = github.tokens();
    assert!(tokens.len() >= 2, "{tokens:#?}");
    assert!(tokens.last().is_some_and(|t| t.revoked), "{tokens:#?}");
    for t in &tokens {
        assert_eq!(t.repositories, ["acme/widgets"]);
        assert_eq!(t.permissions, tokens[0].permissions);
        // Revoked, or expired before it could be (GitHub cannot revoke those).
        assert!(
            t.revoked || t.expires_at <= chrono::Utc::now(),
            "a token outlived the run: {t:#?}"
        );
        assert!(!events.contains(&t.token), "a token is in the events");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_git_run_gets_a_live_token_after_the_first_expires() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let w = world_with(Env::new(), |c| c.token_lifetime(LIFETIME)).await;
    let (env, github) = (w.env, w.github);
    let scenario = json!({"steps": [
        {"shell": "git fetch -q origin && echo FETCH-1-OK"},
        {"shell": "sleep 9 && echo SLEPT"},
        // The first token has expired by now: this needs a renewed one.
        {"shell": "git fetch -q origin && echo FETCH-2-OK"},
        {"write": {"path": "AGENT.md", "content": "pushed after a renewal\n"}},
        {"shell": "git add AGENT.md && git commit -qm 'agent: add AGENT.md' && git push -q origin HEAD && echo PUSH-OK"},
        {"text": "Fetched, waited, fetched again and pushed."}
    ]})
    .to_string();
    let model = model(&scenario).await;
    let env = env.with_model(&model);
    let api_token = api_token(&env, "tests");
    let (_server, base) = serve(&env, "1");

    let (run, events) = run_to_end(
        &base,
        &api_token,
        json!({
            "prompt": "fetch, wait, fetch and push your branch",
            "repo": "github:acme/widgets",
            "push": true,
            "agent_git": true,
        }),
    )
    .await;
    assert_eq!(run["state"], "succeeded", "{run:#}\n{events}");
    let results = tool_results(&events);
    let shows = |marker: &str| {
        assert!(
            results
                .iter()
                .any(|r| r.lines().any(|l| l.trim().starts_with(marker))),
            "no tool result shows {marker}: {results:#?}"
        )
    };
    shows("FETCH-1-OK");
    shows("SLEPT");
    shows("FETCH-2-OK");
    shows("PUSH-OK");
    // FETCH-2 and the push went through errand's git proxy with a renewed
    // token: the agent never held one.
    let said = notices(&events);
    assert!(
        said.iter()
            .any(|n| n.contains("renewed the run's token for acme/widgets while the agent works")),
        "{said:#?}"
    );

    let tokens = github.tokens();
    assert!(tokens.len() >= 2, "{tokens:#?}");
    assert!(tokens.last().is_some_and(|t| t.revoked), "{tokens:#?}");
    let raw = get_text(
        &reqwest::Client::new(),
        &format!(
            "{base}/api/runs/{}/events?raw=1",
            run["id"].as_str().unwrap_or("")
        ),
        &api_token,
    )
    .await;
    for t in &tokens {
        assert_eq!(t.repositories, ["acme/widgets"]);
        // Revoked, or expired before it could be (GitHub cannot revoke those).
        assert!(
            t.revoked || t.expires_at <= chrono::Utc::now(),
            "a token outlived the run: {t:#?}"
        );
        assert!(!events.contains(&t.token), "a token is in the events");
        assert!(!raw.contains(&t.token), "a token is in the raw events");
    }
    let branch = run["branch"].as_str().expect("branch");
    assert_eq!(
        git(
            &github.repo_path("acme", "widgets"),
            &["show", &format!("{branch}:AGENT.md")]
        ),
        "pushed after a renewal"
    );
}

//! Picking a fan-out's result, end to end: `errand serve` with the strict fake
//! GitHub, two runs of one group on `github:acme/widgets` with push (the real
//! Claude Code under the scripted model). Each pushes its branch and opens no
//! pull request; `POST /api/v1/groups/{group}/pick` opens the chosen run's
//! pull request, closes the other (its branch deleted), records which was
//! picked, and refuses what it must (a reader, a run of another group, a
//! second pick). The New run form's options list the App's repositories.

use crate::common::github::world;
use crate::common::*;
use serde_json::{json, Value};

const EDIT: &str = r#"{"steps":[
    {"shell":"echo 'picked from a fan-out' > NOTES.md"},
    {"text":"Wrote NOTES.md."}
]}"#;

async fn pick(base: &str, token: &str, group: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/groups/{group}/pick"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("pick");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn branch_exists(bare: &std::path::Path, branch: &str) -> bool {
    std::process::Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fan_outs_pick_opens_one_pull_request_and_closes_the_others() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let w = world(Env::new()).await;
    let (env, github) = (w.env, w.github);
    let model = model(EDIT).await;
    let env = env.with_model(&model);
    let token = api_token(&env, "picker");
    let reader = {
        let out = env.run(&["token", "create", "reader", "--scope", "read"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (_server, base) = serve(&env, "1");
    let http = reqwest::Client::new();

    // The form offers the App's repositories.
    let opts = api_get(&base, &token, "/api/v1/options").await;
    assert_eq!(
        opts["forge_repos"],
        json!(["github:acme/widgets"]),
        "{opts:#}"
    );
    assert!(opts["forge_repos_error"].is_null(), "{opts:#}");

    // A fan-out of two models, pushing.
    let group = "pick-e2e";
    let mut ids = Vec::new();
    for m in ["claude-sonnet-4-5", "claude-haiku-4-5"] {
        let created: Value = http
            .post(format!("{base}/api/v1/runs"))
            .bearer_auth(&token)
            .json(&json!({
                "prompt": "write NOTES.md",
                "repo": "github:acme/widgets",
                "push": true,
                "model": m,
                "group": group,
            }))
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        ids.push(created["id"].as_str().expect("id").to_string());
    }
    let mut runs = Vec::new();
    for id in &ids {
        let r = wait_ended(&base, &token, id).await;
        assert_eq!(r["state"], "succeeded", "{r:#}");
        assert_eq!(r["pushed"], true, "{r:#}");
        assert!(
            r["pr_url"].is_null(),
            "a fan-out run opened its own PR: {r:#}"
        );
        assert!(r["picked"].is_null(), "{r:#}");
        runs.push(r);
    }
    assert!(github.pulls().is_empty(), "{:#?}", github.pulls());
    let bare = github.repo_path("acme", "widgets");
    let branches: Vec<String> = runs
        .iter()
        .map(|r| r["branch"].as_str().expect("branch").to_string())
        .collect();
    for b in &branches {
        assert!(branch_exists(&bare, b), "{b} was not pushed");
    }
    // Re-running a GitHub run sends back what `repo` takes.
    assert_eq!(runs[0]["repo_input"], "github:acme/widgets");

    // Refusals change nothing: a reader, a run of no such group, a run not in it.
    let (status, v) = pick(&base, &reader, group, json!({"run": ids[0]})).await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = pick(&base, &token, "no-such-group", json!({"run": ids[0]})).await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = pick(&base, &token, group, json!({"run": "0000"})).await;
    assert_eq!(
        (status, v["error"]["field"].as_str()),
        (422, Some("run")),
        "{v}"
    );
    let (status, v) = pick(&base, &token, group, json!({"run": ids[0], "extra": 1})).await;
    assert_eq!(status, 422, "{v}");
    assert!(github.pulls().is_empty());

    // The pick: the first run's pull request, the second closed.
    let tokens_before = github.tokens().len();
    let (status, v) = pick(
        &base,
        &token,
        group,
        json!({"run": ids[0], "close_others": true}),
    )
    .await;
    assert_eq!(status, 200, "{v:#}");
    let pulls = github.pulls();
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    assert_eq!(pulls[0].head, branches[0]);
    assert_eq!(pulls[0].base, "main");
    assert!(!pulls[0].closed);
    assert!(
        pulls[0]
            .body
            .contains("Picked by picker among the 2 runs of fan-out `pick-e2e`"),
        "{}",
        pulls[0].body
    );
    assert!(
        pulls[0].body.contains("write NOTES.md"),
        "{}",
        pulls[0].body
    );
    assert_eq!(
        v["pr_url"],
        format!(
            "{}/acme/widgets/pull/{}",
            github.git_base().trim_end_matches('/'),
            pulls[0].number
        )
    );
    assert!(branch_exists(&bare, &branches[0]));
    assert!(
        !branch_exists(&bare, &branches[1]),
        "the other branch is still there"
    );
    let done = v["done"].to_string();
    assert!(
        done.contains("opened pull request") && done.contains("deleted branch"),
        "{done}"
    );
    // Every token the pick minted is for that repository and revoked.
    let minted: Vec<_> = github.tokens().into_iter().skip(tokens_before).collect();
    assert!(!minted.is_empty());
    for t in &minted {
        assert!(t.revoked, "{t:#?}");
        assert_eq!(t.repositories, ["acme/widgets"], "{t:#?}");
    }
    // Each run says whether it was the one.
    let first = api_get(&base, &token, &format!("/api/v1/runs/{}", ids[0])).await;
    let second = api_get(&base, &token, &format!("/api/v1/runs/{}", ids[1])).await;
    assert_eq!(first["picked"], true, "{first:#}");
    assert_eq!(first["pr_url"], v["pr_url"]);
    assert_eq!(second["picked"], false, "{second:#}");

    // One result per group.
    let (status, v) = pick(&base, &token, group, json!({"run": ids[1]})).await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("already picked"),
        "{v}"
    );
    // Picking the same one again changes nothing.
    let (status, v) = pick(&base, &token, group, json!({"run": ids[0]})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(github.pulls().len(), 1);
}

/// The store of `env`'s errand home, opened as the server would.
async fn home_store(env: &Env) -> std::sync::Arc<dyn errand_store::Store> {
    errand_store::open_url(&format!(
        "sqlite://{}",
        env.home.join("errand.db").display()
    ))
    .await
    .expect("store")
}

/// A run of fan-out `group` on github:acme/widgets that succeeded and pushed
/// `branch` (with `pr_url` when it has a pull request), stored as a worker
/// would leave it; its id.
async fn finished_run(
    store: &std::sync::Arc<dyn errand_store::Store>,
    group: &str,
    branch: &str,
    pr_url: Option<String>,
) -> String {
    let mut spec = errand_core::RunSpec::new("p", "claude-code");
    spec.repo = Some(errand_core::RepoSource::parse("github:acme/widgets"));
    spec.push = true;
    spec.group = Some(group.into());
    let id = errand_core::RunId::new();
    store.create_run(id, &spec).await.expect("run");
    for s in [
        errand_core::RunState::Preparing,
        errand_core::RunState::Running,
        errand_core::RunState::Finishing,
        errand_core::RunState::Succeeded,
    ] {
        store.transition(id, s, None).await.expect("transition");
    }
    let summary = errand_core::RunSummary {
        branch: Some(branch.into()),
        pushed: true,
        base_branch: Some("main".into()),
        pr_url,
        ..Default::default()
    };
    store.update_summary(id, &summary).await.expect("summary");
    id.to_string()
}

/// A pull request already open for a fan-out run (a group asked for through
/// a PR's own thread, or one opened by hand) is marked, not opened again, and
/// the other run's pull request is closed.
#[tokio::test(flavor = "multi_thread")]
async fn open_pull_requests_are_marked_and_closed() {
    let w = world(Env::new()).await;
    let (env, github) = (w.env, w.github);
    let bare = github.repo_path("acme", "widgets");
    // Two pushed branches, each with an open pull request, as two finished runs.
    for b in ["errand/a", "errand/b"] {
        git(&bare, &["branch", b, "main"]);
    }
    let a = github.open_pull(
        "acme",
        "widgets",
        "errand[bot]",
        "errand/a",
        "main",
        "a",
        None,
    );
    let b = github.open_pull(
        "acme",
        "widgets",
        "errand[bot]",
        "errand/b",
        "main",
        "b",
        None,
    );
    let store = home_store(&env).await;
    let mut ids = Vec::new();
    for (branch, pr) in [("errand/a", a), ("errand/b", b)] {
        let url = format!(
            "{}/acme/widgets/pull/{pr}",
            github.git_base().trim_end_matches('/')
        );
        ids.push(finished_run(&store, "marked", branch, Some(url)).await);
    }
    drop(store);
    let token = api_token(&env, "picker");
    let (_server, base) = serve(&env, "0");
    let (status, v) = pick(
        &base,
        &token,
        "marked",
        json!({"run": ids[1], "close_others": true}),
    )
    .await;
    assert_eq!(status, 200, "{v:#}");
    let comments = github.comments();
    assert!(
        comments
            .iter()
            .any(|c| c.issue_number == b && c.body.contains("Picked by picker")),
        "{comments:#?}"
    );
    let pulls = github.pulls();
    assert_eq!(pulls.len(), 2);
    assert!(
        pulls
            .iter()
            .find(|p| p.number == a)
            .is_some_and(|p| p.closed),
        "{pulls:#?}"
    );
    assert!(
        pulls
            .iter()
            .find(|p| p.number == b)
            .is_some_and(|p| !p.closed),
        "{pulls:#?}"
    );
    assert!(!branch_exists(&bare, "errand/a"));
    assert!(branch_exists(&bare, "errand/b"));
    assert!(
        github.tokens().iter().all(|t| t.revoked),
        "{:#?}",
        github.tokens()
    );
}

/// Picks of one group sent at once (two people, two tabs, a double click),
/// for both runs: exactly one pull request is opened, every pick of the
/// other run is refused, and the runs record one result.
#[tokio::test(flavor = "multi_thread")]
async fn picks_sent_at_once_open_exactly_one_pull_request() {
    let w = world(Env::new()).await;
    let (env, github) = (w.env, w.github);
    let bare = github.repo_path("acme", "widgets");
    let store = home_store(&env).await;
    let mut ids = Vec::new();
    for b in ["errand/x", "errand/y"] {
        git(&bare, &["branch", b, "main"]);
        ids.push(finished_run(&store, "race", b, None).await);
    }
    drop(store);
    let token = api_token(&env, "picker");
    let (_server, base) = serve(&env, "0");
    let picks = (0..8).map(|i| {
        let (base, token, run) = (base.clone(), token.clone(), ids[i % 2].clone());
        async move {
            let (status, v) = pick(&base, &token, "race", json!({"run": run})).await;
            (run, status, v)
        }
    });
    let answers = futures::future::join_all(picks).await;
    let pulls = github.pulls();
    assert_eq!(pulls.len(), 1, "{pulls:#?}\n{answers:#?}");
    let winner = if pulls[0].head == "errand/x" {
        &ids[0]
    } else {
        &ids[1]
    };
    for (run, status, v) in &answers {
        if run == winner {
            assert!(
                *status == 200
                    || (*status == 409
                        && v["error"]["message"]
                            .as_str()
                            .unwrap_or("")
                            .contains("being picked")),
                "{answers:#?}"
            );
        } else {
            assert_eq!(*status, 409, "{answers:#?}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("already picked"),
                "{answers:#?}"
            );
        }
    }
    assert!(
        answers.iter().any(|(r, s, _)| r == winner && *s == 200),
        "{answers:#?}"
    );
    let loser = if winner == &ids[0] { &ids[1] } else { &ids[0] };
    let w = api_get(&base, &token, &format!("/api/v1/runs/{winner}")).await;
    let l = api_get(&base, &token, &format!("/api/v1/runs/{loser}")).await;
    assert_eq!(w["picked"], true, "{w:#}");
    assert!(
        w["pr_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/pull/{}", pulls[0].number))),
        "{w:#}"
    );
    assert_eq!(l["picked"], false, "{l:#}");
    assert!(l["pr_url"].is_null(), "{l:#}");
    // Picking the winner again is a no-op that answers as before.
    let (status, v) = pick(&base, &token, "race", json!({"run": winner})).await;
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(github.pulls().len(), 1);
}

/// `errand pick` on a local fan-out that pushed to a plain git remote: the
/// chosen run is kept, the other's branch is deleted from the remote, and a
/// run outside any fan-out is refused with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn errand_pick_keeps_one_branch_of_a_local_fan_out() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let model = model(EDIT).await;
    let env = Env::new().with_model(&model);
    let bare = bare_repo(env.dir.path());
    let url = format!("file://{}", bare.display());
    let (ok, v) = env.run_json(&[
        "--repo",
        &url,
        "--push",
        "--models",
        "claude-sonnet-4-5,claude-haiku-4-5",
        "write NOTES.md",
    ]);
    assert!(ok, "{v:#}");
    let runs = v["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 2, "{v:#}");
    let id = |r: &Value| r["id"].as_str().expect("id").to_string();
    let branch = |r: &Value| r["branch"].as_str().expect("branch").to_string();
    for r in &runs {
        assert!(branch_exists(&bare, &branch(r)), "{r:#}");
    }
    let out = env.run(&["pick", &id(&runs[1]), "--close-others", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let picked: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(picked["run"], id(&runs[1]));
    assert!(branch_exists(&bare, &branch(&runs[1])));
    assert!(!branch_exists(&bare, &branch(&runs[0])), "{picked:#}");
    let shown = env.run(&["show", &id(&runs[0]), "--json"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(shown["picked"], false, "{shown:#}");

    // A run that is no fan-out's.
    let (ok, single) = env.run_json(&["--repo", &url, "write NOTES.md"]);
    assert!(ok, "{single:#}");
    let out = env.run(&["pick", single["id"].as_str().expect("id")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not part of a fan-out"), "{err}");
}

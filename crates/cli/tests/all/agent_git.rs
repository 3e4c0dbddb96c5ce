//! `--agent-git` end to end: a run on `github:acme/widgets` (fake GitHub) with
//! the real Claude Code under the scripted model in the local sandbox, whose
//! shell steps use git themselves. Inside the sandbox git reaches the
//! repository only through errand's git proxy (`http://git.errand.internal/…`,
//! over the egress proxy), which adds the run's token outside the sandbox and
//! serves this one repository: fetching and pushing the run's branch work;
//! pushing `main` is refused by errand's guard (and would be by the proxy, see
//! `git_proxy.rs`); another repository is not served and the forge itself is
//! not reachable. Afterwards the token is revoked and is nowhere on disk, in
//! the events or in the API.

use std::path::Path;

use crate::common::github::{the_runs_write_token, world};
use crate::common::*;
use serde_json::{json, Value};

/// The scripted agent: each shell step prints a marker the test looks for.
fn scenario(git_base: &str) -> String {
    let other = format!("{git_base}/acme/other.git");
    json!({"steps": [
        {"shell": "git fetch origin && git rev-parse --verify -q origin/main >/dev/null && echo FETCH-OK"},
        {"write": {"path": "AGENT.md", "content": "pushed by the agent itself\n"}},
        {"shell": "git add AGENT.md && git commit -qm 'agent: add AGENT.md' && git push -q origin HEAD && echo PUSH-RUN-BRANCH-OK"},
        {"shell": "git push origin HEAD:main"},
        // A script written and run in one command: the guard refuses it.
        {"shell": "printf 'git push origin HEAD:feature\\n' > /tmp/push.sh && sh /tmp/push.sh; echo SCRIPT-PUSH-EXIT=$?"},
        {"shell": format!("git ls-remote {other} 2>&1; echo OTHER-REPO-EXIT=$?")},
        {"shell": "git ls-remote http://git.errand.internal/acme/other.git 2>&1; echo PROXY-OTHER-EXIT=$?"},
        // (The token hunt inside the sandbox, which errand's guard now refuses to
        // an agent going through Claude Code's hook, is in git_proxy.rs.)
        {"shell": "echo ORIGIN=$(git config --get remote.origin.url); echo REACHED=$(git ls-remote --get-url origin)"},
        {"text": "Pushed AGENT.md to my branch."}
    ]})
    .to_string()
}

/// Every Unix socket under `dir`.
fn sockets_under(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            out.extend(sockets_under(&e.path()));
        } else if ft.is_socket() {
            out.push(e.path().display().to_string());
        }
    }
    out
}

async fn get_text(http: &reqwest::Client, url: &str, token: &str) -> String {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_fetches_and_pushes_its_branch_and_nothing_else() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let w = world(Env::new()).await;
    let (env, github) = (w.env, w.github);
    github
        .create_repo("acme", "other", "main")
        .expect("other repo");
    github.install(7, "acme/other");
    let model = model(&scenario(&github.git_base())).await;
    let env = env.with_model(&model);
    let bare = github.repo_path("acme", "widgets");
    let main_before = git(&bare, &["rev-parse", "refs/heads/main"]);

    let api_token = api_token(&env, "tests");
    let (_server, base) = serve(&env, "1");
    let http = reqwest::Client::new();

    // Only for GitHub repositories.
    let refused = http
        .post(format!("{base}/api/runs"))
        .bearer_auth(&api_token)
        .json(&json!({"prompt": "x", "repo": "/tmp/somewhere", "agent_git": true}))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status().as_u16(), 422);
    let why = refused.text().await.unwrap_or_default();
    assert!(why.contains("github: repository"), "{why}");

    let created: Value = http
        .post(format!("{base}/api/runs"))
        .bearer_auth(&api_token)
        .json(&json!({
            "prompt": "add AGENT.md and push your branch",
            "repo": "github:acme/widgets",
            "push": true,
            "agent_git": true,
        }))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(created["agent_git"], true, "{created}");
    let id = created["id"].as_str().expect("id").to_string();

    let run = wait_ended(&base, &api_token, &id).await;
    let events = get_text(&http, &format!("{base}/api/runs/{id}/events"), &api_token).await;
    assert_eq!(run["state"], "succeeded", "{run:#}\n{events}");
    let branch = run["branch"].as_str().expect("branch").to_string();

    let evs: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect();
    let results: Vec<String> = evs
        .iter()
        .filter(|e| e["type"] == "tool_result")
        .map(|e| e["output"].as_str().unwrap_or("").to_string())
        .collect();
    // A result whose output has a line starting with `marker` (not merely the
    // command echoed in a refusal).
    let result_with = |marker: &str| {
        results
            .iter()
            .find(|r| r.lines().any(|l| l.trim().starts_with(marker)))
            .cloned()
            .unwrap_or_else(|| panic!("no tool result shows {marker}: {results:#?}"))
    };
    // Fetching and pushing the run's own branch worked, from inside.
    result_with("FETCH-OK");
    result_with("PUSH-RUN-BRANCH-OK");
    // Pushing main: refused by errand's guard before git ran.
    let main_push = result_with("errand-guard: push-default-branch");
    assert!(main_push.contains("`HEAD:main`"), "{main_push}");
    // A script written and run in one command: refused by the guard too.
    let script = result_with("errand-guard: push-other-branch");
    assert!(
        script.contains("/tmp/push.sh") && script.contains("HEAD:feature"),
        "{script}"
    );
    // Another repository: the forge is not on the egress allowlist, and the
    // git proxy serves only this run's repository.
    let other = result_with("OTHER-REPO-EXIT=");
    assert!(!other.contains("OTHER-REPO-EXIT=0"), "{other}");
    assert!(other.contains("not on the allowlist"), "{other}");
    let other = result_with("PROXY-OTHER-EXIT=");
    assert!(!other.contains("PROXY-OTHER-EXIT=0"), "{other}");
    // Origin is the plain clone URL, which git reaches as errand's git proxy.
    let leak = result_with("ORIGIN=");
    assert!(
        leak.contains(&format!("ORIGIN={}", github.clone_url("acme", "widgets"))),
        "{leak}"
    );
    assert!(
        leak.contains("REACHED=http://git.errand.internal/acme/widgets.git"),
        "{leak}"
    );

    // errand said what it set up, what the git proxy answered and refused, and revoked the token.
    let notices: Vec<String> = evs
        .iter()
        .filter(|e| e["type"] == "notice")
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect();
    let said = |needle: &str| {
        notices
            .iter()
            .find(|n| n.contains(needle))
            .cloned()
            .unwrap_or_else(|| panic!("no notice says {needle}: {notices:#?}"))
    };
    said(&format!("lets it push {branch} only"));
    let proxy = said("errand's git proxy answered");
    assert!(proxy.contains("acme/other.git"), "{proxy}");
    said("revoked the run's token for acme/widgets");
    let egress = said("egress:");
    assert!(
        !egress.contains(github.git_base().trim_start_matches("http://"))
            && egress.contains("git.errand.internal"),
        "the forge is not on the allowlist, errand's git proxy is: {egress}"
    );

    // On the fake GitHub: the run's branch has the agent's commit, main is untouched.
    assert_eq!(
        git(&bare, &["show", &format!("{branch}:AGENT.md")]),
        "pushed by the agent itself"
    );
    assert_eq!(git(&bare, &["rev-parse", "refs/heads/main"]), main_before);
    let heads = git(
        &bare,
        &["for-each-ref", "--format=%(refname)", "refs/heads"],
    );
    assert!(!heads.contains("refs/heads/feature"), "{heads}");
    let other_bare = github.repo_path("acme", "other");
    assert_eq!(
        git(&other_bare, &["for-each-ref", "--format=%(refname)"]),
        "refs/heads/main"
    );

    // One token, for acme/widgets only, with write (the run has push), revoked.
    let t = &the_runs_write_token(&github);

    // The token is nowhere: not in any file errand or the agent wrote (the
    // workspace and its .git/config, the run's home, logs, the database), not
    // in the events, not in the API.
    let raw = get_text(
        &http,
        &format!("{base}/api/runs/{id}/events?raw=1"),
        &api_token,
    )
    .await;
    let api_run = get_text(&http, &format!("{base}/api/runs/{id}"), &api_token).await;
    for (place, text) in [("events", &events), ("raw events", &raw), ("API", &api_run)] {
        assert!(!text.contains(&t.token), "the token leaked into {place}");
    }
    let run_dir = env.home.join("runs").join(&id);
    assert!(run_dir.join("workspace/.git/config").is_file());
    assert!(run_dir.join("home").is_dir());
    let leaked = files_containing(&env.home, t.token.as_bytes());
    assert!(leaked.is_empty(), "the token is in {leaked:#?}");
    let git_config =
        std::fs::read_to_string(run_dir.join("workspace/.git/config")).expect("git config");
    assert!(!git_config.contains("x-access-token") && !git_config.contains("ghs_"));
    // No socket is left in the run's directory.
    let sockets = sockets_under(&run_dir);
    assert!(sockets.is_empty(), "left behind: {sockets:#?}");
}

#[test]
fn agent_git_is_refused_for_other_repositories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bare = bare_repo(dir.path());
    let env = Env::new();
    let out = env.run(&[
        "run",
        "--agent-git",
        "--repo",
        &bare.to_string_lossy(),
        "fix it",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "--agent-git needs a github: repository: errand hands the agent a token only for its GitHub App"
        ),
        "{stderr}"
    );
}

//! Retention end to end: `errand gc` with a clock the test sets (`--now`)
//! keeps a finished run's workspace inside its window and removes it after,
//! `show`, `ls` and the API say so, and a follow-up then continues on a
//! workspace re-created from the run's outbox, in a new harness session.

use std::path::Path;

use crate::common::*;
use serde_json::{json, Value};

/// The same step answers a first turn and a new session (the scripted model
/// answers step k of a conversation with k assistant turns): it fixes the
/// typo and appends a line to NOTES.txt, printing how many lines there are.
const IDEMPOTENT: &str = r#"{"steps":[
    {"shell":"sed -i s/helo/hello/ src/lib.rs && echo x >> NOTES.txt && echo lines=$(wc -l < NOTES.txt)"},
    {"text":"Done."}
]}"#;

fn gc(env: &Env, at: chrono::DateTime<chrono::Utc>, dry: bool) -> Value {
    let now = at.to_rfc3339();
    let mut args = vec!["gc", "--json", "--now", now.as_str()];
    if dry {
        args.push("--dry-run");
    }
    let out = env.run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("gc --json prints JSON")
}

fn items_of<'a>(report: &'a Value, id: &str) -> Vec<&'a Value> {
    report["items"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["run"] == id).collect())
        .unwrap_or_default()
}

fn show(env: &Env, id: &str) -> Value {
    let out = env.run(&["show", "--json", id]);
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("show --json")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pruned_workspace_is_recreated_for_a_follow_up() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let model = model(IDEMPOTENT).await;
    let env = Env::new().allow_local_repos();
    let bare = bare_repo(env.dir.path());
    let env = env.with_model(&model);
    let (ok, v) = env.run_json(&["--repo", &bare.to_string_lossy(), "fix the typo"]);
    assert!(ok, "{v:#}");
    let id = v["id"].as_str().unwrap().to_string();
    let run_dir = env.home.join("runs").join(&id);
    let workspace = run_dir.join("workspace");
    assert!(workspace.join("src/lib.rs").is_file());
    let ended: chrono::DateTime<chrono::Utc> = show(&env, &id)["finished_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("finished_at");
    let day = chrono::Duration::days(1);

    // Inside the window (7 days): kept.
    let r = gc(&env, ended + day, false);
    assert!(items_of(&r, &id).is_empty(), "{r:#}");
    assert!(workspace.is_dir());
    // Past it: a dry run says so and removes nothing…
    let r = gc(&env, ended + day * 8, true);
    assert_eq!(items_of(&r, &id).len(), 1, "{r:#}");
    assert!(workspace.is_dir());
    // …and the real one removes the workspace and the agent's home, not the
    // logs (90 days) or the outbox (the branch was not pushed).
    let r = gc(&env, ended + day * 8, false);
    let items = items_of(&r, &id);
    assert_eq!(items.len(), 1, "{r:#}");
    assert_eq!(items[0]["what"], "workspace");
    assert_eq!(items[0]["with_outbox"], false);
    assert!(items[0]["bytes"].as_u64().unwrap_or(0) > 0, "{r:#}");
    assert!(r["freed_bytes"].as_u64().unwrap_or(0) >= items[0]["bytes"].as_u64().unwrap());
    for gone in ["workspace", "home", "tmp"] {
        assert!(!run_dir.join(gone).exists(), "{gone} is still there");
    }
    for kept in ["events.jsonl", "outbox.git"] {
        assert!(run_dir.join(kept).exists(), "{kept} went too");
    }
    let shown = show(&env, &id);
    assert!(shown["workspace_pruned_at"].is_string(), "{shown:#}");
    assert!(shown["logs_pruned_at"].is_null(), "{shown:#}");
    let ls = env.run(&["ls"]);
    let line = String::from_utf8_lossy(&ls.stdout)
        .lines()
        .find(|l| l.starts_with(&id[..8]))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(line.trim_end().ends_with("workspace"), "{line:?}");
    // Nothing more to do at the same time.
    assert!(items_of(&gc(&env, ended + day * 8, false), &id).is_empty());

    // A follow-up through the API re-creates the workspace from the outbox.
    let token = api_token(&env, "tests");
    let (_server, base) = serve(&env, "1");
    let http = reqwest::Client::new();
    let api_run: Value = http
        .get(format!("{base}/api/runs/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(api_run["workspace_pruned_at"].is_string(), "{api_run:#}");
    let resp = http
        .post(format!("{base}/api/runs/{id}/messages"))
        .bearer_auth(&token)
        .json(&json!({"message": "add another line"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let done = wait_ended(&base, &token, &id).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert!(done["workspace_pruned_at"].is_null(), "{done:#}");
    let events = env.events(&id);
    let warnings: Vec<&str> = of_type(&events, "warning")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("removed by retention")
            && w.contains("re-created it from the run's outbox")),
        "{warnings:?}"
    );
    // The new session saw the first turn's work: NOTES.txt had one line.
    let outputs: Vec<&str> = of_type(&events, "tool_result")
        .iter()
        .filter_map(|e| e["output"].as_str())
        .collect();
    assert!(outputs.iter().any(|o| o.contains("lines=2")), "{outputs:?}");
    assert_eq!(
        done["diffstat"], "2 files changed, 3 insertions(+), 1 deletion(-)",
        "both turns on one branch: {done:#}"
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("NOTES.txt")).unwrap(),
        "x\nx\n"
    );
    assert_eq!(branch_of(&workspace), format!("errand/{}", &id[..8]));
}

/// The branch checked out in `workspace`, read from its HEAD file.
fn branch_of(workspace: &Path) -> String {
    std::fs::read_to_string(workspace.join(".git/HEAD"))
        .unwrap_or_default()
        .trim()
        .trim_start_matches("ref: refs/heads/")
        .to_string()
}

/// A follow-up to a run whose workspace was a layer over a shared checkout
/// that retention removed: the workspace is re-created from the outbox, with
/// every file the first turn wrote, and the agent's session goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_follow_up_whose_shared_checkout_went_continues_its_session() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let model = model(
        r#"{"steps":[
        {"shell":"echo one > one.txt"},
        {"text":"Wrote one.txt."},
        {"shell":"cat one.txt && echo two > two.txt"},
        {"text":"Wrote two.txt after reading one.txt."}
    ]}"#,
    )
    .await;
    let env = Env::new().allow_local_repos();
    let bare = bare_repo(env.dir.path());
    let env = env.with_model(&model);
    let (ok, v) = env.run_json(&["--repo", &bare.to_string_lossy(), "write one"]);
    assert!(ok, "{v:#}");
    let id = v["id"].as_str().unwrap().to_string();
    let run_dir = env.home.join("runs").join(&id);
    let prepared: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("prepared.json")).unwrap())
            .unwrap();
    let lower = prepared["layers"]["lower"]
        .as_str()
        .expect("the local sandbox layered the workspace");
    // What retention does to a checkout nobody used for long enough.
    std::fs::remove_dir_all(lower).unwrap();

    let token = api_token(&env, "tests");
    let (_server, base) = serve(&env, "1");
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{base}/api/runs/{id}/messages"))
        .bearer_auth(&token)
        .json(&json!({"message": "now write two"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let done = wait_ended(&base, &token, &id).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let events = env.events(&id);
    let warnings: Vec<&str> = of_type(&events, "warning")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("shared checkout") && w.contains("session continues")),
        "{warnings:?}"
    );
    let sessions: Vec<&str> = of_type(&events, "session_start")
        .iter()
        .filter_map(|e| e["session_id"].as_str())
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(sessions[0], sessions[1], "the same session");
    let outputs: Vec<&str> = of_type(&events, "tool_result")
        .iter()
        .filter_map(|e| e["output"].as_str())
        .collect();
    assert!(
        outputs.iter().any(|o| o.contains("one")),
        "the second turn read the first turn's file: {outputs:?}"
    );
    assert_eq!(
        done["diffstat"], "2 files changed, 2 insertions(+)",
        "{done:#}"
    );
    let workspace = run_dir.join("workspace");
    assert!(workspace.join("README.md").is_file(), "a whole clone now");
    assert_eq!(branch_of(&workspace), format!("errand/{}", &id[..8]));
}

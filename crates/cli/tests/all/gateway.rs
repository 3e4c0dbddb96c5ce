//! The model gateway end to end, with the real harness CLIs: the scripted
//! model plays the provider and refuses any request without the real key,
//! which only errand holds. Each run succeeds through the gateway while a
//! scan inside its sandbox (every readable file, every process's environment
//! and command line in /proc, its own environment) finds no trace of that key;
//! the run's usage is the sum of the gateway's `model_call` records; budgets
//! stop a run mid-way with the reason, and models outside the allowlist are
//! refused with a clear message.

use crate::common::*;
use errand_model::{Scenario, ScriptedModel};
use serde_json::Value;

/// Searches the sandbox for `sk-canary-<argv[1]>`. The needle is put together
/// only inside this process, so no command line or file carries it whole.
/// `/usr` is the host's (read-only, errand puts nothing there) and is skipped
/// for time; `/proc` is searched by each process's environ and cmdline.
pub(crate) const SCAN: &str = r#"import os, sys
needle = ("sk-canary-" + sys.argv[1]).encode()
hits = []
files = 0
for root, dirs, names in os.walk("/"):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev", "usr")]
    for name in names:
        p = os.path.join(root, name)
        try:
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            with open(p, "rb") as f:
                files += 1
                if needle in f.read():
                    hits.append(p)
        except OSError:
            pass
procs = 0
for pid in os.listdir("/proc"):
    if pid.isdigit():
        procs += 1
        for part in ("environ", "cmdline"):
            try:
                with open("/proc/%s/%s" % (pid, part), "rb") as f:
                    if needle in f.read():
                        hits.append("/proc/%s/%s" % (pid, part))
            except OSError:
                pass
if any(needle in v.encode() for v in os.environ.values()):
    hits.append("environment")
print("SCAN-DONE files=%d procs=%d hits=%d %s" % (files, procs, len(hits), " ".join(hits)))
"#;

/// A canary key, different in every test.
pub(crate) fn canary_suffix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", t, std::process::id())
}

/// The scripted model, refusing every request without `key`.
pub(crate) async fn provider(scenario: &str, key: &str) -> ScriptedModel {
    let sc = Scenario::from_json(scenario).expect("the test's scenario is valid");
    ScriptedModel::start_requiring_key(sc, std::net::SocketAddr::from(([127, 0, 0, 1], 0)), key)
        .await
        .expect("the scripted model starts")
}

/// `bare_repo` with the scan script committed.
pub(crate) fn repo_with_scan(root: &std::path::Path) -> std::path::PathBuf {
    let bare = bare_repo(root);
    let work = root.join("scan-seed");
    let out = std::process::Command::new("git")
        .args(["clone", "-q"])
        .arg(&bare)
        .arg(&work)
        .output()
        .expect("clone");
    assert!(out.status.success());
    std::fs::write(work.join("scan.py"), SCAN).expect("write");
    git(&work, &["add", "scan.py"]);
    git(
        &work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "scan",
        ],
    );
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
    bare
}

/// The variables pointing `harness` at `model` with the real key `key`.
fn provider_vars(harness: &str, model: &ScriptedModel, key: &str) -> Vec<(String, String)> {
    let v = |a: &str, b: String| (a.to_string(), b);
    match harness {
        "claude-code" => vec![
            v("ANTHROPIC_BASE_URL", model.base_url()),
            v("ANTHROPIC_API_KEY", key.into()),
        ],
        "gemini" => vec![
            v("GOOGLE_GEMINI_BASE_URL", model.base_url()),
            v("GEMINI_API_KEY", key.into()),
        ],
        _ => vec![
            v("OPENAI_BASE_URL", model.openai_base_url()),
            v("OPENAI_API_KEY", key.into()),
        ],
    }
}

pub(crate) fn env_for(harness: &str, model: &ScriptedModel, key: &str) -> Env {
    let mut env = Env::new();
    env.vars.extend(provider_vars(harness, model, key));
    env
}

/// The sum of the run's `model_call` records.
pub(crate) fn metered(events: &[Value]) -> (u64, u64, u64) {
    let calls = of_type(events, "model_call");
    let sum = |f: &str| {
        calls
            .iter()
            .map(|c| c["usage"][f].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    (
        calls.len() as u64,
        sum("input_tokens"),
        sum("output_tokens"),
    )
}

async fn no_key_in_the_sandbox(harness: &str, model_name: Option<&str>) {
    if !sandbox_available() {
        return;
    }
    match harness {
        "claude-code" => ensure_claude(),
        "codex" => ensure_codex(),
        "gemini" => ensure_gemini(),
        _ => ensure_opencode(),
    }
    let suffix = canary_suffix();
    let key = format!("sk-canary-{suffix}");
    let scenario = serde_json::json!({"steps": [
        {"shell": format!("python3 scan.py {suffix}")},
        {"text": "Scanned the sandbox."}
    ]})
    .to_string();
    let model = provider(&scenario, &key).await;
    let env = env_for(harness, &model, &key);
    let bare = repo_with_scan(env.dir.path());
    let mut args = vec!["--harness", harness, "--repo"];
    let repo = bare.to_string_lossy().into_owned();
    args.push(&repo);
    if let Some(m) = model_name {
        args.extend(["--model", m]);
    }
    args.push("scan the sandbox");
    let (ok, v) = env.run_json(&args);
    assert!(ok, "{harness}: {v:#}");
    let id = v["id"].as_str().expect("id");
    let events = env.events(id);

    // The scan ran and found nothing.
    let outputs: Vec<&str> = of_type(&events, "tool_result")
        .iter()
        .filter_map(|r| r["output"].as_str())
        .collect();
    let scan = outputs
        .iter()
        .find(|o| o.contains("SCAN-DONE"))
        .unwrap_or_else(|| panic!("{harness}: the scan printed nothing: {outputs:?}"));
    assert!(
        scan.contains("hits=0"),
        "{harness}: the real key is in the sandbox: {scan}"
    );
    assert!(
        !scan.contains("files=0 "),
        "{harness}: the scan read no file: {scan}"
    );

    // Every request reached the provider with the real key, through the gateway.
    let requests = model.requests();
    assert!(
        !requests.is_empty(),
        "{harness}: the provider saw no request"
    );
    assert!(
        requests.iter().all(|r| r.status < 400),
        "{harness}: the provider refused a request: {requests:?}"
    );
    let (calls, input, output) = metered(&events);
    assert_eq!(
        calls as usize,
        requests.len(),
        "{harness}: one model_call per request"
    );
    assert_eq!(v["metered"], true, "{v:#}");
    assert_eq!(v["model_requests"].as_u64(), Some(calls), "{v:#}");
    assert_eq!(v["input_tokens"].as_u64(), Some(input), "{v:#}");
    assert_eq!(v["output_tokens"].as_u64(), Some(output), "{v:#}");
    assert!(
        input > 0 && output > 0,
        "{harness}: usage read from the answers: {v:#}"
    );
    let notices: Vec<&str> = of_type(&events, "notice")
        .iter()
        .filter_map(|n| n["message"].as_str())
        .collect();
    assert!(
        notices
            .iter()
            .any(|n| n.starts_with("model gateway: the harness reaches")),
        "{notices:?}"
    );

    // And errand itself wrote it nowhere a run's files are kept, nor in its answer.
    assert!(
        files_containing(&env.home, key.as_bytes()).is_empty(),
        "{harness}: {:?}",
        files_containing(&env.home, key.as_bytes())
    );
    assert!(!v.to_string().contains(&key));
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_runs_through_the_gateway_without_the_key() {
    no_key_in_the_sandbox("claude-code", None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_runs_through_the_gateway_without_the_key() {
    no_key_in_the_sandbox("codex", None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_cli_runs_through_the_gateway_without_the_key() {
    no_key_in_the_sandbox("gemini", Some("gemini-2.5-pro")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn opencode_runs_through_the_gateway_without_the_key() {
    no_key_in_the_sandbox("opencode", Some("gpt-5")).await;
}

/// Several steps, of which the agent gets through only the first: the first
/// answer's tokens pass the budget, so errand stops the agent there.
const LONG: &str = r#"{"steps":[
    {"shell":"echo step-one"},
    {"shell":"echo step-two"},
    {"shell":"echo step-three"},
    {"text":"All three steps done."}
]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_token_budget_stops_the_run_mid_way_with_the_reason() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let key = format!("sk-canary-{}", canary_suffix());
    let model = provider(LONG, &key).await;
    let env = env_for("claude-code", &model, &key);
    let bare = bare_repo(env.dir.path());
    let (ok, v) = env.run_json(&[
        "--repo",
        &bare.to_string_lossy(),
        "--max-tokens",
        "10",
        "run the steps",
    ]);
    assert!(!ok, "{v:#}");
    assert_eq!(v["state"], "failed", "{v:#}");
    let err = v["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("budget exceeded (") && err.ends_with(" of 10 tokens)"),
        "{v:#}"
    );
    let events = env.events(v["id"].as_str().expect("id"));
    let (calls, input, output) = metered(&events);
    assert!(calls >= 1, "{events:?}");
    assert!(input + output > 10);
    // Stopped mid-way: the last steps never ran.
    let outputs: String = of_type(&events, "tool_result")
        .iter()
        .filter_map(|r| r["output"].as_str())
        .collect();
    assert!(!outputs.contains("step-three"), "{outputs}");
    assert!(
        (calls as usize) < 4,
        "the agent went on after the budget: {calls} requests"
    );
    assert!(
        of_type(&events, "warning").iter().any(|w| w["message"]
            .as_str()
            .unwrap_or("")
            .contains("budget exceeded")),
        "{events:?}"
    );
    // The run's recorded usage is what was metered.
    assert_eq!(v["input_tokens"].as_u64(), Some(input), "{v:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cost_budget_stops_codex_with_the_reason_in_dollars() {
    if !sandbox_available() {
        return;
    }
    ensure_codex();
    let key = format!("sk-canary-{}", canary_suffix());
    let model = provider(LONG, &key).await;
    let env = env_for("codex", &model, &key);
    let bare = bare_repo(env.dir.path());
    let (ok, v) = env.run_json(&[
        "--harness",
        "codex",
        "--model",
        "gpt-5",
        "--repo",
        &bare.to_string_lossy(),
        "--max-cost",
        "0.000001",
        "run the steps",
    ]);
    assert!(!ok, "{v:#}");
    assert_eq!(v["state"], "failed", "{v:#}");
    let err = v["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("budget exceeded ($") && err.contains(" of $"),
        "{v:#}"
    );
    assert!(v["cost_usd"].as_f64().unwrap_or(0.0) > 0.000001, "{v:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn models_outside_the_allowlist_are_refused_with_a_clear_message() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let key = format!("sk-canary-{}", canary_suffix());
    let model = provider(LONG, &key).await;
    let env = env_for("claude-code", &model, &key).var("ERRAND_GATEWAY_MODELS", "claude-haiku-*");
    let bare = bare_repo(env.dir.path());
    let repo = bare.to_string_lossy().into_owned();

    // Named for the run: refused before anything starts.
    let (ok, v) = env.run_json(&["--repo", &repo, "--model", "claude-opus-4-1", "go"]);
    assert!(!ok);
    assert_eq!(
        v["error"], "model claude-opus-4-1 is not allowed (allowed: claude-haiku-*)",
        "{v:#}"
    );

    // Chosen by the harness (its default model): the gateway refuses the
    // request itself, the agent is told why, and the provider never sees it.
    let (ok, v) = env.run_json(&["--repo", &repo, "go"]);
    assert!(!ok, "{v:#}");
    let events = env.events(v["id"].as_str().expect("id"));
    let refused: Vec<&Value> = of_type(&events, "model_call")
        .into_iter()
        .filter(|c| c["status"].as_u64().unwrap_or(0) >= 400)
        .collect();
    assert!(!refused.is_empty(), "{events:?}");
    assert!(
        refused.iter().all(|c| c["error"]
            .as_str()
            .unwrap_or("")
            .contains("is not allowed for this run (allowed: claude-haiku-*)")),
        "{refused:?}"
    );
    let told: String = events.iter().map(|e| e.to_string()).collect();
    assert!(
        told.contains("is not allowed"),
        "the agent is told why: {v:#}"
    );
    // Only the allowed requests reached the provider (the first run made none).
    let passed = of_type(&events, "model_call")
        .iter()
        .filter(|c| c["status"].as_u64().unwrap_or(0) < 400)
        .count();
    assert_eq!(model.requests().len(), passed);
}

/// A run started from the API goes through the same gateway: its view says
/// what was metered and its budget, and `/metrics` counts the tokens and cost
/// by model and harness.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_meters_runs_and_reports_tokens_and_cost_in_metrics() {
    if !sandbox_available() {
        return;
    }
    ensure_claude();
    let key = format!("sk-canary-{}", canary_suffix());
    let model = provider(
        r#"{"steps":[{"shell":"echo hi"},{"text":"Said hi."}]}"#,
        &key,
    )
    .await;
    let env = env_for("claude-code", &model, &key).allow_local_repos();
    let bare = bare_repo(env.dir.path());
    let token = api_token(&env, "metrics");
    let (_server, base) = serve(&env, "1");
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/api/v1/runs"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "prompt": "say hi", "repo": bare.to_string_lossy(), "max_cost_usd": 5.0
        }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("run JSON");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["max_cost_usd"], 5.0, "{created:#}");
    let run = wait_ended(&base, &token, &id).await;
    assert_eq!(run["state"], "succeeded", "{run:#}");
    assert_eq!(run["metered"], true, "{run:#}");
    let requests = run["model_requests"].as_u64().unwrap_or(0);
    assert!(requests >= 1, "{run:#}");
    assert_eq!(requests as usize, model.requests().len());

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let counted: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("errand_model_requests_total{") && l.contains("harness=\"claude-code\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, requests, "{metrics}");
    let input: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("errand_model_tokens_total{") && l.contains("kind=\"input\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(Some(input), run["input_tokens"].as_u64(), "{metrics}");
    assert!(
        metrics.contains("errand_model_cost_usd_total{"),
        "{metrics}"
    );
}

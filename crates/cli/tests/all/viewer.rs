//! The trace viewer in a real browser (headless Chromium over WebDriver):
//! `errand serve` with real Claude Code runs under the scripted model, and
//! `errand view` on trace files. Each test saves screenshots under
//! `<target>/test-artifacts/viewer/` and prints their paths.
//!
//! Without Chromium (`/usr/bin/chromium`, `/usr/bin/chromedriver`) the tests
//! skip with a reason, except under CI (`CI` set), where they fail.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::viewer_browser::{free_port, Browser};
use serde_json::{json, Value};

pub(crate) const MINUTE: Duration = Duration::from_secs(60);

pub(crate) fn serve(env: &Env, listen: &str) -> (Proc, String) {
    start(
        env,
        &["serve", "--listen", listen, "--workers", "0"],
        "errand serve: listening on ",
    )
}

pub(crate) fn token(env: &Env) -> String {
    api_token(env, "viewer-tests")
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("request");
        resp.json().await.unwrap_or(Value::Null)
    }

    async fn run(&self, id: &str) -> Value {
        self.json(reqwest::Method::GET, &format!("/api/runs/{id}"), None)
            .await
    }

    async fn events(&self, id: &str) -> Vec<Value> {
        let text = self
            .http
            .get(format!("{}/api/runs/{id}/events", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("events")
            .text()
            .await
            .expect("body");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("an event"))
            .collect()
    }

    async fn wait_state(&self, id: &str, pred: impl Fn(&str) -> bool) -> Value {
        let deadline = Instant::now() + 3 * MINUTE;
        loop {
            let v = self.run(id).await;
            if pred(v["state"].as_str().unwrap_or("")) {
                return v;
            }
            assert!(Instant::now() < deadline, "gave up waiting: {v:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn terminal(s: &str) -> bool {
    matches!(s, "succeeded" | "failed" | "cancelled" | "timed_out")
}

/// A run that shows a command, writes a file, then keeps running a while.
const SLOW: &str = r#"{"steps":[
    {"shell":"echo viewer-marker-one && sleep 3"},
    {"write":{"path":"notes/viewer.txt","content":"written-by-the-agent\nsecond line\n"}},
    {"shell":"sleep 7 && echo viewer-marker-two"},
    {"text":"All **done**: wrote `notes/viewer.txt`."}
]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_run_page_shows_a_live_run_and_loses_nothing_across_reconnects() {
    if !sandbox_available() {
        return;
    }
    let Some(browser) = Browser::launch("run_page_live_and_reconnect").await else {
        return;
    };
    ensure_claude();
    let model = model(SLOW).await;
    let env = Env::new().allow_local_repos();
    let bare = bare_repo(env.dir.path());
    let env = env.with_model(&model);
    let token = token(&env);
    // The API on a fixed port, with no workers: a separate worker process
    // executes the run, so the API server can be restarted mid-run.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (api_proc, base) = serve(&env, &listen);
    let (_worker, _) = start(&env, &["worker", "--workers", "1"], "errand worker ");
    let api = Api {
        http: reqwest::Client::new(),
        base: base.clone(),
        token: token.clone(),
    };

    // Log in through the URL fragment.
    browser.goto(&format!("{base}/#token={token}")).await;
    browser
        .wait_for(
            "the runs list",
            "return document.querySelector('table.runs') !== null && !location.hash",
            MINUTE,
        )
        .await;

    let run = api
        .json(
            reqwest::Method::POST,
            "/api/runs",
            Some(json!({"prompt": "show me a live trace", "repo": bare.to_string_lossy()})),
        )
        .await;
    let id = run["id"].as_str().expect("run id").to_string();
    browser.goto(&format!("{base}/runs/{id}")).await;
    let first = browser
        .wait_for(
            "the run header",
            "const b = document.querySelector('.run-head .badge'); return b && b.dataset.state",
            MINUTE,
        )
        .await;
    println!("state when the page opened: {first}");

    // Live: the state turns to running, then the command and the written
    // file's diff appear while the run is still going.
    browser
        .wait_for(
            "the running state",
            "return document.querySelector('.run-head .badge')?.dataset.state === 'running'",
            2 * MINUTE,
        )
        .await;
    browser
        .wait_for(
            "the shell command",
            "return [...document.querySelectorAll('.entry.k-tool pre.cmd')].some(p => p.textContent.includes('echo viewer-marker-one'))",
            2 * MINUTE,
        )
        .await;
    let state = api.run(&id).await["state"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        !terminal(&state),
        "the command showed only after the run ended ({state})"
    );
    browser
        .wait_for(
            "the diff of the written file",
            "return [...document.querySelectorAll('.entry.k-tool .dl.add')].some(l => l.textContent.includes('written-by-the-agent'))",
            2 * MINUTE,
        )
        .await;
    let state = api.run(&id).await["state"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        !terminal(&state),
        "the diff showed only after the run ended ({state})"
    );
    browser.screenshot("live").await;

    // Drop the page's stream, then restart the API server on the same port
    // and database while the run goes on.
    let dropped = browser
        .js("return window.__errandDropStream()", vec![])
        .await;
    assert_eq!(dropped, json!(1), "one stream was open");
    drop(api_proc);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_api_proc, base2) = serve(&env, &listen);
    assert_eq!(base2, base);

    let fin = api.wait_state(&id, terminal).await;
    assert_eq!(fin["state"], "succeeded", "{fin:#}");
    let stats = browser
        .wait_for(
            "the page to hold the whole run",
            "const s = window.__errand && window.__errand.stats(); return s && s.stream === 'ended' && !s.live && s.complete && s.state === 'succeeded' ? s : null",
            2 * MINUTE,
        )
        .await;
    // The tab's title followed the run to its end (a background tab shows it).
    browser
        .wait_for(
            "the title to say succeeded",
            "return document.title.includes('succeeded') ? document.title : null",
            MINUTE,
        )
        .await;
    let events = api.events(&id).await;
    let calls = events.iter().filter(|e| e["type"] == "tool_call").count();
    println!(
        "page: {stats}; API: {} events, {calls} tool calls",
        events.len()
    );
    assert_eq!(stats["events"], json!(events.len()), "every event, once");
    assert_eq!(stats["maxSeq"], json!(events.len()));
    assert_eq!(stats["gapFree"], json!(true), "seqs 1..n without a gap");
    assert_eq!(stats["streamDup"], json!(0), "the stream repeated nothing");
    assert_eq!(stats["toolCalls"], json!(calls));
    assert_eq!(
        stats["rendered"], stats["renderedUnique"],
        "no entry drawn twice"
    );
    assert!(
        stats["streamAttempts"].as_u64().unwrap_or(0) >= 3,
        "the stream reconnected after the drop and after the restart: {stats}"
    );
    assert!(stats["streamDelivered"].as_u64().unwrap_or(0) > 0);
    // The final state and the run's diff panel.
    browser
        .wait_for(
            "the run's diff panel",
            "return [...document.querySelectorAll('.entry.k-diff')].some(e => e.textContent.includes('changes of the whole run') && e.textContent.includes('notes/viewer.txt'))",
            MINUTE,
        )
        .await;
    browser
        .wait_for(
            "the succeeded badge",
            "return document.querySelector('.run-head .badge')?.dataset.state === 'succeeded'",
            MINUTE,
        )
        .await;
    // The raw toggle: the normalized events and Claude Code's own stream-json line.
    browser
        .js(RAW_CLICK, vec![json!("viewer-marker-one")])
        .await;
    browser
        .wait_for(
            "the harness's own line",
            "return [...document.querySelectorAll('.e-raw pre.harness')].some(p => p.textContent.includes('tool_use') && p.textContent.includes('viewer-marker-one'))",
            MINUTE,
        )
        .await;
    browser.screenshot("").await;

    // Keyboard: j jumps to a tool call; / focuses the search, which finds text anywhere.
    browser
        .js(
            "document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'j', bubbles: true})); return 1",
            vec![],
        )
        .await;
    browser
        .wait_for(
            "a focused tool call",
            "return document.querySelector('.entry.k-tool.focused') !== null",
            MINUTE,
        )
        .await;
    browser
        .js(
            "document.body.dispatchEvent(new KeyboardEvent('keydown', {key: '/', bubbles: true})); const s = document.querySelector('.search'); s.value = 'viewer-marker-two'; s.dispatchEvent(new Event('input')); return document.activeElement === s",
            vec![],
        )
        .await;
    browser
        .wait_for(
            "a highlighted match",
            "return document.querySelector('.entry.current mark')?.textContent.toLowerCase() === 'viewer-marker-two'",
            MINUTE,
        )
        .await;

    // A share link opens the same page without any token.
    let share = api
        .json(
            reqwest::Method::POST,
            &format!("/api/runs/{id}/share"),
            None,
        )
        .await;
    let path = share["path"].as_str().expect("share path");
    browser.js("localStorage.clear(); return 1", vec![]).await;
    browser.goto(&format!("{base}{path}")).await;
    browser
        .wait_for(
            "the shared run's tool calls",
            "return [...document.querySelectorAll('.entry.k-tool')].some(e => e.textContent.includes('viewer-marker-one'))",
            MINUTE,
        )
        .await;
    browser.screenshot("share").await;
    browser.close().await;
}

const QUICK: &str = r#"{"steps":[
    {"shell":"echo group-marker && sleep 4"},
    {"write":{"path":"group.txt","content":"side by side\n"}},
    {"text":"Done."}
]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_runs_list_and_the_group_page_follow_a_fan_out_live() {
    if !sandbox_available() {
        return;
    }
    let Some(browser) = Browser::launch("runs_list_and_group").await else {
        return;
    };
    ensure_claude();
    let model = model(QUICK).await;
    let env = Env::new().allow_local_repos();
    let bare = bare_repo(env.dir.path());
    let env = env.with_model(&model);
    let token = token(&env);
    let (_api, base) = serve(&env, "127.0.0.1:0");

    browser.goto(&format!("{base}/#token={token}")).await;
    browser
        .wait_for(
            "the runs list",
            "return document.querySelector('table.runs') !== null",
            MINUTE,
        )
        .await;
    // Set a mark a reload would wipe out.
    browser
        .js("window.__notReloaded = 'yes'; return 1", vec![])
        .await;

    // A fan-out run from the CLI, sharing the server's database.
    let bare_s = bare.to_string_lossy().to_string();
    let fan_out = env
        .command(&[
            "run",
            "--json",
            "--models",
            "claude-sonnet-4-5,claude-haiku-4-5",
            "--repo",
            &bare_s,
            "compare two models",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn errand run");
    let rows = browser
        .wait_for(
            "two running rows",
            "const rows = [...document.querySelectorAll('table.runs tbody tr[data-id]')]; return rows.length === 2 && rows.some(r => ['queued','preparing','running','finishing'].includes(r.dataset.state)) ? rows.map(r => r.dataset.state) : null",
            2 * MINUTE,
        )
        .await;
    println!("rows while running: {rows}");
    browser.screenshot("list-running").await;
    browser
        .wait_for(
            "both rows to succeed",
            "const rows = [...document.querySelectorAll('table.runs tbody tr[data-id]')]; return rows.length === 2 && rows.every(r => r.dataset.state === 'succeeded')",
            3 * MINUTE,
        )
        .await;
    assert_eq!(
        browser
            .js("return window.__notReloaded || null", vec![])
            .await,
        json!("yes"),
        "the rows changed without a reload"
    );
    browser.screenshot("list").await;
    let out = fan_out.wait_with_output().expect("errand run");
    let v: Value = serde_json::from_slice(&out.stdout).expect("fan-out JSON");
    let group = v["group"].as_str().expect("a group id").to_string();
    let linked = browser
        .js(
            "return [...document.querySelectorAll('table.runs td.c-group a')].map(a => a.textContent)",
            vec![],
        )
        .await;
    assert_eq!(linked, json!([group.clone(), group.clone()]));

    // The comparison page: two columns side by side, each with its mini-trace.
    browser.goto(&format!("{base}/groups/{group}")).await;
    let cols = browser
        .wait_for(
            "two columns with their traces",
            r#"const cols = [...document.querySelectorAll('.group-col')];
               if (cols.length !== 2) return null;
               if (!cols.every(c => c.dataset.state === 'succeeded' && c.querySelector('.mini-trace').textContent.includes('group-marker') && c.querySelector('.mini-trace').classList.contains('ended'))) return null;
               return cols.map(c => { const r = c.getBoundingClientRect(); return {left: r.left, top: r.top, text: c.querySelector('header').textContent}; });"#,
            2 * MINUTE,
        )
        .await;
    println!("columns: {cols}");
    let (a, b) = (&cols[0], &cols[1]);
    assert_eq!(a["top"], b["top"], "side by side: {cols}");
    assert!(b["left"].as_f64() > a["left"].as_f64(), "{cols}");
    let models: Vec<String> = cols
        .as_array()
        .map(|c| c.iter().map(|x| x["text"].to_string()).collect())
        .unwrap_or_default();
    assert!(
        models.iter().any(|m| m.contains("claude-sonnet-4-5")),
        "{models:?}"
    );
    assert!(
        models.iter().any(|m| m.contains("claude-haiku-4-5")),
        "{models:?}"
    );
    browser.screenshot("").await;
    browser.close().await;
}

/// Clicks the `raw` toggle of the tool call whose text holds `arguments[0]`.
const RAW_CLICK: &str = "const e = [...document.querySelectorAll('.entry.k-tool')].find(e => e.textContent.includes(arguments[0])); e.querySelector('.rawbtn').click(); return 1";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../trace/tests/fixtures")
        .join(name)
}

/// `errand view … --no-open --json`: the process and its JSON line.
fn view(args: &[&str]) -> (Proc, Value) {
    let mut child = std::process::Command::new(errand_bin())
        .arg("view")
        .args(args)
        .args(["--no-open", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn errand view");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the JSON line");
    let v: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("errand view printed no JSON ({e}): {line}"));
    (Proc(child), v)
}

#[tokio::test(flavor = "multi_thread")]
async fn errand_view_renders_claude_and_codex_files_and_dropped_files() {
    let Some(browser) = Browser::launch("errand_view").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let claude = std::fs::read_to_string(fixture("claude_session_transcript_sample.jsonl"))
        .expect("claude fixture");
    let codex =
        std::fs::read_to_string(fixture("codex_rollout_sample.jsonl")).expect("codex fixture");
    std::fs::create_dir_all(dir.path().join("claude/projects")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("codex/sessions/2026")).expect("mkdir");
    std::fs::write(dir.path().join("claude/projects/session.jsonl"), &claude).expect("write");
    std::fs::write(dir.path().join("codex/sessions/2026/rollout.jsonl"), &codex).expect("write");
    // A file with a malformed line and a truncated last line.
    let mut broken: Vec<&str> = claude.lines().collect();
    broken.insert(3, "this line is not JSON");
    let broken = format!("{}\n{{\"type\":\"assistant\",\"mess", broken.join("\n"));
    std::fs::write(dir.path().join("broken.jsonl"), &broken).expect("write");
    std::fs::write(dir.path().join("ignored.txt"), "not a trace").expect("write");

    let dir_s = dir.path().to_string_lossy().to_string();
    let (_view, v) = view(&[&dir_s]);
    let url = v["url"].as_str().expect("url").to_string();
    let files = v["files"].as_array().expect("files").clone();
    assert_eq!(files.len(), 3, "the .jsonl files only: {v:#}");
    let find = |suffix: &str| {
        files
            .iter()
            .find(|f| f["name"].as_str().is_some_and(|n| n.ends_with(suffix)))
            .unwrap_or_else(|| panic!("{suffix} listed: {v:#}"))
            .clone()
    };
    let (c, x, b) = (
        find("session.jsonl"),
        find("rollout.jsonl"),
        find("broken.jsonl"),
    );
    assert_eq!(c["format"], "claude_transcript");
    assert_eq!(x["format"], "codex_rollout");
    assert!(
        b["problems"].as_array().is_some_and(|p| p.len() == 2),
        "{b:#}"
    );
    let origin = url.trim_end_matches("/local").to_string();

    // The list of files.
    browser.goto(&url).await;
    browser.wait_text("rollout.jsonl", MINUTE).await;
    browser.wait_text("claude transcript", MINUTE).await;
    browser.screenshot("list").await;

    // Each file's trace renders its tool calls.
    for (f, cmd, shot) in [
        (&c, "git push origin HEAD:master", "claude"),
        (&x, "echo hi > hello.txt", "codex"),
    ] {
        browser.goto(&format!("{origin}/local/{}", f["n"])).await;
        let script = format!(
            "const s = window.__errand && window.__errand.stats(); return s && s.complete && [...document.querySelectorAll('.entry.k-tool')].some(e => e.textContent.includes({})) ? s : null",
            serde_json::to_string(cmd).unwrap_or_default()
        );
        let stats = browser.wait_for(cmd, &script, MINUTE).await;
        assert_eq!(stats["events"], f["events"], "{shot}: {stats}");
        assert!(stats["toolCalls"].as_u64().unwrap_or(0) >= 1);
        // The raw toggle shows the normalized events and the file's own line.
        browser.js(RAW_CLICK, vec![json!(cmd)]).await;
        browser
            .wait_for(
                "the harness's own line",
                "return [...document.querySelectorAll('.e-raw pre.harness')].some(p => p.textContent.includes('\"type\"') && !p.textContent.startsWith('loading'))",
                MINUTE,
            )
            .await;
        browser.screenshot(shot).await;
    }

    // Problems are shown at the top of the page.
    browser.goto(&format!("{origin}/local/{}", b["n"])).await;
    browser.wait_text("could not be read", MINUTE).await;
    let problems = browser
        .js(
            "return document.querySelector('.problems')?.innerText || ''",
            vec![],
        )
        .await;
    assert!(
        problems
            .as_str()
            .is_some_and(|p| p.contains("line 4 could not be read")),
        "{problems}"
    );
    browser.screenshot("problems").await;

    // A dropped file is sent to this loopback server and rendered.
    let drop_js = "const [name, text] = arguments; const dt = new DataTransfer(); dt.items.add(new File([text], name, {type: 'application/json'})); document.body.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true})); return 1";
    browser.goto(&url).await;
    browser.wait_text("never leaves it", MINUTE).await;
    browser
        .js(drop_js, vec![json!("dropped-codex.jsonl"), json!(codex)])
        .await;
    browser
        .wait_for(
            "the dropped file's tool call",
            "return [...document.querySelectorAll('.entry.k-tool')].some(e => e.textContent.includes('echo hi > hello.txt')) && document.querySelector('.run-title')?.textContent === 'dropped-codex.jsonl'",
            MINUTE,
        )
        .await;
    browser.screenshot("dropped").await;
    // An unknown format says so.
    browser
        .js(drop_js, vec![json!("notes.jsonl"), json!("hello\nworld\n")])
        .await;
    browser.wait_text("Unknown format", MINUTE).await;
    browser.screenshot("").await;
    browser.close().await;
}

/// `errand view` with no argument shows the user's own sessions (here a
/// HOME holding real captures): Gemini CLI's saved chats (0.61's JSONL and
/// 0.20's one-document JSON) and a Claude Code transcript, by project; the
/// images in them are drawn from the file's own data.
#[tokio::test(flavor = "multi_thread")]
async fn errand_view_opens_your_own_gemini_chats_and_images() {
    let Some(browser) = Browser::launch("errand_view_own").await else {
        return;
    };
    let home = tempfile::tempdir().expect("tempdir");
    let put = |rel: &str, fixture_name: &str| {
        let to = home.path().join(rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(fixture(fixture_name), &to).expect("copy");
    };
    put(
        ".gemini/tmp/w61/chats/session-2026-12-05T15-17-21dc15e0.jsonl",
        "gemini_chat_0.61_image.jsonl",
    );
    put(
        ".gemini/tmp/48ec4f9c/chats/session-2026-12-05T15-17-e57014ad.json",
        "gemini_chat_0.20_tools.json",
    );
    put(
        ".claude/projects/-tmp-gcap-w61/eeb4485c-d124-4654-8158-149a95fb3aaf.jsonl",
        "claude_transcript_image.jsonl",
    );
    // Not a chat: Gemini CLI's settings.
    std::fs::write(home.path().join(".gemini/settings.json"), "{}").expect("write");

    let mut child = std::process::Command::new(errand_bin())
        .args(["view", "--no-open", "--json"])
        .env("HOME", home.path())
        .env_remove("CLAUDE_CONFIG_DIR")
        .env_remove("CODEX_HOME")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn errand view");
    let stdout = child.stdout.take().expect("stdout");
    let _view = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the JSON line");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let files = v["files"].as_array().expect("files").clone();
    assert_eq!(files.len(), 3, "{v:#}");
    for f in &files {
        assert_eq!(f["problems"], json!([]), "{f:#}");
    }
    let find = |suffix: &str| {
        files
            .iter()
            .find(|f| f["name"].as_str().is_some_and(|n| n.ends_with(suffix)))
            .unwrap_or_else(|| panic!("{suffix}: {v:#}"))
            .clone()
    };
    let (jsonl, json_doc, claude) = (find(".jsonl"), find(".json"), find("aaf.jsonl"));
    let jsonl = if jsonl == claude {
        find("21dc15e0.jsonl")
    } else {
        jsonl
    };
    assert_eq!(jsonl["format"], "gemini_chat");
    assert_eq!(json_doc["format"], "gemini_chat");
    assert_eq!(claude["format"], "claude_transcript");
    assert_eq!(jsonl["project"], "w61");
    assert_eq!(claude["project"], "-tmp-gcap-w61");
    let url = v["url"].as_str().expect("url").to_string();
    let origin = url.trim_end_matches("/local").to_string();

    // The list, by project.
    browser.goto(&url).await;
    browser.wait_text("gemini chat", MINUTE).await;
    let groups = browser
        .js(
            "return [...document.querySelectorAll('tr.group-row')].map(r => r.textContent)",
            vec![],
        )
        .await;
    let groups = groups.to_string();
    for p in ["w61", "48ec4f9c", "-tmp-gcap-w61"] {
        assert!(groups.contains(p), "{groups}");
    }
    browser.screenshot("list").await;

    // Each file: its tool calls, and its images decoded (8×8 pixels) from the file.
    for (f, tool, pictures, shot) in [
        (&jsonl, "read_file", 2, "gemini-jsonl"),
        (&json_doc, "write_file", 0, "gemini-json"),
        (&claude, "Read", 1, "claude-image"),
    ] {
        browser.goto(&format!("{origin}/local/{}", f["n"])).await;
        let script = format!(
            "const s = window.__errand && window.__errand.stats(); if (!s || !s.complete) return null; \
             const tools = [...document.querySelectorAll('.entry.k-tool')].some(e => e.textContent.includes({tool})); \
             const imgs = [...document.querySelectorAll('img.trace-img')]; \
             if (!tools || imgs.length < {pictures} || !imgs.every(i => i.complete && i.naturalWidth === 8)) return null; \
             return {{events: s.events, images: imgs.length, srcs: imgs.map(i => i.src.slice(0, 22)), raw: document.querySelectorAll('.entry.k-raw').length}}",
            tool = serde_json::to_string(tool).unwrap_or_default(),
        );
        let got = browser.wait_for(shot, &script, MINUTE).await;
        assert_eq!(got["events"], f["events"], "{shot}: {got}");
        assert_eq!(got["images"], pictures, "{shot}: {got}");
        assert_eq!(got["raw"], 0, "{shot}: no unrecognised line: {got}");
        for src in got["srcs"].as_array().into_iter().flatten() {
            assert_eq!(src, "data:image/png;base64,", "{shot}: {got}");
        }
        browser.screenshot(shot).await;
    }
    browser.close().await;
}

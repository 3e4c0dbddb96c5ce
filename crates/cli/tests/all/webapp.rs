//! The web app in a real browser (headless Chromium over WebDriver): runs
//! started from the New run form (checked by the server first, errors beside
//! their fields), followed live to the end, continued with a follow-up from
//! the run page, run again, fanned out across two models; a read-only token
//! sees no Start, Cancel or Re-run and the server refuses them; the runs
//! table at 1280 px and on a 390 px phone. Real Claude Code under the
//! scripted model. Screenshots under `<target>/test-artifacts/viewer/`.

use crate::common::*;
use crate::viewer::{token, MINUTE};
use crate::viewer_browser::Browser;
use serde_json::{json, Value};

/// Two turns: a run's first turn, then its follow-up's (the scripted model
/// counts turns from the conversation, so every new run starts at the top).
const TWO_TURNS: &str = r#"{"steps":[
    {"shell":"echo webapp-first-marker"},
    {"text":"First turn done."},
    {"shell":"echo webapp-second-marker"},
    {"text":"Second turn done."}
]}"#;

/// Sets a form control's value as a person typing would (an `input` event).
const SET: &str = "const e = document.querySelector(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event('input', {bubbles: true})); return 1";

/// Ticks (or clears) the harness checkbox `arguments[0]`.
const TICK: &str = "const e = document.querySelector(`input[name=harness][value=\"${arguments[0]}\"]`); e.checked = arguments[1]; e.dispatchEvent(new Event('change', {bubbles: true})); return 1";

/// The error shown beside field `arguments[0]`, once there is one.
fn field_error(field: &str) -> String {
    format!(
        "const e = document.querySelector('.field-error[data-for=\"{field}\"]'); return e && !e.hidden && e.textContent ? e.textContent : null"
    )
}

/// The run page's state and whether its trace shows `marker`, once both hold.
fn run_ends_showing(marker: &str) -> String {
    format!(
        "const s = window.__errand && window.__errand.stats(); if (!s || s.state !== 'succeeded' || s.live) return null; return document.querySelector('.trace-scroller').innerText.includes({}) ? s : null",
        serde_json::to_string(marker).unwrap_or_default()
    )
}

async fn open_form(browser: &Browser, base: &str) {
    browser.goto(&format!("{base}/new")).await;
    browser
        .wait_for(
            "the New run form",
            "return document.querySelector('form.new-run textarea[name=prompt]') !== null",
            MINUTE,
        )
        .await;
}

async fn start(browser: &Browser) {
    browser
        .js(
            "document.querySelector('form.new-run button.start').click(); return 1",
            vec![],
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_start_and_are_steered_from_the_browser() {
    if !sandbox_available() {
        return;
    }
    let Some(browser) = Browser::launch("webapp").await else {
        return;
    };
    ensure_claude();
    let model = model(TWO_TURNS).await;
    let env = Env::new().allow_local_repos();
    let bare = bare_repo(env.dir.path());
    let repo = bare.to_string_lossy().into_owned();
    let env = env
        .with_model(&model)
        .var("ERRAND_GATEWAY_MODELS", "claude-*");
    let token = token(&env);
    // The server runs what it queues (so it knows which keys its runs get).
    let (_server, base) = serve(&env, "2");

    browser.goto(&format!("{base}/#token={token}")).await;
    browser
        .wait_for(
            "the New run link for a token that may start runs",
            "return document.querySelector('a.new-run-link') !== null && document.querySelector('table.runs') !== null",
            MINUTE,
        )
        .await;
    // `n` opens the form from any page.
    browser
        .js("document.body.dispatchEvent(new KeyboardEvent('keydown', {key: 'n', bubbles: true})); return 1", vec![])
        .await;
    browser
        .wait_for(
            "the form, opened with n",
            "return location.pathname === '/new' && document.querySelector('form.new-run') !== null",
            MINUTE,
        )
        .await;

    // The server checks before anything is queued; each error sits beside its field.
    browser.js(SET, vec![json!("#f-repo"), json!(repo)]).await;
    browser
        .js(
            SET,
            vec![json!("#f-prompt"), json!("say hello from the web")],
        )
        .await;
    browser.js(SET, vec![json!("#f-base"), json!("-x")]).await;
    start(&browser).await;
    let shown = browser
        .wait_for("the base branch's error", &field_error("base"), MINUTE)
        .await;
    assert!(
        shown.as_str().unwrap_or("").contains("not a branch name"),
        "{shown}"
    );
    browser.js(SET, vec![json!("#f-base"), json!("")]).await;
    browser
        .js(SET, vec![json!("#f-model"), json!("gpt-4o")])
        .await;
    start(&browser).await;
    let shown = browser
        .wait_for("the model's error", &field_error("model"), MINUTE)
        .await;
    assert!(
        shown.as_str().unwrap_or("").contains("not allowed"),
        "{shown}"
    );
    browser.js(SET, vec![json!("#f-model"), json!("")]).await;
    // A harness whose key this server does not have: said before it starts.
    let warned = browser
        .js(
            "return document.querySelector('#f-harness').innerText",
            vec![],
        )
        .await;
    assert!(
        warned
            .as_str()
            .unwrap_or("")
            .contains("needs OPENAI_API_KEY"),
        "{warned}"
    );
    browser.js(TICK, vec![json!("codex"), json!(true)]).await;
    start(&browser).await;
    let shown = browser
        .wait_for("the harness's error", &field_error("harness"), MINUTE)
        .await;
    assert!(
        shown.as_str().unwrap_or("").contains("OPENAI_API_KEY"),
        "{shown}"
    );
    browser.js(TICK, vec![json!("codex"), json!(false)]).await;
    assert_eq!(
        list_runs(&base, &token).await,
        Vec::<Value>::new(),
        "refused forms queue nothing"
    );
    // The draft survives a reload.
    browser.goto(&format!("{base}/new")).await;
    browser
        .wait_for(
            "the draft back in the form",
            "const p = document.querySelector('#f-prompt'); return p && p.value === 'say hello from the web'",
            MINUTE,
        )
        .await;
    browser.screenshot("new-run-form").await;

    // Ctrl-Enter starts it; the run's page opens and follows it to the end.
    browser
        .js("document.querySelector('#f-prompt').dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', ctrlKey: true, bubbles: true})); return 1", vec![])
        .await;
    let first = browser
        .wait_for(
            "the run's page",
            "const m = /^\\/runs\\/([^/]+)$/.exec(location.pathname); return m ? m[1] : null",
            MINUTE,
        )
        .await
        .as_str()
        .expect("a run id")
        .to_owned();
    browser
        .js("window.__notReloaded = 'yes'; return 1", vec![])
        .await;
    let stats = browser
        .wait_for(
            "the run to finish live",
            &run_ends_showing("webapp-first-marker"),
            3 * MINUTE,
        )
        .await;
    println!("first run: {stats}");
    let title = browser.js("return document.title", vec![]).await;
    assert!(
        title.as_str().unwrap_or("").contains("succeeded"),
        "{title}"
    );
    let run = api_get(&base, &token, &format!("/api/v1/runs/{first}")).await;
    assert_eq!(run["repo"].as_str(), Some(repo.as_str()), "{run}");
    assert_eq!(run["requested_by"], "api:viewer-tests");
    browser.screenshot("run-finished").await;

    // A follow-up from the page: the same run, a new turn, seen live.
    browser
        .wait_for(
            "the follow-up box",
            "const f = document.querySelector('form.follow-up'); return f && !f.hidden",
            MINUTE,
        )
        .await;
    browser
        .js(
            SET,
            vec![
                json!("form.follow-up textarea"),
                json!("and now a second turn"),
            ],
        )
        .await;
    browser
        .js("document.querySelector('form.follow-up textarea').dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', ctrlKey: true, bubbles: true})); return 1", vec![])
        .await;
    let stats = browser
        .wait_for(
            "the follow-up's turn to finish live",
            &run_ends_showing("webapp-second-marker"),
            3 * MINUTE,
        )
        .await;
    println!("after the follow-up: {stats}");
    let page = browser
        .js(
            "return document.querySelector('.trace-scroller').innerText",
            vec![],
        )
        .await;
    assert!(
        page.as_str()
            .unwrap_or("")
            .contains("and now a second turn"),
        "the follow-up is a user turn in the trace"
    );
    assert_eq!(
        browser
            .js("return window.__notReloaded || null", vec![])
            .await,
        json!("yes"),
        "the new turn came in without a reload"
    );
    assert_eq!(stats["gapFree"], true, "{stats}");
    browser.screenshot("follow-up").await;

    // Re-run: the same spec in the form, editable; a new run.
    browser
        .js(
            "document.querySelector('a.rerun').click(); return 1",
            vec![],
        )
        .await;
    browser
        .wait_for(
            "the form filled from the run",
            "const p = document.querySelector('#f-prompt'); const r = document.querySelector('#f-repo'); return location.search.startsWith('?from=') && p && p.value === 'say hello from the web' && r.value !== '' && document.querySelector('h1').textContent.includes('again')",
            MINUTE,
        )
        .await;
    start(&browser).await;
    let second = browser
        .wait_for(
            "the re-run's page",
            &format!("const m = /^\\/runs\\/([^/]+)$/.exec(location.pathname); return m && m[1] !== '{first}' ? m[1] : null"),
            MINUTE,
        )
        .await;
    browser
        .wait_for(
            "the re-run to finish",
            &run_ends_showing("webapp-first-marker"),
            3 * MINUTE,
        )
        .await;
    println!("re-run: {second}");

    // A fan-out of two models: the comparison page, both finished.
    open_form(&browser, &base).await;
    browser.js(SET, vec![json!("#f-repo"), json!(repo)]).await;
    browser
        .js(SET, vec![json!("#f-prompt"), json!("compare two models")])
        .await;
    browser
        .js(
            SET,
            vec![
                json!("#f-model"),
                json!("claude-sonnet-4-5, claude-haiku-4-5"),
            ],
        )
        .await;
    start(&browser).await;
    let cols = browser
        .wait_for(
            "two columns of one group, both succeeded",
            "if (!location.pathname.startsWith('/groups/')) return null; const cols = [...document.querySelectorAll('.group-col')]; return cols.length === 2 && cols.every(c => c.dataset.state === 'succeeded') ? cols.map(c => c.querySelector('header').textContent) : null",
            3 * MINUTE,
        )
        .await;
    let text = cols.to_string();
    assert!(
        text.contains("claude-sonnet-4-5") && text.contains("claude-haiku-4-5"),
        "{cols}"
    );
    browser.screenshot("fan-out").await;

    // Pick one of them: the column is marked, the other says so, and the
    // button is gone (the runs did not push: the branch is the result).
    browser
        .wait_for(
            "a Pick button on each column",
            "return document.querySelectorAll('.group-col .pick-btn').length === 2 && !document.querySelector('.pick-bar').hidden ? 1 : null",
            MINUTE,
        )
        .await;
    browser
        .js(
            "document.querySelector('.group-col .pick-btn').click(); return 1",
            vec![],
        )
        .await;
    let picked = browser
        .wait_for(
            "the pick shown",
            "const p = document.querySelector('.group-col.picked'); const n = document.querySelector('.not-picked'); const m = document.querySelector('.picked-msg'); return p && n && m && !document.querySelector('.pick-btn') ? m.textContent : null",
            MINUTE,
        )
        .await;
    assert!(
        picked.to_string().contains("is the result of fan-out"),
        "{picked}"
    );
    browser.screenshot("fan-out-picked").await;

    // The runs table fits 1280 px, and a 390 px phone, without scrolling sideways.
    for (width, step) in [(1280, "runs-1280"), (390, "runs-390")] {
        let inner = browser.window_size(width, 900).await;
        browser.goto(&format!("{base}/")).await;
        let fit = browser
            .wait_for(
                "the runs table",
                "const rows = document.querySelectorAll('table.runs tbody tr[data-id]'); if (rows.length < 4) return null; const d = document.documentElement; const w = document.querySelector('.table-wrap'); return {page: d.scrollWidth, view: d.clientWidth, wrap: w.scrollWidth, wrapView: w.clientWidth}",
                MINUTE,
            )
            .await;
        println!("{step}: viewport {inner} px, {fit}");
        assert!(
            fit["page"].as_f64() <= fit["view"].as_f64()
                && fit["wrap"].as_f64() <= fit["wrapView"].as_f64(),
            "{step}: the table is wider than the screen: {fit}"
        );
        browser.screenshot(step).await;
    }
    browser.window_size(1400, 1000).await;

    // A read-only token: no Start, no Cancel, no Re-run, and the server refuses them.
    let out = env.run(&["token", "create", "reader", "--scope", "read"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // (A new page: a change of fragment alone would not load one.)
    browser.goto("about:blank").await;
    browser.goto(&format!("{base}/#token={reader}")).await;
    browser
        .wait_for(
            "the reader's name in the header",
            "const m = document.querySelector('header .me'); return m && m.textContent === 'reader' && document.querySelector('table.runs tbody tr[data-id]') !== null",
            MINUTE,
        )
        .await;
    assert_eq!(
        browser
            .js(
                "return document.querySelector('a.new-run-link') === null",
                vec![]
            )
            .await,
        json!(true),
        "no New run for a read-only token"
    );
    browser.goto(&format!("{base}/runs/{first}")).await;
    let buttons = browser
        .wait_for(
            "the run page for the reader",
            "const s = window.__errand && window.__errand.stats(); if (!s || s.state !== 'succeeded') return null; return {cancel: document.querySelector('button.cancel') !== null, rerun: document.querySelector('a.rerun') !== null, share: document.querySelector('button.share') !== null, follow: !document.querySelector('form.follow-up').hidden}",
            MINUTE,
        )
        .await;
    assert_eq!(
        buttons,
        json!({"cancel": false, "rerun": false, "share": false, "follow": false}),
        "a read-only token sees no action"
    );
    browser.goto(&format!("{base}/new")).await;
    browser
        .wait_for(
            "the form refused to a reader",
            "return document.querySelector('.no-run-scope') !== null && document.querySelector('form.new-run') === null",
            MINUTE,
        )
        .await;
    browser.screenshot("read-only").await;
    // The server refuses what the page does not show.
    let refused = browser
        .js_async(
            "const done = arguments[arguments.length - 1]; const t = localStorage.getItem('errand.token'); Promise.all([fetch('/api/v1/runs', {method: 'POST', headers: {Authorization: `Bearer ${t}`, 'Content-Type': 'application/json'}, body: JSON.stringify({prompt: 'x'})}), fetch(`/api/v1/runs/${arguments[0]}/messages`, {method: 'POST', headers: {Authorization: `Bearer ${t}`, 'Content-Type': 'application/json'}, body: JSON.stringify({message: 'x'})})]).then(rs => Promise.all(rs.map(r => r.json().then(b => [r.status, b.error && b.error.code])))).then(done)",
            vec![json!(first)],
        )
        .await;
    assert_eq!(
        refused,
        json!([[403, "insufficient_scope"], [403, "insufficient_scope"]]),
        "{refused}"
    );
    browser.close().await;
}

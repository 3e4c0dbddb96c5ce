//! The trace viewer at scale: `cargo bench -p errand-cli --bench viewer`.
//!
//! Generates a Claude Code stream-json trace of about 100 MB and 50,000+
//! events (shell calls with long, coloured output, edits, reads, messages),
//! then measures
//!  (a) `errand_trace::parse_trace` on it;
//!  (b) `errand view FILE` in headless Chromium: the time from the page's
//!      navigation start to the newest events painted
//!      (`window.__errandFirstPaintMs`), and until every older event is loaded;
//!  (c) a smoothness proxy: jumping to the middle (and other places) and
//!      drawing it, and scrolling through in steps, one frame each.
//!
//! Sizes: `ERRAND_BENCH_MB` (default 100). Needs /usr/bin/chromium and
//! /usr/bin/chromedriver for (b) and (c); without them only (a) runs.

#![allow(clippy::disallowed_methods)] // benchmarks start their own fixtures

#[path = "../tests/all/viewer_browser/mod.rs"]
mod viewer_browser;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const SESSION: &str = "5d0b2c7e-1c11-4c61-9a27-bench0000000";

fn line(w: &mut impl Write, v: &Value) -> usize {
    let s = v.to_string();
    let _ = writeln!(w, "{s}");
    s.len() + 1
}

fn assistant(w: &mut impl Write, n: usize, content: Value) -> usize {
    line(
        w,
        &json!({"type": "assistant", "message": {"id": format!("msg_{n}"), "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": content, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 1200 + n % 300, "output_tokens": 40 + n % 60, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 9000}},
            "parent_tool_use_id": null, "session_id": SESSION, "uuid": format!("a-{n}")}),
    )
}

fn tool_result(w: &mut impl Write, n: usize, id: &str, output: &str, is_error: bool) -> usize {
    line(
        w,
        &json!({"type": "user", "message": {"role": "user", "content": [{"tool_use_id": id, "type": "tool_result", "content": output, "is_error": is_error}]},
            "parent_tool_use_id": null, "session_id": SESSION, "uuid": format!("u-{n}")}),
    )
}

/// Writes the trace; returns (bytes, lines).
fn generate(path: &std::path::Path, target: usize) -> (usize, usize) {
    let f = std::fs::File::create(path).expect("create the trace file");
    let mut w = std::io::BufWriter::new(f);
    let mut bytes = line(
        &mut w,
        &json!({"type": "system", "subtype": "init", "cwd": "/workspace", "session_id": SESSION, "tools": ["Bash", "Read", "Edit", "Write", "TodoWrite"], "model": "claude-sonnet-4-5"}),
    );
    let mut lines = 1;
    let mut n = 0usize;
    let filler = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ";
    while bytes < target {
        n += 1;
        let id = format!("toolu_{n:06}");
        match n % 10 {
            3 => {
                let old = format!("fn step_{n}() -> u32 {{\n    {n}\n}}\n");
                let new = format!(
                    "fn step_{n}() -> u32 {{\n    // checked\n    {}\n}}\n",
                    n + 1
                );
                bytes += assistant(
                    &mut w,
                    n,
                    json!([{"type": "text", "text": format!("Fixing `step_{n}` in **src/lib.rs**.")},
                           {"type": "tool_use", "id": id, "name": "Edit", "input": {"file_path": "/workspace/src/lib.rs", "old_string": old, "new_string": new}}]),
                );
                bytes += tool_result(
                    &mut w,
                    n,
                    &id,
                    "The file /workspace/src/lib.rs has been updated.",
                    false,
                );
            }
            6 => {
                let mut out = String::new();
                for i in 1..=120 {
                    out.push_str(&format!(
                        "{:>6}\u{2192}    let value_{i} = compute({i}, \"{}\");\n",
                        i + n,
                        &filler[..30]
                    ));
                }
                bytes += assistant(
                    &mut w,
                    n,
                    json!([{"type": "tool_use", "id": id, "name": "Read", "input": {"file_path": format!("/workspace/src/module_{}.rs", n % 50)}}]),
                );
                bytes += tool_result(&mut w, n, &id, &out, false);
            }
            _ => {
                let mut out = String::new();
                for i in 0..48usize {
                    if i.is_multiple_of(7) {
                        out.push_str(&format!(
                            "\u{1b}[32mtest module_{n}::case_{i} ... ok\u{1b}[0m\n"
                        ));
                    } else {
                        out.push_str(&format!("   Compiling crate-{i} v0.{n}.{i} ({filler})\n"));
                    }
                }
                let failed = n.is_multiple_of(97);
                bytes += assistant(
                    &mut w,
                    n,
                    json!([{"type": "text", "text": format!("Running the tests for step {n}:\n\n- build\n- `cargo test`\n\n```rust\nlet x = {n};\n```")},
                           {"type": "tool_use", "id": id, "name": "Bash", "input": {"command": format!("cargo test --package bench_{n} -- --nocapture"), "description": "run tests"}}]),
                );
                bytes += tool_result(&mut w, n, &id, &out, failed);
            }
        }
        lines += 2;
    }
    bytes += line(
        &mut w,
        &json!({"type": "assistant", "message": {"id": "msg_last", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "NEWEST-MESSAGE: all steps done."}], "usage": {"input_tokens": 10, "output_tokens": 5}},
            "parent_tool_use_id": null, "session_id": SESSION, "uuid": "a-last"}),
    );
    bytes += line(
        &mut w,
        &json!({"type": "result", "subtype": "success", "is_error": false, "duration_ms": 3_600_000, "num_turns": n, "result": "NEWEST-MESSAGE: all steps done.",
            "session_id": SESSION, "total_cost_usd": 12.5, "usage": {"input_tokens": 1_000_000, "output_tokens": 50_000}}),
    );
    let _ = w.flush();
    (bytes, lines + 2)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn stats(xs: &mut [f64]) -> (f64, f64, f64) {
    xs.sort_by(|a, b| a.total_cmp(b));
    let avg = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let p95 = xs[((xs.len() as f64 * 0.95) as usize).min(xs.len().saturating_sub(1))];
    (avg, p95, xs.last().copied().unwrap_or(0.0))
}

fn main() {
    let mb: usize = std::env::var("ERRAND_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("big-session.jsonl");
    let t = Instant::now();
    let (bytes, lines) = generate(&file, mb << 20);
    println!(
        "trace: {:.1} MB, {lines} lines, written in {:.0} ms",
        bytes as f64 / (1 << 20) as f64,
        ms(t.elapsed())
    );

    // (a) parsing.
    let text = std::fs::read_to_string(&file).expect("read the trace");
    let t = Instant::now();
    let parsed = errand_trace::parse_trace(&text);
    let parse = t.elapsed();
    let events = parsed.events.len();
    println!(
        "(a) parse_trace: {:.0} ms for {events} events ({:.0} MB/s), {} problems",
        ms(parse),
        bytes as f64 / (1 << 20) as f64 / parse.as_secs_f64(),
        parsed.problems.len()
    );
    assert!(
        events >= 50_000 || mb < 100,
        "the trace has {events} events"
    );
    drop(parsed);
    drop(text);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let Some(browser) = viewer_browser::Browser::launch("bench").await else {
            return;
        };
        let t = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_errand"))
            .args(["view", "--no-open", "--json"])
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start errand view");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("the address");
        let ready = t.elapsed();
        let v: Value = serde_json::from_str(&first).expect("errand view's JSON");
        let url = v["url"].as_str().expect("url").to_string();
        println!(
            "(b) errand view: file read, parsed and served after {:.0} ms",
            ms(ready)
        );

        let t = Instant::now();
        browser.goto(&url).await;
        let paint = browser
            .wait_for(
                "the first paint",
                "return window.__errandFirstPaintMs && document.querySelector('.entry') && document.body.innerText.includes('NEWEST-MESSAGE') ? window.__errandFirstPaintMs : null",
                Duration::from_secs(120),
            )
            .await;
        println!(
            "(b) first useful paint (newest events visible): {:.0} ms after navigation start",
            paint.as_f64().unwrap_or(f64::NAN)
        );
        let all = browser
            .wait_for(
                "every event loaded",
                "const s = window.__errand && window.__errand.stats(); return s && s.complete ? s : null",
                Duration::from_secs(600),
            )
            .await;
        println!(
            "(b) all {} events loaded in the background after {:.0} ms ({} entries; {} rendered in the DOM)",
            all["events"], ms(t.elapsed()), all["entries"], all["rendered"]
        );
        browser.screenshot("first-paint").await;

        // (c) jumps.
        let mut jumps = Vec::new();
        for f in [0.5, 0.25, 0.75, 0.1, 0.9, 0.5, 0.33, 0.66] {
            let r = browser
                .js_async(
                    "const done = arguments[arguments.length - 1]; window.__errand.jump(arguments[0]).then(done);",
                    vec![json!(f)],
                )
                .await;
            jumps.push(r["ms"].as_f64().unwrap_or(f64::NAN));
            if f == 0.5 && jumps.len() == 1 {
                println!(
                    "(c) jump to the middle (entry {}): {:.1} ms to draw ({} entries in the DOM)",
                    r["index"], jumps[0], r["rendered"]
                );
                browser.screenshot("middle").await;
            }
        }
        let (avg, _, max) = stats(&mut jumps);
        println!("(c) jumps to 8 places: average {avg:.1} ms, worst {max:.1} ms");
        // Scrolling: 120 steps of 1,500 px, one step per frame; time per frame.
        let r = browser
            .js_async(
                r#"const done = arguments[arguments.length - 1];
                   const s = document.querySelector('.trace-scroller');
                   const times = []; let i = 0; let last = performance.now();
                   const step = () => {
                     const now = performance.now(); if (i > 0) times.push(now - last); last = now;
                     if (i++ >= 120) { done(times); return; }
                     s.scrollTop += 1500; requestAnimationFrame(step);
                   };
                   requestAnimationFrame(step);"#,
                vec![],
            )
            .await;
        let mut frames: Vec<f64> = r
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let (avg, p95, max) = stats(&mut frames);
        println!(
            "(c) scrolling 120 × 1,500 px: frame time average {avg:.1} ms, p95 {p95:.1} ms, worst {max:.1} ms"
        );
        let search = browser
            .js_async(
                r#"const done = arguments[arguments.length - 1];
                   const t = performance.now();
                   const s = document.querySelector('.search'); s.value = 'case_35'; s.dispatchEvent(new Event('input'));
                   const poll = () => { const c = document.querySelector('.match-count').textContent; if (/\d+ \/ \d+/.test(c)) done({ms: performance.now() - t, count: c}); else setTimeout(poll, 5); };
                   poll();"#,
                vec![],
            )
            .await;
        println!(
            "(c) search over the whole trace ('case_35'): {} matches, first shown after {:.0} ms (including a 150 ms typing debounce)",
            search["count"], search["ms"].as_f64().unwrap_or(f64::NAN)
        );
        browser.screenshot("").await;
        browser.close().await;
        let _ = child.kill();
        let _ = child.wait();
    });
}

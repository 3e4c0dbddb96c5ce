//! How fast `parse_trace` reads a big Claude Code stream-json trace,
//! against plain `serde_json` parsing of the same lines.
//!
//! `cargo bench -p errand-trace --bench parse`
//!
//! The trace is generated in memory with the shapes of real Claude Code
//! lines (`tests/fixtures/claude_event_examples.jsonl`): per turn an
//! assistant text, a `Bash` call and its result (long output, with
//! `tool_use_result`), an `Edit` call and its result; a `result` line with
//! usage every ten turns. Each figure is the median of three runs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use errand_trace::parse_trace;
use serde_json::{json, Value};

const SESSION: &str = "25b2fe16-c4cc-4a1a-920c-501e5155ee44";
const RUNS: usize = 3;

/// A small deterministic pseudo-random generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const OUTPUT_LINES: [&str; 6] = [
    "   Compiling errand-trace v0.1.0 (/workspace/crates/trace)",
    "warning: unused variable: `x` --> src/lib.rs:12:9 \"help\": prefix it with `_`",
    "test claude::tests::exit_code_is_read_from_the_start_only ... ok",
    "\tat com.example.Main.run(Main.java:42) — 🚀 done in 0.42s",
    "drwxr-xr-x  5 agent agent  4096 Nov 26 09:55 src",
    "error[E0308]: mismatched types: expected `u32`, found `usize`",
];

const CODE: &str = "fn parse(line: &str) -> Option<Event> {\n    let value: Value = serde_json::from_str(line).ok()?;\n    match value.get(\"type\")?.as_str()? {\n        \"user\" => user(&value),\n        _ => None,\n    }\n}\n";

fn output(rng: &mut Rng, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 100);
    while out.len() < bytes {
        out.push_str(OUTPUT_LINES[rng.below(OUTPUT_LINES.len() as u64) as usize]);
        out.push('\n');
    }
    out
}

fn assistant(n: u64, content: Value) -> String {
    json!({
        "type": "assistant",
        "message": {
            "id": format!("msg_{n}"), "type": "message", "role": "assistant",
            "model": "claude-opus-4-8", "content": content,
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 1200 + n % 500, "output_tokens": 80 + n % 60,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 24000},
            "context_management": null
        },
        "parent_tool_use_id": null, "session_id": SESSION,
        "uuid": format!("8a554b67-6e6b-48d7-af44-{n:012}")
    })
    .to_string()
}

fn tool_result(n: u64, id: &str, content: &str, extra: Value) -> String {
    json!({
        "type": "user",
        "message": {"role": "user", "content": [
            {"tool_use_id": id, "type": "tool_result", "content": content, "is_error": false}
        ]},
        "parent_tool_use_id": null, "session_id": SESSION,
        "uuid": format!("cf318839-81a3-4a41-8a7f-{n:012}"),
        "timestamp": "2026-11-23T22:25:17.836Z",
        "tool_use_result": extra
    })
    .to_string()
}

/// A trace of at least `min_bytes`, or of `turns` turns, whichever comes
/// first; Bash outputs of about `output_bytes`.
fn generate(min_bytes: usize, turns: Option<u64>, output_bytes: usize) -> String {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut text = String::with_capacity(min_bytes.saturating_add(1_000_000).min(1 << 28));
    text.push_str(
        &json!({"type": "system", "subtype": "init", "cwd": "/workspace", "session_id": SESSION,
                "tools": ["Task", "Bash", "Edit", "Read", "Write"], "model": "claude-opus-4-8",
                "permissionMode": "acceptEdits"})
        .to_string(),
    );
    text.push('\n');
    let mut turn = 0u64;
    while text.len() < min_bytes && turns.is_none_or(|limit| turn < limit) {
        turn += 1;
        let n = turn * 10;
        let mut push = |line: String| {
            text.push_str(&line);
            text.push('\n');
        };
        push(assistant(
            n,
            json!([{"type": "text", "text": format!(
                "Turn {turn}: I'll run the tests, then fix the \"mismatched types\" error in src/lib.rs. {}",
                "Checking the parser's edge cases first. ".repeat(1 + rng.below(6) as usize)
            )}]),
        ));
        let bash_id = format!("toolu_{n:08}");
        push(assistant(
            n + 1,
            json!([{"type": "tool_use", "id": bash_id, "name": "Bash",
                    "input": {"command": format!("cargo test -p errand-trace -- --test-threads {}", turn % 8 + 1),
                              "description": "Run the trace tests"}}]),
        ));
        let size = output_bytes / 4 + rng.below(output_bytes as u64 * 3 / 2) as usize;
        let out = output(&mut rng, size);
        push(tool_result(
            n + 2,
            &bash_id,
            &out,
            json!({"stdout": out, "stderr": "", "interrupted": false, "isImage": false}),
        ));
        let edit_id = format!("toolu_{:08}", n + 3);
        let old = &CODE[..CODE.len() / 2 + rng.below(CODE.len() as u64 / 2) as usize];
        let old = &old[..old.rfind('\n').map_or(old.len(), |i| i + 1)];
        let new = old
            .replace("ok()?", "ok()?.clone()")
            .replace("None", "Some(Event::Raw)");
        push(assistant(
            n + 3,
            json!([{"type": "tool_use", "id": edit_id, "name": "Edit",
                    "input": {"file_path": format!("/workspace/src/module_{}.rs", turn % 40),
                              "old_string": old, "new_string": new, "replace_all": false}}]),
        ));
        push(tool_result(
            n + 4,
            &edit_id,
            "The file /workspace/src/lib.rs has been updated successfully.",
            json!({"filePath": "/workspace/src/lib.rs", "oldString": old, "newString": new}),
        ));
        if turn.is_multiple_of(10) {
            push(
                json!({"type": "result", "subtype": "success", "is_error": false, "duration_ms": 52200,
                       "num_turns": 40, "result": "Fixed the mismatched types; all tests pass.",
                       "session_id": SESSION, "total_cost_usd": 0.4213,
                       "usage": {"input_tokens": 48000, "cache_creation_input_tokens": 1200,
                                 "cache_read_input_tokens": 960000, "output_tokens": 3200},
                       "permission_denials": [], "terminal_reason": "completed"})
                .to_string(),
            );
        }
    }
    text
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Median time of `f` over `RUNS` runs, and its last result.
fn time<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = black_box(f());
        times.push(start.elapsed());
        last = Some(out);
    }
    (median(times), last.expect("RUNS > 0"))
}

fn baseline(text: &str) -> usize {
    let mut values = 0;
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            black_box(&v);
            values += 1;
        }
    }
    values
}

fn report(name: &str, text: &str) {
    let mb = text.len() as f64 / 1e6;
    let lines = text.lines().count();
    let (serde_time, values) = time(|| baseline(text));
    let (errand_time, trace) = time(|| parse_trace(text));
    assert_eq!(values, lines, "every generated line is JSON");
    assert!(trace.problems.is_empty(), "{:?}", trace.problems);
    let serde_rate = mb / serde_time.as_secs_f64();
    let errand_rate = mb / errand_time.as_secs_f64();
    println!(
        "{name}: {mb:.1} MB, {lines} lines, {} events",
        trace.events.len()
    );
    println!(
        "  serde_json::Value  {:>8.1} ms  {serde_rate:>7.1} MB/s",
        serde_time.as_secs_f64() * 1e3
    );
    println!(
        "  parse_trace        {:>8.1} ms  {errand_rate:>7.1} MB/s  ({:.0} events/s)",
        errand_time.as_secs_f64() * 1e3,
        trace.events.len() as f64 / errand_time.as_secs_f64()
    );
    println!(
        "  ratio errand / serde_json: {:.2} (throughput), parse_trace takes {:.2}x the time",
        errand_rate / serde_rate,
        errand_time.as_secs_f64() / serde_time.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too,
    // with a small trace.
    let quick = !std::env::args().any(|a| a == "--bench");
    let big = generate(if quick { 1_000_000 } else { 100_000_000 }, None, 6_000);
    report(
        if quick {
            "quick check (1 MB)"
        } else {
            "~100 MB Claude stream-json trace"
        },
        &big,
    );
    drop(big);

    // About 50,000 events, with shorter outputs: the init's SessionStart,
    // 6 per turn (a text, two calls, a FileEdit, two results) and 2 per
    // result line (every 10 turns): 1 + 6 × 8,065 + 2 × 806 = 50,003.
    let turns = if quick { 100 } else { 8_065 };
    let small = generate(usize::MAX, Some(turns), 800);
    report(
        if quick {
            "quick check (100 turns)"
        } else {
            "50,000-event Claude stream-json trace"
        },
        &small,
    );
}

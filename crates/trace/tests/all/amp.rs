//! `AmpStreamParser` (Amp's `--stream-json`, Claude Code-compatible).
//!
//! There is no real Amp capture (Amp cannot run against a local model,
//! `harnesses.md` §3.3), so these tests feed the real Claude Code captures
//! (`tests/fixtures/claude_event_examples.jsonl`): Amp's parser must read
//! them exactly as `ClaudeStreamParser` does. Amp's documented differences
//! (ampcode.com/news/streaming-json: a `result` without usage or cost,
//! per-message usage on `assistant` lines, an `error` string on failed
//! results; `create_file` / `edit_file` tools) are made from those real
//! lines with only the named fields changed.

use errand_core::{EventKind, Usage};
use errand_trace::{AmpStreamParser, ClaudeStreamParser};
use serde_json::{json, Value};

const EVENT_EXAMPLES: &str = include_str!("../fixtures/claude_event_examples.jsonl");

/// Line `n` (from 1) of the Claude captures.
fn example(n: usize) -> &'static str {
    EVENT_EXAMPLES
        .lines()
        .nth(n - 1)
        .unwrap_or_else(|| panic!("fixture has no line {n}"))
}

/// Line `n`, parsed, for tests that change a few fields.
fn example_value(n: usize) -> Value {
    serde_json::from_str(example(n)).unwrap_or_else(|e| panic!("line {n}: {e}"))
}

fn parse_all(lines: &[&str]) -> Vec<EventKind> {
    let mut p = AmpStreamParser::new();
    lines.iter().flat_map(|l| p.push_line(l)).collect()
}

fn raw(line: &str) -> EventKind {
    EventKind::Raw {
        line: line.to_owned(),
    }
}

/// An `assistant` line (line 4) with Amp's message shape: the given usage and id.
fn assistant(id: Option<&str>, input: u64, output: u64, cache_read: u64) -> String {
    let mut v = example_value(4);
    v["message"]["usage"] = json!({"input_tokens": input, "cache_creation_input_tokens": 1,
        "cache_read_input_tokens": cache_read, "output_tokens": output,
        "max_tokens": 224000, "service_tier": "standard"});
    match id {
        Some(id) => v["message"]["id"] = json!(id),
        None => {
            if let Some(m) = v["message"].as_object_mut() {
                m.remove("id");
            }
        }
    }
    v.to_string()
}

/// The success `result` (line 5) as Amp writes it: no usage, no cost.
fn amp_result() -> Value {
    let mut v = example_value(5);
    if let Some(o) = v.as_object_mut() {
        for key in ["usage", "total_cost_usd", "modelUsage"] {
            o.remove(key);
        }
    }
    v
}

#[test]
fn claude_lines_parse_exactly_as_claude_parses_them() {
    let mut amp = AmpStreamParser::new();
    let mut claude = ClaudeStreamParser::new();
    for (i, line) in EVENT_EXAMPLES.lines().enumerate() {
        assert_eq!(
            amp.push_line(line),
            claude.push_line(line),
            "line {}",
            i + 1
        );
    }
    assert_eq!(amp.outcome(), claude.outcome());
    assert_eq!(amp.session_id(), claude.session_id());
}

#[test]
fn a_result_without_usage_gets_the_summed_assistant_usage() {
    let result = amp_result().to_string();
    let events = parse_all(&[
        &assistant(None, 100, 10, 5),
        &assistant(None, 200, 20, 7),
        &result,
    ]);
    let usage = Usage {
        input_tokens: 300,
        output_tokens: 30,
        cache_read_tokens: 12,
        cache_write_tokens: 2,
        cost_usd: None,
    };
    let tail = &events[events.len() - 2..];
    assert_eq!(
        tail,
        [
            EventKind::Usage(usage.clone()),
            EventKind::Result {
                is_error: false,
                text: Some("Done: wrote hello.txt".into()),
                turns: Some(2),
                duration_ms: Some(522),
                usage: usage.clone(),
            }
        ]
    );
    // A message split over several lines repeats its usage: counted once per id.
    let mut p = AmpStreamParser::new();
    for line in [
        assistant(Some("m1"), 100, 10, 0),
        assistant(Some("m1"), 100, 10, 0),
        assistant(Some("m2"), 50, 5, 0),
        result.clone(),
    ] {
        p.push_line(&line);
    }
    let outcome = p.outcome().cloned().unwrap_or_default();
    assert_eq!(
        (outcome.usage.input_tokens, outcome.usage.output_tokens),
        (150, 15)
    );
    assert_eq!(outcome.total_cost_usd, None);
    // No assistant usage at all: the result is left as it is.
    assert_eq!(parse_all(&[&result]), {
        let mut c = ClaudeStreamParser::new();
        c.push_line(&result)
    });
}

#[test]
fn a_failed_result_reads_its_error_string() {
    let mut failed = amp_result();
    if let Some(o) = failed.as_object_mut() {
        o.remove("result");
    }
    failed["subtype"] = json!("error_during_execution");
    failed["is_error"] = json!(true);
    failed["error"] = json!("Thread limit reached");
    let mut p = AmpStreamParser::new();
    let events = p.push_line(&failed.to_string());
    assert!(
        events.iter().any(|e| matches!(
            e,
            EventKind::Result { is_error: true, text: Some(t), .. } if t == "Thread limit reached"
        )),
        "{events:?}"
    );
    assert!(matches!(
        events.last(),
        Some(EventKind::Error { message }) if message == "Thread limit reached"
    ));
    assert_eq!(
        p.outcome().and_then(|o| o.error_message()).as_deref(),
        Some("Thread limit reached")
    );
}

#[test]
fn amp_file_tools_are_file_edits() {
    let call = |name: &str, input: Value| {
        let mut v = example_value(2);
        v["message"]["content"][0]["name"] = json!(name);
        v["message"]["content"][0]["input"] = input;
        v.to_string()
    };
    // The session's cwd (`./ws-cc` in the capture) made absolute.
    let mut init = example_value(1);
    init["cwd"] = json!("/w");
    let init = init.to_string();
    let created = call(
        "create_file",
        json!({"path": "/w/a.txt", "content": "hi\n"}),
    );
    let edited = call(
        "edit_file",
        json!({"path": "/w/a.txt", "old_str": "hi", "new_str": "ho"}),
    );
    let events = parse_all(&[&init, &created, &edited]);
    let edits: Vec<&EventKind> = events
        .iter()
        .filter(|e| matches!(e, EventKind::FileEdit { .. }))
        .collect();
    assert_eq!(
        edits,
        [
            &EventKind::FileEdit {
                path: "/w/a.txt".into(),
                diff: Some("--- a/a.txt\n+++ b/a.txt\n@@ -0,0 +1 @@\n+hi\n".into()),
                added: 1,
                removed: 0,
            },
            &EventKind::FileEdit {
                path: "/w/a.txt".into(),
                diff: Some("--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-hi\n+ho\n".into()),
                added: 1,
                removed: 1,
            }
        ]
    );
    // Each edit right after its call.
    let names: Vec<&str> = events.iter().map(EventKind::name).collect();
    assert_eq!(
        names,
        [
            "session_start",
            "tool_call",
            "file_edit",
            "tool_call",
            "file_edit"
        ]
    );
}

#[test]
fn an_adapted_line_that_is_not_understood_is_raw_as_fed() {
    // A result Claude's parser cannot read (no is_error, no subtype) that
    // this parser adapted (usage added): Raw, with the original text.
    let mut odd = amp_result();
    if let Some(o) = odd.as_object_mut() {
        o.remove("is_error");
        o.remove("subtype");
    }
    let odd = format!("  {odd}  ");
    let events = parse_all(&[&assistant(None, 1, 1, 0), &odd]);
    assert_eq!(events.last(), Some(&raw(&odd)));
}

#[test]
fn every_truncated_line_is_raw() {
    let mut p = AmpStreamParser::new();
    for line in EVENT_EXAMPLES.lines() {
        for (cut, _) in line.char_indices().skip(1) {
            let half = &line[..cut];
            assert_eq!(p.push_line(half), vec![raw(half)], "{half}");
        }
    }
    assert_eq!(p.outcome(), None);
}

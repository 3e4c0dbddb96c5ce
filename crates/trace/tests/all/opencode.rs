//! `OpenCodeStreamParser` on real captured `opencode run --format json` output.
//!
//! Fixtures (`tests/fixtures/`):
//! - `opencode_event_examples.jsonl`: a copy of the real capture in
//!   `shared/docs/harness-probe/examples/` (opencode 1.18.33 against the
//!   probe's mock: one bash call, then text);
//! - `opencode_scripted_tools.jsonl`, `opencode_scripted_unavailable_tools.jsonl`,
//!   `opencode_scripted_api_error.jsonl`: opencode 1.18.33 run against
//!   errand's scripted model (`errand-model`) with scenarios that write,
//!   read, `edit`, run a failing `ls` and `exit 3`, read a missing file (a
//!   tool error), call tools OpenCode does not have, and answer a 400.
//!
//! Lines no capture holds (cache and reasoning tokens, a cost, running
//! tools) are made here from a real line with only the named fields changed.

use errand_core::{EventKind, Usage};
use errand_trace::{OpenCodeOutcome, OpenCodeStreamParser};
use serde::Serialize;
use serde_json::{json, Value};

const EVENT_EXAMPLES: &str = include_str!("../fixtures/opencode_event_examples.jsonl");
const SCRIPTED_TOOLS: &str = include_str!("../fixtures/opencode_scripted_tools.jsonl");
const SCRIPTED_UNAVAILABLE: &str =
    include_str!("../fixtures/opencode_scripted_unavailable_tools.jsonl");
const SCRIPTED_API_ERROR: &str = include_str!("../fixtures/opencode_scripted_api_error.jsonl");

const SESSION: &str = "ses_df57d1b65ffeMMxLqG33bo4izd";

/// Line `n` (from 1) of `text`.
fn line_of(text: &'static str, n: usize) -> &'static str {
    text.lines()
        .nth(n - 1)
        .unwrap_or_else(|| panic!("fixture has no line {n}"))
}

/// Line `n` of the examples.
fn example(n: usize) -> &'static str {
    line_of(EVENT_EXAMPLES, n)
}

/// Line `n` of the examples, parsed, for tests that change a few fields.
fn example_value(n: usize) -> Value {
    serde_json::from_str(example(n)).unwrap_or_else(|e| panic!("line {n}: {e}"))
}

/// Line `n` of the scripted-tools capture.
fn tools(n: usize) -> &'static str {
    line_of(SCRIPTED_TOOLS, n)
}

fn feed(parser: &mut OpenCodeStreamParser, lines: &[&str]) -> Vec<EventKind> {
    lines.iter().flat_map(|l| parser.push_line(l)).collect()
}

fn parse_all(lines: &[&str]) -> Vec<EventKind> {
    feed(&mut OpenCodeStreamParser::new(), lines)
}

/// Events after the `SessionStart` every first line gives.
fn parse_after_start(lines: &[&str]) -> Vec<EventKind> {
    let mut events = parse_all(lines);
    assert!(
        matches!(events.first(), Some(EventKind::SessionStart { .. })),
        "{events:?}"
    );
    events.remove(0);
    events
}

fn raw(line: &str) -> EventKind {
    EventKind::Raw {
        line: line.to_owned(),
    }
}

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Default::default()
    }
}

#[derive(Serialize)]
struct LineEvents {
    line: usize,
    events: Vec<EventKind>,
}

#[derive(Serialize)]
struct Parse {
    lines: Vec<LineEvents>,
    /// What `finish(exit_success)` gave at the process's exit.
    finish: Vec<EventKind>,
    session_id: Option<String>,
    outcome: OpenCodeOutcome,
}

/// The whole output of a parser fed `text` and finished with `exit_success`.
fn parse_fixture(text: &str, exit_success: bool) -> Parse {
    let mut parser = OpenCodeStreamParser::new();
    let lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| LineEvents {
            line: i + 1,
            events: parser.push_line(line),
        })
        .collect();
    Parse {
        lines,
        finish: parser.finish(exit_success),
        session_id: parser.session_id().map(str::to_owned),
        outcome: parser.outcome().clone(),
    }
}

// ---- whole fixtures, against reviewed snapshots ----

#[test]
fn json_examples_snapshot() {
    insta::assert_yaml_snapshot!(parse_fixture(EVENT_EXAMPLES, true));
}

#[test]
fn scripted_tools_snapshot() {
    insta::assert_yaml_snapshot!(parse_fixture(SCRIPTED_TOOLS, true));
}

#[test]
fn scripted_unavailable_tools_snapshot() {
    insta::assert_yaml_snapshot!(parse_fixture(SCRIPTED_UNAVAILABLE, true));
}

#[test]
fn scripted_api_error_snapshot() {
    // opencode exits 1 after an error.
    insta::assert_yaml_snapshot!(parse_fixture(SCRIPTED_API_ERROR, false));
}

// ---- mapping ----

#[test]
fn the_first_line_starts_the_session_and_step_start_gives_nothing() {
    let mut p = OpenCodeStreamParser::new();
    assert_eq!(
        p.push_line(example(1)),
        vec![EventKind::SessionStart {
            session_id: Some(SESSION.into()),
            model: None,
            cwd: None,
            tools: vec![],
        }]
    );
    assert_eq!(p.push_line(example(1)), vec![]);
    assert_eq!(p.session_id(), Some(SESSION));
    // A run that fails at once starts with its error line (real).
    let events = parse_all(&[SCRIPTED_API_ERROR.trim()]);
    assert!(
        matches!(
            &events[..],
            [EventKind::SessionStart { session_id: Some(id), .. }, EventKind::Error { .. }]
                if id == "ses_de9318444ffe8QQN3fjd5Ff8uE"
        ),
        "{events:?}"
    );
}

#[test]
fn bash_is_a_bash_call_and_its_result_with_the_exit_code() {
    let events = parse_after_start(&[example(2)]);
    assert_eq!(
        events,
        vec![
            EventKind::ToolCall {
                id: "call_17".into(),
                name: "Bash".into(),
                input: json!({"command": "echo hi > hello.txt && ls"}),
                parent_id: None,
            },
            EventKind::ToolResult {
                id: "call_17".into(),
                output: "README.md\nhello.txt\n".into(),
                is_error: false,
                exit_code: Some(0),
            }
        ]
    );
    // Real: `ls /nonexistent` is `completed` with exit 2: an error result.
    let events = parse_after_start(&[tools(11)]);
    assert_eq!(
        events[1],
        EventKind::ToolResult {
            id: "call_3".into(),
            output: "ls: cannot access '/nonexistent': No such file or directory\n".into(),
            is_error: true,
            exit_code: Some(2),
        }
    );
}

#[test]
fn a_tool_error_is_an_error_result() {
    // Real: read of a missing file.
    let events = parse_after_start(&[tools(14)]);
    assert_eq!(
        events,
        vec![
            EventKind::ToolCall {
                id: "call_4".into(),
                name: "read".into(),
                input: json!({"filePath": "/nonexistent/x"}),
                parent_id: None,
            },
            EventKind::ToolResult {
                id: "call_4".into(),
                output: "File not found: /nonexistent/x".into(),
                is_error: true,
                exit_code: None,
            }
        ]
    );
}

#[test]
fn writes_and_edits_are_file_edits() {
    // Real: a new file, diffed from empty.
    let events = parse_after_start(&[tools(2)]);
    assert_eq!(
        events[1],
        EventKind::FileEdit {
            path: "/tmp/probe/w-oc-tools2/notes.txt".into(),
            diff: Some(
                "--- a/tmp/probe/w-oc-tools2/notes.txt\n+++ b/tmp/probe/w-oc-tools2/notes.txt\n@@ -0,0 +1,2 @@\n+one\n+two\n"
                    .into()
            ),
            added: 2,
            removed: 0,
        }
    );
    assert!(matches!(
        events[2],
        EventKind::ToolResult {
            is_error: false,
            ..
        }
    ));
    // Real: an edit with a relative path; OpenCode's own patch and counts,
    // the absolute path from its metadata, jsdiff's preamble dropped.
    let events = parse_after_start(&[tools(8)]);
    assert_eq!(
        events[1],
        EventKind::FileEdit {
            path: "/tmp/probe/w-oc-tools2/notes.txt".into(),
            diff: Some(
                "--- /tmp/probe/w-oc-tools2/notes.txt\n+++ /tmp/probe/w-oc-tools2/notes.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+three\n"
                    .into()
            ),
            added: 1,
            removed: 1,
        }
    );
    // An overwrite has no known old content: an edit without diff.
    let mut overwrite: Value = serde_json::from_str(tools(2)).unwrap_or_default();
    overwrite["part"]["state"]["metadata"]["exists"] = json!(true);
    let events = parse_after_start(&[&overwrite.to_string()]);
    assert_eq!(
        events[1],
        EventKind::FileEdit {
            path: "/tmp/probe/w-oc-tools2/notes.txt".into(),
            diff: None,
            added: 0,
            removed: 0,
        }
    );
    // A failed edit changed nothing.
    let mut failed: Value = serde_json::from_str(tools(8)).unwrap_or_default();
    failed["part"]["state"] = json!({"status": "error", "input": {"filePath": "notes.txt"}, "error": "oldString not found"});
    let events = parse_after_start(&[&failed.to_string()]);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        matches!(&events[1], EventKind::ToolResult { is_error: true, output, .. } if output == "oldString not found")
    );
}

#[test]
fn running_tools_give_their_call_once() {
    let mut running = example_value(2);
    running["part"]["state"] =
        json!({"status": "running", "input": {"command": "echo hi > hello.txt && ls"}});
    let running = running.to_string();
    let mut p = OpenCodeStreamParser::new();
    let events = feed(&mut p, &[&running, &running]);
    assert_eq!(events.len(), 2, "{events:?}"); // SessionStart + one ToolCall
    assert!(matches!(&events[1], EventKind::ToolCall { name, .. } if name == "Bash"));
    let events = p.push_line(example(2));
    assert!(
        matches!(
            &events[..],
            [EventKind::ToolResult {
                exit_code: Some(0),
                ..
            }]
        ),
        "{events:?}"
    );
}

#[test]
fn text_and_reasoning() {
    let events = parse_after_start(&[example(4)]);
    assert_eq!(
        events,
        vec![EventKind::AssistantMessage {
            text: "Done: ran the command.".into()
        }]
    );
    let mut reasoning = example_value(4);
    reasoning["type"] = json!("reasoning");
    reasoning["part"]["type"] = json!("reasoning");
    reasoning["part"]["text"] = json!("I should run it.");
    let events = parse_after_start(&[&reasoning.to_string()]);
    assert_eq!(
        events,
        vec![EventKind::Thinking {
            text: "I should run it.".into()
        }]
    );
    let mut blank = example_value(4);
    blank["part"]["text"] = json!("  ");
    assert_eq!(parse_after_start(&[&blank.to_string()]), vec![]);
}

#[test]
fn step_finish_gives_the_steps_usage() {
    assert_eq!(
        parse_after_start(&[example(3)]),
        vec![EventKind::Usage(usage(100, 20))]
    );
    let mut rich = example_value(3);
    rich["part"]["tokens"] = json!({"total": 200, "input": 50, "output": 20, "reasoning": 30,
                                    "cache": {"write": 40, "read": 60}});
    rich["part"]["cost"] = json!(0.25);
    let rich = rich.to_string();
    let mut p = OpenCodeStreamParser::new();
    let events = feed(&mut p, &[&rich, &rich, example(3)]);
    let step = Usage {
        input_tokens: 50,
        output_tokens: 50,
        cache_read_tokens: 60,
        cache_write_tokens: 40,
        cost_usd: Some(0.25),
    };
    assert_eq!(events[1], EventKind::Usage(step));
    let o = p.outcome();
    assert_eq!(o.steps, 3);
    assert_eq!(
        o.usage,
        Usage {
            input_tokens: 200,
            output_tokens: 120,
            cache_read_tokens: 120,
            cache_write_tokens: 80,
            cost_usd: Some(0.5),
        }
    );
}

#[test]
fn finish_after_a_clean_run() {
    let mut p = OpenCodeStreamParser::new();
    feed(&mut p, &EVENT_EXAMPLES.lines().collect::<Vec<_>>());
    // Before `finish` the outcome is provisional.
    assert!(!p.outcome().finished);
    assert!(!p.outcome().is_error);
    assert_eq!(
        p.finish(true),
        vec![EventKind::Result {
            is_error: false,
            text: Some("Done: ran the command.".into()),
            turns: Some(1),
            duration_ms: None,
            usage: usage(100, 20),
        }]
    );
    assert!(p.outcome().finished);
    assert_eq!(p.outcome().exit_success, Some(true));
    assert_eq!(p.outcome().error_message(), None);
    // Only once.
    assert_eq!(p.finish(false), vec![]);
    assert!(!p.outcome().is_error);
}

#[test]
fn finish_with_a_failed_exit_but_no_error_line() {
    let mut p = OpenCodeStreamParser::new();
    feed(&mut p, &EVENT_EXAMPLES.lines().collect::<Vec<_>>());
    let message = "opencode exited with a failure status and reported no error";
    assert_eq!(
        p.finish(false),
        vec![
            EventKind::Result {
                is_error: true,
                text: Some("Done: ran the command.".into()),
                turns: Some(1),
                duration_ms: None,
                usage: usage(100, 20),
            },
            EventKind::Error {
                message: message.into()
            }
        ]
    );
    assert_eq!(p.outcome().error_message().as_deref(), Some(message));
}

#[test]
fn finish_after_an_error_line() {
    // Real: the scripted 400, then exit 1.
    let mut p = OpenCodeStreamParser::new();
    let events = feed(&mut p, &[SCRIPTED_API_ERROR.trim()]);
    assert_eq!(
        events[1],
        EventKind::Error {
            message: "scripted refusal".into()
        }
    );
    // The error is known before the exit.
    assert!(p.outcome().is_error);
    assert_eq!(
        p.outcome().error_message().as_deref(),
        Some("scripted refusal (API status 400)")
    );
    assert_eq!(
        p.finish(false),
        vec![EventKind::Result {
            is_error: true,
            text: Some("scripted refusal".into()),
            turns: Some(0),
            duration_ms: None,
            usage: Usage::default(),
        }]
    );
    // An error line makes the run failed even when the exit was 0.
    let mut p = OpenCodeStreamParser::new();
    feed(&mut p, &[example(4), SCRIPTED_API_ERROR.trim()]);
    let events = p.finish(true);
    assert!(
        matches!(&events[..], [EventKind::Result { is_error: true, text: Some(t), .. }] if t == "scripted refusal"),
        "{events:?}"
    );
    assert_eq!(
        p.outcome().last_message.as_deref(),
        Some("Done: ran the command.")
    );
}

#[test]
fn other_error_shapes() {
    let line = |error: Value| {
        json!({"type": "error", "timestamp": 1795472992387u64, "sessionID": SESSION, "error": error}).to_string()
    };
    let unknown = line(json!({"name": "UnknownError", "data": {"message": "boom"}}));
    let named = line(json!({"name": "ProviderAuthError", "data": {"providerID": "errand"}}));
    let string = line(json!("plain"));
    let events = parse_after_start(&[&unknown, &named, &string]);
    assert_eq!(
        events,
        vec![
            EventKind::Error {
                message: "boom".into()
            },
            EventKind::Error {
                message: "ProviderAuthError".into()
            },
            EventKind::Error {
                message: "plain".into()
            },
        ]
    );
    let bad = line(json!(5));
    assert_eq!(parse_after_start(&[&bad]), vec![raw(&bad)]);
}

// ---- lines that are not (fully) understood ----

#[test]
fn malformed_json_is_raw() {
    for line in [
        "not json",
        "{",
        "{\"type\":\"step_finish\",",
        "}{",
        "{\"type\": \"text\"} trailing",
        "42",
        "[{\"type\":\"text\"}]",
        "null",
    ] {
        assert_eq!(parse_all(&[line]), vec![raw(line)], "{line}");
    }
}

#[test]
fn every_truncated_line_is_raw() {
    for fixture in [
        EVENT_EXAMPLES,
        SCRIPTED_TOOLS,
        SCRIPTED_UNAVAILABLE,
        SCRIPTED_API_ERROR,
    ] {
        let mut p = OpenCodeStreamParser::new();
        for line in fixture.lines() {
            for (cut, _) in line.char_indices().skip(1) {
                let half = &line[..cut];
                assert_eq!(p.push_line(half), vec![raw(half)], "{half}");
            }
        }
        assert_eq!(p.outcome(), &OpenCodeOutcome::default());
    }
}

#[test]
fn unknown_types_are_raw() {
    let mut unknown = example_value(4);
    unknown["type"] = json!("file_attached");
    let unknown = unknown.to_string();
    // No part where one is needed.
    let mut no_part = example_value(3);
    no_part["part"] = json!("x");
    let no_part = no_part.to_string();
    for line in [
        "{\"type\":\"brand_new\"}",
        "{\"type\":42}",
        "{}",
        "{\"type\":\"text\"}",
    ] {
        assert_eq!(parse_all(&[line]), vec![raw(line)], "{line}");
    }
    // A session line of an unknown type (or without its part) still starts
    // the session.
    for line in [&unknown, &no_part] {
        assert_eq!(parse_after_start(&[line]), vec![raw(line)], "{line}");
    }
}

#[test]
fn blank_lines_give_nothing_and_crlf_parses() {
    assert_eq!(parse_all(&["", "   ", "\t", "\r"]), vec![]);
    let line = format!("{}\r", example(4));
    assert_eq!(
        parse_after_start(&[&line]),
        vec![EventKind::AssistantMessage {
            text: "Done: ran the command.".into()
        }]
    );
}

/// Known types with fields of the wrong type or missing: `Raw`, never a panic.
#[test]
fn wrong_field_types_never_panic_nor_vanish() {
    let mut cases: Vec<String> = Vec::new();
    let mut change = |n: usize, pointer: &str, value: Value| {
        let mut v = example_value(n);
        if let Some(slot) = v.pointer_mut(pointer) {
            *slot = value;
        } else {
            panic!("line {n} has no {pointer}");
        }
        cases.push(v.to_string());
    };
    change(2, "/part/callID", json!(17));
    change(2, "/part/tool", json!(null));
    change(2, "/part/state", json!("done"));
    change(2, "/part/state/status", json!(1));
    change(2, "/part/state/input", json!("echo"));
    change(3, "/part/tokens", json!("many"));
    change(4, "/part/text", json!(["Done"]));
    for line in &cases {
        assert_eq!(parse_after_start(&[line]), vec![raw(line)], "{line}");
    }
    // Odd but harmless values are tolerated.
    let mut odd = example_value(2);
    odd["part"]["state"]["metadata"]["exit"] = json!("zero");
    odd["part"]["state"]["output"] = json!(null);
    let events = parse_after_start(&[&odd.to_string()]);
    assert!(
        matches!(
            &events[1],
            EventKind::ToolResult { exit_code: None, output, is_error: false, .. } if output.is_empty()
        ),
        "{events:?}"
    );
    let mut floats = example_value(3);
    floats["part"]["tokens"]["input"] = json!(12.0);
    floats["part"]["tokens"]["output"] = json!(-3);
    floats["part"]["cost"] = json!("free");
    let events = parse_after_start(&[&floats.to_string()]);
    assert_eq!(events, vec![EventKind::Usage(usage(12, 0))]);
}

//! `CodexStreamParser` on real captured `codex exec --json` output.
//!
//! The fixture (`tests/fixtures/codex_event_examples.jsonl`) is a copy of the
//! real capture in `shared/docs/harness-probe/examples/` (codex-cli 0.169.0;
//! lines of several runs, so ids repeat). Lines no capture holds are made
//! here from a real line with only the named fields changed; `REAL_*`
//! constants are lines captured from codex-cli 0.169.0 running against
//! errand's scripted model (`crates/model/tests/codex.rs`).

use errand_core::{EventKind, Usage};
use errand_trace::{CodexOutcome, CodexStreamParser};
use serde::Serialize;
use serde_json::{json, Value};

const EVENT_EXAMPLES: &str = include_str!("../fixtures/codex_event_examples.jsonl");

/// A scripted 400 as codex 0.169.0 reports it: the error body verbatim.
const REAL_API_ERROR: &str = r#"{"type":"error","message":"{\"error\":{\"code\":null,\"message\":\"scripted refusal\",\"param\":null,\"type\":\"invalid_request_error\"}}"}"#;
const REAL_API_TURN_FAILED: &str = r#"{"type":"turn.failed","error":{"message":"{\"error\":{\"code\":null,\"message\":\"scripted refusal\",\"param\":null,\"type\":\"invalid_request_error\"}}"}}"#;
/// A real turn's usage (one scripted turn of three requests).
const REAL_TURN_COMPLETED: &str = r#"{"type":"turn.completed","usage":{"input_tokens":29936,"cached_input_tokens":0,"cache_write_input_tokens":0,"output_tokens":139,"reasoning_output_tokens":0}}"#;

/// Line `n` (from 1) of the captured examples.
fn example(n: usize) -> &'static str {
    EVENT_EXAMPLES
        .lines()
        .nth(n - 1)
        .unwrap_or_else(|| panic!("fixture has no line {n}"))
}

/// Line `n` of the examples, parsed, for tests that change a few fields.
fn example_value(n: usize) -> Value {
    serde_json::from_str(example(n)).unwrap_or_else(|e| panic!("line {n}: {e}"))
}

fn feed(parser: &mut CodexStreamParser, lines: &[&str]) -> Vec<EventKind> {
    lines.iter().flat_map(|l| parser.push_line(l)).collect()
}

fn parse_all(lines: &[&str]) -> Vec<EventKind> {
    feed(&mut CodexStreamParser::new(), lines)
}

fn raw(line: &str) -> EventKind {
    EventKind::Raw {
        line: line.to_owned(),
    }
}

fn usage(input: u64, output: u64, cache_read: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cache_read_tokens: cache_read,
        cache_write_tokens: 0,
        cost_usd: None,
    }
}

/// Line 7 (`turn.completed`) with the usage counters replaced.
fn turn_completed(input: u64, cached: u64, output: u64, reasoning: u64) -> String {
    let mut v = example_value(7);
    v["usage"]["input_tokens"] = json!(input);
    v["usage"]["cached_input_tokens"] = json!(cached);
    v["usage"]["output_tokens"] = json!(output);
    v["usage"]["reasoning_output_tokens"] = json!(reasoning);
    v.to_string()
}

#[derive(Serialize)]
struct LineEvents {
    line: usize,
    events: Vec<EventKind>,
}

#[derive(Serialize)]
struct Parse {
    lines: Vec<LineEvents>,
    thread_id: Option<String>,
    outcome: Option<CodexOutcome>,
}

/// The whole output of a parser fed `text`, grouped by input line (from 1).
fn parse_fixture(text: &str) -> Parse {
    let mut parser = CodexStreamParser::new();
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
        thread_id: parser.thread_id().map(str::to_owned),
        outcome: parser.outcome().cloned(),
    }
}

// ---- the whole fixture, against a reviewed snapshot ----

#[test]
fn exec_json_examples_snapshot() {
    insta::assert_yaml_snapshot!(parse_fixture(EVENT_EXAMPLES));
}

// ---- mapping ----

#[test]
fn thread_started_starts_the_session_and_turn_started_gives_nothing() {
    let mut p = CodexStreamParser::new();
    assert_eq!(
        feed(&mut p, &[example(1), example(3)]),
        vec![EventKind::SessionStart {
            session_id: Some("01a20a85-8e14-75f1-9430-5b166a00cb24".into()),
            model: None,
            cwd: None,
            tools: vec![],
        }]
    );
    assert_eq!(p.thread_id(), Some("01a20a85-8e14-75f1-9430-5b166a00cb24"));
    assert_eq!(p.outcome(), None);
}

#[test]
fn command_execution_is_a_bash_call_and_its_result() {
    let command = "/bin/bash -lc 'echo hi > hello.txt && ls'";
    let call = EventKind::ToolCall {
        id: "item_1".into(),
        name: "Bash".into(),
        input: json!({ "command": command }),
        parent_id: None,
    };
    let result = EventKind::ToolResult {
        id: "item_1".into(),
        output: "README.md\nhello.txt\npatched.txt\n".into(),
        is_error: false,
        exit_code: Some(0),
    };
    let mut p = CodexStreamParser::new();
    assert_eq!(p.push_line(example(4)), vec![call.clone()]);
    // A repeated start or an update does not repeat the call.
    let mut updated = example_value(4);
    updated["type"] = json!("item.updated");
    assert_eq!(feed(&mut p, &[example(4), &updated.to_string()]), vec![]);
    assert_eq!(p.push_line(example(5)), vec![result.clone()]);
    // Only the completion seen: the call comes with it.
    assert_eq!(parse_all(&[example(5)]), vec![call, result]);
}

#[test]
fn a_failed_command_is_an_error_with_its_exit_code() {
    let mut failed = example_value(5);
    failed["item"]["exit_code"] = json!(2);
    failed["item"]["status"] = json!("failed");
    failed["item"]["aggregated_output"] = json!("ls: cannot access 'x'\n");
    let events = parse_all(&[example(4), &failed.to_string()]);
    assert_eq!(
        events[1],
        EventKind::ToolResult {
            id: "item_1".into(),
            output: "ls: cannot access 'x'\n".into(),
            is_error: true,
            exit_code: Some(2),
        }
    );
    // Status alone decides too: a declined command has no exit code.
    let mut declined = example_value(5);
    declined["item"]["exit_code"] = Value::Null;
    declined["item"]["status"] = json!("declined");
    declined["item"]["aggregated_output"] = json!("");
    let events = parse_all(&[&declined.to_string()]);
    assert!(
        matches!(
            &events[1],
            EventKind::ToolResult {
                is_error: true,
                exit_code: None,
                ..
            }
        ),
        "{events:?}"
    );
    // A non-zero exit code alone is an error as well.
    let mut nonzero = example_value(5);
    nonzero["item"]["exit_code"] = json!(1);
    let events = parse_all(&[&nonzero.to_string()]);
    assert!(
        matches!(
            &events[1],
            EventKind::ToolResult {
                is_error: true,
                exit_code: Some(1),
                ..
            }
        ),
        "{events:?}"
    );
}

#[test]
fn file_change_is_an_apply_patch_call_with_file_edits() {
    let events = parse_all(&[example(10), example(11)]);
    assert_eq!(
        events,
        vec![
            EventKind::ToolCall {
                id: "item_0".into(),
                name: "apply_patch".into(),
                input: json!({"changes": [{"path": "./ws-codex/patched.txt", "kind": "add"}]}),
                parent_id: None,
            },
            EventKind::FileEdit {
                path: "./ws-codex/patched.txt".into(),
                diff: None,
                added: 0,
                removed: 0,
            },
            EventKind::ToolResult {
                id: "item_0".into(),
                output: "add ./ws-codex/patched.txt".into(),
                is_error: false,
                exit_code: None,
            },
        ]
    );
}

#[test]
fn file_change_with_several_changes_diffs_and_failures() {
    let mut several = example_value(11);
    several["item"]["changes"] = json!([
        {"path": "a.txt", "kind": "add", "diff": "+one\n+two\n"},
        {"path": "b.txt", "kind": "update", "diff": "@@ -1 +1 @@\n-old\n+new\n"},
        {"path": "c.txt", "kind": "delete"}
    ]);
    let events = parse_all(&[&several.to_string()]);
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(
        events[1..4],
        [
            EventKind::FileEdit {
                path: "a.txt".into(),
                diff: Some("+one\n+two\n".into()),
                added: 2,
                removed: 0,
            },
            EventKind::FileEdit {
                path: "b.txt".into(),
                diff: Some("@@ -1 +1 @@\n-old\n+new\n".into()),
                added: 1,
                removed: 1,
            },
            EventKind::FileEdit {
                path: "c.txt".into(),
                diff: None,
                added: 0,
                removed: 0,
            },
        ]
    );
    assert_eq!(
        events[4],
        EventKind::ToolResult {
            id: "item_0".into(),
            output: "add a.txt\nupdate b.txt\ndelete c.txt".into(),
            is_error: false,
            exit_code: None,
        }
    );

    // A failed patch changed nothing: no FileEdit, an error result.
    let mut failed = example_value(11);
    failed["item"]["status"] = json!("failed");
    let events = parse_all(&[example(10), &failed.to_string()]);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(
        &events[1],
        EventKind::ToolResult { is_error: true, .. }
    ));
}

#[test]
fn messages_and_reasoning() {
    assert_eq!(
        parse_all(&[example(6), example(12)]),
        vec![
            EventKind::AssistantMessage {
                text: "Done: ran the command.".into()
            },
            EventKind::Thinking {
                text: "**Planning** I will run a shell command.".into()
            },
        ]
    );
    // Blank texts and not-yet-completed messages give nothing.
    let mut blank = example_value(6);
    blank["item"]["text"] = json!("  ");
    let mut started = example_value(6);
    started["type"] = json!("item.started");
    assert_eq!(
        parse_all(&[&blank.to_string(), &started.to_string()]),
        vec![]
    );
}

#[test]
fn web_search_with_its_duplicate_id_key_pairs_by_the_last_id() {
    let events = parse_all(&[example(13), example(14)]);
    let call_input =
        json!({"query": "mock query", "action": {"type": "search", "query": "mock query"}});
    assert_eq!(
        events,
        vec![
            EventKind::ToolCall {
                id: "ws_3".into(),
                name: "web_search".into(),
                input: call_input,
                parent_id: None,
            },
            EventKind::ToolResult {
                id: "ws_3".into(),
                output: String::new(),
                is_error: false,
                exit_code: None,
            },
        ]
    );
}

/// Not in the capture (no `update_plan` tool was offered): made from line 12
/// with the item's type and fields of codex's `todo_list`.
#[test]
fn todo_list_snapshots_become_update_plan_calls() {
    let todo = |kind: &str, done: bool| {
        let mut v = example_value(12);
        v["type"] = json!(kind);
        v["item"] = json!({"id": "item_5", "type": "todo_list", "items": [
            {"text": "write file", "completed": done},
            {"text": "verify", "completed": false}
        ]});
        v.to_string()
    };
    let events = parse_all(&[
        &todo("item.started", false),
        &todo("item.updated", true),
        &todo("item.completed", true),
    ]);
    let ids: Vec<(&str, &str)> = events
        .iter()
        .map(|e| match e {
            EventKind::ToolCall { id, name, .. } => (id.as_str(), name.as_str()),
            EventKind::ToolResult { id, .. } => (id.as_str(), "result"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("item_5", "update_plan"),
            ("item_5", "result"),
            ("item_5/1", "update_plan"),
            ("item_5/1", "result")
        ]
    );
    let EventKind::ToolCall { input, .. } = &events[2] else {
        panic!("{events:?}");
    };
    assert_eq!(input["items"][0]["completed"], true);
}

/// Not in the capture: made from line 5 with the fields of codex's
/// `mcp_tool_call` item (`server`, `tool`, `arguments`, `result`, `error`).
#[test]
fn mcp_tool_calls_are_named_like_claudes() {
    let mcp = |kind: &str, status: &str, result: Value, error: Value| {
        let mut v = example_value(5);
        v["type"] = json!(kind);
        v["item"] = json!({"id": "item_7", "type": "mcp_tool_call", "server": "docs",
            "tool": "search", "arguments": {"q": "sse"}, "result": result,
            "error": error, "status": status});
        v.to_string()
    };
    let ok = parse_all(&[
        &mcp("item.started", "in_progress", Value::Null, Value::Null),
        &mcp(
            "item.completed",
            "completed",
            json!({"content": [{"type": "text", "text": "found 3"}], "structured_content": null}),
            Value::Null,
        ),
    ]);
    assert_eq!(
        ok,
        vec![
            EventKind::ToolCall {
                id: "item_7".into(),
                name: "mcp__docs__search".into(),
                input: json!({"q": "sse"}),
                parent_id: None,
            },
            EventKind::ToolResult {
                id: "item_7".into(),
                output: "found 3".into(),
                is_error: false,
                exit_code: None,
            },
        ]
    );
    let failed = parse_all(&[&mcp(
        "item.completed",
        "failed",
        Value::Null,
        json!({"message": "server down"}),
    )]);
    assert_eq!(
        failed[1],
        EventKind::ToolResult {
            id: "item_7".into(),
            output: "server down".into(),
            is_error: true,
            exit_code: None,
        }
    );
}

/// Not in the capture: codex's `collab_tool_call` (sub-agents), made from line 5.
#[test]
fn collab_tool_calls_are_named_by_their_tool() {
    let mut v = example_value(5);
    v["item"] = json!({"id": "item_8", "type": "collab_tool_call", "tool": "spawn_agent",
        "sender_thread_id": "t1", "receiver_thread_ids": ["t2"], "prompt": "look around",
        "agents_states": {"t2": {"status": "completed", "message": "ok"}}, "status": "completed"});
    let events = parse_all(&[&v.to_string()]);
    assert_eq!(
        events,
        vec![
            EventKind::ToolCall {
                id: "item_8".into(),
                name: "spawn_agent".into(),
                input: json!({"prompt": "look around", "sender_thread_id": "t1", "receiver_thread_ids": ["t2"]}),
                parent_id: None,
            },
            EventKind::ToolResult {
                id: "item_8".into(),
                output: r#"{"t2":{"message":"ok","status":"completed"}}"#.into(),
                is_error: false,
                exit_code: None,
            },
        ]
    );
}

// ---- turns, usage and outcome ----

#[test]
fn turn_completed_gives_usage_and_a_result_with_the_last_message() {
    let mut p = CodexStreamParser::new();
    let events = feed(
        &mut p,
        &[example(1), example(3), example(6), REAL_TURN_COMPLETED],
    );
    let total = usage(29936, 139, 0);
    assert_eq!(
        events[2..],
        [
            EventKind::Usage(total.clone()),
            EventKind::Result {
                is_error: false,
                text: Some("Done: ran the command.".into()),
                turns: Some(1),
                duration_ms: None,
                usage: total.clone(),
            },
        ]
    );
    let outcome = p.outcome().cloned().unwrap_or_default();
    assert_eq!(
        outcome,
        CodexOutcome {
            thread_id: Some("01a20a85-8e14-75f1-9430-5b166a00cb24".into()),
            is_error: false,
            turns: 1,
            last_message: Some("Done: ran the command.".into()),
            error: None,
            usage: total,
            reasoning_output_tokens: 0,
            warnings: vec![],
        }
    );
    assert_eq!(outcome.error_message(), None);
}

#[test]
fn cumulative_usage_becomes_per_turn_deltas() {
    let mut p = CodexStreamParser::new();
    let first = turn_completed(100, 0, 20, 0);
    let second = turn_completed(250, 80, 45, 7);
    let events = feed(
        &mut p,
        &[example(1), example(3), &first, example(3), &second],
    );
    let usages: Vec<&Usage> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::Usage(u) => Some(u),
            _ => None,
        })
        .collect();
    // Second turn: 150 more input, 80 of them cached; 25 more output.
    assert_eq!(usages, [&usage(100, 20, 0), &usage(70, 25, 80)]);
    let results: Vec<(Option<u32>, &Usage)> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::Result { turns, usage, .. } => Some((*turns, usage)),
            _ => None,
        })
        .collect();
    assert_eq!(
        results,
        [
            (Some(1), &usage(100, 20, 0)),
            (Some(2), &usage(170, 45, 80))
        ]
    );
    let outcome = p.outcome().cloned().unwrap_or_default();
    assert_eq!(outcome.usage, usage(170, 45, 80));
    assert_eq!(outcome.reasoning_output_tokens, 7);
    assert_eq!(outcome.turns, 2);
    // The second turn had no agent message of its own.
    assert_eq!(outcome.last_message, None);

    // Counters that go down were reset: the whole value is the delta.
    let lower = turn_completed(50, 0, 5, 0);
    let events = p.push_line(&lower);
    assert_eq!(events[0], EventKind::Usage(usage(50, 5, 0)));
}

#[test]
fn a_resumed_thread_subtracts_the_prior_usage() {
    // harnesses.md §1.7: the resumed turn reported 200 after one 100-token request.
    let mut p = CodexStreamParser::resuming(&usage(100, 20, 0));
    let events = p.push_line(&turn_completed(200, 0, 40, 0));
    assert_eq!(events[0], EventKind::Usage(usage(100, 20, 0)));
    assert_eq!(
        p.outcome().map(|o| o.usage.clone()),
        Some(usage(200, 40, 0))
    );
}

#[test]
fn another_thread_starts_its_counters_from_zero() {
    let mut other = example_value(1);
    other["thread_id"] = json!("another");
    let mut p = CodexStreamParser::new();
    feed(&mut p, &[example(1), &turn_completed(100, 0, 10, 0)]);
    let events = feed(&mut p, &[&other.to_string(), &turn_completed(60, 0, 6, 0)]);
    assert_eq!(events[1], EventKind::Usage(usage(60, 6, 0)));
    assert_eq!(p.thread_id(), Some("another"));
}

#[test]
fn warning_items_are_warnings_not_errors() {
    let mut p = CodexStreamParser::new();
    let events = feed(&mut p, &[example(1), example(2), example(3)]);
    assert_eq!(
        events[1..],
        [EventKind::Warning {
            message: "Model metadata for `mock-model` not found. Defaulting to fallback metadata; this can degrade performance and cause issues.".into()
        }]
    );
    assert!(
        !events.iter().any(|e| matches!(e, EventKind::Error { .. })),
        "{events:?}"
    );
    feed(&mut p, &[example(6), REAL_TURN_COMPLETED]);
    let outcome = p.outcome().cloned().unwrap_or_default();
    assert!(!outcome.is_error);
    assert_eq!(
        outcome.warnings,
        ["Model metadata for `mock-model` not found. Defaulting to fallback metadata; this can degrade performance and cause issues."]
    );
}

#[test]
fn turn_failed_is_an_error_and_an_error_result() {
    let mut p = CodexStreamParser::new();
    let message = "stream disconnected before completion: mock failure";
    // The preceding top-level error already said it: no second Error.
    let events = feed(&mut p, &[example(1), example(3), example(8), example(9)]);
    assert_eq!(
        events[1..],
        [
            EventKind::Error {
                message: message.into()
            },
            EventKind::Result {
                is_error: true,
                text: Some(message.into()),
                turns: Some(0),
                duration_ms: None,
                usage: Usage::default(),
            },
        ]
    );
    let outcome = p.outcome().cloned().unwrap_or_default();
    assert!(outcome.is_error);
    assert_eq!(outcome.error.as_deref(), Some(message));
    assert_eq!(outcome.error_message().as_deref(), Some(message));

    // turn.failed alone still gives the Error.
    let events = parse_all(&[example(9)]);
    assert_eq!(
        events[0],
        EventKind::Error {
            message: message.into()
        }
    );
    assert!(matches!(
        events[1],
        EventKind::Result { is_error: true, .. }
    ));

    // No message at all: a generic one.
    let events = parse_all(&[r#"{"type":"turn.failed"}"#]);
    assert_eq!(
        events[0],
        EventKind::Error {
            message: "turn failed".into()
        }
    );
}

#[test]
fn a_real_api_error_is_readable_in_the_outcome() {
    let mut p = CodexStreamParser::new();
    let events = feed(&mut p, &[example(3), REAL_API_ERROR, REAL_API_TURN_FAILED]);
    assert_eq!(events.len(), 2, "{events:?}");
    let outcome = p.outcome().cloned().unwrap_or_default();
    assert_eq!(
        outcome.error_message().as_deref(),
        Some("scripted refusal (invalid_request_error)")
    );
}

#[test]
fn a_failed_turn_after_a_completed_one_keeps_the_cumulative_usage() {
    let mut p = CodexStreamParser::new();
    let events = feed(
        &mut p,
        &[
            example(3),
            &turn_completed(100, 0, 10, 0),
            example(3),
            example(9),
        ],
    );
    assert_eq!(
        events.last(),
        Some(&EventKind::Result {
            is_error: true,
            text: Some("stream disconnected before completion: mock failure".into()),
            turns: Some(1),
            duration_ms: None,
            usage: usage(100, 10, 0),
        })
    );
}

// ---- lines that are not (fully) understood ----

#[test]
fn malformed_json_is_raw() {
    for line in [
        "not json",
        "{",
        "{\"type\":\"turn.completed\",",
        "}{",
        "{\"type\": \"turn.started\"} trailing",
        "42",
        "[{\"type\":\"turn.started\"}]",
        "null",
    ] {
        assert_eq!(parse_all(&[line]), vec![raw(line)], "{line}");
    }
}

#[test]
fn every_truncated_line_is_raw() {
    let mut p = CodexStreamParser::new();
    for line in EVENT_EXAMPLES.lines() {
        for (cut, _) in line.char_indices().skip(1) {
            let half = &line[..cut];
            assert_eq!(p.push_line(half), vec![raw(half)], "{half}");
        }
    }
    assert_eq!(p.outcome(), None);
    assert_eq!(p.thread_id(), None);
}

#[test]
fn unknown_types_and_items_are_raw() {
    let mut unknown_item = example_value(6);
    unknown_item["item"]["type"] = json!("image_view");
    let unknown_item = unknown_item.to_string();
    for line in [
        "{\"type\":\"brand.new\"}",
        "{\"type\":42}",
        "{\"no_type\":true}",
        "{}",
        unknown_item.as_str(),
    ] {
        assert_eq!(parse_all(&[line]), vec![raw(line)], "{line}");
    }
}

#[test]
fn blank_lines_give_nothing_and_crlf_parses() {
    assert_eq!(parse_all(&["", "   ", "\t", "\r"]), vec![]);
    let line = format!("{}\r", example(6));
    assert_eq!(
        parse_all(&[&line]),
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
    change(1, "/thread_id", json!(5));
    change(2, "/item/message", json!(null));
    change(4, "/item", json!("command"));
    change(4, "/item/command", json!(["ls"]));
    change(4, "/item/id", json!(1));
    change(5, "/item/type", json!(null));
    change(6, "/item/text", json!({"t": 1}));
    change(7, "/usage", json!("lots"));
    change(8, "/message", json!(3));
    change(10, "/item/changes", json!("a.txt"));
    change(11, "/item/changes/0/path", json!(null));
    change(12, "/item/text", json!([]));
    change(13, "/item/id", json!(false));
    for line in &cases {
        assert_eq!(parse_all(&[line]), vec![raw(line)], "{line}");
    }
    // Odd but harmless values are tolerated.
    let mut odd = example_value(5);
    odd["item"]["exit_code"] = json!("zero");
    odd["item"]["aggregated_output"] = json!(null);
    let events = parse_all(&[&odd.to_string()]);
    assert!(
        matches!(
            &events[1],
            EventKind::ToolResult { exit_code: None, output, is_error: false, .. } if output.is_empty()
        ),
        "{events:?}"
    );
    let mut floats = example_value(7);
    floats["usage"]["input_tokens"] = json!(12.0);
    floats["usage"]["output_tokens"] = json!(-3);
    let events = parse_all(&[&floats.to_string()]);
    assert_eq!(events[0], EventKind::Usage(usage(12, 0, 0)));
}

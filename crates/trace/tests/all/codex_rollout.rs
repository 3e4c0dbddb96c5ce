//! `CodexRolloutParser` on real Codex rollout files.
//!
//! Fixtures (`tests/fixtures/`):
//! - `codex_rollout_sample.jsonl`: a copy of the capture in
//!   `shared/docs/harness-probe/examples/` (codex-cli 0.169.0, one command);
//! - `codex_rollout_patch.jsonl`: the rollout codex-cli 0.169.0 wrote
//!   (`$CODEX_HOME/sessions/…`) running `codex exec` with `-m gpt-5.5`
//!   against errand's scripted model (`errand mock-model`): an `apply_patch`
//!   adding a file, one updating it and adding another, a command, a failing
//!   command (`exit 3`), text. Only the directories were renamed (`/tmp/…`).
//!
//! Lines no capture holds (reasoning, older output shapes, a failed patch, …)
//! are made here from a real line with only the named fields changed.

use errand_core::{EventKind, Usage};
use errand_trace::CodexRolloutParser;
use serde::Serialize;
use serde_json::{json, Value};

const SAMPLE: &str = include_str!("../fixtures/codex_rollout_sample.jsonl");
const PATCH: &str = include_str!("../fixtures/codex_rollout_patch.jsonl");

fn parse_all(text: &str) -> Vec<EventKind> {
    let mut p = CodexRolloutParser::new();
    let mut events: Vec<EventKind> = text.lines().flat_map(|l| p.push_line(l)).collect();
    events.extend(p.finish());
    events
}

/// Line `n` (from 1) of `text`.
fn line(text: &str, n: usize) -> &str {
    text.lines().nth(n - 1).expect("line exists")
}

fn line_value(text: &str, n: usize) -> Value {
    serde_json::from_str(line(text, n)).expect("fixture line is JSON")
}

fn raw(line: &str) -> EventKind {
    EventKind::Raw {
        line: line.to_owned(),
    }
}

/// A `response_item` line with `payload`, shaped like the captured ones.
fn item(payload: Value) -> String {
    json!({"timestamp": "2026-11-26T09:55:28.360Z", "type": "response_item", "payload": payload})
        .to_string()
}

fn event_msg(payload: Value) -> String {
    json!({"timestamp": "2026-11-26T09:55:28.360Z", "type": "event_msg", "payload": payload})
        .to_string()
}

#[derive(Serialize)]
struct LineEvents {
    line: usize,
    events: Vec<EventKind>,
}

fn by_line(text: &str) -> Vec<LineEvents> {
    let mut p = CodexRolloutParser::new();
    let mut out: Vec<LineEvents> = text
        .lines()
        .enumerate()
        .map(|(i, l)| LineEvents {
            line: i + 1,
            events: p.push_line(l),
        })
        .filter(|l| !l.events.is_empty())
        .collect();
    let rest = p.finish();
    if !rest.is_empty() {
        out.push(LineEvents {
            line: 0,
            events: rest,
        });
    }
    out
}

// ---- whole fixtures ----

#[test]
fn sample_snapshot() {
    insta::assert_yaml_snapshot!(by_line(SAMPLE));
}

#[test]
fn patch_snapshot() {
    insta::assert_yaml_snapshot!(by_line(PATCH));
}

#[test]
fn a_real_rollout_gives_calls_results_edits_usage_and_a_result() {
    let events = parse_all(PATCH);
    assert!(!events.iter().any(|e| matches!(e, EventKind::Raw { .. })));
    assert_eq!(
        events[0],
        EventKind::SessionStart {
            session_id: Some("01a21748-0f7a-7bb3-8610-6f5d8db19ca6".into()),
            model: Some("gpt-5.5".into()),
            cwd: Some("/tmp/ws-codex".into()),
            tools: vec![],
        }
    );
    // Only the user's words: the environment context Codex adds is not one.
    let users: Vec<&EventKind> = events
        .iter()
        .filter(|e| matches!(e, EventKind::UserMessage { .. }))
        .collect();
    assert_eq!(
        users,
        [&EventKind::UserMessage {
            text: "do it".into()
        }]
    );

    let calls: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::ToolCall { id, name, .. } => Some((id.as_str(), name.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("call_0", "apply_patch"),
            ("call_1", "apply_patch"),
            ("call_2", "Bash"),
            ("call_3", "Bash")
        ]
    );
    assert!(events.contains(&EventKind::ToolCall {
        id: "call_2".into(),
        name: "Bash".into(),
        input: json!({"command": "cat notes.txt && ls"}),
        parent_id: None,
    }));

    let results: Vec<(&str, &str, bool, Option<i32>)> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::ToolResult {
                id,
                output,
                is_error,
                exit_code,
            } => Some((id.as_str(), output.as_str(), *is_error, *exit_code)),
            _ => None,
        })
        .collect();
    assert_eq!(
        results,
        [
            (
                "call_0",
                "Success. Updated the following files:\nA /tmp/ws-codex/notes.txt\n",
                false,
                Some(0)
            ),
            (
                "call_1",
                "Success. Updated the following files:\nA sub/new.txt\nM notes.txt\n",
                false,
                Some(0)
            ),
            (
                "call_2",
                "alpha\nBETA\nbeta2\ngamma\nnotes.txt\nsub\n",
                false,
                Some(0)
            ),
            ("call_3", "", true, Some(3)),
        ]
    );

    let edits: Vec<(&str, Option<&str>, u32, u32)> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::FileEdit {
                path,
                diff,
                added,
                removed,
            } => Some((path.as_str(), diff.as_deref(), *added, *removed)),
            _ => None,
        })
        .collect();
    assert_eq!(
        edits,
        [
            (
                "/tmp/ws-codex/notes.txt",
                Some("--- a/notes.txt\n+++ b/notes.txt\n@@ -0,0 +1,3 @@\n+alpha\n+beta\n+gamma\n"),
                3,
                0
            ),
            (
                "/tmp/ws-codex/notes.txt",
                Some("--- a/notes.txt\n+++ b/notes.txt\n@@ -1,3 +1,4 @@\n alpha\n-beta\n+BETA\n+beta2\n gamma\n"),
                2,
                1
            ),
            (
                "/tmp/ws-codex/sub/new.txt",
                Some("--- a/sub/new.txt\n+++ b/sub/new.txt\n@@ -0,0 +1 @@\n+new file\n"),
                1,
                0
            ),
        ]
    );

    // The usage events add up to the thread's total, which the result carries.
    let mut total = Usage::default();
    for e in &events {
        if let EventKind::Usage(u) = e {
            total.input_tokens += u.input_tokens;
            total.output_tokens += u.output_tokens;
        }
    }
    let expected = Usage {
        input_tokens: 48679,
        output_tokens: 233,
        ..Usage::default()
    };
    assert_eq!(total, expected);
    assert_eq!(
        events.last(),
        Some(&EventKind::Result {
            is_error: false,
            text: Some("Done: wrote, patched and listed.".into()),
            turns: Some(1),
            duration_ms: Some(252),
            usage: expected,
        })
    );
}

#[test]
fn the_shared_sample_gives_a_command_and_its_exit_code() {
    let events = parse_all(SAMPLE);
    assert!(!events.iter().any(|e| matches!(e, EventKind::Raw { .. })));
    assert!(events.contains(&EventKind::ToolResult {
        id: "call_1".into(),
        output: "README.md\nhello.txt\n".into(),
        is_error: false,
        exit_code: Some(0),
    }));
    assert!(matches!(
        &events[0],
        EventKind::SessionStart { model: Some(m), .. } if m == "mock-model"
    ));
}

// ---- robustness ----

#[test]
fn no_line_or_prefix_of_a_line_panics() {
    for text in [SAMPLE, PATCH] {
        let mut p = CodexRolloutParser::new();
        for line in text.lines() {
            p.push_line(line);
            let mut fresh = CodexRolloutParser::new();
            for (cut, _) in line.char_indices().step_by(97) {
                let events = fresh.push_line(&line[..cut]);
                if cut > 0 {
                    assert_eq!(events, vec![raw(&line[..cut])]);
                }
            }
        }
    }
}

#[test]
fn malformed_and_unknown_lines_are_raw() {
    let mut p = CodexRolloutParser::new();
    for line in [
        "not json",
        "[1]",
        r#"{"type":"response_item"}"#,
        r#"{"type":"brand_new","payload":{}}"#,
        &item(json!({"type": "brand_new_item"})),
        &event_msg(json!({"type": "brand_new_event"})),
        &item(json!({"type": "function_call", "arguments": "{}"})),
    ] {
        assert_eq!(p.push_line(line), vec![raw(line)], "{line}");
    }
    assert!(p.push_line("").is_empty());
}

#[test]
fn a_session_start_without_turn_context_comes_with_the_first_event() {
    let mut p = CodexRolloutParser::new();
    assert!(p.push_line(line(PATCH, 1)).is_empty());
    let events = p.push_line(line(PATCH, 8));
    assert!(
        matches!(
            events.as_slice(),
            [
                EventKind::SessionStart { model: None, .. },
                EventKind::UserMessage { .. }
            ]
        ),
        "{events:?}"
    );
    assert!(p.finish().is_empty());

    let mut q = CodexRolloutParser::new();
    q.push_line(line(PATCH, 1));
    assert!(matches!(
        q.finish().as_slice(),
        [EventKind::SessionStart { .. }]
    ));
}

// ---- mapping details ----

#[test]
fn a_failed_patch_gives_no_file_edit() {
    let mut p = CodexRolloutParser::new();
    p.push_line(line(PATCH, 1));
    p.push_line(line(PATCH, 6));
    p.push_line(line(PATCH, 15));
    let mut status = line_value(PATCH, 17);
    status["payload"]["item"]["status"] = json!("failed");
    assert!(p.push_line(&status.to_string()).is_empty());
    let events = p.push_line(&item(json!({
        "type": "custom_tool_call_output", "call_id": "call_1",
        "output": "apply_patch verification failed: Failed to find expected lines in notes.txt"
    })));
    assert_eq!(
        events,
        [EventKind::ToolResult {
            id: "call_1".into(),
            output: "apply_patch verification failed: Failed to find expected lines in notes.txt"
                .into(),
            is_error: true,
            exit_code: None,
        }]
    );
}

#[test]
fn reasoning_becomes_thinking() {
    let mut p = CodexRolloutParser::new();
    let events = p.push_line(&item(json!({
        "type": "reasoning", "id": "rs_0",
        "summary": [{"type": "summary_text", "text": "**Planning** I will run a shell command."}],
        "content": null, "encrypted_content": "gAAAA"
    })));
    assert_eq!(
        events,
        [EventKind::Thinking {
            text: "**Planning** I will run a shell command.".into()
        }]
    );
    let encrypted_only =
        item(json!({"type": "reasoning", "summary": [], "encrypted_content": "gAAAA"}));
    assert!(p.push_line(&encrypted_only).is_empty());
}

#[test]
fn older_shell_calls_and_json_outputs() {
    let mut p = CodexRolloutParser::new();
    let events = p.push_line(&item(json!({
        "type": "function_call", "name": "shell", "call_id": "call_9",
        "arguments": "{\"command\":[\"bash\",\"-lc\",\"cargo test\"],\"workdir\":\"/w\"}"
    })));
    assert_eq!(
        events,
        [EventKind::ToolCall {
            id: "call_9".into(),
            name: "Bash".into(),
            input: json!({"command": "cargo test", "workdir": "/w"}),
            parent_id: None,
        }]
    );
    let events = p.push_line(&item(json!({
        "type": "function_call_output", "call_id": "call_9",
        "output": "{\"output\":\"1 failed\\n\",\"metadata\":{\"exit_code\":101,\"duration_seconds\":1.5}}"
    })));
    assert_eq!(
        events,
        [EventKind::ToolResult {
            id: "call_9".into(),
            output: "1 failed\n".into(),
            is_error: true,
            exit_code: Some(101),
        }]
    );

    let mut p = CodexRolloutParser::new();
    p.push_line(&item(json!({
        "type": "local_shell_call", "call_id": "ls_1", "status": "completed",
        "action": {"type": "exec", "command": ["bash", "-lc", "ls"], "timeout_ms": 1000}
    })));
    p.push_line(&event_msg(
        json!({"type": "exec_command_end", "call_id": "ls_1", "exit_code": 2}),
    ));
    let events = p.push_line(&item(json!({
        "type": "function_call_output", "call_id": "ls_1", "output": "ls: cannot access"
    })));
    assert_eq!(
        events,
        [EventKind::ToolResult {
            id: "ls_1".into(),
            output: "ls: cannot access".into(),
            is_error: true,
            exit_code: Some(2),
        }]
    );
}

#[test]
fn apply_patch_through_the_shell_is_a_patch() {
    let mut p = CodexRolloutParser::new();
    p.push_line(line(PATCH, 1));
    let script =
        "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: a.txt\n+a\n*** End Patch\nEOF\n";
    let events = p.push_line(&item(json!({
        "type": "function_call", "name": "exec_command", "call_id": "c1",
        "arguments": json!({"cmd": script}).to_string()
    })));
    assert!(
        matches!(&events[..], [EventKind::SessionStart { .. }, EventKind::ToolCall { name, input, .. }]
            if name == "apply_patch" && input["changes"] == json!([{"path": "/tmp/ws-codex/a.txt", "kind": "add"}])),
        "{events:?}"
    );
    let events = p.push_line(&item(json!({
        "type": "function_call_output", "call_id": "c1",
        "output": "Chunk ID: 1\nWall time: 0.0 seconds\nProcess exited with code 0\nOutput:\nSuccess.\n"
    })));
    assert!(matches!(
        &events[..],
        [
            EventKind::FileEdit { added: 1, .. },
            EventKind::ToolResult {
                exit_code: Some(0),
                ..
            }
        ]
    ));
}

#[test]
fn web_search_errors_warnings_and_aborted_turns() {
    let mut p = CodexRolloutParser::new();
    let events = p.push_line(&item(json!({
        "type": "web_search_call", "status": "completed",
        "action": {"type": "search", "query": "mock query"}
    })));
    assert_eq!(
        events,
        [
            EventKind::ToolCall {
                id: "web_search_1".into(),
                name: "web_search".into(),
                input: json!({"query": "mock query", "action": {"type": "search", "query": "mock query"}}),
                parent_id: None,
            },
            EventKind::ToolResult {
                id: "web_search_1".into(),
                output: String::new(),
                is_error: false,
                exit_code: None,
            }
        ]
    );
    assert_eq!(
        p.push_line(&event_msg(
            json!({"type": "error", "message": "stream disconnected"})
        )),
        [EventKind::Error {
            message: "stream disconnected".into()
        }]
    );
    assert_eq!(
        p.push_line(&event_msg(
            json!({"type": "stream_error", "message": "Reconnecting... 1/5"})
        )),
        [EventKind::Warning {
            message: "Reconnecting... 1/5".into()
        }]
    );
    assert_eq!(
        p.push_line(&event_msg(
            json!({"type": "turn_aborted", "reason": "interrupted"})
        )),
        [EventKind::Result {
            is_error: true,
            text: Some("turn aborted (interrupted)".into()),
            turns: Some(1),
            duration_ms: None,
            usage: Usage::default(),
        }]
    );
    // Codex's own echoes of response items give nothing.
    for n in [2, 7, 9, 12, 17, 22, 27, 30] {
        assert!(p.push_line(line(PATCH, n)).is_empty(), "line {n}");
    }
}

//! `ClaudeStreamParser` on real captured Claude Code output.
//!
//! Fixtures (`tests/fixtures/`) are copies of real captures from
//! `shared/docs/harness-probe/examples/`. Lines that no capture holds (an
//! `Edit` call, a failed Bash command, an API-error `result`) are made here by
//! taking a real line and changing only the fields named, so the shapes stay
//! real; each such test says what it changed.

use errand_core::{EventKind, Usage};
use errand_trace::{ClaudeOutcome, ClaudeStreamParser};
use serde::Serialize;
use serde_json::{json, Value};

const EVENT_EXAMPLES: &str = include_str!("../fixtures/claude_event_examples.jsonl");
const TRANSCRIPT: &str = include_str!("../fixtures/claude_session_transcript_sample.jsonl");

/// Line `n` (from 1) of the captured stream-json examples.
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

fn feed(parser: &mut ClaudeStreamParser, lines: &[&str]) -> Vec<EventKind> {
    lines.iter().flat_map(|l| parser.push_line(l)).collect()
}

fn parse_all(lines: &[&str]) -> Vec<EventKind> {
    feed(&mut ClaudeStreamParser::new(), lines)
}

fn raw(line: &str) -> EventKind {
    EventKind::Raw {
        line: line.to_owned(),
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
    session_id: Option<String>,
    outcome: Option<ClaudeOutcome>,
}

/// The whole output of a parser fed `text`, grouped by input line (from 1).
fn parse_fixture(text: &str) -> Parse {
    let mut parser = ClaudeStreamParser::new();
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
        session_id: parser.session_id().map(str::to_owned),
        outcome: parser.outcome().cloned(),
    }
}

// ---- whole fixtures, against reviewed snapshots ----

#[test]
fn stream_json_examples_snapshot() {
    insta::assert_yaml_snapshot!(parse_fixture(EVENT_EXAMPLES));
}

/// Claude's own transcript is another format; fed to the stream parser, its
/// user/assistant lines still map and its own line types stay `Raw`.
#[test]
fn session_transcript_snapshot() {
    insta::assert_yaml_snapshot!(parse_fixture(TRANSCRIPT));
}

// ---- mapping ----

#[test]
fn init_starts_the_session() {
    let mut p = ClaudeStreamParser::new();
    let events = p.push_line(example(1));
    let [EventKind::SessionStart {
        session_id,
        model,
        cwd,
        tools,
    }] = events.as_slice()
    else {
        panic!("{events:?}");
    };
    assert_eq!(
        session_id.as_deref(),
        Some("25b2fe16-c4cc-4a1a-920c-501e5155ee44")
    );
    assert_eq!(model.as_deref(), Some("claude-opus-4-8[1m]"));
    assert_eq!(cwd.as_deref(), Some("./ws-cc"));
    assert_eq!(tools.len(), 24);
    assert_eq!(tools.first().map(String::as_str), Some("Task"));
    assert_eq!(p.session_id(), Some("25b2fe16-c4cc-4a1a-920c-501e5155ee44"));
    assert_eq!(p.outcome(), None);
}

#[test]
fn tool_use_and_tool_result_pair_by_id() {
    let events = parse_all(&[example(2), example(3)]);
    assert_eq!(
        events,
        vec![
            EventKind::ToolCall {
                id: "toolu_0016".into(),
                name: "Bash".into(),
                input: json!({"command": "touch bypass.txt", "description": "mock command"}),
                parent_id: None,
            },
            EventKind::ToolResult {
                id: "toolu_0016".into(),
                output: "(Bash completed with no output)".into(),
                is_error: false,
                exit_code: Some(0),
            },
        ]
    );
}

#[test]
fn a_denied_tool_call_is_an_error_result_without_exit_code() {
    let events = parse_all(&[example(7)]);
    assert_eq!(
        events,
        vec![EventKind::ToolResult {
            id: "toolu_0029".into(),
            output: "guard: please confirm".into(),
            is_error: true,
            exit_code: None,
        }]
    );
}

/// Made from line 7 (an error tool_result): content becomes Bash's failure
/// text and `tool_use_result` its error string.
#[test]
fn a_failed_bash_command_reports_its_exit_code() {
    let mut line = example_value(7);
    line["message"]["content"][0]["content"] =
        json!("Exit code 2\nls: cannot access 'nope': No such file or directory");
    line["tool_use_result"] =
        json!("Error: Exit code 2\nls: cannot access 'nope': No such file or directory");
    let events = parse_all(&[&line.to_string()]);
    let [EventKind::ToolResult {
        is_error,
        exit_code,
        ..
    }] = events.as_slice()
    else {
        panic!("{events:?}");
    };
    assert!(*is_error);
    assert_eq!(*exit_code, Some(2));
}

/// Made from lines 2 and 3: the call is a `Read`, so the result's shape does
/// not make it a Bash exit; and an interrupted Bash run has no exit code.
#[test]
fn exit_code_zero_is_only_for_bash_runs_that_finished() {
    let mut call = example_value(2);
    call["message"]["content"][0]["name"] = json!("Read");
    let events = parse_all(&[&call.to_string(), example(3)]);
    assert!(
        matches!(
            events.get(1),
            Some(EventKind::ToolResult {
                exit_code: None,
                ..
            })
        ),
        "{events:?}"
    );

    let mut interrupted = example_value(3);
    interrupted["tool_use_result"]["interrupted"] = json!(true);
    let events = parse_all(&[example(2), &interrupted.to_string()]);
    assert!(
        matches!(
            events.get(1),
            Some(EventKind::ToolResult {
                exit_code: None,
                ..
            })
        ),
        "{events:?}"
    );
}

/// Made from line 3: content as an array of text blocks.
#[test]
fn tool_result_content_blocks_are_joined() {
    let mut line = example_value(3);
    line["message"]["content"][0]["content"] =
        json!([{"type": "text", "text": "line one"}, {"type": "text", "text": "line two"}]);
    let events = parse_all(&[&line.to_string()]);
    let [EventKind::ToolResult { output, .. }] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert_eq!(output, "line one\nline two");
}

/// Made from line 2: a sub-agent's call carries `parent_tool_use_id`.
#[test]
fn sub_agent_calls_carry_their_parent() {
    let mut line = example_value(2);
    line["parent_tool_use_id"] = json!("toolu_0001");
    let events = parse_all(&[&line.to_string()]);
    assert!(
        matches!(events.as_slice(), [EventKind::ToolCall { parent_id: Some(p), .. }] if p == "toolu_0001"),
        "{events:?}"
    );
}

/// Made from line 4: a thinking block before the text.
#[test]
fn thinking_then_text() {
    let mut line = example_value(4);
    line["message"]["content"] = json!([
        {"type": "thinking", "thinking": "The user wants hello.txt.", "signature": "sig"},
        {"type": "text", "text": "Done: wrote hello.txt"},
        {"type": "text", "text": ""}
    ]);
    assert_eq!(
        parse_all(&[&line.to_string()]),
        vec![
            EventKind::Thinking {
                text: "The user wants hello.txt.".into()
            },
            EventKind::AssistantMessage {
                text: "Done: wrote hello.txt".into()
            },
        ]
    );
}

#[test]
fn user_text_is_a_user_message_and_tool_results_are_not() {
    assert_eq!(
        parse_all(&[example(10), example(12), example(3)])
            .iter()
            .filter(|e| matches!(e, EventKind::UserMessage { .. }))
            .cloned()
            .collect::<Vec<_>>(),
        vec![
            EventKind::UserMessage {
                text: "run the slow thing".into()
            },
            EventKind::UserMessage {
                text: "[Request interrupted by user for tool use]".into()
            },
        ]
    );
}

// ---- Edit / MultiEdit / Write / NotebookEdit → FileEdit ----

/// Line 1 with an absolute cwd, and line 2 turned into a call of `name`.
fn edit_session(name: &str, input: Value) -> Vec<EventKind> {
    let mut init = example_value(1);
    init["cwd"] = json!("/work/ws-cc");
    let mut call = example_value(2);
    call["message"]["content"][0]["name"] = json!(name);
    call["message"]["content"][0]["input"] = input;
    parse_all(&[&init.to_string(), &call.to_string()])
        .into_iter()
        .skip(1)
        .collect()
}

fn file_edit(events: &[EventKind]) -> (String, Option<String>, u32, u32) {
    match events {
        [EventKind::ToolCall { .. }, EventKind::FileEdit {
            path,
            diff,
            added,
            removed,
        }] => (path.clone(), diff.clone(), *added, *removed),
        other => panic!("expected ToolCall then FileEdit, got {other:?}"),
    }
}

#[test]
fn edit_gives_a_unified_diff_with_counts() {
    let input = json!({
        "file_path": "/work/ws-cc/src/main.rs",
        "old_string": "fn main() {\n    println!(\"hi\");\n}",
        "new_string": "fn main() {\n    let name = \"errand\";\n    println!(\"hi {name}\");\n}",
    });
    let events = edit_session("Edit", input.clone());
    assert!(
        matches!(events.first(), Some(EventKind::ToolCall { name, input: i, .. }) if name == "Edit" && *i == input)
    );
    let (path, diff, added, removed) = file_edit(&events);
    assert_eq!(path, "/work/ws-cc/src/main.rs");
    assert_eq!(
        diff.as_deref(),
        Some(concat!(
            "--- a/src/main.rs\n",
            "+++ b/src/main.rs\n",
            "@@ -1,3 +1,4 @@\n",
            " fn main() {\n",
            "-    println!(\"hi\");\n",
            "+    let name = \"errand\";\n",
            "+    println!(\"hi {name}\");\n",
            " }\n",
        ))
    );
    assert_eq!((added, removed), (2, 1));
}

#[test]
fn multi_edit_combines_its_edits() {
    let events = edit_session(
        "MultiEdit",
        json!({
            "file_path": "/elsewhere/notes.txt",
            "edits": [
                {"old_string": "alpha", "new_string": "ALPHA"},
                {"old_string": "beta\ngamma", "new_string": "gamma", "replace_all": true},
                "not an edit"
            ]
        }),
    );
    let (path, diff, added, removed) = file_edit(&events);
    assert_eq!(path, "/elsewhere/notes.txt");
    assert_eq!(
        diff.as_deref(),
        Some(concat!(
            "--- a/elsewhere/notes.txt\n",
            "+++ b/elsewhere/notes.txt\n",
            "@@ -1 +1 @@\n",
            "-alpha\n",
            "+ALPHA\n",
            "@@ -1,2 +1 @@\n",
            "-beta\n",
            " gamma\n",
        ))
    );
    assert_eq!((added, removed), (1, 2));
}

#[test]
fn write_is_a_diff_from_empty() {
    let events = edit_session(
        "Write",
        json!({"file_path": "/work/ws-cc/hello.txt", "content": "hello\nworld"}),
    );
    let (path, diff, added, removed) = file_edit(&events);
    assert_eq!(path, "/work/ws-cc/hello.txt");
    assert_eq!(
        diff.as_deref(),
        Some("--- a/hello.txt\n+++ b/hello.txt\n@@ -0,0 +1,2 @@\n+hello\n+world\n\\ No newline at end of file\n")
    );
    assert_eq!((added, removed), (2, 0));

    let events = edit_session(
        "Write",
        json!({"file_path": "/work/ws-cc/empty.txt", "content": ""}),
    );
    assert_eq!(
        file_edit(&events),
        ("/work/ws-cc/empty.txt".into(), None, 0, 0)
    );
}

#[test]
fn notebook_edit_shows_the_new_cell_source() {
    let events = edit_session(
        "NotebookEdit",
        json!({"notebook_path": "/work/ws-cc/a.ipynb", "new_source": "print(1)", "edit_mode": "insert"}),
    );
    let (path, diff, added, removed) = file_edit(&events);
    assert_eq!(path, "/work/ws-cc/a.ipynb");
    assert_eq!(
        diff.as_deref(),
        Some("--- a/a.ipynb\n+++ b/a.ipynb\n@@ -0,0 +1 @@\n+print(1)\n")
    );
    assert_eq!((added, removed), (1, 0));

    let events = edit_session(
        "NotebookEdit",
        json!({"notebook_path": "/work/ws-cc/a.ipynb", "cell_id": "c1", "new_source": "", "edit_mode": "delete"}),
    );
    assert_eq!(
        file_edit(&events),
        ("/work/ws-cc/a.ipynb".into(), None, 0, 0)
    );
}

#[test]
fn file_tools_without_a_path_give_only_the_tool_call() {
    for name in ["Edit", "Write", "MultiEdit", "NotebookEdit"] {
        let events = edit_session(name, json!({"content": "x"}));
        assert!(
            matches!(events.as_slice(), [EventKind::ToolCall { .. }]),
            "{name}: {events:?}"
        );
    }
    let events = edit_session("Read", json!({"file_path": "/work/ws-cc/a"}));
    assert!(
        matches!(events.as_slice(), [EventKind::ToolCall { .. }]),
        "{events:?}"
    );
}

// ---- results ----

#[test]
fn success_result_gives_usage_then_result() {
    let mut p = ClaudeStreamParser::new();
    let events = p.push_line(example(5));
    let usage = Usage {
        input_tokens: 20,
        output_tokens: 10,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cost_usd: Some(0.00035),
    };
    assert_eq!(
        events,
        vec![
            EventKind::Usage(usage.clone()),
            EventKind::Result {
                is_error: false,
                text: Some("Done: wrote hello.txt".into()),
                turns: Some(2),
                duration_ms: Some(522),
                usage: usage.clone(),
            },
        ]
    );
    let outcome = p.outcome().expect("outcome");
    assert!(!outcome.is_error);
    assert_eq!(outcome.subtype.as_deref(), Some("success"));
    assert_eq!(outcome.terminal_reason.as_deref(), Some("completed"));
    assert_eq!(outcome.stop_reason.as_deref(), Some("end_turn"));
    assert_eq!(outcome.api_error_status, None);
    assert_eq!(outcome.usage, usage);
    assert_eq!(outcome.error_message(), None);
    assert_eq!(p.session_id(), Some("25b2fe16-c4cc-4a1a-920c-501e5155ee44"));
}

/// Line 6 is the real synthetic assistant message before an API error; the
/// result is line 5 with the fields harnesses.md §2.2 gives for an API error
/// (`subtype` stays `success`).
#[test]
fn api_error_is_an_error_although_subtype_is_success() {
    let mut result = example_value(5);
    result["is_error"] = json!(true);
    result["api_error_status"] = json!(400);
    result["result"] = json!("API Error: 400 mock: bad request");
    result["session_id"] = json!("8e4696ec-5810-44fb-9bd2-c9e7cf2ee420");
    let mut p = ClaudeStreamParser::new();
    let events = feed(&mut p, &[example(6), &result.to_string()]);
    assert_eq!(
        events.first(),
        Some(&EventKind::AssistantMessage {
            text: "API Error: 400 mock: bad request".into()
        })
    );
    assert!(
        matches!(events.get(2), Some(EventKind::Result { is_error: true, text: Some(t), .. }) if t == "API Error: 400 mock: bad request"),
        "{events:?}"
    );
    assert_eq!(
        events.get(3),
        Some(&EventKind::Error {
            message: "API Error: 400 mock: bad request (API status 400)".into()
        })
    );
    assert_eq!(events.len(), 4);
    let outcome = p.outcome().expect("outcome");
    assert!(outcome.is_error);
    assert_eq!(outcome.subtype.as_deref(), Some("success"));
    assert_eq!(outcome.api_error_status, Some(400));
    assert_eq!(p.session_id(), Some("8e4696ec-5810-44fb-9bd2-c9e7cf2ee420"));
}

#[test]
fn max_turns_is_an_error_with_its_reason() {
    let mut p = ClaudeStreamParser::new();
    let events = p.push_line(example(14));
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(
        events.get(1),
        Some(EventKind::Result { is_error: true, text: Some(t), turns: Some(3), duration_ms: Some(668), .. })
            if t == "Reached maximum number of turns (2)"
    ));
    assert_eq!(
        events.get(2),
        Some(&EventKind::Error {
            message: "Reached maximum number of turns (2) (terminal_reason: max_turns)".into()
        })
    );
    let outcome = p.outcome().expect("outcome");
    assert_eq!(outcome.subtype.as_deref(), Some("error_max_turns"));
    assert_eq!(
        outcome.errors,
        vec!["Reached maximum number of turns (2)".to_owned()]
    );
    assert_eq!(outcome.terminal_reason.as_deref(), Some("max_turns"));
}

#[test]
fn the_latest_result_is_the_outcome() {
    let mut p = ClaudeStreamParser::new();
    feed(&mut p, &[example(5), example(13)]);
    let outcome = p.outcome().expect("outcome");
    assert!(outcome.is_error);
    assert_eq!(outcome.terminal_reason.as_deref(), Some("aborted_tools"));
    assert_eq!(p.session_id(), Some("5b691881-c496-49fe-b749-733c7ec6940c"));
}

// ---- lines that are not (fully) understood ----

#[test]
fn malformed_json_is_raw() {
    for line in [
        "not json",
        "{",
        "{\"type\":\"assistant\",",
        "}{",
        "{\"type\": \"result\"} trailing",
    ] {
        assert_eq!(parse_all(&[line]), vec![raw(line)], "{line}");
    }
}

#[test]
fn every_truncated_line_is_raw() {
    let mut p = ClaudeStreamParser::new();
    for line in EVENT_EXAMPLES.lines().chain(TRANSCRIPT.lines()) {
        for (cut, _) in line.char_indices().skip(1) {
            let half = &line[..cut];
            assert_eq!(p.push_line(half), vec![raw(half)], "{half}");
        }
    }
    assert_eq!(p.outcome(), None);
}

#[test]
fn non_object_json_is_raw() {
    for line in [
        "42",
        "[]",
        "[{\"type\":\"result\"}]",
        "\"result\"",
        "null",
        "true",
        "-1.5e3",
    ] {
        assert_eq!(parse_all(&[line]), vec![raw(line)], "{line}");
    }
}

#[test]
fn unknown_types_are_raw() {
    for line in [
        "{\"type\":\"brand_new\",\"session_id\":\"s\"}",
        "{\"type\":42}",
        "{\"no_type\":true}",
        "{}",
    ] {
        assert_eq!(parse_all(&[line]), vec![raw(line)], "{line}");
    }
}

#[test]
fn hook_status_and_control_lines_are_one_line_notes() {
    let note = |line: &str| match &parse_all(&[line])[..] {
        [EventKind::Note { what, text }] => (what.clone(), text.clone()),
        other => panic!("{line}: {other:?}"),
    };
    assert_eq!(
        note(example(8)),
        ("hook_started".into(), "hook PreToolUse:Bash started".into())
    );
    let (what, text) = note(example(9));
    assert_eq!(what, "hook_response");
    assert!(
        text.starts_with("hook PreToolUse:Bash: success (exit 0)\n")
            && text.contains("force-push is forbidden"),
        "{text}"
    );
    assert_eq!(
        note(example(15)),
        ("status".into(), "status: requesting".into())
    );
    assert_eq!(note(example(11)).0, "control_response");
    // A subtype not seen yet is still a note, with what it says.
    assert_eq!(
        note(r#"{"type":"system","subtype":"api_retry","message":"overloaded","session_id":"s"}"#),
        ("api_retry".into(), "api_retry: overloaded".into())
    );
    // A system line without a subtype is not understood.
    let line = r#"{"type":"system","session_id":"s"}"#;
    assert_eq!(parse_all(&[line]), vec![raw(line)]);
}

#[test]
fn partial_messages_and_blank_lines_give_nothing() {
    let stream_events: Vec<&str> = EVENT_EXAMPLES
        .lines()
        .filter(|l| l.starts_with("{\"type\":\"stream_event\""))
        .collect();
    assert_eq!(stream_events.len(), 6);
    assert_eq!(parse_all(&stream_events), vec![]);
    assert_eq!(parse_all(&["", "   ", "\t", "\r"]), vec![]);
}

#[test]
fn a_crlf_line_still_parses() {
    let line = format!("{}\r", example(4));
    assert_eq!(
        parse_all(&[&line]),
        vec![EventKind::AssistantMessage {
            text: "Done: wrote hello.txt".into()
        }]
    );
}

/// Made from lines 2–5 and 7: known types with unexpected shapes.
#[test]
fn unexpected_shapes_are_raw() {
    let mut cases = Vec::new();
    for (n, pointer, value) in [
        (4, "/message", json!(42)),
        (4, "/message/content", json!(null)),
        (4, "/message/content", json!({"text": "x"})),
        (3, "/message", json!("text")),
        (3, "/message/content", json!(7)),
        (1, "/subtype", json!(null)),
    ] {
        let mut line = example_value(n);
        if let Some(slot) = line.pointer_mut(pointer) {
            *slot = value;
        }
        cases.push(line.to_string());
    }
    let mut result = example_value(5);
    if let Some(obj) = result.as_object_mut() {
        obj.remove("subtype");
        obj.remove("is_error");
    }
    cases.push(result.to_string());
    for line in &cases {
        assert_eq!(parse_all(&[line]), vec![raw(line)], "{line}");
    }
}

/// Made from line 4: a block of unknown type after a text block keeps the text
/// and adds the whole line as `Raw`; so does a tool_use without an id.
#[test]
fn unknown_blocks_keep_the_known_ones_and_the_line() {
    let mut line = example_value(4);
    line["message"]["content"] = json!([
        {"type": "text", "text": "Done: wrote hello.txt"},
        {"type": "redacted_thinking", "data": "opaque"}
    ]);
    let line = line.to_string();
    assert_eq!(
        parse_all(&[&line]),
        vec![
            EventKind::AssistantMessage {
                text: "Done: wrote hello.txt".into()
            },
            raw(&line)
        ]
    );

    let mut call = example_value(2);
    if let Some(block) = call
        .pointer_mut("/message/content/0")
        .and_then(Value::as_object_mut)
    {
        block.remove("id");
    }
    let call = call.to_string();
    assert_eq!(parse_all(&[&call]), vec![raw(&call)]);

    let mut user = example_value(3);
    user["message"]["content"] = json!([{"type": "image", "source": {}}]);
    let user = user.to_string();
    assert_eq!(parse_all(&[&user]), vec![raw(&user)]);
}

/// Every top-level field of every real line replaced by values of other
/// types: no panic, and nothing but partial messages gives no event.
#[test]
fn wrong_field_types_never_panic_nor_vanish() {
    let odd = [
        json!(null),
        json!(42),
        json!(-1),
        json!(1.5),
        json!("x"),
        json!([]),
        json!({}),
        json!([1, "a"]),
    ];
    let mut p = ClaudeStreamParser::new();
    for (n, line) in EVENT_EXAMPLES.lines().chain(TRANSCRIPT.lines()).enumerate() {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {n}: {e}"));
        let Some(obj) = value.as_object() else {
            continue;
        };
        for key in obj.keys() {
            for replacement in &odd {
                let mut changed = obj.clone();
                changed.insert(key.clone(), replacement.clone());
                let is_stream_event = changed.get("type") == Some(&json!("stream_event"));
                let text = Value::Object(changed).to_string();
                let events = p.push_line(&text);
                assert!(is_stream_event || !events.is_empty(), "{text}");
            }
        }
    }
}

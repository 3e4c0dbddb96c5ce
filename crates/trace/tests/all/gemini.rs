//! `GeminiStreamParser` on real captured `gemini -p --output-format
//! stream-json` output.
//!
//! Fixtures (`tests/fixtures/`):
//! - `gemini_event_examples.jsonl`: a copy of the real capture in
//!   `shared/docs/harness-probe/examples/` (gemini-cli 0.61.0 against the
//!   probe's mock: one shell call);
//! - `gemini_scripted_tools.jsonl`, `gemini_scripted_api_error.jsonl`:
//!   gemini-cli 0.61.0 run against errand's scripted model (`errand-model`)
//!   with scenarios that write, read, `replace`, run a failing `ls`, `exit
//!   3`, read outside the workspace (a tool error), and answer a 400.
//!
//! Lines no capture holds (several deltas, warnings, cached tokens) are made
//! here from a real line with only the named fields changed.

use errand_core::{EventKind, Usage};
use errand_trace::{GeminiOutcome, GeminiStreamParser};
use serde::Serialize;
use serde_json::{json, Value};

const EVENT_EXAMPLES: &str = include_str!("../fixtures/gemini_event_examples.jsonl");
const SCRIPTED_TOOLS: &str = include_str!("../fixtures/gemini_scripted_tools.jsonl");
const SCRIPTED_API_ERROR: &str = include_str!("../fixtures/gemini_scripted_api_error.jsonl");

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

fn feed(parser: &mut GeminiStreamParser, lines: &[&str]) -> Vec<EventKind> {
    lines.iter().flat_map(|l| parser.push_line(l)).collect()
}

fn parse_all(lines: &[&str]) -> Vec<EventKind> {
    feed(&mut GeminiStreamParser::new(), lines)
}

fn raw(line: &str) -> EventKind {
    EventKind::Raw {
        line: line.to_owned(),
    }
}

fn message(text: &str) -> EventKind {
    EventKind::AssistantMessage { text: text.into() }
}

/// The assistant delta line (line 5) with `content` replaced.
fn delta(content: &str) -> String {
    let mut v = example_value(5);
    v["content"] = json!(content);
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
    /// What `flush` gave at the end of the stream.
    flushed: Vec<EventKind>,
    session_id: Option<String>,
    outcome: Option<GeminiOutcome>,
}

/// The whole output of a parser fed `text`, grouped by input line (from 1).
fn parse_fixture(text: &str) -> Parse {
    let mut parser = GeminiStreamParser::new();
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
        flushed: parser.flush(),
        session_id: parser.session_id().map(str::to_owned),
        outcome: parser.outcome().cloned(),
    }
}

// ---- whole fixtures, against reviewed snapshots ----

#[test]
fn stream_json_examples_snapshot() {
    insta::assert_yaml_snapshot!(parse_fixture(EVENT_EXAMPLES));
}

#[test]
fn scripted_tools_snapshot() {
    insta::assert_yaml_snapshot!(parse_fixture(SCRIPTED_TOOLS));
}

#[test]
fn scripted_api_error_snapshot() {
    insta::assert_yaml_snapshot!(parse_fixture(SCRIPTED_API_ERROR));
}

// ---- mapping ----

#[test]
fn init_starts_the_session_and_the_prompt_is_a_user_message() {
    let mut p = GeminiStreamParser::new();
    assert_eq!(
        feed(&mut p, &[example(1), example(2)]),
        vec![
            EventKind::SessionStart {
                session_id: Some("3f7ebf8a-45fe-482b-a813-c49093f2dccc".into()),
                model: Some("auto".into()),
                cwd: None,
                tools: vec![],
            },
            EventKind::UserMessage {
                text: "write hello".into()
            }
        ]
    );
    assert_eq!(p.session_id(), Some("3f7ebf8a-45fe-482b-a813-c49093f2dccc"));
    assert_eq!(p.outcome(), None);
}

#[test]
fn shell_calls_are_bash_calls_with_the_command_only() {
    let events = parse_all(&[example(3), example(4)]);
    assert_eq!(
        events,
        vec![
            EventKind::ToolCall {
                id: "run_shell_command__run_shell_command_1795472651524_0".into(),
                name: "Bash".into(),
                input: json!({"command": "echo hi > hello.txt && ls"}),
                parent_id: None,
            },
            // Success without a stated exit code: the code is not known.
            EventKind::ToolResult {
                id: "run_shell_command__run_shell_command_1795472651524_0".into(),
                output: "README.md\nhello.txt".into(),
                is_error: false,
                exit_code: None,
            }
        ]
    );
}

#[test]
fn deltas_accumulate_into_one_message_per_run() {
    let (a, b, c) = (delta("Done: "), delta("ran the "), delta("command."));
    let mut p = GeminiStreamParser::new();
    // Nothing while the deltas come ...
    assert_eq!(feed(&mut p, &[&a, &b, &c]), vec![]);
    // ... one message when the run ends (here at `result`), before its events.
    let events = p.push_line(example(6));
    assert_eq!(events[0], message("Done: ran the command."));
    assert!(matches!(events[1], EventKind::Usage(_)), "{events:?}");
    assert!(
        matches!(&events[2], EventKind::Result { text: Some(t), .. } if t == "Done: ran the command."),
        "{events:?}"
    );
    assert_eq!(
        p.outcome().and_then(|o| o.last_message.as_deref()),
        Some("Done: ran the command.")
    );

    // A tool call between two runs makes two messages, in order.
    let events = parse_all(&[&a, example(3), &b, &c, example(4)]);
    assert_eq!(events[0], message("Done: "));
    assert!(
        matches!(events[1], EventKind::ToolCall { .. }),
        "{events:?}"
    );
    assert_eq!(events[2], message("ran the command."));
    assert!(
        matches!(events[3], EventKind::ToolResult { .. }),
        "{events:?}"
    );

    // A user message (a new role) ends the run too.
    let events = parse_all(&[&a, example(2)]);
    assert_eq!(events[0], message("Done: "));
    assert!(matches!(events[1], EventKind::UserMessage { .. }));

    // So does an unparsable line, which stays after the message.
    let events = parse_all(&[&a, "garbage"]);
    assert_eq!(events, vec![message("Done: "), raw("garbage")]);

    // A stream that just stops: `flush` gives the pending message, once.
    let mut p = GeminiStreamParser::new();
    assert_eq!(feed(&mut p, &[&a, &b]), vec![]);
    assert_eq!(p.flush(), vec![message("Done: ran the ")]);
    assert_eq!(p.flush(), vec![]);

    // Blank lines neither end a run nor give anything.
    let events = parse_all(&[&a, "", "  ", &c, example(2)]);
    assert_eq!(events[0], message("Done: command."));
}

#[test]
fn blank_deltas_and_a_whole_assistant_message() {
    // Only blank text: no message.
    assert_eq!(
        parse_all(&[&delta(""), &delta("  \n"), example(2)]),
        vec![EventKind::UserMessage {
            text: "write hello".into()
        }]
    );
    // A message without `delta: true` is a message by itself.
    let mut whole = example_value(5);
    if let Some(o) = whole.as_object_mut() {
        o.remove("delta");
    }
    let whole = whole.to_string();
    let events = parse_all(&[&delta("a"), &whole]);
    assert_eq!(
        events,
        vec![message("a"), message("Done: ran the command.")]
    );
}

#[test]
fn writes_and_replaces_are_file_edits_when_they_succeed() {
    // Real: write_file then its result; the edit comes with the result.
    let mut p = GeminiStreamParser::new();
    let call = p.push_line(tools(3));
    assert_eq!(
        call,
        vec![EventKind::ToolCall {
            id: "write_file__write_file_1795678991871_0".into(),
            name: "write_file".into(),
            input: json!({"content": "one\ntwo\n", "file_path": "/tmp/probe/w-tools/notes.txt"}),
            parent_id: None,
        }]
    );
    assert_eq!(
        p.push_line(tools(4)),
        vec![
            EventKind::FileEdit {
                path: "/tmp/probe/w-tools/notes.txt".into(),
                diff: Some(
                    "--- a/tmp/probe/w-tools/notes.txt\n+++ b/tmp/probe/w-tools/notes.txt\n@@ -0,0 +1,2 @@\n+one\n+two\n"
                        .into()
                ),
                added: 2,
                removed: 0,
            },
            // write_file reports no output.
            EventKind::ToolResult {
                id: "write_file__write_file_1795678991871_0".into(),
                output: String::new(),
                is_error: false,
                exit_code: None,
            }
        ]
    );
    // Real: replace with a relative path, kept as given.
    let events = parse_all(&[tools(7), tools(8)]);
    assert_eq!(
        events[1],
        EventKind::FileEdit {
            path: "notes.txt".into(),
            diff: Some("--- a/notes.txt\n+++ b/notes.txt\n@@ -1 +1 @@\n-two\n+three\n".into()),
            added: 1,
            removed: 1,
        }
    );
    // A failed write changed nothing: no edit.
    let mut failed: Value = serde_json::from_str(tools(4)).unwrap_or_default();
    failed["status"] = json!("error");
    failed["error"] = json!({"type": "permission_denied", "message": "denied"});
    let events = parse_all(&[tools(3), &failed.to_string()]);
    assert_eq!(
        events[1],
        EventKind::ToolResult {
            id: "write_file__write_file_1795678991871_0".into(),
            output: "denied".into(),
            is_error: true,
            exit_code: None,
        }
    );
    assert_eq!(events.len(), 2);
    // A result whose call was not seen gives no edit.
    assert!(matches!(
        &parse_all(&[tools(4)])[..],
        [EventKind::ToolResult { .. }]
    ));
}

#[test]
fn shell_exit_codes_only_where_the_output_states_them() {
    // Real: `exit 3` without output is reported as success, with the code in the text.
    let events = parse_all(&[tools(11), tools(12)]);
    assert_eq!(
        events[1],
        EventKind::ToolResult {
            id: "run_shell_command__run_shell_command_1795678992220_0".into(),
            output: "Command exited with code: 3".into(),
            is_error: true,
            exit_code: Some(3),
        }
    );
    // Real: `ls /nonexistent` (exit 2) is reported as success with its
    // stderr only; the failure cannot be seen.
    let events = parse_all(&[tools(9), tools(10)]);
    assert_eq!(
        events[1],
        EventKind::ToolResult {
            id: "run_shell_command__run_shell_command_1795678992115_0".into(),
            output: "ls: cannot access '/nonexistent': No such file or directory".into(),
            is_error: false,
            exit_code: None,
        }
    );
}

#[test]
fn a_tool_error_is_an_error_result() {
    // Real: read_file outside the workspace.
    let events = parse_all(&[tools(13), tools(14)]);
    assert_eq!(events.len(), 2);
    assert!(
        matches!(
            &events[1],
            EventKind::ToolResult { is_error: true, exit_code: None, output, .. }
                if output.starts_with("Path not in workspace")
        ),
        "{events:?}"
    );
}

#[test]
fn error_lines_are_errors_or_warnings_by_severity() {
    // gemini-cli 0.61.0 writes `{"type":"error","timestamp","severity","message"}`.
    let warning = r#"{"type":"error","timestamp":"2026-11-23T22:24:11.600Z","severity":"warning","message":"Agent execution blocked: hook said no"}"#;
    let error = r#"{"type":"error","timestamp":"2026-11-23T22:24:11.600Z","severity":"error","message":"Maximum session turns exceeded"}"#;
    let mut p = GeminiStreamParser::new();
    assert_eq!(
        feed(&mut p, &[warning, error]),
        vec![
            EventKind::Warning {
                message: "Agent execution blocked: hook said no".into()
            },
            EventKind::Error {
                message: "Maximum session turns exceeded".into()
            }
        ]
    );
    p.push_line(example(6));
    assert_eq!(
        p.outcome().map(|o| o.warnings.clone()),
        Some(vec!["Agent execution blocked: hook said no".to_owned()])
    );
    // Without a message the line is not understood.
    let bare = r#"{"type":"error","severity":"error"}"#;
    assert_eq!(parse_all(&[bare]), vec![raw(bare)]);
}

#[test]
fn result_gives_usage_and_a_result() {
    let events = parse_all(&[example(5), example(6)]);
    let usage = Usage {
        input_tokens: 300,
        output_tokens: 60,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cost_usd: None,
    };
    assert_eq!(
        events,
        vec![
            message("Done: ran the command."),
            EventKind::Usage(usage.clone()),
            EventKind::Result {
                is_error: false,
                text: Some("Done: ran the command.".into()),
                turns: None,
                duration_ms: Some(272),
                usage
            }
        ]
    );
    // Cached tokens are counted apart from fresh input.
    let mut cached = example_value(6);
    cached["stats"]["cached"] = json!(200);
    let events = parse_all(&[&cached.to_string()]);
    assert_eq!(
        events[0],
        EventKind::Usage(Usage {
            input_tokens: 100,
            output_tokens: 60,
            cache_read_tokens: 200,
            cache_write_tokens: 0,
            cost_usd: None,
        })
    );
}

#[test]
fn a_real_api_error_result_is_readable() {
    let mut p = GeminiStreamParser::new();
    let events: Vec<EventKind> = SCRIPTED_API_ERROR
        .lines()
        .flat_map(|l| p.push_line(l))
        .collect();
    let outcome = p.outcome().cloned().unwrap_or_default();
    assert!(outcome.is_error);
    assert_eq!(outcome.error_type.as_deref(), Some("unknown"));
    assert_eq!(
        outcome.error_message().as_deref(),
        Some("scripted refusal (INVALID_ARGUMENT)")
    );
    assert!(matches!(
        events.last(),
        Some(EventKind::Error { message }) if message == "scripted refusal (INVALID_ARGUMENT)"
    ));
    assert!(
        events.iter().any(|e| matches!(
            e,
            EventKind::Result { is_error: true, text: Some(t), .. } if t == "scripted refusal (INVALID_ARGUMENT)"
        )),
        "{events:?}"
    );
}

// ---- lines that are not (fully) understood ----

#[test]
fn malformed_json_is_raw() {
    for line in [
        "not json",
        "{",
        "{\"type\":\"result\",",
        "}{",
        "{\"type\": \"init\"} trailing",
        "42",
        "[{\"type\":\"init\"}]",
        "null",
    ] {
        assert_eq!(parse_all(&[line]), vec![raw(line)], "{line}");
    }
}

#[test]
fn every_truncated_line_is_raw() {
    for fixture in [EVENT_EXAMPLES, SCRIPTED_TOOLS, SCRIPTED_API_ERROR] {
        let mut p = GeminiStreamParser::new();
        for line in fixture.lines() {
            for (cut, _) in line.char_indices().skip(1) {
                let half = &line[..cut];
                assert_eq!(p.push_line(half), vec![raw(half)], "{half}");
            }
        }
        assert_eq!(p.flush(), vec![]);
        assert_eq!(p.outcome(), None);
        assert_eq!(p.session_id(), None);
    }
}

#[test]
fn unknown_types_and_roles_are_raw() {
    let mut odd_role = example_value(2);
    odd_role["role"] = json!("system");
    let odd_role = odd_role.to_string();
    for line in [
        "{\"type\":\"brand_new\"}",
        "{\"type\":42}",
        "{\"no_type\":true}",
        "{}",
        odd_role.as_str(),
    ] {
        assert_eq!(parse_all(&[line]), vec![raw(line)], "{line}");
    }
}

#[test]
fn blank_lines_give_nothing_and_crlf_parses() {
    assert_eq!(parse_all(&["", "   ", "\t", "\r"]), vec![]);
    let line = format!("{}\r", example(2));
    assert_eq!(
        parse_all(&[&line]),
        vec![EventKind::UserMessage {
            text: "write hello".into()
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
    change(1, "/session_id", json!(5));
    change(1, "/model", json!(["auto"]));
    change(2, "/content", json!({"text": "x"}));
    change(2, "/role", json!(null));
    change(3, "/tool_name", json!(1));
    change(3, "/tool_id", json!(null));
    change(3, "/parameters", json!("echo"));
    change(4, "/status", json!(true));
    change(4, "/output", json!(["a"]));
    change(6, "/status", json!(0));
    change(6, "/stats", json!("lots"));
    for line in &cases {
        assert_eq!(parse_all(&[line]), vec![raw(line)], "{line}");
    }
    // A delta whose content is not text is not a delta: Raw.
    let mut odd = example_value(5);
    odd["content"] = json!(7);
    let odd = odd.to_string();
    assert_eq!(parse_all(&[&odd]), vec![raw(&odd)]);
    // Odd but harmless values are tolerated.
    let mut floats = example_value(6);
    floats["stats"]["input_tokens"] = json!(12.0);
    floats["stats"]["output_tokens"] = json!(-3);
    floats["stats"]["duration_ms"] = json!("slow");
    let events = parse_all(&[&floats.to_string()]);
    assert_eq!(
        events[0],
        EventKind::Usage(Usage {
            input_tokens: 12,
            ..Default::default()
        })
    );
}

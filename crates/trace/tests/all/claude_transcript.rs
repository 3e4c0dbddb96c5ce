//! `ClaudeTranscriptParser` on real Claude Code session transcripts.
//!
//! Fixtures (`tests/fixtures/`):
//! - `claude_session_transcript_sample.jsonl`: a copy of the capture in
//!   `shared/docs/harness-probe/examples/` (one Bash call);
//! - `claude_transcript_edits.jsonl`: the transcript Claude Code 2.1.197
//!   wrote (`$HOME/.claude/projects/…`) running against errand's scripted
//!   model (`errand mock-model`) with the steps Write, Edit, Bash, a failing
//!   Bash, Read, text; only the work directory was renamed to `/tmp/ws-cc`.
//!
//! Lines no capture holds (a sub-agent's sidechain, a failed edit, an API
//! error message) are made here from a real line with only the named fields
//! changed.

use errand_core::{EventKind, Usage};
use errand_trace::ClaudeTranscriptParser;
use serde::Serialize;
use serde_json::{json, Value};

const SAMPLE: &str = include_str!("../fixtures/claude_session_transcript_sample.jsonl");
const EDITS: &str = include_str!("../fixtures/claude_transcript_edits.jsonl");

fn parse_all(text: &str) -> Vec<EventKind> {
    let mut p = ClaudeTranscriptParser::new();
    text.lines().flat_map(|l| p.push_line(l)).collect()
}

/// Line `n` (from 1) of `text`, parsed.
fn line_value(text: &str, n: usize) -> Value {
    let line = text.lines().nth(n - 1).expect("line exists");
    serde_json::from_str(line).expect("fixture line is JSON")
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

fn by_line(text: &str) -> Vec<LineEvents> {
    let mut p = ClaudeTranscriptParser::new();
    text.lines()
        .enumerate()
        .map(|(i, l)| LineEvents {
            line: i + 1,
            events: p.push_line(l),
        })
        .filter(|l| !l.events.is_empty())
        .collect()
}

fn total_usage(events: &[EventKind]) -> Usage {
    let mut total = Usage::default();
    for e in events {
        if let EventKind::Usage(u) = e {
            total.input_tokens += u.input_tokens;
            total.output_tokens += u.output_tokens;
            total.cache_read_tokens += u.cache_read_tokens;
            total.cache_write_tokens += u.cache_write_tokens;
        }
    }
    total
}

// ---- whole fixtures ----

#[test]
fn sample_snapshot() {
    insta::assert_yaml_snapshot!(by_line(SAMPLE));
}

#[test]
fn edits_snapshot() {
    insta::assert_yaml_snapshot!(by_line(EDITS));
}

#[test]
fn a_real_session_gives_calls_results_edits_and_usage() {
    let events = parse_all(EDITS);
    assert!(!events.iter().any(|e| matches!(e, EventKind::Raw { .. })));

    let starts: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, EventKind::SessionStart { .. }))
        .collect();
    assert_eq!(
        starts,
        [&EventKind::SessionStart {
            session_id: Some("ecc6b9f9-fbd3-4f30-86d9-26795466cac1".into()),
            model: None,
            cwd: Some("/tmp/ws-cc".into()),
            tools: vec![],
        }]
    );
    assert_eq!(
        events[1],
        EventKind::UserMessage {
            text: "do it".into()
        }
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
            ("toolu_0000", "Write"),
            ("toolu_0001", "Edit"),
            ("toolu_0002", "Bash"),
            ("toolu_0003", "Bash"),
            ("toolu_0004", "Read")
        ]
    );

    let results: Vec<(&str, bool, Option<i32>)> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::ToolResult {
                id,
                is_error,
                exit_code,
                ..
            } => Some((id.as_str(), *is_error, *exit_code)),
            _ => None,
        })
        .collect();
    assert_eq!(
        results,
        [
            ("toolu_0000", false, None),
            ("toolu_0001", false, None),
            ("toolu_0002", false, Some(0)),
            ("toolu_0003", true, Some(1)),
            ("toolu_0004", false, None)
        ]
    );

    // The Write's diff is from empty; the Edit's comes from the applied
    // `structuredPatch`, with the file's real line numbers.
    let edits: Vec<&EventKind> = events
        .iter()
        .filter(|e| matches!(e, EventKind::FileEdit { .. }))
        .collect();
    assert_eq!(
        edits,
        [
            &EventKind::FileEdit {
                path: "/tmp/ws-cc/notes.txt".into(),
                diff: Some(
                    "--- a/notes.txt\n+++ b/notes.txt\n@@ -0,0 +1,3 @@\n+alpha\n+beta\n+gamma\n"
                        .into()
                ),
                added: 3,
                removed: 0
            },
            &EventKind::FileEdit {
                path: "/tmp/ws-cc/notes.txt".into(),
                diff: Some(
                    "--- a/notes.txt\n+++ b/notes.txt\n@@ -1,3 +1,4 @@\n alpha\n-beta\n+BETA\n+beta2\n gamma\n"
                        .into()
                ),
                added: 2,
                removed: 1
            }
        ]
    );
    // Each edit comes right before its call's result.
    for (i, e) in events.iter().enumerate() {
        if matches!(e, EventKind::FileEdit { .. }) {
            assert!(
                matches!(&events[i + 1], EventKind::ToolResult { id, .. } if id == "toolu_0000" || id == "toolu_0001"),
                "{:?}",
                events[i + 1]
            );
        }
    }

    // Six model messages, each counted once.
    assert_eq!(
        total_usage(&events),
        Usage {
            input_tokens: 28869 + 28964 + 29070 + 29145 + 29210 + 29277,
            output_tokens: 34 + 38 + 32 + 28 + 26 + 17,
            ..Usage::default()
        }
    );
    assert_eq!(
        events.last(),
        Some(&EventKind::Usage(Usage {
            input_tokens: 29277,
            output_tokens: 17,
            // Not in the transcript: errand's estimate for its model.
            cost_usd: errand_trace::estimate_cost_usd(
                "claude-sonnet-4-5",
                &Usage {
                    input_tokens: 29277,
                    output_tokens: 17,
                    ..Usage::default()
                }
            ),
            ..Usage::default()
        }))
    );
    assert!(events.contains(&EventKind::AssistantMessage {
        text: "Done: wrote, edited and read notes.txt.".into()
    }));
}

#[test]
fn the_shared_sample_gives_a_bash_call_with_exit_code() {
    let events = parse_all(SAMPLE);
    assert!(!events.iter().any(|e| matches!(e, EventKind::Raw { .. })));
    assert!(events.contains(&EventKind::ToolResult {
        id: "toolu_0023".into(),
        output: "Everything up-to-date".into(),
        is_error: false,
        exit_code: Some(0),
    }));
    assert_eq!(total_usage(&events).output_tokens, 10);
}

// ---- robustness ----

#[test]
fn no_line_or_prefix_of_a_line_panics() {
    for text in [SAMPLE, EDITS] {
        let mut p = ClaudeTranscriptParser::new();
        for line in text.lines() {
            p.push_line(line);
            let mut fresh = ClaudeTranscriptParser::new();
            for (cut, _) in line.char_indices().step_by(37) {
                let events = fresh.push_line(&line[..cut]);
                if cut > 0 {
                    assert_eq!(events, vec![raw(&line[..cut])]);
                }
            }
        }
    }
}

#[test]
fn malformed_and_unknown_lines_are_raw_and_bookkeeping_gives_nothing() {
    let mut p = ClaudeTranscriptParser::new();
    for line in [
        "not json",
        "[1,2]",
        r#"{"no":"type"}"#,
        r#"{"type":"brand-new"}"#,
    ] {
        assert_eq!(p.push_line(line), vec![raw(line)], "{line}");
    }
    assert!(p.push_line("").is_empty());
    assert!(p.push_line("   ").is_empty());
    // Lines 1, 2, 4, 5 and 17 are queue operations, attachments, last-prompt.
    for n in [1, 2, 4, 5, 17] {
        let line = EDITS.lines().nth(n - 1).expect("line");
        assert!(p.push_line(line).is_empty(), "line {n}");
    }
    assert!(p
        .push_line(r#"{"type":"summary","summary":"Title","leafUuid":"x"}"#)
        .is_empty());
    assert!(p
        .push_line(r#"{"type":"file-history-snapshot","messageId":"m","snapshot":{}}"#)
        .is_empty());
}

#[test]
fn an_unknown_block_keeps_the_rest_and_the_whole_line() {
    let mut v = line_value(EDITS, 16);
    v["message"]["content"]
        .as_array_mut()
        .expect("content")
        .push(json!({"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {}}));
    let line = v.to_string();
    let events = ClaudeTranscriptParser::new().push_line(&line);
    assert!(events.contains(&EventKind::AssistantMessage {
        text: "Done: wrote, edited and read notes.txt.".into()
    }));
    assert_eq!(events.last(), Some(&raw(&line)));
}

// ---- mapping details ----

#[test]
fn a_failed_edit_gives_no_file_edit() {
    let mut p = ClaudeTranscriptParser::new();
    // The real Edit call (line 8), then its result turned into an error.
    p.push_line(EDITS.lines().nth(7).expect("line 8"));
    let mut result = line_value(EDITS, 9);
    result["message"]["content"][0]["is_error"] = json!(true);
    result["message"]["content"][0]["content"] =
        json!("<tool_use_error>String to replace not found in file.</tool_use_error>");
    result["toolUseResult"] = json!("Error: String to replace not found in file.");
    let events = p.push_line(&result.to_string());
    assert_eq!(
        events,
        [EventKind::ToolResult {
            id: "toolu_0001".into(),
            output: "<tool_use_error>String to replace not found in file.</tool_use_error>".into(),
            is_error: true,
            exit_code: None,
        }]
    );
}

#[test]
fn a_structured_patch_without_its_call_still_gives_the_edit() {
    // The Edit's result alone (a transcript read from the middle).
    let events = ClaudeTranscriptParser::new().push_line(EDITS.lines().nth(8).expect("line 9"));
    assert!(matches!(
        &events[1],
        EventKind::FileEdit { path, added: 2, removed: 1, .. } if path == "/tmp/ws-cc/notes.txt"
    ));
}

#[test]
fn an_edit_without_structured_patch_uses_the_calls_input() {
    let mut p = ClaudeTranscriptParser::new();
    p.push_line(EDITS.lines().nth(7).expect("line 8"));
    let mut result = line_value(EDITS, 9);
    result
        .as_object_mut()
        .expect("object")
        .remove("toolUseResult");
    let events = p.push_line(&result.to_string());
    assert_eq!(
        events[0],
        EventKind::FileEdit {
            path: "/tmp/ws-cc/notes.txt".into(),
            diff: Some(
                "--- a/notes.txt\n+++ b/notes.txt\n@@ -1 +1,2 @@\n-beta\n+BETA\n+beta2\n".into()
            ),
            added: 2,
            removed: 1
        }
    );
}

#[test]
fn meta_lines_and_api_errors() {
    let mut p = ClaudeTranscriptParser::new();
    let mut meta = line_value(EDITS, 3);
    meta["isMeta"] = json!(true);
    meta["message"]["content"] = json!(
        "Caveat: The messages below were generated by the user while running local commands."
    );
    assert!(matches!(
        p.push_line(&meta.to_string()).as_slice(),
        [EventKind::SessionStart { .. }]
    ));

    let mut error = line_value(EDITS, 16);
    error["isApiErrorMessage"] = json!(true);
    error["message"]["model"] = json!("<synthetic>");
    error["message"]["content"] = json!([{"type": "text", "text": "API Error: 500 boom"}]);
    error["message"]["usage"] = json!({"input_tokens": 0, "output_tokens": 0});
    assert_eq!(
        p.push_line(&error.to_string()),
        [EventKind::Error {
            message: "API Error: 500 boom".into()
        }]
    );
}

#[test]
fn a_new_session_id_starts_a_new_session() {
    let mut p = ClaudeTranscriptParser::new();
    let first = p.push_line(EDITS.lines().nth(2).expect("line 3"));
    assert!(matches!(first[0], EventKind::SessionStart { .. }));
    let mut resumed = line_value(EDITS, 3);
    resumed["sessionId"] = json!("another");
    let events = p.push_line(&resumed.to_string());
    assert!(matches!(
        &events[0],
        EventKind::SessionStart { session_id: Some(id), .. } if id == "another"
    ));
    assert_eq!(p.session_id(), Some("another"));
}

/// A `Task` call, its sub-agent's sidechain lines, and the `Task` result:
/// the sub-agent's calls name the `Task` call as their parent.
#[test]
fn sub_agent_calls_are_attributed_to_their_task() {
    let mut p = ClaudeTranscriptParser::new();
    let mut task = line_value(EDITS, 10);
    task["message"]["content"] = json!([{
        "type": "tool_use", "id": "toolu_task", "name": "Task",
        "input": {"description": "look around", "prompt": "List the files", "subagent_type": "Explore"}
    }]);
    task["message"]["id"] = json!("msg_task");
    p.push_line(&task.to_string());

    let mut root = line_value(EDITS, 3);
    root["isSidechain"] = json!(true);
    root["parentUuid"] = Value::Null;
    root["uuid"] = json!("side-1");
    root["message"]["content"] = json!("List the files");
    // The sub-agent's prompt is already in the Task call.
    assert!(p.push_line(&root.to_string()).is_empty());

    let mut call = line_value(EDITS, 10);
    call["isSidechain"] = json!(true);
    call["parentUuid"] = json!("side-1");
    call["uuid"] = json!("side-2");
    call["message"]["id"] = json!("msg_side");
    call["message"]["content"][0]["id"] = json!("toolu_side");
    let events = p.push_line(&call.to_string());
    assert!(
        matches!(
            &events[0],
            EventKind::ToolCall { id, parent_id: Some(parent), .. } if id == "toolu_side" && parent == "toolu_task"
        ),
        "{events:?}"
    );

    let mut done = line_value(EDITS, 11);
    done["message"]["content"][0]["tool_use_id"] = json!("toolu_task");
    done["toolUseResult"] =
        json!({"status": "completed", "content": [{"type": "text", "text": "two files"}]});
    done["message"]["content"][0]["content"] = json!([{"type": "text", "text": "two files"}]);
    let events = p.push_line(&done.to_string());
    assert!(matches!(
        &events[0],
        EventKind::ToolResult { id, output, is_error: false, exit_code: None } if id == "toolu_task" && output == "two files"
    ));

    // A later line of that sidechain still knows its parent.
    call["parentUuid"] = json!("side-2");
    call["uuid"] = json!("side-3");
    call["message"]["id"] = json!("msg_side2");
    call["message"]["content"][0]["id"] = json!("toolu_side2");
    let events = p.push_line(&call.to_string());
    assert!(matches!(
        &events[0],
        EventKind::ToolCall { parent_id: Some(parent), .. } if parent == "toolu_task"
    ));

    // A sidechain nothing can be told of has no parent.
    let mut orphan = call.clone();
    orphan["parentUuid"] = json!("unknown");
    orphan["uuid"] = json!("side-9");
    orphan["message"]["content"][0]["id"] = json!("toolu_orphan");
    let events = p.push_line(&orphan.to_string());
    assert!(matches!(
        &events[0],
        EventKind::ToolCall {
            parent_id: None,
            ..
        }
    ));
}

//! `parse_trace` / `parse_reader` on whole files: every real fixture, and
//! the same files damaged (truncated, with a bad line, empty, of no known
//! format).

use std::io::BufReader;

use chrono::{DateTime, Utc};
use errand_core::{Event, EventKind, EventSource, RunState};
use errand_trace::{
    parse_reader, parse_trace, ClaudeStreamParser, ParsedTrace, TraceEvent, TraceFormat,
    TraceParser,
};

const CLAUDE_STREAM: &str = include_str!("../fixtures/claude_event_examples.jsonl");
const TRANSCRIPT: &str = include_str!("../fixtures/claude_transcript_edits.jsonl");
const ROLLOUT: &str = include_str!("../fixtures/codex_rollout_patch.jsonl");

const FIXTURES: &[(&str, &str, Option<TraceFormat>)] = &[
    (
        "claude stream",
        CLAUDE_STREAM,
        Some(TraceFormat::ClaudeStreamJson),
    ),
    (
        "claude transcript sample",
        include_str!("../fixtures/claude_session_transcript_sample.jsonl"),
        Some(TraceFormat::ClaudeTranscript),
    ),
    (
        "claude transcript",
        TRANSCRIPT,
        Some(TraceFormat::ClaudeTranscript),
    ),
    (
        "codex exec",
        include_str!("../fixtures/codex_event_examples.jsonl"),
        Some(TraceFormat::CodexExecJson),
    ),
    (
        "codex rollout sample",
        include_str!("../fixtures/codex_rollout_sample.jsonl"),
        Some(TraceFormat::CodexRollout),
    ),
    ("codex rollout", ROLLOUT, Some(TraceFormat::CodexRollout)),
    (
        "gemini",
        include_str!("../fixtures/gemini_scripted_tools.jsonl"),
        Some(TraceFormat::GeminiStreamJson),
    ),
    (
        "opencode",
        include_str!("../fixtures/opencode_scripted_tools.jsonl"),
        Some(TraceFormat::OpenCodeJson),
    ),
    (
        "gemini saved chat",
        include_str!("../fixtures/gemini_session_sample.jsonl"),
        Some(TraceFormat::GeminiChat),
    ),
    (
        "gemini saved chat, one document",
        include_str!("../fixtures/gemini_chat_0.20_tools.json"),
        Some(TraceFormat::GeminiChat),
    ),
];

fn kinds(t: &ParsedTrace) -> Vec<&EventKind> {
    t.kinds().collect()
}

fn messages(t: &ParsedTrace) -> Vec<&str> {
    t.problems.iter().map(|p| p.message.as_str()).collect()
}

fn is_raw(k: &EventKind) -> bool {
    matches!(k, EventKind::Raw { .. })
}

#[test]
fn every_fixture_reads_whole_without_problems() {
    for (name, text, format) in FIXTURES {
        let t = parse_trace(text);
        assert_eq!(t.format, *format, "{name}");
        assert_eq!(t.lines, text.lines().count(), "{name}");
        match format {
            Some(_) => {
                assert!(t.problems.is_empty(), "{name}: {:?}", t.problems);
                assert!(!t.events.is_empty(), "{name}");
                // Events are in line order, each from a real line.
                let lines: Vec<usize> = t.events.iter().map(|e| e.line).collect();
                assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{name}");
                assert!(lines.iter().all(|&l| l >= 1 && l <= t.lines), "{name}");
            }
            None => {
                assert!(t.events.is_empty(), "{name}");
                assert_eq!(t.problems.len(), 1, "{name}");
                assert!(
                    t.problems[0]
                        .message
                        .starts_with("could not tell the format of this file"),
                    "{name}: {:?}",
                    t.problems
                );
            }
        }
    }
}

#[test]
fn the_reader_gives_what_the_text_gives() {
    for (name, text, _) in FIXTURES {
        // A tiny buffer, so lines arrive in many reads.
        let read = parse_reader(BufReader::with_capacity(7, text.as_bytes())).expect("reads");
        assert_eq!(read, parse_trace(text), "{name}");
    }
}

#[test]
fn a_file_gives_what_its_parser_gives_line_by_line() {
    let mut p = ClaudeStreamParser::new();
    let direct: Vec<EventKind> = CLAUDE_STREAM.lines().flat_map(|l| p.push_line(l)).collect();
    let t = parse_trace(CLAUDE_STREAM);
    assert_eq!(kinds(&t), direct.iter().collect::<Vec<_>>());
    // Stream JSON has no timestamps; Claude's transcript has.
    assert!(t.events.iter().all(|e| e.ts.is_none()));
    let t = parse_trace(TRANSCRIPT);
    assert!(t.events.iter().all(|e| e.ts.is_some()));
    assert_eq!(
        t.events[0].ts.map(|t| t.to_rfc3339()),
        Some("2026-11-26T09:55:13.095+00:00".to_owned())
    );
}

#[test]
fn transcripts_and_rollouts_give_tool_calls() {
    for text in [TRANSCRIPT, ROLLOUT] {
        let t = parse_trace(text);
        let calls = t
            .kinds()
            .filter(|k| matches!(k, EventKind::ToolCall { .. }))
            .count();
        let edits = t
            .kinds()
            .filter(|k| matches!(k, EventKind::FileEdit { .. }))
            .count();
        assert!(calls >= 4, "{calls}");
        assert!(edits >= 2, "{edits}");
    }
}

#[test]
fn a_truncated_last_line_is_reported_and_the_rest_is_read() {
    for (name, text, _) in FIXTURES
        .iter()
        .filter(|f| f.2.is_some() && !f.0.ends_with("one document"))
    {
        let whole = parse_trace(text);
        let n = text.lines().count();
        let last = text.lines().last().expect("lines");
        let cut = last.len() / 2;
        let cut = (0..=cut)
            .rev()
            .find(|&i| last.is_char_boundary(i))
            .expect("boundary");
        let truncated = format!(
            "{}{}",
            &text[..text.len() - last.len() - usize::from(text.ends_with('\n'))],
            &last[..cut]
        );
        let t = parse_trace(&truncated);
        assert_eq!(t.format, whole.format, "{name}");
        assert_eq!(t.lines, n, "{name}");
        assert_eq!(
            messages(&t),
            [format!(
                "line {n} is truncated: the file ends in the middle of it"
            )],
            "{name}"
        );
        // Everything before the last line is there, as in the whole file;
        // the cut line is kept raw.
        let before = |t: &ParsedTrace| -> Vec<TraceEvent> {
            t.events.iter().filter(|e| e.line < n).cloned().collect()
        };
        assert_eq!(before(&t), before(&whole), "{name}");
        let tail: Vec<&EventKind> = t
            .events
            .iter()
            .filter(|e| e.line == n)
            .map(|e| &e.kind)
            .collect();
        assert!(tail.iter().any(|k| is_raw(k)), "{name}: {tail:?}");
    }
}

#[test]
fn a_bad_line_in_the_middle_is_reported_and_skipped() {
    let mut lines: Vec<&str> = TRANSCRIPT.lines().collect();
    lines.insert(6, "{\"type\":\"user\", oops");
    lines.insert(9, "Warning: something printed to stdout");
    let text = lines.join("\n") + "\n";
    let t = parse_trace(&text);
    assert_eq!(t.format, Some(TraceFormat::ClaudeTranscript));
    assert_eq!(
        messages(&t),
        [
            "line 7 is not JSON: key must be a string at column 17",
            "line 10 is not JSON: expected value at column 1"
        ]
    );
    let whole = parse_trace(TRANSCRIPT);
    let good: Vec<&EventKind> = t.kinds().filter(|k| !is_raw(k)).collect();
    assert_eq!(good, kinds(&whole));
    assert_eq!(t.kinds().filter(|k| is_raw(k)).count(), 2);
}

#[test]
fn crlf_and_a_bom_read_like_plain_lines() {
    let text = format!("\u{feff}{}", ROLLOUT.replace('\n', "\r\n"));
    let t = parse_trace(&text);
    assert!(t.problems.is_empty(), "{:?}", t.problems);
    assert_eq!(kinds(&t), kinds(&parse_trace(ROLLOUT)));
    let read = parse_reader(text.as_bytes()).expect("reads");
    assert_eq!(read, t);
}

#[test]
fn an_empty_file_has_no_format() {
    for text in ["", "\n\n  \n"] {
        let t = parse_trace(text);
        assert_eq!(t.format, None);
        assert!(t.events.is_empty());
        assert_eq!(messages(&t).len(), 1);
        assert!(messages(&t)[0].starts_with("could not tell the format of this file"));
    }
    assert_eq!(
        messages(&parse_trace("")),
        ["could not tell the format of this file: it is empty"]
    );
    assert_eq!(parse_reader(&b""[..]).expect("reads"), parse_trace(""));
}

#[test]
fn a_file_of_another_kind_has_no_format() {
    for text in [
        "hello\nworld\n",
        "# README\n\nsome text\n",
        "[1,2,3]\n{\"a\":1}\n",
        "\u{0}\u{1}binary",
    ] {
        let t = parse_trace(text);
        assert_eq!(t.format, None, "{text:?}");
        assert!(t.events.is_empty());
        assert_eq!(
            messages(&t),
            [
                "could not tell the format of this file: none of its first lines is output of \
              Claude Code, Codex, Gemini CLI, OpenCode or errand"
            ]
        );
    }
}

#[test]
fn invalid_utf8_is_reported_by_the_reader() {
    let mut bytes = ROLLOUT.as_bytes().to_vec();
    // Replace the last line with an invalid byte sequence.
    let keep = ROLLOUT.len() - ROLLOUT.lines().last().expect("line").len() - 1;
    bytes.truncate(keep);
    bytes.extend_from_slice(b"\xff\xfe garbage\n");
    let t = parse_reader(bytes.as_slice()).expect("reads");
    let n = ROLLOUT.lines().count();
    assert_eq!(
        messages(&t),
        [
            format!("line {n} is not JSON: expected value at column 1"),
            format!("line {n} is not valid UTF-8 (read with replacement characters)"),
        ]
    );
}

#[test]
fn errands_own_events_read_back_as_they_were() {
    let ts: DateTime<Utc> = "2026-11-26T07:00:00Z".parse().expect("time");
    let events = [
        Event {
            seq: 1,
            ts,
            source: EventSource::Errand,
            raw_line: None,
            kind: EventKind::State {
                state: RunState::Running,
                reason: None,
            },
        },
        Event {
            seq: 2,
            ts,
            source: EventSource::Harness,
            raw_line: Some(3),
            kind: EventKind::ToolCall {
                id: "t1".into(),
                name: "Bash".into(),
                input: serde_json::json!({"command": "ls"}),
                parent_id: None,
            },
        },
    ];
    let text: String = events
        .iter()
        .map(|e| serde_json::to_string(e).expect("serializes") + "\n")
        .collect();
    let t = parse_trace(&text);
    assert_eq!(t.format, Some(TraceFormat::ErrandEvents));
    assert!(t.problems.is_empty());
    assert_eq!(t.events.len(), 2);
    assert_eq!(t.events[0].source, EventSource::Errand);
    assert_eq!(t.events[1].source, EventSource::Harness);
    for (read, original) in t.events.iter().zip(&events) {
        assert_eq!(read.kind, original.kind);
        assert_eq!(read.ts, Some(ts));
    }
    // As log entries: numbered anew, the line they came from as raw_line.
    let now = Utc::now();
    let back = t.events[1].to_event(7, now);
    assert_eq!(back.seq, 7);
    assert_eq!(back.ts, ts);
    assert_eq!(back.raw_line, Some(2));
    // A line without a timestamp takes the one given.
    let stream = parse_trace(CLAUDE_STREAM);
    assert_eq!(stream.events[0].to_event(1, now).ts, now);

    let mut p = TraceParser::new(TraceFormat::ErrandEvents);
    assert_eq!(
        p.push_line(text.lines().next().expect("line")),
        [events[0].kind.clone()]
    );
    assert_eq!(
        p.push_line("nope"),
        [EventKind::Raw {
            line: "nope".into()
        }]
    );
}

#[test]
fn amp_stream_json_is_read_by_amps_parser() {
    // Amp's documented lines: a `T-` thread id, `create_file` with `path`.
    let text = concat!(
        r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"T-1","tools":["Bash"],"mcp_servers":[]}"#,
        "\n",
        r#"{"type":"assistant","message":{"id":"m1","role":"assistant","content":[{"type":"tool_use","id":"tu1","name":"create_file","input":{"path":"/w/a.txt","content":"hi\n"}}],"usage":{"input_tokens":5,"output_tokens":1}},"session_id":"T-1"}"#,
        "\n"
    );
    let t = parse_trace(text);
    assert_eq!(t.format, Some(TraceFormat::ClaudeStreamJson));
    assert!(t
        .kinds()
        .any(|k| matches!(k, EventKind::FileEdit { path, .. } if path == "/w/a.txt")));
}

#[test]
fn a_cut_one_document_chat_says_so() {
    let text = include_str!("../fixtures/gemini_chat_0.20_tools.json");
    let cut = &text[..text.len() / 2];
    for t in [
        parse_trace(cut),
        parse_reader(BufReader::new(cut.as_bytes())).expect("reads"),
    ] {
        assert_eq!(t.format, Some(TraceFormat::GeminiChat));
        assert_eq!(t.lines, cut.lines().count());
        assert_eq!(t.problems.len(), 1, "{:?}", t.problems);
        assert!(
            t.problems[0].message.contains("one JSON document"),
            "{:?}",
            t.problems
        );
    }
    // A document that is no saved chat is still of no known format.
    let t = parse_trace("{\n  \"a\": [1,\n 2]\n}\n");
    assert_eq!(t.format, None);
}

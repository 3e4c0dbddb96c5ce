//! `detect_format` on every fixture (all real captures, see the other test
//! files), from their first lines and from every single line.

use errand_trace::{detect_format, TraceFormat};

const FIXTURES: &[(&str, &str, Option<TraceFormat>)] = &[
    (
        "claude_event_examples.jsonl",
        include_str!("../fixtures/claude_event_examples.jsonl"),
        Some(TraceFormat::ClaudeStreamJson),
    ),
    (
        "claude_session_transcript_sample.jsonl",
        include_str!("../fixtures/claude_session_transcript_sample.jsonl"),
        Some(TraceFormat::ClaudeTranscript),
    ),
    (
        "claude_transcript_edits.jsonl",
        include_str!("../fixtures/claude_transcript_edits.jsonl"),
        Some(TraceFormat::ClaudeTranscript),
    ),
    (
        "codex_rollout_patch.jsonl",
        include_str!("../fixtures/codex_rollout_patch.jsonl"),
        Some(TraceFormat::CodexRollout),
    ),
    (
        "codex_event_examples.jsonl",
        include_str!("../fixtures/codex_event_examples.jsonl"),
        Some(TraceFormat::CodexExecJson),
    ),
    (
        "codex_rollout_sample.jsonl",
        include_str!("../fixtures/codex_rollout_sample.jsonl"),
        Some(TraceFormat::CodexRollout),
    ),
    (
        "gemini_event_examples.jsonl",
        include_str!("../fixtures/gemini_event_examples.jsonl"),
        Some(TraceFormat::GeminiStreamJson),
    ),
    (
        "gemini_scripted_tools.jsonl",
        include_str!("../fixtures/gemini_scripted_tools.jsonl"),
        Some(TraceFormat::GeminiStreamJson),
    ),
    (
        "gemini_scripted_api_error.jsonl",
        include_str!("../fixtures/gemini_scripted_api_error.jsonl"),
        Some(TraceFormat::GeminiStreamJson),
    ),
    // Gemini CLI's saved chats (`~/.gemini/tmp/…/chats/`).
    (
        "gemini_session_sample.jsonl",
        include_str!("../fixtures/gemini_session_sample.jsonl"),
        Some(TraceFormat::GeminiChat),
    ),
    (
        "gemini_chat_0.61_tools.jsonl",
        include_str!("../fixtures/gemini_chat_0.61_tools.jsonl"),
        Some(TraceFormat::GeminiChat),
    ),
    (
        "gemini_chat_0.61_image.jsonl",
        include_str!("../fixtures/gemini_chat_0.61_image.jsonl"),
        Some(TraceFormat::GeminiChat),
    ),
    (
        "opencode_event_examples.jsonl",
        include_str!("../fixtures/opencode_event_examples.jsonl"),
        Some(TraceFormat::OpenCodeJson),
    ),
    (
        "opencode_scripted_tools.jsonl",
        include_str!("../fixtures/opencode_scripted_tools.jsonl"),
        Some(TraceFormat::OpenCodeJson),
    ),
    (
        "opencode_scripted_unavailable_tools.jsonl",
        include_str!("../fixtures/opencode_scripted_unavailable_tools.jsonl"),
        Some(TraceFormat::OpenCodeJson),
    ),
    (
        "opencode_scripted_api_error.jsonl",
        include_str!("../fixtures/opencode_scripted_api_error.jsonl"),
        Some(TraceFormat::OpenCodeJson),
    ),
];

#[test]
fn every_fixture_is_recognised_from_its_first_lines() {
    for (name, text, want) in FIXTURES {
        let lines: Vec<&str> = text.lines().collect();
        for n in [1, 5] {
            let first = &lines[..n.min(lines.len())];
            assert_eq!(detect_format(first), *want, "{name}, first {n} lines");
        }
        assert_eq!(detect_format(&lines), *want, "{name}, all lines");
    }
}

#[test]
fn no_line_is_mistaken_for_another_format() {
    for (name, text, want) in FIXTURES {
        for (i, line) in text.lines().enumerate() {
            let got = detect_format(&[line]);
            assert!(
                got.is_none() || got == *want,
                "{name} line {}: {got:?}, expected {want:?} or None",
                i + 1
            );
        }
    }
}

#[test]
fn leading_noise_and_truncated_lines_decide_nothing() {
    let claude = FIXTURES[0].1.lines().next().unwrap_or_default();
    assert_eq!(
        detect_format(&["", "Warning: 256-color support not detected.", claude]),
        Some(TraceFormat::ClaudeStreamJson)
    );
    for (name, text, _) in FIXTURES {
        // (Lines up to 2000 chars: every prefix of the 22 KB rollout header
        // would take seconds and prove nothing more.)
        for line in text.lines().take(3).filter(|l| l.len() <= 2000) {
            for (cut, _) in line.char_indices().skip(1) {
                assert_eq!(detect_format(&[&line[..cut]]), None, "{name}");
            }
        }
    }
}

#[test]
fn amps_stream_json_reads_as_claudes() {
    // The shape of Amp's documented `system/init` line (ampcode.com/news/streaming-json).
    let init = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"T-0000","tools":["Bash"],"mcp_servers":[]}"#;
    assert_eq!(detect_format(&[init]), Some(TraceFormat::ClaudeStreamJson));
}

//! Target `trace`: the input is what a harness printed (or a trace file
//! `errand view` was given), and every parser in `errand-trace` reads it.
//!
//! - The whole input as a file: [`parse_reader`] (bytes, any encoding) and,
//!   when it is UTF-8, [`parse_trace`]; the two must agree.
//! - Line by line (split at `\n`, a `\r` before it dropped, like the runner)
//!   through every stream and session-file parser, then their end-of-stream
//!   calls (`finish`, `flush`, `outcome`, `error_message`) after whatever
//!   came before; then the whole input as one single line.
//! - [`detect_format`] on the first lines, [`summarize_tool_call`] and
//!   [`estimate_cost_usd`] on what the parsers produced.
//!
//! Invariants checked (see `crates/trace/src/lib.rs`):
//! - nothing panics;
//! - a blank line gives no event; a non-blank line that is not a JSON object
//!   gives `Raw` with the line exactly as it was fed, and every `Raw` a line
//!   gives is that line: nothing is dropped or rewritten;
//! - what a parser gives is bounded by what it read: over a whole stream the
//!   events, serialized, take at most [`GROWTH`] times the input's bytes plus
//!   [`PER_LINE`] per line and [`PATH_MAX`] per `FileEdit` (a relative path
//!   joined to the session's cwd), so a short line cannot make a parser
//!   repeat a long one (the runner holds and stores every event);
//! - every event can be written to an event log and read back unchanged;
//! - a `ParsedTrace` is consistent: its line count is the file's, events and
//!   problems point at lines of the file, no format means no events;
//! - a tool-call summary is one line of at most 80 characters.

use errand_core::{Event, EventKind, EventSource, Usage};
use errand_trace::{
    detect_format, estimate_cost_usd, parse_reader, parse_trace, summarize_tool_call,
    AmpStreamParser, ClaudeStreamParser, ClaudeTranscriptParser, CodexRolloutParser,
    CodexStreamParser, GeminiStreamParser, OpenCodeStreamParser, ParsedTrace, TraceFormat,
    TraceParser,
};
use serde_json::Value;

/// Events may take this many times the bytes they came from (a non-JSON line
/// with control characters is escaped sixfold in its `Raw`; a diff repeats
/// the edited text with a marker per line).
pub const GROWTH: usize = 8;
/// Plus this many bytes per non-blank line (type tags, usage counters, a
/// diff header).
pub const PER_LINE: usize = 1024;
/// Plus this many bytes per `FileEdit`: Codex rollouts give a patched
/// file's path joined to the session's cwd, which is at most Linux's
/// `PATH_MAX` (a longer cwd is ignored).
pub const PATH_MAX: usize = 4096;

fn paths(events: impl IntoIterator<Item = impl std::borrow::Borrow<EventKind>>) -> usize {
    events
        .into_iter()
        .filter(|e| matches!(e.borrow(), EventKind::FileEdit { .. }))
        .count()
        * PATH_MAX
}

pub fn run(data: &[u8]) {
    whole_file(data);
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let first: Vec<&str> = lines.iter().copied().take(50).collect();
    let _ = detect_format(&first);
    for parser in Parser::all(&first) {
        stream(parser, &lines);
    }
    // The whole input as one line (a harness that prints no newline).
    for parser in Parser::all(&first) {
        stream(parser, &[text.as_ref()]);
    }
}

fn whole_file(data: &[u8]) {
    let Ok(read) = parse_reader(data) else {
        panic!("reading a byte slice failed");
    };
    check_parsed(&read, data);
    if let Ok(text) = std::str::from_utf8(data) {
        let parsed = parse_trace(text);
        assert_eq!(parsed, read, "parse_trace and parse_reader disagree");
    }
}

fn check_parsed(parsed: &ParsedTrace, data: &[u8]) {
    let newlines = data.iter().filter(|&&b| b == b'\n').count();
    let lines = newlines + usize::from(data.last().is_some_and(|&b| b != b'\n'));
    assert_eq!(parsed.lines, lines, "line count");
    if parsed.format.is_none() {
        assert!(parsed.events.is_empty(), "events without a format");
        assert!(
            parsed.problems.iter().any(|p| p.line == 0),
            "no format and no problem saying so"
        );
    }
    let mut last = 0;
    for e in &parsed.events {
        assert!(
            (1..=parsed.lines).contains(&e.line),
            "event at line {} of {}",
            e.line,
            parsed.lines
        );
        assert!(e.line >= last, "events out of line order");
        last = e.line;
        round_trip(&e.kind, e.source);
    }
    for p in &parsed.problems {
        assert!(p.line <= parsed.lines, "problem at line {}", p.line);
        assert!(!p.message.is_empty());
    }
    let size: usize = parsed.events.iter().map(|e| serialized(&e.kind)).sum();
    let nonblank = bound_lines(data);
    let paths = paths(parsed.events.iter().map(|e| &e.kind));
    assert!(
        size <= GROWTH * data.len() + PER_LINE * (nonblank + 1) + paths,
        "{size} bytes of events from {} bytes in {nonblank} lines",
        data.len()
    );
}

fn bound_lines(data: &[u8]) -> usize {
    data.split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count()
}

/// Every parser, fresh. `first` picks Amp the way `parse_trace` does.
enum Parser {
    Claude(ClaudeStreamParser),
    Amp(AmpStreamParser),
    Transcript(ClaudeTranscriptParser),
    Codex(CodexStreamParser),
    Rollout(CodexRolloutParser),
    Gemini(GeminiStreamParser),
    OpenCode(OpenCodeStreamParser),
    File(TraceParser),
}

impl Parser {
    fn all(first: &[&str]) -> Vec<Parser> {
        let prior = Usage {
            input_tokens: 1000,
            output_tokens: 10,
            cache_read_tokens: 500,
            cache_write_tokens: 0,
            cost_usd: None,
        };
        vec![
            Parser::Claude(ClaudeStreamParser::new()),
            Parser::Amp(AmpStreamParser::new()),
            Parser::Transcript(ClaudeTranscriptParser::new()),
            Parser::Codex(CodexStreamParser::new()),
            Parser::Codex(CodexStreamParser::resuming(&prior)),
            Parser::Rollout(CodexRolloutParser::new()),
            Parser::Gemini(GeminiStreamParser::new()),
            Parser::OpenCode(OpenCodeStreamParser::new()),
            Parser::File(TraceParser::new(TraceFormat::ErrandEvents)),
            Parser::File(TraceParser::new(TraceFormat::GeminiChat)),
            Parser::File(TraceParser::for_lines(TraceFormat::ClaudeStreamJson, first)),
        ]
    }

    fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        match self {
            Parser::Claude(p) => p.push_line(line),
            Parser::Amp(p) => p.push_line(line),
            Parser::Transcript(p) => p.push_line(line),
            Parser::Codex(p) => p.push_line(line),
            Parser::Rollout(p) => p.push_line(line),
            Parser::Gemini(p) => p.push_line(line),
            Parser::OpenCode(p) => p.push_line(line),
            Parser::File(p) => p.push_line(line),
        }
    }

    /// The end of the stream: whatever the parser still holds, and its
    /// verdict, after whatever it was fed.
    fn finish(&mut self) -> Vec<EventKind> {
        match self {
            Parser::Claude(p) => {
                let _ = p.session_id();
                let _ = p.outcome().map(|o| o.error_message());
                Vec::new()
            }
            Parser::Amp(p) => {
                let _ = p.session_id();
                let _ = p.outcome().map(|o| o.error_message());
                Vec::new()
            }
            Parser::Transcript(p) => {
                let _ = p.session_id();
                Vec::new()
            }
            Parser::Codex(p) => {
                let _ = p.thread_id();
                let _ = p.outcome().map(|o| o.error_message());
                Vec::new()
            }
            Parser::Rollout(p) => {
                let events = p.finish();
                let _ = (p.session_id(), p.usage());
                events
            }
            Parser::Gemini(p) => {
                let events = p.flush();
                let _ = p.session_id();
                let _ = p.outcome().map(|o| o.error_message());
                events
            }
            Parser::OpenCode(p) => {
                let events = p.finish(false);
                let _ = p.session_id();
                let _ = p.outcome().error_message();
                events
            }
            Parser::File(p) => p.finish(),
        }
    }
}

fn stream(mut parser: Parser, lines: &[&str]) {
    let mut size = 0;
    let mut budget = PER_LINE;
    for line in lines {
        let events = parser.push_line(line);
        check_line(line, &events);
        size += events.iter().map(serialized).sum::<usize>();
        budget += paths(&events);
        if !line.trim().is_empty() {
            budget += GROWTH * (line.len() + 1) + PER_LINE;
        }
        assert!(
            size <= budget,
            "{size} bytes of events from {} lines, allowed {budget}",
            lines.len()
        );
    }
    let end = parser.finish();
    for kind in &end {
        check_event(kind);
    }
    size += end.iter().map(serialized).sum::<usize>();
    budget += paths(&end);
    assert!(
        size <= budget,
        "{size} bytes of events after finish, allowed {budget}"
    );
}

fn check_line(line: &str, events: &[EventKind]) {
    if line.trim().is_empty() {
        assert!(events.is_empty(), "a blank line gave {events:?}");
        return;
    }
    let object = matches!(
        serde_json::from_str::<Value>(line.trim()),
        Ok(Value::Object(_))
    );
    if !object {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, EventKind::Raw { line: l } if l == line)),
            "a line that is not a JSON object was not kept as Raw: {events:?}"
        );
    }
    for kind in events {
        if let EventKind::Raw { line: kept } = kind {
            assert_eq!(kept, line, "Raw does not hold the line as it was fed");
        }
        check_event(kind);
    }
}

fn check_event(kind: &EventKind) {
    round_trip(kind, EventSource::Harness);
    match kind {
        EventKind::ToolCall { name, input, .. } => {
            let summary = summarize_tool_call(name, input);
            assert!(
                summary.chars().count() <= 80,
                "summary of {} characters",
                summary.chars().count()
            );
            assert!(!summary.contains('\n'), "summary of two lines: {summary:?}");
        }
        EventKind::Usage(usage) | EventKind::Result { usage, .. } => {
            for model in ["gpt-5-codex", "claude-sonnet-4-5", "gemini-2.5-pro", "?"] {
                if let Some(cost) = estimate_cost_usd(model, usage) {
                    assert!(cost.is_finite() && cost >= 0.0, "cost {cost}");
                }
            }
        }
        _ => {}
    }
}

/// Written to an event log and read back, the event is unchanged.
fn round_trip(kind: &EventKind, source: EventSource) {
    let event = Event {
        seq: 7,
        ts: chrono_epoch(),
        source,
        raw_line: Some(3),
        kind: kind.clone(),
    };
    let Ok(line) = serde_json::to_string(&event) else {
        panic!("an event does not serialize: {kind:?}");
    };
    assert!(!line.contains('\n'), "a serialized event spans lines");
    match serde_json::from_str::<Event>(&line) {
        Ok(back) => assert_eq!(back, event, "event changed through the log"),
        Err(e) => panic!("an event does not read back ({e}): {line}"),
    }
}

fn chrono_epoch() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_795_472_178, 0).unwrap_or_default()
}

fn serialized(kind: &EventKind) -> usize {
    serde_json::to_string(kind).map_or(0, |s| s.len())
}

//! A whole trace file at once: [`parse_trace`] (text in memory) and
//! [`parse_reader`] (any [`BufRead`], read line by line), for `errand logs
//! --file` and `errand view`.
//!
//! The format is told from the first non-blank lines ([`detect_format`]),
//! then every line goes to that format's parser ([`TraceParser`]); what a
//! parser does not understand comes back as `Raw`, as always. Problems are
//! reported next to the events, never instead of them:
//!
//! - a line that is not JSON: `line N is not JSON: …` (its `Raw` is kept);
//! - a last line without a newline that is not JSON either: `line N is
//!   truncated …` (a file still being written, or cut short);
//! - a line that is not UTF-8 ([`parse_reader`] only): read with
//!   replacement characters, and reported;
//! - no line tells the format (or the file is empty): `could not tell the
//!   format of this file …`, and no events at all.
//!
//! Each event keeps the line it came from and, where the format has one
//! (Claude transcripts, Codex rollouts, Gemini CLI, OpenCode, errand's own
//! events), that line's timestamp.

use std::io::{BufRead, Read};

use chrono::{DateTime, Utc};
use errand_core::{Event, EventKind, EventSource};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::detect::{detect_format, TraceFormat};
use crate::{
    AmpStreamParser, ClaudeStreamParser, ClaudeTranscriptParser, CodexRolloutParser,
    CodexStreamParser, GeminiChatParser, GeminiStreamParser, OpenCodeStreamParser,
};

/// How many non-blank lines are looked at to tell the format.
const DETECT_LINES: usize = 50;

/// The largest one-document file (Gemini CLI's older `session-*.json`)
/// [`parse_reader`] reads whole: 1 GiB.
const MAX_DOCUMENT: u64 = 1 << 30;

/// The start of the problem reported when the format cannot be told.
pub const UNKNOWN_FORMAT: &str = "could not tell the format of this file";

/// One normalized event and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// The line (from 1) that gave it; the last line for events given at
    /// the end of the file.
    pub line: usize,
    /// The line's own timestamp, when the format has one.
    pub ts: Option<DateTime<Utc>>,
    /// `Harness`, except for errand's own events read back from its log.
    pub source: EventSource,
    /// The event.
    pub kind: EventKind,
}

impl TraceEvent {
    /// As an entry of an event log: number `seq`, at `ts` when the line had
    /// no timestamp, `raw_line` = the line it came from.
    pub fn to_event(&self, seq: u64, ts: DateTime<Utc>) -> Event {
        Event {
            seq,
            ts: self.ts.unwrap_or(ts),
            source: self.source,
            raw_line: u64::try_from(self.line).ok(),
            kind: self.kind.clone(),
        }
    }
}

/// Something wrong with one line (or, at line 0, the whole file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The line (from 1), or 0 for the whole file.
    pub line: usize,
    /// A whole sentence, naming the line: `line 12 is not JSON: …`.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a trace file holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParsedTrace {
    /// `None` when no line told it; then there are no events.
    pub format: Option<TraceFormat>,
    /// The events, in the order of the lines that gave them.
    pub events: Vec<TraceEvent>,
    /// What could not be read, line by line.
    pub problems: Vec<Problem>,
    /// Lines in the file, blank ones included.
    pub lines: usize,
}

impl ParsedTrace {
    /// The events' kinds, in order.
    pub fn kinds(&self) -> impl Iterator<Item = &EventKind> {
        self.events.iter().map(|e| &e.kind)
    }
}

/// Parses a whole trace file held in memory. Never panics.
pub fn parse_trace(text: &str) -> ParsedTrace {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(DETECT_LINES)
        .collect();
    let mut reader = Reader::new(&first);
    if reader.parser.is_none() {
        if let Some(doc) = parse_document(text) {
            return doc;
        }
    }
    for (line, terminated) in split_lines(text) {
        reader.line(line, terminated);
    }
    reader.finish()
}

/// A file that is one JSON document over many lines (Gemini CLI's older
/// saved chats), when it is one: each event on the line where its message
/// starts, with the message's timestamp.
fn parse_document(text: &str) -> Option<ParsedTrace> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let doc: Value = match serde_json::from_str(text) {
        Ok(doc) => doc,
        // A first line that is JSON on its own starts lines of JSON, not
        // one damaged document ([`parse_reader`] tells them apart the same
        // way, so both read a file alike).
        Err(_) if first_line_is_json(text) => return None,
        Err(e) => return damaged_document(text, &e),
    };
    let mut parser = GeminiChatParser::new();
    let events = parser.push_document(&doc)?;
    let stamps: std::collections::HashMap<&str, Option<DateTime<Utc>>> = doc
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let id = m.get("id")?.as_str()?;
            let ts = m
                .get("timestamp")
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            Some((id, ts))
        })
        .collect();
    let mut out = ParsedTrace {
        format: Some(TraceFormat::GeminiChat),
        lines: split_lines(text).count(),
        ..ParsedTrace::default()
    };
    // Each message's line: where its `"id": "…"` first appears after the
    // previous message's.
    let mut from = 0usize;
    let mut line_of = |id: &str| -> usize {
        let needle = format!("\"{id}\"");
        if let Some(at) = text.get(from..).and_then(|rest| rest.find(&needle)) {
            from += at;
        }
        text[..from].matches('\n').count() + 1
    };
    let mut cost = CostFill::default();
    for (id, mut kind) in events {
        let (line, ts) = match id.as_deref() {
            Some(id) => (line_of(id), stamps.get(id).copied().flatten()),
            None => (1, None),
        };
        cost.fill(&mut kind);
        out.events.push(TraceEvent {
            line,
            ts,
            source: EventSource::Harness,
            kind,
        });
    }
    Some(out)
}

/// Whether the first non-blank line of `text` is a JSON value by itself.
fn first_line_is_json(text: &str) -> bool {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| serde_json::from_str::<serde::de::IgnoredAny>(l.trim()).is_ok())
}

/// A saved chat document that does not parse (cut short while written, or
/// damaged): its format, told from its opening keys, and the problem.
fn damaged_document(text: &str, e: &serde_json::Error) -> Option<ParsedTrace> {
    let head: String = text.chars().take(4096).collect();
    if !(head.contains("\"sessionId\"") && head.contains("\"projectHash\"")) {
        return None;
    }
    let lines = split_lines(text).count();
    let message = if e.is_eof() {
        format!("line {lines} is truncated: the file is one JSON document and it ends in the middle of it")
    } else {
        format!(
            "line {} is not JSON: the file is one JSON document and it is damaged there ({e})",
            e.line()
        )
    };
    Some(ParsedTrace {
        format: Some(TraceFormat::GeminiChat),
        events: Vec::new(),
        problems: vec![Problem {
            line: if e.is_eof() { lines } else { e.line() },
            message,
        }],
        lines,
    })
}

/// Prices the usage of a trace that names its model but not its cost (Claude
/// Code transcripts, Codex rollouts): the model of the latest session start.
#[derive(Debug, Default)]
struct CostFill {
    model: Option<String>,
}

impl CostFill {
    fn fill(&mut self, kind: &mut EventKind) {
        match kind {
            EventKind::SessionStart {
                model: Some(model), ..
            } => self.model = Some(model.clone()),
            EventKind::Usage(usage) if usage.cost_usd.is_none() => {
                if let Some(model) = &self.model {
                    usage.cost_usd = crate::estimate_cost_usd(model, usage);
                }
            }
            _ => {}
        }
    }
}

/// Parses a whole trace file from `reader`, a line at a time (only the
/// first lines are held until the format is told). Fails only when reading
/// fails.
pub fn parse_reader<R: BufRead>(mut reader: R) -> std::io::Result<ParsedTrace> {
    let mut pending: Vec<(String, bool, bool)> = Vec::new();
    let mut parsing: Option<Reader> = None;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        let terminated = buf.last() == Some(&b'\n');
        if terminated {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        let (line, utf8) = match std::str::from_utf8(&buf) {
            Ok(s) => (s.to_owned(), true),
            Err(_) => (String::from_utf8_lossy(&buf).into_owned(), false),
        };
        let line = match (
            pending.is_empty() && parsing.is_none(),
            line.strip_prefix('\u{feff}'),
        ) {
            (true, Some(rest)) => rest.to_owned(),
            _ => line,
        };
        match parsing.as_mut() {
            Some(r) => r.read_line(&line, terminated, utf8),
            None if !line.trim().is_empty()
                && pending.iter().all(|(l, ..)| l.trim().is_empty())
                && line.trim_start().starts_with('{')
                && serde_json::from_str::<serde::de::IgnoredAny>(line.trim()).is_err() =>
            {
                // One JSON document over many lines (an older Gemini CLI
                // saved chat): read whole, within a cap.
                let mut text: Vec<u8> = Vec::new();
                for (l, ..) in pending.drain(..) {
                    text.extend_from_slice(l.as_bytes());
                    text.push(b'\n');
                }
                text.extend_from_slice(line.as_bytes());
                if terminated {
                    text.push(b'\n');
                }
                reader.take(MAX_DOCUMENT).read_to_end(&mut text)?;
                return Ok(parse_trace(&String::from_utf8_lossy(&text)));
            }
            None => {
                pending.push((line, terminated, utf8));
                let decided = pending
                    .iter()
                    .filter(|(l, ..)| !l.trim().is_empty())
                    .count();
                if decided >= DETECT_LINES {
                    parsing = Some(Reader::replay(&mut pending));
                }
            }
        }
    }
    let reader = match parsing {
        Some(r) => r,
        None => Reader::replay(&mut pending),
    };
    Ok(reader.finish())
}

/// A trace format's parser behind one interface.
#[derive(Debug)]
pub struct TraceParser {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Claude(ClaudeStreamParser),
    Amp(AmpStreamParser),
    ClaudeTranscript(ClaudeTranscriptParser),
    CodexExec(CodexStreamParser),
    CodexRollout(CodexRolloutParser),
    Gemini(GeminiStreamParser),
    GeminiChat(GeminiChatParser),
    OpenCode(OpenCodeStreamParser),
    Errand,
}

impl TraceParser {
    /// The parser for `format` ([`TraceFormat::ClaudeStreamJson`] reads as
    /// Claude Code's; see [`TraceParser::amp`]).
    pub fn new(format: TraceFormat) -> Self {
        let inner = match format {
            TraceFormat::ClaudeStreamJson => Inner::Claude(ClaudeStreamParser::new()),
            TraceFormat::ClaudeTranscript => Inner::ClaudeTranscript(ClaudeTranscriptParser::new()),
            TraceFormat::CodexExecJson => Inner::CodexExec(CodexStreamParser::new()),
            TraceFormat::CodexRollout => Inner::CodexRollout(CodexRolloutParser::new()),
            TraceFormat::GeminiStreamJson => Inner::Gemini(GeminiStreamParser::new()),
            TraceFormat::OpenCodeJson => Inner::OpenCode(OpenCodeStreamParser::new()),
            TraceFormat::GeminiChat => Inner::GeminiChat(GeminiChatParser::new()),
            TraceFormat::ErrandEvents => Inner::Errand,
        };
        TraceParser { inner }
    }

    /// Amp's Claude Code-compatible stream JSON ([`AmpStreamParser`]).
    pub fn amp() -> Self {
        TraceParser {
            inner: Inner::Amp(AmpStreamParser::new()),
        }
    }

    /// The parser for a file whose first lines are `first_lines`: its
    /// format's, and Amp's for stream JSON with Amp thread ids (`T-…`).
    pub fn for_lines(format: TraceFormat, first_lines: &[&str]) -> Self {
        let amp = format == TraceFormat::ClaudeStreamJson
            && first_lines.iter().any(|l| {
                serde_json::from_str::<Value>(l.trim()).is_ok_and(|v| {
                    v.get("session_id")
                        .and_then(Value::as_str)
                        .is_some_and(|s| s.starts_with("T-"))
                })
            });
        if amp {
            Self::amp()
        } else {
            Self::new(format)
        }
    }

    /// Feed one line (without the newline). Never panics.
    pub fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        match &mut self.inner {
            Inner::Claude(p) => p.push_line(line),
            Inner::Amp(p) => p.push_line(line),
            Inner::ClaudeTranscript(p) => p.push_line(line),
            Inner::CodexExec(p) => p.push_line(line),
            Inner::CodexRollout(p) => p.push_line(line),
            Inner::Gemini(p) => p.push_line(line),
            Inner::GeminiChat(p) => p.push_line(line),
            Inner::OpenCode(p) => p.push_line(line),
            Inner::Errand => {
                if line.trim().is_empty() {
                    return Vec::new();
                }
                match serde_json::from_str::<Event>(line.trim()) {
                    Ok(event) => vec![event.kind],
                    Err(_) => vec![EventKind::Raw {
                        line: line.to_owned(),
                    }],
                }
            }
        }
    }

    /// What the parser still holds at the end of the file (Gemini CLI's
    /// last message, a Codex rollout's held `SessionStart`). OpenCode's
    /// end-of-run `Result` is not made up: it needs the process's exit
    /// status, which a file does not have.
    pub fn finish(&mut self) -> Vec<EventKind> {
        match &mut self.inner {
            Inner::Gemini(p) => p.flush(),
            Inner::CodexRollout(p) => p.finish(),
            _ => Vec::new(),
        }
    }
}

/// Lines of `text` without their `\n` (or `\r\n`), each with whether it
/// was terminated; a final empty piece is not a line.
fn split_lines(text: &str) -> impl Iterator<Item = (&str, bool)> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find('\n') {
            Some(i) => {
                rest = Some(&s[i + 1..]);
                let line = &s[..i];
                Some((line.strip_suffix('\r').unwrap_or(line), true))
            }
            None => {
                rest = None;
                (!s.is_empty()).then_some((s, false))
            }
        }
    })
}

/// Feeds lines to the parser of a told format and collects the result.
struct Reader {
    parser: Option<TraceParser>,
    /// Whether lines of this format carry a `timestamp`.
    stamped: bool,
    cost: CostFill,
    out: ParsedTrace,
}

impl Reader {
    fn new(first_lines: &[&str]) -> Self {
        let format = detect_format(first_lines);
        Reader {
            parser: format.map(|f| TraceParser::for_lines(f, first_lines)),
            stamped: matches!(
                format,
                Some(
                    TraceFormat::ClaudeTranscript
                        | TraceFormat::CodexRollout
                        | TraceFormat::GeminiStreamJson
                        | TraceFormat::GeminiChat
                        | TraceFormat::OpenCodeJson
                )
            ),
            cost: CostFill::default(),
            out: ParsedTrace {
                format,
                ..ParsedTrace::default()
            },
        }
    }

    /// A reader for the lines held while the format was not yet told, fed
    /// with them (and they are taken).
    fn replay(pending: &mut Vec<(String, bool, bool)>) -> Self {
        let first: Vec<&str> = pending
            .iter()
            .map(|(l, ..)| l.as_str())
            .filter(|l| !l.trim().is_empty())
            .collect();
        let mut reader = Reader::new(&first);
        for (line, terminated, utf8) in pending.drain(..) {
            reader.read_line(&line, terminated, utf8);
        }
        reader
    }

    fn read_line(&mut self, line: &str, terminated: bool, utf8: bool) {
        self.line(line, terminated);
        if !utf8 {
            let n = self.out.lines;
            self.out.problems.push(Problem {
                line: n,
                message: format!("line {n} is not valid UTF-8 (read with replacement characters)"),
            });
        }
    }

    fn line(&mut self, line: &str, terminated: bool) {
        self.out.lines += 1;
        let n = self.out.lines;
        let Some(parser) = self.parser.as_mut() else {
            return;
        };
        if line.trim().is_empty() {
            return;
        }
        if matches!(parser.inner, Inner::Errand) {
            match serde_json::from_str::<Event>(line.trim()) {
                Ok(event) => self.out.events.push(TraceEvent {
                    line: n,
                    ts: Some(event.ts),
                    source: event.source,
                    kind: event.kind,
                }),
                Err(_) => {
                    self.problem(line, terminated);
                    self.push(
                        n,
                        None,
                        EventKind::Raw {
                            line: line.to_owned(),
                        },
                    );
                }
            }
            return;
        }
        let kinds = parser.push_line(line);
        if kinds.iter().any(|k| matches!(k, EventKind::Raw { .. })) {
            self.problem(line, terminated);
        }
        if kinds.is_empty() {
            return;
        }
        let ts = if self.stamped { timestamp(line) } else { None };
        for kind in kinds {
            self.push(n, ts, kind);
        }
    }

    fn push(&mut self, line: usize, ts: Option<DateTime<Utc>>, mut kind: EventKind) {
        self.cost.fill(&mut kind);
        self.out.events.push(TraceEvent {
            line,
            ts,
            source: EventSource::Harness,
            kind,
        });
    }

    /// Reports the current line when it is not JSON.
    fn problem(&mut self, line: &str, terminated: bool) {
        let n = self.out.lines;
        let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(line.trim()) else {
            return;
        };
        let message = if terminated {
            let what = e.to_string();
            let what = what
                .rsplit_once(" at line ")
                .map_or(what.as_str(), |(w, _)| w);
            format!("line {n} is not JSON: {what} at column {}", e.column())
        } else {
            format!("line {n} is truncated: the file ends in the middle of it")
        };
        self.out.problems.push(Problem { line: n, message });
    }

    fn finish(mut self) -> ParsedTrace {
        let Some(parser) = self.parser.as_mut() else {
            let message = if self.out.lines == 0 {
                format!("{UNKNOWN_FORMAT}: it is empty")
            } else {
                format!(
                    "{UNKNOWN_FORMAT}: none of its first lines is output of Claude Code, \
                     Codex, Gemini CLI, OpenCode or errand"
                )
            };
            self.out.problems.push(Problem { line: 0, message });
            return self.out;
        };
        let last = self.out.lines;
        for kind in parser.finish() {
            self.push(last, None, kind);
        }
        self.out
    }
}

/// A line's top-level `timestamp`: RFC 3339 text, or milliseconds since
/// the epoch (OpenCode).
fn timestamp(line: &str) -> Option<DateTime<Utc>> {
    #[derive(Deserialize)]
    struct Stamped {
        timestamp: Option<Value>,
    }
    let stamped: Stamped = serde_json::from_str(line.trim()).ok()?;
    match stamped.timestamp? {
        Value::String(s) => DateTime::parse_from_rfc3339(&s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        Value::Number(n) => n.as_i64().and_then(DateTime::from_timestamp_millis),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_with_their_terminator() {
        let lines: Vec<_> = split_lines("a\r\nb\n\nc").collect();
        assert_eq!(lines, [("a", true), ("b", true), ("", true), ("c", false)]);
        assert_eq!(split_lines("a\n").count(), 1);
        assert_eq!(split_lines("").count(), 0);
    }

    #[test]
    fn lines_of_json_with_a_damaged_one_are_read_alike_whole_and_streamed() {
        // Found by the trace fuzz target: a first line that is a whole JSON
        // object, then a broken line naming a Gemini chat's keys. Read whole
        // it was a damaged one-document chat, streamed it was lines of JSON.
        let text = "{\"type\":\"system\",\"subtype\":\"x\"}\n{\"$set\":{\"st{\"sessionId\":\"s\",\"projectHash\":\"p\"\n";
        let whole = parse_trace(text);
        let streamed = parse_reader(text.as_bytes()).ok();
        assert_eq!(Some(&whole), streamed.as_ref());
        assert_ne!(whole.format, Some(TraceFormat::GeminiChat), "{whole:?}");
        // A chat document damaged after its first line is still told.
        let damaged =
            "{\n  \"sessionId\": \"s\",\n  \"projectHash\": \"p\",\n  \"messages\": [ oops\n";
        let whole = parse_trace(damaged);
        assert_eq!(whole.format, Some(TraceFormat::GeminiChat));
        assert_eq!(Some(&whole), parse_reader(damaged.as_bytes()).ok().as_ref());
    }

    #[test]
    fn timestamps_are_top_level_only() {
        let t = timestamp(
            r#"{"payload":{"timestamp":"2000-01-01T00:00:00Z"},"timestamp":"2026-11-23T22:16:18.549Z"}"#,
        );
        assert_eq!(
            t.map(|t| t.to_rfc3339()),
            Some("2026-11-23T22:16:18.549+00:00".to_owned())
        );
        assert_eq!(
            timestamp(r#"{"timestamp":1795472178000}"#).map(|t| t.timestamp()),
            Some(1795472178)
        );
        assert_eq!(timestamp(r#"{"timestamp":"yesterday"}"#), None);
        assert_eq!(timestamp("{"), None);
    }
}

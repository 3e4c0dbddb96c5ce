//! Which harness output format a file holds, from its first lines (for
//! `errand view FILE`, `errand logs --file FILE` and [`crate::parse_trace`]).
//!
//! Each line is classified on its own by the fields only one format has;
//! lines that fit no format or several (blank lines, `{"type":"error",…}`
//! without format-specific fields, Claude's `control_response`) decide
//! nothing, and the first line that decides wins:
//!
//! | format | recognised by |
//! |---|---|
//! | [`TraceFormat::ClaudeStreamJson`] | `type` `system` / `assistant` / `user` / `result` / `stream_event` with a snake_case `session_id` (also Amp's `--stream-json`, which is Claude Code-compatible) |
//! | [`TraceFormat::ClaudeTranscript`] | a camelCase `sessionId` or `parentUuid` with a `type` (`user`, `assistant`, `queue-operation`, `attachment`, …), or a `summary` line with `leafUuid` |
//! | [`TraceFormat::CodexExecJson`] | `type` `thread.*`, `turn.*` or `item.*` |
//! | [`TraceFormat::CodexRollout`] | `type` `session_meta` / `event_msg` / `response_item` / `turn_context` / `world_state` / `compacted` with a `payload` |
//! | [`TraceFormat::GeminiStreamJson`] | an ISO-string `timestamp` with `type` `init` + `session_id`, `message` + `role`, `tool_use` + `tool_name`, `tool_result` + `tool_id`, `result` + `stats`, or `error` + `severity` |
//! | [`TraceFormat::OpenCodeJson`] | a `sessionID` (capital `ID`) with a numeric `timestamp` |
//! | [`TraceFormat::GeminiChat`] | a `sessionId` with a `projectHash`, a `$set` or `$rewindTo` record, or a message record (`id`, ISO `timestamp`, `type` `user` / `gemini` / `info` / `warning` / `error`, `content`) without Claude's `uuid` |
//! | [`TraceFormat::ErrandEvents`] | a numeric `seq`, a string `ts`, `source` `errand` / `harness` and a `type` |
//!
//! Gemini CLI's older saved chats (`session-*.json`) are one JSON document
//! spread over many lines: no line decides, and [`crate::parse_trace`] reads
//! such a file whole.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A harness output format errand can parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceFormat {
    /// `claude -p --output-format stream-json --verbose` ([`crate::ClaudeStreamParser`]),
    /// and Amp's `--stream-json` ([`crate::AmpStreamParser`]).
    ClaudeStreamJson,
    /// Claude Code's own session transcript (`~/.claude/projects/…/*.jsonl`).
    ClaudeTranscript,
    /// `codex exec --json` ([`crate::CodexStreamParser`]).
    CodexExecJson,
    /// Codex's rollout file (`$CODEX_HOME/sessions/…/rollout-*.jsonl`).
    CodexRollout,
    /// `gemini -p --output-format stream-json` ([`crate::GeminiStreamParser`]).
    GeminiStreamJson,
    /// `opencode run --format json` ([`crate::OpenCodeStreamParser`]).
    OpenCodeJson,
    /// Gemini CLI's saved chat (`~/.gemini/tmp/…/chats/session-*.jsonl`, or
    /// the older one-document `session-*.json`) ([`crate::GeminiChatParser`]).
    GeminiChat,
    /// errand's own event log (`events.jsonl` of a run, `errand logs RUN
    /// --json`): one serialized [`errand_core::Event`] per line.
    ErrandEvents,
}

/// Claude Code stream-json line types.
const CLAUDE_STREAM_TYPES: [&str; 5] = ["system", "assistant", "user", "result", "stream_event"];
/// Codex rollout line types.
const ROLLOUT_TYPES: [&str; 6] = [
    "session_meta",
    "event_msg",
    "response_item",
    "turn_context",
    "world_state",
    "compacted",
];

/// The format of a file whose first lines are `first_lines` (a handful is
/// enough; blank and undecided lines are skipped). `None` when no line
/// decides.
pub fn detect_format(first_lines: &[&str]) -> Option<TraceFormat> {
    first_lines.iter().find_map(|line| classify(line))
}

fn classify(line: &str) -> Option<TraceFormat> {
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(line.trim()) else {
        return None;
    };
    let has = |key: &str| obj.contains_key(key);
    let is_str = |key: &str| obj.get(key).is_some_and(Value::is_string);
    let kind = obj.get("type").and_then(Value::as_str);
    let timestamp = obj.get("timestamp");

    if obj.get("seq").is_some_and(Value::is_u64)
        && is_str("ts")
        && kind.is_some()
        && matches!(
            obj.get("source").and_then(Value::as_str),
            Some("errand" | "harness")
        )
    {
        return Some(TraceFormat::ErrandEvents);
    }

    if is_str("sessionID") && timestamp.is_some_and(Value::is_number) {
        return Some(TraceFormat::OpenCodeJson);
    }
    if (is_str("sessionId") && has("projectHash"))
        || has("$set")
        || has("$rewindTo")
        || is_gemini_chat_message(kind, &obj)
    {
        return Some(TraceFormat::GeminiChat);
    }
    let kind = kind?;
    if ROLLOUT_TYPES.contains(&kind) && has("payload") {
        return Some(TraceFormat::CodexRollout);
    }
    if ["thread.", "turn.", "item."]
        .iter()
        .any(|p| kind.starts_with(p))
    {
        return Some(TraceFormat::CodexExecJson);
    }
    if timestamp.is_some_and(Value::is_string) && is_gemini(kind, &obj) {
        return Some(TraceFormat::GeminiStreamJson);
    }
    if CLAUDE_STREAM_TYPES.contains(&kind) && is_str("session_id") {
        return Some(TraceFormat::ClaudeStreamJson);
    }
    if is_str("sessionId") || has("parentUuid") || (kind == "summary" && has("leafUuid")) {
        return Some(TraceFormat::ClaudeTranscript);
    }
    None
}

fn is_gemini_chat_message(kind: Option<&str>, obj: &Map<String, Value>) -> bool {
    matches!(kind, Some("user" | "gemini" | "info" | "warning" | "error"))
        && obj.get("id").is_some_and(Value::is_string)
        && obj.get("timestamp").is_some_and(Value::is_string)
        && obj.contains_key("content")
        && !obj.contains_key("uuid")
        && !obj.contains_key("sessionId")
}

fn is_gemini(kind: &str, obj: &Map<String, Value>) -> bool {
    let has = |key: &str| obj.contains_key(key);
    match kind {
        "init" => has("session_id"),
        "message" => has("role"),
        "tool_use" => has("tool_name"),
        "tool_result" => has("tool_id"),
        "result" => has("stats"),
        "error" => has("severity"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errands_own_events_are_recognised() {
        let line = r#"{"seq":1,"ts":"2026-11-26T07:00:00Z","source":"errand","type":"state","state":"queued"}"#;
        assert_eq!(detect_format(&[line]), Some(TraceFormat::ErrandEvents));
        let harness = r#"{"seq":2,"ts":"2026-11-26T07:00:00Z","source":"harness","raw_line":1,"type":"user_message","text":"hi"}"#;
        assert_eq!(detect_format(&[harness]), Some(TraceFormat::ErrandEvents));
        assert_eq!(
            detect_format(&[r#"{"seq":"1","ts":"x","source":"errand","type":"state"}"#]),
            None
        );
    }

    #[test]
    fn undecided_lines_are_skipped() {
        assert_eq!(detect_format(&[]), None);
        assert_eq!(detect_format(&["", "not json", "[1]", "{}"]), None);
        // Codex's and Gemini's error lines look alike without `severity`.
        assert_eq!(detect_format(&[r#"{"type":"error","message":"x"}"#]), None);
        assert_eq!(
            detect_format(&[
                r#"{"type":"error","message":"x"}"#,
                r#"{"type":"turn.started"}"#
            ]),
            Some(TraceFormat::CodexExecJson)
        );
        assert_eq!(
            detect_format(&[r#"{"type":"control_response","response":{}}"#]),
            None
        );
    }
}

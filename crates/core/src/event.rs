//! The normalized, harness-neutral event schema.
//!
//! Every harness's output is turned into [`EventKind`]s by a parser in
//! `errand-trace`; errand's own lifecycle is recorded with the same type, so one
//! trace tells the whole story of a run. Whatever a parser does not understand is
//! kept as [`EventKind::Raw`], never dropped.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::run::RunState;

/// Token usage and cost, as far as the harness reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens, not counting those read from or written to the cache.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Cost in US dollars, when the harness reports it or errand can price it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// One model request as the gateway saw it: what was asked, what the provider
/// answered and what it cost. Token counts come from the provider's own answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelCall {
    /// The provider family (`anthropic`, `openai`, `gemini`).
    pub provider: String,
    /// The model the request named (or the answer reported).
    #[serde(default)]
    pub model: String,
    /// The HTTP status the harness received.
    pub status: u16,
    /// Tokens and cost, from the provider's answer and errand's price table.
    #[serde(default)]
    pub usage: Usage,
    /// Milliseconds from the request to the first byte of the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<u64>,
    /// Milliseconds from the request to the end of the answer.
    #[serde(default)]
    pub duration_ms: u64,
    /// The answer was a stream (SSE).
    #[serde(default)]
    pub streamed: bool,
    /// Why the gateway refused or the provider failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What happened. Tagged by `type` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// errand's own lifecycle: the run entered `state`.
    State {
        /// The state entered.
        state: RunState,
        /// The transition's reason, when errand records one (e.g. why the run failed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A note from errand itself (cloning, committing, limits not applied…).
    Notice {
        /// The note, for people.
        message: String,
    },
    /// The harness started a session.
    SessionStart {
        /// The harness's session (or thread) id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        /// The model it uses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        /// The directory it works in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
        /// The tools it offers the model.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tools: Vec<String>,
    },
    /// The instruction given to the agent (first turn or a follow-up).
    UserMessage {
        /// The instruction.
        text: String,
    },
    /// Text the model wrote to the user.
    AssistantMessage {
        /// The text.
        text: String,
    },
    /// The model's reasoning, when the harness shows it.
    Thinking {
        /// The reasoning text.
        text: String,
    },
    /// The agent called a tool (a shell command, a file read or edit …).
    ToolCall {
        /// The call's id, which its [`EventKind::ToolResult`] repeats.
        id: String,
        /// The tool's name, as the harness calls it (`Bash`, `Read` …).
        name: String,
        /// The call's arguments.
        input: Value,
        /// Set when the call was made by a sub-agent: the id of the parent call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_id: Option<String>,
    },
    /// What a tool call returned.
    ToolResult {
        /// The id of the [`EventKind::ToolCall`] it answers.
        id: String,
        /// The output given back to the model.
        output: String,
        /// The tool reported a failure.
        is_error: bool,
        /// A shell command's exit status, when the harness reports it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    /// A file the agent changed, with a unified diff when the harness gives one.
    FileEdit {
        /// The file's path.
        path: String,
        /// The change as a unified diff.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
        /// Lines added.
        #[serde(default)]
        added: u32,
        /// Lines removed.
        #[serde(default)]
        removed: u32,
    },
    /// Token usage and cost reported during the run.
    Usage(Usage),
    /// The harness's final word on the run.
    Result {
        /// The harness reports that the run failed.
        is_error: bool,
        /// Its final message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        /// How many turns the session took.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        turns: Option<u32>,
        /// How long the session took, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
        /// The session's total usage.
        usage: Usage,
    },
    /// An error the harness reported.
    Error {
        /// The error message.
        message: String,
    },
    /// Something the harness flagged that did not stop it (e.g. Codex's
    /// warning-only `error` items). Never a reason for a run to fail.
    Warning {
        /// The warning.
        message: String,
    },
    /// The whole run's change against its base, recorded by errand when the
    /// run's branch is collected (`truncated` when the diff was cut to size).
    RunDiff {
        /// The commit the run started from.
        base_commit: String,
        /// The run's last commit.
        commit: String,
        /// `git diff --stat` of the change.
        stat: String,
        /// The change as a unified diff.
        diff: String,
        /// `diff` was cut to size.
        #[serde(default)]
        truncated: bool,
    },
    /// One request the model gateway forwarded for the run, with the usage the
    /// provider itself reported in its answer (errand's exact figures).
    ModelCall(Box<ModelCall>),
    /// An image the user or a tool gave the model, as the trace holds it
    /// (base64 inside the file: never a link, never fetched). Follows the
    /// [`EventKind::UserMessage`] or [`EventKind::ToolResult`] it belongs to.
    Image {
        /// Its media type as the trace names it (`image/png` …).
        media_type: String,
        /// The image, base64; `None` when it was larger than the parser's
        /// cap, not base64, or of a type not shown as an image.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<String>,
        /// Its size in bytes (decoded; estimated from the base64 length).
        bytes: u64,
        /// The tool call whose result holds it; `None` in a user message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_id: Option<String>,
    },
    /// A harness's own bookkeeping line that is worth one compact line in a
    /// trace (a hook's start and answer, a status change, a compaction), not
    /// part of the conversation.
    Note {
        /// What kind of line it was (`hook_response`, `status` …).
        what: String,
        /// The line in short, for people.
        text: String,
    },
    /// A line the parser did not recognise (or could not parse), kept as it was.
    Raw {
        /// The line, exactly as it was fed to the parser.
        line: String,
    },
}

/// Who produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// errand itself (lifecycle, notices, the run's diff).
    Errand,
    /// The harness, through its parser.
    Harness,
}

/// One entry of a run's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the run's log, from 1, without gaps.
    pub seq: u64,
    /// When it was recorded.
    pub ts: DateTime<Utc>,
    /// Who produced it.
    pub source: EventSource,
    /// For harness events: the line number (from 1) in the raw harness log it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_line: Option<u64>,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl EventKind {
    /// A short name for the kind, as used in `type`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::State { .. } => "state",
            EventKind::Notice { .. } => "notice",
            EventKind::SessionStart { .. } => "session_start",
            EventKind::UserMessage { .. } => "user_message",
            EventKind::AssistantMessage { .. } => "assistant_message",
            EventKind::Thinking { .. } => "thinking",
            EventKind::ToolCall { .. } => "tool_call",
            EventKind::ToolResult { .. } => "tool_result",
            EventKind::FileEdit { .. } => "file_edit",
            EventKind::Usage(_) => "usage",
            EventKind::Result { .. } => "result",
            EventKind::Error { .. } => "error",
            EventKind::Warning { .. } => "warning",
            EventKind::RunDiff { .. } => "run_diff",
            EventKind::ModelCall(_) => "model_call",
            EventKind::Image { .. } => "image",
            EventKind::Note { .. } => "note",
            EventKind::Raw { .. } => "raw",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_flat_with_a_type_tag() {
        let ev = Event {
            seq: 3,
            ts: DateTime::parse_from_rfc3339("2026-11-26T07:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            source: EventSource::Harness,
            raw_line: Some(2),
            kind: EventKind::ToolCall {
                id: "toolu_1".into(),
                name: "Bash".into(),
                input: serde_json::json!({"command": "ls"}),
                parent_id: None,
            },
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "tool_call");
        assert_eq!(v["seq"], 3);
        assert_eq!(v["input"]["command"], "ls");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn usage_event_round_trips() {
        let k = EventKind::Usage(Usage {
            input_tokens: 10,
            output_tokens: 2,
            cost_usd: Some(0.5),
            ..Default::default()
        });
        let s = serde_json::to_string(&k).unwrap();
        assert!(s.contains("\"type\":\"usage\""), "{s}");
        assert_eq!(serde_json::from_str::<EventKind>(&s).unwrap(), k);
    }

    /// A cost is the same number after the event log: serde_json's default
    /// float parsing is not correctly rounded for seventeen digits
    /// (3.0299999999999998e-5 came back as 3.03e-5, a fuzzer's find), so
    /// errand builds it with `float_roundtrip`.
    #[test]
    fn costs_come_back_from_the_log_bit_for_bit() {
        // 101 tokens at $0.30 per million, as the price table computes it:
        // seventeen significant digits, more than an f64's integer range.
        let computed = 101.0 * (0.30 / 1e6);
        for cost in [
            computed,
            3.029_999_999_999_999_8e-5,
            3.03e-5,
            0.1 + 0.2,
            1e-300,
            123_456.789_012_345,
            f64::MIN_POSITIVE,
        ] {
            let k = EventKind::Usage(Usage {
                input_tokens: 101,
                cost_usd: Some(cost),
                ..Default::default()
            });
            let s = serde_json::to_string(&k).unwrap();
            let back = serde_json::from_str::<EventKind>(&s).unwrap();
            let EventKind::Usage(u) = back else {
                panic!("{s}")
            };
            assert_eq!(u.cost_usd.map(f64::to_bits), Some(cost.to_bits()), "{s}");
        }
    }
}

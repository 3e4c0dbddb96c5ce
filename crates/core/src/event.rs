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
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// What happened. Tagged by `type` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// errand's own lifecycle: the run entered `state`.
    State {
        state: RunState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A note from errand itself (cloning, committing, limits not applied…).
    Notice {
        message: String,
    },
    /// The harness started a session.
    SessionStart {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tools: Vec<String>,
    },
    /// The instruction given to the agent (first turn or a follow-up).
    UserMessage {
        text: String,
    },
    AssistantMessage {
        text: String,
    },
    Thinking {
        text: String,
    },
    ToolCall {
        id: String,
        name: String,
        input: Value,
        /// Set when the call was made by a sub-agent: the id of the parent call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_id: Option<String>,
    },
    ToolResult {
        id: String,
        output: String,
        is_error: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    /// A file the agent changed, with a unified diff when the harness gives one.
    FileEdit {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
        #[serde(default)]
        added: u32,
        #[serde(default)]
        removed: u32,
    },
    Usage(Usage),
    /// The harness's final word on the run.
    Result {
        is_error: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        turns: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
        usage: Usage,
    },
    Error {
        message: String,
    },
    /// Something the harness flagged that did not stop it (e.g. Codex's
    /// warning-only `error` items). Never a reason for a run to fail.
    Warning {
        message: String,
    },
    /// The whole run's change against its base, recorded by errand when the
    /// run's branch is collected (`truncated` when the diff was cut to size).
    RunDiff {
        base_commit: String,
        commit: String,
        stat: String,
        diff: String,
        #[serde(default)]
        truncated: bool,
    },
    /// A line the parser did not recognise (or could not parse), kept as it was.
    Raw {
        line: String,
    },
}

/// Who produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    Errand,
    Harness,
}

/// One entry of a run's event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the run's log, from 1, without gaps.
    pub seq: u64,
    pub ts: DateTime<Utc>,
    pub source: EventSource,
    /// For harness events: the line number (from 1) in the raw harness log it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_line: Option<u64>,
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
}

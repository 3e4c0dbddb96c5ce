//! Gemini CLI's `gemini -p --output-format stream-json` output (checked
//! against gemini-cli 0.61.0).
//!
//! One JSON object per line, tagged by `type` (see `harnesses.md` §3.1):
//!
//! | line | events |
//! |---|---|
//! | `init` | `SessionStart` (`session_id`, `model`) |
//! | `message` `role: "user"` | `UserMessage` |
//! | `message` `role: "assistant"` | accumulated: one `AssistantMessage` per contiguous run of `delta: true` chunks (a non-delta assistant message is one message by itself) |
//! | `tool_use` | `ToolCall` (`run_shell_command` → `Bash` `{"command"}`; any other tool keeps its name and `parameters`) |
//! | `tool_result` | `FileEdit` for a successful `write_file` / `replace`, then `ToolResult` |
//! | `error` (`severity: "warning"`) | `Warning`, also kept in [`GeminiOutcome::warnings`] |
//! | `error` (any other severity) | `Error` |
//! | `result` | `Usage`, `Result`, and `Error` when `status` is not `success` |
//! | anything else, malformed or unexpected JSON | `Raw` |
//!
//! Decisions:
//!
//! - **Assistant text** arrives as `delta: true` chunks. The parser holds them
//!   and gives one `AssistantMessage` when the run ends: at the next line that
//!   is not an assistant delta (before that line's own events, so the order
//!   is kept), at `result`, or at [`GeminiStreamParser::flush`] (for a stream
//!   that ended without a `result`, e.g. a killed process).
//! - **Shell exit codes.** Gemini CLI 0.61.0 reports a command that exited
//!   non-zero as `status: "success"`, with only the command's output (seen
//!   with `ls /nonexistent`, exit 2). The exit code is known only when the
//!   text says so: `Command exited with code: N` (a failing command without
//!   output), or `Exit Code: N` (debug mode, `[Exit Code: N]` in summaries).
//!   Then `exit_code` is `N` and a non-zero code makes the result an error;
//!   otherwise `exit_code` is `None`, also for `success`, since 0 would be a
//!   guess that is wrong for commands that fail with output.
//! - **File edits** are given when the `tool_result` reports success (a
//!   refused or failed write changed nothing): `write_file` as a diff from
//!   empty (the old content is not in the call), `replace` as the excerpt
//!   diff of `old_string` → `new_string`. The path is the call's `file_path`
//!   as given (it may be relative to the session's cwd, which the stream
//!   does not name).
//! - **Usage** comes from `result.stats`: Gemini's `input_tokens` include the
//!   cached ones; errand's `Usage` counts them apart, so `input_tokens` =
//!   input − cached and `cache_read_tokens` = cached. The stream carries no
//!   cost (see [`crate::pricing`]) and no thinking-token count, so
//!   `output_tokens` is Gemini's `output_tokens` (candidates) only.
//! - **Errors**: a failed run ends with `result` `status: "error"` and an
//!   `error {type, message}`; the process then exits non-zero (with the HTTP
//!   status as exit code, modulo 256: 144 for a 400). An API error's message
//!   is `[API Error: {"error":{…}}]`; [`GeminiOutcome::error_message`]
//!   shortens it to `MESSAGE (STATUS)`. `turns` is `None`: the stream does
//!   not count them.

use std::collections::HashMap;

use errand_core::{EventKind, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::diff::DiffBuilder;

/// What the `result` line said: enough for a runner to decide whether the
/// run succeeded, and why not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeminiOutcome {
    /// The session id from `init` (what `--session-id` / `--resume` take).
    pub session_id: Option<String>,
    /// The model from `init` (`auto` when routed).
    pub model: Option<String>,
    /// Whether `result.status` was anything but `success`.
    pub is_error: bool,
    /// `result.status` as reported (`success`, `error`).
    pub status: Option<String>,
    /// `result.error.type`, e.g. `unknown`, `FatalTurnLimitedError`.
    pub error_type: Option<String>,
    /// `result.error.message`.
    pub error: Option<String>,
    /// The last assistant message.
    pub last_message: Option<String>,
    /// Token usage from `result.stats` (cached input counted apart).
    pub usage: Usage,
    /// `result.stats.duration_ms`: how long the session took.
    pub duration_ms: Option<u64>,
    /// `result.stats.tool_calls`.
    pub tool_calls: Option<u32>,
    /// Messages of `error` lines with `severity: "warning"`, in order.
    pub warnings: Vec<String>,
}

impl GeminiOutcome {
    /// The best one-line explanation of a failed run; `None` when it did not fail.
    ///
    /// An API error (`[API Error: {"error":{"code":400,"message":"…","status":"INVALID_ARGUMENT"}}]`)
    /// is shortened to `MESSAGE (STATUS)`.
    pub fn error_message(&self) -> Option<String> {
        if !self.is_error {
            return None;
        }
        let message = self.error.as_deref().map(str::trim).unwrap_or("");
        if message.is_empty() {
            return Some(match (&self.error_type, &self.status) {
                (Some(kind), _) => format!("gemini reported an error ({kind})"),
                (None, Some(status)) => format!("gemini reported status {status}"),
                (None, None) => "gemini reported an error".to_owned(),
            });
        }
        Some(api_error_text(message).unwrap_or_else(|| message.to_owned()))
    }
}

/// A stateful line parser. One instance per harness process output.
#[derive(Debug, Default)]
pub struct GeminiStreamParser {
    session_id: Option<String>,
    model: Option<String>,
    /// Assistant delta text not yet given as a message.
    pending: Option<String>,
    last_message: Option<String>,
    /// Calls by `tool_id`: the tool's name and parameters.
    calls: HashMap<String, (String, Value)>,
    warnings: Vec<String>,
    outcome: Option<GeminiOutcome>,
}

impl GeminiStreamParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one line of stdout (without the newline). Returns zero or more
    /// normalized events. Never panics.
    pub fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let text = line.trim();
        if text.is_empty() {
            return Vec::new();
        }
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
            let mut events = self.flush();
            events.push(raw(line));
            return events;
        };
        // An assistant delta continues the pending message; anything else
        // ends it first.
        if str_field(&obj, "type") == Some("message")
            && str_field(&obj, "role") == Some("assistant")
            && obj.get("delta").and_then(Value::as_bool) == Some(true)
        {
            if let Some(content) = str_field(&obj, "content") {
                self.pending
                    .get_or_insert_with(String::new)
                    .push_str(content);
                return Vec::new();
            }
        }
        let mut events = self.flush();
        let parsed = match str_field(&obj, "type") {
            Some("init") => self.init(&obj),
            Some("message") => self.message(&obj),
            Some("tool_use") => self.tool_use(&obj),
            Some("tool_result") => self.tool_result(&obj),
            Some("error") => self.error(&obj),
            Some("result") => self.result(&obj),
            _ => None,
        };
        events.extend(parsed.unwrap_or_else(|| vec![raw(line)]));
        events
    }

    /// The pending assistant message, if any: call at the end of the stream
    /// when it may have ended without a `result` line.
    pub fn flush(&mut self) -> Vec<EventKind> {
        match self.pending.take() {
            Some(text) if !text.trim().is_empty() => {
                self.last_message = Some(text.clone());
                vec![EventKind::AssistantMessage { text }]
            }
            _ => Vec::new(),
        }
    }

    /// The `result` info (`None` until a `result` line is seen).
    pub fn outcome(&self) -> Option<&GeminiOutcome> {
        self.outcome.as_ref()
    }

    /// The session id from `init`.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    fn init(&mut self, obj: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let session_id = opt_str(obj, "session_id")?;
        let model = opt_str(obj, "model")?;
        if session_id.is_some() {
            self.session_id = session_id.map(str::to_owned);
        }
        self.model = model.map(str::to_owned);
        Some(vec![EventKind::SessionStart {
            session_id: session_id.map(str::to_owned),
            model: model.map(str::to_owned),
            cwd: None,
            tools: Vec::new(),
        }])
    }

    fn message(&mut self, obj: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let content = str_field(obj, "content")?;
        let role = str_field(obj, "role")?;
        if !matches!(role, "user" | "assistant") {
            return None;
        }
        if content.trim().is_empty() {
            return Some(Vec::new());
        }
        let text = content.to_owned();
        Some(vec![if role == "user" {
            EventKind::UserMessage { text }
        } else {
            // A whole (non-delta) assistant message.
            self.last_message = Some(text.clone());
            EventKind::AssistantMessage { text }
        }])
    }

    fn tool_use(&mut self, obj: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let name = str_field(obj, "tool_name")?;
        let id = str_field(obj, "tool_id")?;
        let parameters = match obj.get("parameters") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => return None,
        };
        let (name_out, input) = match name {
            "run_shell_command" => match parameters.get("command") {
                Some(Value::String(command)) => ("Bash", json!({ "command": command })),
                _ => (name, parameters.clone()),
            },
            _ => (name, parameters.clone()),
        };
        self.calls
            .insert(id.to_owned(), (name.to_owned(), parameters));
        Some(vec![EventKind::ToolCall {
            id: id.to_owned(),
            name: name_out.to_owned(),
            input,
            parent_id: None,
        }])
    }

    fn tool_result(&mut self, obj: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let id = str_field(obj, "tool_id")?;
        let status = str_field(obj, "status")?;
        let output = opt_str(obj, "output")?;
        let error_message = obj
            .get("error")
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str);
        let mut is_error = status != "success";
        let output = match (output, error_message) {
            (Some(o), _) if !o.is_empty() || !is_error => o.to_owned(),
            (_, Some(m)) => m.to_owned(),
            (o, None) => o.unwrap_or("").to_owned(),
        };
        let call = self.calls.remove(id);
        let tool = call.as_ref().map(|(name, _)| name.as_str());
        let exit_code = match tool {
            Some("run_shell_command") | None => shell_exit_code(&output),
            Some(_) => None,
        };
        is_error |= exit_code.is_some_and(|c| c != 0);
        let mut events = Vec::new();
        if !is_error {
            if let Some((name, parameters)) = &call {
                events.extend(file_edit(name, parameters));
            }
        }
        events.push(EventKind::ToolResult {
            id: id.to_owned(),
            output,
            is_error,
            exit_code,
        });
        Some(events)
    }

    fn error(&mut self, obj: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let message = str_field(obj, "message")?.to_owned();
        if str_field(obj, "severity") == Some("warning") {
            self.warnings.push(message.clone());
            return Some(vec![EventKind::Warning { message }]);
        }
        Some(vec![EventKind::Error { message }])
    }

    fn result(&mut self, obj: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let status = str_field(obj, "status")?;
        let stats = match obj.get("stats") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(s)) => s.clone(),
            Some(_) => return None,
        };
        let n = |key: &str| stats.get(key).and_then(as_u64);
        let cached = n("cached").unwrap_or(0);
        let input = match n("input_tokens") {
            Some(total) => total.saturating_sub(cached),
            None => n("input").unwrap_or(0),
        };
        let usage = Usage {
            input_tokens: input,
            output_tokens: n("output_tokens").unwrap_or(0),
            cache_read_tokens: cached,
            cache_write_tokens: 0,
            cost_usd: None,
        };
        let error = obj.get("error");
        let error_text = |key: &str| {
            error
                .and_then(|e| e.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let is_error = status != "success";
        // Taken, not copied: a stream of `result` lines must not repeat one
        // long message in each (output, and work, would grow with the
        // square of the input).
        let last_message = self.last_message.take();
        let outcome = GeminiOutcome {
            session_id: self.session_id.clone(),
            model: self.model.clone(),
            is_error,
            status: Some(status.to_owned()),
            error_type: error_text("type"),
            error: error_text("message"),
            last_message: last_message.clone(),
            usage: usage.clone(),
            duration_ms: n("duration_ms"),
            tool_calls: n("tool_calls").map(|c| u32::try_from(c).unwrap_or(u32::MAX)),
            warnings: self.warnings.clone(),
        };
        let message = outcome.error_message();
        let text = if is_error {
            message.clone()
        } else {
            last_message
        };
        let mut events = vec![
            EventKind::Usage(usage.clone()),
            EventKind::Result {
                is_error,
                text,
                turns: None,
                duration_ms: outcome.duration_ms,
                usage,
            },
        ];
        if let Some(message) = message {
            events.push(EventKind::Error { message });
        }
        self.outcome = Some(outcome);
        Some(events)
    }
}

/// The `FileEdit` of a successful file-changing call.
pub(crate) fn file_edit(name: &str, parameters: &Value) -> Option<EventKind> {
    let string = |key: &str| parameters.get(key).and_then(Value::as_str);
    let path = string("file_path").or_else(|| string("absolute_path"))?;
    let diff = match name {
        "write_file" => DiffBuilder::new()
            .whole("", string("content").unwrap_or(""))
            .finish(path),
        "replace" => DiffBuilder::new()
            .excerpt(
                string("old_string").unwrap_or(""),
                string("new_string").unwrap_or(""),
            )
            .finish(path),
        _ => return None,
    };
    Some(EventKind::FileEdit {
        path: path.to_owned(),
        diff: diff.diff,
        added: diff.added,
        removed: diff.removed,
    })
}

/// The exit code a shell tool's output states: `Command exited with code: N`
/// or `Exit Code: N` (also inside `[Exit Code: N]`).
pub(crate) fn shell_exit_code(output: &str) -> Option<i32> {
    ["Command exited with code:", "Exit Code:"]
        .iter()
        .find_map(|marker| {
            let at = output.find(marker)? + marker.len();
            leading_int(&output[at..])
        })
}

/// The integer at the start of `text` (after spaces), if any.
fn leading_int(text: &str) -> Option<i32> {
    let text = text.trim_start_matches(' ');
    let end = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(text.len(), |(i, _)| i);
    text[..end].parse().ok()
}

/// `MESSAGE (STATUS)` from `[API Error: {"error":{…}}]` (or the bare JSON).
fn api_error_text(text: &str) -> Option<String> {
    let inner = text
        .strip_prefix("[API Error:")
        .and_then(|rest| rest.trim().strip_suffix(']'))
        .unwrap_or(text)
        .trim();
    let body: Value = serde_json::from_str(inner).ok()?;
    let error = body.get("error")?;
    let message = error.get("message")?.as_str()?;
    Some(match error.get("status").and_then(Value::as_str) {
        Some(status) if !status.is_empty() => format!("{message} ({status})"),
        _ => message.to_owned(),
    })
}

fn raw(line: &str) -> EventKind {
    EventKind::Raw {
        line: line.to_owned(),
    }
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

/// `Some(None)` when the field is absent or null, `Some(Some(s))` for a
/// string, `None` for any other type (the line is then not understood).
fn opt_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<Option<&'a str>> {
    match obj.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s)),
        Some(_) => None,
    }
}

/// A non-negative integer, also from a float such as `522.0`.
fn as_u64(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f.round() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`fuzz/`, target `trace`): each `result` line gave
    /// the last assistant message again, so a long message followed by many
    /// short `result` lines made events quadratic in the input.
    #[test]
    fn a_message_is_given_by_one_result_only() {
        let mut p = GeminiStreamParser::new();
        let message = format!(
            r#"{{"type":"message","timestamp":"2025-01-01T00:00:00Z","role":"assistant","content":"{}","delta":true}}"#,
            "x".repeat(1000)
        );
        let result =
            r#"{"type":"result","timestamp":"2025-01-01T00:00:01Z","status":"success","stats":{}}"#;
        p.push_line(&message);
        let texts = |events: Vec<EventKind>| -> Vec<Option<String>> {
            events
                .into_iter()
                .filter_map(|e| match e {
                    EventKind::Result { text, .. } => Some(text),
                    _ => None,
                })
                .collect()
        };
        let first = p.push_line(result);
        assert!(first
            .iter()
            .any(|e| matches!(e, EventKind::AssistantMessage { text } if text.len() == 1000)));
        assert_eq!(texts(first), [Some("x".repeat(1000))]);
        assert_eq!(
            p.outcome()
                .and_then(|o| o.last_message.as_ref())
                .map(String::len),
            Some(1000)
        );
        for _ in 0..100 {
            assert_eq!(texts(p.push_line(result)), [None]);
        }
        assert_eq!(p.outcome().and_then(|o| o.last_message.clone()), None);
    }

    #[test]
    fn shell_exit_codes_are_read_only_where_stated() {
        assert_eq!(shell_exit_code("Command exited with code: 3"), Some(3));
        assert_eq!(
            shell_exit_code("Output: x\nExit Code: 127\nProcess Group PGID: 5"),
            Some(127)
        );
        assert_eq!(shell_exit_code("boom\n[Exit Code: 2]"), Some(2));
        assert_eq!(shell_exit_code("Exit Code: -1"), Some(-1));
        assert_eq!(shell_exit_code("Exit Code: x"), None);
        assert_eq!(shell_exit_code("Exit Code: 99999999999"), None);
        assert_eq!(shell_exit_code("ls: cannot access '/x'"), None);
        assert_eq!(shell_exit_code(""), None);
    }

    #[test]
    fn api_errors_are_shortened() {
        let real = r#"[API Error: {"error":{"code":400,"message":"scripted refusal","status":"INVALID_ARGUMENT"}}]"#;
        assert_eq!(
            api_error_text(real).as_deref(),
            Some("scripted refusal (INVALID_ARGUMENT)")
        );
        assert_eq!(
            api_error_text(r#"{"error":{"message":"m"}}"#).as_deref(),
            Some("m")
        );
        assert_eq!(api_error_text("[API Error: not json]"), None);
        assert_eq!(api_error_text("Operation cancelled."), None);
    }

    #[test]
    fn error_message_falls_back_to_type_then_status() {
        let base = GeminiOutcome {
            is_error: true,
            ..Default::default()
        };
        assert_eq!(
            base.error_message().as_deref(),
            Some("gemini reported an error")
        );
        let typed = GeminiOutcome {
            error_type: Some("FatalTurnLimitedError".into()),
            ..base.clone()
        };
        assert_eq!(
            typed.error_message().as_deref(),
            Some("gemini reported an error (FatalTurnLimitedError)")
        );
        let plain = GeminiOutcome {
            error: Some("Operation cancelled.".into()),
            ..base
        };
        assert_eq!(
            plain.error_message().as_deref(),
            Some("Operation cancelled.")
        );
        assert_eq!(GeminiOutcome::default().error_message(), None);
    }
}

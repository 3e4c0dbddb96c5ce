//! Claude Code's `claude -p --output-format stream-json --verbose` output.
//!
//! One JSON object per line, tagged by `type` (see `harnesses.md` §2.2):
//!
//! | line | events |
//! |---|---|
//! | `system` / `init` | `SessionStart` |
//! | other `system` subtypes (`hook_started`, `hook_response`, `status`, `compact_boundary`, …) | `Note`, one line (a hook's answer with its outcome, exit code and output) |
//! | `control_response` (the answer to a control request on stdin) | `Note` |
//! | `assistant` | per content block: `text` → `AssistantMessage`, `thinking` → `Thinking`, `tool_use` → `ToolCall` (+ `FileEdit` for `Edit`, `MultiEdit`, `Write`, `NotebookEdit`) |
//! | `user` | per content block: `tool_result` → `ToolResult` (then `Image` per image in its content), `text` → `UserMessage`, `image` → `Image` ([`crate::image`]; one given by URL is a `Note`, never fetched); string content → `UserMessage` |
//! | `result` | `Usage`, `Result`, and `Error` when `is_error` |
//! | `stream_event` (partial messages) | nothing: the full `assistant` line repeats them |
//! | anything else, malformed or unexpected JSON | `Raw` |
//!
//! A line whose known parts map to events but which also holds a content
//! block this parser does not know (a server tool, `redacted_thinking`, …) gives
//! those events and then a `Raw` of the whole line, so nothing is lost.

use std::collections::HashMap;

use errand_core::{EventKind, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::diff::{DiffBuilder, FileDiff};

/// What the last `result` line said: enough for a runner to decide whether
/// the run succeeded, and why not.
///
/// Decide on [`ClaudeOutcome::is_error`], never on `subtype`: API errors come
/// as `subtype: "success"` with `is_error: true`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClaudeOutcome {
    /// The session id (what `--resume` takes).
    pub session_id: Option<String>,
    /// `success`, `error_max_turns`, `error_during_execution`, …
    pub subtype: Option<String>,
    /// `is_error`: whether the run failed.
    pub is_error: bool,
    /// The final answer (`result`); for an API error, its message.
    pub result: Option<String>,
    /// `num_turns`: how many turns the session took.
    pub num_turns: Option<u32>,
    /// `duration_ms`: how long the session took.
    pub duration_ms: Option<u64>,
    /// `total_cost_usd`, as Claude Code prices the session.
    pub total_cost_usd: Option<f64>,
    /// Token usage from `usage`, with the cost above.
    pub usage: Usage,
    /// `errors[]`, e.g. `Reached maximum number of turns (2)`.
    pub errors: Vec<String>,
    /// `completed`, `max_turns`, `aborted_tools`, …
    pub terminal_reason: Option<String>,
    /// The real stop reason (streamed `assistant` lines always say `null`).
    pub stop_reason: Option<String>,
    /// The HTTP status of a failed model API call.
    pub api_error_status: Option<u16>,
    /// Tool calls a permission rule or hook refused, as Claude lists them
    /// (`{tool_name, tool_use_id, tool_input}`).
    pub permission_denials: Vec<Value>,
}

impl ClaudeOutcome {
    /// The best one-line explanation of a failed run; `None` when it did not fail.
    pub fn error_message(&self) -> Option<String> {
        if !self.is_error {
            return None;
        }
        let result = self.result.as_deref().filter(|r| !r.trim().is_empty());
        let mut message = match (self.api_error_status, result) {
            (Some(status), Some(result)) => format!("{result} (API status {status})"),
            (Some(status), None) => format!("model API error, status {status}"),
            (None, _) if !self.errors.is_empty() => self.errors.join("; "),
            (None, Some(result)) => result.to_owned(),
            (None, None) => String::new(),
        };
        match self.terminal_reason.as_deref() {
            Some(reason) if reason != "completed" && message.is_empty() => {
                message = format!("run ended: {reason}");
            }
            Some(reason) if reason != "completed" => {
                message.push_str(&format!(" (terminal_reason: {reason})"));
            }
            _ => {}
        }
        if message.is_empty() {
            message = match self.subtype.as_deref() {
                Some(subtype) => format!("claude reported an error ({subtype})"),
                None => "claude reported an error".to_owned(),
            };
        }
        Some(message)
    }
}

/// A stateful line parser. One instance per harness process output.
#[derive(Debug, Default)]
pub struct ClaudeStreamParser {
    session_id: Option<String>,
    cwd: Option<String>,
    outcome: Option<ClaudeOutcome>,
    /// Tool names by `tool_use` id, to know what a `tool_result` answers.
    tool_names: HashMap<String, String>,
}

impl ClaudeStreamParser {
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
            return vec![raw(line)];
        };
        if self.session_id.is_none() {
            self.session_id = str_field(&obj, "session_id").map(str::to_owned);
        }
        let parsed = match obj.get("type").and_then(Value::as_str) {
            Some("system") => self.system(&obj),
            Some("assistant") => self.assistant(&obj),
            Some("user") => self.user(&obj),
            Some("result") => self.result(&obj),
            Some("stream_event") => Some(Parsed::default()),
            Some("control_response") => Some(Parsed::from(vec![control_response(&obj)])),
            _ => None,
        };
        match parsed {
            Some(Parsed {
                mut events,
                partial,
            }) => {
                if partial {
                    events.push(raw(line));
                }
                events
            }
            None => vec![raw(line)],
        }
    }

    /// The final `result` info seen so far (the latest, when a process runs
    /// several turns).
    pub fn outcome(&self) -> Option<&ClaudeOutcome> {
        self.outcome.as_ref()
    }

    /// The session id from `system/init` or the latest `result`, else from the
    /// first line that carried one.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    fn system(&mut self, obj: &Map<String, Value>) -> Option<Parsed> {
        if str_field(obj, "subtype") != Some("init") {
            return system_note(obj).map(|note| Parsed::from(vec![note]));
        }
        let session_id = str_field(obj, "session_id").map(str::to_owned);
        if session_id.is_some() {
            self.session_id.clone_from(&session_id);
        }
        let cwd = str_field(obj, "cwd").map(str::to_owned);
        self.cwd.clone_from(&cwd);
        let tools = obj
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Some(Parsed::from(vec![EventKind::SessionStart {
            session_id,
            model: str_field(obj, "model").map(str::to_owned),
            cwd,
            tools,
        }]))
    }

    fn assistant(&mut self, obj: &Map<String, Value>) -> Option<Parsed> {
        let message = obj.get("message")?.as_object()?;
        let parent_id = str_field(obj, "parent_tool_use_id").map(str::to_owned);
        let mut out = Parsed::default();
        match message.get("content")? {
            Value::String(text) => out.text(text, |text| EventKind::AssistantMessage { text }),
            Value::Array(blocks) => {
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => match block.get("text").and_then(Value::as_str) {
                            Some(text) => {
                                out.text(text, |text| EventKind::AssistantMessage { text })
                            }
                            None => out.partial = true,
                        },
                        Some("thinking") => match block.get("thinking").and_then(Value::as_str) {
                            Some(text) => out.text(text, |text| EventKind::Thinking { text }),
                            None => out.partial = true,
                        },
                        Some("tool_use") => {
                            let id = block.get("id").and_then(Value::as_str);
                            let name = block.get("name").and_then(Value::as_str);
                            let (Some(id), Some(name)) = (id, name) else {
                                out.partial = true;
                                continue;
                            };
                            let input = block.get("input").cloned().unwrap_or(Value::Null);
                            self.tool_names.insert(id.to_owned(), name.to_owned());
                            let edit = self.file_edit(name, &input);
                            out.events.push(EventKind::ToolCall {
                                id: id.to_owned(),
                                name: name.to_owned(),
                                input,
                                parent_id: parent_id.clone(),
                            });
                            out.events.extend(edit);
                        }
                        _ => out.partial = true,
                    }
                }
            }
            _ => return None,
        }
        Some(out)
    }

    fn user(&mut self, obj: &Map<String, Value>) -> Option<Parsed> {
        let message = obj.get("message")?.as_object()?;
        let mut out = Parsed::default();
        match message.get("content")? {
            Value::String(text) => out.text(text, |text| EventKind::UserMessage { text }),
            Value::Array(blocks) => {
                // `tool_use_result` describes the line's one tool result; with
                // several results it would be unclear which, so it is not used.
                let results = blocks.iter().filter(|b| is_block(b, "tool_result")).count();
                let tool_use_result = match results {
                    1 => obj
                        .get("tool_use_result")
                        .or_else(|| obj.get("toolUseResult")),
                    _ => None,
                };
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => match block.get("text").and_then(Value::as_str) {
                            Some(text) => out.text(text, |text| EventKind::UserMessage { text }),
                            None => out.partial = true,
                        },
                        Some("tool_result") => match self.tool_result(block, tool_use_result) {
                            Some(event) => {
                                out.events.push(event);
                                let id = block.get("tool_use_id").and_then(Value::as_str);
                                out.events.extend(result_images(block, id));
                            }
                            None => out.partial = true,
                        },
                        Some("image") => match image_block(block, None) {
                            Some(event) => out.events.push(event),
                            None => out.partial = true,
                        },
                        _ => out.partial = true,
                    }
                }
            }
            _ => return None,
        }
        Some(out)
    }

    fn tool_result(&self, block: &Value, tool_use_result: Option<&Value>) -> Option<EventKind> {
        let id = block.get("tool_use_id")?.as_str()?;
        let is_error = block
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let output = content_text(block.get("content"));
        let exit_code = if is_error {
            leading_exit_code(&output)
        } else {
            let name = self.tool_names.get(id).map(String::as_str);
            bash_success(name, tool_use_result).then_some(0)
        };
        Some(EventKind::ToolResult {
            id: id.to_owned(),
            output,
            is_error,
            exit_code,
        })
    }

    fn result(&mut self, obj: &Map<String, Value>) -> Option<Parsed> {
        let subtype = str_field(obj, "subtype").map(str::to_owned);
        let is_error = match (obj.get("is_error").and_then(Value::as_bool), &subtype) {
            (Some(is_error), _) => is_error,
            (None, Some(subtype)) => subtype.starts_with("error"),
            (None, None) => return None,
        };
        let usage_obj = obj.get("usage");
        let tokens = |key: &str| {
            usage_obj
                .and_then(|u| u.get(key))
                .and_then(as_u64)
                .unwrap_or(0)
        };
        let total_cost_usd = obj.get("total_cost_usd").and_then(Value::as_f64);
        let usage = Usage {
            input_tokens: tokens("input_tokens"),
            output_tokens: tokens("output_tokens"),
            cache_read_tokens: tokens("cache_read_input_tokens"),
            cache_write_tokens: tokens("cache_creation_input_tokens"),
            cost_usd: total_cost_usd,
        };
        let errors: Vec<String> = obj
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| errors.iter().map(value_text).collect())
            .unwrap_or_default();
        let outcome = ClaudeOutcome {
            session_id: str_field(obj, "session_id").map(str::to_owned),
            subtype,
            is_error,
            result: str_field(obj, "result").map(str::to_owned),
            num_turns: obj
                .get("num_turns")
                .and_then(as_u64)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            duration_ms: obj.get("duration_ms").and_then(as_u64),
            total_cost_usd,
            usage: usage.clone(),
            errors,
            terminal_reason: str_field(obj, "terminal_reason").map(str::to_owned),
            stop_reason: str_field(obj, "stop_reason").map(str::to_owned),
            api_error_status: obj
                .get("api_error_status")
                .and_then(|s| match s {
                    Value::String(s) => s.trim().parse().ok(),
                    other => as_u64(other),
                })
                .and_then(|s| u16::try_from(s).ok()),
            permission_denials: obj
                .get("permission_denials")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        };
        if outcome.session_id.is_some() {
            self.session_id.clone_from(&outcome.session_id);
        }
        let text = match outcome.result.as_deref() {
            Some(result) if !result.is_empty() => Some(result.to_owned()),
            _ if !outcome.errors.is_empty() => Some(outcome.errors.join("\n")),
            other => other.map(str::to_owned),
        };
        let mut events = vec![
            EventKind::Usage(usage.clone()),
            EventKind::Result {
                is_error,
                text,
                turns: outcome.num_turns,
                duration_ms: outcome.duration_ms,
                usage,
            },
        ];
        if let Some(message) = outcome.error_message() {
            events.push(EventKind::Error { message });
        }
        self.outcome = Some(outcome);
        Some(Parsed::from(events))
    }

    /// The `FileEdit` a file-changing tool call announces. It is what the
    /// model asked for: the call may still fail or be denied (see its
    /// `ToolResult`).
    fn file_edit(&self, name: &str, input: &Value) -> Option<EventKind> {
        tool_file_edit(name, input, self.cwd.as_deref())
    }

    /// The path for a diff header: relative to the session's cwd when inside it.
    #[cfg(test)]
    fn header_path<'a>(&self, path: &'a str) -> &'a str {
        header_path(self.cwd.as_deref(), path)
    }
}

/// The `FileEdit` of a Claude Code file-changing tool call (`Edit`,
/// `MultiEdit`, `Write`, `NotebookEdit`) built from its input; `None` for
/// other tools. Diff headers are relative to `cwd` when inside it.
pub(crate) fn tool_file_edit(name: &str, input: &Value, cwd: Option<&str>) -> Option<EventKind> {
    let string = |key: &str| input.get(key).and_then(Value::as_str);
    let (path, diff) = match name {
        "Edit" => {
            let path = string("file_path")?;
            let old = string("old_string").unwrap_or("");
            let new = string("new_string").unwrap_or("");
            (
                path,
                DiffBuilder::new()
                    .excerpt(old, new)
                    .finish(header_path(cwd, path)),
            )
        }
        "MultiEdit" => {
            let path = string("file_path")?;
            let mut builder = DiffBuilder::new();
            for edit in input
                .get("edits")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let field = |key: &str| edit.get(key).and_then(Value::as_str).unwrap_or("");
                builder.excerpt(field("old_string"), field("new_string"));
            }
            (path, builder.finish(header_path(cwd, path)))
        }
        "Write" => {
            let path = string("file_path")?;
            let content = string("content").unwrap_or("");
            // The old content is not in the call: the diff is from empty.
            (
                path,
                DiffBuilder::new()
                    .whole("", content)
                    .finish(header_path(cwd, path)),
            )
        }
        "NotebookEdit" => {
            // The cell's old source is not in the call: a replaced cell
            // shows its new source only; a deleted cell has no diff.
            let path = string("notebook_path").or_else(|| string("file_path"))?;
            let diff = match string("edit_mode") {
                Some("delete") => FileDiff::default(),
                _ => DiffBuilder::new()
                    .excerpt("", string("new_source").unwrap_or(""))
                    .finish(header_path(cwd, path)),
            };
            (path, diff)
        }
        _ => return None,
    };
    Some(EventKind::FileEdit {
        path: path.to_owned(),
        diff: diff.diff,
        added: diff.added,
        removed: diff.removed,
    })
}

/// The path for a diff header: relative to `cwd` when inside it.
pub(crate) fn header_path<'a>(cwd: Option<&str>, path: &'a str) -> &'a str {
    cwd.map(|cwd| cwd.trim_end_matches('/'))
        .filter(|cwd| !cwd.is_empty())
        .and_then(|cwd| path.strip_prefix(cwd))
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(path)
}

/// Events from one line; `partial` when part of it was not understood.
#[derive(Debug, Default)]
struct Parsed {
    events: Vec<EventKind>,
    partial: bool,
}

impl From<Vec<EventKind>> for Parsed {
    fn from(events: Vec<EventKind>) -> Self {
        Parsed {
            events,
            partial: false,
        }
    }
}

impl Parsed {
    /// Pushes a text event unless the text is blank.
    fn text(&mut self, text: &str, event: impl FnOnce(String) -> EventKind) {
        if !text.trim().is_empty() {
            self.events.push(event(text.to_owned()));
        }
    }
}

pub(crate) fn raw(line: &str) -> EventKind {
    EventKind::Raw {
        line: line.to_owned(),
    }
}

pub(crate) fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

pub(crate) fn is_block(block: &Value, kind: &str) -> bool {
    block.get("type").and_then(Value::as_str) == Some(kind)
}

/// A non-negative integer, also from a float such as `522.0`.
pub(crate) fn as_u64(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f.round() as u64)
    })
}

/// A JSON value as text: strings as they are, anything else as compact JSON.
pub(crate) fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// A `tool_result`'s `content` as text: a string as it is; an array of
/// blocks joined by newlines (`text` blocks by their text, images as
/// `[image]`, other blocks as compact JSON); absent or null as "".
/// Longest text a [`EventKind::Note`] keeps of a hook's output.
const NOTE_OUTPUT: usize = 2000;

/// The `Note` of a `system` line other than `init`; `None` without a subtype.
pub(crate) fn system_note(obj: &Map<String, Value>) -> Option<EventKind> {
    let subtype = str_field(obj, "subtype")?;
    let hook = str_field(obj, "hook_name")
        .or_else(|| str_field(obj, "hook_event"))
        .unwrap_or("?");
    let text = match subtype {
        "hook_started" => format!("hook {hook} started"),
        "hook_response" => {
            let mut text = format!("hook {hook}");
            if let Some(outcome) = str_field(obj, "outcome") {
                text.push_str(&format!(": {outcome}"));
            }
            if let Some(code) = obj.get("exit_code").and_then(Value::as_i64) {
                text.push_str(&format!(" (exit {code})"));
            }
            let output = [str_field(obj, "output"), str_field(obj, "stderr")]
                .into_iter()
                .flatten()
                .map(str::trim)
                .find(|o| !o.is_empty());
            if let Some(output) = output {
                text.push('\n');
                text.extend(output.chars().take(NOTE_OUTPUT));
            }
            text
        }
        "status" => match str_field(obj, "status") {
            Some(status) => format!("status: {status}"),
            None => "status".to_owned(),
        },
        "compact_boundary" => {
            let meta = obj
                .get("compact_metadata")
                .or_else(|| obj.get("compactMetadata"));
            let trigger = meta.and_then(|m| m.get("trigger")).and_then(Value::as_str);
            let tokens = meta
                .and_then(|m| m.get("pre_tokens").or_else(|| m.get("preTokens")))
                .and_then(Value::as_u64);
            match (trigger, tokens) {
                (Some(t), Some(n)) => format!("context compacted ({t}, {n} tokens before)"),
                (Some(t), None) => format!("context compacted ({t})"),
                _ => "context compacted".to_owned(),
            }
        }
        other => {
            let said = ["message", "content", "text"]
                .iter()
                .find_map(|k| str_field(obj, k))
                .map(|m| m.chars().take(NOTE_OUTPUT).collect::<String>());
            match said {
                Some(m) => format!("{other}: {m}"),
                None => other.replace('_', " "),
            }
        }
    };
    Some(EventKind::Note {
        what: subtype.chars().take(64).collect(),
        text,
    })
}

/// The `Note` of a `control_response` line.
fn control_response(obj: &Map<String, Value>) -> EventKind {
    let response = obj.get("response");
    let subtype = response
        .and_then(|r| r.get("subtype"))
        .and_then(Value::as_str)
        .unwrap_or("answer");
    let error = response
        .and_then(|r| r.get("error"))
        .and_then(Value::as_str);
    EventKind::Note {
        what: "control_response".to_owned(),
        text: match error {
            Some(e) => format!("control request answered: {subtype}: {e}"),
            None => format!("control request answered: {subtype}"),
        },
    }
}

/// The event of an `image` content block: `Image` for base64 data, a
/// `Note` for one given by URL (never fetched); `None` for other shapes.
pub(crate) fn image_block(block: &Value, tool_id: Option<&str>) -> Option<EventKind> {
    let source = block.get("source")?;
    match source.get("type").and_then(Value::as_str)? {
        "base64" => Some(crate::image::image_event(
            source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or(""),
            source.get("data")?.as_str()?,
            tool_id,
        )),
        "url" => Some(EventKind::Note {
            what: "image".to_owned(),
            text: format!(
                "image at {} (not fetched)",
                source
                    .get("url")?
                    .as_str()?
                    .chars()
                    .take(500)
                    .collect::<String>()
            ),
        }),
        _ => None,
    }
}

/// The images in a `tool_result` block's content.
pub(crate) fn result_images(block: &Value, tool_id: Option<&str>) -> Vec<EventKind> {
    block
        .get("content")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|p| is_block(p, "image"))
                .filter_map(|p| image_block(p, tool_id))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        None | Some(Value::Null) => String::new(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .map(|block| match block.get("type").and_then(Value::as_str) {
                Some("text") => block
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or_else(|| value_text(block), str::to_owned),
                Some("image") => "[image]".to_owned(),
                _ => value_text(block),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => value_text(other),
    }
}

/// Whether a successful result is a Bash command that ran to its end: its
/// `tool_use_result` has `stdout` and `stderr` and says `interrupted: false`.
/// A call of unknown name (its `tool_use` not seen) is judged by that shape.
pub(crate) fn bash_success(name: Option<&str>, tool_use_result: Option<&Value>) -> bool {
    if name.is_some_and(|name| name != "Bash") {
        return false;
    }
    let Some(result) = tool_use_result.and_then(Value::as_object) else {
        return false;
    };
    result.get("stdout").is_some_and(Value::is_string)
        && result.get("stderr").is_some_and(Value::is_string)
        && result.get("interrupted").and_then(Value::as_bool) == Some(false)
}

/// `N` from output that starts with `Exit code N`.
pub(crate) fn leading_exit_code(output: &str) -> Option<i32> {
    let rest = output.trim_start().strip_prefix("Exit code")?;
    let rest = rest.strip_prefix(' ')?.trim_start();
    let end = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(rest.len(), |(i, _)| i);
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_is_read_from_the_start_only() {
        assert_eq!(leading_exit_code("Exit code 1\nboom"), Some(1));
        assert_eq!(leading_exit_code("Exit code 127"), Some(127));
        assert_eq!(leading_exit_code("  Exit code -1\n"), Some(-1));
        assert_eq!(leading_exit_code("Exit code"), None);
        assert_eq!(leading_exit_code("Exit code x"), None);
        assert_eq!(leading_exit_code("Exit code 99999999999"), None);
        assert_eq!(leading_exit_code("boom\nExit code 1"), None);
        assert_eq!(leading_exit_code("Exit codes 1"), None);
    }

    #[test]
    fn content_text_joins_blocks() {
        let content = serde_json::json!([
            {"type": "text", "text": "a"},
            {"type": "image", "source": {}},
            {"type": "text", "text": "b"},
            {"type": "other", "x": 1},
            "plain"
        ]);
        assert_eq!(
            content_text(Some(&content)),
            "a\n[image]\nb\n{\"type\":\"other\",\"x\":1}\nplain"
        );
        assert_eq!(content_text(None), "");
        assert_eq!(content_text(Some(&Value::Null)), "");
        assert_eq!(content_text(Some(&serde_json::json!(3))), "3");
    }

    #[test]
    fn header_path_is_relative_to_cwd_when_inside_it() {
        let mut p = ClaudeStreamParser::new();
        p.cwd = Some("/work/ws/".to_owned());
        assert_eq!(p.header_path("/work/ws/src/a.rs"), "src/a.rs");
        assert_eq!(p.header_path("/work/wsx/a.rs"), "/work/wsx/a.rs");
        assert_eq!(p.header_path("/work/ws"), "/work/ws");
        assert_eq!(p.header_path("/other/a.rs"), "/other/a.rs");
    }

    #[test]
    fn error_message_prefers_api_status_then_errors_then_terminal_reason() {
        let base = ClaudeOutcome {
            is_error: true,
            ..Default::default()
        };
        let api = ClaudeOutcome {
            api_error_status: Some(400),
            result: Some("API Error: 400 bad".into()),
            ..base.clone()
        };
        assert_eq!(
            api.error_message().as_deref(),
            Some("API Error: 400 bad (API status 400)")
        );
        let turns = ClaudeOutcome {
            errors: vec!["Reached maximum number of turns (2)".into()],
            terminal_reason: Some("max_turns".into()),
            ..base.clone()
        };
        assert_eq!(
            turns.error_message().as_deref(),
            Some("Reached maximum number of turns (2) (terminal_reason: max_turns)")
        );
        let reason = ClaudeOutcome {
            terminal_reason: Some("aborted_tools".into()),
            ..base.clone()
        };
        assert_eq!(
            reason.error_message().as_deref(),
            Some("run ended: aborted_tools")
        );
        assert_eq!(
            base.error_message().as_deref(),
            Some("claude reported an error")
        );
        assert_eq!(ClaudeOutcome::default().error_message(), None);
    }
}

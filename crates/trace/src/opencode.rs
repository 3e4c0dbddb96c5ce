//! OpenCode's `opencode run --format json` output (checked against
//! opencode 1.18.33).
//!
//! One JSON object per line: `{"type", "timestamp" (ms), "sessionID", …}`
//! with the session's `part` or `error` (see `harnesses.md` §3.2):
//!
//! | line | events |
//! |---|---|
//! | the first line carrying a `sessionID` | `SessionStart` (`session_id` = `sessionID`) before its own events |
//! | `step_start` | nothing |
//! | `text` | `AssistantMessage` |
//! | `reasoning` (with `--thinking`) | `Thinking` |
//! | `tool_use`, `part.state.status` `completed` / `error` | `ToolCall`, then for a completed file change its `FileEdit`s, then `ToolResult` |
//! | `tool_use`, status `pending` / `running` | `ToolCall` (once per `callID`) |
//! | `step_finish` | `Usage` (this step's tokens) |
//! | `error` | `Error` |
//! | anything else, malformed or unexpected JSON | `Raw` |
//! | (process exit) [`OpenCodeStreamParser::finish`] | `Result`, and `Error` when it failed without an `error` line |
//!
//! Decisions:
//!
//! - **No final event.** OpenCode prints no `result`: the run ends with the
//!   last `step_finish` (`reason: "stop"`) and the process exit (0, or 1
//!   after an `error`). The runner calls
//!   [`OpenCodeStreamParser::finish`] with the exit status, which gives the
//!   `Result`: `is_error` when the exit failed or an `error` line was seen;
//!   `text` = the error message(s) for a failed run that reported one, else
//!   the last assistant text; `turns` = the number of `step_finish` lines
//!   (one per model request, like Claude's `num_turns`); `usage` = the sum of
//!   every step's. [`OpenCodeStreamParser::outcome`] is computed from what
//!   was seen so far and is final only after `finish`.
//! - **Session start.** The first `step_start` normally starts the session,
//!   but a run that fails before its first step prints only `error`; so any
//!   first line with a `sessionID` gives the `SessionStart`.
//! - **Tools.** OpenCode prints a tool part only once it is `completed` or
//!   `error`, so each `tool_use` line is usually a call and its result
//!   together (the id is `callID`). `bash` becomes `Bash` `{"command"}` with
//!   `exit_code` from `metadata.exit` (a non-zero exit is an error result,
//!   even though OpenCode's status says `completed`); other tools keep their
//!   name and `state.input`. A call of a tool that does not exist (or with
//!   arguments its schema rejects) comes back as OpenCode's own `invalid`
//!   tool, `completed`; it is kept under that name, with an error result.
//! - **File edits** of a completed call: `metadata.files[]` (`apply_patch`:
//!   one per file, with its `patch`), else `metadata.filediff` (`edit`: the
//!   patch and counts OpenCode computed), else for `write` a diff from empty
//!   when `metadata.exists` is false (an overwrite has no known old content:
//!   a `FileEdit` without diff), else for `edit` the excerpt diff of
//!   `oldString` → `newString`. jsdiff's `Index:` / `====` preamble is
//!   dropped from the patches.
//! - **Usage** per `step_finish`: OpenCode's `tokens.input` already excludes
//!   cache reads and writes, which map to `cache_read_tokens` /
//!   `cache_write_tokens`; its `tokens.output` excludes `tokens.reasoning`,
//!   which errand counts as output. `part.cost` becomes `cost_usd` when
//!   greater than 0 (OpenCode reports 0 for models without a price).
//! - **Errors**: `error.data.message` (else `error.name`) is the message;
//!   the outcome also keeps the `statusCode` of API errors.

use std::collections::HashSet;

use errand_core::{EventKind, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::diff::{count_changes, strip_preamble, DiffBuilder};

/// The tool OpenCode substitutes for a call it cannot make.
const INVALID_TOOL: &str = "invalid";

/// What the run said so far: enough for a runner to decide whether it
/// succeeded, and why not. Final only after [`OpenCodeStreamParser::finish`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenCodeOutcome {
    /// The session id (`ses_…`, what `opencode run -s` takes).
    pub session_id: Option<String>,
    /// Whether an `error` line was seen or, after `finish`, the exit failed.
    pub is_error: bool,
    /// Whether [`OpenCodeStreamParser::finish`] was called.
    pub finished: bool,
    /// The exit status given to `finish` (`None` before).
    pub exit_success: Option<bool>,
    /// `step_finish` lines seen (one per model request).
    pub steps: u32,
    /// The last assistant text.
    pub last_message: Option<String>,
    /// Messages of `error` lines, in order.
    pub errors: Vec<String>,
    /// The HTTP status of the latest failed model API call, when reported.
    pub api_error_status: Option<u16>,
    /// The sum of every step's usage.
    pub usage: Usage,
}

impl OpenCodeOutcome {
    /// The best one-line explanation of a failed run; `None` when it did not fail.
    pub fn error_message(&self) -> Option<String> {
        if !self.is_error {
            return None;
        }
        let mut message = self.errors.join("; ");
        if message.trim().is_empty() {
            message = "opencode exited with a failure status and reported no error".to_owned();
        }
        if let Some(status) = self.api_error_status {
            message.push_str(&format!(" (API status {status})"));
        }
        Some(message)
    }
}

/// A stateful line parser. One instance per harness process output.
#[derive(Debug, Default)]
pub struct OpenCodeStreamParser {
    outcome: OpenCodeOutcome,
    /// Calls whose `ToolCall` was given and whose result was not.
    open: HashSet<String>,
}

impl OpenCodeStreamParser {
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
        let mut events = Vec::new();
        if self.outcome.session_id.is_none() {
            if let Some(id) = str_field(&obj, "sessionID") {
                self.outcome.session_id = Some(id.to_owned());
                events.push(EventKind::SessionStart {
                    session_id: Some(id.to_owned()),
                    model: None,
                    cwd: None,
                    tools: Vec::new(),
                });
            }
        }
        let part = obj.get("part").and_then(Value::as_object);
        let parsed = match (str_field(&obj, "type"), part) {
            (Some("step_start"), Some(_)) => Some(Vec::new()),
            (Some("text"), Some(part)) => self.text(part),
            (Some("reasoning"), Some(part)) => str_field(part, "text").map(|t| {
                if t.trim().is_empty() {
                    Vec::new()
                } else {
                    vec![EventKind::Thinking { text: t.to_owned() }]
                }
            }),
            (Some("tool_use"), Some(part)) => self.tool_use(part),
            (Some("step_finish"), Some(part)) => self.step_finish(part),
            (Some("error"), _) => self.error(&obj),
            _ => None,
        };
        events.extend(parsed.unwrap_or_else(|| vec![raw(line)]));
        events
    }

    /// The end of the run, given the process's exit status: the `Result`
    /// (and an `Error` when the exit failed without any `error` line).
    /// Call it once, when the process has exited; later calls give nothing.
    pub fn finish(&mut self, exit_success: bool) -> Vec<EventKind> {
        if self.outcome.finished {
            return Vec::new();
        }
        self.outcome.finished = true;
        self.outcome.exit_success = Some(exit_success);
        let silent_failure = !exit_success && self.outcome.errors.is_empty();
        self.outcome.is_error |= !exit_success;
        let text = match self.outcome.error_message() {
            Some(_) if !self.outcome.errors.is_empty() => Some(self.outcome.errors.join("\n")),
            _ => self.outcome.last_message.clone(),
        };
        let mut events = vec![EventKind::Result {
            is_error: self.outcome.is_error,
            text,
            turns: Some(self.outcome.steps),
            duration_ms: None,
            usage: self.outcome.usage.clone(),
        }];
        if silent_failure {
            if let Some(message) = self.outcome.error_message() {
                events.push(EventKind::Error { message });
            }
        }
        events
    }

    /// The outcome from what was seen so far; final only after [`Self::finish`].
    pub fn outcome(&self) -> &OpenCodeOutcome {
        &self.outcome
    }

    /// The session id from the first line that carried one.
    pub fn session_id(&self) -> Option<&str> {
        self.outcome.session_id.as_deref()
    }

    fn text(&mut self, part: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let text = str_field(part, "text")?;
        if text.trim().is_empty() {
            return Some(Vec::new());
        }
        self.outcome.last_message = Some(text.to_owned());
        Some(vec![EventKind::AssistantMessage {
            text: text.to_owned(),
        }])
    }

    fn tool_use(&mut self, part: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let id = match part.get("callID") {
            Some(Value::String(id)) => id.as_str(),
            None | Some(Value::Null) => str_field(part, "id")?,
            Some(_) => return None,
        };
        let tool = str_field(part, "tool")?;
        let state = part.get("state")?.as_object()?;
        let status = str_field(state, "status")?;
        let input = match state.get("input") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(i @ Value::Object(_)) => i.clone(),
            Some(_) => return None,
        };
        let metadata = state.get("metadata").and_then(Value::as_object);
        let (name, call_input) = match (tool, input.get("command")) {
            ("bash", Some(Value::String(command))) => ("Bash", json!({ "command": command })),
            _ => (tool, input.clone()),
        };
        let mut events = Vec::new();
        let finished = matches!(status, "completed" | "error");
        let already_open = if finished {
            self.open.remove(id)
        } else {
            !self.open.insert(id.to_owned())
        };
        if !already_open {
            events.push(EventKind::ToolCall {
                id: id.to_owned(),
                name: name.to_owned(),
                input: call_input,
                parent_id: None,
            });
        }
        match status {
            "completed" => {
                let exit_code = metadata
                    .and_then(|m| m.get("exit"))
                    .and_then(Value::as_i64)
                    .and_then(|c| i32::try_from(c).ok());
                // OpenCode answers a call of a missing tool (or with bad
                // arguments) with its `invalid` tool, as `completed`.
                let is_error = exit_code.is_some_and(|c| c != 0) || tool == INVALID_TOOL;
                if !is_error {
                    events.extend(file_edits(tool, &input, metadata));
                }
                events.push(EventKind::ToolResult {
                    id: id.to_owned(),
                    output: text_of(state.get("output")),
                    is_error,
                    exit_code,
                });
            }
            "error" => events.push(EventKind::ToolResult {
                id: id.to_owned(),
                output: text_of(state.get("error")),
                is_error: true,
                exit_code: None,
            }),
            _ => {}
        }
        Some(events)
    }

    fn step_finish(&mut self, part: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let tokens = match part.get("tokens") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(t)) => t.clone(),
            Some(_) => return None,
        };
        let n = |v: Option<&Value>| v.and_then(as_u64).unwrap_or(0);
        let cache = tokens.get("cache");
        let usage = Usage {
            input_tokens: n(tokens.get("input")),
            output_tokens: n(tokens.get("output")).saturating_add(n(tokens.get("reasoning"))),
            cache_read_tokens: n(cache.and_then(|c| c.get("read"))),
            cache_write_tokens: n(cache.and_then(|c| c.get("write"))),
            cost_usd: part
                .get("cost")
                .and_then(Value::as_f64)
                .filter(|c| c.is_finite() && *c > 0.0),
        };
        let total = &mut self.outcome.usage;
        total.input_tokens = total.input_tokens.saturating_add(usage.input_tokens);
        total.output_tokens = total.output_tokens.saturating_add(usage.output_tokens);
        total.cache_read_tokens = total
            .cache_read_tokens
            .saturating_add(usage.cache_read_tokens);
        total.cache_write_tokens = total
            .cache_write_tokens
            .saturating_add(usage.cache_write_tokens);
        if let Some(cost) = usage.cost_usd {
            total.cost_usd = Some(total.cost_usd.unwrap_or(0.0) + cost);
        }
        self.outcome.steps = self.outcome.steps.saturating_add(1);
        Some(vec![EventKind::Usage(usage)])
    }

    fn error(&mut self, obj: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let error = obj.get("error")?;
        let message = match error {
            Value::String(s) => s.clone(),
            Value::Object(e) => {
                let data = e.get("data");
                if let Some(status) = data
                    .and_then(|d| d.get("statusCode"))
                    .and_then(as_u64)
                    .and_then(|s| u16::try_from(s).ok())
                {
                    self.outcome.api_error_status = Some(status);
                }
                data.and_then(|d| d.get("message"))
                    .and_then(Value::as_str)
                    .or_else(|| e.get("message").and_then(Value::as_str))
                    .or_else(|| e.get("name").and_then(Value::as_str))?
                    .to_owned()
            }
            _ => return None,
        };
        self.outcome.is_error = true;
        self.outcome.errors.push(message.clone());
        Some(vec![EventKind::Error { message }])
    }
}

/// The `FileEdit`s of a completed call (see the module's decisions).
fn file_edits(tool: &str, input: &Value, metadata: Option<&Map<String, Value>>) -> Vec<EventKind> {
    let meta = |key: &str| metadata.and_then(|m| m.get(key));
    if let Some(files) = meta("files").and_then(Value::as_array) {
        return files
            .iter()
            .filter_map(|f| {
                let path = f
                    .get("movePath")
                    .and_then(Value::as_str)
                    .or_else(|| f.get("filePath").and_then(Value::as_str))?;
                Some(patch_edit(path, f.get("patch"), f))
            })
            .collect();
    }
    if let Some(filediff) = meta("filediff").filter(|f| f.is_object()) {
        let path = filediff
            .get("file")
            .and_then(Value::as_str)
            .or_else(|| input.get("filePath").and_then(Value::as_str));
        if let Some(path) = path {
            let patch = filediff.get("patch").or_else(|| meta("diff"));
            return vec![patch_edit(path, patch, filediff)];
        }
    }
    let string = |key: &str| input.get(key).and_then(Value::as_str);
    let Some(path) = meta("filepath")
        .and_then(Value::as_str)
        .or_else(|| string("filePath"))
    else {
        return Vec::new();
    };
    let diff = match tool {
        "write" if meta("exists").and_then(Value::as_bool) == Some(true) => None,
        "write" => Some(
            DiffBuilder::new()
                .whole("", string("content").unwrap_or(""))
                .finish(path),
        ),
        "edit" => Some(
            DiffBuilder::new()
                .excerpt(
                    string("oldString").unwrap_or(""),
                    string("newString").unwrap_or(""),
                )
                .finish(path),
        ),
        _ => return Vec::new(),
    };
    let diff = diff.unwrap_or_default();
    vec![EventKind::FileEdit {
        path: path.to_owned(),
        diff: diff.diff,
        added: diff.added,
        removed: diff.removed,
    }]
}

/// A `FileEdit` from OpenCode's own patch; counts from `additions` /
/// `deletions` when given, else from the patch.
fn patch_edit(path: &str, patch: Option<&Value>, counts: &Value) -> EventKind {
    let patch = patch
        .and_then(Value::as_str)
        .map(strip_preamble)
        .filter(|p| !p.trim().is_empty());
    let (added, removed) = patch.map(count_changes).unwrap_or((0, 0));
    let count = |key: &str, fallback: u32| {
        counts
            .get(key)
            .and_then(as_u64)
            .map_or(fallback, |n| u32::try_from(n).unwrap_or(u32::MAX))
    };
    EventKind::FileEdit {
        path: path.to_owned(),
        diff: patch.map(str::to_owned),
        added: count("additions", added),
        removed: count("deletions", removed),
    }
}

fn raw(line: &str) -> EventKind {
    EventKind::Raw {
        line: line.to_owned(),
    }
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

/// A JSON value as text: strings as they are, absent/null as "", anything
/// else as compact JSON.
fn text_of(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => serde_json::to_string(other).unwrap_or_default(),
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

    #[test]
    fn apply_patch_metadata_gives_one_edit_per_file() {
        // The shape of opencode 1.18.33's apply_patch metadata (read from its bundle).
        let metadata = json!({"diff": "…", "files": [
            {"filePath": "/w/a.txt", "relativePath": "a.txt", "type": "add",
             "patch": "Index: /w/a.txt\n===\n--- /w/a.txt\n+++ /w/a.txt\n@@ -0,0 +1,1 @@\n+hi\n", "additions": 1, "deletions": 0},
            {"filePath": "/w/old.txt", "movePath": "/w/new.txt", "type": "move", "patch": "", "additions": 0, "deletions": 0},
            {"relativePath": "no-path"}
        ]});
        let edits = file_edits("apply_patch", &json!({}), metadata.as_object());
        assert_eq!(
            edits,
            vec![
                EventKind::FileEdit {
                    path: "/w/a.txt".into(),
                    diff: Some("--- /w/a.txt\n+++ /w/a.txt\n@@ -0,0 +1,1 @@\n+hi\n".into()),
                    added: 1,
                    removed: 0
                },
                EventKind::FileEdit {
                    path: "/w/new.txt".into(),
                    diff: None,
                    added: 0,
                    removed: 0
                },
            ]
        );
    }

    #[test]
    fn edits_without_metadata_are_diffed_from_the_input() {
        let edit = file_edits(
            "edit",
            &json!({"filePath": "/w/a", "oldString": "x", "newString": "y"}),
            None,
        );
        assert!(
            matches!(
                &edit[..],
                [EventKind::FileEdit {
                    added: 1,
                    removed: 1,
                    diff: Some(_),
                    ..
                }]
            ),
            "{edit:?}"
        );
        let overwrite = json!({"filepath": "/w/a", "exists": true});
        assert_eq!(
            file_edits("write", &json!({"content": "z"}), overwrite.as_object()),
            vec![EventKind::FileEdit {
                path: "/w/a".into(),
                diff: None,
                added: 0,
                removed: 0
            }]
        );
        assert_eq!(
            file_edits("read", &json!({"filePath": "/w/a"}), None),
            vec![]
        );
        assert_eq!(file_edits("write", &json!({}), None), vec![]);
    }

    #[test]
    fn error_message_joins_errors_and_names_the_status() {
        let o = OpenCodeOutcome {
            is_error: true,
            errors: vec!["a".into(), "b".into()],
            api_error_status: Some(500),
            ..Default::default()
        };
        assert_eq!(o.error_message().as_deref(), Some("a; b (API status 500)"));
        let silent = OpenCodeOutcome {
            is_error: true,
            ..Default::default()
        };
        assert_eq!(
            silent.error_message().as_deref(),
            Some("opencode exited with a failure status and reported no error")
        );
        assert_eq!(OpenCodeOutcome::default().error_message(), None);
    }
}

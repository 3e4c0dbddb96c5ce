//! Codex's `codex exec --json` output (checked against codex-cli 0.169.0).
//!
//! One JSON object per line, tagged by `type` (see `harnesses.md` §1.3):
//!
//! | line | events |
//! |---|---|
//! | `thread.started` | `SessionStart` (`session_id` = `thread_id`) |
//! | `turn.started` | nothing |
//! | `turn.completed` | `Usage` (this turn's share), `Result` (`is_error: false`) |
//! | `turn.failed` | `Error`, `Result` (`is_error: true`) |
//! | top-level `error` | `Error` |
//! | `item.*` `command_execution` | `ToolCall` `Bash` `{"command"}` once, then `ToolResult` with `exit_code` on completion |
//! | `item.*` `file_change` | `ToolCall` `apply_patch` `{"changes"}`, then per change a `FileEdit` and one `ToolResult` |
//! | `item.*` `mcp_tool_call` | `ToolCall` `mcp__SERVER__TOOL`, then `ToolResult` |
//! | `item.*` `collab_tool_call` | `ToolCall` named by its `tool` (`spawn_agent`, …), then `ToolResult` |
//! | `item.*` `web_search` | `ToolCall` `web_search` `{"query","action"}`, then an empty `ToolResult` |
//! | `item.*` `todo_list` | per new plan snapshot: `ToolCall` `update_plan` `{"items"}` and an empty `ToolResult` |
//! | `item.completed` `agent_message` / `reasoning` | `AssistantMessage` / `Thinking` |
//! | `item.completed` `error` (a warning) | `Warning`, and the message is kept in [`CodexOutcome::warnings`] |
//! | anything else, malformed or unexpected JSON | `Raw` |
//!
//! Decisions:
//!
//! - **Tool-like items** (`command_execution`, `file_change`, `mcp_tool_call`,
//!   `collab_tool_call`, `web_search`, `todo_list`) give their `ToolCall` at
//!   `item.started` (or at `item.updated`/`item.completed` when no start was
//!   seen), exactly once per item, and always a `ToolResult` with the same id
//!   on completion, so every call in the trace is answered. Where Codex reports
//!   no output (`web_search`, `todo_list`) the result's output is empty.
//! - **`file_change`** is a `ToolCall` named `apply_patch` (the model tool that
//!   makes it) with the changes as input; on completion each change becomes a
//!   `FileEdit` (with a diff and counts only when the line carries a `diff`,
//!   which 0.169.0 does not), followed by a `ToolResult` listing `kind path`
//!   per line. A failed patch gives no `FileEdit`, only an error result.
//! - **Warnings**: Codex reports non-fatal problems (unknown model metadata,
//!   hook-trust notices, the WebSocket fallback) as `item.completed` items of
//!   type `error`; a real failure is `turn.failed`. They become
//!   `Warning` events (never `Error`, which would read as a failure), and their
//!   messages are also collected in [`CodexOutcome::warnings`].
//! - **Usage**: `turn.completed.usage` is cumulative for the thread. The
//!   `Usage` event is this turn's delta (the previous cumulative value
//!   subtracted; if any counter went down, the counters were reset and the
//!   whole value is the delta); `Result.usage` and [`CodexOutcome::usage`] are
//!   cumulative. Codex's `input_tokens` include the cached ones; errand's
//!   `Usage` counts them apart as Claude does, so `input_tokens` = input −
//!   cached and `cache_read_tokens` = cached. Codex reports no cost
//!   (`cost_usd` stays `None`; see [`crate::pricing`]).
//! - **Errors**: a top-level `error` line is an `Error` (with a custom
//!   provider and `stream_max_retries = 0` it precedes `turn.failed`; with
//!   retries it may be a reconnect notice). `turn.failed` repeats its message
//!   only when it differs from the last `error` line of the turn.
//! - Item ids restart per process and may repeat across turns, so pairing is
//!   per turn: `turn.started` forgets unfinished items. The last agent
//!   message and the last `error` line belong to their turn too: a turn's end
//!   (or the next `turn.started`) forgets them.

use std::collections::{HashMap, HashSet};

use errand_core::{EventKind, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// What the latest finished turn said: enough for a runner to decide
/// whether the run succeeded, and why not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CodexOutcome {
    /// The thread id from `thread.started` (what `codex exec resume` takes).
    pub thread_id: Option<String>,
    /// Whether the latest turn failed (`turn.failed`).
    pub is_error: bool,
    /// Turns completed so far (`turn.completed` lines).
    pub turns: u32,
    /// The latest turn's last agent message.
    pub last_message: Option<String>,
    /// The failure message of a failed turn.
    pub error: Option<String>,
    /// Cumulative usage for the thread, as of the latest `turn.completed`.
    pub usage: Usage,
    /// Cumulative reasoning tokens (already included in `usage.output_tokens`).
    pub reasoning_output_tokens: u64,
    /// Messages of warning items (`item.completed` of type `error`), in order.
    pub warnings: Vec<String>,
}

impl CodexOutcome {
    /// The best one-line explanation of a failed run; `None` when it did not fail.
    ///
    /// Codex 0.169.0 passes a model API error body through verbatim as the
    /// failure message (`{"error":{"message":"…","type":"…",…}}`); such a
    /// message is shortened to `MESSAGE (TYPE)`.
    pub fn error_message(&self) -> Option<String> {
        if !self.is_error {
            return None;
        }
        let message = self.error.as_deref().map(str::trim).unwrap_or("");
        if message.is_empty() {
            return Some("codex reported a failed turn".to_owned());
        }
        Some(api_error_text(message).unwrap_or_else(|| message.to_owned()))
    }
}

/// Codex's token counters, as `turn.completed.usage` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tokens {
    input: u64,
    cached_input: u64,
    cache_write_input: u64,
    output: u64,
    reasoning_output: u64,
}

impl Tokens {
    pub(crate) fn from_json(usage: &Map<String, Value>) -> Tokens {
        let n = |key: &str| usage.get(key).and_then(as_u64).unwrap_or(0);
        Tokens {
            input: n("input_tokens"),
            cached_input: n("cached_input_tokens"),
            cache_write_input: n("cache_write_input_tokens"),
            output: n("output_tokens"),
            reasoning_output: n("reasoning_output_tokens"),
        }
    }

    fn fields(&self) -> [u64; 5] {
        [
            self.input,
            self.cached_input,
            self.cache_write_input,
            self.output,
            self.reasoning_output,
        ]
    }

    /// `self - earlier`, or all of `self` when a counter went down (reset).
    pub(crate) fn since(&self, earlier: &Tokens) -> Tokens {
        let went_down = self
            .fields()
            .iter()
            .zip(earlier.fields())
            .any(|(now, then)| *now < then);
        if went_down {
            return *self;
        }
        Tokens {
            input: self.input - earlier.input,
            cached_input: self.cached_input - earlier.cached_input,
            cache_write_input: self.cache_write_input - earlier.cache_write_input,
            output: self.output - earlier.output,
            reasoning_output: self.reasoning_output - earlier.reasoning_output,
        }
    }

    /// errand's usage: cached input counted apart from fresh input.
    pub(crate) fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input.saturating_sub(self.cached_input),
            output_tokens: self.output,
            cache_read_tokens: self.cached_input,
            cache_write_tokens: self.cache_write_input,
            cost_usd: None,
        }
    }

    fn from_usage(usage: &Usage) -> Tokens {
        Tokens {
            input: usage.input_tokens.saturating_add(usage.cache_read_tokens),
            cached_input: usage.cache_read_tokens,
            cache_write_input: usage.cache_write_tokens,
            output: usage.output_tokens,
            reasoning_output: 0,
        }
    }
}

/// Whether an `item.*` line starts, updates or completes its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Started,
    Updated,
    Completed,
}

/// A stateful line parser. One instance per harness process output.
#[derive(Debug, Default)]
pub struct CodexStreamParser {
    thread_id: Option<String>,
    outcome: Option<CodexOutcome>,
    /// Tool-like items whose `ToolCall` was given and whose result was not.
    open: HashSet<String>,
    /// Per `todo_list` item: snapshots given so far and the latest items.
    plans: HashMap<String, (u32, Value)>,
    /// The current turn's last agent message.
    turn_message: Option<String>,
    /// The current turn's last top-level `error` message.
    turn_error: Option<String>,
    /// Cumulative counters as of the latest `turn.completed`.
    cumulative: Tokens,
    turns: u32,
    warnings: Vec<String>,
}

impl CodexStreamParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser for a resumed thread (`codex exec resume`), whose first
    /// `turn.completed` still counts the earlier processes' tokens: `prior`
    /// is the cumulative usage the thread had before (the previous run's
    /// [`CodexOutcome::usage`]), so the first `Usage` event is this turn's only.
    pub fn resuming(prior: &Usage) -> Self {
        CodexStreamParser {
            cumulative: Tokens::from_usage(prior),
            ..Self::default()
        }
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
        let parsed = match str_field(&obj, "type") {
            Some("thread.started") => self.thread_started(&obj),
            Some("turn.started") => {
                self.open.clear();
                self.turn_message = None;
                self.turn_error = None;
                Some(Vec::new())
            }
            Some("turn.completed") => self.turn_completed(&obj),
            Some("turn.failed") => Some(self.turn_failed(&obj)),
            Some("error") => str_field(&obj, "message").map(|message| {
                self.turn_error = Some(message.to_owned());
                vec![EventKind::Error {
                    message: message.to_owned(),
                }]
            }),
            Some("item.started") => self.item(Phase::Started, &obj, line),
            Some("item.updated") => self.item(Phase::Updated, &obj, line),
            Some("item.completed") => self.item(Phase::Completed, &obj, line),
            _ => None,
        };
        parsed.unwrap_or_else(|| vec![raw(line)])
    }

    /// The latest finished turn's outcome (`None` until a turn completes or fails).
    pub fn outcome(&self) -> Option<&CodexOutcome> {
        self.outcome.as_ref()
    }

    /// The thread id from `thread.started`.
    pub fn thread_id(&self) -> Option<&str> {
        self.thread_id.as_deref()
    }

    fn thread_started(&mut self, obj: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let id = str_field(obj, "thread_id")?;
        if self.thread_id.as_deref().is_some_and(|old| old != id) {
            // Another thread: its counters start from zero.
            self.cumulative = Tokens::default();
        }
        self.thread_id = Some(id.to_owned());
        self.open.clear();
        Some(vec![EventKind::SessionStart {
            session_id: Some(id.to_owned()),
            model: None,
            cwd: None,
            tools: Vec::new(),
        }])
    }

    fn turn_completed(&mut self, obj: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let now = match obj.get("usage") {
            Some(Value::Object(usage)) => Tokens::from_json(usage),
            None | Some(Value::Null) => self.cumulative,
            Some(_) => return None,
        };
        let delta = now.since(&self.cumulative);
        self.cumulative = now;
        self.turns = self.turns.saturating_add(1);
        let total = now.usage();
        let text = self.turn_message.take();
        self.turn_error = None;
        self.outcome = Some(CodexOutcome {
            thread_id: self.thread_id.clone(),
            is_error: false,
            turns: self.turns,
            last_message: text.clone(),
            error: None,
            usage: total.clone(),
            reasoning_output_tokens: now.reasoning_output,
            warnings: self.warnings.clone(),
        });
        Some(vec![
            EventKind::Usage(delta.usage()),
            EventKind::Result {
                is_error: false,
                text,
                turns: Some(self.turns),
                duration_ms: None,
                usage: total,
            },
        ])
    }

    fn turn_failed(&mut self, obj: &Map<String, Value>) -> Vec<EventKind> {
        let message = obj
            .get("error")
            .and_then(|e| match e {
                Value::String(s) => Some(s.clone()),
                other => other
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| "turn failed".to_owned());
        let mut events = Vec::new();
        if self.turn_error.as_deref() != Some(message.as_str()) {
            events.push(EventKind::Error {
                message: message.clone(),
            });
        }
        self.turn_error = None;
        let total = self.cumulative.usage();
        self.outcome = Some(CodexOutcome {
            thread_id: self.thread_id.clone(),
            is_error: true,
            turns: self.turns,
            last_message: self.turn_message.take(),
            error: Some(message.clone()),
            usage: total.clone(),
            reasoning_output_tokens: self.cumulative.reasoning_output,
            warnings: self.warnings.clone(),
        });
        events.push(EventKind::Result {
            is_error: true,
            text: Some(message),
            turns: Some(self.turns),
            duration_ms: None,
            usage: total,
        });
        events
    }

    /// An `item.*` line: its events by item type (`None`: not understood).
    fn item(
        &mut self,
        phase: Phase,
        obj: &Map<String, Value>,
        line: &str,
    ) -> Option<Vec<EventKind>> {
        let item = obj.get("item")?.as_object()?;
        match str_field(item, "type")? {
            "agent_message" => self.agent_message(phase, item),
            "reasoning" => Self::reasoning(phase, item),
            "error" => self.warning_item(phase, item, line),
            "command_execution" => self.command_execution(phase, item),
            "file_change" => self.file_change(phase, item),
            "mcp_tool_call" => self.mcp_tool_call(phase, item),
            "collab_tool_call" => self.collab_tool_call(phase, item),
            "web_search" => self.web_search(phase, item),
            "todo_list" => {
                let id = str_field(item, "id")?;
                let items = item.get("items")?.as_array()?;
                Some(self.plan_snapshot(id, Value::Array(items.clone())))
            }
            _ => None,
        }
    }

    /// `agent_message`: the turn's answer so far, given when completed.
    fn agent_message(&mut self, phase: Phase, item: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let text = str_field(item, "text")?;
        if phase != Phase::Completed {
            return Some(Vec::new());
        }
        if text.trim().is_empty() {
            return Some(Vec::new());
        }
        self.turn_message = Some(text.to_owned());
        Some(vec![EventKind::AssistantMessage {
            text: text.to_owned(),
        }])
    }

    /// `reasoning`: the model's reasoning, given when completed.
    fn reasoning(phase: Phase, item: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let text = str_field(item, "text")?;
        if phase != Phase::Completed || text.trim().is_empty() {
            return Some(Vec::new());
        }
        Some(vec![EventKind::Thinking {
            text: text.to_owned(),
        }])
    }

    /// An `error` item: a warning that did not stop the turn.
    fn warning_item(
        &mut self,
        phase: Phase,
        item: &Map<String, Value>,
        line: &str,
    ) -> Option<Vec<EventKind>> {
        let message = str_field(item, "message")?;
        if phase != Phase::Completed {
            return Some(vec![raw(line)]);
        }
        self.warnings.push(message.to_owned());
        Some(vec![EventKind::Warning {
            message: message.to_owned(),
        }])
    }

    /// `command_execution`: a `Bash` call and its output and exit code.
    fn command_execution(
        &mut self,
        phase: Phase,
        item: &Map<String, Value>,
    ) -> Option<Vec<EventKind>> {
        let command = str_field(item, "command")?;
        let call = ("Bash", json!({ "command": command }));
        self.tool_item(phase, item, call, || {
            let exit_code = item
                .get("exit_code")
                .and_then(Value::as_i64)
                .and_then(|c| i32::try_from(c).ok());
            let is_error = failed_status(item) || exit_code.is_some_and(|c| c != 0);
            let output = str_field(item, "aggregated_output").unwrap_or("");
            (output.to_owned(), is_error, exit_code, Vec::new())
        })
    }

    /// `file_change`: an `apply_patch` call; on success a `FileEdit` per change.
    fn file_change(&mut self, phase: Phase, item: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let changes = item.get("changes")?.as_array()?;
        let mut parsed = Vec::new();
        for change in changes {
            let path = change.get("path").and_then(Value::as_str)?;
            let kind = change
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("update");
            let diff = change.get("diff").and_then(Value::as_str);
            parsed.push((path, kind, diff));
        }
        let call = ("apply_patch", json!({ "changes": changes }));
        self.tool_item(phase, item, call, || {
            let is_error = status(item).is_some_and(|s| s != "completed");
            let output = parsed
                .iter()
                .map(|(path, kind, _)| format!("{kind} {path}"))
                .collect::<Vec<_>>()
                .join("\n");
            let edits = if is_error {
                Vec::new()
            } else {
                parsed
                    .iter()
                    .map(|(path, _, diff)| file_edit(path, *diff))
                    .collect()
            };
            (output, is_error, None, edits)
        })
    }

    /// `mcp_tool_call`: a call of `mcp__SERVER__TOOL` and its result or error.
    fn mcp_tool_call(&mut self, phase: Phase, item: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let server = str_field(item, "server")?;
        let tool = str_field(item, "tool")?;
        let name = format!("mcp__{server}__{tool}");
        let input = item.get("arguments").cloned().unwrap_or(Value::Null);
        self.tool_item(phase, item, (name.as_str(), input), || {
            let error = item
                .get("error")
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str);
            let output = match (error, item.get("result")) {
                (Some(message), _) => message.to_owned(),
                (None, Some(result)) => mcp_result_text(result),
                (None, None) => String::new(),
            };
            let is_error = failed_status(item) || error.is_some();
            (output, is_error, None, Vec::new())
        })
    }

    /// `collab_tool_call`: a sub-agent tool (`spawn_agent`, …) and the agents' states.
    fn collab_tool_call(
        &mut self,
        phase: Phase,
        item: &Map<String, Value>,
    ) -> Option<Vec<EventKind>> {
        let tool = str_field(item, "tool")?;
        let mut input = Map::new();
        for key in ["prompt", "sender_thread_id", "receiver_thread_ids"] {
            if let Some(v) = item.get(key).filter(|v| !v.is_null()) {
                input.insert(key.to_owned(), v.clone());
            }
        }
        self.tool_item(phase, item, (tool, Value::Object(input)), || {
            let output = item
                .get("agents_states")
                .filter(|s| !s.is_null())
                .map(value_text)
                .unwrap_or_default();
            (output, failed_status(item), None, Vec::new())
        })
    }

    /// `web_search`: a `web_search` call with an empty result.
    fn web_search(&mut self, phase: Phase, item: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let mut input = Map::new();
        for key in ["query", "action"] {
            if let Some(v) = item.get(key).filter(|v| !v.is_null()) {
                input.insert(key.to_owned(), v.clone());
            }
        }
        self.tool_item(phase, item, ("web_search", Value::Object(input)), || {
            (String::new(), failed_status(item), None, Vec::new())
        })
    }

    /// Events of a tool-like item: its `ToolCall` once, and on completion
    /// what `result` gives (`FileEdit`s, then the `ToolResult`).
    fn tool_item(
        &mut self,
        phase: Phase,
        item: &Map<String, Value>,
        (name, input): (&str, Value),
        result: impl FnOnce() -> (String, bool, Option<i32>, Vec<EventKind>),
    ) -> Option<Vec<EventKind>> {
        let id = str_field(item, "id")?.to_owned();
        let mut events = Vec::new();
        let already_open = match phase {
            Phase::Completed => self.open.remove(&id),
            Phase::Started | Phase::Updated => !self.open.insert(id.clone()),
        };
        if !already_open {
            events.push(EventKind::ToolCall {
                id: id.clone(),
                name: name.to_owned(),
                input,
                parent_id: None,
            });
        }
        if phase == Phase::Completed {
            let (output, is_error, exit_code, edits) = result();
            events.extend(edits);
            events.push(EventKind::ToolResult {
                id,
                output,
                is_error,
                exit_code,
            });
        }
        Some(events)
    }

    /// A `todo_list` snapshot: a call/result pair when the plan changed.
    /// The first call of an item has its id, later ones `ID/N`.
    fn plan_snapshot(&mut self, id: &str, items: Value) -> Vec<EventKind> {
        let entry = self.plans.entry(id.to_owned()).or_insert((0, Value::Null));
        if entry.0 > 0 && entry.1 == items {
            return Vec::new();
        }
        let call_id = match entry.0 {
            0 => id.to_owned(),
            n => format!("{id}/{n}"),
        };
        entry.0 = entry.0.saturating_add(1);
        entry.1 = items.clone();
        vec![
            EventKind::ToolCall {
                id: call_id.clone(),
                name: "update_plan".to_owned(),
                input: json!({ "items": items }),
                parent_id: None,
            },
            EventKind::ToolResult {
                id: call_id,
                output: String::new(),
                is_error: false,
                exit_code: None,
            },
        ]
    }
}

/// `MESSAGE (TYPE)` from an OpenAI-style error body, if `text` is one.
fn api_error_text(text: &str) -> Option<String> {
    let body: Value = serde_json::from_str(text).ok()?;
    let error = body.get("error")?;
    let message = error.get("message")?.as_str()?;
    Some(match error.get("type").and_then(Value::as_str) {
        Some(kind) if !kind.is_empty() => format!("{message} ({kind})"),
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

fn status(item: &Map<String, Value>) -> Option<&str> {
    str_field(item, "status")
}

/// `failed` or `declined` (a command the policy refused).
fn failed_status(item: &Map<String, Value>) -> bool {
    matches!(status(item), Some("failed" | "declined"))
}

/// A `FileEdit` for one change; with a unified diff, its `+`/`-` lines counted.
fn file_edit(path: &str, diff: Option<&str>) -> EventKind {
    let diff = diff.filter(|d| !d.trim().is_empty());
    let (mut added, mut removed) = (0u32, 0u32);
    for line in diff.unwrap_or("").lines() {
        if line.starts_with("+++") || line.starts_with("---") {
            continue;
        }
        if line.starts_with('+') {
            added = added.saturating_add(1);
        } else if line.starts_with('-') {
            removed = removed.saturating_add(1);
        }
    }
    EventKind::FileEdit {
        path: path.to_owned(),
        diff: diff.map(str::to_owned),
        added,
        removed,
    }
}

/// An MCP result as text: its `content` blocks (`text` by their text, others
/// as compact JSON) joined by newlines, else `structured_content` as JSON.
fn mcp_result_text(result: &Value) -> String {
    match result.get("content").and_then(Value::as_array) {
        Some(blocks) if !blocks.is_empty() => blocks
            .iter()
            .map(|b| match b.get("text").and_then(Value::as_str) {
                Some(text) => text.to_owned(),
                None => value_text(b),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => result
            .get("structured_content")
            .filter(|v| !v.is_null())
            .map(value_text)
            .unwrap_or_default(),
    }
}

/// A JSON value as text: strings as they are, anything else as compact JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
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
    fn tokens_since_subtracts_or_restarts() {
        let a = Tokens {
            input: 100,
            cached_input: 10,
            cache_write_input: 0,
            output: 20,
            reasoning_output: 5,
        };
        let b = Tokens {
            input: 250,
            cached_input: 60,
            cache_write_input: 0,
            output: 50,
            reasoning_output: 5,
        };
        assert_eq!(
            b.since(&a),
            Tokens {
                input: 150,
                cached_input: 50,
                cache_write_input: 0,
                output: 30,
                reasoning_output: 0
            }
        );
        assert_eq!(a.since(&b), a);
        assert_eq!(
            b.usage(),
            Usage {
                input_tokens: 190,
                output_tokens: 50,
                cache_read_tokens: 60,
                cache_write_tokens: 0,
                cost_usd: None
            }
        );
        assert_eq!(Tokens::from_usage(&b.usage()).input, 250);
    }

    #[test]
    fn file_edit_counts_diff_lines_without_headers() {
        let diff = "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-old\n+new\n+more\n same\n";
        assert_eq!(
            file_edit("x", Some(diff)),
            EventKind::FileEdit {
                path: "x".into(),
                diff: Some(diff.into()),
                added: 2,
                removed: 1
            }
        );
        assert_eq!(
            file_edit("y", Some("  ")),
            EventKind::FileEdit {
                path: "y".into(),
                diff: None,
                added: 0,
                removed: 0
            }
        );
    }

    #[test]
    fn mcp_results_as_text() {
        let r = json!({"content":[{"type":"text","text":"a"},{"type":"image","data":"x"}],"structured_content":null});
        assert_eq!(
            mcp_result_text(&r),
            "a\n{\"data\":\"x\",\"type\":\"image\"}"
        );
        assert_eq!(
            mcp_result_text(&json!({"content":[],"structured_content":{"k":1}})),
            "{\"k\":1}"
        );
        assert_eq!(mcp_result_text(&json!(null)), "");
    }
}

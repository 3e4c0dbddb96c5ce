//! Codex's rollout file, `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-…jsonl`
//! (see `harnesses.md` §1.5), checked against codex-cli 0.169.0.
//!
//! One JSON object per line: `{"timestamp", "type", "payload"}`. The
//! `response_item`s are the model conversation itself (Responses API items);
//! the `event_msg`s are Codex's own events, which mostly repeat them.
//!
//! | line | events |
//! |---|---|
//! | `session_meta` | `SessionStart` (`session_id`, `cwd`, and `model` from the first `turn_context`: the event waits for it, or for the first line that gives events, or [`CodexRolloutParser::finish`]), once per session id |
//! | `response_item` `message` `user` | `UserMessage` per text, except what Codex adds itself (`<environment_context>`, AGENTS.md instructions, …) |
//! | `response_item` `message` `assistant` | `AssistantMessage` |
//! | `response_item` `message` `developer` / `system` | nothing (the system prompt) |
//! | `response_item` `reasoning` | `Thinking` (the summary, else the raw reasoning; nothing when only encrypted) |
//! | `response_item` `function_call` / `custom_tool_call` / `local_shell_call` | `ToolCall` with `id` = `call_id` (see below for names) |
//! | `response_item` `function_call_output` / `custom_tool_call_output` | `FileEdit`s of a successful patch, then `ToolResult` |
//! | `response_item` `web_search_call` | `ToolCall` `web_search` and an empty `ToolResult` |
//! | `event_msg` `token_count` | `Usage`: what the thread total grew by |
//! | `event_msg` `task_complete` / `turn_aborted` | `Result` (`is_error` for an aborted turn) |
//! | `event_msg` `error` | `Error` |
//! | `event_msg` `warning` / `stream_error` | `Warning` |
//! | `event_msg` that repeat response items (`user_message`, `agent_message`, `agent_reasoning`, `item_*`, `exec_command_*`, `patch_apply_*`, …) and bookkeeping (`task_started`, `thread_settings_applied`, …) | nothing (exit codes and failures are kept for the matching `ToolResult`) |
//! | `turn_context`, `world_state`, `token_usage_record`, `compacted`; `response_item` `ghost_snapshot` | nothing |
//! | anything else, malformed or unexpected JSON | `Raw` |
//!
//! Decisions:
//!
//! - **Names**: the shell tools (`exec_command`, `shell`, `shell_command`,
//!   `local_shell`) become `Bash` with the command line as `command` (the
//!   other arguments kept), as [`crate::CodexStreamParser`] names Codex's
//!   commands. A call that applies a patch (the `apply_patch` tool, or
//!   `apply_patch` run through the shell) becomes `apply_patch` with
//!   `{"changes": [{"path", "kind"}], "patch"}`. Other tools keep their name
//!   and their parsed arguments.
//! - **Results**: Codex's output text starts with a header (`Exit code: N`,
//!   `Process exited with code N`, `Wall time: …`, … then `Output:`); the
//!   result's `output` is what follows it and `exit_code` comes from it (or,
//!   from older Codex, the JSON text `{"output", "metadata": {"exit_code"}}`;
//!   else from the `exec_command_end` / `item_completed` event that preceded
//!   the output). `is_error` when the exit code is not 0, or Codex reported the
//!   command or patch as failed.
//! - **File edits**: a patch's changes become `FileEdit`s (paths made
//!   absolute against the session's cwd; diff hunks numbered from each hunk's
//!   start, since the file is not known; a deleted file has no diff), given
//!   just before the call's `ToolResult` and only when it succeeded. A patch
//!   whose output is not in the file gives none.
//! - **Usage**: `token_count` carries the thread's cumulative total; the
//!   `Usage` event is what it grew by since the previous one (repeated
//!   totals give nothing), with cached input counted apart as in
//!   [`crate::CodexStreamParser`]. No cost is reported (see [`crate::pricing`]).
//!   `Result.usage` is the cumulative total.

use std::collections::HashMap;

use errand_core::{EventKind, Usage};
use serde_json::{json, Map, Value};

use crate::claude::{as_u64, header_path, raw, str_field, value_text};
use crate::codex::Tokens;
use crate::diff::{DiffBuilder, FileDiff};

/// `event_msg` types that give nothing: they repeat response items or are
/// Codex's bookkeeping.
const QUIET_EVENTS: [&str; 27] = [
    "task_started",
    "thread_settings_applied",
    "session_configured",
    "user_message",
    "agent_message",
    "agent_message_delta",
    "agent_reasoning",
    "agent_reasoning_delta",
    "agent_reasoning_raw_content",
    "agent_reasoning_raw_content_delta",
    "agent_reasoning_section_break",
    "item_started",
    "item_updated",
    "exec_command_begin",
    "exec_command_output_delta",
    "patch_apply_begin",
    "mcp_tool_call_begin",
    "mcp_tool_call_end",
    "web_search_begin",
    "web_search_end",
    "turn_diff",
    "plan_update",
    "context_compacted",
    "entered_review_mode",
    "exited_review_mode",
    "background_event",
    "mcp_startup_complete",
];

/// Line types that give nothing.
const QUIET_LINES: [&str; 4] = [
    "turn_context",
    "world_state",
    "token_usage_record",
    "compacted",
];

/// Shell tools, whose calls become `Bash`.
const SHELL_TOOLS: [&str; 4] = ["exec_command", "shell", "shell_command", "local_shell"];

/// Starts of user-role texts that Codex adds itself.
const HARNESS_CONTEXT: [&str; 6] = [
    "<environment_context>",
    "<user_instructions>",
    "# AGENTS.md instructions",
    "<permissions instructions>",
    "<skills_instructions>",
    "<turn_aborted>",
];

/// A stateful line parser for one rollout file.
#[derive(Debug, Default)]
pub struct CodexRolloutParser {
    session_id: Option<String>,
    cwd: Option<String>,
    /// Whether a `SessionStart` already gave `cwd` since a line last set it.
    cwd_told: bool,
    /// The thread's cumulative usage as of the latest `token_count`.
    cumulative: Tokens,
    /// The `FileEdit`s of patch calls, until their output.
    patches: HashMap<String, Vec<EventKind>>,
    /// What Codex's events said of a call before its output: exit code, failed.
    status: HashMap<String, (Option<i32>, bool)>,
    turns: u32,
    /// A `SessionStart` held until the first `turn_context` gives its model.
    start: Option<EventKind>,
    /// `web_search_call`s without an id seen so far.
    searches: u32,
}

impl CodexRolloutParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one line of the rollout (without the newline). Returns zero or
    /// more normalized events. Never panics.
    pub fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let text = line.trim();
        if text.is_empty() {
            return Vec::new();
        }
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
            return vec![raw(line)];
        };
        let payload = obj.get("payload").and_then(Value::as_object);
        let mut turn_context = false;
        let parsed = match (str_field(&obj, "type"), payload) {
            (Some("session_meta"), Some(p)) => self.session_meta(p),
            (Some("response_item"), Some(p)) => self.response_item(p),
            (Some("event_msg"), Some(p)) => self.event_msg(p),
            (Some(kind), Some(p)) if QUIET_LINES.contains(&kind) => {
                if kind == "turn_context" {
                    turn_context = true;
                    self.turn_context(p);
                }
                Some(Vec::new())
            }
            _ => None,
        };
        let events = parsed.unwrap_or_else(|| vec![raw(line)]);
        let meta = str_field(&obj, "type") == Some("session_meta");
        if self.start.is_some() && !meta && (turn_context || !events.is_empty()) {
            let mut all = self.finish();
            all.extend(events);
            return all;
        }
        events
    }

    /// The `SessionStart` still held (waiting for the model of the first
    /// `turn_context`): call at the end of the file.
    pub fn finish(&mut self) -> Vec<EventKind> {
        self.start.take().into_iter().collect()
    }

    /// The session id from `session_meta`.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The thread's cumulative usage as of the latest `token_count`.
    pub fn usage(&self) -> Usage {
        self.cumulative.usage()
    }

    fn session_meta(&mut self, p: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let id = str_field(p, "id").or_else(|| str_field(p, "session_id"))?;
        self.set_cwd(p);
        if self.session_id.as_deref() == Some(id) {
            return Some(Vec::new());
        }
        if self.session_id.is_some() {
            // Another thread: its counters start from zero.
            self.cumulative = Tokens::default();
        }
        self.session_id = Some(id.to_owned());
        let mut events = self.finish();
        // A cwd is given once per line that sets it: lines switching between
        // session ids must not each repeat a long cwd read earlier.
        let cwd = if self.cwd_told {
            None
        } else {
            self.cwd.clone()
        };
        self.cwd_told = true;
        self.start = Some(EventKind::SessionStart {
            session_id: Some(id.to_owned()),
            model: str_field(p, "model").map(str::to_owned),
            cwd,
            tools: Vec::new(),
        });
        if str_field(p, "model").is_some() {
            events.extend(self.finish());
        }
        Some(events)
    }

    /// The cwd, and the model for a `SessionStart` still held.
    /// The cwd a line gives. One longer than `PATH_MAX` is no directory a
    /// process can have, and would be repeated in every patched file's path.
    fn set_cwd(&mut self, p: &Map<String, Value>) {
        if let Some(cwd) = str_field(p, "cwd") {
            self.cwd = (cwd.len() <= PATH_MAX).then(|| cwd.to_owned());
            self.cwd_told = false;
        }
    }

    fn turn_context(&mut self, p: &Map<String, Value>) {
        self.set_cwd(p);
        if let Some(EventKind::SessionStart { model, .. }) = self.start.as_mut() {
            if model.is_none() {
                *model = str_field(p, "model").map(str::to_owned);
            }
        }
    }

    fn response_item(&mut self, p: &Map<String, Value>) -> Option<Vec<EventKind>> {
        match str_field(p, "type")? {
            "message" => message(p),
            "reasoning" => Some(reasoning(p)),
            "function_call" => {
                let name = str_field(p, "name")?;
                let id = call_id(p)?;
                let args = match p.get("arguments") {
                    Some(Value::String(s)) => {
                        serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
                    }
                    Some(other) => other.clone(),
                    None => Value::Null,
                };
                Some(self.call(id, name, args))
            }
            "custom_tool_call" => {
                let name = str_field(p, "name")?;
                let id = call_id(p)?;
                let input = p.get("input").cloned().unwrap_or(Value::Null);
                Some(self.call(id, name, input))
            }
            "local_shell_call" => {
                let id = call_id(p)?;
                let action = p.get("action")?.as_object()?;
                let mut input = action.clone();
                input.remove("type");
                Some(self.call(id, "local_shell", Value::Object(input)))
            }
            "function_call_output" | "custom_tool_call_output" => self.output(p),
            "web_search_call" => {
                let id = match str_field(p, "id").or_else(|| str_field(p, "call_id")) {
                    Some(id) => id.to_owned(),
                    None => {
                        self.searches = self.searches.saturating_add(1);
                        format!("web_search_{}", self.searches)
                    }
                };
                let mut input = Map::new();
                if let Some(action) = p.get("action").filter(|a| !a.is_null()) {
                    if let Some(query) = action.get("query").filter(|q| q.is_string()) {
                        input.insert("query".to_owned(), query.clone());
                    }
                    input.insert("action".to_owned(), action.clone());
                }
                Some(vec![
                    EventKind::ToolCall {
                        id: id.clone(),
                        name: "web_search".to_owned(),
                        input: Value::Object(input),
                        parent_id: None,
                    },
                    EventKind::ToolResult {
                        id,
                        output: String::new(),
                        is_error: str_field(p, "status") == Some("failed"),
                        exit_code: None,
                    },
                ])
            }
            "ghost_snapshot" => Some(Vec::new()),
            _ => None,
        }
    }

    /// The `ToolCall` of a function or custom tool call, normalized (see the
    /// module docs); a patch's `FileEdit`s are kept for its output.
    fn call(&mut self, id: &str, name: &str, args: Value) -> Vec<EventKind> {
        let shell = SHELL_TOOLS.contains(&name);
        let command = if shell { command_line(&args) } else { None };
        let patch = match (name, &args) {
            ("apply_patch", Value::String(patch)) => Some(patch.as_str()),
            ("apply_patch", args) => args.get("input").and_then(Value::as_str),
            _ => command.as_deref().and_then(embedded_patch),
        }
        .filter(|p| p.contains("*** Begin Patch"))
        .map(str::to_owned);
        let (name, input) = match (patch, command) {
            (Some(patch), _) => {
                let files = parse_patch(&patch, self.cwd.as_deref());
                let changes: Vec<Value> = files
                    .iter()
                    .map(|f| json!({"path": f.path, "kind": f.kind}))
                    .collect();
                let edits = files.into_iter().map(|f| f.edit).collect();
                self.patches.insert(id.to_owned(), edits);
                (
                    "apply_patch".to_owned(),
                    json!({"changes": changes, "patch": patch}),
                )
            }
            (None, Some(command)) => {
                let mut input = match args {
                    Value::Object(map) => map,
                    _ => Map::new(),
                };
                input.remove("cmd");
                input.insert("command".to_owned(), Value::String(command));
                ("Bash".to_owned(), Value::Object(input))
            }
            (None, None) => (name.to_owned(), args),
        };
        vec![EventKind::ToolCall {
            id: id.to_owned(),
            name,
            input,
            parent_id: None,
        }]
    }

    fn output(&mut self, p: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let id = call_id(p)?;
        let (output, exit_code, failed) = match p.get("output")? {
            Value::String(s) => match json_output(s) {
                Some((output, exit_code)) => (output, exit_code, false),
                None => {
                    let (exit_code, output) = split_output(s);
                    (output, exit_code, false)
                }
            },
            Value::Object(o) => {
                let text = match o.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(items)) => items_text(items),
                    _ => value_text(&Value::Object(o.clone())),
                };
                let failed = o.get("success").and_then(Value::as_bool) == Some(false);
                (text, None, failed)
            }
            Value::Array(items) => (items_text(items), None, false),
            other => (value_text(other), None, false),
        };
        let (seen_exit, seen_failed) = self.status.remove(id).unwrap_or((None, false));
        let exit_code = exit_code.or(seen_exit);
        let is_error = failed || seen_failed || exit_code.is_some_and(|c| c != 0);
        let mut events = Vec::new();
        if let Some(edits) = self.patches.remove(id) {
            if !is_error {
                events.extend(edits);
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

    fn event_msg(&mut self, p: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let kind = str_field(p, "type")?;
        let message = || {
            str_field(p, "message")
                .filter(|m| !m.trim().is_empty())
                .map(str::to_owned)
        };
        let events = match kind {
            "token_count" => self.token_count(p),
            "task_complete" => {
                self.turns = self.turns.saturating_add(1);
                vec![EventKind::Result {
                    is_error: false,
                    text: str_field(p, "last_agent_message")
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned),
                    turns: Some(self.turns),
                    duration_ms: p.get("duration_ms").and_then(as_u64),
                    usage: self.cumulative.usage(),
                }]
            }
            "turn_aborted" => {
                self.turns = self.turns.saturating_add(1);
                let text = match str_field(p, "reason") {
                    Some(reason) => format!("turn aborted ({reason})"),
                    None => "turn aborted".to_owned(),
                };
                vec![EventKind::Result {
                    is_error: true,
                    text: Some(text),
                    turns: Some(self.turns),
                    duration_ms: p.get("duration_ms").and_then(as_u64),
                    usage: self.cumulative.usage(),
                }]
            }
            "error" => vec![EventKind::Error {
                message: message()?,
            }],
            "warning" | "stream_error" => vec![EventKind::Warning {
                message: message()?,
            }],
            "item_completed" => {
                let item = p.get("item")?.as_object()?;
                if let Some(id) = str_field(item, "id") {
                    let failed = matches!(str_field(item, "status"), Some("failed" | "declined"));
                    let exit = item.get("exit_code").and_then(as_i32);
                    if matches!(
                        str_field(item, "type"),
                        Some("CommandExecution" | "FileChange" | "McpToolCall")
                    ) {
                        self.status.insert(id.to_owned(), (exit, failed));
                    }
                }
                Vec::new()
            }
            "exec_command_end" => {
                if let Some(id) = str_field(p, "call_id") {
                    let exit = p.get("exit_code").and_then(as_i32);
                    self.status
                        .insert(id.to_owned(), (exit, exit.is_some_and(|c| c != 0)));
                }
                Vec::new()
            }
            "patch_apply_end" => {
                if let Some(id) = str_field(p, "call_id") {
                    let failed = p.get("success").and_then(Value::as_bool) == Some(false);
                    self.status.insert(id.to_owned(), (None, failed));
                }
                Vec::new()
            }
            kind if QUIET_EVENTS.contains(&kind) => Vec::new(),
            _ => return None,
        };
        Some(events)
    }

    fn token_count(&mut self, p: &Map<String, Value>) -> Vec<EventKind> {
        let Some(total) = p
            .get("info")
            .and_then(|i| i.get("total_token_usage"))
            .and_then(Value::as_object)
        else {
            return Vec::new();
        };
        let now = Tokens::from_json(total);
        let delta = now.since(&self.cumulative);
        self.cumulative = now;
        if delta == Tokens::default() {
            return Vec::new();
        }
        vec![EventKind::Usage(delta.usage())]
    }
}

fn message(p: &Map<String, Value>) -> Option<Vec<EventKind>> {
    let texts = || -> Vec<&str> {
        p.get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|block| block.get("text").and_then(Value::as_str))
            .filter(|t| !t.trim().is_empty())
            .collect()
    };
    match str_field(p, "role")? {
        "user" => {
            let from_harness = p
                .get("internal_chat_message_metadata_passthrough")
                .and_then(|m| m.get("content_item_metadata"))
                .and_then(Value::as_array)
                .is_some_and(|items| {
                    !items.is_empty()
                        && items.iter().all(|i| {
                            i.pointer("/provenance/type").and_then(Value::as_str) == Some("harness")
                        })
                });
            if from_harness {
                return Some(Vec::new());
            }
            Some(
                texts()
                    .into_iter()
                    .filter(|t| {
                        let t = t.trim_start();
                        !HARNESS_CONTEXT.iter().any(|prefix| t.starts_with(prefix))
                    })
                    .map(|t| EventKind::UserMessage { text: t.to_owned() })
                    .collect(),
            )
        }
        "assistant" => {
            let texts = texts();
            if texts.is_empty() {
                return Some(Vec::new());
            }
            Some(vec![EventKind::AssistantMessage {
                text: texts.join("\n"),
            }])
        }
        "developer" | "system" => Some(Vec::new()),
        _ => None,
    }
}

/// The reasoning summary (else the raw reasoning text) as `Thinking`.
fn reasoning(p: &Map<String, Value>) -> Vec<EventKind> {
    let texts = |key: &str| -> Vec<&str> {
        p.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .filter(|t| !t.trim().is_empty())
            .collect()
    };
    let mut parts = texts("summary");
    if parts.is_empty() {
        parts = texts("content");
    }
    if parts.is_empty() {
        return Vec::new();
    }
    vec![EventKind::Thinking {
        text: parts.join("\n\n"),
    }]
}

fn call_id(p: &Map<String, Value>) -> Option<&str> {
    str_field(p, "call_id").or_else(|| str_field(p, "id"))
}

fn as_i32(v: &Value) -> Option<i32> {
    v.as_i64().and_then(|c| i32::try_from(c).ok())
}

/// Text of Responses API content items (`input_text`, `output_text`, …),
/// images as `[image]`, joined by newlines.
fn items_text(items: &[Value]) -> String {
    items
        .iter()
        .map(|item| match item.get("text").and_then(Value::as_str) {
            Some(text) => text.to_owned(),
            None if item.get("type").and_then(Value::as_str) == Some("input_image") => {
                "[image]".to_owned()
            }
            None => value_text(item),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A shell call's command line: `cmd` or `command` as a string, or an argv
/// (`["bash", "-lc", SCRIPT]` gives the script; others are joined by spaces).
fn command_line(args: &Value) -> Option<String> {
    let command = args.get("cmd").or_else(|| args.get("command"))?;
    match command {
        Value::String(s) => Some(s.clone()),
        Value::Array(argv) => {
            let argv: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
            match argv.as_slice() {
                [shell, flag, script]
                    if ["bash", "sh", "zsh", "/bin/bash", "/bin/sh", "/bin/zsh"]
                        .contains(shell)
                        && ["-c", "-lc"].contains(flag) =>
                {
                    Some((*script).to_owned())
                }
                [] => None,
                argv => Some(argv.join(" ")),
            }
        }
        _ => None,
    }
}

/// The patch of an `apply_patch` run through the shell.
fn embedded_patch(command: &str) -> Option<&str> {
    if !command.trim_start().starts_with("apply_patch") {
        return None;
    }
    let start = command.find("*** Begin Patch")?;
    let rest = &command[start..];
    let end = rest
        .find("*** End Patch")
        .map_or(rest.len(), |i| i + "*** End Patch".len());
    Some(&rest[..end])
}

/// Older Codex's shell output, a JSON text `{"output", "metadata":
/// {"exit_code"}}`: the output and the exit code.
fn json_output(text: &str) -> Option<(String, Option<i32>)> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let value: Value = serde_json::from_str(text).ok()?;
    let output = value.get("output")?.as_str()?.to_owned();
    let exit_code = value.pointer("/metadata/exit_code").and_then(as_i32);
    Some((output, exit_code))
}

/// Codex's tool output without its header, and the exit code the header
/// gives. Text without a recognised header comes back as it is.
fn split_output(text: &str) -> (Option<i32>, String) {
    let (header, body) = if let Some(body) = text.strip_prefix("Output:\n") {
        ("", body)
    } else if let Some(i) = text.find("\nOutput:\n") {
        (&text[..i], &text[i + "\nOutput:\n".len()..])
    } else if let Some(header) = text.strip_suffix("\nOutput:") {
        (header, "")
    } else {
        return (None, text.to_owned());
    };
    let header_line = |l: &str| {
        l.starts_with("Process ")
            || l.split_once(": ").is_some_and(|(key, _)| {
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
            })
    };
    if !header.lines().all(header_line) {
        return (None, text.to_owned());
    }
    let exit_code = header.lines().find_map(|l| {
        l.strip_prefix("Exit code: ")
            .or_else(|| l.strip_prefix("Process exited with code "))
            .and_then(|n| n.trim().parse().ok())
    });
    (exit_code, body.to_owned())
}

/// One file of a patch: its absolute path, `add` / `update` / `delete`, and
/// its `FileEdit`.
struct PatchFile {
    path: String,
    kind: &'static str,
    edit: EventKind,
}

/// The files of an `apply_patch` patch (`*** Begin Patch` … `*** End Patch`).
fn parse_patch(patch: &str, cwd: Option<&str>) -> Vec<PatchFile> {
    struct Current {
        kind: &'static str,
        path: String,
        move_to: Option<String>,
        added: String,
        builder: DiffBuilder,
        old: String,
        new: String,
    }
    fn flush_hunk(c: &mut Current) {
        if !c.old.is_empty() || !c.new.is_empty() {
            c.builder.excerpt(&c.old, &c.new);
        }
        c.old.clear();
        c.new.clear();
    }
    let finish = |mut c: Current, out: &mut Vec<PatchFile>| {
        flush_hunk(&mut c);
        let path = absolute(cwd, c.move_to.as_deref().unwrap_or(&c.path));
        let header = header_path(cwd, &path);
        let diff = match c.kind {
            "add" => DiffBuilder::new().whole("", &c.added).finish(header),
            "delete" => FileDiff::default(),
            _ => c.builder.finish(header),
        };
        out.push(PatchFile {
            edit: EventKind::FileEdit {
                path: path.clone(),
                diff: diff.diff,
                added: diff.added,
                removed: diff.removed,
            },
            path,
            kind: c.kind,
        });
    };
    let mut out = Vec::new();
    let mut current: Option<Current> = None;
    for line in patch.lines() {
        let start = [
            ("*** Add File: ", "add"),
            ("*** Delete File: ", "delete"),
            ("*** Update File: ", "update"),
        ]
        .iter()
        .find_map(|(prefix, kind)| line.strip_prefix(prefix).map(|p| (p, *kind)));
        if let Some((path, kind)) = start {
            if let Some(c) = current.take() {
                finish(c, &mut out);
            }
            current = Some(Current {
                kind,
                path: path.trim().to_owned(),
                move_to: None,
                added: String::new(),
                builder: DiffBuilder::new(),
                old: String::new(),
                new: String::new(),
            });
            continue;
        }
        if line.starts_with("*** End Patch") {
            break;
        }
        let Some(c) = current.as_mut() else {
            continue;
        };
        if let Some(to) = line.strip_prefix("*** Move to: ") {
            c.move_to = Some(to.trim().to_owned());
        } else if line.starts_with("*** ") {
            // `*** End of File` and the like.
        } else if c.kind == "add" {
            if let Some(text) = line.strip_prefix('+') {
                c.added.push_str(text);
                c.added.push('\n');
            }
        } else if c.kind == "update" {
            if line.starts_with("@@") {
                flush_hunk(c);
            } else if let Some(text) = line.strip_prefix('-') {
                c.old.push_str(text);
                c.old.push('\n');
            } else if let Some(text) = line.strip_prefix('+') {
                c.new.push_str(text);
                c.new.push('\n');
            } else {
                let text = line.strip_prefix(' ').unwrap_or(line);
                for side in [&mut c.old, &mut c.new] {
                    side.push_str(text);
                    side.push('\n');
                }
            }
        }
    }
    if let Some(c) = current.take() {
        finish(c, &mut out);
    }
    out
}

/// Linux's limit on a path, and so on a working directory.
const PATH_MAX: usize = 4096;

/// `path` joined to `cwd` when relative and a cwd is known.
fn absolute(cwd: Option<&str>, path: &str) -> String {
    match cwd.map(|c| c.trim_end_matches('/')) {
        Some(cwd) if !path.starts_with('/') && !cwd.is_empty() => {
            format!("{cwd}/{}", path.trim_start_matches("./"))
        }
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (`fuzz/`, target `trace`): every switch of session
    /// id gave a `SessionStart` with the cwd last seen, so one long cwd and
    /// many short lines alternating two ids made events quadratic in the
    /// input; and a cwd of any length was joined to every patched path.
    #[test]
    fn a_cwd_is_given_once_per_line_that_sets_it_and_never_past_path_max() {
        let meta = |id: &str, cwd: Option<&str>| {
            let mut v = json!({"type": "session_meta", "payload": {"id": id, "model": "m"}});
            if let Some(cwd) = cwd {
                v["payload"]["cwd"] = json!(cwd);
            }
            v.to_string()
        };
        let cwds = |events: Vec<EventKind>| -> Vec<Option<String>> {
            events
                .into_iter()
                .filter_map(|e| match e {
                    EventKind::SessionStart { cwd, .. } => Some(cwd),
                    _ => None,
                })
                .collect()
        };
        let mut p = CodexRolloutParser::new();
        let cwd = format!("/{}", "c".repeat(1000));
        assert_eq!(
            cwds(p.push_line(&meta("s0", Some(&cwd)))),
            [Some(cwd.clone())]
        );
        for i in 0..100 {
            assert_eq!(cwds(p.push_line(&meta(["a", "b"][i % 2], None))), [None]);
        }
        assert_eq!(
            cwds(p.push_line(&meta("c", Some("/w")))),
            [Some("/w".to_owned())]
        );

        let mut p = CodexRolloutParser::new();
        let huge = format!("/{}", "c".repeat(PATH_MAX));
        assert_eq!(cwds(p.push_line(&meta("s", Some(&huge)))), [None]);
        assert_eq!(p.cwd, None);
    }

    #[test]
    fn output_headers_are_split_off() {
        assert_eq!(
            split_output("Chunk ID: c9\nWall time: 0.04 seconds\nProcess exited with code 2\nOriginal token count: 5\nOutput:\nboom\n"),
            (Some(2), "boom\n".to_owned())
        );
        assert_eq!(
            split_output("Exit code: 0\nWall time: 0 seconds\nOutput:\nSuccess.\n"),
            (Some(0), "Success.\n".to_owned())
        );
        assert_eq!(split_output("Output:\nx"), (None, "x".to_owned()));
        assert_eq!(
            split_output("some text\nOutput:\nmore"),
            (None, "some text\nOutput:\nmore".to_owned())
        );
        assert_eq!(split_output("plain"), (None, "plain".to_owned()));
    }

    #[test]
    fn patches_become_file_edits() {
        let patch = "*** Begin Patch\n*** Update File: src/a.rs\n*** Move to: src/b.rs\n@@ fn a\n fn a() {\n-    1\n+    2\n }\n*** Delete File: old.txt\n*** Add File: new.txt\n+hello\n*** End Patch";
        let files = parse_patch(patch, Some("/w/"));
        let summary: Vec<(&str, &str)> = files.iter().map(|f| (f.path.as_str(), f.kind)).collect();
        assert_eq!(
            summary,
            [
                ("/w/src/b.rs", "update"),
                ("/w/old.txt", "delete"),
                ("/w/new.txt", "add")
            ]
        );
        assert_eq!(
            files[0].edit,
            EventKind::FileEdit {
                path: "/w/src/b.rs".into(),
                diff: Some(
                    "--- a/src/b.rs\n+++ b/src/b.rs\n@@ -1,3 +1,3 @@\n fn a() {\n-    1\n+    2\n }\n"
                        .into()
                ),
                added: 1,
                removed: 1
            }
        );
        assert!(matches!(
            &files[1].edit,
            EventKind::FileEdit { diff: None, .. }
        ));
        assert!(matches!(
            &files[2].edit,
            EventKind::FileEdit { diff: Some(d), added: 1, removed: 0, .. } if d.ends_with("+hello\n")
        ));
        assert!(parse_patch("not a patch", None).is_empty());
    }

    #[test]
    fn shell_commands_and_embedded_patches() {
        assert_eq!(
            command_line(&json!({"command": ["bash", "-lc", "ls -la"]})).as_deref(),
            Some("ls -la")
        );
        assert_eq!(
            command_line(&json!({"command": ["git", "status"]})).as_deref(),
            Some("git status")
        );
        assert_eq!(
            command_line(&json!({"cmd": "echo hi"})).as_deref(),
            Some("echo hi")
        );
        assert_eq!(command_line(&json!({"x": 1})), None);
        let heredoc =
            "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: a\n+x\n*** End Patch\nEOF\n";
        assert_eq!(
            embedded_patch(heredoc),
            Some("*** Begin Patch\n*** Add File: a\n+x\n*** End Patch")
        );
        assert_eq!(embedded_patch("cat x"), None);
    }

    #[test]
    fn repeated_token_totals_give_one_usage() {
        let mut p = CodexRolloutParser::new();
        let line = r#"{"type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":100,"cached_input_tokens":40,"output_tokens":20}}}}"#;
        assert_eq!(
            p.push_line(line),
            vec![EventKind::Usage(Usage {
                input_tokens: 60,
                output_tokens: 20,
                cache_read_tokens: 40,
                ..Default::default()
            })]
        );
        assert!(p.push_line(line).is_empty());
        assert!(p
            .push_line(r#"{"type":"event_msg","payload":{"type":"token_count","info":null}}"#)
            .is_empty());
    }
}

//! Amp's `amp -x "…" --stream-json` output: "Claude Code-compatible stream
//! JSON", parsed by [`ClaudeStreamParser`] with a few documented differences
//! smoothed first.
//!
//! There is no real Amp capture here (Amp needs its own server,
//! `harnesses.md` §3.3). The differences below come from Amp's announcement
//! of the format (ampcode.com/news/streaming-json, with example lines), from
//! a `system/init` tool list published with an Amp integration, and, for the
//! file tools' input field names, from how other Amp integrations read them
//! (not confirmed by a capture here):
//!
//! | difference | handling |
//! |---|---|
//! | `result` carries no `usage` and no `total_cost_usd`; each `assistant` line's `message.usage` has the request's tokens | the `assistant` usages are summed (once per `message.id` when there is one, since a message split over several lines repeats its usage) and given to the `result` as its `usage`; the cost stays unknown |
//! | a failed `result` (`is_error: true`) carries its message as `error` (a string), not as `result` | `error` is used as the result text when `result` is absent |
//! | session ids are thread ids (`T-…`); `system/init` has no `model` | nothing to do |
//! | file tools are `create_file` `{path, content}` and `edit_file` `{path, old_str, new_str}` (next to Claude-named `Bash`, `Read`, `Grep`, …) | a `FileEdit` after their `ToolCall`, built like Claude's `Write` / `Edit` |
//!
//! Everything else is [`ClaudeStreamParser`]'s mapping (see [`crate::claude`]).
//! A line that had to be adapted but is still not understood comes back as
//! `Raw` with the line exactly as it was fed.

use std::collections::HashSet;

use errand_core::EventKind;
use serde_json::{Map, Value};

use crate::claude::{ClaudeOutcome, ClaudeStreamParser};
use crate::diff::DiffBuilder;

/// A stateful line parser for Amp's stream JSON. One instance per process output.
#[derive(Debug, Default)]
pub struct AmpStreamParser {
    inner: ClaudeStreamParser,
    /// The session's cwd from `system/init`, for diff headers.
    cwd: Option<String>,
    /// Summed `assistant` usage, for a `result` without one.
    usage: Map<String, Value>,
    /// Whether any `assistant` line carried usage.
    saw_usage: bool,
    /// `message.id`s whose usage was counted.
    counted: HashSet<String>,
}

/// The usage counters summed over `assistant` lines.
const USAGE_KEYS: [&str; 4] = [
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
];

impl AmpStreamParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one line of stdout (without the newline). Returns zero or more
    /// normalized events. Never panics.
    pub fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(line.trim()) else {
            return self.inner.push_line(line);
        };
        let adapted = match obj.get("type").and_then(Value::as_str) {
            Some("system") => {
                if obj.get("subtype").and_then(Value::as_str) == Some("init") {
                    self.cwd = obj.get("cwd").and_then(Value::as_str).map(str::to_owned);
                }
                false
            }
            Some("assistant") => {
                self.count_usage(&obj);
                false
            }
            Some("result") => self.adapt_result(&mut obj),
            _ => false,
        };
        let events = if adapted {
            let fed = Value::Object(obj).to_string();
            self.inner
                .push_line(&fed)
                .into_iter()
                .map(|e| match e {
                    EventKind::Raw { line: l } if l == fed => EventKind::Raw {
                        line: line.to_owned(),
                    },
                    other => other,
                })
                .collect()
        } else {
            self.inner.push_line(line)
        };
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let edit = match &event {
                EventKind::ToolCall { name, input, .. } => self.file_edit(name, input),
                _ => None,
            };
            out.push(event);
            out.extend(edit);
        }
        out
    }

    /// The final `result` info seen so far (see [`ClaudeStreamParser::outcome`]);
    /// its `usage` is the summed `assistant` usage when Amp's `result` had none.
    pub fn outcome(&self) -> Option<&ClaudeOutcome> {
        self.inner.outcome()
    }

    /// The session (thread) id.
    pub fn session_id(&self) -> Option<&str> {
        self.inner.session_id()
    }

    fn count_usage(&mut self, obj: &Map<String, Value>) {
        let Some(message) = obj.get("message") else {
            return;
        };
        let Some(usage) = message.get("usage").and_then(Value::as_object) else {
            return;
        };
        if let Some(id) = message.get("id").and_then(Value::as_str) {
            if !self.counted.insert(id.to_owned()) {
                return;
            }
        }
        self.saw_usage = true;
        for key in USAGE_KEYS {
            let add = usage.get(key).and_then(Value::as_u64).unwrap_or(0);
            let sum = self
                .usage
                .get(key)
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .saturating_add(add);
            self.usage.insert(key.to_owned(), Value::from(sum));
        }
    }

    /// Fill in what Amp's `result` leaves out; whether anything changed.
    fn adapt_result(&mut self, obj: &mut Map<String, Value>) -> bool {
        let mut changed = false;
        if !obj.contains_key("usage") && self.saw_usage {
            obj.insert("usage".to_owned(), Value::Object(self.usage.clone()));
            changed = true;
        }
        if !obj.contains_key("result") {
            if let Some(error) = obj.get("error").and_then(Value::as_str) {
                let error = error.to_owned();
                obj.insert("result".to_owned(), Value::String(error));
                changed = true;
            }
        }
        changed
    }

    /// The `FileEdit` an Amp file tool call announces (what the model asked
    /// for; the `ToolResult` says whether it worked).
    fn file_edit(&self, name: &str, input: &Value) -> Option<EventKind> {
        let string = |key: &str| input.get(key).and_then(Value::as_str);
        let path = string("path")?;
        let header = self.header_path(path);
        let diff = match name {
            "create_file" => DiffBuilder::new()
                .whole("", string("content").unwrap_or(""))
                .finish(header),
            "edit_file" => DiffBuilder::new()
                .excerpt(
                    string("old_str").unwrap_or(""),
                    string("new_str").unwrap_or(""),
                )
                .finish(header),
            _ => return None,
        };
        Some(EventKind::FileEdit {
            path: path.to_owned(),
            diff: diff.diff,
            added: diff.added,
            removed: diff.removed,
        })
    }

    /// The path for a diff header: relative to the session's cwd when inside it.
    fn header_path<'a>(&self, path: &'a str) -> &'a str {
        self.cwd
            .as_deref()
            .map(|cwd| cwd.trim_end_matches('/'))
            .filter(|cwd| !cwd.is_empty())
            .and_then(|cwd| path.strip_prefix(cwd))
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(path)
    }
}

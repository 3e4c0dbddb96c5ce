//! Gemini CLI's saved chats: `~/.gemini/tmp/<project>/chats/session-*.jsonl`
//! (gemini-cli 0.61.0, checked against real captures) and the older
//! `session-*.json` (one JSON document, gemini-cli 0.20.2 and before).
//!
//! Both hold the same message records (`id`, `timestamp`, `type`,
//! `content`, and for `gemini` messages `thoughts`, `tokens`, `model`,
//! `toolCalls` each with its `result`):
//!
//! | record | events |
//! |---|---|
//! | metadata (`sessionId` + `projectHash`, the JSONL's first line) | `SessionStart` (`session_id`) |
//! | `{"$set": {"messages": […]}}` | each message, as below; other `$set` keys (`lastUpdated`, `summary` …) nothing |
//! | `{"$rewindTo": id}` | `Note` (the conversation was rewound) |
//! | `user` message | `UserMessage` (its `displayContent` when there is one: what the person typed), then `Image` per `inlineData` part; nothing for Gemini CLI's own `<session_context>` and for the function responses it sends back (they are in the call's `result`) |
//! | `gemini` message | `Thinking` per new thought, `AssistantMessage` for its text, per tool call `ToolCall` (`run_shell_command` → `Bash`, as [`crate::GeminiStreamParser`]), and once it has a result `FileEdit` (successful writes) and `ToolResult`, then `Image` per `inlineData` part of the result; `Usage` from `tokens`, priced when the model is in [`crate::pricing`] |
//! | `info` / `warning` / `error` message | `Note` / `Warning` / `Error` |
//! | anything else | `Raw` |
//!
//! The JSONL form writes a message again whenever it grows (the same `id`
//! with its tool calls, then with their results): each part is given once,
//! the first time it is seen, so a message read twice gives no duplicates.
//! `tokens.input` includes the cached tokens; `Usage` counts them apart.
//! `tokens.thoughts` are billed as output, so they count in
//! `output_tokens`.

use std::collections::{HashMap, HashSet};

use errand_core::{EventKind, Usage};
use serde_json::{json, Map, Value};

use crate::gemini::{file_edit, shell_exit_code};
use crate::image::image_event;

/// A parser of one saved chat, line by line (JSONL) or whole
/// ([`GeminiChatParser::push_document`]).
#[derive(Debug, Default)]
pub struct GeminiChatParser {
    session_id: Option<String>,
    /// What each message id has given so far.
    seen: HashMap<String, Given>,
    /// The record being read held a part that could not be read (a tool
    /// call without id or name): the whole record is kept as `Raw` beside
    /// the events of its readable parts.
    unread: bool,
}

#[derive(Debug, Default)]
struct Given {
    user: bool,
    text: String,
    thoughts: usize,
    calls: HashSet<String>,
    results: HashSet<String>,
    usage: Usage,
}

impl GeminiChatParser {
    /// A parser at the start of a chat.
    pub fn new() -> Self {
        Self::default()
    }

    /// The chat's session id, once its metadata was read.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Feed one line of a `.jsonl` chat. Never panics.
    pub fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let text = line.trim();
        if text.is_empty() {
            return Vec::new();
        }
        let raw = || {
            vec![EventKind::Raw {
                line: line.to_owned(),
            }]
        };
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
            return raw();
        };
        self.unread = false;
        let mut events = self.record(&obj).unwrap_or_else(raw);
        if std::mem::take(&mut self.unread)
            && !events.iter().any(|e| matches!(e, EventKind::Raw { .. }))
        {
            events.extend(raw());
        }
        events
    }

    /// A whole `.json` chat (one document): its metadata and every message,
    /// each event with the message it came from (`None` for the metadata).
    /// `None` when `doc` is not a saved chat.
    pub fn push_document(&mut self, doc: &Value) -> Option<Vec<(Option<String>, EventKind)>> {
        let obj = doc.as_object()?;
        obj.get("sessionId")?.as_str()?;
        let messages = obj.get("messages")?.as_array()?;
        let mut out: Vec<(Option<String>, EventKind)> =
            self.metadata(obj).into_iter().map(|k| (None, k)).collect();
        for message in messages {
            let id = message.get("id").and_then(Value::as_str).map(str::to_owned);
            self.unread = false;
            let raw = EventKind::Raw {
                line: message.to_string(),
            };
            let events = match message.as_object().and_then(|m| self.message(m)) {
                Some(mut events) if std::mem::take(&mut self.unread) => {
                    events.push(raw);
                    events
                }
                Some(events) => events,
                None => vec![raw],
            };
            out.extend(events.into_iter().map(|k| (id.clone(), k)));
        }
        Some(out)
    }

    fn record(&mut self, obj: &Map<String, Value>) -> Option<Vec<EventKind>> {
        if obj.contains_key("$rewindTo") {
            return Some(vec![EventKind::Note {
                what: "rewind".to_owned(),
                text: "the conversation was rewound: the messages after this point were taken back"
                    .to_owned(),
            }]);
        }
        if let Some(set) = obj.get("$set") {
            let set = set.as_object()?;
            let mut events = Vec::new();
            if let Some(messages) = set.get("messages") {
                for message in messages.as_array()? {
                    events.extend(self.message(message.as_object()?)?);
                }
            }
            return Some(events);
        }
        if obj.contains_key("sessionId") && obj.contains_key("projectHash") {
            let mut events = self.metadata(obj);
            if let Some(messages) = obj.get("messages").and_then(Value::as_array) {
                for message in messages {
                    events.extend(self.message(message.as_object()?)?);
                }
            }
            return Some(events);
        }
        self.message(obj)
    }

    fn metadata(&mut self, obj: &Map<String, Value>) -> Vec<EventKind> {
        let Some(id) = obj.get("sessionId").and_then(Value::as_str) else {
            return Vec::new();
        };
        if self.session_id.as_deref() == Some(id) {
            return Vec::new();
        }
        self.session_id = Some(id.to_owned());
        vec![EventKind::SessionStart {
            session_id: Some(id.to_owned()),
            model: None,
            cwd: None,
            tools: Vec::new(),
        }]
    }

    fn message(&mut self, obj: &Map<String, Value>) -> Option<Vec<EventKind>> {
        let id = obj.get("id")?.as_str()?.to_owned();
        let kind = obj.get("type")?.as_str()?;
        let given = self.seen.entry(id).or_default();
        match kind {
            "user" => Some(user(given, obj)),
            "gemini" => Some(gemini(given, obj, &mut self.unread)),
            "info" | "warning" | "error" => {
                if given.user {
                    return Some(Vec::new());
                }
                given.user = true;
                let text = parts_text(obj.get("content")?);
                Some(vec![match kind {
                    "info" => EventKind::Note {
                        what: "info".to_owned(),
                        text,
                    },
                    "warning" => EventKind::Warning { message: text },
                    _ => EventKind::Error { message: text },
                }])
            }
            _ => None,
        }
    }
}

/// A user message: what the person typed and the images they attached.
fn user(given: &mut Given, obj: &Map<String, Value>) -> Vec<EventKind> {
    if given.user {
        return Vec::new();
    }
    given.user = true;
    let content = obj.get("content").unwrap_or(&Value::Null);
    let parts: &[Value] = content.as_array().map_or(&[], Vec::as_slice);
    // Function responses go back to the model as a user message; the call's
    // `result` already holds them.
    if parts.iter().any(|p| p.get("functionResponse").is_some()) {
        return Vec::new();
    }
    let text = match obj.get("displayContent") {
        Some(shown) if !shown.is_null() => parts_text(shown),
        _ => parts_text(content),
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with("<session_context>") || trimmed.starts_with("[Function Response:") {
        return Vec::new();
    }
    let mut events = Vec::new();
    if !text.trim().is_empty() {
        events.push(EventKind::UserMessage { text });
    }
    events.extend(images(parts, None));
    events
}

/// A model message: thoughts, text, tool calls and their results, usage.
/// `unread` is set when a tool call could not be read.
fn gemini(given: &mut Given, obj: &Map<String, Value>, unread: &mut bool) -> Vec<EventKind> {
    let mut events = Vec::new();
    if let Some(thoughts) = obj.get("thoughts").and_then(Value::as_array) {
        for thought in thoughts.iter().skip(given.thoughts) {
            let subject = thought.get("subject").and_then(Value::as_str).unwrap_or("");
            let description = thought
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("");
            let text = match (subject.trim(), description.trim()) {
                ("", d) => d.to_owned(),
                (s, "") => s.to_owned(),
                (s, d) => format!("**{s}**\n\n{d}"),
            };
            if !text.is_empty() {
                events.push(EventKind::Thinking { text });
            }
        }
        given.thoughts = given.thoughts.max(thoughts.len());
    }
    let text = obj.get("content").map(parts_text).unwrap_or_default();
    if !text.trim().is_empty() && text != given.text {
        let new = match text.strip_prefix(given.text.as_str()) {
            Some(rest) if !given.text.is_empty() => rest.to_owned(),
            _ => text.clone(),
        };
        if !new.trim().is_empty() {
            events.push(EventKind::AssistantMessage { text: new });
        }
        given.text = text;
    }
    let model = obj.get("model").and_then(Value::as_str);
    if let Some(calls) = obj.get("toolCalls").and_then(Value::as_array) {
        for call in calls {
            match tool_call(given, call) {
                Some(more) => events.extend(more),
                None => *unread = true,
            }
        }
    }
    if let Some(usage) = obj.get("tokens").and_then(|t| usage(t, &given.usage)) {
        add(&mut given.usage, &usage);
        let cost = model.and_then(|m| crate::estimate_cost_usd(m, &usage));
        events.push(EventKind::Usage(Usage {
            cost_usd: cost,
            ..usage
        }));
    }
    events
}

/// The events of one tool call; `None` when it has no id or name (the
/// caller keeps the whole record as `Raw`: a `Raw` always holds what was
/// fed, never a piece of it).
fn tool_call(given: &mut Given, call: &Value) -> Option<Vec<EventKind>> {
    let mut events = Vec::new();
    let (Some(id), Some(name)) = (
        call.get("id").and_then(Value::as_str),
        call.get("name").and_then(Value::as_str),
    ) else {
        return None;
    };
    let args = match call.get("args") {
        Some(a @ Value::Object(_)) => a.clone(),
        _ => Value::Object(Map::new()),
    };
    if given.calls.insert(id.to_owned()) {
        let (shown, input) = match (name, args.get("command")) {
            ("run_shell_command", Some(Value::String(command))) => {
                ("Bash", json!({ "command": command }))
            }
            _ => (name, args.clone()),
        };
        events.push(EventKind::ToolCall {
            id: id.to_owned(),
            name: shown.to_owned(),
            input,
            parent_id: None,
        });
    }
    let status = call.get("status").and_then(Value::as_str);
    let result = call.get("result").and_then(Value::as_array);
    let done = result.is_some() || matches!(status, Some("success" | "error" | "cancelled"));
    if !done || given.results.contains(id) {
        return Some(events);
    }
    given.results.insert(id.to_owned());
    let parts: &[Value] = result.map_or(&[], Vec::as_slice);
    let output = result_output(parts, call.get("resultDisplay"));
    let exit_code = (name == "run_shell_command")
        .then(|| shell_exit_code(&output))
        .flatten();
    let is_error = status.is_some_and(|s| s != "success") || exit_code.is_some_and(|c| c != 0);
    if !is_error {
        let edit = call
            .get("resultDisplay")
            .and_then(|d| display_diff(d, &args))
            .or_else(|| file_edit(name, &args));
        events.extend(edit);
    }
    events.push(EventKind::ToolResult {
        id: id.to_owned(),
        output,
        is_error,
        exit_code,
    });
    events.extend(images(parts, Some(id)));
    Some(events)
}

/// What a call gave back to the model: its function response's `output`
/// (or `error`), else what Gemini CLI showed.
fn result_output(parts: &[Value], display: Option<&Value>) -> String {
    let texts: Vec<String> = parts
        .iter()
        .filter_map(|p| {
            let response = p.get("functionResponse")?.get("response")?;
            Some(match (response.get("output"), response.get("error")) {
                (Some(Value::String(o)), _) => o.clone(),
                (_, Some(Value::String(e))) => e.clone(),
                _ => response.to_string(),
            })
        })
        .collect();
    if !texts.is_empty() {
        return texts.join("\n");
    }
    match display {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

/// The `FileEdit` of a write's `resultDisplay` (`fileDiff`, `filePath`).
fn display_diff(display: &Value, args: &Value) -> Option<EventKind> {
    let diff = display.get("fileDiff")?.as_str()?;
    let path = display
        .get("filePath")
        .and_then(Value::as_str)
        .or_else(|| args.get("file_path").and_then(Value::as_str))?;
    let body = diff.find("\n--- ").map_or(diff, |i| &diff[i + 1..]);
    let (added, removed) = crate::diff::count_changes(body);
    Some(EventKind::FileEdit {
        path: path.to_owned(),
        diff: Some(body.to_owned()),
        added,
        removed,
    })
}

/// `Image` events of the `inlineData` parts.
fn images(parts: &[Value], tool_id: Option<&str>) -> Vec<EventKind> {
    parts
        .iter()
        .filter_map(|p| {
            let inline = p.get("inlineData")?;
            let data = inline.get("data")?.as_str()?;
            let media = inline.get("mimeType").and_then(Value::as_str).unwrap_or("");
            Some(image_event(media, data, tool_id))
        })
        .collect()
}

/// The text of a content value: a string, or the `text` of its parts.
fn parts_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                _ => p.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join(""),
        Value::Object(_) => content
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        _ => String::new(),
    }
}

/// The usage in `tokens` not yet counted in `before`.
fn usage(tokens: &Value, before: &Usage) -> Option<Usage> {
    let n = |key: &str| tokens.get(key).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cached");
    let now = Usage {
        input_tokens: n("input").saturating_sub(cached),
        output_tokens: n("output") + n("thoughts"),
        cache_read_tokens: cached,
        cache_write_tokens: 0,
        cost_usd: None,
    };
    let delta = Usage {
        input_tokens: now.input_tokens.saturating_sub(before.input_tokens),
        output_tokens: now.output_tokens.saturating_sub(before.output_tokens),
        cache_read_tokens: now
            .cache_read_tokens
            .saturating_sub(before.cache_read_tokens),
        cache_write_tokens: 0,
        cost_usd: None,
    };
    (delta.input_tokens + delta.output_tokens + delta.cache_read_tokens > 0).then_some(delta)
}

fn add(total: &mut Usage, more: &Usage) {
    total.input_tokens += more.input_tokens;
    total.output_tokens += more.output_tokens;
    total.cache_read_tokens += more.cache_read_tokens;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_written_again_gives_its_new_parts_only() {
        let mut p = GeminiChatParser::new();
        let first = r#"{"id":"m1","timestamp":"2026-12-05T15:16:58.959Z","type":"gemini","content":"","thoughts":[],"tokens":{"input":100,"output":20,"cached":40,"thoughts":5,"tool":0,"total":125},"model":"gemini-2.5-pro"}"#;
        let again = r#"{"id":"m1","timestamp":"2026-12-05T15:16:58.959Z","type":"gemini","content":"","thoughts":[],"tokens":{"input":100,"output":20,"cached":40,"thoughts":5,"tool":0,"total":125},"model":"gemini-2.5-pro","toolCalls":[{"id":"c1","name":"run_shell_command","args":{"command":"ls"},"result":[{"functionResponse":{"id":"c1","name":"run_shell_command","response":{"output":"a\nb"}}}],"status":"success"}]}"#;
        let k1 = p.push_line(first);
        assert!(
            matches!(&k1[..], [EventKind::Usage(u)] if u.input_tokens == 60 && u.cache_read_tokens == 40 && u.output_tokens == 25 && u.cost_usd.is_some()),
            "{k1:?}"
        );
        let k2 = p.push_line(again);
        assert!(
            matches!(&k2[..], [EventKind::ToolCall { name, .. }, EventKind::ToolResult { output, is_error: false, .. }] if name == "Bash" && output == "a\nb"),
            "{k2:?}"
        );
        assert!(p.push_line(again).is_empty());
    }

    #[test]
    fn odd_records_are_kept_raw_and_never_panic() {
        let mut p = GeminiChatParser::new();
        for line in [
            "{",
            "[]",
            r#"{"id":"x","type":"mystery"}"#,
            r#"{"$set":{"messages":7}}"#,
            r#"{"id":"x2","type":"gemini","toolCalls":[{"name":"t"}]}"#,
        ] {
            let kinds = p.push_line(line);
            assert!(
                kinds.iter().any(|k| matches!(k, EventKind::Raw { .. })),
                "{line}: {kinds:?}"
            );
        }
        // A message whose one tool call cannot be read gives its readable
        // parts and keeps the whole line, never a piece of it.
        let partly = r#"{"id":"x3","type":"gemini","content":"hi","toolCalls":[{"id":"c9"},{"id":"c8","name":"run_shell_command","args":{"command":"ls"}}]}"#;
        let kinds = p.push_line(partly);
        assert!(
            matches!(&kinds[..], [EventKind::AssistantMessage { .. }, EventKind::ToolCall { .. }, EventKind::Raw { line }] if line == partly),
            "{kinds:?}"
        );
        assert!(p.push_line(r#"{"$set":{"lastUpdated":"x"}}"#).is_empty());
        assert!(matches!(
            &p.push_line(r#"{"$rewindTo":"m1"}"#)[..],
            [EventKind::Note { .. }]
        ));
    }
}

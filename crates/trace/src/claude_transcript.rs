//! Claude Code's own session transcript: `~/.claude/projects/<cwd with / as
//! ->/<session_id>.jsonl` (see `harnesses.md` §2.5), checked against Claude
//! Code 2.1.197.
//!
//! One JSON object per line, tagged by `type`. Unlike stream-json there is no
//! `system/init` and no `result` line (so no cost, duration or final
//! verdict), every `user`/`assistant` line carries `sessionId`, `cwd`,
//! `uuid`/`parentUuid` and `isSidechain`, and tool results carry
//! `toolUseResult` (structured stdout/stderr, or the applied patch).
//!
//! | line | events |
//! |---|---|
//! | first `user`/`assistant`/`system` line of a session (and of each new `sessionId`) | `SessionStart` (`session_id`, `cwd`; `model` when it is an assistant line) first |
//! | `user` with string content, or `text` blocks | `UserMessage` (not on sidechain lines: that is the sub-agent's prompt, already in its `Task` call) |
//! | `user` `image` blocks | `Image` ([`crate::image`]; one given by URL is a `Note`, never fetched) |
//! | `user` `tool_result` blocks | `FileEdit` for a file-changing call that did not fail, then `ToolResult`, then `Image` per image in its content (`exit_code` 0 for a Bash call that ran to its end; `N` from an error starting `Exit code N`) |
//! | `user` with `isMeta` or `isCompactSummary` | nothing (Claude Code's own caveats and context summaries) |
//! | `assistant` blocks | `text` → `AssistantMessage`, `thinking` → `Thinking`, `redacted_thinking` → nothing, `tool_use` → `ToolCall` |
//! | `assistant` with `isApiErrorMessage` | `Error` with its text |
//! | `assistant` `message.usage` | `Usage`, once per `message.id` (see below) |
//! | `system` with `subtype` `api_error`, or a `level` `warning`/`error` | `Warning` (Claude Code retries API errors) |
//! | other `system` lines with `content`, `compact_boundary` | nothing |
//! | `summary`, `queue-operation`, `attachment`, `last-prompt`, `mode`, `file-history-snapshot`, `custom-title`, `progress` | nothing: session bookkeeping |
//! | anything else, malformed or unexpected JSON | `Raw` |
//!
//! Decisions:
//!
//! - **Usage**: Claude Code writes one line per content block of a model
//!   message, each repeating the message's `usage` (the later ones may have
//!   grown). The `Usage` of a line is what its `message.id` had not yet
//!   reported (per counter), so a split message counts once. Transcripts
//!   carry no cost: `cost_usd` is errand's estimate for the line's
//!   `message.model` ([`crate::pricing`]), `None` for a model it does not
//!   price.
//! - **File edits**: an `Edit`, `MultiEdit`, `Write` or `NotebookEdit` call
//!   gives its `FileEdit` when its result arrives, and only when the result is
//!   not an error: from `toolUseResult.structuredPatch` when it has hunks
//!   (real line numbers), else from the call's input as
//!   [`crate::ClaudeStreamParser`] builds it. A `structuredPatch` in the
//!   result of a call not seen (a file starting mid-session) still gives its
//!   `FileEdit`. A call whose result is not in the file gives none.
//! - **Sub-agents** (`isSidechain: true`): their tool calls get `parent_id`
//!   = the id of the `Task`/`Agent` call that started them when it can be
//!   told: a sidechain line inherits its parent line's (`parentUuid`); a
//!   sidechain's first line is attributed to the open `Task`/`Agent` call
//!   whose `prompt` it repeats, else to the only open one. Otherwise
//!   `parent_id` stays `None` (as in a sub-agent's own transcript file).
//! - A line whose known parts map to events but which also holds a content
//!   block this parser does not know (a server tool, …) gives
//!   those events and then a `Raw` of the whole line, so nothing is lost.

use std::collections::HashMap;

use errand_core::{EventKind, Usage};
use serde_json::{Map, Value};

use crate::claude::{
    as_u64, bash_success, content_text, header_path, image_block, is_block, leading_exit_code, raw,
    result_images, str_field, tool_file_edit,
};
use crate::diff;

/// Line types that are session bookkeeping: no event.
const BOOKKEEPING: [&str; 8] = [
    "summary",
    "queue-operation",
    "attachment",
    "last-prompt",
    "mode",
    "file-history-snapshot",
    "custom-title",
    "progress",
];

/// Tools that start a sub-agent.
const AGENT_TOOLS: [&str; 2] = ["Task", "Agent"];

/// A stateful line parser for one transcript file.
#[derive(Debug, Default)]
pub struct ClaudeTranscriptParser {
    session_id: Option<String>,
    cwd: Option<String>,
    /// Whether a `SessionStart` already gave `cwd` since a line last set it.
    cwd_told: bool,
    /// Tool names by `tool_use` id, to know what a `tool_result` answers.
    tool_names: HashMap<String, String>,
    /// The `FileEdit` each file-changing call announced, until its result.
    edits: HashMap<String, EventKind>,
    /// Usage reported so far per `message.id`.
    usage_seen: HashMap<String, Usage>,
    /// `Task`/`Agent` calls of the main chain without a result yet: id and prompt.
    open_agents: Vec<(String, Option<String>)>,
    /// Per sidechain line `uuid`: the call that started its sub-agent, if known.
    sidechain_parent: HashMap<String, Option<String>>,
}

/// Events from one line; `partial` when part of it was not understood.
#[derive(Debug, Default)]
struct Parsed {
    events: Vec<EventKind>,
    partial: bool,
}

impl Parsed {
    /// Pushes a text event unless the text is blank.
    fn text(&mut self, text: &str, event: impl FnOnce(String) -> EventKind) {
        if !text.trim().is_empty() {
            self.events.push(event(text.to_owned()));
        }
    }
}

impl ClaudeTranscriptParser {
    /// A parser at the start of a transcript.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one line of the transcript (without the newline). Returns zero
    /// or more normalized events. Never panics.
    pub fn push_line(&mut self, line: &str) -> Vec<EventKind> {
        let text = line.trim();
        if text.is_empty() {
            return Vec::new();
        }
        let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
            return vec![raw(line)];
        };
        let Some(kind) = str_field(&obj, "type") else {
            return vec![raw(line)];
        };
        if BOOKKEEPING.contains(&kind) {
            return Vec::new();
        }
        if !["user", "assistant", "system"].contains(&kind) {
            return vec![raw(line)];
        }
        let mut events = self.session_start(&obj, kind);
        let body = match kind {
            "user" => self.user(&obj),
            "assistant" => self.assistant(&obj),
            _ => self.system(&obj),
        };
        match body {
            Some(body) => {
                events.extend(body.events);
                if body.partial {
                    events.push(raw(line));
                }
            }
            None => events.push(raw(line)),
        }
        events
    }

    /// The session id of the latest `user`/`assistant`/`system` line.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// A `SessionStart` when this line starts a session (its `sessionId`
    /// differs from the one before).
    fn session_start(&mut self, obj: &Map<String, Value>, kind: &str) -> Vec<EventKind> {
        if let Some(cwd) = str_field(obj, "cwd") {
            self.cwd = Some(cwd.to_owned());
            self.cwd_told = false;
        }
        let Some(id) = str_field(obj, "sessionId") else {
            return Vec::new();
        };
        if self.session_id.as_deref() == Some(id) {
            return Vec::new();
        }
        self.session_id = Some(id.to_owned());
        let model = match kind {
            "assistant" => obj
                .get("message")
                .and_then(|m| m.get("model"))
                .and_then(Value::as_str)
                .filter(|m| !m.starts_with('<'))
                .map(str::to_owned),
            _ => None,
        };
        // A cwd is given once per line that sets it: lines switching between
        // session ids must not each repeat a long cwd read earlier.
        let cwd = if self.cwd_told {
            None
        } else {
            self.cwd.clone()
        };
        self.cwd_told = true;
        vec![EventKind::SessionStart {
            session_id: Some(id.to_owned()),
            model,
            cwd,
            tools: Vec::new(),
        }]
    }

    /// For a sidechain line: the call that started its sub-agent, if known
    /// (and remembered for the lines after it). `None` on the main chain.
    fn sidechain(&mut self, obj: &Map<String, Value>) -> (bool, Option<String>) {
        if obj.get("isSidechain").and_then(Value::as_bool) != Some(true) {
            return (false, None);
        }
        let inherited = str_field(obj, "parentUuid").and_then(|p| self.sidechain_parent.get(p));
        let parent = match inherited {
            Some(parent) => parent.clone(),
            None => {
                let prompt = obj
                    .get("message")
                    .and_then(|m| m.get("content"))
                    .map(|c| content_text(Some(c)));
                let by_prompt = prompt.as_deref().and_then(|prompt| {
                    self.open_agents
                        .iter()
                        .find(|(_, p)| p.as_deref().map(str::trim) == Some(prompt.trim()))
                });
                match (by_prompt, self.open_agents.as_slice()) {
                    (Some((id, _)), _) => Some(id.clone()),
                    (None, [(id, _)]) => Some(id.clone()),
                    _ => None,
                }
            }
        };
        if let Some(uuid) = str_field(obj, "uuid") {
            self.sidechain_parent
                .insert(uuid.to_owned(), parent.clone());
        }
        (true, parent)
    }

    fn user(&mut self, obj: &Map<String, Value>) -> Option<Parsed> {
        let message = obj.get("message")?.as_object()?;
        let content = message.get("content")?;
        let (sidechain, _) = self.sidechain(obj);
        let meta = ["isMeta", "isCompactSummary"]
            .iter()
            .any(|key| obj.get(*key).and_then(Value::as_bool) == Some(true));
        let mut out = Parsed::default();
        match content {
            Value::String(text) => {
                if !sidechain && !meta {
                    out.text(text, |text| EventKind::UserMessage { text });
                }
            }
            Value::Array(blocks) => {
                // `toolUseResult` describes the line's one tool result; with
                // several results it would be unclear which, so it is not used.
                let results = blocks.iter().filter(|b| is_block(b, "tool_result")).count();
                let tool_use_result = match results {
                    1 => obj.get("toolUseResult"),
                    _ => None,
                };
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => match block.get("text").and_then(Value::as_str) {
                            Some(text) if !sidechain && !meta => {
                                out.text(text, |text| EventKind::UserMessage { text })
                            }
                            Some(_) => {}
                            None => out.partial = true,
                        },
                        Some("tool_result") => match self.tool_result(block, tool_use_result) {
                            Some(events) => {
                                out.events.extend(events);
                                let id = block.get("tool_use_id").and_then(Value::as_str);
                                out.events.extend(result_images(block, id));
                            }
                            None => out.partial = true,
                        },
                        Some("image") if !sidechain && !meta => match image_block(block, None) {
                            Some(event) => out.events.push(event),
                            None => out.partial = true,
                        },
                        _ if meta => {}
                        _ => out.partial = true,
                    }
                }
            }
            _ => return None,
        }
        Some(out)
    }

    /// The events of one `tool_result` block: the call's `FileEdit` when it
    /// changed a file, then its `ToolResult`.
    fn tool_result(
        &mut self,
        block: &Value,
        tool_use_result: Option<&Value>,
    ) -> Option<Vec<EventKind>> {
        let id = block.get("tool_use_id")?.as_str()?;
        let is_error = block
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let output = content_text(block.get("content"));
        let name = self.tool_names.get(id).map(String::as_str);
        let exit_code = if is_error {
            leading_exit_code(&output)
        } else {
            bash_success(name, tool_use_result).then_some(0)
        };
        self.open_agents.retain(|(open, _)| open != id);
        let announced = self.edits.remove(id);
        let mut events = Vec::with_capacity(2);
        if !is_error {
            let applied = tool_use_result.and_then(|r| self.structured_patch(r));
            events.extend(applied.or(announced));
        }
        events.push(EventKind::ToolResult {
            id: id.to_owned(),
            output,
            is_error,
            exit_code,
        });
        Some(events)
    }

    /// The `FileEdit` of a `toolUseResult` with `filePath` and a non-empty
    /// `structuredPatch` (hunks of `{oldStart, oldLines, newStart, newLines,
    /// lines}`).
    fn structured_patch(&self, result: &Value) -> Option<EventKind> {
        let path = result.get("filePath")?.as_str()?;
        let hunks = result.get("structuredPatch")?.as_array()?;
        let mut text = String::new();
        for hunk in hunks {
            let n = |key: &str| hunk.get(key).and_then(as_u64).unwrap_or(0);
            text.push_str(&format!(
                "@@ -{},{} +{},{} @@\n",
                n("oldStart"),
                n("oldLines"),
                n("newStart"),
                n("newLines")
            ));
            for line in hunk.get("lines")?.as_array()? {
                text.push_str(line.as_str()?);
                text.push('\n');
            }
        }
        let diff = diff::from_hunks(header_path(self.cwd.as_deref(), path), &text);
        diff.diff.as_ref()?;
        Some(EventKind::FileEdit {
            path: path.to_owned(),
            diff: diff.diff,
            added: diff.added,
            removed: diff.removed,
        })
    }

    fn assistant(&mut self, obj: &Map<String, Value>) -> Option<Parsed> {
        let message = obj.get("message")?.as_object()?;
        let content = message.get("content")?;
        let (sidechain, parent_id) = self.sidechain(obj);
        let api_error = obj.get("isApiErrorMessage").and_then(Value::as_bool) == Some(true);
        let as_text = |text: String| {
            if api_error {
                EventKind::Error { message: text }
            } else {
                EventKind::AssistantMessage { text }
            }
        };
        let mut out = Parsed::default();
        match content {
            Value::String(text) => out.text(text, as_text),
            Value::Array(blocks) => {
                for block in blocks {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => match block.get("text").and_then(Value::as_str) {
                            Some(text) => out.text(text, as_text),
                            None => out.partial = true,
                        },
                        Some("thinking") => match block.get("thinking").and_then(Value::as_str) {
                            Some(text) => out.text(text, |text| EventKind::Thinking { text }),
                            None => out.partial = true,
                        },
                        Some("redacted_thinking") => {}
                        Some("tool_use") => {
                            let id = block.get("id").and_then(Value::as_str);
                            let name = block.get("name").and_then(Value::as_str);
                            let (Some(id), Some(name)) = (id, name) else {
                                out.partial = true;
                                continue;
                            };
                            let input = block.get("input").cloned().unwrap_or(Value::Null);
                            self.tool_names.insert(id.to_owned(), name.to_owned());
                            if let Some(edit) = tool_file_edit(name, &input, self.cwd.as_deref()) {
                                self.edits.insert(id.to_owned(), edit);
                            }
                            if !sidechain && AGENT_TOOLS.contains(&name) {
                                let prompt = input.get("prompt").and_then(Value::as_str);
                                self.open_agents
                                    .push((id.to_owned(), prompt.map(str::to_owned)));
                            }
                            out.events.push(EventKind::ToolCall {
                                id: id.to_owned(),
                                name: name.to_owned(),
                                input,
                                parent_id: parent_id.clone(),
                            });
                        }
                        _ => out.partial = true,
                    }
                }
            }
            _ => return None,
        }
        if let Some(usage) = self.usage(message) {
            out.events.push(EventKind::Usage(usage));
        }
        Some(out)
    }

    /// What this line's `message.usage` adds to what its `message.id`
    /// already reported; `None` when nothing.
    fn usage(&mut self, message: &Map<String, Value>) -> Option<Usage> {
        let usage = message.get("usage")?.as_object()?;
        let n = |key: &str| usage.get(key).and_then(as_u64).unwrap_or(0);
        let now = Usage {
            input_tokens: n("input_tokens"),
            output_tokens: n("output_tokens"),
            cache_read_tokens: n("cache_read_input_tokens"),
            cache_write_tokens: n("cache_creation_input_tokens"),
            cost_usd: None,
        };
        let Some(id) = str_field(message, "id") else {
            let cost = str_field(message, "model").and_then(|m| crate::estimate_cost_usd(m, &now));
            return (now != Usage::default()).then_some(Usage {
                cost_usd: cost,
                ..now
            });
        };
        let seen = self.usage_seen.entry(id.to_owned()).or_default();
        let delta = Usage {
            input_tokens: now.input_tokens.saturating_sub(seen.input_tokens),
            output_tokens: now.output_tokens.saturating_sub(seen.output_tokens),
            cache_read_tokens: now.cache_read_tokens.saturating_sub(seen.cache_read_tokens),
            cache_write_tokens: now
                .cache_write_tokens
                .saturating_sub(seen.cache_write_tokens),
            cost_usd: None,
        };
        seen.input_tokens = seen.input_tokens.max(now.input_tokens);
        seen.output_tokens = seen.output_tokens.max(now.output_tokens);
        seen.cache_read_tokens = seen.cache_read_tokens.max(now.cache_read_tokens);
        seen.cache_write_tokens = seen.cache_write_tokens.max(now.cache_write_tokens);
        if delta == Usage::default() {
            return None;
        }
        let cost = str_field(message, "model").and_then(|m| crate::estimate_cost_usd(m, &delta));
        Some(Usage {
            cost_usd: cost,
            ..delta
        })
    }

    fn system(&mut self, obj: &Map<String, Value>) -> Option<Parsed> {
        let subtype = str_field(obj, "subtype");
        let level = str_field(obj, "level");
        let content = str_field(obj, "content").filter(|c| !c.trim().is_empty());
        let mut out = Parsed::default();
        if subtype == Some("api_error") {
            let detail = obj
                .get("error")
                .and_then(|e| {
                    e.pointer("/error/error/message")
                        .or_else(|| e.pointer("/error/message"))
                        .or_else(|| e.get("message"))
                })
                .and_then(Value::as_str)
                .or(content);
            let attempt = obj.get("retryAttempt").and_then(as_u64);
            let message = match (detail, attempt) {
                (Some(d), Some(a)) => format!("API error (retry {a}): {d}"),
                (Some(d), None) => format!("API error: {d}"),
                (None, Some(a)) => format!("API error (retry {a})"),
                (None, None) => "API error".to_owned(),
            };
            out.events.push(EventKind::Warning { message });
            return Some(out);
        }
        match (level, content) {
            (Some("warning" | "error"), Some(content)) => out.events.push(EventKind::Warning {
                message: content.to_owned(),
            }),
            (_, Some(_)) => {}
            _ if subtype == Some("compact_boundary") => {}
            _ => return None,
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Found by fuzzing (`fuzz/`, target `trace`): every switch of
    /// `sessionId` gave a `SessionStart` with the cwd last seen, so one long
    /// cwd and many short lines alternating two ids made events quadratic
    /// in the input.
    #[test]
    fn a_cwd_is_given_once_per_line_that_sets_it() {
        let mut p = ClaudeTranscriptParser::new();
        let cwd = format!("/{}", "c".repeat(1000));
        let line = |id: &str, cwd: Option<&str>| {
            let mut v = json!({"type": "system", "sessionId": id, "content": "x"});
            if let Some(cwd) = cwd {
                v["cwd"] = json!(cwd);
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
        assert_eq!(
            cwds(p.push_line(&line("s0", Some(&cwd)))),
            [Some(cwd.clone())]
        );
        for i in 0..100 {
            assert_eq!(cwds(p.push_line(&line(["a", "b"][i % 2], None))), [None]);
        }
        // A line that carries a cwd gives it again.
        assert_eq!(
            cwds(p.push_line(&line("c", Some("/w")))),
            [Some("/w".to_owned())]
        );
    }

    fn assistant(id: &str, blocks: Value, usage: Value) -> String {
        serde_json::json!({
            "type": "assistant", "sessionId": "s", "cwd": "/w", "uuid": format!("u-{id}"),
            "message": {"id": id, "role": "assistant", "model": "claude-x", "content": blocks, "usage": usage}
        })
        .to_string()
    }

    #[test]
    fn a_split_message_counts_its_usage_once() {
        let mut p = ClaudeTranscriptParser::new();
        let usage = serde_json::json!({"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": 5});
        let grown = serde_json::json!({"input_tokens": 10, "output_tokens": 7, "cache_read_input_tokens": 5});
        let a = p.push_line(&assistant(
            "m1",
            serde_json::json!([{"type": "thinking", "thinking": "hmm"}]),
            usage.clone(),
        ));
        let b = p.push_line(&assistant(
            "m1",
            serde_json::json!([{"type": "text", "text": "hi"}]),
            usage,
        ));
        let c = p.push_line(&assistant(
            "m1",
            serde_json::json!([{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}]),
            grown,
        ));
        let usages: Vec<&Usage> = a
            .iter()
            .chain(&b)
            .chain(&c)
            .filter_map(|e| match e {
                EventKind::Usage(u) => Some(u),
                _ => None,
            })
            .collect();
        assert_eq!(usages.len(), 2, "{a:?} {b:?} {c:?}");
        assert_eq!(usages.iter().map(|u| u.output_tokens).sum::<u64>(), 7);
        assert_eq!(usages.iter().map(|u| u.input_tokens).sum::<u64>(), 10);
        assert_eq!(usages.iter().map(|u| u.cache_read_tokens).sum::<u64>(), 5);
        // The session starts once, with the model of its first assistant line.
        assert!(matches!(
            &a[0],
            EventKind::SessionStart { model: Some(m), cwd: Some(cwd), .. } if m == "claude-x" && cwd == "/w"
        ));
        assert!(!b
            .iter()
            .any(|e| matches!(e, EventKind::SessionStart { .. })));
    }

    #[test]
    fn system_lines() {
        let mut p = ClaudeTranscriptParser::new();
        let e = p.push_line(
            r#"{"type":"system","subtype":"api_error","level":"error","error":{"status":529,"error":{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}},"retryAttempt":2}"#,
        );
        assert_eq!(
            e,
            vec![EventKind::Warning {
                message: "API error (retry 2): Overloaded".into()
            }]
        );
        assert!(p
            .push_line(
                r#"{"type":"system","subtype":"informational","content":"hi","level":"info"}"#
            )
            .is_empty());
        assert!(p
            .push_line(r#"{"type":"system","subtype":"compact_boundary"}"#)
            .is_empty());
        let odd = r#"{"type":"system","subtype":"other"}"#;
        assert_eq!(p.push_line(odd), vec![raw(odd)]);
    }
}

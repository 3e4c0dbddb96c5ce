//! Turns normalized events into compact terminal lines, the same way for a
//! live `errand run` and for `errand logs`:
//!
//! ```text
//! Read   src/lib.rs
//! Edit   src/lib.rs +4 -1
//! Bash   cargo test (exit 0, 2.1s)
//! ```
//!
//! A tool call is printed when its result arrives, so the line can carry the
//! exit code and duration; calls still open at the end are flushed as pending.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use console::Style;
use errand_core::{Event, EventKind};
use errand_trace::summarize_tool_call;

struct Pending {
    name: String,
    summary: String,
    at: DateTime<Utc>,
}

pub struct Renderer {
    pending: HashMap<String, Pending>,
    /// Tool calls whose line is replaced by a more telling FileEdit line.
    edits: HashMap<String, ()>,
    last_call: Option<String>,
    color: bool,
}

impl Renderer {
    pub fn new(color: bool) -> Self {
        Renderer {
            pending: HashMap::new(),
            edits: HashMap::new(),
            last_call: None,
            color,
        }
    }

    fn style(&self, s: Style) -> Style {
        if self.color {
            s
        } else {
            Style::new()
        }
    }

    fn tool_line(&self, name: &str, rest: &str) -> String {
        let name = self
            .style(Style::new().cyan().bold())
            .apply_to(format!("{name:<6}"));
        format!("{name} {rest}")
    }

    /// The lines for one event (often none).
    pub fn render(&mut self, ev: &Event) -> Vec<String> {
        let dim = self.style(Style::new().dim());
        match &ev.kind {
            EventKind::State { state, reason } => {
                let text = match reason {
                    Some(r) => format!("── {state}: {r}"),
                    None => format!("── {state}"),
                };
                let st = if state.is_terminal() && *state != errand_core::RunState::Succeeded {
                    self.style(Style::new().red().bold())
                } else {
                    dim
                };
                vec![st.apply_to(text).to_string()]
            }
            EventKind::Notice { message } => {
                vec![dim.apply_to(format!("·  {message}")).to_string()]
            }
            EventKind::SessionStart { model, .. } => {
                vec![dim
                    .apply_to(format!(
                        "·  session started{}",
                        model
                            .as_ref()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default()
                    ))
                    .to_string()]
            }
            EventKind::UserMessage { text } => vec![format!(
                "{} {}",
                self.style(Style::new().bold()).apply_to("Task  "),
                first_line(text, 100)
            )],
            EventKind::AssistantMessage { text } => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(3)
                .map(|l| format!("  {}", first_line(l, 110)))
                .collect(),
            EventKind::Thinking { .. } => vec![],
            EventKind::ToolCall {
                id, name, input, ..
            } => self.tool_call(ev.ts, id, name, input),
            EventKind::FileEdit {
                path,
                added,
                removed,
                ..
            } => self.file_edit(path, *added, *removed),
            EventKind::ToolResult {
                id,
                output,
                is_error,
                exit_code,
            } => self.tool_result(ev.ts, id, output, *is_error, *exit_code),
            EventKind::Usage(_) => vec![],
            EventKind::ModelCall(call) => self.model_call(call),
            EventKind::RunDiff { stat, .. } => {
                let files = stat.lines().count().saturating_sub(1);
                vec![dim
                    .apply_to(format!("·  diff of the whole run: {files} file(s)"))
                    .to_string()]
            }
            EventKind::Result {
                is_error,
                turns,
                usage,
                ..
            } => {
                let cost = usage
                    .cost_usd
                    .map(|c| format!(", ${c:.4}"))
                    .unwrap_or_default();
                vec![dim
                    .apply_to(format!(
                        "·  agent {} after {} turn(s), {} in / {} out tokens{cost}",
                        if *is_error { "failed" } else { "finished" },
                        turns.unwrap_or(0),
                        usage.input_tokens,
                        usage.output_tokens
                    ))
                    .to_string()]
            }
            EventKind::Error { message } => vec![self
                .style(Style::new().red())
                .apply_to(format!("error: {message}"))
                .to_string()],
            EventKind::Warning { message } => vec![self
                .style(Style::new().yellow())
                .apply_to(format!("warning: {}", first_line(message, 110)))
                .to_string()],
            EventKind::Image {
                media_type, bytes, ..
            } => vec![dim
                .apply_to(format!("·  image ({media_type}, {bytes} bytes)"))
                .to_string()],
            EventKind::Note { text, .. } => vec![dim
                .apply_to(format!("·  {}", first_line(text, 110)))
                .to_string()],
            EventKind::Raw { line } => vec![dim
                .apply_to(format!("?  {}", first_line(line, 100)))
                .to_string()],
        }
    }

    /// A tool call is held until its result (or a file edit) arrives.
    fn tool_call(
        &mut self,
        at: DateTime<Utc>,
        id: &str,
        name: &str,
        input: &serde_json::Value,
    ) -> Vec<String> {
        let summary = summarize_tool_call(name, input);
        let summary = display_path(&summary).to_string();
        self.pending.insert(
            id.to_string(),
            Pending {
                name: name.to_string(),
                summary,
                at,
            },
        );
        self.last_call = Some(id.to_string());
        vec![]
    }

    /// A file edit, on the line of the call that made it when there is one.
    /// A model request is shown only when it failed or was refused: the
    /// successful ones are many, and their sum is in the run's result.
    fn model_call(&mut self, call: &errand_core::ModelCall) -> Vec<String> {
        if call.status < 400 && call.error.is_none() {
            return vec![];
        }
        let why = call.error.as_deref().unwrap_or("request failed");
        vec![self
            .style(Style::new().yellow())
            .apply_to(format!(
                "model  {} {} → {}: {}",
                call.provider,
                call.model,
                call.status,
                first_line(why, 90)
            ))
            .to_string()]
    }

    fn file_edit(&mut self, path: &str, added: u32, removed: u32) -> Vec<String> {
        let path = display_path(path);
        if let Some(id) = self.last_call.clone() {
            if let Some(p) = self.pending.get(&id) {
                let line = self.tool_line(&p.name, &format!("{path} +{added} -{removed}"));
                self.edits.insert(id, ());
                return vec![line];
            }
        }
        vec![self.tool_line("Edit", &format!("{path} +{added} -{removed}"))]
    }

    /// The held call's line, with its status and time (and the error's first line).
    fn tool_result(
        &mut self,
        at: DateTime<Utc>,
        id: &str,
        output: &str,
        is_error: bool,
        exit_code: Option<i32>,
    ) -> Vec<String> {
        let dim = self.style(Style::new().dim());
        let Some(p) = self.pending.remove(id) else {
            return vec![];
        };
        let secs = (at - p.at).num_milliseconds() as f64 / 1000.0;
        let was_edit = self.edits.remove(id).is_some();
        if was_edit && !is_error {
            return vec![];
        }
        let status = match (exit_code, is_error) {
            (Some(c), _) => format!("exit {c}, {secs:.1}s"),
            (None, true) => format!("error, {secs:.1}s"),
            (None, false) => format!("{secs:.1}s"),
        };
        let mut lines = vec![self.tool_line(
            &p.name,
            &format!("{} {}", p.summary, dim.apply_to(format!("({status})"))),
        )];
        if is_error {
            let red = self.style(Style::new().red());
            lines.push(
                red.apply_to(format!("       {}", first_line(output, 110)))
                    .to_string(),
            );
        }
        lines
    }

    /// Lines for tool calls that never got a result.
    pub fn flush(&mut self) -> Vec<String> {
        let mut out: Vec<_> = self
            .pending
            .drain()
            .map(|(_, p)| (p.at, p.name, p.summary))
            .collect();
        out.sort();
        out.into_iter()
            .map(|(_, n, s)| self.tool_line(&n, &format!("{s} (no result)")))
            .collect()
    }
}

/// Paths inside the sandbox's workspace are shown relative to it.
fn display_path(p: &str) -> &str {
    p.strip_prefix(errand_sandbox::paths::WORKSPACE)
        .map(|r| r.trim_start_matches('/'))
        .filter(|r| !r.is_empty())
        .unwrap_or(p)
}

pub fn first_line(s: &str, max: usize) -> String {
    let line = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if line.chars().count() > max {
        let cut: String = line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use errand_core::EventSource;

    fn ev(seq: u64, ms: i64, kind: EventKind) -> Event {
        Event {
            seq,
            ts: DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap(),
            source: EventSource::Harness,
            raw_line: None,
            kind,
        }
    }

    #[test]
    fn tool_calls_print_with_their_exit_and_duration() {
        let mut r = Renderer::new(false);
        let call = EventKind::ToolCall {
            id: "t1".into(),
            name: "Bash".into(),
            input: serde_json::json!({"command": "cargo test"}),
            parent_id: None,
        };
        assert!(r.render(&ev(1, 0, call)).is_empty());
        let res = EventKind::ToolResult {
            id: "t1".into(),
            output: "ok".into(),
            is_error: false,
            exit_code: Some(0),
        };
        assert_eq!(
            r.render(&ev(2, 2100, res)),
            ["Bash   cargo test (exit 0, 2.1s)"]
        );
    }

    #[test]
    fn edits_print_as_path_and_line_counts() {
        let mut r = Renderer::new(false);
        let call = EventKind::ToolCall {
            id: "t2".into(),
            name: "Edit".into(),
            input: serde_json::json!({"file_path": "/workspace/src/main.rs"}),
            parent_id: None,
        };
        r.render(&ev(1, 0, call));
        let edit = EventKind::FileEdit {
            path: "src/main.rs".into(),
            diff: None,
            added: 4,
            removed: 1,
        };
        assert_eq!(r.render(&ev(2, 1, edit)), ["Edit   src/main.rs +4 -1"]);
        let res = EventKind::ToolResult {
            id: "t2".into(),
            output: "ok".into(),
            is_error: false,
            exit_code: None,
        };
        assert!(r.render(&ev(3, 5, res)).is_empty());
        assert!(r.flush().is_empty());
    }
}

//! The Anthropic Messages API, as far as Claude Code needs it.
//!
//! Only this module knows the Anthropic wire format: how to read a request
//! (assistant turns, offered tools, the agent's cwd), which tool names Claude
//! Code uses for the neutral steps, and how to write a message as JSON or as
//! server-sent events.
//!
//! Requests are read as loose JSON (`serde_json::Value`): unknown fields,
//! `role:"system"` entries inside `messages`, string or block content are all
//! tolerated. Answers are deterministic: message ids `msg_{k}`, tool-use ids
//! `toolu_{k:04}`, and usage computed from sizes (input tokens = request bytes
//! / 4, output tokens = serialized content chars / 4 + 1) so Claude Code
//! reports a non-zero cost.
//!
//! Streaming follows the sequence Claude Code accepts (harnesses.md 2.8):
//! `message_start`, then per block `content_block_start` (empty),
//! `content_block_delta` (`text_delta` / `input_json_delta`; the delta is
//! required, text only in the start event is ignored), `content_block_stop`,
//! then `message_delta` (stop reason and usage) and `message_stop`.

use crate::wire::json_response;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::log::Served;
use crate::scenario::{resolve_path, Scenario, Selection, Step, DEFAULT_CWD};

/// Claude Code's shell tool.
pub const SHELL_TOOL: &str = "Bash";
/// Claude Code's file read tool.
pub const READ_TOOL: &str = "Read";
/// Claude Code's whole-file write tool.
pub const WRITE_TOOL: &str = "Write";
/// The `description` given to scripted `Bash` calls.
pub const SHELL_DESCRIPTION: &str = "scripted step";
/// Error type used by `error` steps that do not name one.
pub const DEFAULT_ERROR_TYPE: &str = "invalid_request_error";
/// Answer to side calls (requests that offer no tools).
pub const SIDE_TEXT: &str = "Scripted reply.";
/// Final answer once the scenario has no steps left.
pub const DONE_TEXT: &str = "Done.";
/// Model name reported when the request names none.
pub const FALLBACK_MODEL: &str = "scripted-model";

/// The line prefixes (after leading spaces and `-`) that carry the agent's
/// working directory in Claude Code's system prompt. 2.1.x writes
/// `" - Primary working directory: /abs/path"` under `# Environment`; older
/// versions wrote `"Working directory: /abs/path"` inside `<env>`.
const CWD_PREFIXES: [&str; 2] = ["Primary working directory:", "Working directory:"];

/// Number of `role:"assistant"` entries in the request's `messages`.
pub fn assistant_turns(body: &Value) -> usize {
    body.get("messages")
        .and_then(Value::as_array)
        .map(|msgs| {
            msgs.iter()
                .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
                .count()
        })
        .unwrap_or(0)
}

/// Whether the request offers at least one tool. Requests without tools are
/// side calls (title generation and the like).
pub fn offers_tools(body: &Value) -> bool {
    body.get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty())
}

/// The agent's working directory as stated in the request's system prompt
/// (or, failing that, in a user/system message), if any.
pub fn find_cwd(body: &Value) -> Option<String> {
    let mut texts: Vec<&str> = Vec::new();
    collect_texts(body.get("system"), &mut texts);
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        for m in msgs {
            if m.get("role").and_then(Value::as_str) != Some("assistant") {
                collect_texts(m.get("content"), &mut texts);
            }
        }
    }
    texts.iter().find_map(|t| cwd_in_text(t))
}

fn collect_texts<'a>(v: Option<&'a Value>, out: &mut Vec<&'a str>) {
    match v {
        Some(Value::String(s)) => out.push(s),
        Some(Value::Array(blocks)) => {
            for b in blocks {
                match b {
                    Value::String(s) => out.push(s),
                    Value::Object(o) => {
                        if let Some(Value::String(s)) = o.get("text") {
                            out.push(s);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn cwd_in_text(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim_start_matches(|c: char| c.is_whitespace() || c == '-' || c == '*');
        CWD_PREFIXES.iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?.trim();
            rest.starts_with('/').then(|| rest.to_string())
        })
    })
}

/// What the server answers a Messages request with.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// An assistant message.
    Message {
        /// Message id (`msg_{k}`, or `msg_side` for side calls).
        id: String,
        /// Content blocks (`text` or `tool_use`), as wire JSON.
        content: Vec<Value>,
        /// `"tool_use"` or `"end_turn"`.
        stop_reason: &'static str,
    },
    /// An HTTP error with an Anthropic error body.
    Error {
        /// HTTP status.
        status: u16,
        /// Anthropic error type, e.g. `invalid_request_error`.
        error_type: String,
        /// Error message.
        message: String,
    },
}

/// Turn a step selection into an answer. `cwd` resolves relative paths of
/// `read`/`write` steps.
pub fn answer(selection: Selection<'_>, cwd: &str) -> Answer {
    match selection {
        Selection::Side => text_message("msg_side".to_string(), SIDE_TEXT),
        Selection::Exhausted { index } => text_message(format!("msg_{index}"), DONE_TEXT),
        Selection::Step { index, step } => {
            let id = format!("msg_{index}");
            let tool = |name: &str, input: Value| Answer::Message {
                id: id.clone(),
                content: vec![json!({
                    "type": "tool_use",
                    "id": format!("toolu_{index:04}"),
                    "name": name,
                    "input": input,
                })],
                stop_reason: "tool_use",
            };
            match step {
                Step::Shell { command } => tool(
                    SHELL_TOOL,
                    json!({"command": command, "description": SHELL_DESCRIPTION}),
                ),
                Step::Read { path } => {
                    tool(READ_TOOL, json!({"file_path": resolve_path(cwd, path)}))
                }
                Step::Write { path, content } => tool(
                    WRITE_TOOL,
                    json!({"file_path": resolve_path(cwd, path), "content": content}),
                ),
                Step::Tool { name, input } => tool(name, input.clone()),
                Step::Text { text } => text_message(id.clone(), text),
                Step::Error {
                    status,
                    message,
                    error_type,
                } => Answer::Error {
                    status: *status,
                    error_type: error_type
                        .clone()
                        .unwrap_or_else(|| DEFAULT_ERROR_TYPE.to_string()),
                    message: message.clone(),
                },
            }
        }
    }
}

fn text_message(id: String, text: &str) -> Answer {
    Answer::Message {
        id,
        content: vec![json!({"type": "text", "text": text})],
        stop_reason: "end_turn",
    }
}

/// Deterministic token usage for a request of `request_bytes` answered with `content`.
pub fn usage(request_bytes: usize, content: &[Value]) -> Value {
    let content_chars = Value::Array(content.to_vec()).to_string().chars().count();
    json!({
        "input_tokens": request_bytes / 4,
        "output_tokens": content_chars / 4 + 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    })
}

/// A complete non-streaming message.
pub fn message_json(
    id: &str,
    model: &str,
    content: &[Value],
    stop_reason: &str,
    usage: &Value,
) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage,
    })
}

/// The whole SSE body for a streamed message.
pub fn sse_body(
    id: &str,
    model: &str,
    content: &[Value],
    stop_reason: &str,
    usage: &Value,
) -> String {
    let mut out = String::new();
    let mut event = |name: &str, data: Value| {
        out.push_str("event: ");
        out.push_str(name);
        out.push_str("\ndata: ");
        out.push_str(&data.to_string());
        out.push_str("\n\n");
    };
    let mut start_usage = usage.clone();
    if let Some(u) = start_usage.as_object_mut() {
        u.insert("output_tokens".to_string(), json!(1));
    }
    event(
        "message_start",
        json!({
            "type": "message_start",
            "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": start_usage,
            }
        }),
    );
    for (index, block) in content.iter().enumerate() {
        let (start, delta) = match block.get("type").and_then(Value::as_str) {
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                (
                    json!({
                        "type": "tool_use",
                        "id": block.get("id").cloned().unwrap_or(Value::Null),
                        "name": block.get("name").cloned().unwrap_or(Value::Null),
                        "input": {},
                    }),
                    json!({"type": "input_json_delta", "partial_json": input.to_string()}),
                )
            }
            _ => (
                json!({"type": "text", "text": ""}),
                json!({
                    "type": "text_delta",
                    "text": block.get("text").and_then(Value::as_str).unwrap_or_default(),
                }),
            ),
        };
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        );
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
    }
    event(
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": usage,
        }),
    );
    event("message_stop", json!({"type": "message_stop"}));
    out
}

/// An Anthropic error response: `{"type":"error","error":{"type":..,"message":..}}`.
pub fn error_response(status: u16, error_type: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"type": "error", "error": {"type": error_type, "message": message}});
    json_response(status, &body)
}

/// Answer `POST /v1/messages` for the raw request body.
pub fn messages(scenario: &Scenario, bytes: &[u8]) -> (Response, Served) {
    let body = match crate::wire::parse_object(bytes) {
        Ok(v) => v,
        Err(msg) => {
            return (
                error_response(400, DEFAULT_ERROR_TYPE, &msg),
                Served::Rejected,
            )
        }
    };
    let selection = scenario.select(offers_tools(&body), assistant_turns(&body));
    let served = Served::from(&selection);
    let cwd = find_cwd(&body).unwrap_or_else(|| DEFAULT_CWD.to_string());
    let (id, content, stop_reason) = match answer(selection, &cwd) {
        Answer::Error {
            status,
            error_type,
            message,
        } => return (error_response(status, &error_type, &message), served),
        Answer::Message {
            id,
            content,
            stop_reason,
        } => (id, content, stop_reason),
    };
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(FALLBACK_MODEL);
    let usage = usage(bytes.len(), &content);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let response = if stream {
        (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            sse_body(&id, model, &content, stop_reason, &usage),
        )
            .into_response()
    } else {
        json_response(
            StatusCode::OK,
            &message_json(&id, model, &content, stop_reason, &usage),
        )
    };
    (response, served)
}

/// Answer `POST /v1/messages/count_tokens`: `{"input_tokens": bytes / 4}`.
/// The body is not parsed, so any body is counted.
pub fn count_tokens(bytes: &[u8]) -> Response {
    json_response(StatusCode::OK, &json!({"input_tokens": bytes.len() / 4}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(json: &str) -> Scenario {
        match Scenario::from_json(json) {
            Ok(s) => s,
            Err(e) => panic!("test scenario: {e}"),
        }
    }

    #[test]
    fn counts_assistant_turns_and_tolerates_system_entries() {
        let body = json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "x"}]},
            {"role": "system", "content": "mid-conversation note"},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
            {"role": "assistant", "content": "y", "extra": true},
            {"role": "user"}
        ], "unknown": {"deep": [1, 2]}});
        assert_eq!(assistant_turns(&body), 2);
        assert_eq!(assistant_turns(&json!({})), 0);
        assert_eq!(assistant_turns(&json!({"messages": "nonsense"})), 0);
    }

    #[test]
    fn side_calls_are_requests_without_tools() {
        assert!(offers_tools(&json!({"tools": [{"name": "Bash"}]})));
        assert!(!offers_tools(&json!({"tools": []})));
        assert!(!offers_tools(&json!({"tools": null})));
        assert!(!offers_tools(&json!({})));
    }

    #[test]
    fn finds_cwd_in_claude_code_system_prompt() {
        // Wording of claude-code 2.1.197, copied from a logged request.
        let body = json!({
            "system": [
                {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.0df;"},
                {"type": "text", "text": "You are Claude Code."},
                {"type": "text", "text": "...\n# Environment\nYou have been invoked in the following environment: \n - Primary working directory: /tmp/ws dir\n - Is a git repository: false\n"}
            ],
            "messages": [{"role": "user", "content": "Working directory: /elsewhere"}]
        });
        assert_eq!(find_cwd(&body).as_deref(), Some("/tmp/ws dir"));
        // Older `<env>` wording, and a string system prompt.
        let old = json!({"system": "<env>\nWorking directory: /work/x\n</env>"});
        assert_eq!(find_cwd(&old).as_deref(), Some("/work/x"));
        // Found in the first user message when the system prompt lacks it.
        let msg = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "Working directory: /w"}]}]});
        assert_eq!(find_cwd(&msg).as_deref(), Some("/w"));
        // Not an absolute path, or absent: not found.
        assert_eq!(
            find_cwd(&json!({"system": "Working directory: relative"})),
            None
        );
        assert_eq!(find_cwd(&json!({"system": 5})), None);
    }

    #[test]
    fn neutral_steps_map_to_claude_code_tools() {
        let s = scenario(
            r#"{"steps":[{"shell":"ls -la"},{"read":"src/lib.rs"},{"write":{"path":"/abs/n.txt","content":"hi\n"}},
                {"tool":"Edit","input":{"file_path":"rel.rs","old_string":"a","new_string":"b"}},{"text":"All good."},
                {"error":{"status":429,"message":"slow down","type":"rate_limit_error"}}]}"#,
        );
        let cwd = "/tmp/ws";
        let tool_of = |k: usize| match answer(s.select(true, k), cwd) {
            Answer::Message {
                id,
                content,
                stop_reason,
            } => (id, content, stop_reason),
            other => panic!("step {k}: expected a message, got {other:?}"),
        };
        let (id, content, stop) = tool_of(0);
        assert_eq!((id.as_str(), stop), ("msg_0", "tool_use"));
        assert_eq!(
            content,
            vec![
                json!({"type":"tool_use","id":"toolu_0000","name":"Bash","input":{"command":"ls -la","description":"scripted step"}})
            ]
        );
        assert_eq!(
            tool_of(1).1,
            vec![
                json!({"type":"tool_use","id":"toolu_0001","name":"Read","input":{"file_path":"/tmp/ws/src/lib.rs"}})
            ]
        );
        assert_eq!(
            tool_of(2).1,
            vec![
                json!({"type":"tool_use","id":"toolu_0002","name":"Write","input":{"file_path":"/abs/n.txt","content":"hi\n"}})
            ]
        );
        // Passed through unchanged: the relative path stays relative.
        assert_eq!(
            tool_of(3).1,
            vec![
                json!({"type":"tool_use","id":"toolu_0003","name":"Edit","input":{"file_path":"rel.rs","old_string":"a","new_string":"b"}})
            ]
        );
        assert_eq!(
            tool_of(4),
            (
                "msg_4".to_string(),
                vec![json!({"type":"text","text":"All good."})],
                "end_turn"
            )
        );
        assert_eq!(
            answer(s.select(true, 5), cwd),
            Answer::Error {
                status: 429,
                error_type: "rate_limit_error".into(),
                message: "slow down".into()
            }
        );
        assert_eq!(
            tool_of(6),
            (
                "msg_6".to_string(),
                vec![json!({"type":"text","text":"Done."})],
                "end_turn"
            )
        );
        assert_eq!(
            answer(s.select(false, 1), cwd),
            text_message("msg_side".into(), SIDE_TEXT)
        );
    }

    #[test]
    fn usage_is_derived_from_sizes() {
        let content = vec![json!({"type":"text","text":"Done."})];
        // `[{"text":"Done.","type":"text"}]` is 32 chars -> 32/4 + 1.
        assert_eq!(
            usage(4003, &content),
            json!({"input_tokens":1000,"output_tokens":9,"cache_creation_input_tokens":0,"cache_read_input_tokens":0})
        );
    }

    #[test]
    fn sse_body_has_the_full_event_sequence_with_deltas() {
        let content = vec![
            json!({"type":"tool_use","id":"toolu_0001","name":"Bash","input":{"command":"ls"}}),
        ];
        let u = usage(100, &content);
        let body = sse_body("msg_1", "m", &content, "tool_use", &u);
        let events: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            events,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(
            body.contains(r#""partial_json":"{\"command\":\"ls\"}""#),
            "{body}"
        );
        assert!(body.contains(r#""stop_reason":"tool_use""#), "{body}");
        assert!(body.ends_with("\n\n"));
    }

    #[test]
    fn malformed_bodies_are_rejected_not_panicked_on() {
        let s = Scenario::default();
        let (resp, served) = messages(&s, b"{not json");
        assert_eq!((resp.status().as_u16(), served), (400, Served::Rejected));
        let (resp, served) = messages(&s, b"[1,2]");
        assert_eq!((resp.status().as_u16(), served), (400, Served::Rejected));
        let (resp, served) = messages(&s, b"{}");
        assert_eq!((resp.status().as_u16(), served), (200, Served::Side));
    }
}

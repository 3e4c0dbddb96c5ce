//! The OpenAI Chat Completions API, as far as OpenCode needs it.
//!
//! Only this module knows the Chat Completions wire format: how to read a
//! request (assistant turns, offered tools, the agent's cwd), which OpenCode
//! tools the neutral steps map to, and how to write a completion as JSON or
//! as server-sent `chat.completion.chunk`s.
//!
//! OpenCode is pointed here with a provider using `@ai-sdk/openai-compatible`
//! and `options.baseURL = "{server}/v1"`; it then sends
//! `POST /v1/chat/completions` with `stream: true`,
//! `stream_options.include_usage`, `messages[]` (the whole conversation) and
//! `tools[]` (`{"type":"function","function":{name, description,
//! parameters}}`). The shapes below were checked against opencode 1.18.33:
//! it offers `bash` `{command, timeout, workdir}`, `read` `{filePath,
//! offset, limit}`, `write` `{content, filePath}`, `edit`, `glob`, `grep`,
//! `skill`, `task`, `todowrite` and `webfetch`, and first sends a
//! title-generator request without tools.
//!
//! **Step selection.** Step `k` = the number of `role: "assistant"` entries
//! in `messages` (every answer of this server is one assistant message, so
//! the count equals the scripted answers already received). Requests without
//! tools are side calls (plain text, no step consumed).
//!
//! **Neutral steps → OpenCode tools** (by what the request's `tools` offer):
//!
//! | step | answer |
//! |---|---|
//! | `shell` | `bash` `{"command"}`, plus `"description": "scripted step"` when its schema declares `description` |
//! | `read` | `read` `{"filePath": ABS}` (the parameter name is taken from the schema: `filePath`, `file_path` or `path`); when only `bash` is offered, `cat 'ABS'` through it |
//! | `write` | `write` `{"filePath": ABS, "content"}` (same naming rule); when only `bash` is offered, the byte-exact script of [`crate::openai::write_script`] |
//! | `tool` | a tool call with that name and the input as `arguments` |
//! | `text` | an assistant message with that `content` |
//! | `error` | the HTTP status with `{"error":{"message","type","param":null,"code":null}}` |
//!
//! Relative `read`/`write` paths are resolved against the cwd OpenCode
//! states in its system prompt (`  Working directory: /abs` inside `<env>`),
//! else [`DEFAULT_CWD`].
//!
//! **Answers.** Streamed: a first chunk with `delta: {"role": "assistant",
//! "content": ""}`, then either the content as one delta or the tool call as
//! two deltas (`{index, id, type, function: {name, arguments: ""}}`, then the
//! arguments), a chunk with an empty delta and `finish_reason` (`"stop"` or
//! `"tool_calls"`), a usage chunk with `choices: []` when
//! `stream_options.include_usage` is set (as OpenAI does), then
//! `data: [DONE]`. Not streamed: one `chat.completion` object. Usage:
//! `prompt_tokens` = request bytes / 4, `completion_tokens` = serialized
//! message chars / 4 + 1. Ids are deterministic: `chatcmpl-{k}` and
//! `call_{k}` (`chatcmpl-side` for side calls).

use crate::wire::json_response;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::functions::Functions;
use crate::log::Served;
use crate::openai::error_response;
use crate::scenario::{Scenario, Selection, Step, DEFAULT_CWD};

/// OpenCode's shell tool.
pub const SHELL_TOOL: &str = "bash";
/// OpenCode's file read tool.
pub const READ_TOOL: &str = "read";
/// OpenCode's whole-file write tool.
pub const WRITE_TOOL: &str = "write";
/// The `description` given to scripted shell calls whose schema takes one.
pub const SHELL_DESCRIPTION: &str = crate::anthropic::SHELL_DESCRIPTION;
/// Parameter names tried, in order, for the file path of `read`/`write`.
const PATH_PARAMS: [&str; 3] = ["filePath", "file_path", "path"];
/// OpenCode's tools (Chat Completions).
const TOOLS: crate::functions::ToolNames = crate::functions::ToolNames {
    shell: SHELL_TOOL,
    read: READ_TOOL,
    write: WRITE_TOOL,
    path_params: &PATH_PARAMS,
    describe_undeclared_shell: false,
};
/// The line prefix (after leading spaces) that carries the cwd in OpenCode's
/// system prompt.
const CWD_PREFIX: &str = "Working directory:";

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn messages(body: &Value) -> &[Value] {
    body.get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Number of `role: "assistant"` entries in the request's `messages`.
pub fn assistant_turns(body: &Value) -> usize {
    messages(body)
        .iter()
        .filter(|m| str_of(m, "role") == Some("assistant"))
        .count()
}

/// Whether the request offers at least one tool. Requests without tools are
/// side calls (OpenCode's title generator).
pub fn offers_tools(body: &Value) -> bool {
    crate::anthropic::offers_tools(body)
}

/// The agent's working directory as OpenCode states it in a `system` (or
/// `developer`/`user`) message: a line `Working directory: /abs/path`.
pub fn find_cwd(body: &Value) -> Option<String> {
    messages(body)
        .iter()
        .filter(|m| matches!(str_of(m, "role"), Some("system" | "developer" | "user")))
        .flat_map(|m| message_texts(m.get("content")))
        .find_map(cwd_in_text)
}

fn message_texts(content: Option<&Value>) -> Vec<&str> {
    match content {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| str_of(p, "text")).collect(),
        _ => Vec::new(),
    }
}

fn cwd_in_text(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim_start_matches(|c: char| c.is_whitespace() || c == '-' || c == '*');
        let rest = line.strip_prefix(CWD_PREFIX)?.trim();
        rest.starts_with('/').then(|| rest.to_string())
    })
}

/// What the server answers a Chat Completions request with.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// One assistant message.
    Message {
        /// Completion id (`chatcmpl-{k}`, or `chatcmpl-side` for side calls).
        id: String,
        /// The `message` object: `role`, `content`, and `tool_calls` when calling a tool.
        message: Value,
        /// `"tool_calls"` or `"stop"`.
        finish_reason: &'static str,
    },
    /// An HTTP error with an OpenAI error body.
    Error {
        /// HTTP status.
        status: u16,
        /// OpenAI error type, e.g. `invalid_request_error`.
        error_type: String,
        /// Error message.
        message: String,
    },
}

/// Turn a step selection into an answer. `tools` are what the request
/// offers; `cwd` resolves relative paths of `read`/`write` steps.
pub fn answer(selection: Selection<'_>, tools: &Functions, cwd: &str) -> Answer {
    let (index, step) = match selection {
        Selection::Side => return text_message("side", crate::anthropic::SIDE_TEXT),
        Selection::Exhausted { index } => {
            return text_message(&index.to_string(), crate::anthropic::DONE_TEXT)
        }
        Selection::Step { index, step } => (index, step),
    };
    let call = |name: &str, arguments: Value| Answer::Message {
        id: format!("chatcmpl-{index}"),
        message: json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [{
                "id": format!("call_{index}"),
                "type": "function",
                "function": {"name": name, "arguments": arguments.to_string()},
            }],
        }),
        finish_reason: "tool_calls",
    };
    match step {
        Step::Text { text } => text_message(&index.to_string(), text),
        Step::Error {
            status,
            message,
            error_type,
        } => Answer::Error {
            status: *status,
            error_type: error_type.clone().unwrap_or_else(|| {
                if *status >= 500 {
                    crate::openai::DEFAULT_SERVER_ERROR_TYPE
                } else {
                    crate::openai::DEFAULT_ERROR_TYPE
                }
                .to_string()
            }),
            message: message.clone(),
        },
        // Shell, read, write and tool steps: a function call in the request's tools.
        _ => match crate::functions::call_for(step, tools, &TOOLS, cwd) {
            Some((name, args)) => call(&name, args),
            None => text_message(&index.to_string(), crate::anthropic::DONE_TEXT),
        },
    }
}

fn text_message(suffix: &str, text: &str) -> Answer {
    Answer::Message {
        id: format!("chatcmpl-{suffix}"),
        message: json!({"role": "assistant", "content": text}),
        finish_reason: "stop",
    }
}

/// Deterministic Chat Completions usage for a request of `request_bytes`
/// answered with `message`.
pub fn usage(request_bytes: usize, message: &Value) -> Value {
    let prompt = request_bytes / 4;
    let completion = message.to_string().chars().count() / 4 + 1;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

/// The complete non-streaming `chat.completion` object.
pub fn completion_json(
    id: &str,
    model: &str,
    message: &Value,
    finish_reason: &str,
    usage: &Value,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage,
    })
}

/// The whole SSE body for a streamed completion; `usage` is sent in its own
/// chunk (with `choices: []`) when given.
pub fn sse_body(
    id: &str,
    model: &str,
    message: &Value,
    finish_reason: &str,
    usage: Option<&Value>,
) -> String {
    let mut out = String::new();
    let mut chunk = |choices: Value, usage: Option<&Value>| {
        let mut data = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": choices,
        });
        if let Some(u) = usage {
            data["usage"] = u.clone();
        }
        out.push_str("data: ");
        out.push_str(&data.to_string());
        out.push_str("\n\n");
    };
    let delta = |delta: Value, finish: Option<&str>| json!([{"index": 0, "delta": delta, "finish_reason": finish}]);
    chunk(
        delta(json!({"role": "assistant", "content": ""}), None),
        None,
    );
    match message.get("tool_calls").and_then(Value::as_array) {
        Some(calls) => {
            for (i, c) in calls.iter().enumerate() {
                let function = c.get("function").unwrap_or(&Value::Null);
                let name = function.get("name").cloned().unwrap_or(Value::Null);
                let args = function.get("arguments").cloned().unwrap_or(json!(""));
                chunk(
                    delta(
                        json!({"tool_calls": [{
                            "index": i,
                            "id": c.get("id").cloned().unwrap_or(Value::Null),
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }]}),
                        None,
                    ),
                    None,
                );
                chunk(
                    delta(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": args}}]}),
                        None,
                    ),
                    None,
                );
            }
        }
        None => {
            let text = str_of(message, "content").unwrap_or_default();
            chunk(delta(json!({"content": text}), None), None);
        }
    }
    chunk(delta(json!({}), Some(finish_reason)), None);
    if let Some(u) = usage {
        chunk(json!([]), Some(u));
    }
    out.push_str("data: [DONE]\n\n");
    out
}

/// Answer `POST /v1/chat/completions` for the raw request body (SSE when
/// `"stream": true`, else one JSON `chat.completion`).
pub fn chat_completions(scenario: &Scenario, bytes: &[u8]) -> (Response, Served) {
    let body = match crate::wire::parse_object(bytes) {
        Ok(v) => v,
        Err(msg) => {
            return (
                error_response(400, crate::openai::DEFAULT_ERROR_TYPE, &msg),
                Served::Rejected,
            )
        }
    };
    let selection = scenario.select(offers_tools(&body), assistant_turns(&body));
    let served = Served::from(&selection);
    let cwd = find_cwd(&body).unwrap_or_else(|| DEFAULT_CWD.to_string());
    let tools = Functions::from_chat_request(&body);
    let (id, message, finish_reason) = match answer(selection, &tools, &cwd) {
        Answer::Error {
            status,
            error_type,
            message,
        } => return (error_response(status, &error_type, &message), served),
        Answer::Message {
            id,
            message,
            finish_reason,
        } => (id, message, finish_reason),
    };
    let model = str_of(&body, "model").unwrap_or(crate::anthropic::FALLBACK_MODEL);
    let usage = usage(bytes.len(), &message);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let response = if stream {
        let include_usage = body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            sse_body(
                &id,
                model,
                &message,
                finish_reason,
                include_usage.then_some(&usage),
            ),
        )
            .into_response()
    } else {
        json_response(
            StatusCode::OK,
            &completion_json(&id, model, &message, finish_reason, &usage),
        )
    };
    (response, served)
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

    /// `tools[]` as opencode 1.18.33 offers them (descriptions dropped).
    fn opencode_tools() -> Functions {
        Functions::from_chat_request(&json!({"tools": [
            {"type":"function","function":{"name":"bash","parameters":{"type":"object","properties":{
                "command":{"type":"string"},"timeout":{"type":"integer"},"workdir":{"type":"string"}},"required":["command"]}}},
            {"type":"function","function":{"name":"read","parameters":{"type":"object","properties":{
                "filePath":{"type":"string"},"offset":{"type":"integer"},"limit":{"type":"integer"}},"required":["filePath"]}}},
            {"type":"function","function":{"name":"write","parameters":{"type":"object","properties":{
                "content":{"type":"string"},"filePath":{"type":"string"}},"required":["content","filePath"]}}}
        ]}))
    }

    #[test]
    fn counts_assistant_messages_including_tool_call_ones() {
        let body = json!({"messages": [
            {"role": "system", "content": "x"},
            {"role": "user", "content": "do it"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "call_0"}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "ok"},
            {"role": "assistant", "content": "y"},
            7
        ]});
        assert_eq!(assistant_turns(&body), 2);
        assert_eq!(assistant_turns(&json!({"messages": {}})), 0);
    }

    #[test]
    fn finds_cwd_in_opencode_system_prompt() {
        // Wording of opencode 1.18.33 (the `<env>` block of its system prompt).
        let body = json!({"messages": [
            {"role": "system", "content": "You are opencode...\n<env>\n  Working directory: /tmp/ws\n  Is directory a git repo: no\n</env>"},
            {"role": "tool", "content": "Working directory: /not/this"}
        ]});
        assert_eq!(find_cwd(&body).as_deref(), Some("/tmp/ws"));
        let parts = json!({"messages": [{"role": "system", "content": [{"type": "text", "text": "Working directory: /w"}]}]});
        assert_eq!(find_cwd(&parts).as_deref(), Some("/w"));
        assert_eq!(
            find_cwd(
                &json!({"messages": [{"role": "system", "content": "Working directory: rel"}]})
            ),
            None
        );
        assert_eq!(find_cwd(&json!({})), None);
    }

    #[test]
    fn neutral_steps_map_to_opencode_tools() {
        let s = scenario(
            r#"{"steps":[{"shell":"ls -la"},{"read":"src/lib.rs"},{"write":{"path":"n.txt","content":"hi\n"}},
                {"tool":"todowrite","input":{"todos":[]}},{"text":"All good."},
                {"error":{"status":429,"message":"slow down","type":"rate_limit_error"}},
                {"error":{"status":500,"message":"boom"}}]}"#,
        );
        let tools = opencode_tools();
        let call = |k: usize, tools: &Functions| match answer(s.select(true, k), tools, "/tmp/ws") {
            Answer::Message {
                id,
                message,
                finish_reason,
            } => {
                assert_eq!(id, format!("chatcmpl-{k}"));
                assert_eq!(finish_reason, "tool_calls");
                let c = &message["tool_calls"][0];
                assert_eq!(c["id"], format!("call_{k}"));
                let args: Value =
                    serde_json::from_str(c["function"]["arguments"].as_str().unwrap_or(""))
                        .unwrap_or(Value::Null);
                (
                    c["function"]["name"].as_str().unwrap_or("").to_owned(),
                    args,
                )
            }
            other => panic!("step {k}: expected a message, got {other:?}"),
        };
        assert_eq!(
            call(0, &tools),
            ("bash".into(), json!({"command": "ls -la"}))
        );
        assert_eq!(
            call(1, &tools),
            ("read".into(), json!({"filePath": "/tmp/ws/src/lib.rs"}))
        );
        assert_eq!(
            call(2, &tools),
            (
                "write".into(),
                json!({"filePath": "/tmp/ws/n.txt", "content": "hi\n"})
            )
        );
        assert_eq!(call(3, &tools), ("todowrite".into(), json!({"todos": []})));
        assert_eq!(
            answer(s.select(true, 4), &tools, "/"),
            Answer::Message {
                id: "chatcmpl-4".into(),
                message: json!({"role": "assistant", "content": "All good."}),
                finish_reason: "stop"
            }
        );
        assert_eq!(
            answer(s.select(true, 5), &tools, "/"),
            Answer::Error {
                status: 429,
                error_type: "rate_limit_error".into(),
                message: "slow down".into()
            }
        );
        assert!(matches!(
            answer(s.select(true, 6), &tools, "/"),
            Answer::Error { status: 500, ref error_type, .. } if error_type == "server_error"
        ));
        assert_eq!(
            answer(s.select(true, 7), &tools, "/"),
            text_message("7", "Done.")
        );
        assert_eq!(
            answer(s.select(false, 0), &tools, "/"),
            text_message("side", "Scripted reply.")
        );

        // A bash schema with `description` gets one; bash alone does reads
        // and writes; nothing offered at all still names OpenCode's tools.
        let described = Functions::from_chat_request(&json!({"tools": [
            {"type":"function","function":{"name":"bash","parameters":{"properties":{"command":{},"description":{}}}}}
        ]}));
        assert_eq!(
            call(0, &described).1,
            json!({"command": "ls -la", "description": "scripted step"})
        );
        assert_eq!(
            call(1, &described),
            (
                "bash".into(),
                json!({"command": "cat '/tmp/ws/src/lib.rs'", "description": "scripted step"})
            )
        );
        assert_eq!(
            call(2, &described).1["command"],
            "mkdir -p '/tmp/ws' && cat > '/tmp/ws/n.txt' <<'ERRAND_EOF'\nhi\nERRAND_EOF"
        );
        assert_eq!(call(2, &Functions::default()).0, "write");
    }

    #[test]
    fn sse_body_streams_tool_calls_then_usage_then_done() {
        let message = json!({"role":"assistant","content":null,"tool_calls":[
            {"id":"call_1","type":"function","function":{"name":"bash","arguments":"{\"command\":\"ls\"}"}}]});
        let u = usage(400, &message);
        let body = sse_body("chatcmpl-1", "m", &message, "tool_calls", Some(&u));
        let frames: Vec<&str> = body.split("\n\n").filter(|f| !f.is_empty()).collect();
        assert_eq!(frames.len(), 6, "{body}");
        assert_eq!(frames[5], "data: [DONE]");
        let data: Vec<Value> = frames[..5]
            .iter()
            .map(|f| serde_json::from_str(f.trim_start_matches("data: ")).unwrap_or(Value::Null))
            .collect();
        assert_eq!(data[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(
            data[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "bash"
        );
        assert_eq!(
            data[1]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "call_1"
        );
        assert_eq!(
            data[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"command\":\"ls\"}"
        );
        assert_eq!(data[3]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(data[4]["choices"], json!([]));
        assert_eq!(data[4]["usage"]["prompt_tokens"], 100);
        // Without include_usage there is no usage chunk.
        let text = json!({"role":"assistant","content":"hi"});
        let body = sse_body("c", "m", &text, "stop", None);
        assert_eq!(body.matches("data: ").count(), 4, "{body}");
        assert!(body.contains(r#""delta":{"content":"hi"}"#), "{body}");
    }

    #[test]
    fn malformed_bodies_are_rejected_not_panicked_on() {
        let s = Scenario::default();
        let (resp, served) = chat_completions(&s, b"{not json");
        assert_eq!((resp.status().as_u16(), served), (400, Served::Rejected));
        let (resp, served) = chat_completions(&s, b"\"x\"");
        assert_eq!((resp.status().as_u16(), served), (400, Served::Rejected));
        let (resp, served) = chat_completions(&s, b"{}");
        assert_eq!((resp.status().as_u16(), served), (200, Served::Side));
        let (resp, served) = chat_completions(
            &s,
            br#"{"tools":[{}],"messages":[null,{"role":5}],"stream":"yes"}"#,
        );
        assert_eq!(
            (resp.status().as_u16(), served),
            (200, Served::Exhausted(0))
        );
    }
}

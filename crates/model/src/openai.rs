//! The OpenAI Responses API, as far as Codex (`codex exec`) needs it.
//!
//! Only this module knows the Responses wire format: how to read a request
//! (assistant turns, offered tools, the agent's cwd), which Codex tools the
//! neutral steps map to, and how to write a response as server-sent events.
//!
//! Codex is pointed here with a custom provider (`wire_api = "responses"`,
//! `base_url = "{server}/v1"`); it then sends `POST /v1/responses` with
//! `stream: true`, `input[]` (the whole conversation as Responses items) and
//! `tools[]`. The shapes below were checked against codex-cli 0.169.0
//! (`shared/docs/harnesses.md` §1.4 and logged requests).
//!
//! **Step selection.** Step `k` = the number of assistant turns already in
//! `input`: items of type `function_call`, `custom_tool_call` or
//! `local_shell_call`, plus `message` items with `role: "assistant"`.
//! Reasoning items and tool outputs are not turns. Every answer of this
//! server holds exactly one such item, so the count equals the number of
//! scripted answers Codex has already received. Requests without tools are
//! side calls (plain text, no step consumed).
//!
//! **Neutral steps → Codex tools** (by what the request's `tools` offer):
//!
//! | step | answer |
//! |---|---|
//! | `shell` | `function_call` `exec_command` `{"cmd"}`; if only `shell_command` is offered, `{"command": "…"}`; if only `shell`, `{"command": ["bash","-lc","…"]}` |
//! | `read` | the shell tool running `cat 'PATH'` |
//! | `write` | `apply_patch` offered as a custom tool (e.g. `-m gpt-5.5`): a `custom_tool_call` with an `*** Add File:` patch (a missing final newline is added: the patch format cannot express it). Otherwise the shell tool writes the file byte-exactly: `mkdir -p` of the parent, then a quoted heredoc (`<<'ERRAND_EOF'`) when the content ends with a newline, `printf '%s'` when it does not |
//! | `tool` | a `function_call` with `arguments` = the input as a JSON string; when that tool is offered as a *custom* tool, a `custom_tool_call` whose `input` is the step input's `"input"` string (or the input as JSON) |
//! | `text` | an assistant `message` with one `output_text` part |
//! | `error` | the HTTP status with `{"error":{"message","type","param":null,"code":null}}` |
//!
//! Relative `read`/`write` paths are resolved against the cwd Codex states
//! in its `<environment_context>` message (`<cwd>…</cwd>`, the latest one
//! wins), else [`DEFAULT_CWD`].
//!
//! **Streaming.** The same sequence `oai_mock.py` verified with Codex:
//! `response.created`, `response.in_progress`, per item
//! `response.output_item.added`, the item's delta/done events,
//! `response.output_item.done`, then `response.completed` whose `response`
//! holds the whole `output` and `usage` (`input_tokens` = request bytes / 4,
//! `output_tokens` = serialized output chars / 4 + 1, `total_tokens`,
//! zero `cached_tokens` and `reasoning_tokens`). Ids are deterministic:
//! `resp_{k}`, `msg_{k}`, `fc_{k}`, `ctc_{k}`, `call_{k}`.

use crate::wire::json_response;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::log::Served;
use crate::scenario::{resolve_path, Scenario, Selection, Step, DEFAULT_CWD};

/// Codex's unified shell tool (`{"cmd": "..."}`), offered for every model slug seen.
pub const EXEC_COMMAND_TOOL: &str = "exec_command";
/// Codex's single-string shell tool (`{"command": "..."}`), offered by some versions.
pub const SHELL_COMMAND_TOOL: &str = "shell_command";
/// Codex's older argv shell tool (`{"command": ["bash", "-lc", "..."]}`).
pub const SHELL_TOOL: &str = "shell";
/// Codex's patch tool; used for `write` steps when offered as a custom tool.
pub const APPLY_PATCH_TOOL: &str = "apply_patch";
/// Heredoc delimiter for shell-written files (a suffix is added when the
/// content holds this line).
pub const HEREDOC_DELIMITER: &str = "ERRAND_EOF";
/// Error type for `error` steps with a 4xx status that do not name one.
pub const DEFAULT_ERROR_TYPE: &str = "invalid_request_error";
/// Error type for `error` steps with a 5xx status that do not name one.
pub const DEFAULT_SERVER_ERROR_TYPE: &str = "server_error";
/// Answer to side calls (requests that offer no tools).
pub const SIDE_TEXT: &str = crate::anthropic::SIDE_TEXT;
/// Final answer once the scenario has no steps left.
pub const DONE_TEXT: &str = crate::anthropic::DONE_TEXT;
/// Model name reported when the request names none.
pub const FALLBACK_MODEL: &str = crate::anthropic::FALLBACK_MODEL;

/// Input item types that are an assistant turn (besides assistant messages).
const TURN_ITEM_TYPES: [&str; 3] = ["function_call", "custom_tool_call", "local_shell_call"];

fn input_items(body: &Value) -> &[Value] {
    body.get("input")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Number of assistant turns in the request's `input`: tool-call items
/// (`function_call`, `custom_tool_call`, `local_shell_call`) plus assistant
/// `message`s. Reasoning items and tool outputs do not count.
pub fn assistant_turns(body: &Value) -> usize {
    input_items(body)
        .iter()
        .filter(|item| match str_of(item, "type") {
            Some("message") => str_of(item, "role") == Some("assistant"),
            Some(t) => TURN_ITEM_TYPES.contains(&t),
            // Easy-input messages may omit `type`.
            None => str_of(item, "role") == Some("assistant"),
        })
        .count()
}

/// Whether the request offers at least one tool. Requests without tools are
/// side calls.
pub fn offers_tools(body: &Value) -> bool {
    crate::anthropic::offers_tools(body)
}

/// The agent's working directory from Codex's `<environment_context>`
/// message (`<cwd>/abs/path</cwd>`, in a `user` or `developer` message; the
/// latest one wins), if any.
pub fn find_cwd(body: &Value) -> Option<String> {
    input_items(body)
        .iter()
        .filter(|item| {
            matches!(str_of(item, "role"), Some("user" | "developer" | "system"))
                && str_of(item, "type").is_none_or(|t| t == "message")
        })
        .flat_map(|item| item_texts(item.get("content")))
        .filter_map(cwd_in_text)
        .next_back()
}

fn item_texts(content: Option<&Value>) -> Vec<&str> {
    match content {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(parts)) => parts.iter().filter_map(|p| str_of(p, "text")).collect(),
        _ => Vec::new(),
    }
}

fn cwd_in_text(text: &str) -> Option<String> {
    let start = text.find("<cwd>")? + "<cwd>".len();
    let len = text[start..].find("</cwd>")?;
    let cwd = text[start..start + len].trim();
    cwd.starts_with('/').then(|| cwd.to_string())
}

/// How the offered shell tool takes its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellTool {
    /// `exec_command` with `{"cmd": "..."}` (also the default when no shell tool is offered).
    ExecCommand,
    /// `shell_command` with `{"command": "..."}`.
    ShellCommand,
    /// `shell` with `{"command": ["bash", "-lc", "..."]}`.
    ShellArgv,
}

/// What the request's `tools[]` offer, as far as the mapping needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedTools {
    /// The tool `shell`, `read` and shell-written `write` steps use.
    pub shell: ShellTool,
    /// Names of tools offered with `type: "custom"` (freeform input).
    pub custom: Vec<String>,
}

impl Default for OfferedTools {
    fn default() -> Self {
        OfferedTools {
            shell: ShellTool::ExecCommand,
            custom: Vec::new(),
        }
    }
}

impl OfferedTools {
    /// Read `tools[]` of a request. Unknown or odd entries are ignored.
    pub fn from_request(body: &Value) -> OfferedTools {
        let tools = body
            .get("tools")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let name_of = |t: &Value| {
            str_of(t, "name")
                .or_else(|| t.get("function").and_then(|f| str_of(f, "name")))
                .map(str::to_owned)
        };
        let names: Vec<String> = tools.iter().filter_map(name_of).collect();
        let has = |n: &str| names.iter().any(|x| x == n);
        let shell = if has(EXEC_COMMAND_TOOL) {
            ShellTool::ExecCommand
        } else if has(SHELL_COMMAND_TOOL) {
            ShellTool::ShellCommand
        } else if has(SHELL_TOOL) {
            ShellTool::ShellArgv
        } else {
            ShellTool::ExecCommand
        };
        let custom = tools
            .iter()
            .filter(|t| str_of(t, "type") == Some("custom"))
            .filter_map(name_of)
            .collect();
        OfferedTools { shell, custom }
    }

    /// Whether `name` is offered as a custom (freeform) tool.
    pub fn is_custom(&self, name: &str) -> bool {
        self.custom.iter().any(|c| c == name)
    }

    /// The shell tool's name and JSON arguments for `command`.
    pub fn shell_call(&self, command: &str) -> (&'static str, Value) {
        match self.shell {
            ShellTool::ExecCommand => (EXEC_COMMAND_TOOL, json!({"cmd": command})),
            ShellTool::ShellCommand => (SHELL_COMMAND_TOOL, json!({"command": command})),
            ShellTool::ShellArgv => (SHELL_TOOL, json!({"command": ["bash", "-lc", command]})),
        }
    }
}

/// `s` as one single-quoted shell word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A shell script that writes `content` to the absolute `path` byte-exactly,
/// creating the parent directory.
pub fn write_script(path: &str, content: &str) -> String {
    let parent = match path.rfind('/') {
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    };
    let mkdir = parent
        .map(|p| format!("mkdir -p {} && ", shell_quote(p)))
        .unwrap_or_default();
    let target = shell_quote(path);
    if content.is_empty() {
        return format!("{mkdir}: > {target}");
    }
    if !content.ends_with('\n') {
        return format!("{mkdir}printf '%s' {} > {target}", shell_quote(content));
    }
    let mut delimiter = HEREDOC_DELIMITER.to_string();
    let mut n = 0;
    while content.lines().any(|l| l == delimiter) {
        n += 1;
        delimiter = format!("{HEREDOC_DELIMITER}_{n}");
    }
    format!("{mkdir}cat > {target} <<'{delimiter}'\n{content}{delimiter}")
}

/// An `apply_patch` patch that adds the file `path` with `content`. A final
/// newline is added when missing (the format always ends lines with one).
pub fn add_file_patch(path: &str, content: &str) -> String {
    let mut patch = format!("*** Begin Patch\n*** Add File: {path}\n");
    if content.is_empty() {
        patch.push_str("+\n");
    }
    for line in content.lines() {
        patch.push('+');
        patch.push_str(line);
        patch.push('\n');
    }
    patch.push_str("*** End Patch");
    patch
}

/// What the server answers a Responses request with.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A completed response.
    Output {
        /// Response id (`resp_{k}`, or `resp_side` for side calls).
        id: String,
        /// The output items, as wire JSON.
        items: Vec<Value>,
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
pub fn answer(selection: Selection<'_>, tools: &OfferedTools, cwd: &str) -> Answer {
    let (index, step) = match selection {
        Selection::Side => return text_output("side", SIDE_TEXT),
        Selection::Exhausted { index } => return text_output(&index.to_string(), DONE_TEXT),
        Selection::Step { index, step } => (index, step),
    };
    let function_call = |name: &str, arguments: &Value| Answer::Output {
        id: format!("resp_{index}"),
        items: vec![json!({
            "type": "function_call",
            "id": format!("fc_{index}"),
            "call_id": format!("call_{index}"),
            "name": name,
            "arguments": arguments.to_string(),
            "status": "completed",
        })],
    };
    let custom_call = |name: &str, input: &str| Answer::Output {
        id: format!("resp_{index}"),
        items: vec![json!({
            "type": "custom_tool_call",
            "id": format!("ctc_{index}"),
            "call_id": format!("call_{index}"),
            "name": name,
            "input": input,
            "status": "completed",
        })],
    };
    let shell = |command: &str| {
        let (name, arguments) = tools.shell_call(command);
        function_call(name, &arguments)
    };
    match step {
        Step::Shell { command } => shell(command),
        Step::Read { path } => shell(&format!("cat {}", shell_quote(&resolve_path(cwd, path)))),
        Step::Write { path, content } => {
            let path = resolve_path(cwd, path);
            if tools.is_custom(APPLY_PATCH_TOOL) {
                custom_call(APPLY_PATCH_TOOL, &add_file_patch(&path, content))
            } else {
                shell(&write_script(&path, content))
            }
        }
        Step::Tool { name, input } => {
            if tools.is_custom(name) {
                let text = match input.get("input") {
                    Some(Value::String(s)) => s.clone(),
                    _ => input.to_string(),
                };
                custom_call(name, &text)
            } else {
                function_call(name, input)
            }
        }
        Step::Text { text } => text_output(&index.to_string(), text),
        Step::Error {
            status,
            message,
            error_type,
        } => Answer::Error {
            status: *status,
            error_type: error_type.clone().unwrap_or_else(|| {
                if *status >= 500 {
                    DEFAULT_SERVER_ERROR_TYPE
                } else {
                    DEFAULT_ERROR_TYPE
                }
                .to_string()
            }),
            message: message.clone(),
        },
    }
}

fn text_output(suffix: &str, text: &str) -> Answer {
    Answer::Output {
        id: format!("resp_{suffix}"),
        items: vec![json!({
            "type": "message",
            "id": format!("msg_{suffix}"),
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        })],
    }
}

/// Deterministic Responses usage for a request of `request_bytes` answered with `items`.
pub fn usage(request_bytes: usize, items: &[Value]) -> Value {
    let input = request_bytes / 4;
    let output = Value::Array(items.to_vec()).to_string().chars().count() / 4 + 1;
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + output,
    })
}

/// The `response` object of `response.created` / `response.completed`.
fn response_object(id: &str, model: &str, status: &str, output: &[Value]) -> Map<String, Value> {
    let mut obj = Map::new();
    obj.insert("id".into(), json!(id));
    obj.insert("object".into(), json!("response"));
    obj.insert("created_at".into(), json!(0));
    obj.insert("model".into(), json!(model));
    obj.insert("status".into(), json!(status));
    obj.insert("output".into(), json!(output));
    obj
}

/// The whole SSE body for a streamed response.
pub fn sse_body(id: &str, model: &str, items: &[Value], usage: &Value) -> String {
    let mut out = String::new();
    let mut sequence = 0u64;
    let mut event = |data: Value| {
        let mut data = data;
        let name = str_of(&data, "type").unwrap_or_default().to_string();
        if let Some(obj) = data.as_object_mut() {
            obj.insert("sequence_number".into(), json!(sequence));
        }
        sequence += 1;
        out.push_str("event: ");
        out.push_str(&name);
        out.push_str("\ndata: ");
        out.push_str(&data.to_string());
        out.push_str("\n\n");
    };
    let pending = response_object(id, model, "in_progress", &[]);
    event(json!({"type": "response.created", "response": pending}));
    event(json!({"type": "response.in_progress", "response": pending}));
    for (i, item) in items.iter().enumerate() {
        let item_id = item.get("id").cloned().unwrap_or(Value::Null);
        let mut added = item.clone();
        if let Some(obj) = added.as_object_mut() {
            obj.insert("status".into(), json!("in_progress"));
        }
        match str_of(item, "type") {
            Some("message") => {
                let text = item
                    .get("content")
                    .and_then(|c| c.get(0))
                    .and_then(|p| str_of(p, "text"))
                    .unwrap_or_default();
                if let Some(obj) = added.as_object_mut() {
                    obj.insert("content".into(), json!([]));
                }
                event(
                    json!({"type": "response.output_item.added", "output_index": i, "item": added}),
                );
                let empty = json!({"type": "output_text", "text": "", "annotations": []});
                let full = json!({"type": "output_text", "text": text, "annotations": []});
                let at = |t: &str| json!({"type": t, "output_index": i, "item_id": item_id, "content_index": 0});
                let mut with = |mut v: Value, key: &str, val: Value| {
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert(key.into(), val);
                    }
                    event(v);
                };
                with(at("response.content_part.added"), "part", empty);
                with(at("response.output_text.delta"), "delta", json!(text));
                with(at("response.output_text.done"), "text", json!(text));
                with(at("response.content_part.done"), "part", full);
            }
            Some("function_call") => {
                let args = item.get("arguments").cloned().unwrap_or(json!(""));
                if let Some(obj) = added.as_object_mut() {
                    obj.insert("arguments".into(), json!(""));
                }
                event(
                    json!({"type": "response.output_item.added", "output_index": i, "item": added}),
                );
                event(
                    json!({"type": "response.function_call_arguments.delta", "output_index": i, "item_id": item_id, "delta": args}),
                );
                event(
                    json!({"type": "response.function_call_arguments.done", "output_index": i, "item_id": item_id, "arguments": args}),
                );
            }
            Some("custom_tool_call") => {
                let input = item.get("input").cloned().unwrap_or(json!(""));
                if let Some(obj) = added.as_object_mut() {
                    obj.insert("input".into(), json!(""));
                }
                event(
                    json!({"type": "response.output_item.added", "output_index": i, "item": added}),
                );
                event(
                    json!({"type": "response.custom_tool_call_input.delta", "output_index": i, "item_id": item_id, "delta": input}),
                );
                event(
                    json!({"type": "response.custom_tool_call_input.done", "output_index": i, "item_id": item_id, "input": input}),
                );
            }
            _ => {
                event(
                    json!({"type": "response.output_item.added", "output_index": i, "item": added}),
                );
            }
        }
        event(json!({"type": "response.output_item.done", "output_index": i, "item": item}));
    }
    let mut done = response_object(id, model, "completed", items);
    done.insert("usage".into(), usage.clone());
    event(json!({"type": "response.completed", "response": done}));
    out
}

/// The complete non-streaming response object.
pub fn response_json(id: &str, model: &str, items: &[Value], usage: &Value) -> Value {
    let mut obj = response_object(id, model, "completed", items);
    obj.insert("usage".into(), usage.clone());
    Value::Object(obj)
}

/// An OpenAI error response: `{"error":{"message","type","param","code"}}`.
pub fn error_response(status: u16, error_type: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body =
        json!({"error": {"message": message, "type": error_type, "param": null, "code": null}});
    json_response(status, &body)
}

/// Answer `POST /v1/responses` for the raw request body (SSE when
/// `"stream": true`, else one JSON response object).
pub fn responses(scenario: &Scenario, bytes: &[u8]) -> (Response, Served) {
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
    let tools = OfferedTools::from_request(&body);
    let (id, items) = match answer(selection, &tools, &cwd) {
        Answer::Error {
            status,
            error_type,
            message,
        } => return (error_response(status, &error_type, &message), served),
        Answer::Output { id, items } => (id, items),
    };
    let model = str_of(&body, "model").unwrap_or(FALLBACK_MODEL);
    let usage = usage(bytes.len(), &items);
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
            sse_body(&id, model, &items, &usage),
        )
            .into_response()
    } else {
        json_response(StatusCode::OK, &response_json(&id, model, &items, &usage))
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

    /// `input[]` shaped like codex-cli 0.169.0's (ids shortened).
    fn codex_input() -> Value {
        json!([
            {"type":"message","id":"msg_a","role":"developer","content":[{"type":"input_text","text":"You are a coding agent running in the Codex CLI"}]},
            {"type":"message","id":"msg_b","role":"user","content":[{"type":"input_text","text":"<environment_context>\n  <cwd>/tmp/ws</cwd>\n  <shell>bash</shell>\n</environment_context>"}]},
            {"type":"message","id":"msg_c","role":"user","content":[{"type":"input_text","text":"do it"}]},
            {"type":"reasoning","id":"rs_0","summary":[{"type":"summary_text","text":"plan"}],"content":null,"encrypted_content":null},
            {"type":"function_call","status":"completed","id":"fc_0","name":"exec_command","arguments":"{\"cmd\":\"ls\"}","call_id":"call_0"},
            {"type":"function_call_output","id":"fco_x","call_id":"call_0","output":"Process exited with code 0\nOutput:\n"},
            {"type":"custom_tool_call","id":"ctc_1","status":"completed","call_id":"call_1","name":"apply_patch","input":"*** Begin Patch\n*** End Patch"},
            {"type":"custom_tool_call_output","id":"ctco_x","call_id":"call_1","output":"Exit code: 0"},
            {"type":"message","status":"completed","id":"msg_2","role":"assistant","content":[{"type":"output_text","text":"ok","annotations":[]}]},
            {"type":"message","role":"user","content":[{"type":"input_text","text":"again"}]}
        ])
    }

    #[test]
    fn counts_tool_calls_and_assistant_messages_but_not_reasoning() {
        assert_eq!(assistant_turns(&json!({"input": codex_input()})), 3);
        assert_eq!(assistant_turns(&json!({"input": "just a string"})), 0);
        assert_eq!(assistant_turns(&json!({})), 0);
        assert_eq!(
            assistant_turns(&json!({"input": [{"role":"assistant","content":"x"}, 5, null]})),
            1
        );
    }

    #[test]
    fn finds_cwd_in_environment_context() {
        assert_eq!(
            find_cwd(&json!({"input": codex_input()})).as_deref(),
            Some("/tmp/ws")
        );
        // The latest environment context wins (a resumed thread in a new cwd).
        let mut input = codex_input();
        if let Some(items) = input.as_array_mut() {
            items.push(json!({"type":"message","role":"developer","content":[{"type":"input_text","text":"<environment_context><cwd>/w2</cwd></environment_context>"}]}));
        }
        assert_eq!(find_cwd(&json!({"input": input})).as_deref(), Some("/w2"));
        // Assistant text and relative paths do not count.
        let other = json!({"input": [
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"<cwd>/no</cwd>"}]},
            {"type":"message","role":"user","content":"<cwd>relative</cwd>"}
        ]});
        assert_eq!(find_cwd(&other), None);
        assert_eq!(find_cwd(&json!({"input": 3})), None);
    }

    #[test]
    fn shell_tool_follows_what_is_offered() {
        let offered = |tools: Value| OfferedTools::from_request(&json!({ "tools": tools }));
        let exec = offered(
            json!([{"type":"function","name":"exec_command"},{"type":"web_search"},{"type":"namespace","name":"multi_agent_v1"}]),
        );
        assert_eq!(exec.shell_call("ls"), ("exec_command", json!({"cmd":"ls"})));
        assert!(!exec.is_custom("apply_patch"));
        let argv = offered(
            json!([{"type":"function","name":"shell"},{"type":"custom","name":"apply_patch"}]),
        );
        assert_eq!(
            argv.shell_call("ls"),
            ("shell", json!({"command":["bash","-lc","ls"]}))
        );
        assert!(argv.is_custom("apply_patch"));
        let string = offered(json!([{"type":"function","function":{"name":"shell_command"}}]));
        assert_eq!(
            string.shell_call("ls"),
            ("shell_command", json!({"command":"ls"}))
        );
        assert_eq!(offered(json!("nonsense")), OfferedTools::default());
    }

    #[test]
    fn write_scripts_are_byte_exact() {
        assert_eq!(
            write_script("/w/a b/it's.txt", "x\ny\n"),
            "mkdir -p '/w/a b' && cat > '/w/a b/it'\\''s.txt' <<'ERRAND_EOF'\nx\ny\nERRAND_EOF"
        );
        assert_eq!(
            write_script("/w/n.txt", "no newline"),
            "mkdir -p '/w' && printf '%s' 'no newline' > '/w/n.txt'"
        );
        assert_eq!(write_script("/top", ""), ": > '/top'");
        assert_eq!(
            write_script("/w/d", "ERRAND_EOF\n"),
            "mkdir -p '/w' && cat > '/w/d' <<'ERRAND_EOF_1'\nERRAND_EOF\nERRAND_EOF_1"
        );
        assert_eq!(
            add_file_patch("/w/a.txt", "one\ntwo"),
            "*** Begin Patch\n*** Add File: /w/a.txt\n+one\n+two\n*** End Patch"
        );
        assert_eq!(
            add_file_patch("/w/e", ""),
            "*** Begin Patch\n*** Add File: /w/e\n+\n*** End Patch"
        );
    }

    #[test]
    fn neutral_steps_map_to_codex_tools() {
        let s = scenario(
            r#"{"steps":[{"shell":"ls -la"},{"read":"src/lib.rs"},{"write":{"path":"n.txt","content":"hi\n"}},
                {"tool":"update_plan","input":{"plan":[]}},{"text":"All good."},
                {"error":{"status":429,"message":"slow down","type":"rate_limit_error"}},
                {"error":{"status":500,"message":"boom"}},{"tool":"apply_patch","input":{"input":"*** Begin Patch\n*** End Patch"}}]}"#,
        );
        let exec = OfferedTools::default();
        let patch = OfferedTools {
            shell: ShellTool::ExecCommand,
            custom: vec!["apply_patch".into()],
        };
        let item =
            |k: usize, tools: &OfferedTools| match answer(s.select(true, k), tools, "/tmp/ws") {
                Answer::Output { id, items } => {
                    assert_eq!(id, format!("resp_{k}"));
                    assert_eq!(items.len(), 1);
                    items[0].clone()
                }
                other => panic!("step {k}: expected output, got {other:?}"),
            };
        assert_eq!(
            item(0, &exec),
            json!({"type":"function_call","id":"fc_0","call_id":"call_0","name":"exec_command",
                   "arguments":"{\"cmd\":\"ls -la\"}","status":"completed"})
        );
        assert_eq!(
            item(1, &exec)["arguments"],
            json!(r#"{"cmd":"cat '/tmp/ws/src/lib.rs'"}"#)
        );
        let args: Value = serde_json::from_str(item(2, &exec)["arguments"].as_str().unwrap_or(""))
            .unwrap_or(Value::Null);
        assert_eq!(
            args["cmd"],
            "mkdir -p '/tmp/ws' && cat > '/tmp/ws/n.txt' <<'ERRAND_EOF'\nhi\nERRAND_EOF"
        );
        assert_eq!(
            item(2, &patch),
            json!({"type":"custom_tool_call","id":"ctc_2","call_id":"call_2","name":"apply_patch",
                   "input":"*** Begin Patch\n*** Add File: /tmp/ws/n.txt\n+hi\n*** End Patch","status":"completed"})
        );
        assert_eq!(item(3, &exec)["name"], "update_plan");
        assert_eq!(item(3, &exec)["arguments"], r#"{"plan":[]}"#);
        assert_eq!(
            item(4, &exec),
            json!({"type":"message","id":"msg_4","role":"assistant","status":"completed",
                   "content":[{"type":"output_text","text":"All good.","annotations":[]}]})
        );
        assert_eq!(
            answer(s.select(true, 5), &exec, "/"),
            Answer::Error {
                status: 429,
                error_type: "rate_limit_error".into(),
                message: "slow down".into()
            }
        );
        assert_eq!(
            answer(s.select(true, 6), &exec, "/"),
            Answer::Error {
                status: 500,
                error_type: "server_error".into(),
                message: "boom".into()
            }
        );
        // A passed-through tool offered as custom becomes a custom_tool_call.
        assert_eq!(item(7, &patch)["type"], "custom_tool_call");
        assert_eq!(item(7, &patch)["input"], "*** Begin Patch\n*** End Patch");
        assert_eq!(item(7, &exec)["type"], "function_call");
        assert_eq!(item(8, &exec)["content"][0]["text"], "Done.");
        assert_eq!(
            answer(s.select(false, 1), &exec, "/"),
            text_output("side", SIDE_TEXT)
        );
    }

    #[test]
    fn usage_is_derived_from_sizes() {
        let items = vec![json!({"type":"message"})];
        // `[{"type":"message"}]` is 20 chars -> 20/4 + 1.
        assert_eq!(
            usage(4003, &items),
            json!({"input_tokens":1000,"input_tokens_details":{"cached_tokens":0},
                   "output_tokens":6,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":1006})
        );
    }

    #[test]
    fn malformed_bodies_are_rejected_not_panicked_on() {
        let s = Scenario::default();
        let (resp, served) = responses(&s, b"{not json");
        assert_eq!((resp.status().as_u16(), served), (400, Served::Rejected));
        let (resp, served) = responses(&s, b"[1,2]");
        assert_eq!((resp.status().as_u16(), served), (400, Served::Rejected));
        let (resp, served) = responses(&s, b"{}");
        assert_eq!((resp.status().as_u16(), served), (200, Served::Side));
        let (resp, served) = responses(&s, br#"{"tools":[{}],"input":[{"type":7},"x"]}"#);
        assert_eq!(
            (resp.status().as_u16(), served),
            (200, Served::Exhausted(0))
        );
    }
}

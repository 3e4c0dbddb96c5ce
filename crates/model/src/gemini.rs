//! The Gemini API (`generativelanguage` v1beta), as far as Gemini CLI needs it.
//!
//! Only this module knows the Gemini wire format: how to read a request
//! (model turns, offered function declarations, the agent's cwd), which
//! Gemini CLI tools the neutral steps map to, and how to write a
//! `GenerateContentResponse` as JSON or as server-sent events.
//!
//! Gemini CLI is pointed here with `GOOGLE_GEMINI_BASE_URL={server}` (plus
//! `GEMINI_API_KEY` and `security.auth.selectedType = "gemini-api-key"` in
//! its settings); it then sends
//! `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` with
//! `contents[]` (the whole conversation, roles `user` and `model`),
//! `systemInstruction`, `tools[].functionDeclarations[]` (each with a
//! `parametersJsonSchema`) and `generationConfig`. Side calls (the model
//! router with `-m auto`, the next-speaker and loop checks) use
//! `:generateContent` with `generationConfig.responseJsonSchema`. The shapes
//! below were checked against gemini-cli 0.61.0, which offers
//! `run_shell_command` `{command, description, dir_path, is_background,
//! delay_ms}`, `read_file` `{file_path, start_line, end_line}`, `write_file`
//! `{file_path, content}`, `replace`, `list_directory`, `glob`,
//! `grep_search`, `web_fetch`, `google_web_search`, `write_todos`, … (in
//! `--yolo` mode; without it the shell and write tools are not offered).
//!
//! **Step selection.** Step `k` = the number of `role: "model"` entries in
//! `contents` (every answer of this server is one model content). Requests
//! without function declarations are side calls (plain text, no step
//! consumed); requests asking for JSON (`responseJsonSchema`,
//! `responseSchema` or `responseMimeType: "application/json"`) get a value
//! filled from the schema ([`fill_schema`]), no step consumed either.
//!
//! **Neutral steps → Gemini CLI tools** (by what the request declares):
//!
//! | step | answer |
//! |---|---|
//! | `shell` | `functionCall` `run_shell_command` `{"command", "description": "scripted step"}` (`description` only when the schema declares it, or when the tool is not declared) |
//! | `read` | `read_file` `{"file_path": ABS}` (the name is taken from the schema: `file_path`, `absolute_path` or `path`); when only the shell tool is declared, `cat 'ABS'` through it |
//! | `write` | `write_file` `{"file_path": ABS, "content"}` (same naming rule); when only the shell tool is declared, the byte-exact script of [`crate::openai::write_script`] |
//! | `tool` | a `functionCall` with that name and the input as `args` |
//! | `text` | a `text` part |
//! | `error` | the HTTP status with `{"error":{"code","message","status"}}`, `status` being the Google RPC code for the HTTP status (`INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, …) unless the step names a `type` |
//!
//! Relative `read`/`write` paths are resolved against the cwd Gemini CLI
//! states in its `<session_context>` (the first entry under
//! `- **Workspace Directories:**`), else [`DEFAULT_CWD`].
//!
//! **Answers.** One `GenerateContentResponse`: `candidates[0]` with
//! `content {role: "model", parts}`, `finishReason: "STOP"`, `index: 0`;
//! `usageMetadata` (`promptTokenCount` = request bytes / 4,
//! `candidatesTokenCount` = serialized parts chars / 4 + 1,
//! `totalTokenCount`); `modelVersion` (the model from the path) and
//! `responseId` (`resp_{k}`, `resp_side`). `:streamGenerateContent?alt=sse`
//! sends it as one `data:` event; without `alt=sse`, as a JSON array of one
//! response. `:countTokens` answers `{"totalTokens": bytes / 4}`.

use crate::wire::json_response;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::functions::Functions;
use crate::log::Served;
use crate::scenario::{Scenario, Selection, Step, DEFAULT_CWD};

/// Gemini CLI's shell tool.
pub const SHELL_TOOL: &str = "run_shell_command";
/// Gemini CLI's file read tool.
pub const READ_TOOL: &str = "read_file";
/// Gemini CLI's whole-file write tool.
pub const WRITE_TOOL: &str = "write_file";
/// The `description` given to scripted shell calls.
pub const SHELL_DESCRIPTION: &str = crate::anthropic::SHELL_DESCRIPTION;
/// Parameter names tried, in order, for the file path of `read`/`write`.
const PATH_PARAMS: [&str; 3] = ["file_path", "absolute_path", "path"];
/// Gemini CLI's tools; shell calls are described even when the request names no tools.
const TOOLS: crate::functions::ToolNames = crate::functions::ToolNames {
    shell: SHELL_TOOL,
    read: READ_TOOL,
    write: WRITE_TOOL,
    path_params: &PATH_PARAMS,
    describe_undeclared_shell: true,
};
/// The heading under which Gemini CLI lists the workspace directories.
const WORKSPACE_HEADING: &str = "Workspace Directories:";
/// Older Gemini CLI wording of the cwd.
const OLD_CWD_PREFIX: &str = "I'm currently working in the directory:";

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn contents(body: &Value) -> &[Value] {
    body.get("contents")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Number of `role: "model"` entries in the request's `contents`.
pub fn model_turns(body: &Value) -> usize {
    contents(body)
        .iter()
        .filter(|c| str_of(c, "role") == Some("model"))
        .count()
}

/// Whether the request declares at least one function. Requests without
/// (including those offering only built-in tools such as `googleSearch`)
/// are side calls.
pub fn offers_tools(body: &Value) -> bool {
    !Functions::from_gemini_request(body).is_empty()
}

/// The response schema of a request that asks for JSON output: the
/// `generationConfig.responseJsonSchema` or `responseSchema`, or `{}` when
/// only `responseMimeType: "application/json"` is set. `None` for ordinary
/// requests.
pub fn json_schema(body: &Value) -> Option<Value> {
    let config = body.get("generationConfig")?;
    if let Some(schema) = config
        .get("responseJsonSchema")
        .or_else(|| config.get("responseSchema"))
        .filter(|s| !s.is_null())
    {
        return Some(schema.clone());
    }
    (str_of(config, "responseMimeType") == Some("application/json")).then(|| json!({}))
}

/// A value that satisfies `schema` (JSON Schema or Gemini's upper-case
/// `Schema`): the first `enum` value, objects with every declared property,
/// `minItems` filled items for arrays, numbers at their `minimum` (else 0),
/// `false`, and [`crate::anthropic::SIDE_TEXT`] for strings. `anyOf`/`oneOf`
/// take their first branch; a schema without a type is an object when it
/// has `properties`, else a string.
pub fn fill_schema(schema: &Value) -> Value {
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(first) = schema
            .get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            return fill_schema(first);
        }
    }
    let declared = match schema.get("type") {
        Some(Value::String(t)) => Some(t.to_ascii_lowercase()),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_ascii_lowercase)
            .find(|t| t != "null"),
        _ => None,
    };
    let kind = declared.unwrap_or_else(|| {
        if schema.get("properties").is_some() {
            "object".to_owned()
        } else {
            "string".to_owned()
        }
    });
    match kind.as_str() {
        "object" => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    out.insert(k.clone(), fill_schema(v));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let n = schema
                .get("minItems")
                .and_then(|n| match n {
                    Value::String(s) => s.parse::<u64>().ok(),
                    other => other.as_u64(),
                })
                .unwrap_or(0)
                .min(16);
            let item = schema.get("items").cloned().unwrap_or(json!({}));
            Value::Array((0..n).map(|_| fill_schema(&item)).collect())
        }
        "integer" => json!(schema
            .get("minimum")
            .and_then(Value::as_f64)
            .map_or(0, |m| m.ceil() as i64)),
        "number" => json!(schema.get("minimum").and_then(Value::as_f64).unwrap_or(0.0)),
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => json!(crate::anthropic::SIDE_TEXT),
    }
}

/// The agent's working directory as Gemini CLI states it: the first path
/// listed under `Workspace Directories:` in its `<session_context>` (a
/// `user` content or the system instruction), or the older
/// `I'm currently working in the directory: /abs` line.
pub fn find_cwd(body: &Value) -> Option<String> {
    let mut texts: Vec<&str> = Vec::new();
    match body.get("systemInstruction") {
        Some(Value::String(s)) => texts.push(s),
        Some(other) => texts.extend(part_texts(other)),
        None => {}
    }
    for c in contents(body) {
        if str_of(c, "role").is_none_or(|r| r == "user") {
            texts.extend(part_texts(c));
        }
    }
    texts.iter().find_map(|t| cwd_in_text(t))
}

/// The `text` of each of a content's `parts`.
fn part_texts(content: &Value) -> impl Iterator<Item = &str> {
    content
        .get("parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| str_of(p, "text"))
}

fn cwd_in_text(text: &str) -> Option<String> {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.contains(WORKSPACE_HEADING) {
            let listed = lines
                .next()?
                .trim_start()
                .strip_prefix('-')?
                .trim()
                .to_owned();
            return listed.starts_with('/').then_some(listed);
        }
        if let Some(rest) = line.trim_start().strip_prefix(OLD_CWD_PREFIX) {
            let rest = rest.trim().trim_end_matches('.');
            if rest.starts_with('/') {
                return Some(rest.to_owned());
            }
        }
    }
    None
}

/// The Google RPC status name for an HTTP error status.
pub fn rpc_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if (400..500).contains(&s) => "FAILED_PRECONDITION",
        _ => "UNKNOWN",
    }
}

/// What the server answers a Gemini request with.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// One model content.
    Content {
        /// `responseId` (`resp_{k}`, or `resp_side` for side calls).
        id: String,
        /// The content's parts (`text` or `functionCall`), as wire JSON.
        parts: Vec<Value>,
    },
    /// An HTTP error with a Google error body.
    Error {
        /// HTTP status.
        status: u16,
        /// Google RPC status, e.g. `INVALID_ARGUMENT`.
        rpc_status: String,
        /// Error message.
        message: String,
    },
}

/// Turn a step selection into an answer. `tools` are what the request
/// declares; `cwd` resolves relative paths of `read`/`write` steps.
pub fn answer(selection: Selection<'_>, tools: &Functions, cwd: &str) -> Answer {
    let (index, step) = match selection {
        Selection::Side => return text_content("side", crate::anthropic::SIDE_TEXT),
        Selection::Exhausted { index } => {
            return text_content(&index.to_string(), crate::anthropic::DONE_TEXT)
        }
        Selection::Step { index, step } => (index, step),
    };
    let call = |name: &str, args: Value| Answer::Content {
        id: format!("resp_{index}"),
        parts: vec![json!({"functionCall": {"name": name, "args": args}})],
    };
    match step {
        Step::Text { text } => text_content(&index.to_string(), text),
        Step::Error {
            status,
            message,
            error_type,
        } => Answer::Error {
            status: *status,
            rpc_status: error_type
                .clone()
                .unwrap_or_else(|| rpc_status(*status).to_string()),
            message: message.clone(),
        },
        // Shell, read, write and tool steps: a function call in the request's tools.
        _ => match crate::functions::call_for(step, tools, &TOOLS, cwd) {
            Some((name, args)) => call(&name, args),
            None => text_content(&index.to_string(), crate::anthropic::DONE_TEXT),
        },
    }
}

fn text_content(suffix: &str, text: &str) -> Answer {
    Answer::Content {
        id: format!("resp_{suffix}"),
        parts: vec![json!({ "text": text })],
    }
}

/// Deterministic `usageMetadata` for a request of `request_bytes` answered with `parts`.
pub fn usage(request_bytes: usize, parts: &[Value]) -> Value {
    let prompt = request_bytes / 4;
    let candidates = Value::Array(parts.to_vec()).to_string().chars().count() / 4 + 1;
    json!({
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates,
    })
}

/// One complete `GenerateContentResponse`.
pub fn response_json(id: &str, model: &str, parts: &[Value], usage: &Value) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts},
            "finishReason": "STOP",
            "index": 0,
        }],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": id,
    })
}

/// A Google API error response: `{"error":{"code","message","status"}}`.
pub fn error_response(status: u16, rpc_status: &str, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {"code": code.as_u16(), "message": message, "status": rpc_status}});
    json_response(code, &body)
}

/// The methods of `POST /v1beta/models/{model}:{method}` this server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `:generateContent`: one JSON response.
    Generate,
    /// `:streamGenerateContent`: SSE with `alt=sse`, else a JSON array.
    Stream,
    /// `:countTokens`.
    CountTokens,
}

/// Split the last path segment `MODEL:METHOD` (e.g.
/// `gemini-2.5-pro:streamGenerateContent`); `None` for an unknown method.
pub fn parse_target(target: &str) -> Option<(&str, Method)> {
    let (model, method) = target.rsplit_once(':')?;
    let method = match method {
        "generateContent" => Method::Generate,
        "streamGenerateContent" => Method::Stream,
        "countTokens" => Method::CountTokens,
        _ => return None,
    };
    Some((model, method))
}

fn bad_request(message: &str) -> (Response, Served) {
    (
        error_response(400, "INVALID_ARGUMENT", message),
        Served::Rejected,
    )
}

/// Answer `POST /v1beta/models/{target}` (`target` = `MODEL:METHOD`) for
/// the raw request body; `query` is the URI query (`alt=sse`).
pub fn models(
    scenario: &Scenario,
    target: &str,
    query: Option<&str>,
    bytes: &[u8],
) -> (Response, Served) {
    let Some((model, method)) = parse_target(target) else {
        let message = format!("no such method: models/{target}");
        return (error_response(404, "NOT_FOUND", &message), Served::NotFound);
    };
    if method == Method::CountTokens {
        let body = json!({"totalTokens": bytes.len() / 4});
        return (json_response(StatusCode::OK, &body), Served::CountTokens);
    }
    let body = match crate::wire::parse_object(bytes) {
        Ok(v) => v,
        Err(msg) => return bad_request(&msg),
    };
    let (id, parts, served) = match json_schema(&body) {
        Some(schema) => (
            "resp_side".to_owned(),
            vec![json!({"text": fill_schema(&schema).to_string()})],
            Served::Side,
        ),
        None => {
            let selection = scenario.select(offers_tools(&body), model_turns(&body));
            let served = Served::from(&selection);
            let cwd = find_cwd(&body).unwrap_or_else(|| DEFAULT_CWD.to_string());
            let tools = Functions::from_gemini_request(&body);
            match answer(selection, &tools, &cwd) {
                Answer::Error {
                    status,
                    rpc_status,
                    message,
                } => return (error_response(status, &rpc_status, &message), served),
                Answer::Content { id, parts } => (id, parts, served),
            }
        }
    };
    let model = if model.is_empty() {
        crate::anthropic::FALLBACK_MODEL
    } else {
        model
    };
    let response = response_json(&id, model, &parts, &usage(bytes.len(), &parts));
    let sse = query.is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
    let http = match method {
        Method::Stream if sse => (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            format!("data: {response}\n\n"),
        )
            .into_response(),
        Method::Stream => json_response(StatusCode::OK, &json!([response])),
        _ => json_response(StatusCode::OK, &response),
    };
    (http, served)
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

    /// Function declarations as gemini-cli 0.61.0 sends them (shortened).
    fn gemini_tools() -> Functions {
        Functions::from_gemini_request(&json!({"tools": [{"functionDeclarations": [
            {"name": "read_file", "parametersJsonSchema": {"type": "object", "properties": {
                "file_path": {"type": "string"}, "start_line": {"type": "integer"}, "end_line": {"type": "integer"}}, "required": ["file_path"]}},
            {"name": "write_file", "parametersJsonSchema": {"type": "object", "properties": {
                "file_path": {"type": "string"}, "content": {"type": "string"}}, "required": ["file_path", "content"]}},
            {"name": "run_shell_command", "parametersJsonSchema": {"type": "object", "properties": {
                "command": {"type": "string"}, "description": {"type": "string"}, "dir_path": {"type": "string"}}, "required": ["command"]}}
        ]}]}))
    }

    #[test]
    fn counts_model_contents() {
        let body = json!({"contents": [
            {"role": "user", "parts": [{"text": "do it"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "x", "args": {}}, "thoughtSignature": "s"}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "x", "response": {}}}]},
            {"role": "model", "parts": [{"text": "ok"}]},
            {"parts": []}, 3
        ]});
        assert_eq!(model_turns(&body), 2);
        assert_eq!(model_turns(&json!({"contents": "x"})), 0);
    }

    #[test]
    fn finds_cwd_in_session_context() {
        // Wording of gemini-cli 0.61.0, copied from a logged request.
        let body = json!({"contents": [{"role": "user", "parts": [
            {"text": "<session_context>\nThis is the Gemini CLI. We are setting up the context for our chat.\nMy operating system is: linux\nThe project's temporary directory is: /h/.gemini/tmp/ws\n- **Workspace Directories:**\n  - /tmp/ws dir\n- **Directory Structure:**\n\n/tmp/ws dir/\n\n</session_context>"},
            {"text": "do it"}
        ]}]});
        assert_eq!(find_cwd(&body).as_deref(), Some("/tmp/ws dir"));
        let old = json!({"systemInstruction": {"parts": [{"text": "I'm currently working in the directory: /w/old"}]}});
        assert_eq!(find_cwd(&old).as_deref(), Some("/w/old"));
        let model_said = json!({"contents": [{"role": "model", "parts": [{"text": "Workspace Directories:\n - /no"}]}]});
        assert_eq!(find_cwd(&model_said), None);
        let relative =
            json!({"contents": [{"parts": [{"text": "Workspace Directories:\n - rel"}]}]});
        assert_eq!(find_cwd(&relative), None);
        assert_eq!(find_cwd(&json!({"systemInstruction": 3})), None);
    }

    #[test]
    fn neutral_steps_map_to_gemini_cli_tools() {
        let s = scenario(
            r#"{"steps":[{"shell":"ls -la"},{"read":"src/lib.rs"},{"write":{"path":"n.txt","content":"hi\n"}},
                {"tool":"replace","input":{"file_path":"/a","old_string":"a","new_string":"b"}},{"text":"All good."},
                {"error":{"status":429,"message":"slow down"}},{"error":{"status":400,"message":"no","type":"FAILED_PRECONDITION"}}]}"#,
        );
        let tools = gemini_tools();
        let call = |k: usize, tools: &Functions| match answer(s.select(true, k), tools, "/tmp/ws") {
            Answer::Content { id, parts } => {
                assert_eq!(id, format!("resp_{k}"));
                assert_eq!(parts.len(), 1);
                parts[0]["functionCall"].clone()
            }
            other => panic!("step {k}: expected content, got {other:?}"),
        };
        assert_eq!(
            call(0, &tools),
            json!({"name": "run_shell_command", "args": {"command": "ls -la", "description": "scripted step"}})
        );
        assert_eq!(
            call(1, &tools),
            json!({"name": "read_file", "args": {"file_path": "/tmp/ws/src/lib.rs"}})
        );
        assert_eq!(
            call(2, &tools),
            json!({"name": "write_file", "args": {"file_path": "/tmp/ws/n.txt", "content": "hi\n"}})
        );
        assert_eq!(call(3, &tools)["name"], "replace");
        assert_eq!(
            answer(s.select(true, 4), &tools, "/"),
            text_content("4", "All good.")
        );
        assert_eq!(
            answer(s.select(true, 5), &tools, "/"),
            Answer::Error {
                status: 429,
                rpc_status: "RESOURCE_EXHAUSTED".into(),
                message: "slow down".into()
            }
        );
        assert!(matches!(
            answer(s.select(true, 6), &tools, "/"),
            Answer::Error { ref rpc_status, .. } if rpc_status == "FAILED_PRECONDITION"
        ));
        assert_eq!(
            answer(s.select(true, 7), &tools, "/"),
            text_content("7", "Done.")
        );

        // An older read_file schema; a shell tool without `description`;
        // only the shell declared: reads and writes go through it.
        let old = Functions::from_gemini_request(&json!({"tools": [{"functionDeclarations": [
            {"name": "read_file", "parameters": {"properties": {"absolute_path": {}}}},
            {"name": "run_shell_command", "parameters": {"properties": {"command": {}}}}
        ]}]}));
        assert_eq!(
            call(1, &old)["args"],
            json!({"absolute_path": "/tmp/ws/src/lib.rs"})
        );
        assert_eq!(call(0, &old)["args"], json!({"command": "ls -la"}));
        assert_eq!(
            call(2, &old)["args"]["command"],
            "mkdir -p '/tmp/ws' && cat > '/tmp/ws/n.txt' <<'ERRAND_EOF'\nhi\nERRAND_EOF"
        );
    }

    #[test]
    fn schemas_are_filled_generically() {
        // The router's schema as gemini-cli 0.61.0 sends it (upper-case types).
        let router = json!({"type": "OBJECT", "properties": {
            "complexity_reasoning": {"type": "STRING"},
            "complexity_score": {"type": "INTEGER", "minimum": 1}},
            "required": ["complexity_reasoning", "complexity_score"]});
        assert_eq!(
            fill_schema(&router),
            json!({"complexity_reasoning": "Scripted reply.", "complexity_score": 1})
        );
        let next_speaker = json!({"type": "object", "properties": {
            "reasoning": {"type": "string"}, "next_speaker": {"type": "string", "enum": ["user", "model"]}}});
        assert_eq!(fill_schema(&next_speaker)["next_speaker"], "user");
        assert_eq!(
            fill_schema(&json!({"type": "array", "minItems": 2, "items": {"type": "boolean"}})),
            json!([false, false])
        );
        assert_eq!(
            fill_schema(&json!({"type": ["null", "number"]})),
            json!(0.0)
        );
        assert_eq!(
            fill_schema(&json!({"anyOf": [{"type": "integer"}, {"type": "string"}]})),
            json!(0)
        );
        assert_eq!(fill_schema(&json!({"properties": {}})), json!({}));
        assert_eq!(fill_schema(&json!(5)), json!("Scripted reply."));
        assert_eq!(
            json_schema(&json!({"generationConfig": {"responseMimeType": "application/json"}})),
            Some(json!({}))
        );
        assert_eq!(
            json_schema(&json!({"generationConfig": {"temperature": 1}})),
            None
        );
    }

    #[test]
    fn targets_and_status_names() {
        assert_eq!(
            parse_target("gemini-2.5-pro:streamGenerateContent"),
            Some(("gemini-2.5-pro", Method::Stream))
        );
        assert_eq!(
            parse_target("m:generateContent"),
            Some(("m", Method::Generate))
        );
        assert_eq!(
            parse_target("m:countTokens"),
            Some(("m", Method::CountTokens))
        );
        assert_eq!(parse_target("m:embedContent"), None);
        assert_eq!(parse_target("gemini-2.5-pro"), None);
        assert_eq!(rpc_status(400), "INVALID_ARGUMENT");
        assert_eq!(rpc_status(418), "FAILED_PRECONDITION");
        assert_eq!(rpc_status(502), "UNKNOWN");
    }

    #[test]
    fn malformed_bodies_are_rejected_not_panicked_on() {
        let s = Scenario::default();
        let t = "m:generateContent";
        let (resp, served) = models(&s, t, None, b"{not json");
        assert_eq!((resp.status().as_u16(), served), (400, Served::Rejected));
        let (resp, served) = models(&s, t, None, b"[]");
        assert_eq!((resp.status().as_u16(), served), (400, Served::Rejected));
        let (resp, served) = models(&s, t, None, b"{}");
        assert_eq!((resp.status().as_u16(), served), (200, Served::Side));
        let (resp, served) = models(&s, "m:nope", None, b"{}");
        assert_eq!((resp.status().as_u16(), served), (404, Served::NotFound));
        let (resp, served) = models(&s, "m:countTokens", None, b"garbage!");
        assert_eq!((resp.status().as_u16(), served), (200, Served::CountTokens));
        let (resp, served) = models(
            &s,
            t,
            Some("alt=sse"),
            br#"{"tools":[{"functionDeclarations":[{"name":"x"}]}],"contents":[7,{"role":[]}],"generationConfig":{"responseSchema":null}}"#,
        );
        assert_eq!(
            (resp.status().as_u16(), served),
            (200, Served::Exhausted(0))
        );
    }
}

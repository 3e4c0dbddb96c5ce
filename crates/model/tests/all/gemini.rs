//! Wire-level tests of the Gemini endpoint: a real server on port 0, real
//! HTTP requests with reqwest. Request bodies are shaped like gemini-cli
//! 0.61.0's (harnesses.md §3.1 and logged requests).

use std::net::SocketAddr;

use errand_model::{Scenario, ScriptedModel, Served};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SCENARIO: &str = r#"{"steps":[
    {"shell":"grep -n foo src/lib.rs"},
    {"write":{"path":"notes/todo.txt","content":"hi\n"}},
    {"read":"notes/todo.txt"},
    {"text":"All done."},
    {"error":{"status":400,"message":"scripted bad request"}}
]}"#;

async fn start(json: &str) -> Result<ScriptedModel, Box<dyn std::error::Error>> {
    let scenario = Scenario::from_json(json)?;
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    Ok(ScriptedModel::start(scenario, listen).await?)
}

/// Gemini CLI's function declarations (shortened, as 0.61.0 sends them).
fn gemini_tools() -> Value {
    let f = |name: &str, props: Value| json!({"name": name, "description": "…", "parametersJsonSchema": {"type": "object", "properties": props}});
    json!([{"functionDeclarations": [
        f("read_file", json!({"file_path": {"type": "string"}, "start_line": {"type": "integer"}})),
        f("write_file", json!({"file_path": {"type": "string"}, "content": {"type": "string"}})),
        f("run_shell_command", json!({"command": {"type": "string"}, "description": {"type": "string"}, "dir_path": {"type": "string"}}))
    ]}])
}

/// A request body shaped like Gemini CLI's, with `turns` completed
/// function-call round trips.
fn gemini_body(turns: usize) -> Value {
    let mut contents = vec![json!({"role": "user", "parts": [
        {"text": "<session_context>\nThis is the Gemini CLI. We are setting up the context for our chat.\nMy operating system is: linux\n- **Workspace Directories:**\n  - /tmp/proj\n- **Directory Structure:**\n\n/tmp/proj/\n\n</session_context>"},
        {"text": "do it"}
    ]})];
    for k in 0..turns {
        contents.push(json!({"role": "model", "parts": [{"functionCall": {"name": "run_shell_command", "args": {"command": "x"}}, "thoughtSignature": format!("sig{k}")}]}));
        contents.push(json!({"role": "user", "parts": [{"functionResponse": {"id": format!("c{k}"), "name": "run_shell_command", "response": {"output": "ok"}}}]}));
    }
    json!({
        "contents": contents,
        "systemInstruction": {"parts": [{"text": "You are Gemini CLI, an autonomous CLI agent."}]},
        "tools": gemini_tools(),
        "generationConfig": {"temperature": 1, "topP": 0.95, "topK": 64,
            "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 8192}}
    })
}

async fn post(url: &str, body: &Value) -> Result<(u16, String, usize), Box<dyn std::error::Error>> {
    let bytes = serde_json::to_vec(body)?;
    let len = bytes.len();
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-goog-api-key", "sk-test")
        .body(bytes)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?, len))
}

fn stream_url(model: &ScriptedModel) -> String {
    format!(
        "{}/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
        model.base_url()
    )
}

/// The one `data:` event of an SSE body.
fn sse_response(body: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let frames: Vec<&str> = body
        .split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .collect();
    match frames.as_slice() {
        [frame] => {
            let data = frame
                .strip_prefix("data: ")
                .ok_or_else(|| format!("unexpected SSE frame {frame:?}"))?;
            Ok(serde_json::from_str(data)?)
        }
        other => Err(format!("expected one SSE event, got {other:?}").into()),
    }
}

fn first_part(response: &Value) -> &Value {
    &response["candidates"][0]["content"]["parts"][0]
}

#[tokio::test]
async fn shell_step_is_one_sse_response_with_a_function_call() -> TestResult {
    let model = start(SCENARIO).await?;
    let (status, body, len) = post(&stream_url(&model), &gemini_body(0)).await?;
    assert_eq!(status, 200, "{body}");
    let resp = sse_response(&body)?;
    let candidate = &resp["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(
        first_part(&resp),
        &json!({"functionCall": {"name": "run_shell_command",
            "args": {"command": "grep -n foo src/lib.rs", "description": "scripted step"}}})
    );
    let usage = &resp["usageMetadata"];
    assert_eq!(usage["promptTokenCount"], json!(len / 4));
    let candidates = usage["candidatesTokenCount"].as_u64().unwrap_or(0);
    assert!(candidates > 0, "{usage}");
    assert_eq!(usage["totalTokenCount"], json!(len as u64 / 4 + candidates));
    assert_eq!(resp["modelVersion"], "gemini-2.5-pro");
    assert_eq!(resp["responseId"], "resp_0");
    let log = model.requests();
    assert_eq!(
        (log[0].path.as_str(), log[0].served),
        (
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
            Served::Step(0)
        )
    );
    Ok(())
}

#[tokio::test]
async fn file_steps_use_gemini_cli_tools_with_the_workspace_cwd() -> TestResult {
    let model = start(SCENARIO).await?;
    let (_, body, _) = post(&stream_url(&model), &gemini_body(1)).await?;
    assert_eq!(
        first_part(&sse_response(&body)?),
        &json!({"functionCall": {"name": "write_file",
            "args": {"file_path": "/tmp/proj/notes/todo.txt", "content": "hi\n"}}})
    );
    let (_, body, _) = post(&stream_url(&model), &gemini_body(2)).await?;
    assert_eq!(
        first_part(&sse_response(&body)?),
        &json!({"functionCall": {"name": "read_file", "args": {"file_path": "/tmp/proj/notes/todo.txt"}}})
    );
    // Without a session context, /workspace is assumed.
    let mut no_cwd = gemini_body(1);
    no_cwd["contents"][0]["parts"] = json!([{"text": "do it"}]);
    let (_, body, _) = post(&stream_url(&model), &no_cwd).await?;
    assert_eq!(
        first_part(&sse_response(&body)?)["functionCall"]["args"]["file_path"],
        "/workspace/notes/todo.txt"
    );
    Ok(())
}

#[tokio::test]
async fn text_and_past_the_end() -> TestResult {
    let model = start(SCENARIO).await?;
    let (_, body, _) = post(&stream_url(&model), &gemini_body(3)).await?;
    assert_eq!(
        first_part(&sse_response(&body)?),
        &json!({"text": "All done."})
    );
    let (_, body, _) = post(&stream_url(&model), &gemini_body(7)).await?;
    assert_eq!(first_part(&sse_response(&body)?), &json!({"text": "Done."}));
    assert_eq!(model.requests()[1].served, Served::Exhausted(7));
    Ok(())
}

#[tokio::test]
async fn generate_content_and_a_stream_without_sse_are_json() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!(
        "{}/v1beta/models/gemini-2.5-pro:generateContent",
        model.base_url()
    );
    let (status, body, _) = post(&url, &gemini_body(0)).await?;
    assert_eq!(status, 200, "{body}");
    let resp: Value = serde_json::from_str(&body)?;
    assert_eq!(
        first_part(&resp)["functionCall"]["name"],
        "run_shell_command"
    );
    let url = format!(
        "{}/v1beta/models/gemini-2.5-pro:streamGenerateContent",
        model.base_url()
    );
    let (_, body, _) = post(&url, &gemini_body(0)).await?;
    let array: Value = serde_json::from_str(&body)?;
    assert_eq!(
        first_part(&array[0])["functionCall"]["name"],
        "run_shell_command"
    );
    Ok(())
}

#[tokio::test]
async fn side_calls_consume_no_step() -> TestResult {
    let model = start(SCENARIO).await?;
    // The router's side call (model `auto`), as gemini-cli 0.61.0 sends it.
    let router = json!({
        "contents": [{"role": "user", "parts": [{"text": "do it"}]}],
        "systemInstruction": {"parts": [{"text": "You are a specialized Task Routing AI."}]},
        "generationConfig": {"temperature": 1, "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "OBJECT", "properties": {
                "complexity_reasoning": {"type": "STRING", "description": "Brief explanation for the score."},
                "complexity_score": {"type": "INTEGER", "description": "Complexity score from 1-100."}},
                "required": ["complexity_reasoning", "complexity_score"]}}
    });
    let url = format!(
        "{}/v1beta/models/gemini-3.5-flash-lite:generateContent",
        model.base_url()
    );
    let (status, body, _) = post(&url, &router).await?;
    assert_eq!(status, 200, "{body}");
    let resp: Value = serde_json::from_str(&body)?;
    let filled: Value = serde_json::from_str(first_part(&resp)["text"].as_str().unwrap_or(""))?;
    assert_eq!(
        filled,
        json!({"complexity_reasoning": "Scripted reply.", "complexity_score": 0})
    );
    // A JSON side call that also declares tools is still a side call.
    let mut with_tools = gemini_body(0);
    with_tools["generationConfig"]["responseJsonSchema"] = json!({"type": "object", "properties": {"next_speaker": {"type": "string", "enum": ["user", "model"]}}});
    let (_, body, _) = post(&url, &with_tools).await?;
    let resp: Value = serde_json::from_str(&body)?;
    assert_eq!(first_part(&resp)["text"], r#"{"next_speaker":"user"}"#);
    // No function declarations (e.g. web search through googleSearch): plain text.
    let mut search = gemini_body(0);
    search["tools"] = json!([{"googleSearch": {}}]);
    let (_, body, _) = post(&url, &search).await?;
    let resp: Value = serde_json::from_str(&body)?;
    assert_eq!(first_part(&resp)["text"], "Scripted reply.");
    // The real turn still gets step 0.
    let (_, body, _) = post(&stream_url(&model), &gemini_body(0)).await?;
    assert_eq!(
        first_part(&sse_response(&body)?)["functionCall"]["name"],
        "run_shell_command"
    );
    let served: Vec<Served> = model.requests().iter().map(|r| r.served).collect();
    assert_eq!(
        served,
        [Served::Side, Served::Side, Served::Side, Served::Step(0)]
    );
    Ok(())
}

#[tokio::test]
async fn errors_count_tokens_and_unknown_methods() -> TestResult {
    let model = start(SCENARIO).await?;
    let (status, body, _) = post(&stream_url(&model), &gemini_body(4)).await?;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?,
        json!({"error": {"code": 400, "message": "scripted bad request", "status": "INVALID_ARGUMENT"}})
    );
    let base = model.base_url();
    let (status, body, len) = post(
        &format!("{base}/v1beta/models/gemini-2.5-pro:countTokens"),
        &gemini_body(0),
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?,
        json!({"totalTokens": len / 4})
    );
    let (status, body, _) = post(
        &format!("{base}/v1beta/models/gemini-2.5-pro:embedContent"),
        &gemini_body(0),
    )
    .await?;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?["error"]["status"],
        "NOT_FOUND"
    );
    let resp = reqwest::Client::new()
        .post(stream_url(&model))
        .body("{\"contents\": [")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 400);
    let served: Vec<Served> = model.requests().iter().map(|r| r.served).collect();
    assert_eq!(
        served,
        [
            Served::Step(4),
            Served::CountTokens,
            Served::NotFound,
            Served::Rejected
        ]
    );
    Ok(())
}

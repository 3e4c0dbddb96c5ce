//! Wire-level tests of the OpenAI Chat Completions endpoint: a real server
//! on port 0, real HTTP requests with reqwest, SSE parsed back into chunks.
//! Request bodies are shaped like opencode 1.18.33's (harnesses.md §3.2 and
//! logged requests).

use std::net::SocketAddr;

use errand_model::{Scenario, ScriptedModel, Served};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SCENARIO: &str = r#"{"steps":[
    {"shell":"grep -n foo src/lib.rs"},
    {"write":{"path":"notes/todo.txt","content":"hi\n"}},
    {"text":"All done."},
    {"error":{"status":400,"message":"scripted bad request"}}
]}"#;

async fn start(json: &str) -> Result<ScriptedModel, Box<dyn std::error::Error>> {
    let scenario = Scenario::from_json(json)?;
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    Ok(ScriptedModel::start(scenario, listen).await?)
}

/// OpenCode's tools (descriptions shortened, parameters as 1.18.33 sends them).
fn opencode_tools() -> Value {
    let f = |name: &str, props: Value, required: Value| {
        json!({"type":"function","function":{"name":name,"description":"…","parameters":{
            "$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
            "properties":props,"required":required}}})
    };
    json!([
        f(
            "bash",
            json!({"command":{"type":"string"},"timeout":{"type":"integer"},"workdir":{"type":"string"}}),
            json!(["command"])
        ),
        f(
            "edit",
            json!({"filePath":{"type":"string"},"oldString":{"type":"string"},"newString":{"type":"string"}}),
            json!(["filePath", "oldString", "newString"])
        ),
        f(
            "read",
            json!({"filePath":{"type":"string"},"offset":{"type":"integer"},"limit":{"type":"integer"}}),
            json!(["filePath"])
        ),
        f(
            "write",
            json!({"content":{"type":"string"},"filePath":{"type":"string"}}),
            json!(["content", "filePath"])
        )
    ])
}

/// A request body shaped like OpenCode's, with `turns` completed tool-call
/// round trips.
fn opencode_body(turns: usize, tools: Option<Value>) -> Value {
    let mut messages = vec![
        json!({"role":"system","content":"You are opencode, an interactive CLI tool.\n<env>\n  Working directory: /tmp/proj\n  Is directory a git repo: no\n  Platform: linux\n</env>"}),
        json!({"role":"user","content":"do it"}),
    ];
    for k in 0..turns {
        messages.push(json!({"role":"assistant","content":"","tool_calls":[{"id":format!("call_{k}"),"type":"function",
            "function":{"name":"bash","arguments":"{\"command\":\"x\"}"}}]}));
        messages.push(json!({"role":"tool","tool_call_id":format!("call_{k}"),"content":"ok\n"}));
    }
    let mut body = json!({
        "model": "mock-model",
        "max_tokens": 32000,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    if let Some(tools) = tools {
        body["tools"] = tools;
        body["tool_choice"] = json!("auto");
    }
    body
}

async fn post(url: &str, body: &Value) -> Result<(u16, String, usize), Box<dyn std::error::Error>> {
    let bytes = serde_json::to_vec(body)?;
    let len = bytes.len();
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test")
        .body(bytes)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?, len))
}

/// Parse an SSE body into its `data:` chunks; checks it ends with `[DONE]`.
fn parse_sse(body: &str) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let frames: Vec<&str> = body
        .split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .collect();
    let Some((last, chunks)) = frames.split_last() else {
        return Err("empty SSE body".into());
    };
    if *last != "data: [DONE]" {
        return Err(format!("SSE body does not end with [DONE]: {last:?}").into());
    }
    chunks
        .iter()
        .map(|f| {
            let data = f
                .strip_prefix("data: ")
                .ok_or_else(|| format!("unexpected SSE frame {f:?}"))?;
            Ok(serde_json::from_str::<Value>(data)?)
        })
        .collect()
}

/// The arguments of the one tool call the chunks stream, joined.
fn streamed_call(chunks: &[Value]) -> Result<(String, Value), Box<dyn std::error::Error>> {
    let mut name = String::new();
    let mut args = String::new();
    for c in chunks {
        for call in c["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            name.push_str(call["function"]["name"].as_str().unwrap_or_default());
            args.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
    }
    Ok((name, serde_json::from_str(&args)?))
}

#[tokio::test]
async fn tool_call_is_streamed_as_chunks_with_usage_and_done() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/chat/completions", model.openai_base_url());
    let (status, body, len) = post(&url, &opencode_body(0, Some(opencode_tools()))).await?;
    assert_eq!(status, 200, "{body}");
    let chunks = parse_sse(&body)?;
    assert_eq!(chunks.len(), 5, "{body}");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "chatcmpl-0"));
    assert_eq!(chunks[0]["model"], "mock-model");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let first = &chunks[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(
        (
            first["index"].clone(),
            first["id"].clone(),
            first["type"].clone()
        ),
        (json!(0), json!("call_0"), json!("function"))
    );
    assert_eq!(
        streamed_call(&chunks)?,
        ("bash".into(), json!({"command": "grep -n foo src/lib.rs"}))
    );
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks[4]["choices"], json!([]));
    let usage = &chunks[4]["usage"];
    assert_eq!(usage["prompt_tokens"], json!(len / 4));
    let completion = usage["completion_tokens"].as_u64().unwrap_or(0);
    assert!(completion > 0, "{usage}");
    assert_eq!(usage["total_tokens"], json!(len as u64 / 4 + completion));
    Ok(())
}

#[tokio::test]
async fn write_uses_opencodes_write_tool_with_the_cwd() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/chat/completions", model.openai_base_url());
    let (_, body, _) = post(&url, &opencode_body(1, Some(opencode_tools()))).await?;
    assert_eq!(
        streamed_call(&parse_sse(&body)?)?,
        (
            "write".into(),
            json!({"filePath": "/tmp/proj/notes/todo.txt", "content": "hi\n"})
        )
    );
    // Without a working directory in the prompt, /workspace is assumed.
    let mut no_cwd = opencode_body(1, Some(opencode_tools()));
    no_cwd["messages"][0]["content"] = json!("You are opencode.");
    let (_, body, _) = post(&url, &no_cwd).await?;
    assert_eq!(
        streamed_call(&parse_sse(&body)?)?.1["filePath"],
        "/workspace/notes/todo.txt"
    );
    assert_eq!(model.requests()[1].served, Served::Step(1));
    Ok(())
}

#[tokio::test]
async fn text_is_streamed_as_content_and_past_the_end_is_done() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/chat/completions", model.openai_base_url());
    let (_, body, _) = post(&url, &opencode_body(2, Some(opencode_tools()))).await?;
    let chunks = parse_sse(&body)?;
    assert_eq!(
        chunks[1]["choices"][0]["delta"],
        json!({"content": "All done."})
    );
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");

    // Without include_usage there is no usage chunk.
    let mut body = opencode_body(5, Some(opencode_tools()));
    body["stream_options"] = json!({});
    let (_, text, _) = post(&url, &body).await?;
    let chunks = parse_sse(&text)?;
    assert_eq!(chunks.len(), 3, "{text}");
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Done.");
    assert_eq!(model.requests()[1].served, Served::Exhausted(5));
    Ok(())
}

#[tokio::test]
async fn non_streaming_completion_is_one_json_object() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/chat/completions", model.openai_base_url());
    let mut body = opencode_body(0, Some(opencode_tools()));
    body["stream"] = json!(false);
    let (status, text, len) = post(&url, &body).await?;
    assert_eq!(status, 200, "{text}");
    let resp: Value = serde_json::from_str(&text)?;
    assert_eq!(resp["object"], "chat.completion");
    assert_eq!(resp["id"], "chatcmpl-0");
    let choice = &resp["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["name"],
        "bash"
    );
    assert_eq!(resp["usage"]["prompt_tokens"], json!(len / 4));
    Ok(())
}

#[tokio::test]
async fn the_title_request_without_tools_consumes_no_step() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/chat/completions", model.openai_base_url());
    let (status, body, _) = post(&url, &opencode_body(0, None)).await?;
    assert_eq!(status, 200);
    let chunks = parse_sse(&body)?;
    assert_eq!(chunks[0]["id"], "chatcmpl-side");
    assert_eq!(
        chunks[1]["choices"][0]["delta"]["content"],
        "Scripted reply."
    );

    let (_, body, _) = post(&url, &opencode_body(0, Some(opencode_tools()))).await?;
    assert_eq!(streamed_call(&parse_sse(&body)?)?.0, "bash");

    let log = model.requests();
    assert_eq!(
        log.iter().map(|r| r.served).collect::<Vec<_>>(),
        [Served::Side, Served::Step(0)]
    );
    assert!(log.iter().all(|r| r.path == "/v1/chat/completions"));
    Ok(())
}

#[tokio::test]
async fn error_step_answers_with_an_openai_error_body() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/chat/completions", model.openai_base_url());
    let (status, body, _) = post(&url, &opencode_body(3, Some(opencode_tools()))).await?;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?,
        json!({"error":{"message":"scripted bad request","type":"invalid_request_error","param":null,"code":null}})
    );
    assert_eq!(model.requests()[0].step, Some(3));

    let resp = reqwest::Client::new()
        .post(&url)
        .body("{\"messages\": [")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(model.requests()[1].served, Served::Rejected);
    Ok(())
}

//! Wire-level tests of the Anthropic Messages endpoints: a real server on
//! port 0, real HTTP requests with reqwest, SSE parsed back into events.

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

/// A request body shaped like Claude Code's, with `turns` completed
/// tool-use round trips before the last user message.
fn claude_body(turns: usize, stream: bool) -> Value {
    let mut messages = vec![json!({"role":"user","content":[
        {"type":"text","text":"<system-reminder>\nctx\n</system-reminder>"},
        {"type":"text","text":"do it"}
    ]})];
    for k in 0..turns {
        messages.push(json!({"role":"assistant","content":[
            {"type":"tool_use","id":format!("toolu_{k:04}"),"name":"Bash","input":{"command":"x"}}
        ]}));
        messages.push(json!({"role":"system","content":"mid-conversation system entry"}));
        messages.push(json!({"role":"user","content":[
            {"type":"tool_result","tool_use_id":format!("toolu_{k:04}"),"content":"ok","is_error":false}
        ]}));
    }
    json!({
        "model": "claude-sonnet-4-5",
        "messages": messages,
        "system": [
            {"type":"text","text":"x-anthropic-billing-header: cc_version=2.1.197.0df;"},
            {"type":"text","text":"You are Claude Code.","cache_control":{"type":"ephemeral"}},
            {"type":"text","text":"# Environment\nYou have been invoked in the following environment: \n - Primary working directory: /tmp/proj\n - Is a git repository: false\n"}
        ],
        "tools": [{"name":"Bash","input_schema":{"type":"object"}},{"name":"Write","input_schema":{"type":"object"}}],
        "metadata": {"user_id": "{}"},
        "max_tokens": 32000,
        "thinking": {"type":"enabled","budget_tokens":31999},
        "context_management": {"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},
        "some_future_field": {"nested": [1, 2, 3]},
        "stream": stream
    })
}

async fn post(url: &str, body: &Value) -> Result<(u16, String, usize), Box<dyn std::error::Error>> {
    let bytes = serde_json::to_vec(body)?;
    let len = bytes.len();
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(bytes)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?, len))
}

/// Parse an SSE body into (event name, data) pairs, checking each frame's
/// `event:` matches its data's `type`.
fn parse_sse(body: &str) -> Result<Vec<(String, Value)>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for frame in body.split("\n\n").filter(|f| !f.trim().is_empty()) {
        let mut name = None;
        let mut data = None;
        for line in frame.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = Some(n.to_string());
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str::<Value>(d)?);
            } else {
                return Err(format!("unexpected SSE line {line:?}").into());
            }
        }
        let (Some(name), Some(data)) = (name, data) else {
            return Err(format!("incomplete SSE frame {frame:?}").into());
        };
        if data["type"] != json!(name) {
            return Err(format!("event {name} carries data of type {}", data["type"]).into());
        }
        out.push((name, data));
    }
    Ok(out)
}

const FULL_SEQUENCE: [&str; 6] = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
];

#[tokio::test]
async fn streaming_tool_use_has_the_full_event_sequence() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/v1/messages?beta=true", model.base_url());
    let (status, body, len) = post(&url, &claude_body(0, true)).await?;
    assert_eq!(status, 200, "{body}");
    let events = parse_sse(&body)?;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, FULL_SEQUENCE);

    let start = &events[0].1["message"];
    assert_eq!(start["id"], "msg_0");
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["model"], "claude-sonnet-4-5");
    assert_eq!(start["usage"]["input_tokens"], json!(len / 4));

    let block = &events[1].1["content_block"];
    assert_eq!(block["type"], "tool_use");
    assert_eq!(block["id"], "toolu_0000");
    assert_eq!(block["name"], "Bash");
    let delta = &events[2].1["delta"];
    assert_eq!(delta["type"], "input_json_delta");
    let input: Value =
        serde_json::from_str(delta["partial_json"].as_str().ok_or("no partial_json")?)?;
    assert_eq!(
        input,
        json!({"command":"grep -n foo src/lib.rs","description":"scripted step"})
    );
    let message_delta = &events[4].1;
    assert_eq!(message_delta["delta"]["stop_reason"], "tool_use");
    assert!(
        message_delta["usage"]["output_tokens"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    Ok(())
}

#[tokio::test]
async fn streaming_text_uses_a_text_delta_and_relative_write_uses_the_cwd() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/v1/messages", model.base_url());

    // Step 1: write with a relative path, resolved against the system prompt's cwd.
    let (_, body, _) = post(&url, &claude_body(1, true)).await?;
    let events = parse_sse(&body)?;
    let delta = &events[2].1["delta"];
    let input: Value =
        serde_json::from_str(delta["partial_json"].as_str().ok_or("no partial_json")?)?;
    assert_eq!(events[1].1["content_block"]["name"], "Write");
    assert_eq!(
        input,
        json!({"file_path":"/tmp/proj/notes/todo.txt","content":"hi\n"})
    );

    // Without a cwd in the request, /workspace is assumed.
    let mut no_cwd = claude_body(1, false);
    no_cwd["system"] = json!("You are a test.");
    let (_, body, _) = post(&url, &no_cwd).await?;
    let msg: Value = serde_json::from_str(&body)?;
    assert_eq!(
        msg["content"][0]["input"]["file_path"],
        "/workspace/notes/todo.txt"
    );

    // Step 2: final text.
    let (status, body, _) = post(&url, &claude_body(2, true)).await?;
    assert_eq!(status, 200);
    let events = parse_sse(&body)?;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, FULL_SEQUENCE);
    assert_eq!(events[0].1["message"]["id"], "msg_2");
    assert_eq!(
        events[1].1["content_block"],
        json!({"type":"text","text":""})
    );
    assert_eq!(
        events[2].1["delta"],
        json!({"type":"text_delta","text":"All done."})
    );
    assert_eq!(events[4].1["delta"]["stop_reason"], "end_turn");
    Ok(())
}

#[tokio::test]
async fn non_streaming_message() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/v1/messages", model.base_url());
    let (status, body, len) = post(&url, &claude_body(0, false)).await?;
    assert_eq!(status, 200, "{body}");
    let msg: Value = serde_json::from_str(&body)?;
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["id"], "msg_0");
    assert_eq!(msg["stop_reason"], "tool_use");
    assert_eq!(
        msg["content"],
        json!([{"type":"tool_use","id":"toolu_0000","name":"Bash",
                "input":{"command":"grep -n foo src/lib.rs","description":"scripted step"}}])
    );
    let content_chars = msg["content"].to_string().chars().count();
    assert_eq!(msg["usage"]["input_tokens"], json!(len / 4));
    assert_eq!(msg["usage"]["output_tokens"], json!(content_chars / 4 + 1));

    // Past the last step: a final "Done.".
    let (_, body, _) = post(&url, &claude_body(7, false)).await?;
    let msg: Value = serde_json::from_str(&body)?;
    assert_eq!(msg["content"], json!([{"type":"text","text":"Done."}]));
    assert_eq!(msg["stop_reason"], "end_turn");
    Ok(())
}

#[tokio::test]
async fn count_tokens_counts_bytes() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/v1/messages/count_tokens?beta=true", model.base_url());
    let (status, body, len) = post(&url, &claude_body(0, false)).await?;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?,
        json!({"input_tokens": len / 4})
    );
    assert_eq!(model.requests()[0].served, Served::CountTokens);
    Ok(())
}

#[tokio::test]
async fn side_request_without_tools_consumes_no_step() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/v1/messages", model.base_url());
    let mut side = claude_body(0, true);
    side.as_object_mut().ok_or("not an object")?.remove("tools");
    let (status, body, _) = post(&url, &side).await?;
    assert_eq!(status, 200);
    let events = parse_sse(&body)?;
    assert_eq!(events[2].1["delta"]["type"], "text_delta");
    assert_eq!(events[4].1["delta"]["stop_reason"], "end_turn");

    // The next real request still gets step 0.
    let (_, body, _) = post(&url, &claude_body(0, false)).await?;
    let msg: Value = serde_json::from_str(&body)?;
    assert_eq!(msg["content"][0]["name"], "Bash");

    let log = model.requests();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].step, log[0].served), (None, Served::Side));
    assert_eq!((log[1].step, log[1].served), (Some(0), Served::Step(0)));
    assert!(log[0].at <= log[1].at);
    assert!(log.iter().all(|r| r.path == "/v1/messages"));
    Ok(())
}

#[tokio::test]
async fn error_step_answers_with_its_status() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/v1/messages?beta=true", model.base_url());
    for stream in [true, false] {
        let (status, body, _) = post(&url, &claude_body(3, stream)).await?;
        assert_eq!(status, 400);
        assert_eq!(
            serde_json::from_str::<Value>(&body)?,
            json!({"type":"error","error":{"type":"invalid_request_error","message":"scripted bad request"}})
        );
    }
    let log = model.requests();
    assert_eq!(log.iter().map(|r| r.status).collect::<Vec<_>>(), [400, 400]);
    assert_eq!(log[0].step, Some(3));

    let other =
        start(r#"{"steps":[{"error":{"status":529,"message":"busy","type":"overloaded_error"}}]}"#)
            .await?;
    let (status, body, _) = post(
        &format!("{}/v1/messages", other.base_url()),
        &claude_body(0, true),
    )
    .await?;
    assert_eq!(status, 529);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?["error"]["type"],
        "overloaded_error"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_endpoints_and_bad_bodies_get_json_errors() -> TestResult {
    let model = start(SCENARIO).await?;
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{}/v1/models", model.base_url()))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 404);
    let body: Value = resp.json().await?;
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "not_found_error");

    let resp = client
        .get(format!("{}/v1/messages", model.base_url()))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 404);

    let resp = client
        .post(format!("{}/v1/messages", model.base_url()))
        .body("{\"messages\": [")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await?;
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let served: Vec<Served> = model.requests().iter().map(|r| r.served).collect();
    assert_eq!(
        served,
        [Served::NotFound, Served::NotFound, Served::Rejected]
    );
    Ok(())
}

#[tokio::test]
async fn shutdown_stops_the_server() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/v1/messages", model.base_url());
    assert_eq!(post(&url, &claude_body(0, false)).await?.0, 200);
    model.shutdown().await;
    assert!(post(&url, &claude_body(0, false)).await.is_err());
    Ok(())
}

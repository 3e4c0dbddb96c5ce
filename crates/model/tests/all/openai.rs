//! Wire-level tests of the OpenAI Responses endpoint: a real server on port
//! 0, real HTTP requests with reqwest, SSE parsed back into events. Request
//! bodies are shaped like codex-cli 0.169.0's (harnesses.md §1.4).

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

fn exec_command_tool() -> Value {
    json!({"type":"function","name":"exec_command","description":"Runs a command in a PTY.","strict":false,
           "parameters":{"type":"object","properties":{"cmd":{"type":"string"}},"required":["cmd"],"additionalProperties":false}})
}

/// A request body shaped like Codex's, with `turns` completed tool-call
/// round trips (each preceded by a reasoning item, which is not a turn).
fn codex_body(turns: usize, tools: Value) -> Value {
    let mut input = vec![
        json!({"type":"message","id":"msg_dev","role":"developer","content":[{"type":"input_text","text":"You are a coding agent running in the Codex CLI."}]}),
        json!({"type":"message","id":"msg_env","role":"user","content":[{"type":"input_text","text":"<environment_context>\n  <cwd>/tmp/proj</cwd>\n  <shell>bash</shell>\n</environment_context>"}]}),
        json!({"type":"message","id":"msg_user","role":"user","content":[{"type":"input_text","text":"do it"}]}),
    ];
    for k in 0..turns {
        input.push(json!({"type":"reasoning","id":format!("rs_{k}"),"summary":[],"content":null,"encrypted_content":null}));
        input.push(json!({"type":"function_call","status":"completed","id":format!("fc_{k}"),"name":"exec_command",
                          "arguments":"{\"cmd\":\"x\"}","call_id":format!("call_{k}")}));
        input.push(json!({"type":"function_call_output","id":format!("fco_{k}"),"call_id":format!("call_{k}"),
                          "output":"Process exited with code 0\nOutput:\nok\n"}));
    }
    json!({
        "model": "mock-model",
        "stream": true,
        "input": input,
        "tools": tools,
        "tool_choice": "auto",
        "parallel_tool_calls": true,
        "reasoning": {"summary": "auto"},
        "store": false,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "01a20a83",
        "client_metadata": "{\"session_id\":\"01a20a83\"}"
    })
}

fn default_tools() -> Value {
    json!([exec_command_tool(), {"type":"function","name":"write_stdin"},
           {"type":"namespace","name":"multi_agent_v1","tools":[]}, {"type":"web_search"}])
}

async fn post(url: &str, body: &Value) -> Result<(u16, String, usize), Box<dyn std::error::Error>> {
    let bytes = serde_json::to_vec(body)?;
    let len = bytes.len();
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test")
        .header("originator", "codex_exec")
        .body(bytes)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?, len))
}

/// Parse an SSE body into (event name, data) pairs, checking each frame's
/// `event:` matches its data's `type` and that sequence numbers count up from 0.
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
        if data["sequence_number"] != json!(out.len()) {
            return Err(format!("event {name} has sequence {}", data["sequence_number"]).into());
        }
        out.push((name, data));
    }
    Ok(out)
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// The one `response.output_item.done` item of a response.
fn done_item(events: &[(String, Value)]) -> Result<Value, String> {
    let done: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "response.output_item.done")
        .map(|(_, d)| &d["item"])
        .collect();
    match done.as_slice() {
        [item] => Ok((*item).clone()),
        other => Err(format!("expected one output item, got {other:?}")),
    }
}

#[tokio::test]
async fn function_call_has_the_full_event_sequence_and_usage() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/responses", model.openai_base_url());
    let (status, body, len) = post(&url, &codex_body(0, default_tools())).await?;
    assert_eq!(status, 200, "{body}");
    let events = parse_sse(&body)?;
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(events[0].1["response"]["id"], "resp_0");
    assert_eq!(events[0].1["response"]["model"], "mock-model");
    assert_eq!(events[2].1["item"]["arguments"], "");
    let item = done_item(&events)?;
    assert_eq!(item["type"], "function_call");
    assert_eq!(item["name"], "exec_command");
    assert_eq!(item["call_id"], "call_0");
    let args: Value = serde_json::from_str(item["arguments"].as_str().ok_or("no arguments")?)?;
    assert_eq!(args, json!({"cmd": "grep -n foo src/lib.rs"}));
    assert_eq!(events[3].1["delta"], item["arguments"]);

    let completed = &events[6].1["response"];
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"], json!([item]));
    let usage = &completed["usage"];
    assert_eq!(usage["input_tokens"], json!(len / 4));
    let output = usage["output_tokens"].as_u64().unwrap_or(0);
    assert!(output > 0, "{usage}");
    assert_eq!(usage["total_tokens"], json!(len as u64 / 4 + output));
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 0);
    Ok(())
}

#[tokio::test]
async fn write_uses_a_heredoc_or_apply_patch_with_the_cwd() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/responses", model.openai_base_url());

    // Step 1 (one prior tool call; the reasoning item does not count).
    let (_, body, _) = post(&url, &codex_body(1, default_tools())).await?;
    let item = done_item(&parse_sse(&body)?)?;
    let args: Value = serde_json::from_str(item["arguments"].as_str().ok_or("no arguments")?)?;
    assert_eq!(
        args["cmd"],
        "mkdir -p '/tmp/proj/notes' && cat > '/tmp/proj/notes/todo.txt' <<'ERRAND_EOF'\nhi\nERRAND_EOF"
    );

    // apply_patch offered as a custom tool: a custom_tool_call.
    let mut tools = default_tools();
    if let Some(t) = tools.as_array_mut() {
        t.push(json!({"type":"custom","name":"apply_patch","description":"FREEFORM","format":{"type":"grammar"}}));
    }
    let (_, body, _) = post(&url, &codex_body(1, tools)).await?;
    let events = parse_sse(&body)?;
    assert_eq!(
        names(&events)[2..5],
        [
            "response.output_item.added",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done"
        ]
    );
    let item = done_item(&events)?;
    assert_eq!(item["type"], "custom_tool_call");
    assert_eq!(item["name"], "apply_patch");
    assert_eq!(
        item["input"],
        "*** Begin Patch\n*** Add File: /tmp/proj/notes/todo.txt\n+hi\n*** End Patch"
    );

    // Without an environment context, /workspace is assumed.
    let mut no_cwd = codex_body(1, default_tools());
    if let Some(input) = no_cwd["input"].as_array_mut() {
        input.remove(1);
    }
    let (_, body, _) = post(&url, &no_cwd).await?;
    let item = done_item(&parse_sse(&body)?)?;
    assert!(
        item["arguments"]
            .as_str()
            .unwrap_or_default()
            .contains("/workspace/notes/todo.txt"),
        "{item}"
    );
    Ok(())
}

#[tokio::test]
async fn shell_tool_variant_follows_the_offered_tools() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/responses", model.openai_base_url());
    let tools = json!([{"type":"function","name":"shell","parameters":{"type":"object",
        "properties":{"command":{"type":"array","items":{"type":"string"}}}}}]);
    let (_, body, _) = post(&url, &codex_body(0, tools)).await?;
    let item = done_item(&parse_sse(&body)?)?;
    assert_eq!(item["name"], "shell");
    let args: Value = serde_json::from_str(item["arguments"].as_str().ok_or("no arguments")?)?;
    assert_eq!(
        args,
        json!({"command": ["bash", "-lc", "grep -n foo src/lib.rs"]})
    );
    Ok(())
}

#[tokio::test]
async fn text_is_an_assistant_message_with_text_deltas() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/responses", model.openai_base_url());
    let (status, body, _) = post(&url, &codex_body(2, default_tools())).await?;
    assert_eq!(status, 200);
    let events = parse_sse(&body)?;
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert_eq!(events[4].1["delta"], "All done.");
    assert_eq!(
        done_item(&events)?,
        json!({"type":"message","id":"msg_2","role":"assistant","status":"completed",
               "content":[{"type":"output_text","text":"All done.","annotations":[]}]})
    );

    // An assistant message in the history is a turn too: past the last step
    // (2 tool calls + 1 message + the error step = 4 turns), "Done.".
    let mut body = codex_body(3, default_tools());
    if let Some(input) = body["input"].as_array_mut() {
        input.push(json!({"type":"message","role":"assistant","content":[{"type":"output_text","text":"x"}]}));
        input.push(
            json!({"type":"message","role":"user","content":[{"type":"input_text","text":"more"}]}),
        );
    }
    let (_, text, _) = post(&url, &body).await?;
    let item = done_item(&parse_sse(&text)?)?;
    assert_eq!(item["content"][0]["text"], "Done.");
    assert_eq!(model.requests()[1].served, Served::Exhausted(4));
    Ok(())
}

#[tokio::test]
async fn non_streaming_response_is_one_json_object() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/responses", model.openai_base_url());
    let mut body = codex_body(0, default_tools());
    body["stream"] = json!(false);
    let (status, text, len) = post(&url, &body).await?;
    assert_eq!(status, 200, "{text}");
    let resp: Value = serde_json::from_str(&text)?;
    assert_eq!(resp["object"], "response");
    assert_eq!(resp["id"], "resp_0");
    assert_eq!(resp["output"][0]["name"], "exec_command");
    assert_eq!(resp["usage"]["input_tokens"], json!(len / 4));
    Ok(())
}

#[tokio::test]
async fn side_request_without_tools_consumes_no_step() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/responses", model.openai_base_url());
    let (status, body, _) = post(&url, &codex_body(0, json!([]))).await?;
    assert_eq!(status, 200);
    let item = done_item(&parse_sse(&body)?)?;
    assert_eq!(item["type"], "message");
    assert_eq!(item["content"][0]["text"], "Scripted reply.");

    let (_, body, _) = post(&url, &codex_body(0, default_tools())).await?;
    assert_eq!(done_item(&parse_sse(&body)?)?["name"], "exec_command");

    let log = model.requests();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].step, log[0].served), (None, Served::Side));
    assert_eq!((log[1].step, log[1].served), (Some(0), Served::Step(0)));
    assert!(log.iter().all(|r| r.path == "/v1/responses"));
    Ok(())
}

#[tokio::test]
async fn error_step_answers_with_an_openai_error_body() -> TestResult {
    let model = start(SCENARIO).await?;
    let url = format!("{}/responses", model.openai_base_url());
    let (status, body, _) = post(&url, &codex_body(3, default_tools())).await?;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?,
        json!({"error":{"message":"scripted bad request","type":"invalid_request_error","param":null,"code":null}})
    );
    let log = model.requests();
    assert_eq!((log[0].step, log[0].status), (Some(3), 400));

    let other = start(r#"{"steps":[{"error":{"status":503,"message":"busy"}}]}"#).await?;
    let url = format!("{}/responses", other.openai_base_url());
    let (status, body, _) = post(&url, &codex_body(0, default_tools())).await?;
    assert_eq!(status, 503);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?["error"]["type"],
        "server_error"
    );
    Ok(())
}

#[tokio::test]
async fn bad_bodies_are_rejected_and_anthropic_still_works() -> TestResult {
    let model = start(SCENARIO).await?;
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/v1/responses", model.base_url()))
        .body("{\"input\": [")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await?;
    assert_eq!(body["error"]["type"], "invalid_request_error");

    // GET is not a Responses WebSocket endpoint here: a 404.
    let resp = client
        .get(format!("{}/v1/responses", model.base_url()))
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 404);

    // The same scenario still drives /v1/messages, counted from its own history.
    let (status, body, _) = post(
        &format!("{}/v1/messages", model.base_url()),
        &json!({"messages":[{"role":"user","content":"hi"}],"tools":[{"name":"Bash"}]}),
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body)?["content"][0]["name"],
        "Bash"
    );
    let served: Vec<Served> = model.requests().iter().map(|r| r.served).collect();
    assert_eq!(
        served,
        [Served::Rejected, Served::NotFound, Served::Step(0)]
    );
    Ok(())
}

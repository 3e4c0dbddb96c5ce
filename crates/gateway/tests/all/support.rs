//! What the tests share: the scripted model requiring the real key, a
//! gateway on TCP in front of it, requests per protocol, and a plain
//! reading of the usage a provider answer carries (independent of the
//! gateway's incremental parser).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use errand_gateway::{
    Credential, Gateway, GatewayEvent, Grant, Limits, ModelCall, Protocol, RunKey, Upstream, Usage,
};
use errand_model::{Scenario, ScriptedModel};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The provider credential only the gateway knows.
pub const REAL_KEY: &str = "sk-real-provider-secret-4b1d";

/// How long a test waits for something that should happen at once, before
/// failing instead of hanging (never an assertion about speed).
pub const HANG_GUARD: Duration = Duration::from_secs(30);

const SCENARIO: &str = r#"{"steps":[{"text":"All done."}]}"#;

/// A gateway serving on `127.0.0.1:0`; returns its base URL.
pub async fn serve(gateway: &Arc<Gateway>) -> Result<String, Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = gateway.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The gateway, the scripted model requiring [`REAL_KEY`], and one run.
pub struct Fixture {
    pub model: ScriptedModel,
    pub gateway: Arc<Gateway>,
    pub url: String,
    pub key: RunKey,
    pub events: UnboundedReceiver<GatewayEvent>,
}

/// The run's upstreams: ids `anthropic`, `openai`, `gemini`.
pub fn upstreams(model: &ScriptedModel) -> Vec<Upstream> {
    let up = |id: &str, protocol, base_url| Upstream {
        id: id.into(),
        protocol,
        base_url,
        credential: Credential::ApiKey(REAL_KEY.into()),
    };
    vec![
        up("anthropic", Protocol::Anthropic, model.base_url()),
        up("openai", Protocol::OpenAi, model.openai_base_url()),
        up("gemini", Protocol::Gemini, model.base_url()),
    ]
}

pub fn grant(upstreams: Vec<Upstream>, limits: Limits) -> (Grant, UnboundedReceiver<GatewayEvent>) {
    let (tx, rx) = unbounded_channel();
    let grant = Grant {
        run: "run-test".into(),
        harness: "claude-code".into(),
        upstreams,
        limits,
        events: tx,
    };
    (grant, rx)
}

pub async fn fixture(limits: Limits) -> Result<Fixture, Box<dyn std::error::Error>> {
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    let model =
        ScriptedModel::start_requiring_key(Scenario::from_json(SCENARIO)?, listen, REAL_KEY)
            .await?;
    let gateway = Gateway::new();
    let url = serve(&gateway).await?;
    let (g, events) = grant(upstreams(&model), limits);
    let key = gateway.grant(g);
    Ok(Fixture {
        model,
        gateway,
        url,
        key,
        events,
    })
}

/// Where the run key goes in one request.
#[derive(Clone, Copy, Debug)]
pub enum KeyIn {
    XApiKey,
    Bearer,
    GoogHeader,
    Query,
}

/// One request in one protocol.
#[derive(Clone, Debug)]
pub struct Call {
    pub protocol: Protocol,
    /// Path after the gateway's upstream id, with its query.
    pub path: String,
    pub body: Value,
    pub key_in: KeyIn,
    pub stream: bool,
}

pub fn anthropic(model: &str, stream: bool) -> Call {
    Call {
        protocol: Protocol::Anthropic,
        path: "anthropic/v1/messages".into(),
        body: json!({"model": model, "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": "hello"}]}),
        key_in: KeyIn::XApiKey,
        stream,
    }
}

pub fn responses(model: &str, stream: bool) -> Call {
    Call {
        protocol: Protocol::OpenAi,
        path: "openai/responses".into(),
        body: json!({"model": model, "stream": stream,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "hello"}]}]}),
        key_in: KeyIn::Bearer,
        stream,
    }
}

pub fn chat(model: &str, stream: bool) -> Call {
    Call {
        protocol: Protocol::OpenAi,
        path: "openai/chat/completions".into(),
        body: json!({"model": model, "stream": stream,
            "messages": [{"role": "user", "content": "hello"}]}),
        key_in: KeyIn::Bearer,
        stream,
    }
}

pub fn gemini(model: &str, stream: bool) -> Call {
    let (method, query, key_in) = if stream {
        ("streamGenerateContent", "?alt=sse", KeyIn::GoogHeader)
    } else {
        ("generateContent", "", KeyIn::Query)
    };
    Call {
        protocol: Protocol::Gemini,
        path: format!("gemini/v1beta/models/{model}:{method}{query}"),
        body: json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}),
        key_in,
        stream,
    }
}

/// Send `call` to `base` (the gateway's URL, or a provider's) with `key`.
pub async fn send(
    base: &str,
    call: &Call,
    key: &str,
) -> Result<(u16, reqwest::header::HeaderMap, String), Box<dyn std::error::Error>> {
    let mut url = format!("{base}/{}", call.path);
    let mut req = client().post(&url);
    match call.key_in {
        KeyIn::XApiKey => {
            req = req
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01")
        }
        KeyIn::Bearer => req = req.bearer_auth(key),
        KeyIn::GoogHeader => req = req.header("x-goog-api-key", key),
        KeyIn::Query => {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("key={key}"));
            req = client().post(&url);
        }
    }
    let resp = req.json(&call.body).send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Ok((status, headers, resp.text().await?))
}

/// The JSON values of an answer: each SSE `data:` line, or the JSON body
/// (an array's elements one by one).
fn values(body: &str, stream: bool) -> Vec<Value> {
    if stream {
        body.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    } else {
        match serde_json::from_str(body) {
            Ok(Value::Array(items)) => items,
            Ok(v) => vec![v],
            Err(_) => vec![],
        }
    }
}

fn n(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// The token counts the answer the client received reports.
pub fn reported_usage(protocol: Protocol, body: &str, stream: bool) -> Usage {
    let mut u = Usage::default();
    for v in values(body, stream) {
        match protocol {
            Protocol::Anthropic => {
                let usage = v.pointer("/message/usage").or(v.get("usage"));
                if let Some(x) = usage {
                    if x.get("input_tokens").is_some() {
                        u.input_tokens = n(x, "/input_tokens");
                        u.cache_read_tokens = n(x, "/cache_read_input_tokens");
                        u.cache_write_tokens = n(x, "/cache_creation_input_tokens");
                    }
                    u.output_tokens = n(x, "/output_tokens");
                }
            }
            Protocol::OpenAi => {
                let x = v.pointer("/response/usage").or(v.get("usage"));
                if let Some(x) = x.filter(|x| x.is_object()) {
                    if x.get("input_tokens").is_some() {
                        let cached = n(x, "/input_tokens_details/cached_tokens");
                        u.input_tokens = n(x, "/input_tokens") - cached;
                        u.cache_read_tokens = cached;
                        u.output_tokens = n(x, "/output_tokens");
                    } else {
                        let cached = n(x, "/prompt_tokens_details/cached_tokens");
                        u.input_tokens = n(x, "/prompt_tokens") - cached;
                        u.cache_read_tokens = cached;
                        u.output_tokens = n(x, "/completion_tokens");
                    }
                }
            }
            Protocol::Gemini => {
                if let Some(x) = v.get("usageMetadata") {
                    let cached = n(x, "/cachedContentTokenCount");
                    u.input_tokens = n(x, "/promptTokenCount") - cached;
                    u.cache_read_tokens = cached;
                    u.output_tokens = n(x, "/candidatesTokenCount") + n(x, "/thoughtsTokenCount");
                }
            }
        }
    }
    u
}

/// The next event, failing instead of hanging.
pub async fn next_event(events: &mut UnboundedReceiver<GatewayEvent>) -> GatewayEvent {
    tokio::time::timeout(HANG_GUARD, events.recv())
        .await
        .expect("an event within the hang guard")
        .expect("the events channel is open")
}

pub async fn next_call(events: &mut UnboundedReceiver<GatewayEvent>) -> ModelCall {
    match next_event(events).await {
        GatewayEvent::Call(call) => call,
        other => panic!("expected a call, got {other:?}"),
    }
}

/// The error message of a provider-shaped error body.
pub fn error_message(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v.pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

//! Forwarding in every protocol against the scripted model requiring the
//! real key: the run key works through the gateway only, the real key never
//! reaches the client, usage equals what the provider reported, and
//! unknown, revoked or misdirected keys never reach the provider.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use errand_gateway::{Credential, Gateway, Limits, Protocol, Upstream};
use errand_trace::pricing::estimate_cost_usd;

use crate::support::*;

fn all_calls() -> Vec<Call> {
    vec![
        anthropic("claude-sonnet-4-5", true),
        anthropic("claude-sonnet-4-5", false),
        responses("gpt-5-codex", true),
        responses("gpt-5-codex", false),
        chat("gpt-5-mini", true),
        chat("gpt-5-mini", false),
        gemini("gemini-2.5-pro", true),
        gemini("gemini-2.5-pro", false),
    ]
}

#[tokio::test]
async fn every_protocol_forwards_with_the_real_key_and_records_the_reported_usage() -> TestResult {
    let mut f = fixture(Limits::default()).await?;
    let mut sum = errand_gateway::Usage::default();
    for call in all_calls() {
        // The provider itself refuses the run key: only the gateway can pass.
        let (direct, _, _) = send(&f.model.base_url(), &strip_id(&call), f.key.secret()).await?;
        assert_eq!(direct, 401, "{call:?} direct with the run key");

        let (status, headers, body) = send(&f.url, &call, f.key.secret()).await?;
        assert_eq!(status, 200, "{call:?}: {body}");
        assert!(
            !body.contains(REAL_KEY),
            "{call:?}: the real key reached the client"
        );
        assert!(!format!("{headers:?}").contains(REAL_KEY));
        let want = reported_usage(call.protocol, &body, call.stream);
        assert!(
            want.input_tokens > 0 && want.output_tokens > 0,
            "{call:?}: no usage in {body}"
        );

        let got = next_call(&mut f.events).await;
        assert_eq!(got.provider, call.protocol.to_string());
        assert_eq!(got.status, 200);
        assert_eq!(got.streamed, call.stream, "{call:?}");
        assert_eq!(got.error, None);
        assert!(got.ttfb_ms.is_some());
        let model = call.body["model"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                call.path
                    .split("models/")
                    .nth(1)
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap()
                    .to_owned()
            });
        assert_eq!(got.model, model);
        let tokens = |u: &errand_gateway::Usage| {
            (
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens,
            )
        };
        assert_eq!(tokens(&got.usage), tokens(&want), "{call:?}");
        assert_eq!(got.usage.cost_usd, estimate_cost_usd(&model, &want));
        assert!(got.usage.cost_usd.is_some_and(|c| c > 0.0));
        sum.input_tokens += want.input_tokens;
        sum.output_tokens += want.output_tokens;
        sum.cost_usd = Some(sum.cost_usd.unwrap_or(0.0) + got.usage.cost_usd.unwrap_or(0.0));
    }
    let totals = f.gateway.totals(&f.key).unwrap();
    assert_eq!(
        (totals.input_tokens, totals.output_tokens),
        (sum.input_tokens, sum.output_tokens)
    );
    let (a, b) = (totals.cost_usd.unwrap(), sum.cost_usd.unwrap());
    assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    let metrics = f.gateway.metrics();
    let requests: u64 = metrics.iter().map(|r| r.requests).sum();
    assert_eq!(requests, all_calls().len() as u64);
    let sonnet = metrics
        .iter()
        .find(|r| r.model == "claude-sonnet-4-5")
        .unwrap();
    assert_eq!(
        (sonnet.harness.as_str(), sonnet.requests),
        ("claude-code", 2)
    );
    // The provider answered every forwarded request, and refused every direct one.
    let served: Vec<u16> = f.model.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        served.iter().filter(|&&s| s == 200).count(),
        all_calls().len()
    );
    assert_eq!(
        served.iter().filter(|&&s| s == 401).count(),
        all_calls().len()
    );
    Ok(())
}

/// The same request straight to the provider (without the gateway's id).
fn strip_id(call: &Call) -> Call {
    let mut direct = call.clone();
    let rest = call.path.split_once('/').unwrap().1;
    direct.path = if call.protocol == Protocol::OpenAi {
        format!("v1/{rest}")
    } else {
        rest.to_owned()
    };
    direct
}

#[tokio::test]
async fn unknown_revoked_or_misdirected_keys_get_401_and_never_reach_the_provider() -> TestResult {
    let mut f = fixture(Limits::default()).await?;
    let mut cases = Vec::new();
    for call in all_calls() {
        cases.push((call.clone(), "errand-run-0000".to_owned()));
        cases.push((call, String::new()));
    }
    // A live key, but its grant has no upstream `other`.
    let mut other = anthropic("claude-sonnet-4-5", false);
    other.path = "other/v1/messages".into();
    cases.push((other, f.key.secret().to_owned()));
    for (call, key) in &cases {
        let (status, _, body) = send(&f.url, call, key).await?;
        assert_eq!(status, 401, "{call:?}");
        assert!(error_message(&body).contains("run key"), "{call:?}: {body}");
    }
    // The provider-shaped bodies.
    let (_, _, body) = send(&f.url, &anthropic("m", false), "nope").await?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("authentication_error"))
    );
    let (_, _, body) = send(&f.url, &gemini("m", false), "nope").await?;
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(v["error"]["status"], "UNAUTHENTICATED");

    // A key that worked stops working when revoked.
    let ok = anthropic("claude-sonnet-4-5", false);
    assert_eq!(send(&f.url, &ok, f.key.secret()).await?.0, 200);
    next_call(&mut f.events).await;
    f.gateway.revoke(&f.key);
    let (status, _, _) = send(&f.url, &ok, f.key.secret()).await?;
    assert_eq!(status, 401);
    assert_eq!(
        f.model.requests().len(),
        1,
        "only the one valid request reached the provider"
    );
    assert!(
        f.gateway
            .totals(&f.key)
            .is_some_and(|t| t.output_tokens > 0),
        "totals outlive revoke"
    );
    assert!(
        f.events.try_recv().is_err(),
        "unauthenticated requests belong to no run"
    );
    assert!(!format!("{:?}", f.key).contains(f.key.secret()));
    Ok(())
}

type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// An upstream that records each request's URI and headers and answers a
/// small Anthropic message.
async fn echo_upstream() -> Result<(String, Seen), Box<dyn std::error::Error>> {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let log = Arc::clone(&log);
        async move {
            log.lock()
                .unwrap()
                .push((req.uri().to_string(), req.headers().clone()));
            axum::Json(
                serde_json::json!({"type":"message","model":"claude-haiku-4-5",
                "usage":{"input_tokens":3,"output_tokens":2}}),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}/base"), seen))
}

#[tokio::test]
async fn the_provider_sees_the_real_credential_and_none_of_the_run_key() -> TestResult {
    let (base, seen) = echo_upstream().await?;
    let gateway = Gateway::new();
    let url = serve(&gateway).await?;
    let up = |id: &str, protocol, credential| Upstream {
        id: id.into(),
        protocol,
        base_url: base.clone(),
        credential,
    };
    let (g, mut events) = grant(
        vec![
            up(
                "a",
                Protocol::Anthropic,
                Credential::Bearer(REAL_KEY.into()),
            ),
            up("g", Protocol::Gemini, Credential::ApiKey(REAL_KEY.into())),
        ],
        Limits::default(),
    );
    let key = gateway.grant(g);
    let secret = key.secret().to_owned();
    let resp = client()
        .post(format!("{url}/a/v1/messages?beta=true&key={secret}"))
        .header("x-api-key", &secret)
        .header("authorization", format!("Bearer {secret}"))
        .header("x-goog-api-key", &secret)
        .header("anthropic-beta", "fine-grained-tool-streaming-2025-05-14")
        .header("accept-encoding", "gzip, br")
        .header("x-custom", "kept")
        .body(r#"{"max_tokens":1}"#)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let resp = client()
        .post(format!(
            "{url}/g/v1beta/models/gemini-2.5-flash:generateContent?key={secret}&alt=json"
        ))
        .body("{}")
        .send()
        .await?;
    assert_eq!(resp.status(), 200);

    // The request named no model: the answer's model is recorded.
    let call = next_call(&mut events).await;
    assert_eq!(
        (call.model.as_str(), call.usage.input_tokens),
        ("claude-haiku-4-5", 3)
    );
    // Gemini's model is in the path, whatever the answer says.
    assert_eq!(next_call(&mut events).await.model, "gemini-2.5-flash");

    let seen = seen.lock().unwrap().clone();
    let by_path: HashMap<&str, &HeaderMap> = seen
        .iter()
        .map(|(uri, h)| (uri.split('?').next().unwrap(), h))
        .collect();
    assert_eq!(seen[0].0, "/base/v1/messages?beta=true");
    assert_eq!(
        seen[1].0,
        "/base/v1beta/models/gemini-2.5-flash:generateContent?alt=json"
    );
    let a = by_path["/base/v1/messages"];
    assert_eq!(a["authorization"], format!("Bearer {REAL_KEY}"));
    assert_eq!(
        a["anthropic-beta"],
        "fine-grained-tool-streaming-2025-05-14,oauth-2025-04-20"
    );
    assert_eq!(a["x-custom"], "kept");
    for gone in ["x-api-key", "x-goog-api-key", "accept-encoding"] {
        assert!(!a.contains_key(gone), "{gone} was forwarded");
    }
    let g = by_path["/base/v1beta/models/gemini-2.5-flash:generateContent"];
    assert_eq!(g["x-goog-api-key"], REAL_KEY);
    assert!(!g.contains_key("authorization"));
    for (_, headers) in &seen {
        assert!(
            !format!("{headers:?}").contains(&secret),
            "the run key reached the provider"
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_unreachable_provider_is_a_502_in_its_shape_and_recorded() -> TestResult {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = closed.local_addr()?;
    drop(closed);
    let gateway = Gateway::new();
    let url = serve(&gateway).await?;
    let (g, mut events) = grant(
        vec![Upstream {
            id: "openai".into(),
            protocol: Protocol::OpenAi,
            base_url: format!("http://{addr}/v1"),
            credential: Credential::ApiKey(REAL_KEY.into()),
        }],
        Limits::default(),
    );
    let key = gateway.grant(g);
    let (status, _, body) = send(&url, &responses("gpt-5", true), key.secret()).await?;
    assert_eq!(status, 502);
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(v["error"]["type"], "server_error");
    let call = next_call(&mut events).await;
    assert_eq!((call.status, call.model.as_str()), (502, "gpt-5"));
    assert!(call
        .error
        .unwrap_or_default()
        .contains("upstream request failed"));
    Ok(())
}

#[tokio::test]
async fn an_oversized_body_is_413_without_an_upstream_request() -> TestResult {
    let mut f = fixture(Limits::default()).await?;
    let big = "x".repeat(errand_gateway::forward::MAX_BODY_BYTES + 1);
    let resp = client()
        .post(format!("{}/anthropic/v1/messages", f.url))
        .header("x-api-key", f.key.secret())
        .body(big)
        .send()
        .await?;
    assert_eq!(resp.status(), 413);
    assert_eq!(next_call(&mut f.events).await.status, 413);
    assert!(f.model.requests().is_empty());
    assert!(f.events.try_recv().is_err());
    Ok(())
}

#[tokio::test]
async fn serves_on_a_unix_socket() -> TestResult {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut f = fixture(Limits::default()).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gateway.sock");
    let listener = tokio::net::UnixListener::bind(&path)?;
    tokio::spawn(Arc::clone(&f.gateway).serve_unix(listener));

    let body = serde_json::to_string(&anthropic("claude-sonnet-4-5", false).body)?;
    let request = format!(
        "POST /anthropic/v1/messages HTTP/1.1\r\nhost: gateway\r\nx-api-key: {}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        f.key.secret(),
        body.len()
    );
    let mut socket = tokio::net::UnixStream::connect(&path).await?;
    socket.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    tokio::time::timeout(HANG_GUARD, socket.read_to_string(&mut answer)).await??;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let want = reported_usage(Protocol::Anthropic, json, false);
    let call = next_call(&mut f.events).await;
    assert_eq!(call.usage.input_tokens, want.input_tokens);
    assert_eq!(call.usage.output_tokens, want.output_tokens);
    Ok(())
}
